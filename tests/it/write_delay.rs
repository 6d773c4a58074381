//! The write delay (`Config::write_delay`): when the dispatcher is behind a busy broadcast (a
//! round of writes to 256 clients or more, with more events already waiting), it holds the
//! next round's frames to send more per syscall. Held frames still reach every client, whole
//! and in order, and a shutdown writes everything the dispatcher took before the Close.
//! (How long a hold lasts is a timing, and is measured in BENCHMARKS.md, not asserted here.)

use crate::common::*;
use std::time::Duration;
use tungstenite::Message;

/// Above the dispatcher's `BUSY_ROUND` (256), so that a round to them can make the next one
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
    // A round is held when messages come faster than rounds to 300 clients are written.
    // Published one after another from here, they pile up behind the first rounds; how soon
    // one is held depends on how the threads interleave, so publishing goes on until one was
    // (bounded: 1000 messages), then a few more. The metric (a whole /metrics rendering) is
    // read once per 10 messages: read after each one, it slowed the publisher below the pace
    // of the rounds on a loaded machine, and no round was ever behind (a CI failure).
    let payload = |i: usize| format!("m{i}:{}", "x".repeat(i % 7 * 30));
    let mut sent = 0;
    let mut extra = 20;
    while sent < 1000 && extra > 0 {
        handle.publish_text("", payload(sent)).unwrap();
        sent += 1;
        if sent % 10 == 0 && metric(&handle, "wschat_write_holds_total") > 0 {
            extra -= 1;
        }
    }
    // The dispatcher may still be working through them: a hold can come after the last send.
    assert!(
        wait_until(IO_TIMEOUT, || metric(&handle, "wschat_write_holds_total")
            >= 1),
        "no round was held in {sent} messages"
    );
    for ws in listeners.iter_mut().chain([&mut sender]) {
        for i in 0..sent {
            assert_eq!(recv_text(ws), payload(i));
        }
    }
}

#[test]
fn a_shutdown_writes_every_frame_taken_before_the_close() {
    let (server, mut sender, mut listeners) = busy_channel();
    let handle = server.handle();
    const N: usize = 20;
    for i in 0..N {
        sender.send(Message::text(format!("m{i}"))).unwrap();
    }
    // The dispatcher has taken them all (some rounds maybe held) before the shutdown.
    assert!(wait_until(IO_TIMEOUT, || metric(
        &handle,
        "wschat_messages_in_total"
    ) == N as u64));
    handle.shutdown();
    for ws in &mut listeners {
        for i in 0..N {
            assert_eq!(recv_text(ws), format!("m{i}"));
        }
        assert_eq!(expect_close(ws), 1001);
    }
}
