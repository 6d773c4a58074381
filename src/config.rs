//! Server settings, each with its default and the reason for it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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

    /// Bytes read from a socket per `read` call (tungstenite's read buffer, allocated and
    /// zero-filled per connection). Default 4 KiB: an idle connection keeps this buffer for its
    /// whole life, and tungstenite's default of 128 KiB would cost 128 MiB per 1000 clients.
    /// Larger messages still arrive whole, in more reads.
    pub read_buffer_size: usize,

    /// Most bytes queued for one client that has stopped reading (beyond what the kernel's socket
    /// buffer already holds). Past it the client is disconnected with Close 1008 and counted as a
    /// slow consumer, so that one stalled client never holds memory or delays others.
    /// Default 1 MiB (Centrifugo's default for the same queue): about 1000 chat messages.
    pub max_pending_bytes: usize,

    /// How long a client may stay silent before the server pings it; a client that also ignores
    /// the ping until the next tick is dropped. Default 30 s, so a vanished peer (reset, half-open
    /// TCP, a phone that lost its network) is pruned within 60 s, and idle connections cause one
    /// dispatcher wake-up per 30 s in total, not per client. `Duration::ZERO` turns pings off.
    pub ping_interval: Duration,

    /// Time allowed for a request head (HTTP or WebSocket handshake) to arrive. Default 10 s:
    /// generous for a slow phone link, yet a client that connects and sends nothing, or trickles
    /// its headers, releases its thread after this long.
    pub handshake_timeout: Duration,

    /// Largest request head accepted, in bytes. Default 16 KiB (nginx's large header buffer is
    /// 8 KiB; browsers with many cookies stay well under 16 KiB). Larger heads get 431.
    pub max_head_size: usize,

    /// Largest HTTP request body accepted (for `POST` endpoints). Default 64 KiB.
    pub max_body_size: usize,

    /// Most simultaneous connections (WebSocket and HTTP); past it new connections get 503 with
    /// `Retry-After`. Default 0 = derived from the open-files limit at start: the limit minus 64
    /// descriptors kept for the server itself (listeners, logs, the data directory).
    pub max_connections: usize,

    /// Stack size of each connection thread. Default 128 KiB: the read loop needs a few KiB;
    /// the margin covers logging and parsing. Only touched pages become resident, so this sets
    /// virtual memory (which matters on 32-bit ARM: 10,000 threads x 2 MiB would not fit) rather
    /// than RSS.
    pub thread_stack_size: usize,

    /// How long a graceful shutdown waits for Close frames to reach slow clients before it cuts
    /// their sockets. Default 3 s.
    pub shutdown_timeout: Duration,

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
            ping_interval: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            max_head_size: 16 * 1024,
            max_body_size: 64 * 1024,
            max_connections: 0,
            thread_stack_size: 128 * 1024,
            shutdown_timeout: Duration::from_secs(3),
            listen_backlog: 4096,
        }
    }
}
