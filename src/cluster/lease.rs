//! The node's lease: renewed every [`RENEW`] by Redis's clock, for [`LEASE`]. Each renewal
//! also declares gone every node whose lease ended (`log::LEASE`), so the users of a node
//! that died (kill -9, a power cut) leave every room within LEASE + RENEW of its last
//! renewal: 11 s, stated as 15 s in the docs to leave room for the log's delivery.
//!
//! This thread is also the cluster's health check: `wschat_cluster_redis_up` is whether the
//! last renewal got an answer, so a frozen Redis shows within RENEW + `COMMAND_TIMEOUT`.

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::time::{Duration, Instant};

use log::info;
use redis::Commands;

use super::Shared;
use super::link::{COMMAND_TIMEOUT, Link};
use super::log::{LAST, LOG, NODE_SEQ, NODES};

/// How long a lease lasts without renewal. Longer than any pause a healthy node has (a GC
/// has none here; a Redis restart of a few seconds, a VM migration), short enough that the
/// users of a dead node do not linger in user lists.
pub(crate) const LEASE: Duration = Duration::from_secs(10);

/// How often the lease is renewed (and dead nodes looked for).
pub(crate) const RENEW: Duration = Duration::from_secs(1);

pub(crate) fn run(shared: &Shared) {
    let mut link = Link::new("lease", COMMAND_TIMEOUT);
    let script = redis::Script::new(super::log::LEASE);
    while !shared.stopping() {
        let started = Instant::now();
        let up = renew(shared, &mut link, &script);
        shared.stats.cluster_up.store(usize::from(up), Relaxed);
        // Sleep in short steps, to notice the stop.
        while !shared.stopping() && started.elapsed() < RENEW {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    shared.stats.cluster_up.store(0, Relaxed);
}

/// One renewal; `true` when Redis answered.
fn renew(shared: &Shared, link: &mut Link, script: &redis::Script) -> bool {
    let Some(con) = link.get(&shared.client) else {
        return false;
    };
    if shared.node() == 0 {
        match con.incr::<_, _, u64>(NODE_SEQ, 1) {
            Ok(n) => {
                info!("cluster: {} is node number {n}", shared.node_id);
                shared.node.store(n, SeqCst);
            }
            Err(e) => {
                link.failed(&e);
                return false;
            }
        }
    }
    let result: redis::RedisResult<Option<u64>> = script
        .key(NODES)
        .key(LOG)
        .key(LAST)
        .arg(shared.node())
        .arg(LEASE.as_millis() as u64)
        .invoke(con);
    match result {
        Ok(first) => {
            shared
                .snapshotter
                .store(first == Some(shared.node()), Relaxed);
            true
        }
        Err(e) => {
            link.failed(&e);
            false
        }
    }
}
