//! Room history in memory: the latest messages of each room, bounded by count and bytes, and
//! the pages a client reads it by (`joined.history`, `history`). The log that brings it back
//! after a restart is in [`super::journal`].

use std::collections::VecDeque;

use serde::Serialize;
use serde_json::Value;

use super::names::name_key;
use super::outbox::Outbox;
use super::{Chat, ConnId};
use crate::protocol::{Reject, ServerMsg};

/// One room message as kept in memory and sent in `joined.history` / `history.messages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub(crate) struct Entry {
    /// Server-wide increasing id.
    pub id: u64,
    /// Milliseconds since the Unix epoch, when the server accepted it.
    pub ts: u64,
    /// The sender's name when it was sent.
    pub from: Box<str>,
    /// Exactly what was sent.
    pub text: Box<str>,
}

impl Entry {
    /// What this entry counts against a room's byte budget: its strings plus the fixed part,
    /// so that a flood of empty-ish messages is also bounded by bytes.
    fn cost(&self) -> usize {
        // 64: two u64s, two boxed-str headers, and the VecDeque slot, rounded up. The strings
        // count as they go out, escaped, which is what a page costs a client's backlog.
        64 + json_len(&self.from) + json_len(&self.text)
    }
}

/// The length of `s` as a JSON string body, escaped the way serde_json writes it: `"` and `\`
/// take 2 bytes, `\n`-style controls 2, other control characters 6 (`\u0001`), the rest as
/// they are (non-ASCII is written as UTF-8).
pub(crate) fn json_len(s: &str) -> usize {
    s.bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum()
}

/// One room's latest messages, ascending by id, bounded by count and by bytes.
#[derive(Debug, Default, Serialize, serde::Deserialize)]
pub(crate) struct RoomHistory {
    entries: VecDeque<Entry>,
    bytes: usize,
}

impl RoomHistory {
    /// Appends `entry` (whose id must exceed every id already here) and forgets the oldest
    /// entries until at most `max_len` entries of at most `max_bytes` remain. The newest entry
    /// is always kept, even alone over `max_bytes`, so that a room's last message is never lost.
    pub(crate) fn push(&mut self, entry: Entry, max_len: usize, max_bytes: usize) {
        debug_assert!(self.entries.back().is_none_or(|last| last.id < entry.id));
        self.bytes += entry.cost();
        self.entries.push_back(entry);
        while self.entries.len() > 1 && (self.entries.len() > max_len || self.bytes > max_bytes) {
            if let Some(old) = self.entries.pop_front() {
                self.bytes -= old.cost();
            }
        }
        if max_len == 0 {
            self.entries.clear();
            self.bytes = 0;
        }
    }

    /// How many messages are kept.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no messages are kept.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The newest id kept, or 0.
    pub(crate) fn last_id(&self) -> u64 {
        self.entries.back().map_or(0, |e| e.id)
    }

    /// All kept entries, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    /// A page: entries with `after < id < before` (either bound optional), at most `limit`,
    /// ascending by id. With `before`, or with no bound, it is the newest `limit` of the range
    /// (paging backwards); with only `after`, the oldest `limit` (catching up forwards).
    /// `more` says whether the range holds more in the paging direction.
    /// At most `max_bytes` of entries (by [`Entry::cost`]; at least one entry) are returned:
    /// the ones furthest from where paging started are left out, and `more` says so.
    pub(crate) fn page(
        &self,
        before: Option<u64>,
        after: Option<u64>,
        limit: usize,
        max_bytes: usize,
    ) -> (Vec<&Entry>, bool) {
        let lo = after.map_or(0, |a| self.entries.partition_point(|e| e.id <= a));
        let hi = before.map_or(self.entries.len(), |b| {
            self.entries.partition_point(|e| e.id < b)
        });
        if hi <= lo {
            return (Vec::new(), false);
        }
        let backwards = before.is_some() || after.is_none();
        let (mut start, mut end) = if backwards {
            (hi.saturating_sub(limit).max(lo), hi)
        } else {
            (lo, lo.saturating_add(limit).min(hi))
        };
        // Trim by bytes from the far end: newest kept when paging backwards, oldest forwards.
        let mut bytes = 0usize;
        if backwards {
            let mut i = end;
            while i > start {
                bytes += self.entries[i - 1].cost();
                if bytes > max_bytes && i < end {
                    break;
                }
                i -= 1;
            }
            start = i;
        } else {
            let mut i = start;
            while i < end {
                bytes += self.entries[i].cost();
                if bytes > max_bytes && i > start {
                    break;
                }
                i += 1;
            }
            end = i;
        }
        let more = if backwards { start > lo } else { end < hi };
        (self.entries.range(start..end).collect(), more)
    }
}

