//! The crate's error type.

use std::fmt;
use std::io;
use std::net::SocketAddr;

/// What can go wrong when starting or driving a [`Server`](crate::Server).
///
/// ```
/// let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
/// let mut config = wschat::Config::default();
/// config.addr = busy.local_addr().unwrap(); // already taken
/// match wschat::Server::bind(config) {
///     Err(wschat::Error::Bind { addr, source }) => println!("{addr} is busy: {source}"),
///     Err(other) => panic!("unexpected: {other}"),
///     Ok(_) => panic!("bound a port that is in use"),
/// }
/// ```
///
/// Errors caused by one client (a bad handshake, a protocol violation, a slow reader) never
/// reach the caller: they end that client's connection with an HTTP status or a close code and
/// are logged at debug level.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The listening address could not be bound: it is in use, or not an address of this
    /// machine, or a port below 1024 without the privilege. Pick another `addr`.
    Bind {
        /// The address that was asked for.
        addr: SocketAddr,
        /// What the operating system said.
        source: io::Error,
    },
    /// A setting is out of range; the message says which and why.
    Config(String),
    /// The server refused a request from the host program (for example a chat message with an
    /// invalid room name or too long a text); the text says why.
    Rejected(String),
    /// The server has shut down, so it cannot take this request. The value is handed back.
    Closed,
    /// A cluster node (`Config::redis`) cannot reach Redis, which orders and stores the chat:
    /// the message was not taken. Try again shortly (the node reconnects by itself).
    Unavailable,
    /// Any other I/O failure while starting (a thread could not be spawned, the internal HTTP
    /// listener could not be bound, the data directory could not be opened).
    Io(io::Error),
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            Error::Config(msg) => write!(f, "invalid configuration: {msg}"),
            Error::Rejected(why) => write!(f, "refused: {why}"),
            Error::Closed => f.write_str("the server has shut down"),
            Error::Unavailable => f.write_str("the chat is unavailable: Redis is unreachable"),
            Error::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Bind { source, .. } => Some(source),
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}
