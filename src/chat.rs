//! The `/chat` endpoint's logic: names, rooms, messages, history. No sockets, no clocks, no
//! threads: the dispatcher calls [`Chat`] with a connection id, what arrived and the time, and
//! gets back an [`Outbox`] of who must receive which text. Because one thread makes all the
//! calls, every member of a room sees that room's messages in the same order, ids increasing.
//!
//! The wire format is in [`crate::protocol`] and PROTOCOL.md; the history store and its log
//! are in [`crate::history`].

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use log::{debug, trace};
use serde_json::Value;

pub(crate) use crate::history::Fsync;
use crate::history::{Entry, Log, RecordIn, RecordOut, RoomHistory};
use crate::protocol::{
    self, ClientMsg, ErrorCode, GUEST_PREFIX, NameProblem, Parsed, PresenceEvent, Reject, Request,
    RoomInfo, ServerMsg, clean_name, name_key,
};

/// The dispatcher's id for a connection. The chat never reuses or invents one.
pub(crate) type ConnId = u64;

/// One frame from a connection, classified in its reader thread (off the dispatcher).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Input {
    /// A well-formed request.
    Msg(ClientMsg),
    /// A text frame that is not a JSON object: said in the sender's current room.
    Plain(String),
    /// A text frame meant as a request but refused; answered with an `error`.
    Invalid(Reject),
    /// A binary frame; answered with `error binary_not_supported`.
    Binary,
    /// The reader's rate limit refused this frame; answered with `error rate_limited`.
    RateLimited {
        /// The refused request's `ref`, if it had one.
        reference: Option<Value>,
    },
}

impl Input {
    /// What the reader sends instead of `self` when the rate limit refuses it: the same
    /// request's `ref` (so the client can match the `rate_limited` error), nothing else.
    pub(crate) fn into_rate_limited(self) -> Input {
        let reference = match self {
            Input::Msg(m) => m.reference,
            Input::Invalid(r) => r.reference,
            Input::RateLimited { reference } => reference,
            Input::Plain(_) | Input::Binary => None,
        };
        Input::RateLimited { reference }
    }
}

/// Classifies one text frame. Never panics, whatever the input; linear work, refusing frames
/// over [`protocol::MAX_INPUT_BYTES`] and JSON nested deeper than [`protocol::MAX_DEPTH`]
/// before serde sees them. Meant for the reader thread, so the dispatcher never parses.
pub(crate) fn parse_input(text: &str) -> Input {
    match protocol::parse_request(text) {
        Parsed::Msg(m) => Input::Msg(m),
        Parsed::Plain(s) => Input::Plain(s),
        Parsed::Invalid(r) => Input::Invalid(r),
    }
}

/// The chat's limits and storage. Every bound a client can hit is here, with its reason.
///
/// ```
/// let mut config = wschat::Config::default();
/// config.chat.data_dir = Some(std::env::temp_dir().join("wschat-doc-example"));
/// config.chat.history_per_room = 200;
/// config.chat.max_text_chars = 1000;
/// assert_eq!(config.chat.default_room, "lobby");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ChatConfig {
    /// Where the history log lives; `None` (the default) keeps history in memory only and
    /// never touches the disk.
    pub data_dir: Option<PathBuf>,
    /// When the log is synced to stable storage. Default [`Fsync::Batch`]: one `fdatasync`
    /// per dispatcher batch that wrote something, so a message anyone saw survives power loss
    /// and the cost is shared by the batch.
    pub fsync: Fsync,
    /// Longest message text, in characters. Default 4000: a long paste or a code snippet fits,
    /// and 64 KiB frames leave room for it even fully escaped.
    pub max_text_chars: usize,
    /// Longest user or room name, in characters after trimming. Default 32: fits a user list
    /// column and any real name.
    pub max_name_chars: usize,
    /// Rooms one connection may be in at once. Default 20: a rename or disconnect sends one
    /// `presence` per room, so this bounds the fan-out a single client can cause.
    pub max_rooms_per_client: usize,
    /// Rooms the server holds (with members or with history). Default 1000. When full, the
    /// empty room with the oldest last message is retired to make place; `server_room_limit`
    /// only when every room has members. Bounds history memory together with the next two.
    pub max_rooms: usize,
    /// Messages of history kept per room, in memory and (compacted) on disk. Default 1000.
    pub history_per_room: usize,
    /// Bytes of history kept per room (text + name + 64 per message). Default 256 KiB, which
    /// holds the 1000 messages above when they average under ~190 bytes (typical chat lines
    /// are far shorter) and caps history memory at `max_rooms` x 256 KiB = 250 MiB however
    /// long the messages are.
    pub history_bytes_per_room: usize,
    /// Messages of history in a `joined`. Default 50: about a screenful.
    pub history_on_join: usize,
    /// Most messages one `history` answer holds, whatever `limit` asks. Default 200: at most
    /// ~800 KB of JSON at the 4000-character maximum (200 x 4000 bytes of ASCII), small enough
    /// for the dispatcher to encode without stalling others.
    pub history_page_max: usize,
    /// Most names in a `users` answer or `joined.users` (`count` always has the total).
    /// Default 1000: a list a UI can show, and joining a 10 000-member room costs the
    /// dispatcher a 1000-name answer rather than a 10 000-name one.
    pub user_list_max: usize,
    /// Rooms with more members than this get no `presence` events. Default 1000: in a room
    /// that big a join or leave would cost a message to everyone, so a crowd connecting would
    /// cost the dispatcher quadratic work, and nobody reads a thousand joins anyway.
    pub presence_max_members: usize,
    /// The room every new connection joins unless its URL names another. Default `lobby`.
    pub default_room: String,
    /// Private rooms: names or `prefix-*` patterns (case-insensitive). Joining one, reading
    /// its history or listing its users needs a JWT whose `rooms` claim matches it, else
    /// `forbidden`; `rooms` lists it only to those. Default empty: every room is open.
    pub private_rooms: Vec<String>,
}

impl Default for ChatConfig {
    fn default() -> ChatConfig {
        ChatConfig {
            data_dir: None,
            fsync: Fsync::Batch,
            max_text_chars: 4000,
            max_name_chars: 32,
            max_rooms_per_client: 20,
            max_rooms: 1000,
            history_per_room: 1000,
            history_bytes_per_room: 256 * 1024,
            history_on_join: 50,
            history_page_max: 200,
            user_list_max: 1000,
            presence_max_members: 1000,
            default_room: "lobby".to_owned(),
            private_rooms: Vec::new(),
        }
    }
}

/// One thing the dispatcher must do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Delivery {
    /// Send `text` as one text frame to each of `to`: encode the frame once, share it.
    Text {
        /// Recipients, never empty, no duplicates.
        to: Vec<ConnId>,
        /// The JSON of one server message.
        text: Arc<str>,
    },
    /// Send a close frame with this code and reason after anything queued for `conn`, then
    /// drop the connection (and call [`Chat::disconnect`] as for any other disconnect).
    Close {
        /// The connection to close.
        conn: ConnId,
        /// The WebSocket close code.
        code: u16,
        /// The close reason.
        reason: &'static str,
    },
}

/// What the chat wants sent, in order. For any one recipient the order of deliveries is the
/// order it must receive them in.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    items: Vec<Delivery>,
    /// Record accepted room messages in `posted` (only when the host program listens for
    /// events: otherwise copying each message would be wasted work).
    pub(crate) observe: bool,
    /// Room messages accepted since the dispatcher last took them (when `observe`).
    pub(crate) posted: Vec<Posted>,
}

/// A room message the chat accepted, for the host program's events.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Posted {
    pub id: u64,
    pub room: String,
    pub from: String,
    pub text: String,
}

impl Outbox {
    /// An empty outbox; keep one and reuse it across calls to reuse its allocation.
    pub(crate) fn new() -> Outbox {
        Outbox::default()
    }

    /// Takes the deliveries out, oldest first.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = Delivery> + '_ {
        self.items.drain(..)
    }

    /// How many deliveries are queued.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Queues `msg`, encoded once, for `to` (nothing if `to` is empty).
    fn send(&mut self, to: Vec<ConnId>, msg: &ServerMsg<'_>) {
        if to.is_empty() {
            return;
        }
        self.items.push(Delivery::Text {
            to,
            text: Arc::from(msg.encode()),
        });
    }

    fn send_error(&mut self, conn: ConnId, rej: &Reject) {
        trace!(
            "chat: conn {conn} error {}: {}",
            rej.code.as_str(),
            rej.message
        );
        self.send(
            vec![conn],
            &ServerMsg::Error {
                code: rej.code,
                message: &rej.message,
                reference: rej.reference.as_ref(),
            },
        );
    }

    fn close(&mut self, conn: ConnId, code: u16, reason: &'static str) {
        self.items.push(Delivery::Close { conn, code, reason });
    }
}

/// WebSocket close code for a login the server must refuse outright (policy violation): a
/// token-bound name that is invalid or already held by another token-bound connection.
const CLOSE_POLICY: u16 = 1008;

#[derive(Debug)]
struct Client {
    name: Arc<str>,
    /// `name_key(name)`, the key in `Chat::names`.
    key: String,
    /// The name comes from a login token: it cannot be changed, and it beats a squatter.
    bound: bool,
    /// Keys of the rooms it is in, in joining order; the last is the current room.
    rooms: Vec<String>,
    /// Private rooms it may use: its token's `rooms` claim, lowercased (names or patterns).
    allowed: Vec<String>,
}

#[derive(Debug)]
struct Room {
    /// As spelled by whoever created it.
    name: Arc<str>,
    /// Ordered so that recipient lists (and tests) are deterministic.
    members: BTreeSet<ConnId>,
    history: RoomHistory,
}

/// The chat state. One per server, owned by the dispatcher thread.
#[derive(Debug)]
pub(crate) struct Chat {
    cfg: ChatConfig,
    clients: HashMap<ConnId, Client>,
    /// Name key -> who holds it.
    names: HashMap<String, ConnId>,
    /// Room key (`name_key` of its name) -> room.
    rooms: HashMap<String, Room>,
    /// The last message id handed out (room or DM); ids start at 1.
    last_id: u64,
    /// The number of the last `guest-N` handed out.
    last_guest: u64,
    log: Option<Log>,
}

