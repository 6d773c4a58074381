//! HTTP/1.1 messages on a socket we own: reading a request head and a `Content-Length` body,
//! each bounded in size and time, and writing responses within a deadline. Both the WebSocket
//! handshake and the plain HTTP endpoints (`web.rs`) start here.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// At most this many header lines (httparse needs a fixed array). Browsers send 10-20;
/// 64 leaves room for proxies and cookies. More gets 431.
const MAX_HEADERS: usize = 64;

/// A parsed request head plus whatever bytes arrived after it. Its `Debug` shows the target
/// through [`redact_target`] and header names only, so a stray `{head:?}` in a log line cannot
/// leak a `?token=` or an `Authorization` value.
pub(crate) struct Head {
    pub method: String,
    /// The request target as sent, e.g. `/relay/news?token=abc`.
    pub target: String,
    /// HTTP minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Header names as sent (case kept) with their raw values.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Bytes read past the end of the head: the start of a body, or of the first WebSocket
    /// frames from a client that did not wait for the 101.
    pub rest: Vec<u8>,
}

impl std::fmt::Debug for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Head")
            .field("method", &self.method)
            .field("target", &redact_target(&self.target))
            .field("minor_version", &self.minor_version)
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("rest", &self.rest.len())
            .finish()
    }
}

/// Query parameters whose values are credentials: never logged (SECURITY.md, JWT).
const SECRET_PARAMS: [&str; 2] = ["token", "access_token"];

/// `target` fit for a log line: the value of every `token=` (and `access_token=`) query
/// parameter replaced by `REDACTED`, the rest as sent. Borrowed when there is nothing to hide.
pub(crate) fn redact_target(target: &str) -> std::borrow::Cow<'_, str> {
    let Some((path, query)) = target.split_once('?') else {
        return target.into();
    };
    let secret = |pair: &str| {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        SECRET_PARAMS.contains(&key)
    };
    if !query.split('&').any(secret) {
        return target.into();
    }
    let query: Vec<&str> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if SECRET_PARAMS.contains(&key) => {
                if key == "token" {
                    "token=REDACTED"
                } else {
                    "access_token=REDACTED"
                }
            }
            _ => pair,
        })
        .collect();
    format!("{path}?{}", query.join("&")).into()
}

impl Head {
    /// The target for a log line: see [`redact_target`].
    pub fn logged_target(&self) -> std::borrow::Cow<'_, str> {
        redact_target(&self.target)
    }

    /// The path part of the target, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The first header called `name` (case-insensitive), if its value is valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .map(str::trim)
    }

    /// Whether any `name` header holds `token` in its comma-separated list (case-insensitive),
    /// as `Connection: keep-alive, Upgrade` does.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// The value of query parameter `key` (`?name=alice%20b&room=dev`), decoded as a form
    /// value (`+` is a space, `%XX` escapes); `None` when absent or not valid UTF-8.
    pub fn query_param(&self, key: &str) -> Option<String> {
        self.query_raw(key)
            .and_then(|v| percent_decode(&v.replace('+', " ")))
    }

    /// Whether query parameter `key` is present but not validly encoded (a bad `%` escape, or
    /// bytes that are not UTF-8).
    pub fn query_param_malformed(&self, key: &str) -> bool {
        self.query_raw(key).is_some() && self.query_param(key).is_none()
    }

    fn query_raw(&self, key: &str) -> Option<&str> {
        let query = self.target.split_once('?')?.1;
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == key).then_some(v)
        })
    }
}

/// Decodes `%XX` escapes; `None` for a malformed escape or a result that is not UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            // Checked first because `from_str_radix` also takes a sign: "%+1" is not 0x01.
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Why no head could be read.
#[derive(Debug)]
pub(crate) enum HeadError {
    /// Part of a head arrived, but not all of it within the time allowed: 408.
    Timeout,
    /// Not one byte arrived within the time allowed. A first head answers this with 408 (the
    /// client connected and said nothing); a kept-alive connection that stays idle is closed
    /// without an answer, as RFC 9112 9.3 allows.
    Idle,
    /// The head is larger than allowed, or has too many lines: 431.
    TooLarge,
    /// Not HTTP: 400.
    Malformed,
    /// The peer closed or reset the connection before a whole head arrived: nothing to answer.
    Closed,
}

