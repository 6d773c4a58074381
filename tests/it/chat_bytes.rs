//! Chat answers are bounded by bytes as sent, not only by counts: escaping makes a 4000-char
//! message of control characters a 24 KB delivery, and a `joined` with 50 of them was 1.2 MB
//! (past the 1 MiB slow-consumer backlog). Now `joined` and `history` pages stop at
//! `history_page_bytes` (256 KiB) of escaped messages, and the client pages on with `before`
//! and gets every message, without gaps.

use crate::common::*;
use serde_json::json;
use tungstenite::Message;

#[test]
fn joined_and_history_pages_are_bounded_by_escaped_bytes() {
    let server = start(|c| {
        c.chat_rate = 0.0;
        // An operator who keeps a lot of history per room: the page bound must still hold.
        c.chat.history_bytes_per_room = 8 * 1024 * 1024;
    });
    let addr = server.local_addr();
    let mut writer = chat_as(addr, "writer", "noisy");
    let text: String = "\u{1}".repeat(4000);
    let mut ids = Vec::new();
    for i in 0..50 {
        let answer = ask(
            &mut writer,
            json!({"type": "say", "room": "noisy", "text": text, "ref": i}),
        );
        assert_eq!(answer["type"], "message");
        ids.push(answer["id"].as_u64().unwrap());
    }

    // A newcomer's `joined`, read raw to measure it.
    let mut reader = connect(addr, "/chat?name=reader&room=noisy");
    let joined = loop {
        let Message::Text(t) = recv(&mut reader) else {
            panic!("expected text");
        };
        if t.contains("\"type\":\"joined\"") {
            break t;
        }
    };
    assert!(
        joined.len() <= 256 * 1024 + 4096,
        "joined is {} bytes",
        joined.len()
    );
    let joined: serde_json::Value = serde_json::from_str(&joined).unwrap();
    let history = joined["history"].as_array().unwrap();
    assert!(!history.is_empty() && history.len() < 50);
    let mut seen: Vec<u64> = history.iter().map(|m| m["id"].as_u64().unwrap()).collect();

    // Paging backwards from the oldest it got reaches every message, each page bounded.
    for r in 0..50 {
        let page = ask(
            &mut reader,
            json!({"type": "history", "room": "noisy", "before": seen[0], "limit": 200, "ref": 1000 + r}),
        );
        let size = page.to_string().len();
        assert!(size <= 256 * 1024 + 4096, "a history page of {size} bytes");
        let mut got: Vec<u64> = page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_u64().unwrap())
            .collect();
        got.extend(seen);
        seen = got;
        if page["more"] == false {
            break;
        }
    }
    assert_eq!(seen, ids, "every message once, in order, across the pages");
}
