//! The write delay (`Config::write_delay`): after a round of writes to 256 clients or more, the
//! dispatcher holds the next round's frames to send more per syscall. Held frames still reach
//! every client, whole and in order, and a shutdown during a hold writes them before the Close.
//! (How long a hold lasts is a timing, and is measured in BENCHMARKS.md, not asserted here.)

use crate::common::*;
use std::time::Duration;
use tungstenite::Message;

/// Above the dispatcher's `BUSY_ROUND` (256), so that each message's round makes the next one
/// wait.
const LISTENERS: usize = 300;

fn busy_channel() -> (Server, Client, Vec<Client>) {
    let server = start(|c| {
        // Long enough that the frames of the rounds below are surely held; short enough that
        // the test never waits long for them.
        c.write_delay = Duration::from_millis(300);
        c.relay_rate = 0.0;
    });
    let addr = server.local_addr();
    let sender = connect(addr, "/");
    let listeners: Vec<Client> = (0..LISTENERS).map(|_| connect(addr, "/")).collect();
    let handle = server.handle();
    assert!(wait_until(IO_TIMEOUT, || handle.connection_count() == LISTENERS + 1));
    (server, sender, listeners)
}

#[test]
fn held_frames_reach_every_client_whole_and_in_order() {
    let (server, mut sender, mut listeners) = busy_channel();
    let handle = server.handle();
    // The first message's round writes to 300 clients: a busy round.
    sender.send(Message::text("m0")).unwrap();
    for ws in &mut listeners {
        assert_eq!(recv_text(ws), "m0");
    }
    // So the rounds of the next ones are held.
    const N: usize = 20;
    for i in 1..=N {
        let payload = format!("m{i}:{}", "x".repeat(i * 100));
        if i % 2 == 0 {
            sender.send(Message::text(payload)).unwrap();
        } else {
            sender.send(Message::binary(payload.into_bytes())).unwrap();
        }
    }
    for ws in &mut listeners {
        for i in 1..=N {
            let (text, payload) = match recv(ws) {
                Message::Text(t) => (true, t.to_string()),
                Message::Binary(b) => (false, String::from_utf8(b.to_vec()).unwrap()),
                other => panic!("expected message {i}, got {other:?}"),
            };
            assert_eq!(text, i % 2 == 0, "message {i} changed its type");
            assert_eq!(payload, format!("m{i}:{}", "x".repeat(i * 100)));
        }
    }
    assert!(metric(&handle, "wschat_write_holds_total") >= 1);
}

#[test]
fn a_shutdown_during_a_hold_writes_the_held_frames_before_the_close() {
    let (server, mut sender, mut listeners) = busy_channel();
    let handle = server.handle();
    sender.send(Message::text("first")).unwrap();
    for ws in &mut listeners {
        assert_eq!(recv_text(ws), "first");
    }
    let holds = metric(&handle, "wschat_write_holds_total");
    sender.send(Message::text("held")).unwrap();
    // The dispatcher has taken it (and holds it: the last round was busy) before the shutdown.
    assert!(wait_until(IO_TIMEOUT, || metric(
        &handle,
        "wschat_messages_in_total"
    ) == 2));
    assert!(metric(&handle, "wschat_write_holds_total") > holds);
    handle.shutdown();
    for ws in &mut listeners {
        assert_eq!(recv_text(ws), "held");
        assert_eq!(expect_close(ws), 1001);
    }
}
