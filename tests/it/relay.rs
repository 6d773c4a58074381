//! The relay: every message reaches every other client of its channel exactly once, in order,
//! text and binary kept apart; channels are separate; the welcome text greets new clients.

use crate::common::*;
use tungstenite::Message;

#[test]
fn three_clients_each_message_reaches_the_two_others_once_in_order() {
    let server = start(|_| {});
    let addr = server.local_addr();
    let mut clients: Vec<Client> = (0..3).map(|_| connect(addr, "/")).collect();
    let handle = server.handle();
    assert!(wait_until(IO_TIMEOUT, || handle.connection_count() == 3));

    const N: usize = 50;
    for i in 0..N {
        for (c, ws) in clients.iter_mut().enumerate() {
            if i % 2 == 0 {
                ws.send(Message::text(format!("{c}:{i}"))).unwrap();
            } else {
                ws.send(Message::binary(format!("{c}:{i}").into_bytes()))
                    .unwrap();
            }
        }
    }
    // A marker from client 0 at the end: once each receiver has it, all earlier messages from
    // client 0 must have arrived; we then check every sender's sequence exactly.
    for (me, ws) in clients.iter_mut().enumerate() {
        let mut next = [0usize; 3];
        for _ in 0..2 * N {
            let (is_text, payload) = match recv(ws) {
                Message::Text(t) => (true, t.to_string()),
                Message::Binary(b) => (false, String::from_utf8(b.to_vec()).unwrap()),
                _ => unreachable!(),
            };
            let (from, i) = payload.split_once(':').unwrap();
            let (from, i): (usize, usize) = (from.parse().unwrap(), i.parse().unwrap());
            assert_ne!(from, me, "a client got its own message");
            assert_eq!(
                i, next[from],
                "client {me}: from {from} out of order or duplicated"
            );
            assert_eq!(is_text, i % 2 == 0, "text/binary mixed up");
            next[from] += 1;
        }
        for (from, &n) in next.iter().enumerate() {
            assert_eq!(n, if from == me { 0 } else { N });
        }
    }
    // Nothing more is pending for anyone: a probe from client 0 is the next thing 1 and 2 see.
    clients[0].send(Message::text("probe")).unwrap();
    assert_eq!(recv_text(&mut clients[1]), "probe");
    assert_eq!(recv_text(&mut clients[2]), "probe");
}

#[test]
fn named_channels_are_separate() {
    let server = start(|_| {});
    let addr = server.local_addr();
    let mut a1 = connect(addr, "/relay/a");
    let mut a2 = connect(addr, "/relay/a");
    let mut b1 = connect(addr, "/relay/b");
    let mut root = connect(addr, "/");
    let handle = server.handle();
    assert!(wait_until(IO_TIMEOUT, || handle.connection_count() == 4));

    a1.send(Message::text("for a")).unwrap();
    b1.send(Message::text("for b")).unwrap();
    assert_eq!(recv_text(&mut a2), "for a");
    // b1 and root must not see "for a"; the host publishes a marker to each to prove order.
    handle.publish_text("b", "marker b").unwrap();
    handle.publish_text("", "marker root").unwrap();
    assert_eq!(recv_text(&mut b1), "marker b");
    assert_eq!(recv_text(&mut root), "marker root");
    // a1 got neither b's message nor its own.
    handle.publish_text("a", "marker a").unwrap();
    assert_eq!(recv_text(&mut a1), "marker a");
}

#[test]
fn welcome_text_greets_each_new_client_only() {
    let server = start(|c| c.welcome = Some("welcome to wschat".into()));
    let addr = server.local_addr();
    let mut first = connect(addr, "/");
    assert_eq!(recv_text(&mut first), "welcome to wschat");
    let mut second = connect(addr, "/");
    assert_eq!(recv_text(&mut second), "welcome to wschat");
    second.send(Message::text("hi")).unwrap();
    // The first client sees the second's message, not a second welcome.
    assert_eq!(recv_text(&mut first), "hi");
    let mut echo = connect(addr, "/echo");
    echo.send(Message::text("ping")).unwrap();
    assert_eq!(recv_text(&mut echo), "ping", "echo clients get no welcome");
}

#[test]
fn invalid_channel_names_are_404() {
    let server = start(|_| {});
    let addr = server.local_addr();
    for path in ["/relay/", "/relay/a/b", "/relay/%20", "/nope"] {
        let answer = raw_exchange(addr, upgrade_request(addr, path, "").as_bytes(), IO_TIMEOUT);
        assert!(answer.starts_with("HTTP/1.1 404"), "{path}: {answer}");
    }
}

/// A client that has seen its 101 is already a member of its channel: a message sent right
/// after the handshake returns reaches it (the thread that accepted it tells the dispatcher
/// first and writes the 101 second, `gate.rs`). Many times, as a race would show only now and
/// then.
#[test]
fn a_client_that_has_seen_its_101_gets_what_is_sent_right_after() {
    let server = start(|c| c.relay_rate = 0.0);
    let addr = server.local_addr();
    let handle = server.handle();
    let mut sender = connect(addr, "/");
    for i in 0..200 {
        let mut fresh = connect(addr, "/");
        if i % 2 == 0 {
            sender.send(Message::text(format!("m{i}"))).unwrap();
        } else {
            handle.publish_text("", format!("m{i}")).unwrap();
        }
        assert_eq!(recv_text(&mut fresh), format!("m{i}"));
        // The sender hears the publishes (it is a member too); drain them in order.
        if i % 2 == 1 {
            assert_eq!(recv_text(&mut sender), format!("m{i}"));
        }
    }
}
