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
