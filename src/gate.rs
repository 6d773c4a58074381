//! Who may write a client's socket right now: one of its own threads, or the dispatcher.
//!
//! Every socket has one writer at a time, so frames never interleave. The thread that accepted
//! a relay or echo handshake writes its 101 (one `send` where the head was read, no wake-up of
//! the dispatcher on the way): the gate starts held by it, and the dispatcher, already told of
//! the client (registration comes first, so a client that has seen its 101 misses nothing
//! sent after it), writes nothing until the 101 is out. After that, a relay client's only
//! writer is the dispatcher, which drops the gate. An echo answers its sender only, so when the
//! dispatcher holds nothing for that client, the reader that just read the message can write
//! the echo itself (one non-blocking `send`) instead of waking the dispatcher to do it: one
//! thread wake-up per round trip instead of two. This gate is what keeps that safe:
//!
//! - The reader writes directly only from the idle state (nobody writing, the dispatcher
//!   holding nothing, no message of this client still on its way to the dispatcher), and
//!   marks that it is writing. A message it cannot write that way goes through the dispatcher,
//!   counted in flight until the dispatcher has queued it: per-sender order is kept.
//! - What a short write left of a frame goes to the dispatcher as a leftover, to be written
//!   before anything the dispatcher queued meanwhile; until it arrives, the dispatcher writes
//!   nothing (its bytes would land inside the half-written frame).
//! - The dispatcher claims the gate before each write to the socket. If the reader is writing
//!   (or a leftover is on its way), the dispatcher does not wait: it skips the write, and the
//!   reader, on finishing, sees the claim and tells it (`Event::Writable`, or the leftover).
//!   It gives the gate back only when its queue is empty and nothing of this client is in
//!   flight, and never once the client is closing, so nothing is ever written after a Close.
//! - The gate starts held by the thread that accepted the handshake, as if it were the reader
//!   writing: it writes the 101 (the same steps as an echo), and only then may anyone else.
//!
//! One atomic word, no lock: neither side ever waits for the other.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{AcqRel, Acquire};

/// The reader is writing the socket.
const READER: u64 = 1;
/// The dispatcher holds (or has claimed) the socket.
const HUB: u64 = 2;
/// The rest of a half-written frame is on its way to the dispatcher.
const LEFTOVER: u64 = 4;
/// One message of this client sent to the dispatcher and not yet handled there; the count is
/// the word's bits from here up.
const IN_FLIGHT: u64 = 8;

pub(crate) struct WriteGate(AtomicU64);

impl WriteGate {
    /// Held by the thread that accepted the handshake, which writes the 101 first and then
    /// calls [`WriteGate::written`] (or [`WriteGate::handed_over`]).
    pub(crate) fn new() -> WriteGate {
        WriteGate(AtomicU64::new(READER))
    }

    // The reader's side.

    /// The reader may write now: nobody else writes, and nothing of this client is queued or
    /// in flight. On `true` it must call [`WriteGate::written`] or [`WriteGate::handed_over`].
    pub(crate) fn try_write(&self) -> bool {
        self.0.compare_exchange(0, READER, AcqRel, Acquire).is_ok()
    }

    /// The reader's write is complete. `true`: the dispatcher claimed the socket meanwhile and
    /// skipped a write; it must be told to write now.
    pub(crate) fn written(&self) -> bool {
        self.0.fetch_and(!READER, AcqRel) & HUB != 0
    }

    /// The reader wrote part of a frame and sends the rest to the dispatcher: from now on the
    /// dispatcher holds the socket, and writes nothing until the rest is in its queue.
    pub(crate) fn handed_over(&self) {
        let _ = self
            .0
            .fetch_update(AcqRel, Acquire, |w| Some((w | HUB | LEFTOVER) & !READER));
    }

    /// A message goes to the dispatcher instead (the gate was not free).
    pub(crate) fn sent_to_hub(&self) {
        self.0.fetch_add(IN_FLIGHT, AcqRel);
    }

