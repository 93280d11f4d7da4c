// A stand-in for the browser's WebSocket class that a test hands to LiveSocket: it records what the
// client sends, and the test plays the server (open, send a message, close with a code). Events are
// dispatched as a browser does, except that a client-side close() reports its "close" on the next
// microtask, as the closing handshake would later.

export class FakeWebSocket extends EventTarget {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSING = 2;
  static CLOSED = 3;

  /** Every socket made, oldest first (reset per test with FakeWebSocket.reset()). */
  static made = [];

  static reset() {
    FakeWebSocket.made = [];
  }

  static get last() {
    return FakeWebSocket.made[FakeWebSocket.made.length - 1];
  }

  constructor(url) {
    super();
    this.url = url;
    this.readyState = FakeWebSocket.CONNECTING;
    this.sent = [];
    this.closedByClient = null;
    FakeWebSocket.made.push(this);
  }

  send(text) {
    if (this.readyState !== FakeWebSocket.OPEN) {
      throw new Error(`send() on a socket in state ${this.readyState}`);
    }
    this.sent.push(JSON.parse(text));
  }

  close(code = 1005) {
    if (this.readyState >= FakeWebSocket.CLOSING) {
      return;
    }
    this.readyState = FakeWebSocket.CLOSING;
    this.closedByClient = code;
    queueMicrotask(() => this.finishClose(code));
  }

  // --- The server's side ---------------------------------------------------------------------------

  accept() {
    this.readyState = FakeWebSocket.OPEN;
    this.dispatchEvent(new Event("open"));
  }

  deliver(message) {
    const data = typeof message === "string" ? message : JSON.stringify(message);
    this.dispatchEvent(new MessageEvent("message", { data }));
  }

  /** The server closes (or the connection fails: 1006 with no open before it). */
  drop(code = 1006) {
    this.finishClose(code);
  }

  finishClose(code) {
    if (this.readyState === FakeWebSocket.CLOSED) {
      return;
    }
    this.readyState = FakeWebSocket.CLOSED;
    this.dispatchEvent(Object.assign(new Event("close"), { code }));
  }

  actions() {
    return this.sent.map((message) => message.action);
  }
}
