//! The Origin check: a foreign Origin gets 403, the server's own origin, listed origins and
//! `*` are allowed, and requests without Origin (non-browser clients) are allowed.

use crate::common::*;
use std::net::SocketAddr;

fn status(addr: SocketAddr, extra: &str) -> String {
    let answer = response_head(addr, upgrade_request(addr, "/", extra).as_bytes());
    answer.get(9..12).unwrap_or("closed").to_string()
}

#[test]
fn foreign_origins_are_refused_by_default() {
    let server = start(|_| {});
    let addr = server.local_addr();
    assert_eq!(status(addr, "Origin: https://evil.example\r\n"), "403");
    assert_eq!(status(addr, "Origin: null\r\n"), "403");
    // Same host, other port: another origin.
    assert_eq!(status(addr, "Origin: http://127.0.0.1:1\r\n"), "403");
    // The page served by this server (upgrade_request sends Host: ADDR).
    assert_eq!(status(addr, &format!("Origin: http://{addr}\r\n")), "101");
    // No Origin: not a browser.
    assert_eq!(status(addr, ""), "101");
}

#[test]
fn listed_origins_and_star_are_allowed() {
    let server = start(|c| c.allowed_origins = vec!["https://app.example".into()]);
    let addr = server.local_addr();
    assert_eq!(status(addr, "Origin: https://app.example\r\n"), "101");
    assert_eq!(status(addr, "Origin: https://APP.example\r\n"), "101");
    assert_eq!(status(addr, "Origin: https://evil.example\r\n"), "403");

    let any = start(|c| c.allowed_origins = vec!["*".into()]);
    assert_eq!(
        status(any.local_addr(), "Origin: https://evil.example\r\n"),
        "101"
    );
}
