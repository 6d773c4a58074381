//! The chat's persistence: the append-only log on disk that brings the rooms' history (and the
//! id counter) back after a restart, its replay into a [`Chat`], and its compaction.
//!
//! # The log
//!
//! `chat.log` in the data directory, one JSON object per line, tagged by `k`:
//!
//! - `{"k":"m","id":7,"ts":1700000000000,"room":"dev","from":"alice","text":"hi"}` a room message;
//! - `{"k":"hw","id":9}` id high-water mark: every id up to 9 was handed out (DMs take ids
//!   too but are not logged, so without this a restart could hand out a DM's id again);
//! - `{"k":"drop","room":"dev"}` the room was retired (its history forgotten). Written by
//!   older versions, which retired a quiet room to make place for a new one; still obeyed.
//!
//! Lines are appended by [`Log::flush`], once per dispatcher batch, with one `write` for the
//! whole batch. A crash can leave the last line torn (no final newline); [`Log::open`] drops
//! it. That loses nothing anyone saw: the dispatcher writes to sockets only after `flush`
//! returned. When the file holds more than twice the records memory keeps (plus a floor),
//! [`Log::rewrite`] replaces it with a compacted copy: temp file, fsync, rename, fsync dir.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log::{debug, warn};
use serde::{Deserialize, Serialize};

use super::Chat;
use super::history::Entry;
use super::names::name_key;
use super::rooms::Room;
use crate::sys;

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

/// Held locked (`flock`) by the server that owns the directory: two servers on one data dir
/// would interleave ids and lose messages at replay, so the second refuses to start.
const LOCK_NAME: &str = "wschat.lock";

/// The log holds chat history, which is private to the chat's users: only the server's own
/// user may read it (and its directory, when wschat creates it).
const FILE_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;

/// After a failed write (a full disk), the next attempt waits this long, doubling up to
/// `RETRY_MAX`: rewriting the whole log on every batch of a full disk only burns the disk and
/// the CPU, and space comes back in seconds to minutes (an operator deletes something).
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

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
    /// The room was retired (older versions only).
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
    /// While broken: no disk I/O before this instant (back-off), and the current delay.
    retry_at: Option<Instant>,
    retry_delay: Duration,
    /// The directory's lock, held as long as the log is open.
    _lock: File,
}

