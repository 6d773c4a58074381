//! One byte budget bounds everything held for delivery: with a 2 MiB budget and a per-client
//! backlog limit far above it (64 MiB), clients that stop reading are disconnected (Close 1008,
//! furthest behind first) once their backlogs together spend the budget, while a reading client
//! gets every message in order and `/metrics` shows the budget.

use crate::common::*;
use std::time::Duration;
use tungstenite::Message;

#[test]
fn stalled_clients_are_cut_when_their_backlogs_together_spend_the_budget() {
    const STALLED: usize = 3;
    const MESSAGES: usize = 400;
    const SIZE: usize = 64 * 1024;
    let server = start(|c| {
        c.relay_rate = 0.0;
        c.max_pending_bytes = 64 * 1024 * 1024; // never reached: the budget must act first
        c.max_buffered_bytes = 2 * 1024 * 1024;
    });
    let addr = server.local_addr();
    let handle = server.handle();
    let stalled: Vec<Client> = (0..STALLED).map(|_| connect(addr, "/")).collect();
    let mut reader = connect(addr, "/");
    let reading = std::thread::spawn(move || {
        for i in 0..MESSAGES {
            let Message::Binary(data) = recv(&mut reader) else {
                panic!("expected binary");
            };
            assert_eq!(data.len(), SIZE);
            let seq = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
            assert_eq!(seq, i, "the reader lost, duplicated or reordered a message");
        }
        reader
    });
    let mut sender = connect(addr, "/");
    assert!(wait_until(IO_TIMEOUT, || handle.connection_count() == STALLED + 2));
    assert_eq!(
        metric(&handle, "wschat_buffered_bytes_limit"),
        2 * 1024 * 1024
    );

    // 25 MiB to each stalled client: far past what the kernel's buffers absorb and past the
    // 2 MiB budget, far below their own 64 MiB limit.
    let mut payload = vec![0x5au8; SIZE];
    for i in 0..MESSAGES {
        payload[..4].copy_from_slice(&(i as u32).to_be_bytes());
        sender.send(Message::binary(payload.clone())).unwrap();
    }
    let _reader = reading
        .join()
        .expect("the reader got every message in order");
    assert!(
        wait_until(Duration::from_secs(30), || metric(
            &handle,
            "wschat_memory_budget_disconnects_total"
        ) >= 1),
        "no client was disconnected for the budget"
    );
    assert_eq!(metric(&handle, "wschat_slow_consumer_disconnects_total"), 0);
    assert!(
        wait_until(Duration::from_secs(30), || metric(
            &handle,
            "wschat_buffered_bytes"
        ) <= 2 * 1024 * 1024),
        "{} bytes still held",
        metric(&handle, "wschat_buffered_bytes")
    );
    drop(stalled);
}
