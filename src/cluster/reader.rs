//! The reader: applies the shared log, entry by entry, to this node's [`Chat`], and hands the
//! dispatcher what this node's clients must receive. Every node runs the same entries through
//! the same code, so every node holds the same chat; the log's order is the one order.
//!
//! It also keeps the log short: the node with the lowest number (`Shared::snapshotter`)
//! stores the whole chat state every [`SNAPSHOT_EVERY`] entries and trims the log before it.
//! A node that starts, or finds it missed entries, takes up the snapshot and goes on from
//! there; its clients the snapshot does not know are closed with 1012, to log in again.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crossbeam_channel::Sender;
use log::{debug, info, warn};
use redis::Commands;
use redis::streams::{StreamId, StreamReadOptions, StreamReadReply};

use super::Shared;
use super::link::{COMMAND_TIMEOUT, Link};
use super::log::{LOG, Op, Record, SAVE_SNAPSHOT, SNAPSHOT, entry_ms};
use crate::chat::worker::{Applier, ChatEvent, NODE_SHIFT, local};
use crate::chat::{Chat, ChatConfig};
use crate::embed::ServerEvent;
use crate::frame;
use crate::hub::{ChatOut, Event};
use crate::stats::Stats;

/// `XREAD BLOCK` waits this long for new entries before asking again: also how soon the
/// reader notices that the server is stopping.
const BLOCK_MS: usize = 1000;

/// Entries per read: one round trip for a burst, a bounded reply.
const READ_COUNT: usize = 512;

/// Entries between snapshots, at least: the log holds about this many entries (plus what
/// accumulates while the snapshotter is away). A large chat state (up to 256 KiB of history
/// per room) waits longer, one entry per KiB of its last snapshot, so that writing snapshots
/// costs at most ~1 KiB of serialization per chat event however big the state grows.
pub(crate) const SNAPSHOT_EVERY: usize = 1000;
const SNAPSHOT_BYTES_PER_ENTRY: usize = 1024;

pub(crate) struct Reader {
    shared: Arc<Shared>,
    applier: Applier,
    link: Link,
    /// The id of the last entry applied; `""` before the log's first.
    last: String,
    /// The last sequence number applied, per node (`log::Record`).
    applied: HashMap<u64, u64>,
    since_snapshot: usize,
    /// Entries until the next snapshot is due (see [`SNAPSHOT_EVERY`]).
    snapshot_every: usize,
    /// Where the last resync restarted from: a gap found again right there is accepted, not
    /// resynced forever (a log damaged by hand).
    resynced_to: Option<String>,
    bad_logged: bool,
}

impl Reader {
    pub(crate) fn new(
        shared: Arc<Shared>,
        chat: Chat,
        hub: Sender<Event>,
        stats: Arc<Stats>,
        events: Option<Sender<ServerEvent>>,
    ) -> Reader {
        Reader {
            shared,
            applier: Applier::new(chat, hub, stats, events, 0),
            // The read waits up to BLOCK_MS on the server's side, then the usual timeout.
            link: Link::new(
                "chat reader",
                Duration::from_millis(BLOCK_MS as u64) + COMMAND_TIMEOUT,
            ),
            last: String::new(),
            applied: HashMap::new(),
            since_snapshot: 0,
            snapshot_every: SNAPSHOT_EVERY,
            resynced_to: None,
            bad_logged: false,
        }
    }

