//! HTTP/1.1 keep-alive on the public port: two requests on one connection get two answers,
//! pipelined requests are answered in order, `Connection: close` and HTTP/1.0 close, an idle
//! connection is closed, and a WebSocket upgrade after page requests on the same connection
//! still works.

use crate::common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use tungstenite::Message;

/// Reads responses off one connection, keeping bytes that belong to the next one.
struct Responses {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// One response: status, lowercase head, body.
struct Response {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Responses {
    fn new(addr: std::net::SocketAddr) -> Responses {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        Responses {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, request: &str) {
        self.stream.write_all(request.as_bytes()).unwrap();
    }

    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next response; `head_only` for the answer to a HEAD request (no body follows).
    fn next(&mut self, head_only: bool) -> Response {
        let end = loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            assert!(
                self.fill(),
                "closed before a whole head: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).to_lowercase();
        let status = head[9..12].parse().unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |v| v.trim().parse().unwrap());
        let length = if head_only || status == 304 {
            0
        } else {
            length
        };
        while self.buf.len() < end + length {
            assert!(self.fill(), "closed before the whole body");
        }
        let body = self.buf[end..end + length].to_vec();
        self.buf.drain(..end + length);
        Response { status, head, body }
    }

    /// Whether the server closes the connection (EOF) before `IO_TIMEOUT`.
    fn closes(&mut self) -> bool {
        let mut chunk = [0u8; 512];
        matches!(self.stream.read(&mut chunk), Ok(0))
    }
}

#[test]
fn two_requests_on_one_connection_get_two_answers() {
    let server = start(|_| {});
    let addr = server.local_addr();
    let mut conn = Responses::new(addr);
    conn.send(&format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n"));
    let first = conn.next(false);
    assert_eq!(first.status, 200);
    assert_eq!(first.body, br#"{"ok":1}"#);
    assert!(
        first.head.contains("connection: keep-alive"),
        "{}",
        first.head
    );

    conn.send(&format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n"));
    let second = conn.next(false);
    assert_eq!(second.status, 200);
    assert!(String::from_utf8_lossy(&second.body).contains("<html"));

    // The ETag of the answer revalidates on the same connection.
    let etag = second
        .head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .unwrap()
        .to_string();
    conn.send(&format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nIf-None-Match: {etag}\r\n\r\n"
    ));
    assert_eq!(conn.next(false).status, 304);

    conn.send(&format!(
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    ));
    let last = conn.next(false);
    assert_eq!(last.status, 200);
    assert!(last.head.contains("connection: close"), "{}", last.head);
    assert!(String::from_utf8_lossy(&last.body).contains("wschat_http_requests_total 4"));
    assert!(conn.closes(), "Connection: close is honoured");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = start(|c| c.api_key = Some("k".into()));
    let addr = server.local_addr();
    let mut relay = connect(addr, "/relay/p");
    assert!(wait_until(IO_TIMEOUT, || server
        .handle()
        .connection_count()
        == 1));
    let mut conn = Responses::new(addr);
    let mut batch = String::new();
    for i in 0..3 {
        let body = format!(r#"{{"channel":"p","text":"m{i}"}}"#);
        batch.push_str(&format!(
            "POST /api/publish HTTP/1.1\r\nHost: {addr}\r\nX-API-Key: k\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    }
    batch.push_str(&format!("HEAD / HTTP/1.1\r\nHost: {addr}\r\n\r\n"));
    batch.push_str(&format!("GET /nope HTTP/1.1\r\nHost: {addr}\r\n\r\n"));
    conn.send(&batch); // one write: every head after the first arrives with the one before
    for _ in 0..3 {
        let answer = conn.next(false);
        assert_eq!(answer.status, 200, "{}", answer.head);
        assert_eq!(answer.body, br#"{"ok":true}"#);
    }
    let head = conn.next(true);
    assert_eq!(head.status, 200);
    assert!(
        head.head.contains("content-type: text/html"),
        "{}",
        head.head
    );
    assert_eq!(conn.next(false).status, 404);
    for i in 0..3 {
        assert_eq!(recv_text(&mut relay), format!("m{i}"));
    }
}

#[test]
fn http_1_0_closes_unless_asked_and_an_idle_connection_is_closed() {
    let server = start(|c| c.handshake_timeout = Duration::from_secs(1));
    let addr = server.local_addr();
    let mut conn = Responses::new(addr);
    conn.send("GET /healthz HTTP/1.0\r\n\r\n");
    let answer = conn.next(false);
    assert_eq!(answer.status, 200);
    assert!(answer.head.contains("connection: close"));
    assert!(conn.closes());

    let mut conn = Responses::new(addr);
    conn.send("GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert!(conn.next(false).head.contains("connection: keep-alive"));
    conn.send("GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(conn.next(false).status, 200);
    // Now idle: closed without an answer once the idle timeout passes.
    assert!(conn.closes(), "an idle kept-alive connection is closed");
    assert!(conn.buf.is_empty());
    assert!(wait_until(IO_TIMEOUT, || metric(
        &server.handle(),
        "wschat_tcp_connections"
    ) == 0));
}

#[test]
fn a_websocket_upgrade_after_page_requests_on_the_same_connection_works() {
    let server = start(|_| {});
    let addr = server.local_addr();
    let mut conn = Responses::new(addr);
    conn.send(&format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n"));
    assert_eq!(conn.next(false).status, 200);
    conn.send(&upgrade_request(addr, "/echo", ""));
    let switched = conn.next(true);
    assert_eq!(switched.status, 101, "{}", switched.head);
    assert!(conn.buf.is_empty());
    // The handshake is done: the same socket now carries frames.
    let mut ws = tungstenite::WebSocket::from_raw_socket(
        conn.stream,
        tungstenite::protocol::Role::Client,
        None,
    );
    ws.send(Message::text("after pages")).unwrap();
    assert_eq!(recv_text(&mut ws), "after pages");
}
