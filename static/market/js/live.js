// The live market-data WebSocket: one connection, one subscription at a time, kept alive.
//
// It reconnects with exponential backoff and jitter when the socket drops (so a restarted server is
// not hit by every browser at once), resubscribes after each reconnect (the server then sends a fresh
// snapshot, which fills what was missed), pings to notice dead connections that never closed, and
// reconnects at once when the browser comes back online or the tab becomes visible.
//
// Events (CustomEvent, payload in `detail`):
//   "status"   {state: "connecting" | "live" | "reconnecting" | "offline", retryInMs?}
//   "snapshot" the server's snapshot message
//   "bar"      the server's bar message
//   "notice"   {message}: the server rejected something (unknown instrument, ...)

const PING_EVERY_MS = 20_000;
const SILENCE_LIMIT_MS = 45_000;

export class LiveFeed extends EventTarget {
  constructor(url, { minDelayMs = 500, maxDelayMs = 30_000 } = {}) {
    super();
    this.url = url;
    this.minDelayMs = minDelayMs;
    this.maxDelayMs = maxDelayMs;
    this.socket = null;
    this.subscription = null; // {instrument, timeframe} the page wants
    this.attempt = 0;
    this.retryTimer = null;
    this.pingTimer = null;
    this.lastMessageAt = 0;
    this.state = "connecting";
  }

  start() {
    window.addEventListener("online", () => this.reconnectNow());
    window.addEventListener("offline", () => this.setState("offline"));
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") {
        this.reconnectNow();
      }
    });
    this.connect();
  }

  /** Follow `instrument`/`timeframe` from now on (unsubscribing from the previous series). */
  follow(instrument, timeframe) {
    const previous = this.subscription;
    if (previous && previous.instrument === instrument && previous.timeframe === timeframe) {
      return;
    }
    this.subscription = { instrument, timeframe };
    if (this.isOpen()) {
      if (previous) {
        this.send({ action: "unsubscribe", ...previous });
      }
      this.send({ action: "subscribe", instrument, timeframe });
    }
  }

  isOpen() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (!navigator.onLine) {
      this.setState("offline");
      return;
    }
    this.setState(this.attempt === 0 ? "connecting" : "reconnecting");
    let socket;
    try {
      socket = new WebSocket(this.url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.attempt = 0;
      this.lastMessageAt = Date.now();
      this.setState("live");
      this.startPinging();
      if (this.subscription) {
        this.send({ action: "subscribe", ...this.subscription });
      }
    });
    socket.addEventListener("message", (event) => this.onMessage(event));
    socket.addEventListener("close", () => {
      if (this.socket !== socket) {
        return; // an old socket we already replaced
      }
      this.socket = null;
      this.stopPinging();
      this.scheduleReconnect();
    });
    // "error" is always followed by "close", which does the work.
  }

  reconnectNow() {
    if (this.socket === null) {
      this.attempt = 0;
      this.connect();
    }
  }

  scheduleReconnect() {
    if (!navigator.onLine) {
      this.setState("offline");
      return;
    }
    const ceiling = Math.min(this.maxDelayMs, this.minDelayMs * 2 ** this.attempt);
    const delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    this.attempt += 1;
    this.setState("reconnecting", { retryInMs: delay });
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  startPinging() {
    this.stopPinging();
    this.pingTimer = setInterval(() => {
      if (Date.now() - this.lastMessageAt > SILENCE_LIMIT_MS) {
        // Nothing heard, not even a pong: the connection is dead without having closed.
        this.socket?.close();
        return;
      }
      this.send({ action: "ping" });
    }, PING_EVERY_MS);
  }

  stopPinging() {
    clearInterval(this.pingTimer);
    this.pingTimer = null;
  }

  send(message) {
    if (this.isOpen()) {
      this.socket.send(JSON.stringify(message));
    }
  }

  onMessage(event) {
    this.lastMessageAt = Date.now();
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    switch (message.type) {
      case "snapshot":
      case "bar":
        this.dispatchEvent(new CustomEvent(message.type, { detail: message }));
        break;
      case "error":
        this.dispatchEvent(new CustomEvent("notice", { detail: { message: message.message } }));
        break;
      default:
        break; // pong, unsubscribed
    }
  }

  setState(state, extra = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("status", { detail: { state, ...extra } }));
  }
}

/** The WebSocket URL for a path on this site (ws: or wss: as the page itself). */
export function socketUrl(path) {
  const url = new URL(path, window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.toString();
}
