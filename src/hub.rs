//! The dispatcher: one thread that owns every client's outgoing queue, fans messages out, and
//! prunes clients that closed, failed, fell behind or went silent.
//!
//! It is the only writer of every WebSocket socket (tungstenite's automatic pongs and close
//! replies reach it as bytes from the connection threads), so frames never interleave. It never
//! blocks on a socket: each write is a non-blocking `send`, what the kernel does not take waits
//! in the client's queue, and the writer thread (`Poller`) reports when that socket can take
//! more. A client whose queue passes `max_pending_bytes` is disconnected, so one slow client
//! can neither delay the others nor make the server hold unbounded memory.
//!
//! Batching is what makes fan-out fast: the dispatcher handles every event already waiting
//! (up to a budget), appending each message's frame to each recipient's queue, and only then
//! writes, so a busy client gets many frames per system call.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use log::{debug, error, trace, warn};
use tungstenite::Bytes;

use crate::chat::{Chat, Delivery, Input, Outbox};
use crate::config::Config;
use crate::embed::ServerEvent;
use crate::frame;
use crate::stats::Stats;
use crate::sys::{self, Epoll};
use crate::upgrade::Route;

/// A connection's number, unique for the life of the server.
pub(crate) type ClientId = u64;

/// Events waiting for the dispatcher can pile up to this many; then connection threads wait in
/// `send` (and, behind them, TCP flow control slows the clients) instead of the server growing
/// memory without bound. 16384 events of about 64 bytes: 1 MiB, allocated once; at 100k
/// messages/s it is 160 ms of slack for a dispatcher hiccup.
pub(crate) const QUEUE_CAPACITY: usize = 16 * 1024;

/// Deliveries (frames appended to client queues) after which the dispatcher stops taking new
/// events and writes. Bounds how long the first message of a batch waits for the others
/// (about half a millisecond of copying), while still putting ~16 frames into each syscall
/// when 1000 clients share a channel.
const BATCH_DELIVERIES: usize = 16 * 1024;

/// Events per batch, for the same reason when events deliver little (e.g. echo).
const BATCH_EVENTS: usize = 1024;

/// An active client's emptied queue keeps its allocation up to this size, so the next batch
/// appends without growing it from zero (measured: freeing it after every flush cost ~12% of
/// the dispatcher's CPU in page faults at 6M deliveries/s). Larger ones are freed at once;
/// the heartbeat frees the rest once a client has had no traffic for a whole tick.
const KEEP_QUEUE_CAPACITY: usize = 64 * 1024;

/// Hashes the dispatcher's client ids (sequential numbers it makes itself, so no client can
/// choose colliding keys) with one multiplication instead of SipHash: the id is looked up once
/// per delivery, and SipHash was ~6% of the dispatcher's CPU at 6M deliveries/s.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 ids are hashed with this; fold anything else in byte by byte.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        // Fibonacci hashing: spreads sequential ids over the high bits hashbrown uses.
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdMap<V> = HashMap<ClientId, V, std::hash::BuildHasherDefault<IdHasher>>;

/// What the dispatcher is told, by connection threads, the writer poller and the handle.
pub(crate) enum Event {
    /// A handshake was accepted; from now on the dispatcher writes to `stream`, starting with
    /// `handshake` (the 101 response). Writing the 101 here rather than in the connection
    /// thread makes registration and the 101 one step: a client that has seen its 101 is
    /// already a member of its channel and misses nothing sent after it.
    Open {
        id: ClientId,
        stream: Arc<TcpStream>,
        handshake: Vec<u8>,
        route: Route,
        /// The access token it presented, to cut it if the token is revoked.
        token: Option<Arc<str>>,
    },
    /// A complete text (`frame::TEXT`, valid UTF-8) or binary message from a client.
    Message {
        id: ClientId,
        opcode: u8,
        data: Bytes,
    },
    /// A chat client's frame, parsed and rate-limited by its connection thread.
    Chat { id: ClientId, input: Box<Input> },
    /// The client answered a ping.
    Pong { id: ClientId },
    /// Encoded control frames for the client (tungstenite's answer to its ping).
    Control { id: ClientId, bytes: Vec<u8> },
    /// The last frame for this client (the reply to its Close, or our Close for its protocol
    /// error); the socket is half-closed once it is written.
    Closing { id: ClientId, bytes: Vec<u8> },
    /// The connection thread has ended; forget the client.
    Gone { id: ClientId },
    /// The client's socket can take more bytes (from the poller).
    Writable { id: ClientId },
    /// A message from the host program for every client of a relay channel.
    Publish {
        channel: String,
        opcode: u8,
        data: Bytes,
    },
    /// A chat message from the host program (a bot, `POST /api/publish`), as user `from`.
    Say {
        room: String,
        from: String,
        text: String,
        /// Where to report the message's id, or why it was refused.
        reply: Option<Sender<Result<u64, String>>>,
    },
    /// These tokens were revoked: disconnect the clients that presented them.
    Revoked(HashSet<Arc<str>>),
    /// Begin the graceful shutdown.
    Shutdown,
}