    pub(crate) fn run(mut self) {
        // Connection ids in the log carry the node's number: wait for the lease thread to
        // get it (nothing of this node can be in the log before).
        while self.shared.node() == 0 {
            if self.shared.stopping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.applier.set_node(self.shared.node());
        while !self.shared.stopping() {
            let from = if self.last.is_empty() {
                "0-0".to_string()
            } else {
                self.last.clone()
            };
            let Some(con) = self.link.get(&self.shared.client) else {
                std::thread::sleep(
                    self.link
                        .wait()
                        .clamp(Duration::from_millis(10), Duration::from_millis(200)),
                );
                continue;
            };
            let opts = StreamReadOptions::default()
                .block(BLOCK_MS)
                .count(READ_COUNT);
            let reply: redis::RedisResult<Option<StreamReadReply>> =
                con.xread_options(&[LOG], &[from], &opts);
            match reply {
                Ok(Some(reply)) => {
                    let entries = reply.keys.into_iter().flat_map(|k| k.ids);
                    if !self.apply_all(entries) {
                        break;
                    }
                }
                Ok(None) => {}
                Err(e) => self.link.failed(&e),
            }
        }
        debug!("cluster reader ended");
    }

    /// Applies `entries` and hands the result to the dispatcher; `false` once it is gone.
    fn apply_all(&mut self, entries: impl Iterator<Item = StreamId>) -> bool {
        for entry in entries {
            let Some(prev) = field(&entry, "p") else {
                // Not appended by a node (the script always writes `p`): someone's XADD by
                // hand. Skipped, and not a link of the chain.
                self.bad_entry(&entry.id);
                continue;
            };
            if prev != self.last {
                self.resync(&prev);
                // Read again from where the resync put us.
                break;
            }
            self.resynced_to = None;
            self.last = entry.id.clone();
            self.apply_entry(&entry);
        }
        if !self.applier.deliver() {
            return false;
        }
        if self.since_snapshot >= self.snapshot_every && self.shared.snapshotter.load(Relaxed) {
            self.save_snapshot();
        }
        true
    }

    fn apply_entry(&mut self, entry: &StreamId) {
        let rec = field(entry, "e").and_then(|e| serde_json::from_str::<Record>(&e).ok());
        let Some(rec) = rec else {
            self.bad_entry(&entry.id);
            return;
        };
        if rec.n != 0 {
            let last = self.applied.entry(rec.n).or_insert(0);
            if rec.s <= *last {
                return; // written twice (a retried append): applied already
            }
            *last = rec.s;
        }
        self.shared.stats.cluster_log_in.fetch_add(1, Relaxed);
        self.since_snapshot += 1;
        let now = entry_ms(&entry.id).unwrap_or(0);
        let node = self.shared.node();
        let event = match rec.op {
            Op::Connect {
                id,
                addr,
                name,
                room,
                bound,
                rights,
            } => ChatEvent::Connect {
                id,
                addr,
                name,
                room,
                bound,
                rights,
            },
            Op::Input { id, input } => ChatEvent::Input {
                id,
                input: Box::new(input),
            },
            Op::Closing { id, bytes } => ChatEvent::Closing { id, bytes },
            Op::Gone { id } => ChatEvent::Gone { id },
            Op::Say { room, from, text } => {
                let reply = (rec.n == node)
                    .then(|| self.shared.replies.lock().remove(&rec.s))
                    .flatten();
                ChatEvent::Say {
                    room,
                    from,
                    text,
                    reply,
                }
            }
            Op::Reserve { names } => ChatEvent::ReserveNames(names),
            Op::NodeGone { node: gone } => {
                self.node_gone(gone, now);
                return;
            }
        };
        self.applier.apply(event, now);
    }

    /// A log entry that does not parse: skipped, logged once (a writer of another version,
    /// or someone's hand in Redis), counted always.
    fn bad_entry(&mut self, id: &str) {
        self.shared.stats.cluster_bad_data.fetch_add(1, Relaxed);
        if !self.bad_logged {
            warn!(
                "cluster: log entry {id} does not parse; skipped (further ones are counted in wschat_cluster_bad_data_total)"
            );
            self.bad_logged = true;
        }
    }

    /// Every connection of node `gone` leaves. When that is this node (cut off from Redis
    /// longer than its lease), its clients are told to come back: the others have already
    /// seen them leave.
    fn node_gone(&mut self, gone: u64, now: u64) {
        let mut conns: Vec<u64> = self
            .applier
            .chat
            .conn_ids()
            .filter(|c| c >> NODE_SHIFT == gone)
            .collect();
        conns.sort_unstable();
        info!(
            "cluster: node {gone} is gone{}; its {} chat users leave",
            if gone == self.shared.node() {
                " (this node: its lease ran out)"
            } else {
                ""
            },
            conns.len()
        );
        for conn in conns {
            if let Some(id) = local(self.shared.node(), conn) {
                self.applier
                    .push_out(close_1012(id, "cluster lease lost; log in again"));
            }
            self.applier.apply(ChatEvent::Gone { id: conn }, now);
        }
    }

    /// The log does not continue from our last entry: take up the snapshot.
    fn resync(&mut self, prev: &str) {
        let Some(con) = self.link.get(&self.shared.client) else {
            return;
        };
        let snap: redis::RedisResult<HashMap<String, String>> = con.hgetall(SNAPSHOT);
        let snap = match snap {
            Ok(s) => s,
            Err(e) => {
                self.link.failed(&e);
                return;
            }
        };
        let target = snap.get("at").cloned().unwrap_or_default();
        if self.resynced_to.as_deref() == Some(target.as_str()) {
            warn!(
                "cluster: the log has a gap after {target:?} (it goes on from {prev:?}); going on from there"
            );
            self.last = prev.to_string();
            self.resynced_to = None;
            return;
        }
        let cfg = ChatConfig {
            data_dir: None,
            ..self.shared.cfg.chat.clone()
        };
        let restored = match snap.get("chat") {
            Some(state) => Chat::restore(cfg.clone(), state),
            None => Ok(Chat::open(cfg.clone()).expect("a chat without a data dir opens")),
        };
        let chat = match restored {
            Ok(chat) => chat,
            Err(e) => {
                self.shared.stats.cluster_bad_data.fetch_add(1, Relaxed);
                warn!("cluster: the snapshot does not parse ({e}); starting from an empty chat");
                Chat::open(cfg).expect("a chat without a data dir opens")
            }
        };
        let applied = snap
            .get("applied")
            .and_then(|a| serde_json::from_str(a).ok())
            .unwrap_or_default();
        if !self.last.is_empty() || !target.is_empty() {
            info!(
                "cluster: taking up the snapshot at {target:?} (this node was at {:?})",
                self.last
            );
        }
        // This node's clients the new state does not know must log in again.
        let node = self.shared.node();
        let mut lost: Vec<u64> = self
            .applier
            .chat
            .conn_ids()
            .filter(|&c| local(node, c).is_some())
            .collect();
        let known: std::collections::HashSet<u64> = chat.conn_ids().collect();
        lost.retain(|c| !known.contains(c));
        lost.sort_unstable();
        for conn in lost {
            if let Some(id) = local(node, conn) {
                self.applier
                    .push_out(close_1012(id, "chat state reset; log in again"));
            }
        }
        self.applier.chat = chat;
        self.applied = applied;
        self.last = target.clone();
        self.resynced_to = Some(target);
        self.since_snapshot = 0;
    }

    fn save_snapshot(&mut self) {
        self.since_snapshot = 0;
        let (Ok(chat), Ok(applied)) = (
            self.applier.chat.snapshot(),
            serde_json::to_string(&self.applied),
        ) else {
            return;
        };
        self.snapshot_every = SNAPSHOT_EVERY.max(chat.len() / SNAPSHOT_BYTES_PER_ENTRY);
        let Some(con) = self.link.get(&self.shared.client) else {
            return;
        };
        let saved: redis::RedisResult<i64> = redis::Script::new(SAVE_SNAPSHOT)
            .key(SNAPSHOT)
            .key(LOG)
            .arg(&self.last)
            .arg(&chat)
            .arg(&applied)
            .invoke(con);
        match saved {
            Ok(_) => debug!("cluster: snapshot at {} ({} bytes)", self.last, chat.len()),
            Err(e) => self.link.failed(&e),
        }
    }
}

fn close_1012(id: u64, reason: &str) -> ChatOut {
    let mut bytes = Vec::new();
    frame::encode_close(1012, reason, &mut bytes);
    ChatOut::Closing { id, bytes }
}

/// A field of an entry as text.
fn field(entry: &StreamId, name: &str) -> Option<String> {
    entry
        .map
        .get(name)
        .and_then(|v| redis::from_redis_value::<String>(v).ok())
}
