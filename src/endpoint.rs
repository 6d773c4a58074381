//! Where a connection's messages go. A connection (`conn.rs`) knows frames; its endpoint knows
//! what they are for: the relay and echo pass frames to the dispatcher as they are
//! ([`Frames`]), the chat parses them for the chat worker (`chat::ingress::ChatEndpoint`).
//!
//! Endpoints run on the connection's own thread (or the parking thread), never on the
//! dispatcher, so whatever they cost (a rate limit's wait, JSON parsing, the host's filter)
//! slows only that client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use tungstenite::Bytes;

use crate::budget::Budget;
use crate::frame;
use crate::hub::{ClientId, Event};
use crate::ratelimit::TokenBucket;

/// A complete data message from a client.
pub(crate) enum Data {
    /// A text message: valid UTF-8, checked by tungstenite.
    Text(tungstenite::Utf8Bytes),
    Binary(Bytes),
}

/// Why an endpoint refused a message.
pub(crate) enum Refused {
    /// Close the connection with this code and reason (a flood, a policy).
    Close(u16, &'static str),
    /// The server is shutting down: the channel behind the endpoint is gone.
    Stopped,
}

/// What a connection hands its messages to.
pub(crate) trait Endpoint: Send {
    /// A complete data message.
    fn message(&mut self, data: Data) -> Result<(), Refused>;

    /// A ping or pong arrived: count it toward the endpoint's rate limit, if it has one, so a
    /// ping flood costs the server no more than a message flood. With `may_wait` (on the
    /// connection's own thread) wait for the limit; without (on the parking thread, which
    /// serves every idle connection and must never sleep) return `false` when over it, and
    /// the connection gets a thread of its own to wait on.
    fn control(&mut self, may_wait: bool) -> bool {
        let _ = may_wait;
        true
    }

    /// The connection's last frame (the reply to the client's Close, or our Close), to be
    /// written after everything this endpoint passed on before. `false`: the server is gone.
    fn last_frame(&mut self, bytes: Vec<u8>) -> bool;

    /// The connection's reader has ended; called exactly once, when the connection is dropped.
    fn ended(&mut self);
}

/// The relay's and echo's endpoint: frames go to the dispatcher verbatim.
pub(crate) struct Frames {
    id: ClientId,
    tx: Sender<Event>,
    throttle: Throttle,
    budget: Arc<Budget>,
}

impl Frames {
    pub(crate) fn new(
        id: ClientId,
        tx: Sender<Event>,
        throttle: Throttle,
        budget: Arc<Budget>,
    ) -> Frames {
        Frames {
            id,
            tx,
            throttle,
            budget,
        }
    }
}

impl Endpoint for Frames {
    fn message(&mut self, data: Data) -> Result<(), Refused> {
        self.throttle.wait();
        let (opcode, data) = match data {
            Data::Text(text) => (frame::TEXT, Bytes::from(text)),
            Data::Binary(data) => (frame::BINARY, data),
        };
        let id = self.id;
        // Wait here, on this client's thread, while the server holds too much for delivery:
        // TCP slows this sender; the dispatcher gives the bytes back once it handled them.
        self.budget.take(data.len());
        self.tx
            .send(Event::Message { id, opcode, data })
            .map_err(|_| Refused::Stopped)
    }

    fn control(&mut self, may_wait: bool) -> bool {
        if may_wait {
            self.throttle.wait();
            true
        } else {
            self.throttle.try_take()
        }
    }

    fn last_frame(&mut self, bytes: Vec<u8>) -> bool {
        let id = self.id;
        self.tx.send(Event::Closing { id, bytes }).is_ok()
    }

    fn ended(&mut self) {
        let _ = self.tx.send(Event::Gone { id: self.id });
    }
}

/// A relay connection's rate limit: over it, this thread waits before reading on, so the
/// client is slowed by TCP flow control and nothing is dropped.
pub(crate) struct Throttle {
    bucket: Option<TokenBucket>,
    rate: f64,
}

impl Throttle {
    /// `rate` messages per second with bursts of `burst`; a rate of 0 turns it off.
    pub(crate) fn new(rate: f64, burst: f64) -> Throttle {
        Throttle {
            bucket: (rate > 0.0).then(|| TokenBucket::new(rate, burst.max(1.0))),
            rate,
        }
    }

    /// Takes a token if one is there now.
    fn try_take(&mut self) -> bool {
        match &mut self.bucket {
            Some(bucket) => bucket.try_take(Instant::now()),
            None => true,
        }
    }

    fn wait(&mut self) {
        let Some(bucket) = &mut self.bucket else {
            return;
        };
        // One token arrives every 1/rate seconds; sleeping that long per refusal never spins.
        let step = Duration::from_secs_f64((1.0 / self.rate).min(1.0));
        while !bucket.try_take(Instant::now()) {
            std::thread::sleep(step);
        }
    }
}
