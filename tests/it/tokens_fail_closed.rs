//! Tokens fail closed: whether a token is required follows from the configuration, never from
//! how many were read. An empty or all-comment tokens file admits nobody, at start and after a
//! reload; `$WSCHAT_TOKENS` set to nothing admits nobody; an unreadable file keeps the old set.

use crate::common::*;
use std::net::SocketAddr;

fn status(addr: SocketAddr, path: &str) -> String {
    let answer = response_head(addr, upgrade_request(addr, path, "").as_bytes());
    answer.get(9..12).unwrap_or("closed").to_string()
}

#[test]
fn an_all_comment_tokens_file_admits_nobody_at_start() {
    let dir = TempDir::new("tokens-empty");
    let file = dir.0.join("tokens");
    std::fs::write(&file, "# nobody yet\n\n").unwrap();
    let server = start(|c| c.tokens_file = Some(file.clone()));
    let addr = server.local_addr();
    assert_eq!(status(addr, "/"), "401");
    assert_eq!(status(addr, "/chat"), "401");
    assert_eq!(status(addr, "/?token=%23"), "401");
}

#[test]
fn emptying_the_file_and_reloading_admits_nobody_and_an_unreadable_file_keeps_the_old_set() {
    let dir = TempDir::new("tokens-reload");
    let file = dir.0.join("tokens");
    std::fs::write(&file, "tokA alice\ntokB\n").unwrap();
    let server = start(|c| c.tokens_file = Some(file.clone()));
    let addr = server.local_addr();
    let handle = server.handle();
    assert_eq!(status(addr, "/"), "401");
    assert_eq!(status(addr, "/?token=tokB"), "101");

    // The recipe from the audit: HUP after writing only a comment.
    std::fs::write(&file, "# all revoked\n").unwrap();
    assert_eq!(handle.reload_tokens().unwrap(), 0);
    assert_eq!(status(addr, "/"), "401", "an empty set must admit nobody");
    assert_eq!(status(addr, "/?token=tokB"), "401");

    // A file that cannot be read keeps the set in force.
    std::fs::write(&file, "tokC\n").unwrap();
    assert_eq!(handle.reload_tokens().unwrap(), 1);
    std::fs::remove_file(&file).unwrap();
    assert!(handle.reload_tokens().is_err());
    assert_eq!(status(addr, "/?token=tokC"), "101");
    assert_eq!(status(addr, "/"), "401");
}

#[test]
fn wschat_tokens_set_to_nothing_admits_nobody() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wschat"))
        .args(["--addr", "127.0.0.1:0"])
        .env("WSCHAT_TOKENS", "")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr: Option<SocketAddr> = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok());
    let result = addr.map(|addr| (status(addr, "/"), status(addr, "/echo")));
    let _ = child.kill();
    let _ = child.wait();
    let (relay, echo) = result.unwrap_or_else(|| panic!("no address in {line:?}"));
    assert_eq!(relay, "401");
    assert_eq!(echo, "401");
}
