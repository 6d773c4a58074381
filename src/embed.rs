//! What a host program sees of the server and how it steers it: events about clients, and
//! hooks for admission and for chat messages. Nothing here exposes tungstenite.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::http::Head;

/// Something that happened, as received from [`Server::events`](crate::Server::events).
///
/// ```
/// use wschat::{Payload, ServerEvent};
/// # let mut config = wschat::Config::default();
/// # config.addr = "127.0.0.1:0".parse().unwrap();
/// let server = wschat::Server::builder(config).events(256).bind()?;
/// let events = server.events().unwrap();
/// server.handle().say("lobby", "bot", "hello")?;
/// match events.recv_timeout(std::time::Duration::from_secs(5)).unwrap() {
///     ServerEvent::ChatMessage { room, from, text, .. } => {
///         assert_eq!((room.as_str(), from.as_str(), text.as_str()), ("lobby", "bot", "hello"));
///     }
///     ServerEvent::Message { data: Payload::Text(t), .. } => println!("a client said {t}"),
///     other => println!("{other:?}"),
/// }
/// # Ok::<(), wschat::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// A WebSocket client completed its handshake.
    Connected {
        /// The client's number, unique for the life of the server.
        client: u64,
        /// The path it connected to (`/`, `/relay/NAME`, `/echo`, `/chat`), without the query.
        path: String,
        /// Its address.
        peer: SocketAddr,
    },
    /// A client sent a message (relay, echo or chat, as sent; chat messages arrive here as
    /// their raw JSON or text, before the chat looks at them).
    Message {
        /// Who sent it.
        client: u64,
        /// The path it is connected to.
        path: String,
        /// What it sent.
        data: Payload,
    },
    /// A message was said in a chat room (by a client, a bot or `POST /api/publish`), after
    /// the chat accepted it: it has its id and is in the room's history.
    ChatMessage {
        /// The message's id.
        id: u64,
        /// The room.
        room: String,
        /// The author's name.
        from: String,
        /// The text, as broadcast (after the filter hook).
        text: String,
    },
    /// A client's connection ended.
    Left {
        /// Who left.
        client: u64,
    },
}

/// A message's contents.
///
/// ```
/// let p = wschat::Payload::Text("hi".into());
/// assert_eq!(p, wschat::Payload::Text(String::from("hi")));
/// assert_ne!(p, wschat::Payload::Binary(b"hi".to_vec()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

/// A WebSocket handshake being decided, as shown to an admission hook.
///
/// ```
/// # let mut config = wschat::Config::default();
/// # config.addr = "127.0.0.1:0".parse().unwrap();
/// let server = wschat::Server::builder(config)
///     .admit(|req: &wschat::AdmitRequest| {
///         let from_lan = req.peer().ip().is_loopback();
///         let user = req.query("user").or_else(|| req.header("x-user").map(String::from));
///         if req.path() == "/chat" && user.is_none() && !from_lan {
///             return Err(401);
///         }
///         Ok(())
///     })
///     .bind()?;
/// # Ok::<(), wschat::Error>(())
/// ```
pub struct AdmitRequest<'a> {
    pub(crate) head: &'a Head,
    pub(crate) peer: SocketAddr,
    pub(crate) user: Option<&'a str>,
}

impl AdmitRequest<'_> {
    /// The path asked for, without the query (`/chat`).
    pub fn path(&self) -> &str {
        self.head.path()
    }

    /// A query parameter, decoded (`?user=alice` → `Some("alice")`).
    pub fn query(&self, key: &str) -> Option<String> {
        self.head.query_param(key)
    }

    /// A request header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The user id (`sub`) of the client's verified JWT; `None` without one (no token, or a
    /// file token). The token has already passed every check when the hook sees it.
    pub fn user(&self) -> Option<&str> {
        self.user
    }
}

/// Decides whether a handshake may proceed: `Ok(())` admits, `Err(status)` refuses with that
/// HTTP status (a 4xx; anything else is sent as 403).
pub(crate) type AdmitHook = Arc<dyn Fn(&AdmitRequest<'_>) -> Result<(), u16> + Send + Sync>;

/// Rewrites a chat text before it is broadcast: `Some(text)` to send (changed or not), `None`
/// to refuse it (the sender gets `error filtered`).
pub(crate) type FilterHook = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The host's hooks, shared by every connection thread.
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    pub admit: Option<AdmitHook>,
    pub filter: Option<FilterHook>,
}
