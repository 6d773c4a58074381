// The chat page: signs in, keeps rooms joined across reconnects, fetches what it missed, and
// draws rooms, messages, people and direct messages.
//
// URL parameters (for tests and slow links):
//   ?backoff=MS  first reconnect delay ceiling in ms (default 250, 10..60000; the cap is 10 s)
//   ?token=T or #token=T  an access token (file token or JWT) for /chat?token=T; removed from
//                the address bar at once and kept only in memory (see README, "Tokens from
//                your app"). When the server closes with 1008 "token expired", the page calls
//                `window.wschatRefreshToken()` if defined (async, resolves to a new token
//                string) and reconnects with it; otherwise it shows "Session expired".

import { Connection, chatUrl, takeToken, tokenExpired } from './client.js';
import { Store, sameName, roomKey, dmKey, isMessage } from './store.js';
import { MessageView, h } from './view.js';
import { errorText } from './words.js';

// One page of older history, the same size as the latest-50 that `joined` brings.
const PAGE = 50;
// Catch-up after a reconnect uses the server's largest page (PROTOCOL.md: history page 200)
// and at most 5 of them: the server keeps 1000 messages per room, so that is all there is.
const CATCHUP_PAGE = 200;
const MAX_CATCHUP_PAGES = 5;
// How often the room list (with member counts of rooms we are not in) is refreshed.
const ROOMS_EVERY_MS = 30000;
// A name can stay taken for a moment after a reconnect: the server may not yet have noticed
// that our previous socket is gone. Retry the login this many times before asking the user.
const NAME_RETRIES = 5;

// ---- the access token: out of the address bar before anything else ----------------------------
// replaceState keeps it out of the browser history, bookmarks, a copied address and the page's
// own later requests. Memory only, never localStorage: it is a credential with an expiry, not a
// preference like the name, and whoever gave it to the page (the app) can give a fresh one.
const taken = takeToken(location.href);
let token = taken.token;
if (taken.clean !== null) history.replaceState(history.state, '', taken.clean);
// The hook gets this long to produce a fresh token (it usually asks the app's server).
const REFRESH_MS = 15000;
// Refreshes in a row without a session in between: a hook that keeps returning tokens the
// server closes at once must not make the page reconnect in a loop.
const MAX_REFRESHES = 3;
let refreshes = 0;

const $ = (id) => document.getElementById(id);
const ui = {
  status: $('status'), meBox: $('me-box'), me: $('me'), rename: $('rename'),
  notice: $('notice'), noticeText: $('notice-text'), noticeClose: $('notice-close'),
  login: $('login'), nameForm: $('name-form'), nameInput: $('name-input'), nameError: $('name-error'),
  nameCancel: $('name-cancel'),
  app: $('app'), roomsPanel: $('rooms-panel'), peoplePanel: $('people-panel'),
  toggleRooms: $('toggle-rooms'), togglePeople: $('toggle-people'),
  rooms: $('rooms'), joinForm: $('join-form'), joinInput: $('join-input'), dms: $('dms'), dmsEmpty: $('dms-empty'),
  convTitle: $('conv-title'), leave: $('leave'), scroller: $('scroller'), older: $('older'), olderEnd: $('older-end'),
  messages: $('messages'), composer: $('composer'), text: $('text'), textLabel: $('text-label'),
  users: $('users'), peopleTitle: $('people-title'), conv: $('conv'),
};

// ---- saved settings (localStorage can be unavailable: private windows, disabled storage) ----
const storage = {
  get(key, fallback) {
    try { const v = localStorage.getItem('wschat.' + key); return v === null ? fallback : JSON.parse(v); } catch { return fallback; }
  },
  set(key, value) {
    try { localStorage.setItem('wschat.' + key, JSON.stringify(value)); } catch { /* not remembered */ }
  },
};

function intParam(name, fallback, min, max) {
  const v = Number.parseInt(new URLSearchParams(location.search).get(name) ?? '', 10);
  return Number.isFinite(v) ? Math.min(max, Math.max(min, v)) : fallback;
}

