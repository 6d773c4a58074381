//! Helpers shared by the integration tests: a real server on 127.0.0.1:0, real WebSocket
//! clients over loopback, raw sockets for malformed input, and bounded waiting.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use tungstenite::protocol::WebSocket;
use tungstenite::{Message, client::IntoClientRequest};

pub use wschat::internals::frame;

pub mod redis;
pub use wschat::{Config, Server};

/// Every blocking read in a test gives up after this, so a hang fails instead of stalling CI.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

pub type Client = WebSocket<TcpStream>;

/// Starts a server on a free loopback port with `tune` applied to the defaults.
pub fn start(tune: impl FnOnce(&mut Config)) -> Server {
    let mut config = Config::default();
    config.addr = "127.0.0.1:0".parse().unwrap();
    tune(&mut config);
    Server::bind(config).expect("server starts")
}

/// Opens a WebSocket to `path` (e.g. `/`, `/echo`, `/relay/a`) and completes the handshake.
pub fn connect(addr: SocketAddr, path: &str) -> Client {
    try_connect(addr, path).unwrap_or_else(|e| panic!("connect {path}: {e}"))
}

pub fn try_connect(addr: SocketAddr, path: &str) -> Result<Client, String> {
    let stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    let request = format!("ws://{addr}{path}").into_client_request().unwrap();
    tungstenite::client::client(request, stream)
        .map(|(ws, _)| ws)
        .map_err(|e| e.to_string())
}

/// The next data message (text or binary), answering pings on the way.
pub fn recv(ws: &mut Client) -> Message {
    loop {
        match ws.read().expect("read a message") {
            m @ (Message::Text(_) | Message::Binary(_)) => return m,
            Message::Close(c) => panic!("unexpected close: {c:?}"),
            _ => {}
        }
    }
}

