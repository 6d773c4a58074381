//! The dispatcher: one thread that owns every client's outgoing queue, fans messages out, and
//! prunes clients that closed, failed, fell behind or went silent.
//!
//! It is the only writer of every relay and chat socket (tungstenite's automatic pongs and
//! close replies reach it as bytes from the connection threads), so frames never interleave;
//! an echo client's reader may write the echo itself while the dispatcher holds nothing for
//! it, one writer at a time through the client's [`WriteGate`]. It never
//! blocks on anything but its channel: each write is a non-blocking `send`, what the kernel
//! does not take waits in the client's [`queue::Queue`], and the poller thread
//! ([`poller::run_poller`]) reports when that socket can take more. A client whose queue passes
//! `max_pending_bytes` is disconnected, so one slow client can neither delay the others nor make
//! the server hold unbounded memory. The chat's logic and its disk writes run on the chat
//! worker (`chat/worker.rs`), which hands the dispatcher finished frames ([`ChatOut`]), so no
//! relay, echo or heartbeat ever waits for the chat or its disk.
//!
//! Batching is what makes fan-out fast: the dispatcher handles every event already waiting
//! (up to a budget), appending each message's frame to each recipient's queue, and only then
//! writes, so a busy client gets many frames per system call.
//!
//! Files: this one is the event loop; `queue.rs` one client's outgoing bytes; `channels.rs`
//! the relay channels' members; `chat_link.rs` what the chat worker sends; `poller.rs` the
//! thread that reports drained sockets; `relayed.rs` what goes to the other nodes of a cluster.

mod channels;
mod chat_link;
mod poller;
mod queue;
mod relayed;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use log::{debug, trace};
use tungstenite::Bytes;

use crate::budget::Budget;
use crate::config::Config;
use crate::frame;
use crate::gate::WriteGate;
use crate::stats::Stats;
use crate::sys::{self, Epoll};
use crate::upgrade::Route;
use channels::{Channels, Membership};
pub(crate) use chat_link::ChatOut;
pub(crate) use poller::run_poller;
use queue::{Flushed, Queue};
pub(crate) use relayed::{Relayed, unix_ms};

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

/// Clients written in one round from which, if more events were already waiting when it
/// ended, the next round may wait `write_delay` to gather more frames per `send`. Below this a
/// round's sends take well under a millisecond (~4 us each here) and a chat's or an echo's
/// latency is worth more than the CPU; at 1000 clients a round is ~1000 sends, and gathering
/// 2 ms of messages into each cut the server's CPU from 99% to 62% at 500 msg/s
/// (BENCHMARKS.md "A write delay").
const BUSY_ROUND: usize = 256;

/// Events per batch, for the same reason when events deliver little (e.g. echo).
const BATCH_EVENTS: usize = 1024;

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
    /// A handshake was accepted; from now on the dispatcher writes to `stream`. `handshake`:
    /// the 101 for the dispatcher to write first (a chat client), or empty: the thread that
    /// accepted it writes the 101 after sending this, behind `gate`, and the dispatcher writes
    /// nothing before. Either way registration comes before the 101: a client that has seen
    /// its 101 is already a member of its channel and misses nothing sent after it.
    Open {
        id: ClientId,
        stream: Arc<TcpStream>,
        handshake: Vec<u8>,
        route: Route,
        /// When its JWT expires: then it is closed with 1008 "token expired".
        expires: Option<Instant>,
        /// The access token it presented, to cut it if the token is revoked.
        token: Option<Arc<str>>,
        /// The write gate of a client whose 101 its accepting thread writes (and of an echo
        /// client, whose reader writes echoes: `gate.rs`).
        gate: Option<Arc<WriteGate>>,
    },
    /// A complete text (`frame::TEXT`, valid UTF-8) or binary message from a client.
    Message {
        id: ClientId,
        opcode: u8,
        data: Bytes,
    },
    /// The client answered a ping.
    Pong { id: ClientId },
    /// The rest of an echo frame its reader wrote in part (`gate.rs`): written before
    /// anything queued for the client meanwhile.
    Leftover { id: ClientId, bytes: Vec<u8> },
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
    /// A relay message from another node of the cluster (`cluster/relay.rs`), published
    /// there at `sent_ms`: delivered to this node's members, and not published again.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Remote {
        channel: Arc<str>,
        opcode: u8,
        data: Bytes,
        sent_ms: u64,
    },
    /// What the chat worker decided, in order (see [`ChatOut`]).
    Chat(Vec<ChatOut>),
    /// These tokens were revoked: disconnect the clients that presented them.
    Revoked(HashSet<Arc<str>>),
    /// Begin the graceful shutdown.
    Shutdown,
    /// Clients are waiting in the joining inbox (see [`Hub::take_joined`]): take them now. Sent
    /// by the accept thread after a burst of handshakes, or a few milliseconds after a quiet
    /// one, so that joining costs the dispatcher one wake-up per burst, not one per client.
    Joined,
}

