//! Counters shared by the server's threads, and their Prometheus text rendering.
//!
//! All counters are relaxed atomics: they are read for monitoring, never to make decisions
//! that need ordering with other memory. The dispatcher adds its per-delivery counts once per
//! batch, not per delivery, so counting costs nothing measurable on the hot path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Statuses counted separately in `wschat_handshakes_rejected_total`.
const REJECT_STATUSES: [u16; 10] = [400, 401, 403, 404, 408, 413, 426, 429, 431, 503];

#[derive(Default)]
pub(crate) struct Stats {
    /// WebSocket connections open now (from the 101 until the connection's thread ends).
    pub ws_open: AtomicUsize,
    /// TCP connections being served now: WebSocket, page requests and unfinished handshakes.
    pub tcp_open: AtomicUsize,
    pub ws_total: AtomicU64,
    pub messages_in: AtomicU64,
    pub bytes_in: AtomicU64,
    /// Frames queued to clients (one per recipient).
    pub messages_out: AtomicU64,
    /// Bytes written to client sockets.
    pub bytes_out: AtomicU64,
    pub slow_consumer_disconnects: AtomicU64,
    pub heartbeat_timeouts: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub http_requests: AtomicU64,
    /// Chat events the host program did not take in time.
    pub events_dropped: AtomicU64,
    rejected: [AtomicU64; REJECT_STATUSES.len()],
    rejected_other: AtomicU64,
    /// WebSocket connections parked (idle, without a thread of their own).
    pub parked: AtomicUsize,
    /// Chat rooms that exist, and chat users connected (updated by the dispatcher).
    pub chat_rooms: AtomicUsize,
    pub chat_users: AtomicUsize,
    /// Events waiting in the dispatcher's channel, sampled by the dispatcher each batch.
    pub queue_depth: AtomicUsize,
    /// How long the chat worker's commits of the history log took (write + fsync).
    pub chat_commit: Histogram,
    /// Commits of the history log that failed (the disk is full or failing).
    pub chat_commit_failures: AtomicU64,
    /// 1 while the history log cannot be written (since the last failed commit).
    pub chat_log_failing: AtomicUsize,
    /// Bytes held for delivery (the budget's use, sampled each dispatcher batch) and its cap.
    pub buffered: AtomicUsize,
    pub buffered_limit: AtomicUsize,
    /// Clients disconnected because the server's delivery budget was spent.
    pub budget_disconnects: AtomicU64,
    /// Connection threads running now, their cap, and how often a connection found none.
    pub threads: AtomicUsize,
    pub threads_limit: AtomicUsize,
    pub threads_refused: AtomicU64,
    /// WebSocket handshakes finished on the accept thread, and connections whose first head
    /// went to a thread of their own (plain HTTP, a chat login, a refusal, a host hook).
    pub handshakes_inline: AtomicU64,
    pub heads_on_threads: AtomicU64,
    /// Connections whose first head is still arriving (`door.rs`).
    pub heads_arriving: AtomicU64,
    /// Parked connections ended on the parking thread (a Close, the peer gone, a protocol
    /// error), without a thread of their own (`park.rs`).
    pub parked_ends: AtomicU64,
    /// Echoes written by the reader that read them (`gate.rs`), not by the dispatcher.
    pub echoes_direct: AtomicU64,
    /// Direct writes (those echoes, and 101s written by the accepting thread) the socket took
    /// only part of (the rest went to the dispatcher).
    pub echo_leftovers: AtomicU64,
    /// Rounds of writes the dispatcher held for `write_delay` while behind a busy broadcast.
    pub write_holds: AtomicU64,
    /// In a cluster (`--redis`): this node's id; `None` on a single node (no cluster metrics).
    pub cluster_node: parking_lot::Mutex<Option<String>>,
    /// 1 while the last lease renewal reached Redis.
    pub cluster_up: AtomicUsize,
    /// Relay messages published for the other nodes, received from them, and dropped for
    /// them (Redis slow or away).
    pub cluster_relay_out: AtomicU64,
    pub cluster_relay_in: AtomicU64,
    pub cluster_relay_dropped: AtomicU64,
    /// Chat log entries this node appended, and entries it applied (every node's).
    pub cluster_log_out: AtomicU64,
    pub cluster_log_in: AtomicU64,
    /// Entries or messages from Redis that did not parse (skipped).
    pub cluster_bad_data: AtomicU64,
    /// From another node's publish to this node's dispatcher queuing the message.
    pub cluster_relay_latency: Histogram,
}

/// Upper bounds of [`Histogram`]'s buckets, in seconds: from a page-cache write (tens of
/// microseconds) through an SSD's fdatasync (~1 ms) to an SD card's (5-50 ms) and a disk in
/// trouble (seconds).
const BUCKETS: [f64; 10] = [
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

/// A Prometheus histogram of durations: cumulative counts per bucket, a sum and a count.
#[derive(Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Relaxed)
            );
        }
        let count = self.count.load(Relaxed);
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

