//! A global cap on connection threads: while every thread is taken (here by two slow request
//! heads), a new connection that needs a thread (its head not all there when it is accepted)
//! gets 503 (a whole upgrade head that came with the connection needs no thread: the accept
//! thread admits it, see `accept.rs::front_door`), parked clients keep being served (a ping is answered by
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

    // Two clients that start a request head and stop: each holds a thread for up to 2 s.
    let slow: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    assert!(
        wait_until(IO_TIMEOUT, || metric(&handle, "wschat_connection_threads")
            == 2),
        "the slow heads did not take the threads"
    );
    assert_eq!(metric(&handle, "wschat_connection_threads_limit"), 2);

    // A new connection whose head is not whole when it is accepted needs a thread: 503, not a
    // third thread. (Only the first line is sent first, so the accept thread's one read can
    // never see the whole head, whatever the timing.)
    let mut third = TcpStream::connect(addr).unwrap();
    third.write_all(b"GET / HTTP/1.1\r\n").unwrap();
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
    // It speaks: it waits for a thread (the slow heads' 408s free them), then is delivered.
    speaker.send(Message::text("hello")).unwrap();
    assert_eq!(recv_text(&mut listener), "hello");
    assert!(metric(&handle, "wschat_connection_threads_full_total") >= 1);
    drop(slow);
}