struct Client {
    stream: Arc<TcpStream>,
    /// Its relay channel, for O(1) removal.
    channel: Option<Membership>,
    echo: bool,
    token: Option<Arc<str>>,
    /// An echo client's: claimed before every write, given back when the queue is empty.
    gate: Option<Arc<WriteGate>>,
    queue: Queue,
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
    /// Its last frame is queued; half-close after writing it.
    closing: bool,
    half_closed: bool,
    /// Its unsent bytes as last counted in the budget.
    accounted: usize,
}

pub(crate) struct Hub {
    cfg: Arc<Config>,
    stats: Arc<Stats>,
    rx: Receiver<Event>,
    /// The joining inbox: `Event::Open`s of clients handshaken on the accept thread, put here
    /// without waking the dispatcher (see [`Hub::take_joined`]).
    joined: Receiver<Event>,
    epoll: Arc<Epoll>,
    /// Shared with the connection threads: they take a message's bytes before sending it.
    budget: Arc<Budget>,
    /// Bytes of messages handled this batch, given back to the budget after the batch.
    handled: usize,
    clients: IdMap<Client>,
    channels: Channels,
    /// Clients with queued bytes to write at the end of this batch.
    dirty: Vec<ClientId>,
    /// Frames queued in this batch (for `BATCH_DELIVERIES` and the counters).
    delivered: usize,
    /// The last round wrote to `BUSY_ROUND` clients or more and events were already waiting
    /// when it ended: the dispatcher is behind a busy broadcast (see [`Hub::write_due`]).
    busy: bool,
    welcome: Option<Vec<u8>>,
    /// Set when shutting down: the time after which remaining sockets are cut.
    shutdown_deadline: Option<Instant>,
    /// Token expiries, soonest first: the loop waits until the first one, so expiring costs
    /// O(log n) per connection and nothing per tick. Entries of clients that left earlier stay
    /// until their time (ids are never reused, so they match no one) or the next compaction.
    expiries: BinaryHeap<Reverse<(Instant, ClientId)>>,
    /// In a cluster: where local relay messages go for the other nodes (never waited on).
    cluster: Option<Sender<Relayed>>,
}

/// Below this many heap entries, stale ones (clients gone before their token expired) are left
/// to fall out at their time; above it, and when they outnumber the clients, they are swept, so
/// the heap stays within twice the clients (plus this) however long the tokens live.
const EXPIRIES_COMPACT_AT: usize = 1024;

