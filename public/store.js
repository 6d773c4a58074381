// What the page knows: conversations (rooms and direct messages), their messages deduplicated
// by the server's id, the sender's own messages that wait for the server's copy, and counts.
// No DOM here.

/** Names are unique case-insensitively on the server, so compare them the same way. */
export const sameName = (a, b) => typeof a === 'string' && typeof b === 'string' && a.toLowerCase() === b.toLowerCase();

/** Room names are case-insensitive too (`Dev` is `dev`, spelled the way its creator spelled it). */
export const roomKey = (room) => '#' + room.toLowerCase();
export const dmKey = (name) => '@' + name.toLowerCase();

export class Conversation {
  constructor(kind, name) {
    this.kind = kind; // 'room' | 'dm'
    this.name = name;
    this.key = kind === 'room' ? roomKey(name) : dmKey(name);
    this.byId = new Map();
    this.ids = []; // ascending
    this.pending = []; // {ref, text, ts, state: 'queued'|'sent'|'failed', error}
    this.unread = 0;
    this.users = []; // at most 1000 names (the server's cap)
    this.count = 0; // the true number of members
    this.joined = false;
    this.catchUpFrom = 0; // the newest id seen before the connection dropped; 0 = nothing to fetch
    this.hasOlder = kind === 'room';
    this.loadingOlder = false;
  }

  get oldestId() { return this.ids.length ? this.ids[0] : undefined; }
  get newestId() { return this.ids.length ? this.ids[this.ids.length - 1] : 0; }

  /** Adds messages it has not seen (by id) and returns the ones that were new, ascending. */
  add(msgs) {
    const fresh = [];
    for (const m of msgs) {
      if (!isMessage(m) || this.byId.has(m.id)) continue;
      this.byId.set(m.id, m);
      fresh.push(m);
    }
    if (!fresh.length) return fresh;
    fresh.sort((a, b) => a.id - b.id);
    // Almost always an append at the end (live traffic) or a block in front (older pages):
    // only sort the whole index when a message really lands in the middle (catch-up).
    const last = this.newestId;
    const first = this.oldestId;
    if (!this.ids.length || fresh[0].id > last) {
      for (const m of fresh) this.ids.push(m.id);
    } else if (fresh[fresh.length - 1].id < first) {
      this.ids.unshift(...fresh.map((m) => m.id));
    } else {
      for (const m of fresh) this.ids.push(m.id);
      this.ids.sort((a, b) => a - b);
    }
    return fresh;
  }

  /** Forgets all messages (the server lost its history, e.g. restarted without --data-dir). */
  reset() {
    this.byId.clear();
    this.ids = [];
    this.catchUpFrom = 0;
    this.hasOlder = this.kind === 'room';
  }

  /** The message that comes right after `id`, or undefined (for inserting into the view). */
  idAfter(id) {
    let lo = 0;
    let hi = this.ids.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.ids[mid] <= id) lo = mid + 1; else hi = mid;
    }
    return this.ids[lo];
  }

  takePending(ref) {
    const i = this.pending.findIndex((p) => p.ref === ref);
    return i < 0 ? undefined : this.pending.splice(i, 1)[0];
  }

  findPending(ref) { return this.pending.find((p) => p.ref === ref); }
}

export function isMessage(m) {
  return m && typeof m === 'object' && Number.isFinite(m.id) && typeof m.text === 'string';
}

export class Store {
  constructor() {
    this.convs = new Map();
    this.roomList = []; // [{name, users}] from the last `rooms` answer
  }

  room(name) {
    const key = roomKey(name);
    let c = this.convs.get(key);
    if (!c) { c = new Conversation('room', name); this.convs.set(key, c); }
    return c;
  }

  dm(name) {
    const key = dmKey(name);
    let c = this.convs.get(key);
    if (!c) { c = new Conversation('dm', name); this.convs.set(key, c); }
    return c;
  }

  get(key) { return this.convs.get(key); }

  rooms() { return [...this.convs.values()].filter((c) => c.kind === 'room'); }
  dms() { return [...this.convs.values()].filter((c) => c.kind === 'dm'); }

  /** The conversation a `message` belongs to, seen from `me`. */
  convFor(msg, me) {
    if (typeof msg.room === 'string') return this.room(msg.room);
    if (typeof msg.to === 'string' && typeof msg.from === 'string') {
      return this.dm(sameName(msg.from, me) ? msg.to : msg.from);
    }
    return undefined;
  }

  /** Finds the pending message with this ref in any conversation. */
  pendingByRef(ref) {
    for (const c of this.convs.values()) {
      const p = c.findPending(ref);
      if (p) return { conv: c, pending: p };
    }
    return undefined;
  }

  totalUnread() {
    let n = 0;
    for (const c of this.convs.values()) n += c.unread;
    return n;
  }
}
