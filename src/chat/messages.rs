//! Messages: saying something in a room (as a request, as plain text, or for the host
//! program), direct messages, and the checks on message text.

use log::trace;
use serde_json::Value;

use super::history::Entry;
use super::journal::RecordOut;
use super::names::{clean_name, look_key, name_key, name_msg};
use super::outbox::{Outbox, Posted};
use super::rooms::not_in_room;
use super::{Chat, ConnId};
use crate::protocol::{ErrorCode, Reject, ServerMsg};

impl Chat {
    pub(super) fn check_text(&self, text: &str) -> Result<(), Reject> {
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

    pub(super) fn say(
        &mut self,
        conn: ConnId,
        raw_room: &str,
        text: &str,
        reference: Option<&Value>,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<u64, Reject> {
        let name = self.room_name(raw_room)?;
        let Some(client) = self.clients.get(&conn) else {
            return Err(not_in_room(raw_room));
        };
        // Usually the room is named as its creator spelled it: found among the sender's own
        // rooms (at most `max_rooms_per_client`) without computing the key, which costs a
        // normalization and a skeleton per message.
        let spelled = client
            .rooms
            .iter()
            .find(|k| self.rooms.get(*k).is_some_and(|r| *r.name == *name));
        let key = match spelled {
            Some(key) => key.clone(),
            None => name_key(name),
        };
        if !client.rooms.contains(&key) {
            return Err(not_in_room(raw_room));
        }
        self.check_text(text)?;
        let from = client.name.clone();
        Ok(self.post(&key, &from, text, now_ms, Some((conn, reference)), out))
    }

    /// `say` with `as`: an admin connection (its JWT's `admin` claim) says `text` in `raw_room`
    /// under `name`, as [`Chat::say_as`] does for the host program: any room (created if
    /// needed, within the room limits), without joining it. The sender gets its copy with its
    /// `ref` whether it is in the room or not.
    #[allow(clippy::too_many_arguments)] // the request's fields, passed as they came
    pub(super) fn say_as_admin(
        &mut self,
        conn: ConnId,
        raw_room: &str,
        name: &str,
        text: &str,
        reference: Option<&Value>,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<(), Reject> {
        if !self.clients.get(&conn).is_some_and(|c| c.admin) {
            return Err(Reject::new(
                ErrorCode::Forbidden,
                "saying as another name needs a token with the admin claim",
            ));
        }
        let max = self.cfg.max_name_chars;
        let room = self.room_name(raw_room)?;
        let from = clean_name(name, max)
            .map_err(|p| Reject::new(ErrorCode::BadName, name_msg("name", p, max)))?;
        self.check_text(text)?;
        let key = name_key(room);
        self.ensure_room(&key, room)?;
        // The sender gets its copy (with its ref) whether it is in the room or not.
        self.post(&key, from, text, now_ms, Some((conn, reference)), out);
        Ok(())
    }

    /// Plain text: `say` in the current room (the room most recently joined that it is still
    /// in).
    pub(super) fn plain(
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
    /// members. With a sender, the sender gets its copy even if it is not a member, and with a
    /// `ref` its copy carries the `ref`.
    pub(super) fn post(
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
            Some((conn, None)) => {
                // The sender gets its copy even from outside the room (an admin's `say as`).
                let mut to: Vec<ConnId> = room.members.iter().copied().collect();
                if !room.members.contains(&conn) {
                    to.push(conn);
                }
                out.send(to, &msg);
            }
            None => out.send(room.members.iter().copied().collect(), &msg),
        }
        id
    }

    pub(super) fn dm(
        &mut self,
        conn: ConnId,
        to: &str,
        text: &str,
        reference: Option<&Value>,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<(), Reject> {
        let target = clean_name(to, self.cfg.max_name_chars).ok().and_then(|n| {
            let exact = self.names.get(&name_key(n));
            exact.or_else(|| self.looks.get(&look_key(n))).copied()
        });
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
}

#[cfg(test)]
mod tests {
    use crate::chat::test_harness::H;
    use serde_json::json;

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
}
