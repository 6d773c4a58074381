//! wschat: a WebSocket chat and broadcast server without an async runtime.
//!
//! One thread per connection reads frames (blocking, so an idle client costs no wake-ups);
//! one dispatcher thread fans messages out with non-blocking, batched writes, so a slow client
//! never delays the others. The page and small HTTP endpoints are served by tiny_http. See
//! `ARCHITECTURE.md` for the threads and the path of a message.
//!
//! Embed it in a synchronous program:
//!
//! ```
//! let mut config = wschat::Config::default();
//! config.addr = "127.0.0.1:0".parse().unwrap();
//! let server = wschat::Server::bind(config)?;
//! let handle = server.handle();
//! // Browsers connected to ws://ADDR/relay/time receive this:
//! handle.publish_text("time", "12:00:00")?;
//! assert_eq!(handle.connection_count(), 0);
//! handle.shutdown();
//! server.join();
//! # Ok::<(), wschat::Error>(())
//! ```
// deny, not forbid: the OS wrappers (src/sys.rs, src/bench/sys.rs) opt in with a module-level
// allow, each unsafe block with its SAFETY comment; forbid could not be overridden there.
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod assets;
mod auth;
mod chat;
mod chat_worker;
mod config;
mod conn;
mod embed;
mod endpoint;
mod error;
mod frame;
mod history;
mod http;
mod hub;
mod jwt;
mod park;
mod protocol;
mod ratelimit;
mod server;
mod stats;
mod sys;
#[cfg(test)]
mod test_rng;
mod upgrade;
mod web;

pub use chat::ChatConfig;
pub use config::Config;
pub use embed::{AdmitRequest, Payload, ServerEvent};
pub use error::{Error, Result};
pub use history::Fsync;
#[cfg(feature = "jwt")]
pub use jwt::{TokenClaims, sign_token};
pub use server::{Builder, Handle, Server};
pub use sys::{Signal, block_shutdown_signals, raise_fd_limit, wait_signal};

/// `wschat bench`: the synchronous load-test client (fanout, echo, connect, idle scenarios).
pub mod bench;

/// Internals exposed for `benches/` only: not part of the public API, may change at any time.
#[doc(hidden)]
pub mod internals {
    /// Appends one unmasked server frame (text opcode) with `payload` to `out`.
    pub fn encode_text_frame(payload: &[u8], out: &mut Vec<u8>) {
        crate::frame::encode(crate::frame::TEXT, payload, out);
    }

    /// Classifies one chat text frame the way a connection thread does; returns whether it
    /// parsed as a well-formed request.
    pub fn parse_chat(text: &str) -> bool {
        matches!(crate::chat::parse_input(text), crate::chat::Input::Msg(_))
    }
}
