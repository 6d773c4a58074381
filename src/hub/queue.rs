//! One client's outgoing bytes: frames the dispatcher appended and the socket has not taken yet.
//!
//! The queue knows nothing of sockets beyond the [`Sink`] it is flushed into, so its rules
//! (partial writes, `EAGAIN`, the backlog cap, compaction, when to free memory) are unit-tested
//! here against a scripted sink, without a network.

use std::io;
use std::net::TcpStream;

use crate::sys;

/// An emptied queue keeps its allocation up to this size, so the next batch appends without
/// growing it from zero (measured: freeing it after every flush cost ~12% of the dispatcher's
/// CPU in page faults at 6M deliveries/s). Larger ones are freed at once; the heartbeat frees
/// the rest once a client has had no traffic for a whole tick ([`Queue::release_if_idle`]).
pub(crate) const KEEP_CAPACITY: usize = 64 * 1024;

/// Where a queue's bytes go: a socket written without blocking.
pub(crate) trait Sink {
    /// Writes some prefix of `buf` without waiting; `WouldBlock` when nothing fits now.
    fn send(&self, buf: &[u8]) -> io::Result<usize>;
}

impl Sink for TcpStream {
    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        sys::send_nonblocking(self, buf)
    }
}

/// What a flush achieved.
#[derive(Debug)]
pub(crate) enum Flushed {
    /// Everything queued is written.
    All,
    /// The socket is full: the rest waits until it drains (arm the poller).
    Blocked,
    /// The socket failed; the client is gone.
    Failed(io::Error),
}

/// Frames not yet written: `buf[sent..]`.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    buf: Vec<u8>,
    sent: usize,
    /// Written to since the last [`Queue::release_if_idle`].
    busy: bool,
    /// Holds only the first bytes it was made with (the 101): once they are out, the
    /// allocation goes too, so a client that stays idle after its handshake holds no queue
    /// memory (it was ~120 bytes per idle connection until the second heartbeat tick).
    fresh: bool,
}

impl Queue {
    /// A queue that starts with `first` (a client's 101 response).
    pub(crate) fn with(first: Vec<u8>) -> Queue {
        Queue {
            buf: first,
            sent: 0,
            busy: false,
            fresh: true,
        }
    }

    /// The buffer to append encoded frames to.
    pub(crate) fn buf(&mut self) -> &mut Vec<u8> {
        self.fresh = false;
        &mut self.buf
    }

