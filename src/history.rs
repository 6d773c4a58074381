//! Room history: the latest messages of each room in memory, and the append-only log on disk
//! that brings them (and the id counter) back after a restart.
//!
//! # The log
//!
//! `chat.log` in the data directory, one JSON object per line, tagged by `k`:
//!
//! - `{"k":"m","id":7,"ts":1700000000000,"room":"dev","from":"alice","text":"hi"}` a room message;
//! - `{"k":"hw","id":9}` id high-water mark: every id up to 9 was handed out (DMs take ids
//!   too but are not logged, so without this a restart could hand out a DM's id again);
//! - `{"k":"drop","room":"dev"}` the room was retired (its history forgotten).
//!
//! Lines are appended by [`Log::flush`], once per dispatcher batch, with one `write` for the
//! whole batch. A crash can leave the last line torn (no final newline); [`Log::open`] drops
//! it. That loses nothing anyone saw: the dispatcher writes to sockets only after `flush`
//! returned. When the file holds more than twice the records memory keeps (plus a floor),
//! [`Log::rewrite`] replaces it with a compacted copy: temp file, fsync, rename, fsync dir.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use log::{debug, warn};
use serde::{Deserialize, Serialize};

/// One room message as kept in memory and sent in `joined.history` / `history.messages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
        // 64: two u64s, two boxed-str headers, and the VecDeque slot, rounded up.
        64 + self.from.len() + self.text.len()
    }
}

/// One room's latest messages, ascending by id, bounded by count and by bytes.
#[derive(Debug, Default)]
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
    pub(crate) fn page(
        &self,
        before: Option<u64>,
        after: Option<u64>,
        limit: usize,
    ) -> (Vec<&Entry>, bool) {
        let lo = after.map_or(0, |a| self.entries.partition_point(|e| e.id <= a));
        let hi = before.map_or(self.entries.len(), |b| {
            self.entries.partition_point(|e| e.id < b)
        });
        if hi <= lo {
            return (Vec::new(), false);
        }
        let (start, end, more) = if before.is_some() || after.is_none() {
            let start = hi.saturating_sub(limit).max(lo);
            (start, hi, start > lo)
        } else {
            let end = lo.saturating_add(limit).min(hi);
            (lo, end, end < hi)
        };
        (self.entries.range(start..end).collect(), more)
    }
}

/// When the log is forced to stable storage (`--fsync always|batch|never`).
///
/// ```
/// let mut config = wschat::Config::default();
/// config.chat.fsync = "never".parse().unwrap(); // an SD card that should not wear out
/// assert_eq!(config.chat.fsync, wschat::Fsync::Never);
/// ```
/// Whatever the policy, a record is written to the
/// file (the OS page cache) before the dispatcher delivers it, so a killed process (`kill -9`,
/// a panic) loses nothing that was delivered; the policy only matters for power loss and
/// kernel crashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fsync {
    /// `fsync` (data and metadata) after every flush that wrote something. The most
    /// conservative; on most filesystems no safer than `Batch` for an append-only log.
    Always,
    /// `fdatasync` after every flush that wrote something: one per dispatcher batch, shared by
    /// all the messages in it (group commit). A delivered message survives power loss. The
    /// default: the cost is per batch, not per message, so it grows with load more slowly
    /// than the load, and "a message someone saw is never lost" is what chat users assume.
    #[default]
    Batch,
    /// Never sync; the OS writes back when it likes (Linux: within ~30 s). Power loss can
    /// lose the last seconds of history and, worse, let ids of the lost messages be reused.
    /// For SD cards or when history does not matter.
    Never,
}

impl std::str::FromStr for Fsync {
    type Err = String;

    /// `always`, `batch` or `never` (as a command line or config file spells it).
    fn from_str(s: &str) -> Result<Fsync, String> {
        match s {
            "always" => Ok(Fsync::Always),
            "batch" => Ok(Fsync::Batch),
            "never" => Ok(Fsync::Never),
            _ => Err(format!(
                "fsync policy must be always, batch or never, not `{s}`"
            )),
        }
    }
}

