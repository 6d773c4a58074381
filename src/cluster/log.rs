//! The shared chat log: a Redis stream whose entries every node applies in order.
//!
//! Each entry has two fields: `e`, the event as JSON ([`Record`]), and `p`, the id of the
//! entry before it. Appends go through one Lua script, which Redis runs atomically, so `p`
//! always names the true predecessor: a reader that finds `p` different from the last entry
//! it applied knows it missed entries (the log was trimmed behind it, or Redis lost its data)
//! and starts again from the snapshot instead of drifting from the other nodes.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::chat::{Input, Rights};

/// The log stream.
pub(crate) const LOG: &str = "wschat:log";
/// The id of the last entry appended (`""` before the first).
pub(crate) const LAST: &str = "wschat:log:last";
/// The snapshot: a hash with `at` (the last entry it includes), `chat` and `applied`.
pub(crate) const SNAPSHOT: &str = "wschat:snapshot";
/// Live nodes: a sorted set of node numbers scored by when their lease ends (Redis time, ms).
pub(crate) const NODES: &str = "wschat:nodes";
/// The counter node numbers come from.
pub(crate) const NODE_SEQ: &str = "wschat:node-seq";

/// One event in the log. `n` is the node that appended it and `s` its sequence number on
/// that node, so that an entry written twice (a retry after a timeout that had in fact
/// succeeded) is applied once. Entries the lease script writes have `n` 0.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Record {
    pub n: u64,
    pub s: u64,
    #[serde(flatten)]
    pub op: Op,
}

/// What happened. Connection ids are cluster-wide (`worker::NODE_SHIFT`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Op {
    Connect {
        id: u64,
        addr: IpAddr,
        name: Option<String>,
        room: Option<String>,
        bound: bool,
        rights: Rights,
    },
    Input {
        id: u64,
        input: Input,
    },
    Closing {
        id: u64,
        bytes: Vec<u8>,
    },
    Gone {
        id: u64,
    },
    Say {
        room: String,
        from: String,
        text: String,
    },
    Reserve {
        names: Vec<String>,
    },
    /// A node's lease ran out (or it left): its connections are gone.
    NodeGone {
        node: u64,
    },
}

/// Appends `ARGV` (entries' JSON), in order, chained by `p`; returns their ids.
pub(crate) const APPEND: &str = r#"
local prev = redis.call('GET', KEYS[2]) or ''
local ids = {}
for i, e in ipairs(ARGV) do
  prev = redis.call('XADD', KEYS[1], '*', 'e', e, 'p', prev)
  ids[i] = prev
end
redis.call('SET', KEYS[2], prev)
return ids
"#;

/// Renews this node's lease (`ARGV[1]` the node, `ARGV[2]` its length in ms) by Redis's own
/// clock, declares every node whose lease has ended gone (one `node_gone` entry each: the
/// `ZREM` makes sure only one node writes it), and returns the lowest live node number.
pub(crate) const LEASE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
if #dead > 0 then
  local prev = redis.call('GET', KEYS[3]) or ''
  for _, n in ipairs(dead) do
    if redis.call('ZREM', KEYS[1], n) == 1 then
      prev = redis.call('XADD', KEYS[2], '*', 'e', '{"n":0,"s":0,"op":"node_gone","node":' .. n .. '}', 'p', prev)
    end
  end
  redis.call('SET', KEYS[3], prev)
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0)
return tonumber(first[1])
"#;

/// A node that stops: its lease ends now and its connections leave at once.
pub(crate) const LEAVE: &str = r#"
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  local prev = redis.call('GET', KEYS[3]) or ''
  prev = redis.call('XADD', KEYS[2], '*', 'e', '{"n":0,"s":0,"op":"node_gone","node":' .. ARGV[1] .. '}', 'p', prev)
  redis.call('SET', KEYS[3], prev)
end
return 1
"#;

/// Stores a snapshot at `ARGV[1]` unless a newer one is there, and trims the log before it
/// (entries up to `at` are in the snapshot; a node behind it starts from the snapshot).
pub(crate) const SAVE_SNAPSHOT: &str = r#"
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local cur = redis.call('HGET', KEYS[1], 'at')
if cur then
  local cm, cs = parse(cur)
  local nm, ns = parse(ARGV[1])
  if cm and (cm > nm or (cm == nm and cs >= ns)) then
    return 0
  end
end
redis.call('HSET', KEYS[1], 'at', ARGV[1], 'chat', ARGV[2], 'applied', ARGV[3])
redis.call('XTRIM', KEYS[2], 'MINID', ARGV[1])
return 1
"#;

/// The time an entry was appended, from its id (`ms-seq`, Redis's clock): the chat's "now"
/// for that entry, the same on every node.
pub(crate) fn entry_ms(id: &str) -> Option<u64> {
    id.split_once('-')?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ClientMsg, Request};

    #[test]
    fn records_round_trip_and_lua_entries_parse() {
        let rec = Record {
            n: 3,
            s: 9,
            op: Op::Input {
                id: 3 << 40 | 7,
                input: Input::Msg(ClientMsg {
                    reference: Some(serde_json::json!({"k": 1})),
                    body: Request::Say {
                        room: "lobby".into(),
                        text: "hi \"there\"".into(),
                        as_name: None,
                    },
                }),
            },
        };
        let json = serde_json::to_string(&rec).unwrap();
        let back: Record = serde_json::from_str(&json).unwrap();
        assert_eq!((back.n, back.s), (3, 9));
        match back.op {
            Op::Input { id, input } => {
                assert_eq!(id, 3 << 40 | 7);
                let Op::Input { input: orig, .. } = rec.op else {
                    unreachable!()
                };
                assert_eq!(input, orig);
            }
            other => panic!("{other:?}"),
        }
        // What the Lua scripts write by hand.
        let gone: Record = serde_json::from_str(r#"{"n":0,"s":0,"op":"node_gone","node":12}"#)
            .expect("the scripts' entry parses");
        assert!(matches!(gone.op, Op::NodeGone { node: 12 }));
        assert_eq!(entry_ms("1733280000123-4"), Some(1733280000123));
        assert_eq!(entry_ms("junk"), None);
    }
}
