//! The one WebSocket frame codec (RFC 6455 section 5) of the project.
//!
//! - Server frames out: never masked (5.1), so one encoded buffer is byte-for-byte the same for
//!   every recipient: the dispatcher encodes a message once and copies the bytes into each
//!   recipient's queue.
//! - Client frames out ([`encode_masked`]): for `wschat bench` and the tests, which play the
//!   client. The server itself reads client frames with tungstenite (see `conn.rs`).
//! - Frame headers in ([`parse_head`]): decoded in place, without allocating, for the bench
//!   (millions of frames per second) and the tests; it reports what is on the wire (RSV bits,
//!   any opcode, a mask) and [`FrameHead::check`] says whether a peer may send it.
//!
//! The library's only users of the client half are outside it: `wschat::internals::frame`
//! (hidden from the docs) exposes this module to the binary's bench and to tests/it.

/// The FIN bit of a frame's first byte: the final fragment of a message.
pub const FIN: u8 = 0x80;
/// Opcode of a continuation frame.
pub const CONTINUATION: u8 = 0x0;
/// Opcode of a text frame.
pub const TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const BINARY: u8 = 0x2;
/// Opcode of a Close frame.
pub const CLOSE: u8 = 0x8;
/// Opcode of a Ping frame.
pub const PING: u8 = 0x9;
/// Opcode of a Pong frame.
pub const PONG: u8 = 0xA;

/// Appends the header of a frame whose first byte is `first` (FIN, RSV bits, opcode) and whose
/// payload is `len` bytes, masked with `mask` if given; the length in its shortest form (5.2).
fn encode_head(first: u8, len: usize, mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    out.push(first);
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if let Some(mask) = mask {
        out.extend_from_slice(&mask);
    }
}

/// Appends one final (FIN) unmasked server frame with `opcode` and `payload` to `out`.
pub fn encode(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(payload.len() + 10);
    encode_head(FIN | opcode, payload.len(), None, out);
    out.extend_from_slice(payload);
}

/// A complete server frame as its own buffer.
pub fn encoded(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    encode(opcode, payload, &mut out);
    out
}

/// Appends a Close frame with `code` and a reason (cut to fit the 125-byte control-frame limit
/// at a character boundary).
pub fn encode_close(code: u16, reason: &str, out: &mut Vec<u8>) {
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
pub fn encode_ping(out: &mut Vec<u8>) {
    encode(PING, &[], out);
}

/// Appends one client frame: `first` is the whole first byte (`FIN | TEXT` for an ordinary
/// message; tests set RSV bits or clear FIN on purpose), the payload is masked with `mask` as
/// RFC 6455 5.3 requires of clients. Allocates only if `out` must grow.
#[inline]
pub fn encode_masked(first: u8, payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    out.reserve(payload.len() + 14);
    encode_head(first, payload.len(), Some(mask), out);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
}

/// XORs `buf` with `mask`, starting at mask offset 0 (masking and unmasking are the same).
#[inline]
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    // Eight bytes at a time: the mask repeats every 4 bytes, so a doubled mask lines up.
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, so at mask offset 0.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// A decoded frame header, as it is on the wire (nothing refused yet: see [`FrameHead::check`]).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct FrameHead {
    /// Final fragment of a message.
    pub fin: bool,
    /// The three RSV bits, as `first_byte & 0x70`.
    pub rsv: u8,
    /// The opcode, `first_byte & 0x0f`.
    pub opcode: u8,
    /// Bytes taken by the header (2 to 14).
    pub header_len: usize,
    /// Payload bytes following the header, as declared (may not fit a `usize` on 32-bit).
    pub payload_len: u64,
    /// Masking key, if the frame was masked.
    pub mask: Option<[u8; 4]>,
}

/// Why a received frame is refused by [`FrameHead::check`].
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum FrameError {
    /// RSV1-3 set although no extension was negotiated.
    ReservedBits,
    /// An opcode RFC 6455 does not define.
    BadOpcode(u8),
    /// A control frame longer than 125 bytes or fragmented (5.5).
    BadControlFrame,
    /// A payload longer than the receiver's limit.
    TooLarge(u64),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::ReservedBits => write!(f, "reserved bits set"),
            FrameError::BadOpcode(op) => write!(f, "unknown opcode {op:#x}"),
            FrameError::BadControlFrame => write!(f, "control frame fragmented or over 125 bytes"),
            FrameError::TooLarge(len) => write!(f, "frame of {len} bytes over the limit"),
        }
    }
}

