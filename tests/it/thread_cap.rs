//! A global cap on connection threads: while every thread is taken (here by two idle HTTP
//! keep-alive connections), a new connection that needs a thread (plain HTTP) gets 503, while
//! one whose head is still arriving holds no thread and is not refused (it waits in the accept
//! thread's front door, `door.rs`), parked clients keep being served (a ping is answered by
//! the parking thread), and a parked client that speaks waits for the next free thread instead
//! of being refused: its message is delivered once one frees up.

use crate::common::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;
use tungstenite::Message;

#[test]
fn at_the_thread_cap_new_connections_wait_outside_and_parked_ones_wait_inside() {
    let server = start(|c| {
        c.max_connection_threads = 2;
        c.park_after = Duration::from_millis(300);
        c.handshake_timeout = Duration::from_secs(2);
        c.relay_rate = 0.0;
    });
    let addr = server.local_addr();
    let handle = server.handle();
    let mut speaker = connect(addr, "/");
    let mut listener = connect(addr, "/");
    assert!(wait_until(IO_TIMEOUT, || metric(
        &handle,
        "wschat_parked_connections"
    ) == 2));
    assert!(wait_until(IO_TIMEOUT, || metric(
        &handle,
        "wschat_connection_threads"
    ) == 0));

    // Two HTTP clients that keep their connection open after an answer: each holds a thread,
    // waiting for its next request, for up to 2 s (the handshake timeout).
    let slow: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .unwrap();
            let answer = read_response_head(&mut s);
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            s
        })
        .collect();
    assert!(
        wait_until(IO_TIMEOUT, || metric(&handle, "wschat_connection_threads")
            == 2),
        "the keep-alive connections did not keep the threads"
    );
    assert_eq!(metric(&handle, "wschat_connection_threads_limit"), 2);

    // A head still arriving needs no thread: it waits in the front door, not refused.
    let mut arriving = TcpStream::connect(addr).unwrap();
    arriving.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    assert!(wait_until(IO_TIMEOUT, || metric(
        &handle,
        "wschat_heads_arriving"
    ) == 1));
    assert_eq!(metric(&handle, "wschat_connection_threads"), 2);

    // A new plain HTTP request needs a thread: 503, not a third thread.
    let mut third = TcpStream::connect(addr).unwrap();
    third
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let answer = read_response_head(&mut third);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");

    // A parked client is still served: its ping is answered without a thread.
    speaker
        .send(Message::Ping(b"still there".to_vec().into()))
        .unwrap();
    match speaker.read().unwrap() {
        Message::Pong(p) => assert_eq!(&p[..], b"still there"),
        other => panic!("expected the pong, got {other:?}"),
    }
    // It speaks: it waits for a thread (the keep-alive connections' ends free them), then is
    // delivered.
    speaker.send(Message::text("hello")).unwrap();
    assert_eq!(recv_text(&mut listener), "hello");
    assert!(metric(&handle, "wschat_connection_threads_full_total") >= 1);
    drop(slow);
    drop(arriving);
}
