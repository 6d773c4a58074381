//! The chat's own thread: it owns the [`Chat`], applies every chat event in arrival order,
//! commits the history log once per batch (group commit), and only then hands the batch's
//! frames to the dispatcher. So a chat message is delivered only once it is durable (the
//! `--fsync` promise), while the dispatcher, which serves relay, echo and heartbeats, never
//! waits for a disk: a slow or failing disk slows only the chat, and `/metrics` shows it
//! (`wschat_chat_commit_seconds`, `wschat_chat_commit_failures_total`).
//!
//! Every event of a chat connection comes here, in its order: its login (sent by the
//! connection thread right after the dispatcher registered it), its frames, parsed by
//! `ingress::ChatEndpoint` on the connection's thread, its last frame and its end. Forwarding the last
//! two through this thread keeps them behind the answers to the requests before them.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use log::{debug, error, info};

use super::{Chat, Delivery, Input, Outbox, Rights};
use crate::embed::ServerEvent;
use crate::frame;
use crate::hub::{ChatOut, ClientId, Event};
use crate::stats::Stats;

/// Chat events waiting for the worker can pile up to this many; then chat connection threads
/// wait in `send`, and TCP flow control slows their clients (each event is one client frame,
/// already bounded in size). 4096 events is a few hundred milliseconds of slack at the chat
/// rate limit of 10 messages/s per client with hundreds of clients typing.
pub(crate) const QUEUE_CAPACITY: usize = 4096;

/// Events applied per batch before the worker commits and delivers: bounds how long the first
/// message of a batch waits for the commit, while sharing one fsync among all of them.
const BATCH_EVENTS: usize = 1024;

/// The answer to a `Say`: the message's id, or why it was refused.
pub(crate) type SayResult = Result<u64, String>;

/// The refusal of a cluster node that cannot reach Redis ([`crate::Error::Unavailable`]).
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) const UNAVAILABLE: &str = "chat unavailable: Redis unreachable";

/// What the chat worker is told.
pub(crate) enum ChatEvent {
    /// A `/chat` connection was registered with the dispatcher: log it in (URL name and
    /// room, `bound` when the name comes from its token).
    Connect {
        id: ClientId,
        /// The client's address (after a trusted proxy): rooms created are limited per address.
        addr: std::net::IpAddr,
        name: Option<String>,
        room: Option<String>,
        bound: bool,
        /// What its token allows in the chat.
        rights: Rights,
    },
    /// One frame of a chat connection, classified and rate-limited by its thread.
    Input { id: ClientId, input: Box<Input> },
    /// The connection's last frame, for the dispatcher, behind this client's answers.
    Closing { id: ClientId, bytes: Vec<u8> },
    /// The connection's reader has ended.
    Gone { id: ClientId },
    /// A chat message from the host program (a bot, `POST /api/publish`), as user `from`.
    Say {
        room: String,
        from: String,
        text: String,
        /// Where to report the message's id (once it is durable), or why it was refused.
        reply: Option<Sender<SayResult>>,
    },
    /// The chat names bound to tokens (at start and after every token reload): reserved for
    /// their tokens even while nobody holds them.
    ReserveNames(Vec<String>),
    /// End the worker (after the dispatcher has ended).
    Stop,
}

pub(crate) struct ChatWorker {
    rx: Receiver<ChatEvent>,
    applier: Applier,
    /// The last commit failed: logged once when it starts and once when it ends.
    failing: bool,
}

/// Applies chat events to the [`Chat`] and hands what it decided to the dispatcher: the
/// single-node worker's core, and also what a cluster node runs on every entry of the shared
/// log (`cluster/reader.rs`), where only the deliveries to this node's clients are kept.
pub(crate) struct Applier {
    pub(crate) chat: Chat,
    hub: Sender<Event>,
    stats: Arc<Stats>,
    /// The host program's event channel, for accepted chat messages.
    events: Option<Sender<ServerEvent>>,
    outbox: Outbox,
    /// This batch's steps for the dispatcher, in order.
    outs: Vec<ChatOut>,
    /// Replies to `Say`, sent once the batch is committed.
    replies: Vec<(Sender<SayResult>, SayResult)>,
    /// This node's number in a cluster (0 without one): connection ids carry it in their top
    /// bits ([`NODE_SHIFT`]), and only this node's connections are handed to the dispatcher.
    node: u64,
}