impl Chat {
    /// A chat with no clients. With `cfg.data_dir` set, it opens (or creates) the log there
    /// and replays it: the rooms' history comes back as it was, and ids continue above every
    /// id handed out before (DMs included). May compact the log before returning.
    pub(crate) fn open(cfg: ChatConfig) -> io::Result<Chat> {
        let mut chat = Chat {
            cfg,
            clients: HashMap::new(),
            names: HashMap::new(),
            rooms: HashMap::new(),
            last_id: 0,
            last_guest: 0,
            log: None,
        };
        if let Some(dir) = chat.cfg.data_dir.clone() {
            let (log, records) = Log::open(&dir, chat.cfg.fsync)?;
            // `chat.log` stays None during replay, so nothing replayed is logged again.
            for rec in records {
                chat.replay(rec);
            }
            chat.rooms.retain(|_, r| !r.history.is_empty());
            chat.last_id = chat.last_id.max(log.max_logged_id());
            debug!(
                "chat: replayed {} rooms, next id {}",
                chat.rooms.len(),
                chat.last_id + 1
            );
            chat.log = Some(log);
            if chat.log_wants_rewrite() {
                chat.compact()?;
            }
        }
        Ok(chat)
    }

    fn replay(&mut self, rec: RecordIn) {
        match rec {
            RecordIn::Msg {
                id,
                ts,
                room,
                from,
                text,
            } => {
                let key = name_key(&room);
                if self.ensure_room(&key, &room).is_err() {
                    return;
                }
                self.last_id = self.last_id.max(id);
                if let Some(r) = self.rooms.get_mut(&key) {
                    // Ids grow through the file; a duplicate or older one is damage, not news.
                    if id > r.history.last_id() {
                        let entry = Entry {
                            id,
                            ts,
                            from: from.into(),
                            text: text.into(),
                        };
                        r.history.push(
                            entry,
                            self.cfg.history_per_room,
                            self.cfg.history_bytes_per_room,
                        );
                    }
                }
            }
            RecordIn::HighWater { id } => self.last_id = self.last_id.max(id),
            RecordIn::Drop { room } => {
                self.rooms.remove(&name_key(&room));
            }
        }
    }

    /// A new connection: it becomes `guest-N` in the default room, or, with `login` / `room`
    /// from its URL, takes that name and joins that room in one step.
    ///
    /// It always gets `welcome` first (its final name and rooms), then an `error` for each URL
    /// parameter that was refused (it stays a guest / goes to the default room instead), then
    /// `joined`. The others in the room get `presence join`.
    ///
    /// `bound_name`: `login` comes from a verified token. Such a name cannot be changed later
    /// (`name_bound`), and if a connection without a token holds it, that one is renamed to a
    /// guest name (it gets `welcome` with its new name). If the name is invalid or another
    /// token-bound connection holds it, this connection gets the `error` and a close (1008).
    #[allow(clippy::too_many_arguments)] // what the handshake decided, passed as it came
    pub(crate) fn connect(
        &mut self,
        conn: ConnId,
        login: Option<&str>,
        room: Option<&str>,
        bound_name: bool,
        allowed_rooms: &[String],
        now_ms: u64,
        out: &mut Outbox,
    ) {
        if self.clients.contains_key(&conn) {
            debug!("chat: conn {conn} connected twice; dropping its old state");
            self.disconnect(conn, now_ms, out);
        }
        let mut errors = Vec::new();
        let claimed = match login {
            None => None,
            Some(raw) => match self.claim_name(conn, raw, bound_name, out) {
                Ok(claimed) => Some(claimed),
                Err(rej) if bound_name => {
                    debug!("chat: conn {conn} refused: token name: {}", rej.message);
                    out.send_error(conn, &rej);
                    out.close(conn, CLOSE_POLICY, "name rejected");
                    return;
                }
                Err(rej) => {
                    errors.push(rej);
                    None
                }
            },
        };
        let (name, key) = match claimed {
            Some(c) => c,
            None => self.guest_name(),
        };
        debug!("chat: conn {conn} connected as {name}");
        self.names.insert(key.clone(), conn);
        self.clients.insert(
            conn,
            Client {
                name,
                key,
                bound: bound_name && login.is_some(),
                rooms: Vec::new(),
                allowed: allowed_rooms.iter().map(|p| name_key(p)).collect(),
            },
        );

        // The join's deliveries go after `welcome` and the errors, which are only known after.
        let mark = out.items.len();
        let default_room = self.cfg.default_room.clone();
        if let Err(rej) = self.join(conn, room.unwrap_or(&default_room), None, out) {
            errors.push(rej);
            if room.is_some() {
                if let Err(rej) = self.join(conn, &default_room, None, out) {
                    errors.push(rej);
                }
            }
        }
        let mut first = Outbox::new();
        self.send_welcome(conn, None, &mut first);
        for rej in &errors {
            first.send_error(conn, rej);
        }
        out.items.splice(mark..mark, first.items);
    }

    /// Validates `raw` as a name for `conn` and checks it is free (its own name counts as
    /// free, so `alice` may become `Alice`). A token-bound claim takes the name from a
    /// connection without a token, renaming that one to a guest.
    fn claim_name(
        &mut self,
        conn: ConnId,
        raw: &str,
        bound: bool,
        out: &mut Outbox,
    ) -> Result<(Arc<str>, String), Reject> {
        let max = self.cfg.max_name_chars;
        let bad = |p: NameProblem| Reject::new(ErrorCode::BadName, name_msg("name", p, max));
        let name = clean_name(raw, max).map_err(bad)?;
        let key = name_key(name);
        if key.starts_with(GUEST_PREFIX) {
            return Err(bad(NameProblem::Reserved));
        }
        let holder = self.names.get(&key).copied().filter(|&h| h != conn);
        if let Some(holder) = holder {
            let holder_bound = self.clients.get(&holder).is_some_and(|c| c.bound);
            if !bound || holder_bound {
                return Err(Reject::new(
                    ErrorCode::NameTaken,
                    format!("`{name}` is taken"),
                ));
            }
            debug!("chat: token holder of {name} takes it from conn {holder}");
            let (guest, guest_key) = self.guest_name();
            self.rename(holder, guest, guest_key, out);
            self.send_welcome(holder, None, out);
        }
        Ok((Arc::from(name), key))
    }

    /// `guest-N` with the next N whose name is free.
    fn guest_name(&mut self) -> (Arc<str>, String) {
        loop {
            self.last_guest += 1;
            let name = format!("{GUEST_PREFIX}{}", self.last_guest);
            // Guest names are reserved, so this only loops if a stale entry were left over.
            if !self.names.contains_key(&name) {
                let key = name.clone();
                return (Arc::from(name), key);
            }
        }
    }

    /// Gives `conn` a new (already validated and free) name, telling its rooms.
    fn rename(&mut self, conn: ConnId, name: Arc<str>, key: String, out: &mut Outbox) {
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        if client.name == name {
            return;
        }
        let old = std::mem::replace(&mut client.name, name);
        let old_key = std::mem::replace(&mut client.key, key);
        if self.names.get(&old_key) == Some(&conn) {
            self.names.remove(&old_key);
        }
        self.names.insert(client.key.clone(), conn);
        debug!("chat: conn {conn} renamed {old} -> {}", client.name);
        for room_key in &client.rooms {
            if let Some(room) = self.rooms.get(room_key) {
                announce(
                    &self.cfg,
                    room,
                    conn,
                    &client.name,
                    PresenceEvent::Rename,
                    Some(&old),
                    out,
                );
            }
        }
    }

    fn send_welcome(&self, conn: ConnId, reference: Option<&Value>, out: &mut Outbox) {
        let Some(client) = self.clients.get(&conn) else {
            return;
        };
        let rooms = client
            .rooms
            .iter()
            .filter_map(|k| self.rooms.get(k).map(|r| &*r.name))
            .collect();
        out.send(
            vec![conn],
            &ServerMsg::Welcome {
                name: &client.name,
                rooms,
                reference,
            },
        );
    }

    /// One frame from a connected client. Unknown connections are ignored.
    pub(crate) fn handle(&mut self, conn: ConnId, input: Input, now_ms: u64, out: &mut Outbox) {
        if !self.clients.contains_key(&conn) {
            debug!("chat: input from unknown conn {conn} ignored");
            return;
        }
        let refused = match input {
            Input::Msg(ClientMsg { reference, body }) => self
                .request(conn, body, reference.as_ref(), now_ms, out)
                .err()
                .map(|rej| rej.with_ref(reference)),
            Input::Plain(text) => self.plain(conn, &text, now_ms, out).err(),
            Input::Invalid(rej) => Some(rej),
            Input::Binary => Some(Reject::new(
                ErrorCode::BinaryNotSupported,
                "send JSON text frames",
            )),
            Input::RateLimited { reference } => Some(
                Reject::new(ErrorCode::RateLimited, "too many messages; slow down")
                    .with_ref(reference),
            ),
        };
        if let Some(rej) = refused {
            out.send_error(conn, &rej);
        }
    }

