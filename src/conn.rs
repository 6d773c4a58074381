//! The read loop of one WebSocket connection: frames in, messages out. Knows frames, not chat.
//!
//! A connection thread blocks in `read` until data arrives or `park_after` passes with none;
//! then the connection moves to the parking thread (`park.rs`), which reads it without blocking
//! until it speaks again, so an idle connection costs no wake-ups and no thread. Neither ever
//! writes to the socket: tungstenite's automatic answers (the pong to a ping, the reply to a
//! Close) are written into an in-memory buffer and handed to the dispatcher, the socket's only
//! writer. Data messages go to the connection's [`Endpoint`] (relay and echo: the dispatcher;
//! chat: the chat worker), which decides what they mean.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use log::{debug, trace};
use tungstenite::error::{Error as WsError, ProtocolError};
use tungstenite::protocol::{Role, WebSocket, WebSocketConfig};
use tungstenite::{Message, Result as WsResult};

use crate::config::Config;
use crate::embed::{Payload, ServerEvent};
use crate::endpoint::{Data, Endpoint, Refused};
use crate::frame;
use crate::hub::{ClientId, Event};
use crate::stats::Stats;
use crate::sys;

/// After the last frame to a closing client is queued, how long its reader (a thread, or the
/// parking thread) waits for the client to close its side. Long enough for a slow link to read
/// our Close; short enough that a client that never closes does not hold the thread or the
/// connection.
pub(crate) const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Bytes the parking thread discards from a lingering connection per wake-up (see
/// [`Conn::drain`]): a client that keeps sending after its Close cannot hog the thread; its
/// `CLOSE_WAIT` ends it anyway.
const DRAIN_PER_WAKE: usize = 16 * 1024;

/// What the host program asked to see for this connection.
pub(crate) struct Host {
    /// Where `ServerEvent::Message` goes (blocking send: a host that falls behind slows this
    /// client down through TCP rather than losing its messages).
    pub events: Option<Sender<ServerEvent>>,
    /// The path the client connected to, for events.
    pub path: String,
    pub stats: Arc<Stats>,
}

impl Host {
    fn report(&self, id: ClientId, data: impl FnOnce() -> Payload) {
        if let Some(events) = &self.events {
            let _ = events.send(ServerEvent::Message {
                client: id,
                path: self.path.clone(),
                data: data(),
            });
        }
    }
}

/// tungstenite's own read buffer per connection. It is allocated for the connection's whole
/// life (and zero-filled, so resident) and cannot be freed from outside; 256 bytes holds a
/// typical chat or heartbeat frame. The bulk reading goes through `Io`'s read-ahead, which
/// can be freed while the connection is parked.
const WS_READ_BUFFER: usize = 256;

/// What tungstenite reads from and writes to: reads come from the socket through a read-ahead
/// buffer, writes only collect.
struct Io {
    stream: Arc<TcpStream>,
    written: Vec<u8>,
    /// Read-ahead: `ahead[pos..]` is unread. Sized `read_buffer_size` (one syscall fetches that
    /// much), freed when the connection parks with nothing left in it.
    ahead: Vec<u8>,
    pos: usize,
    ahead_size: usize,
    /// Read without waiting (on the parking thread); otherwise block (on a connection thread,
    /// until the socket's read timeout, `park_after`).
    nonblocking: bool,
    /// How long a message that has started arriving may hold this connection's thread
    /// (`park_after`; `None` when parking is off). Without it, a client that sends one byte
    /// every few seconds never lets the read time out, and holds a thread for as long as it
    /// likes (30 such clients took 30 threads). Past it the connection is parked with its
    /// partial message intact; the parking thread reads the rest as it trickles in.
    trickle_limit: Option<Duration>,
    /// When the message being read started arriving (its first byte on this thread).
    started: Option<Instant>,
    /// Bytes handed to tungstenite so far (with the early bytes it was built with): compared
    /// with the bytes of the frames it returned, it tells whether tungstenite holds anything.
    delivered: u64,
}

impl Io {
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.nonblocking {
            return sys::recv_nonblocking(&*self.stream, buf);
        }
        if let (Some(limit), Some(started)) = (self.trickle_limit, self.started) {
            if started.elapsed() >= limit {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "message arriving too slowly",
                ));
            }
        }
        let n = (&*self.stream).read(buf)?;
        if n > 0 && self.started.is_none() {
            self.started = Some(Instant::now());
        }
        Ok(n)
    }

    /// Frees the read-ahead buffer if nothing is left in it (the connection is going idle).
    fn release(&mut self) {
        if self.pos >= self.ahead.len() {
            self.ahead = Vec::new();
            self.pos = 0;
        }
    }
}

