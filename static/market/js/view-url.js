// The page's URL mirrors the view, so that it can be bookmarked and shared:
// ?instrument=<id>&tf=<timeframe>&ind=rsi&ind=ema:length=50,source=hl2 (one `ind` per indicator,
// only the parameters that differ from the catalogue's defaults).

import { TIMEFRAMES } from "cryptostock/format";

/** The view the URL asks for; instrument is null when the URL names none (or nonsense). */
export function readViewFromUrl() {
  return viewFromSearch(window.location.search);
}

/** The view a query string ("?instrument=3&tf=5m&ind=rsi") asks for. */
export function viewFromSearch(search) {
  const params = new URLSearchParams(search);
  const instrument = Number.parseInt(params.get("instrument") ?? "", 10);
  const timeframe = params.get("tf");
  return {
    instrument: Number.isInteger(instrument) && instrument > 0 ? instrument : null,
    timeframe: TIMEFRAMES.includes(timeframe) ? timeframe : "1m",
    indicators: params.getAll("ind").filter(Boolean),
  };
}

// `:`, `,` and `=` are legal in a query value: left unescaped, the URL stays readable.
function encodeIndicator(value) {
  return encodeURIComponent(value).replace(/%3A/gi, ":").replace(/%2C/gi, ",").replace(/%3D/gi, "=");
}

/** Put the view in the URL: a new history entry (`push`, a user's choice) or in place. */
export function writeViewToUrl(view, { push }) {
  const url = viewUrl(window.location.href, view);
  if (url === window.location.href) {
    return;
  }
  if (push) {
    window.history.pushState(null, "", url);
  } else {
    window.history.replaceState(null, "", url);
  }
}

/** `href` with the view in its query; other parameters of the query stay. */
export function viewUrl(href, { instrument, timeframe, indicators = [] }) {
  const url = new URL(href);
  url.searchParams.set("instrument", String(instrument));
  url.searchParams.set("tf", timeframe);
  url.searchParams.delete("ind");
  url.search = [url.search.slice(1), ...indicators.map((value) => `ind=${encodeIndicator(value)}`)]
    .filter(Boolean)
    .join("&");
  return url.href;
}
