//! Issue 10's EMFILE repro: with `RLIMIT_NOFILE` at 30, 16 idle connections plus 2 more (503)
//! leave the server without descriptors; a page request on one of the first gets an answer or
//! a clear error (never a hang), and once everything is closed every endpoint answers again:
//! `/`, `/healthz`, `/metrics`, `/api/publish` and a WebSocket upgrade.

use crate::common::*;
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use tungstenite::Message;

/// The real binary under `ulimit -n 30` (soft and hard, so it cannot raise it back).
fn spawn_limited() -> (Child, SocketAddr) {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n 30 && exec "$0" --addr 127.0.0.1:0 --api-key k"#)
        .arg(env!("CARGO_BIN_EXE_wschat"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
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

/// Kills the child when the test ends, also when it fails.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `request` on `s` and returns the status of the answer, or `None` when the server
/// closed (or reset) the connection without one. Fails the test on a hang.
fn status_on(mut s: &TcpStream, request: &str) -> Option<u16> {
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    if s.write_all(request.as_bytes()).is_err() {
        return None;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < 12 {
        match s.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("no answer and no close within {IO_TIMEOUT:?}")
            }
            Err(_) => return None,
        }
    }
    std::str::from_utf8(&got[9..12]).ok()?.parse().ok()
}

/// One request on a fresh connection; `None` when it could not be answered.
fn status_of(addr: SocketAddr, request: &str) -> Option<u16> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).ok()?;
    status_on(&s, request)
}

#[test]
fn pages_survive_running_out_of_descriptors() {
    let (child, addr) = spawn_limited();
    let _reap = Reap(child);
    let get =
        |path: &str| format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let body = r#"{"channel":"x","text":"hi"}"#;
    let publish = format!(
        "POST /api/publish HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nX-API-Key: k\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(status_of(addr, &get("/healthz")), Some(200), "up before");

    let first: Vec<TcpStream> = (0..16).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let more: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    for s in &more {
        let answer = status_on(s, &get("/"));
        assert!(
            matches!(answer, Some(503) | None),
            "over the cap: {answer:?}"
        );
    }
    let answer = status_on(&first[0], &get("/"));
    assert!(
        matches!(answer, Some(200 | 503) | None),
        "a page while descriptors are short: {answer:?}"
    );
    drop(more);
    drop(first);

    // Descriptors free up as the server notices the closes: wait, with a deadline, for each.
    for (what, request) in [
        ("/", get("/")),
        ("/healthz", get("/healthz")),
        ("/metrics", get("/metrics")),
        ("/api/publish", publish.clone()),
    ] {
        assert!(
            wait_until(IO_TIMEOUT, || status_of(addr, &request) == Some(200)),
            "{what} answers again"
        );
    }
    let mut ws = None;
    assert!(
        wait_until(IO_TIMEOUT, || {
            ws = try_connect(addr, "/echo").ok();
            ws.is_some()
        }),
        "a WebSocket upgrade works again"
    );
    let mut ws = ws.unwrap();
    ws.send(Message::text("back")).unwrap();
    assert_eq!(recv_text(&mut ws), "back");
}
