// The market WebSocket (/ws/v1/market/, docs/websocket.md) for every page: one connection that
// stays up and keeps what the page follows (bar series and topic channels) subscribed.
//
// - Reconnects with exponential backoff and jitter when the socket drops, so that a restarted
//   server is not hit by every browser at once. The backoff resets only after a connection has
//   stayed up for a while: a server that accepts and then closes at once is not hammered.
// - Resubscribes everything after each reconnect; the server then sends fresh snapshots, which
//   fill what was missed.
// - Pings to notice a connection that died without closing, and gives it up itself when nothing
//   (not even a pong) has been heard for a while: a dead TCP connection can take minutes to close.
// - Close codes: 4401 (not authenticated) stops for good and says so, since retrying cannot help
//   until the user signs in; 4429 (too many messages) and 4408 (did not read) wait longer first.
// - Reconnects at once when the browser comes back online or the tab becomes visible again.
//
// Events (CustomEvent, payload in `detail`):
//   "status"  {state, retryInMs?, code?}; state is one of "connecting", "live", "reconnecting",
//             "offline", "unauthenticated"
//   "notice"  {message, code}: the server refused something (an `error` message)
//   and one event per other server message type ("snapshot", "bar", "alert", "collector",
//   "arbitrage", "subscribed", "unsubscribed"), with the message as sent.
//
// No DOM needed: the page (window) is optional, and the WebSocket class, the random source and
// the clock can be handed in, so that the logic runs under Node's test runner as in a browser.

export const CLOSE_UNAUTHENTICATED = 4401;
export const CLOSE_TOO_SLOW = 4408;
export const CLOSE_RATE_LIMITED = 4429;
const THROTTLING_CLOSES = new Set([CLOSE_TOO_SLOW, CLOSE_RATE_LIMITED]);
const OPEN = 1; // WebSocket.OPEN, the same in every implementation

export const DEFAULTS = {
  minDelayMs: 500,
  maxDelayMs: 30_000,
  // After a 4429/4408 the server asked for less: wait at least this long before coming back.
  throttledDelayMs: 10_000,
  // A connection that stays up this long counts as healthy: the next drop starts the backoff over.
  stableAfterMs: 10_000,
  pingEveryMs: 20_000,
  silenceLimitMs: 45_000,
};

/**
 * How long to wait before reconnect attempt number `attempt` (0 for the first retry): a ceiling
 * that doubles from minDelayMs up to maxDelayMs, never below floorMs, and a random point in its
 * upper half ("equal jitter": spread out, but never much sooner than the ceiling says).
 */
