//! The public API: [`Builder`] → [`Server`] → [`Handle`], which drives it from other threads.
//! The accept loop and one connection's life are in `accept.rs`; who may take a place and who
//! may become a client, in `admission.rs`.

mod accept;
mod admission;
mod door;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;
use log::{info, warn};
use parking_lot::{Mutex, RwLock};
use tungstenite::Bytes;

use crate::auth::Tokens;
use crate::budget::Budget;
use crate::chat::Chat;
use crate::chat::worker::{self as chat_worker, ChatEvent, ChatWorker};
use crate::config::Config;
use crate::embed::{AdmitRequest, Hooks, ServerEvent};
use crate::error::{Error, Result};
use crate::frame;
use crate::hub::{self, Event, Hub};
use crate::park::Parking;
use crate::stats::Stats;
use crate::sys::{self, Epoll};

use accept::accept_loop;

/// Descriptors kept back from `max_connections` for the server's own use (the listener, epoll,
/// log and data files, `--public` files being served).
const RESERVED_FDS: u64 = 64;

/// State shared by the accept loop, connection threads and handles.
struct Shared {
    cfg: Arc<Config>,
    local_addr: SocketAddr,
    listener: TcpListener,
    tx: Sender<Event>,
    /// The dispatcher's joining inbox, for clients handshaken on the accept thread
    /// (`Hub::take_joined`): unbounded, as each entry holds one of `max_connections` slots.
    joining: Sender<Event>,
    /// To the chat worker: chat connections' events, and `Handle::say`.
    chat: Sender<ChatEvent>,
    /// Bytes held for delivery (see `budget.rs`).
    budget: Arc<Budget>,
    stats: Arc<Stats>,
    stopping: AtomicBool,
    next_id: AtomicU64,
    max_connections: usize,
    rejecters: AtomicUsize,
    /// The tokens in force; replaced whole on reload, so a handshake sees one consistent set.
    tokens: RwLock<Arc<Tokens>>,
    /// Connections per peer address, for `max_per_ip`.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    hooks: Hooks,
    events: Option<Sender<ServerEvent>>,
    parking: Arc<Parking>,
    /// The accept thread's epoll: the listener and the heads still arriving (`door.rs`).
    door: Epoll,
}

/// Starts a server with hooks and events; see [`Server::builder`].
pub struct Builder {
    config: Config,
    hooks: Hooks,
    events: Option<usize>,
}

