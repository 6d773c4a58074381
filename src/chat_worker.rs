//! The chat's own thread: it owns the [`Chat`], applies every chat event in arrival order,
//! commits the history log once per batch (group commit), and only then hands the batch's
//! frames to the dispatcher. So a chat message is delivered only once it is durable (the
//! `--fsync` promise), while the dispatcher, which serves relay, echo and heartbeats, never
//! waits for a disk: a slow or failing disk slows only the chat, and `/metrics` shows it
//! (`wschat_chat_commit_seconds`, `wschat_chat_commit_failures_total`).
//!
//! Every event of a chat connection comes here, in its order: its login (sent by the
//! connection thread right after the dispatcher registered it), its frames, parsed by
//! [`ChatEndpoint`] on the connection's thread, its last frame and its end. Forwarding the last
//! two through this thread keeps them behind the answers to the requests before them.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use log::{debug, error, info};

use crate::chat::{self, Chat, Delivery, Input, Outbox};
use crate::embed::{FilterHook, ServerEvent};
use crate::endpoint::{Data, Endpoint, Refused};
use crate::frame;
use crate::hub::{ChatOut, ClientId, Event};
use crate::protocol::{ErrorCode, Reject, Request};
use crate::ratelimit::TokenBucket;
use crate::stats::Stats;

/// Chat events waiting for the worker can pile up to this many; then chat connection threads
/// wait in `send`, and TCP flow control slows their clients (each event is one client frame,
/// already bounded in size). 4096 events is a few hundred milliseconds of slack at the chat
/// rate limit of 10 messages/s per client with hundreds of clients typing.
pub(crate) const QUEUE_CAPACITY: usize = 4096;

/// Events applied per batch before the worker commits and delivers: bounds how long the first
/// message of a batch waits for the commit, while sharing one fsync among all of them.
const BATCH_EVENTS: usize = 1024;

/// A commit failure is logged at most this often (a full disk fails every batch).
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Refusals in a row after which a chat client is cut with Close 1008: a person typing fast
/// hits the limit once or twice and waits for the `rate_limited` answer; a client that keeps
/// sending through 50 refusals is a script flooding the room.
const FLOOD_STRIKES: u32 = 50;

/// The answer to a `Say`: the message's id, or why it was refused.
pub(crate) type SayResult = Result<u64, String>;

/// What the chat worker is told.
pub(crate) enum ChatEvent {
    /// A `/chat` connection was registered with the dispatcher: log it in (URL name and
    /// room, `bound` when the name comes from its token).
    Connect {
        id: ClientId,
        name: Option<String>,
        room: Option<String>,
        bound: bool,
        /// The token's `rooms` claim: the private rooms it may use.
        rooms: Vec<String>,
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
    /// End the worker (after the dispatcher has ended).
    Stop,
}

pub(crate) struct ChatWorker {
    chat: Chat,
    rx: Receiver<ChatEvent>,
    hub: Sender<Event>,
    stats: Arc<Stats>,
    /// The host program's event channel, for accepted chat messages.
    events: Option<Sender<ServerEvent>>,
    outbox: Outbox,
    /// This batch's steps for the dispatcher, in order.
    outs: Vec<ChatOut>,
    /// Replies to `Say`, sent once the batch is committed.
    replies: Vec<(Sender<SayResult>, SayResult)>,
    last_failure_log: Option<Instant>,
}

impl ChatWorker {
    pub(crate) fn new(
        chat: Chat,
        rx: Receiver<ChatEvent>,
        hub: Sender<Event>,
        stats: Arc<Stats>,
        events: Option<Sender<ServerEvent>>,
    ) -> ChatWorker {
        let mut outbox = Outbox::new();
        outbox.observe = events.is_some();
        ChatWorker {
            chat,
            rx,
            hub,
            stats,
            events,
            outbox,
            outs: Vec::new(),
            replies: Vec::new(),
            last_failure_log: None,
        }
    }

