//! Chat identity (issue 11): a name bound to an access token is reserved for that token at all
//! times (also while its owner is offline and across a reload of the tokens); invisible and
//! look-alike names are refused; strangers cannot erase a quiet room's history by filling the
//! room table, and `--max-rooms` sets that table's size.

use crate::common::*;
use serde_json::{Value, json};

/// Connects with `query`; returns the client, its welcome and the error codes it got before
/// `joined`.
fn connect_as(addr: std::net::SocketAddr, query: &str) -> (Client, Value, Vec<String>) {
    let mut ws = connect(addr, &format!("/chat?{query}"));
    let welcome = recv_json(&mut ws);
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let mut errors = Vec::new();
    // Bounded: welcome, at most one error per URL parameter, then joined.
    for _ in 0..4 {
        let m = recv_json(&mut ws);
        match m["type"].as_str() {
            Some("error") => errors.push(m["code"].as_str().unwrap_or("").to_owned()),
            Some("joined") => return (ws, welcome, errors),
            _ => panic!("unexpected before joined: {m}"),
        }
    }
    panic!("no joined after {errors:?}");
}

// The server does not feed the chat its tokens' names yet: `Chat::set_reserved_names` must be
// called from src/server.rs (bind, reload_tokens) and the dispatcher. See the branch report.
#[test]
fn a_bound_name_is_reserved_while_its_owner_is_offline() {
    let dir = TempDir::new("identity-tokens");
    let file = dir.0.join("tokens");
    std::fs::write(&file, "tokA alice\ntokB\ntokC carol\n").unwrap();
    let path = file.clone();
    let server = start(move |c| c.tokens_file = Some(path));
    let addr = server.local_addr();
    let handle = server.handle();

    // alice is offline: another token (or none bound) cannot take her name, by URL or login.
    let (mut mallory, welcome, errors) = connect_as(addr, "name=alice&token=tokB");
    assert_ne!(welcome["name"], "alice", "{welcome}");
    assert_eq!(errors, ["name_taken"]);
    for (i, name) in ["alice", "ALICE", " Alice "].into_iter().enumerate() {
        let answer = ask(&mut mallory, json!({"type":"login","name":name,"ref":i}));
        assert_eq!(answer["code"], "name_taken", "{name}: {answer}");
    }
    // Her DMs reach nobody while she is away.
    let answer = ask(
        &mut mallory,
        json!({"type":"dm","to":"alice","text":"hi","ref":"dm"}),
    );
    assert_eq!(answer["code"], "no_such_user", "{answer}");

    // Her token gets it; after she leaves it is still hers.
    let (mut alice, welcome, errors) = connect_as(addr, "token=tokA");
    assert_eq!((welcome["name"].as_str(), errors.len()), (Some("alice"), 0));
    alice.close(None).expect("close");
    assert!(
        wait_until(IO_TIMEOUT, || handle.chat_user_count() == 1),
        "alice's disconnect was not seen"
    );
    let answer = ask(
        &mut mallory,
        json!({"type":"login","name":"alice","ref":"y"}),
    );
    assert_eq!(answer["code"], "name_taken", "{answer}");

    // Reload: carol's token loses its name and dave's is new. mallory, holding `dave`
    // without its token, is renamed to a guest at once; `carol` is free to take.
    let answer = ask(
        &mut mallory,
        json!({"type":"login","name":"dave","ref":"d"}),
    );
    assert_eq!(answer["name"], "dave", "{answer}");
    std::fs::write(&file, "tokA alice\ntokB\ntokC\ntokD dave\n").unwrap();
    assert_eq!(handle.reload_tokens().expect("reload"), 4);
    let renamed = next_of_type(&mut mallory, "welcome");
    assert!(
        renamed["name"].as_str().unwrap_or("").starts_with("guest-"),
        "{renamed}"
    );
    let answer = ask(
        &mut mallory,
        json!({"type":"login","name":"carol","ref":"c"}),
    );
    assert_eq!(answer["name"], "carol", "{answer}");
    let answer = ask(
        &mut mallory,
        json!({"type":"login","name":"dave","ref":"e"}),
    );
    assert_eq!(answer["code"], "name_taken", "{answer}");
}

