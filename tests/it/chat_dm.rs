//! A direct message reaches exactly its two parties (the sender's copy with its `ref`), even
//! when others share a room with them; a DM to a name nobody connected has gets
//! `no_such_user`.

use crate::common::*;
use serde_json::json;

#[test]
fn a_dm_reaches_only_its_two_parties() {
    let server = start(|_| {});
    let addr = server.local_addr();
    let handle = server.handle();
    let mut alice = chat_as(addr, "alice", "dev");
    let mut bob = chat_as(addr, "bob", "dev");
    let mut carol = chat_as(addr, "carol", "dev");
    let room_id = handle.say("dev", "host", "before").unwrap();
    for ws in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(next_of_type(ws, "message")["id"], room_id);
    }

    // Recipient named in another case: delivered, `to` spelled as the recipient is named.
    let own = ask(
        &mut alice,
        json!({"type":"dm","to":"BOB","text":"psst","ref":"d1"}),
    );
    assert_eq!(own["type"], "message", "{own}");
    assert_eq!(
        (&own["to"], &own["from"], &own["text"]),
        (&json!("bob"), &json!("alice"), &json!("psst"))
    );
    assert!(own.get("room").is_none(), "{own}");
    assert!(
        own["id"].as_u64().unwrap() > room_id,
        "DMs share the id counter"
    );
    let got = recv_json(&mut bob);
    let mut expected = own.clone();
    expected.as_object_mut().unwrap().remove("ref");
    assert_eq!(
        got, expected,
        "bob gets the same message without alice's ref"
    );

    // bob answers without a ref: both copies are identical.
    send_json(&mut bob, &json!({"type":"dm","to":"alice","text":"what?"}));
    let to_bob = recv_json(&mut bob);
    assert_eq!(recv_json(&mut alice), to_bob);
    assert_eq!(
        (&to_bob["to"], &to_bob["from"]),
        (&json!("alice"), &json!("bob"))
    );

    // A DM to oneself arrives once.
    let own = ask(
        &mut carol,
        json!({"type":"dm","to":"carol","text":"note","ref":5}),
    );
    assert_eq!(
        (&own["to"], &own["from"]),
        (&json!("carol"), &json!("carol"))
    );

    // carol, in the same room, saw neither DM: a marker in the room is next for everyone.
    handle.say("dev", "host", "marker").unwrap();
    for ws in [&mut alice, &mut bob, &mut carol] {
        let next = recv_json(ws);
        assert_eq!(
            (&next["type"], &next["text"]),
            (&json!("message"), &json!("marker")),
            "{next}"
        );
    }
}

#[test]
fn a_dm_to_an_unknown_user_gets_no_such_user() {
    let server = start(|_| {});
    let addr = server.local_addr();
    let mut alice = chat_as(addr, "alice", "lobby");
    let bob = chat_as(addr, "bob", "lobby");
    next_of_type(&mut alice, "presence");
    for (i, to) in ["dave", "", "guest-999", "x\ny", "bobby"]
        .into_iter()
        .enumerate()
    {
        let answer = ask(
            &mut alice,
            json!({"type":"dm","to":to,"text":"hello?","ref":i}),
        );
        assert_eq!(
            (&answer["type"], &answer["code"]),
            (&json!("error"), &json!("no_such_user")),
            "{to:?}: {answer}"
        );
    }
    // A user who has gone is unknown again.
    drop(bob);
    assert_eq!(next_of_type(&mut alice, "presence")["event"], "leave");
    let answer = ask(
        &mut alice,
        json!({"type":"dm","to":"bob","text":"still there?","ref":"g"}),
    );
    assert_eq!(answer["code"], "no_such_user", "{answer}");
}