pub fn recv_text(ws: &mut Client) -> String {
    match recv(ws) {
        Message::Text(t) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// Reads until the server's Close arrives and returns its code; panics on data or timeout.
pub fn expect_close(ws: &mut Client) -> u16 {
    loop {
        match ws.read() {
            Ok(Message::Close(Some(frame))) => return frame.code.into(),
            Ok(Message::Close(None)) => return 1005,
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Ok(other) => panic!("expected close, got {other:?}"),
            Err(e) => panic!("expected close, got error {e}"),
        }
    }
}

/// Polls `cond` every 10 ms until it holds or `limit` passes; returns whether it held.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends raw bytes and returns everything the server answers until it closes (or the
/// timeout passes).
pub fn raw_exchange(addr: SocketAddr, request: &[u8], timeout: Duration) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(timeout)).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A plain GET; returns (status, lowercase headers text, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
    let raw = raw_bytes(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    let status = head[9..12].parse().unwrap();
    (status, head, raw[split + 4..].to_vec())
}

fn raw_bytes(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

/// A handshake request head for `path` with the given extra header lines.
pub fn upgrade_request(addr: SocketAddr, path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// The value of a metric line `NAME VALUE` in the server's Prometheus text (`/metrics`).
pub fn metric(handle: &wschat::Handle, name: &str) -> u64 {
    handle
        .metrics()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{name} "))
                .map(|v| v.parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no metric {name}"))
}

/// This process's resident memory in KiB (the server runs in-process in these tests).
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Sends a request and returns the response head only (up to the blank line), without waiting
/// for the connection to close: a 101 keeps it open.
pub fn response_head(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    let _ = s.write_all(request);
    read_response_head(&mut s)
}

/// What the server answered on `s`, up to the end of its head (or what came before it closed
/// or `IO_TIMEOUT` passed).
pub fn read_response_head(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    // Bounded: a response head is a few hundred bytes; the read timeout bounds each wait.
    while !out.ends_with(b"\r\n\r\n") && out.len() < 64 * 1024 {
        match s.read(&mut byte) {
            Ok(0) | Err(_) => break,
            Ok(_) => out.push(byte[0]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Tells a child test process which test it was started for (see [`isolated`]).
const ISOLATED_ENV: &str = "WSCHAT_IT_ISOLATED";

/// An isolated test's child process is killed after this: each of its own waits is bounded
/// (`IO_TIMEOUT`, 30 s at most), so this is only the backstop against a hang.
const CHILD_LIMIT: Duration = Duration::from_secs(300);

/// For a test that measures or changes something process-wide (threads, RSS, context
/// switches): all modules run as threads of one process, so such a test runs alone in a child
/// process (this test binary, filtered to exactly that test). Call it first with
/// `module_path!()` and the test function's name; `true` means "this is the child: run the
/// body", `false` means the child ran it and passed (the parent returns; a failure panics here
/// with the child's output).
pub fn isolated(module_path: &str, test: &str) -> bool {
    use std::process::{Command, Stdio};
    // module_path!() is "it::idle_cost"; libtest names the test "idle_cost::FN".
    let module = module_path.split_once("::").map_or(module_path, |(_, m)| m);
    let name = format!("{module}::{test}");
    if std::env::var(ISOLATED_ENV).as_deref() == Ok(name.as_str()) {
        return true;
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(ISOLATED_ENV, &name)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the test binary again");
    // Drained by threads so that a chatty child never blocks on a full pipe.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + CHILD_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name}: child process still running after {CHILD_LIMIT:?}, killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    print!("{out}");
    eprint!("{err}");
    assert!(
        status.success(),
        "{name} failed in its child process ({status})"
    );
    // A filter that matched nothing (a renamed function) also exits 0: insist on the one test.
    assert!(
        out.contains("test result: ok. 1 passed"),
        "{name}: the child did not run exactly that test"
    );
    false
}

// ---- /chat helpers -------------------------------------------------------------------------

/// Sends one JSON request as a text frame.
pub fn send_json(ws: &mut Client, msg: &serde_json::Value) {
    ws.send(Message::text(msg.to_string()))
        .expect("send a request");
}

/// The next text frame, parsed as JSON.
pub fn recv_json(ws: &mut Client) -> serde_json::Value {
    let text = recv_text(ws);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("server sent non-JSON {text:?}: {e}"))
}

/// The next message of type `ty`, skipping the others (presence, joined, welcome...) that a
/// chat client receives interleaved. Bounded: each read times out after `IO_TIMEOUT`, and the
/// whole search gives up after `IO_TIMEOUT` too, so a stream of other messages cannot loop
/// forever.
pub fn next_of_type(ws: &mut Client, ty: &str) -> serde_json::Value {
    next_matching(ws, &format!("a `{ty}`"), |m| m["type"] == ty)
}

/// The next message for which `want` holds, skipping others; bounded like [`next_of_type`].
pub fn next_matching(
    ws: &mut Client,
    what: &str,
    mut want: impl FnMut(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut skipped = Vec::new();
    while Instant::now() < deadline {
        let msg = recv_json(ws);
        if want(&msg) {
            return msg;
        }
        if skipped.len() < 20 {
            skipped.push(msg);
        }
    }
    panic!("no {what} within {IO_TIMEOUT:?}; first skipped: {skipped:?}");
}

/// Sends `req` (which must carry a `ref`) and returns the server's direct answer to it: the
/// next message carrying the same `ref`.
pub fn ask(ws: &mut Client, req: serde_json::Value) -> serde_json::Value {
    let reference = req
        .get("ref")
        .cloned()
        .expect("ask() needs a request with a ref");
    send_json(ws, &req);
    next_matching(ws, &format!("answer with ref {reference}"), |m| {
        m.get("ref") == Some(&reference)
    })
}

/// Opens `/chat?{query}` and reads up to and including the first `joined`; returns the client
/// and the `welcome` it got first.
pub fn chat_connect(addr: SocketAddr, query: &str) -> (Client, serde_json::Value) {
    let path = if query.is_empty() {
        "/chat".to_string()
    } else {
        format!("/chat?{query}")
    };
    let mut ws = connect(addr, &path);
    let welcome = recv_json(&mut ws);
    assert_eq!(welcome["type"], "welcome", "first message: {welcome}");
    next_of_type(&mut ws, "joined");
    (ws, welcome)
}

/// Logs in as `name` in `room` via the URL, insisting that both were accepted.
pub fn chat_as(addr: SocketAddr, name: &str, room: &str) -> Client {
    let (ws, welcome) = chat_connect(addr, &format!("name={name}&room={room}"));
    assert_eq!(welcome["name"], name, "{welcome}");
    ws
}

/// Reads until the server's Close and returns its code, skipping any data messages before it.
/// Panics on a read error or timeout.
pub fn close_code_after_data(ws: &mut Client) -> u16 {
    let deadline = Instant::now() + IO_TIMEOUT;
    while Instant::now() < deadline {
        match ws.read() {
            Ok(Message::Close(Some(frame))) => return frame.code.into(),
            Ok(Message::Close(None)) => return 1005,
            Ok(_) => {}
            Err(e) => panic!("expected close, got error {e}"),
        }
    }
    panic!("no close within {IO_TIMEOUT:?}");
}

/// A directory under the system temp dir, unique to this process and `tag`, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path =
            std::env::temp_dir().join(format!("wschat-test-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts the real `wschat` binary with `args` plus `--addr 127.0.0.1:0` and returns it with
/// the address it prints on its first stdout line.
pub fn spawn_binary(args: &[&str]) -> (std::process::Child, SocketAddr) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wschat"));
    cmd.args(["--addr", "127.0.0.1:0"]).args(args);
    spawn_server(cmd)
}

/// Spawns `cmd`, a `wschat` server (perhaps with an environment, or wrapped in `sh -c`), and
/// returns it with the address it prints on its first stdout line.
pub fn spawn_server(mut cmd: std::process::Command) -> (std::process::Child, SocketAddr) {
    use std::io::BufRead;
    // WSCHAT_TEST_STDERR=1 shows the servers' logs, for debugging a test.
    let stderr = if std::env::var_os("WSCHAT_TEST_STDERR").is_some() {
        std::process::Stdio::inherit()
    } else {
        std::process::Stdio::null()
    };
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok());
    match addr {
        Some(addr) => (child, addr),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no address in {line:?}");
        }
    }
}

/// Kills (SIGKILL) and reaps the child when dropped, also when the test fails, so a test
/// leaves nothing running.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Builds an `LD_PRELOAD` shim from C `source` with the system C compiler (`$CC`, else `cc`)
/// into `dir/NAME.so`: how the tests give the real binary a slow or a full disk.
pub fn build_shim(dir: &std::path::Path, name: &str, source: &str) -> std::path::PathBuf {
    let src = dir.join(format!("{name}.c"));
    let lib = dir.join(format!("{name}.so"));
    std::fs::write(&src, source).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let status = std::process::Command::new(&cc)
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&lib)
        .arg(&src)
        .arg("-ldl")
        .status()
        .unwrap_or_else(|e| panic!("the C compiler `{cc}` is needed for this test: {e}"));
    assert!(status.success(), "building the {name} shim failed");
    lib
}

// ---- Raw WebSocket clients and a seeded PRNG, for the conformance sweep and the fuzz tests.

/// xorshift64*: a tiny deterministic PRNG, so a fuzz failure replays from its printed seed
/// without a dependency.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        // The state must never be 0 (xorshift would stay there); mix the seed so that nearby
        // seeds give unrelated streams.
        XorShift((seed ^ 0x9E37_79B9_7F4A_7C15).max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `num/den`.
    pub fn chance(&mut self, num: usize, den: usize) -> bool {
        self.below(den) < num
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// One client frame: `first` is the first header byte (FIN, RSV bits, opcode); the payload is
/// masked with `mask` and its length written in the shortest form (RFC 6455 5.2). The
/// library's encoder (`wschat::internals::frame`, the one codec of the project).
pub fn client_frame(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::new();
    frame::encode_masked(first, payload, mask, &mut f);
    f
}

/// Connects to `path` with a raw socket, sends the upgrade request and reads the 101 head.
/// Returns the stream (read and write timeouts set to `IO_TIMEOUT`, TCP_NODELAY on) and any
/// bytes that arrived after the head.
pub fn raw_upgrade(addr: SocketAddr, path: &str) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(upgrade_request(addr, path, "").as_bytes())
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).expect("the 101 head");
        assert!(n > 0, "connection closed during the handshake to {path}");
        buf.extend_from_slice(&chunk[..n]);
    };
    assert!(
        buf.starts_with(b"HTTP/1.1 101 "),
        "handshake to {path} refused: {}",
        String::from_utf8_lossy(&buf[..end])
    );
    (s, buf[end..].to_vec())
}

/// One frame as received from the server, before any validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFrame {
    pub fin: bool,
    /// The three RSV bits, as `first_byte & 0x70`.
    pub rsv: u8,
    pub opcode: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
}

impl ServerFrame {
    /// Why this frame is not one an RFC 6455 server may send, if it is not: servers never mask
    /// (5.1), this server negotiates no extensions (RSV 0) and never fragments, control frames
    /// carry at most 125 bytes (5.5), a Close payload is empty or a code plus a UTF-8 reason
    /// (5.5.1).
    pub fn violation(&self) -> Option<String> {
        if self.masked {
            return Some("masked server frame".into());
        }
        if self.rsv != 0 {
            return Some(format!("RSV bits {:#x}", self.rsv));
        }
        if !self.fin {
            return Some("fragmented server frame".into());
        }
        match self.opcode {
            1 | 2 => None,
            8..=10 if self.payload.len() > 125 => Some("control frame over 125 bytes".into()),
            8 if self.payload.len() == 1 => Some("close payload of 1 byte".into()),
            8 if std::str::from_utf8(&self.payload[self.payload.len().min(2)..]).is_err() => {
                Some("close reason is not UTF-8".into())
            }
            8..=10 => None,
            op => Some(format!("opcode {op:#x}")),
        }
    }

    /// The code of a Close frame; `None` for an empty payload.
    pub fn close_code(&self) -> Option<u16> {
        (self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// How the server's side of a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// A clean FIN: `read` returned 0.
    Eof,
    /// No byte for the whole read timeout.
    Timeout,
    /// Any other read error (a reset, usually).
    Error(String),
    /// The server sent bytes that are not a frame, or more than the reader's budget.
    Garbage(String),
}

/// Reads server frames off a socket, one at a time.
pub struct FrameReader {
    pub stream: TcpStream,
    buf: Vec<u8>,
    /// Stops with `Ending::Garbage` once this many bytes have arrived (a runaway server).
    budget: usize,
}

impl FrameReader {
    pub fn new(stream: TcpStream, early: Vec<u8>, budget: usize) -> FrameReader {
        FrameReader {
            stream,
            buf: early,
            budget,
        }
    }

    /// The next frame, or how the connection ended.
    pub fn next_frame(&mut self) -> Result<ServerFrame, Ending> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return Ok(frame);
            }
            let n = match self.stream.read(&mut chunk) {
                Ok(0) if self.buf.is_empty() => return Err(Ending::Eof),
                Ok(0) => {
                    return Err(Ending::Garbage(format!(
                        "EOF inside a frame ({} bytes left over)",
                        self.buf.len()
                    )));
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(Ending::Timeout);
                }
                Err(e) => return Err(Ending::Error(e.to_string())),
            };
            if n > self.budget {
                return Err(Ending::Garbage("over the byte budget".into()));
            }
            self.budget -= n;
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Every remaining frame and how the connection ended.
    pub fn rest(&mut self) -> (Vec<ServerFrame>, Ending) {
        let mut frames = Vec::new();
        loop {
            match self.next_frame() {
                Ok(f) => frames.push(f),
                Err(end) => return (frames, end),
            }
        }
    }
}

/// Splits one frame off the front of `buf`; `None` while it is incomplete. Decoded by the
/// library's `frame::parse_head`, which reports what is on the wire without refusing anything
/// (the tests judge it: [`ServerFrame::violation`]).
pub fn parse_server_frame(buf: &[u8]) -> Option<(ServerFrame, usize)> {
    let head = frame::parse_head(buf)?;
    let end = head.total_len()?;
    let mut payload = buf.get(head.header_len..end)?.to_vec();
    if let Some(mask) = head.mask {
        frame::apply_mask(&mut payload, mask);
    }
    let frame = ServerFrame {
        fin: head.fin,
        rsv: head.rsv,
        opcode: head.opcode,
        masked: head.mask.is_some(),
        payload,
    };
    Some((frame, end))
}