impl Builder {
    /// Decide admission yourself (e.g. check a token against your own users): called in the
    /// connection's thread for every WebSocket handshake that passed the built-in checks, before
    /// the 101. `Err(status)` refuses with that HTTP status (a 4xx, e.g. 401 or 403; anything
    /// else is sent as 403).
    ///
    /// ```
    /// let mut config = wschat::Config::default();
    /// config.addr = "127.0.0.1:0".parse().unwrap();
    /// let server = wschat::Server::builder(config)
    ///     .admit(|req| match req.query("key").as_deref() {
    ///         Some("let-me-in") => Ok(()),
    ///         _ => Err(401),
    ///     })
    ///     .bind()?;
    /// # Ok::<(), wschat::Error>(())
    /// ```
    pub fn admit(
        mut self,
        hook: impl Fn(&AdmitRequest<'_>) -> std::result::Result<(), u16> + Send + Sync + 'static,
    ) -> Builder {
        self.hooks.admit = Some(Arc::new(hook));
        self
    }

    /// Filter or rewrite chat messages (`say`, `dm` and plain text on `/chat`) before they are
    /// broadcast: return `Some(text)` to send it (changed or not), `None` to refuse it (the
    /// sender gets `error filtered`). Called exactly once per message, in the sender's
    /// connection thread, so a slow filter delays only that sender, never the dispatcher.
    ///
    /// ```
    /// let mut config = wschat::Config::default();
    /// config.addr = "127.0.0.1:0".parse().unwrap();
    /// let server = wschat::Server::builder(config)
    ///     .filter(|text| Some(text.replace("darn", "d**n")))
    ///     .bind()?;
    /// # Ok::<(), wschat::Error>(())
    /// ```
    pub fn filter(
        mut self,
        hook: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Builder {
        self.hooks.filter = Some(Arc::new(hook));
        self
    }

    /// Receive [`ServerEvent`]s through [`Server::events`], with room for `capacity` unread
    /// events. When they are not read: connection threads wait (their clients are slowed, no
    /// message is lost), while chat-room events, which come from the dispatcher that must
    /// never wait, are dropped and counted in `wschat_events_dropped_total`.
    ///
    /// ```
    /// # let mut config = wschat::Config::default();
    /// # config.addr = "127.0.0.1:0".parse().unwrap();
    /// # let server = wschat::Server::bind(config)?;
    /// # let handle = server.handle();
    /// let mut config = wschat::Config::default();
    /// config.addr = "127.0.0.1:0".parse().unwrap();
    /// let server = wschat::Server::builder(config).events(1024).bind()?;
    /// let events = server.events().unwrap();
    /// std::thread::spawn(move || {
    ///     for event in events {
    ///         if let wschat::ServerEvent::Message { client, data, .. } = event {
    ///             println!("client {client} sent {data:?}");
    ///         }
    ///     }
    /// });
    /// # Ok::<(), wschat::Error>(())
    /// ```
    pub fn events(mut self, capacity: usize) -> Builder {
        self.events = Some(capacity.max(1));
        self
    }

    /// Binds and starts the server; see [`Server::bind`].
    ///
    /// ```
    /// # let mut config = wschat::Config::default();
    /// # config.addr = "127.0.0.1:0".parse().unwrap();
    /// # let server = wschat::Server::bind(config)?;
    /// # let handle = server.handle();
    /// let mut config = wschat::Config::default();
    /// config.addr = "127.0.0.1:0".parse().unwrap();
    /// let built = wschat::Server::builder(config).bind()?;
    /// assert_ne!(built.local_addr().port(), 0);
    /// # Ok::<(), wschat::Error>(())
    /// ```
    pub fn bind(self) -> Result<Server> {
        Server::start(self)
    }
}

/// A running server. Dropping it shuts it down and waits for it.
///
/// ```no_run
/// let server = wschat::Server::bind(wschat::Config::default())?;
/// println!("listening on http://{}", server.local_addr());
/// server.join(); // until a Handle calls shutdown()
/// # Ok::<(), wschat::Error>(())
/// ```
pub struct Server {
    handle: Handle,
    events: Option<crossbeam_channel::Receiver<ServerEvent>>,
    threads: Vec<JoinHandle<()>>,
}

/// A cheap, cloneable handle to a running server: publish, count, shut down.
///
/// Every method is safe to call from any thread, also after the server has stopped (then
/// publishing returns [`Error::Closed`]).
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Server {
    /// Binds `config.addr`, starts the server's threads and returns at once.
    ///
    /// # Errors
    /// [`Error::Bind`] when the address cannot be bound, [`Error::Config`] for an out-of-range
    /// setting, [`Error::Io`] when a thread cannot start.
    ///
    /// ```
    /// # let mut config = wschat::Config::default();
    /// # config.addr = "127.0.0.1:0".parse().unwrap();
    /// # let server = wschat::Server::bind(config)?;
    /// # let handle = server.handle();
    /// assert_eq!(server.handle().connection_count(), 0);
    /// # Ok::<(), wschat::Error>(())
    /// ```
    pub fn bind(config: Config) -> Result<Server> {
        Server::builder(config).bind()
    }

    /// A [`Builder`] for a server with hooks or events.
    ///
    /// ```
    /// # let mut config = wschat::Config::default();
    /// # config.addr = "127.0.0.1:0".parse().unwrap();
    /// # let server = wschat::Server::bind(config)?;
    /// # let handle = server.handle();
    /// let mut config = wschat::Config::default();
    /// config.addr = "127.0.0.1:0".parse().unwrap();
    /// let with_events = wschat::Server::builder(config).events(64).bind()?;
    /// assert!(with_events.events().is_some());
    /// # Ok::<(), wschat::Error>(())
    /// ```
    pub fn builder(config: Config) -> Builder {
        Builder {
            config,
            hooks: Hooks::default(),
            events: None,
        }
    }

    /// What clients do, as events, when the server was built with
    /// [`Builder::events`]; `None` otherwise. The receiver can be cloned.
    ///
    /// ```
    /// let mut config = wschat::Config::default();
    /// config.addr = "127.0.0.1:0".parse().unwrap();
    /// let server = wschat::Server::builder(config).events(1024).bind()?;
    /// let events = server.events().expect("asked for events");
    /// assert!(events.try_recv().is_err()); // nobody connected yet
    /// # Ok::<(), wschat::Error>(())
    /// ```
    pub fn events(&self) -> Option<crossbeam_channel::Receiver<ServerEvent>> {
        self.events.clone()
    }

    fn start(builder: Builder) -> Result<Server> {
        let Builder {
            config,
            hooks,
            events,
        } = builder;
        validate(&config)?;
        let listener = TcpListener::bind(config.addr).map_err(|source| Error::Bind {
            addr: config.addr,
            source,
        })?;
        sys::set_backlog(&listener, config.listen_backlog)?;
        sys::set_nodelay_inherited(&listener)?;
        let local_addr = listener.local_addr()?;
        let max_connections = if config.max_connections > 0 {
            config.max_connections
        } else {
            sys::nofile_limit().saturating_sub(RESERVED_FDS).max(16) as usize
        };

        let tokens = Tokens::from_config(&config)?;
        if tokens.required() {
            info!(
                "{} access tokens and {} JWT keys loaded: WebSocket clients must present a token",
                tokens.len(),
                tokens.jwt_keys()
            );
        }
        let clustered = config.redis.is_some();
        let mut chat = if clustered {
            // A cluster's chat lives in Redis (its log and snapshots), not in a data dir.
            if config.chat.data_dir.is_some() {
                warn!(
                    "--data-dir is not used for the chat history of a cluster node: it lives in Redis"
                );
            }
            Chat::open(crate::chat::ChatConfig {
                data_dir: None,
                ..config.chat.clone()
            })?
        } else {
            Chat::open(config.chat.clone())?
        };
        // Nobody is connected yet: the outbox of the renames this could cause stays empty.
        chat.set_reserved_names(tokens.bound_names(), &mut crate::chat::Outbox::new());
        let reserved_names: Vec<String> = tokens.bound_names().map(|n| n.to_string()).collect();
        let cfg = Arc::new(config);
        let stats = Arc::new(Stats::default());
        let (tx, rx) = crossbeam_channel::bounded(hub::QUEUE_CAPACITY);
        let (joining, joined) = crossbeam_channel::unbounded();
        let (chat_tx, chat_rx) = crossbeam_channel::bounded(chat_worker::QUEUE_CAPACITY);
        let (events_tx, events_rx) = match events {
            Some(capacity) => {
                let (t, r) = crossbeam_channel::bounded(capacity);
                (Some(t), Some(r))
            }
            None => (None, None),
        };
        let epoll = Arc::new(Epoll::new()?);
        let budget = Arc::new(Budget::new(cfg.max_buffered_bytes));
        let parking = Arc::new(Parking::new(&cfg, stats.clone())?);
        // The accept thread waits in epoll, for new connections and for heads still arriving.
        let door = Epoll::new()?;
        watch_listener(&listener, &door)?;
        let shared = Arc::new(Shared {
            cfg: cfg.clone(),
            local_addr,
            listener,
            tx: tx.clone(),
            joining,
            chat: chat_tx.clone(),
            budget: budget.clone(),
            stats: stats.clone(),
            stopping: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            max_connections,
            rejecters: AtomicUsize::new(0),
            tokens: RwLock::new(Arc::new(tokens)),
            per_ip: Mutex::new(HashMap::new()),
            hooks,
            events: events_tx.clone(),
            parking: parking.clone(),
            door,
        });

        let mut threads = Vec::new();
        let (relay, stop_cluster) = if clustered {
            let cluster = start_cluster(
                &cfg,
                chat,
                chat_rx,
                tx.clone(),
                stats.clone(),
                events_tx,
                budget.clone(),
            )?;
            // In a cluster the chat state comes from the log: the reserved names go there.
            let _ = chat_tx.send(ChatEvent::ReserveNames(reserved_names));
            threads.extend(cluster.threads);
            (Some(cluster.relay), Some(cluster.stop))
        } else {
            let worker = ChatWorker::new(chat, chat_rx, tx.clone(), stats.clone(), events_tx);
            threads.push(spawn("wschat-chat", move || worker.run())?);
            (None, None)
        };
        let hub = Hub::new(cfg.clone(), stats, rx, joined, epoll.clone(), budget, relay);
        let hub_parking = parking.clone();
        let stop_chat = chat_tx;
        threads.push(spawn("wschat-dispatch", move || {
            hub.run();
            hub_parking.stop();
            // The chat worker forwards chat clients' last frames until the dispatcher is done.
            let _ = stop_chat.send(ChatEvent::Stop);
            if let Some(stop) = stop_cluster {
                stop();
            }
        })?);
        threads.push(spawn("wschat-park", move || parking.run())?);
        threads.push(spawn("wschat-poller", move || hub::run_poller(epoll, tx))?);
        let accept_shared = shared.clone();
        threads.push(spawn("wschat-accept", move || accept_loop(&accept_shared))?);
        info!("listening on http://{local_addr} (max {max_connections} connections)");
        Ok(Server {
            handle: Handle { shared },
            events: events_rx,
            threads,
        })
    }

    /// The address the server listens on (with the real port when bound to port 0).
    ///
    /// ```
    /// # let mut config = wschat::Config::default();
    /// # config.addr = "127.0.0.1:0".parse().unwrap();
    /// # let server = wschat::Server::bind(config)?;
    /// # let handle = server.handle();
    /// println!("listening on {}", server.local_addr());
    /// # Ok::<(), wschat::Error>(())
    /// ```
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.shared.local_addr
    }

    /// A handle for other threads.
    ///
    /// ```
    /// # let mut config = wschat::Config::default();
    /// # config.addr = "127.0.0.1:0".parse().unwrap();
    /// # let server = wschat::Server::bind(config)?;
    /// # let handle = server.handle();
    /// let other = server.handle(); // cheap: clone it into every thread that publishes
    /// other.publish_text("", "hi")?;
    /// # Ok::<(), wschat::Error>(())
    /// ```
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Waits until the server has shut down (see [`Handle::shutdown`]).
    ///
    /// ```
    /// # let mut config = wschat::Config::default();
    /// # config.addr = "127.0.0.1:0".parse().unwrap();
    /// # let server = wschat::Server::bind(config)?;
    /// # let handle = server.handle();
    /// handle.shutdown();
    /// server.join(); // returns once every client got its Close 1001 (or the timeout passed)
    /// # Ok::<(), wschat::Error>(())
    /// ```
    pub fn join(mut self) {
        self.wait();
    }

    fn wait(&mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if !self.threads.is_empty() || self.handle.shared.stopping.load(SeqCst) {
            info!("server on {} stopped", self.handle.shared.local_addr);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.handle.shutdown();
            self.wait();
        }
    }
}

/// How long `Handle::say` waits on a cluster node: Redis's command timeout (2 s) several times
/// over, so only a message that will never be answered runs into it.
const CLUSTER_SAY_TIMEOUT: Duration = Duration::from_secs(10);

/// The listener never blocks (the accept thread takes what it holds, then waits in epoll).
fn watch_listener(listener: &TcpListener, door: &Epoll) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    door.watch_readable(listener, door::LISTENER_KEY)
}

