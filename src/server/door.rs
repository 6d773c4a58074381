//! The front door: accepted connections whose first request head has not all arrived yet.
//!
//! The accept thread watches them in its own epoll, next to the listener, and reads each head
//! without waiting as its bytes come. So no thread ever waits for a first head (a burst of
//! connects, where the head often lands a moment after the connection, costs no thread
//! starts), and a slow head (a phone on a poor link, a slowloris) delays no other connection.
//! Each keeps the bounds a thread would give it: `handshake_timeout` from its accept (then 408)
//! and `max_head_size` (then 431).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::admission::Slot;
use crate::sys::{self, Epoll};

/// The listener's key in the accept thread's epoll; heads get the keys after it.
pub(super) const LISTENER_KEY: u64 = 0;

/// The bytes one read takes: a WebSocket upgrade from a browser is 400-1,500 bytes (cookies
/// included), so one read takes most heads whole.
const READ_SIZE: usize = 4096;

/// Above this many slots (~100 KB), the door's tables shrink once it is empty again; below it,
/// keeping them saves reallocating in every burst.
const SHRINK_ABOVE: usize = 1024;

/// An accepted connection and what arrived of its head so far.
pub(super) struct Arrival {
    pub(super) slot: Slot,
    pub(super) stream: TcpStream,
    pub(super) peer: SocketAddr,
    pub(super) head: Vec<u8>,
}

/// What a read of an arriving head came to.
pub(super) enum Progress {
    /// Not all there yet.
    More,
    /// The blank line that ends the head is there (the bytes may go on with early frames).
    Whole,
    /// `max_head_size` bytes and no end yet: 431.
    TooLarge,
    /// The peer closed, or the socket failed: nothing to answer.
    Gone,
}

impl Arrival {
    /// One non-blocking read of what has arrived (never waits).
    pub(super) fn read(&mut self, max_head: usize) -> Progress {
        let mut buf = [0u8; READ_SIZE];
        let room = max_head.saturating_sub(self.head.len()).min(READ_SIZE);
        if room == 0 {
            return Progress::TooLarge;
        }
        let n = match sys::recv_nonblocking(&self.stream, &mut buf[..room]) {
            Ok(0) => return Progress::Gone,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                return Progress::More;
            }
            Err(_) => return Progress::Gone,
        };
        // Only the new bytes (and the three before them) can complete the blank line: a head
        // trickled a byte at a time costs linear time, not quadratic.
        let from = self.head.len().saturating_sub(3);
        self.head.extend_from_slice(&buf[..n]);
        if self.head[from..].windows(4).any(|w| w == b"\r\n\r\n") {
            Progress::Whole
        } else if self.head.len() >= max_head {
            Progress::TooLarge
        } else {
            Progress::More
        }
    }
}

/// The connections whose head is still arriving.
pub(super) struct Door {
    arriving: HashMap<u64, Arrival>,
    /// Keys in arrival order with their deadlines. Every head has the same time allowed, so
    /// this is deadline order too; keys whose head has since ended are skipped.
    deadlines: VecDeque<(Instant, u64)>,
    next_key: u64,
    timeout: Duration,
    max_head: usize,
}

impl Door {
    pub(super) fn new(timeout: Duration, max_head: usize) -> Door {
        Door {
            arriving: HashMap::new(),
            deadlines: VecDeque::new(),
            next_key: LISTENER_KEY + 1,
            timeout,
            max_head,
        }
    }

    /// Heads arriving now.
    pub(super) fn len(&self) -> usize {
        self.arriving.len()
    }

    /// Watches `arrival` until its head is whole, too large, gone or late. On an error (epoll
    /// out of memory) the connection is dropped: closed unanswered, as over capacity.
    pub(super) fn admit(&mut self, epoll: &Epoll, arrival: Arrival) -> io::Result<()> {
        let key = self.next_key;
        self.next_key += 1;
        epoll.watch_readable(&arrival.stream, key)?;
        self.deadlines
            .push_back((Instant::now() + self.timeout, key));
        self.arriving.insert(key, arrival);
        Ok(())
    }

    /// Reads what arrived for `key`; returns the connection once it leaves the door (its head
    /// whole, too large, or the peer gone), with what happened.
    pub(super) fn read(&mut self, epoll: &Epoll, key: u64) -> Option<(Arrival, Progress)> {
        let progress = self.arriving.get_mut(&key)?.read(self.max_head);
        if matches!(progress, Progress::More) {
            return None;
        }
        let arrival = self.leave(epoll, key)?;
        Some((arrival, progress))
    }

    /// When the oldest head's time runs out; `None`: no head is arriving.
    pub(super) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&(at, key)) = self.deadlines.front() {
            if self.arriving.contains_key(&key) {
                return Some(at);
            }
            self.deadlines.pop_front();
        }
        None
    }

    /// The connections whose head did not end in time (each gets a 408).
    pub(super) fn expired(&mut self, epoll: &Epoll, now: Instant) -> Vec<Arrival> {
        let mut late = Vec::new();
        while let Some(&(at, key)) = self.deadlines.front() {
            if at > now {
                break;
            }
            self.deadlines.pop_front();
            late.extend(self.leave(epoll, key));
        }
        late
    }

    fn leave(&mut self, epoll: &Epoll, key: u64) -> Option<Arrival> {
        let arrival = self.arriving.remove(&key)?;
        if self.arriving.is_empty() && self.arriving.capacity() > SHRINK_ABOVE {
            // A burst is over: give back what it grew (a burst of 10,000 grows ~1 MB).
            self.arriving.shrink_to(0);
            self.deadlines.clear();
            self.deadlines.shrink_to(0);
        }
        // Before it goes on (to the parking thread's epoll, or closed): a registration left
        // here would cost memory for the connection's whole life.
        epoll.remove(&arrival.stream);
        Some(arrival)
    }
}
