//! Five clients sending concurrently (one thread each) into one room all see the identical
//! sequence of ids and texts: ids strictly increasing, every message once, each sender's
//! messages in the order it sent them.

use crate::common::*;
use serde_json::json;
use std::sync::{Arc, Barrier};

const CLIENTS: usize = 5;
const EACH: usize = 40;

/// The next room message as (id, from, text), skipping presence.
fn next_message(ws: &mut Client) -> (u64, String, String) {
    let m = next_of_type(ws, "message");
    assert_eq!(m["room"], "party");
    let id = m["id"].as_u64().expect("numeric id");
    let text = |k: &str| m[k].as_str().unwrap().to_string();
    (id, text("from"), text("text"))
}

#[test]
fn concurrent_senders_produce_one_sequence_seen_identically_by_all() {
    let server = start(|c| c.chat_rate = 0.0); // 40 messages each, faster than the default rate
    let addr = server.local_addr();
    let clients: Vec<Client> = (0..CLIENTS)
        .map(|i| chat_as(addr, &format!("user{i}"), "party"))
        .collect();
    let start_line = Arc::new(Barrier::new(CLIENTS));
    let threads: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut ws)| {
            let start_line = start_line.clone();
            std::thread::spawn(move || {
                start_line.wait();
                // Each sender waits for its own copy before sending the next, as a chat client
                // does, so that the five really take turns at the dispatcher; everything said
                // in the room is recorded on the way, as (id, from, text).
                let me = format!("user{i}");
                let mut got = Vec::with_capacity(CLIENTS * EACH);
                for n in 0..EACH {
                    let text = format!("{i}:{n}");
                    send_json(&mut ws, &json!({"type":"say","room":"party","text":text}));
                    while got
                        .last()
                        .is_none_or(|(_, from, t)| *from != me || *t != text)
                    {
                        got.push(next_message(&mut ws));
                    }
                }
                while got.len() < CLIENTS * EACH {
                    got.push(next_message(&mut ws));
                }
                got
            })
        })
        .collect();
    let seen: Vec<Vec<(u64, String, String)>> =
        threads.into_iter().map(|t| t.join().unwrap()).collect();

    let first = &seen[0];
    for (i, other) in seen.iter().enumerate().skip(1) {
        assert_eq!(
            other, first,
            "client {i} saw a different sequence than client 0"
        );
    }
    assert!(
        first.windows(2).all(|w| w[0].0 < w[1].0),
        "ids not strictly increasing"
    );
    // Every message exactly once, each sender's in its own order, from the right name.
    let mut next = [0usize; CLIENTS];
    for (_, from, text) in first {
        let (i, n) = text.split_once(':').unwrap();
        let (i, n): (usize, usize) = (i.parse().unwrap(), n.parse().unwrap());
        assert_eq!(*from, format!("user{i}"));
        assert_eq!(n, next[i], "sender {i} out of order or duplicated");
        next[i] += 1;
    }
    assert_eq!(next, [EACH; CLIENTS]);
    // The senders really interleaved (the threads ran concurrently), or the test proves little.
    let runs = first.windows(2).filter(|w| w[0].1 != w[1].1).count();
    assert!(
        runs > CLIENTS,
        "senders never interleaved ({runs} switches)"
    );
}
