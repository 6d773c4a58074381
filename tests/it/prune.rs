//! Clients that vanish are pruned: 200 that drop TCP without a Close, and clients that stop
//! answering pings (what a half-open connection looks like from the server).

use crate::common::*;
use std::io::{Read, Write};
use std::time::Duration;

#[test]
fn two_hundred_clients_dropping_tcp_without_close_are_pruned() {
    let server = start(|_| {});
    let addr = server.local_addr();
    let handle = server.handle();
    let clients: Vec<Client> = (0..200).map(|_| connect(addr, "/")).collect();
    assert!(wait_until(IO_TIMEOUT, || handle.connection_count() == 200));
    drop(clients); // FIN without a Close frame
    assert!(
        wait_until(IO_TIMEOUT, || handle.connection_count() == 0),
        "still {} connections",
        handle.connection_count()
    );
}

#[test]
fn clients_that_ignore_pings_are_dropped() {
    let server = start(|c| c.ping_interval = Duration::from_millis(200));
    let addr = server.local_addr();
    let handle = server.handle();
    // A raw client that completes the handshake and then never reads or answers anything.
    let mut silent = std::net::TcpStream::connect(addr).unwrap();
    silent
        .write_all(upgrade_request(addr, "/", "").as_bytes())
        .unwrap();
    // A well-behaved client (tungstenite answers pings while reading) stays.
    let mut alive = connect(addr, "/");
    assert!(wait_until(IO_TIMEOUT, || handle.connection_count() == 2));
    let reader = std::thread::spawn(move || {
        // Keep reading so pings get answered, until the test publishes "done".
        loop {
            if recv_text(&mut alive) == "done" {
                return alive;
            }
        }
    });
    assert!(
        wait_until(IO_TIMEOUT, || handle.connection_count() == 1),
        "the silent client was not dropped"
    );
    handle.publish_text("", "done").unwrap();
    let _alive = reader.join().unwrap();
    // The silent client received pings (and no data) before being cut.
    silent.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut got = Vec::new();
    let _ = silent.read_to_end(&mut got);
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(got[head_end], 0x89, "first frame after the 101 is a ping");
}
