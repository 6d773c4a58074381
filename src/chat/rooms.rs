//! Rooms: creating and retiring them, joining and leaving, who is in them, presence.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use log::debug;
use serde_json::Value;

use super::history::RoomHistory;
use super::names::{clean_name, name_key, name_msg};
use super::outbox::Outbox;
use super::{Chat, ChatConfig, ConnId};
use crate::protocol::{ErrorCode, PresenceEvent, Reject, RoomInfo, ServerMsg};

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct Room {
    /// As spelled by whoever created it.
    pub(super) name: Arc<str>,
    /// Ordered so that recipient lists (and tests) are deterministic.
    pub(super) members: BTreeSet<ConnId>,
    pub(super) history: RoomHistory,
}

impl Chat {
    pub(super) fn room_name<'r>(&self, raw: &'r str) -> Result<&'r str, Reject> {
        let max = self.cfg.max_name_chars;
        clean_name(raw, max)
            .map_err(|p| Reject::new(ErrorCode::BadRoom, name_msg("room name", p, max)))
    }

    /// `Ok` when `conn` may use room `key` (not private, or its token lists it).
    pub(super) fn may_use(&self, conn: ConnId, key: &str) -> Result<(), Reject> {
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

    /// Makes sure room `key` exists, creating it as `name`. At `max_rooms` a new room is
    /// refused with `server_room_limit`: no room is retired to make place, because a room
    /// without members that is kept has history, and retiring it would let anyone erase any
    /// quiet room's history by creating rooms (50 connections joining fresh rooms wiped
    /// `team`). A room without history exists only while it has members.
    pub(super) fn ensure_room(&mut self, key: &str, name: &str) -> Result<(), Reject> {
        if self.rooms.contains_key(key) {
            return Ok(());
        }
        if self.rooms.len() >= self.cfg.max_rooms {
            return Err(room_limit());
        }
        self.create_room(key, name);
        Ok(())
    }

    /// Adds room `key` as `name`, whatever the limits (replay restores what the log holds,
    /// even past a lowered `max_rooms`).
    pub(super) fn create_room(&mut self, key: &str, name: &str) {
        self.rooms.insert(
            key.to_owned(),
            Room {
                name: Arc::from(name),
                members: BTreeSet::new(),
                history: RoomHistory::default(),
            },
        );
    }

    /// Forgets room `key` if it has neither members nor history (nothing to keep it for).
    pub(super) fn drop_if_unused(&mut self, key: &str) {
        if self
            .rooms
            .get(key)
            .is_some_and(|r| r.members.is_empty() && r.history.is_empty())
        {
            self.rooms.remove(key);
        }
    }

    pub(super) fn join(
        &mut self,
        conn: ConnId,
        raw: &str,
        reference: Option<&Value>,
        now_ms: u64,
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
        if !self.rooms.contains_key(&key) {
            if self.rooms.len() >= self.cfg.max_rooms {
                return Err(room_limit());
            }
            // The default room is where every connection lands: re-creating it after it
            // emptied is not a stranger making rooms, and refusing it would leave a new
            // client in no room at all.
            let default_room = key == name_key(&self.cfg.default_room);
            let per_minute = self.cfg.rooms_created_per_minute;
            if !default_room && !self.creations.allow(client.creator, per_minute, now_ms) {
                return Err(Reject::new(
                    ErrorCode::RateLimited,
                    format!("you may create {per_minute} rooms a minute; join one that exists"),
                ));
            }
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
        let (history, _) = room.history.page(
            None,
            None,
            self.cfg.history_on_join,
            self.cfg.history_page_bytes,
        );
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

    pub(super) fn leave(
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
        let name = client.name.clone();
        let Some(room) = self.rooms.get(&key) else {
            return Ok(());
        };
        debug!("chat: {name} left {}", room.name);
        out.send(
            vec![conn],
            &ServerMsg::Left {
                room: &room.name,
                reference,
            },
        );
        self.depart(conn, &name, &key, out);
        Ok(())
    }

    /// `conn` (named `name`) is no longer in room `key` (on `leave` or disconnect): the others
    /// there get `presence leave`, and the room goes if nothing keeps it.
    pub(super) fn depart(&mut self, conn: ConnId, name: &str, key: &str, out: &mut Outbox) {
        if let Some(room) = self.rooms.get_mut(key) {
            room.members.remove(&conn);
            announce(&self.cfg, room, conn, name, PresenceEvent::Leave, None, out);
        }
        self.drop_if_unused(key);
    }

    pub(super) fn list_rooms(&self, conn: ConnId, reference: Option<&Value>, out: &mut Outbox) {
        let mut rooms: Vec<(String, &Room)> = self
            .rooms
            .iter()
            .filter(|(k, _)| self.may_use(conn, k).is_ok())
            .map(|(_, r)| (r.name.to_lowercase(), r))
            .collect();
        rooms.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
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
    pub(super) fn user_list<'s>(&'s self, room: &Room) -> (Vec<&'s str>, usize) {
        let mut named: Vec<(&str, &str)> = room
            .members
            .iter()
            .filter_map(|c| self.clients.get(c))
            .map(|c| (c.order.as_str(), &*c.name))
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

    pub(super) fn users(
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
}

fn room_limit() -> Reject {
    Reject::new(
        ErrorCode::ServerRoomLimit,
        "the server has no room for more rooms",
    )
}

/// Who a room creation counts against (`ChatConfig::rooms_created_per_minute`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub(crate) enum Creator {
    /// The client's address as the server saw it: IPv4 (also when it came v4-mapped), or the
    /// /64 of an IPv6 address (what one subscriber is usually given, so a client cannot
    /// escape the limit by hopping addresses inside it).
    Addr(IpAddr),
    /// The connection itself, when the server gave no address (the unit tests).
    #[cfg(test)]
    Conn(ConnId),
}

impl Creator {
    /// The creator for a client at `addr`.
    pub(crate) fn of_addr(addr: IpAddr) -> Creator {
        match addr {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Creator::Addr(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    Creator::Addr(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
            v4 => Creator::Addr(v4),
        }
    }
}

/// Room creations by each creator, limited to `per_minute` a minute in bursts of as many:
/// a token bucket kept as one number per creator (GCRA), the time at which its bucket is
/// full again.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct Creations {
    /// As pairs in a snapshot: JSON object keys must be strings.
    #[serde(with = "pairs")]
    full_at: HashMap<Creator, u64>,
    /// Sweep out full buckets when the map grows past this: doubling keeps it amortized
    /// O(1) per creation, and the map holds only creators of the last minute.
    sweep_at: usize,
}

impl Creations {
    /// Whether `who` may create a room at `now_ms`; if so, counts it. `per_minute` 0 means
    /// no limit.
    pub(super) fn allow(&mut self, who: Creator, per_minute: usize, now_ms: u64) -> bool {
        if per_minute == 0 {
            return true;
        }
        const MINUTE_MS: u64 = 60_000;
        let per_minute = u64::try_from(per_minute).unwrap_or(u64::MAX);
        // Each creation fills the bucket by `interval`; it may be at most a minute ahead.
        let interval = (MINUTE_MS / per_minute).max(1);
        let full_at = self.full_at.get(&who).copied().unwrap_or(0).max(now_ms);
        if full_at + interval > now_ms + MINUTE_MS {
            return false;
        }
        if self.full_at.len() >= self.sweep_at {
            self.full_at.retain(|_, t| *t > now_ms);
            self.sweep_at = (self.full_at.len() * 2).max(64);
        }
        self.full_at.insert(who, full_at + interval);
        true
    }
}

/// `presence` to everyone in `room` but `who`, unless the room is too big for presence.
pub(super) fn announce(
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

pub(super) fn not_in_room(raw: &str) -> Reject {
    // The room name is echoed only if it is short; a peer controls it.
    let raw: String = raw.chars().take(64).collect();
    Reject::new(ErrorCode::NotInRoom, format!("you are not in `{raw}`"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::test_harness::{H, ids_of};
    use crate::protocol::ErrorCode;
    use serde_json::json;

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
        // Server-wide: 5 rooms. A room with history is never retired to make place: at the
        // limit, new rooms are refused.
        h.chat
            .say_as("old", "bot", "1", h.now, &mut h.out)
            .unwrap_or(0);
        h.chat
            .say_as("new", "bot", "2", h.now, &mut h.out)
            .unwrap_or(0);
        assert_eq!(h.chat.room_count(), 5);
        let got = h.send(2, r#"{"type":"join","room":"x","ref":"x"}"#);
        let v = H::one(got, &[2]);
        assert_eq!(
            (v["code"].as_str(), &v["ref"]),
            (Some("server_room_limit"), &json!("x"))
        );
        assert_eq!(h.chat.room_count(), 5);
        for room in ["old", "new"] {
            let req = json!({"type":"history","room":room});
            let v = H::one(h.send_json(2, req), &[2]);
            assert_eq!(ids_of(&v["messages"]).len(), 1, "{room}");
        }
        // A room without history goes with its last member, which makes place.
        h.send(1, r#"{"type":"leave","room":"b"}"#);
        assert_eq!(h.chat.room_count(), 4);
        assert_eq!(
            h.send(2, r#"{"type":"join","room":"x"}"#)[0].1["type"],
            "joined"
        );
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
    fn strangers_cannot_erase_a_quiet_rooms_history() {
        // The recipe: `team` has history and nobody in it; 50 connections join fresh rooms
        // and say something there. It used to be retired at the limit, its history erased.
        let mut h = H::with(ChatConfig {
            max_rooms: 10,
            ..ChatConfig::default()
        });
        h.chat
            .say_as("team", "alice", "the plan", h.now, &mut h.out)
            .unwrap_or(0);
        let mut refused = 0;
        for c in 1..=50 {
            h.connect(c);
            let got = h.send_json(c, json!({"type":"join","room":format!("r{c}")}));
            if got.iter().any(|(_, v)| v["code"] == "server_room_limit") {
                refused += 1;
            }
            h.send(c, "mine now");
            h.disconnect(c);
        }
        assert_eq!(h.chat.room_count(), 10);
        assert_eq!(refused, 50 - 8, "team, the lobby and 8 fresh rooms fit");
        h.connect(99);
        let v = H::one(h.send(99, r#"{"type":"history","room":"team"}"#), &[99]);
        assert_eq!(v["messages"][0]["text"], "the plan");
    }

    #[test]
    fn room_creation_is_limited_per_client() {
        let mut h = H::with(ChatConfig {
            rooms_created_per_minute: 3,
            ..ChatConfig::default()
        });
        h.connect(9); // creates the lobby
        h.connect(1);
        let join = |room: &str| json!({"type":"join","room":room,"ref":room});
        for room in ["r1", "r2", "r3"] {
            assert_eq!(h.send_json(1, join(room))[0].1["type"], "joined", "{room}");
        }
        let v = H::one(h.send_json(1, join("r4")), &[1]);
        assert_eq!(
            (v["code"].as_str(), &v["ref"]),
            (Some("rate_limited"), &json!("r4"))
        );
        // Joining rooms that exist is not limited; another client has its own budget.
        assert_eq!(h.send_json(9, join("r1")).len(), 2);
        h.connect(2);
        assert_eq!(H::one(h.send_json(2, join("s1")), &[2])["type"], "joined");
        // The budget refills at 3 a minute: one more after 20 s.
        h.now += 20_000;
        assert_eq!(H::one(h.send_json(1, join("r4")), &[1])["type"], "joined");
        assert_eq!(H::error_code(h.send_json(1, join("r5")), 1), "rate_limited");

        // By address: connections from one address (v4-mapped or not, or one IPv6 /64)
        // share a budget, and reconnecting does not reset it.
        let v4: std::net::IpAddr = "192.0.2.7"
            .parse()
            .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
        let mapped: std::net::IpAddr = "::ffff:192.0.2.7".parse().unwrap_or(v4);
        let six_a: std::net::IpAddr = "2001:db8::1".parse().unwrap_or(v4);
        let six_b: std::net::IpAddr = "2001:db8::ffff:2".parse().unwrap_or(v4);
        let six_other: std::net::IpAddr = "2001:db8:0:1::1".parse().unwrap_or(v4);
        let from = |h: &mut H, conn: ConnId, addr| {
            h.now += 1;
            h.chat.connect_from(
                conn,
                addr,
                None,
                None,
                false,
                &crate::chat::Rights::default(),
                h.now,
                &mut h.out,
            );
            h.take()
        };
        from(&mut h, 10, v4);
        from(&mut h, 11, mapped);
        for (conn, room) in [(10, "a1"), (11, "a2"), (10, "a3")] {
            assert_eq!(
                H::one(h.send_json(conn, join(room)), &[conn])["type"],
                "joined"
            );
        }
        assert_eq!(
            H::error_code(h.send_json(11, join("a4")), 11),
            "rate_limited"
        );
        h.disconnect(10);
        from(&mut h, 10, v4);
        assert_eq!(
            H::error_code(h.send_json(10, join("a4")), 10),
            "rate_limited"
        );
        from(&mut h, 12, six_a);
        from(&mut h, 13, six_b);
        from(&mut h, 14, six_other);
        for room in ["b1", "b2"] {
            assert_eq!(H::one(h.send_json(12, join(room)), &[12])["type"], "joined");
        }
        assert_eq!(H::one(h.send_json(13, join("b3")), &[13])["type"], "joined");
        assert_eq!(
            H::error_code(h.send_json(13, join("b4")), 13),
            "rate_limited"
        );
        assert_eq!(H::one(h.send_json(14, join("b4")), &[14])["type"], "joined");
    }

    #[test]
    fn creation_budgets_are_forgotten_once_full() {
        let mut c = Creations::default();
        for conn in 0..1000 {
            assert!(c.allow(Creator::Conn(conn), 10, 0));
        }
        // A minute later every bucket is full again; the next growth sweeps them out.
        for conn in 1000..1100 {
            assert!(c.allow(Creator::Conn(conn), 10, 60_000));
        }
        assert!(c.full_at.len() <= 100, "{}", c.full_at.len());
        let mut c = Creations::default();
        assert!(c.allow(Creator::Conn(1), 0, 0), "0 is no limit");
        for _ in 0..10 {
            assert!(c.allow(Creator::Conn(1), 10, 5));
        }
        assert!(!c.allow(Creator::Conn(1), 10, 5));
        assert!(c.full_at.len() < 64);
    }
}

/// (De)serializes a map with non-string keys as a list of pairs, for the cluster's snapshot.
mod pairs {
    use std::collections::HashMap;
    use std::hash::Hash;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<K: Serialize + Ord, V: Serialize, S: Serializer>(
        map: &HashMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        // Sorted, so that two nodes with the same state write the same snapshot.
        let mut pairs: Vec<(&K, &V)> = map.iter().collect();
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        pairs.serialize(s)
    }

    pub(super) fn deserialize<'de, K, V, D>(d: D) -> Result<HashMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Eq + Hash,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}
