//! The integration tests, as one test binary (one link instead of one per file): each module
//! is a former `tests/NAME.rs` and keeps its name, so `cargo test --test it relay::` runs the
//! relay tests and `cargo test --test it relay::three_clients` one of them.
//!
//! Adding tests: put them in `tests/it/NAME.rs` (first line a `//!` saying what it proves,
//! then `use crate::common::*;`) and add `mod NAME;` below, in alphabetical order. The modules
//! run as threads of one process, so a test that measures or changes something process-wide
//! (thread count, RSS, context switches, env vars, rlimits, signal masks, the cwd) must run in
//! a child process: start its body with `if !isolated(module_path!(), "FN_NAME") { return; }`
//! (see `common::isolated`).

mod common;

mod admission_origin;
mod admission_tokens;
mod api_publish;
mod bench;
mod capacity;
mod chat_bytes;
mod chat_dm;
mod chat_flood;
mod chat_fuzz;
mod chat_half_close;
mod chat_history;
mod chat_identity;
mod chat_malformed;
mod chat_names;
mod chat_order;
mod chat_persistence;
mod chat_presence;
mod chat_ref;
mod chat_rooms;
mod cluster;
mod cluster_outage;
mod conformance;
mod data_dir;
mod echo;
mod embed;
mod emfile;
mod examples;
mod front_door;
mod fuzz_frames;
mod fuzz_handshake;
mod fuzz_keepalive;
mod handshake_errors;
mod http_hardening;
mod http_keepalive;
mod http_page;
mod idle_cost;
#[cfg(feature = "jwt")]
mod jwt;
mod log_redaction;
mod memory_budget;
mod one_port;
mod parking;
mod ping_throttle;
mod protocol_errors;
mod proxy_admission;
mod prune;
mod relay;
mod shutdown;
mod slow_consumer;
mod slow_disk;
mod subprotocols;
mod thread_cap;
mod tokens_fail_closed;
mod trickle;
mod write_delay;
