//! Access tokens: 401 without or with a wrong token, query and Bearer both work, a token's
//! bound name cannot be changed, and SIGHUP adds and revokes tokens (revoked connections are
//! cut with 1008, others stay).

use crate::common::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::process::Command;
use tungstenite::Message;

fn status(addr: SocketAddr, path: &str, extra: &str) -> String {
    let answer = response_head(addr, upgrade_request(addr, path, extra).as_bytes());
    answer.get(9..12).unwrap_or("closed").to_string()
}

fn next_json(ws: &mut Client) -> Value {
    serde_json::from_str(&recv_text(ws)).unwrap()
}

#[test]
fn tokens_are_required_and_checked() {
    let server = start(|c| {
        c.tokens = vec![
            ("goodtoken".into(), None),
            ("alicetoken".into(), Some("alice".into())),
        ]
    });
    let addr = server.local_addr();
    assert_eq!(status(addr, "/", ""), "401");
    assert_eq!(status(addr, "/?token=wrong", ""), "401");
    assert_eq!(status(addr, "/?token=goodtoke", ""), "401");
    assert_eq!(status(addr, "/", "Authorization: Bearer nope\r\n"), "401");
    assert_eq!(status(addr, "/?token=goodtoken", ""), "101");
    assert_eq!(
        status(addr, "/echo", "Authorization: Bearer goodtoken\r\n"),
        "101"
    );
    let answer = response_head(addr, upgrade_request(addr, "/", "").as_bytes());
    assert!(answer.contains("WWW-Authenticate: Bearer"), "{answer}");
    // Pages stay public: only WebSocket upgrades need a token.
    assert_eq!(http_get(addr, "/").0, 200);
}

#[test]
fn a_bound_name_is_used_and_cannot_be_changed() {
    let server = start(|c| c.tokens = vec![("alicetoken".into(), Some("alice".into()))]);
    let addr = server.local_addr();
    // The URL asks for another name; the token's name wins.
    let mut ws = connect(addr, "/chat?token=alicetoken&name=mallory");
    let welcome = next_json(&mut ws);
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["name"], "alice");
    ws.send(Message::text(r#"{"type":"login","name":"bob","ref":1}"#))
        .unwrap();
    loop {
        let m = next_json(&mut ws);
        if m["type"] == "error" {
            assert_eq!(m["code"], "name_bound");
            assert_eq!(m["ref"], 1);
            break;
        }
        assert_ne!(m["type"], "welcome", "rename went through: {m}");
    }
}

#[test]
fn sighup_reloads_tokens_adding_and_revoking() {
    let dir = std::env::temp_dir().join(format!("wschat-tokens-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tokens");
    std::fs::write(&file, "# initial\ntokA\nkeep\n").unwrap();
    let (mut child, addr) = spawn_binary(&["--tokens", file.to_str().unwrap()]);

    let mut live_a = connect(addr, "/echo?token=tokA");
    let mut live_keep = connect(addr, "/echo?token=keep");
    assert_eq!(status(addr, "/?token=tokB", ""), "401");

    std::fs::write(&file, "tokB\nkeep\n").unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    assert!(
        wait_until(IO_TIMEOUT, || status(addr, "/?token=tokB", "") == "101"),
        "tokB was not added"
    );
    assert_eq!(status(addr, "/?token=tokA", ""), "401");
    // The connection opened with the revoked token is cut; the other one stays.
    assert_eq!(expect_close(&mut live_a), 1008);
    live_keep.send(Message::text("still here")).unwrap();
    assert_eq!(recv_text(&mut live_keep), "still here");

    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
