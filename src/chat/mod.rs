//! The `/chat` endpoint's logic: names, rooms, messages, history. No sockets, no clocks, no
//! threads in [`Chat`] itself: the chat worker (`worker.rs`, the chat's own thread) calls it
//! with a connection id, what arrived and the time, and gets back an [`Outbox`] of who must
//! receive which text. Because one thread makes all the calls, every member of a room sees
//! that room's messages in the same order, ids increasing.
//!
//! The wire format is in [`crate::protocol`] and PROTOCOL.md. One noun per file:
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | [`Chat`], the facade the dispatcher calls, and per-connection state |
//! | `config.rs` | [`ChatConfig`], every bound with its reason |
//! | `input.rs` | [`Input`]: one frame classified and parsed, in the reader thread |
//! | `names.rs` | the name policy: valid names, when two are the same, guests, claiming |
//! | `rooms.rs` | rooms: creation and its limits, join/leave, member lists, presence |
//! | `messages.rs` | `say`, plain text, `dm`, the text checks |
//! | `outbox.rs` | [`Outbox`]: who must receive what, in order |
//! | `history.rs` | the rooms' history in memory, and its pages |
//! | `journal.rs` | persistence: the on-disk log, replay, compaction, [`Fsync`] |
//! | `worker.rs` | the chat's thread: applies events in order, group-commits, hands frames to the dispatcher |
//! | `ingress.rs` | a chat connection's endpoint, on its own thread: parsing, rate limit, filter |

mod config;
mod history;
pub(crate) mod ingress;
mod input;
mod journal;
mod messages;
mod names;
mod outbox;
mod rooms;
#[cfg(test)]
mod test_harness;
pub(crate) mod worker;

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::Arc;

use log::{debug, trace};
use serde_json::Value;

use crate::protocol::{ClientMsg, ErrorCode, Reject, Request};
pub use config::ChatConfig;
pub(crate) use history::Entry;
pub(crate) use input::{Input, parse_input};
pub use journal::Fsync;
use journal::Log;
use names::{clean_name, name_key, name_msg};
pub(crate) use outbox::{Delivery, Outbox};
use rooms::{Creations, Creator, Room};

/// What a connection's token lets it do in the chat beyond what anyone may.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Rights {
    /// Private rooms it may join, read and list (`ChatConfig::private_rooms`): its JWT's
    /// `rooms` claim, names or `prefix*` patterns.
    pub rooms: Vec<String>,
    /// Its JWT's `admin` claim: it may `say` in any room under any name (with `as`), as
    /// `Handle::say` and `POST /api/publish` do: a bot, an announcement.
    pub admin: bool,
    /// Its bound name comes from the tokens file, which reserves that name for it. A JWT's
    /// `name` is bound too (it cannot be changed, it beats a squatter), but it may not take a
    /// name the tokens file reserves: two ways of vouching for one name would be a conflict,
    /// and the file is the operator's own list.
    pub file_token: bool,
}

/// The dispatcher's id for a connection. The chat never reuses or invents one.
pub(crate) type ConnId = u64;

/// WebSocket close code for a login the server must refuse outright (policy violation): a
/// token-bound name that is invalid or already held by another token-bound connection.
const CLOSE_POLICY: u16 = 1008;

// Serialize/Deserialize (here and in the types it holds): a cluster node's snapshot of the
// whole chat state, from which a node that joins (or fell behind) starts.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Client {
    name: Arc<str>,
    /// `name_key(name)`, the key in `Chat::names`.
    key: String,
    /// `look_key(name)`, the key in `Chat::looks`.
    look: String,
    /// The name in lowercase: what user lists are sorted by (kept, because a join sorts
    /// up to `user_list_max` of them).
    order: String,
    /// The name comes from a login token: it cannot be changed, and it beats a squatter.
    bound: bool,
    /// Who the rooms it creates count against.
    creator: Creator,
    /// Keys of the rooms it is in, in joining order; the last is the current room.
    rooms: Vec<String>,
    /// Private rooms it may use: its token's `rooms` claim, lowercased (names or patterns).
    allowed: Vec<String>,
    /// Its token's `admin` claim: it may say in any room under any name (`say` with `as`).
    admin: bool,
}

