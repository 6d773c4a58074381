//! Subprotocol negotiation: the server names the first protocol the client offered that the
//! endpoint supports, never one that was not offered, and none when nothing matches (RFC 6455
//! 4.2.2; a browser then fails the connection, which is the right outcome for a client that
//! cannot speak any protocol the server knows).

use crate::common::*;
use std::net::SocketAddr;

fn chosen(addr: SocketAddr, path: &str, offer: Option<&str>) -> Option<String> {
    let extra = offer.map_or(String::new(), |o| {
        format!("Sec-WebSocket-Protocol: {o}\r\n")
    });
    let answer = response_head(addr, upgrade_request(addr, path, &extra).as_bytes());
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    let head = &answer[..answer.find("\r\n\r\n").unwrap()];
    head.lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Protocol: "))
        .map(String::from)
}

#[test]
fn negotiation_cases() {
    let server = start(|c| c.relay_protocol = Some("chat".into()));
    let addr = server.local_addr();
    // A browser's `new WebSocket(url, ["chat", "superchat"])`.
    assert_eq!(
        chosen(addr, "/", Some("chat, superchat")).as_deref(),
        Some("chat")
    );
    assert_eq!(
        chosen(addr, "/", Some("superchat, chat")).as_deref(),
        Some("chat")
    );
    assert_eq!(chosen(addr, "/", Some("superchat")), None);
    assert_eq!(chosen(addr, "/", None), None);
    assert_eq!(
        chosen(addr, "/echo", Some("echo-protocol")).as_deref(),
        Some("echo-protocol")
    );
    assert_eq!(chosen(addr, "/echo", Some("chat")), None);
    assert_eq!(
        chosen(addr, "/chat", Some("mqtt, wschat.v1")).as_deref(),
        Some("wschat.v1")
    );
    // Offers split across repeated headers count as one list.
    let extra = "Sec-WebSocket-Protocol: x\r\nSec-WebSocket-Protocol: chat\r\n";
    let answer = response_head(addr, upgrade_request(addr, "/", extra).as_bytes());
    assert!(
        answer.contains("Sec-WebSocket-Protocol: chat\r\n"),
        "{answer}"
    );
}

#[test]
fn relay_without_a_configured_protocol_names_none() {
    let server = start(|_| {});
    assert_eq!(
        chosen(server.local_addr(), "/", Some("chat, superchat")),
        None
    );
}
