//! Idle connections are parked: their threads end, yet they answer pings, receive broadcasts,
//! wake up when they speak, close cleanly, and are pruned when they vanish.

use crate::common::*;
use std::time::Duration;
use tungstenite::Message;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn parked_connections_keep_working_without_threads() {
    // Measures the whole process: alone in a child, not beside the other tests' threads.
    if !isolated(
        module_path!(),
        "parked_connections_keep_working_without_threads",
    ) {
        return;
    }
    const N: usize = 50;
    let server = start(|c| c.park_after = Duration::from_millis(200));
    let addr = server.local_addr();
    let handle = server.handle();
    let mut clients: Vec<Client> = (0..N).map(|_| connect(addr, "/")).collect();
    assert!(
        wait_until(IO_TIMEOUT, || metric(&handle, "wschat_parked_connections")
            == N as u64),
        "only {} parked",
        metric(&handle, "wschat_parked_connections")
    );
    // 50 connections, yet far fewer threads than that in the whole test process.
    assert!(
        threads() < N,
        "{} threads for {N} parked connections",
        threads()
    );

    // A ping to a parked connection is answered (by the parking thread).
    clients[0]
        .send(Message::Ping(b"are you there".to_vec().into()))
        .unwrap();
    match clients[0].read().unwrap() {
        Message::Pong(p) => assert_eq!(&p[..], b"are you there"),
        other => panic!("expected the pong, got {other:?}"),
    }
    // A parked client speaks: it wakes up, and every other (parked) client receives it.
    clients[1].send(Message::text("waking up")).unwrap();
    for (i, ws) in clients.iter_mut().enumerate() {
        if i != 1 {
            assert_eq!(recv_text(ws), "waking up", "client {i}");
        }
    }
    // It goes back to sleep.
    assert!(wait_until(IO_TIMEOUT, || {
        metric(&handle, "wschat_parked_connections") == N as u64
    }));
    // A parked client's Close is answered; vanished ones are pruned.
    clients[2].close(None).unwrap();
    assert_eq!(expect_close(&mut clients[2]), 1005);
    drop(clients);
    assert!(wait_until(IO_TIMEOUT, || handle.connection_count() == 0));
    assert_eq!(metric(&handle, "wschat_parked_connections"), 0);
}

#[test]
fn a_message_split_across_the_park_boundary_arrives_whole() {
    use std::io::{Read, Write};
    let server = start(|c| c.park_after = Duration::from_millis(100));
    let addr = server.local_addr();
    let handle = server.handle();
    let (mut s, after_head) = raw_upgrade(addr, "/echo");
    assert!(after_head.is_empty());
    // Half a frame, then silence until the connection is parked, then the rest.
    s.write_all(&[0x81, 0x85, 0, 0, 0, 0, b'h', b'e']).unwrap();
    assert!(wait_until(IO_TIMEOUT, || metric(
        &handle,
        "wschat_parked_connections"
    ) == 1));
    s.write_all(b"llo").unwrap();
    let mut frame = [0u8; 7];
    s.read_exact(&mut frame).unwrap();
    assert_eq!(&frame, &[0x81, 5, b'h', b'e', b'l', b'l', b'o']);
}

