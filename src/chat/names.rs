//! The name policy: what a user or room name may be, when two names are the same name,
//! guest names, and claiming and renaming (a token-bound name beats a squatter).

use std::borrow::Cow;
use std::sync::Arc;

use log::debug;
use serde_json::Value;

use super::outbox::Outbox;
use super::rooms::announce;
use super::{Chat, ConnId};
use crate::protocol::{ErrorCode, PresenceEvent, Reject, ServerMsg};

/// Characters that are not control characters but are invisible or reorder text, refused in
/// names so that two names that look the same cannot differ by them (and a name cannot flip
/// the direction of the text around it): zero-width spaces and joiners, bidi marks,
/// embeddings, overrides and isolates, word joiners and invisible operators, the BOM.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF9}'..='\u{FFFB}')
}

/// The prefix of generated guest names, reserved so nobody can log in as someone's guest name.
pub(crate) const GUEST_PREFIX: &str = "guest-";

/// Why a name or room name was refused (the caller picks `bad_name` or `bad_room`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameProblem {
    /// Nothing left after trimming.
    Empty,
    /// More than the allowed characters after trimming.
    TooLong,
    /// A control or invisible character.
    BadChar,
    /// Starts with [`GUEST_PREFIX`] (user names only).
    Reserved,
}

impl NameProblem {
    /// A short explanation for the `error` message.
    pub(crate) fn explain(self, max_chars: usize) -> Cow<'static, str> {
        match self {
            NameProblem::Empty => "must not be empty".into(),
            NameProblem::TooLong => format!("must be at most {max_chars} characters").into(),
            NameProblem::BadChar => "must not contain control or invisible characters".into(),
            NameProblem::Reserved => format!("`{GUEST_PREFIX}` names are reserved").into(),
        }
    }
}

/// Validates a user or room name and returns it trimmed: 1 to `max_chars` characters
/// (Unicode scalar values, not bytes) after trimming whitespace, no control or invisible
/// characters. Uniqueness is the caller's business.
pub(crate) fn clean_name(raw: &str, max_chars: usize) -> Result<&str, NameProblem> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(NameProblem::Empty);
    }
    // Byte length bounds char count from above, so short names skip the count.
    if name.len() > max_chars && name.chars().count() > max_chars {
        return Err(NameProblem::TooLong);
    }
    if name.chars().any(|c| c.is_control() || is_invisible(c)) {
        return Err(NameProblem::BadChar);
    }
    Ok(name)
}

/// The case-insensitive key names and rooms are unique under: Unicode lowercase. (Not full
/// case folding, nor normalization: `ß` and `SS` stay different names, as do precomposed and
/// decomposed accents.)
pub(crate) fn name_key(name: &str) -> String {
    name.to_lowercase()
}

pub(super) fn name_msg(what: &str, p: NameProblem, max: usize) -> String {
    format!("{what} {}", p.explain(max))
}

