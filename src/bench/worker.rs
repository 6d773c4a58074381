//! One worker thread: its own epoll over its share of the connections. It opens them (bounded
//! handshakes in flight), does the HTTP upgrade, reads and checks every frame, and paces the
//! sends of the senders it owns.
//!
//! Memory per connection is a few hundred bytes: partial frames are copied out of the worker's
//! one read buffer into the connection only when a read ends mid-frame, and the write buffer is
//! allocated only for senders (and the rare pong).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::args::{Mode, Options, Rate};
use wschat::internals::frame::{self, FrameError};

use super::hist::Histogram;
use super::mask::MaskRng;
use super::payload::{self, BenchMsg};
use super::sys::{self, EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, EPOLLRDHUP, Epoll, Event};
use super::track::{Seen, SeqTrack};

/// Opening connections; senders are idle.
pub const PHASE_CONNECT: u8 = 0;
/// Senders send.
pub const PHASE_SEND: u8 = 1;
/// Senders stopped; receivers still count late deliveries. Each worker, on seeing it, publishes
/// its counters (so the main thread's `EXPECTED` is final) and counts itself in
/// [`Shared::drained_workers`].
pub const PHASE_DRAIN: u8 = 2;
/// Close everything and exit.
pub const PHASE_STOP: u8 = 3;

/// Counter slots, summed over workers for the report.
pub mod counter {
    pub const SENT: usize = 0;
    pub const EXPECTED: usize = 1;
    pub const RECEIVED: usize = 2;
    pub const DUPLICATE: usize = 3;
    pub const REORDERED: usize = 4;
    /// Frames that are not this run's bench messages (welcome texts, presence, ...).
    pub const FOREIGN: usize = 5;
    pub const CONNECTED: usize = 6;
    /// Open connections closed by the server or by an error.
    pub const DROPPED: usize = 7;
    /// Times a sender skipped a tick because its unsent bytes were over the cap.
    pub const STALLED: usize = 8;
    pub const BYTES_IN: usize = 9;
    /// Connection never started because the connect deadline passed.
    pub const SKIPPED: usize = 10;
    /// `read` calls on open connections that returned data (client cost diagnostics).
    pub const READS: usize = 11;
    /// `epoll_wait` calls.
    pub const WAITS: usize = 12;
    /// First failure slot; see [`super::FAILURE_KINDS`].
    pub const FAIL_BASE: usize = 13;
    pub const COUNT: usize = FAIL_BASE + super::FAILURE_KINDS.len();
}

/// Why a connection attempt failed, as reported.
pub const FAILURE_KINDS: [&str; 9] = [
    "refused",
    "timeout",
    "reset",
    "status",
    "bad_handshake",
    "closed_in_handshake",
    "no_local_port",
    "fd_limit",
    "other",
];
const F_REFUSED: usize = 0;
const F_TIMEOUT: usize = 1;
const F_RESET: usize = 2;
const F_STATUS: usize = 3;
const F_BAD: usize = 4;
const F_EOF: usize = 5;
const F_ADDR: usize = 6;
const F_FDS: usize = 7;
const F_OTHER: usize = 8;

fn failure_kind(err: &io::Error) -> usize {
    match err.raw_os_error() {
        Some(libc::ECONNREFUSED) => F_REFUSED,
        Some(libc::ETIMEDOUT) => F_TIMEOUT,
        Some(libc::ECONNRESET) | Some(libc::EPIPE) => F_RESET,
        Some(libc::EADDRNOTAVAIL) => F_ADDR,
        Some(libc::EMFILE) | Some(libc::ENFILE) => F_FDS,
        _ => F_OTHER,
    }
}