impl Hub {
    pub(crate) fn new(
        cfg: Arc<Config>,
        stats: Arc<Stats>,
        rx: Receiver<Event>,
        joined: Receiver<Event>,
        epoll: Arc<Epoll>,
        budget: Arc<Budget>,
        cluster: Option<Sender<Relayed>>,
    ) -> Hub {
        stats.buffered_limit.store(budget.cap(), Relaxed);
        let welcome = cfg
            .welcome
            .as_ref()
            .map(|w| frame::encoded(frame::TEXT, w.as_bytes()));
        Hub {
            cfg,
            stats,
            rx,
            joined,
            epoll,
            budget,
            handled: 0,
            clients: IdMap::default(),
            channels: Channels::default(),
            dirty: Vec::new(),
            delivered: 0,
            busy: false,
            welcome,
            shutdown_deadline: None,
            expiries: BinaryHeap::new(),
            cluster,
        }
    }

    /// Runs until a shutdown has closed every client (or timed out).
    pub(crate) fn run(mut self) {
        let tick = self.cfg.ping_interval;
        let mut next_tick = (!tick.is_zero()).then(|| Instant::now() + tick);
        // With a write delay: when the frames queued since the last write must go out.
        let mut write_at: Option<Instant> = None;
        loop {
            let expiry = self.expiries.peek().map(|Reverse((at, _))| *at);
            let deadline = [next_tick, self.shutdown_deadline, expiry, write_at]
                .into_iter()
                .flatten()
                .min();
            let first = match deadline {
                Some(d) => self.rx.recv_deadline(d),
                None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match first {
                Ok(event) => {
                    self.take_joined();
                    self.handle(event);
                    // Take what else is already waiting, up to the budget, before writing.
                    let mut events = 1;
                    while events < BATCH_EVENTS && self.delivered < BATCH_DELIVERIES {
                        match self.rx.try_recv() {
                            Ok(event) => {
                                self.take_joined();
                                self.handle(event);
                            }
                            Err(_) => break,
                        }
                        events += 1;
                    }
                    self.stats.queue_depth.store(self.rx.len(), Relaxed);
                }
                Err(RecvTimeoutError::Timeout) => self.take_joined(),
                // Every sender is gone: only possible once the server itself is dropped.
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let now = Instant::now();
            if let Some(t) = next_tick.filter(|t| now >= *t) {
                self.heartbeat();
                next_tick = Some(t.max(now - tick) + tick);
            }
            self.expire(now);
            if self.write_due(now, &mut write_at) {
                self.flush_dirty();
            }
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

    /// Whether to write the queued frames now. At once, unless the dispatcher is behind a busy
    /// broadcast (the last round wrote to `BUSY_ROUND` clients or more, and more events were
    /// already waiting when it ended): then once the first frame queued since has waited
    /// `write_delay`, or sooner when a full batch is queued (holding more would only
    /// grow the queues) or the server is shutting down (its deadline is short).
    fn write_due(&self, now: Instant, write_at: &mut Option<Instant>) -> bool {
        let delay = self.cfg.write_delay;
        if delay.is_zero()
            || !self.busy
            || self.shutdown_deadline.is_some()
            || self.dirty.is_empty()
        {
            *write_at = None;
            return true;
        }
        let at = *write_at.get_or_insert_with(|| {
            self.stats.write_holds.fetch_add(1, Relaxed);
            now + delay
        });
        if now >= at || self.delivered >= BATCH_DELIVERIES {
            *write_at = None;
            return true;
        }
        false
    }

    /// Registers the clients waiting in the joining inbox.
    ///
    /// The accept thread puts a client's `Event::Open` there and then writes its 101 at once,
    /// without waking the dispatcher. Registration still comes before anything the client
    /// could be owed: everything that concerns it reaches the dispatcher through `rx` (its
    /// own frames, its `Gone`, a message someone sent after it saw its 101, a publish, the
    /// shutdown), every such event was sent after its `Open` was put in the inbox, and this
    /// runs after each event is taken from `rx` and before it is handled; the channel's
    /// acquire on receiving makes the inbox's earlier send visible. What only the dispatcher
    /// starts (heartbeats, token expiry) waits for the accept thread's `Event::Joined`, a few
    /// milliseconds at most (`accept.rs`).
    fn take_joined(&mut self) {
        // Bounded by the connections there are: each `Open` holds a connection slot.
        while let Ok(open) = self.joined.try_recv() {
            self.handle(open);
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Open {
                id,
                stream,
                handshake,
                route,
                expires,
                token,
                gate,
            } => {
                if let Some(at) = expires {
                    self.expiries.push(Reverse((at, id)));
                }
                self.open(id, stream, handshake, route, token, gate)
            }
            Event::Message { id, opcode, data } => {
                self.handled += data.len();
                self.stats.messages_in.fetch_add(1, Relaxed);
                self.stats.bytes_in.fetch_add(data.len() as u64, Relaxed);
                let Some(client) = self.clients.get_mut(&id) else {
                    return; // already dropped; its thread has not noticed yet
                };
                if let Some(gate) = &client.gate {
                    gate.received();
                }
                client.seen = true;
                if client.closing {
                    return;
                }
                if client.echo {
                    frame::encode(opcode, &data, client.queue.buf());
                    self.delivered += 1;
                    mark_dirty(&mut self.dirty, id, client);
                } else if let Some(m) = &client.channel {
                    let channel = m.name.clone();
                    self.fan_out(&channel, Some(id), opcode, &data);
                    self.publish_to_cluster(channel, opcode, data);
                }
            }
            Event::Leftover { id, bytes } => {
                if let Some(c) = self.clients.get_mut(&id) {
                    // Always, even when closing: the half-written frame must be completed
                    // before the Close queued behind it.
                    c.queue.put_first(&bytes);
                    if let Some(gate) = &c.gate {
                        gate.leftover_received();
                    }
                    mark_dirty(&mut self.dirty, id, c);
                }
            }
            Event::Pong { id } => {
                if let Some(c) = self.clients.get_mut(&id) {
                    c.seen = true;
                }
            }
            Event::Control { id, bytes } => {
                if let Some(c) = self.clients.get_mut(&id) {
                    if let Some(gate) = &c.gate {
                        gate.received();
                    }
                    c.seen = true;
                    if !c.closing {
                        c.queue.push(&bytes);
                        mark_dirty(&mut self.dirty, id, c);
                    }
                }
            }
            Event::Closing { id, bytes } => self.closing(id, &bytes),
            Event::Gone { id } => self.gone(id),
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
            } => {
                self.handled += data.len();
                self.fan_out(&channel, None, opcode, &data);
                self.publish_to_cluster(channel.into(), opcode, data);
            }
            Event::Remote {
                channel,
                opcode,
                data,
                sent_ms,
            } => {
                let now = unix_ms();
                let latency = std::time::Duration::from_millis(now.saturating_sub(sent_ms));
                self.stats.cluster_relay_latency.observe(latency);
                self.fan_out(&channel, None, opcode, &data);
            }
            Event::Chat(outs) => {
                for out in outs {
                    match out {
                        ChatOut::Frame { to, frame } => self.queue_chat_frame(&to, &frame),
                        ChatOut::Closing { id, bytes } => self.closing(id, &bytes),
                        ChatOut::Gone { id } => self.gone(id),
                    }
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
            Event::Joined => {} // `take_joined` has run
        }
    }

    fn open(
        &mut self,
        id: ClientId,
        stream: Arc<TcpStream>,
        handshake: Vec<u8>,
        route: Route,
        token: Option<Arc<str>>,
        gate: Option<Arc<WriteGate>>,
    ) {
        let mut client = Client {
            stream,
            channel: None,
            echo: route == Route::Echo,
            token,
            gate,
            queue: Queue::with(handshake),
            in_poller: false,
            waiting: false,
            dirty: false,
            seen: true,
            pinged: false,
            closing: false,
            half_closed: false,
            accounted: 0,
        };
        if self.shutdown_deadline.is_some() {
            // Raced with the shutdown: tell it at once.
            frame::encode_close(1001, "server shutting down", client.queue.buf());
            client.closing = true;
        } else if let Route::Relay(name) = route {
            client.channel = Some(self.channels.join(&name, id));
            if let Some(welcome) = &self.welcome {
                client.queue.push(welcome);
                self.delivered += 1;
            }
        }
        // A chat client is registered like any other: the chat worker (told by the
        // connection thread after this event was sent) decides what it receives.
        let c = self.clients.entry(id).or_insert(client);
        // Nothing queued (its 101 is written by the thread that accepted it): no write now,
        // so no claim on its gate and no wake-up back when the 101 is out.
        if c.queue.pending() > 0 || c.closing {
            mark_dirty(&mut self.dirty, id, c);
        }
    }

    /// Appends one frame to the queue of every member of `channel` except `except`.
    fn fan_out(&mut self, channel: &str, except: Option<ClientId>, opcode: u8, data: &[u8]) {
        let members = self.channels.members(channel);
        if members.is_empty() {
            return;
        }
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
            c.queue.push(&encoded);
            self.delivered += 1;
            mark_dirty(&mut self.dirty, member, c);
        }
    }

    /// Hands a local relay message to the cluster's publisher, if there is one. The message
    /// holds its bytes (and `Relayed::COST` for its queue slot) in the delivery budget until
    /// the publisher has sent it, so a publisher slower than the senders slows the senders,
    /// as slow sockets do, rather than drop messages; only a full queue (or Redis away, in
    /// the publisher) drops them for the other nodes, counted. Never waits.
    fn publish_to_cluster(&mut self, channel: Arc<str>, opcode: u8, data: Bytes) {
        let Some(tx) = &self.cluster else {
            return;
        };
        let cost = Relayed::cost(&data);
        let m = Relayed {
            channel,
            opcode,
            data,
        };
        if tx.try_send(m).is_ok() {
            self.budget.add(cost);
        } else {
            self.stats.cluster_relay_dropped.fetch_add(1, Relaxed);
        }
    }

    /// A chat frame for `to`; clients already gone or closing are skipped (the chat learns
    /// of their end through their reader, a moment later).
    fn queue_chat_frame(&mut self, to: &[ClientId], frame: &[u8]) {
        for &id in to {
            let Some(c) = self.clients.get_mut(&id) else {
                continue;
            };
            if !c.closing {
                c.queue.push(frame);
                self.delivered += 1;
                mark_dirty(&mut self.dirty, id, c);
            }
        }
    }

    fn closing(&mut self, id: ClientId, bytes: &[u8]) {
        self.leave_channel(id);
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        if !c.closing {
            c.queue.push(bytes);
            c.closing = true;
        }
        // Also when we had already queued our own Close (shutdown): the client's reply to it
        // completes the handshake, and nothing more is sent.
        mark_dirty(&mut self.dirty, id, c);
    }

    /// The reader has seen the client's FIN, but the client may still be reading: a client
    /// that half-closes right after its Close (or its last message) waits for our answers.
    /// Those queued in this batch (echoes, the Close reply, our error Close, a chat answer)
    /// are not written yet, so write what the socket takes now rather than cut them off.
    fn gone(&mut self, id: ClientId) {
        self.flush(id);
        if let Some(c) = self.clients.get(&id) {
            trace!("client {id} gone with {} bytes unsent", c.queue.pending());
        }
        self.drop_client(id, None);
    }

    fn begin_shutdown(&mut self) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        debug!("shutdown: closing {} clients", self.clients.len());
        self.shutdown_deadline = Some(Instant::now() + self.cfg.shutdown_timeout);
        let ids: Vec<_> = self.clients.keys().copied().collect();
        for id in ids {
            self.leave_channel(id);
            let c = self.clients.get_mut(&id).expect("listed above");
            if !c.closing {
                frame::encode_close(1001, "server shutting down", c.queue.buf());
                c.closing = true;
            }
            mark_dirty(&mut self.dirty, id, c);
        }
    }

    /// Closes the clients whose token expired by `now` (1008 "token expired").
    fn expire(&mut self, now: Instant) {
        while let Some(&Reverse((at, id))) = self.expiries.peek() {
            if at > now {
                break;
            }
            self.expiries.pop();
            if self.clients.contains_key(&id) {
                debug!("client {id}: its token expired");
                self.drop_client(id, Some((1008, "token expired")));
            }
        }
        if self.expiries.len() > EXPIRIES_COMPACT_AT && self.expiries.len() > 2 * self.clients.len()
        {
            let clients = &self.clients;
            self.expiries
                .retain(|Reverse((_, id))| clients.contains_key(id));
        }
    }

    /// Pings clients silent since the last tick; drops those that ignored the previous ping.
    fn heartbeat(&mut self) {
        let mut dead = Vec::new();
        for (&id, c) in self.clients.iter_mut() {
            if c.closing {
                continue;
            }
            c.queue.release_if_idle();
            if c.seen {
                c.seen = false;
                c.pinged = false;
            } else if c.pinged {
                dead.push(id);
            } else {
                frame::encode_ping(c.queue.buf());
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

    fn flush_dirty(&mut self) {
        self.stats
            .messages_out
            .fetch_add(self.delivered as u64, Relaxed);
        self.delivered = 0;
        let dirty = std::mem::take(&mut self.dirty);
        for &id in &dirty {
            self.flush(id);
        }
        // Holding the next round only pays when messages come faster than rounds are written:
        // at 1000 clients x 200 msg/s (a round every 5 ms, each ~3 ms of sends) holding it
        // saved 10% of the CPU and doubled the latency; at 500 msg/s it saves 36% for +2 ms.
        self.busy = dirty.len() >= BUSY_ROUND && !self.rx.is_empty();
        // Reuse the list's allocation for the next batch.
        self.dirty = dirty;
        self.dirty.clear();
        self.budget.give_back(std::mem::take(&mut self.handled));
        if self.budget.used() > self.budget_target() {
            self.enforce_budget();
        }
        self.stats.buffered.store(self.budget.used(), Relaxed);
    }

    /// What the queues may hold: the budget less room for one maximum-size message. A sender
    /// waits while its message does not fit, so if stalled queues were allowed to fill the
    /// budget to the brim, a waiting sender could wait forever for clients that never read.
    fn budget_target(&self) -> usize {
        let cap = self.budget.cap();
        cap.saturating_sub(self.cfg.max_message_size).max(cap / 2)
    }

    /// The queues hold more than [`Hub::budget_target`]: disconnects the clients furthest
    /// behind (largest unsent backlog first) until they fit. Rare (only when many clients fall
    /// far behind at once), so one scan and sort of the clients with a backlog is fine.
    fn enforce_budget(&mut self) {
        let mut behind: Vec<(usize, ClientId)> = self
            .clients
            .iter()
            .filter(|(_, c)| c.accounted > 0 && !c.closing)
            .map(|(&id, c)| (c.accounted, id))
            .collect();
        behind.sort_unstable_by(|a, b| b.cmp(a));
        let target = self.budget_target();
        for (pending, id) in behind {
            if self.budget.used() <= target {
                break;
            }
            debug!(
                "client {id}: {pending} bytes unsent while the server's delivery budget ({} bytes) is spent; disconnecting",
                self.budget.cap()
            );
            self.stats.budget_disconnects.fetch_add(1, Relaxed);
            self.drop_client(id, Some((1008, "too slow: server memory budget spent")));
        }
    }

    /// Brings the client's share of the budget up to date with its queue.
    fn account(budget: &Budget, c: &mut Client) {
        let pending = c.queue.pending();
        if pending > c.accounted {
            budget.add(pending - c.accounted);
        } else {
            budget.give_back(c.accounted - pending);
        }
        c.accounted = pending;
    }

    /// Writes as much of the client's queue as its socket takes now.
    fn flush(&mut self, id: ClientId) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        c.dirty = false;
        // The poller will report when the socket drains (a write now would fail again), or
        // the echo client's reader is writing (it reports when it is done).
        if c.waiting || c.gate.as_ref().is_some_and(|g| !g.claim()) {
            Hub::account(&self.budget, c);
            return self.check_backlog(id);
        }
        if !c.echo {
            // Claimed: the 101 is out. From now on only the dispatcher writes to a relay
            // client: no more gate to keep (nor its allocation).
            c.gate = None;
        }
        let (flushed, written) = c.queue.flush(&*c.stream);
        Hub::account(&self.budget, c);
        self.stats.bytes_out.fetch_add(written as u64, Relaxed);
        match flushed {
            Flushed::All => {
                if c.closing && !c.half_closed {
                    // Everything including the Close frame is out: send FIN. The connection
                    // thread sees the client's FIN (or its own timeout) and reports the end.
                    c.half_closed = true;
                    let _ = c.stream.shutdown(Shutdown::Write);
                } else if let Some(gate) = c.gate.as_ref().filter(|_| !c.closing) {
                    // Nothing queued: the echo's reader may write its next echo itself.
                    gate.release();
                }
            }
            Flushed::Blocked => {
                match self.epoll.arm_writable(&*c.stream, id, !c.in_poller) {
                    Ok(()) => {
                        c.in_poller = true;
                        c.waiting = true;
                    }
                    Err(e) => {
                        trace!("client {id}: cannot watch the socket: {e}");
                        return self.drop_client(id, None);
                    }
                }
                self.check_backlog(id);
            }
            Flushed::Failed(e) => {
                trace!("client {id}: write failed: {e}");
                self.drop_client(id, None);
            }
        }
    }

    /// Disconnects a client whose unsent backlog is over the cap.
    fn check_backlog(&mut self, id: ClientId) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        let pending = c.queue.pending();
        if pending > self.cfg.max_pending_bytes && !c.closing {
            debug!(
                "client {id}: {pending} bytes unsent (limit {}), disconnecting slow consumer",
                self.cfg.max_pending_bytes
            );
            self.stats.slow_consumer_disconnects.fetch_add(1, Relaxed);
            self.drop_client(id, Some((1008, "too slow: message backlog over limit")));
        }
    }

    fn leave_channel(&mut self, id: ClientId) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        let Some(m) = c.channel.take() else {
            return;
        };
        if let Some((moved, slot)) = self.channels.leave(&m) {
            // The last member took the freed slot: tell it its new index.
            let mc = self.clients.get_mut(&moved).expect("member is a client");
            if let Some(mm) = &mut mc.channel {
                Channels::moved_to(mm, slot);
            }
        }
    }

    /// Forgets a client now: optionally tries to send a Close first, then cuts the socket so that
    /// its connection thread wakes up and ends.
    fn drop_client(&mut self, id: ClientId, close: Option<(u16, &str)>) {
        self.leave_channel(id);
        let Some(mut c) = self.clients.remove(&id) else {
            return;
        };
        self.budget.give_back(c.accounted);
        // Never given back: nothing is written after this. If the reader is writing now,
        // the Close is skipped (it would interleave); the cut below ends the connection.
        let ours = c.gate.as_ref().is_none_or(|g| g.claim());
        if let Some((code, reason)) = close.filter(|_| ours) {
            // Best effort: the queue may be full (that is often why we are here).
            frame::encode_close(code, reason, c.queue.buf());
            let _ = sys::send_nonblocking(&*c.stream, c.queue.unsent());
        }
        if c.in_poller {
            self.epoll.remove(&*c.stream);
        }
        let _ = c.stream.shutdown(Shutdown::Both);
    }
}

fn mark_dirty(dirty: &mut Vec<ClientId>, id: ClientId, c: &mut Client) {
    if !c.dirty {
        c.dirty = true;
        dirty.push(id);
    }
}