fn validate(cfg: &Config) -> Result<()> {
    let bad = |m: &str| Err(Error::Config(m.to_string()));
    if cfg.max_message_size == 0 {
        return bad("max_message_size must be at least 1");
    }
    if cfg.read_buffer_size < 64 {
        return bad("read_buffer_size must be at least 64 bytes");
    }
    if cfg.max_head_size < 1024 {
        return bad("max_head_size must be at least 1 KiB");
    }
    if cfg.write_delay > Duration::from_secs(1) {
        return bad("write_delay must be at most 1 s");
    }
    if cfg.handshake_timeout.is_zero() {
        return bad("handshake_timeout must be above zero");
    }
    if cfg.response_timeout.is_zero() {
        return bad("response_timeout must be above zero");
    }
    if cfg.thread_stack_size < 64 * 1024 {
        return bad("thread_stack_size must be at least 64 KiB");
    }
    Ok(())
}

/// A cluster node's chat and relay threads (`cluster/`), and how to stop them.
struct Started {
    threads: Vec<JoinHandle<()>>,
    relay: Sender<crate::hub::Relayed>,
    stop: Box<dyn FnOnce() + Send>,
}

#[cfg(feature = "redis")]
fn start_cluster(
    cfg: &Arc<Config>,
    chat: Chat,
    chat_rx: crossbeam_channel::Receiver<ChatEvent>,
    hub: Sender<Event>,
    stats: Arc<Stats>,
    events: Option<Sender<ServerEvent>>,
    budget: Arc<Budget>,
) -> Result<Started> {
    let cluster =
        crate::cluster::Cluster::start(cfg.clone(), chat, chat_rx, hub, stats, events, budget)
            .map_err(|e| Error::Config(e.to_string()))?;
    let crate::cluster::Cluster {
        shared,
        threads,
        relay,
    } = cluster;
    Ok(Started {
        threads,
        relay,
        stop: Box::new(move || shared.stopping.store(true, SeqCst)),
    })
}