impl Log {
    /// Opens (creating if needed) the log in `dir` and reads it back. Returns the log and its
    /// records in file order. Unreadable complete lines are skipped with a warning; a torn last
    /// line is cut off the file.
    pub(crate) fn open(dir: &Path, fsync: Fsync) -> io::Result<(Log, Vec<RecordIn>)> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)?;
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(dir.join(LOCK_NAME))?;
        if let Err(e) = sys::try_lock_exclusive(&lock) {
            return Err(if e.kind() == io::ErrorKind::WouldBlock {
                io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "{} is in use by another wschat server (it holds {LOCK_NAME}); two servers on one data dir would interleave message ids",
                        dir.display()
                    ),
                )
            } else {
                e
            });
        }
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
            .mode(FILE_MODE)
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
            retry_at: None,
            retry_delay: RETRY_FIRST,
            _lock: lock,
        };
        Ok((log, records))
    }

    /// Adds a record to the current batch (memory only until [`Log::flush`]).
    pub(crate) fn append(&mut self, rec: &RecordOut<'_>) {
        let (RecordOut::Msg { id, .. } | RecordOut::HighWater { id }) = rec;
        self.max_logged_id = self.max_logged_id.max(*id);
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

    /// Forgets the batch (it is in memory, and the next rewrite includes it).
    fn drop_pending(&mut self) {
        self.pending.clear();
        self.pending_records = 0;
    }

    /// The highest id the log (file or batch) knows was handed out.
    pub(crate) fn max_logged_id(&self) -> u64 {
        self.max_logged_id
    }

    /// Whether the next flush should be a [`Log::rewrite`] instead: the file (plus the batch)
    /// holds more than twice the `kept` records memory holds, or a write failed earlier.
    /// While a failed write's back-off runs: when the next attempt may touch the disk.
    pub(crate) fn retry_at(&self) -> Option<Instant> {
        self.retry_at.filter(|_| self.broken)
    }

    /// Whether the back-off after a failure still forbids disk I/O now.
    pub(crate) fn backing_off(&self) -> bool {
        self.retry_at().is_some_and(|t| Instant::now() < t)
    }

    /// Records a failure: the next attempt waits, twice as long as the last.
    fn failed(&mut self) {
        self.broken = true;
        self.retry_at = Some(Instant::now() + self.retry_delay);
        self.retry_delay = (self.retry_delay * 2).min(RETRY_MAX);
    }

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
            debug!("chat log: write failed ({e}); will rewrite it from memory");
            self.failed();
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
        let result = self.write_copy(&tmp, records);
        if result.is_err() {
            // A full disk leaves a partial copy: remove it, it would only hold the space.
            let _ = fs::remove_file(&tmp);
            self.failed();
        } else {
            self.retry_at = None;
            self.retry_delay = RETRY_FIRST;
        }
        result
    }

    fn write_copy<'a>(
        &mut self,
        tmp: &Path,
        records: impl Iterator<Item = RecordOut<'a>>,
    ) -> io::Result<()> {
        let mut out = BufWriter::new(
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(FILE_MODE)
                .open(tmp)?,
        );
        let mut count = 0usize;
        let mut line = Vec::new();
        for rec in records {
            line.clear();
            encode_line(&mut line, &rec);
            out.write_all(&line)?;
            let (RecordOut::Msg { id, .. } | RecordOut::HighWater { id }) = rec;
            self.max_logged_id = self.max_logged_id.max(id);
            count += 1;
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        let path = self.dir.join(LOG_NAME);
        fs::rename(tmp, &path)?;
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

impl Chat {
    pub(super) fn replay(&mut self, rec: RecordIn) {
        match rec {
            RecordIn::Msg {
                id,
                ts,
                room,
                from,
                text,
            } => {
                let key = name_key(&room);
                if !self.rooms.contains_key(&key) {
                    self.create_room(&key, &room);
                }
                self.last_id = self.last_id.max(id);
                if let Some(r) = self.rooms.get_mut(&key) {
                    // Ids grow through the file; a duplicate or older one is damage, not news.
                    if id > r.history.last_id() {
                        let entry = Entry {
                            id,
                            ts,
                            from: from.into(),
                            text: text.into(),
                        };
                        r.history.push(
                            entry,
                            self.cfg.history_per_room,
                            self.cfg.history_bytes_per_room,
                        );
                    }
                }
            }
            RecordIn::HighWater { id } => self.last_id = self.last_id.max(id),
            RecordIn::Drop { room } => {
                self.rooms.remove(&name_key(&room));
            }
        }
    }

    /// The body of [`Chat::commit`].
    pub(super) fn commit_log(&mut self) -> io::Result<()> {
        let Some(log) = &mut self.log else {
            return Ok(());
        };
        if log.backing_off() {
            // Memory holds everything; the rewrite after the back-off will write it.
            log.drop_pending();
            return Err(io::Error::other(
                "the chat log is waiting to retry after a failed write",
            ));
        }
        if self.last_id > log.max_logged_id() {
            log.append(&RecordOut::HighWater { id: self.last_id });
        }
        if self.log_wants_rewrite() {
            self.compact()
        } else {
            log_flush(&mut self.log)
        }
    }

    pub(super) fn log_wants_rewrite(&self) -> bool {
        let Some(log) = &self.log else {
            return false;
        };
        // +1 for the high-water mark a compacted log ends with.
        let kept = self.rooms.values().map(|r| r.history.len()).sum::<usize>() + 1;
        log.wants_rewrite(kept)
    }

    /// Rewrites the log from memory: each room's kept messages (rooms ordered by their last
    /// message) and a high-water mark.
    pub(super) fn compact(&mut self) -> io::Result<()> {
        let Some(log) = &mut self.log else {
            return Ok(());
        };
        let mut rooms: Vec<&Room> = self
            .rooms
            .values()
            .filter(|r| !r.history.is_empty())
            .collect();
        rooms.sort_unstable_by_key(|r| r.history.last_id());
        let messages = rooms.into_iter().flat_map(|r| {
            r.history.iter().map(move |e| RecordOut::Msg {
                id: e.id,
                ts: e.ts,
                room: &r.name,
                from: &e.from,
                text: &e.text,
            })
        });
        let records = messages.chain(std::iter::once(RecordOut::HighWater { id: self.last_id }));
        log.rewrite(records)
    }
}

fn log_flush(log: &mut Option<Log>) -> io::Result<()> {
    match log {
        Some(log) => log.flush(),
        None => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::chat::test_harness::{H, well_formed};
    use crate::chat::{ChatConfig, ConnId, parse_input};
    use crate::test_rng::Rng;
    use serde_json::{Value, json};
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

    // Persistence.
    fn persistent(dir: &TempDir) -> ChatConfig {
        ChatConfig {
            data_dir: Some(dir.0.clone()),
            fsync: Fsync::Batch,
            ..ChatConfig::default()
        }
    }

    fn history_of(h: &mut H, conn: ConnId, room: &str) -> Value {
        let req = json!({"type":"history","room":room,"limit":200});
        H::one(h.send_json(conn, req), &[conn])["messages"].clone()
    }

    #[test]
    fn history_survives_a_restart_and_ids_continue() {
        let dir = TempDir::new("restart");
        let (before_dev, before_ops, last) = {
            let mut h = H::with(persistent(&dir));
            h.connect_with(1, Some("alice"), Some("dev"), false);
            h.send(1, r#"{"type":"join","room":"Ops"}"#);
            for i in 0..20 {
                h.send_json(
                    1,
                    json!({"type":"say","room":"dev","text":format!("d{i} \"q\"\n")}),
                );
                h.send_json(1, json!({"type":"say","room":"ops","text":format!("o{i}")}));
                if i % 7 == 0 {
                    h.chat.commit().expect("commit");
                }
            }
            h.chat.commit().expect("commit");
            (
                history_of(&mut h, 1, "dev"),
                history_of(&mut h, 1, "ops"),
                h.chat.last_id,
            )
        };
        let mut h = H::with(persistent(&dir));
        assert_eq!(h.chat.room_count(), 2);
        h.connect(1);
        assert_eq!(history_of(&mut h, 1, "dev"), before_dev);
        assert_eq!(history_of(&mut h, 1, "ops"), before_ops);
        let got = h.send(1, r#"{"type":"join","room":"OPS"}"#);
        assert_eq!(H::one(got, &[1])["room"], "Ops");
        let v = H::one(
            h.send(1, r#"{"type":"say","room":"ops","text":"after"}"#),
            &[1],
        );
        assert_eq!(v["id"], last + 1);
    }

    #[test]
    fn dm_ids_are_not_reused_after_a_restart() {
        let dir = TempDir::new("dm");
        let last_dm = {
            let mut h = H::with(persistent(&dir));
            h.connect_with(1, Some("a"), None, false);
            h.connect_with(2, Some("b"), None, false);
            h.send(1, "room message");
            let mut last = 0;
            for _ in 0..5 {
                let got = h.send(1, r#"{"type":"dm","to":"b","text":"x"}"#);
                last = got[0].1["id"].as_u64().unwrap_or(0);
            }
            h.chat.commit().expect("commit");
            last
        };
        // Also with the strictest policy.
        let dir2 = TempDir::new("dm-always");
        {
            let mut h = H::with(ChatConfig {
                fsync: Fsync::Always,
                ..persistent(&dir2)
            });
            h.connect(1);
            h.send(1, r#"{"type":"dm","to":"guest-1","text":"x"}"#);
            h.chat.commit().expect("commit");
        }
        let mut h = H::with(persistent(&dir2));
        assert_eq!(
            h.chat.say_as("lobby", "bot", "hi", h.now, &mut h.out),
            Ok(2)
        );
        assert_eq!(last_dm, 6);
        let mut h = H::with(persistent(&dir));
        let id = h.chat.say_as("lobby", "bot", "hi", h.now, &mut h.out);
        assert_eq!(id, Ok(last_dm + 1));
    }

    #[test]
    fn a_torn_last_line_is_dropped() {
        let dir = TempDir::new("torn");
        let before = {
            let mut h = H::with(persistent(&dir));
            h.connect(1);
            for i in 0..5 {
                h.send(1, &format!("line {i}"));
            }
            h.chat.commit().expect("commit");
            // A batch the crash interrupted: written in part, never delivered.
            h.send(1, "lost");
            let mut torn = h
                .chat
                .log
                .as_ref()
                .map(|l| l.pending_for_test())
                .unwrap_or_default();
            torn.truncate(torn.len() / 2);
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(dir.log_path())
                .unwrap();
            std::io::Write::write_all(&mut f, &torn).unwrap();
            history_of(&mut h, 1, "lobby")
        };
        let mut h = H::with(persistent(&dir));
        h.connect(1);
        let after = history_of(&mut h, 1, "lobby");
        assert_eq!(after.as_array().map(Vec::len), Some(5));
        assert_eq!(
            after,
            before.as_array().map(|a| json!(a[..5])).unwrap_or_default()
        );
        let text = std::fs::read_to_string(dir.log_path()).unwrap();
        assert!(text.ends_with('\n') && !text.contains("lost"), "{text}");
        // The lost message's id was never seen by anyone, so reusing it is fine.
        let v = H::one(h.send(1, "next"), &[1]);
        assert_eq!(v["id"], 6);
    }

    #[test]
    fn compaction_keeps_history_identical_and_ids_continue() {
        let dir = TempDir::new("compact");
        let cfg = ChatConfig {
            history_per_room: 10,
            ..persistent(&dir)
        };
        let (before, last) = {
            let mut h = H::with(cfg.clone());
            h.connect_with(1, Some("a"), None, false);
            h.connect_with(2, Some("b"), None, false);
            for i in 0..1000 {
                if i % 2 == 0 {
                    h.send(1, &format!("m{i}"));
                } else {
                    h.send(1, r#"{"type":"dm","to":"b","text":"x"}"#);
                }
                if i % 10 == 0 {
                    h.chat.commit().expect("commit");
                }
            }
            h.chat.commit().expect("commit");
            (history_of(&mut h, 1, "lobby"), h.chat.last_id)
        };
        let lines = std::fs::read_to_string(dir.log_path())
            .unwrap()
            .lines()
            .count();
        // 500 room messages and 100 high-water marks were written; compaction kept it small.
        assert!(lines <= COMPACT_LIMIT_FOR_TEST, "{lines} lines");
        assert_eq!(before.as_array().map(Vec::len), Some(10));
        let mut h = H::with(cfg);
        h.connect(1);
        assert_eq!(history_of(&mut h, 1, "lobby"), before);
        let v = H::one(h.send(1, "next"), &[1]);
        assert_eq!(v["id"], last + 1);
    }

    #[test]
    fn fuzz_replay_matches_memory() {
        let dir = TempDir::new("fuzz-replay");
        let cfg = ChatConfig {
            max_rooms: 4,
            max_rooms_per_client: 3,
            history_per_room: 7,
            fsync: Fsync::Never,
            ..persistent(&dir)
        };
        let mut rng = Rng(42);
        let mut h = H::with(cfg.clone());
        for c in 1..=4 {
            h.connect(c);
        }
        let mut compactions = 0;
        for round in 0..3000 {
            let conn = 1 + rng.next() % 4;
            // Half plain text, so that enough messages are said to force compactions.
            let text = if round % 2 == 0 {
                format!("p{round}")
            } else {
                well_formed(&mut rng)
            };
            let input = parse_input(&text);
            h.input(conn, input);
            if round % 5 == 0 {
                let records = h.chat.log.as_ref().map_or(0, |l| l.records);
                h.chat.commit().expect("commit");
                if h.chat.log.as_ref().map_or(0, |l| l.records) < records {
                    compactions += 1;
                }
            }
        }
        h.chat.commit().expect("commit");
        assert!(compactions > 0, "the test should exercise compaction");
        let dump = |chat: &Chat| {
            let mut rooms: Vec<(String, Vec<Entry>)> = chat
                .rooms
                .iter()
                .filter(|(_, r)| !r.history.is_empty())
                .map(|(k, r)| {
                    (
                        format!("{k}={}", r.name),
                        r.history.iter().cloned().collect(),
                    )
                })
                .collect();
            rooms.sort_by(|a, b| a.0.cmp(&b.0));
            rooms
        };
        let before = dump(&h.chat);
        assert!(before.len() > 1, "the test should exercise several rooms");
        let last = h.chat.last_id;
        drop(h); // a restart: the directory's lock goes with the first server
        let reopened = Chat::open(cfg).expect("reopen");
        assert_eq!(dump(&reopened), before);
        assert_eq!(reopened.last_id, last);
    }

    #[test]
    fn a_failed_write_is_repaired_by_a_rewrite_from_memory() {
        let dir = TempDir::new("repair");
        let mut h = H::with(persistent(&dir));
        h.connect(1);
        h.send(1, "one");
        h.chat.commit().expect("commit");
        // The file lost everything (say a failed write was cut back too far), and the log knows.
        std::fs::write(dir.log_path(), "").unwrap();
        if let Some(log) = h.chat.log.as_mut() {
            log.break_for_test();
        }
        h.send(1, "two");
        h.send(1, r#"{"type":"dm","to":"guest-1","text":"three"}"#);
        h.chat.commit().expect("commit");
        let before = history_of(&mut h, 1, "lobby");
        drop(h); // a restart: the directory's lock goes with the first server
        let mut h2 = H::with(persistent(&dir));
        h2.connect(1);
        assert_eq!(history_of(&mut h2, 1, "lobby"), before);
        assert_eq!(before.as_array().map(Vec::len), Some(2));
        assert_eq!(h2.chat.last_id, 3);
    }

    /// The most lines the log may have right after a commit with 10 messages kept.
    const COMPACT_LIMIT_FOR_TEST: usize = 256 + 16;

    #[test]
    fn without_a_data_dir_nothing_touches_disk() {
        let mut h = H::new();
        h.connect(1);
        h.send(1, "hi");
        assert!(h.chat.log.is_none());
        assert!(h.chat.commit().is_ok());
    }
}
