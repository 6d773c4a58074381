//! Where a connection's messages go. A connection (`conn.rs`) knows frames; its endpoint knows
//! what they are for: the relay and echo pass frames to the dispatcher as they are
//! ([`Frames`]), the chat parses them for the chat worker (`chat::ingress::ChatEndpoint`).
//!
//! Endpoints run on the connection's own thread (or the parking thread), never on the
//! dispatcher, so whatever they cost (a rate limit's wait, JSON parsing, the host's filter)
//! slows only that client.

use std::io;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use tungstenite::Bytes;

use crate::budget::Budget;
use crate::frame;
use crate::gate::WriteGate;
use crate::hub::{ClientId, Event};
use crate::ratelimit::TokenBucket;
use crate::stats::Stats;
use crate::sys;

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

    /// tungstenite's answer to a ping (encoded control frames): the endpoint may write it
    /// itself, in order with what it wrote before (an echo's [`Direct`]); the bytes it gives
    /// back go to the dispatcher.
    fn answer(&mut self, bytes: Vec<u8>) -> Option<Vec<u8>> {
        Some(bytes)
    }

    /// The connection's last frame (the reply to the client's Close, or our Close), to be
    /// written after everything this endpoint passed on before. `false`: the server is gone.
    fn last_frame(&mut self, bytes: Vec<u8>) -> bool;

    /// The connection's reader has ended; called exactly once, when the connection is dropped.
    fn ended(&mut self);

    /// Whether [`Endpoint::last_frame`] and [`Endpoint::ended`] only tell the dispatcher, so
    /// the parking thread may end the connection itself (it already talks to the dispatcher
    /// for heartbeats); `false` where they talk to a thread that may be waiting on a disk.
    fn ends_without_waiting(&self) -> bool {
        false
    }
}

/// The relay's and echo's endpoint: frames go to the dispatcher verbatim; an echo may be
/// written back by this thread itself ([`Direct`]).
pub(crate) struct Frames {
    id: ClientId,
    tx: Sender<Event>,
    throttle: Throttle,
    budget: Arc<Budget>,
    direct: Option<Direct>,
}

/// An echo client's way back that skips the dispatcher: when the gate is free (the
/// dispatcher holds nothing for this client), the reader writes the echo with one
/// non-blocking `send`, so a round trip wakes one thread, not two (`gate.rs` says why this
/// keeps one writer at a time and the order).
pub(crate) struct Direct {
    stream: Arc<TcpStream>,
    gate: Arc<WriteGate>,
    stats: Arc<Stats>,
    /// The frame being written, reused: an echo costs no allocation.
    buf: Vec<u8>,
}

impl Direct {
    pub(crate) fn new(stream: Arc<TcpStream>, gate: Arc<WriteGate>, stats: Arc<Stats>) -> Direct {
        Direct {
            stream,
            gate,
            stats,
            buf: Vec::new(),
        }
    }

    /// Writes the echo (the gate is ours). What the socket does not take now goes to the
    /// dispatcher as a leftover, which writes it first and queues the rest behind it, with
    /// the backlog limit that applies to every client.
    fn echo(&mut self, id: ClientId, opcode: u8, data: &[u8], tx: &Sender<Event>) -> bool {
        self.buf.clear();
        frame::encode(opcode, data, &mut self.buf);
        let s = &self.stats;
        s.messages_in.fetch_add(1, Relaxed);
        s.bytes_in.fetch_add(data.len() as u64, Relaxed);
        s.messages_out.fetch_add(1, Relaxed);
        s.echoes_direct.fetch_add(1, Relaxed);
        self.write(id, tx)
    }

    /// Writes `buf` (the gate is ours), then gives the gate back or hands the rest over.
    fn write(&mut self, id: ClientId, tx: &Sender<Event>) -> bool {
        write_held(&self.stream, &self.gate, &self.stats, id, &self.buf, tx)
    }
}

/// Writes `bytes` to a client's socket while this thread holds its write gate (`gate.rs`): an
/// echo, or the 101 written by the thread that accepted the handshake. One non-blocking pass;
/// what the socket does not take goes to the dispatcher as a leftover, to be written before
/// anything it queued meanwhile. Then the gate goes back, and the dispatcher is told if it
/// wanted to write meanwhile. `false`: the dispatcher is gone.
pub(crate) fn write_held(
    stream: &TcpStream,
    gate: &WriteGate,
    stats: &Stats,
    id: ClientId,
    bytes: &[u8],
    tx: &Sender<Event>,
) -> bool {
    let mut sent = 0;
    let mut failed = false;
    // Bounded: each pass writes something, or ends on EAGAIN or an error.
    while sent < bytes.len() {
        match sys::send_nonblocking(stream, &bytes[sent..]) {
            Ok(0) => break,
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            // A failed socket: the reader's next read fails and ends the connection; the
            // rest is dropped with it (the client is gone).
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    stats.bytes_out.fetch_add(sent as u64, Relaxed);
    if sent < bytes.len() && !failed {
        stats.echo_leftovers.fetch_add(1, Relaxed);
        gate.handed_over();
        let rest = bytes[sent..].to_vec();
        return tx.send(Event::Leftover { id, bytes: rest }).is_ok();
    }
    // The dispatcher wanted to write while this thread did: tell it it may now.
    !gate.written() || tx.send(Event::Writable { id }).is_ok()
}

impl Frames {
    pub(crate) fn new(
        id: ClientId,
        tx: Sender<Event>,
        throttle: Throttle,
        budget: Arc<Budget>,
        direct: Option<Direct>,
    ) -> Frames {
        Frames {
            id,
            tx,
            throttle,
            budget,
            direct,
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
        if let Some(direct) = &mut self.direct {
            if direct.gate.try_write() {
                let sent = direct.echo(id, opcode, &data, &self.tx);
                return if sent { Ok(()) } else { Err(Refused::Stopped) };
            }
            direct.gate.sent_to_hub();
        }
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

    fn answer(&mut self, bytes: Vec<u8>) -> Option<Vec<u8>> {
        let Some(direct) = &mut self.direct else {
            return Some(bytes);
        };
        if direct.gate.try_write() {
            direct.buf.clear();
            direct.buf.extend_from_slice(&bytes);
            // `false` (the server is gone) shows on this connection's next read.
            let _ = direct.write(self.id, &self.tx);
            return None;
        }
        // The dispatcher writes it, counted in flight so that no later echo overtakes it.
        direct.gate.sent_to_hub();
        Some(bytes)
    }

    fn last_frame(&mut self, bytes: Vec<u8>) -> bool {
        let id = self.id;
        self.tx.send(Event::Closing { id, bytes }).is_ok()
    }

    fn ended(&mut self) {
        let _ = self.tx.send(Event::Gone { id: self.id });
    }

    fn ends_without_waiting(&self) -> bool {
        true
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
