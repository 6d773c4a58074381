// DOM helpers and the message list. All text from the network goes in through text nodes
// (h() and textContent), never through innerHTML, so a message like <img onerror=...> is shown
// as the characters it is.

import { sameName } from './store.js';
import { shortTime, fullTime, errorText } from './words.js';

/** h('li', {class: 'x', dataset: {id: 1}}, 'text', child) - strings become text nodes. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    el.append(typeof c === 'string' ? document.createTextNode(c) : c);
  }
  return el;
}

// Within this distance of the bottom the list follows new messages; further up, the reader is
// looking at older ones and the view stays put.
const STICK_PX = 48;

export class MessageView {
  constructor({ scroller, list, older, olderEnd }, getMe, onRetry) {
    this.scroller = scroller;
    this.list = list;
    this.older = older;
    this.olderEnd = olderEnd;
    this.getMe = getMe;
    this.onRetry = onRetry;
    this.conv = null;
    this.msgEls = new Map();
    this.pendingEls = new Map();
  }

  nearBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < STICK_PX;
  }

  toBottom() { this.scroller.scrollTop = this.scroller.scrollHeight; }

  /** Shows `conv` from scratch, scrolled to its newest message. */
  show(conv) {
    this.conv = conv;
    this.msgEls.clear();
    this.pendingEls.clear();
    const frag = document.createDocumentFragment();
    for (const id of conv.ids) {
      const li = this.#messageEl(conv.byId.get(id));
      this.msgEls.set(id, li);
      frag.append(li);
    }
    for (const p of conv.pending) {
      const li = this.#pendingEl(p);
      this.pendingEls.set(p.ref, li);
      frag.append(li);
    }
    this.list.replaceChildren(frag);
    this.updateOlder();
    this.toBottom();
  }

  updateOlder() {
    const c = this.conv;
    const canLoad = !!c && c.kind === 'room' && c.hasOlder && c.ids.length > 0;
    this.older.hidden = !canLoad;
    this.older.disabled = !!c && c.loadingOlder;
    this.older.textContent = c && c.loadingOlder ? 'Loading older messages…' : 'Load older messages';
    this.olderEnd.hidden = !(c && c.kind === 'room' && !c.hasOlder && c.ids.length > 0);
  }

  /** Puts newly stored messages (ascending) of the shown conversation into the list. */
  added(conv, msgs) {
    if (conv !== this.conv || !msgs.length) return;
    const s = this.scroller;
    const stick = this.nearBottom();
    const fromBottom = s.scrollHeight - s.scrollTop;
    // All of them older than the first one shown: an older page going in above the reader.
    const firstShown = this.list.querySelector('li.msg:not(.pending)');
    const onlyAbove = firstShown !== null && msgs[msgs.length - 1].id < Number(firstShown.dataset.id);
    // Newest first, so that the element each one goes in front of is already in the list.
    for (let i = msgs.length - 1; i >= 0; i -= 1) {
      const m = msgs[i];
      const li = this.#messageEl(m);
      this.msgEls.set(m.id, li);
      const nextId = conv.idAfter(m.id);
      const before = nextId !== undefined ? this.msgEls.get(nextId) : undefined;
      this.list.insertBefore(li, before && before.parentNode === this.list ? before : this.list.querySelector('li.pending'));
    }
    if (stick) this.toBottom();
    else if (onlyAbove) s.scrollTop = s.scrollHeight - fromBottom;
    this.updateOlder();
  }

  /** Re-draws the pending (not yet confirmed) messages of `conv`. */
  pendingChanged(conv) {
    if (conv !== this.conv) return;
    const stick = this.nearBottom();
    for (const [ref, li] of this.pendingEls) {
      if (!conv.findPending(ref)) { li.remove(); this.pendingEls.delete(ref); }
    }
    for (const p of conv.pending) {
      const fresh = this.#pendingEl(p);
      const old = this.pendingEls.get(p.ref);
      if (old) old.replaceWith(fresh); else this.list.append(fresh);
      this.pendingEls.set(p.ref, fresh);
    }
    if (stick) this.toBottom();
  }

  #meta(author, ts, mine) {
    const iso = Number.isFinite(ts) ? new Date(ts).toISOString() : undefined;
    return h('div', { class: 'meta' },
      h('span', { class: mine ? 'author mine' : 'author', text: author }),
      ' ',
      h('time', { datetime: iso, title: fullTime(ts), text: shortTime(ts) }));
  }

  #messageEl(m) {
    const mine = sameName(m.from, this.getMe());
    return h('li', { class: mine ? 'msg own' : 'msg', dataset: { id: m.id } },
      this.#meta(String(m.from ?? ''), m.ts, mine),
      h('div', { class: 'text', text: m.text }));
  }

  #pendingEl(p) {
    const state = p.state === 'failed'
      ? h('span', { class: 'state failed' }, 'Not sent: ' + errorText(p.error) + ' ')
      : h('span', { class: 'state' }, p.state === 'queued' ? 'Waiting for the connection…' : 'Sending…');
    if (p.state === 'failed') {
      const retry = h('button', { type: 'button', class: 'link' }, 'Retry');
      retry.addEventListener('click', () => this.onRetry(this.conv, p.ref));
      state.append(retry);
    }
    return h('li', { class: 'msg own pending', dataset: { ref: p.ref }, 'aria-busy': p.state !== 'failed' },
      this.#meta(this.getMe() || '', p.ts, true),
      h('div', { class: 'text', text: p.text }),
      state);
  }
}
