// LiveSocket's reconnect, backoff, heartbeat and resubscribe logic, against a fake WebSocket class
// (the module itself runs as in the browser) with Node's mock timers standing in for the clock.

import assert from "node:assert/strict";
import { beforeEach, describe, test } from "node:test";

import { DEFAULTS, LiveSocket, backoffDelay, socketUrl, topicKey } from "cryptostock/live-socket";

import { FakeWebSocket } from "./fake-websocket.mjs";

const URL = "ws://example.test/ws/v1/market/";
const XRP = { instrument: 7, timeframe: "1m" };
const ETH = { instrument: 8, timeframe: "5m" };
const COLLECTORS = { channel: "collectors" };

/** A started LiveSocket with fake sockets and timers; `random` fixes the jitter. */
function started(t, { random = () => 0.5, page = null, ...options } = {}) {
  t.mock.timers.enable({ apis: ["setTimeout", "setInterval", "Date"] });
  const live = new LiveSocket(URL, { WebSocket: FakeWebSocket, random, page, ...options });
  const states = [];
  live.addEventListener("status", (event) => states.push(event.detail));
  live.start();
  return { live, states };
}

const microtasks = () => new Promise((done) => setImmediate(done));

/** A page (window) with the events LiveSocket follows, and whether the browser says it is online. */
function fakePage({ onLine = true } = {}) {
  const page = new EventTarget();
  page.navigator = { onLine };
  page.document = Object.assign(new EventTarget(), { visibilityState: "visible" });
  return page;
}

beforeEach(() => FakeWebSocket.reset());

describe("backoffDelay", () => {
  test("it doubles from the minimum up to the maximum, with the jitter in the upper half", () => {
    const limits = { minDelayMs: 500, maxDelayMs: 30_000 };
    const ceilings = [0, 1, 2, 3, 6, 7, 20].map((attempt) => backoffDelay(attempt, limits, () => 1));
    assert.deepEqual(ceilings, [500, 1000, 2000, 4000, 30_000, 30_000, 30_000]);
    assert.deepEqual(
      [0, 3].map((attempt) => backoffDelay(attempt, limits, () => 0)),
      [250, 2000],
    );
  });

  test("a floor raises the ceiling, not the jitter's spread", () => {
    const delay = (random) => backoffDelay(0, { minDelayMs: 500, maxDelayMs: 30_000, floorMs: 10_000 }, random);
    assert.deepEqual([delay(() => 0), delay(() => 1)], [5000, 10_000]);
  });
});

describe("subscriptions", () => {
  test("what the page follows is subscribed once the socket opens, and at once while it is open", (t) => {
    const { live } = started(t);
    live.subscribe(XRP);
    live.subscribe(COLLECTORS);
    const socket = FakeWebSocket.last;
    assert.deepEqual(socket.sent, []);

    socket.accept();
    assert.deepEqual(socket.sent, [
      { action: "subscribe", ...XRP },
      { action: "subscribe", ...COLLECTORS },
    ]);

    live.subscribe(ETH);
    live.subscribe(XRP); // already followed: nothing to send
    assert.deepEqual(socket.sent.slice(2), [{ action: "subscribe", ...ETH }]);
  });

  test("followSeries unsubscribes the series left out first and keeps the channels", (t) => {
    const { live } = started(t);
    FakeWebSocket.last.accept();
    live.subscribe(COLLECTORS);
    live.followSeries([XRP]);
    const socket = FakeWebSocket.last;
    socket.sent.length = 0;

    live.followSeries([ETH]);
    assert.deepEqual(socket.sent, [
      { action: "unsubscribe", ...XRP },
      { action: "subscribe", ...ETH },
    ]);
    assert.deepEqual([...live.topics.keys()], [topicKey(COLLECTORS), topicKey(ETH)]);
  });

  test("unsubscribing what is not followed sends nothing", (t) => {
    const { live } = started(t);
    FakeWebSocket.last.accept();
    live.unsubscribe(XRP);
    assert.deepEqual(FakeWebSocket.last.sent, []);
  });
});

