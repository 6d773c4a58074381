//! Malformed handshakes get an HTTP error (or a closed socket) within seconds, and the server
//! keeps serving: no key, bad key, version 8, POST, no Upgrade, huge and endless headers.

use crate::common::*;
use std::io::Write;
use std::time::{Duration, Instant};
use tungstenite::Message;

fn status_of(answer: &str) -> &str {
    answer.get(9..12).unwrap_or("closed")
}

#[test]
fn malformed_handshakes_are_refused_and_the_server_keeps_serving() {
    let server = start(|c| c.handshake_timeout = Duration::from_secs(1));
    let addr = server.local_addr();
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let base = format!("Host: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "no key",
            format!("GET / HTTP/1.1\r\n{base}Sec-WebSocket-Version: 13\r\n\r\n"),
            "400",
        ),
        (
            "bad key",
            format!(
                "GET / HTTP/1.1\r\n{base}Sec-WebSocket-Key: x\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ),
            "400",
        ),
        (
            "version 8",
            format!("GET / HTTP/1.1\r\n{base}{key}Sec-WebSocket-Version: 8\r\n\r\n"),
            "426",
        ),
        (
            "POST",
            format!("POST / HTTP/1.1\r\n{base}{key}Sec-WebSocket-Version: 13\r\n\r\n"),
            "400",
        ),
        (
            "no Upgrade header",
            format!(
                "GET /echo HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\n{key}Sec-WebSocket-Version: 13\r\n\r\n"
            ),
            "426",
        ),
        (
            "HTTP/1.0",
            format!("GET / HTTP/1.0\r\n{base}{key}Sec-WebSocket-Version: 13\r\n\r\n"),
            "400",
        ),
        (
            "no Host",
            format!(
                "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{key}Sec-WebSocket-Version: 13\r\n\r\n"
            ),
            "400",
        ),
        (
            "not HTTP",
            "\x16\x03\x01\x02\x00\x01\x00\x01\x7c\x03\x03\r\n\r\n".to_string(),
            "400",
        ),
        (
            "100 KB of headers",
            format!(
                "GET / HTTP/1.1\r\n{base}X-Big: {}\r\n\r\n",
                "a".repeat(100_000)
            ),
            "431",
        ),
        (
            "head never finishes",
            format!("GET / HTTP/1.1\r\n{base}"),
            "408",
        ),
    ];
    for (what, request, expected) in &cases {
        let started = Instant::now();
        let answer = raw_exchange(addr, request.as_bytes(), IO_TIMEOUT);
        assert_eq!(status_of(&answer), *expected, "{what}: {answer:?}");
        assert!(answer.contains("Connection: close"), "{what}");
        assert!(started.elapsed() < IO_TIMEOUT, "{what} hung");
    }
    let mut ws = connect(addr, "/echo");
    ws.send(Message::text("still serving")).unwrap();
    assert_eq!(recv_text(&mut ws), "still serving");
}

#[test]
fn endless_header_lines_are_cut_at_the_size_cap() {
    let server = start(|_| {});
    let addr = server.local_addr();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    // Keep sending header lines; the server must answer 431 once 16 KiB have arrived.
    let line = b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    for _ in 0..10_000 {
        if s.write_all(line).is_err() {
            break; // the server closed after answering
        }
    }
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut answer);
    assert!(
        answer.starts_with(b"HTTP/1.1 431"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
}

#[test]
fn frames_sent_before_the_101_are_not_lost() {
    use std::io::Read;
    let server = start(|_| {});
    let addr = server.local_addr();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut request = upgrade_request(addr, "/echo", "").into_bytes();
    request.extend_from_slice(&[0x81, 0x82, 0, 0, 0, 0, b'h', b'i']); // same write as the head
    s.write_all(&request).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !got.ends_with(&[0x81, 2, b'h', b'i']) {
        let n = s.read(&mut buf).expect("the echo of the early frame");
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
}