/// A cluster-wide connection id is `node << NODE_SHIFT | the node's own id`: the dispatcher
/// numbers connections from 1 and would need 2^40 (a trillion) of them to reach the node bits.
pub(crate) const NODE_SHIFT: u32 = 40;

impl Applier {
    pub(crate) fn new(
        chat: Chat,
        hub: Sender<Event>,
        stats: Arc<Stats>,
        events: Option<Sender<ServerEvent>>,
        node: u64,
    ) -> Applier {
        let mut outbox = Outbox::new();
        outbox.observe = events.is_some();
        Applier {
            chat,
            hub,
            stats,
            events,
            outbox,
            outs: Vec::new(),
            replies: Vec::new(),
            node,
        }
    }

    fn local(&self, id: ClientId) -> Option<ClientId> {
        local(self.node, id)
    }

    /// Sets this node's number (a cluster node learns it from Redis before applying).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn set_node(&mut self, node: u64) {
        self.node = node;
    }

    /// A step for the dispatcher that no chat event decided (a cluster node's own).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn push_out(&mut self, out: ChatOut) {
        self.outs.push(out);
    }
}

/// Node `node`'s own id for a cluster-wide connection id, if the connection is that node's.
pub(crate) fn local(node: u64, id: ClientId) -> Option<ClientId> {
    (id >> NODE_SHIFT == node).then_some(id & ((1 << NODE_SHIFT) - 1))
}

impl ChatWorker {
    pub(crate) fn new(
        chat: Chat,
        rx: Receiver<ChatEvent>,
        hub: Sender<Event>,
        stats: Arc<Stats>,
        events: Option<Sender<ServerEvent>>,
    ) -> ChatWorker {
        ChatWorker {
            rx,
            applier: Applier::new(chat, hub, stats, events, 0),
            failing: false,
        }
    }