impl Stats {
    pub fn rejected(&self, status: u16) {
        match REJECT_STATUSES.iter().position(|s| *s == status) {
            Some(i) => self.rejected[i].fetch_add(1, Relaxed),
            None => self.rejected_other.fetch_add(1, Relaxed),
        };
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            write_metric(&mut out, name, kind, help, value)
        };
        metric(
            "wschat_connections",
            "gauge",
            "WebSocket connections open now.",
            self.ws_open.load(Relaxed) as u64,
        );
        metric(
            "wschat_parked_connections",
            "gauge",
            "Idle WebSocket connections parked without a thread of their own.",
            self.parked.load(Relaxed) as u64,
        );
        metric(
            "wschat_tcp_connections",
            "gauge",
            "TCP connections being served now (WebSocket, HTTP, handshakes in progress).",
            self.tcp_open.load(Relaxed) as u64,
        );
        metric(
            "wschat_connections_total",
            "counter",
            "WebSocket connections accepted since start.",
            self.ws_total.load(Relaxed),
        );
        metric(
            "wschat_messages_in_total",
            "counter",
            "Messages received from clients.",
            self.messages_in.load(Relaxed),
        );
        metric(
            "wschat_bytes_in_total",
            "counter",
            "Payload bytes received from clients.",
            self.bytes_in.load(Relaxed),
        );
        metric(
            "wschat_messages_out_total",
            "counter",
            "Frames queued to clients, one per recipient.",
            self.messages_out.load(Relaxed),
        );
        metric(
            "wschat_bytes_out_total",
            "counter",
            "Bytes written to client sockets.",
            self.bytes_out.load(Relaxed),
        );
        metric(
            "wschat_slow_consumer_disconnects_total",
            "counter",
            "Clients disconnected because their unsent backlog passed max_pending_bytes.",
            self.slow_consumer_disconnects.load(Relaxed),
        );
        metric(
            "wschat_heartbeat_timeouts_total",
            "counter",
            "Clients dropped because they answered no ping.",
            self.heartbeat_timeouts.load(Relaxed),
        );
        metric(
            "wschat_protocol_errors_total",
            "counter",
            "Connections closed for a WebSocket protocol violation (1002/1007/1009).",
            self.protocol_errors.load(Relaxed),
        );
        metric(
            "wschat_http_requests_total",
            "counter",
            "Plain HTTP requests answered (pages, /healthz, /metrics, /api/publish).",
            self.http_requests.load(Relaxed),
        );
        metric(
            "wschat_events_dropped_total",
            "counter",
            "Chat-room events dropped because the embedding program's event queue was full.",
            self.events_dropped.load(Relaxed),
        );
        metric(
            "wschat_dispatcher_queue_depth",
            "gauge",
            "Events waiting for the dispatcher at its last batch.",
            self.queue_depth.load(Relaxed) as u64,
        );
        metric(
            "wschat_chat_rooms",
            "gauge",
            "Chat rooms that exist (with members or history).",
            self.chat_rooms.load(Relaxed) as u64,
        );
        metric(
            "wschat_chat_users",
            "gauge",
            "Chat users connected.",
            self.chat_users.load(Relaxed) as u64,
        );
        metric(
            "wschat_buffered_bytes",
            "gauge",
            "Bytes held for delivery: messages waiting for the dispatcher plus every client's unsent queue.",
            self.buffered.load(Relaxed) as u64,
        );
        metric(
            "wschat_buffered_bytes_limit",
            "gauge",
            "The cap on wschat_buffered_bytes (max_buffered_bytes).",
            self.buffered_limit.load(Relaxed) as u64,
        );
        metric(
            "wschat_memory_budget_disconnects_total",
            "counter",
            "Clients disconnected (1008) because the server's delivery budget was spent, furthest behind first.",
            self.budget_disconnects.load(Relaxed),
        );
        metric(
            "wschat_connection_threads",
            "gauge",
            "Connection threads running now (handshakes, HTTP requests, talking WebSocket connections).",
            self.threads.load(Relaxed) as u64,
        );
        metric(
            "wschat_connection_threads_limit",
            "gauge",
            "The cap on connection threads (max_connection_threads).",
            self.threads_limit.load(Relaxed) as u64,
        );
        metric(
            "wschat_connection_threads_full_total",
            "counter",
            "Times a connection found every thread taken (a new one got 503, a parked one waited).",
            self.threads_refused.load(Relaxed),
        );
        metric(
            "wschat_handshakes_inline_total",
            "counter",
            "WebSocket handshakes completed on the accept thread, without a thread of their own (the head was read there as it arrived).",
            self.handshakes_inline.load(Relaxed),
        );
        metric(
            "wschat_heads_on_threads_total",
            "counter",
            "Connections whose first request head went to a connection thread (plain HTTP, a chat login, a refusal, or a host hook).",
            self.heads_on_threads.load(Relaxed),
        );
        metric(
            "wschat_heads_arriving",
            "gauge",
            "Accepted connections whose first request head has not all arrived yet (they hold no thread; 408 after the handshake timeout).",
            self.heads_arriving.load(Relaxed),
        );
        metric(
            "wschat_parked_ends_total",
            "counter",
            "Parked relay and echo connections that ended on the parking thread (the client's Close, its hang-up, or a protocol error), without starting a thread.",
            self.parked_ends.load(Relaxed),
        );
        metric(
            "wschat_echoes_direct_total",
            "counter",
            "Echoes written back by the thread that read them, without waking the dispatcher (it held nothing for that client).",
            self.echoes_direct.load(Relaxed),
        );
        metric(
            "wschat_echo_leftovers_total",
            "counter",
            "Direct writes the client's socket took only part of; the dispatcher wrote the rest.",
            self.echo_leftovers.load(Relaxed),
        );
        metric(
            "wschat_write_holds_total",
            "counter",
            "Rounds of writes held up to write_delay while the dispatcher was behind a broadcast (a round to 256 clients or more ended with events waiting), to gather more frames per send.",
            self.write_holds.load(Relaxed),
        );
        metric(
            "wschat_chat_log_failing",
            "gauge",
            "1 while the chat history log cannot be written (a full or failing disk), 0 once it is again.",
            self.chat_log_failing.load(Relaxed) as u64,
        );
        metric(
            "wschat_chat_commit_failures_total",
            "counter",
            "Commits of the chat history log that failed (disk full or failing).",
            self.chat_commit_failures.load(Relaxed),
        );
        metric(
            "wschat_resident_memory_bytes",
            "gauge",
            "Resident set size of the server process.",
            resident_memory_bytes().unwrap_or(0),
        );
        self.render_cluster(&mut out);
        self.chat_commit.render(
            &mut out,
            "wschat_chat_commit_seconds",
            "Time the chat worker spent committing the history log (write and fsync), per batch.",
        );
        let _ = writeln!(
            out,
            "# HELP wschat_handshakes_rejected_total Requests refused before the 101, by HTTP status.\n# TYPE wschat_handshakes_rejected_total counter"
        );
        for (status, count) in REJECT_STATUSES.iter().zip(&self.rejected) {
            let _ = writeln!(
                out,
                "wschat_handshakes_rejected_total{{status=\"{status}\"}} {}",
                count.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "wschat_handshakes_rejected_total{{status=\"other\"}} {}",
            self.rejected_other.load(Relaxed)
        );
        out
    }
}

