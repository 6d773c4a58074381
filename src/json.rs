//! JSON from peers, bounded before serde sees it: chat frames (`chat/input.rs`) and
//! `POST /api/publish` bodies (`web.rs`) are checked by one linear scan for nesting depth, so
//! that a frame of 60,000 `[` costs no recursion (serde_json recurses per level, and a
//! connection thread has a 128 KiB stack).

/// Whether objects/arrays nest deeper than `max`, counting brackets outside strings only.
///
/// Runs before serde so that a frame of 60 000 `[` costs one linear scan and no recursion.
/// The scan agrees with serde on where strings are for every prefix that is valid JSON, and
/// serde stops at the first invalid byte, so serde never recurses deeper than this counts.
pub(crate) fn nesting_depth_exceeds(bytes: &[u8], max: usize) -> bool {
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