const store = new Store();
const conn = new Connection(() => chatUrl(location, token), { base: intParam('backoff', 250, 10, 60000), cap: 10000 });
let me = null; // the name the server confirmed on this connection; null until then
let wantName = String(storage.get('name', '') || '');
// The name was typed into the form while offline and has never been ours: when the connection
// comes up, a `name_taken` for it is the answer to show, not a reason to retry. (A name this page
// held before, remembered or from the last socket, is retried: the server may still hold it for
// our previous socket for a moment.)
let typedOffline = false;
let wantRooms = storage.get('rooms', ['lobby']);
if (!Array.isArray(wantRooms) || !wantRooms.every((r) => typeof r === 'string')) wantRooms = ['lobby'];
let currentKey = String(storage.get('current', roomKey('lobby')));
const wants = (room) => wantRooms.some((r) => sameName(r, room));
function want(room, yes) {
  wantRooms = wantRooms.filter((r) => !sameName(r, room));
  if (yes) wantRooms.push(room);
  storage.set('rooms', wantRooms);
}
let peopleRoom = null; // the room whose members the People panel shows
let session = 0; // bumped on every new socket, so that stale async work stops
let greeted = false; // the first welcome of this socket has arrived
let nameRetries = 0;

const view = new MessageView(
  { scroller: ui.scroller, list: ui.messages, older: ui.older, olderEnd: ui.olderEnd },
  () => me || wantName, (conv, ref) => retryPending(conv, ref));

// ---- notices -------------------------------------------------------------------------------
let noticeTimer = 0;
function notify(text, sticky = false) {
  ui.noticeText.textContent = text;
  ui.notice.hidden = false;
  clearTimeout(noticeTimer);
  if (!sticky) noticeTimer = setTimeout(() => { ui.notice.hidden = true; }, 8000);
}
ui.noticeClose.addEventListener('click', () => { ui.notice.hidden = true; });

// ---- connection state ----------------------------------------------------------------------
const STATE_TEXT = {
  connecting: 'Connecting…', online: 'Online', reconnecting: 'Reconnecting…',
  refreshing: 'Renewing session…', expired: 'Session expired: reload',
};
function renderStatus() {
  const state = conn.state === 'online' && !me && wantName ? 'connecting' : conn.state;
  ui.status.dataset.state = state;
  ui.status.textContent = STATE_TEXT[state] || state;
  if (state === 'reconnecting' && conn.retryAt > Date.now()) {
    ui.status.title = 'Next attempt at ' + new Date(conn.retryAt).toLocaleTimeString();
  } else {
    ui.status.removeAttribute('title');
  }
}
conn.on('state', renderStatus);
window.addEventListener('online', () => conn.retryNow());

conn.on('open', () => {
  session += 1;
  greeted = false;
  me = null;
  renderStatus();
});

conn.on('down', () => {
  me = null;
  for (const c of store.convs.values()) {
    if (c.kind === 'room') {
      c.joined = false;
      // What to fetch with `history after` once back (kept across repeated drops).
      if (!c.catchUpFrom) c.catchUpFrom = c.newestId;
    }
    let changed = false;
    for (const p of c.pending) {
      // Sent but not confirmed: the server may or may not have it. Decided after catch-up.
      if (p.state === 'sent') { p.state = 'unsure'; changed = true; }
    }
    if (changed) view.pendingChanged(c);
  }
  renderStatus();
});

// ---- token expiry ------------------------------------------------------------------------------
// The server closes a JWT connection at its `exp` with 1008 "token expired" (SECURITY.md).
// A JWT that expired while the page was away (a server restart, a laptop asleep) is refused at
// the handshake, which a browser only reports as 1006: the token's own `exp` says so.
conn.on('down', (why) => {
  if ((why.code === 1008 && why.reason === 'token expired') || (token && tokenExpired(token))) refreshToken();
});