impl Chat {
    /// Validates `raw` as a name for `conn` and checks it is free (its own name counts as
    /// free, so `alice` may become `Alice`). A token-bound claim takes the name from a
    /// connection without a token, renaming that one to a guest.
    pub(super) fn claim_name(
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
        // A name bound to a token is its token's even while nobody holds it; only that
        // token's connection (bound) may claim it, or keep it on a re-login.
        let keeps_own = self
            .clients
            .get(&conn)
            .is_some_and(|c| c.bound && c.key == key);
        if !bound && !keeps_own && self.reserved.contains(&key) {
            return Err(Reject::new(
                ErrorCode::NameTaken,
                format!("`{name}` is reserved for its access token"),
            ));
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

    /// Sets the names bound to access tokens (the `NAME` of each `TOKEN NAME` line), which
    /// are reserved for their tokens at all times: a claim of one (or of a name that counts as
    /// the same) without its token gets `name_taken`, whether its owner is connected or not.
    /// Replaces the previous set; call it before the first `connect` and after every reload
    /// of the tokens. Names that are not valid names are ignored (a token bound to one is
    /// refused at `connect` anyway).
    ///
    /// A connection without a token that holds a newly reserved name is renamed to a guest
    /// name at once (it gets `welcome`, its rooms `presence rename`, in `out`), so that it
    /// stops receiving the owner's DMs. Connections with a token keep their names: a revoked
    /// token is closed by the server, not here.
    // Until the server calls it (bind and reload_tokens; see the branch report), only the
    // tests do.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn set_reserved_names<S: AsRef<str>>(
        &mut self,
        names: impl IntoIterator<Item = S>,
        out: &mut Outbox,
    ) {
        let max = self.cfg.max_name_chars;
        self.reserved = names
            .into_iter()
            .filter_map(|n| clean_name(n.as_ref(), max).ok().map(name_key))
            .collect();
        debug!("chat: {} names reserved for tokens", self.reserved.len());
        let mut squatters: Vec<ConnId> = self
            .clients
            .iter()
            .filter(|(_, c)| !c.bound && self.reserved.contains(&c.key))
            .map(|(&id, _)| id)
            .collect();
        // Sorted, so that the deliveries are in a deterministic order.
        squatters.sort_unstable();
        for conn in squatters {
            debug!("chat: conn {conn} holds a name now reserved; renamed to a guest");
            let (guest, guest_key) = self.guest_name();
            self.rename(conn, guest, guest_key, out);
            self.send_welcome(conn, None, out);
        }
    }

    /// `guest-N` with the next N whose name is free.
    pub(super) fn guest_name(&mut self) -> (Arc<str>, String) {
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
    pub(super) fn rename(&mut self, conn: ConnId, name: Arc<str>, key: String, out: &mut Outbox) {
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

    pub(super) fn send_welcome(&self, conn: ConnId, reference: Option<&Value>, out: &mut Outbox) {
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

    pub(super) fn login(
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::test_harness::H;
    use serde_json::json;

    #[test]
    fn name_rules() {
        assert_eq!(clean_name("  alice \t", 32), Ok("alice"));
        assert_eq!(clean_name("   ", 32), Err(NameProblem::Empty));
        assert_eq!(clean_name("", 32), Err(NameProblem::Empty));
        // 32 characters of 4 bytes each: counted as characters.
        let emoji = "🦀".repeat(32);
        assert_eq!(clean_name(&emoji, 32), Ok(emoji.as_str()));
        assert_eq!(clean_name(&"🦀".repeat(33), 32), Err(NameProblem::TooLong));
        assert_eq!(clean_name(&"a".repeat(33), 32), Err(NameProblem::TooLong));
        assert_eq!(clean_name("Zoë Ünal", 32), Ok("Zoë Ünal"));
        assert_eq!(clean_name("日本語", 32), Ok("日本語"));
        for bad in [
            "a\nb",
            "a\u{0}b",
            "a\u{7f}",
            "a\u{200B}b",
            "evil\u{202E}",
            "\u{FEFF}x",
        ] {
            assert_eq!(clean_name(bad, 32), Err(NameProblem::BadChar), "{bad:?}");
        }
        assert_eq!(name_key("ÀLiCe"), "àlice");
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
    fn a_token_bound_name_is_reserved_while_its_owner_is_offline() {
        let mut h = H::new();
        h.connect(1);
        h.connect_with(2, Some("bob"), None, false);
        // `bob` (no token) held a name that becomes reserved: renamed to a guest at once.
        h.chat
            .set_reserved_names(["alice", " Bob ", "bad\nname"], &mut h.out);
        assert_eq!(
            h.take(),
            vec![
                (
                    vec![1],
                    json!({"type":"presence","room":"lobby","name":"guest-2","event":"rename","old":"bob"})
                ),
                (
                    vec![2],
                    json!({"type":"welcome","name":"guest-2","rooms":["lobby"]})
                ),
            ]
        );
        // Without the token nobody gets them, by URL or by login, in any case.
        let got = h.connect_with(3, Some("ALICE"), None, false);
        assert_eq!(got[0].1["name"], "guest-3");
        assert_eq!(got[1].1["code"], "name_taken");
        let login = |name: &str| json!({"type":"login","name":name}).to_string();
        for name in ["alice", "Alice", "bob", "BOB"] {
            assert_eq!(H::error_code(h.send(1, &login(name)), 1), "name_taken");
        }
        // Nobody receives DMs meant for the absent owner.
        let got = h.send(1, r#"{"type":"dm","to":"alice","text":"secret"}"#);
        assert_eq!(H::error_code(got, 1), "no_such_user");
        // The token's connection takes it, and keeps it on a re-login.
        let got = h.connect_with(4, Some("alice"), None, true);
        assert_eq!(
            got[0],
            (
                vec![4],
                json!({"type":"welcome","name":"alice","rooms":["lobby"]})
            )
        );
        assert_eq!(h.send(4, &login("alice"))[0].1["type"], "welcome");
        // Offline again, still reserved.
        h.disconnect(4);
        assert_eq!(H::error_code(h.send(1, &login("alice")), 1), "name_taken");
        // Lifted: free to take.
        h.chat.set_reserved_names(Vec::<String>::new(), &mut h.out);
        assert!(h.take().is_empty());
        assert_eq!(h.send(1, &login("alice"))[1].1["name"], "alice");
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
}