#[cfg(not(feature = "redis"))]
fn start_cluster(
    _: &Arc<Config>,
    _: Chat,
    _: crossbeam_channel::Receiver<ChatEvent>,
    _: Sender<Event>,
    _: Arc<Stats>,
    _: Option<Sender<ServerEvent>>,
    _: Arc<Budget>,
) -> Result<Started> {
    Err(Error::Config(
        "--redis needs the `redis` feature, which this build leaves out".into(),
    ))
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name.into()).spawn(f)
}

impl Handle {
    /// The address the server listens on.
    ///
    /// ```
    /// # let mut config = wschat::Config::default();
    /// # config.addr = "127.0.0.1:0".parse().unwrap();
    /// # let server = wschat::Server::bind(config)?;
    /// # let handle = server.handle();
    /// assert_ne!(handle.local_addr().port(), 0); // port 0 became a real port
    /// # Ok::<(), wschat::Error>(())
    /// ```
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// Sends `text` to every client of relay channel `channel` (`""` is the channel at `/`,
    /// `"news"` the one at `/relay/news`).
    ///
    /// Returns once the message is queued for the dispatcher; it waits only if the dispatcher's
    /// queue is full (see `QUEUE_CAPACITY`), which slows a publisher down to what clients take.
    ///
    /// # Errors
    /// [`Error::Closed`] after shutdown.
    ///
    /// ```
    /// # let mut config = wschat::Config::default();
    /// # config.addr = "127.0.0.1:0".parse().unwrap();
    /// # let server = wschat::Server::bind(config)?;
    /// # let handle = server.handle();
    /// // Every client of ws://ADDR/relay/prices gets this text.
    /// handle.publish_text("prices", r#"{"btc":64000}"#)?;
    /// // "" is the relay at ws://ADDR/ itself.
    /// handle.publish_text("", "hello everyone")?;
    /// # Ok::<(), wschat::Error>(())
    /// ```
    pub fn publish_text(&self, channel: &str, text: impl Into<String>) -> Result<()> {
        self.publish(channel, frame::TEXT, Bytes::from(text.into()))
    }

