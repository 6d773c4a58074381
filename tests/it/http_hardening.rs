//! Issue 11's HTTP items, each run against the real server: `--public DIR` refuses dotfiles,
//! a non-ASCII request target or header value gets 400, the page's CSP lets its script reach
//! its own origin only, the API key is checked before `100 Continue` and can come from a file,
//! large `--public` files are streamed (two slow readers neither pin the file in memory nor
//! block other page requests), a reader that takes nothing is cut off at the response
//! deadline, and a deeply nested publish body is refused before it is parsed.

use crate::common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

#[test]
fn dotfiles_in_a_public_folder_are_not_served() {
    let dir = TempDir::new("dotfiles");
    std::fs::write(dir.0.join("index.html"), "<html>ok</html>").unwrap();
    std::fs::write(dir.0.join("ok.txt"), "fine").unwrap();
    std::fs::write(dir.0.join(".env"), "SECRET=1").unwrap();
    std::fs::create_dir_all(dir.0.join(".git")).unwrap();
    std::fs::write(dir.0.join(".git/config"), "SECRET=2").unwrap();
    std::fs::create_dir_all(dir.0.join("sub/.hidden")).unwrap();
    std::fs::write(dir.0.join("sub/.hidden/x.txt"), "SECRET=3").unwrap();
    let server = start(|c| c.public_dir = Some(dir.0.clone()));
    let addr = server.local_addr();
    assert_eq!(http_get(addr, "/ok.txt").2, b"fine");
    for path in [
        "/.env",
        "/%2eenv",
        "/%2Eenv",
        "/.git/config",
        "/sub/.hidden/x.txt",
    ] {
        let (status, _, body) = http_get(addr, path);
        assert_eq!(status, 404, "{path}");
        assert!(!String::from_utf8_lossy(&body).contains("SECRET"), "{path}");
    }
}

#[test]
fn a_non_ascii_target_or_header_value_gets_400() {
    let server = start(|_| {});
    let addr = server.local_addr();
    let host = format!("Host: {addr}\r\n");
    let cases: [(&str, Vec<u8>); 2] = [
        (
            "target",
            [b"GET /caf\xc3\xa9 HTTP/1.1\r\n", host.as_bytes(), b"\r\n"].concat(),
        ),
        (
            "header value",
            [
                b"GET / HTTP/1.1\r\n",
                host.as_bytes(),
                b"X-Name: J\xc3\xbcrgen\r\n\r\n",
            ]
            .concat(),
        ),
    ];
    for (what, request) in &cases {
        let answer = raw_exchange(addr, request, IO_TIMEOUT);
        assert!(answer.starts_with("HTTP/1.1 400 "), "{what}: {answer:?}");
    }
    assert_eq!(http_get(addr, "/healthz").0, 200);
}

#[test]
fn the_page_may_open_websockets_to_its_own_origin_only() {
    let server = start(|_| {});
    let (status, head, _) = http_get(server.local_addr(), "/");
    assert_eq!(status, 200);
    let csp = head
        .lines()
        .find_map(|l| l.strip_prefix("content-security-policy: "))
        .expect("a CSP");
    let connect = csp
        .split(';')
        .map(str::trim)
        .find(|d| d.starts_with("connect-src"))
        .expect("a connect-src directive");
    assert_eq!(connect, "connect-src 'self'", "{csp}");
}

/// Sends a POST head with `Expect: 100-continue` and no body; returns the first response head.
fn expect_continue(addr: SocketAddr, key: &str, body_len: usize) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    write!(
        s,
        "POST /api/publish HTTP/1.1\r\nHost: {addr}\r\nX-API-Key: {key}\r\n\
         Expect: 100-continue\r\nContent-Length: {body_len}\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "closed without an answer");
        head.push(byte[0]);
    }
    (s, String::from_utf8(head).unwrap())
}

#[test]
fn the_api_key_is_checked_before_100_continue() {
    let server = start(|c| c.api_key = Some("right".into()));
    let addr = server.local_addr();
    let body = r#"{"text":"hi"}"#;
    let (_s, head) = expect_continue(addr, "wrong", body.len());
    assert!(head.starts_with("HTTP/1.1 401 "), "{head}");

    let (mut s, head) = expect_continue(addr, "right", body.len());
    assert!(head.starts_with("HTTP/1.1 100 "), "{head}");
    s.write_all(body.as_bytes()).unwrap();
    let mut answer = [0u8; 12];
    s.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
}

