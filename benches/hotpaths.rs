//! The hot paths, timed: frame encoding and chat parsing (per call), and one message fanned
//! out to N clients through the real dispatcher and real loopback sockets (deliveries/s).
//!
//! `cargo bench` (a harness=false bench: plain timing loops, median of 5 rounds, no extra
//! dependencies). Numbers are in BENCHMARKS.md with the date and machine.

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Median over 5 rounds of `f` run `iters` times, in nanoseconds per call.
fn per_call(iters: u64, mut f: impl FnMut()) -> f64 {
    let rounds = (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    median(rounds)
}

fn encode() {
    for size in [64usize, 1024, 16 * 1024] {
        let payload = vec![b'x'; size];
        let mut out = Vec::with_capacity(size + 16);
        let ns = per_call(200_000, || {
            out.clear();
            wschat::internals::encode_text_frame(black_box(&payload), &mut out);
            black_box(&out);
        });
        println!("frame encode, {size:>5} B payload: {ns:8.1} ns");
    }
}

fn parse() {
    let cases = [
        (
            "say",
            r#"{"type":"say","room":"lobby","text":"hello there, how is it going?","ref":17}"#,
        ),
        (
            "history",
            r#"{"type":"history","room":"dev","before":12345,"limit":50}"#,
        ),
        ("plain text", "just a plain line typed into the console"),
        (
            "bad json",
            r#"{"type":"say","room":"lobby","text":"unterminated"#,
        ),
    ];
    for (name, text) in cases {
        let ns = per_call(200_000, || {
            black_box(wschat::internals::parse_chat(black_box(text)));
        });
        println!("chat parse, {name:<10}: {ns:8.1} ns");
    }
}

/// Opens a raw WebSocket to `path` and returns the socket after the 101.
fn raw_client(addr: SocketAddr, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    s
}

/// `messages` published by the host to `clients` relay clients; each client counts the bytes
/// of the frames it expects. Returns deliveries per second.
fn fanout(clients: usize, messages: usize, payload: usize) -> f64 {
    let mut config = wschat::Config::default();
    config.addr = "127.0.0.1:0".parse().unwrap();
    config.max_pending_bytes = 64 << 20; // measure throughput, not slow-consumer cuts
    let server = wschat::Server::bind(config).unwrap();
    let addr = server.local_addr();
    let handle = server.handle();
    let frame_len = payload + if payload < 126 { 2 } else { 4 };
    let expected = (frame_len * messages) as u64;
    let done = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..clients)
        .map(|_| {
            let mut s = raw_client(addr, "/relay/bench");
            let done = done.clone();
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut got = 0u64;
                    while got < expected {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => got += n as u64,
                        }
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap()
        })
        .collect();
    while handle.connection_count() < clients {
        std::thread::sleep(Duration::from_millis(5));
    }
    let text = "x".repeat(payload);
    let started = Instant::now();
    for _ in 0..messages {
        handle.publish_text("bench", text.clone()).unwrap();
    }
    for r in readers {
        r.join().unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    handle.shutdown();
    server.join();
    (clients * messages) as f64 / secs
}

fn main() {
    // `cargo bench -- <filter>` passes extra arguments; `--bench` is always there.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wants = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    if wants("encode") {
        encode();
    }
    if wants("parse") {
        parse();
    }
    if wants("fanout") {
        for (clients, messages) in [(10, 100_000), (100, 20_000), (500, 4_000)] {
            let rates: Vec<f64> = (0..3).map(|_| fanout(clients, messages, 64)).collect();
            println!(
                "fanout {clients:>4} clients x {messages:>6} messages of 64 B: {:>10.0} deliveries/s (median of 3)",
                median(rates)
            );
        }
    }
}
