//! A chat client that sends requests and then half-closes its socket (FIN, no Close frame)
//! still receives the answers to those requests before the server closes the connection.

use crate::common::*;
use serde_json::{Value, json};
use std::net::Shutdown;

#[test]
fn answers_reach_a_client_that_half_closed_after_asking() {
    let server = start(|_| {});
    let addr = server.local_addr();
    for round in 0..20 {
        let (mut ws, _welcome) = chat_connect(addr, &format!("?name=half{round}"));
        send_json(&mut ws, &json!({"type": "rooms", "ref": round}));
        send_json(
            &mut ws,
            &json!({"type": "users", "room": "lobby", "ref": "u"}),
        );
        ws.get_ref().shutdown(Shutdown::Write).unwrap();
        let mut answered = Vec::new();
        // Read until the server closes; both answers must have come before that.
        while let Ok(msg) = ws.read() {
            if let tungstenite::Message::Text(t) = msg {
                let v: Value = serde_json::from_str(&t).unwrap();
                if !v["ref"].is_null() {
                    answered.push(v["type"].as_str().unwrap().to_string());
                }
            }
        }
        assert_eq!(answered, ["rooms", "users"], "round {round}");
    }
}
