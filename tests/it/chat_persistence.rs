//! With a data directory, the real binary killed with SIGKILL comes back with the rooms'
//! history identical (byte for byte) and hands out ids above every id it handed out before,
//! DMs included; a second kill after more messages keeps those too.

use crate::common::*;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::process::Child;

/// Kills the server process when dropped, so that a failing test leaves nothing running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(dir: &TempDir) -> (Running, SocketAddr) {
    let dir = dir.0.to_str().unwrap();
    // Rate limit off: the test sends more than a burst.
    let (child, addr) = spawn_binary(&["--data-dir", dir, "--chat-rate", "0"]);
    (Running(child), addr)
}

fn kill_9(server: Running) {
    let pid = server.0.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    drop(server); // reaps it
}

/// The full `history` answers for `rooms` (everything kept fits one 200-message page).
fn histories(addr: SocketAddr, rooms: &[&str]) -> Vec<Value> {
    let (mut ws, _) = chat_connect(addr, "name=auditor&room=audit");
    rooms
        .iter()
        .map(|room| {
            let answer = ask(
                &mut ws,
                json!({"type":"history","room":room,"limit":200,"ref":room}),
            );
            assert_eq!(answer["type"], "history", "{answer}");
            assert_eq!(answer["more"], false);
            answer
        })
        .collect()
}

fn ids(history: &Value) -> Vec<u64> {
    let messages = history["messages"].as_array().unwrap();
    messages.iter().map(|m| m["id"].as_u64().unwrap()).collect()
}

/// Says `n` messages as `ws` in `room`, each acknowledged (a message is delivered only after
/// it is written to the log); returns the largest id.
fn say_acked(ws: &mut Client, room: &str, n: usize, tag: &str) -> u64 {
    let mut last = 0;
    for i in 0..n {
        // Text that JSON must escape, to check it comes back byte for byte.
        let text = format!("{tag} {i}: \"quoted\" \\ new\nline 🦀 <b>&amp;</b>");
        let own = ask(ws, json!({"type":"say","room":room,"text":text,"ref":i}));
        assert_eq!(own["text"], text.as_str(), "{own}");
        last = own["id"].as_u64().unwrap();
    }
    last
}

#[test]
fn history_survives_sigkill_and_ids_only_grow() {
    let dir = TempDir::new("persist");
    let rooms = ["dev", "ops"];

    let (server, addr) = serve(&dir);
    let mut alice = chat_as(addr, "alice", "dev");
    let mut bob = chat_as(addr, "bob", "ops");
    say_acked(&mut alice, "dev", 60, "a");
    say_acked(&mut bob, "ops", 30, "b");
    // A DM takes an id but is not stored: its id must not come back either.
    let dm = ask(
        &mut alice,
        json!({"type":"dm","to":"bob","text":"secret","ref":"dm"}),
    );
    let dm_id = dm["id"].as_u64().unwrap();
    let before = histories(addr, &rooms);
    assert_eq!(ids(&before[0]).len(), 60);
    assert_eq!(ids(&before[1]).len(), 30);
    kill_9(server);

    let (server, addr) = serve(&dir);
    let after = histories(addr, &rooms);
    assert_eq!(after, before, "history changed across kill -9");
    let mut carol = chat_as(addr, "carol", "dev");
    let first_new = ask(
        &mut carol,
        json!({"type":"say","room":"dev","text":"back","ref":1}),
    );
    let first_new = first_new["id"].as_u64().unwrap();
    let old_max = ids(&before[0])
        .into_iter()
        .chain(ids(&before[1]))
        .max()
        .unwrap();
    assert!(old_max < dm_id, "the DM came last");
    assert!(first_new > dm_id, "id {first_new} reused (DM had {dm_id})");

    // Messages said after the restart survive the next kill too, after the old ones.
    ask(&mut carol, json!({"type":"join","room":"ops","ref":"j"}));
    let last_new = say_acked(&mut carol, "ops", 10, "c");
    let before = histories(addr, &rooms);
    kill_9(server);
    let (server, addr) = serve(&dir);
    let after = histories(addr, &rooms);
    assert_eq!(after, before, "history changed across the second kill -9");
    let ops = ids(&after[1]);
    assert_eq!(ops.len(), 40);
    assert_eq!(*ops.last().unwrap(), last_new);
    let mut dave = chat_as(addr, "dave", "dev");
    let next = ask(
        &mut dave,
        json!({"type":"say","room":"dev","text":"again","ref":1}),
    );
    assert!(next["id"].as_u64().unwrap() > last_new);
    drop(server);
}