#[test]
fn a_deeply_nested_publish_body_is_refused_and_the_server_stays_up() {
    let server = start(|c| c.api_key = Some("k".into()));
    let addr = server.local_addr();
    for depth in [33, 120, 30_000] {
        let body = format!(
            r#"{{"text":"x","a":{}{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let request = format!(
            "POST /api/publish HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nX-API-Key: k\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let answer = raw_exchange(addr, request.as_bytes(), IO_TIMEOUT);
        assert!(
            answer.starts_with("HTTP/1.1 400 "),
            "depth {depth}: {answer:?}"
        );
    }
    // 32 levels (the object and 31 arrays) is the most allowed, and parses on the stack.
    let body = format!(
        r#"{{"text":"x","a":{}1{}}}"#,
        "[".repeat(31),
        "]".repeat(31)
    );
    let request = format!(
        "POST /api/publish HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nX-API-Key: k\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = raw_exchange(addr, request.as_bytes(), IO_TIMEOUT);
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer:?}");
}

/// A POST to the binary's `/api/publish` with `key`; the status.
fn publish_status(addr: SocketAddr, key: &str) -> u16 {
    let body = r#"{"text":"hi"}"#;
    let request = format!(
        "POST /api/publish HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nX-API-Key: {key}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = raw_exchange(addr, request.as_bytes(), IO_TIMEOUT);
    answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[test]
fn the_api_key_can_come_from_a_file() {
    let dir = TempDir::new("api-key-file");
    let file = dir.0.join("key");
    std::fs::write(&file, "from-a-file\n").unwrap();
    let (mut child, addr) = spawn_binary(&["--api-key-file", file.to_str().unwrap()]);
    let statuses = (
        publish_status(addr, "from-a-file"),
        publish_status(addr, "x"),
    );
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(statuses, (200, 401));

    // An empty key file is a configuration error, not a server open to any key or none.
    std::fs::write(&file, "\n").unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_wschat"))
        .args(["--addr", "127.0.0.1:0", "--api-key-file"])
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success());
}

#[test]
fn large_files_are_streamed_and_slow_readers_block_nobody() {
    // Measures this process's RSS: alone in a child process.
    if !isolated(
        module_path!(),
        "large_files_are_streamed_and_slow_readers_block_nobody",
    ) {
        return;
    }
    const MIB: usize = 1024 * 1024;
    const SIZE: usize = 32 * MIB;
    let dir = TempDir::new("streamed");
    std::fs::write(dir.0.join("index.html"), "<html>small</html>").unwrap();
    {
        // Written a MiB at a time, so that the test itself does not hold the file in memory.
        let mut big = std::fs::File::create(dir.0.join("big.bin")).unwrap();
        let piece = vec![7u8; MIB];
        for _ in 0..SIZE / MIB {
            big.write_all(&piece).unwrap();
        }
    }
    let server = start(|c| c.public_dir = Some(dir.0.clone()));
    let addr = server.local_addr();
    let rss_before = rss_kib();
    // Two readers ask for the big file and read only the start of the answer.
    let slow: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            write!(s, "GET /big.bin HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
            let mut start = [0u8; 4096];
            s.read_exact(&mut start).unwrap();
            assert!(start.starts_with(b"HTTP/1.1 200 "));
            s
        })
        .collect();
    // Others are still served meanwhile.
    for _ in 0..4 {
        let (status, _, body) = http_get(addr, "/");
        assert_eq!((status, body.as_slice()), (200, &b"<html>small</html>"[..]));
    }
    let grown = rss_kib().saturating_sub(rss_before);
    println!("RSS grew by {grown} KiB with two readers of a 32 MiB file");
    assert!(
        grown < (SIZE / 1024) as u64 / 2,
        "the file is read into memory: RSS grew by {grown} KiB"
    );
    drop(slow);
}

#[test]
fn a_reader_that_takes_nothing_is_cut_off_at_the_response_deadline() {
    const MIB: usize = 1024 * 1024;
    let dir = TempDir::new("deadline");
    {
        let mut big = std::fs::File::create(dir.0.join("big.bin")).unwrap();
        let piece = vec![7u8; MIB];
        for _ in 0..16 {
            big.write_all(&piece).unwrap();
        }
    }
    let server = start(|c| {
        c.public_dir = Some(dir.0.clone());
        c.response_timeout = std::time::Duration::from_secs(1);
    });
    let addr = server.local_addr();
    let handle = server.handle();
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET /big.bin HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    // Reads nothing: the socket buffers fill and the server's writes block. Once the deadline
    // passes, the server gives the connection up (its place in the count is given back).
    assert!(wait_until(IO_TIMEOUT, || metric(
        &handle,
        "wschat_tcp_connections"
    ) == 1));
    assert!(
        wait_until(IO_TIMEOUT, || metric(&handle, "wschat_tcp_connections")
            == 0),
        "the slow reader still holds its connection"
    );
    // What arrived is a truncated answer, then the close.
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    assert!(got < 16 * MIB, "all {got} bytes arrived");
}