/// The log's file name inside the data directory.
const LOG_NAME: &str = "chat.log";
/// The compacted copy being written; a leftover one is from a crash mid-compaction and is junk
/// (the rename never happened, so `chat.log` is intact).
const TMP_NAME: &str = "chat.log.tmp";

/// The smallest log worth compacting, in records. The 2x rule alone already makes compaction
/// amortized O(1) per message; the floor only keeps a server with tiny history settings from
/// paying a rename and two fsyncs every few messages.
const COMPACT_FLOOR: usize = 256;

/// A record as written.
#[derive(Serialize)]
#[serde(tag = "k")]
pub(crate) enum RecordOut<'a> {
    /// A room message.
    #[serde(rename = "m")]
    Msg {
        id: u64,
        ts: u64,
        room: &'a str,
        from: &'a str,
        text: &'a str,
    },
    /// Every id up to `id` was handed out.
    #[serde(rename = "hw")]
    HighWater { id: u64 },
    /// The room was retired.
    #[serde(rename = "drop")]
    Drop { room: &'a str },
}

/// A record as read back.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(tag = "k")]
pub(crate) enum RecordIn {
    /// A room message.
    #[serde(rename = "m")]
    Msg {
        id: u64,
        ts: u64,
        room: String,
        from: String,
        text: String,
    },
    /// Every id up to `id` was handed out.
    #[serde(rename = "hw")]
    HighWater { id: u64 },
    /// The room was retired.
    #[serde(rename = "drop")]
    Drop { room: String },
}

/// The append-only history log. See the module docs for the format.
#[derive(Debug)]
pub(crate) struct Log {
    dir: PathBuf,
    file: File,
    fsync: Fsync,
    /// Encoded records not yet written: the current batch.
    pending: Vec<u8>,
    pending_records: usize,
    /// Records in the file (including unreadable lines, which compaction also removes).
    pub(crate) records: usize,
    /// Bytes in the file that are known good; a failed write is cut back to this.
    len: u64,
    /// The highest id in any record so far (written or pending).
    max_logged_id: u64,
    /// A write or sync failed: the file may be missing records, so the next flush must rewrite
    /// it from memory instead of appending.
    broken: bool,
}

