//! Graceful shutdown: clients receive Close 1001, the process exits 0 on SIGTERM, and a
//! library shutdown returns and releases the port.

use crate::common::*;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn sigterm_sends_1001_to_every_client_and_exits_0() {
    let (mut child, addr) = spawn_binary(&[]);
    let mut clients: Vec<Client> = (0..5).map(|_| connect(addr, "/")).collect();
    // The last client's message reaching the first proves all five are registered.
    clients[4]
        .send(tungstenite::Message::text("ready"))
        .unwrap();
    for ws in &mut clients[..4] {
        assert_eq!(recv_text(ws), "ready");
    }

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for ws in &mut clients {
        assert_eq!(expect_close(ws), 1001);
    }
    let deadline = Instant::now() + IO_TIMEOUT;
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "server did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "exit status {exit:?}");
}

#[test]
fn handle_shutdown_closes_clients_returns_and_frees_the_port() {
    let server = start(|_| {});
    let addr = server.local_addr();
    let handle = server.handle();
    let mut ws = connect(addr, "/echo");
    assert!(wait_until(IO_TIMEOUT, || handle.connection_count() == 1));
    let joiner = std::thread::spawn(move || server.join());
    handle.shutdown();
    assert_eq!(expect_close(&mut ws), 1001);
    joiner.join().unwrap();
    assert!(handle.publish_text("", "late").is_err());
    std::net::TcpListener::bind(addr).expect("port released after join");
}
