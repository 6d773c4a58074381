//! Many nodes, one service: with `--redis URL`, this node joins the others that share the
//! Redis server. Nothing here runs without it.
//!
//! Two kinds of traffic cross Redis, each the way its guarantees need:
//!
//! - **Relay** (`/`, `/relay/NAME`, `Handle::publish_*`, `POST /api/publish`): fire and
//!   forget, like the relay itself. The dispatcher hands each local message to the publisher
//!   thread with a `try_send` (never waiting), which `PUBLISH`es it on one Redis channel; the
//!   subscriber thread feeds other nodes' messages to its dispatcher. One publishing
//!   connection per node keeps each sender's order. (`relay.rs`)
//! - **Chat** (`/chat`): a replicated state machine. Every chat event of every node (a login,
//!   a frame, a close, a bot's `say`) is appended to one Redis stream, the log, by the writer
//!   thread; every node's reader thread applies the whole log, in its one order, to its own
//!   [`Chat`](crate::chat) (the same code as a single node, which is deterministic: it gets
//!   the time from the entry, never from a clock), and hands the dispatcher only what this
//!   node's clients must receive. So rooms, names, presence, DMs and history are the same on
//!   every node, ids increase in one order, and a `say` is answered only once it is in Redis.
//!   (`log.rs`, `writer.rs`, `reader.rs`)
//!
//! Each node keeps a lease in Redis (`lease.rs`); a node whose lease runs out is declared gone
//! in the log, by whichever node sees it first, and its users leave every room. The log is
//! kept short by snapshots of the chat state (`reader.rs`). ARCHITECTURE.md has the keys, the
//! bounds and the failure cases.
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | starting the threads, what they share, node ids |
//! | `link.rs` | one Redis connection: timeouts, back-off, logging an outage once |
//! | `log.rs` | the log's entries and the Lua scripts that append them |
//! | `writer.rs` | the thread that appends this node's chat events |
//! | `reader.rs` | the thread that applies the log and writes snapshots |
//! | `lease.rs` | the node's lease, and declaring expired nodes gone |
//! | `relay.rs` | relay messages through Redis pub/sub |

mod lease;
mod link;
mod log;
mod reader;
mod relay;
mod writer;

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use crate::budget::Budget;
use crate::chat::Chat;
use crate::chat::worker::{ChatEvent, SayResult};
use crate::config::Config;
use crate::embed::ServerEvent;
use crate::hub::Event;
use crate::hub::Relayed;
use crate::stats::Stats;

/// Relay messages waiting for the publisher. What bounds them is the delivery budget they
/// hold (`Relayed::cost`): senders wait when it is spent. This bound only keeps a budget
/// configured very large from growing the queue without end: past it the dispatcher drops
/// messages for the other nodes (`wschat_cluster_relay_dropped_total`) rather than wait.
/// 1M entries is about 3 s of the fastest relay through Redis measured here.
pub(crate) const RELAY_QUEUE: usize = 1 << 20;

/// What the cluster's threads share.
pub(crate) struct Shared {
    /// The `--node-id`: names this node in logs and metrics.
    pub(crate) node_id: String,
    /// Random per process: marks this node's relay messages, so its subscriber skips them.
    pub(crate) instance: u64,
    /// This node's number in the log (from `INCR`), unique per process; 0 until Redis first
    /// answered. Connection ids in the log carry it (`worker::NODE_SHIFT`).
    pub(crate) node: AtomicU64,
    /// This node has the lowest number among the live ones: it writes the snapshots.
    pub(crate) snapshotter: AtomicBool,
    /// Set once the server stops: every thread ends within its poll interval.
    pub(crate) stopping: AtomicBool,
    /// Replies to `Handle::say` and `POST /api/publish` to a room, by the log sequence number
    /// of their entry: the reader answers once it applied the entry.
    pub(crate) replies: Mutex<HashMap<u64, Sender<SayResult>>>,
    pub(crate) client: redis::Client,
    pub(crate) stats: Arc<Stats>,
    pub(crate) cfg: Arc<Config>,
}

impl Shared {
    pub(crate) fn node(&self) -> u64 {
        self.node.load(SeqCst)
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(SeqCst)
    }
}

/// The running cluster threads of this node.
pub(crate) struct Cluster {
    pub(crate) shared: Arc<Shared>,
    pub(crate) threads: Vec<JoinHandle<()>>,
    /// For the dispatcher: local relay messages for the other nodes.
    pub(crate) relay: Sender<Relayed>,
}

impl Cluster {
    /// Starts the writer, the reader, the lease and the relay threads for `cfg.redis`. Only a
    /// malformed URL fails here: an unreachable Redis is retried, with the chat unavailable
    /// (and said so in the log) until it answers.
    pub(crate) fn start(
        cfg: Arc<Config>,
        chat: Chat,
        chat_rx: Receiver<ChatEvent>,
        hub: Sender<Event>,
        stats: Arc<Stats>,
        events: Option<Sender<ServerEvent>>,
        budget: Arc<Budget>,
    ) -> io::Result<Cluster> {
        let url = cfg.redis.clone().unwrap_or_default();
        let client = redis::Client::open(url.as_str())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("--redis: {e}")))?;
        let node_id = cfg.node_id.clone().unwrap_or_else(default_node_id);
        *stats.cluster_node.lock() = Some(node_id.clone());
        ::log::info!(
            "cluster node {node_id}: Redis at {}",
            link::describe(&client)
        );
        let shared = Arc::new(Shared {
            node_id,
            // std's per-process random SipHash keys: no RNG crate needed for one number.
            instance: {
                use std::hash::{BuildHasher, Hasher};
                std::collections::hash_map::RandomState::new()
                    .build_hasher()
                    .finish()
            },
            node: AtomicU64::new(0),
            snapshotter: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            replies: Mutex::new(HashMap::new()),
            client,
            stats: stats.clone(),
            cfg,
        });
        let (relay_tx, relay_rx) = crossbeam_channel::bounded(RELAY_QUEUE);
        let mut threads = Vec::new();
        let s = shared.clone();
        threads.push(spawn("wschat-redis-lease", move || lease::run(&s))?);
        let s = shared.clone();
        let h = hub.clone();
        threads.push(spawn("wschat-redis-read", move || {
            reader::Reader::new(s, chat, h, stats, events).run()
        })?);
        let s = shared.clone();
        let h = hub.clone();
        threads.push(spawn("wschat-redis-write", move || {
            writer::Writer::new(s, chat_rx, h).run()
        })?);
        let s = shared.clone();
        threads.push(spawn("wschat-redis-pub", move || {
            relay::publish(&s, relay_rx, &budget)
        })?);
        let s = shared.clone();
        threads.push(spawn("wschat-redis-sub", move || {
            relay::subscribe(&s, hub)
        })?);
        Ok(Cluster {
            shared,
            threads,
            relay: relay_tx,
        })
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name.into()).spawn(f)
}

/// Host name, process id and start time: unique per process without asking anyone, and
/// readable in logs (which node said what).
fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let host = if host.is_empty() { "node".into() } else { host };
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{host}-{}-{started:x}", std::process::id())
}