impl Log {
    /// Opens (creating if needed) the log in `dir` and reads it back. Returns the log and its
    /// records in file order. Unreadable complete lines are skipped with a warning; a torn last
    /// line is cut off the file.
    pub(crate) fn open(dir: &Path, fsync: Fsync) -> io::Result<(Log, Vec<RecordIn>)> {
        fs::create_dir_all(dir)?;
        match fs::remove_file(dir.join(TMP_NAME)) {
            Ok(()) => debug!("chat log: removed a compaction left over from a crash"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let path = dir.join(LOG_NAME);
        let created = !path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        if created && fsync != Fsync::Never {
            sync_dir(dir)?;
        }
        let mut records = Vec::new();
        let mut count = 0usize;
        let mut good_len = 0u64;
        let mut max_id = 0u64;
        {
            let mut reader = BufReader::new(&mut file);
            reader.seek(SeekFrom::Start(0))?;
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = reader.read_until(b'\n', &mut line)?;
                if n == 0 {
                    break;
                }
                if line.last() != Some(&b'\n') {
                    warn!(
                        "chat log: dropping a torn last line of {n} bytes (crash during a write)"
                    );
                    break;
                }
                good_len += n as u64;
                count += 1;
                match serde_json::from_slice::<RecordIn>(&line) {
                    Ok(rec) => {
                        max_id = max_id.max(match &rec {
                            RecordIn::Msg { id, .. } | RecordIn::HighWater { id } => *id,
                            RecordIn::Drop { .. } => 0,
                        });
                        records.push(rec);
                    }
                    Err(e) => warn!("chat log: skipping unreadable record {count}: {e}"),
                }
            }
        }
        if file.metadata()?.len() != good_len {
            file.set_len(good_len)?;
            if fsync != Fsync::Never {
                file.sync_data()?;
            }
        }
        debug!(
            "chat log: read {count} records from {}, highest id {max_id}",
            path.display()
        );
        let log = Log {
            dir: dir.to_owned(),
            file,
            fsync,
            pending: Vec::new(),
            pending_records: 0,
            records: count,
            len: good_len,
            max_logged_id: max_id,
            broken: false,
        };
        Ok((log, records))
    }

    /// Adds a record to the current batch (memory only until [`Log::flush`]).
    pub(crate) fn append(&mut self, rec: &RecordOut<'_>) {
        if let RecordOut::Msg { id, .. } | RecordOut::HighWater { id } = rec {
            self.max_logged_id = self.max_logged_id.max(*id);
        }
        encode_line(&mut self.pending, rec);
        self.pending_records += 1;
    }

    /// The batch not yet written (tests simulate a torn write with it).
    #[cfg(test)]
    pub(crate) fn pending_for_test(&self) -> Vec<u8> {
        self.pending.clone()
    }

    /// Pretends a write failed (tests check the recovery).
    #[cfg(test)]
    pub(crate) fn break_for_test(&mut self) {
        self.broken = true;
    }

    /// The highest id the log (file or batch) knows was handed out.
    pub(crate) fn max_logged_id(&self) -> u64 {
        self.max_logged_id
    }

    /// Whether the next flush should be a [`Log::rewrite`] instead: the file (plus the batch)
    /// holds more than twice the `kept` records memory holds, or a write failed earlier.
    pub(crate) fn wants_rewrite(&self, kept: usize) -> bool {
        self.broken
            || self.records + self.pending_records > kept.saturating_mul(2).max(COMPACT_FLOOR)
    }

    /// Writes the batch with one `write` and syncs it as the policy says.
    ///
    /// On error the file is cut back to its last good length (best effort) and the log marks
    /// itself broken, so the next flush rewrites the whole file from memory; the batch itself
    /// is dropped (memory still has it, and the rewrite will include it).
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let result = self.write_pending();
        self.pending.clear();
        self.pending_records = 0;
        if let Err(e) = &result {
            warn!("chat log: write failed ({e}); will rewrite it at the next commit");
            self.broken = true;
            // Best effort: a torn record in the middle would be skipped at replay anyway.
            let _ = self.file.set_len(self.len);
        }
        result
    }

    fn write_pending(&mut self) -> io::Result<()> {
        // `write_all` is one write() for a regular file unless the disk fills up mid-way.
        self.file.write_all(&self.pending)?;
        self.len += self.pending.len() as u64;
        self.records += self.pending_records;
        match self.fsync {
            Fsync::Always => self.file.sync_all(),
            Fsync::Batch => self.file.sync_data(),
            Fsync::Never => Ok(()),
        }
    }

    /// Replaces the file with `records` (and drops the batch, which the caller's records must
    /// include): temp file, fsync, rename over the log, fsync the directory. The copy is
    /// synced whatever the policy: without it a power loss after the rename could leave an
    /// empty log, losing all history rather than the last seconds.
    pub(crate) fn rewrite<'a>(
        &mut self,
        records: impl Iterator<Item = RecordOut<'a>>,
    ) -> io::Result<()> {
        self.pending.clear();
        self.pending_records = 0;
        // Until the rename succeeds the old file may lack the batch: keep "broken" set.
        self.broken = true;
        let tmp = self.dir.join(TMP_NAME);
        let mut out = BufWriter::new(File::create(&tmp)?);
        let mut count = 0usize;
        let mut line = Vec::new();
        for rec in records {
            line.clear();
            encode_line(&mut line, &rec);
            out.write_all(&line)?;
            if let RecordOut::Msg { id, .. } | RecordOut::HighWater { id } = rec {
                self.max_logged_id = self.max_logged_id.max(id);
            }
            count += 1;
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        let path = self.dir.join(LOG_NAME);
        fs::rename(&tmp, &path)?;
        sync_dir(&self.dir)?;
        self.file = OpenOptions::new().read(true).append(true).open(&path)?;
        self.len = self.file.metadata()?.len();
        debug!("chat log: compacted {} records into {count}", self.records);
        self.records = count;
        self.broken = false;
        Ok(())
    }
}