async function refreshToken() {
  const hook = window.wschatRefreshToken;
  if (typeof hook !== 'function' || refreshes >= MAX_REFRESHES) { sessionExpired(); return; }
  refreshes += 1;
  conn.hold('refreshing'); // synchronously, inside the 'down' event: no backoff retry starts
  let fresh = null;
  let timer = 0;
  try {
    fresh = await Promise.race([
      Promise.resolve().then(() => hook()),
      new Promise((resolve) => { timer = setTimeout(() => resolve(null), REFRESH_MS); }),
    ]);
  } catch { fresh = null; } finally { clearTimeout(timer); }
  if (typeof fresh !== 'string' || !fresh.trim() || fresh === token) { sessionExpired(); return; }
  token = fresh.trim();
  conn.resume();
}

function sessionExpired() {
  conn.hold('expired');
  notify('Your session expired. Reload the page, or open the chat again from your app, to sign in again.', true);
}

// ---- incoming ------------------------------------------------------------------------------
conn.on('message', (msg, awaited) => {
  switch (msg.type) {
    case 'welcome': onWelcome(msg, awaited); break;
    case 'joined': onJoined(msg); break;
    case 'left': onLeft(msg); break;
    case 'presence': onPresence(msg); break;
    case 'message': onMessage(msg); break;
    case 'rooms': onRooms(msg); break;
    case 'users': onUsers(msg); break;
    case 'history': if (!awaited) mergeHistory(msg, false); break;
    case 'error': onError(msg, awaited); break;
    default: break; // newer server, older page: ignore what we do not know
  }
});

function onWelcome(msg, awaited) {
  if (awaited) return; // the answer to our own login: handled where it was sent
  if (!greeted) {
    greeted = true; // the guest greeting of a new socket
    startSession(session, msg);
  } else if (me !== null && typeof msg.name === 'string') {
    // The server renamed us (someone logged in with a token for this name).
    me = msg.name;
    renderMe();
  }
}

function onJoined(msg) {
  if (typeof msg.room !== 'string') return;
  const conv = store.room(msg.room);
  const history = Array.isArray(msg.history) ? msg.history.filter(isMessage) : [];
  const newest = history.length ? Math.max(...history.map((m) => m.id)) : 0;
  if (conv.ids.length && newest < conv.newestId) {
    // The server knows less than we have shown: it lost its history (restarted without a
    // data directory) and its ids may start over, so what we hold cannot be deduplicated.
    conv.reset();
    if (conv === view.conv) view.show(conv);
  }
  const wasEmpty = conv.ids.length === 0;
  conv.name = msg.room; // the creator's spelling
  conv.joined = true;
  if (Array.isArray(msg.users)) conv.users = msg.users.filter((u) => typeof u === 'string');
  conv.count = Number.isFinite(msg.count) ? msg.count : conv.users.length;
  const fresh = conv.add(history);
  view.added(conv, fresh);
  // After a reconnect the latest 50 include messages we missed: those are unread.
  if (conv.catchUpFrom > 0) countUnread(conv, fresh.filter((m) => m.id > conv.catchUpFrom));
  // `joined` carries the latest 50 and no `more`: a full page may have older ones.
  if (wasEmpty) { conv.hasOlder = history.length >= PAGE; view.updateOlder(); }
  // The guest greeting joins lobby before we log in; that is not the user's choice.
  if (me !== null && !wants(msg.room)) want(msg.room, true);
  if (!peopleRoom) peopleRoom = conv.name;
  if (conv === view.conv) renderConvHead();
  renderRooms();
  renderPeople();
}

function onLeft(msg) {
  if (typeof msg.room !== 'string') return;
  const key = roomKey(msg.room);
  store.convs.delete(key);
  want(msg.room, false);
  if (peopleRoom && sameName(peopleRoom, msg.room)) peopleRoom = null;
  if (currentKey === key) {
    const next = store.rooms().find((c) => c.joined) || store.dms()[0];
    if (next) setCurrent(next.key); else showEmpty();
  }
  requestRooms();
  renderRooms();
  renderPeople();
  renderTitle();
}

