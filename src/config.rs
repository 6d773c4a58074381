//! Server settings, each with its default and the reason for it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::chat::ChatConfig;

/// Everything a [`Server`](crate::Server) can be told before it starts.
///
/// Start from [`Config::default()`] and change the fields you need; the struct is
/// `#[non_exhaustive]` so that new settings can be added without breaking you.
///
/// ```
/// let mut config = wschat::Config::default();
/// config.addr = "127.0.0.1:0".parse().unwrap(); // any free port
/// config.welcome = Some("hello from wschat".into());
/// assert_eq!(config.max_message_size, 64 * 1024);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:8080`: reachable from this machine only; use
    /// `0.0.0.0:8080` for a LAN. Port 0 picks a free port (see
    /// [`Server::local_addr`](crate::Server::local_addr)).
    pub addr: SocketAddr,

    /// Serve static files from this folder instead of the copy of `public/` embedded in the
    /// binary at compile time. Default `None` (embedded), so the binary works when copied alone.
    pub public_dir: Option<PathBuf>,

    /// Text sent to every new relay client right after the handshake, as the tutorials' "welcome"
    /// message. Default `None` (nothing is sent, so relay clients see only other clients' data).
    pub welcome: Option<String>,

    /// Largest message a client may send, in bytes, after reassembling fragments. Default 64 KiB:
    /// chat lines and sensor readings are far smaller, and the limit bounds what one connection
    /// can make the server buffer. A larger message is refused with Close 1009.
    pub max_message_size: usize,

    /// Bytes read from a socket per `read` call, into a per-connection read-ahead buffer that is
    /// freed while the connection is parked. Default 4 KiB: dozens of small messages per
    /// system call from a busy sender; larger messages still arrive whole, in more reads.
    /// (tungstenite's own buffer, which lives as long as the connection, is kept at 256 bytes;
    /// its default of 128 KiB would cost 128 MiB per 1000 clients.)
    pub read_buffer_size: usize,

    /// Most bytes queued for one client that has stopped reading (beyond what the kernel's socket
    /// buffer already holds). Past it the client is disconnected with Close 1008 and counted as a
    /// slow consumer, so that one stalled client never holds memory or delays others.
    /// Default 1 MiB (Centrifugo's default for the same queue): about 1000 chat messages.
    pub max_pending_bytes: usize,

    /// Most bytes the server holds for delivery in all: messages waiting for the dispatcher
    /// plus every client's unsent queue, together. Senders wait (TCP slows them) while it is
    /// spent; when the queues alone overspend it, the clients furthest behind are disconnected
    /// (Close 1008) until it fits. Default 128 MiB: 128 clients at the `max_pending_bytes`
    /// limit, or 2000 maximum-size messages in flight, and an eighth of a 1 GiB Raspberry Pi;
    /// it bounds what 19,000 clients each just under their own limit could otherwise hold.
    pub max_buffered_bytes: usize,

    /// How long a client may stay silent before the server pings it; a client that also ignores
    /// the ping until the next tick is dropped. Default 30 s, so a vanished peer (reset, half-open
    /// TCP, a phone that lost its network) is pruned within 60 s, and idle connections cause one
    /// dispatcher wake-up per 30 s in total, not per client. `Duration::ZERO` turns pings off.
    pub ping_interval: Duration,

    /// How long the dispatcher may hold frames to write more of them per `send` while it is
    /// behind a busy broadcast (a round of writes reached 256 clients or more and more events
    /// were already waiting; otherwise frames are written as soon as the dispatcher has taken
    /// what was waiting). Default 2 ms: at 1000 clients x 500 messages/s the server's CPU fell
    /// from 99% to 62% of a core, p99 rose by ~2.7 ms; at 200 messages/s, which it keeps up
    /// with, almost nothing is held (BENCHMARKS.md "A write delay"). A chat, an echo or a
    /// handshake never waits.
    /// `Duration::ZERO`: never hold. At most 1 s.
    pub write_delay: Duration,

    /// Time allowed for a request head (HTTP or WebSocket handshake) to arrive. Default 5 s:
    /// a phone on a poor link sends its few hundred bytes in well under a second, and a client
    /// that connects and sends nothing, or trickles its headers, releases its thread after this.
    pub handshake_timeout: Duration,

    /// Largest request head accepted, in bytes. Default 16 KiB (nginx's large header buffer is
    /// 8 KiB; browsers with many cookies stay well under 16 KiB). Larger heads get 431.
    pub max_head_size: usize,

    /// Largest HTTP request body accepted (for `POST` endpoints). Default 64 KiB.
    pub max_body_size: usize,

    /// Longest one HTTP response may take to write, in total (not per write). Default 30 s:
    /// the page's files are tens of KiB, and 30 s lets a phone on a poor link fetch a few MiB
    /// from `public_dir`; a reader that takes nothing, or one segment at a time, is cut off
    /// after this instead of holding its thread.
    pub response_timeout: Duration,

    /// Most simultaneous connections (WebSocket and HTTP); past it new connections get 503 with
    /// `Retry-After`. Default 0 = derived from the open-files limit at start: the limit minus 64
    /// descriptors kept for the server itself (listeners, logs, the data directory).
    pub max_connections: usize,

    /// How long a connection may read nothing before it is parked: its thread ends (freeing
    /// its stack, about 12 KiB of touched pages) and one parking thread watches it with the
    /// other idle ones, answering heartbeats; its next message gets it a thread again. Default
    /// 5 s: longer than the pause between a person's messages in a lively chat, so active
    /// clients keep their thread, while the many idle clients of a broadcast cost ~1 KiB each.
    /// Parking and waking cost tens of microseconds. A new connection starts parked (its
    /// handshake thread ends after the 101) and gets a thread when it first speaks, so a
    /// reconnect storm needs threads only for the handshakes in flight. `Duration::ZERO`:
    /// never park (a thread per connection for its whole life).
    pub park_after: Duration,

    /// Stack size of each connection thread. Default 128 KiB: the read loop needs a few KiB;
    /// the margin covers logging and parsing. Only touched pages become resident, so this sets
    /// virtual memory (which matters on 32-bit ARM: 10,000 threads x 2 MiB would not fit) rather
    /// than RSS.
    pub thread_stack_size: usize,

    /// Most connection threads at once (handshakes in progress, HTTP requests, WebSocket
    /// connections that are talking; idle ones are parked and hold none). Over it, a new
    /// connection gets 503 and a parked connection that speaks waits for the next free thread,
    /// while parked clients keep getting their messages and heartbeats. Default 1024: ~12 MiB
    /// of touched stack and 128 MiB of address space (a 32-bit Pi has 3 GiB), far more talkers
    /// at the same instant than two cores can serve.
    pub max_connection_threads: usize,

    /// How long a graceful shutdown waits for Close frames to reach slow clients before it cuts
    /// their sockets. Default 3 s.
    pub shutdown_timeout: Duration,

    /// The chat at `/chat`: limits, history, and where the history log lives
    /// (`chat.data_dir`, default `None`: history in memory only, nothing touches the disk).
    pub chat: ChatConfig,

    /// Chat messages per second one connection may send on average; 0 turns the limit off.
    /// Default 10: well above typing speed, low enough that one client cannot make the single
    /// dispatcher fan out more than ten room messages a second. Over it, a client gets
    /// `rate_limited`; 50 refusals in a row close it with 1008.
    pub chat_rate: f64,

    /// Chat messages a connection may send back to back before `chat_rate` applies. Default
    /// 20: a reconnecting page fires its join/history/users requests at once.
    pub chat_burst: f64,

    /// A file of access tokens (one `TOKEN [NAME]` per line). When it is set (or `tokens` is
    /// not empty, or `require_token` is true), every WebSocket upgrade must present a valid
    /// token, as `?token=` or `Authorization: Bearer`, else it gets 401: a file that holds no
    /// token admits nobody, it never switches the check off. A token with a NAME logs its chat
    /// client in as NAME and forbids renaming.
    /// [`Handle::reload_tokens`](crate::Handle::reload_tokens) re-reads it (the binary does on
    /// SIGHUP). Default `None`: no tokens, anyone may connect.
    pub tokens_file: Option<PathBuf>,

    /// Require a token even when `tokens_file` is unset and `tokens` is empty (then nobody is
    /// admitted). The binary sets it when `$WSCHAT_TOKENS` is set, even to an empty value:
    /// whether tokens are required follows from the configuration, never from how many were
    /// read. Default false.
    pub require_token: bool,

    /// Tokens given directly (token, optional bound chat name), in addition to `tokens_file`.
    /// The binary fills it from the `WSCHAT_TOKENS` environment variable. Default empty.
    pub tokens: Vec<(String, Option<String>)>,

    /// An HS256 key for JWT admission: the file's bytes as they are, one trailing newline
    /// ignored (the secret string your app signs with). When it or `jwt_public_key_file` is
    /// set, every WebSocket upgrade needs a valid token (a file token or a JWT), as for
    /// `tokens_file`; both kinds work side by side. Re-read by
    /// [`Handle::reload_tokens`](crate::Handle::reload_tokens). Needs the `jwt` cargo feature
    /// (on by default). Default `None`.
    pub jwt_secret_file: Option<PathBuf>,

    /// PEM public keys for RS256 (RSA) and ES256 (P-256) JWTs: one or more `PUBLIC KEY` blocks
    /// (several during a key rotation; every key of the token's family is tried). Never used
    /// for HMAC. Default `None`.
    pub jwt_public_key_file: Option<PathBuf>,

    /// When set, a JWT's `iss` must equal it (else 401 "wrong issuer"). Default `None`: any
    /// or no `iss`.
    pub jwt_issuer: Option<String>,

    /// When set, a JWT's `aud` must contain it (else 401 "wrong audience"). Default `None`:
    /// any or no `aud`.
    pub jwt_audience: Option<String>,

    /// Clock leeway for `exp` and `nbf`. Default 30 s: the app's and this machine's clocks
    /// may differ by seconds (a Pi without an RTC syncs NTP only after boot), and a token that
    /// expires 30 s late is a small risk next to users refused at random. A connection is
    /// closed at `exp` plus this, the moment a new handshake with its token would be refused.
    pub jwt_leeway: Duration,

    /// Relay channels (names or `prefix-*` patterns; `*` = all) that only JWT holders whose
    /// `channels` claim matches may use; others get 403 at the handshake. Default empty.
    pub private_channels: Vec<String>,

    /// Origins (`https://example.com`) whose pages may open WebSockets here besides the
    /// server's own; `*` allows any. A request whose `Origin` is neither gets 403; requests
    /// without `Origin` (non-browser clients) are always allowed. Default empty: only pages
    /// served by this server, which stops cross-site WebSocket hijacking.
    pub allowed_origins: Vec<String>,

    /// A subprotocol the relay endpoints accept (`Sec-WebSocket-Protocol`), chosen when a client
    /// offers it. Default `None`. `/echo` always accepts `echo-protocol`, `/chat` `wschat.v1`.
    pub relay_protocol: Option<String>,

    /// Host names (the `Host` header without its port) this server answers to; a request for
    /// any other gets 403. Default empty: any host, so `cargo run` works on any address. Set it
    /// on a LAN server without tokens: a page on another site that re-points its own name at
    /// your server's address (DNS rebinding) then cannot talk to it, since the browser still
    /// sends that site's name as `Host`. See SECURITY.md.
    pub allowed_hosts: Vec<String>,

    /// Reverse proxies whose word is taken about who the client is: from these peers only,
    /// the client address comes from `Forwarded` / `X-Forwarded-For` (the right-most address
    /// that is not itself one of these) and is what `max_per_ip`, the logs and the admission
    /// hook see. Default empty: every client is its TCP peer, and those headers are ignored
    /// (anyone could write them).
    pub trusted_proxies: Vec<crate::Cidr>,

    /// Most connections from one client address (an IPv6 client counts per /64, the block one
    /// subscriber usually gets); more get 503. Default 1000: a household or an office behind
    /// one NAT fits; one host cannot take all of `max_connections`. 0 = no limit. Loopback
    /// clients are exempt unless `limit_loopback` is set, because behind a reverse proxy on the
    /// same machine every client has the proxy's address (list the proxy in `trusted_proxies`
    /// to count the real clients instead).
    pub max_per_ip: usize,

    /// Apply `max_per_ip` to loopback peers too. Default `false` (see `max_per_ip`).
    pub limit_loopback: bool,

    /// Relay messages per second one connection may send on average; 0 = no limit. Default
    /// 1000: far above what a person or a sensor sends, low enough that one client cannot fill
    /// the dispatcher's queue. Over it the server reads that client more slowly (TCP back
    /// pressure): nothing is dropped. `/echo` is not limited: a client that does not read its
    /// echoes is cut as a slow consumer anyway.
    pub relay_rate: f64,

    /// Relay messages a connection may send back to back before `relay_rate` applies.
    /// Default 2000.
    pub relay_burst: f64,

    /// The key that `POST /api/publish` requires (`Authorization: Bearer KEY` or
    /// `X-API-Key: KEY`). Default `None`: the endpoint refuses everything (403), so publishing
    /// over HTTP is never open by accident.
    pub api_key: Option<String>,

    /// Join a cluster through this Redis server (`redis://[:password@]host:port/db`): every
    /// node with the same Redis serves one relay and one chat (see the `cluster` module and
    /// ARCHITECTURE.md). Default `None`: a single node, and no Redis code runs. Needs the
    /// `redis` feature (on by default).
    pub redis: Option<String>,

    /// This node's name in the cluster's logs and metrics. Default `None`: host name, process
    /// id and start time.
    pub node_id: Option<String>,

    /// Accept backlog. Default 4096: a reconnect storm after a restart (every browser comes back
    /// at once) must queue in the kernel rather than be dropped and retried a second later.
    pub listen_backlog: i32,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_dir: None,
            welcome: None,
            max_message_size: 64 * 1024,
            read_buffer_size: 4 * 1024,
            max_pending_bytes: 1024 * 1024,
            max_buffered_bytes: 128 * 1024 * 1024,
            ping_interval: Duration::from_secs(30),
            write_delay: Duration::from_millis(2),
            handshake_timeout: Duration::from_secs(5),
            max_head_size: 16 * 1024,
            max_body_size: 64 * 1024,
            response_timeout: Duration::from_secs(30),
            max_connections: 0,
            park_after: Duration::from_secs(5),
            thread_stack_size: 128 * 1024,
            max_connection_threads: 1024,
            shutdown_timeout: Duration::from_secs(3),
            listen_backlog: 4096,
            chat: ChatConfig::default(),
            tokens_file: None,
            require_token: false,
            tokens: Vec::new(),
            jwt_secret_file: None,
            jwt_public_key_file: None,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_leeway: Duration::from_secs(30),
            private_channels: Vec::new(),
            allowed_origins: Vec::new(),
            relay_protocol: None,
            allowed_hosts: Vec::new(),
            trusted_proxies: Vec::new(),
            max_per_ip: 1000,
            limit_loopback: false,
            relay_rate: 1000.0,
            relay_burst: 2000.0,
            api_key: None,
            redis: None,
            node_id: None,
            chat_rate: crate::ratelimit::CHAT_RATE_PER_SEC,
            chat_burst: crate::ratelimit::CHAT_BURST,
        }
    }
}