/// Appends `rec` as one JSON line.
fn encode_line(buf: &mut Vec<u8>, rec: &RecordOut<'_>) {
    // Cannot fail: the record holds only strings and integers, and a Vec does not refuse writes.
    if let Err(e) = serde_json::to_writer(&mut *buf, rec) {
        log::error!("chat log: cannot encode a record: {e}");
        return;
    }
    buf.push(b'\n');
}

/// Makes a new or renamed directory entry durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    pub(crate) struct TempDir(pub PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> TempDir {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("wschat-test-{tag}-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("temp dir");
            TempDir(dir)
        }

        pub(crate) fn log_path(&self) -> PathBuf {
            self.0.join(LOG_NAME)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

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
        let (latest, more) = h.page(None, None, 10);
        assert_eq!(ids(&latest), all[90..]);
        assert!(more);
        // Backwards with `before` = the oldest id seen so far.
        let mut seen = ids(&latest);
        let mut before = seen[0];
        loop {
            let (page, more) = h.page(Some(before), None, 7);
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
            let (page, more) = h.page(None, Some(after), 9);
            seen.extend(ids(&page));
            if !more {
                break;
            }
            after = *seen.last().unwrap(); // a page with `more` is not empty
        }
        assert_eq!(seen, all);
        // Both bounds: the newest of the range; empty and inverted ranges.
        let (page, more) = h.page(Some(31), Some(20), 2);
        assert_eq!(ids(&page), [27, 30]);
        assert!(more);
        assert!(h.page(Some(5), Some(100), 10).0.is_empty());
        assert!(h.page(None, Some(300), 10).0.is_empty());
        assert!(h.page(None, None, 0).0.is_empty());
    }

    #[test]
    fn log_round_trip_and_torn_tail() {
        let dir = TempDir::new("log");
        {
            let (mut log, recs) = Log::open(&dir.0, Fsync::Batch).unwrap();
            assert!(recs.is_empty());
            log.append(&RecordOut::Msg {
                id: 1,
                ts: 5,
                room: "dev",
                from: "a",
                text: "line\nbreak \"quoted\"",
            });
            log.append(&RecordOut::HighWater { id: 4 });
            log.flush().unwrap();
        }
        // A crash in the middle of the next write.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.log_path())
            .unwrap();
        f.write_all(br#"{"k":"m","id":5,"ts":9,"ro"#).unwrap();
        drop(f);
        let (log, recs) = Log::open(&dir.0, Fsync::Never).unwrap();
        assert_eq!(
            recs,
            [
                RecordIn::Msg {
                    id: 1,
                    ts: 5,
                    room: "dev".into(),
                    from: "a".into(),
                    text: "line\nbreak \"quoted\"".into()
                },
                RecordIn::HighWater { id: 4 }
            ]
        );
        assert_eq!(log.max_logged_id(), 4);
        let text = fs::read_to_string(dir.log_path()).unwrap();
        assert!(text.ends_with("\"id\":4}\n"), "torn tail cut: {text:?}");
    }

    #[test]
    fn fsync_policy_parses() {
        assert_eq!("always".parse(), Ok(Fsync::Always));
        assert_eq!("batch".parse(), Ok(Fsync::Batch));
        assert_eq!("never".parse(), Ok(Fsync::Never));
        assert!("sometimes".parse::<Fsync>().is_err());
        assert_eq!(Fsync::default(), Fsync::Batch);
    }

    #[test]
    fn unreadable_lines_are_skipped() {
        let dir = TempDir::new("garbage");
        fs::write(
            dir.log_path(),
            "{\"k\":\"hw\",\"id\":3}\nnot json\n{\"k\":\"zz\"}\n{\"k\":\"hw\",\"id\":8}\n",
        )
        .unwrap();
        let (log, recs) = Log::open(&dir.0, Fsync::Never).unwrap();
        assert_eq!(
            recs,
            [RecordIn::HighWater { id: 3 }, RecordIn::HighWater { id: 8 }]
        );
        assert_eq!(log.records, 4);
    }
}
