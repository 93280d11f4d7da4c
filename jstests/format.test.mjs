// The formatters read the time zone when the module loads: Berlin (UTC+1/+2) makes local midnight
// and UTC midnight differ, which is what the tick labels have to get right.
import assert from "node:assert/strict";
import { test } from "node:test";

process.env.TZ = "Europe/Berlin";
const format = await import("cryptostock/format");
const { decimalsOf, formatBarTime, formatChange, formatPrice, formatVolume, localTimeFormatters } = format;
const { pricePrecision, timeZoneLabel } = format;

const ohlc = (...closes) => closes.map((close) => ({ open: close, high: close, low: close, close }));
const TICK_TIME = 3;
const TICK_DAY = 2;

test("decimals as quoted, never more than ten", () => {
  assert.deepEqual([decimalsOf(0.001413), decimalsOf(189.5), decimalsOf(42), decimalsOf(1 / 3)], [6, 1, 0, 10]);
});

test("price precision: the quoted decimals, six significant digits at most, two at least from 1 up", () => {
  assert.equal(pricePrecision(ohlc(0.001413, 0.0014131)), 7);
  assert.equal(pricePrecision(ohlc(0.002618510999)), 8); // float noise does not widen the axis
  assert.equal(pricePrecision(ohlc(189.5, 190)), 2);
  assert.equal(pricePrecision(ohlc(64012.37)), 2);
  assert.equal(pricePrecision([]), 0);
});

test("missing numbers read as a dash", () => {
  for (const value of [null, undefined, Number.NaN]) {
    assert.equal(formatPrice(value, 2), "—");
    assert.equal(formatVolume(value), "—");
  }
  assert.equal(formatChange(0, 5), "—");
  assert.equal(formatChange(100, null), "—");
});

test("the change carries its sign, with a real minus", () => {
  const changes = [formatChange(100, 101.5), formatChange(100, 98), formatChange(100, 100)];
  assert.deepEqual(changes, ["+1.50%", "−2.00%", "0.00%"]);
});

test("prices keep the precision asked for", () => {
  const digits = (text) => text.replace(/\D/g, "");
  assert.equal(digits(formatPrice(0.5, 4)), "05000");
  assert.equal(digits(formatPrice(1234.5, 2)), "123450");
});

test("daily bars are dated in UTC, others in local time", () => {
  const midnightUtc = Date.UTC(2024, 0, 15) / 1000;
  assert.match(formatBarTime(midnightUtc, "1d"), / UTC$/);
  assert.match(formatBarTime(midnightUtc, "1d"), /15/);
  assert.equal(timeZoneLabel("1d"), "UTC");
  assert.equal(timeZoneLabel("1m"), "Europe/Berlin");
});

test("on minute charts a date label stands at local midnight, and a UTC day tick reads as a time", () => {
  const { tickMarkFormatter } = localTimeFormatters("1m");
  const localMidnight = new Date(2024, 0, 15, 0, 0).getTime() / 1000; // 23:00 UTC the day before
  const utcMidnight = Date.UTC(2024, 0, 15) / 1000; // 01:00 in Berlin
  const time = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
  assert.doesNotMatch(tickMarkFormatter(localMidnight, TICK_TIME), /:/);
  assert.match(tickMarkFormatter(localMidnight, TICK_TIME), /15/);
  assert.equal(tickMarkFormatter(utcMidnight, TICK_DAY), time.format(new Date(utcMidnight * 1000)));
});