    /// Appends already encoded frames.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.fresh = false;
        self.buf.extend_from_slice(bytes);
    }

    /// Puts already encoded bytes before everything unsent (the rest of a frame someone else
    /// began writing). Rare, so the copy of what is queued behind it does not matter.
    pub(crate) fn put_first(&mut self, bytes: &[u8]) {
        self.fresh = false;
        self.buf.splice(self.sent..self.sent, bytes.iter().copied());
    }

    /// Bytes queued and not yet written.
    pub(crate) fn pending(&self) -> usize {
        self.buf.len() - self.sent
    }

    /// The unsent bytes.
    pub(crate) fn unsent(&self) -> &[u8] {
        &self.buf[self.sent..]
    }

    /// Writes as much as `sink` takes now. Returns what happened and the bytes written.
    pub(crate) fn flush(&mut self, sink: &impl Sink) -> (Flushed, usize) {
        let mut written = 0;
        while self.sent < self.buf.len() {
            match sink.send(&self.buf[self.sent..]) {
                Ok(0) => {
                    let e = io::Error::new(io::ErrorKind::WriteZero, "socket took nothing");
                    return (Flushed::Failed(e), written);
                }
                Ok(n) => {
                    self.sent += n;
                    written += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.compact();
                    return (Flushed::Blocked, written);
                }
                Err(e) => return (Flushed::Failed(e), written),
            }
        }
        if self.buf.capacity() > KEEP_CAPACITY || std::mem::take(&mut self.fresh) {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
        self.sent = 0;
        self.busy = true;
        (Flushed::All, written)
    }

    /// Moves the unsent tail to the front once the sent head is the larger part, so a queue
    /// that drains slowly does not grow by what was already written.
    fn compact(&mut self) {
        if self.sent > self.pending() {
            self.buf.drain(..self.sent);
            self.sent = 0;
        }
    }

    /// Called once per heartbeat tick: frees the allocation of an empty queue that saw no
    /// traffic since the previous tick, so an idle client holds no queue memory.
    pub(crate) fn release_if_idle(&mut self) {
        if !self.busy && self.pending() == 0 && self.buf.capacity() > 0 {
            self.buf = Vec::new();
            self.sent = 0;
        }
        self.busy = false;
    }

    /// The allocation held now (for tests and accounting).
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A socket that takes at most the next scripted amount per call: `Some(n)` bytes, or
    /// `None` for `WouldBlock`; after the script, everything.
    struct Scripted {
        script: RefCell<Vec<Option<usize>>>,
        got: RefCell<Vec<u8>>,
        fail: Option<io::ErrorKind>,
    }

    impl Scripted {
        fn new(script: &[Option<usize>]) -> Scripted {
            let mut script = script.to_vec();
            script.reverse();
            Scripted {
                script: RefCell::new(script),
                got: RefCell::new(Vec::new()),
                fail: None,
            }
        }
    }

    impl Sink for Scripted {
        fn send(&self, buf: &[u8]) -> io::Result<usize> {
            if let Some(kind) = self.fail {
                return Err(io::Error::from(kind));
            }
            let n = match self.script.borrow_mut().pop() {
                Some(Some(n)) => n.min(buf.len()),
                Some(None) => return Err(io::Error::from(io::ErrorKind::WouldBlock)),
                None => buf.len(),
            };
            self.got.borrow_mut().extend_from_slice(&buf[..n]);
            Ok(n)
        }
    }

    #[test]
    fn writes_everything_in_order_across_partial_writes() {
        let mut q = Queue::with(b"HTTP/1.1 101\r\n\r\n".to_vec());
        q.push(b"one");
        q.push(b"two");
        let sink = Scripted::new(&[Some(3), Some(1), Some(5)]);
        let (flushed, written) = q.flush(&sink);
        assert!(matches!(flushed, Flushed::All));
        assert_eq!(written, 22);
        assert_eq!(&*sink.got.borrow(), b"HTTP/1.1 101\r\n\r\nonetwo");
        assert_eq!(q.pending(), 0);
    }

    #[test]
    fn the_first_bytes_alone_are_freed_once_written() {
        let sink = Scripted::new(&[]);
        let mut q = Queue::with(b"HTTP/1.1 101\r\n\r\n".to_vec());
        assert!(matches!(q.flush(&sink).0, Flushed::All));
        assert_eq!(
            q.capacity(),
            0,
            "an idle client keeps nothing of its handshake"
        );
        let mut q = Queue::with(b"HTTP/1.1 101\r\n\r\n".to_vec());
        q.push(b"welcome");
        assert!(matches!(q.flush(&sink).0, Flushed::All));
        assert!(
            q.capacity() > 0,
            "a client with traffic keeps its buffer while busy"
        );
    }

    #[test]
    fn a_full_socket_keeps_the_rest_and_the_next_flush_continues() {
        let mut q = Queue::default();
        q.push(&[1u8; 100]);
        let sink = Scripted::new(&[Some(30), None]);
        let (flushed, written) = q.flush(&sink);
        assert!(matches!(flushed, Flushed::Blocked));
        assert_eq!((written, q.pending()), (30, 70));
        q.push(&[2u8; 10]);
        let (flushed, written) = q.flush(&sink);
        assert!(matches!(flushed, Flushed::All));
        assert_eq!(written, 80);
        let got = sink.got.borrow();
        assert_eq!(got.len(), 110);
        assert!(got[..100].iter().all(|&b| b == 1) && got[100..].iter().all(|&b| b == 2));
    }

    #[test]
    fn a_leftover_goes_before_what_waits_unsent() {
        let mut q = Queue::default();
        q.push(b"sent-close");
        let sink = Scripted::new(&[Some(5), None]);
        assert!(matches!(q.flush(&sink).0, Flushed::Blocked));
        q.put_first(b"-rest-");
        assert!(matches!(q.flush(&sink).0, Flushed::All));
        assert_eq!(&*sink.got.borrow(), b"sent--rest-close");
    }

    #[test]
    fn compaction_bounds_the_buffer_by_what_is_unsent() {
        let mut q = Queue::default();
        q.push(&[7u8; 1000]);
        // 900 written, then full: the 100 unsent bytes move to the front.
        let sink = Scripted::new(&[Some(900), None]);
        assert!(matches!(q.flush(&sink).0, Flushed::Blocked));
        assert_eq!(q.pending(), 100);
        assert_eq!(q.unsent().len(), 100);
        assert_eq!(q.buf.len(), 100, "the written head was dropped");
    }

    #[test]
    fn a_failed_socket_is_reported() {
        let mut q = Queue::default();
        q.push(b"x");
        let mut sink = Scripted::new(&[]);
        sink.fail = Some(io::ErrorKind::BrokenPipe);
        assert!(matches!(q.flush(&sink).0, Flushed::Failed(_)));
    }

    #[test]
    fn memory_is_kept_while_busy_and_freed_when_idle() {
        let mut q = Queue::default();
        q.push(&[0u8; 1000]);
        let sink = Scripted::new(&[]);
        assert!(matches!(q.flush(&sink).0, Flushed::All));
        assert!(q.capacity() >= 1000, "an active queue keeps its allocation");
        q.release_if_idle(); // traffic since the last tick: kept
        assert!(q.capacity() >= 1000);
        q.release_if_idle(); // a whole tick without traffic: freed
        assert_eq!(q.capacity(), 0);
    }

    #[test]
    fn a_huge_emptied_queue_is_freed_at_once() {
        let mut q = Queue::default();
        q.push(&vec![0u8; KEEP_CAPACITY + 1]);
        assert!(matches!(q.flush(&Scripted::new(&[])).0, Flushed::All));
        assert_eq!(q.capacity(), 0);
    }
}
