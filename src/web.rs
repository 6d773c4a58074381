//! Plain HTTP: the page, its assets, `/healthz` and `/metrics`, served by tiny_http.
//!
//! tiny_http listens on a private loopback port. The public accept loop (`server.rs`) reads each
//! request head itself, bounded in size and time, keeps WebSocket upgrades, and forwards every
//! other request here with [`forward`]. Why not let tiny_http own the public port: its
//! `upgrade()` gives a stream that cannot be cloned, given timeouts or written by anyone but the
//! thread blocked reading it, and it has no limits on header size or time (see
//! `shared/notes/io-design.md`). Why not serve HTTP ourselves: tiny_http already does
//! the page well (HEAD, ranges of versions, response encoding); forwarding costs one loopback
//! connection per page request, which a page load of a few files does not notice.
//!
//! Each forwarded request carries `Connection: close`, so every request on the public port goes
//! through the accept loop's checks (a keep-alive connection could otherwise send an unbounded
//! header section straight to tiny_http).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use log::{debug, warn};
use tiny_http::{Header, Method, Response, StatusCode};

use crate::assets;
use crate::chat::worker::ChatEvent;
use crate::config::Config;
use crate::http::{self, Head};
use crate::hub::Event;
use crate::stats::Stats;

/// Threads answering page requests. Each answer is a copy of an in-memory file, so two are
/// plenty on two cores; tiny_http's own per-connection threads do the socket I/O.
const HANDLER_THREADS: usize = 2;

/// Longest a forwarded request may take to answer. The page's files are in memory; this only
/// bounds a stuck handler.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// Headers that describe one hop, not the request, and are not forwarded (RFC 9110 7.6.1),
/// plus our own peer header, which a client must not be able to set.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
    "x-wschat-peer",
];

pub(crate) struct Web {
    server: Arc<tiny_http::Server>,
    pub addr: SocketAddr,
    threads: Vec<JoinHandle<()>>,
}

struct Ctx {
    public_dir: Option<PathBuf>,
    stats: Arc<Stats>,
    /// To publish into the relay and the chat (`POST /api/publish`).
    tx: Sender<Event>,
    chat: Sender<ChatEvent>,
    api_key: Option<String>,
}