struct Client {
    stream: Arc<TcpStream>,
    /// Relay channel and this client's index in its member list, for O(1) removal.
    channel: Option<(Arc<str>, usize)>,
    echo: bool,
    /// A `/chat` client still known to the chat (until `detach`).
    chat: bool,
    token: Option<Arc<str>>,
    /// Frames not yet written: `queue[sent..]`.
    queue: Vec<u8>,
    sent: usize,
    /// Whether the socket was ever added to the poller (then re-arming is a MOD).
    in_poller: bool,
    /// Waiting for the poller: writing now would only hit EAGAIN again.
    waiting: bool,
    /// Already in the dirty list of this batch.
    dirty: bool,
    /// Sent anything since the last heartbeat tick.
    seen: bool,
    /// Pinged at the last tick and not heard from since.
    pinged: bool,
    /// Written to since the last tick (else the tick frees its empty queue's allocation).
    busy: bool,
    /// Its last frame is queued; half-close after writing it.
    closing: bool,
    half_closed: bool,
}

pub(crate) struct Hub {
    cfg: Arc<Config>,
    stats: Arc<Stats>,
    rx: Receiver<Event>,
    epoll: Arc<Epoll>,
    clients: IdMap<Client>,
    channels: HashMap<Arc<str>, Vec<ClientId>>,
    /// Clients with queued bytes to write at the end of this batch.
    dirty: Vec<ClientId>,
    /// Frames queued in this batch (for `BATCH_DELIVERIES` and the counters).
    delivered: usize,
    welcome: Option<Vec<u8>>,
    chat: Chat,
    /// What the chat asked to send, delivered at the end of the batch after `Chat::commit`.
    outbox: Outbox,
    /// The chat changed this batch: its log must be committed before anything is written.
    chat_touched: bool,
    /// The host program's event channel, for accepted chat messages.
    events: Option<Sender<ServerEvent>>,
    /// Set when shutting down: the time after which remaining sockets are cut.
    shutdown_deadline: Option<Instant>,
}

impl Hub {
    pub(crate) fn new(
        cfg: Arc<Config>,
        stats: Arc<Stats>,
        rx: Receiver<Event>,
        epoll: Arc<Epoll>,
        chat: Chat,
        events: Option<Sender<ServerEvent>>,
    ) -> Hub {
        let welcome = cfg
            .welcome
            .as_ref()
            .map(|w| frame::encoded(frame::TEXT, w.as_bytes()));
        Hub {
            cfg,
            stats,
            rx,
            epoll,
            clients: IdMap::default(),
            channels: HashMap::new(),
            dirty: Vec::new(),
            delivered: 0,
            welcome,
            chat,
            outbox: {
                let mut outbox = Outbox::new();
                outbox.observe = events.is_some();
                outbox
            },
            events,
            chat_touched: false,
            shutdown_deadline: None,
        }
    }

