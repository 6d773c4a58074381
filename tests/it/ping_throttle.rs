//! Pings count toward the relay's rate limit: a client that floods pings is answered no faster
//! than the limit allows (it cannot make the server do unbounded work by pinging instead of
//! messaging), and pongs keep flowing at the limited rate.

use crate::common::*;
use std::time::{Duration, Instant};
use tungstenite::Message;

#[test]
fn a_ping_flood_is_throttled_like_messages() {
    const PINGS: usize = 30;
    // 20 per second, no burst to speak of: 30 pings need at least ~1.45 s of tokens.
    let server = start(|c| {
        c.relay_rate = 20.0;
        c.relay_burst = 1.0;
    });
    let mut ws = connect(server.local_addr(), "/");
    let started = Instant::now();
    for i in 0..PINGS {
        ws.send(Message::Ping(vec![i as u8].into())).unwrap();
    }
    let mut pongs = 0;
    while pongs < PINGS {
        match ws.read().expect("a pong") {
            Message::Pong(p) => {
                assert_eq!(&p[..], &[pongs as u8], "pongs come in order");
                pongs += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let took = started.elapsed();
    // A lower bound set by the limit itself (not a performance limit): answering faster
    // would mean the pings were not counted.
    assert!(
        took >= Duration::from_millis(1000),
        "{PINGS} pings answered in {took:?}: the ping flood was not throttled"
    );
}
