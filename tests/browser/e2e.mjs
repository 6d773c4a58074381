// End-to-end test of the chat page in headless Chromium against the real wschat server.
//
//   node e2e.mjs            (from tests/browser, after `npm ci` and `cargo build --release`)
//
// Environment:
//   WSCHAT_BIN        server binary (default: target/release/wschat, else target/debug/wschat)
//   CHROMIUM          browser executable (default /usr/bin/chromium)
//   ARTIFACTS         where screenshots go (default <repo>/ci-artifacts)
//   UPDATE_DOCS_SCREENSHOT=1   also copy the in-use screenshot to docs/screenshot.png (off by
//                     default so that a CI run does not modify a tracked file)
//   E2E_TIMEOUT_MS    hard limit for the whole run (default 180000)
//
// Every wait is a condition with a deadline (STEP_MS); there are no fixed sleeps. The server is
// started, restarted and stopped by this script, by PID, and nothing else is killed.

import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import WebSocket from 'ws';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const ARTIFACTS = path.resolve(process.env.ARTIFACTS || path.join(repo, 'ci-artifacts'));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const STEP_MS = 15000;
const TOTAL_MS = Number(process.env.E2E_TIMEOUT_MS || 180000);
const XSS = '<img src=x onerror=alert(1)>';

function serverBin() {
  if (process.env.WSCHAT_BIN) return path.resolve(process.env.WSCHAT_BIN);
  for (const p of ['target/release/wschat', 'target/debug/wschat']) {
    const f = path.join(repo, p);
    if (fs.existsSync(f)) return f;
  }
  throw new Error('no server binary: run cargo build --release (or set WSCHAT_BIN)');
}