impl Chat {
    #[allow(clippy::too_many_arguments)] // the request's fields, passed as they came
    pub(super) fn history(
        &self,
        conn: ConnId,
        raw: &str,
        before: Option<u64>,
        after: Option<u64>,
        limit: Option<u64>,
        reference: Option<&Value>,
        out: &mut Outbox,
    ) -> Result<(), Reject> {
        let name = self.room_name(raw)?;
        let cap = self.cfg.history_page_max;
        let limit = limit.map_or(self.cfg.history_on_join, |l| {
            usize::try_from(l).unwrap_or(usize::MAX)
        });
        let limit = limit.min(cap);
        self.may_use(conn, &name_key(name))?;
        let msg = match self.rooms.get(&name_key(name)) {
            Some(room) => {
                let (messages, more) =
                    room.history
                        .page(before, after, limit, self.cfg.history_page_bytes);
                ServerMsg::History {
                    room: &room.name,
                    messages,
                    more,
                    reference,
                }
            }
            None => ServerMsg::History {
                room: name,
                messages: Vec::new(),
                more: false,
                reference,
            },
        };
        out.send(vec![conn], &msg);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ChatConfig;
    use crate::chat::test_harness::{H, fill, ids_of};
    use serde_json::json;

    fn entry(id: u64, text: &str) -> Entry {
        Entry {
            id,
            ts: id * 10,
            from: "a".into(),
            text: text.into(),
        }
    }

    fn ids(page: &[&Entry]) -> Vec<u64> {
        page.iter().map(|e| e.id).collect()
    }

    #[test]
    fn keeps_the_latest_by_count_and_bytes() {
        let mut h = RoomHistory::default();
        for id in 1..=10 {
            h.push(entry(id, "x"), 4, usize::MAX);
        }
        assert_eq!(h.iter().map(|e| e.id).collect::<Vec<_>>(), [7, 8, 9, 10]);
        let mut h = RoomHistory::default();
        for id in 1..=10 {
            h.push(entry(id, &"y".repeat(100)), 100, 500);
        }
        assert!(h.len() < 10 && h.len() >= 2, "{}", h.len());
        assert!(h.bytes <= 500);
        assert_eq!(h.last_id(), 10);
        // One entry over the byte budget on its own is still kept.
        h.push(entry(11, &"z".repeat(1000)), 100, 500);
        assert_eq!(h.len(), 1);
        assert_eq!(h.last_id(), 11);
    }

    #[test]
    fn paging_backwards_and_forwards_has_no_gaps_or_duplicates() {
        let mut h = RoomHistory::default();
        // Ids with gaps, as DMs and other rooms take ids too.
        let all: Vec<u64> = (1..=100).map(|i| i * 3).collect();
        for &id in &all {
            h.push(entry(id, "t"), 1000, usize::MAX);
        }
        let (latest, more) = h.page(None, None, 10, usize::MAX);
        assert_eq!(ids(&latest), all[90..]);
        assert!(more);
        // Backwards with `before` = the oldest id seen so far.
        let mut seen = ids(&latest);
        let mut before = seen[0];
        loop {
            let (page, more) = h.page(Some(before), None, 7, usize::MAX);
            let mut got = ids(&page);
            assert!(got.windows(2).all(|w| w[0] < w[1]));
            got.extend(seen);
            seen = got;
            if !more {
                break;
            }
            before = seen[0];
        }
        assert_eq!(seen, all);
        // Forwards with `after` = the newest id seen so far.
        let mut seen = Vec::new();
        let mut after = 0;
        loop {
            let (page, more) = h.page(None, Some(after), 9, usize::MAX);
            seen.extend(ids(&page));
            if !more {
                break;
            }
            after = *seen.last().unwrap(); // a page with `more` is not empty
        }
        assert_eq!(seen, all);
        // Both bounds: the newest of the range; empty and inverted ranges.
        let (page, more) = h.page(Some(31), Some(20), 2, usize::MAX);
        assert_eq!(ids(&page), [27, 30]);
        assert!(more);
        assert!(h.page(Some(5), Some(100), 10, usize::MAX).0.is_empty());
        assert!(h.page(None, Some(300), 10, usize::MAX).0.is_empty());
        assert!(h.page(None, None, 0, usize::MAX).0.is_empty());
    }

    #[test]
    fn join_gets_the_latest_50_and_history_pages_without_gaps() {
        let mut h = H::new();
        h.connect(1);
        let all = fill(&mut h, "dev", 300);
        let got = h.send(1, r#"{"type":"join","room":"dev"}"#);
        let joined = H::one(got, &[1]);
        assert_eq!(ids_of(&joined["history"]), all[250..]);
        assert_eq!(
            joined["history"][49],
            json!({"id": all[299], "ts": h.now - 1, "from": "bot", "text": "m299"})
        );
        // Back from the oldest seen.
        let mut seen = ids_of(&joined["history"]);
        loop {
            let req = json!({"type":"history","room":"dev","before":seen[0],"limit":64});
            let v = H::one(h.send_json(1, req), &[1]);
            let mut page = ids_of(&v["messages"]);
            page.extend(seen);
            seen = page;
            if v["more"] != true {
                break;
            }
        }
        assert_eq!(seen, all);
        // Forward from an id (reconnect catch-up), with the cap applied to the limit.
        let req = json!({"type":"history","room":"dev","after":all[10],"limit":100000});
        let v = H::one(h.send_json(1, req), &[1]);
        assert_eq!(ids_of(&v["messages"]), all[11..211]);
        assert_eq!(v["more"], true);
        let req = json!({"type":"history","room":"dev","after":all[210]});
        let v = H::one(h.send_json(1, req), &[1]);
        assert_eq!(ids_of(&v["messages"]), all[211..261]);
        let req = json!({"type":"history","room":"nowhere"});
        let v = H::one(h.send_json(1, req), &[1]);
        assert_eq!(
            v,
            json!({"type":"history","room":"nowhere","messages":[],"more":false})
        );
    }

    #[test]
    fn history_is_bounded_per_room() {
        let mut h = H::with(ChatConfig {
            history_per_room: 10,
            ..ChatConfig::default()
        });
        h.connect(1);
        let all = fill(&mut h, "dev", 25);
        let v = H::one(
            h.send(1, r#"{"type":"history","room":"dev","limit":200}"#),
            &[1],
        );
        assert_eq!(ids_of(&v["messages"]), all[15..]);
        assert_eq!(v["more"], false);
    }

    #[test]
    fn json_len_counts_escapes_as_serde_json_writes_them() {
        for s in [
            "plain",
            "qu\"ote",
            "back\\slash",
            "nl\n tab\t",
            "\u{1}\u{1f}\u{7f}",
            "Zoë 🙂",
        ] {
            let written = serde_json::to_string(s).unwrap();
            assert_eq!(json_len(s), written.len() - 2, "{s:?} -> {written}");
        }
    }

    #[test]
    fn pages_are_bounded_by_escaped_bytes_and_page_on_without_gaps() {
        let mut h = RoomHistory::default();
        // 30 messages of 1000 control characters: 6000 escaped bytes each.
        let text: String = "\u{1}".repeat(1000);
        for id in 1..=30 {
            h.push(entry(id, &text), 1000, usize::MAX);
        }
        let max = 20_000; // three messages' worth
        let (page, more) = h.page(None, None, 50, max);
        assert_eq!(ids(&page), vec![28, 29, 30], "the newest, by bytes");
        assert!(more);
        let mut seen = ids(&page);
        let mut before = page[0].id;
        loop {
            let (page, more) = h.page(Some(before), None, 50, max);
            assert!(page.len() <= 3 && !page.is_empty());
            let mut got = ids(&page);
            got.extend(seen);
            seen = got;
            before = page[0].id;
            if !more {
                break;
            }
        }
        assert_eq!(
            seen,
            (1..=30).collect::<Vec<_>>(),
            "paging backwards: no gaps"
        );
        let (page, more) = h.page(None, Some(10), 50, max);
        assert_eq!(
            (ids(&page), more),
            (vec![11, 12, 13], true),
            "forwards keeps the oldest"
        );
        // One entry over the bound alone is still returned.
        let (page, _) = h.page(None, None, 50, 10);
        assert_eq!(ids(&page), vec![30]);
    }
}