function onPresence(msg) {
  const conv = typeof msg.room === 'string' ? store.get(roomKey(msg.room)) : undefined;
  if (!conv || typeof msg.name !== 'string') return;
  const without = (n) => conv.users.filter((u) => !sameName(u, n));
  if (msg.event === 'join') { conv.users = [...without(msg.name), msg.name]; conv.count += 1; }
  else if (msg.event === 'leave') { conv.users = without(msg.name); conv.count = Math.max(0, conv.count - 1); }
  else if (msg.event === 'rename' && typeof msg.old === 'string') {
    conv.users = [...without(msg.old).filter((u) => !sameName(u, msg.name)), msg.name];
    renameDm(msg.old, msg.name);
  }
  renderRooms();
  renderPeople();
}

function renameDm(oldName, newName) {
  const conv = store.get(dmKey(oldName));
  if (!conv || store.get(dmKey(newName))) return;
  store.convs.delete(conv.key);
  conv.name = newName;
  conv.key = dmKey(newName);
  store.convs.set(conv.key, conv);
  if (currentKey === dmKey(oldName)) { currentKey = conv.key; renderConvHead(); }
  renderDms();
}

function onMessage(msg) {
  if (!isMessage(msg)) return;
  const conv = store.convFor(msg, me);
  if (!conv) return;
  if (msg.ref !== undefined) {
    const found = store.pendingByRef(msg.ref);
    if (found) { found.conv.takePending(msg.ref); view.pendingChanged(found.conv); }
  }
  const fresh = conv.add([msg]);
  view.added(conv, fresh);
  countUnread(conv, fresh);
  if (conv.kind === 'dm') renderDms();
}

function countUnread(conv, fresh) {
  const n = fresh.filter((m) => !sameName(m.from, me)).length;
  if (!n || (conv.key === currentKey && !document.hidden)) return;
  conv.unread += n;
  if (conv.kind === 'room') renderRooms(); else renderDms();
  renderTitle();
}

function onRooms(msg) {
  if (!Array.isArray(msg.rooms)) return;
  store.roomList = msg.rooms
    .map((r) => (typeof r === 'string' ? { name: r } : r))
    .filter((r) => r && typeof r.name === 'string');
  renderRooms();
}

function onUsers(msg) {
  const conv = typeof msg.room === 'string' ? store.get(roomKey(msg.room)) : undefined;
  if (!conv || !Array.isArray(msg.users)) return;
  conv.users = msg.users.filter((u) => typeof u === 'string');
  conv.count = Number.isFinite(msg.count) ? msg.count : conv.users.length;
  renderRooms();
  renderPeople();
}

/** Stores a `history` answer; returns the new messages. */
function mergeHistory(msg, countAsUnread) {
  if (typeof msg.room !== 'string' || !Array.isArray(msg.messages)) return [];
  const conv = store.get(roomKey(msg.room));
  if (!conv) return [];
  const fresh = conv.add(msg.messages);
  view.added(conv, fresh);
  if (countAsUnread) countUnread(conv, fresh);
  return fresh;
}

function onError(msg, awaited) {
  if (msg.ref !== undefined) {
    const found = store.pendingByRef(msg.ref);
    if (found) {
      found.pending.state = 'failed';
      found.pending.error = { code: msg.code, message: msg.message };
      view.pendingChanged(found.conv);
      if (found.conv.key !== currentKey) notify(errorText(msg));
      return;
    }
  }
  if (!awaited) notify(errorText(msg));
}

// ---- session: login, rejoin, catch up --------------------------------------------------------
// A name the server gave this socket from its token (bound: `login` to another is refused).
// Guests are `guest-N`; a token without a name claim leaves the page to sign in as usual.
const boundName = (w) => token && typeof w.name === 'string' && !/^guest-\d+$/.test(w.name);