impl FrameHead {
    /// Whether this is a control frame (Close, Ping, Pong and the reserved 0xB-0xF).
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }

    /// Refuses what no peer may send without an extension: RSV bits, an undefined opcode, a
    /// fragmented or over-long control frame, or a payload over `max_payload`. After `Ok`,
    /// `payload_len` fits a `usize` and [`FrameHead::total_len`] is exact.
    #[inline]
    pub fn check(&self, max_payload: usize) -> Result<(), FrameError> {
        if self.rsv != 0 {
            return Err(FrameError::ReservedBits);
        }
        match self.opcode {
            CONTINUATION | TEXT | BINARY => {}
            CLOSE | PING | PONG => {
                if !self.fin || self.payload_len > 125 {
                    return Err(FrameError::BadControlFrame);
                }
            }
            other => return Err(FrameError::BadOpcode(other)),
        }
        if self.payload_len > max_payload as u64 {
            return Err(FrameError::TooLarge(self.payload_len));
        }
        Ok(())
    }

    /// Header plus payload, in bytes; `None` if that does not fit a `usize` (only possible for
    /// a frame that [`FrameHead::check`] refuses).
    pub fn total_len(&self) -> Option<usize> {
        usize::try_from(self.payload_len)
            .ok()?
            .checked_add(self.header_len)
    }
}

