//! Who the client is, behind a reverse proxy or not: v4-mapped peers are canonical (a proxy on
//! 127.0.0.1 seen by a server bound to `[::]` is loopback), a `--trusted-proxy`'s
//! `X-Forwarded-For` / `Forwarded` names the client for the per-IP cap and the admission hook
//! (IPv6 clients counted per /64), anyone else's is ignored, and `--allowed-host` refuses
//! requests for other host names (DNS rebinding).

use crate::common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};

/// Sends an upgrade request with `extra` header lines and keeps the connection open; returns
/// the status code and the stream.
fn upgrade_held(addr: SocketAddr, extra: &str) -> (String, TcpStream) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(upgrade_request(addr, "/", extra).as_bytes())
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let status = String::from_utf8_lossy(&head)
        .get(9..12)
        .unwrap_or("closed")
        .to_string();
    (status, s)
}

fn xff(ip: &str) -> String {
    format!("X-Forwarded-For: {ip}\r\n")
}

#[test]
fn a_v4_mapped_loopback_proxy_is_loopback() {
    // Bound to [::]: connections from 127.0.0.1 arrive as ::ffff:127.0.0.1.
    let mut config = wschat::Config::default();
    config.addr = "[::]:0".parse().unwrap();
    config.max_per_ip = 2;
    let server = match wschat::Server::bind(config) {
        Ok(s) => s,
        Err(e) => panic!("this test needs IPv6 sockets (dual stack): {e}"),
    };
    let addr: SocketAddr = format!("127.0.0.1:{}", server.local_addr().port())
        .parse()
        .unwrap();
    let held: Vec<_> = (0..5).map(|_| upgrade_held(addr, "")).collect();
    for (status, _) in &held {
        assert_eq!(status, "101", "a loopback proxy's connections are exempt");
    }
}

#[test]
fn a_trusted_proxy_names_the_client_for_the_cap_and_the_hook() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut config = wschat::Config::default();
    config.addr = "127.0.0.1:0".parse().unwrap();
    config.max_per_ip = 2;
    config.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let recorder = seen.clone();
    let server = wschat::Server::builder(config)
        .admit(move |req| {
            recorder.lock().unwrap().push(req.peer().ip());
            Ok(())
        })
        .bind()
        .unwrap();
    let addr = server.local_addr();
    let a1 = upgrade_held(addr, &xff("203.0.113.5"));
    let a2 = upgrade_held(addr, &xff("6.6.6.6, 203.0.113.5"));
    let a3 = upgrade_held(addr, &xff("203.0.113.5"));
    assert_eq!((a1.0.as_str(), a2.0.as_str()), ("101", "101"));
    assert_eq!(
        a3.0, "503",
        "the third connection of one client is over its cap"
    );
    // Another client behind the same proxy has its own places (RFC 7239 form here).
    let b = upgrade_held(addr, "Forwarded: for=\"198.51.100.7:1234\"\r\n");
    assert_eq!(b.0, "101");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            "203.0.113.5".parse::<std::net::IpAddr>().unwrap(),
            "203.0.113.5".parse().unwrap(),
            "198.51.100.7".parse().unwrap()
        ],
        "the admission hook sees the forwarded clients"
    );
    // IPv6 clients count per /64.
    let v1 = upgrade_held(addr, &xff("2001:db8:1:2::1"));
    let v2 = upgrade_held(addr, &xff("2001:db8:1:2:ffff::9"));
    let v3 = upgrade_held(addr, &xff("2001:db8:1:2::abcd"));
    let other = upgrade_held(addr, &xff("2001:db8:1:3::1"));
    assert_eq!(
        [v1.0, v2.0, v3.0, other.0],
        ["101", "101", "503", "101"].map(String::from)
    );
}

#[test]
fn forwarded_headers_from_anyone_else_are_ignored() {
    let server = start(|c| {
        c.max_per_ip = 2;
        c.limit_loopback = true; // count the loopback peer itself
    });
    let addr = server.local_addr();
    let held: Vec<_> = ["1.1.1.1", "2.2.2.2", "3.3.3.3"]
        .iter()
        .map(|ip| upgrade_held(addr, &xff(ip)))
        .collect();
    let statuses: Vec<&str> = held.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        statuses,
        ["101", "101", "503"],
        "forged headers bought no places"
    );
}

#[test]
fn allowed_host_refuses_other_host_names() {
    let server = start(|c| c.allowed_hosts = vec!["chat.home".into()]);
    let addr = server.local_addr();
    let port = addr.port();
    // The rebinding attack: the page's own origin, the server's address.
    let evil = format!("Host: evil.example:{port}\r\nOrigin: http://evil.example:{port}\r\n");
    let request = |host_lines: &str| {
        format!(
            "GET / HTTP/1.1\r\n{host_lines}Upgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    };
    let status = |req: String| {
        let answer = response_head(addr, req.as_bytes());
        answer.get(9..12).unwrap_or("closed").to_string()
    };
    assert_eq!(status(request(&evil)), "403");
    assert_eq!(
        status(format!(
            "GET /metrics HTTP/1.1\r\nHost: evil.example:{port}\r\n\r\n"
        )),
        "403",
        "pages too: /metrics must not be readable through a rebound name"
    );
    let good = format!("Host: chat.home:{port}\r\nOrigin: http://chat.home:{port}\r\n");
    assert_eq!(status(request(&good)), "101");
    assert_eq!(
        status("GET /healthz HTTP/1.1\r\nHost: CHAT.home\r\nConnection: close\r\n\r\n".into()),
        "200"
    );
}