    /// Runs until [`ChatEvent::Stop`] or until the dispatcher is gone.
    pub(crate) fn run(mut self) {
        loop {
            // After a failed write, wake up to retry even if nobody talks: the history must
            // reach the disk once space is back, not at the next message.
            let first = match self.applier.chat.retry_at() {
                Some(at) => match self.rx.recv_deadline(at) {
                    Ok(event) => event,
                    Err(RecvTimeoutError::Timeout) => {
                        self.commit();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match self.rx.recv() {
                    Ok(event) => event,
                    Err(_) => break,
                },
            };
            if !self.applier.apply(first, now_ms()) {
                break;
            }
            let mut stop = false;
            for _ in 1..BATCH_EVENTS {
                match self.rx.try_recv() {
                    Ok(event) => {
                        if !self.applier.apply(event, now_ms()) {
                            stop = true;
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            self.commit();
            if !self.applier.deliver() || stop {
                break;
            }
        }
        debug!("chat worker ended");
    }

    /// Makes this batch durable: one write and (by the fsync policy) one fdatasync.
    fn commit(&mut self) {
        let started = Instant::now();
        let result = self.applier.chat.commit();
        if self.applier.chat.persistent() {
            self.applier.stats.chat_commit.observe(started.elapsed());
        }
        match result {
            Err(e) => {
                self.applier
                    .stats
                    .chat_commit_failures
                    .fetch_add(1, Relaxed);
                if !self.failing {
                    // Once per episode: a full disk fails every batch until space returns.
                    error!(
                        "chat history could not be written (delivering anyway, retrying with back-off; it is rewritten from memory once the disk takes it): {e}"
                    );
                    self.failing = true;
                    self.applier.stats.chat_log_failing.store(1, Relaxed);
                }
            }
            Ok(()) => {
                if self.failing {
                    info!("chat history is being written again");
                    self.failing = false;
                    self.applier.stats.chat_log_failing.store(0, Relaxed);
                }
            }
        }
    }
}

impl Applier {
    /// Applies one event; `false` for `Stop`.
    pub(crate) fn apply(&mut self, event: ChatEvent, now: u64) -> bool {
        match event {
            ChatEvent::Connect {
                id,
                addr,
                name,
                room,
                bound,
                rights,
            } => self.chat.connect_from(
                id,
                addr,
                name.as_deref(),
                room.as_deref(),
                bound,
                &rights,
                now,
                &mut self.outbox,
            ),
            ChatEvent::Input { id, input } => {
                if self.local(id).is_some() {
                    self.stats.messages_in.fetch_add(1, Relaxed);
                }
                self.chat.handle(id, *input, now, &mut self.outbox);
            }
            ChatEvent::Closing { id, bytes } => {
                self.chat.disconnect(id, now, &mut self.outbox);
                self.take_outbox(now);
                if let Some(id) = self.local(id) {
                    self.outs.push(ChatOut::Closing { id, bytes });
                }
            }
            ChatEvent::Gone { id } => {
                self.chat.disconnect(id, now, &mut self.outbox);
                self.take_outbox(now);
                if let Some(id) = self.local(id) {
                    self.outs.push(ChatOut::Gone { id });
                }
            }
            ChatEvent::Say {
                room,
                from,
                text,
                reply,
            } => {
                let result = self
                    .chat
                    .say_as(&room, &from, &text, now, &mut self.outbox)
                    .map_err(|r| r.message.to_string());
                if let Some(reply) = reply {
                    self.replies.push((reply, result));
                }
            }
            ChatEvent::ReserveNames(names) => self.chat.set_reserved_names(names, &mut self.outbox),
            ChatEvent::Stop => return false,
        }
        // Keep the dispatcher's steps in the order the chat decided them.
        self.take_outbox(now);
        true
    }

    /// Moves the chat's deliveries into this batch's steps, encoding each text frame once.
    fn take_outbox(&mut self, now: u64) {
        let mut closed = Vec::new();
        let node = self.node;
        for delivery in self.outbox.drain() {
            match delivery {
                Delivery::Text { to, text } => {
                    // In a cluster every node decides every delivery; each keeps its own.
                    let to: Vec<ClientId> = to.into_iter().filter_map(|c| local(node, c)).collect();
                    if to.is_empty() {
                        continue;
                    }
                    let frame: Arc<[u8]> = frame::encoded(frame::TEXT, text.as_bytes()).into();
                    self.outs.push(ChatOut::Frame { to, frame });
                }
                Delivery::Close { conn, code, reason } => {
                    if let Some(id) = local(node, conn) {
                        let mut bytes = Vec::new();
                        frame::encode_close(code, reason, &mut bytes);
                        self.outs.push(ChatOut::Closing { id, bytes });
                    }
                    closed.push(conn);
                }
            }
        }
        // The chat closed these clients: they leave their rooms now (the others hear it).
        for conn in closed {
            self.chat.disconnect(conn, now, &mut self.outbox);
        }
        if !self.outbox.is_empty() {
            self.take_outbox(now);
        }
    }

    /// Hands the batch to the dispatcher; `false` when the dispatcher is gone.
    pub(crate) fn deliver(&mut self) -> bool {
        if let Some(events) = &self.events {
            for p in self.outbox.posted.drain(..) {
                let event = ServerEvent::ChatMessage {
                    id: p.id,
                    room: p.room,
                    from: p.from,
                    text: p.text,
                };
                // Never wait for the host: every chat client would wait with it.
                if events.try_send(event).is_err() {
                    self.stats.events_dropped.fetch_add(1, Relaxed);
                }
            }
        }
        for (reply, result) in self.replies.drain(..) {
            let _ = reply.send(result);
        }
        self.stats.chat_rooms.store(self.chat.room_count(), Relaxed);
        self.stats.chat_users.store(self.chat.user_count(), Relaxed);
        if self.outs.is_empty() {
            return true;
        }
        let outs = std::mem::take(&mut self.outs);
        self.hub.send(Event::Chat(outs)).is_ok()
    }
}

/// Milliseconds since the Unix epoch, for chat timestamps.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
