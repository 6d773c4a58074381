//! A few hundred random, JSON-ish text frames over a real socket: each gets exactly one
//! answer (a known server message type, an `error` with a documented code), the connection
//! stays up, and the server goes on serving others.

use crate::common::*;
use serde_json::{Value, json};
use tungstenite::Message;

const FRAMES: usize = 400;

/// The error codes PROTOCOL.md documents.
const CODES: &[&str] = &[
    "bad_json",
    "unknown_type",
    "bad_field",
    "bad_name",
    "name_taken",
    "name_bound",
    "bad_room",
    "not_in_room",
    "no_such_user",
    "too_long",
    "empty_text",
    "rate_limited",
    "too_many_rooms",
    "server_room_limit",
    "binary_not_supported",
];

/// xorshift64*: deterministic, so a failure is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Pieces that make frames look like requests often enough to reach past the JSON parser.
const PIECES: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    ":",
    ",",
    "\\",
    " ",
    "\"type\"",
    "\"say\"",
    "\"join\"",
    "\"leave\"",
    "\"login\"",
    "\"dm\"",
    "\"rooms\"",
    "\"users\"",
    "\"history\"",
    "\"room\"",
    "\"lobby\"",
    "\"text\"",
    "\"to\"",
    "\"name\"",
    "\"ref\"",
    "\"limit\"",
    "\"before\"",
    "\"after\"",
    "0",
    "-1",
    "1e999",
    "18446744073709551616",
    "null",
    "true",
    "\"\"",
    "é",
    "🦀",
    "\u{202E}",
    "\u{200B}",
    "\n",
    "\t",
    "guest-1",
    "\\u0000",
    "\\ud800",
    "x",
];

fn frame(rng: &mut Rng) -> String {
    match rng.below(4) {
        // A well-formed request with random field values.
        0 => {
            let ty = [
                "say", "join", "leave", "login", "dm", "rooms", "users", "history",
            ];
            let mut obj = json!({"type": ty[rng.below(ty.len())]});
            for key in ["room", "text", "name", "to", "limit", "before", "ref"] {
                if rng.below(2) == 0 {
                    let v: String = (0..rng.below(4))
                        .map(|_| PIECES[rng.below(PIECES.len())])
                        .collect();
                    obj[key] = match rng.below(3) {
                        0 => json!(v),
                        1 => json!(rng.below(300)),
                        _ => json!("lobby"),
                    };
                }
            }
            obj.to_string()
        }
        // Random pieces, usually starting like a request.
        _ => {
            let mut s = String::from(if rng.below(4) == 0 { "" } else { "{" });
            for _ in 0..rng.below(30) {
                s.push_str(PIECES[rng.below(PIECES.len())]);
            }
            if s.is_empty() {
                s.push('x');
            }
            s
        }
    }
}

fn check_answer(sent: &str, answer: &Value) {
    match answer["type"].as_str() {
        Some("error") => {
            let code = answer["code"].as_str().unwrap_or("");
            assert!(
                CODES.contains(&code),
                "undocumented code for {sent:?}: {answer}"
            );
            assert!(answer["message"].is_string(), "{answer}");
        }
        Some("welcome" | "joined" | "left" | "message" | "rooms" | "users" | "history") => {}
        _ => panic!("unexpected answer to {sent:?}: {answer}"),
    }
}

#[test]
fn random_frames_each_get_one_answer_and_the_server_stays_up() {
    let server = start(|c| c.chat_rate = 0.0);
    let addr = server.local_addr();
    let mut bystander = chat_as(addr, "bystander", "quiet");
    // The fuzzer is alone in its rooms (the bystander is in `quiet`, which random frames
    // never name), so everything it receives is an answer to its own frames: one each.
    let mut ws = chat_as(addr, "fuzzer", "lobby");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..FRAMES {
        let sent = frame(&mut rng);
        ws.send(Message::text(sent.clone())).unwrap();
        let answer = recv_json(&mut ws);
        check_answer(&sent, &answer);
    }
    // Exactly one answer each: the answer to one more request comes next. (Random logins
    // renamed the fuzzer; it takes its name back.)
    send_json(
        &mut ws,
        &json!({"type":"login","name":"fuzzer","ref":"back"}),
    );
    let welcome = recv_json(&mut ws);
    assert_eq!(
        (&welcome["type"], &welcome["ref"]),
        (&json!("welcome"), &json!("back")),
        "{welcome}"
    );
    // The bystander heard nothing of the fuzzing (its first message since is the answer to
    // its own request), and still reaches the fuzzer.
    send_json(
        &mut bystander,
        &json!({"type":"dm","to":"fuzzer","text":"marker","ref":1}),
    );
    let own = recv_json(&mut bystander);
    assert_eq!(
        (&own["type"], &own["ref"]),
        (&json!("message"), &json!(1)),
        "{own}"
    );
    let next = recv_json(&mut ws);
    assert_eq!(
        (&next["from"], &next["text"]),
        (&json!("bystander"), &json!("marker")),
        "{next}"
    );
    // And the server serves new connections.
    let (_late, welcome) = chat_connect(addr, "name=late");
    assert_eq!(welcome["name"], "late");
}