impl Read for Io {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.ahead.len() {
            if buf.len() >= self.ahead_size {
                let n = self.fill(buf)?;
                self.delivered += n as u64;
                return Ok(n);
            }
            let mut ahead = std::mem::take(&mut self.ahead);
            ahead.resize(self.ahead_size, 0);
            let n = self.fill(&mut ahead);
            ahead.truncate(*n.as_ref().unwrap_or(&0));
            self.ahead = ahead;
            self.pos = 0;
            n?;
        }
        let n = buf.len().min(self.ahead.len() - self.pos);
        buf[..n].copy_from_slice(&self.ahead[self.pos..self.pos + n]);
        self.pos += n;
        self.delivered += n as u64;
        Ok(n)
    }
}

impl Write for Io {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// tungstenite's settings for a server connection under `cfg`.
pub(crate) fn ws_config(cfg: &Config) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER.min(cfg.read_buffer_size))
        // Writes go to `Io::written`, never to the socket: nothing to buffer.
        .write_buffer_size(0)
        .max_message_size(Some(cfg.max_message_size))
        .max_frame_size(Some(cfg.max_message_size))
}

/// The reading side of one WebSocket connection: everything needed to go on reading it on any
/// thread, so that an idle connection can be parked (its thread ended, its stack freed) and
/// resumed later on a new thread with its tungstenite state intact.
pub(crate) struct Conn {
    pub(crate) id: ClientId,
    stream: Arc<TcpStream>,
    /// tungstenite's state, boxed so that it can be dropped: `None` while the connection rests
    /// (parked with nothing half-read), rebuilt when it is read again. Its ~650 bytes (the
    /// struct, its read buffer) are most of what an idle connection would otherwise keep.
    ws: Option<Box<WebSocket<Io>>>,
    /// Bytes of the frames tungstenite returned since `ws` was built, counted as a client
    /// frame of that payload takes on the wire. Equal to `Io::delivered` only when tungstenite
    /// holds nothing: no half frame, no fragment of a message (a fragmented message, or a
    /// length in a longer form than needed, leaves them unequal, and that connection keeps its
    /// state while parked: correct, only larger).
    consumed: u64,
    cfg: Arc<Config>,
    endpoint: Box<dyn Endpoint>,
    host: Host,
    /// To the dispatcher, for heartbeat frames (pongs) and answers to pings.
    tx: Sender<Event>,
    /// Already added to the parking thread's epoll once (re-arming is then a MOD).
    pub(crate) in_poller: bool,
    /// The socket's read timeout is `park_after`: set on the first [`Conn::run`], so that a
    /// connection that starts parked and never speaks (most of a broadcast's) costs no
    /// `setsockopt` when it is accepted.
    timed: bool,
    /// Runs once when the connection ends, wherever that happens (counters, the Left event).
    on_end: Option<Box<dyn FnOnce() + Send>>,
    /// Its last frame went to the dispatcher: it is only waiting for the client to close its
    /// side (see `finish`).
    lingering: bool,
}

/// Why a connection thread stopped reading.
pub(crate) enum Stop {
    /// The connection is over.
    Ended,
    /// Nothing arrived for `park_after`: park it.
    Idle,
}

