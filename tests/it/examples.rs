//! The `clock` example runs as the tutorial promises: a client connected to `/` sees two
//! ticks. (`cargo test` builds the examples before running tests.)

use crate::common::*;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

#[test]
fn clock_example_pushes_the_time_every_second() {
    // target/debug/deps/examples-HASH -> target/debug/examples/clock
    let exe = std::env::current_exe().unwrap();
    let clock = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("clock");
    assert!(
        clock.exists(),
        "build the examples first: {}",
        clock.display()
    );
    let mut child = Command::new(clock)
        .arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line
        .trim()
        .rsplit("http://")
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut ws = connect(addr, "/");
    let first = recv_text(&mut ws);
    let second = recv_text(&mut ws);
    child.kill().unwrap();
    child.wait().unwrap();
    for tick in [&first, &second] {
        assert!(tick.ends_with(" UTC") && tick.len() == 12, "{tick:?}");
    }
    assert_ne!(first, second);
}
