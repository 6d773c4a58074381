//! wschat: a WebSocket chat and broadcast server without an async runtime.
#![forbid(unsafe_code)]
