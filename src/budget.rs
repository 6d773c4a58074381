//! One byte budget for everything the server holds for delivery: messages waiting in the
//! dispatcher's channel and every client's unsent queue, together.
//!
//! Per-client and per-channel counts alone do not bound memory: 16k events in the channel can
//! each be a 64 KiB message (1 GiB), and 19,000 clients each just under their 1 MiB backlog
//! limit hold 19 GB. So connection threads take bytes from the budget before they hand a
//! message to the dispatcher, and wait while it is spent (their clients are slowed by TCP flow
//! control, nothing is dropped); the dispatcher, which must never wait, gives back what it
//! handled and what sockets took, and when the queues alone overspend it, disconnects the
//! clients that are furthest behind until it fits (`Hub::enforce_budget`).

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// How long a waiting connection thread sleeps before it looks at the budget again even if
/// nobody woke it: a safety net for a missed wake-up, short enough not to matter.
const RECHECK: Duration = Duration::from_millis(50);

#[derive(Debug)]
pub(crate) struct Budget {
    cap: usize,
    used: AtomicUsize,
    /// Connection threads waiting for bytes; the dispatcher wakes them only when there are any.
    waiters: AtomicUsize,
    lock: Mutex<()>,
    freed: Condvar,
}

impl Budget {
    /// A budget of `cap` bytes (at least 1).
    pub(crate) fn new(cap: usize) -> Budget {
        Budget {
            cap: cap.max(1),
            used: AtomicUsize::new(0),
            waiters: AtomicUsize::new(0),
            lock: Mutex::new(()),
            freed: Condvar::new(),
        }
    }

    /// Bytes held now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Relaxed)
    }

    pub(crate) fn cap(&self) -> usize {
        self.cap
    }

    /// Whether more is held than the cap allows.
    #[cfg(test)]
    pub(crate) fn overspent(&self) -> bool {
        self.used() > self.cap
    }

    /// Takes `n` bytes without waiting if they fit, or if nothing at all is held (so one
    /// message larger than the whole budget still passes, alone). `false` otherwise.
    pub(crate) fn try_take(&self, n: usize) -> bool {
        let mut used = self.used.load(Relaxed);
        loop {
            if used != 0 && used.saturating_add(n) > self.cap {
                return false;
            }
            match self
                .used
                .compare_exchange_weak(used, used + n, Acquire, Relaxed)
            {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }

    /// Takes `n` bytes, waiting while the budget is spent. For connection threads only.
    pub(crate) fn take(&self, n: usize) {
        if self.try_take(n) {
            return;
        }
        self.waiters.fetch_add(1, Relaxed);
        let mut guard = self.lock.lock();
        while !self.try_take(n) {
            self.freed.wait_for(&mut guard, RECHECK);
        }
        drop(guard);
        self.waiters.fetch_sub(1, Relaxed);
    }

    /// Adds `n` bytes without waiting (the dispatcher's queues grew).
    pub(crate) fn add(&self, n: usize) {
        self.used.fetch_add(n, Relaxed);
    }

    /// Gives `n` bytes back and wakes waiting threads, if any.
    pub(crate) fn give_back(&self, n: usize) {
        if n == 0 {
            return;
        }
        // Saturating: a give-back never wraps the count around (that would look like a
        // budget spent forever and stop every sender).
        let _ = self
            .used
            .fetch_update(Release, Relaxed, |u| Some(u.saturating_sub(n)));
        if self.waiters.load(Relaxed) > 0 {
            let _guard = self.lock.lock();
            self.freed.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn takes_what_fits_and_one_oversized_message_alone() {
        let b = Budget::new(100);
        assert!(b.try_take(60));
        assert!(!b.try_take(50), "60 + 50 is over 100");
        assert!(b.try_take(40));
        b.give_back(100);
        assert_eq!(b.used(), 0);
        assert!(b.try_take(500), "alone, a message over the cap passes");
        assert!(!b.try_take(1));
        b.give_back(500);
    }

    #[test]
    fn a_waiting_taker_proceeds_when_bytes_are_given_back() {
        let b = Arc::new(Budget::new(100));
        b.add(100); // the dispatcher's queues hold it all
        let taker = {
            let b = b.clone();
            std::thread::spawn(move || b.take(10))
        };
        // Bounded wait for the taker to block (it cannot take while 100 are held).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while b.waiters.load(Relaxed) == 0 && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(b.used(), 100);
        b.give_back(50);
        taker.join().unwrap();
        assert_eq!(b.used(), 60);
        assert!(!b.overspent());
    }
}