/// What the parking thread found on a parked connection that became readable.
pub(crate) enum Poke {
    /// Only heartbeats (handled), or half a frame: stay parked.
    Parked,
    /// Data, or more traffic than the parking thread should handle, or an end whose endpoint
    /// may wait (chat, a host's event channel): go back to a thread of its own, starting with
    /// this read's result.
    Wake(Option<WsResult<Message>>),
    /// The client's Close, its hang-up or a protocol error, handled here: the connection is
    /// over once it is dropped, or, if [`Conn::lingering`], once the client closes its side.
    Over,
}

/// Frames the parking thread handles on one wake-up before it hands a chatty connection back to
/// a thread of its own (the parking thread serves every idle connection; none may hog it).
const POKE_BUDGET: usize = 16;

impl Drop for Conn {
    fn drop(&mut self) {
        self.endpoint.ended();
        if let Some(on_end) = self.on_end.take() {
            on_end();
        }
    }
}

impl Conn {
    /// A connection whose handshake is done; `early` holds bytes that arrived with the request
    /// head (a client that did not wait for the 101 before sending its first frame).
    #[allow(clippy::too_many_arguments)] // one constructor, called once, fields named at the call
    pub(crate) fn new(
        id: ClientId,
        stream: Arc<TcpStream>,
        early: Vec<u8>,
        cfg: &Arc<Config>,
        tx: Sender<Event>,
        endpoint: Box<dyn Endpoint>,
        host: Host,
        on_end: Box<dyn FnOnce() + Send>,
    ) -> Conn {
        // Without early frames there is nothing for tungstenite to hold yet: the connection
        // starts as if resting (most start parked, and would drop a fresh state at once),
        // and its state is built on its first read.
        let ws = (!early.is_empty()).then(|| new_ws(&stream, cfg, early));
        Conn {
            id,
            stream,
            ws,
            consumed: 0,
            cfg: cfg.clone(),
            endpoint,
            host,
            tx,
            in_poller: false,
            timed: false,
            on_end: Some(on_end),
            lingering: false,
        }
    }

    pub(crate) fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// tungstenite's state, rebuilt if the connection was resting.
    fn ws(&mut self) -> &mut WebSocket<Io> {
        if self.ws.is_none() {
            self.consumed = 0;
        }
        let (stream, cfg) = (&self.stream, &self.cfg);
        self.ws
            .get_or_insert_with(|| new_ws(stream, cfg, Vec::new()))
    }

    /// Reads one message, counting the bytes of what tungstenite returns.
    fn read(&mut self) -> WsResult<Message> {
        let result = self.ws().read();
        if let Ok(message) = &result {
            self.consumed += wire_len(message);
        }
        result
    }

    /// Drops tungstenite's state if it holds nothing (see `consumed`), before the connection
    /// parks: a resting connection keeps only its ids, its endpoint and its hooks.
    pub(crate) fn rest(&mut self) {
        let Some(ws) = &self.ws else { return };
        let io = ws.get_ref();
        if io.pos >= io.ahead.len() && io.written.is_empty() && io.delivered == self.consumed {
            self.ws = None;
        }
    }

    /// Reads frames on the calling thread (starting with `first`, a result the parking thread
    /// already read) until the connection ends or stays silent for the socket's read timeout.
    pub(crate) fn run(&mut self, mut first: Option<WsResult<Message>>) -> Stop {
        if !self.timed {
            self.timed = true;
            // Reads block until data arrives or `park_after` passes with none; then the
            // connection is parked (park.rs). Zero: never park, so no timeout (also replacing
            // whatever the request head's reading left).
            let park_after = Some(self.cfg.park_after).filter(|d| !d.is_zero());
            let _ = self.stream.set_read_timeout(park_after);
        }
        loop {
            let result = first.take().unwrap_or_else(|| {
                // A new message: its trickle deadline starts with its first byte.
                self.ws().get_mut().started = None;
                self.read()
            });
            if is_idle(&result) {
                self.ws().get_mut().release();
                return Stop::Idle;
            }
            if !self.step(result) {
                self.linger();
                return Stop::Ended;
            }
        }
    }