    /// Runs until a shutdown has closed every client (or timed out).
    pub(crate) fn run(mut self) {
        let tick = self.cfg.ping_interval;
        let mut next_tick = (!tick.is_zero()).then(|| Instant::now() + tick);
        loop {
            let deadline = match (next_tick, self.shutdown_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let first = match deadline {
                Some(d) => self.rx.recv_deadline(d),
                None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match first {
                Ok(event) => {
                    self.handle(event);
                    // Take what else is already waiting, up to the budget, before writing.
                    let mut events = 1;
                    while events < BATCH_EVENTS && self.delivered < BATCH_DELIVERIES {
                        match self.rx.try_recv() {
                            Ok(event) => self.handle(event),
                            Err(_) => break,
                        }
                        events += 1;
                    }
                    self.stats.queue_depth.store(self.rx.len(), Relaxed);
                }
                Err(RecvTimeoutError::Timeout) => {}
                // Every sender is gone: only possible once the server itself is dropped.
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let now = Instant::now();
            if let Some(t) = next_tick.filter(|t| now >= *t) {
                self.heartbeat();
                next_tick = Some(t.max(now - tick) + tick);
            }
            self.write_out();
            if let Some(deadline) = self.shutdown_deadline {
                if self.clients.is_empty() {
                    break;
                }
                if now >= deadline {
                    debug!(
                        "shutdown: cutting {} clients that did not close in time",
                        self.clients.len()
                    );
                    let ids: Vec<_> = self.clients.keys().copied().collect();
                    for id in ids {
                        self.drop_client(id, None);
                    }
                    break;
                }
            }
        }
        self.epoll.wake();
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Open {
                id,
                stream,
                handshake,
                route,
                token,
            } => self.open(id, stream, handshake, route, token),
            Event::Message { id, opcode, data } => {
                self.stats.messages_in.fetch_add(1, Relaxed);
                self.stats.bytes_in.fetch_add(data.len() as u64, Relaxed);
                let Some(client) = self.clients.get_mut(&id) else {
                    return; // already dropped; its thread has not noticed yet
                };
                client.seen = true;
                if client.closing {
                    return;
                }
                if client.echo {
                    frame::encode(opcode, &data, &mut client.queue);
                    self.delivered += 1;
                    mark_dirty(&mut self.dirty, id, client);
                } else if let Some((channel, _)) = &client.channel {
                    let channel = channel.clone();
                    self.fan_out(&channel, Some(id), opcode, &data);
                }
            }
            Event::Chat { id, input } => {
                self.stats.messages_in.fetch_add(1, Relaxed);
                let Some(c) = self.clients.get_mut(&id) else {
                    return;
                };
                c.seen = true;
                if c.closing {
                    return;
                }
                self.chat.handle(id, *input, now_ms(), &mut self.outbox);
                self.chat_touched = true;
            }
            Event::Pong { id } => {
                if let Some(c) = self.clients.get_mut(&id) {
                    c.seen = true;
                }
            }
            Event::Control { id, bytes } => {
                if let Some(c) = self.clients.get_mut(&id) {
                    c.seen = true;
                    if !c.closing {
                        c.queue.extend_from_slice(&bytes);
                        mark_dirty(&mut self.dirty, id, c);
                    }
                }
            }
            Event::Closing { id, bytes } => self.closing(id, &bytes),
            Event::Gone { id } => {
                // The reader has seen the client's FIN, but the client may still be reading:
                // a client that half-closes right after its Close (or its last message)
                // waits for our answers. Those queued in this batch (echoes, the Close reply
                // or our error Close) are not written yet, so write what the socket takes now
                // rather than cut them off; for a chat client, after moving the chat's answers
                // into its queue (as `closing` does).
                if self.clients.get(&id).is_some_and(|c| c.chat) {
                    self.settle_chat();
                }
                self.flush(id);
                if let Some(c) = self.clients.get(&id) {
                    trace!(
                        "client {id} gone with {} bytes unsent",
                        c.queue.len() - c.sent
                    );
                }
                self.drop_client(id, None);
            }
            Event::Writable { id } => {
                if let Some(c) = self.clients.get_mut(&id) {
                    c.waiting = false;
                    mark_dirty(&mut self.dirty, id, c);
                }
            }
            Event::Publish {
                channel,
                opcode,
                data,
            } => self.fan_out(&channel, None, opcode, &data),
            Event::Say {
                room,
                from,
                text,
                reply,
            } => {
                let result = self
                    .chat
                    .say_as(&room, &from, &text, now_ms(), &mut self.outbox)
                    .map_err(|r| r.message.to_string());
                self.chat_touched = true;
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            Event::Revoked(tokens) => {
                let cut: Vec<ClientId> = self
                    .clients
                    .iter()
                    .filter(|(_, c)| c.token.as_ref().is_some_and(|t| tokens.contains(t)))
                    .map(|(&id, _)| id)
                    .collect();
                for id in cut {
                    debug!("client {id}: its token was revoked");
                    self.drop_client(id, Some((1008, "access token revoked")));
                }
            }
            Event::Shutdown => self.begin_shutdown(),
        }
    }

    fn open(
        &mut self,
        id: ClientId,
        stream: Arc<TcpStream>,
        handshake: Vec<u8>,
        route: Route,
        token: Option<Arc<str>>,
    ) {
        let mut client = Client {
            stream,
            channel: None,
            echo: route == Route::Echo,
            chat: false,
            token,
            queue: handshake,
            sent: 0,
            in_poller: false,
            waiting: false,
            dirty: false,
            seen: true,
            pinged: false,
            busy: false,
            closing: false,
            half_closed: false,
        };
        if self.shutdown_deadline.is_some() {
            // Raced with the shutdown: tell it at once.
            frame::encode_close(1001, "server shutting down", &mut client.queue);
            client.closing = true;
        } else if let Route::Chat { name, room, bound } = &route {
            client.chat = true;
            self.chat.connect(
                id,
                name.as_deref(),
                room.as_deref(),
                *bound,
                now_ms(),
                &mut self.outbox,
            );
            self.chat_touched = true;
        } else if let Route::Relay(name) = route {
            let name: Arc<str> = name.into();
            let members = self.channels.entry(name.clone()).or_default();
            client.channel = Some((name, members.len()));
            members.push(id);
            if let Some(welcome) = &self.welcome {
                client.queue.extend_from_slice(welcome);
                self.delivered += 1;
            }
        }
        self.clients.insert(id, client);
        let c = self.clients.get_mut(&id).expect("just inserted");
        mark_dirty(&mut self.dirty, id, c);
    }

    /// Appends one frame to the queue of every member of `channel` except `except`.
    fn fan_out(&mut self, channel: &str, except: Option<ClientId>, opcode: u8, data: &[u8]) {
        let Some(members) = self.channels.get(channel) else {
            return;
        };
        // Encode once: server frames are unmasked, so the bytes are the same for everyone.
        let mut encoded = Vec::with_capacity(data.len() + 10);
        frame::encode(opcode, data, &mut encoded);
        for &member in members {
            if Some(member) == except {
                continue;
            }
            // Invariant: channel member lists hold only ids present in `clients`
            // (`leave_channel` runs before every removal).
            let c = self.clients.get_mut(&member).expect("member is a client");
            c.queue.extend_from_slice(&encoded);
            self.delivered += 1;
            mark_dirty(&mut self.dirty, member, c);
        }
    }

    fn closing(&mut self, id: ClientId, bytes: &[u8]) {
        if self.clients.get(&id).is_some_and(|c| c.chat) {
            // The chat's answers to this client's last requests wait in the outbox until the
            // end of the batch, and nothing is queued behind a Close: deliver them now, or the
            // Close would overtake them and they would be lost (a flooder would never see its
            // `rate_limited` errors). Cheap: a commit with nothing new to log writes nothing.
            self.settle_chat();
        }
        self.detach(id);
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        if !c.closing {
            c.queue.extend_from_slice(bytes);
            c.closing = true;
        }
        // Also when we had already queued our own Close (shutdown): the client's reply to it
        // completes the handshake, and nothing more is sent.
        mark_dirty(&mut self.dirty, id, c);
    }

    fn begin_shutdown(&mut self) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        debug!("shutdown: closing {} clients", self.clients.len());
        self.shutdown_deadline = Some(Instant::now() + self.cfg.shutdown_timeout);
        let ids: Vec<_> = self.clients.keys().copied().collect();
        for id in ids {
            self.detach(id);
            let c = self.clients.get_mut(&id).expect("listed above");
            if !c.closing {
                frame::encode_close(1001, "server shutting down", &mut c.queue);
                c.closing = true;
            }
            mark_dirty(&mut self.dirty, id, c);
        }
    }

    /// Pings clients silent since the last tick; drops those that ignored the previous ping.
    fn heartbeat(&mut self) {
        let mut dead = Vec::new();
        for (&id, c) in self.clients.iter_mut() {
            if c.closing {
                continue;
            }
            // An idle client holds no queue memory.
            if !c.busy && c.sent == c.queue.len() && c.queue.capacity() > 0 {
                c.queue = Vec::new();
                c.sent = 0;
            }
            c.busy = false;
            if c.seen {
                c.seen = false;
                c.pinged = false;
            } else if c.pinged {
                dead.push(id);
            } else {
                frame::encode_ping(&mut c.queue);
                c.pinged = true;
                mark_dirty(&mut self.dirty, id, c);
            }
        }
        for id in dead {
            debug!("client {id}: no answer to ping, dropping");
            self.stats.heartbeat_timeouts.fetch_add(1, Relaxed);
            self.drop_client(id, Some((1001, "ping timeout")));
        }
    }

    /// Commits the chat log, hands the chat's deliveries to the client queues, and writes every
    /// queue that has something; again while writing made the chat say more (a client that
    /// failed leaves its rooms, and the others get its `presence`).
    fn write_out(&mut self) {
        loop {
            self.settle_chat();
            self.flush_dirty();
            if !self.chat_touched {
                break;
            }
        }
    }

    /// If the chat changed: commits its log, then moves its deliveries into the client queues
    /// (not yet onto sockets).
    fn settle_chat(&mut self) {
        if self.chat_touched {
            self.chat_touched = false;
            // Before any socket write: no client may see a message a restart would forget.
            if let Err(e) = self.chat.commit() {
                error!("chat history could not be written (delivering anyway): {e}");
            }
            self.deliver_chat();
            self.stats.chat_rooms.store(self.chat.room_count(), Relaxed);
            self.stats.chat_users.store(self.chat.user_count(), Relaxed);
        }
    }

    fn deliver_chat(&mut self) {
        if let Some(events) = &self.events {
            for p in self.outbox.posted.drain(..) {
                let event = ServerEvent::ChatMessage {
                    id: p.id,
                    room: p.room,
                    from: p.from,
                    text: p.text,
                };
                // Never wait for the host: every client would wait with us.
                if events.try_send(event).is_err() {
                    self.stats.events_dropped.fetch_add(1, Relaxed);
                }
            }
        }
        let mut encoded = Vec::new();
        let deliveries: Vec<Delivery> = self.outbox.drain().collect();
        for delivery in deliveries {
            match delivery {
                Delivery::Text { to, text } => {
                    encoded.clear();
                    frame::encode(frame::TEXT, text.as_bytes(), &mut encoded);
                    for conn in to {
                        let Some(c) = self.clients.get_mut(&conn) else {
                            continue;
                        };
                        if !c.closing {
                            c.queue.extend_from_slice(&encoded);
                            self.delivered += 1;
                            mark_dirty(&mut self.dirty, conn, c);
                        }
                    }
                }
                Delivery::Close { conn, code, reason } => {
                    if let Some(c) = self.clients.get_mut(&conn) {
                        if !c.closing {
                            frame::encode_close(code, reason, &mut c.queue);
                            c.closing = true;
                            mark_dirty(&mut self.dirty, conn, c);
                        }
                    }
                    self.detach(conn);
                }
            }
        }
    }

    /// Takes a client out of its relay channel or the chat: it gets no more broadcasts, and
    /// the chat tells its rooms that it left.
    fn detach(&mut self, id: ClientId) {
        self.leave_channel(id);
        if let Some(c) = self.clients.get_mut(&id) {
            if c.chat {
                c.chat = false;
                self.chat.disconnect(id, now_ms(), &mut self.outbox);
                self.chat_touched = true;
            }
        }
    }

    fn flush_dirty(&mut self) {
        self.stats
            .messages_out
            .fetch_add(self.delivered as u64, Relaxed);
        self.delivered = 0;
        let dirty = std::mem::take(&mut self.dirty);
        for &id in &dirty {
            self.flush(id);
        }
        // Reuse the list's allocation for the next batch.
        self.dirty = dirty;
        self.dirty.clear();
    }

    /// Writes as much of the client's queue as its socket takes now.
    fn flush(&mut self, id: ClientId) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        c.dirty = false;
        if c.waiting {
            // The poller will report when the socket drains; a write now would fail again.
            return self.check_backlog(id);
        }
        let mut written = 0;
        let mut failed = None;
        while c.sent < c.queue.len() {
            match sys::send_nonblocking(&*c.stream, &c.queue[c.sent..]) {
                Ok(n) => {
                    c.sent += n;
                    written += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match self.epoll.arm_writable(&*c.stream, id, !c.in_poller) {
                        Ok(()) => {
                            c.in_poller = true;
                            c.waiting = true;
                        }
                        Err(e) => failed = Some(e),
                    }
                    break;
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        self.stats.bytes_out.fetch_add(written as u64, Relaxed);
        if let Some(e) = failed {
            trace!("client {id}: write failed: {e}");
            return self.drop_client(id, None);
        }
        if c.sent == c.queue.len() {
            if c.queue.capacity() > KEEP_QUEUE_CAPACITY {
                c.queue = Vec::new();
            } else {
                c.queue.clear();
            }
            c.sent = 0;
            c.busy = true;
            if c.closing && !c.half_closed {
                // Everything including the Close frame is out: send FIN. The connection thread
                // sees the client's FIN (or its own timeout) and then reports `Gone`.
                c.half_closed = true;
                let _ = c.stream.shutdown(Shutdown::Write);
            }
        } else {
            self.check_backlog(id);
        }
    }

    /// Disconnects a client whose unsent backlog is over the cap; compacts the queue otherwise.
    fn check_backlog(&mut self, id: ClientId) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        let pending = c.queue.len() - c.sent;
        if pending > self.cfg.max_pending_bytes && !c.closing {
            debug!(
                "client {id}: {pending} bytes unsent (limit {}), disconnecting slow consumer",
                self.cfg.max_pending_bytes
            );
            self.stats.slow_consumer_disconnects.fetch_add(1, Relaxed);
            return self.drop_client(id, Some((1008, "too slow: message backlog over limit")));
        }
        // Move the unsent tail to the front once the sent head is the larger part, so the
        // queue does not grow by what was already written.
        if c.sent > pending {
            c.queue.drain(..c.sent);
            c.sent = 0;
        }
    }

    fn leave_channel(&mut self, id: ClientId) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        let Some((name, slot)) = c.channel.take() else {
            return;
        };
        let members = self
            .channels
            .get_mut(&name)
            .expect("client's channel exists");
        members.swap_remove(slot);
        if let Some(&moved) = members.get(slot) {
            // The last member took the freed slot: tell it its new index.
            let m = self.clients.get_mut(&moved).expect("member is a client");
            if let Some((_, s)) = &mut m.channel {
                *s = slot;
            }
        }
        if members.is_empty() {
            self.channels.remove(&name);
        }
    }

    /// Forgets a client now: optionally tries to send a Close first, then cuts the socket so that
    /// its connection thread wakes up and ends.
    fn drop_client(&mut self, id: ClientId, close: Option<(u16, &str)>) {
        self.detach(id);
        let Some(mut c) = self.clients.remove(&id) else {
            return;
        };
        if let Some((code, reason)) = close {
            // Best effort: the queue may be full (that is often why we are here).
            frame::encode_close(code, reason, &mut c.queue);
            let _ = sys::send_nonblocking(&*c.stream, &c.queue[c.sent..]);
        }
        if c.in_poller {
            self.epoll.remove(&*c.stream);
        }
        let _ = c.stream.shutdown(Shutdown::Both);
    }
}

/// Milliseconds since the Unix epoch, for chat timestamps.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn mark_dirty(dirty: &mut Vec<ClientId>, id: ClientId, c: &mut Client) {
    if !c.dirty {
        c.dirty = true;
        dirty.push(id);
    }
}

/// The thread that waits for backed-up sockets to drain and tells the dispatcher.
///
/// Sockets are armed one-shot by the dispatcher when a write hits `EAGAIN`, so this thread sleeps
/// in `epoll_wait` with nothing to do unless some client is behind.
pub(crate) fn run_poller(epoll: Arc<Epoll>, tx: Sender<Event>) {
    let mut keys = Vec::with_capacity(256);
    loop {
        keys.clear();
        if let Err(e) = epoll.wait(&mut keys) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            warn!("writer poller failed, stopping it: {e}");
            return;
        }
        for &key in &keys {
            if key == sys::WAKE_KEY {
                return;
            }
            if tx.send(Event::Writable { id: key }).is_err() {
                return;
            }
        }
    }
}
