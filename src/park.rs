//! Parking idle connections: their threads end, one thread watches them all.
//!
//! A connection thread that blocks in `read` costs nothing in CPU while its client is idle, but
//! its stack does cost memory: about 12 KiB of touched pages per thread, measured with 2000
//! idle clients, twice what Node's `ws` needs for a whole connection. Most clients of a chat or
//! a broadcast are idle most of the time. So a thread that has read nothing for `park_after`
//! hands its connection (the tungstenite state, untouched) to the parking thread and ends. The
//! parking thread sleeps in one `epoll_wait` over every parked socket; when one becomes
//! readable it reads without blocking. Heartbeat frames (ping, pong) are handled right there,
//! and so is the end of a relay or echo connection (a Close, a hang-up, a protocol error): its
//! last frame goes to the dispatcher and it lingers here until its client closes its side or
//! `CLOSE_WAIT` passes. A data frame, or the end of a connection whose ending may wait (chat,
//! a host's events), sends the connection back to a new thread of its own, which handles that
//! frame first. The cost: one wake-up when a connection goes idle and a thread start (tens of
//! microseconds) when it speaks again.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use std::time::{Duration, Instant};

use log::{debug, warn};
use parking_lot::Mutex;
use tungstenite::{Message, Result as WsResult};

use crate::config::Config;
use crate::conn::{CLOSE_WAIT, Conn, Poke, Stop};
use crate::hub::ClientId;
use crate::stats::Stats;
use crate::sys::{self, Epoll};
use crate::threads::Threads;

/// Parkings between heap trims (see `Parking::maybe_trim`).
const TRIM_AFTER_PARKS: usize = 64;

/// Least time between heap trims.
const TRIM_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) struct Parking {
    /// Connection threads, capped; a woken connection waits here for one when all are taken.
    pub(crate) threads: Arc<Threads>,
    epoll: Epoll,
    parked: Mutex<HashMap<ClientId, Box<Conn>>>,
    /// Connections parked since the heap was last trimmed, and when that was.
    trim: Mutex<(usize, Instant)>,
    stats: Arc<Stats>,
}

impl Parking {
    pub(crate) fn new(cfg: &Config, stats: Arc<Stats>) -> std::io::Result<Parking> {
        let threads = Arc::new(Threads::new(
            cfg.max_connection_threads,
            cfg.thread_stack_size,
            stats.clone(),
        ));
        Ok(Parking {
            threads,
            epoll: Epoll::new()?,
            parked: Mutex::new(HashMap::new()),
            trim: Mutex::new((0, Instant::now())),
            stats,
        })
    }

    /// Takes an idle connection off its thread.
    fn park(&self, mut conn: Box<Conn>) {
        let id = conn.id;
        conn.rest();
        let first = !conn.in_poller;
        conn.in_poller = true;
        // Arm only after inserting: the parking thread must find the connection when it wakes.
        let armed = {
            let mut parked = self.parked.lock();
            let armed = self.epoll.arm_readable(conn.stream(), id, first);
            if armed.is_ok() {
                parked.insert(id, conn);
                self.stats.parked.fetch_add(1, Relaxed);
            }
            armed
        };
        if let Err(e) = armed {
            warn!("client {id}: cannot park the connection, closing it: {e}");
        }
        self.maybe_trim();
    }

    /// After many connections went idle, give their freed buffers back to the OS: at most once
    /// a second (a trim walks the heap: about a millisecond per 100 MB), and only after at
    /// least `TRIM_AFTER_PARKS` parkings, so a quiet server never trims. The parking thread
    /// trims whatever is left one second after the last parking (see `run`).
    fn maybe_trim(&self) {
        let mut trim = self.trim.lock();
        trim.0 += 1;
        if trim.0 >= TRIM_AFTER_PARKS && trim.1.elapsed() >= TRIM_INTERVAL {
            *trim = (0, Instant::now());
            drop(trim);
            sys::trim_heap();
        }
    }

    /// Trims if any connection parked since the last trim.
    fn trim_pending(&self) {
        let mut trim = self.trim.lock();
        if trim.0 > 0 {
            *trim = (0, Instant::now());
            drop(trim);
            sys::trim_heap();
        }
    }

