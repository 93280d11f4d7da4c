import assert from "node:assert/strict";
import { test } from "node:test";

import { viewFromSearch, viewUrl } from "cryptostock/view-url";

test("the URL's view: instrument, timeframe and indicators in order", () => {
  assert.deepEqual(viewFromSearch("?instrument=3&tf=5m&ind=rsi&ind=ema:length=50"), {
    instrument: 3,
    timeframe: "5m",
    indicators: ["rsi", "ema:length=50"],
  });
});

test("nonsense in the URL falls back to no instrument and 1m", () => {
  for (const search of ["", "?instrument=abc&tf=2m", "?instrument=-4&tf=", "?instrument=0&ind="]) {
    assert.deepEqual(viewFromSearch(search), { instrument: null, timeframe: "1m", indicators: [] }, search);
  }
});

test("writing the view keeps the other parameters and leaves : , = readable", () => {
  const href = viewUrl("http://example.test/?theme=x&ind=old&tf=1h", {
    instrument: 7,
    timeframe: "15m",
    indicators: ["macd:fast=8,slow=21", "bbands"],
  });
  assert.equal(href, "http://example.test/?theme=x&tf=15m&instrument=7&ind=macd:fast=8,slow=21&ind=bbands");
});

test("a written view reads back the same", () => {
  const view = { instrument: 12, timeframe: "4h", indicators: ["ema:length=50,source=hl2", "rsi"] };
  assert.deepEqual(viewFromSearch(new URL(viewUrl("http://example.test/", view)).search), view);
});
