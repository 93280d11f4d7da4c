import assert from "node:assert/strict";
import { test } from "node:test";

import { HEIGHT, WIDTH, sparklinePath, withBar } from "cryptostock/sparkline";

test("a path spans the box from the first point to the last, high at the top", () => {
  const path = sparklinePath([
    [0, 1],
    [50, 3],
    [100, 2],
  ]);
  const [bottom, middle] = [(HEIGHT - 1).toFixed(1), (HEIGHT / 2).toFixed(1)];
  assert.equal(path, `M0.0 ${bottom} L${(WIDTH / 2).toFixed(1)} 1.0 L${WIDTH.toFixed(1)} ${middle}`);
});

test("fewer than two points draw nothing; a flat line sits in the middle", () => {
  assert.equal(sparklinePath([[0, 1]]), "");
  assert.equal(sparklinePath([[0, 5], [60, 5]], 10, 20), "M0.0 10.0 L10.0 10.0");
});

test("a live bar replaces the point of its time and drops what is older than a day", () => {
  const day = 86_400;
  const points = [
    [10, 1],
    [day + 50, 2],
    [day + 200, 3],
  ];
  assert.deepEqual(withBar(points, day + 200, 4), [
    [day + 50, 2],
    [day + 200, 4],
  ]);
  assert.deepEqual(withBar(points, day + 60, 9), [
    [day + 50, 2],
    [day + 60, 9],
    [day + 200, 3],
  ]);
});
