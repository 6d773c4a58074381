//! wschat: a WebSocket chat and broadcast server without an async runtime.
//!
//! One thread per connection reads frames (blocking, so an idle client costs no wake-ups);
//! one dispatcher thread fans messages out with non-blocking, batched writes, so a slow client
//! never delays the others. The page and the small HTTP endpoints are answered on the same
//! port, by the connection's own thread, with HTTP/1.1 keep-alive. See `ARCHITECTURE.md` for
//! the threads and the path of a message.
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
// deny, not forbid: the OS wrapper (src/sys.rs) opts in with a module-level allow, each
// unsafe block with its SAFETY comment; forbid could not be overridden there.
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod assets;
mod auth;
mod budget;
mod chat;
#[cfg(feature = "redis")]
mod cluster;
mod config;
mod conn;
mod embed;
mod endpoint;
mod error;
mod forwarded;
mod frame;
mod gate;
mod http;
mod hub;
mod json;
mod jwt;
mod park;
mod protocol;
mod ratelimit;
mod server;
mod stats;
mod sys;
#[cfg(test)]
mod test_rng;
mod threads;
mod upgrade;
mod web;

pub use chat::ChatConfig;
pub use chat::Fsync;
pub use config::Config;
pub use embed::{AdmitRequest, Payload, ServerEvent};
pub use error::{Error, Result};
pub use forwarded::Cidr;
#[cfg(feature = "jwt")]
pub use jwt::{TokenClaims, sign_token};
pub use server::{Builder, Handle, Server};
pub use sys::{Signal, block_shutdown_signals, raise_fd_limit, wait_signal};

/// Internals exposed for `benches/`, the binary's `wschat bench` and `tests/it` only: not part
/// of the public API, may change at any time.
#[doc(hidden)]
pub mod internals {
    /// The frame codec (server and client frames, header decoding) of `src/frame.rs`.
    pub mod frame {
        pub use crate::frame::*;
    }

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
