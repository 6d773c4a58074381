//! Room messages reach every member of their room, sender included, in both directions, and
//! nothing of them reaches a client in another room.

use crate::common::*;
use serde_json::json;

#[test]
fn two_members_chat_both_ways_and_another_room_sees_nothing() {
    let server = start(|_| {});
    let addr = server.local_addr();
    let mut alice = chat_as(addr, "alice", "dev");
    let mut bob = chat_as(addr, "bob", "dev");
    let mut carol = chat_as(addr, "carol", "ops");

    send_json(
        &mut alice,
        &json!({"type":"say","room":"dev","text":"hi bob"}),
    );
    for ws in [&mut alice, &mut bob] {
        let m = next_of_type(ws, "message");
        assert_eq!(
            (&m["room"], &m["from"], &m["text"]),
            (&json!("dev"), &json!("alice"), &json!("hi bob")),
            "{m}"
        );
    }
    send_json(
        &mut bob,
        &json!({"type":"say","room":"dev","text":"hi alice"}),
    );
    for ws in [&mut bob, &mut alice] {
        let m = next_of_type(ws, "message");
        assert_eq!(
            (&m["room"], &m["from"], &m["text"]),
            (&json!("dev"), &json!("bob"), &json!("hi alice")),
            "{m}"
        );
    }
    // Plain text goes to the current room (dev) like a `say`.
    bob.send(tungstenite::Message::text("plain hello")).unwrap();
    for ws in [&mut bob, &mut alice] {
        let m = next_of_type(ws, "message");
        assert_eq!(
            (&m["room"], &m["text"]),
            (&json!("dev"), &json!("plain hello"))
        );
    }

    // carol, in ops, must have seen none of it: a marker said in ops after the dev messages
    // is the very next thing she receives (one dispatcher orders everything it sends).
    server.handle().say("ops", "marker", "after dev").unwrap();
    let next = recv_json(&mut carol);
    assert_eq!(
        (&next["type"], &next["room"], &next["text"]),
        (&json!("message"), &json!("ops"), &json!("after dev")),
        "carol received something before the marker: {next}"
    );
    // And the marker in ops reached neither dev member: their next message is one said
    // after it in dev.
    server
        .handle()
        .say("dev", "marker", "dev after ops")
        .unwrap();
    for ws in [&mut alice, &mut bob] {
        let next = next_of_type(ws, "message");
        assert_eq!(next["text"], "dev after ops", "{next}");
    }
}
