// The connection to /chat: one WebSocket at a time, reconnect with backoff, request/reply by
// `ref`, and a liveness check. It knows JSON frames, not rooms or names (see app.js for that).

/** ws:// or wss:// to this page's own host, so the page works behind any host name or proxy. */
export function chatUrl(loc = location, token = '') {
  const base = (loc.protocol === 'https:' ? 'wss://' : 'ws://') + loc.host + '/chat';
  return token ? base + '?token=' + encodeURIComponent(token) : base;
}

/**
 * The access token in a page address (`?token=` or `#token=`) and the address without it, for
 * `history.replaceState`; `{token: '', clean: null}` when there is none. Other parameters
 * (`?backoff=`) are kept as they were.
 */
export function takeToken(href) {
  const url = new URL(href);
  const hash = new URLSearchParams(url.hash.slice(1));
  const token = url.searchParams.get('token') || hash.get('token') || '';
  if (!url.searchParams.has('token') && !hash.has('token')) return { token: '', clean: null };
  url.searchParams.delete('token');
  hash.delete('token');
  const rest = hash.toString();
  url.hash = rest ? '#' + rest : '';
  return { token, clean: url.pathname + url.search + url.hash };
}

/**
 * Whether `token` is a JWT whose `exp` has passed by the page's clock. Only a hint for when to
 * ask for a fresh one (the server decides, with its leeway); false for anything that is not a
 * JWT with a numeric `exp` (a file token never expires).
 */
export function tokenExpired(token, now = Date.now()) {
  const parts = String(token).split('.');
  if (parts.length !== 3) return false;
  try {
    const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4)));
    return typeof claims?.exp === 'number' && claims.exp * 1000 <= now;
  } catch {
    return false;
  }
}

/**
 * Delay before reconnect attempt number `attempt` (0-based): "full jitter", a uniform random
 * wait between 0 and min(cap, base * 2^attempt). When a server restarts, every client loses
 * its socket in the same instant; the random spread keeps them from all coming back in the
 * same second (AWS Architecture Blog, "Exponential Backoff And Jitter", 2015).
 */
export function backoffDelay(attempt, base, cap, random = Math.random) {
  const ceiling = Math.min(cap, base * 2 ** Math.min(attempt, 20));
  return Math.floor(random() * ceiling);
}

export class Connection {
  /**
   * @param {string | (() => string)} url  a function is asked again before every attempt (the
   *   token in it can change)
   * @param {{base?: number, cap?: number, idleMs?: number, replyMs?: number}} opts
   *   base/cap: backoff in ms (250 / 10000). idleMs: after this long without any frame from
   *   the server the client sends a cheap request (`rooms`); replyMs: if nothing at all comes
   *   back within this time the socket is considered dead. Phones switching networks keep
   *   half-open sockets that never fire `close`, and this is the only way to notice.
   */
  constructor(url, opts = {}) {
    this.url = url;
    this.base = opts.base ?? 250;
    this.cap = opts.cap ?? 10000;
    this.idleMs = opts.idleMs ?? 25000;
    this.replyMs = opts.replyMs ?? 10000;
    this.ws = null;
    this.state = 'connecting';
    this.attempt = 0;
    this.retryTimer = 0;
    this.retryAt = 0;
    this.everOpen = false;
    this.held = false; // a 'down' handler asked to wait (hold) instead of retrying
    this.lastHeard = 0;
    this.probeSentAt = 0;
    this.handlers = {};
    this.waiting = new Map();
    // Refs only have to be unique per connection; a per-page prefix also keeps them unique
    // across reconnects so a late reply can never be matched to a newer request.
    this.refPrefix = Math.random().toString(36).slice(2, 8) + '-';
    this.refCount = 0;
    // The server allows 10 messages/s with bursts of 20 per connection and drops what goes
    // over (PROTOCOL.md, limits). The page paces itself a little below that, so a reconnect
    // that rejoins many rooms at once, or a fast typist, never loses a message to the limit.
    this.rate = opts.rate ?? 8;
    this.burst = opts.burst ?? 16;
    this.tokens = this.burst;
    this.refilled = 0;
    this.outbox = [];
    this.flushTimer = 0;
    setInterval(() => this.#checkAlive(), 1000);
  }

  on(type, fn) { (this.handlers[type] ||= []).push(fn); }
  #emit(type, ...args) { for (const fn of this.handlers[type] || []) fn(...args); }

  #setState(state) {
    this.state = state;
    this.#emit('state', state);
  }

