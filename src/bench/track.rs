//! Per (receiver, sender) sequence tracking: 16 bytes that tell in-order, late (reordered) and
//! duplicate deliveries apart. Loss is what remains: expected minus unique deliveries.

/// What a received sequence number turned out to be.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Seen {
    /// The next one expected.
    InOrder,
    /// Ahead of the next expected: the skipped ones are missing so far (lost or late).
    Ahead,
    /// Below the highest seen and not seen before: reordered.
    Late,
    /// Seen before.
    Duplicate,
    /// More than 64 below the highest seen: counted as late, but it could be a duplicate.
    TooOld,
}

/// The highest sequence number seen plus one, and a bitmap of the 64 below it.
#[derive(Debug, Default, Clone, Copy)]
pub struct SeqTrack {
    next: u64,
    /// Bit `i` set: sequence number `next - 1 - i` was seen.
    window: u64,
}

impl SeqTrack {
    /// Classifies `seq` and remembers it.
    pub fn record(&mut self, seq: u64) -> Seen {
        if seq >= self.next {
            let advance = seq - self.next + 1;
            self.window = if advance >= 64 {
                1
            } else {
                (self.window << advance) | 1
            };
            let gap = seq != self.next;
            self.next = seq + 1;
            return if gap { Seen::Ahead } else { Seen::InOrder };
        }
        let back = self.next - 1 - seq;
        if back >= 64 {
            return Seen::TooOld;
        }
        let bit = 1u64 << back;
        if self.window & bit != 0 {
            Seen::Duplicate
        } else {
            self.window |= bit;
            Seen::Late
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_late_and_duplicate() {
        let mut t = SeqTrack::default();
        assert_eq!(t.record(0), Seen::InOrder);
        assert_eq!(t.record(1), Seen::InOrder);
        assert_eq!(t.record(1), Seen::Duplicate);
        assert_eq!(t.record(4), Seen::Ahead);
        assert_eq!(t.record(3), Seen::Late);
        assert_eq!(t.record(3), Seen::Duplicate);
        assert_eq!(t.record(2), Seen::Late);
        assert_eq!(t.record(0), Seen::Duplicate);
        assert_eq!(t.record(5), Seen::InOrder);
    }

    #[test]
    fn first_message_after_a_gap_and_far_history() {
        let mut t = SeqTrack::default();
        assert_eq!(t.record(10), Seen::Ahead);
        assert_eq!(t.record(0), Seen::Late);
        assert_eq!(t.record(200), Seen::Ahead);
        assert_eq!(t.record(137), Seen::Late);
        assert_eq!(t.record(137), Seen::Duplicate);
        assert_eq!(t.record(136), Seen::TooOld);
        assert_eq!(t.record(200), Seen::Duplicate);
    }
}