// ---- small utilities ---------------------------------------------------------------------------
const t0 = Date.now();
const log = (...a) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s]`, ...a);

/** Polls `fn` until it returns a truthy value; throws `what` after `ms`. */
async function until(what, fn, ms = STEP_MS) {
  const deadline = Date.now() + ms;
  let delay = 10;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 200);
  }
}

function assert(cond, msg) { if (!cond) throw new Error('assertion failed: ' + msg); }

/** A free loopback port: bind to port 0, read it, release it. */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

function httpReady(port) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    sock.once('connect', () => { sock.destroy(); resolve(true); });
    sock.once('error', () => resolve(false));
  });
}

// ---- the server under test -----------------------------------------------------------------------
class Server {
  constructor(bin, dataDir, extraArgs = []) {
    this.bin = bin;
    this.dataDir = dataDir;
    this.extraArgs = extraArgs;
    this.proc = null;
    this.port = 0;
    this.output = '';
  }

  #spawn(port) {
    const args = ['--addr', `127.0.0.1:${port}`, '--data-dir', this.dataDir, ...this.extraArgs];
    const proc = spawn(this.bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { RUST_LOG: 'info', ...process.env } });
    const state = { proc, text: '', exited: null };
    const onData = (d) => { state.text += d; this.output += d; };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.on('exit', (code, sig) => { state.exited = { code, sig }; });
    log(`server: ${path.relative(repo, this.bin)} ${args.join(' ')} (pid ${proc.pid})`);
    return state;
  }

  /**
   * First start: `--addr 127.0.0.1:0` and read "listening on http://127.0.0.1:PORT" from its
   * output; if the server does not print that, fall back to a port picked here.
   */
  async start() {
    const s = this.#spawn(0);
    const m = await until('the "listening on http://127.0.0.1:PORT" line', () => {
      if (s.exited) return { exited: true };
      const hit = /listening on https?:\/\/127\.0\.0\.1:(\d+)/.exec(s.text);
      return hit ? { port: Number(hit[1]) } : null;
    }, 10000).catch(() => null);
    if (m && m.port) {
      this.proc = s.proc;
      this.port = m.port;
    } else {
      log('server: no "listening on" line; retrying on a port chosen by the test');
      await this.#kill(s);
      this.port = await freePort();
      await this.restart();
      return;
    }
    await until('server accepting connections', () => httpReady(this.port));
    log(`server: up on port ${this.port}`);
  }

  /** Starts again on the same port (and the same data directory). */
  async restart() {
    // The old socket may linger for a moment; retry while the new process exits at once.
    for (let i = 0; ; i += 1) {
      const s = this.#spawn(this.port);
      const ok = await until('server accepting connections', async () => (s.exited ? 'exited' : (await httpReady(this.port)) && 'up'));
      if (ok === 'up') { this.proc = s.proc; log(`server: up on port ${this.port}`); return; }
      if (i >= 20) throw new Error('server keeps exiting on restart:\n' + s.text);
      await new Promise((r) => setTimeout(r, 100 * (i + 1))); // backoff before retrying a bind
    }
  }

  async stop() {
    if (!this.proc) return;
    const p = this.proc;
    this.proc = null;
    await this.#kill({ proc: p, exited: p.exitCode !== null ? {} : null });
    log('server: stopped');
  }

  async #kill(s) {
    const p = s.proc;
    if (p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    const t = setTimeout(() => { if (p.exitCode === null) p.kill('SIGKILL'); }, 5000);
    await gone;
    clearTimeout(t);
  }
}

// ---- a TCP gate in front of the server for one page ----------------------------------------------
// Page A talks to the server through this pass-through proxy. While the gate is closed, new
// connections are refused, so the test can hold the page offline after a server restart,
// have someone else send messages, then let the page back in and check it fetched exactly
// those. Bytes are passed through untouched: the page still speaks to the real server.
class Gate {
  constructor(target) {
    this.target = target;
    this.open = true;
    this.sockets = new Set();
    this.server = net.createServer((client) => {
      if (!this.open) { client.destroy(); return; }
      const upstream = net.connect(this.target(), '127.0.0.1');
      this.sockets.add(client).add(upstream);
      const done = () => { client.destroy(); upstream.destroy(); this.sockets.delete(client); this.sockets.delete(upstream); };
      client.on('error', done).on('close', done);
      upstream.on('error', done).on('close', done);
      client.pipe(upstream);
      upstream.pipe(client);
    });
  }

  listen() {
    return new Promise((resolve) => this.server.listen(0, '127.0.0.1', () => { this.port = this.server.address().port; resolve(); }));
  }

  close() {
    for (const s of this.sockets) s.destroy();
    return new Promise((r) => this.server.close(r));
  }
}

// ---- a plain WebSocket client (the "other client" of the restart test) -----------------------------
class Bot {
  static async connect(url) {
    const b = new Bot();
    b.ws = new WebSocket(url);
    b.inbox = [];
    b.waiters = [];
    b.refs = 0;
    b.ws.on('message', (data) => {
      const m = JSON.parse(String(data));
      b.inbox.push(m);
      for (const w of [...b.waiters]) if (w.pred(m)) { b.waiters.splice(b.waiters.indexOf(w), 1); w.resolve(m); }
    });
    await new Promise((resolve, reject) => { b.ws.once('open', resolve); b.ws.once('error', reject); });
    return b;
  }

  next(what, pred, ms = STEP_MS) {
    const seen = this.inbox.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const w = { pred, resolve };
      this.waiters.push(w);
      setTimeout(() => { const i = this.waiters.indexOf(w); if (i >= 0) { this.waiters.splice(i, 1); reject(new Error('bot timed out waiting for ' + what)); } }, ms);
    });
  }

  /** Sends with a fresh ref and waits for the answer with that ref. */
  request(obj) {
    const ref = `bot-${++this.refs}`;
    this.ws.send(JSON.stringify({ ...obj, ref }));
    return this.next(`answer to ${obj.type}`, (m) => m.ref === ref);
  }

  /** Says `text` in `room`, waiting and retrying while the server says rate_limited. */
  async say(room, text) {
    const deadline = Date.now() + STEP_MS;
    for (let wait = 100; ; wait = Math.min(wait * 2, 2000)) {
      const r = await this.request({ type: 'say', room, text });
      if (r.type === 'message') return r;
      if (r.type !== 'error' || r.code !== 'rate_limited' || Date.now() > deadline) throw new Error('say failed: ' + JSON.stringify(r));
      await new Promise((res) => setTimeout(res, wait)); // the server asked us to slow down
    }
  }

  close() { this.ws.close(); }
}

// ---- page helpers ----------------------------------------------------------------------------------
const problems = [];
// Every page's WebSocket events, with times: printed when a step fails, so that a connection
// that never opened shows whether the browser saw the handshake, a frame, or nothing.
const wsEvents = [];

function watch(page, who) {
  page.on('dialog', async (d) => {
    problems.push(`${who}: a dialog opened (${d.type()}: ${d.message()})`);
    await d.dismiss().catch(() => {});
  });
  page.on('pageerror', (e) => problems.push(`${who}: uncaught error: ${e.message}`));
  page.on('websocket', (ws) => {
    const note = (what) => wsEvents.push(`[${((Date.now() - t0) / 1000).toFixed(2)}s] ${who}: ${ws.url().replace(/token=[^&]*/, 'token=...')} ${what}`);
    note('created');
    ws.on('framereceived', (f) => note(`received ${String(f.payload).slice(0, 80)}`));
    ws.on('framesent', (f) => note(`sent ${String(f.payload).slice(0, 80)}`));
    ws.on('socketerror', (e) => note(`error ${e}`));
    ws.on('close', () => note('closed'));
  });
  page.on('console', (m) => {
    if (m.type() === 'error' && !/WebSocket connection to .* failed|ERR_CONNECTION_REFUSED|ERR_CONNECTION_RESET|ERR_EMPTY_RESPONSE/.test(m.text())) {
      problems.push(`${who}: console error: ${m.text()}`);
    }
  });
}

const msgText = (page, text) => page.locator('#messages li.msg:not(.pending) .text').filter({ hasText: text });

async function seeMessage(page, text) {
  await page.locator('#messages li.msg[data-id] .text', { hasText: text }).first().waitFor({ timeout: STEP_MS });
}

async function countExact(page, text) {
  return page.$$eval('#messages li.msg .text', (els, t) => els.filter((e) => e.textContent === t).length, text);
}

async function state(page) { return page.getAttribute('#status', 'data-state'); }

async function waitState(page, want) {
  await until(`#status data-state=${want}`, async () => (await state(page)) === want);
}

