//! The `/chat` wire format: serde types for what clients send and what the server answers.
//!
//! One JSON object per text frame, discriminated by its `type` field. PROTOCOL.md is the
//! reference for clients; this file is the code behind it and stays free of chat state.
//! Parsing (with its bounds against hostile input) lives here too: see [`parse_request`].

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::history::Entry;

/// The largest text frame the chat looks at, in bytes. It mirrors the socket layer's frame
/// limit (64 KiB), so it never fires in the server; it is here so that `parse_request` is
/// bounded work on its own, whoever calls it. 64 KiB is 16 times the longest message text
/// (4000 characters of at most 4 bytes each) plus room for JSON escapes and a `ref`.
pub(crate) const MAX_INPUT_BYTES: usize = 64 * 1024;

/// How deeply objects and arrays may nest in a request, counting the request object itself.
/// Real requests nest 1 deep, plus whatever the client puts in `ref`; 8 leaves room for a
/// structured `ref` while keeping serde's recursion (and so its stack use) small whatever a
/// peer sends. serde_json's own limit (128) is a backstop, not the bound we rely on.
pub(crate) const MAX_DEPTH: usize = 8;

/// The longest `message` text an `error` carries, in characters. serde's messages quote the
/// offending value, which a peer controls; echoing 64 KiB back would amplify its traffic.
const MAX_ERROR_DETAIL_CHARS: usize = 200;

/// A stable machine-readable error code, sent as `error.code`. Clients switch on these; the
/// spelling is part of the protocol and never changes (new codes may be added).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ErrorCode {
    /// The frame starts with `{` but is not valid JSON, or nests deeper than [`MAX_DEPTH`].
    BadJson,
    /// The object has no `type`, or one the server does not know.
    UnknownType,
    /// A known `type` with a missing field or a field of the wrong JSON type.
    BadField,
    /// A name that is empty, too long, has control or invisible characters, or uses the
    /// reserved `guest-` prefix.
    BadName,
    /// Another connected user has this name (compared case-insensitively).
    NameTaken,
    /// The name comes from the connection's login token and cannot be changed.
    NameBound,
    /// A room name that breaks the naming rules (the same rules as user names).
    BadRoom,
    /// `say`/`leave`/plain text for a room the sender is not in.
    NotInRoom,
    /// `dm` to a name nobody connected has.
    NoSuchUser,
    /// Message text longer than the configured maximum, or a frame over [`MAX_INPUT_BYTES`].
    TooLong,
    /// Message text of zero length.
    EmptyText,
    /// The connection sends faster than its rate limit; the message was dropped.
    RateLimited,
    /// The client is already in the maximum number of rooms.
    TooManyRooms,
    /// The server holds its maximum number of rooms and none can be retired.
    ServerRoomLimit,
    /// A binary frame; `/chat` speaks JSON text only.
    BinaryNotSupported,
    /// The server's message filter (a hook of the program embedding wschat) refused the text.
    Filtered,
    /// A private room (`--private-room`) and the connection's token does not list it.
    Forbidden,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::BadField => "bad_field",
            ErrorCode::BadName => "bad_name",
            ErrorCode::NameTaken => "name_taken",
            ErrorCode::NameBound => "name_bound",
            ErrorCode::BadRoom => "bad_room",
            ErrorCode::NotInRoom => "not_in_room",
            ErrorCode::NoSuchUser => "no_such_user",
            ErrorCode::TooLong => "too_long",
            ErrorCode::EmptyText => "empty_text",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::ServerRoomLimit => "server_room_limit",
            ErrorCode::BinaryNotSupported => "binary_not_supported",
            ErrorCode::Filtered => "filtered",
            ErrorCode::Forbidden => "forbidden",
        }
    }
}

/// A refused request: what the client gets back as an `error`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reject {
    /// The stable code.
    pub code: ErrorCode,
    /// A human-readable explanation; wording may change, clients should not parse it.
    pub message: Cow<'static, str>,
    /// The request's `ref`, echoed in the `error` when the request got far enough to have one.
    pub reference: Option<Value>,
}

