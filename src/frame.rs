//! Encoding of server-to-client frames.
//!
//! Server frames are never masked (RFC 6455 5.1), so one encoded buffer is byte-for-byte the
//! same for every recipient: the dispatcher encodes a message once and copies the bytes into
//! each recipient's queue. Reading frames is tungstenite's job (see `conn.rs`).

/// Opcode of a text frame.
pub(crate) const TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub(crate) const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;

/// Appends one final (FIN) unmasked frame with `opcode` and `payload` to `out`.
pub(crate) fn encode(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    let len = payload.len();
    out.reserve(len + 10);
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(len as u8);
    } else if len <= u16::MAX as usize {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// A complete frame as its own buffer.
pub(crate) fn encoded(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    encode(opcode, payload, &mut out);
    out
}

/// Appends a Close frame with `code` and a reason (cut to fit the 125-byte control-frame limit
/// at a character boundary).
pub(crate) fn encode_close(code: u16, reason: &str, out: &mut Vec<u8>) {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = [0u8; 125];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    encode(CLOSE, &payload[..2 + end], out);
}

/// Appends a Ping frame with an empty payload (the heartbeat).
pub(crate) fn encode_ping(out: &mut Vec<u8>) {
    encode(PING, &[], out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use tungstenite::protocol::frame::FrameHeader;
    use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

    /// Our encoder must produce what tungstenite's parser (the client side in tests) accepts.
    fn parse(buf: &[u8]) -> (FrameHeader, u64, usize) {
        let mut cur = Cursor::new(buf);
        let (h, len) = FrameHeader::parse(&mut cur).unwrap().unwrap();
        (h, len, cur.position() as usize)
    }

    #[test]
    fn lengths_at_each_boundary_round_trip() {
        for len in [0usize, 1, 125, 126, 127, 65535, 65536, 70000] {
            let payload = vec![b'x'; len];
            let buf = encoded(TEXT, &payload);
            let (h, plen, hlen) = parse(&buf);
            assert!(h.is_final);
            assert!(h.mask.is_none());
            assert_eq!(h.opcode, OpCode::Data(Data::Text));
            assert_eq!(plen as usize, len);
            assert_eq!(buf.len(), hlen + len);
        }
    }

    #[test]
    fn close_reason_is_cut_at_a_char_boundary() {
        let reason = "é".repeat(100); // 200 bytes
        let mut buf = Vec::new();
        encode_close(1008, &reason, &mut buf);
        let (h, plen, hlen) = parse(&buf);
        assert_eq!(h.opcode, OpCode::Control(Control::Close));
        assert!(plen <= 125);
        let payload = &buf[hlen..];
        assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1008);
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
    }
}
