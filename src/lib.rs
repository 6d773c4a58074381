//! wschat: a WebSocket chat and broadcast server without an async runtime.
#![forbid(unsafe_code)]

// The chat modules are pure logic that nothing calls yet outside their tests.
// wired into the hub by the lead
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod ratelimit;