    /// On the parking thread: reads what arrived, without waiting. Heartbeats are answered
    /// here, so a parked connection that only pongs never needs a thread.
    pub(crate) fn poke(&mut self) -> Poke {
        self.ws().get_mut().nonblocking = true;
        let mut outcome = Poke::Wake(None);
        for _ in 0..POKE_BUDGET {
            let result = self.read();
            match result {
                Ok(Message::Ping(_) | Message::Pong(_)) => {
                    if !self.endpoint.control(false) {
                        // Over its rate limit: wait for it on a thread of its own.
                        outcome = Poke::Wake(Some(result));
                        break;
                    }
                    if !self.heartbeat(result) {
                        break; // the dispatcher is gone; the wake-up ends it
                    }
                }
                Err(WsError::Io(ref e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    outcome = Poke::Parked;
                    break;
                }
                // The end, where ending waits on nothing but the dispatcher: no thread for it
                // (a thread started per closing client took a connection's life from ~47 to
                // ~125 µs of server CPU: BENCHMARKS.md, "Churn").
                Ok(Message::Close(_)) | Err(_) if self.ends_here() => {
                    self.step(result);
                    self.host.stats.parked_ends.fetch_add(1, Relaxed);
                    outcome = Poke::Over;
                    break;
                }
                other => {
                    outcome = Poke::Wake(Some(other));
                    break;
                }
            }
        }
        let io = self.ws().get_mut();
        io.nonblocking = false;
        if matches!(outcome, Poke::Parked) {
            io.release();
        }
        outcome
    }

    /// Handles one read result; `false` when the connection is over.
    fn step(&mut self, result: WsResult<Message>) -> bool {
        let id = self.id;
        let host = &self.host;
        let data = match result {
            Ok(Message::Text(text)) => {
                host.report(id, || Payload::Text(text.to_string()));
                Data::Text(text)
            }
            Ok(Message::Binary(data)) => {
                host.report(id, || Payload::Binary(data.to_vec()));
                Data::Binary(data)
            }
            Ok(Message::Ping(_) | Message::Pong(_)) => {
                self.endpoint.control(true);
                return self.heartbeat(result);
            }
            Ok(Message::Close(close)) => {
                trace!("client {id} sent Close {close:?}");
                // Writes the reply Close into `written` (then reports ConnectionClosed).
                let ws = self.ws();
                let _ = ws.flush();
                let bytes = std::mem::take(&mut ws.get_mut().written);
                self.finish(bytes);
                return false;
            }
            Ok(Message::Frame(_)) => return true, // only produced when writing raw frames
            Err(e) => {
                match close_for(&e) {
                    Some((code, reason)) => {
                        debug!("client {id}: {e}; closing with {code}");
                        self.host.stats.protocol_errors.fetch_add(1, Relaxed);
                        self.close_with(code, reason);
                    }
                    None => trace!("client {id}: connection ended: {e}"),
                }
                return false;
            }
        };
        match self.endpoint.message(data) {
            Ok(()) => true,
            Err(Refused::Close(code, reason)) => {
                self.close_with(code, reason);
                false
            }
            Err(Refused::Stopped) => false,
        }
    }

    /// Answers a ping (tungstenite's pong goes to the dispatcher) or notes a pong; `false`
    /// when the dispatcher is gone (the server is shutting down).
    fn heartbeat(&mut self, result: WsResult<Message>) -> bool {
        let id = self.id;
        match result {
            Ok(Message::Ping(_)) => {
                // tungstenite queued the pong; flushing writes it into `written`.
                let ws = self.ws();
                let _ = ws.flush();
                let bytes = std::mem::take(&mut ws.get_mut().written);
                match self.endpoint.answer(bytes) {
                    Some(bytes) => self.tx.send(Event::Control { id, bytes }).is_ok(),
                    None => true,
                }
            }
            _ => self.tx.send(Event::Pong { id }).is_ok(),
        }
    }

    /// Whether this connection may end on the parking thread: its endpoint only tells the
    /// dispatcher, and no host event channel (which the host may not be reading) waits.
    fn ends_here(&self) -> bool {
        self.host.events.is_none() && self.endpoint.ends_without_waiting()
    }

    /// Its last frame went to the dispatcher: it waits only for the client to close its side.
    pub(crate) fn lingering(&self) -> bool {
        self.lingering
    }

    /// On the parking thread, for a lingering connection: discards what the client sent
    /// since, without waiting; `true` once the client has closed its side (or the socket
    /// failed): the connection can be dropped.
    pub(crate) fn drain(&mut self) -> bool {
        let mut sink = [0u8; 1024];
        for _ in 0..DRAIN_PER_WAKE / sink.len() {
            match sys::recv_nonblocking(&*self.stream, &mut sink) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return e.kind() != io::ErrorKind::WouldBlock,
            }
        }
        false
    }

