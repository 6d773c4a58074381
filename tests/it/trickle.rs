//! A client that trickles a message (one byte at a time, each before the read timeout) after a
//! first message does not hold a thread: once its message has taken `park_after`, the connection is parked with
//! the partial message intact, and the message is still delivered when it completes.

use crate::common::*;
use std::io::Write;
use std::time::{Duration, Instant};

#[test]
fn a_trickling_sender_is_parked_and_its_message_still_arrives() {
    // Reads time out after 1 s of silence; the trickle sends a byte every 100 ms, so on a
    // design where only silence parks, the trickler holds its thread for the whole message.
    let server = start(|c| {
        c.park_after = Duration::from_millis(1000);
        c.relay_rate = 0.0;
    });
    let addr = server.local_addr();
    let handle = server.handle();
    let mut listener = connect(addr, "/");
    let (mut trickler, _) = raw_upgrade(addr, "/");
    let parked = || metric(&handle, "wschat_parked_connections");
    assert!(
        wait_until(IO_TIMEOUT, || parked() == 2),
        "both start parked"
    );

    // One whole message first: the trickler gets a thread of its own (as the audit's recipe:
    // after one data frame, one byte at a time).
    trickler
        .write_all(&client_frame(0x81, b"first", [9, 9, 9, 9]))
        .unwrap();
    assert_eq!(recv_text(&mut listener), "first");
    assert_eq!(parked(), 1, "the trickler is awake after its first message");

    let payload = vec![b'x'; 60];
    let frame = client_frame(0x81, &payload, [1, 2, 3, 4]);
    let started = Instant::now();
    let mut seen_parked_mid_message = false;
    for (i, byte) in frame.iter().enumerate() {
        trickler.write_all(&[*byte]).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        // After the first byte the trickler has a thread; once its message has taken longer
        // than park_after, it must be parked again although bytes keep coming.
        if i > 5 && parked() == 2 {
            seen_parked_mid_message = true;
        }
        if seen_parked_mid_message && i + 8 < frame.len() {
            // Seen; send the rest at once so the test stays short.
            trickler.write_all(&frame[i + 1..]).unwrap();
            break;
        }
    }
    assert!(
        seen_parked_mid_message,
        "the trickler held its thread for the whole message ({:?})",
        started.elapsed()
    );
    assert_eq!(
        recv_text(&mut listener),
        String::from_utf8(payload).unwrap()
    );
}