/// A parked connection drops tungstenite's state only when tungstenite holds nothing
/// (`Conn::rest`): whatever it was in the middle of when the connection went idle (half a
/// frame after a whole one, one fragment of a message, a length in its long form) must
/// still be there when the client goes on.
#[test]
fn parking_keeps_what_tungstenite_was_in_the_middle_of() {
    use std::io::{Read, Write};
    let server = start(|c| c.park_after = Duration::from_millis(100));
    let addr = server.local_addr();
    let handle = server.handle();
    let (mut s, after_head) = raw_upgrade(addr, "/echo");
    assert!(after_head.is_empty());
    let mask = [1, 2, 3, 4];
    let parked = |s: &str| {
        assert!(
            wait_until(IO_TIMEOUT, || metric(&handle, "wschat_parked_connections")
                == 1),
            "not parked: {s}"
        );
    };
    let expect = |s: &mut std::net::TcpStream, text: &str| {
        let mut frame = vec![0u8; 2 + text.len()];
        s.read_exact(&mut frame).unwrap();
        assert_eq!(frame[0], 0x81, "{text}");
        assert_eq!(&frame[2..], text.as_bytes());
    };
    // A whole frame, then idle: nothing is held, the state is dropped and rebuilt.
    s.write_all(&client_frame(0x81, b"one", mask)).unwrap();
    expect(&mut s, "one");
    parked("after one");
    s.write_all(&client_frame(0x81, b"two", mask)).unwrap();
    expect(&mut s, "two");
    // A whole frame and half of the next in one write.
    parked("after two");
    let mut both = client_frame(0x81, b"three", mask);
    let four = client_frame(0x81, b"four", mask);
    both.extend_from_slice(&four[..5]);
    s.write_all(&both).unwrap();
    expect(&mut s, "three");
    parked("half of four");
    s.write_all(&four[5..]).unwrap();
    expect(&mut s, "four");
    // The first fragment of a message.
    parked("after four");
    s.write_all(&client_frame(0x01, b"frag", mask)).unwrap();
    parked("one fragment");
    s.write_all(&client_frame(0x80, b"ment", mask)).unwrap();
    expect(&mut s, "fragment");
    // A length in its 16-bit form although it would fit in 7 bits.
    parked("after fragment");
    let mut long = vec![0x81, 0x80 | 126, 0, 4];
    long.extend_from_slice(&mask);
    long.extend(b"long".iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    s.write_all(&long).unwrap();
    expect(&mut s, "long");
    parked("after long");
    s.write_all(&client_frame(0x81, b"last", mask)).unwrap();
    expect(&mut s, "last");
    // A ping while parked is answered.
    parked("after last");
    s.write_all(&client_frame(0x89, b"hb", mask)).unwrap();
    let mut pong = [0u8; 4];
    s.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, &[0x8A, 2, b'h', b'b']);
}

/// Parked relay and echo connections end on the parking thread, with no thread of their own:
/// a Close is answered with its code, a hang-up and a protocol error (1002) end the connection
/// too, and one whose client never closes its side after the Close exchange is dropped after
/// the close wait (5 s), not kept. `wschat_parked_ends_total` counts each of them; it stays 0
/// if they go through connection threads.
#[test]
fn parked_connections_end_on_the_parking_thread() {
    use std::io::{Read, Write};
    let server = start(|_| {});
    let addr = server.local_addr();
    let handle = server.handle();
    let mut closers: Vec<Client> = (0..20).map(|_| connect(addr, "/")).collect();
    let hang_ups: Vec<Client> = (0..10).map(|_| connect(addr, "/echo")).collect();
    let (mut violator, _) = raw_upgrade(addr, "/");
    let (mut stayer, _) = raw_upgrade(addr, "/echo");
    // A new connection starts parked: all 32 are.
    assert!(wait_until(IO_TIMEOUT, || metric(
        &handle,
        "wschat_parked_connections"
    ) == 32));

    for ws in &mut closers {
        ws.close(None).unwrap();
    }
    for ws in &mut closers {
        assert_eq!(expect_close(ws), 1005);
    }
    drop(closers);
    drop(hang_ups);
    // An unmasked client frame breaks RFC 6455 5.1: 1002, then the server closes its side.
    violator.write_all(&[0x81, 0x02, b'h', b'i']).unwrap();
    let (frames, ending) = FrameReader::new(violator, Vec::new(), 1024).rest();
    assert_eq!(frames.last().and_then(|f| f.close_code()), Some(1002));
    assert_eq!(ending, Ending::Eof);
    assert!(wait_until(IO_TIMEOUT, || handle.connection_count() == 1));

    // The last one exchanges Closes but never closes its socket: it is dropped anyway.
    stayer
        .write_all(&client_frame(0x88, &1000u16.to_be_bytes(), [9, 8, 7, 6]))
        .unwrap();
    let mut reply = [0u8; 4];
    stayer.read_exact(&mut reply).unwrap();
    assert_eq!(
        reply,
        [0x88, 2, 0x03, 0xE8],
        "the Close is answered with its code"
    );
    assert!(
        wait_until(IO_TIMEOUT, || handle.connection_count() == 0),
        "a client that never closes its side is kept"
    );
    assert_eq!(metric(&handle, "wschat_parked_ends_total"), 32);
    assert_eq!(metric(&handle, "wschat_parked_connections"), 0);
    drop(stayer);
}