async function signIn(page, name) {
  await page.locator('#name-input').waitFor({ timeout: STEP_MS });
  await page.fill('#name-input', name);
  await page.press('#name-input', 'Enter');
  await until(`${name} signed in`, async () => (await page.textContent('#me')) === name && (await state(page)) === 'online' && !(await page.isHidden('#app')));
}

async function say(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
  await seeMessage(page, text.split('\n')[0]);
  await until(`no pending message after sending "${text}"`, async () => (await page.locator('#messages li.pending').count()) === 0);
}

/** On a narrow screen the room list is a drawer: open it first. */
async function showRooms(page) {
  if (!(await page.isVisible('#rooms-panel'))) await page.click('#toggle-rooms');
  await page.locator('#join-input').waitFor({ timeout: STEP_MS });
}

async function openRoom(page, room) {
  await showRooms(page);
  await page.fill('#join-input', room);
  await page.press('#join-input', 'Enter');
  await until(`room #${room} open`, async () => (await page.textContent('#conv-title')) === '#' + room);
}

async function clickRoom(page, room) {
  await showRooms(page);
  await page.click(`#rooms button[data-room="${room}"]`);
  await until(`room #${room} open`, async () => (await page.textContent('#conv-title')) === '#' + room);
}

async function shot(page, name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, name);
  await page.screenshot({ path: file });
  log(`screenshot: ${path.relative(repo, file)}`);
  return file;
}