    /// Sends binary `data` to every client of relay channel `channel`; see
    /// [`publish_text`](Handle::publish_text).
    ///
    /// ```
    /// # let mut config = wschat::Config::default();
    /// # config.addr = "127.0.0.1:0".parse().unwrap();
    /// # let server = wschat::Server::bind(config)?;
    /// # let handle = server.handle();
    /// handle.publish_binary("frames", vec![0u8, 1, 2, 3])?;
    /// # Ok::<(), wschat::Error>(())
    /// ```
    pub fn publish_binary(&self, channel: &str, data: impl Into<Vec<u8>>) -> Result<()> {
        self.publish(channel, frame::BINARY, Bytes::from(data.into()))
    }

    fn publish(&self, channel: &str, opcode: u8, data: Bytes) -> Result<()> {
        if self.shared.stopping.load(Relaxed) {
            return Err(Error::Closed);
        }
        // Like a client's message: wait while the server holds too much for delivery.
        self.shared.budget.take(data.len());
        self.shared
            .tx
            .send(Event::Publish {
                channel: channel.to_string(),
                opcode,
                data,
            })
            .map_err(|_| Error::Closed)
    }

    /// Says `text` in chat room `room` as user `from` (a bot, a host program), exactly as if a
    /// client named `from` had sent it: it gets an id, enters the history, and every member of
    /// the room receives it. Returns the message's id once the chat has accepted it and stored
    /// it (with a data dir: committed to disk, by the fsync policy; in a cluster: stored in
    /// Redis, and sent to the room's members on every node).
    ///
    /// # Errors
    /// [`Error::Rejected`] with the reason when the room or name is invalid or the text too
    /// long; [`Error::Unavailable`] on a cluster node that cannot reach Redis (or has no answer
    /// from it within 10 s);
    /// [`Error::Closed`] after shutdown.
    ///
    /// ```
    /// # let mut config = wschat::Config::default();
    /// # config.addr = "127.0.0.1:0".parse().unwrap();
    /// # let server = wschat::Server::bind(config)?;
    /// # let handle = server.handle();
    /// let id = handle.say("lobby", "announcer", "the server restarts at noon")?;
    /// assert!(id > 0);
    /// // Invalid rooms or names are refused with the reason.
    /// assert!(matches!(handle.say("", "x", "y"), Err(wschat::Error::Rejected(_))));
    /// # Ok::<(), wschat::Error>(())
    /// ```
    pub fn say(&self, room: &str, from: &str, text: &str) -> Result<u64> {
        self.say_until(room, from, text, None)
    }