    fn request(
        &mut self,
        conn: ConnId,
        body: Request,
        reference: Option<&Value>,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<(), Reject> {
        trace!("chat: conn {conn}: {}", body.kind());
        match body {
            Request::Login { name } => self.login(conn, &name, reference, out),
            Request::Join { room } => self.join(conn, &room, reference, out),
            Request::Leave { room } => self.leave(conn, &room, reference, out),
            Request::Say { room, text } => self
                .say(conn, &room, &text, reference, now_ms, out)
                .map(drop),
            Request::Dm { to, text } => self.dm(conn, &to, &text, reference, now_ms, out),
            Request::Rooms => {
                self.list_rooms(conn, reference, out);
                Ok(())
            }
            Request::Users { room } => self.users(conn, &room, reference, out),
            Request::History {
                room,
                before,
                after,
                limit,
            } => self.history(conn, &room, before, after, limit, reference, out),
        }
    }

    fn login(
        &mut self,
        conn: ConnId,
        raw: &str,
        reference: Option<&Value>,
        out: &mut Outbox,
    ) -> Result<(), Reject> {
        let bound_to_other = self
            .clients
            .get(&conn)
            .is_some_and(|c| c.bound && &*c.name != raw.trim());
        if bound_to_other {
            return Err(Reject::new(
                ErrorCode::NameBound,
                "your name comes from your login token",
            ));
        }
        let (name, key) = self.claim_name(conn, raw, false, out)?;
        self.rename(conn, name, key, out);
        self.send_welcome(conn, reference, out);
        Ok(())
    }

    fn room_name<'r>(&self, raw: &'r str) -> Result<&'r str, Reject> {
        let max = self.cfg.max_name_chars;
        clean_name(raw, max)
            .map_err(|p| Reject::new(ErrorCode::BadRoom, name_msg("room name", p, max)))
    }

    /// Makes sure room `key` exists, creating it as `name`; at `max_rooms`, retires the empty
    /// room with the oldest last message first.
    fn ensure_room(&mut self, key: &str, name: &str) -> Result<(), Reject> {
        if self.rooms.contains_key(key) {
            return Ok(());
        }
        if self.rooms.len() >= self.cfg.max_rooms {
            let victim = self
                .rooms
                .iter()
                .filter(|(_, r)| r.members.is_empty())
                .min_by_key(|(_, r)| r.history.last_id())
                .map(|(k, _)| k.clone());
            let Some(victim) = victim else {
                return Err(Reject::new(
                    ErrorCode::ServerRoomLimit,
                    "the server has no room for more rooms",
                ));
            };
            if let Some(old) = self.rooms.remove(&victim) {
                debug!("chat: retiring room {} to make place", old.name);
                if let Some(log) = &mut self.log {
                    log.append(&RecordOut::Drop { room: &old.name });
                }
            }
        }
        self.rooms.insert(
            key.to_owned(),
            Room {
                name: Arc::from(name),
                members: BTreeSet::new(),
                history: RoomHistory::default(),
            },
        );
        Ok(())
    }

    /// Forgets room `key` if it has neither members nor history (nothing to keep it for).
    fn drop_if_unused(&mut self, key: &str) {
        if self
            .rooms
            .get(key)
            .is_some_and(|r| r.members.is_empty() && r.history.is_empty())
        {
            self.rooms.remove(key);
        }
    }

    /// `Ok` when `conn` may use room `key` (not private, or its token lists it).
    fn may_use(&self, conn: ConnId, key: &str) -> Result<(), Reject> {
        let private = self
            .cfg
            .private_rooms
            .iter()
            .any(|p| crate::auth::pattern_matches(&name_key(p), key));
        let allowed = || {
            self.clients
                .get(&conn)
                .is_some_and(|c| crate::auth::any_matches(&c.allowed, key))
        };
        if private && !allowed() {
            return Err(Reject::new(
                ErrorCode::Forbidden,
                format!("`{key}` is a private room and your token does not list it"),
            ));
        }
        Ok(())
    }

    fn join(
        &mut self,
        conn: ConnId,
        raw: &str,
        reference: Option<&Value>,
        out: &mut Outbox,
    ) -> Result<(), Reject> {
        let name = self.room_name(raw)?;
        let key = name_key(name);
        self.may_use(conn, &key)?;
        let Some(client) = self.clients.get(&conn) else {
            return Ok(());
        };
        let already = client.rooms.contains(&key);
        if !already && client.rooms.len() >= self.cfg.max_rooms_per_client {
            return Err(Reject::new(
                ErrorCode::TooManyRooms,
                format!(
                    "you are in {} rooms already; leave one first",
                    self.cfg.max_rooms_per_client
                ),
            ));
        }
        self.ensure_room(&key, name)?;
        let (Some(client), Some(room)) = (self.clients.get_mut(&conn), self.rooms.get_mut(&key))
        else {
            return Ok(());
        };
        // Joining again makes the room current again, and answers `joined` again: that is how
        // a client re-syncs a room, and it keeps `join` idempotent.
        client.rooms.retain(|k| *k != key);
        client.rooms.push(key.clone());
        if !already {
            room.members.insert(conn);
            debug!("chat: {} joined {}", client.name, room.name);
        }
        let (Some(client), Some(room)) = (self.clients.get(&conn), self.rooms.get(&key)) else {
            return Ok(());
        };
        if !already {
            announce(
                &self.cfg,
                room,
                conn,
                &client.name,
                PresenceEvent::Join,
                None,
                out,
            );
        }
        let (users, count) = self.user_list(room);
        let (history, _) = room.history.page(None, None, self.cfg.history_on_join);
        out.send(
            vec![conn],
            &ServerMsg::Joined {
                room: &room.name,
                users,
                count,
                history,
                reference,
            },
        );
        Ok(())
    }

    fn leave(
        &mut self,
        conn: ConnId,
        raw: &str,
        reference: Option<&Value>,
        out: &mut Outbox,
    ) -> Result<(), Reject> {
        let key = name_key(self.room_name(raw)?);
        let Some(client) = self.clients.get_mut(&conn) else {
            return Ok(());
        };
        let Some(pos) = client.rooms.iter().position(|k| *k == key) else {
            return Err(not_in_room(raw));
        };
        client.rooms.remove(pos);
        let Some(room) = self.rooms.get_mut(&key) else {
            return Ok(());
        };
        room.members.remove(&conn);
        debug!("chat: {} left {}", client.name, room.name);
        out.send(
            vec![conn],
            &ServerMsg::Left {
                room: &room.name,
                reference,
            },
        );
        announce(
            &self.cfg,
            room,
            conn,
            &client.name,
            PresenceEvent::Leave,
            None,
            out,
        );
        self.drop_if_unused(&key);
        Ok(())
    }

    fn check_text(&self, text: &str) -> Result<(), Reject> {
        let max = self.cfg.max_text_chars;
        if text.is_empty() {
            return Err(Reject::new(ErrorCode::EmptyText, "text is empty"));
        }
        // Bytes bound chars from above: most messages skip the count.
        if text.len() > max && text.chars().count() > max {
            return Err(Reject::new(
                ErrorCode::TooLong,
                format!("text is over {max} characters"),
            ));
        }
        Ok(())
    }

    fn say(
        &mut self,
        conn: ConnId,
        raw_room: &str,
        text: &str,
        reference: Option<&Value>,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<u64, Reject> {
        let key = name_key(self.room_name(raw_room)?);
        let Some(client) = self.clients.get(&conn) else {
            return Err(not_in_room(raw_room));
        };
        if !client.rooms.contains(&key) {
            return Err(not_in_room(raw_room));
        }
        self.check_text(text)?;
        let from = client.name.clone();
        Ok(self.post(&key, &from, text, now_ms, Some((conn, reference)), out))
    }

    /// Plain text: `say` in the current room (the room most recently joined that it is still
    /// in).
    fn plain(
        &mut self,
        conn: ConnId,
        text: &str,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<(), Reject> {
        let current = self
            .clients
            .get(&conn)
            .and_then(|c| c.rooms.last())
            .and_then(|k| self.rooms.get(k))
            .map(|r| r.name.clone());
        let Some(room) = current else {
            return Err(Reject::new(
                ErrorCode::NotInRoom,
                "plain text goes to your current room, and you are in none; join one",
            ));
        };
        self.say(conn, &room, text, None, now_ms, out).map(drop)
    }

    /// Appends a message to room `key` (which must exist), logs it and sends it to the
    /// members. With a sender and a `ref`, the sender's copy carries the `ref`.
    fn post(
        &mut self,
        key: &str,
        from: &str,
        text: &str,
        now_ms: u64,
        sender: Option<(ConnId, Option<&Value>)>,
        out: &mut Outbox,
    ) -> u64 {
        self.last_id += 1;
        let id = self.last_id;
        let Some(room) = self.rooms.get_mut(key) else {
            return id;
        };
        room.history.push(
            Entry {
                id,
                ts: now_ms,
                from: from.into(),
                text: text.into(),
            },
            self.cfg.history_per_room,
            self.cfg.history_bytes_per_room,
        );
        if let Some(log) = &mut self.log {
            log.append(&RecordOut::Msg {
                id,
                ts: now_ms,
                room: &room.name,
                from,
                text,
            });
        }
        trace!("chat: message {id} in {} from {from}", room.name);
        if out.observe {
            out.posted.push(Posted {
                id,
                room: room.name.to_string(),
                from: from.to_string(),
                text: text.to_string(),
            });
        }
        let mut msg = ServerMsg::Message {
            id,
            ts: now_ms,
            room: Some(&room.name),
            to: None,
            from,
            text,
            reference: None,
        };
        match sender {
            Some((conn, Some(r))) => {
                let others = room.members.iter().copied().filter(|&c| c != conn);
                out.send(others.collect(), &msg);
                if let ServerMsg::Message { reference, .. } = &mut msg {
                    *reference = Some(r);
                }
                out.send(vec![conn], &msg);
            }
            _ => out.send(room.members.iter().copied().collect(), &msg),
        }
        id
    }

    fn dm(
        &mut self,
        conn: ConnId,
        to: &str,
        text: &str,
        reference: Option<&Value>,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<(), Reject> {
        let target = clean_name(to, self.cfg.max_name_chars)
            .ok()
            .and_then(|n| self.names.get(&name_key(n)).copied());
        let (Some(target), Some(sender)) = (target, self.clients.get(&conn)) else {
            return Err(Reject::new(
                ErrorCode::NoSuchUser,
                "nobody by that name is connected",
            ));
        };
        let Some(recipient) = self.clients.get(&target) else {
            return Err(Reject::new(
                ErrorCode::NoSuchUser,
                "nobody by that name is connected",
            ));
        };
        self.check_text(text)?;
        // DMs share the id counter (so ids order everything one client sees) but are not
        // stored: `commit` logs a high-water mark so that their ids are never reused.
        self.last_id += 1;
        let id = self.last_id;
        trace!("chat: dm {id} from {} to {}", sender.name, recipient.name);
        let mut msg = ServerMsg::Message {
            id,
            ts: now_ms,
            room: None,
            to: Some(&recipient.name),
            from: &sender.name,
            text,
            reference: None,
        };
        if target == conn {
            if let ServerMsg::Message { reference: r, .. } = &mut msg {
                *r = reference;
            }
            out.send(vec![conn], &msg);
        } else if reference.is_none() {
            out.send(vec![target, conn], &msg);
        } else {
            out.send(vec![target], &msg);
            if let ServerMsg::Message { reference: r, .. } = &mut msg {
                *r = reference;
            }
            out.send(vec![conn], &msg);
        }
        Ok(())
    }

    fn list_rooms(&self, conn: ConnId, reference: Option<&Value>, out: &mut Outbox) {
        let mut rooms: Vec<(&String, &Room)> = self
            .rooms
            .iter()
            .filter(|(k, _)| self.may_use(conn, k).is_ok())
            .collect();
        rooms.sort_unstable_by_key(|(k, _)| *k);
        let rooms = rooms
            .into_iter()
            .map(|(_, r)| RoomInfo {
                name: &r.name,
                users: r.members.len(),
            })
            .collect();
        out.send(vec![conn], &ServerMsg::Rooms { rooms, reference });
    }

    /// Names in `room`, sorted case-insensitively, at most `user_list_max`; and the total.
    fn user_list<'s>(&'s self, room: &Room) -> (Vec<&'s str>, usize) {
        let mut named: Vec<(&str, &str)> = room
            .members
            .iter()
            .filter_map(|c| self.clients.get(c))
            .map(|c| (c.key.as_str(), &*c.name))
            .collect();
        let count = named.len();
        let cap = self.cfg.user_list_max;
        if named.len() > cap {
            // Partition first so a huge room costs O(n) plus sorting `cap` names.
            if cap > 0 {
                named.select_nth_unstable(cap - 1);
            }
            named.truncate(cap);
        }
        named.sort_unstable();
        (named.into_iter().map(|(_, n)| n).collect(), count)
    }

    fn users(
        &self,
        conn: ConnId,
        raw: &str,
        reference: Option<&Value>,
        out: &mut Outbox,
    ) -> Result<(), Reject> {
        let name = self.room_name(raw)?;
        self.may_use(conn, &name_key(name))?;
        let msg = match self.rooms.get(&name_key(name)) {
            Some(room) => {
                let (users, count) = self.user_list(room);
                ServerMsg::Users {
                    room: &room.name,
                    users,
                    count,
                    reference,
                }
            }
            None => ServerMsg::Users {
                room: name,
                users: Vec::new(),
                count: 0,
                reference,
            },
        };
        out.send(vec![conn], &msg);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)] // the request's fields, passed as they came
    fn history(
        &self,
        conn: ConnId,
        raw: &str,
        before: Option<u64>,
        after: Option<u64>,
        limit: Option<u64>,
        reference: Option<&Value>,
        out: &mut Outbox,
    ) -> Result<(), Reject> {
        let name = self.room_name(raw)?;
        let cap = self.cfg.history_page_max;
        let limit = limit.map_or(self.cfg.history_on_join, |l| {
            usize::try_from(l).unwrap_or(usize::MAX)
        });
        let limit = limit.min(cap);
        self.may_use(conn, &name_key(name))?;
        let msg = match self.rooms.get(&name_key(name)) {
            Some(room) => {
                let (messages, more) = room.history.page(before, after, limit);
                ServerMsg::History {
                    room: &room.name,
                    messages,
                    more,
                    reference,
                }
            }
            None => ServerMsg::History {
                room: name,
                messages: Vec::new(),
                more: false,
                reference,
            },
        };
        out.send(vec![conn], &msg);
        Ok(())
    }

    /// The connection is gone: `presence leave` to each of its rooms, and its name is free.
    /// Unknown connections are ignored, so calling this twice is harmless.
    pub(crate) fn disconnect(&mut self, conn: ConnId, _now_ms: u64, out: &mut Outbox) {
        let Some(client) = self.clients.remove(&conn) else {
            return;
        };
        debug!("chat: conn {conn} ({}) disconnected", client.name);
        if self.names.get(&client.key) == Some(&conn) {
            self.names.remove(&client.key);
        }
        for key in &client.rooms {
            if let Some(room) = self.rooms.get_mut(key) {
                room.members.remove(&conn);
                announce(
                    &self.cfg,
                    room,
                    conn,
                    &client.name,
                    PresenceEvent::Leave,
                    None,
                    out,
                );
            }
            self.drop_if_unused(key);
        }
    }

    /// Says `text` in `room` as `from`, without a connection: for bots and HTTP publish.
    /// Creates the room if needed (nobody joins it). `from` must be a valid name but need
    /// not be free or connected: the caller vouches for it. Returns the message id.
    pub(crate) fn say_as(
        &mut self,
        room: &str,
        from: &str,
        text: &str,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<u64, Reject> {
        let max = self.cfg.max_name_chars;
        let name = self.room_name(room)?;
        let from = clean_name(from, max)
            .map_err(|p| Reject::new(ErrorCode::BadName, name_msg("name", p, max)))?;
        self.check_text(text)?;
        let key = name_key(name);
        self.ensure_room(&key, name)?;
        Ok(self.post(&key, from, text, now_ms, None, out))
    }

    /// Makes what the calls since the last commit appended durable: one `write` of the batch
    /// (room messages, room retirements, and a high-water mark if DMs took ids), then the
    /// fsync policy; or, when the log has grown past twice what memory keeps, a compaction.
    /// Call it once per dispatcher batch, BEFORE sending that batch's deliveries, so that no
    /// client ever sees a message a restart would forget. Without a data dir it does nothing.
    ///
    /// On error the chat goes on (memory is intact) and the next commit rewrites the whole log
    /// from memory. Whether to deliver the batch anyway is the caller's choice.
    pub(crate) fn commit(&mut self) -> io::Result<()> {
        let Some(log) = &mut self.log else {
            return Ok(());
        };
        if self.last_id > log.max_logged_id() {
            log.append(&RecordOut::HighWater { id: self.last_id });
        }
        if self.log_wants_rewrite() {
            self.compact()
        } else {
            log_flush(&mut self.log)
        }
    }

    fn log_wants_rewrite(&self) -> bool {
        let Some(log) = &self.log else {
            return false;
        };
        // +1 for the high-water mark a compacted log ends with.
        let kept = self.rooms.values().map(|r| r.history.len()).sum::<usize>() + 1;
        log.wants_rewrite(kept)
    }

    /// Rewrites the log from memory: each room's kept messages (rooms ordered by their last
    /// message, so a replay that must retire rooms retires the same ones) and a high-water mark.
    fn compact(&mut self) -> io::Result<()> {
        let Some(log) = &mut self.log else {
            return Ok(());
        };
        let mut rooms: Vec<&Room> = self
            .rooms
            .values()
            .filter(|r| !r.history.is_empty())
            .collect();
        rooms.sort_unstable_by_key(|r| r.history.last_id());
        let messages = rooms.into_iter().flat_map(|r| {
            r.history.iter().map(move |e| RecordOut::Msg {
                id: e.id,
                ts: e.ts,
                room: &r.name,
                from: &e.from,
                text: &e.text,
            })
        });
        let records = messages.chain(std::iter::once(RecordOut::HighWater { id: self.last_id }));
        log.rewrite(records)
    }

    /// Whether history goes to disk (a data dir is configured).
    pub(crate) fn persistent(&self) -> bool {
        self.log.is_some()
    }

    /// Rooms that exist (with members or with history).
    pub(crate) fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Connected chat clients.
    pub(crate) fn user_count(&self) -> usize {
        self.clients.len()
    }
}

fn log_flush(log: &mut Option<Log>) -> io::Result<()> {
    match log {
        Some(log) => log.flush(),
        None => Ok(()),
    }
}

/// `presence` to everyone in `room` but `who`, unless the room is too big for presence.
fn announce(
    cfg: &ChatConfig,
    room: &Room,
    who: ConnId,
    name: &str,
    event: PresenceEvent,
    old: Option<&str>,
    out: &mut Outbox,
) {
    if room.members.len() > cfg.presence_max_members {
        return;
    }
    let to = room.members.iter().copied().filter(|&c| c != who).collect();
    out.send(
        to,
        &ServerMsg::Presence {
            room: &room.name,
            name,
            event,
            old,
        },
    );
}

fn name_msg(what: &str, p: NameProblem, max: usize) -> String {
    format!("{what} {}", p.explain(max))
}

fn not_in_room(raw: &str) -> Reject {
    // The room name is echoed only if it is short; a peer controls it.
    let raw: String = raw.chars().take(64).collect();
    Reject::new(ErrorCode::NotInRoom, format!("you are not in `{raw}`"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::tests::TempDir;
    use serde_json::json;

    /// One delivery, decoded: recipients and JSON (a close is `{"close": code}`).
    type Got = Vec<(Vec<ConnId>, Value)>;

    struct H {
        chat: Chat,
        out: Outbox,
        now: u64,
    }

    impl H {
        fn new() -> H {
            H::with(ChatConfig::default())
        }

        fn with(cfg: ChatConfig) -> H {
            H {
                chat: Chat::open(cfg).expect("open"),
                out: Outbox::new(),
                now: 1_700_000_000_000,
            }
        }

        fn take(&mut self) -> Got {
            let n = self.out.len();
            let got: Got = self
                .out
                .drain()
                .map(|d| match d {
                    Delivery::Text { to, text } => {
                        assert!(!to.is_empty());
                        (to, serde_json::from_str(&text).expect("server sent JSON"))
                    }
                    Delivery::Close { conn, code, .. } => (vec![conn], json!({ "close": code })),
                })
                .collect();
            assert_eq!(got.len(), n);
            assert!(self.out.is_empty());
            got
        }

        fn connect(&mut self, conn: ConnId) -> Got {
            self.connect_with(conn, None, None, false)
        }

        fn connect_with(
            &mut self,
            conn: ConnId,
            name: Option<&str>,
            room: Option<&str>,
            bound: bool,
        ) -> Got {
            self.now += 1;
            self.chat
                .connect(conn, name, room, bound, &[], self.now, &mut self.out);
            self.take()
        }

        fn input(&mut self, conn: ConnId, input: Input) -> Got {
            self.now += 1;
            self.chat.handle(conn, input, self.now, &mut self.out);
            self.take()
        }

        fn send(&mut self, conn: ConnId, text: &str) -> Got {
            self.input(conn, parse_input(text))
        }

        fn send_json(&mut self, conn: ConnId, v: Value) -> Got {
            self.send(conn, &v.to_string())
        }

        fn disconnect(&mut self, conn: ConnId) -> Got {
            self.chat.disconnect(conn, self.now, &mut self.out);
            self.take()
        }

        /// The only delivery's JSON, which must go to exactly `to`.
        fn one(got: Got, to: &[ConnId]) -> Value {
            assert_eq!(got.len(), 1, "{got:?}");
            assert_eq!(got[0].0, to, "{got:?}");
            got.into_iter().next().map(|(_, v)| v).unwrap_or_default()
        }

        fn error_code(got: Got, conn: ConnId) -> String {
            let v = H::one(got, &[conn]);
            assert_eq!(v["type"], "error", "{v}");
            v["code"].as_str().unwrap_or_default().to_owned()
        }
    }

    #[test]
    fn guests_get_increasing_names_in_the_lobby() {
        let mut h = H::new();
        assert_eq!(
            h.connect(1),
            vec![
                (
                    vec![1],
                    json!({"type":"welcome","name":"guest-1","rooms":["lobby"]})
                ),
                (
                    vec![1],
                    json!({"type":"joined","room":"lobby","users":["guest-1"],"count":1,"history":[]})
                ),
            ]
        );
        assert_eq!(
            h.connect(2),
            vec![
                (
                    vec![2],
                    json!({"type":"welcome","name":"guest-2","rooms":["lobby"]})
                ),
                (
                    vec![1],
                    json!({"type":"presence","room":"lobby","name":"guest-2","event":"join"})
                ),
                (
                    vec![2],
                    json!({"type":"joined","room":"lobby","users":["guest-1","guest-2"],"count":2,"history":[]})
                ),
            ]
        );
        h.disconnect(1);
        // Numbers are never reused, even when the name became free.
        let got = h.connect(3);
        assert_eq!(got[0].1["name"], "guest-3");
        assert_eq!(h.chat.user_count(), 2);
        assert_eq!(h.chat.room_count(), 1);
    }

    #[test]
    fn login_renames_with_presence_and_welcome() {
        let mut h = H::new();
        h.connect(1);
        h.connect(2);
        assert_eq!(
            h.send(2, r#"{"type":"login","name":"  Bob ","ref":5}"#),
            vec![
                (
                    vec![1],
                    json!({"type":"presence","room":"lobby","name":"Bob","event":"rename","old":"guest-2"})
                ),
                (
                    vec![2],
                    json!({"type":"welcome","name":"Bob","rooms":["lobby"],"ref":5})
                ),
            ]
        );
        // Same name again: a welcome, no presence.
        let got = h.send(2, r#"{"type":"login","name":"Bob"}"#);
        assert_eq!(H::one(got, &[2])["type"], "welcome");
        // DMs find the new name, not the old one.
        let got = h.send(1, r#"{"type":"dm","to":"guest-2","text":"x"}"#);
        assert_eq!(H::error_code(got, 1), "no_such_user");
        let got = h.send(1, r#"{"type":"dm","to":"bob","text":"x"}"#);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, [2, 1]);
    }

    #[test]
    fn names_are_validated_and_unique_case_insensitively() {
        let mut h = H::new();
        h.connect(1);
        h.connect(2);
        h.take();
        let login = |name: &str| json!({"type":"login","name":name}).to_string();
        assert_eq!(h.send(1, &login("Ålice")).len(), 2);
        for taken in ["ålice", "ÅLICE", " ålIce  "] {
            assert_eq!(H::error_code(h.send(2, &login(taken)), 2), "name_taken");
        }
        // Changing the case of one's own name is a rename.
        let got = h.send(1, &login("ÅLICE"));
        assert_eq!(got[1].1["name"], "ÅLICE");
        for bad in [
            "",
            "   ",
            "a\u{7}b",
            "tab\there",
            "zero\u{200B}width",
            "guest-7",
            "GUEST-1",
        ] {
            assert_eq!(
                H::error_code(h.send(2, &login(bad)), 2),
                "bad_name",
                "{bad:?}"
            );
        }
        let long = "é".repeat(33);
        assert_eq!(H::error_code(h.send(2, &login(&long)), 2), "bad_name");
        let fits = "é".repeat(32);
        assert_eq!(h.send(2, &login(&fits))[1].1["name"], fits.as_str());
        // A name freed by a disconnect can be taken.
        h.disconnect(1);
        assert_eq!(h.send(2, &login("ålice"))[0].1["type"], "welcome");
    }

    #[test]
    fn url_login_and_room_in_one_step() {
        let mut h = H::new();
        assert_eq!(
            h.connect_with(1, Some("alice"), Some("Dev"), false),
            vec![
                (
                    vec![1],
                    json!({"type":"welcome","name":"alice","rooms":["Dev"]})
                ),
                (
                    vec![1],
                    json!({"type":"joined","room":"Dev","users":["alice"],"count":1,"history":[]})
                ),
            ]
        );
        // Refused parameters: welcome as a guest in the lobby, then the errors, then joined.
        let got = h.connect_with(2, Some("ALICE"), Some("bad\nroom"), false);
        let kinds: Vec<_> = got
            .iter()
            .map(|(to, v)| {
                assert_eq!(to, &[2]);
                format!(
                    "{}{}",
                    v["type"].as_str().unwrap(),
                    v["code"].as_str().unwrap_or("")
                )
            })
            .collect();
        assert_eq!(
            kinds,
            ["welcome", "errorname_taken", "errorbad_room", "joined"]
        );
        assert_eq!(got[0].1["name"], "guest-1");
        assert_eq!(got[0].1["rooms"], json!(["lobby"]));
        // Rooms are case-insensitive too: `dev` is the room `Dev`.
        let got = h.connect_with(3, None, Some("dev"), false);
        assert_eq!(
            got[1],
            (
                vec![1],
                json!({"type":"presence","room":"Dev","name":"guest-2","event":"join"})
            )
        );
    }

    #[test]
    fn token_bound_names() {
        let mut h = H::new();
        h.connect_with(1, Some("alice"), None, false);
        h.connect(9);
        // The token holder takes the name from the squatter, who becomes a guest.
        let got = h.connect_with(2, Some("alice"), None, true);
        assert_eq!(
            got[0],
            (
                vec![9],
                json!({"type":"presence","room":"lobby","name":"guest-2","event":"rename","old":"alice"})
            )
        );
        assert_eq!(
            got[1],
            (
                vec![1],
                json!({"type":"welcome","name":"guest-2","rooms":["lobby"]})
            )
        );
        assert_eq!(got[2].1["name"], "alice");
        assert_eq!(got[2].0, [2]);
        // It cannot rename.
        let got = h.send(2, r#"{"type":"login","name":"bob","ref":1}"#);
        let v = H::one(got, &[2]);
        assert_eq!(v["code"], "name_bound");
        assert_eq!(v["ref"], 1);
        assert_eq!(
            h.send(2, r#"{"type":"login","name":"alice"}"#)[0].1["type"],
            "welcome"
        );
        // A second token for the same name is refused and closed; so is an invalid token name.
        let got = h.connect_with(3, Some("Alice"), None, true);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1["code"], "name_taken");
        assert_eq!(got[1], (vec![3], json!({"close": 1008})));
        let got = h.connect_with(4, Some(""), None, true);
        assert_eq!(got[0].1["code"], "bad_name");
        assert_eq!(got[1], (vec![4], json!({"close": 1008})));
        assert_eq!(h.chat.user_count(), 3);
        // The refused connections are unknown: input and disconnect are no-ops.
        assert!(h.send(3, "hi").is_empty());
        assert!(h.disconnect(3).is_empty());
    }

    #[test]
    fn join_say_leave_routing() {
        let mut h = H::new();
        for c in 1..=3 {
            h.connect(c);
        }
        h.take();
        assert_eq!(
            h.send(1, r#"{"type":"join","room":"dev","ref":"j"}"#),
            vec![(
                vec![1],
                json!({"type":"joined","room":"dev","users":["guest-1"],"count":1,"history":[],"ref":"j"})
            )]
        );
        assert_eq!(
            h.send(2, r#"{"type":"join","room":"dev"}"#),
            vec![
                (
                    vec![1],
                    json!({"type":"presence","room":"dev","name":"guest-2","event":"join"})
                ),
                (
                    vec![2],
                    json!({"type":"joined","room":"dev","users":["guest-1","guest-2"],"count":2,"history":[]})
                ),
            ]
        );
        let ts = h.now + 1;
        // With a ref: the others' copy without it, the sender's with it.
        assert_eq!(
            h.send(
                1,
                r#"{"type":"say","room":"dev","text":"hi","ref":{"n":1}}"#
            ),
            vec![
                (
                    vec![2],
                    json!({"type":"message","id":1,"ts":ts,"room":"dev","from":"guest-1","text":"hi"})
                ),
                (
                    vec![1],
                    json!({"type":"message","id":1,"ts":ts,"room":"dev","from":"guest-1","text":"hi","ref":{"n":1}})
                ),
            ]
        );
        // Without a ref: one encoding for everyone, sender included.
        let got = h.send(2, r#"{"type":"say","room":"DEV","text":"yo"}"#);
        let v = H::one(got, &[1, 2]);
        assert_eq!(
            (v["id"].as_u64(), v["room"].as_str()),
            (Some(2), Some("dev"))
        );
        // Not a member: refused, nothing said.
        let got = h.send(3, r#"{"type":"say","room":"dev","text":"x"}"#);
        assert_eq!(H::error_code(got, 3), "not_in_room");
        let got = h.send(3, r#"{"type":"leave","room":"dev"}"#);
        assert_eq!(H::error_code(got, 3), "not_in_room");
        assert_eq!(
            h.send(2, r#"{"type":"leave","room":"Dev","ref":2}"#),
            vec![
                (vec![2], json!({"type":"left","room":"dev","ref":2})),
                (
                    vec![1],
                    json!({"type":"presence","room":"dev","name":"guest-2","event":"leave"})
                ),
            ]
        );
        let got = h.send(1, r#"{"type":"say","room":"dev","text":"alone"}"#);
        H::one(got, &[1]);
        // Disconnect: a leave in each room.
        h.send(1, r#"{"type":"join","room":"ops"}"#);
        h.send(3, r#"{"type":"join","room":"ops"}"#);
        h.take();
        let got = h.disconnect(1);
        assert_eq!(
            got,
            vec![
                (
                    vec![2, 3],
                    json!({"type":"presence","room":"lobby","name":"guest-1","event":"leave"})
                ),
                (
                    vec![3],
                    json!({"type":"presence","room":"ops","name":"guest-1","event":"leave"})
                ),
            ]
        );
        // `dev` keeps its history, so it stays listed with nobody in it.
        let got = h.send(3, r#"{"type":"rooms"}"#);
        assert_eq!(
            H::one(got, &[3]),
            json!({"type":"rooms","rooms":[{"name":"dev","users":0},{"name":"lobby","users":2},{"name":"ops","users":1}]})
        );
    }

    #[test]
    fn rooms_without_members_or_history_disappear() {
        let mut h = H::new();
        h.connect(1);
        h.send(1, r#"{"type":"join","room":"tmp"}"#);
        assert_eq!(h.chat.room_count(), 2);
        h.send(1, r#"{"type":"leave","room":"tmp"}"#);
        assert_eq!(h.chat.room_count(), 1);
    }

    #[test]
    fn dm_routing() {
        let mut h = H::new();
        h.connect_with(1, Some("alice"), None, false);
        h.connect_with(2, Some("bob"), None, false);
        h.connect(3);
        let ts = h.now + 1;
        assert_eq!(
            h.send(1, r#"{"type":"dm","to":"BOB","text":"psst","ref":9}"#),
            vec![
                (
                    vec![2],
                    json!({"type":"message","id":1,"ts":ts,"to":"bob","from":"alice","text":"psst"})
                ),
                (
                    vec![1],
                    json!({"type":"message","id":1,"ts":ts,"to":"bob","from":"alice","text":"psst","ref":9})
                ),
            ]
        );
        let got = h.send(1, r#"{"type":"dm","to":"bob","text":"again"}"#);
        assert_eq!(H::one(got, &[2, 1])["id"], 2);
        // To oneself: one copy.
        let got = h.send(1, r#"{"type":"dm","to":"alice","text":"note","ref":1}"#);
        assert_eq!(H::one(got, &[1])["ref"], 1);
        for to in ["carol", "", "x\u{0}"] {
            let got = h.send_json(1, json!({"type":"dm","to":to,"text":"?"}));
            assert_eq!(H::error_code(got, 1), "no_such_user");
        }
        // Guests can be written to.
        let got = h.send(2, r#"{"type":"dm","to":"guest-1","text":"hey"}"#);
        assert_eq!(got[0].0, [3, 2]);
        // DMs are not room history.
        let got = h.send(1, r#"{"type":"history","room":"lobby"}"#);
        assert_eq!(H::one(got, &[1])["messages"], json!([]));
    }

    #[test]
    fn every_direct_answer_echoes_ref() {
        let mut h = H::new();
        h.connect(1);
        h.connect_with(2, Some("bob"), None, false);
        h.take();
        let requests = [
            json!({"type":"login","name":"al"}),
            json!({"type":"login","name":"bob"}),
            json!({"type":"login","name":""}),
            json!({"type":"join","room":"dev"}),
            json!({"type":"join","room":"dev"}),
            json!({"type":"join","room":"\u{0}"}),
            json!({"type":"say","room":"dev","text":"hi"}),
            json!({"type":"say","room":"nope","text":"hi"}),
            json!({"type":"say","room":"dev","text":""}),
            json!({"type":"dm","to":"bob","text":"x"}),
            json!({"type":"dm","to":"nobody","text":"x"}),
            json!({"type":"rooms"}),
            json!({"type":"users","room":"dev"}),
            json!({"type":"users","room":"empty"}),
            json!({"type":"history","room":"dev"}),
            json!({"type":"history","room":"dev","after":0,"limit":1}),
            json!({"type":"leave","room":"dev"}),
            json!({"type":"leave","room":"dev"}),
            json!({"type":"nonsense"}),
            json!({"type":"join"}),
            json!({"type":"join","room":[]}),
        ];
        for (i, mut req) in requests.into_iter().enumerate() {
            let reference = json!({"i": i, "s": "r"});
            req["ref"] = reference.clone();
            let got = h.send_json(1, req.clone());
            let mine: Vec<&Value> = got
                .iter()
                .filter(|(to, v)| to == &[1] && v["type"] != "presence")
                .map(|(_, v)| v)
                .collect();
            assert_eq!(mine.len(), 1, "{req}: {got:?}");
            assert_eq!(mine[0]["ref"], reference, "{req}: {got:?}");
            // Nobody else gets the ref.
            for (to, v) in &got {
                if to != &[1] {
                    assert!(v.get("ref").is_none(), "{req}: {got:?}");
                }
            }
        }
        let got = h.input(
            1,
            Input::RateLimited {
                reference: Some(json!("rl")),
            },
        );
        let v = H::one(got, &[1]);
        assert_eq!(
            (v["code"].as_str(), &v["ref"]),
            (Some("rate_limited"), &json!("rl"))
        );
        // The reader's conversion keeps the ref.
        let limited = parse_input(r#"{"type":"rooms","ref":3}"#).into_rate_limited();
        assert_eq!(
            limited,
            Input::RateLimited {
                reference: Some(json!(3))
            }
        );
    }

    #[test]
    fn ids_increase_across_rooms_and_dms() {
        let mut h = H::new();
        h.connect_with(1, Some("a"), None, false);
        h.connect_with(2, Some("b"), Some("dev"), false);
        h.send(1, r#"{"type":"join","room":"dev"}"#);
        h.take();
        let mut last = 0;
        for i in 0..30 {
            let got = match i % 3 {
                0 => h.send(1, r#"{"type":"say","room":"lobby","text":"l"}"#),
                1 => h.send(2, r#"{"type":"say","room":"dev","text":"d"}"#),
                _ => h.send(2, r#"{"type":"dm","to":"a","text":"p"}"#),
            };
            let id = got[0].1["id"].as_u64().unwrap_or(0);
            assert!(id > last, "{id} after {last}");
            last = id;
        }
        let id = h.chat.say_as("dev", "bot", "beep", h.now, &mut h.out);
        assert_eq!(id, Ok(last + 1));
    }

    fn fill(h: &mut H, room: &str, n: usize) -> Vec<u64> {
        (0..n)
            .map(|i| {
                let text = format!("m{i}");
                let r = h.chat.say_as(room, "bot", &text, h.now, &mut h.out);
                h.take();
                r.unwrap_or(0)
            })
            .collect()
    }

    fn ids_of(v: &Value) -> Vec<u64> {
        v.as_array()
            .map(|a| a.iter().filter_map(|m| m["id"].as_u64()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn join_gets_the_latest_50_and_history_pages_without_gaps() {
        let mut h = H::new();
        h.connect(1);
        let all = fill(&mut h, "dev", 300);
        let got = h.send(1, r#"{"type":"join","room":"dev"}"#);
        let joined = H::one(got, &[1]);
        assert_eq!(ids_of(&joined["history"]), all[250..]);
        assert_eq!(
            joined["history"][49],
            json!({"id": all[299], "ts": h.now - 1, "from": "bot", "text": "m299"})
        );
        // Back from the oldest seen.
        let mut seen = ids_of(&joined["history"]);
        loop {
            let req = json!({"type":"history","room":"dev","before":seen[0],"limit":64});
            let v = H::one(h.send_json(1, req), &[1]);
            let mut page = ids_of(&v["messages"]);
            page.extend(seen);
            seen = page;
            if v["more"] != true {
                break;
            }
        }
        assert_eq!(seen, all);
        // Forward from an id (reconnect catch-up), with the cap applied to the limit.
        let req = json!({"type":"history","room":"dev","after":all[10],"limit":100000});
        let v = H::one(h.send_json(1, req), &[1]);
        assert_eq!(ids_of(&v["messages"]), all[11..211]);
        assert_eq!(v["more"], true);
        let req = json!({"type":"history","room":"dev","after":all[210]});
        let v = H::one(h.send_json(1, req), &[1]);
        assert_eq!(ids_of(&v["messages"]), all[211..261]);
        let req = json!({"type":"history","room":"nowhere"});
        let v = H::one(h.send_json(1, req), &[1]);
        assert_eq!(
            v,
            json!({"type":"history","room":"nowhere","messages":[],"more":false})
        );
    }

    #[test]
    fn history_is_bounded_per_room() {
        let mut h = H::with(ChatConfig {
            history_per_room: 10,
            ..ChatConfig::default()
        });
        h.connect(1);
        let all = fill(&mut h, "dev", 25);
        let v = H::one(
            h.send(1, r#"{"type":"history","room":"dev","limit":200}"#),
            &[1],
        );
        assert_eq!(ids_of(&v["messages"]), all[15..]);
        assert_eq!(v["more"], false);
    }

    #[test]
    fn text_limits() {
        let mut h = H::new();
        h.connect(1);
        h.take();
        let say = |text: &str| json!({"type":"say","room":"lobby","text":text});
        let fits = "😀".repeat(4000);
        assert_eq!(
            H::one(h.send_json(1, say(&fits)), &[1])["text"],
            fits.as_str()
        );
        assert_eq!(
            H::error_code(h.send_json(1, say(&"a".repeat(4001))), 1),
            "too_long"
        );
        assert_eq!(H::error_code(h.send_json(1, say("")), 1), "empty_text");
        assert_eq!(H::error_code(h.send(1, ""), 1), "empty_text");
        assert_eq!(H::error_code(h.send(1, &"b".repeat(4001)), 1), "too_long");
        let dm = json!({"type":"dm","to":"guest-1","text":"c".repeat(4001)});
        assert_eq!(H::error_code(h.send_json(1, dm), 1), "too_long");
        let huge = format!(
            r#"{{"type":"say","room":"lobby","text":"{}"}}"#,
            "d".repeat(1 << 20)
        );
        assert_eq!(H::error_code(h.send(1, &huge), 1), "too_long");
    }

    #[test]
    fn text_is_data_relayed_exactly() {
        let mut h = H::new();
        h.connect(1);
        h.take();
        for text in [
            "<script>alert(1)</script>",
            "  padded\n\tlines  ",
            "\u{0}\u{202E}&amp;",
            "{\"type\":\"say\"}",
        ] {
            let v = H::one(
                h.send_json(1, json!({"type":"say","room":"lobby","text":text})),
                &[1],
            );
            assert_eq!(v["text"], text);
        }
        // As plain text (not starting with `{`), too.
        let v = H::one(h.send(1, "  <b>hi</b> "), &[1]);
        assert_eq!(v["text"], "  <b>hi</b> ");
    }

    #[test]
    fn room_limits() {
        let mut h = H::with(ChatConfig {
            max_rooms_per_client: 3,
            max_rooms: 5,
            ..ChatConfig::default()
        });
        h.connect(1);
        h.connect(2);
        for r in ["a", "b"] {
            h.send_json(1, json!({"type":"join","room":r}));
        }
        let got = h.send(1, r#"{"type":"join","room":"c","ref":1}"#);
        let v = H::one(got, &[1]);
        assert_eq!(
            (v["code"].as_str(), &v["ref"]),
            (Some("too_many_rooms"), &json!(1))
        );
        // Re-joining a room one is in is not a new room.
        assert_eq!(
            h.send(1, r#"{"type":"join","room":"a"}"#)[0].1["type"],
            "joined"
        );
        // Server-wide: 5 rooms. Rooms with only history are retired, oldest first.
        h.chat
            .say_as("old", "bot", "1", h.now, &mut h.out)
            .unwrap_or(0);
        h.chat
            .say_as("new", "bot", "2", h.now, &mut h.out)
            .unwrap_or(0);
        assert_eq!(h.chat.room_count(), 5);
        h.send(2, r#"{"type":"join","room":"x"}"#);
        assert_eq!(h.chat.room_count(), 5);
        let v = H::one(h.send(2, r#"{"type":"history","room":"old"}"#), &[2]);
        assert_eq!(v["messages"], json!([]));
        let v = H::one(h.send(2, r#"{"type":"history","room":"new"}"#), &[2]);
        assert_eq!(ids_of(&v["messages"]).len(), 1);
        h.send(2, r#"{"type":"join","room":"y"}"#);
        // Now every room has a member.
        h.connect(3);
        let got = h.send(3, r#"{"type":"join","room":"z"}"#);
        assert_eq!(H::error_code(got, 3), "server_room_limit");
        assert_eq!(
            h.chat
                .say_as("w", "bot", "x", h.now, &mut h.out)
                .map_err(|r| r.code),
            Err(ErrorCode::ServerRoomLimit)
        );
    }

    #[test]
    fn plain_text_goes_to_the_current_room() {
        let mut h = H::new();
        h.connect(1);
        h.connect(2);
        h.take();
        let v = H::one(h.send(1, "hello"), &[1, 2]);
        assert_eq!(
            (v["room"].as_str(), v["text"].as_str()),
            (Some("lobby"), Some("hello"))
        );
        // Non-object JSON is text as well.
        assert_eq!(H::one(h.send(1, "[1, 2]"), &[1, 2])["text"], "[1, 2]");
        h.send(1, r#"{"type":"join","room":"dev"}"#);
        h.send(1, r#"{"type":"join","room":"ops"}"#);
        assert_eq!(H::one(h.send(1, "x"), &[1])["room"], "ops");
        // Leaving the current room falls back to the most recent one still joined.
        h.send(1, r#"{"type":"leave","room":"ops"}"#);
        assert_eq!(H::one(h.send(1, "x"), &[1])["room"], "dev");
        // Joining again makes a room current again.
        h.send(1, r#"{"type":"join","room":"lobby"}"#);
        assert_eq!(H::one(h.send(1, "x"), &[1, 2])["room"], "lobby");
        h.send(1, r#"{"type":"leave","room":"lobby"}"#);
        h.send(1, r#"{"type":"leave","room":"dev"}"#);
        assert_eq!(H::error_code(h.send(1, "anyone?"), 1), "not_in_room");
        let v = H::one(h.send(1, r#"{"type":"login","name":"z"}"#), &[1]);
        assert_eq!(v["rooms"], json!([]));
    }

    #[test]
    fn malformed_input_gets_the_right_codes() {
        let mut h = H::new();
        h.connect(1);
        h.take();
        let cases = [
            (r#"{"type":"say""#, "bad_json"),
            ("{", "bad_json"),
            ("{\"type\":\"rooms\"} trailing", "bad_json"),
            (r#"{"text":"hi"}"#, "unknown_type"),
            (
                r#"{"type":"SAY","room":"lobby","text":"x"}"#,
                "unknown_type",
            ),
            (r#"{"type":null}"#, "unknown_type"),
            (r#"{"type":"say","room":"lobby"}"#, "bad_field"),
            (r#"{"type":"say","room":"lobby","text":7}"#, "bad_field"),
            (
                r#"{"type":"history","room":"lobby","limit":-5}"#,
                "bad_field",
            ),
            (
                r#"{"type":"history","room":"lobby","after":1.5}"#,
                "bad_field",
            ),
            (r#"{"type":"login","name":{"first":"a"}}"#, "bad_field"),
        ];
        for (text, code) in cases {
            assert_eq!(H::error_code(h.send(1, text), 1), code, "{text}");
        }
        let deep = format!(
            "{{\"type\":\"rooms\",\"ref\":{}{}}}",
            "[".repeat(50),
            "]".repeat(50)
        );
        assert_eq!(H::error_code(h.send(1, &deep), 1), "bad_json");
        assert_eq!(
            H::error_code(h.input(1, Input::Binary), 1),
            "binary_not_supported"
        );
        // A megabyte of valid JSON: refused by size, before parsing.
        let mb = format!("{{\"type\":\"rooms\",\"ref\":[{}0]}}", "0,".repeat(1 << 19));
        assert_eq!(H::error_code(h.send(1, &mb), 1), "too_long");
    }

    use crate::test_rng::Rng;

    /// JSON-ish text: fragments of real requests, glued at random, sometimes valid.
    fn jsonish(rng: &mut Rng) -> String {
        const PIECES: &[&str] = &[
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "\"",
            "\\",
            "\"type\"",
            "\"say\"",
            "\"join\"",
            "\"login\"",
            "\"dm\"",
            "\"history\"",
            "\"rooms\"",
            "\"users\"",
            "\"leave\"",
            "\"room\"",
            "\"text\"",
            "\"name\"",
            "\"to\"",
            "\"ref\"",
            "\"before\"",
            "\"after\"",
            "\"limit\"",
            "\"lobby\"",
            "\"dev\"",
            "\"guest-1\"",
            "0",
            "-1",
            "1e999",
            "18446744073709551616",
            "3.5",
            "null",
            "true",
            "\"\\u0000\"",
            "\"\\ud800\"",
            "\"😀\"",
            " ",
            "\n",
            "é",
            "\u{202E}",
        ];
        let mut s = String::new();
        if rng.below(4) != 0 {
            s.push('{');
        }
        for _ in 0..rng.below(40) {
            let piece: &&str = rng.pick(PIECES);
            s.push_str(piece);
        }
        s
    }

    fn well_formed(rng: &mut Rng) -> String {
        const ROOMS: &[&str] = &["lobby", "dev", "Dev", "ops", "", " x ", "🦀", "a\u{0}"];
        const NAMES: &[&str] = &["alice", "bob", "Bob", "guest-1", "guest-2", "", "é"];
        let room = rng.pick(ROOMS);
        let name = rng.pick(NAMES);
        let n = rng.next() % 400;
        let v = match rng.below(9) {
            0 => json!({"type":"login","name":name,"ref":n}),
            1 => json!({"type":"join","room":room}),
            2 => json!({"type":"leave","room":room,"ref":[n]}),
            3 => json!({"type":"say","room":room,"text":name}),
            4 => json!({"type":"dm","to":name,"text":room}),
            5 => json!({"type":"rooms"}),
            6 => json!({"type":"users","room":room}),
            7 => {
                json!({"type":"history","room":room,"before":n,"after":rng.next() % 400,"limit":rng.next() % 300})
            }
            _ => json!({"type":"history","room":room,"after":n}),
        };
        v.to_string()
    }

    #[test]
    fn fuzz_parse_input_and_handle_never_panic() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut h = H::with(ChatConfig {
            max_rooms: 6,
            max_rooms_per_client: 3,
            history_per_room: 20,
            ..ChatConfig::default()
        });
        for c in 1..=5 {
            h.connect(c);
        }
        for round in 0..4000 {
            let text = match round % 3 {
                0 => {
                    let len = rng.below(64);
                    let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                    String::from_utf8_lossy(&bytes).into_owned()
                }
                1 => jsonish(&mut rng),
                _ => well_formed(&mut rng),
            };
            let conn = 1 + rng.next() % 6; // 6 is never connected
            let input = parse_input(&text);
            h.input(conn, input);
            if rng.below(100) == 0 {
                h.disconnect(conn);
                h.connect(conn);
            }
        }
        // Still consistent: every member list and name entry points at a live client.
        for room in h.chat.rooms.values() {
            assert!(room.members.iter().all(|c| h.chat.clients.contains_key(c)));
        }
        for (key, conn) in &h.chat.names {
            assert_eq!(h.chat.clients.get(conn).map(|c| &c.key), Some(key));
        }
        assert_eq!(h.chat.names.len(), h.chat.clients.len());
    }

    // Persistence.

    fn persistent(dir: &TempDir) -> ChatConfig {
        ChatConfig {
            data_dir: Some(dir.0.clone()),
            fsync: Fsync::Batch,
            ..ChatConfig::default()
        }
    }

    fn history_of(h: &mut H, conn: ConnId, room: &str) -> Value {
        let req = json!({"type":"history","room":room,"limit":200});
        H::one(h.send_json(conn, req), &[conn])["messages"].clone()
    }

    #[test]
    fn history_survives_a_restart_and_ids_continue() {
        let dir = TempDir::new("restart");
        let (before_dev, before_ops, last) = {
            let mut h = H::with(persistent(&dir));
            h.connect_with(1, Some("alice"), Some("dev"), false);
            h.send(1, r#"{"type":"join","room":"Ops"}"#);
            for i in 0..20 {
                h.send_json(
                    1,
                    json!({"type":"say","room":"dev","text":format!("d{i} \"q\"\n")}),
                );
                h.send_json(1, json!({"type":"say","room":"ops","text":format!("o{i}")}));
                if i % 7 == 0 {
                    h.chat.commit().expect("commit");
                }
            }
            h.chat.commit().expect("commit");
            (
                history_of(&mut h, 1, "dev"),
                history_of(&mut h, 1, "ops"),
                h.chat.last_id,
            )
        };
        let mut h = H::with(persistent(&dir));
        assert_eq!(h.chat.room_count(), 2);
        h.connect(1);
        assert_eq!(history_of(&mut h, 1, "dev"), before_dev);
        assert_eq!(history_of(&mut h, 1, "ops"), before_ops);
        let got = h.send(1, r#"{"type":"join","room":"OPS"}"#);
        assert_eq!(H::one(got, &[1])["room"], "Ops");
        let v = H::one(
            h.send(1, r#"{"type":"say","room":"ops","text":"after"}"#),
            &[1],
        );
        assert_eq!(v["id"], last + 1);
    }

    #[test]
    fn dm_ids_are_not_reused_after_a_restart() {
        let dir = TempDir::new("dm");
        let last_dm = {
            let mut h = H::with(persistent(&dir));
            h.connect_with(1, Some("a"), None, false);
            h.connect_with(2, Some("b"), None, false);
            h.send(1, "room message");
            let mut last = 0;
            for _ in 0..5 {
                let got = h.send(1, r#"{"type":"dm","to":"b","text":"x"}"#);
                last = got[0].1["id"].as_u64().unwrap_or(0);
            }
            h.chat.commit().expect("commit");
            last
        };
        // Also with the strictest policy.
        let dir2 = TempDir::new("dm-always");
        {
            let mut h = H::with(ChatConfig {
                fsync: Fsync::Always,
                ..persistent(&dir2)
            });
            h.connect(1);
            h.send(1, r#"{"type":"dm","to":"guest-1","text":"x"}"#);
            h.chat.commit().expect("commit");
        }
        let mut h = H::with(persistent(&dir2));
        assert_eq!(
            h.chat.say_as("lobby", "bot", "hi", h.now, &mut h.out),
            Ok(2)
        );
        assert_eq!(last_dm, 6);
        let mut h = H::with(persistent(&dir));
        let id = h.chat.say_as("lobby", "bot", "hi", h.now, &mut h.out);
        assert_eq!(id, Ok(last_dm + 1));
    }

    #[test]
    fn a_torn_last_line_is_dropped() {
        let dir = TempDir::new("torn");
        let before = {
            let mut h = H::with(persistent(&dir));
            h.connect(1);
            for i in 0..5 {
                h.send(1, &format!("line {i}"));
            }
            h.chat.commit().expect("commit");
            // A batch the crash interrupted: written in part, never delivered.
            h.send(1, "lost");
            let mut torn = h
                .chat
                .log
                .as_ref()
                .map(|l| l.pending_for_test())
                .unwrap_or_default();
            torn.truncate(torn.len() / 2);
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(dir.log_path())
                .unwrap();
            std::io::Write::write_all(&mut f, &torn).unwrap();
            history_of(&mut h, 1, "lobby")
        };
        let mut h = H::with(persistent(&dir));
        h.connect(1);
        let after = history_of(&mut h, 1, "lobby");
        assert_eq!(after.as_array().map(Vec::len), Some(5));
        assert_eq!(
            after,
            before.as_array().map(|a| json!(a[..5])).unwrap_or_default()
        );
        let text = std::fs::read_to_string(dir.log_path()).unwrap();
        assert!(text.ends_with('\n') && !text.contains("lost"), "{text}");
        // The lost message's id was never seen by anyone, so reusing it is fine.
        let v = H::one(h.send(1, "next"), &[1]);
        assert_eq!(v["id"], 6);
    }

    #[test]
    fn compaction_keeps_history_identical_and_ids_continue() {
        let dir = TempDir::new("compact");
        let cfg = ChatConfig {
            history_per_room: 10,
            ..persistent(&dir)
        };
        let (before, last) = {
            let mut h = H::with(cfg.clone());
            h.connect_with(1, Some("a"), None, false);
            h.connect_with(2, Some("b"), None, false);
            for i in 0..1000 {
                if i % 2 == 0 {
                    h.send(1, &format!("m{i}"));
                } else {
                    h.send(1, r#"{"type":"dm","to":"b","text":"x"}"#);
                }
                if i % 10 == 0 {
                    h.chat.commit().expect("commit");
                }
            }
            h.chat.commit().expect("commit");
            (history_of(&mut h, 1, "lobby"), h.chat.last_id)
        };
        let lines = std::fs::read_to_string(dir.log_path())
            .unwrap()
            .lines()
            .count();
        // 500 room messages and 100 high-water marks were written; compaction kept it small.
        assert!(lines <= COMPACT_LIMIT_FOR_TEST, "{lines} lines");
        assert_eq!(before.as_array().map(Vec::len), Some(10));
        let mut h = H::with(cfg);
        h.connect(1);
        assert_eq!(history_of(&mut h, 1, "lobby"), before);
        let v = H::one(h.send(1, "next"), &[1]);
        assert_eq!(v["id"], last + 1);
    }

    #[test]
    fn fuzz_replay_matches_memory() {
        let dir = TempDir::new("fuzz-replay");
        let cfg = ChatConfig {
            max_rooms: 4,
            max_rooms_per_client: 3,
            history_per_room: 7,
            fsync: Fsync::Never,
            ..persistent(&dir)
        };
        let mut rng = Rng(42);
        let mut h = H::with(cfg.clone());
        for c in 1..=4 {
            h.connect(c);
        }
        let mut compactions = 0;
        for round in 0..3000 {
            let conn = 1 + rng.next() % 4;
            // Half plain text, so that enough messages are said to force compactions.
            let text = if round % 2 == 0 {
                format!("p{round}")
            } else {
                well_formed(&mut rng)
            };
            let input = parse_input(&text);
            h.input(conn, input);
            if round % 5 == 0 {
                let records = h.chat.log.as_ref().map_or(0, |l| l.records);
                h.chat.commit().expect("commit");
                if h.chat.log.as_ref().map_or(0, |l| l.records) < records {
                    compactions += 1;
                }
            }
        }
        h.chat.commit().expect("commit");
        assert!(compactions > 0, "the test should exercise compaction");
        let dump = |chat: &Chat| {
            let mut rooms: Vec<(String, Vec<Entry>)> = chat
                .rooms
                .iter()
                .filter(|(_, r)| !r.history.is_empty())
                .map(|(k, r)| {
                    (
                        format!("{k}={}", r.name),
                        r.history.iter().cloned().collect(),
                    )
                })
                .collect();
            rooms.sort_by(|a, b| a.0.cmp(&b.0));
            rooms
        };
        let before = dump(&h.chat);
        assert!(before.len() > 1, "the test should exercise several rooms");
        let last = h.chat.last_id;
        let reopened = Chat::open(cfg).expect("reopen");
        assert_eq!(dump(&reopened), before);
        assert_eq!(reopened.last_id, last);
    }

    #[test]
    fn a_failed_write_is_repaired_by_a_rewrite_from_memory() {
        let dir = TempDir::new("repair");
        let mut h = H::with(persistent(&dir));
        h.connect(1);
        h.send(1, "one");
        h.chat.commit().expect("commit");
        // The file lost everything (say a failed write was cut back too far), and the log knows.
        std::fs::write(dir.log_path(), "").unwrap();
        if let Some(log) = h.chat.log.as_mut() {
            log.break_for_test();
        }
        h.send(1, "two");
        h.send(1, r#"{"type":"dm","to":"guest-1","text":"three"}"#);
        h.chat.commit().expect("commit");
        let before = history_of(&mut h, 1, "lobby");
        let mut h2 = H::with(persistent(&dir));
        h2.connect(1);
        assert_eq!(history_of(&mut h2, 1, "lobby"), before);
        assert_eq!(before.as_array().map(Vec::len), Some(2));
        assert_eq!(h2.chat.last_id, 3);
    }

    /// The most lines the log may have right after a commit with 10 messages kept.
    const COMPACT_LIMIT_FOR_TEST: usize = 256 + 16;

    #[test]
    fn without_a_data_dir_nothing_touches_disk() {
        let mut h = H::new();
        h.connect(1);
        h.send(1, "hi");
        assert!(h.chat.log.is_none());
        assert!(h.chat.commit().is_ok());
    }
}
