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