impl Reject {
    /// A rejection without a `ref` (the caller may fill it in).
    pub(crate) fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Reject {
        Reject {
            code,
            message: message.into(),
            reference: None,
        }
    }

    /// The same rejection, echoing `reference`.
    pub(crate) fn with_ref(mut self, reference: Option<Value>) -> Reject {
        self.reference = reference;
        self
    }
}

/// A parsed client request: what it asks for plus the `ref` to echo in the direct answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ClientMsg {
    /// The request's `ref`, any JSON value, or `None` when absent.
    pub reference: Option<Value>,
    /// What the client asks for.
    pub body: Request,
}

/// The request types a client can send, deserialized from the object minus its `ref`.
/// Unknown extra fields are ignored so that newer clients can talk to older servers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(crate) enum Request {
    /// Take (or change) a name.
    Login {
        /// Wanted name, validated by the chat.
        name: String,
    },
    /// Enter a room, creating it if needed.
    Join {
        /// Room name.
        room: String,
    },
    /// Leave a room.
    Leave {
        /// Room name.
        room: String,
    },
    /// Say something in a room the sender is in.
    Say {
        /// Room name.
        room: String,
        /// Message text, relayed exactly as sent.
        text: String,
    },
    /// A direct message to one user.
    Dm {
        /// Recipient's name.
        to: String,
        /// Message text, relayed exactly as sent.
        text: String,
    },
    /// List the rooms.
    Rooms,
    /// List who is in a room.
    Users {
        /// Room name.
        room: String,
    },
    /// A page of a room's history.
    History {
        /// Room name.
        room: String,
        /// Only messages with an id below this.
        #[serde(default)]
        before: Option<u64>,
        /// Only messages with an id above this.
        #[serde(default)]
        after: Option<u64>,
        /// At most this many (capped by the server).
        #[serde(default)]
        limit: Option<u64>,
    },
}

impl Request {
    /// The request's `type`, for logs (which must not carry message text).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Request::Login { .. } => "login",
            Request::Join { .. } => "join",
            Request::Leave { .. } => "leave",
            Request::Say { .. } => "say",
            Request::Dm { .. } => "dm",
            Request::Rooms => "rooms",
            Request::Users { .. } => "users",
            Request::History { .. } => "history",
        }
    }
}

/// The `type` values [`Request`] knows, checked before serde so that an unknown type gets
/// `unknown_type` and not serde's "unknown variant" as a `bad_field`.
const KNOWN_TYPES: &[&str] = &[
    "login", "join", "leave", "say", "dm", "rooms", "users", "history",
];

/// What a text frame is, before the chat looks at it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Parsed {
    /// A well-formed request.
    Msg(ClientMsg),
    /// Not meant as JSON (does not start with `{`): chat text for the current room.
    Plain(String),
    /// Meant as JSON but refused.
    Invalid(Reject),
}

/// Classifies and parses one text frame. Never panics; work is linear in the input, which is
/// refused above [`MAX_INPUT_BYTES`] before anything else.
///
/// A frame whose first non-whitespace character is `{` is a request: it must be one valid
/// JSON object (else `bad_json`). Anything else, including other JSON values such as `"hi"`
/// or `[1]`, is plain text, so that a bare `ws.send("hello")` chats.
pub(crate) fn parse_request(text: &str) -> Parsed {
    if text.len() > MAX_INPUT_BYTES {
        return Parsed::Invalid(Reject::new(
            ErrorCode::TooLong,
            format!("frame is over {MAX_INPUT_BYTES} bytes"),
        ));
    }
    if !text.trim_start().starts_with('{') {
        return Parsed::Plain(text.to_owned());
    }
    if nesting_depth_exceeds(text.as_bytes(), MAX_DEPTH) {
        return Parsed::Invalid(Reject::new(
            ErrorCode::BadJson,
            format!("JSON nests deeper than {MAX_DEPTH} levels"),
        ));
    }
    let mut obj: Map<String, Value> = match serde_json::from_str(text) {
        Ok(obj) => obj,
        Err(e) => {
            return Parsed::Invalid(Reject::new(ErrorCode::BadJson, detail(e)));
        }
    };
    // From here on the request has a ref, and every refusal echoes it.
    let reference = obj.remove("ref");
    let known = match obj.get("type") {
        Some(Value::String(t)) => KNOWN_TYPES.contains(&t.as_str()),
        _ => false,
    };
    if !known {
        let msg: Cow<'static, str> = match obj.get("type") {
            None => "missing field `type`".into(),
            Some(Value::String(t)) => detail(format_args!("unknown type `{t}`")).into(),
            Some(_) => "`type` must be a string".into(),
        };
        return Parsed::Invalid(Reject::new(ErrorCode::UnknownType, msg).with_ref(reference));
    }
    match serde_json::from_value::<Request>(Value::Object(obj)) {
        Ok(body) => Parsed::Msg(ClientMsg { reference, body }),
        Err(e) => Parsed::Invalid(Reject::new(ErrorCode::BadField, detail(e)).with_ref(reference)),
    }
}

