//! The writer: appends this node's chat events to the shared log, in their order, as few
//! round trips as possible (everything waiting goes in one script call). It does not apply
//! them: the reader does, when they come back in the log's order, so this node's clients see
//! exactly what every other node's see.
//!
//! When Redis cannot be reached (or stops answering for `link::COMMAND_TIMEOUT`), requests
//! are answered at once with `unavailable`, a new chat connection is closed with 1013 (try
//! again later), and what must not be lost (a connection's end, the reserved names) waits in
//! `pending` and goes first once Redis is back.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use log::debug;

use super::Shared;
use super::link::{COMMAND_TIMEOUT, Link};
use super::log::{APPEND, LAST, LEAVE, LOG, NODES, Op, Record};
use crate::chat::worker::{ChatEvent, NODE_SHIFT, SayResult, UNAVAILABLE};
use crate::chat::{Input, Outbox};
use crate::frame;
use crate::hub::{ChatOut, ClientId, Event};
use crate::protocol::{ErrorCode, Reject};

/// Events appended in one script call: one round trip for a burst, while a single call stays
/// well under Redis's own limits (and a few milliseconds of its time).
const BATCH: usize = 256;

/// How often the writer looks again while it has entries waiting for Redis.
const RETRY_POLL: Duration = Duration::from_millis(200);

/// What to do for an event whose append failed.
enum Fallback {
    /// A new connection: close it, it may try again later.
    Refuse(ClientId),
    /// A request: answer `unavailable` (or its own error, when it was refused anyway).
    Answer(ClientId, Reject),
    /// A bot's `say`: report the failure to the caller (the reply waits in
    /// `Shared::replies` under the entry's sequence number once it has one).
    Reply(Option<Sender<SayResult>>),
    /// The same, once the entry has its sequence number.
    Replied(u64),
    /// Must reach the log: kept in `pending`, and its local part done now.
    Keep(Option<ChatOut>),
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    rx: Receiver<ChatEvent>,
    hub: Sender<Event>,
    link: Link,
    append: redis::Script,
    /// This node's last sequence number (see `log::Record`).
    seq: u64,
    /// Entries that must reach the log, oldest first.
    pending: VecDeque<String>,
    /// The reserved names last set, appended again after every reconnect (a Redis that came
    /// back empty must learn them again).
    reserved: Option<Vec<String>>,
    /// The last append failed (or none was tried yet): the next one re-sends `reserved`.
    resend: bool,
    /// This node's connections whose login is (or may be) in the log: only their ends must
    /// reach it. So `pending` holds at most two entries per such connection, however many
    /// logins were refused during an outage.
    in_log: HashSet<ClientId>,
    /// The batch being flushed was sent to Redis (its fate may be unknown).
    attempted: bool,
}

impl Writer {
    pub(crate) fn new(shared: Arc<Shared>, rx: Receiver<ChatEvent>, hub: Sender<Event>) -> Writer {
        Writer {
            shared,
            rx,
            hub,
            link: Link::new("chat writer", COMMAND_TIMEOUT),
            append: redis::Script::new(APPEND),
            seq: 0,
            pending: VecDeque::new(),
            reserved: None,
            resend: true,
            in_log: HashSet::new(),
            attempted: false,
        }
    }

