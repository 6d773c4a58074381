//! `POST /api/publish`: refused without a configured key (403) and without the right key
//! (401); with it, text reaches a relay channel, or a chat room and its history.

use crate::common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

/// One request on its own connection, read to the end (`Connection: close`: HTTP/1.1 keeps a
/// connection open by default).
fn post(addr: SocketAddr, auth: Option<&str>, body: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let auth = auth.map_or(String::new(), |a| format!("{a}\r\n"));
    let request = format!(
        "POST /api/publish HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let json = out.split("\r\n\r\n").nth(1).unwrap();
    (status, serde_json::from_str(json).unwrap())
}

#[test]
fn refused_when_no_key_is_configured() {
    let server = start(|_| {});
    let (status, body) = post(
        server.local_addr(),
        Some("X-API-Key: x"),
        r#"{"text":"hi"}"#,
    );
    assert_eq!(status, 403);
    assert_eq!(body["ok"], false);
}

#[test]
fn publishes_to_relay_and_chat_with_the_key() {
    let server = start(|c| c.api_key = Some("sekrit".into()));
    let addr = server.local_addr();
    assert_eq!(post(addr, None, r#"{"text":"hi"}"#).0, 401);
    assert_eq!(
        post(addr, Some("X-API-Key: wrong"), r#"{"text":"hi"}"#).0,
        401
    );

    let mut relay = connect(addr, "/relay/alerts");
    assert!(wait_until(IO_TIMEOUT, || server
        .handle()
        .connection_count()
        == 1));
    let (status, body) = post(
        addr,
        Some("Authorization: Bearer sekrit"),
        r#"{"channel":"alerts","text":"disk full"}"#,
    );
    assert_eq!((status, body["ok"].as_bool()), (200, Some(true)));
    assert_eq!(recv_text(&mut relay), "disk full");

    let (status, body) = post(
        addr,
        Some("X-API-Key: sekrit"),
        r#"{"room":"ops","from":"ci","text":"deploy done"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_u64().unwrap();
    let mut chat = connect(addr, "/chat?room=ops");
    loop {
        let v: Value = serde_json::from_str(&recv_text(&mut chat)).unwrap();
        if v["type"] == "joined" && v["room"] == "ops" {
            assert_eq!(v["history"][0]["id"], id);
            assert_eq!(v["history"][0]["from"], "ci");
            assert_eq!(v["history"][0]["text"], "deploy done");
            break;
        }
    }
    let (status, _) = post(
        addr,
        Some("X-API-Key: sekrit"),
        r#"{"channel":"bad/name","text":"x"}"#,
    );
    assert_eq!(status, 400);
    let (status, _) = post(addr, Some("X-API-Key: sekrit"), "not json");
    assert_eq!(status, 400);
}
