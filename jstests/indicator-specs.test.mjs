import assert from "node:assert/strict";
import { test } from "node:test";

import {
  assignKeys,
  catalogueByName,
  changedParams,
  drawnOutputs,
  formatIndicatorParam,
  indicatorLabel,
  indicatorQuery,
  parseIndicatorParams,
  parseParam,
  resolveParams,
  usesDefaults,
} from "cryptostock/indicator-specs";

// Entries shaped as GET /api/v1/indicators/ gives them.
const EMA = {
  name: "ema",
  params: [
    { name: "length", type: "int", default: 20, min: 1, max: 1000 },
    { name: "source", type: "choice", default: "close", choices: ["close", "hl2", "hlc3"] },
  ],
  outputs: [{ name: "ema" }],
};
const BBANDS = {
  name: "bbands",
  params: [
    { name: "length", type: "int", default: 20, min: 2, max: 500 },
    { name: "std", type: "float", default: 2, min: 0.1, max: 10 },
  ],
  outputs: [{ name: "lower" }, { name: "middle" }, { name: "upper" }, { name: "bandwidth" }, { name: "percent_b" }],
};
const RSI = {
  name: "rsi",
  params: [{ name: "length", type: "int", default: 14, min: 2, max: 500 }],
  outputs: [{ name: "rsi" }],
};
const CATALOGUE = catalogueByName([EMA, BBANDS, RSI]);

test("a parameter is checked against its type and bounds", () => {
  const [length, source] = EMA.params;
  assert.deepEqual(parseParam(length, " 50 "), { value: 50 });
  assert.deepEqual(parseParam(length, "2.5"), { error: "a whole number" });
  assert.deepEqual(parseParam(length, "abc"), { error: "a number" });
  assert.deepEqual(parseParam(length, "0"), { error: "between 1 and 1000" });
  assert.deepEqual(parseParam(source, "hl2"), { value: "hl2" });
  assert.deepEqual(parseParam(source, "open"), { error: "one of close, hl2, hlc3" });
  assert.deepEqual(parseParam(BBANDS.params[1], "2.5"), { value: 2.5 });
});

test("missing parameters take their defaults; bad ones are named", () => {
  assert.deepEqual(resolveParams(EMA, { length: "50" }), { params: { length: 50, source: "close" }, errors: {} });
  const { errors } = resolveParams(EMA, { length: "-1", source: "" });
  assert.deepEqual(errors, { length: "length must be between 1 and 1000" });
});

test("only parameters that differ from the defaults are carried", () => {
  assert.deepEqual(changedParams(EMA, { length: 20, source: "hl2" }), { source: "hl2" });
  assert.equal(usesDefaults(EMA, { length: 20, source: "close" }), true);
  assert.equal(formatIndicatorParam(EMA, { length: 20, source: "close" }), "ema");
  assert.equal(formatIndicatorParam(EMA, { length: 50, source: "hl2" }), "ema:length=50,source=hl2");
});

test("the URL's values read back into the same indicators; unknown ones and bad parameters are reported", () => {
  const values = ["ema:length=50,source=hl2", "rsi", "nope", "rsi:length=1"];
  const { chosen, problems } = parseIndicatorParams(values, CATALOGUE);
  assert.deepEqual(chosen, [
    { name: "ema", params: { length: 50, source: "hl2" } },
    { name: "rsi", params: { length: 14 } },
    { name: "rsi", params: { length: 14 } },
  ]);
  assert.deepEqual(problems, ["unknown indicator “nope”", "rsi: length must be between 2 and 500"]);
  assert.equal(formatIndicatorParam(EMA, chosen[0].params), "ema:length=50,source=hl2");
});

test("repeats get numbered keys, and the API query names each with its changed parameters", () => {
  const chosen = assignKeys([
    { name: "ema", params: { length: 20, source: "close" } },
    { name: "ema", params: { length: 50, source: "close" } },
    { name: "rsi", params: { length: 14 } },
  ]);
  assert.deepEqual(
    chosen.map((item) => item.key),
    ["ema", "ema@2", "rsi"],
  );
  assert.deepEqual(indicatorQuery(chosen, CATALOGUE), { names: "ema,ema@2,rsi", params: "ema@2.length=50" });
});

test("Bollinger bands draw their bands, not bandwidth and %B; labels name the numbers", () => {
  assert.deepEqual(
    drawnOutputs(BBANDS).map((output) => output.name),
    ["lower", "middle", "upper"],
  );
  assert.equal(indicatorLabel(BBANDS, { length: 20, std: 2.5 }), "BBANDS 20 2.5");
  assert.equal(indicatorLabel(EMA, { length: 50, source: "close" }), "EMA 50");
  assert.equal(indicatorLabel(EMA, { length: 50, source: "hl2" }), "EMA 50 hl2");
});