function startSession(sid, welcome) {
  if (boundName(welcome)) { signedIn(sid, welcome, welcome.name); return; }
  if (!wantName) { showLogin(); return; }
  login(sid, wantName, !typedOffline);
}

async function login(sid, name, automatic) {
  let w;
  try {
    w = await conn.request({ type: 'login', name });
  } catch (e) {
    if (sid !== session || e.code === 'offline') return; // a new socket will start over
    if (automatic && e.code === 'name_taken' && nameRetries < NAME_RETRIES) {
      nameRetries += 1;
      setTimeout(() => { if (sid === session && me === null) login(sid, name, true); }, 500 * 2 ** nameRetries);
      return;
    }
    showLogin(errorText(e));
    return;
  }
  if (sid !== session) return;
  await signedIn(sid, w, name);
}

async function signedIn(sid, w, name) {
  nameRetries = 0;
  typedOffline = false;
  refreshes = 0;
  me = typeof w.name === 'string' ? w.name : name;
  wantName = me;
  storage.set('name', me);
  conn.markHealthy();
  hideLogin();
  renderMe();
  renderStatus();
  await syncRooms(sid, Array.isArray(w.rooms) ? w.rooms : []);
}

async function syncRooms(sid, inRooms) {
  // The server puts every new connection in lobby; honour an earlier "leave".
  for (const r of inRooms) if (typeof r === 'string' && !wants(r)) conn.send({ type: 'leave', room: r });
  await Promise.all(wantRooms.map((r) => joinRoom(sid, r)));
  if (sid !== session) return;
  // Direct messages have no history to check against: a DM that was in flight when the
  // connection dropped may or may not have arrived, so ask instead of sending it twice.
  for (const c of store.dms()) {
    for (const p of c.pending) {
      if (p.state === 'unsure') { p.state = 'failed'; p.error = { code: 'lost', message: 'the connection dropped before the server confirmed it' }; }
    }
    flushPending(c, 0);
    view.pendingChanged(c);
  }
  if (!store.get(currentKey)) {
    const first = store.rooms().find((c) => c.joined);
    if (first) setCurrent(first.key); else showEmpty();
  } else if (view.conv !== store.get(currentKey)) {
    setCurrent(currentKey);
  }
  requestRooms();
}

async function joinRoom(sid, room) {
  const conv = store.room(room);
  try {
    await conn.request({ type: 'join', room });
  } catch (e) {
    if (sid !== session || e.code === 'offline') return false;
    notify(errorText(e));
    if (!conv.ids.length && !conv.pending.length) store.convs.delete(conv.key);
    want(room, false);
    renderRooms();
    return false;
  }
  if (store.get(conv.key) !== conv) return true; // reset or left meanwhile
  const from = conv.catchUpFrom;
  if (from > 0 && !(await catchUp(sid, conv, from))) return true;
  if (sid !== session) return true;
  conv.catchUpFrom = 0;
  flushPending(conv, from);
  return true;
}

/**
 * Fetches every message of `conv` after id `after` (oldest first, page by page while the
 * server says `more`); true when done. Deduplication by id makes the overlap with the latest
 * 50 that `joined` already brought harmless.
 */
async function catchUp(sid, conv, after) {
  let from = after;
  for (let page = 0; page < MAX_CATCHUP_PAGES; page += 1) {
    let r;
    try {
      r = await conn.request({ type: 'history', room: conv.name, after: from, limit: CATCHUP_PAGE });
    } catch (e) {
      if (sid === session && e.code !== 'offline') notify(errorText(e));
      return false;
    }
    if (sid !== session) return false;
    const msgs = Array.isArray(r.messages) ? r.messages.filter(isMessage) : [];
    mergeHistory({ room: conv.name, messages: msgs }, true);
    const more = typeof r.more === 'boolean' ? r.more : msgs.length >= CATCHUP_PAGE;
    if (!more || !msgs.length) return true;
    from = Math.max(from, ...msgs.map((m) => m.id));
  }
  return true;
}

