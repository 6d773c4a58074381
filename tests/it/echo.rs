//! The echo endpoint returns every message exactly; over-limit messages get Close 1009 and the
//! server keeps serving others.

use crate::common::*;
use tungstenite::Message;

#[test]
fn echoes_text_binary_empty_large_and_unicode_exactly() {
    let server = start(|_| {});
    let mut ws = connect(server.local_addr(), "/echo");
    let big: String = "0123456789abcdef".repeat(60 * 1024 / 16); // 60 KiB
    let cases = vec![
        Message::text("hello"),
        Message::binary(vec![0u8, 1, 2, 255, 254]),
        Message::text(""),
        Message::binary(Vec::new()),
        Message::text(big.clone()),
        Message::binary(big.clone().into_bytes()),
        Message::text("你好，世界 😀🎉 naïve café"),
    ];
    for m in &cases {
        ws.send(m.clone()).unwrap();
    }
    for m in &cases {
        assert_eq!(&recv(&mut ws), m);
    }
}

#[test]
fn fragmented_message_is_echoed_whole() {
    use std::io::{Read, Write};
    let server = start(|_| {});
    let addr = server.local_addr();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(upgrade_request(addr, "/echo", "").as_bytes())
        .unwrap();
    let mut head = [0u8; 129];
    let n = s.read(&mut head).unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 101"));
    // "hel" (text, not final) + "lo" (continuation, final), masked with a zero key.
    s.write_all(&[0x01, 0x83, 0, 0, 0, 0, b'h', b'e', b'l'])
        .unwrap();
    s.write_all(&[0x80, 0x82, 0, 0, 0, 0, b'l', b'o']).unwrap();
    let mut frame = [0u8; 7];
    s.read_exact(&mut frame).unwrap();
    assert_eq!(&frame, &[0x81, 5, b'h', b'e', b'l', b'l', b'o']);
}

#[test]
fn over_the_limit_gets_1009_and_others_are_still_served() {
    let server = start(|c| c.max_message_size = 64 * 1024);
    let addr = server.local_addr();
    let mut other = connect(addr, "/echo");
    let mut big = connect(addr, "/echo");
    big.send(Message::binary(vec![7u8; 64 * 1024 + 1])).unwrap();
    assert_eq!(expect_close(&mut big), 1009);
    other.send(Message::text("still here")).unwrap();
    assert_eq!(recv_text(&mut other), "still here");
    // Exactly at the limit is fine.
    let mut ok = connect(addr, "/echo");
    ok.send(Message::binary(vec![1u8; 64 * 1024])).unwrap();
    assert_eq!(recv(&mut ok), Message::binary(vec![1u8; 64 * 1024]));
}

/// An echo is written by the thread that read it while the dispatcher holds nothing for that
/// client (`gate.rs`). A client that sends far more than its socket buffers hold before it
/// reads anything makes those writes short: the rest, every later echo and the pongs must
/// still arrive whole, once each, in the order sent.
#[test]
fn a_client_that_reads_late_gets_every_echo_and_pong_whole_and_in_order() {
    let server = start(|c| c.max_pending_bytes = 64 * 1024 * 1024);
    let handle = server.handle();
    let mut ws = connect(server.local_addr(), "/echo");
    // 32 MiB: more than loopback's socket buffers on both sides (at most ~10 MiB here).
    const MESSAGES: usize = 512;
    let message = |i: usize| {
        let mut m = vec![(i % 251) as u8; 64 * 1024 - 8];
        m[..8].copy_from_slice(&(i as u64).to_le_bytes());
        m
    };
    let mut sent = Vec::new();
    for i in 0..MESSAGES {
        ws.send(Message::binary(message(i))).unwrap();
        sent.push(Message::binary(message(i)));
        if i % 64 == 0 {
            let ping = format!("ping {i}").into_bytes();
            ws.send(Message::Ping(ping.clone().into())).unwrap();
            sent.push(Message::Pong(ping.into()));
        }
    }
    for (n, expected) in sent.iter().enumerate() {
        let got = ws.read().unwrap();
        assert!(
            &got == expected,
            "frame {n}: got {} bytes ({:?}...), expected {} bytes",
            got.len(),
            &got.into_data()[..8.min(expected.len())],
            expected.len()
        );
    }
    assert!(metric(&handle, "wschat_echoes_direct_total") >= 1);
    assert!(
        metric(&handle, "wschat_echo_leftovers_total") >= 1,
        "no direct write was short: the test did not reach the leftover path"
    );
}