/// Nanoseconds on the process-wide monotonic clock that stamps and measures messages.
pub fn now_ns() -> u64 {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// What one worker publishes; the main thread sums these.
#[derive(Default)]
pub struct WorkerStats {
    pub counters: [AtomicU64; counter::COUNT],
    pub latency: Mutex<Histogram>,
    pub handshake: Mutex<Histogram>,
}

/// State shared by the main thread and the workers.
pub struct Shared {
    pub opts: Options,
    pub run_id: u32,
    pub phase: AtomicU8,
    pub send_start_ns: AtomicU64,
    /// Connections open right now: the recipients counted for each message sent.
    pub open: AtomicU64,
    /// Per connection: open right now (to choose the relay observers).
    pub open_flags: Vec<AtomicBool>,
    /// Latest handshake completion, for the connect rate.
    pub last_connect_ns: AtomicU64,
    /// Latest delivery, for the delivery rate when the server lags behind the senders.
    pub last_delivery_ns: AtomicU64,
    /// Per sender (`--rate max`): highest sequence number acknowledged plus one.
    pub acked: Vec<AtomicU64>,
    /// Relay mode: the two highest open connection ids. A sender's messages are acknowledged
    /// by the highest one that is not itself, the last to be opened and likely the last in the
    /// server's fan-out order, so the window bounds what the server has queued.
    pub observers: [AtomicU32; 2],
    pub workers: Vec<WorkerStats>,
    /// Workers that have seen [`PHASE_DRAIN`] and published every send they made: once all
    /// have, the summed `EXPECTED` counter no longer moves and the drain can compare against it.
    pub drained_workers: AtomicUsize,
}

impl Shared {
    pub fn new(opts: Options, run_id: u32) -> Self {
        Shared {
            run_id,
            phase: AtomicU8::new(PHASE_CONNECT),
            send_start_ns: AtomicU64::new(0),
            open: AtomicU64::new(0),
            open_flags: (0..opts.conns).map(|_| AtomicBool::new(false)).collect(),
            last_connect_ns: AtomicU64::new(0),
            last_delivery_ns: AtomicU64::new(0),
            acked: (0..opts.senders).map(|_| AtomicU64::new(0)).collect(),
            observers: [AtomicU32::new(u32::MAX), AtomicU32::new(u32::MAX)],
            workers: (0..opts.threads).map(|_| WorkerStats::default()).collect(),
            drained_workers: AtomicUsize::new(0),
            opts,
        }
    }

    /// Sets the relay observers from the currently open connections.
    pub fn choose_observers(&self) {
        let mut top = self
            .open_flags
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, f)| f.load(Relaxed))
            .map(|(i, _)| i as u32);
        self.observers[0].store(top.next().unwrap_or(u32::MAX), Relaxed);
        self.observers[1].store(top.next().unwrap_or(u32::MAX), Relaxed);
    }

    fn is_observer(&self, conn: u32, sender: u32) -> bool {
        match self.opts.mode {
            Mode::Chat | Mode::Echo => conn == sender,
            Mode::Relay => {
                let first = self.observers[0].load(Relaxed);
                conn == if first != sender {
                    first
                } else {
                    self.observers[1].load(Relaxed)
                }
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    NotStarted,
    Connecting,
    Handshake,
    Open,
    Closed,
}

struct Conn {
    id: u32,
    state: State,
    stream: Option<TcpStream>,
    started_ns: u64,
    /// Handshake: response bytes so far. Open: the unparsed tail of the last read.
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    wpos: usize,
    /// Expected Sec-WebSocket-Accept value.
    accept: [u8; 28],
    /// Per sender (echo: only itself), allocated on the first bench message.
    tracks: Vec<SeqTrack>,
    /// A fragmented message being reassembled (opcode, bytes); servers rarely fragment.
    frag: Option<(u8, Vec<u8>)>,
    /// Next sequence number to send.
    seq: u64,
    close_sent: bool,
}

impl Conn {
    /// Which of `targets` servers this connection uses: round-robin by id, so that each server
    /// gets an equal share of the connections and of the senders (ids 0..S).
    fn target(&self, targets: usize) -> usize {
        self.id as usize % targets
    }
}

/// Bytes asked of each `read`; also the read buffer's minimum size. 256 KiB drains a socket
/// carrying thousands of small frames in one syscall.
const READ_CHUNK: usize = 256 * 1024;
/// A sender skips its tick while this much is still unsent: the server is not reading, and
/// piling up more would only measure our own queue.
const WBUF_CAP: usize = 256 * 1024;
/// Most messages one sender writes per tick (one syscall): bounds the burst after a stall.
const MAX_BURST: u64 = 1024;
/// Largest frame accepted from a server.
const MAX_FRAME: usize = 64 << 20;
/// Largest HTTP response head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Stats are published this often while sending; the progress line sees them this late.
const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// While draining, this often: the drain ends when the published deliveries reach the expected
/// count, so this is how long after the last delivery the drain can notice it.
const DRAIN_FLUSH_EVERY: Duration = Duration::from_millis(2);

/// Runs one worker until the phase becomes [`PHASE_STOP`].
pub fn run(shared: Arc<Shared>, index: usize) -> Result<(), String> {
    let threads = shared.opts.threads;
    let ids: Vec<u32> = (index..shared.opts.conns)
        .step_by(threads)
        .map(|i| i as u32)
        .collect();
    let limit = (shared.opts.concurrency / threads
        + usize::from(index < shared.opts.concurrency % threads))
    .max(1);
    let mut worker = Worker::new(shared, index, ids, limit)?;
    worker.event_loop()
}

#[derive(Default)]
struct Local {
    counters: [u64; counter::COUNT],
    latency: Histogram,
    handshake: Histogram,
    last_delivery_ns: u64,
}

struct Worker {
    shared: Arc<Shared>,
    index: usize,
    epoll: Epoll,
    conns: Vec<Conn>,
    senders: Vec<usize>,
    next_start: usize,
    inflight: usize,
    limit: usize,
    scratch: Vec<u8>,
    text: Vec<u8>,
    rng: MaskRng,
    local: Local,
    /// Per target, the upgrade request up to the key.
    request_heads: Vec<String>,
}

impl Worker {
    fn new(shared: Arc<Shared>, index: usize, ids: Vec<u32>, limit: usize) -> Result<Self, String> {
        let epoll = Epoll::new(1024).map_err(|e| format!("epoll_create1: {e}"))?;
        let senders = ids
            .iter()
            .enumerate()
            .filter(|(_, id)| (**id as usize) < shared.opts.senders)
            .map(|(i, _)| i)
            .collect();
        let conns = ids
            .into_iter()
            .map(|id| Conn {
                id,
                state: State::NotStarted,
                stream: None,
                started_ns: 0,
                rbuf: Vec::new(),
                wbuf: Vec::new(),
                wpos: 0,
                accept: [0; 28],
                tracks: Vec::new(),
                frag: None,
                seq: 0,
                close_sent: false,
            })
            .collect();
        let request_heads = shared
            .opts
            .targets
            .iter()
            .map(|t| {
                format!(
                    "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Version: 13\r\nUser-Agent: wschat-bench\r\nSec-WebSocket-Key: ",
                    t.path, t.host
                )
            })
            .collect();
        let seed = now_ns() ^ ((index as u64 + 1) << 48) ^ u64::from(shared.run_id);
        Ok(Worker {
            shared,
            index,
            epoll,
            conns,
            senders,
            next_start: 0,
            inflight: 0,
            limit,
            scratch: vec![0; READ_CHUNK],
            text: Vec::new(),
            rng: MaskRng::new(seed),
            local: Local::default(),
            request_heads,
        })
    }

    fn event_loop(&mut self) -> Result<(), String> {
        let mut events = Vec::with_capacity(1024);
        let mut last_flush = Instant::now();
        let mut last_scan = Instant::now();
        let mut drain_published = false;
        loop {
            // Acquire: pairs with the main thread's Release store, so send_start_ns (stored
            // before PHASE_SEND) is visible once the phase is.
            let phase = self.shared.phase.load(Acquire);
            if phase == PHASE_STOP {
                break;
            }
            if phase == PHASE_DRAIN && !drain_published {
                // pace() runs only in an iteration that saw PHASE_SEND, and the phase never
                // goes back: every send of this worker is in its local counters now. Publish
                // them, then say so (Release: the main thread's Acquire load of the count sees
                // the counters too).
                self.flush_stats();
                last_flush = Instant::now();
                self.shared.drained_workers.fetch_add(1, Release);
                drain_published = true;
            }
            if phase == PHASE_CONNECT {
                self.start_connects();
            } else if self.next_start < self.conns.len() {
                // Connect deadline passed: the rest are never started.
                self.local.counters[counter::SKIPPED] +=
                    (self.conns.len() - self.next_start) as u64;
                self.next_start = self.conns.len();
            }
            if self.inflight > 0 && last_scan.elapsed() >= Duration::from_millis(100) {
                last_scan = Instant::now();
                self.expire_handshakes();
            }
            // 1 ms while pacing senders (epoll's resolution); otherwise just often enough to
            // notice phase changes and handshake timeouts.
            let timeout = if phase == PHASE_SEND && !self.senders.is_empty() {
                1
            } else {
                20
            };
            self.epoll
                .wait(&mut events, timeout)
                .map_err(|e| format!("epoll_wait: {e}"))?;
            self.local.counters[counter::WAITS] += 1;
            for ev in &events {
                self.handle(*ev);
            }
            let batch = self.shared.opts.batch;
            if !batch.is_zero() && !events.is_empty() && phase != PHASE_CONNECT {
                // Let more frames queue up so that the next wait and reads each take many.
                std::thread::sleep(batch);
            }
            if phase == PHASE_SEND {
                self.pace();
            }
            let every = if phase == PHASE_DRAIN {
                DRAIN_FLUSH_EVERY
            } else {
                FLUSH_EVERY
            };
            if last_flush.elapsed() >= every {
                last_flush = Instant::now();
                self.flush_stats();
            }
        }
        self.close_all();
        self.flush_stats();
        Ok(())
    }

    fn start_connects(&mut self) {
        let targets = &self.shared.opts.targets;
        while self.inflight < self.limit && self.next_start < self.conns.len() {
            let i = self.next_start;
            self.next_start += 1;
            let conn = &mut self.conns[i];
            conn.started_ns = now_ns();
            let addr = targets[conn.target(targets.len())].addr;
            let stream = match sys::connect_nonblocking(addr) {
                Ok(s) => s,
                Err(e) => {
                    conn.state = State::Closed;
                    self.local.counters[counter::FAIL_BASE + failure_kind(&e)] += 1;
                    continue;
                }
            };
            if let Err(e) = self.epoll.add(stream.as_raw_fd(), i as u64) {
                conn.state = State::Closed;
                self.local.counters[counter::FAIL_BASE + failure_kind(&e)] += 1;
                continue;
            }
            conn.stream = Some(stream);
            conn.state = State::Connecting;
            self.inflight += 1;
        }
    }

    fn expire_handshakes(&mut self) {
        let deadline = self.shared.opts.connect_timeout.as_nanos() as u64;
        let now = now_ns();
        for i in 0..self.conns.len() {
            let c = &self.conns[i];
            if matches!(c.state, State::Connecting | State::Handshake)
                && now.saturating_sub(c.started_ns) > deadline
            {
                self.fail(i, F_TIMEOUT);
            }
        }
    }

    /// A connection attempt failed.
    fn fail(&mut self, i: usize, kind: usize) {
        let conn = &mut self.conns[i];
        debug_assert!(matches!(conn.state, State::Connecting | State::Handshake));
        conn.state = State::Closed;
        conn.stream = None;
        conn.rbuf = Vec::new();
        conn.wbuf = Vec::new();
        self.inflight -= 1;
        self.local.counters[counter::FAIL_BASE + kind] += 1;
    }

    /// An open connection ended (server closed it, error, or protocol violation).
    fn drop_open(&mut self, i: usize, why: &dyn std::fmt::Display) {
        let conn = &mut self.conns[i];
        if conn.state != State::Open {
            return;
        }
        log::debug!("bench: connection {} dropped: {why}", conn.id);
        conn.state = State::Closed;
        conn.stream = None;
        conn.rbuf = Vec::new();
        conn.wbuf = Vec::new();
        conn.frag = None;
        self.shared.open.fetch_sub(1, Relaxed);
        self.shared.open_flags[conn.id as usize].store(false, Relaxed);
        self.local.counters[counter::DROPPED] += 1;
    }

    fn handle(&mut self, ev: Event) {
        let i = ev.token as usize;
        let Some(state) = self.conns.get(i).map(|c| c.state) else {
            return;
        };
        let readable = ev.events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR) != 0;
        let hangup = ev.events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR) != 0;
        match state {
            State::Connecting => {
                if ev.events & (EPOLLOUT | EPOLLERR | EPOLLHUP) != 0 {
                    self.finish_connect(i);
                }
            }
            State::Handshake => {
                if ev.events & EPOLLOUT != 0 {
                    self.flush(i);
                }
                if readable && self.conns[i].state == State::Handshake {
                    self.read_handshake(i);
                }
            }
            State::Open => {
                if readable {
                    self.read_frames(i, hangup);
                }
                if ev.events & EPOLLOUT != 0 {
                    self.flush(i);
                }
            }
            State::NotStarted | State::Closed => {}
        }
    }

    fn finish_connect(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        let Some(stream) = conn.stream.as_ref() else {
            return;
        };
        match stream.take_error() {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => return self.fail(i, failure_kind(&e)),
        }
        // Frames are small and latency-sensitive: no Nagle.
        let _ = stream.set_nodelay(true);
        let key = tungstenite::handshake::client::generate_key();
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        // Base64 of a 20-byte SHA-1: always 28 bytes.
        conn.accept.copy_from_slice(&accept.as_bytes()[..28]);
        conn.wbuf.clear();
        let head = &self.request_heads[conn.target(self.request_heads.len())];
        conn.wbuf.extend_from_slice(head.as_bytes());
        conn.wbuf.extend_from_slice(key.as_bytes());
        conn.wbuf.extend_from_slice(b"\r\n\r\n");
        conn.state = State::Handshake;
        self.flush(i);
    }

    fn read_handshake(&mut self, i: usize) {
        let mut buf = [0u8; 4096];
        loop {
            let conn = &mut self.conns[i];
            let Some(stream) = conn.stream.as_mut() else {
                return;
            };
            match stream.read(&mut buf) {
                Ok(0) => return self.fail(i, F_EOF),
                Ok(n) => conn.rbuf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.fail(i, failure_kind(&e)),
            }
            let Some(end) = conn.rbuf.windows(4).position(|w| w == b"\r\n\r\n") else {
                if conn.rbuf.len() > MAX_HEAD {
                    return self.fail(i, F_BAD);
                }
                continue;
            };
            let head_len = end + 4;
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&conn.rbuf[..head_len]) {
                Ok(httparse::Status::Complete(_)) => {}
                _ => return self.fail(i, F_BAD),
            }
            if response.code != Some(101) {
                log::debug!("bench: handshake status {:?}", response.code);
                return self.fail(i, F_STATUS);
            }
            let accepted = response.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("sec-websocket-accept") && h.value == conn.accept
            });
            if !accepted {
                return self.fail(i, F_BAD);
            }
            conn.rbuf.drain(..head_len);
            conn.state = State::Open;
            self.inflight -= 1;
            let now = now_ns();
            self.local.handshake.record(now - conn.started_ns);
            self.local.counters[counter::CONNECTED] += 1;
            self.shared.open.fetch_add(1, Relaxed);
            self.shared.open_flags[conn.id as usize].store(true, Relaxed);
            self.shared.last_connect_ns.fetch_max(now, Relaxed);
            // Frames that came with the 101 (a welcome text) are parsed right away.
            if !conn.rbuf.is_empty() {
                let pending = std::mem::take(&mut conn.rbuf);
                let len = pending.len();
                if self.scratch.len() < len {
                    self.scratch.resize(len, 0);
                }
                self.scratch[..len].copy_from_slice(&pending);
                self.consume(i, len, now);
            }
            // The rest of this read's data, if any, arrives through read_frames on the next
            // edge; with edge-triggered epoll we must read until WouldBlock now.
            if self.conns[i].state == State::Open {
                self.read_frames(i, true);
            }
            return;
        }
    }

    /// Reads until the socket is drained, parsing every complete frame.
    fn read_frames(&mut self, i: usize, hangup: bool) {
        loop {
            let conn = &mut self.conns[i];
            let kept = conn.rbuf.len();
            if self.scratch.len() < kept + READ_CHUNK {
                self.scratch.resize(kept + READ_CHUNK, 0);
            }
            self.scratch[..kept].copy_from_slice(&conn.rbuf);
            conn.rbuf.clear();
            let Some(stream) = conn.stream.as_mut() else {
                return;
            };
            let space = self.scratch.len() - kept;
            let n = match stream.read(&mut self.scratch[kept..]) {
                Ok(0) => return self.drop_open(i, &"closed by server"),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.rbuf.extend_from_slice(&self.scratch[..kept]);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    conn.rbuf.extend_from_slice(&self.scratch[..kept]);
                    continue;
                }
                Err(e) => return self.drop_open(i, &e),
            };
            self.local.counters[counter::BYTES_IN] += n as u64;
            self.local.counters[counter::READS] += 1;
            self.consume(i, kept + n, now_ns());
            if self.conns[i].state != State::Open {
                return;
            }
            // A short read drained the socket: new data will raise a new edge. Only a hang-up
            // must be read to the end, or its EOF would go unnoticed.
            if n < space && !hangup {
                break;
            }
        }
        if self.conns[i].wpos < self.conns[i].wbuf.len() {
            self.flush(i);
        }
    }

    /// Parses the frames in `scratch[..len]`; keeps an incomplete tail in the connection.
    fn consume(&mut self, i: usize, len: usize, now: u64) {
        let Worker {
            conns,
            scratch,
            local,
            shared,
            rng,
            ..
        } = self;
        let conn = &mut conns[i];
        let mut ctx = Ctx {
            shared,
            local,
            rng,
            now,
        };
        match parse_frames(conn, &mut scratch[..len], &mut ctx) {
            Ok(used) => conn.rbuf.extend_from_slice(&scratch[used..len]),
            Err(e) => self.drop_open(i, &e),
        }
    }

    /// Writes pending bytes until done or `WouldBlock`.
    fn flush(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        while conn.wpos < conn.wbuf.len() {
            let Some(stream) = conn.stream.as_mut() else {
                return;
            };
            match stream.write(&conn.wbuf[conn.wpos..]) {
                Ok(n) => conn.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return match conn.state {
                        State::Open => self.drop_open(i, &e),
                        State::Connecting | State::Handshake => self.fail(i, failure_kind(&e)),
                        _ => {}
                    };
                }
            }
        }
        conn.wbuf.clear();
        conn.wpos = 0;
        if conn.wbuf.capacity() > 4 * WBUF_CAP {
            conn.wbuf.shrink_to(WBUF_CAP);
        }
        if conn.close_sent && conn.state == State::Open {
            self.drop_open(i, &"closed after a Close frame from the server");
        }
    }

    /// Writes the messages each of this worker's senders is due, one syscall per sender.
    fn pace(&mut self) {
        let shared = Arc::clone(&self.shared);
        let opts = &shared.opts;
        let now = now_ns();
        let elapsed = now.saturating_sub(self.shared.send_start_ns.load(Relaxed)) as f64 / 1e9;
        let recipients = match opts.mode {
            Mode::Relay => self.shared.open.load(Relaxed).saturating_sub(1),
            Mode::Chat => self.shared.open.load(Relaxed),
            Mode::Echo => 1,
        };
        for k in 0..self.senders.len() {
            let i = self.senders[k];
            let conn = &mut self.conns[i];
            if conn.state != State::Open || conn.close_sent {
                continue;
            }
            if conn.wbuf.len() - conn.wpos > WBUF_CAP {
                self.local.counters[counter::STALLED] += 1;
                continue;
            }
            let sender = conn.id as usize;
            let target = match opts.rate {
                Rate::PerSec(rate) => {
                    // Senders are spread over each interval rather than sending in lockstep.
                    let per_sender = rate / opts.senders as f64;
                    (elapsed * per_sender + sender as f64 / opts.senders as f64) as u64
                }
                Rate::Max => self.shared.acked[sender].load(Relaxed) + opts.window,
            };
            let due = target.saturating_sub(conn.seq).min(MAX_BURST);
            if due == 0 {
                continue;
            }
            for _ in 0..due {
                self.text.clear();
                let msg = BenchMsg {
                    run: self.shared.run_id,
                    sender: conn.id,
                    seq: conn.seq,
                    sent_ns: now,
                };
                payload::encode(&mut self.text, &msg, opts.payload);
                frame::encode_masked(
                    frame::FIN | frame::TEXT,
                    &self.text,
                    self.rng.next_mask(),
                    &mut conn.wbuf,
                );
                conn.seq += 1;
            }
            self.local.counters[counter::SENT] += due;
            self.local.counters[counter::EXPECTED] += due * recipients;
            self.flush(i);
        }
    }

    fn flush_stats(&mut self) {
        let shared = &self.shared.workers[self.index];
        for (slot, local) in shared.counters.iter().zip(self.local.counters.iter_mut()) {
            if *local != 0 {
                slot.fetch_add(*local, Relaxed);
                *local = 0;
            }
        }
        if self.local.latency.count() > 0 {
            shared.latency.lock().merge(&self.local.latency);
            self.local.latency.clear();
        }
        if self.local.handshake.count() > 0 {
            shared.handshake.lock().merge(&self.local.handshake);
            self.local.handshake.clear();
        }
        self.shared
            .last_delivery_ns
            .fetch_max(self.local.last_delivery_ns, Relaxed);
    }

    /// Sends a Close frame on every open connection (best effort) and closes every socket.
    fn close_all(&mut self) {
        for i in 0..self.conns.len() {
            let conn = &mut self.conns[i];
            if conn.state == State::Open {
                let mut close = Vec::with_capacity(8);
                frame::encode_masked(
                    frame::FIN | frame::CLOSE,
                    &1000u16.to_be_bytes(),
                    self.rng.next_mask(),
                    &mut close,
                );
                if let Some(s) = conn.stream.as_mut() {
                    let _ = s.write(&close);
                }
                self.shared.open.fetch_sub(1, Relaxed);
                self.shared.open_flags[conn.id as usize].store(false, Relaxed);
            }
            if matches!(conn.state, State::Connecting | State::Handshake) {
                self.inflight -= 1;
            }
            conn.state = State::Closed;
            conn.stream = None;
        }
    }
}

