//! The data directory: one server per directory (the second refuses to start with a clear
//! error), private files (0600, the directory 0700 when wschat creates it), and a full disk:
//! the chat goes on, no partial copy is left behind, `/metrics` says so, and once space is back
//! the log is rewritten by itself, so after a kill -9 the history holds every message once.

use crate::common::*;
use serde_json::{Value, json};
use std::io::BufRead;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[test]
fn a_second_server_on_the_same_data_dir_refuses_to_start() {
    let tmp = TempDir::new("data-lock");
    let dir = tmp.0.join("data");
    let first = start(|c| c.chat.data_dir = Some(dir.clone()));
    let mut config = wschat::Config::default();
    config.addr = "127.0.0.1:0".parse().unwrap();
    config.chat.data_dir = Some(dir.clone());
    let second = wschat::Server::bind(config);
    let err = match second {
        Ok(_) => panic!("two servers share {}", dir.display()),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("in use by another wschat server"),
        "unclear error: {err}"
    );
    drop(first);
    // Once the first is gone, the directory is free again.
    let mut config = wschat::Config::default();
    config.addr = "127.0.0.1:0".parse().unwrap();
    config.chat.data_dir = Some(dir);
    wschat::Server::bind(config).expect("the lock is released with its server");
}

#[test]
fn the_log_and_a_directory_wschat_creates_are_private() {
    let tmp = TempDir::new("data-perms");
    let dir = tmp.0.join("new").join("data");
    let server = start(|c| c.chat.data_dir = Some(dir.clone()));
    let mut alice = chat_as(server.local_addr(), "alice", "lobby");
    let answer = ask(
        &mut alice,
        json!({"type": "say", "room": "lobby", "text": "private", "ref": 1}),
    );
    assert_eq!(answer["type"], "message");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.join("chat.log")), 0o600);
    assert_eq!(mode(&dir), 0o700);
}

/// Makes `write(2)` on regular files fail with ENOSPC while the file named by
/// `WSCHAT_TEST_FULL_FLAG` exists: a full disk that can be filled and emptied at will.
const FULL_DISK_SHIM: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
static int full(int fd) {
    const char *flag = getenv("WSCHAT_TEST_FULL_FLAG");
    struct stat st;
    return flag && access(flag, F_OK) == 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}
ssize_t write(int fd, const void *buf, size_t n) {
    static ssize_t (*real)(int, const void *, size_t);
    if (!real) real = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    if (full(fd)) { errno = ENOSPC; return -1; }
    return real(fd, buf, n);
}
"#;

fn build_shim(dir: &Path) -> PathBuf {
    let src = dir.join("fulldisk.c");
    let lib = dir.join("fulldisk.so");
    std::fs::write(&src, FULL_DISK_SHIM).unwrap();
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&lib)
        .arg(&src)
        .arg("-ldl")
        .status()
        .expect("a C compiler (cc) is needed for this test");
    assert!(status.success());
    lib
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(data: &Path, shim: Option<(&Path, &Path)>) -> (Running, SocketAddr) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wschat"));
    cmd.args(["--addr", "127.0.0.1:0", "--chat-rate", "0", "--data-dir"])
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some((lib, flag)) = shim {
        cmd.env("LD_PRELOAD", lib)
            .env("WSCHAT_TEST_FULL_FLAG", flag);
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (Running(child), addr)
}

fn metric_of(addr: SocketAddr, name: &str) -> u64 {
    let (_, _, body) = http_get(addr, "/metrics");
    String::from_utf8(body)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[test]
fn a_full_disk_is_survived_and_healed_without_losing_or_duplicating_a_message() {
    let tmp = TempDir::new("data-full");
    let shim = build_shim(&tmp.0);
    let flag = tmp.0.join("disk-is-full");
    let data = tmp.0.join("data");
    let (server, addr) = serve(&data, Some((&shim, &flag)));
    let mut alice = chat_as(addr, "alice", "lobby");
    let say = |ws: &mut Client, text: &str, r: u64| -> u64 {
        let answer = ask(
            ws,
            json!({"type": "say", "room": "lobby", "text": text, "ref": r}),
        );
        assert_eq!(answer["type"], "message", "{answer}");
        answer["id"].as_u64().unwrap()
    };
    let mut ids = vec![say(&mut alice, "before", 1)];

    // The disk fills up: messages still go through (the log is rewritten from memory later).
    std::fs::write(&flag, b"").unwrap();
    ids.push(say(&mut alice, "while full 1", 2));
    ids.push(say(&mut alice, "while full 2", 3));
    assert!(metric_of(addr, "wschat_chat_commit_failures_total") >= 1);
    assert_eq!(metric_of(addr, "wschat_chat_log_failing"), 1);
    assert!(
        !data.join("chat.log.tmp").exists(),
        "a partial copy was left behind"
    );

    // Space comes back: the worker retries by itself (back-off), nobody needs to talk.
    std::fs::remove_file(&flag).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || metric_of(
            addr,
            "wschat_chat_log_failing"
        ) == 0),
        "the log was not rewritten once space returned"
    );
    ids.push(say(&mut alice, "after", 4));
    drop(alice);

    // kill -9, restart without the shim: every message once, with its id.
    drop(server);
    let (_server, addr) = serve(&data, None);
    let (mut reader, _) = chat_connect(addr, "name=reader&room=lobby");
    let history = ask(
        &mut reader,
        json!({"type": "history", "room": "lobby", "limit": 200, "ref": 9}),
    );
    let got: Vec<(u64, String)> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m: &Value| {
            (
                m["id"].as_u64().unwrap(),
                m["text"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let texts = ["before", "while full 1", "while full 2", "after"];
    let expected: Vec<(u64, String)> = ids
        .iter()
        .zip(texts)
        .map(|(id, t)| (*id, t.to_string()))
        .collect();
    assert_eq!(got, expected, "history after the full disk and a kill -9");
}