    /// The parking thread: runs until [`Parking::stop`].
    pub(crate) fn run(self: Arc<Self>) {
        let mut keys = Vec::with_capacity(256);
        // Connections that ended here and wait for their client to close its side, with their
        // deadlines (`CLOSE_WAIT` after the end, the same for all: oldest first). Entries of
        // connections that finished earlier match nothing in `parked` and are skipped.
        let mut lingering: VecDeque<(Instant, ClientId)> = VecDeque::new();
        loop {
            keys.clear();
            let now = Instant::now();
            while let Some(&(at, id)) = lingering.front() {
                if at > now {
                    break;
                }
                lingering.pop_front();
                // Out of the lock before it is dropped: dropping it tells the dispatcher.
                let conn = self.parked.lock().remove(&id);
                if let Some(conn) = conn {
                    self.stats.parked.fetch_sub(1, Relaxed);
                    debug!("client {id}: did not close its side in time; dropping it");
                    drop(conn);
                }
            }
            // With parkings not yet trimmed, wake once a second later to trim them: one
            // wake-up after a burst, none while nothing changes.
            let trim_at = (self.trim.lock().0 > 0).then(|| now + TRIM_INTERVAL);
            let linger_at = lingering.front().map(|&(at, _)| at);
            let wake_at = [trim_at, linger_at].into_iter().flatten().min();
            let timeout = sys::wait_ms(wake_at, now);
            let waited = self.epoll.wait_timeout(&mut keys, timeout);
            if waited.is_ok() && keys.is_empty() {
                if trim_at.is_some_and(|at| Instant::now() >= at) {
                    self.trim_pending();
                }
                continue;
            }
            if let Err(e) = waited {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                warn!("parking thread failed, stopping it: {e}");
                return;
            }
            for &key in &keys {
                if key == sys::WAKE_KEY {
                    // Dropping the parked connections reports them gone.
                    self.parked.lock().clear();
                    return;
                }
                let Some(mut conn) = self.parked.lock().remove(&key) else {
                    continue;
                };
                self.stats.parked.fetch_sub(1, Relaxed);
                if conn.lingering() {
                    if !conn.drain() {
                        self.park(conn); // its deadline is already in `lingering`
                    }
                    continue;
                }
                match conn.poke() {
                    Poke::Parked => self.park(conn),
                    Poke::Wake(first) => resume(&self, conn, first),
                    // Dropping it reports its end.
                    Poke::Over if conn.lingering() => {
                        if !conn.drain() {
                            lingering.push_back((Instant::now() + CLOSE_WAIT, conn.id));
                            self.park(conn);
                        }
                    }
                    Poke::Over => {}
                }
            }
        }
    }

    /// Makes the parking thread end.
    pub(crate) fn stop(&self) {
        self.epoll.wake();
    }
}

/// Gives a connection a thread of its own again, starting with `first`; when every thread
/// is taken, it waits for the next one that finishes (it is not refused: it only waits).
fn resume(parking: &Arc<Parking>, conn: Box<Conn>, first: Option<WsResult<Message>>) {
    let p = parking.clone();
    parking
        .threads
        .spawn_or_queue(Box::new(move || drive(&p, conn, first)));
}

/// Parks a connection that has just completed its handshake and sent nothing yet: its thread
/// ends now, and it gets one when it first speaks. A burst of 19,000 connections then needs
/// threads only for the handshakes in flight, not 19,000 at once (measured: with a thread per
/// new connection for its first `park_after`, thread creation failed from ~16,000 on); and
/// clients that only listen (a broadcast's audience) never hold a thread.
pub(crate) fn park_new(parking: &Arc<Parking>, conn: Box<Conn>) {
    parking.park(conn);
}

/// Runs a connection on the calling thread until it ends or goes idle (then parks it).
pub(crate) fn drive(parking: &Arc<Parking>, mut conn: Box<Conn>, first: Option<WsResult<Message>>) {
    match conn.run(first) {
        Stop::Ended => {}
        Stop::Idle => {
            debug!("client {}: idle, parking it", conn.id);
            parking.park(conn);
        }
    }
}