struct Ctx<'a> {
    shared: &'a Shared,
    local: &'a mut Local,
    rng: &'a mut MaskRng,
    now: u64,
}

/// Parses complete frames from the start of `buf` (in place: unmasking, if a server masks,
/// happens in the buffer; nothing is allocated per frame); returns the bytes used.
fn parse_frames(conn: &mut Conn, buf: &mut [u8], ctx: &mut Ctx<'_>) -> Result<usize, FrameError> {
    let mut pos = 0;
    while let Some(head) = frame::parse_head(&buf[pos..]) {
        head.check(MAX_FRAME)?;
        // check() bounds payload_len by MAX_FRAME, a usize: the cast and the sum are exact.
        let end = pos + head.header_len + head.payload_len as usize;
        if end > buf.len() {
            break;
        }
        let body = &mut buf[pos + head.header_len..end];
        if let Some(mask) = head.mask {
            frame::apply_mask(body, mask);
        }
        pos = end;
        match head.opcode {
            frame::TEXT | frame::BINARY if head.fin => {
                if conn.frag.is_some() {
                    return Err(FrameError::BadOpcode(head.opcode));
                }
                on_message(conn, body, ctx);
            }
            frame::TEXT | frame::BINARY => {
                if conn.frag.is_some() {
                    return Err(FrameError::BadOpcode(head.opcode));
                }
                conn.frag = Some((head.opcode, body.to_vec()));
            }
            frame::CONTINUATION => {
                let Some((_, mut data)) = conn.frag.take() else {
                    return Err(FrameError::BadOpcode(head.opcode));
                };
                data.extend_from_slice(body);
                if data.len() > MAX_FRAME {
                    return Err(FrameError::TooLarge(data.len() as u64));
                }
                if head.fin {
                    on_message(conn, &data, ctx);
                } else {
                    conn.frag = Some((frame::TEXT, data));
                }
            }
            frame::PING => {
                let mask = ctx.rng.next_mask();
                frame::encode_masked(frame::FIN | frame::PONG, body, mask, &mut conn.wbuf);
            }
            frame::CLOSE => {
                if !conn.close_sent {
                    let code = if body.len() >= 2 { &body[..2] } else { &[][..] };
                    let mask = ctx.rng.next_mask();
                    frame::encode_masked(frame::FIN | frame::CLOSE, code, mask, &mut conn.wbuf);
                    conn.close_sent = true;
                }
                // Anything after a Close is ignored; the caller flushes and then drops us.
                return Ok(buf.len());
            }
            _ => {} // pong
        }
    }
    Ok(pos)
}

