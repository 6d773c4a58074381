//! The user list (`users`, `joined.users`) and `presence` events stay right through join,
//! leave, rename and a TCP connection dropped without a Close; nobody gets their own presence.

use crate::common::*;
use serde_json::{Value, json};

fn users(ws: &mut Client, room: &str, reference: u64) -> Value {
    let answer = ask(ws, json!({"type":"users","room":room,"ref":reference}));
    assert_eq!(answer["type"], "users", "{answer}");
    assert_eq!(answer["count"], answer["users"].as_array().unwrap().len());
    answer["users"].clone()
}

fn presence(room: &str, name: &str, event: &str) -> Value {
    json!({"type":"presence","room":room,"name":name,"event":event})
}

#[test]
fn users_and_presence_through_join_leave_rename_and_a_dropped_connection() {
    let server = start(|_| {});
    let addr = server.local_addr();
    let handle = server.handle();
    let mut alice = chat_as(addr, "alice", "dev");
    assert_eq!(users(&mut alice, "dev", 1), json!(["alice"]));

    // Join by URL: the newcomer's `joined` lists both, the member gets `presence join`.
    let mut bob = connect(addr, "/chat?name=bob&room=dev");
    assert_eq!(recv_json(&mut bob)["type"], "welcome");
    let joined = recv_json(&mut bob);
    assert_eq!(joined["type"], "joined", "{joined}");
    assert_eq!(joined["users"], json!(["alice", "bob"]));
    assert_eq!(joined["count"], 2);
    assert_eq!(recv_json(&mut alice), presence("dev", "bob", "join"));

    // Join by request, as a guest from the lobby; then a rename.
    let (mut carol, welcome) = chat_connect(addr, "");
    let guest = welcome["name"].as_str().unwrap().to_string();
    assert!(guest.starts_with("guest-"), "{welcome}");
    let joined = ask(&mut carol, json!({"type":"join","room":"dev","ref":"j"}));
    assert_eq!(joined["users"], json!(["alice", "bob", guest]), "{joined}");
    assert_eq!(recv_json(&mut alice), presence("dev", &guest, "join"));
    assert_eq!(recv_json(&mut bob), presence("dev", &guest, "join"));

    let welcome = ask(&mut carol, json!({"type":"login","name":"carol","ref":"l"}));
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["name"], "carol");
    assert_eq!(welcome["rooms"], json!(["lobby", "dev"]));
    let mut rename = presence("dev", "carol", "rename");
    rename["old"] = json!(guest);
    assert_eq!(recv_json(&mut alice), rename);
    assert_eq!(recv_json(&mut bob), rename);
    assert_eq!(
        users(&mut alice, "dev", 2),
        json!(["alice", "bob", "carol"])
    );
    assert_eq!(users(&mut carol, "lobby", 3), json!(["carol"]));

    // Leave: the leaver gets `left`, the others `presence leave`.
    let left = ask(&mut bob, json!({"type":"leave","room":"dev","ref":"x"}));
    assert_eq!(left, json!({"type":"left","room":"dev","ref":"x"}));
    assert_eq!(recv_json(&mut alice), presence("dev", "bob", "leave"));
    assert_eq!(
        next_of_type(&mut carol, "presence"),
        presence("dev", "bob", "leave")
    );
    assert_eq!(users(&mut alice, "dev", 4), json!(["alice", "carol"]));

    // carol's socket goes away without a Close frame: her rooms get `presence leave`.
    carol.get_mut().shutdown(std::net::Shutdown::Both).unwrap();
    drop(carol);
    assert_eq!(recv_json(&mut alice), presence("dev", "carol", "leave"));
    assert_eq!(users(&mut alice, "dev", 5), json!(["alice"]));
    assert_eq!(users(&mut alice, "lobby", 6), json!([]));
    assert!(wait_until(IO_TIMEOUT, || handle.chat_user_count() == 2));

    // bob, out of dev, heard none of that: his next message is the answer to his request.
    send_json(&mut bob, &json!({"type":"users","room":"dev","ref":7}));
    assert_eq!(
        recv_json(&mut bob),
        json!({"type":"users","room":"dev","users":["alice"],"count":1,"ref":7})
    );
    // And alice never got her own presence: after all the above her queue holds nothing
    // but what the marker proves.
    handle.say("dev", "marker", "end").unwrap();
    assert_eq!(recv_json(&mut alice)["text"], "end");
}