/// Reads one request head from `stream`, giving up after `timeout` in total or `max` bytes;
/// its first bytes, `carried`, may have been read already (by the accept thread, or with the
/// previous request on a kept-alive connection: a pipelining client sends several at once).
///
/// The deadline covers the whole head, not each read, so a client that trickles one byte at a
/// time still releases the thread after `timeout`. `max` counts `carried` too.
pub(crate) fn read_head_after(
    mut stream: &TcpStream,
    carried: Vec<u8>,
    max: usize,
    timeout: Duration,
) -> Result<Head, HeadError> {
    let deadline = Instant::now() + timeout;
    if carried.len() > max {
        return Err(HeadError::TooLarge);
    }
    if carried.windows(4).any(|w| w == b"\r\n\r\n") {
        return parse(&carried);
    }
    let mut filled = carried.len();
    let mut buf = carried;
    // 1 KiB first: a typical browser head is 400-800 bytes; grown as needed up to `max`.
    buf.resize(filled.max(1024).min(max), 0);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let timed_out = if filled == 0 {
            HeadError::Idle
        } else {
            HeadError::Timeout
        };
        if left.is_zero() {
            return Err(timed_out);
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|_| HeadError::Closed)?;
        if filled == buf.len() {
            if buf.len() >= max {
                return Err(HeadError::TooLarge);
            }
            buf.resize((buf.len() * 2).min(max), 0);
        }
        let n = match stream.read(&mut buf[filled..]) {
            Ok(0) => return Err(HeadError::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(timed_out);
            }
            Err(_) => return Err(HeadError::Closed),
        };
        // Only parse once the blank line that ends the head is there: re-parsing on every
        // trickled byte would make a slow client cost quadratic time.
        let search_from = filled.saturating_sub(3);
        filled += n;
        if !buf[search_from..filled]
            .windows(4)
            .any(|w| w == b"\r\n\r\n")
        {
            continue;
        }
        return parse(&buf[..filled]);
    }
}

/// The head at the start of `buf`, if all of it is there (bytes after it are its `rest`).
pub(crate) fn complete_head(buf: &[u8]) -> Option<Result<Head, HeadError>> {
    buf.windows(4).any(|w| w == b"\r\n\r\n").then(|| parse(buf))
}

fn parse(buf: &[u8]) -> Result<Head, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Err(HeadError::Malformed),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed),
    };
    Ok(Head {
        method: req.method.unwrap_or_default().to_string(),
        target: req.path.unwrap_or_default().to_string(),
        minor_version: req.version.unwrap_or(1),
        headers: req
            .headers
            .iter()
            .map(|h| (h.name.to_string(), h.value.to_vec()))
            .collect(),
        rest: buf[len..].to_vec(),
    })
}

/// A complete response with a plain-text body and `Connection: close`.
pub(crate) fn response(status: u16, extra_headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n",
        reason(status),
        body.len()
    );
    for (name, value) in extra_headers {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

/// Writes an error response and closes the connection so that the client sees the response.
///
/// Closing a socket whose receive buffer still holds unread bytes makes the kernel send a RST,
/// and a RST can destroy the response before the client reads it. So: send, half-close, then
/// read and discard what the client still sends, for at most a second and 64 KiB.
pub(crate) fn reject(mut stream: &TcpStream, status: u16, extra_headers: &[(&str, &str)]) {
    let body = format!("{status} {}\n", reason(status));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = stream.write_all(&response(status, extra_headers, &body));
    linger_close(stream);
}

/// Half-closes `stream` and drains it briefly (see [`reject`]).
pub(crate) fn linger_close(mut stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < 64 * 1024 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// Why a request body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// The body did not arrive before the deadline: 408.
    Timeout,
    /// The peer closed or reset before sending all of it: nothing to answer.
    Closed,
}

/// Reads a `length`-byte body that starts with the bytes already in `rest`, before `deadline`.
/// Returns the body; `rest` keeps what followed it (the next request of a pipelining client).
///
/// The caller has checked `length` against `max_body_size`, so the buffer is bounded.
pub(crate) fn read_body(
    mut stream: &TcpStream,
    rest: &mut Vec<u8>,
    length: usize,
    deadline: Instant,
) -> Result<Vec<u8>, BodyError> {
    let mut body = std::mem::take(rest);
    if body.len() > length {
        *rest = body.split_off(length);
        return Ok(body);
    }
    body.reserve_exact(length - body.len());
    let mut chunk = [0u8; 4096];
    while body.len() < length {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Err(BodyError::Timeout);
        }
        // Never read past the body: what follows is the next request's head, read by
        // `read_head_after` with its own bounds.
        let want = (length - body.len()).min(chunk.len());
        match stream.read(&mut chunk[..want]) {
            Ok(0) => return Err(BodyError::Closed),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(BodyError::Timeout);
            }
            Err(_) => return Err(BodyError::Closed),
        }
    }
    Ok(body)
}