    /// Runs until [`ChatEvent::Stop`] or until the dispatcher is gone.
    pub(crate) fn run(mut self) {
        while let Ok(first) = self.rx.recv() {
            if !self.apply(first) {
                break;
            }
            let mut stop = false;
            for _ in 1..BATCH_EVENTS {
                match self.rx.try_recv() {
                    Ok(event) => {
                        if !self.apply(event) {
                            stop = true;
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            self.commit();
            if !self.deliver() || stop {
                break;
            }
        }
        debug!("chat worker ended");
    }

    /// Applies one event; `false` for `Stop`.
    fn apply(&mut self, event: ChatEvent) -> bool {
        let now = now_ms();
        match event {
            ChatEvent::Connect {
                id,
                name,
                room,
                bound,
                rooms,
            } => self.chat.connect(
                id,
                name.as_deref(),
                room.as_deref(),
                bound,
                &rooms,
                now,
                &mut self.outbox,
            ),
            ChatEvent::Input { id, input } => {
                self.stats.messages_in.fetch_add(1, Relaxed);
                self.chat.handle(id, *input, now, &mut self.outbox);
            }
            ChatEvent::Closing { id, bytes } => {
                self.chat.disconnect(id, now, &mut self.outbox);
                self.take_outbox();
                self.outs.push(ChatOut::Closing { id, bytes });
            }
            ChatEvent::Gone { id } => {
                self.chat.disconnect(id, now, &mut self.outbox);
                self.take_outbox();
                self.outs.push(ChatOut::Gone { id });
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
            ChatEvent::Stop => return false,
        }
        // Keep the dispatcher's steps in the order the chat decided them.
        self.take_outbox();
        true
    }

    /// Moves the chat's deliveries into this batch's steps, encoding each text frame once.
    fn take_outbox(&mut self) {
        let mut closed = Vec::new();
        for delivery in self.outbox.drain() {
            match delivery {
                Delivery::Text { to, text } => {
                    let frame: Arc<[u8]> = frame::encoded(frame::TEXT, text.as_bytes()).into();
                    self.outs.push(ChatOut::Frame { to, frame });
                }
                Delivery::Close { conn, code, reason } => {
                    let mut bytes = Vec::new();
                    frame::encode_close(code, reason, &mut bytes);
                    self.outs.push(ChatOut::Closing { id: conn, bytes });
                    closed.push(conn);
                }
            }
        }
        // The chat closed these clients: they leave their rooms now (the others hear it).
        let now = now_ms();
        for conn in closed {
            self.chat.disconnect(conn, now, &mut self.outbox);
        }
        if !self.outbox.is_empty() {
            self.take_outbox();
        }
    }

    /// Makes this batch durable: one write and (by the fsync policy) one fdatasync.
    fn commit(&mut self) {
        let started = Instant::now();
        let result = self.chat.commit();
        if self.chat.persistent() {
            self.stats.chat_commit.observe(started.elapsed());
        }
        if let Err(e) = result {
            self.stats.chat_commit_failures.fetch_add(1, Relaxed);
            let quiet = self
                .last_failure_log
                .is_some_and(|t| t.elapsed() < FAILURE_LOG_INTERVAL);
            if !quiet {
                error!("chat history could not be written (delivering anyway): {e}");
                self.last_failure_log = Some(Instant::now());
            }
        } else if self.last_failure_log.take().is_some() {
            info!("chat history is being written again");
        }
    }

    /// Hands the batch to the dispatcher; `false` when the dispatcher is gone.
    fn deliver(&mut self) -> bool {
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

/// A chat connection's endpoint, on its own thread: parses each frame, applies the rate limit
/// and the host's filter there, so the chat worker never parses JSON and never sees a flood.
pub(crate) struct ChatEndpoint {
    id: ClientId,
    tx: Sender<ChatEvent>,
    limit: ChatLimit,
    filter: Option<FilterHook>,
}

impl ChatEndpoint {
    pub(crate) fn new(
        id: ClientId,
        tx: Sender<ChatEvent>,
        limit: ChatLimit,
        filter: Option<FilterHook>,
    ) -> ChatEndpoint {
        ChatEndpoint {
            id,
            tx,
            limit,
            filter,
        }
    }

    /// Runs the filter hook on the text of a chat message, once per message that passed the
    /// rate limit.
    fn filter(&self, input: Input) -> Input {
        let Some(filter) = &self.filter else {
            return input;
        };
        let refused = |reference| {
            Input::Invalid(
                Reject::new(
                    ErrorCode::Filtered,
                    "the server's filter refused this message",
                )
                .with_ref(reference),
            )
        };
        match input {
            Input::Msg(mut msg) => {
                if let Request::Say { text, .. } | Request::Dm { text, .. } = &mut msg.body {
                    match filter(text) {
                        Some(t) => *text = t,
                        None => return refused(msg.reference),
                    }
                }
                Input::Msg(msg)
            }
            Input::Plain(text) => match filter(&text) {
                Some(t) => Input::Plain(t),
                None => refused(None),
            },
            other => other,
        }
    }
}

impl Endpoint for ChatEndpoint {
    fn message(&mut self, data: Data) -> Result<(), Refused> {
        let input = match &data {
            Data::Text(text) => chat::parse_input(text),
            Data::Binary(_) => Input::Binary,
        };
        let Some(input) = self.limit.admit(input) else {
            debug!(
                "client {}: flooding past the rate limit; closing with 1008",
                self.id
            );
            return Err(Refused::Close(1008, "rate limit exceeded"));
        };
        let input = Box::new(self.filter(input));
        let id = self.id;
        self.tx
            .send(ChatEvent::Input { id, input })
            .map_err(|_| Refused::Stopped)
    }

    fn last_frame(&mut self, bytes: Vec<u8>) -> bool {
        let id = self.id;
        self.tx.send(ChatEvent::Closing { id, bytes }).is_ok()
    }

    fn ended(&mut self) {
        let _ = self.tx.send(ChatEvent::Gone { id: self.id });
    }
}

/// A chat connection's rate limit and its flood detector.
pub(crate) struct ChatLimit {
    bucket: Option<TokenBucket>,
    refused_in_a_row: u32,
}

impl ChatLimit {
    /// `rate` messages per second with bursts of `burst`; a rate of 0 turns the limit off.
    pub(crate) fn new(rate: f64, burst: f64) -> ChatLimit {
        ChatLimit {
            bucket: (rate > 0.0).then(|| TokenBucket::new(rate, burst.max(1.0))),
            refused_in_a_row: 0,
        }
    }

    /// The input to pass on (the request itself, or its `rate_limited` stand-in), or `None`
    /// when the client is flooding and must be cut.
    fn admit(&mut self, input: Input) -> Option<Input> {
        let Some(bucket) = &mut self.bucket else {
            return Some(input);
        };
        if bucket.try_take(Instant::now()) {
            self.refused_in_a_row = 0;
            return Some(input);
        }
        self.refused_in_a_row += 1;
        (self.refused_in_a_row <= FLOOD_STRIKES).then(|| input.into_rate_limited())
    }
}
