//! What one frame from a `/chat` connection is, decided in its reader thread (off the
//! dispatcher): a request, plain text, a refusal, a binary frame or a rate-limited frame.
//! Parsing is bounded against hostile input (size, nesting) before serde sees it.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::protocol::{ClientMsg, ErrorCode, KNOWN_TYPES, Reject, Request};

/// The largest text frame the chat looks at, in bytes. It mirrors the socket layer's frame
/// limit (64 KiB), so it never fires in the server; it is here so that `parse_input` is
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

/// One frame from a connection, classified in its reader thread (off the dispatcher).
// Serialize/Deserialize: a cluster node writes inputs, as its reader parsed and filtered
// them, into the shared log that every node applies.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) enum Input {
    /// A well-formed request.
    Msg(ClientMsg),
    /// A text frame not meant as JSON (its first non-whitespace character is not `{`): chat
    /// text for the sender's current room.
    Plain(String),
    /// A text frame meant as a request (it starts with `{`) but refused; answered with an
    /// `error`.
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

/// Classifies one text frame. Never panics, whatever the input; work is linear in the input,
/// which is refused above [`MAX_INPUT_BYTES`] before anything else, and JSON nested deeper
/// than [`MAX_DEPTH`] is refused before serde sees it. Meant for the reader thread, so the
/// dispatcher never parses.
///
/// A frame whose first non-whitespace character is `{` is a request: it must be one valid
/// JSON object (else `bad_json`). Anything else, including other JSON values such as `"hi"`
/// or `[1]`, is plain text, so that a bare `ws.send("hello")` chats.
pub(crate) fn parse_input(text: &str) -> Input {
    if text.len() > MAX_INPUT_BYTES {
        return Input::Invalid(Reject::new(
            ErrorCode::TooLong,
            format!("frame is over {MAX_INPUT_BYTES} bytes"),
        ));
    }
    if !text.trim_start().starts_with('{') {
        return Input::Plain(text.to_owned());
    }
    if crate::json::nesting_depth_exceeds(text.as_bytes(), MAX_DEPTH) {
        return Input::Invalid(Reject::new(
            ErrorCode::BadJson,
            format!("JSON nests deeper than {MAX_DEPTH} levels"),
        ));
    }
    let mut obj: Map<String, Value> = match serde_json::from_str(text) {
        Ok(obj) => obj,
        Err(e) => {
            return Input::Invalid(Reject::new(ErrorCode::BadJson, detail(e)));
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
        return Input::Invalid(Reject::new(ErrorCode::UnknownType, msg).with_ref(reference));
    }
    match serde_json::from_value::<Request>(Value::Object(obj)) {
        Ok(body) => Input::Msg(ClientMsg { reference, body }),
        Err(e) => Input::Invalid(Reject::new(ErrorCode::BadField, detail(e)).with_ref(reference)),
    }
}

/// An error's text, cut to [`MAX_ERROR_DETAIL_CHARS`].
fn detail(e: impl std::fmt::Display) -> String {
    let s = e.to_string();
    match s.char_indices().nth(MAX_ERROR_DETAIL_CHARS) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::test_harness::H;
    use serde_json::json;

    fn msg(text: &str) -> ClientMsg {
        match parse_input(text) {
            Input::Msg(m) => m,
            other => panic!("{text}: {other:?}"),
        }
    }

    fn reject(text: &str) -> Reject {
        match parse_input(text) {
            Input::Invalid(r) => r,
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
                    as_name: None,
                },
            ),
            (
                r#"{"type":"say","room":"news","text":"deploy done","as":"ci"}"#,
                Request::Say {
                    room: "news".into(),
                    text: "deploy done".into(),
                    as_name: Some("ci".into()),
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
            assert_eq!(parse_input(text), Input::Plain(text.to_owned()));
        }
        // Leading whitespace does not hide an object.
        assert!(matches!(
            parse_input("  \n{\"type\":\"rooms\"}"),
            Input::Msg(_)
        ));
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let ok = format!(
            r#"{{"type":"rooms","ref":{}1{}}}"#,
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        assert!(matches!(parse_input(&ok), Input::Msg(_)));
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
        assert!(matches!(parse_input(&in_string), Input::Msg(_)));
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
}
