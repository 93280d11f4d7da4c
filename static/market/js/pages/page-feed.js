// The market WebSocket for pages that follow many series at once (the watchlist) or only the
// user's alert pushes (the alerts page). The chart keeps its own single-series feed (live.js).
//
// Reconnects with exponential backoff and jitter, resubscribes everything after a reconnect (the
// server then sends fresh snapshots) and pings to notice connections that died without closing.
//
// Events (CustomEvent, payload in `detail`): "status" {state}, "snapshot", "bar", "alert",
// "collector" (the server's messages as sent), "notice" {message}.

const PING_EVERY_MS = 20_000;
const SILENCE_LIMIT_MS = 45_000;

export class PageFeed extends EventTarget {
  constructor(url, { minDelayMs = 500, maxDelayMs = 30_000 } = {}) {
    super();
    this.url = url;
    this.minDelayMs = minDelayMs;
    this.maxDelayMs = maxDelayMs;
    this.wanted = new Map(); // "instrument:timeframe" -> {instrument, timeframe}
    this.channels = new Set(); // topic channels such as "collectors"
    this.socket = null;
    this.attempt = 0;
    this.retryTimer = null;
    this.pingTimer = null;
    this.lastMessageAt = 0;
    this.state = "connecting";
  }

  start() {
    window.addEventListener("online", () => this.reconnectNow());
    window.addEventListener("offline", () => this.setState("offline"));
    this.connect();
  }

  /** Follow exactly these series from now on: subscribe the new ones, unsubscribe the others. */
  followOnly(series) {
    const next = new Map(series.map((item) => [`${item.instrument}:${item.timeframe}`, item]));
    for (const [key, item] of this.wanted) {
      if (!next.has(key)) {
        this.send({ action: "unsubscribe", ...item });
      }
    }
    for (const [key, item] of next) {
      if (!this.wanted.has(key)) {
        this.send({ action: "subscribe", ...item });
      }
    }
    this.wanted = next;
  }

  /** Also follow a topic channel (docs/websocket.md): "collectors" or "arbitrage". */
  followChannel(channel) {
    if (!this.channels.has(channel)) {
      this.channels.add(channel);
      this.send({ action: "subscribe", channel });
    }
  }

  isOpen() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  connect() {
    clearTimeout(this.retryTimer);
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
      for (const item of this.wanted.values()) {
        this.send({ action: "subscribe", ...item });
      }
      for (const channel of this.channels) {
        this.send({ action: "subscribe", channel });
      }
    });
    socket.addEventListener("message", (event) => this.onMessage(event));
    socket.addEventListener("close", () => {
      if (this.socket !== socket) {
        return;
      }
      this.socket = null;
      this.stopPinging();
      this.scheduleReconnect();
    });
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
    this.setState("reconnecting");
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  startPinging() {
    this.stopPinging();
    this.pingTimer = setInterval(() => {
      if (Date.now() - this.lastMessageAt > SILENCE_LIMIT_MS) {
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
    if (["snapshot", "bar", "alert", "collector"].includes(message.type)) {
      this.dispatchEvent(new CustomEvent(message.type, { detail: message }));
    } else if (message.type === "error") {
      this.dispatchEvent(new CustomEvent("notice", { detail: { message: message.message } }));
    }
  }

  setState(state) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("status", { detail: { state } }));
  }
}

/** The WebSocket URL for a path on this site (ws: or wss: as the page itself). */
export function socketUrl(path) {
  const url = new URL(path, window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.toString();
}

/** Shows the feed's state in a `[data-connection]` element (the same look as the chart's). */
export function showConnection(element, state) {
  if (!element) {
    return;
  }
  const labels = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", offline: "Offline" };
  element.dataset.state = state;
  const text = element.querySelector(".connection-text");
  if (text) {
    text.textContent = labels[state] ?? state;
  }
}
