//! Relay messages between nodes, through Redis pub/sub on one channel ([`RELAY`]).
//!
//! The publisher thread takes this node's relay messages from the dispatcher (which only ever
//! `try_send`s them) and `PUBLISH`es them, pipelined, on one connection: Redis delivers one
//! connection's messages in order, so each sender's order holds on every node. The subscriber
//! thread hands other nodes' messages to its dispatcher, which fans them out to the
//! channel's local members (and never publishes them again). Pub/sub keeps no history, like
//! the relay itself: while Redis is away, local delivery goes on and messages for the other
//! nodes are dropped and counted.
//!
//! A message on the wire: `W1`, opcode (1 byte), the publishing process's instance number (8,
//! random per process: two nodes given the same `--node-id` by mistake still hear each
//! other), channel length (2, big-endian) and channel, the publish time in ms (8), then the
//! payload.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use log::{debug, warn};
use tungstenite::Bytes;

use super::Shared;
use super::link::{COMMAND_TIMEOUT, Link};
use crate::budget::Budget;
use crate::hub::{Event, Relayed};

/// The pub/sub channel every node publishes and subscribes to.
pub(crate) const RELAY: &str = "wschat:relay";

/// Messages per pipelined round trip: large enough that the publisher keeps up with the
/// dispatcher's fastest fan-out, small enough that one reply stays a few KiB.
const PIPELINE: usize = 1024;

/// The subscriber's read timeout: how soon it notices that the server stops. A message is
/// written by Redis in one piece, so a timeout never lands inside one on a live connection.
const SUBSCRIBE_POLL: Duration = Duration::from_secs(1);

