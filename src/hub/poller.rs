//! The thread that waits for backed-up sockets to drain and tells the dispatcher.
//!
//! Sockets are armed one-shot by the dispatcher when a write hits `EAGAIN`, so this thread
//! sleeps in `epoll_wait` with nothing to do unless some client is behind.

use std::io;
use std::sync::Arc;

use crossbeam_channel::Sender;
use log::warn;

use super::Event;
use crate::sys::{self, Epoll};

/// Runs until the dispatcher wakes it with [`Epoll::wake`] or its channel closes.
pub(crate) fn run_poller(epoll: Arc<Epoll>, tx: Sender<Event>) {
    let mut keys = Vec::with_capacity(256);
    loop {
        keys.clear();
        if let Err(e) = epoll.wait(&mut keys) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            warn!("writer poller failed, stopping it: {e}");
            return;
        }
        for &key in &keys {
            if key == sys::WAKE_KEY {
                return;
            }
            if tx.send(Event::Writable { id: key }).is_err() {
                return;
            }
        }
    }
}
