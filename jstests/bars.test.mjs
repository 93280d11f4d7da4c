import assert from "node:assert/strict";
import { test } from "node:test";

import { BarStore } from "cryptostock/bars";

const bar = (time, close, extra = {}) => ({
  time,
  ...{ open: close, high: close, low: close, close, volume: 1, final: true },
  ...extra,
});
const times = (store) => store.bars.map((item) => item.time);

test("merging keeps the bars sorted with one bar per time, in any order", () => {
  const store = new BarStore();
  assert.equal(store.merge([bar(180, 3), bar(60, 1), bar(120, 2)], { override: false }), 3);
  assert.deepEqual(times(store), [60, 120, 180]);
  assert.equal(store.merge([], { override: true }), 0);
  assert.deepEqual([store.first.time, store.last.time, store.size], [60, 180, 3]);
});

test("a REST page never overwrites a known bar; a snapshot does, and counts only real changes", () => {
  const store = new BarStore();
  store.merge([bar(60, 1), bar(120, 2)], { override: false });

  assert.equal(store.merge([bar(60, 9), bar(0, 0)], { override: false }), 1);
  assert.equal(store.bars[1].close, 1);

  assert.equal(store.merge([bar(60, 9), bar(120, 2)], { override: true }), 1);
  assert.equal(store.bars[1].close, 9);
});

test("a live bar says what the chart has to do", () => {
  const store = new BarStore();
  assert.equal(store.upsert(bar(120, 1)), "append");
  assert.equal(store.upsert(bar(180, 2, { final: false })), "append");
  assert.equal(store.upsert(bar(180, 2, { final: false })), "same");
  assert.equal(store.upsert(bar(180, 3)), "update");
  assert.equal(store.upsert(bar(120, 1.5)), "historical");
  assert.equal(store.upsert(bar(60, 0.5)), "insert");
  assert.deepEqual(times(store), [60, 120, 180]);
});

test("indexOf finds a time or where it would go, and previous is the bar before a time", () => {
  const store = new BarStore();
  store.merge([bar(60, 1), bar(120, 2), bar(240, 4)], { override: false });
  assert.equal(store.indexOf(120), 1);
  assert.equal(store.indexOf(180), -3); // would go at index 2
  assert.equal(store.previous(240).time, 120);
  assert.equal(store.previous(180).time, 120); // between bars: the one before
  assert.equal(store.previous(60), null);
});
