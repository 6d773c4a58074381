//! Reading one HTTP request head off a socket we own, bounded in size and time, and writing
//! small error responses. Both the WebSocket path and the forwarding to tiny_http start here.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// At most this many header lines (httparse needs a fixed array). Browsers send 10-20;
/// 64 leaves room for proxies and cookies. More gets 431.
const MAX_HEADERS: usize = 64;

/// A parsed request head plus whatever bytes arrived after it.
#[derive(Debug)]
pub(crate) struct Head {
    pub method: String,
    /// The request target as sent, e.g. `/relay/news?token=abc`.
    pub target: String,
    /// HTTP minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Header names as sent (case kept, for forwarding) with their raw values.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Bytes read past the end of the head: the start of a body, or of the first WebSocket
    /// frames from a client that did not wait for the 101.
    pub rest: Vec<u8>,
}

impl Head {
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
        let query = self.target.split_once('?')?.1;
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == key).then(|| percent_decode(&v.replace('+', " ")))?
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
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
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
    /// The head did not arrive within the time allowed: 408.
    Timeout,
    /// The head is larger than allowed, or has too many lines: 431.
    TooLarge,
    /// Not HTTP: 400.
    Malformed,
    /// The peer closed or reset the connection before a whole head arrived: nothing to answer.
    Closed,
}

/// Reads one request head from `stream`, giving up after `timeout` in total or `max` bytes.
///
/// The deadline covers the whole head, not each read, so a client that trickles one byte at a
/// time still releases the thread after `timeout`.
pub(crate) fn read_head(
    mut stream: &TcpStream,
    max: usize,
    timeout: Duration,
) -> Result<Head, HeadError> {
    let deadline = Instant::now() + timeout;
    // 1 KiB first: a typical browser head is 400-800 bytes; grown as needed up to `max`.
    let mut buf = vec![0u8; 1024];
    let mut filled = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HeadError::Timeout);
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
                return Err(HeadError::Timeout);
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
    fn query_values_are_form_decoded() {
        let mut head = parse(b"GET /chat?name=J%C3%BCrgen+K&room=dev&x HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(head.query_param("name").as_deref(), Some("Jürgen K"));
        assert_eq!(head.query_param("room").as_deref(), Some("dev"));
        assert_eq!(head.query_param("x").as_deref(), Some(""));
        head.target = "/chat?name=%ff".into();
        assert_eq!(head.query_param("name"), None);
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
}