fn on_message(conn: &mut Conn, data: &[u8], ctx: &mut Ctx<'_>) {
    let opts = &ctx.shared.opts;
    let msg = match opts.mode {
        Mode::Chat => payload::parse_chat(data),
        Mode::Relay | Mode::Echo => payload::parse(data),
    };
    let counters = &mut ctx.local.counters;
    let Some(msg) = msg.filter(|m| m.run == ctx.shared.run_id) else {
        counters[counter::FOREIGN] += 1;
        return;
    };
    let (slot, slots) = match opts.mode {
        Mode::Echo if msg.sender == conn.id => (0, 1),
        Mode::Echo => (usize::MAX, 1),
        _ => (msg.sender as usize, opts.senders),
    };
    if slot >= slots {
        counters[counter::FOREIGN] += 1;
        return;
    }
    if conn.tracks.is_empty() {
        conn.tracks = vec![SeqTrack::default(); slots];
    }
    match conn.tracks[slot].record(msg.seq) {
        Seen::InOrder | Seen::Ahead => counters[counter::RECEIVED] += 1,
        Seen::Late | Seen::TooOld => {
            counters[counter::RECEIVED] += 1;
            counters[counter::REORDERED] += 1;
        }
        Seen::Duplicate => {
            counters[counter::DUPLICATE] += 1;
            return;
        }
    }
    ctx.local
        .latency
        .record(ctx.now.saturating_sub(msg.sent_ns));
    ctx.local.last_delivery_ns = ctx.now;
    if opts.rate == Rate::Max && ctx.shared.is_observer(conn.id, msg.sender) {
        ctx.shared.acked[msg.sender as usize].fetch_max(msg.seq + 1, Relaxed);
    }
}
