//! Names are unique among connected users case-insensitively (`name_taken`), invalid names
//! get `bad_name` and invalid rooms `bad_room`, by URL and by request, and a refused URL
//! parameter still brings the connection up as a guest in the lobby.

use crate::common::*;
use serde_json::{Value, json};

/// Connects with `query`; returns the client, its welcome, the errors between welcome and
/// `joined`, and the `joined`.
fn connect_raw(addr: std::net::SocketAddr, query: &str) -> (Client, Value, Vec<Value>, Value) {
    let mut ws = connect(addr, &format!("/chat?{query}"));
    let welcome = recv_json(&mut ws);
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let mut errors = Vec::new();
    loop {
        let m = recv_json(&mut ws);
        match m["type"].as_str() {
            Some("error") => errors.push(m),
            Some("joined") => return (ws, welcome, errors, m),
            _ => panic!("unexpected before joined: {m}"),
        }
        assert!(errors.len() < 3, "too many errors: {errors:?}");
    }
}

fn codes(errors: &[Value]) -> Vec<&str> {
    errors.iter().map(|e| e["code"].as_str().unwrap()).collect()
}

#[test]
fn a_taken_name_in_any_case_is_refused_by_url_and_by_login() {
    let server = start(|_| {});
    let addr = server.local_addr();
    let mut alice = chat_as(addr, "alice", "lobby");
    for query in ["name=alice", "name=ALICE", "name=%20Alice%20"] {
        let (_ws, welcome, errors, joined) = connect_raw(addr, query);
        assert!(
            welcome["name"].as_str().unwrap().starts_with("guest-"),
            "{welcome}"
        );
        assert_eq!(codes(&errors), ["name_taken"], "{query}");
        assert!(errors[0].get("ref").is_none(), "URL errors carry no ref");
        assert_eq!(joined["room"], "lobby");
    }
    let (mut guest, _) = chat_connect(addr, "");
    for (i, name) in ["alice", "Alice", "aLICE", " alice "]
        .into_iter()
        .enumerate()
    {
        let answer = ask(&mut guest, json!({"type":"login","name":name,"ref":i}));
        assert_eq!(answer["type"], "error", "{name}: {answer}");
        assert_eq!(answer["code"], "name_taken", "{name}");
    }
    // The holder may change the case of its own name; the old spelling is then still taken.
    let answer = ask(&mut alice, json!({"type":"login","name":"Alice","ref":"r"}));
    assert_eq!(
        (&answer["type"], &answer["name"]),
        (&json!("welcome"), &json!("Alice"))
    );
    let answer = ask(&mut guest, json!({"type":"login","name":"alice","ref":"t"}));
    assert_eq!(answer["code"], "name_taken", "{answer}");

    // A name is free again once its holder is gone.
    drop(alice);
    // (The URL clients above are gone too: only the guest is left.)
    let handle = server.handle();
    assert!(wait_until(IO_TIMEOUT, || handle.chat_user_count() == 1));
    let answer = ask(&mut guest, json!({"type":"login","name":"alice","ref":"u"}));
    assert_eq!(
        (&answer["type"], &answer["name"]),
        (&json!("welcome"), &json!("alice"))
    );
}

const BAD: &[&str] = &[
    "",
    "   ",
    "abcdefghijklmnopqrstuvwxyz0123456", // 33 characters
    "new\nline",
    "tab\there",
    "nul\0",
    "zero\u{200B}width",
    "bidi\u{202E}flip",
    "\u{FEFF}bom",
];

#[test]
fn invalid_names_get_bad_name() {
    let server = start(|_| {});
    let addr = server.local_addr();
    let (mut ws, _) = chat_connect(addr, "");
    let reserved = ["guest-1", "GUEST-x", "Guest-"];
    for (i, name) in BAD.iter().chain(&reserved).enumerate() {
        let answer = ask(&mut ws, json!({"type":"login","name":name,"ref":i}));
        assert_eq!(
            (&answer["type"], &answer["code"]),
            (&json!("error"), &json!("bad_name")),
            "{name:?}: {answer}"
        );
    }
    // By URL: the connection comes up as a guest, told why.
    for query in [
        "name=guest-7",
        "name=a%0Ab",
        "name=abcdefghijklmnopqrstuvwxyz0123456",
    ] {
        let (_ws, welcome, errors, _) = connect_raw(addr, query);
        assert!(
            welcome["name"].as_str().unwrap().starts_with("guest-"),
            "{welcome}"
        );
        assert_eq!(codes(&errors), ["bad_name"], "{query}");
    }
    // The limits are in characters, not bytes: 32 crabs are a valid name.
    let crabs = "🦀".repeat(32);
    let answer = ask(&mut ws, json!({"type":"login","name":crabs,"ref":"ok"}));
    assert_eq!(answer["name"], crabs.as_str(), "{answer}");
}

#[test]
fn invalid_rooms_get_bad_room() {
    // Over 40 requests back to back: more than the default burst allows.
    let server = start(|c| c.chat_rate = 0.0);
    let addr = server.local_addr();
    let (mut ws, _) = chat_connect(addr, "name=alice");
    for (i, room) in BAD.iter().enumerate() {
        for ty in ["join", "leave", "users", "history"] {
            let answer = ask(&mut ws, json!({"type":ty,"room":room,"ref":i}));
            assert_eq!(
                (&answer["type"], &answer["code"]),
                (&json!("error"), &json!("bad_room")),
                "{ty} {room:?}: {answer}"
            );
        }
        let answer = ask(
            &mut ws,
            json!({"type":"say","room":room,"text":"x","ref":i}),
        );
        assert_eq!(answer["code"], "bad_room", "say {room:?}: {answer}");
    }
    // By URL: the connection joins the lobby instead, told why.
    let (_ws, welcome, errors, joined) = connect_raw(addr, "name=bob&room=a%09b");
    assert_eq!(welcome["name"], "bob");
    assert_eq!(welcome["rooms"], json!(["lobby"]));
    assert_eq!(codes(&errors), ["bad_room"]);
    assert_eq!(joined["room"], "lobby");
    // Room names are case-insensitive and keep their creator's spelling.
    let joined = ask(&mut ws, json!({"type":"join","room":"Dev","ref":"a"}));
    assert_eq!(joined["room"], "Dev");
    let (mut carol, _) = chat_connect(addr, "name=carol&room=DEV");
    let users = ask(&mut carol, json!({"type":"users","room":"dEv","ref":"b"}));
    assert_eq!(users["room"], "Dev");
    assert_eq!(users["users"], json!(["alice", "carol"]));
}
