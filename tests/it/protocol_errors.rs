//! Protocol violations get the close code RFC 6455 asks for, flushed before the socket closes:
//! invalid UTF-8 1007, unmasked client frame 1002, reserved bits 1002, unknown opcode 1002.

use crate::common::*;
use std::io::{Read, Write};
use std::net::TcpStream;

/// Opens a raw WebSocket to /echo, sends `frame`, and returns the close code the server sends.
fn close_code_for(frame: &[u8]) -> u16 {
    let server = start(|_| {});
    let addr = server.local_addr();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(upgrade_request(addr, "/echo", "").as_bytes())
        .unwrap();
    // Read the 101 head.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    s.write_all(frame).unwrap();
    let mut hdr = [0u8; 2];
    s.read_exact(&mut hdr)
        .expect("a close frame, not a dropped connection");
    assert_eq!(hdr[0], 0x88, "expected a final Close frame");
    let mut payload = vec![0u8; (hdr[1] & 0x7f) as usize];
    s.read_exact(&mut payload).unwrap();
    // The server then closes the connection.
    let mut rest = [0u8; 16];
    assert_eq!(s.read(&mut rest).unwrap_or(0), 0);
    u16::from_be_bytes([payload[0], payload[1]])
}

/// A masked client frame with a zero mask key (so the payload is sent as is).
fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    client_frame(first, payload, [0; 4])
}

#[test]
fn invalid_utf8_in_text_gets_1007() {
    assert_eq!(close_code_for(&masked(0x81, &[0xff, 0xfe, 0x41])), 1007);
}

#[test]
fn unmasked_client_frame_gets_1002() {
    assert_eq!(close_code_for(&[0x81, 0x02, b'h', b'i']), 1002);
}

#[test]
fn reserved_bits_get_1002() {
    assert_eq!(close_code_for(&masked(0x81 | 0x40, b"hi")), 1002);
}

#[test]
fn unknown_opcode_gets_1002() {
    assert_eq!(close_code_for(&masked(0x83, b"hi")), 1002);
}

#[test]
fn continuation_without_start_gets_1002() {
    assert_eq!(close_code_for(&masked(0x80, b"hi")), 1002);
}

#[test]
fn client_close_is_answered_with_the_same_code() {
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    assert_eq!(close_code_for(&masked(0x88, &payload)), 1000);
}
