//! Capacity: past max_connections or the per-IP cap new connections get 503 with Retry-After
//! and get in again once others leave; 500 silent connections plus 500 half-sent heads do not
//! stop a normal client, and all are released within the handshake timeout.

use crate::common::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;
use tungstenite::Message;

#[test]
fn connection_cap_answers_503_then_admits_again() {
    let server = start(|c| c.max_connections = 5);
    let addr = server.local_addr();
    let handle = server.handle();
    let mut clients: Vec<Client> = (0..5).map(|_| connect(addr, "/")).collect();
    assert!(wait_until(IO_TIMEOUT, || handle.connection_count() == 5));
    let answer = raw_exchange(addr, upgrade_request(addr, "/", "").as_bytes(), IO_TIMEOUT);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("Retry-After: "), "{answer}");
    clients.pop().unwrap().close(None).unwrap();
    assert!(wait_until(IO_TIMEOUT, || metric(
        &handle,
        "wschat_tcp_connections"
    ) == 4));
    let mut again = connect(addr, "/");
    clients[0].send(Message::text("hello newcomer")).unwrap();
    assert_eq!(recv_text(&mut again), "hello newcomer");
}

#[test]
fn per_ip_cap_answers_503() {
    let server = start(|c| {
        c.max_per_ip = 3;
        c.limit_loopback = true; // the tests' clients are all on loopback
    });
    let addr = server.local_addr();
    let _three: Vec<Client> = (0..3).map(|_| connect(addr, "/")).collect();
    let answer = raw_exchange(addr, upgrade_request(addr, "/", "").as_bytes(), IO_TIMEOUT);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
}

#[test]
fn silent_and_half_open_handshakes_do_not_block_others_and_are_released() {
    let timeout = Duration::from_secs(2);
    let server = start(|c| c.handshake_timeout = timeout);
    let addr = server.local_addr();
    let handle = server.handle();
    let rss_before = rss_kib();
    let mut idle = Vec::new();
    for i in 0..1000 {
        let mut s = TcpStream::connect(addr).unwrap();
        if i % 2 == 1 {
            s.write_all(b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
                .unwrap();
        }
        idle.push(s);
    }
    assert!(wait_until(IO_TIMEOUT, || metric(
        &handle,
        "wschat_tcp_connections"
    ) >= 1000));
    println!(
        "RSS with 1000 stalled handshakes: {} KiB (before: {rss_before} KiB)",
        rss_kib()
    );
    // A normal client still gets in and is served while they stall.
    let mut ws = connect(addr, "/echo");
    ws.send(Message::text("not blocked")).unwrap();
    assert_eq!(recv_text(&mut ws), "not blocked");
    // All 1000 are answered 408 or closed and released within the timeout (plus slack for a
    // loaded CI machine); only the echo client remains.
    assert!(
        wait_until(timeout + IO_TIMEOUT, || metric(
            &handle,
            "wschat_tcp_connections"
        ) == 1),
        "{} connections still held",
        metric(&handle, "wschat_tcp_connections")
    );
    drop(idle);
}
