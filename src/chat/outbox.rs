//! The chat's answer to one call: who must receive which text, in order. The dispatcher
//! decides how it reaches the sockets; the chat only decides who gets what.

use std::sync::Arc;

use log::trace;

use super::ConnId;
use crate::protocol::{Reject, ServerMsg};

/// One thing the dispatcher must do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Delivery {
    /// Send `text` as one text frame to each of `to`: encode the frame once, share it.
    Text {
        /// Recipients, never empty, no duplicates.
        to: Vec<ConnId>,
        /// The JSON of one server message.
        text: Arc<str>,
    },
    /// Send a close frame with this code and reason after anything queued for `conn`, then
    /// drop the connection (and call [`Chat::disconnect`](super::Chat::disconnect) as for any other disconnect).
    Close {
        /// The connection to close.
        conn: ConnId,
        /// The WebSocket close code.
        code: u16,
        /// The close reason.
        reason: &'static str,
    },
}

/// What the chat wants sent, in order. For any one recipient the order of deliveries is the
/// order it must receive them in.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub(super) items: Vec<Delivery>,
    /// Record accepted room messages in `posted` (only when the host program listens for
    /// events: otherwise copying each message would be wasted work).
    pub(crate) observe: bool,
    /// Room messages accepted since the dispatcher last took them (when `observe`).
    pub(crate) posted: Vec<Posted>,
}

/// A room message the chat accepted, for the host program's events.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Posted {
    pub id: u64,
    pub room: String,
    pub from: String,
    pub text: String,
}

impl Outbox {
    /// An empty outbox; keep one and reuse it across calls to reuse its allocation.
    pub(crate) fn new() -> Outbox {
        Outbox::default()
    }

    /// Takes the deliveries out, oldest first.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = Delivery> + '_ {
        self.items.drain(..)
    }

    /// How many deliveries are queued.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Queues `msg`, encoded once, for `to` (nothing if `to` is empty).
    pub(super) fn send(&mut self, to: Vec<ConnId>, msg: &ServerMsg<'_>) {
        if to.is_empty() {
            return;
        }
        self.items.push(Delivery::Text {
            to,
            text: Arc::from(msg.encode()),
        });
    }

    pub(crate) fn send_error(&mut self, conn: ConnId, rej: &Reject) {
        trace!(
            "chat: conn {conn} error {}: {}",
            rej.code.as_str(),
            rej.message
        );
        self.send(
            vec![conn],
            &ServerMsg::Error {
                code: rej.code,
                message: &rej.message,
                reference: rej.reference.as_ref(),
            },
        );
    }

    pub(super) fn close(&mut self, conn: ConnId, code: u16, reason: &'static str) {
        self.items.push(Delivery::Close { conn, code, reason });
    }
}
