//! wschat: a WebSocket chat and broadcast server without an async runtime.
// deny, not forbid: the bench client's epoll/connect/signal wrappers (src/bench/sys.rs) opt in
// with a module-level allow; forbid could not be overridden there.
#![deny(unsafe_code)]

/// `wschat bench`: the synchronous load-test client (fanout, echo, connect, idle scenarios).
pub mod bench;