    /// [`say`](Handle::say), giving up with [`Error::Closed`] when the dispatcher has not
    /// answered within `timeout` (`POST /api/publish` must not hold its thread forever).
    pub(crate) fn say_within(
        &self,
        room: &str,
        from: &str,
        text: &str,
        timeout: Duration,
    ) -> Result<u64> {
        self.say_until(room, from, text, Some(timeout))
    }

    fn say_until(
        &self,
        room: &str,
        from: &str,
        text: &str,
        timeout: Option<Duration>,
    ) -> Result<u64> {
        if self.shared.stopping.load(Relaxed) {
            return Err(Error::Closed);
        }
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.shared
            .chat
            .send(ChatEvent::Say {
                room: room.to_string(),
                from: from.to_string(),
                text: text.to_string(),
                reply: Some(reply),
            })
            .map_err(|_| Error::Closed)?;
        // A cluster node answers once the message is back from Redis; should that never
        // happen (a resync skipped it), the caller is not kept waiting forever.
        let timeout = match timeout {
            None if self.shared.cfg.redis.is_some() => Some(CLUSTER_SAY_TIMEOUT),
            t => t,
        };
        let answer = match timeout {
            Some(timeout) => answer.recv_timeout(timeout).ok(),
            None => answer.recv().ok(),
        };
        if answer.is_none()
            && self.shared.cfg.redis.is_some()
            && !self.shared.stopping.load(Relaxed)
        {
            return Err(Error::Unavailable);
        }
        match answer {
            Some(Ok(id)) => Ok(id),
            Some(Err(why)) if why == chat_worker::UNAVAILABLE => Err(Error::Unavailable),
            Some(Err(why)) => Err(Error::Rejected(why)),
            None => Err(Error::Closed),
        }
    }

    /// Re-reads the tokens file (and keeps `Config::tokens`) and the JWT key files, replacing
    /// the tokens and keys in force, and returns how many file tokens there are now.
    /// Connections whose file token is no longer valid are closed with 1008 ("access token
    /// revoked"); everyone else stays connected (JWT connections end at their `exp`). On error
    /// (a file is unreadable, a key malformed) the old tokens and keys stay in force.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read.
    ///
    /// ```
    /// # let mut config = wschat::Config::default();
    /// # config.addr = "127.0.0.1:0".parse().unwrap();
    /// # let server = wschat::Server::bind(config)?;
    /// # let handle = server.handle();
    /// // With no tokens file configured, the inline tokens (none here) stay in force.
    /// assert_eq!(handle.reload_tokens()?, 0);
    /// # Ok::<(), wschat::Error>(())
    /// ```
    pub fn reload_tokens(&self) -> Result<usize> {
        let cfg = &self.shared.cfg;
        // The JWT key files too: a rotated key takes effect on SIGHUP. JWT connections are not
        // cut here: they end at their `exp`.
        let fresh = Tokens::from_config(cfg)?;
        let count = fresh.len();
        let fresh = Arc::new(fresh);
        let names = fresh.bound_names().map(str::to_owned).collect();
        let _ = self.shared.chat.send(ChatEvent::ReserveNames(names));
        let old = std::mem::replace(&mut *self.shared.tokens.write(), fresh.clone());
        let keep = fresh.set();
        let revoked: std::collections::HashSet<Arc<str>> = old
            .set()
            .into_iter()
            .filter(|t| !keep.contains(t))
            .collect();
        info!(
            "tokens reloaded: {count} in force, {} revoked, {} JWT keys",
            revoked.len(),
            fresh.jwt_keys()
        );
        if !revoked.is_empty() {
            let _ = self.shared.tx.send(Event::Revoked(revoked));
        }
        Ok(count)
    }