/// Decodes the frame header at the start of `buf`; `None` while `buf` does not hold the whole
/// header yet. The payload may still be incomplete: compare [`FrameHead::total_len`] with
/// `buf.len()`.
#[inline]
pub fn parse_head(buf: &[u8]) -> Option<FrameHead> {
    let (b0, b1) = (*buf.first()?, *buf.get(1)?);
    let (payload_len, mut header_len) = match b1 & 0x7F {
        126 => {
            let bytes: [u8; 2] = buf.get(2..4)?.try_into().ok()?;
            (u64::from(u16::from_be_bytes(bytes)), 4)
        }
        127 => {
            let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(bytes), 10)
        }
        small => (u64::from(small), 2),
    };
    let mask = if b1 & 0x80 != 0 {
        let key: [u8; 4] = buf.get(header_len..header_len + 4)?.try_into().ok()?;
        header_len += 4;
        Some(key)
    } else {
        None
    };
    Some(FrameHead {
        fin: b0 & 0x80 != 0,
        rsv: b0 & 0x70,
        opcode: b0 & 0x0F,
        header_len,
        payload_len,
        mask,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use tungstenite::protocol::frame::FrameHeader;
    use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

    /// Our encoders must produce what tungstenite's parser (an independent codec) accepts.
    fn parse(buf: &[u8]) -> (FrameHeader, u64, usize) {
        let mut cur = Cursor::new(buf);
        let (h, len) = FrameHeader::parse(&mut cur).unwrap().unwrap();
        (h, len, cur.position() as usize)
    }

    const LENGTHS: [usize; 11] = [0, 1, 7, 8, 9, 125, 126, 127, 65535, 65536, 70000];

    #[test]
    fn lengths_at_each_boundary_round_trip() {
        for len in LENGTHS {
            let payload = vec![b'x'; len];
            let buf = encoded(TEXT, &payload);
            let (h, plen, hlen) = parse(&buf);
            assert!(h.is_final);
            assert!(h.mask.is_none());
            assert_eq!(h.opcode, OpCode::Data(Data::Text));
            assert_eq!(plen as usize, len);
            assert_eq!(buf.len(), hlen + len);
            // And our own decoder agrees.
            let head = parse_head(&buf).unwrap();
            assert_eq!((head.fin, head.rsv, head.opcode), (true, 0, TEXT));
            assert_eq!((head.header_len, head.payload_len), (hlen, len as u64));
            assert_eq!((head.mask, head.total_len()), (None, Some(buf.len())));
            assert_eq!(head.check(1 << 20), Ok(()));
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
        assert_eq!(
            parse_head(&buf).unwrap().check(0),
            Err(FrameError::TooLarge(plen))
        );
    }

    #[test]
    fn rfc6455_masked_hello_example() {
        // RFC 6455 5.7: a single-frame masked text message "Hello".
        let mut out = Vec::new();
        encode_masked(FIN | TEXT, b"Hello", [0x37, 0xfa, 0x21, 0x3d], &mut out);
        assert_eq!(
            out,
            [
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
            ]
        );
    }

    #[test]
    fn masked_frames_round_trip_at_every_length_class() {
        for (k, len) in LENGTHS.into_iter().enumerate() {
            let payload: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let mask = [k as u8, 0xa5, 0x5a, 0xff];
            let mut out = vec![0xee]; // appends after what is there
            encode_masked(FIN | BINARY, &payload, mask, &mut out);
            let frame = &out[1..];
            let (h, plen, hlen) = parse(frame);
            assert_eq!((h.mask, plen as usize), (Some(mask), len));
            let head = parse_head(frame).unwrap();
            assert_eq!(
                (head.fin, head.opcode, head.mask),
                (true, BINARY, Some(mask))
            );
            assert_eq!((head.header_len, head.payload_len), (hlen, len as u64));
            assert_eq!(head.total_len(), Some(frame.len()));
            let mut body = frame[head.header_len..].to_vec();
            apply_mask(&mut body, mask);
            assert_eq!(body, payload, "len {len}");
        }
    }

    #[test]
    fn incomplete_headers_are_not_decoded_yet() {
        let frame = encoded(TEXT, &[b'a'; 300]);
        assert_eq!(parse_head(&frame[..0]), None);
        assert_eq!(parse_head(&frame[..1]), None);
        assert_eq!(parse_head(&frame[..3]), None);
        let head = parse_head(&frame[..4]).unwrap();
        assert_eq!((head.header_len, head.payload_len), (4, 300));
        let big = encoded(BINARY, &vec![0; 70000]);
        assert_eq!(parse_head(&big[..9]), None);
        assert_eq!(parse_head(&big[..10]).unwrap().payload_len, 70000);
        let mut masked = Vec::new();
        encode_masked(FIN | TEXT, b"hi", [1, 2, 3, 4], &mut masked);
        assert_eq!(parse_head(&masked[..5]), None);
        assert_eq!(parse_head(&masked[..6]).unwrap().header_len, 6);
    }

    #[test]
    fn what_no_peer_may_send_is_reported_then_refused() {
        let head = |bytes: &[u8]| parse_head(bytes).unwrap();
        let rsv = head(&[0xC1, 0x00]);
        assert_eq!((rsv.rsv, rsv.opcode), (0x40, TEXT));
        assert_eq!(rsv.check(10), Err(FrameError::ReservedBits));
        assert_eq!(head(&[0x83, 0x00]).check(10), Err(FrameError::BadOpcode(3)));
        assert!(head(&[0x8B, 0x00]).is_control());
        assert_eq!(
            head(&[0x09, 0x00]).check(10),
            Err(FrameError::BadControlFrame)
        );
        assert_eq!(
            head(&[0x89, 126, 0, 200]).check(1000),
            Err(FrameError::BadControlFrame)
        );
        assert_eq!(
            head(&[0x81, 126, 0, 200]).check(100),
            Err(FrameError::TooLarge(200))
        );
        let huge = head(&[0x82, 127, 0xff, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(huge.payload_len, 0xff << 56);
        assert_eq!(huge.check(1 << 20), Err(FrameError::TooLarge(0xff << 56)));
        assert_eq!(head(&[0x8A, 0x00]).check(0), Ok(()));
    }

    #[test]
    fn mask_is_its_own_inverse_for_odd_lengths() {
        let original: Vec<u8> = (0..=255u8).collect();
        for len in 0..20 {
            let mut buf = original[..len].to_vec();
            apply_mask(&mut buf, [1, 2, 3, 4]);
            for (i, b) in buf.iter().enumerate() {
                assert_eq!(*b, original[i] ^ [1, 2, 3, 4][i % 4]);
            }
            apply_mask(&mut buf, [1, 2, 3, 4]);
            assert_eq!(buf, &original[..len]);
        }
    }
}