    /// Ends the connection with our Close frame.
    fn close_with(&mut self, code: u16, reason: &str) {
        let mut bytes = Vec::new();
        frame::encode_close(code, reason, &mut bytes);
        self.finish(bytes);
    }

    /// Hands the last frame to the endpoint (which passes it to the dispatcher behind
    /// everything before it); the connection then lingers until the client closes its side
    /// ([`Conn::linger`] on a thread, [`Conn::drain`] on the parking thread). The end itself
    /// is reported when the `Conn` is dropped.
    fn finish(&mut self, last: Vec<u8>) {
        self.lingering = self.endpoint.last_frame(last);
    }

    /// On a connection thread: waits (bounded) for a lingering client to close its side.
    fn linger(&mut self) {
        if !self.lingering {
            return;
        }
        // Keep reading (and discarding) so that the client's remaining bytes do not turn our
        // close into a RST that could destroy the Close frame before the client reads it.
        let deadline = Instant::now() + CLOSE_WAIT;
        let mut sink = [0u8; 1024];
        let mut stream = &*self.stream;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
                break;
            }
            match stream.read(&mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }
}

/// tungstenite's state for a server connection on `stream`, starting with `early` bytes.
fn new_ws(stream: &Arc<TcpStream>, cfg: &Config, early: Vec<u8>) -> Box<WebSocket<Io>> {
    let io = Io {
        stream: stream.clone(),
        written: Vec::new(),
        ahead: Vec::new(),
        pos: 0,
        ahead_size: cfg.read_buffer_size,
        nonblocking: false,
        trickle_limit: (!cfg.park_after.is_zero()).then_some(cfg.park_after),
        started: None,
        delivered: early.len() as u64,
    };
    Box::new(WebSocket::from_partially_read(
        io,
        early,
        Role::Server,
        Some(ws_config(cfg)),
    ))
}

/// The bytes a client frame carrying `message` takes on the wire, in the shortest form:
/// 2 bytes of header, the extended length (2 or 8 bytes) past 125 bytes, 4 of mask.
fn wire_len(message: &Message) -> u64 {
    let payload = match message {
        Message::Text(t) => t.len(),
        Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b.len(),
        Message::Close(_) | Message::Frame(_) => return 0, // the connection ends
    } as u64;
    let extended = match payload {
        0..=125 => 0,
        126..=65535 => 2,
        _ => 8,
    };
    2 + extended + 4 + payload
}

/// The socket's read timeout passed with nothing to read (`park_after`).
fn is_idle(result: &WsResult<Message>) -> bool {
    matches!(result, Err(WsError::Io(e))
        if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
}

/// The close code RFC 6455 asks for after a read error, or `None` when the peer is simply gone.
fn close_for(e: &WsError) -> Option<(u16, &'static str)> {
    match e {
        WsError::Capacity(_) => Some((1009, "message too big")),
        WsError::Utf8(_) => Some((1007, "invalid UTF-8 in text message")),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        WsError::Protocol(_) => Some((1002, "protocol error")),
        WsError::ConnectionClosed | WsError::AlreadyClosed | WsError::Io(_) => None,
        _ => Some((1011, "internal error")),
    }
}
