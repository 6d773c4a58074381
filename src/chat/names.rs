//! The name policy: what a user or room name may be, when two names are the same name,
//! guest names, and claiming and renaming (a token-bound name beats a squatter).

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use log::debug;
use serde_json::Value;
use unicode_normalization::UnicodeNormalization;
use unicode_security::skeleton;

use super::outbox::Outbox;
use super::rooms::announce;
use super::{Chat, ConnId};
use crate::protocol::{ErrorCode, PresenceEvent, Reject, ServerMsg};

/// Characters refused in names (besides control characters) because they render as nothing
/// or change how the text around them renders, so that two names that look the same cannot
/// differ by them, and a name cannot flip the direction of the text around it.
///
/// The table is general category Cf (format) and Zl/Zp (line and paragraph separators) from
/// Unicode 16.0's `DerivedGeneralCategory.txt`, plus the other default-ignorable characters
/// that render as nothing (`DerivedCoreProperties.txt`): variation selectors, Mongolian free
/// variation selectors, the whole tag and variation-selector-supplement plane block
/// (U+E0000-E0FFF, which is default-ignorable, assigned or not), the combining grapheme joiner,
/// Hangul fillers and Khmer inherent vowels.
fn is_invisible(c: char) -> bool {
    matches!(c,
        // Cf
        '\u{00AD}' | '\u{0600}'..='\u{0605}' | '\u{061C}' | '\u{06DD}' | '\u{070F}'
        | '\u{0890}' | '\u{0891}' | '\u{08E2}' | '\u{180E}' | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}' | '\u{110BD}' | '\u{110CD}' | '\u{13430}'..='\u{1343F}'
        | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}'
        // Zl, Zp
        | '\u{2028}' | '\u{2029}'
        // Tags (U+E0001, U+E0020-E007F), variation selectors 17-256 (U+E0100-E01EF), and the
        // unassigned default-ignorable rest of the block.
        | '\u{E0000}'..='\u{E0FFF}'
        // Variation selectors 1-16; Mongolian free variation selectors 1-4.
        | '\u{FE00}'..='\u{FE0F}' | '\u{180B}'..='\u{180D}' | '\u{180F}'
        // Combining grapheme joiner, Hangul fillers, Khmer inherent vowels.
        | '\u{034F}' | '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}' | '\u{17B4}'
        | '\u{17B5}')
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
    // Before trimming: U+2028/2029 count as whitespace, and a name must not end in one either.
    if raw.chars().any(is_invisible) {
        return Err(NameProblem::BadChar);
    }
    let name = raw.trim();
    if name.is_empty() {
        return Err(NameProblem::Empty);
    }
    // Byte length bounds char count from above, so short names skip the count.
    if name.len() > max_chars && name.chars().count() > max_chars {
        return Err(NameProblem::TooLong);
    }
    if name.chars().any(char::is_control) {
        return Err(NameProblem::BadChar);
    }
    Ok(name)
}

/// The key user and room names are unique under: two names with the same key are the same
/// name. It folds case and what makes different text look the same, in the spirit of
/// Unicode TS #39 (confusable detection): NFKC (full-width and other compatibility forms),
/// runs of whitespace as one space (a page shows them so), lowercase, the TS #39 skeleton
/// (Latin, Cyrillic, Greek and every other look-alike in Unicode's `confusables.txt`: Cyrillic
/// `а` is `a`), lowercased again (the skeleton maps to capitals in places: `0` to `O`), and
/// NFC so that an ASCII name is its own key.
///
/// Lowercasing first keeps names that differ only in case the same name (`Alice`, `ALICE`),
/// but loses the capital `I` that looks like `l`: [`look_key`] catches that one.
pub(crate) fn name_key(name: &str) -> String {
    if let Some(key) = ascii_key(name, true) {
        return key;
    }
    let lower: String = collapse_spaces(name.nfkc())
        .flat_map(char::to_lowercase)
        .collect();
    let skeleton: String = skeleton(&lower).flat_map(char::to_lowercase).collect();
    skeleton.nfc().collect()
}