    // The dispatcher's side.

    /// The dispatcher is handling one in-flight message of this client: it holds the socket
    /// from now on (its frame is about to be queued), so the reader cannot overtake it.
    pub(crate) fn received(&self) {
        let _ = self.0.fetch_update(AcqRel, Acquire, |w| {
            let w = if w >= IN_FLIGHT { w - IN_FLIGHT } else { w };
            Some(w | HUB)
        });
    }

    /// The dispatcher has put the leftover first in its queue: it may write again.
    pub(crate) fn leftover_received(&self) {
        self.0.fetch_and(!LEFTOVER, AcqRel);
    }

    /// Before the dispatcher writes: claims the socket. `false`: the reader is writing, or a
    /// leftover is on its way; skip the write (the reader reports when it is done, see
    /// [`WriteGate::written`], or the leftover arrives).
    pub(crate) fn claim(&self) -> bool {
        self.0.fetch_or(HUB, AcqRel) & (READER | LEFTOVER) == 0
    }

    /// The dispatcher's queue is empty and the client is not closing: the reader may write
    /// again, unless one of its messages is still in flight (then the claim stays).
    pub(crate) fn release(&self) {
        let _ = self.0.compare_exchange(HUB, 0, AcqRel, Acquire);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gate whose 101 is out, the dispatcher never having wanted to write meanwhile.
    fn free() -> WriteGate {
        let g = WriteGate::new();
        assert!(!g.written());
        g
    }

    #[test]
    fn the_101_goes_first_and_a_claim_meanwhile_is_reported() {
        let g = WriteGate::new();
        assert!(!g.try_write(), "the 101 is being written");
        assert!(!g.claim(), "the dispatcher must wait for the 101");
        assert!(
            g.written(),
            "the dispatcher wanted to write: it must be told"
        );
        assert!(g.claim());
        assert!(!g.try_write(), "the dispatcher holds it until it releases");
        g.release();
        assert!(g.try_write());
        assert!(!g.written());
        assert!(g.try_write());
    }

    #[test]
    fn a_claim_while_the_reader_writes_is_reported_when_it_is_done() {
        let g = free();
        assert!(g.try_write());
        assert!(!g.claim(), "the reader is writing: the dispatcher skips");
        assert!(g.written(), "the reader must tell the dispatcher");
        assert!(g.claim());
        assert!(!g.try_write(), "the dispatcher holds it until it releases");
        g.release();
        assert!(g.try_write());
    }

    #[test]
    fn nothing_is_written_into_a_half_written_frame() {
        let g = free();
        assert!(g.try_write());
        g.handed_over();
        assert!(!g.claim(), "the leftover must be written first");
        g.release();
        assert!(!g.try_write(), "the leftover is still on its way");
        g.sent_to_hub();
        g.leftover_received();
        assert!(g.claim());
        g.release();
        assert!(!g.try_write(), "a message is still on its way");
        g.received();
        assert!(
            !g.try_write(),
            "handled but not yet written: the dispatcher holds it"
        );
        assert!(g.claim());
        g.release();
        assert!(g.try_write());
    }

    #[test]
    fn many_in_flight_are_counted_each() {
        let g = free();
        for _ in 0..3 {
            g.sent_to_hub();
        }
        for left in (0..3).rev() {
            g.received();
            assert!(g.claim());
            g.release();
            assert_eq!(g.try_write(), left == 0, "{left} still in flight");
        }
    }

    #[test]
    fn a_message_sent_while_the_gate_was_free_for_a_moment_is_still_in_order() {
        // The reader saw the gate taken, the dispatcher released it, then the reader counted
        // its message in flight: the gate is not free until that message is handled.
        let g = free();
        g.sent_to_hub();
        assert!(!g.try_write());
        g.received();
        assert!(!g.try_write(), "its frame is queued, not yet written");
        assert!(g.claim());
        g.release();
        assert!(g.try_write());
    }
}
