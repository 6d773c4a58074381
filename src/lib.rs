//! wschat: a WebSocket chat and broadcast server without an async runtime.
#![forbid(unsafe_code)]

// The chat modules below are pure logic; until the hub calls them only their tests do, so
// dead-code warnings are expected outside tests. Wired into the hub by the lead.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod chat;
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod history;
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod protocol;
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod ratelimit;