// ---- the test --------------------------------------------------------------------------------------
const steps = [];
async function step(name, fn) {
  const s = Date.now();
  log(`▶ ${name}`);
  await fn();
  steps.push(name);
  log(`✔ ${name} (${Date.now() - s} ms)`);
}

let inUse = null; // the screenshot that goes to docs/screenshot.png

async function main() {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wschat-e2e-'));
  const server = new Server(serverBin(), dataDir);
  // The JWT step's own server: tokens required, HS256 with a secret made here.
  const jwtDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wschat-e2e-jwt-'));
  let jwtServer = null;
  let browser;
  let gate;
  let aborted = false;
  const cleanup = async () => {
    await browser?.close().catch(() => {});
    await gate?.close().catch(() => {});
    await server.stop().catch(() => {});
    await jwtServer?.stop().catch(() => {});
    fs.rmSync(dataDir, { recursive: true, force: true });
    fs.rmSync(jwtDir, { recursive: true, force: true });
  };
  // Stopped from outside (CI timeout, Ctrl-C): still stop the server this script started.
  for (const sig of ['SIGTERM', 'SIGINT']) {
    process.once(sig, async () => {
      aborted = true;
      console.error(`E2E FAILED: interrupted by ${sig}`);
      await cleanup();
      process.exit(1);
    });
  }
  const killer = setTimeout(async () => {
    aborted = true;
    console.error(`E2E FAILED: the whole run took longer than ${TOTAL_MS} ms`);
    await cleanup();
    process.exit(1);
  }, TOTAL_MS);

  try {
    await server.start();
    const direct = `http://127.0.0.1:${server.port}`;
    gate = new Gate(() => server.port);
    await gate.listen();
    const viaGate = `http://127.0.0.1:${gate.port}`;

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    // Separate contexts: each person has their own localStorage (the remembered name).
    const ctxA = await browser.newContext({ viewport: { width: 1200, height: 760 }, colorScheme: 'light' });
    const ctxB = await browser.newContext({ viewport: { width: 390, height: 760 }, colorScheme: 'dark' });
    const A = await ctxA.newPage();
    const B = await ctxB.newPage();
    watch(A, 'alice');
    watch(B, 'bob');

    await step('page loads with the CSP the server sends and a visible connection state', async () => {
      const res = await A.goto(`${viaGate}/?backoff=100`);
      assert(res && res.ok(), `GET / answered ${res && res.status()}`);
      const csp = res.headers()['content-security-policy'] || '';
      assert(/default-src 'self'/.test(csp), `Content-Security-Policy with default-src 'self' expected, got "${csp}"`);
      assert(/connect-src 'self'(;|$)/.test(csp), `connect-src 'self' only expected, got "${csp}"`);
      const ctype = (await A.request.get(`${viaGate}/app.js`)).headers()['content-type'] || '';
      assert(/javascript/.test(ctype), `app.js must be served as JavaScript (module scripts need it), got "${ctype}"`);
      assert(['connecting', 'online'].includes(await state(A)), 'status shows connecting or online');
      assert(await A.isVisible('#status'), 'status is visible');
      const unlabelled = await A.$$eval('input, textarea', (els) => els.filter((e) => !e.labels || e.labels.length === 0).map((e) => e.id));
      assert(unlabelled.length === 0, `inputs without a label: ${unlabelled.join(', ')}`);
    });

    await step('two people sign in and chat in lobby both ways (Enter sends, Shift+Enter is a new line)', async () => {
      await signIn(A, 'alice');
      await B.goto(`${direct}/?backoff=100`);
      await signIn(B, 'bob');
      await A.locator('#users [data-user="bob"]').waitFor({ timeout: STEP_MS });
      await say(A, 'Morning! Is the build green?');
      await seeMessage(B, 'Morning! Is the build green?');
      await say(B, 'Yes, all tests pass.');
      await seeMessage(A, 'Yes, all tests pass.');
      await A.fill('#text', 'Two lines:');
      await A.press('#text', 'Shift+Enter');
      await A.type('#text', 'this is the second');
      await A.press('#text', 'Enter');
      await seeMessage(B, 'this is the second');
      assert((await countExact(B, 'Two lines:\nthis is the second')) === 1, 'Shift+Enter kept the new line');
      assert((await A.textContent('#conv-title')) === '#lobby', 'alice is in #lobby');
    });

    await step('a name in use is refused in plain words', async () => {
      const ctxC = await browser.newContext({ viewport: { width: 800, height: 600 } });
      const C = await ctxC.newPage();
      watch(C, 'carol-page');
      await C.goto(`${direct}/`);
      await C.fill('#name-input', 'BOB');
      await C.press('#name-input', 'Enter');
      await until('name_taken shown', async () => /already using that name/.test(await C.textContent('#name-error')));
      await ctxC.close();
    });

    await step('alice creates #dev, bob joins it, they talk there', async () => {
      await openRoom(A, 'dev');
      await openRoom(B, 'dev');
      await A.locator('#users [data-user="bob"]').waitFor({ timeout: STEP_MS });
      await say(B, 'Joined #dev, what is up?');
      await seeMessage(A, 'Joined #dev, what is up?');
      await say(A, 'Reviewing the reconnect code.');
      await seeMessage(B, 'Reviewing the reconnect code.');
    });

    await step('a message in a room you are not looking at shows an unread badge', async () => {
      await clickRoom(B, 'lobby');
      await say(B, 'Lunch at noon?');
      await A.locator('#rooms button[data-room="lobby"] .badge', { hasText: '1' }).waitFor({ timeout: STEP_MS });
      await clickRoom(B, 'dev');
    });

    await step('markup in a message is shown as text and runs nothing', async () => {
      await say(B, XSS);
      await seeMessage(A, XSS);
      assert((await countExact(A, XSS)) === 1, 'the XSS string is shown literally once');
      assert((await A.locator('#messages img').count()) === 0, 'no <img> element was created');
    });

    await step('direct messages: alice writes to bob from the people list, bob answers', async () => {
      await A.click('#users button[data-user="bob"]');
      await until('DM view', async () => (await A.textContent('#conv-title')) === 'Direct messages with bob');
      await say(A, 'psst, can you review my PR?');
      await B.locator('#toggle-rooms .badge', { hasText: '1' }).waitFor({ timeout: STEP_MS });
      await B.locator('#dms button[data-dm="alice"] .badge').waitFor({ state: 'attached', timeout: STEP_MS });
      assert((await msgText(B, 'psst, can you review my PR?').count()) === 0, 'the DM is not shown in a room');
      await showRooms(B); // narrow screen: the list is a drawer
      await B.click('#dms button[data-dm="alice"]');
      await seeMessage(B, 'psst, can you review my PR?');
      await say(B, 'Sure, after lunch.');
      await seeMessage(A, 'Sure, after lunch.');
      const overflow = await B.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
      assert(!overflow, 'no horizontal scrolling on a 390 px wide screen');
      await shot(B, 'bob-phone-dark.png');
      await clickRoom(A, 'dev');
    });

    await step('older history loads when scrolling up', async () => {
      const bot = await Bot.connect(`ws://127.0.0.1:${server.port}/chat`);
      await bot.next('welcome', (m) => m.type === 'welcome');
      await bot.request({ type: 'login', name: 'historian' });
      await bot.request({ type: 'join', room: 'archive' });
      for (let i = 1; i <= 70; i += 1) await bot.say('archive', `archive note ${i}`);
      bot.close();
      await openRoom(A, 'archive');
      await seeMessage(A, 'archive note 70');
      assert((await countExact(A, 'archive note 1')) === 0, 'only the latest page at first');
      await until('older page loaded', async () => {
        await A.evaluate(() => { document.getElementById('scroller').scrollTop = 0; });
        return (await countExact(A, 'archive note 1')) === 1;
      });
      await until('beginning reached', async () => !(await A.isHidden('#older-end')));
      const ids = await A.$$eval('#messages li.msg[data-id]', (els) => els.map((e) => Number(e.dataset.id)));
      assert(ids.length === 70, `70 archive messages shown, got ${ids.length}`);
      assert(ids.every((id, i) => i === 0 || id > ids[i - 1]), 'messages in id order');
      await clickRoom(A, 'dev');
    });

    await step('server restart: the page reconnects by itself and fetches exactly what it missed', async () => {
      const before = await A.$$eval('#messages li.msg[data-id]', (els) => els.length);
      gate.open = false; // the page may not come back until the others have talked
      await server.stop();
      await waitState(A, 'reconnecting');
      await shot(A, 'alice-reconnecting.png');
      // Written while offline: shown as waiting, sent once the page is back.
      await A.fill('#text', 'Written while the server was down');
      await A.press('#text', 'Enter');
      await A.locator('#messages li.pending', { hasText: 'Written while the server was down' }).waitFor({ timeout: STEP_MS });

      await server.restart();
      const dave = await Bot.connect(`ws://127.0.0.1:${server.port}/chat`);
      await dave.next('welcome', (m) => m.type === 'welcome');
      await dave.request({ type: 'login', name: 'dave' });
      await dave.request({ type: 'join', room: 'dev' });
      // More than the 50 that `joined` brings, so only `history after` can fill the gap.
      const backlog = Array.from({ length: 55 }, (_, i) => `lobby backlog ${i + 1}`);
      for (const t of backlog) await dave.say('lobby', t);
      const missed = ['Server is back after the upgrade.', 'Did anyone lose messages?', 'Ping me if so.'];
      for (const t of missed) await dave.say('dev', t);
      assert((await state(A)) === 'reconnecting', 'alice was still offline while dave talked');

      gate.open = true;
      await waitState(A, 'online');
      for (const t of missed) await seeMessage(A, t);
      await dave.next('alice\'s queued message', (m) => m.type === 'message' && m.text === 'Written while the server was down');
      await until('queued message confirmed', async () => (await A.locator('#messages li.pending').count()) === 0);
      // One more live message: once it is shown, catch-up and rejoin are both done.
      await dave.say('dev', 'Good, all here.');
      await seeMessage(A, 'Good, all here.');
      for (const t of [...missed, 'Written while the server was down', 'Good, all here.', 'Reviewing the reconnect code.', XSS]) {
        assert((await countExact(A, t)) === 1, `"${t}" shown exactly once (got ${await countExact(A, t)})`);
      }
      const ids = await A.$$eval('#messages li.msg[data-id]', (els) => els.map((e) => e.dataset.id));
      assert(new Set(ids).size === ids.length, 'no message id shown twice');
      assert(ids.length === before + missed.length + 2, `before ${before} + ${missed.length} missed + 2 = ${ids.length}`);
      await A.locator('#users [data-user="dave"]').waitFor({ timeout: STEP_MS });
      inUse = await shot(A, 'alice-desktop.png');

      // lobby: 1 unread from before + the 55 missed ones, each shown once, in id order.
      await A.locator('#rooms button[data-room="lobby"] .badge', { hasText: '56' }).waitFor({ timeout: STEP_MS });
      await clickRoom(A, 'lobby');
      for (const t of backlog) assert((await countExact(A, t)) === 1, `"${t}" shown exactly once in lobby (got ${await countExact(A, t)})`);
      const lobbyIds = await A.$$eval('#messages li.msg[data-id]', (els) => els.map((e) => Number(e.dataset.id)));
      assert(lobbyIds.every((id, i) => i === 0 || id > lobbyIds[i - 1]), 'lobby in id order, no duplicates');
      await clickRoom(A, 'dev');
      dave.close();
      await A.locator('#users [data-user="dave"]').waitFor({ state: 'detached', timeout: STEP_MS });
    });

    await step('a rename shows up for the others; the people list updates when a page closes', async () => {
      await waitState(B, 'online');
      await A.locator('#users [data-user="bob"]').waitFor({ timeout: STEP_MS });
      await B.click('#rename');
      await B.fill('#name-input', 'robert');
      await B.press('#name-input', 'Enter');
      await until('bob is now robert', async () => (await B.textContent('#me')) === 'robert' && !(await B.isHidden('#app')));
      await A.locator('#users [data-user="robert"]').waitFor({ timeout: STEP_MS });
      assert((await A.locator('#users [data-user="bob"]').count()) === 0, 'the old name is gone from the list');
      await B.close();
      await A.locator('#users [data-user="robert"]').waitFor({ state: 'detached', timeout: STEP_MS });
    });

    await step('the browser-console snippet relays between two sockets on /', async () => {
      const P = await ctxA.newPage();
      watch(P, 'console-snippet');
      await P.goto(`${direct}/`);
      const got = [];
      P.on('console', (m) => got.push(m.text()));
      const snippet = `const ws = new WebSocket("ws://127.0.0.1:${server.port}/"); ws.onmessage = e => console.log(e.data); ws.onopen = () => ws.send("hi")`;
      // The first socket's "hi" goes to nobody (no other client yet); it then receives the
      // second socket's "hi". Each runs in its own scope, exactly as typed in a console.
      await P.evaluate(`{ ${snippet}; window.__first = ws; }`);
      await until('first socket open', () => P.evaluate(() => window.__first.readyState === 1));
      await P.evaluate(`{ ${snippet}; }`);
      await until('"hi" relayed to the other socket', () => got.includes('hi'));
      await P.close();
    });

    await step("the page's CSP lets a script open WebSockets to the page's own origin only", async () => {
      // Not watched: the blocked attempt logs a console error on purpose.
      const P = await ctxA.newPage();
      await P.goto(`${direct}/`);
      // Another port is another origin. A CSP refusal shows as a SecurityError or a
      // securitypolicyviolation event; a connection attempt (refused: nothing listens on
      // port 1) would mean the CSP let it through.
      const outcome = await P.evaluate(() => new Promise((resolve) => {
        document.addEventListener('securitypolicyviolation', (e) => resolve(`violation ${e.violatedDirective}`), { once: true });
        setTimeout(() => resolve('not blocked'), 5000);
        try {
          const ws = new WebSocket('ws://127.0.0.1:1/');
          ws.onerror = () => {}; // the violation event decides
        } catch (e) {
          resolve(`threw ${e.name}`);
        }
      }));
      assert(/^violation connect-src|^threw SecurityError/.test(outcome), `a WebSocket to another origin: ${outcome}`);
      const same = await P.evaluate((port) => new Promise((resolve) => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/echo`);
        ws.onopen = () => { ws.close(); resolve('open'); };
        ws.onerror = () => resolve('error');
      }), server.port);
      assert(same === 'open', `a WebSocket to the page's own origin: ${same}`);
      await P.close();
    });

    await step('a token in the page address: signed in as its name, gone from the address bar, renewed by the hook at expiry', async () => {
      const secret = path.join(jwtDir, 'jwt.secret');
      fs.writeFileSync(secret, crypto.randomBytes(32).toString('hex') + '\n');
      // Leeway 0: the server closes at the token's own `exp`, a few seconds from now.
      jwtServer = new Server(serverBin(), path.join(jwtDir, 'data'), ['--jwt-secret-file', secret, '--jwt-leeway', '0']);
      await jwtServer.start();
      const site = `http://127.0.0.1:${jwtServer.port}`;
      const mint = (name, exp) => execFileSync(serverBin(), ['token', '--secret-file', secret, '--sub', `u-${name}`, '--name', name, '--exp', String(exp)]).toString().trim();
      // 4 s: long enough to load, sign in and check the address bar first, short for the run.
      const short = mint('carol', 4);
      const fresh = mint('carol', 3600);
      const ctx = await browser.newContext({ viewport: { width: 1000, height: 700 } });
      let asked = 0;
      await ctx.exposeFunction('e2eFreshToken', () => { asked += 1; return fresh; });
      // The hook the host page would define, in a script file of its own (the CSP forbids inline).
      await ctx.addInitScript(() => { window.wschatRefreshToken = () => window.e2eFreshToken(); });
      const P = await ctx.newPage();
      watch(P, 'carol');
      await P.goto(`${site}/?backoff=100&token=${encodeURIComponent(short)}`);
      await until('carol signed in by her token', async () => (await P.textContent('#me')) === 'carol' && (await state(P)) === 'online');
      assert(!P.url().includes('token'), `the token is still in the address bar: ${P.url()}`);
      assert(P.url() === `${site}/?backoff=100`, `other parameters stay: ${P.url()}`);
      assert(await P.isHidden('#login'), 'no name form for a bound name');
      // The server closes with 1008 "token expired" at exp; the page asks the hook and is
      // back as carol on a new socket, by itself.
      await until('the page asked wschatRefreshToken for a fresh token', () => asked >= 1, STEP_MS);
      await until('online again as carol with the fresh token', async () => (await state(P)) === 'online' && (await P.textContent('#me')) === 'carol');
      assert(asked === 1, `the hook was asked once, not ${asked} times`);
      await say(P, 'still here after the token renewal');

      // Without a hook (another context: no init script): a clear "session expired" state
      // instead of a reconnect loop. The token in the #fragment this time.
      const ctx2 = await browser.newContext({ viewport: { width: 1000, height: 700 } });
      const Q = await ctx2.newPage();
      watch(Q, 'dave');
      await Q.goto(`${site}/#token=${encodeURIComponent(mint('dave', 5))}`);
      await until('dave signed in by his token', async () => (await state(Q)) === 'online' && (await Q.textContent('#me')) === 'dave');
      assert(!Q.url().includes('token') && Q.url() === `${site}/`, `the #token is still in the address bar: ${Q.url()}`);
      await waitState(Q, 'expired');
      assert(/Session expired/.test(await Q.textContent('#status')), 'the status says the session expired');
      assert(/session expired/i.test(await Q.textContent('#notice-text')) && (await Q.isVisible('#notice')), 'a notice says what to do');
      assert(asked === 1, 'the page without a hook did not use the other page\'s');
      for (const t of [short, fresh]) assert(!jwtServer.output.includes(t), 'a token in the server output');
      await shot(Q, 'dave-expired.png');
      await ctx.close();
      await ctx2.close();
      await jwtServer.stop();
    });

    await shot(A, 'final.png');
    if (process.env.UPDATE_DOCS_SCREENSHOT === '1') {
      // The README's picture: the page in use (three people in #dev), not the empty end state.
      fs.mkdirSync(path.join(repo, 'docs'), { recursive: true });
      fs.copyFileSync(inUse, path.join(repo, 'docs', 'screenshot.png'));
      log('copied alice-desktop.png to docs/screenshot.png');
    }
    assert(problems.length === 0, 'problems seen in the pages:\n  ' + problems.join('\n  '));
    log(`E2E PASSED: ${steps.length} steps`);
  } catch (e) {
    if (aborted) return; // already reported; the browser was closed under the test
    console.error(`E2E FAILED: ${e.message}`);
    if (problems.length) console.error('problems seen in the pages:\n  ' + problems.join('\n  '));
    console.error('--- the pages\' WebSocket events (last 40) ---\n' + wsEvents.slice(-40).join('\n'));
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    let n = 0;
    for (const page of browser ? browser.contexts().flatMap((c) => c.pages()) : []) {
      await page.screenshot({ path: path.join(ARTIFACTS, `failure-${++n}.png`) }).catch(() => {});
    }
    const tail = server.output.split('\n').slice(-40).join('\n');
    if (tail.trim()) console.error('--- last server output ---\n' + tail);
    process.exitCode = 1;
  } finally {
    clearTimeout(killer);
    await cleanup();
  }
}

await main();