/// Whether objects/arrays nest deeper than `max`, counting brackets outside strings only.
///
/// Runs before serde so that a frame of 60 000 `[` costs one linear scan and no recursion.
/// The scan agrees with serde on where strings are for every prefix that is valid JSON, and
/// serde stops at the first invalid byte, so serde never recurses deeper than this counts.
fn nesting_depth_exceeds(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            // Saturating: an unbalanced `]` is a syntax error serde reports; it must not wrap.
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// An error's text, cut to [`MAX_ERROR_DETAIL_CHARS`].
fn detail(e: impl std::fmt::Display) -> String {
    let s = e.to_string();
    match s.char_indices().nth(MAX_ERROR_DETAIL_CHARS) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s,
    }
}

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

/// What `presence` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PresenceEvent {
    /// Someone entered the room.
    Join,
    /// Someone left the room or disconnected.
    Leave,
    /// Someone in the room changed name; `old` has the previous one.
    Rename,
}

/// One room in a `rooms` answer.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RoomInfo<'a> {
    /// Room name as first spelled.
    pub name: &'a str,
    /// How many connections are in it.
    pub users: usize,
}

/// Everything the server sends. Borrowed fields: a message is built from the chat's state,
/// encoded once, and the encoding is shared by all its recipients.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(crate) enum ServerMsg<'a> {
    /// On connect and after every successful login.
    Welcome {
        /// The connection's name now.
        name: &'a str,
        /// The rooms it is in, in joining order (the last is its current room).
        rooms: Vec<&'a str>,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a Value>,
    },
    /// The answer to `join`.
    Joined {
        room: &'a str,
        /// Names in the room, sorted case-insensitively, at most the configured list cap.
        users: Vec<&'a str>,
        /// How many are in the room (can exceed `users.len()`).
        count: usize,
        /// The latest messages, ascending by id.
        history: Vec<&'a Entry>,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a Value>,
    },
    /// The answer to `leave`.
    Left {
        room: &'a str,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a Value>,
    },
    /// To the others in a room: someone came, went or changed name.
    Presence {
        room: &'a str,
        name: &'a str,
        event: PresenceEvent,
        #[serde(skip_serializing_if = "Option::is_none")]
        old: Option<&'a str>,
    },
    /// A chat message, to a room (`room`) or direct (`to`).
    Message {
        id: u64,
        ts: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        to: Option<&'a str>,
        from: &'a str,
        text: &'a str,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a Value>,
    },
    /// The answer to `rooms`.
    Rooms {
        rooms: Vec<RoomInfo<'a>>,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a Value>,
    },
    /// The answer to `users`.
    Users {
        room: &'a str,
        users: Vec<&'a str>,
        count: usize,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a Value>,
    },
    /// The answer to `history`.
    History {
        room: &'a str,
        /// Ascending by id.
        messages: Vec<&'a Entry>,
        /// Whether the room's kept history has more messages beyond this page, in the
        /// direction of paging (older for `before` or no bound, newer for `after` alone).
        more: bool,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a Value>,
    },
    /// A refused request.
    Error {
        code: ErrorCode,
        message: &'a str,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a Value>,
    },
}