export function backoffDelay(attempt, { minDelayMs, maxDelayMs, floorMs = 0 }, random = Math.random) {
  const ceiling = Math.max(floorMs, Math.min(maxDelayMs, minDelayMs * 2 ** attempt));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/** A subscription's identity: one per bar series, one per channel. */
export function topicKey(topic) {
  return "channel" in topic ? `channel:${topic.channel}` : `series:${topic.instrument}:${topic.timeframe}`;
}

export class LiveSocket extends EventTarget {
  /**
   * @param {string} url the ws:// or wss:// URL (socketUrl makes one from a path)
   * @param {object} [options] DEFAULTS' timings, and for tests: `WebSocket` (the class to open
   *   sockets with), `random`, `now`, `page` (the window whose online/visibility events to follow,
   *   null for none)
   */
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.options = { ...DEFAULTS, ...options };
    this.Socket = options.WebSocket ?? globalThis.WebSocket;
    this.random = options.random ?? Math.random;
    this.now = options.now ?? (() => Date.now());
    this.page = options.page === undefined ? (globalThis.window ?? null) : options.page;
    this.topics = new Map(); // topicKey -> topic, in the order they were asked for
    this.socket = null;
    this.attempt = 0;
    this.openedAt = 0;
    this.notBefore = 0; // no reconnecting before this time (a throttling close)
    this.retryTimer = null;
    this.pingTimer = null;
    this.lastMessageAt = 0;
    this.stopped = true;
    this.state = "connecting";
  }

  start() {
    if (!this.stopped) {
      return;
    }
    this.stopped = false;
    if (this.page) {
      this.page.addEventListener("online", () => this.reconnectNow());
      this.page.addEventListener("offline", () => this.setState("offline"));
      this.page.document?.addEventListener("visibilitychange", () => {
        if (this.page.document.visibilityState === "visible") {
          this.reconnectNow();
        }
      });
    }
    this.connect();
  }

  /** Close for good (until start() again): no reconnecting, no pings. */
  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.stopPinging();
    const socket = this.socket;
    this.socket = null;
    socket?.close(1000);
  }

  // --- What the page follows -------------------------------------------------------------------

  /** Follow a bar series ({instrument, timeframe}) or a channel ({channel}); once is enough. */
  subscribe(topic) {
    const key = topicKey(topic);
    if (!this.topics.has(key)) {
      this.topics.set(key, topic);
      this.send({ action: "subscribe", ...topic });
    }
  }

  unsubscribe(topic) {
    if (this.topics.delete(topicKey(topic))) {
      this.send({ action: "unsubscribe", ...topic });
    }
  }

  /** Follow exactly these bar series from now on (channels stay): the others are unsubscribed first. */
  followSeries(series) {
    const next = new Set(series.map(topicKey));
    for (const [key, topic] of [...this.topics]) {
      if (!("channel" in topic) && !next.has(key)) {
        this.unsubscribe(topic);
      }
    }
    series.forEach((topic) => this.subscribe(topic));
  }

  // --- The connection --------------------------------------------------------------------------

  isOpen() {
    return this.socket !== null && this.socket.readyState === OPEN;
  }

  online() {
    return this.page?.navigator?.onLine ?? true;
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.stopped) {
      return;
    }
    if (!this.online()) {
      this.setState("offline");
      return;
    }
    this.setState(this.attempt === 0 ? "connecting" : "reconnecting");
    let socket;
    try {
      socket = new this.Socket(this.url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    socket.addEventListener("open", () => this.onOpen(socket));
    socket.addEventListener("message", (event) => this.onMessage(event));
    // "error" is always followed by "close", which does the work.
    socket.addEventListener("close", (event) => this.onClose(socket, event.code));
  }

  onOpen(socket) {
    if (this.socket !== socket) {
      return;
    }
    this.openedAt = this.now();
    this.lastMessageAt = this.openedAt;
    this.setState("live");
    this.startPinging(socket);
    for (const topic of this.topics.values()) {
      this.send({ action: "subscribe", ...topic });
    }
  }

  onClose(socket, code) {
    if (this.socket !== socket) {
      return; // one we already gave up (silent) or replaced
    }
    this.socket = null;
    this.stopPinging();
    if (this.openedAt !== 0 && this.now() - this.openedAt >= this.options.stableAfterMs) {
      this.attempt = 0;
    }
    this.openedAt = 0;
    if (code === CLOSE_UNAUTHENTICATED) {
      this.stopped = true;
      this.setState("unauthenticated", { code });
      return;
    }
    this.scheduleReconnect(THROTTLING_CLOSES.has(code) ? this.options.throttledDelayMs : 0, code);
  }

  /** Reconnect without waiting (back online, tab visible again), unless the server asked to wait. */
  reconnectNow() {
    if (this.socket === null && !this.stopped && this.now() >= this.notBefore) {
      this.attempt = 0;
      this.connect();
    }
  }

  scheduleReconnect(floorMs = 0, code = undefined) {
    if (!this.online()) {
      this.setState("offline");
      return;
    }
    const delay = backoffDelay(this.attempt, { ...this.options, floorMs }, this.random);
    this.notBefore = floorMs > 0 ? this.now() + delay : 0;
    this.attempt += 1;
    this.setState("reconnecting", code === undefined ? { retryInMs: delay } : { retryInMs: delay, code });
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  startPinging(socket) {
    this.stopPinging();
    this.pingTimer = setInterval(() => {
      if (this.socket !== socket) {
        return; // a late tick for a socket already given up
      }
      if (this.now() - this.lastMessageAt > this.options.silenceLimitMs) {
        // Nothing heard, not even a pong: the connection is dead without having closed. Give it
        // up now rather than wait for the browser to notice.
        this.onClose(socket, undefined);
        socket.close();
        return;
      }
      this.send({ action: "ping" });
    }, this.options.pingEveryMs);
  }

  stopPinging() {
    clearInterval(this.pingTimer);
    this.pingTimer = null;
  }

  /** Send now if open; otherwise drop it (subscriptions are sent again on every open). */
  send(message) {
    if (this.isOpen()) {
      this.socket.send(JSON.stringify(message));
    }
  }

  onMessage(event) {
    this.lastMessageAt = this.now();
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    if (message === null || typeof message.type !== "string" || message.type === "pong") {
      return;
    }
    if (message.type === "error") {
      this.dispatchEvent(new CustomEvent("notice", { detail: { message: message.message, code: message.code } }));
    } else {
      this.dispatchEvent(new CustomEvent(message.type, { detail: message }));
    }
  }

  setState(state, extra = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("status", { detail: { state, ...extra } }));
  }
}

/** The WebSocket URL for a path on this site (ws: or wss: as the page itself). */
export function socketUrl(path, base = globalThis.location.href) {
  const url = new URL(path, base);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.toString();
}

export const CONNECTION_TEXT = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  offline: "Offline",
  unauthenticated: "Not signed in",
};

const CONNECTION_TITLE = {
  live: "Receiving live updates",
  unauthenticated: "Live updates need you to sign in; reload the page after signing in",
};

/** Show a connection state in a status element (a `.connection-text` inside it carries the words). */
export function showConnection(element, state) {
  if (!element) {
    return;
  }
  element.dataset.state = state;
  element.title = CONNECTION_TITLE[state] ?? "Live updates paused; the page shows the last data received";
  const text = element.querySelector(".connection-text");
  if (text) {
    text.textContent = CONNECTION_TEXT[state] ?? state;
  }
}
