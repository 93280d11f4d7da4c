// Number and time formatting for the chart: pure functions, no DOM.
//
// Bars carry time as UTC epoch seconds; everything shown to the user is in the browser's own time
// zone and locale (Intl does the work, so DST and 12/24-hour preferences come for free).

export const TIMEFRAME_SECONDS = {
  "1m": 60,
  "5m": 300,
  "15m": 900,
  "1h": 3600,
  "4h": 14400,
  "1d": 86400,
};

export const TIMEFRAMES = Object.keys(TIMEFRAME_SECONDS);

const MAX_DECIMALS = 10;

/** Decimals needed to print `value` exactly as the exchange quoted it (0.0014130 -> 6). */
export function decimalsOf(value) {
  for (let decimals = 0; decimals < MAX_DECIMALS; decimals += 1) {
    if (Number(value.toFixed(decimals)) === value) {
      return decimals;
    }
  }
  return MAX_DECIMALS;
}

// Quotes carry a few significant digits: XRP/ETH 0.00141300 keeps its 8 decimals with 6 of them.
const SIGNIFICANT_DIGITS = 6;

/**
 * Price precision for a series: enough decimals for the recent prices as quoted, but no more than
 * SIGNIFICANT_DIGITS of the largest (float noise like 0.002618510999 must not widen the axis), and at
 * least two for prices of one or more (189.5 reads 189.50, as people expect of a quote).
 */
export function pricePrecision(bars) {
  const recent = bars.slice(-300);
  let decimals = 0;
  let largest = 0;
  for (const bar of recent) {
    for (const value of [bar.open, bar.high, bar.low, bar.close]) {
      decimals = Math.max(decimals, decimalsOf(value));
      largest = Math.max(largest, Math.abs(value));
    }
  }
  if (largest > 0) {
    const magnitude = Math.floor(Math.log10(largest));
    decimals = Math.min(decimals, Math.max(0, SIGNIFICANT_DIGITS - 1 - magnitude));
  }
  if (largest >= 1) {
    decimals = Math.max(decimals, 2);
  }
  return Math.min(decimals, MAX_DECIMALS);
}

export function formatPrice(value, precision) {
  if (value === null || value === undefined || Number.isNaN(value)) {
    return "—";
  }
  return value.toLocaleString(undefined, {
    minimumFractionDigits: precision,
    maximumFractionDigits: precision,
  });
}

const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 2 });
const plain = new Intl.NumberFormat(undefined, { maximumFractionDigits: 4 });

export function formatVolume(value) {
  if (value === null || value === undefined || Number.isNaN(value)) {
    return "—";
  }
  return Math.abs(value) >= 10000 ? compact.format(value) : plain.format(value);
}

export function formatChange(from, to) {
  if (!from || to === null || to === undefined) {
    return "—";
  }
  const percent = ((to - from) / from) * 100;
  const sign = percent > 0 ? "+" : percent < 0 ? "−" : "";
  return `${sign}${Math.abs(percent).toFixed(2)}%`;
}

const dateTime = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
});
const dateTimeZone = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  timeZoneName: "short",
});
const timeOnly = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dayMonth = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short" });
const monthYear = new Intl.DateTimeFormat(undefined, { month: "short", year: "numeric" });
const yearOnly = new Intl.DateTimeFormat(undefined, { year: "numeric" });
// A daily bar is a UTC calendar day: shown in local time it would read as the day before west of
// Greenwich, so daily bars are labelled with their UTC date.
const utcDate = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "short", day: "numeric", timeZone: "UTC" });
const utcDayMonth = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", timeZone: "UTC" });
const utcMonthYear = new Intl.DateTimeFormat(undefined, { month: "short", year: "numeric", timeZone: "UTC" });
const utcYear = new Intl.DateTimeFormat(undefined, { year: "numeric", timeZone: "UTC" });

function toDate(epochSeconds) {
  return new Date(epochSeconds * 1000);
}

function isLocalMidnight(date) {
  return date.getHours() === 0 && date.getMinutes() === 0;
}

/**
 * The bar's open time as the legend shows it: local date and time with the zone's short name
 * ("Oct 12, 2019, 03:18 AM GMT+2"); for daily bars the UTC date ("Oct 12, 2019 UTC").
 */
export function formatBarTime(epochSeconds, timeframe) {
  const date = toDate(epochSeconds);
  return timeframe === "1d" ? `${utcDate.format(date)} UTC` : dateTimeZone.format(date);
}

/** What the times on the chart are in, for the legend ("Europe/Berlin"; "UTC" for daily bars). */
export function timeZoneLabel(timeframe) {
  if (timeframe === "1d") {
    return "UTC";
  }
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
}

// lightweight-charts' TickMarkType values.
const TICK = { year: 0, month: 1, dayOfMonth: 2, time: 3, timeWithSeconds: 4 };

/**
 * Axis and crosshair formatters. The library places tick marks and picks their type by the UTC
 * calendar; these decide how they read, in local time. A date label belongs where local midnight
 * falls, not where UTC midnight does (which is 02:00 in Berlin): on minute charts a UTC day tick
 * reads as a time and a local-midnight tick as the date. On hourly charts ticks are too far apart
 * for that, so day ticks keep the (local) date. Shifting bar times by the UTC offset instead would
 * break at DST changes, where local minutes repeat.
 */
export function localTimeFormatters(timeframe) {
  if (timeframe === "1d") {
    return {
      timeFormatter: (time) => utcDate.format(toDate(time)),
      tickMarkFormatter: (time, type) => {
        const date = toDate(time);
        if (type === TICK.year) {
          return utcYear.format(date);
        }
        return type === TICK.month ? utcMonthYear.format(date) : utcDayMonth.format(date);
      },
    };
  }
  const minuteChart = TIMEFRAME_SECONDS[timeframe] < 3600;
  return {
    timeFormatter: (time) => dateTime.format(toDate(time)),
    tickMarkFormatter: (time, type) => {
      const date = toDate(time);
      const dayTick = type <= TICK.dayOfMonth;
      if (isLocalMidnight(date) || (dayTick && !minuteChart)) {
        if (date.getMonth() === 0 && date.getDate() === 1) {
          return yearOnly.format(date);
        }
        return date.getDate() === 1 ? monthYear.format(date) : dayMonth.format(date);
      }
      return timeOnly.format(date);
    },
  };
}