/// A second key for user names: how the name looks with its case kept. The skeleton of the
/// name as written (so `Ilya` and `llya` meet: capital `I` and small `l` share a prototype),
/// then [`name_key`]. Two user names conflict when either key is equal; two names that render
/// alike have equal look keys (the property test below checks it for Latin, Cyrillic and
/// Greek look-alikes).
pub(crate) fn look_key(name: &str) -> String {
    if let Some(skeleton) = ascii_key(name, false) {
        return name_key(&skeleton);
    }
    // Not NFKC first: it changes how some characters look (Greek lunate sigma `ϲ`, which
    // looks like `c`, becomes final sigma `ς`); the skeleton maps them by their looks.
    let spaced: String = collapse_spaces(name.chars()).collect();
    let skeleton: String = skeleton(&spaced).collect();
    name_key(&skeleton)
}

/// The fast path of [`name_key`] (`lower`) and of the skeleton in [`look_key`] for an ASCII
/// name, the common case: NFKC, NFD and NFC leave ASCII as it is, so the key is the name's
/// characters mapped through a table of their skeletons, with the same space and case
/// folding. `None` (take the general path) when `name` is not ASCII or a character's
/// skeleton is not (none is, in Unicode 16-18; the table is built from the crate, so a new
/// `confusables.txt` cannot make the two paths disagree). The general path costs 2-20 us a
/// name (release build), and the dispatcher computes a key for every `dm`.
fn ascii_key(name: &str, lower: bool) -> Option<String> {
    if !name.is_ascii() {
        return None;
    }
    let table = ascii_skeletons();
    let mut key = String::with_capacity(name.len());
    for c in collapse_spaces(name.chars()) {
        let c = if lower { c.to_ascii_lowercase() } else { c };
        // `c` is ASCII, so below 128.
        key.push_str(table.get(usize::from(c as u8))?.as_deref()?);
    }
    if lower {
        key.make_ascii_lowercase();
    }
    Some(key)
}

/// The skeleton of each ASCII character, when it is ASCII (`0` is `O`, `1` and `I` are `l`,
/// `m` is `rn`), computed once from the crate's tables.
fn ascii_skeletons() -> &'static [Option<Box<str>>; 128] {
    static TABLE: OnceLock<[Option<Box<str>>; 128]> = OnceLock::new();
    TABLE.get_or_init(|| {
        std::array::from_fn(|i| {
            let c = char::from(u8::try_from(i).unwrap_or(0));
            let mut buf = [0u8; 4];
            let s: String = skeleton(c.encode_utf8(&mut buf)).collect();
            s.is_ascii().then(|| s.into_boxed_str())
        })
    })
}

/// A user name's two keys: two user names are the same name when either key is equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Keys {
    /// [`name_key`]: the same name up to case and look-alikes.
    pub(super) same: String,
    /// [`look_key`]: looks the same with the case kept (`I` and `l`).
    pub(super) look: String,
}

impl Keys {
    pub(super) fn of(name: &str) -> Keys {
        Keys {
            same: name_key(name),
            look: look_key(name),
        }
    }

    fn in_set(&self, set: &HashSet<String>) -> bool {
        set.contains(&self.same) || set.contains(&self.look)
    }
}

