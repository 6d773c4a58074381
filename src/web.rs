//! Plain HTTP on the public port: the page and its assets, `/healthz`, `/metrics` and
//! `POST /api/publish`, answered on the connection's own thread, with HTTP/1.1 keep-alive.
//!
//! The accept loop (`server/accept.rs`) reads the first request head with our bounds and hands every
//! request that is not a WebSocket upgrade to [`serve`]. Every further head on a kept-alive
//! connection is read here with the same bounds (`max_head_size`, `handshake_timeout`), so no
//! request reaches an endpoint without passing them, and a later upgrade on the same
//! connection goes back to the WebSocket path. There is no second listener (see
//! ARCHITECTURE.md, "One front door", for why tiny_http was dropped and what it cost).

use std::borrow::Cow;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use log::debug;
use serde_json::json;

use crate::assets;
use crate::config::Config;
use crate::error::Error;
use crate::http::{self, BodyError, Head, HeadError};
use crate::server::Handle;
use crate::stats::Stats;
use crate::upgrade;

/// Longest a kept-alive connection may wait, idle, for its next request head (capped at
/// `handshake_timeout`). It holds a thread meanwhile, so it is short: a browser fetches a
/// page's files within a second of each other, a publisher or scraper that pauses longer
/// reconnects, which costs one TCP handshake on a LAN. Closed without an answer.
const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(5);

/// Requests served on one connection before it is closed (`Connection: close` on the last).
/// Only bounds the loop; at the measured 10,000+ requests/s a publisher reconnects once a
/// second or so, which it does not notice.
const MAX_REQUESTS_PER_CONNECTION: usize = 10_000;

/// Longest `POST /api/publish` waits for the dispatcher to accept a chat message. It answers
/// within a batch (milliseconds); this only bounds a server that is shutting down.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// Sent with every file of the page. `connect-src 'self'` lets its script open WebSockets to
/// the page's own host and port only (CSP Level 3 matches `'self'` to `ws:`/`wss:` of the same
/// host: Chromium, Firefox, Safari 15.4+); `ws: wss:` would let an injected script reach any
/// host.
const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// Deepest nesting of objects and arrays a publish body may have. The body is one flat object;
/// serde recurses once per level on a connection thread's small stack (128 KiB by default:
/// 120 levels overflowed it in a debug build), so deeper bodies are refused before parsing.
const MAX_BODY_DEPTH: usize = 32;

/// What the HTTP endpoints need from the server.
pub(crate) struct Site<'a> {
    pub cfg: &'a Config,
    pub stats: &'a Stats,
    /// `/api/publish` publishes through the same handle an embedding program uses.
    pub handle: &'a Handle,
}

/// One answer, before it is written.
struct Answer {
    status: u16,
    headers: Vec<(&'static str, Cow<'static, str>)>,
    body: Content,
}

/// A response body: bytes in memory, or a `--public` file streamed in pieces.
enum Content {
    Bytes(Cow<'static, [u8]>),
    File { file: std::fs::File, len: u64 },
}

impl Answer {
    fn new(status: u16, content_type: &'static str, body: impl Into<Cow<'static, [u8]>>) -> Answer {
        Answer {
            status,
            headers: vec![("Content-Type", Cow::Borrowed(content_type))],
            body: Content::Bytes(body.into()),
        }
    }

    fn text(status: u16) -> Answer {
        let body = format!("{status} {}\n", http::reason(status)).into_bytes();
        Answer::new(status, "text/plain; charset=utf-8", body)
    }

    fn json(status: u16, value: serde_json::Value) -> Answer {
        Answer::new(status, "application/json", value.to_string().into_bytes())
            .with("Cache-Control", "no-store")
    }