  start() { this.#open(); }

  nextRef() { return this.refPrefix + (++this.refCount); }

  get online() { return this.ws !== null && this.ws.readyState === WebSocket.OPEN; }

  /**
   * Sends one message, at once or as soon as the pacing allows; false if there is no open
   * socket (the caller decides whether to keep it for later).
   */
  send(obj) {
    if (!this.online) return false;
    this.outbox.push(JSON.stringify(obj));
    this.#flush();
    return true;
  }

  #flush() {
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.refilled) * this.rate) / 1000);
    this.refilled = now;
    while (this.outbox.length && this.tokens >= 1) {
      this.ws.send(this.outbox.shift());
      this.tokens -= 1;
    }
    if (this.outbox.length && !this.flushTimer) {
      const wait = Math.ceil(((1 - this.tokens) * 1000) / this.rate);
      this.flushTimer = setTimeout(() => {
        this.flushTimer = 0;
        if (this.online) this.#flush();
      }, wait);
    }
  }

  /**
   * Sends `obj` with a fresh ref and resolves with the server's reply carrying that ref
   * (rejects with an Error whose `.code` is the server's error code, or 'offline'/'timeout').
   */
  request(obj, timeoutMs = 15000) {
    const ref = this.nextRef();
    return new Promise((resolve, reject) => {
      if (!this.send({ ...obj, ref })) {
        reject(Object.assign(new Error('not connected'), { code: 'offline' }));
        return;
      }
      const timer = setTimeout(() => {
        this.waiting.delete(ref);
        reject(Object.assign(new Error('no answer'), { code: 'timeout' }));
      }, timeoutMs);
      this.waiting.set(ref, { resolve, reject, timer });
    });
  }

  /** The session is usable (logged in and so on): the next drop starts again at the short delay. */
  markHealthy() { this.attempt = 0; }

  /**
   * Called from a 'down' handler: do not schedule the next attempt; `resume()` opens a new
   * socket at once, and until then the state is `state` ('refreshing', 'expired').
   */
  hold(state) {
    this.held = true;
    this.#setState(state);
  }

  resume() {
    if (!this.held) return;
    this.held = false;
    this.#open();
  }

  /** Skip the rest of the backoff wait (the browser says the network is back). */
  retryNow() {
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = 0;
      this.#open();
    }
  }

  #open() {
    this.retryTimer = 0;
    this.#setState(this.everOpen ? 'reconnecting' : 'connecting');
    // 'wschat.v1' names the protocol version this page speaks (PROTOCOL.md); /chat selects
    // it. A server that did not name it in its answer would make the browser fail the
    // handshake, which is what we want from a server that speaks something else.
    let ws;
    try {
      ws = new WebSocket(typeof this.url === 'function' ? this.url() : this.url, ['wschat.v1']);
    } catch (e) {
      this.#scheduleRetry();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.everOpen = true;
      this.tokens = this.burst; // the server's bucket is per connection and starts full
      this.refilled = performance.now();
      this.outbox = [];
      this.lastHeard = Date.now();
      this.probeSentAt = 0;
      this.#setState('online');
      this.#emit('open');
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      this.lastHeard = Date.now();
      this.probeSentAt = 0;
      if (typeof ev.data !== 'string') return;
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      if (msg === null || typeof msg !== 'object') return;
      let awaited = false;
      if (msg.ref !== undefined && this.waiting.has(msg.ref)) {
        const w = this.waiting.get(msg.ref);
        this.waiting.delete(msg.ref);
        clearTimeout(w.timer);
        awaited = true;
        if (msg.type === 'error') {
          w.reject(Object.assign(new Error(msg.message || msg.code), { code: msg.code, reply: msg }));
        } else {
          w.resolve(msg);
        }
      }
      this.#emit('message', msg, awaited);
    };
    ws.onerror = () => { /* a close event always follows */ };
    ws.onclose = (ev) => { if (this.ws === ws) this.#lost({ code: ev.code, reason: ev.reason }); };
  }

  /** `why`: the close code and reason, `{code: 0}` when the liveness check gave up. */
  #lost(why = { code: 0, reason: '' }) {
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(); } catch { /* already closed */ }
    }
    for (const w of this.waiting.values()) {
      clearTimeout(w.timer);
      w.reject(Object.assign(new Error('connection lost'), { code: 'offline' }));
    }
    this.waiting.clear();
    this.outbox = [];
    clearTimeout(this.flushTimer);
    this.flushTimer = 0;
    this.#emit('down', why);
    if (!this.held) this.#scheduleRetry();
  }

  #scheduleRetry() {
    const delay = backoffDelay(this.attempt++, this.base, this.cap);
    this.retryAt = Date.now() + delay;
    this.#setState('reconnecting');
    this.retryTimer = setTimeout(() => this.#open(), delay);
  }

  #checkAlive() {
    if (!this.online) return;
    const now = Date.now();
    if (this.probeSentAt && now - this.probeSentAt > this.replyMs) {
      this.#lost();
    } else if (!this.probeSentAt && now - this.lastHeard > this.idleMs) {
      this.probeSentAt = now;
      this.send({ type: 'rooms', ref: this.nextRef() });
    }
  }
}
