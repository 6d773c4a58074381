//! A slow disk slows only the chat: with every fsync of the chat log delayed by 2 s (an
//! `LD_PRELOAD` shim, built here with the system C compiler, wraps `fdatasync`/`fsync`), echo
//! round trips go on while a chat message waits for its commit, the message is delivered only
//! after the commit, and `/metrics` shows the slow commits.

use crate::common::*;
use serde_json::json;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::Message;

/// The shim: sleeps `WSCHAT_TEST_SYNC_DELAY_MS` before each real fdatasync/fsync.
const SHIM: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>
static void delay(void) {
    const char *ms = getenv("WSCHAT_TEST_SYNC_DELAY_MS");
    if (ms) usleep((useconds_t)atoi(ms) * 1000);
}
int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    delay();
    return real(fd);
}
int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    delay();
    return real(fd);
}
"#;

/// How long each sync takes under the shim: far longer than an echo round trip on any
/// machine, so "echoes completed while the message waited" cannot be an accident of timing.
const SYNC_DELAY_MS: u64 = 2000;

fn build_shim(dir: &Path) -> PathBuf {
    let src = dir.join("slowsync.c");
    let lib = dir.join("slowsync.so");
    std::fs::write(&src, SHIM).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let status = Command::new(&cc)
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&lib)
        .arg(&src)
        .arg("-ldl")
        .status()
        .unwrap_or_else(|e| panic!("the C compiler `{cc}` is needed for this test: {e}"));
    assert!(status.success(), "building the fsync shim failed");
    lib
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve_on_slow_disk(shim: &Path, data: &Path) -> (Running, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wschat"))
        .args(["--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("LD_PRELOAD", shim)
        .env("WSCHAT_TEST_SYNC_DELAY_MS", SYNC_DELAY_MS.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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

#[test]
fn echo_goes_on_while_a_chat_message_waits_for_a_slow_fsync() {
    let tmp = TempDir::new("slow-disk");
    let shim = build_shim(&tmp.0);
    let data = tmp.0.join("data");
    let (_server, addr) = serve_on_slow_disk(&shim, &data);

    let (mut alice, _) = chat_connect(addr, "name=alice&room=lobby");
    let mut echo = connect(addr, "/echo");
    // Short reads on alice: we poll her socket between echo round trips.
    alice
        .get_mut()
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();

    send_json(
        &mut alice,
        &json!({"type": "say", "room": "lobby", "text": "hi", "ref": 1}),
    );
    let sent = Instant::now();
    let mut echoes_while_waiting = 0;
    let deadline = sent + Duration::from_secs(30);
    let message = loop {
        assert!(Instant::now() < deadline, "alice never got her message");
        echo.send(Message::text(format!("e{echoes_while_waiting}")))
            .unwrap();
        assert_eq!(recv_text(&mut echo), format!("e{echoes_while_waiting}"));
        match alice.read() {
            Ok(Message::Text(t)) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "message" {
                    break v;
                }
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("alice's socket failed: {e}"),
        }
        echoes_while_waiting += 1;
    };
    let waited = sent.elapsed();
    assert_eq!(message["ref"], 1);
    assert_eq!(message["text"], "hi");
    // Delivered only after its commit: the sync alone takes SYNC_DELAY_MS.
    assert!(
        waited >= Duration::from_millis(SYNC_DELAY_MS),
        "delivered after {waited:?}, before the fsync could have finished"
    );
    // With the disk on the dispatcher (the old design) an echo sent during the commit waited
    // for it, so at most the one echo handled before the say's batch could finish.
    assert!(
        echoes_while_waiting >= 5,
        "only {echoes_while_waiting} echo round trips while the chat waited {waited:?}"
    );

    // The slow commits are visible in /metrics.
    let (status, _, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200);
    let body = String::from_utf8(body).unwrap();
    let value = |name: &str| -> f64 {
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics"))
    };
    let commits = value("wschat_chat_commit_seconds_count ");
    let fast = value("wschat_chat_commit_seconds_bucket{le=\"0.5\"} ");
    assert!(commits >= 1.0, "no commit counted");
    assert!(fast < commits, "a 2 s commit was not counted as slow");
    assert!(value("wschat_chat_commit_seconds_sum ") >= SYNC_DELAY_MS as f64 / 1000.0);
}
