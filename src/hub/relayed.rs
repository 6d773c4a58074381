//! What the dispatcher hands a cluster's relay publisher (`cluster/relay.rs`): a local relay
//! message for the other nodes. Defined here, not in `cluster`, because the dispatcher knows
//! it whether or not the `redis` feature is built in.

use std::sync::Arc;

use tungstenite::Bytes;

/// A local relay message for the other nodes.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct Relayed {
    pub(crate) channel: Arc<str>,
    pub(crate) opcode: u8,
    /// Shared with the local fan-out: no copy.
    pub(crate) data: Bytes,
}

impl Relayed {
    /// What a message for the other nodes holds in the delivery budget until it is published:
    /// its bytes, and 64 for its queue slot and pipeline entry, so that even a flood of empty
    /// messages is bounded by the budget.
    pub(crate) fn cost(data: &Bytes) -> usize {
        data.len() + 64
    }
}

/// Milliseconds since the Unix epoch: relay messages carry their publish time, so that
/// `wschat_cluster_relay_latency_seconds` shows the hop between nodes (whose clocks are
/// assumed to be kept by NTP; on one machine they are the same clock).
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