/// Writes all of `bytes` before `deadline`, or fails with `TimedOut`.
///
/// A write timeout alone bounds each `write`, not the response: a reader that takes one
/// segment per timeout would hold the thread for as long as it likes. Writes go in pieces of at
/// most 64 KiB, each given only the time left.
pub(crate) fn write_within(
    mut stream: &TcpStream,
    bytes: &[u8],
    deadline: Instant,
) -> io::Result<()> {
    let mut sent = 0;
    while sent < bytes.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_write_timeout(Some(left))?;
        let end = (sent + 64 * 1024).min(bytes.len());
        match stream.write(&bytes[sent..end]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The head of a response: status line, `headers`, `Content-Length` (unless `length` is
/// `None`, as for a 304) and `Connection`, then the blank line.
pub(crate) fn response_head(
    status: u16,
    headers: &[(&str, &str)],
    length: Option<u64>,
    keep_alive: bool,
) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    if let Some(length) = length {
        out.push_str(&format!("Content-Length: {length}\r\n"));
    }
    out.push_str(if keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    out.into_bytes()
}

/// The reason phrase for the statuses this server sends.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_head_and_keeps_bytes_after_it() {
        let raw = b"GET /relay/a?token=x HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\n\r\n\x81\x80";
        let head = parse(raw).unwrap();
        assert_eq!(head.method, "GET");
        assert_eq!(head.path(), "/relay/a");
        assert!(head.has_token("connection", "upgrade"));
        assert!(!head.has_token("connection", "close"));
        assert_eq!(head.header("HOST"), Some("h"));
        assert_eq!(head.rest, b"\x81\x80");
        assert_eq!(head.query_param("token").as_deref(), Some("x"));
        assert_eq!(head.query_param("nope"), None);
    }

    #[test]
    fn logged_targets_hide_token_values() {
        assert_eq!(redact_target("/"), "/");
        assert_eq!(redact_target("/chat?name=a&room=b"), "/chat?name=a&room=b");
        assert_eq!(
            redact_target("/chat?token=SECRET123&name=carol"),
            "/chat?token=REDACTED&name=carol"
        );
        assert_eq!(
            redact_target("/?backoff=1&token=a.b.c&access_token=x&token"),
            "/?backoff=1&token=REDACTED&access_token=REDACTED&token"
        );
        // Only the exact key: `mytoken=` and `token_hint=` are not credentials of ours.
        assert_eq!(
            redact_target("/?mytoken=v&token_hint=w"),
            "/?mytoken=v&token_hint=w"
        );
        let head = parse(
            b"GET /relay/a?token=SECRET123 HTTP/1.1\r\nAuthorization: Bearer SECRET123\r\n\r\n",
        )
        .unwrap();
        assert_eq!(head.logged_target(), "/relay/a?token=REDACTED");
        let debug = format!("{head:?}");
        assert!(!debug.contains("SECRET123"), "{debug}");
        assert!(debug.contains("Authorization"), "{debug}");
    }

    #[test]
    fn query_values_are_form_decoded() {
        let mut head = parse(b"GET /chat?name=J%C3%BCrgen+K&room=dev&x HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(head.query_param("name").as_deref(), Some("Jürgen K"));
        assert_eq!(head.query_param("room").as_deref(), Some("dev"));
        assert_eq!(head.query_param("x").as_deref(), Some(""));
        head.target = "/chat?name=%ff".into();
        assert_eq!(head.query_param("name"), None);
        assert!(head.query_param_malformed("name"));
        assert!(!head.query_param_malformed("room"));
        head.target = "/chat?name=%zz&room=ok".into();
        assert!(head.query_param_malformed("name"));
        assert!(!head.query_param_malformed("room"));
    }

    #[test]
    fn too_many_headers_is_too_large() {
        let mut raw = String::from("GET / HTTP/1.1\r\n");
        for i in 0..100 {
            raw.push_str(&format!("X-{i}: v\r\n"));
        }
        raw.push_str("\r\n");
        assert!(matches!(parse(raw.as_bytes()), Err(HeadError::TooLarge)));
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(
            parse(b"\x16\x03\x01 hello\r\n\r\n"),
            Err(HeadError::Malformed)
        ));
    }

    use crate::test_rng::Rng;

    const UPGRADE: &[u8] = b"GET /chat?name=al%20ice&room=dev HTTP/1.1\r\nHost: localhost:8080\r\n\
        Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
        Origin: http://localhost\r\n\r\n\x81\x80";

    /// Bytes that matter to an HTTP parser, more often than chance would pick them.
    const SPECIAL: &[u8] = b"\r\n:% ?&=+\t\0\x7f\xff/.H1";

    /// `head` with 1-4 random edits: a flipped bit, a random or special byte set, inserted or
    /// deleted, a slice duplicated, the tail cut off, or a random header line inserted.
    fn mutate(rng: &mut Rng, head: &[u8]) -> Vec<u8> {
        let mut out = head.to_vec();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(out.len() + 1);
            let byte = if rng.below(2) == 0 {
                *rng.pick(SPECIAL)
            } else {
                rng.next() as u8
            };
            match rng.below(7) {
                0 if at < out.len() => out[at] ^= 1 << rng.below(8),
                1 if at < out.len() => out[at] = byte,
                2 => out.insert(at, byte),
                3 if at < out.len() => {
                    out.remove(at);
                }
                4 => {
                    let end = (at + rng.below(40)).min(out.len());
                    let copy = out[at..end].to_vec();
                    out.splice(at..at, copy);
                }
                5 => out.truncate(at),
                _ => {
                    let names = ["X-A", "Host", "Connection", "Upgrade", "Content-Length", ""];
                    let value: Vec<u8> = (0..rng.below(30)).map(|_| rng.next() as u8).collect();
                    let mut line = rng.pick(&names).as_bytes().to_vec();
                    line.extend_from_slice(b": ");
                    line.extend_from_slice(&value);
                    line.extend_from_slice(b"\r\n");
                    let at = out
                        .windows(2)
                        .position(|w| w == b"\r\n")
                        .map_or(0, |p| p + 2);
                    out.splice(at..at, line);
                }
            }
        }
        out
    }

    /// A request line and headers assembled from random parts.
    fn random_head(rng: &mut Rng) -> Vec<u8> {
        let methods = ["GET", "POST", "get", "HEAD", "G\0T", "", "CONNECT"];
        let targets = [
            "/",
            "/echo",
            "/chat?name=%",
            "*",
            "/relay/a?x=%zz%",
            "",
            "http://h/",
        ];
        let versions = [
            "HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.", "http/1.1", "",
        ];
        let mut out = format!(
            "{} {} {}\r\n",
            rng.pick(&methods),
            rng.pick(&targets),
            rng.pick(&versions)
        )
        .into_bytes();
        for _ in 0..rng.below(80) {
            let name: Vec<u8> = (0..rng.below(12))
                .map(|_| *rng.pick(b"aZ-_:0 \x80"))
                .collect();
            out.extend_from_slice(&name);
            out.extend_from_slice(b": ");
            let len = if rng.below(400) == 0 {
                20_000
            } else {
                rng.below(20)
            };
            out.extend((0..len).map(|_| rng.next() as u8 | 0x20));
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    #[test]
    fn fuzz_parse_never_panics_and_keeps_what_follows_the_head() {
        let seed = 0x4ead_5eed;
        println!("seed {seed:#x}");
        let mut rng = Rng(seed);
        let mut parsed = 0;
        for i in 0..5000 {
            let input = match i % 4 {
                0 | 1 => mutate(&mut rng, UPGRADE),
                2 => random_head(&mut rng),
                _ => (0..rng.below(200)).map(|_| rng.next() as u8).collect(),
            };
            let Ok(head) = parse(&input) else { continue };
            parsed += 1;
            assert!(
                input.ends_with(&head.rest),
                "case {i}: rest is the input's tail"
            );
            assert!(head.target.starts_with(head.path()) && !head.path().contains('?'));
            assert!(head.headers.len() <= MAX_HEADERS && head.minor_version <= 1);
            let _ = (head.header("host"), head.has_token("connection", "upgrade"));
            for key in ["name", "room", "", "x"] {
                let _ = head.query_param(key);
            }
        }
        // Many mutations keep a parseable head, so the checks above ran on many.
        assert!(parsed > 400, "only {parsed} inputs parsed");
    }

    /// What RFC 3986 2.1 says: `%` followed by exactly two hex digits.
    fn reference_decode(s: &str) -> Option<String> {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                let hex = b.get(i + 1..i + 3)?;
                let digit = |c: u8| (c as char).to_digit(16);
                out.push((digit(hex[0])? * 16 + digit(hex[1])?) as u8);
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).ok()
    }

    #[test]
    fn percent_decode_matches_a_strict_reference() {
        assert_eq!(percent_decode("%+1"), None, "a sign is not a hex digit");
        assert_eq!(percent_decode("a%2Fb%c3%a9").as_deref(), Some("a/bé"));
        let alphabet = [
            "%", "2", "0", "f", "F", "g", "+", "-", "a", "é", "C", "3", "A", "9", " ",
        ];
        let seed = 0x9e4c_0de5;
        println!("seed {seed:#x}");
        let mut rng = Rng(seed);
        for _ in 0..5000 {
            let s: String = (0..rng.below(12)).map(|_| *rng.pick(&alphabet)).collect();
            assert_eq!(percent_decode(&s), reference_decode(&s), "decoding {s:?}");
        }
    }
}