/// The chat state. One per server, owned by the dispatcher thread.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Chat {
    /// Each node's own (all nodes of a cluster are meant to share one configuration).
    #[serde(skip)]
    cfg: ChatConfig,
    clients: HashMap<ConnId, Client>,
    /// Name key -> who holds it.
    names: HashMap<String, ConnId>,
    /// Look key -> who holds it (a user name is taken when either of its keys is).
    looks: HashMap<String, ConnId>,
    /// Room key (`name_key` of its name) -> room.
    rooms: HashMap<String, Room>,
    /// The last message id handed out (room or DM); ids start at 1.
    last_id: u64,
    /// The number of the last `guest-N` handed out.
    last_guest: u64,
    /// Rooms created lately, by creator.
    creations: Creations,
    /// Name keys bound to access tokens: only a connection with the token may take them.
    reserved: HashSet<String>,
    #[serde(skip)]
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
            looks: HashMap::new(),
            rooms: HashMap::new(),
            last_id: 0,
            last_guest: 0,
            creations: Creations::default(),
            reserved: HashSet::new(),
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
    ///
    /// `rights`: what its token allows (see [`Rights`]); the default for a connection without
    /// one, or with a token that grants nothing.
    ///
    /// The rooms it creates count against the connection alone; [`Chat::connect_from`] counts
    /// them against the client's address instead. The server always has an address and uses
    /// that; the unit tests, which have none, use this.
    #[cfg(test)]
    #[allow(clippy::too_many_arguments)] // what the handshake decided, passed as it came
    pub(crate) fn connect(
        &mut self,
        conn: ConnId,
        login: Option<&str>,
        room: Option<&str>,
        bound_name: bool,
        rights: &Rights,
        now_ms: u64,
        out: &mut Outbox,
    ) {
        let creator = Creator::Conn(conn);
        self.open_client(conn, creator, login, room, bound_name, rights, now_ms, out);
    }

    /// [`Chat::connect`] for a client at `addr` (the address the server's per-IP cap counts,
    /// after any trusted proxy): the rooms it creates count against that address (its /64 for
    /// IPv6), shared by all its connections, so reconnecting does not reset the limit.
    #[allow(clippy::too_many_arguments)] // connect's, plus the address
    pub(crate) fn connect_from(
        &mut self,
        conn: ConnId,
        addr: std::net::IpAddr,
        login: Option<&str>,
        room: Option<&str>,
        bound_name: bool,
        rights: &Rights,
        now_ms: u64,
        out: &mut Outbox,
    ) {
        let creator = Creator::of_addr(addr);
        self.open_client(conn, creator, login, room, bound_name, rights, now_ms, out);
    }

    #[allow(clippy::too_many_arguments)] // connect's, plus who its rooms count against
    fn open_client(
        &mut self,
        conn: ConnId,
        creator: Creator,
        login: Option<&str>,
        room: Option<&str>,
        bound_name: bool,
        rights: &Rights,
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
            Some(raw) => {
                match self.claim_name(conn, raw, bound_name, bound_name && rights.file_token, out) {
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
                }
            }
        };
        let (name, keys) = match claimed {
            Some(c) => c,
            None => self.guest_name(),
        };
        debug!("chat: conn {conn} connected as {name}");
        self.hold(conn, &keys);
        self.clients.insert(
            conn,
            Client {
                key: keys.same,
                look: keys.look,
                order: name.to_lowercase(),
                name,
                bound: bound_name && login.is_some(),
                creator,
                rooms: Vec::new(),
                allowed: rights.rooms.iter().map(|p| name_key(p)).collect(),
                admin: rights.admin,
            },
        );

        // The join's deliveries go after `welcome` and the errors, which are only known after.
        let mark = out.items.len();
        let default_room = self.cfg.default_room.clone();
        if let Err(rej) = self.join(conn, room.unwrap_or(&default_room), None, now_ms, out) {
            errors.push(rej);
            if room.is_some() {
                if let Err(rej) = self.join(conn, &default_room, None, now_ms, out) {
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
            Request::Join { room } => self.join(conn, &room, reference, now_ms, out),
            Request::Leave { room } => self.leave(conn, &room, reference, out),
            Request::Say {
                room,
                text,
                as_name: None,
            } => self
                .say(conn, &room, &text, reference, now_ms, out)
                .map(drop),
            Request::Say {
                room,
                text,
                as_name: Some(name),
            } => self.say_as_admin(conn, &room, &name, &text, reference, now_ms, out),
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

    /// The connection is gone: `presence leave` to each of its rooms, and its name is free.
    /// Unknown connections are ignored, so calling this twice is harmless.
    pub(crate) fn disconnect(&mut self, conn: ConnId, _now_ms: u64, out: &mut Outbox) {
        let Some(client) = self.clients.remove(&conn) else {
            return;
        };
        debug!("chat: conn {conn} ({}) disconnected", client.name);
        self.release(conn, &client.key, &client.look);
        for key in &client.rooms {
            self.depart(conn, &client.name, key, out);
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
    /// (room messages, and a high-water mark if DMs took ids), then the
    /// fsync policy; or, when the log has grown past twice what memory keeps, a compaction.
    /// Call it once per dispatcher batch, BEFORE sending that batch's deliveries, so that no
    /// client ever sees a message a restart would forget. Without a data dir it does nothing.
    ///
    /// On error the chat goes on (memory is intact) and the next commit rewrites the whole log
    /// from memory. Whether to deliver the batch anyway is the caller's choice.
    pub(crate) fn commit(&mut self) -> io::Result<()> {
        self.commit_log()
    }

    /// After a failed write of the log: when the chat worker should try again (it wakes up for
    /// it even if nobody talks).
    pub(crate) fn retry_at(&self) -> Option<std::time::Instant> {
        self.log.as_ref().and_then(|l| l.retry_at())
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

    /// The connections the chat knows (in a cluster, every node's).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn conn_ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.clients.keys().copied()
    }

    /// The whole state but the configuration, for a cluster snapshot: a node that starts (or
    /// fell behind the shared log) takes it up with [`Chat::restore`] and applies the log from
    /// there. Its size is that of the history kept (`--history` per room) plus the members.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn snapshot(&self) -> serde_json::Result<String> {
        serde_json::to_string(self)
    }

    /// The chat a [`Chat::snapshot`] describes, with this node's configuration (no data dir:
    /// a cluster's history lives in Redis).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn restore(cfg: ChatConfig, snapshot: &str) -> serde_json::Result<Chat> {
        let mut chat: Chat = serde_json::from_str(snapshot)?;
        chat.cfg = cfg;
        chat.cfg.data_dir = None;
        Ok(chat)
    }
}

#[cfg(test)]
mod tests {
    use super::test_harness::{H, jsonish, well_formed};
    use super::*;
    use crate::test_rng::Rng;
    use serde_json::json;

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
        for (look, conn) in &h.chat.looks {
            assert_eq!(h.chat.clients.get(conn).map(|c| &c.look), Some(look));
        }
        assert_eq!(h.chat.looks.len(), h.chat.clients.len());
    }
}