/// `chars` with every run of whitespace as one space.
fn collapse_spaces(chars: impl Iterator<Item = char>) -> impl Iterator<Item = char> {
    let mut after_space = false;
    chars.filter_map(move |c| {
        if c.is_whitespace() {
            let first = !after_space;
            after_space = true;
            first.then_some(' ')
        } else {
            after_space = false;
            Some(c)
        }
    })
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
        owns_reserved: bool,
        out: &mut Outbox,
    ) -> Result<(Arc<str>, Keys), Reject> {
        let max = self.cfg.max_name_chars;
        let bad = |p: NameProblem| Reject::new(ErrorCode::BadName, name_msg("name", p, max));
        let name = clean_name(raw, max).map_err(bad)?;
        let keys = Keys::of(name);
        if keys.same.starts_with(GUEST_PREFIX) || keys.look.starts_with(GUEST_PREFIX) {
            return Err(bad(NameProblem::Reserved));
        }
        // A name bound to a file token is its token's even while nobody holds it; only that
        // token's connection may claim it, or keep it on a re-login (`owns_reserved`).
        let keeps_own = self
            .clients
            .get(&conn)
            .is_some_and(|c| c.bound && c.key == keys.same);
        if !owns_reserved && !keeps_own && keys.in_set(&self.reserved) {
            return Err(Reject::new(
                ErrorCode::NameTaken,
                format!("`{name}` is reserved for its access token"),
            ));
        }
        // Up to two holders: one with the same name, one with a name that looks the same.
        let mut holders: Vec<ConnId> = [self.names.get(&keys.same), self.looks.get(&keys.look)]
            .into_iter()
            .flatten()
            .copied()
            .filter(|&h| h != conn)
            .collect();
        holders.dedup();
        let holder_bound = holders
            .iter()
            .any(|h| self.clients.get(h).is_some_and(|c| c.bound));
        if !holders.is_empty() && (!bound || holder_bound) {
            return Err(Reject::new(
                ErrorCode::NameTaken,
                format!("`{name}` is taken"),
            ));
        }
        for holder in holders {
            debug!("chat: token holder of {name} takes it from conn {holder}");
            let (guest, guest_keys) = self.guest_name();
            self.rename(holder, guest, guest_keys, out);
            self.send_welcome(holder, None, out);
        }
        Ok((Arc::from(name), keys))
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
    pub(crate) fn set_reserved_names<S: AsRef<str>>(
        &mut self,
        names: impl IntoIterator<Item = S>,
        out: &mut Outbox,
    ) {
        let max = self.cfg.max_name_chars;
        // Both keys of every name in one set: a key is a key of one name only in practice,
        // and a clash between the two kinds would also be two names that look alike.
        self.reserved = names
            .into_iter()
            .filter_map(|n| clean_name(n.as_ref(), max).ok().map(Keys::of))
            .flat_map(|k| [k.same, k.look])
            .collect();
        debug!(
            "chat: {} name keys reserved for tokens",
            self.reserved.len()
        );
        let mut squatters: Vec<ConnId> = self
            .clients
            .iter()
            .filter(|(_, c)| {
                !c.bound && (self.reserved.contains(&c.key) || self.reserved.contains(&c.look))
            })
            .map(|(&id, _)| id)
            .collect();
        // Sorted, so that the deliveries are in a deterministic order.
        squatters.sort_unstable();
        for conn in squatters {
            debug!("chat: conn {conn} holds a name now reserved; renamed to a guest");
            let (guest, guest_keys) = self.guest_name();
            self.rename(conn, guest, guest_keys, out);
            self.send_welcome(conn, None, out);
        }
    }

    /// `guest-N` with the next N whose name is free.
    pub(super) fn guest_name(&mut self) -> (Arc<str>, Keys) {
        loop {
            self.last_guest += 1;
            let name = format!("{GUEST_PREFIX}{}", self.last_guest);
            let keys = Keys::of(&name);
            // Guest names are reserved, so this only loops if a stale entry were left over.
            if !self.names.contains_key(&keys.same) && !self.looks.contains_key(&keys.look) {
                return (Arc::from(name), keys);
            }
        }
    }

    /// Records that `conn` holds the name with `keys`.
    pub(super) fn hold(&mut self, conn: ConnId, keys: &Keys) {
        self.names.insert(keys.same.clone(), conn);
        self.looks.insert(keys.look.clone(), conn);
    }

    /// Frees the name with keys `same` / `look` if `conn` holds it.
    pub(super) fn release(&mut self, conn: ConnId, same: &str, look: &str) {
        if self.names.get(same) == Some(&conn) {
            self.names.remove(same);
        }
        if self.looks.get(look) == Some(&conn) {
            self.looks.remove(look);
        }
    }

    /// Gives `conn` a new (already validated and free) name, telling its rooms.
    pub(super) fn rename(&mut self, conn: ConnId, name: Arc<str>, keys: Keys, out: &mut Outbox) {
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        if client.name == name {
            return;
        }
        let old = std::mem::replace(&mut client.name, name);
        let old_key = std::mem::replace(&mut client.key, keys.same.clone());
        let old_look = std::mem::replace(&mut client.look, keys.look.clone());
        client.order = client.name.to_lowercase();
        self.release(conn, &old_key, &old_look);
        self.hold(conn, &keys);
        let Some(client) = self.clients.get(&conn) else {
            return;
        };
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
        let (name, keys) = self.claim_name(conn, raw, false, false, out)?;
        self.rename(conn, name, keys, out);
        self.send_welcome(conn, reference, out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::test_harness::H;
    use crate::test_rng::Rng;
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

    /// Characters that render as nothing or change the rendering around them, one or more
    /// of each kind the rules name.
    const INVISIBLE: &[char] = &[
        '\u{E0061}', // tag latin small letter a
        '\u{E0001}', // language tag
        '\u{E007F}', // cancel tag
        '\u{FE0F}',  // variation selector 16
        '\u{E0100}', // variation selector 17
        '\u{180B}',  // Mongolian free variation selector 1
        '\u{180F}',  // Mongolian free variation selector 4
        '\u{2028}',  // line separator (Zl)
        '\u{2029}',  // paragraph separator (Zp)
        '\u{0600}',  // Arabic number sign (Cf)
        '\u{110BD}', // Kaithi number sign (Cf)
        '\u{1D173}', // musical symbol begin beam (Cf)
        '\u{2064}',  // invisible plus (Cf)
        '\u{034F}',  // combining grapheme joiner
        '\u{200D}',  // zero width joiner (Cf)
        '\u{3164}',  // Hangul filler
    ];

    #[test]
    fn invisible_format_and_separator_characters_are_refused_in_names_and_rooms() {
        let mut h = H::new();
        h.connect(1);
        for &c in INVISIBLE {
            let name = format!("alice{c}");
            assert_eq!(clean_name(&name, 32), Err(NameProblem::BadChar), "{c:?}");
            let got = h.send_json(1, json!({"type":"login","name":name}));
            assert_eq!(H::error_code(got, 1), "bad_name", "{c:?}");
            let room = format!("te{c}am");
            let got = h.send_json(1, json!({"type":"join","room":room}));
            assert_eq!(H::error_code(got, 1), "bad_room", "{c:?}");
        }
    }

    #[test]
    fn names_that_look_the_same_are_the_same_name() {
        let mut h = H::new();
        h.connect_with(1, Some("alice"), None, false);
        h.connect_with(2, Some("Ilya"), None, false);
        h.connect_with(3, Some("bob smith"), Some("team"), false);
        h.connect(4);
        let login = |name: &str| json!({"type":"login","name":name}).to_string();
        for taken in [
            "\u{0430}lice",     // Cyrillic а
            "alic\u{0435}",     // Cyrillic е
            "\u{0391}LICE",     // Greek capital alpha
            "\u{FF41}lice",     // full-width a
            "llya",             // small l for capital I
            "\u{04C0}lya",      // Cyrillic palochka for I
            "ILYA",             // the same name in capitals
            "bob  smith",       // two spaces render as one
            "bob\u{00A0}smith", // no-break space
            "b\u{043E}b smith", // Cyrillic о
        ] {
            assert_eq!(
                H::error_code(h.send(4, &login(taken)), 4),
                "name_taken",
                "{taken:?}"
            );
        }
        // DMs find the holder by either spelling.
        let got = h.send_json(4, json!({"type":"dm","to":"\u{0430}lice","text":"x"}));
        assert_eq!(got[0].0, [1, 4]);
        assert_eq!(got[0].1["to"], "alice");
        // Rooms: a look-alike room name is the same room, spelled as its creator spelled it.
        let got = h.send_json(4, json!({"type":"join","room":"t\u{0435}am"}));
        let joined = got
            .iter()
            .find(|(to, _)| to == &[4])
            .map(|(_, v)| v.clone());
        assert_eq!(joined.unwrap_or_default()["room"], "team");
        // And names that merely resemble each other stay different.
        for free in ["alicia", "ilya2", "bobsmith"] {
            assert_eq!(h.send(4, &login(free))[1].1["name"], free);
        }
        // Some different names count as the same, because fonts can draw them alike.
        assert_eq!(name_key("arnie"), name_key("amie"));
        assert_eq!(name_key("B0B"), name_key("bob"));
        // The guest prefix is reserved in its look-alikes too.
        let got = h.send(4, &login("gu\u{0435}st-9"));
        assert_eq!(H::error_code(got, 4), "bad_name");
    }

    /// Sets of characters that render alike in common fonts (Latin, Cyrillic, Greek), the
    /// pairs Unicode's confusables.txt exists for.
    const LOOK_ALIKES: &[&[char]] = &[
        &['a', '\u{0430}'],
        &['c', '\u{0441}', '\u{03F2}'],
        &['e', '\u{0435}'],
        &['i', '\u{0456}'],
        &['j', '\u{0458}', '\u{03F3}'],
        &['o', '\u{043E}', '\u{03BF}'],
        &['p', '\u{0440}', '\u{03C1}'],
        &['s', '\u{0455}'],
        &['x', '\u{0445}'],
        &['y', '\u{0443}'],
        &['h', '\u{04BB}'],
        &[
            'l', 'I', '|', '\u{04CF}', '\u{0399}', '\u{0406}', '\u{04C0}',
        ],
        &['A', '\u{0410}', '\u{0391}'],
        &['B', '\u{0412}', '\u{0392}'],
        &['E', '\u{0415}', '\u{0395}'],
        &['H', '\u{041D}', '\u{0397}'],
        &['K', '\u{041A}', '\u{039A}'],
        &['M', '\u{041C}', '\u{039C}'],
        &['O', '\u{041E}', '\u{039F}'],
        &['P', '\u{0420}', '\u{03A1}'],
        &['T', '\u{0422}', '\u{03A4}'],
        &['X', '\u{0425}', '\u{03A7}'],
        &['Z', '\u{0396}'],
        &['N', '\u{039D}'],
        &[' ', '\u{00A0}', '\u{2002}', '\u{3000}'],
    ];

    /// Characters with no look-alike in the table above.
    const PLAIN: &[char] = &[
        'b', 'd', 'f', 'g', 'k', 'm', 'n', 'r', 't', 'u', 'v', 'w', 'z', '-', '_', '2', '7', 'é',
        '日', '🦀',
    ];

    /// Two spellings of one rendering: per position a plain character or one look-alike set
    /// (each spelling picks its own member), maybe a doubled space (a page shows one), and
    /// sometimes an invisible character in the second spelling.
    fn two_spellings(rng: &mut Rng) -> (String, String) {
        let (mut a, mut b) = (String::new(), String::new());
        for _ in 0..1 + rng.below(12) {
            if rng.below(3) == 0 {
                let c = *rng.pick(PLAIN);
                a.push(c);
                b.push(c);
            } else {
                let set = *rng.pick(LOOK_ALIKES);
                a.push(*rng.pick(set));
                let c = *rng.pick(set);
                b.push(c);
                if c == ' ' && rng.below(4) == 0 {
                    b.push(' ');
                }
            }
            if rng.below(40) == 0 {
                b.push(*rng.pick(INVISIBLE));
            }
        }
        (a, b)
    }

    #[test]
    fn property_no_two_accepted_names_render_the_same() {
        let mut rng = Rng(0x5EED_1DE7_17E5);
        let mut h = H::new();
        let (mut compared, mut refused) = (0, 0);
        for round in 0..3000 {
            let (a, b) = two_spellings(&mut rng);
            let (Ok(ca), Ok(cb)) = (clean_name(&a, 32), clean_name(&b, 32)) else {
                // Only an invisible character may make a spelling invalid here (or a name
                // that is all spaces).
                assert!(
                    b.chars().any(|c| INVISIBLE.contains(&c)) || a.trim().is_empty(),
                    "{a:?} / {b:?}"
                );
                refused += 1;
                continue;
            };
            compared += 1;
            assert_eq!(look_key(ca), look_key(cb), "{a:?} / {b:?} render alike");
            // The chat itself: whoever holds one spelling, the other is taken.
            if round % 10 == 0 && !name_key(ca).starts_with(GUEST_PREFIX) {
                h.connect_with(1, Some(ca), None, false);
                h.connect(2);
                let got = h.send_json(2, json!({"type":"login","name":cb}));
                assert_eq!(H::error_code(got, 2), "name_taken", "{a:?} / {b:?}");
                h.disconnect(1);
                h.disconnect(2);
            }
        }
        // The generator must exercise both outcomes.
        assert!(compared > 2000 && refused > 50, "{compared} / {refused}");
    }

    /// The general path of both keys, without the ASCII fast path.
    fn keys_the_long_way(name: &str) -> (String, String) {
        let general = |s: &str| {
            let lower: String = collapse_spaces(s.nfkc())
                .flat_map(char::to_lowercase)
                .collect();
            let skeleton: String = skeleton(&lower).flat_map(char::to_lowercase).collect();
            skeleton.nfc().collect::<String>()
        };
        let spaced: String = collapse_spaces(name.chars()).collect();
        let look: String = skeleton(&spaced).collect();
        (general(name), general(&look))
    }

    #[test]
    fn the_ascii_fast_path_agrees_with_the_general_one() {
        let ascii: Vec<char> = (0u8..128).map(char::from).collect();
        let mut names: Vec<String> = ascii.iter().map(|c| c.to_string()).collect();
        for &a in &ascii {
            for &b in &ascii {
                names.push([a, b].iter().collect());
            }
        }
        let mut rng = Rng(0xA5C1_1FA5);
        for _ in 0..2000 {
            let len = 1 + rng.below(32);
            names.push((0..len).map(|_| *rng.pick(&ascii)).collect());
        }
        for name in &names {
            assert_eq!(
                (name_key(name), look_key(name)),
                keys_the_long_way(name),
                "{name:?}"
            );
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