    fn with(mut self, name: &'static str, value: impl Into<Cow<'static, str>>) -> Answer {
        self.headers.push((name, value.into()));
        self
    }
}

/// Serves plain HTTP requests on `stream`, starting with `head`, until the connection ends or
/// its next request is a WebSocket upgrade, which is returned for the caller to run.
pub(crate) fn serve(
    site: &Site<'_>,
    stream: &TcpStream,
    mut head: Head,
    peer: SocketAddr,
) -> Option<Head> {
    let cfg = site.cfg;
    // Answers go out in as few writes as possible; TCP_NODELAY (inherited from the listener,
    // `sys::set_nodelay_inherited`) keeps a pipelining client's second answer from waiting for
    // the ACK of the first (Nagle + delayed ACK: ~40 ms).
    let idle = KEEP_ALIVE_IDLE.min(cfg.handshake_timeout);
    for served in 1..=MAX_REQUESTS_PER_CONNECTION {
        if !crate::auth::host_allowed(&head, &cfg.allowed_hosts) {
            // Against DNS rebinding: a page that re-pointed its own name here sends that name.
            debug!("{peer}: Host {:?} not allowed", head.header("host"));
            site.stats.rejected(403);
            http::reject(stream, 403, &[]);
            return None;
        }
        if upgrade::wants_websocket(&head) {
            return Some(head);
        }
        site.stats
            .http_requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut keep_alive = wants_keep_alive(&head) && served < MAX_REQUESTS_PER_CONNECTION;
        let carried = respond(site, stream, &mut head, &mut keep_alive)?;
        if !keep_alive {
            http::linger_close(stream);
            return None;
        }
        head = match http::read_head_after(stream, carried, cfg.max_head_size, idle) {
            Ok(next) => {
                // Redacted, as the first request's line in accept.rs: no `?token=` in logs.
                log::trace!("{peer}: {} {}", next.method, next.logged_target());
                next
            }
            Err(HeadError::Idle | HeadError::Closed) => return None,
            Err(e) => {
                debug!("{peer}: no further request head: {e:?}");
                let status = match e {
                    HeadError::TooLarge => 431,
                    HeadError::Malformed => 400,
                    _ => 408,
                };
                return refuse(site, stream, status, &[]);
            }
        };
    }
    None
}

/// Whether the client wants the connection kept after this request: the HTTP/1.1 default
/// unless it says `close`; HTTP/1.0 only when it asks (RFC 9112 9.3).
fn wants_keep_alive(head: &Head) -> bool {
    if head.has_token("connection", "close") {
        return false;
    }
    head.minor_version >= 1 || head.has_token("connection", "keep-alive")
}

/// Answers with an error, closes the connection, and ends serving it.
fn refuse(
    site: &Site<'_>,
    stream: &TcpStream,
    status: u16,
    headers: &[(&str, &str)],
) -> Option<Head> {
    site.stats.rejected(status);
    http::reject(stream, status, headers);
    None
}

/// Reads one request's body, answers it, and returns the bytes that followed it (the start of
/// the next request), or `None` when the connection is done. Clears `keep_alive` when the
/// connection must close after this answer.
fn respond(
    site: &Site<'_>,
    stream: &TcpStream,
    head: &mut Head,
    keep_alive: &mut bool,
) -> Option<Vec<u8>> {
    let cfg = site.cfg;
    let path = head.path().to_string();
    if path != "/" && upgrade::route(&path).is_some() {
        // A WebSocket-only endpoint asked for as a page: say what it wants (RFC 9110 15.5.22).
        refuse(
            site,
            stream,
            426,
            &[("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")],
        );
        return None;
    }
    // RFC 9112 allows only ASCII in a request target, and header values outside ASCII are
    // obsolete (obs-text, RFC 9110 5.5); no endpoint here needs either, so refuse them plainly.
    let ascii = head.target.is_ascii() && head.headers.iter().all(|(_, v)| v.is_ascii());
    if !ascii {
        refuse(site, stream, 400, &[]);
        return None;
    }
    let chunked = head
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"));
    if chunked {
        refuse(site, stream, 411, &[]); // no endpoint here takes a streamed body
        return None;
    }
    let Some(length) = content_length(head) else {
        refuse(site, stream, 400, &[]);
        return None;
    };
    if length > cfg.max_body_size {
        refuse(site, stream, 413, &[]);
        return None;
    }
    let head_only = head.method == "HEAD";
    let mut rest = std::mem::take(&mut head.rest);
    let deadline = Instant::now() + cfg.handshake_timeout;
    let read_body = |rest: &mut Vec<u8>| -> Result<Vec<u8>, BodyError> {
        if rest.len() < length && head.has_token("expect", "100-continue") {
            http::write_within(stream, b"HTTP/1.1 100 Continue\r\n\r\n", deadline)
                .map_err(|_| BodyError::Closed)?;
        }
        http::read_body(stream, rest, length, deadline)
    };
    let answer = if path == "/api/publish" {
        match publish_refusal(site, head) {
            Some(refusal) => {
                // Answered without reading the body (so never after a `100 Continue`): unless
                // all of it is here already, the connection cannot be reused.
                if rest.len() >= length {
                    rest.drain(..length);
                } else {
                    *keep_alive = false;
                }
                refusal
            }
            None => match read_body(&mut rest) {
                Ok(body) => publish(site, &body),
                Err(e) => return body_failed(site, stream, e),
            },
        }
    } else {
        if let Err(e) = read_body(&mut rest) {
            return body_failed(site, stream, e);
        }
        page(site, head, &path)
    };
    let mut headers: Vec<(&str, &str)> = answer
        .headers
        .iter()
        .map(|(n, v)| (*n, v.as_ref()))
        .collect();
    let length = match &answer.body {
        _ if answer.status == 304 => None,
        Content::Bytes(bytes) => Some(bytes.len() as u64),
        Content::File { len, .. } => Some(*len),
    };
    if answer.status == 405 && path != "/api/publish" {
        headers.push(("Allow", "GET, HEAD"));
    }
    let mut out = http::response_head(answer.status, &headers, length, *keep_alive);
    let deadline = Instant::now() + cfg.response_timeout;
    let sent = match answer.body {
        Content::Bytes(bytes) => {
            if !head_only {
                out.extend_from_slice(&bytes);
            }
            http::write_within(stream, &out, deadline)
        }
        Content::File { .. } if head_only || answer.status == 304 => {
            http::write_within(stream, &out, deadline)
        }
        Content::File { file, len } => send_file(stream, out, file, len, deadline),
    };
    if let Err(e) = sent {
        debug!("http: could not send the answer for {path}: {e}");
        return None;
    }
    Some(rest)
}

/// Bytes of a `--public` file read and written at a time: one piece in memory per response,
/// whatever the file's size.
const FILE_PIECE: usize = 64 * 1024;

/// Writes `head` and then the `len` bytes of `file`, in pieces, all before `deadline`.
fn send_file(
    stream: &TcpStream,
    head: Vec<u8>,
    mut file: std::fs::File,
    len: u64,
    deadline: Instant,
) -> std::io::Result<()> {
    use std::io::Read;
    let mut out = head;
    let mut piece = vec![0u8; FILE_PIECE];
    let mut left = len;
    // Bounded: every turn sends at least one byte of the file or fails.
    loop {
        if left > 0 {
            let want = usize::try_from(left).unwrap_or(FILE_PIECE).min(FILE_PIECE);
            let n = match file.read(&mut piece[..want]) {
                Ok(0) => {
                    // The file shrank after its length was sent: the connection must close.
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            out.extend_from_slice(&piece[..n]);
            left -= n as u64;
        }
        http::write_within(stream, &out, deadline)?;
        out.clear();
        if left == 0 {
            return Ok(());
        }
    }
}

fn body_failed(site: &Site<'_>, stream: &TcpStream, e: BodyError) -> Option<Vec<u8>> {
    if let BodyError::Timeout = e {
        refuse(site, stream, 408, &[]);
    }
    None
}

/// The body's length from `Content-Length` (0 without one); `None` when it is not a number,
/// or when several disagree (a request smuggling attempt through a proxy).
fn content_length(head: &Head) -> Option<usize> {
    let mut length = None;
    for (name, value) in &head.headers {
        if !name.eq_ignore_ascii_case("content-length") {
            continue;
        }
        let value = std::str::from_utf8(value).ok()?.trim();
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: usize = value.parse().ok()?;
        if length.is_some_and(|l| l != n) {
            return None;
        }
        length = Some(n);
    }
    Some(length.unwrap_or(0))
}

/// GET and HEAD of the page's files, `/healthz` and `/metrics`.
fn page(site: &Site<'_>, head: &Head, path: &str) -> Answer {
    if !matches!(head.method.as_str(), "GET" | "HEAD") {
        return Answer::text(405);
    }
    match path {
        "/healthz" => Answer::new(200, "application/json", &b"{\"ok\":1}"[..])
            .with("Cache-Control", "no-store"),
        "/metrics" => Answer::new(
            200,
            "text/plain; version=0.0.4",
            site.handle.metrics().into_bytes(),
        )
        .with("Cache-Control", "no-store"),
        _ => match assets::lookup(site.cfg.public_dir.as_deref(), path) {
            Ok(None) => Answer::text(404),
            Err(e) => {
                debug!("http: cannot open {path} now: {e}");
                site.stats.rejected(503);
                Answer::text(503).with("Retry-After", "5")
            }
            Ok(Some(asset)) => {
                let unchanged = head.headers.iter().any(|(n, v)| {
                    n.eq_ignore_ascii_case("if-none-match") && v.as_slice() == asset.etag.as_bytes()
                });
                let mut answer = Answer::new(
                    if unchanged { 304 } else { 200 },
                    asset.content_type,
                    Vec::new(),
                );
                if !unchanged {
                    answer.body = match asset.body {
                        assets::Body::Embedded(bytes) => Content::Bytes(Cow::Borrowed(bytes)),
                        assets::Body::File { file, len } => Content::File { file, len },
                    };
                }
                answer
                    .with("ETag", asset.etag)
                    // Revalidate every time: the files change with the binary, and a 304 costs
                    // one small round trip.
                    .with("Cache-Control", "no-cache")
                    .with("X-Content-Type-Options", "nosniff")
                    .with("Referrer-Policy", "no-referrer")
                    .with("Content-Security-Policy", PAGE_CSP)
            }
        },
    }
}

/// Why `POST /api/publish` is refused before its body is read, if it is: wrong method, no key
/// configured, or the key missing or wrong. Publishing is refused entirely when no key is
/// configured, so a server never accepts anonymous publishing by accident.
fn publish_refusal(site: &Site<'_>, head: &Head) -> Option<Answer> {
    if head.method != "POST" {
        return Some(Answer::json(405, json!({"ok": false, "error": "use POST"})));
    }
    let Some(key) = site.cfg.api_key.as_deref().filter(|k| !k.is_empty()) else {
        return Some(Answer::json(
            403,
            json!({"ok": false, "error": "publishing over HTTP is off; start the server with --api-key"}),
        ));
    };
    let presented = head.headers.iter().find_map(|(name, value)| {
        let value = std::str::from_utf8(value).ok()?;
        if name.eq_ignore_ascii_case("x-api-key") {
            Some(value.trim())
        } else if name.eq_ignore_ascii_case("authorization") {
            value
                .get(..7)
                .filter(|p| p.eq_ignore_ascii_case("bearer "))
                .map(|_| value[7..].trim())
        } else {
            None
        }
    });
    if presented.is_some_and(|p| crate::auth::ct_eq(p.as_bytes(), key.as_bytes())) {
        None
    } else {
        Some(Answer::json(
            401,
            json!({"ok": false, "error": "missing or wrong API key"}),
        ))
    }
}

/// `POST /api/publish` with the right key: `{"channel": "news", "text": "..."}` publishes to a
/// relay channel (`""` is the one at `/`), `{"room": "lobby", "text": "...", "from": "ci"}`
/// says it in a chat room.
fn publish(site: &Site<'_>, body: &[u8]) -> Answer {
    let closed = || Answer::json(503, json!({"ok": false, "error": "shutting down"}));
    let Ok(body) = std::str::from_utf8(body) else {
        return Answer::json(400, json!({"ok": false, "error": "body is not UTF-8"}));
    };
    if crate::json::nesting_depth_exceeds(body.as_bytes(), MAX_BODY_DEPTH) {
        return Answer::json(
            400,
            json!({"ok": false, "error": "body must be a JSON object"}),
        );
    }
    let Ok(serde_json::Value::Object(msg)) = serde_json::from_str::<serde_json::Value>(body) else {
        return Answer::json(
            400,
            json!({"ok": false, "error": "body must be a JSON object"}),
        );
    };
    let Some(text) = msg.get("text").and_then(|t| t.as_str()) else {
        return Answer::json(
            400,
            json!({"ok": false, "error": "`text` (a string) is required"}),
        );
    };
    if let Some(room) = msg.get("room").and_then(|r| r.as_str()) {
        let from = msg.get("from").and_then(|f| f.as_str()).unwrap_or("api");
        return match site.handle.say_within(room, from, text, PUBLISH_TIMEOUT) {
            Ok(id) => Answer::json(200, json!({"ok": true, "id": id})),
            Err(Error::Rejected(why)) => Answer::json(400, json!({"ok": false, "error": why})),
            Err(Error::Unavailable) => Answer::json(
                503,
                json!({"ok": false, "error": "chat unavailable: Redis unreachable; retry shortly"}),
            ),
            Err(_) => closed(),
        };
    }
    let channel = msg.get("channel").and_then(|c| c.as_str()).unwrap_or("");
    if !channel.is_empty() && !upgrade::valid_channel(channel) {
        return Answer::json(400, json!({"ok": false, "error": "bad channel name"}));
    }
    match site.handle.publish_text(channel, text) {
        Ok(()) => Answer::json(200, json!({"ok": true})),
        Err(_) => closed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_counted_outside_strings_only() {
        assert!(!crate::json::nesting_depth_exceeds(
            br#"{"text":"[[[[[[","a":[[1]]}"#,
            3
        ));
        assert!(crate::json::nesting_depth_exceeds(br#"{"a":[[[1]]]}"#, 3));
        assert!(!crate::json::nesting_depth_exceeds(
            br#"{"t":"\"[[[[[[[[["}"#,
            1
        ));
        assert!(!crate::json::nesting_depth_exceeds(b"]]]]{}", 1));
        assert!(crate::json::nesting_depth_exceeds(
            &[b'['; 60_000],
            MAX_BODY_DEPTH
        ));
    }
}
