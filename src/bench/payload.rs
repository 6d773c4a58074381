//! The bench message: `wsb <run> <sender> <seq> <send_ns> ` padded with `x` to the payload size,
//! so that every receiver can measure latency and detect loss, duplicates and reordering
//! without any state shared with the sender.
//!
//! `run` is random per bench process: messages left over from another run (or sent by another
//! client on the same server) are ignored instead of being counted as duplicates.

use std::borrow::Cow;

const PREFIX: &[u8] = b"wsb ";

/// The fields carried by one bench message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchMsg {
    /// Identifies the bench process that sent it.
    pub run: u32,
    /// Index of the sending connection.
    pub sender: u32,
    /// Per-sender sequence number, from 0.
    pub seq: u64,
    /// Send time in nanoseconds on the client's monotonic clock.
    pub sent_ns: u64,
}

fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends the text of `msg` to `out`, padded with `x` to `size` bytes in total (longer if
/// `size` is below the ~30-60 bytes the fields need). Allocates only if `out` must grow.
pub fn encode(out: &mut Vec<u8>, msg: &BenchMsg, size: usize) {
    let start = out.len();
    out.extend_from_slice(PREFIX);
    push_u64(out, u64::from(msg.run));
    out.push(b' ');
    push_u64(out, u64::from(msg.sender));
    out.push(b' ');
    push_u64(out, msg.seq);
    out.push(b' ');
    push_u64(out, msg.sent_ns);
    out.push(b' ');
    let written = out.len() - start;
    if written < size {
        out.resize(start + size, b'x');
    }
}

fn take_u64(rest: &mut &[u8]) -> Option<u64> {
    let end = rest.iter().position(|&b| b == b' ')?;
    if end == 0 || end > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in &rest[..end] {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    *rest = &rest[end + 1..];
    Some(v)
}

/// Parses a bench message; `None` for anything else (welcome texts, other clients' chatter).
pub fn parse(text: &[u8]) -> Option<BenchMsg> {
    let mut rest = text.strip_prefix(PREFIX)?;
    let run = u32::try_from(take_u64(&mut rest)?).ok()?;
    let sender = u32::try_from(take_u64(&mut rest)?).ok()?;
    let seq = take_u64(&mut rest)?;
    let sent_ns = take_u64(&mut rest)?;
    Some(BenchMsg {
        run,
        sender,
        seq,
        sent_ns,
    })
}

/// Extracts the bench message from a wschat `/chat` frame
/// (`{"type":"message",...,"text":"wsb ..."}`); every other frame gives `None`.
///
/// The fast path reads the `text` field in place when the frame starts with
/// `{"type":"message"` and the text has no escapes (bench payloads never do). Anything else that
/// might still carry a bench message (other field order, whitespace) goes through serde_json.
pub fn parse_chat(frame: &[u8]) -> Option<BenchMsg> {
    const TYPE: &[u8] = br#"{"type":"message""#;
    const TEXT: &[u8] = br#""text":""#;
    // Nested `if let`s rather than let-chains: those need Rust 1.88, `rust-version` is 1.85.
    if frame.starts_with(TYPE) {
        if let Some(at) = find(frame, TEXT) {
            let value = &frame[at + TEXT.len()..];
            if let Some(end) = value.iter().position(|&b| b == b'"' || b == b'\\') {
                if value[end] == b'"' {
                    return parse(&value[..end]);
                }
            }
        }
    }
    // Only frames that could carry a bench message pay for a JSON parse.
    find(frame, PREFIX)?;
    #[derive(serde::Deserialize)]
    struct Said<'a> {
        #[serde(rename = "type", borrow)]
        kind: Cow<'a, str>,
        #[serde(borrow)]
        text: Option<Cow<'a, str>>,
    }
    let said: Said<'_> = serde_json::from_slice(frame).ok()?;
    if said.kind != "message" {
        return None;
    }
    parse(said.text?.as_bytes())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: BenchMsg = BenchMsg {
        run: 4_000_000_000,
        sender: 12,
        seq: 345,
        sent_ns: 1_234_567_890_123,
    };

    #[test]
    fn encodes_padded_to_size_and_parses_back() {
        let mut out = b"head".to_vec();
        encode(&mut out, &MSG, 64);
        assert_eq!(out.len(), 4 + 64);
        let text = &out[4..];
        assert!(text.starts_with(b"wsb 4000000000 12 345 1234567890123 x"));
        assert!(text.ends_with(b"xxx"));
        assert_eq!(parse(text), Some(MSG));
    }

    #[test]
    fn small_sizes_still_carry_all_fields() {
        let mut out = Vec::new();
        encode(&mut out, &BenchMsg { seq: 0, ..MSG }, 1);
        assert_eq!(out, b"wsb 4000000000 12 0 1234567890123 ");
        assert_eq!(parse(&out), Some(BenchMsg { seq: 0, ..MSG }));
    }

    #[test]
    fn other_texts_are_not_bench_messages() {
        for text in [
            &b"welcome"[..],
            b"wsb",
            b"wsb 1 2 3",
            b"wsb 1 2 3 4",
            b"wsb 1 2 x 4 ",
            b"wsb 99999999999 2 3 4 ",
            b"wsb 1  3 4 ",
            b"wsb 1 2 3 99999999999999999999999 ",
        ] {
            assert_eq!(parse(text), None, "{}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn chat_messages_yield_their_text() {
        let mut text = Vec::new();
        encode(&mut text, &MSG, 48);
        let text = String::from_utf8(text).unwrap();
        let fast = format!(
            r#"{{"type":"message","id":7,"ts":1700000000000,"room":"lobby","from":"guest-3","text":"{text}"}}"#
        );
        assert_eq!(parse_chat(fast.as_bytes()), Some(MSG));
        let reordered = format!(r#"{{ "text": "{text}", "from":"guest-3", "type": "message" }}"#);
        assert_eq!(parse_chat(reordered.as_bytes()), Some(MSG));
    }

    #[test]
    fn other_chat_frames_are_ignored() {
        for frame in [
            r#"{"type":"welcome","name":"guest-3","rooms":["lobby"]}"#,
            r#"{"type":"presence","room":"lobby","users":["guest-3"]}"#,
            r#"{"type":"joined","room":"lobby","text":"wsb 1 2 3 4 "}"#,
            r#"{"type":"message","text":"hello"}"#,
            "wsb 1 2 3 4 ",
            "not json",
        ] {
            assert_eq!(parse_chat(frame.as_bytes()), None, "{frame}");
        }
    }
}