    pub(crate) fn run(mut self) {
        loop {
            let wait = if self.pending.is_empty() && self.shared.node() != 0 {
                Duration::from_secs(1)
            } else {
                RETRY_POLL
            };
            let mut batch = Vec::new();
            let mut stop = false;
            match self.rx.recv_timeout(wait) {
                Ok(ChatEvent::Stop) | Err(RecvTimeoutError::Disconnected) => stop = true,
                Ok(event) => self.take(event, &mut batch),
                Err(RecvTimeoutError::Timeout) => {}
            }
            while !stop && batch.len() < BATCH {
                match self.rx.try_recv() {
                    Ok(ChatEvent::Stop) => stop = true,
                    Ok(event) => self.take(event, &mut batch),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() || !self.pending.is_empty() || self.resend {
                self.flush(batch);
            }
            if stop || self.shared.stopping() {
                break;
            }
        }
        self.leave();
        self.shared.stopping.store(true, SeqCst);
        debug!("cluster writer ended");
    }

    /// Turns one event into a log entry (and what to do if it cannot be appended).
    fn take(&mut self, event: ChatEvent, batch: &mut Vec<(Op, Fallback)>) {
        let node = self.shared.node();
        let global = |id: ClientId| node << NODE_SHIFT | id;
        let (op, fallback) = match event {
            ChatEvent::Connect {
                id,
                addr,
                name,
                room,
                bound,
                rights,
            } => (
                Op::Connect {
                    id: global(id),
                    addr,
                    name,
                    room,
                    bound,
                    rights,
                },
                Fallback::Refuse(id),
            ),
            ChatEvent::Input { id, input } => {
                let answer = unavailable_answer(&input);
                (
                    Op::Input {
                        id: global(id),
                        input: *input,
                    },
                    Fallback::Answer(id, answer),
                )
            }
            ChatEvent::Closing { id, bytes } => (
                Op::Closing {
                    id: global(id),
                    bytes: bytes.clone(),
                },
                Fallback::Keep(Some(ChatOut::Closing { id, bytes })),
            ),
            ChatEvent::Gone { id } => (
                Op::Gone { id: global(id) },
                Fallback::Keep(Some(ChatOut::Gone { id })),
            ),
            ChatEvent::Say {
                room,
                from,
                text,
                reply,
            } => (Op::Say { room, from, text }, Fallback::Reply(reply)),
            ChatEvent::ReserveNames(names) => {
                self.reserved = Some(names.clone());
                (Op::Reserve { names }, Fallback::Keep(None))
            }
            ChatEvent::Stop => return,
        };
        if node == 0 {
            // Redis never answered yet: nothing of this node is in the log, so nothing needs
            // to reach it later either (the reserved names are appended once it answers).
            self.fail(fallback);
            return;
        }
        match &op {
            Op::Connect { .. } => {
                if let Fallback::Refuse(id) = fallback {
                    self.in_log.insert(id);
                }
            }
            Op::Closing { .. } | Op::Gone { .. } => {
                let local = match &fallback {
                    Fallback::Keep(Some(ChatOut::Closing { id, .. } | ChatOut::Gone { id })) => *id,
                    _ => 0,
                };
                let known = if matches!(op, Op::Gone { .. }) {
                    self.in_log.remove(&local)
                } else {
                    self.in_log.contains(&local)
                };
                if !known {
                    // Its login never reached the log: its end concerns this node only.
                    self.fail(fallback);
                    return;
                }
            }
            _ => {}
        }
        batch.push((op, fallback));
    }

    /// The entry's JSON with the next sequence number. Numbers are given in the order entries
    /// go to Redis (after everything pending), which is what the readers' dedup relies on.
    fn record(&mut self, op: Op) -> Option<String> {
        self.seq += 1;
        let rec = Record {
            n: self.shared.node(),
            s: self.seq,
            op,
        };
        serde_json::to_string(&rec)
            .map_err(|e| log::error!("cluster: a chat event could not be encoded: {e}"))
            .ok()
    }

    /// Appends `pending` and then `batch` in one script call.
    fn flush(&mut self, batch: Vec<(Op, Fallback)>) {
        if !self.link.is_up() && self.shared.stats.cluster_up.load(Relaxed) == 1 {
            // The lease thread (renewing every second) reached Redis: it is back, so a
            // client logging in now is not refused for this thread's back-off.
            self.link.retry_now();
        }
        let node = self.shared.node();
        let connected = node != 0 && self.link.get(&self.shared.client).is_some();
        // Whether Redis may have received this batch (a timeout after sending): then its
        // logins may be in the log, and their ends must follow.
        self.attempted = false;
        if !connected {
            // Entries that must reach the log get their numbers now, in order.
            let batch = batch
                .into_iter()
                .map(|(op, fb)| (self.record(op).unwrap_or_default(), fb))
                .collect();
            self.failed(batch);
            return;
        }
        let mut fresh = Vec::with_capacity(batch.len() + 1);
        if self.resend {
            // (Re)connected: the reserved names go first, in case Redis came back empty.
            if let Some(names) = self.reserved.clone() {
                if let Some(json) = self.record(Op::Reserve { names }) {
                    fresh.push((json, Fallback::Keep(None)));
                }
            }
        }
        for (op, fallback) in batch {
            let Some(json) = self.record(op) else {
                continue;
            };
            let fallback = match fallback {
                Fallback::Reply(Some(reply)) => {
                    self.shared.replies.lock().insert(self.seq, reply);
                    Fallback::Replied(self.seq)
                }
                other => other,
            };
            fresh.push((json, fallback));
        }
        // A connection found dead by this append (Redis restarted while this node had nothing
        // to say) did not carry the command to anyone: one more try on a fresh connection.
        // Not after a timeout, which may have carried it.
        self.attempted = true;
        let mut result = self.append(&fresh);
        if let Some(Err(e)) = &result {
            if e.is_connection_dropped() {
                self.link.failed(e);
                self.link.retry_now();
                result = self.append(&fresh);
            }
        }
        match result {
            Some(Ok(ids)) => {
                self.resend = false;
                self.shared
                    .stats
                    .cluster_log_out
                    .fetch_add(ids.len() as u64, Relaxed);
                self.pending.clear();
            }
            Some(Err(e)) => {
                self.link.failed(&e);
                self.failed(fresh);
            }
            None => self.failed(fresh),
        }
    }

    /// One script call with `pending` and then `fresh`; `None` when not connected.
    fn append(&mut self, fresh: &[(String, Fallback)]) -> Option<redis::RedisResult<Vec<String>>> {
        let con = self.link.get(&self.shared.client)?;
        let mut call = self.append.prepare_invoke();
        call.key(LOG).key(LAST);
        for e in self.pending.iter().chain(fresh.iter().map(|(e, _)| e)) {
            call.arg(e);
        }
        Some(call.invoke::<Vec<String>>(con))
    }

    /// Redis did not take `batch`: what must reach the log waits, the rest is answered now.
    fn failed(&mut self, batch: Vec<(String, Fallback)>) {
        self.resend = true;
        for (json, fallback) in batch {
            if let Fallback::Refuse(id) = fallback {
                if !self.attempted {
                    self.in_log.remove(&id);
                }
            }
            if matches!(fallback, Fallback::Keep(_)) && !json.is_empty() {
                self.pending.push_back(json);
            }
            self.fail(fallback);
        }
    }

    /// The local part of an event that did not reach the log.
    fn fail(&mut self, fallback: Fallback) {
        let mut outs = Vec::new();
        match fallback {
            Fallback::Refuse(id) => {
                let mut bytes = Vec::new();
                frame::encode_close(1013, "chat unavailable: Redis unreachable", &mut bytes);
                outs.push(ChatOut::Closing { id, bytes });
            }
            Fallback::Answer(id, reject) => {
                let mut out = Outbox::new();
                out.send_error(id, &reject);
                for d in out.drain() {
                    if let crate::chat::Delivery::Text { to, text } = d {
                        let frame = frame::encoded(frame::TEXT, text.as_bytes()).into();
                        outs.push(ChatOut::Frame { to, frame });
                    }
                }
            }
            Fallback::Reply(reply) => {
                if let Some(reply) = reply {
                    let _ = reply.send(Err(UNAVAILABLE.into()));
                }
            }
            Fallback::Replied(seq) => {
                if let Some(reply) = self.shared.replies.lock().remove(&seq) {
                    let _ = reply.send(Err(UNAVAILABLE.into()));
                }
            }
            Fallback::Keep(local) => outs.extend(local),
        }
        if !outs.is_empty() {
            let _ = self.hub.send(Event::Chat(outs));
        }
    }

    /// On stop: end the lease now, so this node's users leave every room at once rather than
    /// when the lease runs out.
    fn leave(&mut self) {
        let node = self.shared.node();
        if node == 0 {
            return;
        }
        if let Some(con) = self.link.get(&self.shared.client) {
            let _ = redis::Script::new(LEAVE)
                .key(NODES)
                .key(LOG)
                .key(LAST)
                .arg(node)
                .invoke::<i64>(con);
        }
    }
}

/// The answer to a request that could not reach the log: its own error when it was refused
/// before (those need no Redis), `unavailable` otherwise.
fn unavailable_answer(input: &Input) -> Reject {
    let unavailable = |reference| {
        Reject::new(
            ErrorCode::Unavailable,
            "the chat is unavailable: this node cannot reach Redis; try again shortly",
        )
        .with_ref(reference)
    };
    match input {
        Input::Msg(m) => unavailable(m.reference.clone()),
        Input::Plain(_) => unavailable(None),
        Input::Invalid(r) => r.clone(),
        Input::Binary => Reject::new(
            ErrorCode::BinaryNotSupported,
            "binary frames are not supported on /chat",
        ),
        Input::RateLimited { reference } => {
            Reject::new(ErrorCode::RateLimited, "too many messages: slow down")
                .with_ref(reference.clone())
        }
    }
}