impl Web {
    pub(crate) fn start(
        cfg: &Config,
        stats: Arc<Stats>,
        tx: Sender<Event>,
        chat: Sender<ChatEvent>,
    ) -> io::Result<Web> {
        let server = tiny_http::Server::http("127.0.0.1:0").map_err(io::Error::other)?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| io::Error::other("tiny_http did not bind an IP address"))?;
        let server = Arc::new(server);
        let ctx = Arc::new(Ctx {
            public_dir: cfg.public_dir.clone(),
            stats,
            tx,
            chat,
            api_key: cfg.api_key.clone().filter(|k| !k.is_empty()),
        });
        let mut threads = Vec::new();
        for i in 0..HANDLER_THREADS {
            let server = server.clone();
            let ctx = ctx.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("wschat-http-{i}"))
                    .spawn(move || {
                        for request in server.incoming_requests() {
                            respond(&ctx, request);
                        }
                    })?,
            );
        }
        Ok(Web {
            server,
            addr,
            threads,
        })
    }

    pub(crate) fn stop(self) {
        for _ in &self.threads {
            self.server.unblock();
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn header(name: &str, value: &str) -> Header {
    // Invariant: names and values here are ASCII without CR/LF, which is all `from_bytes` checks.
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("valid header")
}

fn respond(ctx: &Ctx, mut request: tiny_http::Request) {
    ctx.stats.http_requests.fetch_add(1, Relaxed);
    let path = request.url().split('?').next().unwrap_or("").to_string();
    let is_get = matches!(request.method(), Method::Get | Method::Head);
    let response = if path == "/api/publish" {
        let (status, body) = publish(ctx, &mut request);
        Response::from_string(body.to_string())
            .with_status_code(StatusCode(status))
            .with_header(header("Content-Type", "application/json"))
            .with_header(header("Cache-Control", "no-store"))
    } else if !is_get {
        text(405, "405 Method Not Allowed\n").with_header(header("Allow", "GET, HEAD"))
    } else if path == "/healthz" {
        Response::from_string("{\"ok\":1}")
            .with_header(header("Content-Type", "application/json"))
            .with_header(header("Cache-Control", "no-store"))
    } else if path == "/metrics" {
        Response::from_string(ctx.stats.render())
            .with_header(header("Content-Type", "text/plain; version=0.0.4"))
            .with_header(header("Cache-Control", "no-store"))
    } else {
        match assets::lookup(ctx.public_dir.as_deref(), &path) {
            None => text(404, "404 Not Found\n"),
            Some(asset) => {
                let unchanged = request.headers().iter().any(|h| {
                    h.field.equiv("If-None-Match") && h.value.as_str() == asset.etag.as_ref()
                });
                let body = if unchanged {
                    Vec::new()
                } else {
                    asset.body.into_owned()
                };
                let status = if unchanged { 304 } else { 200 };
                Response::from_data(body)
                    .with_status_code(StatusCode(status))
                    .with_header(header("Content-Type", asset.content_type))
                    .with_header(header("ETag", &asset.etag))
                    // Revalidate every time: the files change with the binary, and a 304 costs
                    // one small round trip.
                    .with_header(header("Cache-Control", "no-cache"))
                    .with_header(header("X-Content-Type-Options", "nosniff"))
                    .with_header(header("Referrer-Policy", "no-referrer"))
                    .with_header(header(
                        "Content-Security-Policy",
                        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
                    ))
            }
        }
    };
    if let Err(e) = request.respond(response) {
        debug!("http: could not send response for {path}: {e}");
    }
}

/// Longest the publish endpoint waits for the dispatcher to accept a chat message. It answers
/// within a batch (milliseconds); this only bounds a server that is shutting down.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// `POST /api/publish`: `{"channel": "news", "text": "..."}` publishes to a relay channel (`""`
/// is the one at `/`), `{"room": "lobby", "text": "...", "from": "ci"}` says it in a chat room.
/// Needs the API key (`Authorization: Bearer KEY` or `X-API-Key: KEY`); refused entirely when
/// none is configured, so a server never accepts anonymous publishing by accident.
fn publish(ctx: &Ctx, request: &mut tiny_http::Request) -> (u16, serde_json::Value) {
    use serde_json::json;
    if *request.method() != Method::Post {
        return (405, json!({"ok": false, "error": "use POST"}));
    }
    let Some(key) = &ctx.api_key else {
        return (
            403,
            json!({"ok": false, "error": "publishing over HTTP is off; start the server with --api-key"}),
        );
    };
    let presented = request.headers().iter().find_map(|h| {
        if h.field.equiv("X-API-Key") {
            Some(h.value.as_str().trim().to_string())
        } else if h.field.equiv("Authorization") {
            let v = h.value.as_str();
            v.get(..7)
                .filter(|p| p.eq_ignore_ascii_case("bearer "))
                .map(|_| v[7..].trim().to_string())
        } else {
            None
        }
    });
    if !presented.is_some_and(|p| crate::auth::ct_eq(p.as_bytes(), key.as_bytes())) {
        return (
            401,
            json!({"ok": false, "error": "missing or wrong API key"}),
        );
    }
    let mut body = String::new();
    if request.as_reader().read_to_string(&mut body).is_err() {
        return (400, json!({"ok": false, "error": "body is not UTF-8"}));
    }
    let Ok(serde_json::Value::Object(msg)) = serde_json::from_str::<serde_json::Value>(&body)
    else {
        return (
            400,
            json!({"ok": false, "error": "body must be a JSON object"}),
        );
    };
    let Some(text) = msg.get("text").and_then(|t| t.as_str()) else {
        return (
            400,
            json!({"ok": false, "error": "`text` (a string) is required"}),
        );
    };
    if let Some(room) = msg.get("room").and_then(|r| r.as_str()) {
        let from = msg.get("from").and_then(|f| f.as_str()).unwrap_or("api");
        let (reply, answer) = crossbeam_channel::bounded(1);
        let event = ChatEvent::Say {
            room: room.to_string(),
            from: from.to_string(),
            text: text.to_string(),
            reply: Some(reply),
        };
        if ctx.chat.send(event).is_err() {
            return (503, json!({"ok": false, "error": "shutting down"}));
        }
        return match answer.recv_timeout(PUBLISH_TIMEOUT) {
            Ok(Ok(id)) => (200, json!({"ok": true, "id": id})),
            Ok(Err(why)) => (400, json!({"ok": false, "error": why})),
            Err(_) => (503, json!({"ok": false, "error": "shutting down"})),
        };
    }
    let channel = msg.get("channel").and_then(|c| c.as_str()).unwrap_or("");
    if !channel.is_empty() && !crate::upgrade::valid_channel(channel) {
        return (400, json!({"ok": false, "error": "bad channel name"}));
    }
    let event = Event::Publish {
        channel: channel.to_string(),
        opcode: crate::frame::TEXT,
        data: tungstenite::Bytes::from(text.to_string()),
    };
    match ctx.tx.send(event) {
        Ok(()) => (200, json!({"ok": true})),
        Err(_) => (503, json!({"ok": false, "error": "shutting down"})),
    }
}

fn text(status: u16, body: &str) -> Response<io::Cursor<Vec<u8>>> {
    Response::from_string(body)
        .with_status_code(StatusCode(status))
        .with_header(header("Content-Type", "text/plain; charset=utf-8"))
}

/// Forwards one plain HTTP request (head already read) to tiny_http and its answer back.
///
/// Runs on the connection's own thread. The body, if any, is read here first (bounded by
/// `max_body_size` and the handshake deadline), so tiny_http never waits on a slow client.
pub(crate) fn forward(
    cfg: &Config,
    stats: &Stats,
    web_addr: SocketAddr,
    client: TcpStream,
    head: Head,
    peer: SocketAddr,
) {
    let refuse = |status: u16| {
        stats.rejected(status);
        http::reject(&client, status, &[]);
    };
    if head.header("transfer-encoding").is_some() {
        return refuse(411); // no endpoint here takes a streamed body
    }
    let length = match head.header("content-length").map(str::parse::<usize>) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return refuse(400),
    };
    if length > cfg.max_body_size {
        return refuse(413);
    }
    let mut body = head.rest.clone();
    if body.len() < length && head.has_token("expect", "100-continue") {
        let _ = (&client).write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    let deadline = Instant::now() + cfg.handshake_timeout;
    while body.len() < length {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || client.set_read_timeout(Some(left)).is_err() {
            return refuse(408);
        }
        let mut chunk = [0u8; 4096];
        match (&client).read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return refuse(408),
        }
    }
    body.truncate(length);

    let mut request = format!(
        "{} {} HTTP/1.{}\r\n",
        head.method, head.target, head.minor_version
    );
    for (name, value) in &head.headers {
        if HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            continue;
        }
        request.push_str(name);
        request.push_str(": ");
        request.push_str(&String::from_utf8_lossy(value));
        request.push_str("\r\n");
    }
    request.push_str(&format!(
        "Connection: close\r\nX-Wschat-Peer: {peer}\r\n\r\n"
    ));
    let mut request = request.into_bytes();
    request.extend_from_slice(&body);

    let upstream = match TcpStream::connect_timeout(&web_addr, Duration::from_secs(1)) {
        Ok(s) => s,
        Err(e) => {
            warn!("http: page server unreachable: {e}");
            return refuse(502);
        }
    };
    let _ = upstream.set_read_timeout(Some(UPSTREAM_TIMEOUT));
    let _ = upstream.set_write_timeout(Some(UPSTREAM_TIMEOUT));
    let _ = client.set_write_timeout(Some(UPSTREAM_TIMEOUT));
    if (&upstream).write_all(&request).is_err() {
        return refuse(502);
    }
    if let Err(e) = io::copy(&mut &upstream, &mut &client) {
        debug!("http: forwarding the answer to {peer} failed: {e}");
    }
    http::linger_close(&client);
}