/**
 * Sends what waited for the connection. A message that was sent just before the connection
 * dropped ('unsure') is sent again only if catch-up did not bring back our own copy of it.
 */
function flushPending(conv, seenBefore) {
  if (!conn.online || !me) return;
  const mine = conv.ids
    .filter((id) => id > seenBefore)
    .map((id) => conv.byId.get(id))
    .filter((m) => sameName(m.from, me));
  for (const p of [...conv.pending]) {
    if (p.state === 'unsure') {
      const i = mine.findIndex((m) => m.text === p.text);
      if (i >= 0) { mine.splice(i, 1); conv.takePending(p.ref); continue; }
      p.state = 'queued';
    }
    if (p.state === 'queued') transmit(conv, p);
  }
  view.pendingChanged(conv);
}

function transmit(conv, p) {
  const msg = conv.kind === 'room'
    ? { type: 'say', room: conv.name, text: p.text, ref: p.ref }
    : { type: 'dm', to: conv.name, text: p.text, ref: p.ref };
  p.state = conn.online && me && (conv.kind === 'dm' || conv.joined) && conn.send(msg) ? 'sent' : 'queued';
}

function retryPending(conv, ref) {
  const p = conv && conv.findPending(ref);
  if (!p) return;
  p.ref = conn.nextRef(); // a fresh ref: a late answer to the old one must not match
  p.state = 'queued';
  transmit(conv, p);
  view.pendingChanged(conv);
}

function requestRooms() {
  if (me) conn.send({ type: 'rooms', ref: conn.nextRef() });
}
setInterval(requestRooms, ROOMS_EVERY_MS);

// ---- drawing -------------------------------------------------------------------------------
function renderMe() {
  ui.me.textContent = me || wantName;
  ui.meBox.hidden = !(me || wantName);
}

function renderTitle() {
  const n = store.totalUnread();
  document.title = n ? `(${n}) wschat` : 'wschat';
  // On a phone the lists are in a drawer: the button that opens it carries the total.
  ui.toggleRooms.replaceChildren('Rooms', n ? ' ' : '', badge(n) || '');
}

function badge(n) {
  return n ? h('span', { class: 'badge', 'aria-label': `${n} unread` }, String(n)) : null;
}

function renderRooms() {
  const byKey = new Map();
  for (const r of store.roomList) byKey.set(roomKey(r.name), { name: r.name, count: countOf(r.users), joined: false, unread: 0 });
  for (const c of store.rooms()) {
    if (!c.joined && !wants(c.name)) continue;
    // Our own rooms: the live count (presence keeps it current between `rooms` answers).
    const count = c.joined ? c.count : countOf(byKey.get(c.key)?.count);
    byKey.set(c.key, { name: c.name, count, joined: true, unread: c.unread });
  }
  const items = [...byKey.values()].sort((a, b) => (b.joined - a.joined) || a.name.localeCompare(b.name));
  ui.rooms.replaceChildren(...items.map((r) => {
    const current = roomKey(r.name) === currentKey;
    const btn = h('button', {
      type: 'button', class: r.joined ? 'item' : 'item other', dataset: { room: r.name },
      'aria-current': current ? 'true' : null,
      title: r.joined ? null : 'Join this room',
    },
    h('span', { class: 'name' }, '#' + r.name),
    r.count !== undefined ? h('span', { class: 'count', 'aria-label': `${r.count} ${r.count === 1 ? 'person' : 'people'}` }, String(r.count)) : null,
    badge(r.unread));
    btn.addEventListener('click', () => openRoom(r.name));
    return h('li', {}, btn);
  }));
}

function countOf(v) {
  if (Array.isArray(v)) return v.length;
  return Number.isFinite(v) ? v : undefined;
}

