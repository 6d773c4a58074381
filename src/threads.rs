//! Connection threads: how many run, their cap, and the parked connections waiting for one.
//!
//! Every talking connection, handshake in progress and HTTP request holds a thread. Without a
//! cap, enough clients that all talk at once (or trickle, or send slow heads) make the server
//! start threads until thread creation fails, and then nothing at all gets one. With it: a new
//! connection over the cap gets 503 (it can retry), and a parked connection that speaks waits
//! in a queue for the next thread that finishes its work, which takes it instead of ending.
//! Parked connections keep being served meanwhile: the parking thread answers their
//! heartbeats without a thread of their own, and the dispatcher keeps writing to them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{AcqRel, Relaxed};

use log::warn;
use parking_lot::Mutex;

use crate::stats::Stats;

/// Work for a connection thread.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

pub(crate) struct Threads {
    live: AtomicUsize,
    max: usize,
    stack_size: usize,
    /// Parked connections that spoke while every thread was taken, oldest first.
    waiting: Mutex<VecDeque<Job>>,
    stats: Arc<Stats>,
}

impl Threads {
    pub(crate) fn new(max: usize, stack_size: usize, stats: Arc<Stats>) -> Threads {
        stats.threads_limit.store(max, Relaxed);
        Threads {
            live: AtomicUsize::new(0),
            max: max.max(1),
            stack_size,
            waiting: Mutex::new(VecDeque::new()),
            stats,
        }
    }

    fn try_enter(&self) -> bool {
        let mut live = self.live.load(Relaxed);
        loop {
            if live >= self.max {
                return false;
            }
            match self
                .live
                .compare_exchange_weak(live, live + 1, AcqRel, Relaxed)
            {
                Ok(_) => {
                    self.stats.threads.store(live + 1, Relaxed);
                    return true;
                }
                Err(now) => live = now,
            }
        }
    }

    fn leave(&self) {
        let was = self.live.fetch_sub(1, AcqRel);
        self.stats.threads.store(was - 1, Relaxed);
    }

    /// Whether every thread is taken (a new connection gets 503 instead of waiting).
    pub(crate) fn full(&self) -> bool {
        self.live.load(Relaxed) >= self.max
    }

    /// Runs `job` on a new thread, or hands it back when the cap is reached (a new connection:
    /// the caller answers 503) or the thread cannot be started.
    pub(crate) fn spawn(self: &Arc<Self>, job: Job) -> Result<(), Job> {
        if !self.try_enter() {
            self.stats.threads_refused.fetch_add(1, Relaxed);
            return Err(job);
        }
        self.start(job)
    }

    /// Runs `job` on a new thread, or, at the cap, queues it for the next thread that
    /// finishes (a parked connection that spoke: it must not be refused, only wait).
    pub(crate) fn spawn_or_queue(self: &Arc<Self>, job: Job) {
        if self.try_enter() {
            if let Err(job) = self.start(job) {
                drop(job); // the OS refused a thread: the connection closes (logged in start)
            }
            return;
        }
        self.stats.threads_refused.fetch_add(1, Relaxed);
        self.waiting.lock().push_back(job);
        // A thread may have finished between the failed enter and the push, and seen an
        // empty queue: make sure someone drains it.
        if self.try_enter() {
            if let Err(job) = self.start(Box::new(|| {})) {
                drop(job);
            }
        }
    }

    /// Starts a thread for `job` (the caller has entered); it then drains the queue.
    fn start(self: &Arc<Self>, job: Job) -> Result<(), Job> {
        let me = self.clone();
        let job = Arc::new(Mutex::new(Some(job)));
        let job_in = job.clone();
        let spawned = std::thread::Builder::new()
            .name("wschat-conn".into())
            .stack_size(self.stack_size)
            .spawn(move || {
                if let Some(job) = job_in.lock().take() {
                    job();
                }
                me.drain();
            });
        match spawned {
            Ok(_) => Ok(()),
            Err(e) => {
                self.leave();
                warn!("cannot start a connection thread: {e}");
                let job = job.lock().take().unwrap_or_else(|| Box::new(|| {}));
                Err(job)
            }
        }
    }

    /// After its own job: runs queued jobs until none is left, then ends the thread.
    fn drain(&self) {
        loop {
            let next = self.waiting.lock().pop_front();
            match next {
                Some(job) => job(),
                None => {
                    self.leave();
                    // A job queued after the pop saw nothing, before our leave: take it on
                    // if a place is free (else the thread holding it will).
                    if self.waiting.lock().is_empty() || !self.try_enter() {
                        return;
                    }
                }
            }
        }
    }

    /// Connection threads running now.
    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        self.live.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn over_the_cap_new_work_is_refused_and_queued_work_waits_for_a_thread() {
        let t = Arc::new(Threads::new(2, 64 * 1024, Arc::new(Stats::default())));
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        let (done_tx, done_rx) = mpsc::channel::<u32>();
        for i in 0..2 {
            let rx = release_rx.clone();
            let done = done_tx.clone();
            let held: Job = Box::new(move || {
                let _ = rx.lock().recv_timeout(Duration::from_secs(10));
                let _ = done.send(i);
            });
            assert!(t.spawn(held).is_ok());
        }
        assert_eq!(t.live(), 2);
        assert!(
            t.spawn(Box::new(|| {})).is_err(),
            "a third thread is refused"
        );
        let done = done_tx.clone();
        t.spawn_or_queue(Box::new(move || {
            let _ = done.send(99);
        }));
        assert_eq!(t.live(), 2, "the queued job did not start a thread");
        release_tx.send(()).unwrap();
        let mut got = vec![
            done_rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            done_rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        ];
        release_tx.send(()).unwrap();
        got.push(done_rx.recv_timeout(Duration::from_secs(10)).unwrap());
        got.sort_unstable();
        assert_eq!(got, vec![0, 1, 99], "the queued job ran on a freed thread");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while t.live() > 0 && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(t.live(), 0);
    }
}
