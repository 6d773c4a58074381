//! Malformed input of every kind (bad JSON, wrong types, missing fields, unknown types, deep
//! nesting, binary frames, over-long text) gets an `error` with its documented code, with the
//! request's `ref` when it got far enough to have one; a frame over 64 KiB gets Close 1009;
//! the sender can go on, and the server keeps serving the others.

use crate::common::*;
use serde_json::json;
use tungstenite::Message;

/// (frame, expected code, ref the error must carry)
fn cases() -> Vec<(String, &'static str, Option<serde_json::Value>)> {
    let deep = format!(
        "{{\"type\":\"rooms\",\"x\":{}1{}}}",
        "[".repeat(8),
        "]".repeat(8)
    );
    let very_deep = format!("{{\"a\":{}", "[".repeat(60_000));
    let long_text = "x".repeat(4001);
    let r = |v: serde_json::Value| Some(v);
    vec![
        // Not JSON, or not one object.
        ("{".into(), "bad_json", None),
        ("{\"type\":\"say\",}".into(), "bad_json", None),
        ("{\"type\":'rooms'}".into(), "bad_json", None),
        ("{\"type\":\"rooms\"} trailing".into(), "bad_json", None),
        (
            "{\"type\":\"rooms\"}{\"type\":\"rooms\"}".into(),
            "bad_json",
            None,
        ),
        (
            "{\"type\":\"history\",\"room\":\"lobby\",\"limit\":1e999}".into(),
            "bad_json",
            None,
        ),
        ("{\"text\":\"\\ud800\"}".into(), "bad_json", None),
        // Too deep: the request object plus 8 arrays; and 60 000 of them.
        (deep, "bad_json", None),
        (very_deep, "bad_json", None),
        // No type, a type that is not a string, an unknown or upper-case type.
        (r#"{"ref":1}"#.into(), "unknown_type", r(json!(1))),
        (r#"{"type":5,"ref":2}"#.into(), "unknown_type", r(json!(2))),
        (
            r#"{"type":null,"ref":3}"#.into(),
            "unknown_type",
            r(json!(3)),
        ),
        (
            r#"{"type":"shout","ref":4}"#.into(),
            "unknown_type",
            r(json!(4)),
        ),
        (
            r#"{"type":"SAY","room":"lobby","text":"x","ref":5}"#.into(),
            "unknown_type",
            r(json!(5)),
        ),
        // Missing fields.
        (
            r#"{"type":"say","room":"lobby","ref":6}"#.into(),
            "bad_field",
            r(json!(6)),
        ),
        (
            r#"{"type":"say","text":"x","ref":7}"#.into(),
            "bad_field",
            r(json!(7)),
        ),
        (
            r#"{"type":"dm","text":"x","ref":8}"#.into(),
            "bad_field",
            r(json!(8)),
        ),
        (
            r#"{"type":"join","ref":9}"#.into(),
            "bad_field",
            r(json!(9)),
        ),
        (
            r#"{"type":"login","ref":10}"#.into(),
            "bad_field",
            r(json!(10)),
        ),
        (
            r#"{"type":"history","ref":11}"#.into(),
            "bad_field",
            r(json!(11)),
        ),
        // Wrong JSON types.
        (
            r#"{"type":"say","room":5,"text":"x","ref":12}"#.into(),
            "bad_field",
            r(json!(12)),
        ),
        (
            r#"{"type":"say","room":"lobby","text":null,"ref":13}"#.into(),
            "bad_field",
            r(json!(13)),
        ),
        (
            r#"{"type":"join","room":["lobby"],"ref":14}"#.into(),
            "bad_field",
            r(json!(14)),
        ),
        (
            r#"{"type":"login","name":{"n":1},"ref":15}"#.into(),
            "bad_field",
            r(json!(15)),
        ),
        (
            r#"{"type":"history","room":"lobby","limit":-1,"ref":16}"#.into(),
            "bad_field",
            r(json!(16)),
        ),
        (
            r#"{"type":"history","room":"lobby","limit":1.5,"ref":17}"#.into(),
            "bad_field",
            r(json!(17)),
        ),
        (
            r#"{"type":"history","room":"lobby","before":"10","ref":18}"#.into(),
            "bad_field",
            r(json!(18)),
        ),
        // Text limits.
        (
            json!({"type":"say","room":"lobby","text":long_text,"ref":19}).to_string(),
            "too_long",
            r(json!(19)),
        ),
        (
            json!({"type":"say","room":"lobby","text":"","ref":20}).to_string(),
            "empty_text",
            r(json!(20)),
        ),
        (
            json!({"type":"say","room":"nowhere","text":"x","ref":21}).to_string(),
            "not_in_room",
            r(json!(21)),
        ),
    ]
}

#[test]
fn every_kind_of_malformed_request_gets_its_error_code() {
    let server = start(|c| c.chat_rate = 0.0); // more requests than a burst
    let addr = server.local_addr();
    let mut bystander = chat_as(addr, "bystander", "lobby");
    let mut ws = chat_as(addr, "mallory", "lobby");
    next_of_type(&mut bystander, "presence");

    for (frame, code, reference) in cases() {
        let shown: String = frame.chars().take(80).collect();
        ws.send(Message::text(frame)).unwrap();
        let answer = recv_json(&mut ws);
        assert_eq!(
            (&answer["type"], &answer["code"]),
            (&json!("error"), &json!(code)),
            "{shown}: {answer}"
        );
        assert_eq!(answer.get("ref"), reference.as_ref(), "{shown}: {answer}");
    }
    ws.send(Message::binary(b"{\"type\":\"rooms\"}".to_vec()))
        .unwrap();
    let answer = recv_json(&mut ws);
    assert_eq!(answer["code"], "binary_not_supported", "{answer}");

    // Nothing closed mallory, and nothing of it reached the bystander: mallory's next
    // message is the first thing the bystander receives.
    let own = ask(
        &mut ws,
        json!({"type":"say","room":"lobby","text":"ok now","ref":"x"}),
    );
    assert_eq!(own["type"], "message", "{own}");
    let seen = recv_json(&mut bystander);
    assert_eq!(
        (&seen["from"], &seen["text"]),
        (&json!("mallory"), &json!("ok now")),
        "{seen}"
    );
}

#[test]
fn a_megabyte_of_json_is_closed_with_1009_and_the_server_goes_on() {
    let server = start(|_| {});
    let addr = server.local_addr();
    let mut bystander = chat_as(addr, "bystander", "lobby");
    let mut big = chat_as(addr, "big", "lobby");
    next_of_type(&mut bystander, "presence");

    let text = "x".repeat(1024 * 1024);
    let frame = json!({"type":"say","room":"lobby","text":text}).to_string();
    // The server may stop reading once it has refused the frame; a failed send is fine.
    let _ = big.send(Message::text(frame));
    assert_eq!(close_code_after_data(&mut big), 1009);

    // The oversized sender left; the bystander heard nothing of its text and still chats.
    let leave = recv_json(&mut bystander);
    assert_eq!(
        (&leave["name"], &leave["event"]),
        (&json!("big"), &json!("leave")),
        "{leave}"
    );
    let own = ask(
        &mut bystander,
        json!({"type":"say","room":"lobby","text":"still up","ref":1}),
    );
    assert_eq!(own["text"], "still up");
    let (_late, welcome) = chat_connect(addr, "name=late");
    assert_eq!(welcome["name"], "late");
}
