//! Rooms: creating and retiring them, joining and leaving, who is in them, presence.

use std::collections::BTreeSet;
use std::sync::Arc;

use log::debug;
use serde_json::Value;

use super::history::RoomHistory;
use super::journal::RecordOut;
use super::names::{clean_name, name_key, name_msg};
use super::outbox::Outbox;
use super::{Chat, ChatConfig, ConnId};
use crate::protocol::{ErrorCode, PresenceEvent, Reject, RoomInfo, ServerMsg};

#[derive(Debug)]
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

    /// Makes sure room `key` exists, creating it as `name`; at `max_rooms`, retires the empty
    /// room with the oldest last message first.
    pub(super) fn ensure_room(&mut self, key: &str, name: &str) -> Result<(), Reject> {
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
        out: &mut Outbox,
    ) -> Result<(), Reject> {
        let name = self.room_name(raw)?;
        let key = name_key(name);
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
            .values()
            .map(|r| (r.name.to_lowercase(), r))
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
    use crate::chat::ChatConfig;
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
}
