// A small graphql-transport-ws client: one socket, any number of subscriptions, resumed
// after every reconnect.
//
// The socket authenticates in connection_init ({"Authorization": "Bearer <token>"}). When
// it drops (server restart, network), it reconnects with exponential backoff and jitter and
// subscribes again, each subscription asking its `variables()` afresh so it can pass a
// resume point (the gallery passes `after`: the last eventCursor it saw). A rejected token
// is not retried: `onAuthFailure` is told instead.

const PROTOCOL = "graphql-transport-ws";
const BACKOFF_BASE_MS = 300;
const BACKOFF_CAP_MS = 8000;
const PING_EVERY_MS = 20000;
const PONG_WITHIN_MS = 10000;
// Close codes that mean the token (or the request) is wrong: retrying cannot help.
const FINAL_CODES = new Set([4400, 4401, 4403]);

export class LiveConnection {
  /**
   * @param {string} url ws:// or wss:// URL of /graphql
   * @param {() => string|null} token the bearer token to send
   * @param {{onState?: (state: string) => void, onAuthFailure?: (reason: string) => void}} hooks
   */
  constructor(url, token, hooks = {}) {
    this.url = url;
    this.token = token;
    this.hooks = hooks;
    this.subscriptions = new Map();
    this.nextId = 1;
    this.socket = null;
    this.acknowledged = false;
    this.attempt = 0;
    this.closed = false;
    this.retryTimer = null;
    this.pingTimer = null;
    this.pongTimer = null;
  }

  /** Subscribe; `sink` has next(data), error(ApiError-like list) and complete(). Returns an
   * unsubscribe function. */
  subscribe(query, variables, sink) {
    const id = String(this.nextId++);
    this.subscriptions.set(id, { query, variables, sink });
    if (this.acknowledged) this.sendSubscribe(id);
    else this.ensureOpen();
    return () => {
      if (this.subscriptions.delete(id) && this.acknowledged) this.send({ id, type: "complete" });
    };
  }

  /** Close for good (sign-out). */
  close() {
    this.closed = true;
    this.subscriptions.clear();
    clearTimeout(this.retryTimer);
    this.stopPinging();
    if (this.socket) this.socket.close(1000, "bye");
    this.setState("closed");
  }

  // --- internals -------------------------------------------------------------------------

  setState(state) {
    if (this.hooks.onState) this.hooks.onState(state);
  }

  ensureOpen() {
    if (this.closed || this.socket || this.retryTimer) return;
    this.open();
  }

  open() {
    this.retryTimer = null;
    this.acknowledged = false;
    this.setState(this.attempt ? "reconnecting" : "connecting");
    const socket = new WebSocket(this.url, PROTOCOL);
    this.socket = socket;
    socket.onopen = () => {
      const payload = { Authorization: `Bearer ${this.token()}` };
      this.send({ type: "connection_init", payload });
    };
    socket.onmessage = (event) => this.receive(socket, event.data);
    socket.onclose = (event) => this.dropped(socket, event);
  }

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
    }
  }

  sendSubscribe(id) {
    const sub = this.subscriptions.get(id);
    const variables = typeof sub.variables === "function" ? sub.variables() : sub.variables;
    this.send({ id, type: "subscribe", payload: { query: sub.query, variables } });
  }

  receive(socket, raw) {
    if (socket !== this.socket) return;
    let message;
    try {
      message = JSON.parse(raw);
    } catch {
      socket.close(4400, "invalid message");
      return;
    }
    const sub = message.id ? this.subscriptions.get(message.id) : null;
    switch (message.type) {
      case "connection_ack":
        this.acknowledged = true;
        this.attempt = 0;
        this.setState("live");
        this.startPinging();
        for (const id of this.subscriptions.keys()) this.sendSubscribe(id);
        break;
      case "ping":
        this.send({ type: "pong" });
        break;
      case "pong":
        clearTimeout(this.pongTimer);
        break;
      case "next":
        if (sub) sub.sink.next(message.payload);
        break;
      case "error":
        if (sub) {
          this.subscriptions.delete(message.id);
          sub.sink.error(message.payload);
        }
        break;
      case "complete":
        if (sub) {
          this.subscriptions.delete(message.id);
          sub.sink.complete();
        }
        break;
      default:
        break;
    }
  }

  dropped(socket, event) {
    if (socket !== this.socket) return;
    this.socket = null;
    this.acknowledged = false;
    this.stopPinging();
    if (this.closed) return;
    if (FINAL_CODES.has(event.code)) {
      this.closed = true;
      this.setState("closed");
      if (this.hooks.onAuthFailure) this.hooks.onAuthFailure(event.reason || `closed ${event.code}`);
      return;
    }
    const delay = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
    this.attempt += 1;
    this.setState("reconnecting");
    this.retryTimer = setTimeout(() => this.open(), delay / 2 + Math.random() * (delay / 2));
  }

  // A socket can die without a close event (a laptop's network goes away): ping the server
  // now and then, and reconnect when no pong comes back.
  startPinging() {
    this.stopPinging();
    this.pingTimer = setInterval(() => {
      this.send({ type: "ping" });
      clearTimeout(this.pongTimer);
      this.pongTimer = setTimeout(() => {
        if (this.socket) this.socket.close(4408, "no pong");
      }, PONG_WITHIN_MS);
    }, PING_EVERY_MS);
  }

  stopPinging() {
    clearInterval(this.pingTimer);
    clearTimeout(this.pongTimer);
  }
}