describe("reconnecting", () => {
  test("after a drop it reconnects after the backoff and subscribes everything again", (t) => {
    const { live, states } = started(t);
    live.followSeries([XRP]);
    live.subscribe(COLLECTORS);
    FakeWebSocket.last.accept();
    FakeWebSocket.last.drop(1001);

    // with random 0.5 the first retry waits 3/4 of the 500 ms ceiling
    assert.deepEqual(states.at(-1), { state: "reconnecting", retryInMs: 375, code: 1001 });
    t.mock.timers.tick(374);
    assert.equal(FakeWebSocket.made.length, 1);
    t.mock.timers.tick(1);
    assert.equal(FakeWebSocket.made.length, 2);

    FakeWebSocket.last.accept();
    assert.deepEqual(FakeWebSocket.last.sent, [
      { action: "subscribe", ...XRP },
      { action: "subscribe", ...COLLECTORS },
    ]);
    assert.deepEqual(
      states.map((status) => status.state),
      ["connecting", "live", "reconnecting", "reconnecting", "live"],
    );
    assert.equal(live.state, "live");
  });

  test("the wait doubles while the server stays away, up to the maximum", (t) => {
    const { states } = started(t, { random: () => 1 });
    const waits = [];
    for (let attempt = 0; attempt < 9; attempt += 1) {
      FakeWebSocket.last.drop(1006); // refused: closed without ever opening
      waits.push(states.at(-1).retryInMs);
      t.mock.timers.tick(states.at(-1).retryInMs);
    }
    assert.deepEqual(waits, [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]);
    assert.equal(FakeWebSocket.made.length, 10);
  });

  test("a connection that opens and drops at once does not reset the backoff", (t) => {
    const { states } = started(t, { random: () => 1 });
    const waits = [];
    for (let attempt = 0; attempt < 4; attempt += 1) {
      FakeWebSocket.last.accept();
      FakeWebSocket.last.drop(1011);
      waits.push(states.at(-1).retryInMs);
      t.mock.timers.tick(states.at(-1).retryInMs);
    }
    assert.deepEqual(waits, [500, 1000, 2000, 4000]);
  });

  test("a connection that stayed up starts the backoff over", (t) => {
    const { states } = started(t, { random: () => 1 });
    FakeWebSocket.last.drop(1006);
    t.mock.timers.tick(500);
    FakeWebSocket.last.drop(1006);
    t.mock.timers.tick(1000);
    FakeWebSocket.last.accept();
    t.mock.timers.tick(DEFAULTS.stableAfterMs);
    FakeWebSocket.last.drop(1001);
    assert.equal(states.at(-1).retryInMs, 500);
  });

  test("4401 stops for good and says the user is not signed in", (t) => {
    const { live, states } = started(t, { page: fakePage() });
    FakeWebSocket.last.accept();
    FakeWebSocket.last.deliver({ type: "error", code: "unauthenticated", message: "sign in" });
    FakeWebSocket.last.drop(4401);

    assert.deepEqual(states.at(-1), { state: "unauthenticated", code: 4401 });
    t.mock.timers.tick(10 * 60_000);
    live.page.dispatchEvent(new Event("online"));
    live.page.document.dispatchEvent(new Event("visibilitychange"));
    assert.equal(FakeWebSocket.made.length, 1);
    assert.equal(live.state, "unauthenticated");
  });

  for (const code of [4429, 4408]) {
    test(`${code} waits at least half the throttled delay, even when the tab becomes visible`, (t) => {
      const { live, states } = started(t, { page: fakePage(), random: () => 0 });
      FakeWebSocket.last.accept();
      FakeWebSocket.last.drop(code);

      assert.deepEqual(states.at(-1), { state: "reconnecting", retryInMs: DEFAULTS.throttledDelayMs / 2, code });
      live.page.document.dispatchEvent(new Event("visibilitychange"));
      t.mock.timers.tick(DEFAULTS.throttledDelayMs / 2 - 1);
      assert.equal(FakeWebSocket.made.length, 1);
      t.mock.timers.tick(1);
      assert.equal(FakeWebSocket.made.length, 2);
    });
  }

  test("offline it waits for the browser to be online again, then connects at once", (t) => {
    const page = fakePage({ onLine: false });
    const { live, states } = started(t, { page });
    assert.deepEqual(states, [{ state: "offline" }]);
    assert.equal(FakeWebSocket.made.length, 0);

    page.navigator.onLine = true;
    page.dispatchEvent(new Event("online"));
    assert.equal(FakeWebSocket.made.length, 1);
    assert.equal(live.state, "connecting");
  });

  test("a tab that becomes visible reconnects without waiting out the backoff", (t) => {
    const page = fakePage();
    started(t, { page, random: () => 1 });
    for (let attempt = 0; attempt < 5; attempt += 1) {
      FakeWebSocket.last.drop(1006);
      t.mock.timers.tick(60_000);
    }
    FakeWebSocket.last.drop(1006);
    const count = FakeWebSocket.made.length;

    page.document.dispatchEvent(new Event("visibilitychange"));
    assert.equal(FakeWebSocket.made.length, count + 1);
  });

  test("stop() closes the socket and nothing reconnects", async (t) => {
    const { live } = started(t);
    const socket = FakeWebSocket.last;
    socket.accept();
    live.stop();
    await microtasks();
    t.mock.timers.tick(120_000);
    assert.equal(socket.closedByClient, 1000);
    assert.equal(FakeWebSocket.made.length, 1);
  });
});