/// `s` percent-encoded for a URL query (every non-alphanumeric byte).
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn invisible_and_look_alike_names_are_refused() {
    let server = start(|_| {});
    let addr = server.local_addr();
    let _alice = chat_as(addr, "alice", "team");
    let _ilya = chat_as(addr, "Ilya", "lobby");
    // A tag character makes a second "alice" today: refused as a bad name, by URL too.
    let (_ws, welcome, errors) =
        connect_as(addr, &format!("name={}", query_escape("alice\u{E0061}")));
    assert_ne!(welcome["name"], "alice\u{E0061}", "{welcome}");
    assert_eq!(errors, ["bad_name"]);
    let (mut mallory, _) = chat_connect(addr, "");
    for (i, name) in [
        "alice\u{E0061}", // tag latin small a
        "alice\u{FE0F}",  // variation selector 16
        "alice\u{E0100}", // variation selector 17
        "ali\u{180B}ce",  // Mongolian free variation selector
        "alice\u{2028}",  // line separator
        "ali\u{2029}ce",  // paragraph separator
        "ali\u{2060}ce",  // word joiner (Cf)
    ]
    .into_iter()
    .enumerate()
    {
        let answer = ask(&mut mallory, json!({"type":"login","name":name,"ref":i}));
        assert_eq!(answer["code"], "bad_name", "{name:?}: {answer}");
        let answer = ask(&mut mallory, json!({"type":"join","room":name,"ref":i}));
        assert_eq!(answer["code"], "bad_room", "{name:?}: {answer}");
    }
    // Look-alikes of a connected name are that name.
    for (i, name) in [
        "\u{0430}lice", // Cyrillic а
        "\u{0391}lice", // Greek capital alpha
        "\u{FF41}lice", // full-width a
        "llya",         // small l for capital I
        "\u{0406}lya",  // Cyrillic І
    ]
    .into_iter()
    .enumerate()
    {
        let answer = ask(&mut mallory, json!({"type":"login","name":name,"ref":i}));
        assert_eq!(answer["code"], "name_taken", "{name:?}: {answer}");
    }
    // A look-alike room name is the same room.
    let answer = ask(
        &mut mallory,
        json!({"type":"join","room":"t\u{0435}am","ref":"room"}),
    );
    assert_eq!(
        (&answer["type"], &answer["room"]),
        (&json!("joined"), &json!("team")),
        "{answer}"
    );
}

/// Kills the child process (by its PID, through `Child`) when the test ends, even by a panic.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn strangers_cannot_erase_a_quiet_rooms_history() {
    let (child, addr) = spawn_binary(&["--max-rooms", "10"]);
    let _child = Killed(child);
    // `team` has history and nobody in it.
    let mut alice = chat_as(addr, "alice", "team");
    let said = ask(
        &mut alice,
        json!({"type":"say","room":"team","text":"the plan","ref":"s"}),
    );
    assert_eq!(said["type"], "message", "{said}");
    alice.close(None).expect("close");
    // 50 anonymous connections each join a fresh room and stay. At the limit (10 rooms:
    // team, the lobby and 8 fresh ones) new rooms are refused; none is retired. (They used to
    // retire the empty room with the oldest message: team, with its history.)
    let mut refused = 0;
    let mut crowd = Vec::new();
    for i in 0..50 {
        let (mut ws, _) = chat_connect(addr, "");
        let answer = ask(
            &mut ws,
            json!({"type":"join","room":format!("fresh-{i}"),"ref":i}),
        );
        match answer["type"].as_str() {
            Some("joined") => {}
            Some("error") => {
                assert_eq!(answer["code"], "server_room_limit", "{answer}");
                refused += 1;
            }
            _ => panic!("{answer}"),
        }
        crowd.push(ws);
    }
    let (mut reader, _) = chat_connect(addr, "");
    let history = ask(
        &mut reader,
        json!({"type":"history","room":"team","ref":"h"}),
    );
    assert_eq!(history["messages"][0]["text"], "the plan", "{history}");
    assert_eq!(refused, 42, "8 fresh rooms fit");
    let rooms = ask(&mut reader, json!({"type":"rooms","ref":"r"}));
    assert_eq!(rooms["rooms"].as_array().map(Vec::len), Some(10), "{rooms}");
}
