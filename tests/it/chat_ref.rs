//! Every request gets exactly one direct answer, in request order, carrying the request's
//! `ref` (any JSON value, `null` included): welcome, joined, left, rooms, users, history,
//! error, and the sender's own copy of a message; others' copies never carry it.

use crate::common::*;
use serde_json::{Value, json};

#[test]
fn each_direct_answer_carries_its_requests_ref_in_order() {
    let server = start(|_| {});
    let addr = server.local_addr();
    let mut alice = chat_as(addr, "alice", "lobby");
    let mut bob = chat_as(addr, "bob", "dev");
    // bob went to dev, so alice (in the lobby) got no presence: she gets only answers below.

    let deep = json!([[[[[[[1]]]]]]]); // 7 levels: the most a ref may nest
    // (request, expected answer type, expected error code)
    let script: Vec<(Value, &str, Option<&str>)> = vec![
        (
            json!({"type":"login","name":"alice","ref":1}),
            "welcome",
            None,
        ),
        (
            json!({"type":"join","room":"dev","ref":"two"}),
            "joined",
            None,
        ),
        (
            json!({"type":"say","room":"dev","text":"hi","ref":{"k":[1,2]}}),
            "message",
            None,
        ),
        (
            json!({"type":"dm","to":"bob","text":"psst","ref":null}),
            "message",
            None,
        ),
        (json!({"type":"rooms","ref":4.5}), "rooms", None),
        (
            json!({"type":"users","room":"dev","ref":[true]}),
            "users",
            None,
        ),
        (
            json!({"type":"history","room":"dev","ref":"h"}),
            "history",
            None,
        ),
        (json!({"type":"rooms"}), "rooms", None), // no ref in, no ref out
        (json!({"type":"leave","room":"dev","ref":8}), "left", None),
        (
            json!({"type":"say","room":"dev","text":"x","ref":9}),
            "error",
            Some("not_in_room"),
        ),
        (
            json!({"type":"say","room":5,"ref":10}),
            "error",
            Some("bad_field"),
        ),
        (
            json!({"type":"nope","ref":11}),
            "error",
            Some("unknown_type"),
        ),
        (
            json!({"type":"say","room":"lobby","text":"","ref":12}),
            "error",
            Some("empty_text"),
        ),
        (
            json!({"type":"join","room":"","ref":13}),
            "error",
            Some("bad_room"),
        ),
        (
            json!({"type":"dm","to":"nobody","text":"x","ref":"14"}),
            "error",
            Some("no_such_user"),
        ),
        (
            json!({"type":"say","room":"lobby","text":"deep","ref":deep}),
            "message",
            None,
        ),
    ];
    // All requests go out before any answer is read: the answers must still line up.
    for (req, _, _) in &script {
        send_json(&mut alice, req);
    }
    for (req, ty, code) in &script {
        let answer = recv_json(&mut alice);
        assert_eq!(answer["type"], *ty, "answer to {req}: {answer}");
        assert_eq!(
            answer.get("ref"),
            req.get("ref"),
            "answer to {req}: {answer}"
        );
        if let Some(code) = code {
            assert_eq!(answer["code"], *code, "answer to {req}: {answer}");
        }
    }
    // Exactly one answer each: the next thing alice gets is a marker said afterwards.
    server.handle().say("lobby", "host", "marker").unwrap();
    assert_eq!(recv_json(&mut alice)["text"], "marker");

    // bob saw alice come and go and got her two messages, never with her ref.
    let seen: Vec<Value> = (0..4).map(|_| recv_json(&mut bob)).collect();
    assert_eq!(seen[0]["type"], "presence");
    assert_eq!(
        (&seen[1]["text"], &seen[2]["text"]),
        (&json!("hi"), &json!("psst"))
    );
    assert_eq!(
        (&seen[3]["type"], &seen[3]["event"]),
        (&json!("presence"), &json!("leave"))
    );
    for m in &seen {
        assert!(m.get("ref").is_none(), "bob got a ref: {m}");
    }
}

#[test]
fn a_ref_nested_too_deep_is_bad_json_without_ref() {
    let server = start(|_| {});
    let mut ws = chat_as(server.local_addr(), "alice", "lobby");
    send_json(&mut ws, &json!({"type":"rooms","ref":[[[[[[[[1]]]]]]]]}));
    let answer = recv_json(&mut ws);
    assert_eq!(
        (&answer["type"], &answer["code"]),
        (&json!("error"), &json!("bad_json"))
    );
    assert!(answer.get("ref").is_none(), "{answer}");
}

#[test]
fn answers_to_requests_sent_just_before_a_close_arrive_before_the_close() {
    let server = start(|_| {});
    let mut ws = chat_as(server.local_addr(), "alice", "lobby");
    for i in 0..10 {
        send_json(&mut ws, &json!({"type":"users","room":"lobby","ref":i}));
    }
    ws.close(None).unwrap();
    for i in 0..10 {
        let answer = recv_json(&mut ws);
        assert_eq!(
            (&answer["type"], &answer["ref"]),
            (&json!("users"), &json!(i))
        );
    }
    assert_eq!(
        expect_close(&mut ws),
        1005,
        "the server echoes our code-less Close"
    );
}
