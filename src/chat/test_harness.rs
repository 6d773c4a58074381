//! The unit tests' harness: a [`Chat`] driven like the dispatcher drives it, with its
//! deliveries decoded to JSON; and generators of requests for the fuzz loops.

use serde_json::{Value, json};

use super::{Chat, ChatConfig, ConnId, Delivery, Input, Outbox, parse_input};
use crate::test_rng::Rng;

/// One delivery, decoded: recipients and JSON (a close is `{"close": code}`).
pub(super) type Got = Vec<(Vec<ConnId>, Value)>;

pub(super) struct H {
    pub(super) chat: Chat,
    pub(super) out: Outbox,
    pub(super) now: u64,
}

impl H {
    pub(super) fn new() -> H {
        H::with(ChatConfig::default())
    }

    pub(super) fn with(cfg: ChatConfig) -> H {
        H {
            chat: Chat::open(cfg).expect("open"),
            out: Outbox::new(),
            now: 1_700_000_000_000,
        }
    }

    pub(super) fn take(&mut self) -> Got {
        let n = self.out.len();
        let got: Got = self
            .out
            .drain()
            .map(|d| match d {
                Delivery::Text { to, text } => {
                    assert!(!to.is_empty());
                    (to, serde_json::from_str(&text).expect("server sent JSON"))
                }
                Delivery::Close { conn, code, .. } => (vec![conn], json!({ "close": code })),
            })
            .collect();
        assert_eq!(got.len(), n);
        assert!(self.out.is_empty());
        got
    }

    pub(super) fn connect(&mut self, conn: ConnId) -> Got {
        self.connect_with(conn, None, None, false)
    }

    pub(super) fn connect_with(
        &mut self,
        conn: ConnId,
        name: Option<&str>,
        room: Option<&str>,
        bound: bool,
    ) -> Got {
        self.now += 1;
        self.chat.connect(
            conn,
            name,
            room,
            bound,
            &super::Rights {
                file_token: bound,
                ..Default::default()
            },
            self.now,
            &mut self.out,
        );
        self.take()
    }

    pub(super) fn input(&mut self, conn: ConnId, input: Input) -> Got {
        self.now += 1;
        self.chat.handle(conn, input, self.now, &mut self.out);
        self.take()
    }

    pub(super) fn send(&mut self, conn: ConnId, text: &str) -> Got {
        self.input(conn, parse_input(text))
    }

    pub(super) fn send_json(&mut self, conn: ConnId, v: Value) -> Got {
        self.send(conn, &v.to_string())
    }

    pub(super) fn disconnect(&mut self, conn: ConnId) -> Got {
        self.chat.disconnect(conn, self.now, &mut self.out);
        self.take()
    }

    /// The only delivery's JSON, which must go to exactly `to`.
    pub(super) fn one(got: Got, to: &[ConnId]) -> Value {
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, to, "{got:?}");
        got.into_iter().next().map(|(_, v)| v).unwrap_or_default()
    }

    pub(super) fn error_code(got: Got, conn: ConnId) -> String {
        let v = H::one(got, &[conn]);
        assert_eq!(v["type"], "error", "{v}");
        v["code"].as_str().unwrap_or_default().to_owned()
    }
}

pub(super) fn fill(h: &mut H, room: &str, n: usize) -> Vec<u64> {
    (0..n)
        .map(|i| {
            let text = format!("m{i}");
            let r = h.chat.say_as(room, "bot", &text, h.now, &mut h.out);
            h.take();
            r.unwrap_or(0)
        })
        .collect()
}

pub(super) fn ids_of(v: &Value) -> Vec<u64> {
    v.as_array()
        .map(|a| a.iter().filter_map(|m| m["id"].as_u64()).collect())
        .unwrap_or_default()
}

/// JSON-ish text: fragments of real requests, glued at random, sometimes valid.
pub(super) fn jsonish(rng: &mut Rng) -> String {
    const PIECES: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"",
        "\\",
        "\"type\"",
        "\"say\"",
        "\"join\"",
        "\"login\"",
        "\"dm\"",
        "\"history\"",
        "\"rooms\"",
        "\"users\"",
        "\"leave\"",
        "\"room\"",
        "\"text\"",
        "\"name\"",
        "\"to\"",
        "\"ref\"",
        "\"before\"",
        "\"after\"",
        "\"limit\"",
        "\"lobby\"",
        "\"dev\"",
        "\"guest-1\"",
        "0",
        "-1",
        "1e999",
        "18446744073709551616",
        "3.5",
        "null",
        "true",
        "\"\\u0000\"",
        "\"\\ud800\"",
        "\"😀\"",
        " ",
        "\n",
        "é",
        "\u{202E}",
    ];
    let mut s = String::new();
    if rng.below(4) != 0 {
        s.push('{');
    }
    for _ in 0..rng.below(40) {
        let piece: &&str = rng.pick(PIECES);
        s.push_str(piece);
    }
    s
}

pub(super) fn well_formed(rng: &mut Rng) -> String {
    const ROOMS: &[&str] = &["lobby", "dev", "Dev", "ops", "", " x ", "🦀", "a\u{0}"];
    const NAMES: &[&str] = &["alice", "bob", "Bob", "guest-1", "guest-2", "", "é"];
    let room = rng.pick(ROOMS);
    let name = rng.pick(NAMES);
    let n = rng.next() % 400;
    let v = match rng.below(9) {
        0 => json!({"type":"login","name":name,"ref":n}),
        1 => json!({"type":"join","room":room}),
        2 => json!({"type":"leave","room":room,"ref":[n]}),
        3 => json!({"type":"say","room":room,"text":name}),
        4 => json!({"type":"dm","to":name,"text":room}),
        5 => json!({"type":"rooms"}),
        6 => json!({"type":"users","room":room}),
        7 => {
            json!({"type":"history","room":room,"before":n,"after":rng.next() % 400,"limit":rng.next() % 300})
        }
        _ => json!({"type":"history","room":room,"after":n}),
    };
    v.to_string()
}