function renderDms() {
  const dms = store.dms().sort((a, b) => a.name.localeCompare(b.name));
  ui.dmsEmpty.hidden = dms.length > 0;
  ui.dms.replaceChildren(...dms.map((c) => {
    const btn = h('button', {
      type: 'button', class: 'item', dataset: { dm: c.name },
      'aria-current': c.key === currentKey ? 'true' : null,
    }, h('span', { class: 'name' }, c.name), badge(c.unread));
    btn.addEventListener('click', () => setCurrent(c.key));
    return h('li', {}, btn);
  }));
}

function renderPeople() {
  const conv = peopleRoom ? store.get(roomKey(peopleRoom)) : undefined;
  ui.peopleTitle.textContent = conv ? `People in #${conv.name}` : 'People';
  const users = conv ? [...conv.users].sort((a, b) => a.localeCompare(b)) : [];
  ui.users.replaceChildren(...users.map((u) => {
    if (sameName(u, me)) return h('li', { class: 'self', dataset: { user: u } }, h('span', { class: 'name' }, u), ' (you)');
    const btn = h('button', { type: 'button', class: 'item', dataset: { user: u }, title: `Write to ${u} directly` }, h('span', { class: 'name' }, u));
    btn.addEventListener('click', () => { store.dm(u); setCurrent(dmKey(u)); renderDms(); });
    return h('li', {}, btn);
  }));
}

function renderConvHead() {
  const conv = store.get(currentKey);
  if (!conv) return;
  const label = conv.kind === 'room' ? '#' + conv.name : conv.name;
  ui.convTitle.textContent = conv.kind === 'room' ? label : `Direct messages with ${conv.name}`;
  ui.textLabel.textContent = `Message ${label}`;
  ui.text.placeholder = `Message ${label}`;
  ui.leave.hidden = conv.kind !== 'room';
}

function setCurrent(key) {
  const conv = store.get(key);
  if (!conv) return;
  currentKey = key;
  storage.set('current', key);
  conv.unread = 0;
  if (conv.kind === 'room') peopleRoom = conv.name;
  renderConvHead();
  view.show(conv);
  renderRooms();
  renderDms();
  renderPeople();
  renderTitle();
  closePanels();
}

function showEmpty() {
  currentKey = '';
  view.conv = null;
  ui.messages.replaceChildren();
  ui.convTitle.textContent = 'No room';
  ui.leave.hidden = true;
  ui.older.hidden = true;
  ui.olderEnd.hidden = true;
}

async function openRoom(name) {
  const conv = store.get(roomKey(name));
  if (conv && conv.joined) { setCurrent(conv.key); return; }
  if (!me) { notify(errorText({ code: 'offline' })); return; }
  if (await joinRoom(session, name)) setCurrent(roomKey(name));
}

// ---- login form ------------------------------------------------------------------------------
function showLogin(error = '') {
  ui.login.hidden = false;
  ui.nameError.textContent = error;
  ui.nameCancel.hidden = !me;
  if (!ui.nameInput.value) ui.nameInput.value = wantName;
  ui.app.hidden = true;
  ui.nameInput.focus();
  ui.nameInput.select();
}

function hideLogin() {
  ui.login.hidden = true;
  ui.app.hidden = false;
}

ui.nameForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const name = ui.nameInput.value.trim();
  if (!name || [...name].length > 32) { ui.nameError.textContent = errorText({ code: 'bad_name' }); return; }
  if (me && name === me) { hideLogin(); return; }
  wantName = name;
  typedOffline = !me && !conn.online;
  if (!conn.online) { ui.nameError.textContent = 'Not connected yet: you will be signed in as soon as the connection is up.'; return; }
  ui.nameError.textContent = '';
  if (me) {
    // A rename: the server answers with a new welcome.
    try {
      const w = await conn.request({ type: 'login', name });
      const old = me;
      me = typeof w.name === 'string' ? w.name : name;
      for (const c of store.rooms()) c.users = c.users.map((u) => (sameName(u, old) ? me : u));
      wantName = me;
      storage.set('name', me);
      hideLogin();
      renderMe();
      renderPeople();
    } catch (e) {
      wantName = me;
      ui.nameError.textContent = errorText(e);
    }
  } else {
    login(session, name, false);
  }
});
ui.nameCancel.addEventListener('click', () => { ui.nameInput.value = ''; hideLogin(); ui.text.focus(); });
ui.rename.addEventListener('click', () => { ui.nameInput.value = me || wantName; showLogin(); });

