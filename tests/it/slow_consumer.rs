//! A relay client that stops reading is disconnected once its backlog passes the cap, while
//! every reading client gets every message, in order, and the server's memory stays bounded.

use crate::common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tungstenite::Message;

const MESSAGES: usize = 10_000;
const READERS: usize = 20;
/// The sender waits for the slowest reader to come within this many messages, so readers in a
/// debug build on a loaded 2-core CI box never fall a megabyte behind themselves. The stalled
/// client is not waited for.
const WINDOW: usize = 300;

#[test]
fn stalled_client_is_cut_and_readers_get_everything() {
    // Measures the whole process: alone in a child, not beside the other tests' threads.
    if !isolated(
        module_path!(),
        "stalled_client_is_cut_and_readers_get_everything",
    ) {
        return;
    }
    // Default 1 MiB cap; no relay rate limit: this test is about readers, not senders.
    let server = start(|c| c.relay_rate = 0.0);
    let addr = server.local_addr();
    let handle = server.handle();
    let rss_before = rss_kib();

    let _stalled = connect(addr, "/"); // never read
    let progress: Arc<Vec<AtomicUsize>> =
        Arc::new((0..READERS).map(|_| AtomicUsize::new(0)).collect());
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let mut ws = connect(addr, "/");
            let progress = progress.clone();
            std::thread::spawn(move || {
                for i in 0..MESSAGES {
                    let Message::Binary(data) = recv(&mut ws) else {
                        panic!("reader {r}: expected binary");
                    };
                    let seq = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
                    assert_eq!(seq, i, "reader {r}: lost, duplicated or reordered");
                    assert_eq!(data.len(), 1024);
                    progress[r].fetch_add(1, Ordering::Relaxed);
                }
                ws // kept open until the end of the test
            })
        })
        .collect();
    let mut sender = connect(addr, "/");
    assert!(wait_until(IO_TIMEOUT, || handle.connection_count() == READERS + 2));

    let mut payload = vec![0xabu8; 1024];
    for i in 0..MESSAGES {
        payload[..4].copy_from_slice(&(i as u32).to_be_bytes());
        sender.send(Message::binary(payload.clone())).unwrap();
        if i % 100 == 0 {
            let caught_up = wait_until(Duration::from_secs(30), || {
                progress
                    .iter()
                    .all(|p| p.load(Ordering::Relaxed) + WINDOW >= i)
            });
            assert!(caught_up, "readers stopped making progress at message {i}");
        }
    }
    let _open: Vec<Client> = readers
        .into_iter()
        .map(|r| r.join().expect("reader got every message in order"))
        .collect();
    assert_eq!(metric(&handle, "wschat_slow_consumer_disconnects_total"), 1);
    // The stalled client's connection is gone; the readers and the sender remain.
    assert!(
        wait_until(IO_TIMEOUT, || handle.connection_count() == READERS + 1),
        "{} connections",
        handle.connection_count()
    );
    let rss_after = rss_kib();
    println!(
        "RSS before {rss_before} KiB, after relaying {} MiB to {} clients: {rss_after} KiB",
        (MESSAGES * 1024 * (READERS + 1)) >> 20,
        READERS + 1
    );
    // 10 MiB went to the stalled client; its queue is capped at 1 MiB and freed when it is cut.
    assert!(rss_after < rss_before + 64 * 1024, "RSS grew without bound");
}
