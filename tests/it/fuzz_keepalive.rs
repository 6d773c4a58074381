//! Random pipelines of HTTP requests on one kept-alive connection (valid, mutated, with short,
//! long or conflicting bodies, chunked, `Expect`, upgrades, garbage) never hang or crash the
//! server: each connection gets its answers and a clean close within the body and idle
//! timeouts (most half-close after their pipeline; every tenth stays open to meet them),
//! and afterwards every endpoint still answers. The seed is printed; WSCHAT_FUZZ_SEED (hex)
//! explores others.

use crate::common::*;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const SEED: u64 = 0x6b33_7a11_5eed_0001;
const CASES: usize = 200;
const WORKERS: usize = 8;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);
/// On top of the timeouts a case can meet (a body that never comes, then the idle close): a
/// loaded CI machine is slow, a hang is much slower.
const SLACK: Duration = Duration::from_secs(4);

/// One request, valid or not.
fn request(rng: &mut XorShift, addr: SocketAddr) -> Vec<u8> {
    let body = r#"{"channel":"f","text":"x"}"#;
    let mut r = match rng.below(9) {
        0 => format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
        1 => format!("HEAD /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
        2 => "GET /metrics HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".to_string(),
        3 => format!(
            "POST /api/publish HTTP/1.1\r\nHost: {addr}\r\nX-API-Key: k\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
        4 => format!(
            // The length is off by up to 3 either way: the next request's bytes become body,
            // or the body waits for bytes that never come (408).
            "POST /api/publish HTTP/1.1\r\nHost: {addr}\r\nX-API-Key: {}\r\nContent-Length: {}\r\n\r\n{body}",
            rng.pick(&["k", "wrong"]),
            (body.len() + rng.below(7)).saturating_sub(3)
        ),
        5 => format!(
            "POST /api/publish HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        ),
        6 => format!(
            "POST /x HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 2\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\nab",
            rng.below(4)
        ),
        7 => {
            let paths: [&str; 3] = ["/echo", "/chat", "/nope"];
            let path = *rng.pick(&paths);
            upgrade_request(addr, path, "")
        }
        _ => {
            let len = rng.below(40);
            return rng.bytes(len);
        }
    }
    .into_bytes();
    // Some requests get a random byte changed.
    if rng.chance(1, 4) && !r.is_empty() {
        let at = rng.below(r.len());
        r[at] = *rng.pick(b"\r\n: \x00\xff0aA/");
    }
    r
}

/// Sends a pipeline in one write, half-closes (unless `stay` is set: then the server's body and
/// idle timeouts must end it), and reads until the server closes. Returns the number of
/// response status lines seen, whether the server closed in time, and how long it took.
fn exchange(addr: SocketAddr, pipeline: &[u8], stay: bool) -> (usize, bool, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(HANDSHAKE_TIMEOUT + SLACK)).unwrap();
    s.set_write_timeout(Some(HANDSHAKE_TIMEOUT + SLACK))
        .unwrap();
    let _ = s.write_all(pipeline);
    if !stay {
        let _ = s.shutdown(Shutdown::Write);
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break false;
            }
            Err(_) => break true, // a reset is a close
        }
        // A 101 makes this a WebSocket that would stay open: end it with our FIN.
        if stay && got.windows(13).any(|w| w == b"HTTP/1.1 101 ") {
            let _ = s.shutdown(Shutdown::Write);
        }
        if got.len() > 1 << 20 {
            break false;
        }
    };
    let answers = got.windows(9).filter(|w| w == b"HTTP/1.1 ").count();
    (answers, closed, started.elapsed())
}

#[test]
fn random_pipelines_are_answered_or_closed_in_time_and_the_server_stays_up() {
    let server = start(|c| {
        c.handshake_timeout = HANDSHAKE_TIMEOUT;
        c.ping_interval = Duration::ZERO;
        c.api_key = Some("k".into());
    });
    let addr = server.local_addr();
    let seed = std::env::var("WSCHAT_FUZZ_SEED")
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .unwrap_or(SEED);
    println!("fuzz keep-alive: seed {seed:#x}, {CASES} pipelines");
    let mut rng = XorShift::new(seed);
    let cases: Vec<Vec<u8>> = (0..CASES)
        .map(|_| {
            (0..1 + rng.below(4))
                .flat_map(|_| request(&mut rng, addr))
                .collect()
        })
        .collect();
    let results: Vec<(usize, (usize, bool, Duration))> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let cases = &cases;
                s.spawn(move || {
                    (w..cases.len())
                        .step_by(WORKERS)
                        .map(|i| (i, exchange(addr, &cases[i], i % 10 == 0)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let mut failures = Vec::new();
    let mut answered = 0;
    for (i, (answers, closed, took)) in &results {
        answered += answers;
        if !closed || *took > 2 * HANDSHAKE_TIMEOUT + SLACK {
            failures.push(format!(
                "case {i} (seed {seed:#x}): {answers} answers, closed {closed}, took {took:?}\n  {:?}",
                String::from_utf8_lossy(&cases[*i][..cases[*i].len().min(400)])
            ));
        }
    }
    println!("fuzz keep-alive: {answered} answers to {CASES} pipelines");
    assert!(
        failures.is_empty(),
        "{} pipelines were not closed in time:\n{}",
        failures.len(),
        failures[..failures.len().min(5)].join("\n")
    );
    // Many pipelines hold several valid requests, so many answers came.
    assert!(answered > CASES, "only {answered} answers");

    for path in ["/", "/healthz", "/metrics"] {
        assert_eq!(http_get(addr, path).0, 200, "{path}");
    }
    let mut ws = connect(addr, "/echo");
    ws.send(tungstenite::Message::text("still here")).unwrap();
    assert_eq!(recv_text(&mut ws), "still here");
    drop(ws);
    let handle = server.handle();
    assert!(
        wait_until(IO_TIMEOUT, || handle.connection_count() == 0),
        "{} connections left open",
        handle.connection_count()
    );
}