    /// Chat rooms that exist now (with members or with history), as of the dispatcher's last
    /// batch.
    ///
    /// ```
    /// # let mut config = wschat::Config::default();
    /// # config.addr = "127.0.0.1:0".parse().unwrap();
    /// # let server = wschat::Server::bind(config)?;
    /// # let handle = server.handle();
    /// handle.say("news", "bot", "first!")?;
    /// // Counts are refreshed by the dispatcher after each batch.
    /// let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    /// while handle.room_count() == 0 && std::time::Instant::now() < deadline {
    ///     std::thread::sleep(std::time::Duration::from_millis(5));
    /// }
    /// assert_eq!(handle.room_count(), 1);
    /// # Ok::<(), wschat::Error>(())
    /// ```
    pub fn room_count(&self) -> usize {
        self.shared.stats.chat_rooms.load(Relaxed)
    }

    /// Chat users connected now, as of the dispatcher's last batch.
    ///
    /// ```
    /// # let mut config = wschat::Config::default();
    /// # config.addr = "127.0.0.1:0".parse().unwrap();
    /// # let server = wschat::Server::bind(config)?;
    /// # let handle = server.handle();
    /// assert_eq!(handle.chat_user_count(), 0); // nobody on /chat yet
    /// # Ok::<(), wschat::Error>(())
    /// ```
    pub fn chat_user_count(&self) -> usize {
        self.shared.stats.chat_users.load(Relaxed)
    }

    /// WebSocket connections open now.
    ///
    /// ```
    /// # let mut config = wschat::Config::default();
    /// # config.addr = "127.0.0.1:0".parse().unwrap();
    /// # let server = wschat::Server::bind(config)?;
    /// # let handle = server.handle();
    /// assert_eq!(handle.connection_count(), 0);
    /// # Ok::<(), wschat::Error>(())
    /// ```
    pub fn connection_count(&self) -> usize {
        self.shared.stats.ws_open.load(Relaxed)
    }

    /// The server's counters in the Prometheus text format (what `GET /metrics` serves).
    ///
    /// ```
    /// # let mut config = wschat::Config::default();
    /// # config.addr = "127.0.0.1:0".parse().unwrap();
    /// # let server = wschat::Server::bind(config)?;
    /// # let handle = server.handle();
    /// assert!(handle.metrics().contains("wschat_connections 0"));
    /// # Ok::<(), wschat::Error>(())
    /// ```
    pub fn metrics(&self) -> String {
        self.shared.stats.render()
    }

    /// Starts a graceful shutdown and returns at once: stop accepting, send Close 1001 to every
    /// client, wait up to `shutdown_timeout` for them to go, then cut the rest.
    /// [`Server::join`] returns when it is done. Calling it again does nothing.
    ///
    /// ```
    /// # let mut config = wschat::Config::default();
    /// # config.addr = "127.0.0.1:0".parse().unwrap();
    /// # let server = wschat::Server::bind(config)?;
    /// # let handle = server.handle();
    /// let waiter = std::thread::spawn(move || server.join());
    /// handle.shutdown(); // from any thread
    /// waiter.join().unwrap();
    /// assert!(handle.publish_text("", "too late").is_err());
    /// # Ok::<(), wschat::Error>(())
    /// ```
    pub fn shutdown(&self) {
        if self.shared.stopping.swap(true, SeqCst) {
            return;
        }
        info!("shutting down");
        // Pending and future accepts fail from now on; the accept thread's wait ends.
        let _ = sys::shutdown_listener(&self.shared.listener);
        self.shared.door.wake();
        let _ = self.shared.tx.send(Event::Shutdown);
    }
}
