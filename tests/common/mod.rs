//! Helpers shared by the integration tests: a real server on 127.0.0.1:0, real WebSocket
//! clients over loopback, raw sockets for malformed input, and bounded waiting.
#![allow(dead_code)] // each test file uses a different subset

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use tungstenite::protocol::WebSocket;
use tungstenite::{Message, client::IntoClientRequest};

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
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    while !out.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(0) | Err(_) => break,
            Ok(_) => out.push(byte[0]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wschat"))
        .args(["--addr", "127.0.0.1:0"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
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