impl Stats {
    /// The cluster's metrics, when this node is in one.
    fn render_cluster(&self, out: &mut String) {
        let Some(node) = self.cluster_node.lock().clone() else {
            return;
        };
        // Node ids come from the operator (`--node-id`): escaped as Prometheus labels need.
        let label = node
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = writeln!(
            out,
            "# HELP wschat_cluster_node This node's id in the cluster (--node-id).\n# TYPE wschat_cluster_node gauge\nwschat_cluster_node{{node_id=\"{label}\"}} 1"
        );
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            write_metric(out, name, kind, help, value)
        };
        metric(
            "wschat_cluster_redis_up",
            "gauge",
            "Whether this node's lease renewals reach Redis (1) or not (0).",
            self.cluster_up.load(Relaxed) as u64,
        );
        metric(
            "wschat_cluster_relay_out_total",
            "counter",
            "Relay messages published through Redis for the other nodes.",
            self.cluster_relay_out.load(Relaxed),
        );
        metric(
            "wschat_cluster_relay_in_total",
            "counter",
            "Relay messages from other nodes, received through Redis.",
            self.cluster_relay_in.load(Relaxed),
        );
        metric(
            "wschat_cluster_relay_dropped_total",
            "counter",
            "Relay messages the other nodes missed because Redis was slow or unreachable.",
            self.cluster_relay_dropped.load(Relaxed),
        );
        metric(
            "wschat_cluster_log_out_total",
            "counter",
            "Chat events this node appended to the shared log.",
            self.cluster_log_out.load(Relaxed),
        );
        metric(
            "wschat_cluster_log_in_total",
            "counter",
            "Chat log entries this node applied (every node's).",
            self.cluster_log_in.load(Relaxed),
        );
        metric(
            "wschat_cluster_bad_data_total",
            "counter",
            "Log entries, snapshots or relay messages from Redis that did not parse (skipped).",
            self.cluster_bad_data.load(Relaxed),
        );
        self.cluster_relay_latency.render(
            out,
            "wschat_cluster_relay_latency_seconds",
            "From another node's publish of a relay message to this node queuing it for its clients.",
        );
    }
}

/// One metric in the Prometheus text format, with its HELP and TYPE lines.
fn write_metric(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// This process's resident memory, from the `VmRSS` line of `/proc/self/status` (Linux; in kB
/// there, so the page size does not matter: some Raspberry Pi 5 kernels use 16 KiB pages).
pub(crate) fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