/// The encoding of a message that failed to encode (which our types cannot: they hold only
/// strings, integers and `serde_json::Value`s, whose map keys are strings).
const ENCODE_FAILED: &str = r#"{"type":"error","code":"internal","message":"encoding failed"}"#;

impl ServerMsg<'_> {
    /// Encodes the message as the JSON text of one frame.
    pub(crate) fn encode(&self) -> String {
        match serde_json::to_string(self) {
            Ok(s) => s,
            Err(e) => {
                log::error!("chat: cannot encode a server message: {e}");
                ENCODE_FAILED.to_owned()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(text: &str) -> ClientMsg {
        match parse_request(text) {
            Parsed::Msg(m) => m,
            other => panic!("{text}: {other:?}"),
        }
    }

    fn reject(text: &str) -> Reject {
        match parse_request(text) {
            Parsed::Invalid(r) => r,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn parses_every_request_type() {
        let cases = [
            (
                r#"{"type":"login","name":"alice"}"#,
                Request::Login {
                    name: "alice".into(),
                },
            ),
            (
                r#"{"type":"join","room":"dev"}"#,
                Request::Join { room: "dev".into() },
            ),
            (
                r#"{"type":"leave","room":"dev"}"#,
                Request::Leave { room: "dev".into() },
            ),
            (
                r#"{"type":"say","room":"dev","text":"hi"}"#,
                Request::Say {
                    room: "dev".into(),
                    text: "hi".into(),
                },
            ),
            (
                r#"{"type":"dm","to":"bob","text":"psst"}"#,
                Request::Dm {
                    to: "bob".into(),
                    text: "psst".into(),
                },
            ),
            (r#"{"type":"rooms"}"#, Request::Rooms),
            (
                r#"{"type":"users","room":"dev"}"#,
                Request::Users { room: "dev".into() },
            ),
            (
                r#"{"type":"history","room":"dev","before":10,"limit":5}"#,
                Request::History {
                    room: "dev".into(),
                    before: Some(10),
                    after: None,
                    limit: Some(5),
                },
            ),
            (
                r#"{"type":"history","room":"dev","after":3}"#,
                Request::History {
                    room: "dev".into(),
                    before: None,
                    after: Some(3),
                    limit: None,
                },
            ),
        ];
        for (text, want) in cases {
            let m = msg(text);
            assert!(text.contains(&format!("\"type\":\"{}\"", m.body.kind())));
            assert_eq!(m.body, want, "{text}");
            assert_eq!(m.reference, None);
        }
    }

    #[test]
    fn ref_is_taken_out_whatever_its_type() {
        for r in [json!(1), json!("a"), json!({"k": [1, 2]}), json!(null)] {
            let text = json!({"type": "rooms", "ref": r}).to_string();
            let m = msg(&text);
            assert_eq!(m.reference, Some(r));
            assert_eq!(m.body, Request::Rooms);
        }
    }

    #[test]
    fn extra_fields_are_ignored() {
        let m = msg(r#"{"type":"join","room":"dev","colour":"red"}"#);
        assert_eq!(m.body, Request::Join { room: "dev".into() });
    }

    #[test]
    fn error_codes_for_malformed_requests() {
        assert_eq!(reject(r#"{"type":"say""#).code, ErrorCode::BadJson);
        assert_eq!(reject("{nope}").code, ErrorCode::BadJson);
        assert_eq!(reject(r#"{"room":"dev"}"#).code, ErrorCode::UnknownType);
        assert_eq!(reject(r#"{"type":5}"#).code, ErrorCode::UnknownType);
        let r = reject(r#"{"type":"shout","ref":7}"#);
        assert_eq!(r.code, ErrorCode::UnknownType);
        assert_eq!(r.reference, Some(json!(7)));
        let r = reject(r#"{"type":"join","ref":"x"}"#);
        assert_eq!(r.code, ErrorCode::BadField);
        assert!(r.message.contains("room"), "{}", r.message);
        assert_eq!(r.reference, Some(json!("x")));
        assert_eq!(
            reject(r#"{"type":"join","room":5}"#).code,
            ErrorCode::BadField
        );
        assert_eq!(
            reject(r#"{"type":"history","room":"a","before":-1}"#).code,
            ErrorCode::BadField
        );
        assert_eq!(
            reject(r#"{"type":"history","room":"a","limit":"9"}"#).code,
            ErrorCode::BadField
        );
    }

    #[test]
    fn non_objects_are_plain_text() {
        for text in ["hello", "", "  ", "\"quoted\"", "[1,2]", "42", "null", "}{"] {
            assert_eq!(parse_request(text), Parsed::Plain(text.to_owned()));
        }
        // Leading whitespace does not hide an object.
        assert!(matches!(
            parse_request("  \n{\"type\":\"rooms\"}"),
            Parsed::Msg(_)
        ));
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let ok = format!(
            r#"{{"type":"rooms","ref":{}1{}}}"#,
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        assert!(matches!(parse_request(&ok), Parsed::Msg(_)));
        let deep = format!(
            r#"{{"type":"rooms","ref":{}1{}}}"#,
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        assert_eq!(reject(&deep).code, ErrorCode::BadJson);
        // Brackets inside strings (with escaped quotes) do not count.
        let in_string = format!(
            r#"{{"type":"say","room":"a","text":"\"{}"}}"#,
            "[".repeat(1000)
        );
        assert!(matches!(parse_request(&in_string), Parsed::Msg(_)));
        // A nesting attack the size of a whole frame.
        let attack = format!("{{\"a\":{}", "[".repeat(MAX_INPUT_BYTES - 10));
        assert_eq!(reject(&attack).code, ErrorCode::BadJson);
    }

    #[test]
    fn oversized_frames_are_refused_without_parsing() {
        let big = format!(
            r#"{{"type":"say","room":"a","text":"{}"}}"#,
            "x".repeat(1 << 20)
        );
        assert_eq!(reject(&big).code, ErrorCode::TooLong);
        assert_eq!(reject(&"y".repeat(1 << 20)).code, ErrorCode::TooLong);
    }

    #[test]
    fn error_detail_is_bounded() {
        let text = format!(r#"{{"type":"join","room":["{}"]}}"#, "z".repeat(10_000));
        let r = reject(&text);
        assert_eq!(r.code, ErrorCode::BadField);
        assert!(r.message.chars().count() <= MAX_ERROR_DETAIL_CHARS + 3);
    }

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
    fn server_messages_encode_as_documented() {
        let r = json!(3);
        let m = ServerMsg::Message {
            id: 7,
            ts: 1000,
            room: Some("dev"),
            to: None,
            from: "alice",
            text: "<b>hi</b>",
            reference: Some(&r),
        };
        assert_eq!(
            serde_json::from_str::<Value>(&m.encode()).unwrap(),
            json!({"type":"message","id":7,"ts":1000,"room":"dev","from":"alice","text":"<b>hi</b>","ref":3})
        );
        let e = ServerMsg::Error {
            code: ErrorCode::NotInRoom,
            message: "m",
            reference: None,
        };
        assert_eq!(
            e.encode(),
            r#"{"type":"error","code":"not_in_room","message":"m"}"#
        );
        let p = ServerMsg::Presence {
            room: "dev",
            name: "bob",
            event: PresenceEvent::Rename,
            old: Some("guest-1"),
        };
        assert_eq!(
            p.encode(),
            r#"{"type":"presence","room":"dev","name":"bob","event":"rename","old":"guest-1"}"#
        );
    }

    #[test]
    fn error_code_spellings_match_serde() {
        use ErrorCode::*;
        for c in [
            BadJson,
            UnknownType,
            BadField,
            BadName,
            NameTaken,
            NameBound,
            BadRoom,
            NotInRoom,
            NoSuchUser,
            TooLong,
            EmptyText,
            RateLimited,
            TooManyRooms,
            ServerRoomLimit,
            BinaryNotSupported,
            Filtered,
        ] {
            assert_eq!(
                serde_json::to_string(&c).unwrap(),
                format!("\"{}\"", c.as_str())
            );
        }
    }
}
