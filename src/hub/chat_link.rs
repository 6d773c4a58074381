//! What the chat worker hands the dispatcher: the chat decides *who* gets which text (and
//! encodes the frame once); the dispatcher only appends the bytes to those clients' queues.
//!
//! A chat client's last frame and its end travel the same way, behind its answers, so that a
//! client that asks and then closes (or half-closes) still gets every answer before its Close.

use std::sync::Arc;

use super::ClientId;

/// One step for the dispatcher, from the chat worker, in the order they must happen.
#[derive(Debug)]
pub(crate) enum ChatOut {
    /// One encoded text frame for each of `to`.
    Frame { to: Vec<ClientId>, frame: Arc<[u8]> },
    /// The client's last frame (its Close reply, our Close for a protocol error, a policy
    /// close from the chat): queue it, then half-close.
    Closing { id: ClientId, bytes: Vec<u8> },
    /// The chat client's reader has ended: write what its socket takes and forget it.
    Gone { id: ClientId },
}