// ---- joining, leaving, sending -----------------------------------------------------------------
ui.joinForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const name = ui.joinInput.value.trim().replace(/^#/, '');
  if (!name) return;
  ui.joinInput.value = '';
  openRoom(name);
});

ui.leave.addEventListener('click', async () => {
  const conv = store.get(currentKey);
  if (!conv || conv.kind !== 'room') return;
  try {
    await conn.request({ type: 'leave', room: conv.name });
  } catch (e) {
    notify(errorText(e));
  }
});

ui.composer.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = ui.text.value;
  const conv = store.get(currentKey);
  if (!conv || !text.trim()) return;
  const p = { ref: conn.nextRef(), text, ts: Date.now(), state: 'queued' };
  conv.pending.push(p);
  transmit(conv, p);
  ui.text.value = '';
  view.pendingChanged(conv);
  view.toBottom();
});

ui.text.addEventListener('keydown', (ev) => {
  // Enter sends, Shift+Enter is a new line; never while an input method is composing a word.
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing && ev.keyCode !== 229) {
    ev.preventDefault();
    ui.composer.requestSubmit();
  }
});

// ---- older pages -------------------------------------------------------------------------------
async function loadOlder() {
  const conv = view.conv;
  if (!conv || conv.kind !== 'room' || !conv.joined || conv.loadingOlder || !conv.hasOlder || !conv.ids.length) return;
  conv.loadingOlder = true;
  view.updateOlder();
  const sid = session;
  try {
    const r = await conn.request({ type: 'history', room: conv.name, before: conv.oldestId, limit: PAGE });
    const msgs = Array.isArray(r.messages) ? r.messages : [];
    if (typeof r.more === 'boolean' ? !r.more : msgs.length < PAGE) conv.hasOlder = false;
    mergeHistory({ room: conv.name, messages: msgs }, false);
  } catch (e) {
    if (sid === session && e.code !== 'offline') notify(errorText(e));
  } finally {
    conv.loadingOlder = false;
    view.updateOlder();
  }
}
ui.older.addEventListener('click', loadOlder);
ui.scroller.addEventListener('scroll', () => { if (ui.scroller.scrollTop < 80) loadOlder(); }, { passive: true });

// ---- narrow screens: the side panels are drawers ---------------------------------------------
function togglePanel(panel, button) {
  const open = !panel.classList.contains('open');
  closePanels();
  panel.classList.toggle('open', open);
  button.setAttribute('aria-expanded', String(open));
  if (open) panel.querySelector('button, input')?.focus();
}
function closePanels() {
  for (const [p, b] of [[ui.roomsPanel, ui.toggleRooms], [ui.peoplePanel, ui.togglePeople]]) {
    p.classList.remove('open');
    b.setAttribute('aria-expanded', 'false');
  }
}
ui.toggleRooms.addEventListener('click', () => togglePanel(ui.roomsPanel, ui.toggleRooms));
ui.togglePeople.addEventListener('click', () => togglePanel(ui.peoplePanel, ui.togglePeople));
document.addEventListener('keydown', (ev) => { if (ev.key === 'Escape') closePanels(); });

document.addEventListener('visibilitychange', () => {
  const conv = store.get(currentKey);
  if (!document.hidden && conv && conv.unread) { conv.unread = 0; renderRooms(); renderDms(); renderTitle(); }
});

// ---- start -------------------------------------------------------------------------------------
renderMe();
renderDms();
// With a token the server may sign us in by itself (a bound name): wait for its welcome.
if (wantName || token) hideLogin(); else showLogin();
conn.start();
