//! A chat connection's endpoint, on the connection's own thread (or the parking thread): it
//! parses each frame, applies the chat rate limit and the host's filter hook, and hands the
//! result to the chat worker, so the chat's thread never parses JSON and never sees a flood,
//! and a slow filter delays only its own sender.

use std::time::Instant;

use crossbeam_channel::Sender;
use log::debug;

use super::worker::ChatEvent;
use super::{Input, parse_input};
use crate::embed::FilterHook;
use crate::endpoint::{Data, Endpoint, Refused};
use crate::hub::ClientId;
use crate::protocol::{ErrorCode, Reject, Request};
use crate::ratelimit::TokenBucket;

/// Refusals in a row after which a chat client is cut with Close 1008: a person typing fast
/// hits the limit once or twice and waits for the `rate_limited` answer; a client that keeps
/// sending through 50 refusals is a script flooding the room.
const FLOOD_STRIKES: u32 = 50;

/// A chat connection's endpoint, on its own thread: parses each frame, applies the rate limit
/// and the host's filter there, so the chat worker never parses JSON and never sees a flood.
pub(crate) struct ChatEndpoint {
    id: ClientId,
    tx: Sender<ChatEvent>,
    limit: ChatLimit,
    filter: Option<FilterHook>,
}

impl ChatEndpoint {
    pub(crate) fn new(
        id: ClientId,
        tx: Sender<ChatEvent>,
        limit: ChatLimit,
        filter: Option<FilterHook>,
    ) -> ChatEndpoint {
        ChatEndpoint {
            id,
            tx,
            limit,
            filter,
        }
    }

    /// Runs the filter hook on the text of a chat message, once per message that passed the
    /// rate limit.
    fn filter(&self, input: Input) -> Input {
        let Some(filter) = &self.filter else {
            return input;
        };
        let refused = |reference| {
            Input::Invalid(
                Reject::new(
                    ErrorCode::Filtered,
                    "the server's filter refused this message",
                )
                .with_ref(reference),
            )
        };
        match input {
            Input::Msg(mut msg) => {
                if let Request::Say { text, .. } | Request::Dm { text, .. } = &mut msg.body {
                    match filter(text) {
                        Some(t) => *text = t,
                        None => return refused(msg.reference),
                    }
                }
                Input::Msg(msg)
            }
            Input::Plain(text) => match filter(&text) {
                Some(t) => Input::Plain(t),
                None => refused(None),
            },
            other => other,
        }
    }
}

impl Endpoint for ChatEndpoint {
    fn message(&mut self, data: Data) -> Result<(), Refused> {
        let input = match &data {
            Data::Text(text) => parse_input(text),
            Data::Binary(_) => Input::Binary,
        };
        let Some(input) = self.limit.admit(input) else {
            debug!(
                "client {}: flooding past the rate limit; closing with 1008",
                self.id
            );
            return Err(Refused::Close(1008, "rate limit exceeded"));
        };
        let input = Box::new(self.filter(input));
        let id = self.id;
        self.tx
            .send(ChatEvent::Input { id, input })
            .map_err(|_| Refused::Stopped)
    }

    fn last_frame(&mut self, bytes: Vec<u8>) -> bool {
        let id = self.id;
        self.tx.send(ChatEvent::Closing { id, bytes }).is_ok()
    }

    fn ended(&mut self) {
        let _ = self.tx.send(ChatEvent::Gone { id: self.id });
    }
}

/// A chat connection's rate limit and its flood detector.
pub(crate) struct ChatLimit {
    bucket: Option<TokenBucket>,
    refused_in_a_row: u32,
}

impl ChatLimit {
    /// `rate` messages per second with bursts of `burst`; a rate of 0 turns the limit off.
    pub(crate) fn new(rate: f64, burst: f64) -> ChatLimit {
        ChatLimit {
            bucket: (rate > 0.0).then(|| TokenBucket::new(rate, burst.max(1.0))),
            refused_in_a_row: 0,
        }
    }

    /// The input to pass on (the request itself, or its `rate_limited` stand-in), or `None`
    /// when the client is flooding and must be cut.
    fn admit(&mut self, input: Input) -> Option<Input> {
        let Some(bucket) = &mut self.bucket else {
            return Some(input);
        };
        if bucket.try_take(Instant::now()) {
            self.refused_in_a_row = 0;
            return Some(input);
        }
        self.refused_in_a_row += 1;
        (self.refused_in_a_row <= FLOOD_STRIKES).then(|| input.into_rate_limited())
    }
}
