//! The `/chat` wire format: serde types for what clients send and what the server answers.
//!
//! One JSON object per text frame, discriminated by its `type` field. PROTOCOL.md is the
//! reference for clients; this file is the code behind it and stays free of chat state. How a
//! frame is classified and parsed (with its bounds against hostile input) is in
//! `chat::input`; the name rules are in `chat::names`.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::chat::Entry;

/// A stable machine-readable error code, sent as `error.code`. Clients switch on these; the
/// spelling is part of the protocol and never changes (new codes may be added).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ErrorCode {
    /// The frame starts with `{` but is not valid JSON, or nests deeper than the parser
    /// allows (`MAX_DEPTH` in `chat::input`).
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
    /// Message text longer than the configured maximum, or a frame over
    /// `MAX_INPUT_BYTES` (`chat::input`).
    TooLong,
    /// Message text of zero length.
    EmptyText,
    /// The connection sends faster than its rate limit; the message was dropped.
    RateLimited,
    /// The client is already in the maximum number of rooms.
    TooManyRooms,
    /// The server holds its maximum number of rooms; no room is retired to make place.
    ServerRoomLimit,
    /// A binary frame; `/chat` speaks JSON text only.
    BinaryNotSupported,
    /// The server's message filter (a hook of the program embedding wschat) refused the text.
    Filtered,
    /// A private room (`--private-room`) and the connection's token does not list it.
    Forbidden,
    /// A cluster node (`--redis`) cannot reach Redis, which orders and stores the chat: the
    /// request was not carried out (or, if Redis stopped answering mid-request, may still be
    /// once it is back: page the history with `after` before sending a message again).
    Unavailable,
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
            ErrorCode::Unavailable => "unavailable",
        }
    }
}

/// A refused request: what the client gets back as an `error`.
// Serialize/Deserialize: a cluster node writes parsed requests into the shared log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ClientMsg {
    /// The request's `ref`, any JSON value, or `None` when absent.
    pub reference: Option<Value>,
    /// What the client asks for.
    pub body: Request,
}

/// The request types a client can send, deserialized from the object minus its `ref`.
/// Unknown extra fields are ignored so that newer clients can talk to older servers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
        /// Say it under this name instead of one's own, in any room, without joining: only
        /// for a connection whose JWT has `admin: true` (a bot); others get `forbidden`.
        #[serde(default, rename = "as")]
        as_name: Option<String>,
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
pub(crate) const KNOWN_TYPES: &[&str] = &[
    "login", "join", "leave", "say", "dm", "rooms", "users", "history",
];

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