describe("heartbeat", () => {
  test("it pings while open, and a pong keeps the connection", (t) => {
    started(t);
    const socket = FakeWebSocket.last;
    socket.accept();
    for (let round = 0; round < 5; round += 1) {
      t.mock.timers.tick(DEFAULTS.pingEveryMs);
      socket.deliver({ type: "pong" });
    }
    assert.deepEqual(socket.actions(), Array(5).fill("ping"));
    assert.equal(FakeWebSocket.made.length, 1);
  });

  test("a connection that falls silent is given up and replaced, without waiting for it to close", (t) => {
    const { live, states } = started(t, { random: () => 0 });
    live.subscribe(XRP);
    const silent = FakeWebSocket.last;
    silent.accept();

    // pings at 20 s and 40 s go unanswered; at 60 s the silence is over the 45 s limit
    for (let round = 0; round < 2; round += 1) {
      t.mock.timers.tick(DEFAULTS.pingEveryMs);
    }
    assert.deepEqual(silent.actions(), ["subscribe", "ping", "ping"]);
    assert.equal(silent.closedByClient, null);
    t.mock.timers.tick(DEFAULTS.pingEveryMs);
    assert.equal(silent.closedByClient, 1005);
    assert.equal(states.at(-1).state, "reconnecting");
    t.mock.timers.tick(states.at(-1).retryInMs);
    assert.equal(FakeWebSocket.made.length, 2);
    FakeWebSocket.last.accept();
    assert.deepEqual(FakeWebSocket.last.sent, [{ action: "subscribe", ...XRP }]);
  });
});

describe("messages", () => {
  test("each server message type is an event; errors are notices; pongs and garbage are dropped", (t) => {
    const { live } = started(t);
    const seen = [];
    for (const type of ["snapshot", "bar", "alert", "collector", "arbitrage", "unsubscribed", "notice", "pong"]) {
      live.addEventListener(type, (event) => seen.push([type, event.detail]));
    }
    const socket = FakeWebSocket.last;
    socket.accept();
    const bar = { type: "bar", ...XRP, bar: { time: 60, close: 1 } };
    socket.deliver(bar);
    socket.deliver({ type: "pong" });
    socket.deliver("not json");
    socket.deliver("null");
    socket.deliver({ type: "error", code: "bad_timeframe", message: "unknown timeframe '2m'" });
    socket.deliver({ type: "collector", name: "binance", state: "backoff" });

    assert.deepEqual(seen, [
      ["bar", bar],
      ["notice", { message: "unknown timeframe '2m'", code: "bad_timeframe" }],
      ["collector", { type: "collector", name: "binance", state: "backoff" }],
    ]);
  });
});

test("socketUrl follows the page's scheme", () => {
  assert.equal(socketUrl("/ws/v1/market/", "https://example.test/watchlist/"), "wss://example.test/ws/v1/market/");
  assert.equal(socketUrl("/ws/v1/market/", "http://127.0.0.1:8000/"), "ws://127.0.0.1:8000/ws/v1/market/");
});
