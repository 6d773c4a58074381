//! A small client-side WebSocket frame codec (RFC 6455 section 5): masked frames out, frame
//! headers in, parsed in place from the worker's read buffer without allocating.
//!
//! Hand-written rather than tungstenite's `WebSocket` because the client must absorb millions of
//! frames per second on the same two cores as the server under test: parsing in place from one
//! shared read buffer per thread keeps per-connection memory to a few hundred bytes and per-frame
//! cost to a header decode.

/// Continuation frame.
pub const OP_CONTINUATION: u8 = 0x0;
/// Text frame.
pub const OP_TEXT: u8 = 0x1;
/// Binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Ping frame.
pub const OP_PING: u8 = 0x9;
/// Pong frame.
pub const OP_PONG: u8 = 0xA;

/// Why a received frame was refused; the connection is dropped.
#[derive(Debug, PartialEq, Eq)]
pub enum CodecError {
    /// RSV1-3 set although no extension was negotiated.
    ReservedBits,
    /// An opcode RFC 6455 does not define.
    BadOpcode(u8),
    /// A control frame longer than 125 bytes or fragmented.
    BadControlFrame,
    /// A payload longer than the configured limit.
    TooLarge(u64),
}

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodecError::ReservedBits => write!(f, "reserved bits set"),
            CodecError::BadOpcode(op) => write!(f, "unknown opcode {op:#x}"),
            CodecError::BadControlFrame => write!(f, "control frame fragmented or over 125 bytes"),
            CodecError::TooLarge(len) => write!(f, "frame of {len} bytes over the limit"),
        }
    }
}

/// A decoded frame header.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct FrameHead {
    /// Final fragment of a message.
    pub fin: bool,
    /// One of the `OP_*` constants.
    pub opcode: u8,
    /// Bytes taken by the header (2 to 14).
    pub header_len: usize,
    /// Payload bytes following the header.
    pub payload_len: usize,
    /// Masking key, if the frame was masked (servers must not mask, but we tolerate it).
    pub mask: Option<[u8; 4]>,
}

impl FrameHead {
    /// Header plus payload.
    pub fn total_len(&self) -> usize {
        self.header_len + self.payload_len
    }
}

/// Decodes the frame header at the start of `buf`.
///
/// Returns `Ok(None)` when `buf` does not hold the whole header yet. The payload may still be
/// incomplete: compare [`FrameHead::total_len`] with `buf.len()`.
pub fn parse_head(buf: &[u8], max_payload: usize) -> Result<Option<FrameHead>, CodecError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Err(CodecError::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0F;
    match opcode {
        OP_CONTINUATION | OP_TEXT | OP_BINARY => {}
        OP_CLOSE | OP_PING | OP_PONG => {
            if !fin || (b1 & 0x7F) > 125 {
                return Err(CodecError::BadControlFrame);
            }
        }
        other => return Err(CodecError::BadOpcode(other)),
    }
    let masked = b1 & 0x80 != 0;
    let (len, mut header_len) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        small => (u64::from(small), 2),
    };
    if len > max_payload as u64 {
        return Err(CodecError::TooLarge(len));
    }
    let mask = if masked {
        if buf.len() < header_len + 4 {
            return Ok(None);
        }
        let mut m = [0u8; 4];
        m.copy_from_slice(&buf[header_len..header_len + 4]);
        header_len += 4;
        Some(m)
    } else {
        None
    };
    Ok(Some(FrameHead {
        fin,
        opcode,
        header_len,
        // Fits: len <= max_payload, a usize.
        payload_len: len as usize,
        mask,
    }))
}

/// XORs `buf` with `mask`, starting at mask offset 0 (masking and unmasking are the same).
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

/// Appends one complete (FIN) client frame to `out`, masked with `mask` as RFC 6455 requires of
/// clients.
pub fn encode_masked(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | (opcode & 0x0F));
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
}

/// A cheap xorshift generator for masking keys.
///
/// RFC 6455 asks for unpredictable masks to protect intermediaries from cache poisoning by
/// scripted clients; a load generator on loopback talks to no intermediary, and a CSPRNG call per
/// frame would be a measurable share of the client's budget.
pub struct MaskRng(u64);

impl MaskRng {
    /// A generator seeded with `seed` (zero is replaced: xorshift would stay at zero).
    pub fn new(seed: u64) -> Self {
        MaskRng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next masking key.
    pub fn next_mask(&mut self) -> [u8; 4] {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x as u32).to_ne_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unmasked(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![(if fin { 0x80 } else { 0 }) | opcode];
        let len = payload.len();
        if len < 126 {
            v.push(len as u8);
        } else if len <= 65535 {
            v.push(126);
            v.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            v.push(127);
            v.extend_from_slice(&(len as u64).to_be_bytes());
        }
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn rfc6455_masked_hello_example() {
        // RFC 6455 5.7: a single-frame masked text message "Hello".
        let mut out = Vec::new();
        encode_masked(&mut out, OP_TEXT, b"Hello", [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(
            out,
            [
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
            ]
        );
    }

    #[test]
    fn masked_frames_round_trip_at_every_length_class() {
        let mut rng = MaskRng::new(7);
        for len in [0usize, 1, 7, 8, 9, 125, 126, 127, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let mut out = Vec::new();
            encode_masked(&mut out, OP_BINARY, &payload, rng.next_mask());
            let head = parse_head(&out, 1 << 20).unwrap().unwrap();
            assert!(head.fin);
            assert_eq!(head.opcode, OP_BINARY);
            assert_eq!(head.payload_len, len);
            assert_eq!(head.total_len(), out.len());
            let mut body = out[head.header_len..].to_vec();
            apply_mask(&mut body, head.mask.unwrap());
            assert_eq!(body, payload, "len {len}");
        }
    }

    #[test]
    fn unmasked_server_frames_parse_and_report_incomplete_headers() {
        let frame = unmasked(OP_TEXT, true, &[b'a'; 300]);
        assert_eq!(parse_head(&frame[..1], 1000), Ok(None));
        assert_eq!(parse_head(&frame[..3], 1000), Ok(None));
        let head = parse_head(&frame[..4], 1000).unwrap().unwrap();
        assert_eq!(
            (head.header_len, head.payload_len, head.mask),
            (4, 300, None)
        );
        let big = unmasked(OP_BINARY, false, &vec![0; 70000]);
        assert_eq!(parse_head(&big[..9], 1 << 20), Ok(None));
        let head = parse_head(&big[..10], 1 << 20).unwrap().unwrap();
        assert_eq!(
            (head.fin, head.header_len, head.payload_len),
            (false, 10, 70000)
        );
    }

    #[test]
    fn protocol_violations_are_refused() {
        assert_eq!(parse_head(&[0xC1, 0x00], 10), Err(CodecError::ReservedBits));
        assert_eq!(parse_head(&[0x83, 0x00], 10), Err(CodecError::BadOpcode(3)));
        assert_eq!(
            parse_head(&[0x09, 0x00], 10),
            Err(CodecError::BadControlFrame)
        );
        assert_eq!(
            parse_head(&[0x89, 126, 0, 200], 1000),
            Err(CodecError::BadControlFrame)
        );
        assert_eq!(
            parse_head(&[0x81, 126, 0, 200], 100),
            Err(CodecError::TooLarge(200))
        );
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