pub(crate) fn publish(shared: &Shared, rx: Receiver<Relayed>, budget: &Budget) {
    let mut link = Link::new("relay publisher", COMMAND_TIMEOUT);
    let mut batch = Vec::with_capacity(PIPELINE);
    let stats = &shared.stats;
    loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(m) => batch.push(m),
            Err(RecvTimeoutError::Timeout) => {
                if shared.stopping() {
                    break;
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
        while batch.len() < PIPELINE {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        // Sent or dropped below: either way the budget the batch held is free again after.
        let cost: usize = batch.iter().map(|m| Relayed::cost(&m.data)).sum();
        let sent = match link.get(&shared.client) {
            Some(con) => {
                let mut pipe = redis::pipe();
                let now = crate::hub::unix_ms();
                for m in batch.drain(..) {
                    pipe.cmd("PUBLISH")
                        .arg(RELAY)
                        .arg(encode(shared.instance, &m, now))
                        .ignore();
                }
                pipe.query::<()>(con)
            }
            None => {
                batch.clear();
                Err(redis::RedisError::from((
                    redis::ErrorKind::IoError,
                    "not connected",
                )))
            }
        };
        budget.give_back(cost);
        match sent {
            Ok(()) => {
                stats.cluster_relay_out.fetch_add(n, Relaxed);
            }
            Err(e) => {
                if link.is_up() {
                    link.failed(&e);
                }
                stats.cluster_relay_dropped.fetch_add(n, Relaxed);
            }
        }
    }
    debug!("cluster relay publisher ended");
}

pub(crate) fn subscribe(shared: &Shared, hub: Sender<Event>) {
    let mut link = Link::new("relay subscriber", SUBSCRIBE_POLL);
    let mut bad_logged = false;
    while !shared.stopping() {
        let Some(con) = link.get(&shared.client) else {
            std::thread::sleep(
                link.wait()
                    .clamp(Duration::from_millis(10), Duration::from_millis(200)),
            );
            continue;
        };
        let mut ps = con.as_pubsub();
        let failure = match ps.subscribe(RELAY) {
            Err(e) => Some(e),
            Ok(()) => loop {
                match ps.get_message() {
                    Ok(msg) => {
                        let payload = msg.get_payload_bytes();
                        match decode(payload) {
                            Some(m) if m.instance == shared.instance => {}
                            Some(m) => {
                                shared.stats.cluster_relay_in.fetch_add(1, Relaxed);
                                let event = Event::Remote {
                                    channel: m.channel.into(),
                                    opcode: m.opcode,
                                    data: Bytes::copy_from_slice(m.data),
                                    sent_ms: m.sent_ms,
                                };
                                if hub.send(event).is_err() {
                                    return;
                                }
                            }
                            None => {
                                shared.stats.cluster_bad_data.fetch_add(1, Relaxed);
                                if !bad_logged {
                                    warn!(
                                        "cluster: a relay message from Redis does not parse; dropped (further ones are counted in wschat_cluster_bad_data_total)"
                                    );
                                    bad_logged = true;
                                }
                            }
                        }
                    }
                    Err(e) if e.is_timeout() => {
                        if shared.stopping() {
                            break None;
                        }
                    }
                    Err(e) => break Some(e),
                }
            },
        };
        drop(ps);
        if let Some(e) = failure {
            link.failed(&e);
        }
    }
    debug!("cluster relay subscriber ended");
}

fn encode(instance: u64, m: &Relayed, now_ms: u64) -> Vec<u8> {
    let channel = &m.channel.as_bytes()[..m.channel.len().min(u16::MAX as usize)];
    let mut out = Vec::with_capacity(21 + channel.len() + m.data.len());
    out.extend_from_slice(b"W1");
    out.push(m.opcode);
    out.extend_from_slice(&instance.to_be_bytes());
    out.extend_from_slice(&(channel.len() as u16).to_be_bytes());
    out.extend_from_slice(channel);
    out.extend_from_slice(&now_ms.to_be_bytes());
    out.extend_from_slice(&m.data);
    out
}

struct Decoded<'a> {
    instance: u64,
    channel: &'a str,
    opcode: u8,
    sent_ms: u64,
    data: &'a [u8],
}

/// Parses a relay message; `None` for anything malformed (another version, a stranger
/// publishing on the channel): a text message must also be valid UTF-8, as the relay
/// promises its clients.
fn decode(b: &[u8]) -> Option<Decoded<'_>> {
    let rest = b.strip_prefix(b"W1")?;
    let (&opcode, rest) = rest.split_first()?;
    if opcode != crate::frame::TEXT && opcode != crate::frame::BINARY {
        return None;
    }
    let (instance, rest) = split(rest, 8)?;
    let (clen, rest) = split(rest, 2)?;
    let (channel, rest) = split(rest, u16::from_be_bytes([clen[0], clen[1]]) as usize)?;
    let (ts, data) = split(rest, 8)?;
    if opcode == crate::frame::TEXT {
        std::str::from_utf8(data).ok()?;
    }
    Some(Decoded {
        instance: u64::from_be_bytes(instance.try_into().ok()?),
        channel: std::str::from_utf8(channel).ok()?,
        opcode,
        sent_ms: u64::from_be_bytes(ts.try_into().ok()?),
        data,
    })
}

fn split(b: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    (b.len() >= n).then(|| b.split_at(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_messages_round_trip_and_garbage_is_refused() {
        let m = Relayed {
            channel: "news".into(),
            opcode: crate::frame::BINARY,
            data: Bytes::from_static(&[0, 159, 146, 150]),
        };
        let wire = encode(77, &m, 1234);
        let d = decode(&wire).expect("round trip");
        assert_eq!(
            (d.instance, d.channel, d.opcode, d.sent_ms, d.data),
            (
                77,
                "news",
                crate::frame::BINARY,
                1234,
                &[0, 159, 146, 150][..]
            )
        );
        // Every truncation, and invalid UTF-8 in a text message, is refused.
        for n in 0..wire.len() - 4 {
            assert!(decode(&wire[..n]).is_none(), "prefix of {n} bytes");
        }
        let text = Relayed {
            opcode: crate::frame::TEXT,
            ..m
        };
        assert!(decode(&encode(1, &text, 1)).is_none());
        assert!(decode(b"hello").is_none());
    }
}
