//! A token in a request target never reaches the log: the real binary at `RUST_LOG=trace`,
//! asked for `/?token=SECRET123` (twice on one keep-alive connection), upgraded at
//! `/chat?token=SECRET123` (accepted) and `/chat?token=SECRET456` (refused, 401), and with
//! `Authorization: Bearer SECRET123`, writes neither secret anywhere in its stderr.

use crate::common::*;
use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn tokens_in_targets_are_not_logged() {
    let dir = TempDir::new("log-redaction");
    let tokens = dir.0.join("tokens");
    std::fs::write(&tokens, "SECRET123 carol\n").unwrap();
    let log_path = dir.0.join("stderr.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wschat"));
    cmd.args(["--addr", "127.0.0.1:0", "--tokens"])
        .arg(&tokens)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap());
    let mut server = Running(cmd.spawn().unwrap());
    let mut line = String::new();
    std::io::BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: std::net::SocketAddr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));

    // The page with a token, twice on one connection: the second request head is read by the
    // keep-alive loop of web.rs, the first by accept.rs.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let get = |close: bool| {
        format!(
            "GET /?token=SECRET123&backoff=100 HTTP/1.1\r\nHost: {addr}\r\n{}\r\n",
            if close { "Connection: close\r\n" } else { "" }
        )
    };
    s.write_all(format!("{}{}", get(false), get(true)).as_bytes())
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out);
    assert_eq!(
        text.matches("HTTP/1.1 200").count(),
        2,
        "two pages: {text:.200}"
    );

    // Upgrades: accepted in the query, accepted as a header, refused in the query.
    let (mut ws, welcome) = chat_connect(addr, "token=SECRET123");
    assert_eq!(welcome["name"], "carol", "{welcome}");
    ws.close(None).unwrap();
    let head = response_head(
        addr,
        upgrade_request(addr, "/relay/x", "Authorization: Bearer SECRET123\r\n").as_bytes(),
    );
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let head = response_head(
        addr,
        upgrade_request(addr, "/chat?token=SECRET456", "").as_bytes(),
    );
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");

    // Every request above was logged (redacted) before we look for the secrets: four request
    // lines with a redacted token, and the refusal of the bad one.
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let logged = wait_until(Duration::from_secs(10), || {
        let l = log();
        l.matches("token=REDACTED").count() >= 4 && l.contains("access token refused")
    });
    let l = log();
    assert!(
        logged,
        "expected redacted request lines in the trace log:\n{l}"
    );
    assert!(!l.contains("SECRET123"), "a token in the log:\n{l}");
    assert!(!l.contains("SECRET456"), "a refused token in the log:\n{l}");
}
