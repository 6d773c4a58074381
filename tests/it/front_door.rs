//! The front door (`server/door.rs`): heads still arriving are read by the accept thread as
//! their bytes come, so they hold no thread and delay no one; a head that arrives in pieces is
//! served whole; each still ends with 408 at the handshake timeout, or 431 past
//! `max_head_size`.

use crate::common::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;
use tungstenite::Message;

const SLOW: usize = 100;

#[test]
fn heads_still_arriving_hold_no_thread_and_delay_no_one() {
    let server = start(|c| {
        c.handshake_timeout = Duration::from_secs(1);
        // Fewer threads than slow heads: were each head on a thread, the rest would get 503.
        c.max_connection_threads = 4;
    });
    let addr = server.local_addr();
    let handle = server.handle();
    let slow: Vec<TcpStream> = (0..SLOW)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
                .unwrap();
            s
        })
        .collect();
    assert!(wait_until(IO_TIMEOUT, || metric(
        &handle,
        "wschat_heads_arriving"
    ) == SLOW as u64));
    assert_eq!(metric(&handle, "wschat_connection_threads"), 0);

    // An upgrade whose head comes in two pieces is answered once it is whole.
    let request = upgrade_request(addr, "/echo", "");
    let (first, rest) = request.split_at(20);
    let mut pieces = TcpStream::connect(addr).unwrap();
    pieces.write_all(first.as_bytes()).unwrap();
    assert!(wait_until(IO_TIMEOUT, || metric(
        &handle,
        "wschat_heads_arriving"
    ) == SLOW as u64 + 1));
    pieces.write_all(rest.as_bytes()).unwrap();
    let answer = read_response_head(&mut pieces);
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");

    // Meanwhile a client connects and talks as if nobody else were there.
    let mut ws = connect(addr, "/echo");
    ws.send(Message::text("hi")).unwrap();
    assert_eq!(recv_text(&mut ws), "hi");

    // The slow heads meet the handshake timeout.
    for mut s in slow {
        let answer = read_response_head(&mut s);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    assert!(wait_until(IO_TIMEOUT, || metric(
        &handle,
        "wschat_heads_arriving"
    ) == 0));
}

#[test]
fn a_head_past_max_head_size_gets_431() {
    let server = start(|c| c.max_head_size = 2048);
    let addr = server.local_addr();
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    // 3000 bytes of headers and no end, in pieces: more than one read's worth past the limit.
    for _ in 0..30 {
        s.write_all(format!("X-Pad: {}\r\n", "p".repeat(91)).as_bytes())
            .unwrap();
    }
    let answer = read_response_head(&mut s);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}
