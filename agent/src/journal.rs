//! The undo journal: an append-only file in the state dir with one line per
//! change the agent made, each saying how to undo it.
//!
//! Every domain module calls [`Journal::record`] *before* it applies a
//! change; the line is written and `fsync`ed first, so whatever happens
//! next (the change fails, the agent is killed) the change is never applied
//! without its undo on disk. [`Journal::replay`] runs the undos in reverse
//! order at session end, on controller loss, on SIGTERM/SIGINT and at
//! start-up (entries left by an agent that died); an undo that fails is
//! reported and the replay goes on; the entries undone are then removed,
//! and an entry whose undo failed stays in the journal, to be retried at the
//! next replay (session end or the next start) and reported again until it
//! succeeds: a change is never forgotten because its undo failed once.
//!
//! Line format: `CRC32HEX JSON\n`. JSON keeps the file readable by a person
//! cleaning up by hand; the checksum and the newline tell a torn last line
//! (crash in mid-write) from a whole one, and torn or corrupt lines are
//! skipped with a warning. The state dir is `flock`ed so two agents cannot
//! share one.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use lnst_common::WireError;
use nix::fcntl::{Flock, FlockArg};

use crate::net::{NetUndo, Recorder};
use crate::undo::{UndoCtx, UndoEntry};

/// Journal file name inside the state dir.
pub const JOURNAL_FILE: &str = "journal";
/// Lock file name inside the state dir.
pub const LOCK_FILE: &str = "lock";

/// Why the journal could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("state dir {dir} is in use by another lnst-agent{holder}; give each agent its own --state-dir")]
    Locked { dir: PathBuf, holder: String },
    #[error("cannot use state dir {dir}: {error}")]
    Io { dir: PathBuf, error: std::io::Error },
}

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replay {
    /// Entries whose undo was attempted (successfully or not).
    pub entries: usize,
    /// One message per failed undo, in replay order.
    pub errors: Vec<String>,
    /// Entries whose undo failed, kept in the journal for the next replay.
    pub kept: usize,
}

/// The journal of one state dir. Holds the dir's lock for its lifetime.
pub struct Journal {
    dir: PathBuf,
    path: PathBuf,
    /// The append handle. A std mutex: it is held only around one
    /// write + fsync (or the tail rewrite after a replay), never across an
    /// `.await`, and `record` is a plain function callable from anywhere.
    file: Mutex<File>,
    /// Serialises replays (session teardown and shutdown may race).
    replaying: tokio::sync::Mutex<()>,
    /// The `flock` on `DIR/lock`; released when the journal is dropped.
    _lock: Flock<File>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish()
    }
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir` and locks the dir.
    /// Existing entries stay: call [`Journal::replay`] to undo them.
    pub fn open(dir: &Path) -> Result<Journal, JournalError> {
        let io = |source| JournalError::Io {
            dir: dir.to_path_buf(),
            error: source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io)?;
        let mut lock = match Flock::lock(lock_file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((mut f, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut s = String::new();
                let _ = f.read_to_string(&mut s);
                let holder = match s.trim() {
                    "" => String::new(),
                    pid => format!(" (pid {pid})"),
                };
                return Err(JournalError::Locked {
                    dir: dir.to_path_buf(),
                    holder,
                });
            }
            Err((_, e)) => return Err(io(std::io::Error::from(e))),
        };
        lock.set_len(0).map_err(io)?;
        lock.write_all(format!("{}\n", std::process::id()).as_bytes())
            .map_err(io)?;
        let path = dir.join(JOURNAL_FILE);
        let file = open_append(&path).map_err(io)?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            path,
            file: Mutex::new(file),
            replaying: tokio::sync::Mutex::new(()),
            _lock: lock,
        })
    }

    /// The state dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `entry` and `fsync`s it. Call this *before* applying the
    /// change the entry undoes; if it fails, do not apply the change.
    /// Blocks for one fsync (typically well under a millisecond on tmpfs,
    /// a few ms on disk).
    pub fn record(&self, entry: UndoEntry) -> Result<(), WireError> {
        self.append(entry, true)
    }

    /// Appends `entry` without `fsync`: for job starts, which must stay
    /// fast. A `kill -9` of the agent keeps the page cache, so the entry
    /// survives it; a machine crash loses it, and the job with it.
    pub fn record_unsynced(&self, entry: UndoEntry) -> Result<(), WireError> {
        self.append(entry, false)
    }

    fn append(&self, entry: UndoEntry, sync: bool) -> Result<(), WireError> {
        let line = encode_line(&entry)
            .map_err(|e| WireError::internal(format!("cannot encode undo entry: {e}")))?;
        let mut f = self
            .file
            .lock()
            .map_err(|_| WireError::internal("undo journal lock poisoned"))?;
        let write = |f: &mut File| {
            f.write_all(line.as_bytes())
                .and_then(|()| if sync { f.sync_data() } else { Ok(()) })
        };
        // An fsync may wait for the disk: off the worker. A page-cache
        // append (job starts) is too short to be worth the hand-off.
        if sync {
            crate::blocking::in_place(|| write(&mut f))
        } else {
            write(&mut f)
        }
        .map_err(|e| {
            WireError::os(format!(
                "cannot write undo journal {}: {e}",
                self.path.display()
            ))
        })?;
        tracing::debug!(entry = %entry.describe(), "journaled");
        Ok(())
    }

    /// The entries now in the journal, oldest first (torn or corrupt lines
    /// skipped with a warning).
    pub fn entries(&self) -> Result<Vec<UndoEntry>, WireError> {
        let f = self
            .file
            .lock()
            .map_err(|_| WireError::internal("undo journal lock poisoned"))?;
        let bytes =
            crate::blocking::in_place(|| read_all(&f)).map_err(|e| WireError::os(e.to_string()))?;
        Ok(parse(&bytes, &self.path))
    }

    /// Undoes every entry, newest first; an undo that fails is recorded in
    /// the result and the replay continues. The replayed entries are then
    /// removed from the file (entries recorded meanwhile are kept).
    pub async fn replay(&self, ctx: &UndoCtx) -> Replay {
        let _one_at_a_time = self.replaying.lock().await;
        let mut out = Replay::default();
        let snapshot = {
            let f = match self.file.lock() {
                Ok(f) => f,
                Err(_) => {
                    out.errors.push("undo journal lock poisoned".into());
                    return out;
                }
            };
            match crate::blocking::in_place(|| read_all(&f)) {
                Ok(b) => b,
                Err(e) => {
                    out.errors.push(format!(
                        "cannot read undo journal {}: {e}",
                        self.path.display()
                    ));
                    return out;
                }
            }
        };
        if snapshot.is_empty() {
            return out;
        }
        let entries = parse(&snapshot, &self.path);
        out.entries = entries.len();
        let failed = crate::undo::undo_all(ctx, &entries).await;
        let mut keep: Vec<usize> = failed.iter().map(|(i, _)| *i).collect();
        keep.sort_unstable();
        keep.dedup();
        let kept: Vec<&UndoEntry> = keep.iter().filter_map(|&i| entries.get(i)).collect();
        out.kept = kept.len();
        out.errors = failed.into_iter().map(|(_, e)| e).collect();
        if !kept.is_empty() {
            tracing::warn!(kept = kept.len(), path = %self.path.display(),
                "undo failed; the entries stay in the journal and are retried at the next replay");
        }
        let rewritten =
            crate::blocking::in_place(|| self.replace_prefix(snapshot.len() as u64, &kept));
        if let Err(e) = rewritten {
            out.errors.push(format!(
                "cannot truncate undo journal {}: {e}",
                self.path.display()
            ));
        }
        out
    }

    /// Replaces the first `len` bytes (the replayed entries) with `keep`
    /// (the entries whose undo failed), keeping any appended after the
    /// replay's snapshot. The new file is written beside the old one and
    /// renamed over it, so a crash leaves one or the other, whole.
    fn replace_prefix(&self, len: u64, keep: &[&UndoEntry]) -> std::io::Result<()> {
        let mut f = self
            .file
            .lock()
            .map_err(|_| std::io::Error::other("undo journal lock poisoned"))?;
        let now = f.metadata()?.len();
        if now <= len && keep.is_empty() {
            f.set_len(0)?;
            return f.sync_all();
        }
        let mut head = String::new();
        for e in keep {
            head.push_str(&encode_line(e).map_err(std::io::Error::other)?);
        }
        let mut tail = Vec::new();
        if now > len {
            let mut r = File::open(&self.path)?;
            r.seek(SeekFrom::Start(len))?;
            r.read_to_end(&mut tail)?;
        }
        let tmp = self.dir.join(format!("{JOURNAL_FILE}.tmp"));
        {
            let mut t = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            t.write_all(head.as_bytes())?;
            t.write_all(&tail)?;
            t.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        File::open(&self.dir)?.sync_all()?;
        *f = open_append(&self.path)?;
        Ok(())
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

fn read_all(f: &File) -> std::io::Result<Vec<u8>> {
    let mut r = f.try_clone()?;
    r.seek(SeekFrom::Start(0))?;
    let mut b = Vec::new();
    r.read_to_end(&mut b)?;
    Ok(b)
}

fn encode_line(entry: &UndoEntry) -> Result<String, serde_json::Error> {
    let json = serde_json::to_string(entry)?;
    Ok(format!("{:08x} {json}\n", crc32(json.as_bytes())))
}

/// Parses journal bytes; skips (and warns about) torn and corrupt lines.
fn parse(bytes: &[u8], path: &Path) -> Vec<UndoEntry> {
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut lineno = 0;
    while !rest.is_empty() {
        lineno += 1;
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            tracing::warn!(path = %path.display(), line = lineno, bytes = rest.len(),
                "skipping torn last journal entry (agent died while writing it)");
            break;
        };
        let line = &rest[..nl];
        rest = &rest[nl + 1..];
        match decode_line(line) {
            Some(e) => out.push(e),
            None => tracing::warn!(path = %path.display(), line = lineno,
                "skipping corrupt journal entry"),
        }
    }
    out
}

fn decode_line(line: &[u8]) -> Option<UndoEntry> {
    let line = std::str::from_utf8(line).ok()?;
    let (crc, json) = line.split_once(' ')?;
    let crc = u32::from_str_radix(crc, 16).ok()?;
    if crc != crc32(json.as_bytes()) {
        return None;
    }
    serde_json::from_str(json).ok()
}

/// CRC-32 (IEEE, as in zlib). Entries are small; a bitwise loop is enough.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The network layer records through the journal: each change is on disk
/// (fsynced) before it is applied.
impl Recorder for Journal {
    fn record(&self, undo: NetUndo) -> Result<(), WireError> {
        Journal::record(self, UndoEntry::Net(undo))
    }

    fn cancel(&self, undo: &NetUndo) {
        let Ok(line) = encode_line(&UndoEntry::Net(undo.clone())) else {
            return;
        };
        let Ok(f) = self.file.lock() else {
            return;
        };
        let r = crate::blocking::in_place(|| -> std::io::Result<bool> {
            let len = f.metadata()?.len();
            let n = line.len() as u64;
            if len < n {
                return Ok(false);
            }
            let mut tail = vec![0u8; line.len()];
            let mut r = f.try_clone()?;
            r.seek(SeekFrom::Start(len - n))?;
            r.read_exact(&mut tail)?;
            if tail != line.as_bytes() {
                return Ok(false);
            }
            f.set_len(len - n)?;
            f.sync_data()?;
            Ok(true)
        });
        match r {
            Ok(true) => {
                tracing::debug!(entry = %undo.describe(), "journal entry taken back: the change was not made")
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot take back a journal entry"),
        }
    }

    fn recorded(&self) -> Option<Vec<NetUndo>> {
        let entries = self.entries().ok()?;
        Some(
            entries
                .into_iter()
                .filter_map(|e| match e {
                    UndoEntry::Net(n) => Some(n),
                    _ => None,
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn tmp(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("lnst-journal-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        Dir(d)
    }
    fn test_entry(path: &Path, m: &str) -> UndoEntry {
        UndoEntry::Test {
            path: path.display().to_string(),
            marker: m.into(),
        }
    }

    #[test]
    fn crc_matches_zlib() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[tokio::test]
    async fn replays_in_reverse_and_empties() {
        let d = tmp("rev");
        let j = Journal::open(&d.0).unwrap();
        let marker = d.0.join("m");
        for m in ["a", "b", "c"] {
            j.record(test_entry(&marker, m)).unwrap();
        }
        assert_eq!(j.entries().unwrap().len(), 3);
        let r = j.replay(&UndoCtx::new("lnsttest-".into())).await;
        assert_eq!(
            r,
            Replay {
                entries: 3,
                errors: vec![],
                kept: 0,
            }
        );
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "c\nb\na\n");
        assert_eq!(std::fs::metadata(j.path()).unwrap().len(), 0);
        assert_eq!(j.replay(&UndoCtx::new("lnsttest-".into())).await.entries, 0);
    }

    #[tokio::test]
    async fn failing_undo_is_reported_kept_and_retried() {
        let d = tmp("fail");
        let j = Journal::open(&d.0).unwrap();
        let marker = d.0.join("m");
        let later = d.0.join("later");
        j.record(test_entry(&marker, "first")).unwrap();
        j.record(test_entry(&later.join("x"), "bad")).unwrap();
        j.record(test_entry(&marker, "third")).unwrap();
        let r = j.replay(&UndoCtx::new("lnsttest-".into())).await;
        assert_eq!(r.entries, 3);
        assert_eq!(r.kept, 1);
        assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
        assert!(r.errors[0].contains("later/x"), "{:?}", r.errors);
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "third\nfirst\n");
        // The failed entry stays, before anything recorded since.
        j.record(test_entry(&marker, "fourth")).unwrap();
        assert_eq!(
            j.entries().unwrap(),
            vec![
                test_entry(&later.join("x"), "bad"),
                test_entry(&marker, "fourth")
            ]
        );
        // Still failing: reported again, still kept.
        let r = j.replay(&UndoCtx::new("lnsttest-".into())).await;
        assert_eq!((r.entries, r.kept, r.errors.len()), (2, 1, 1));
        // Once it can succeed, it is undone and gone.
        std::fs::create_dir(&later).unwrap();
        let r = j.replay(&UndoCtx::new("lnsttest-".into())).await;
        assert_eq!((r.entries, r.kept, r.errors.len()), (1, 0, 0));
        assert_eq!(std::fs::read_to_string(later.join("x")).unwrap(), "bad\n");
        assert!(j.entries().unwrap().is_empty());
    }

    #[test]
    fn torn_and_corrupt_lines_skipped() {
        let d = tmp("torn");
        let marker = d.0.join("m");
        {
            let j = Journal::open(&d.0).unwrap();
            j.record(test_entry(&marker, "ok1")).unwrap();
            j.record(test_entry(&marker, "ok2")).unwrap();
        }
        let path = d.0.join(JOURNAL_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        // A corrupt whole line (bad checksum), then a torn last line.
        f.write_all(b"00000000 {\"Test\":{\"path\":\"x\",\"marker\":\"y\"}}\n")
            .unwrap();
        let good = encode_line(&test_entry(&marker, "torn")).unwrap();
        f.write_all(&good.as_bytes()[..good.len() / 2]).unwrap();
        drop(f);
        let j = Journal::open(&d.0).unwrap();
        let e = j.entries().unwrap();
        assert_eq!(
            e,
            vec![test_entry(&marker, "ok1"), test_entry(&marker, "ok2")]
        );
    }

    #[test]
    fn second_open_of_a_dir_is_refused() {
        let d = tmp("lock");
        let _j = Journal::open(&d.0).unwrap();
        let e = Journal::open(&d.0).unwrap_err().to_string();
        assert!(e.contains(&d.0.display().to_string()), "{e}");
        assert!(e.contains("--state-dir"), "{e}");
        assert!(e.contains(&std::process::id().to_string()), "{e}");
    }

    #[tokio::test]
    async fn entries_recorded_during_replay_are_kept() {
        let d = tmp("tail");
        let j = Journal::open(&d.0).unwrap();
        let marker = d.0.join("m");
        j.record(test_entry(&marker, "old")).unwrap();
        let snap = std::fs::metadata(j.path()).unwrap().len();
        j.record(test_entry(&marker, "new")).unwrap();
        j.replace_prefix(snap, &[]).unwrap();
        assert_eq!(j.entries().unwrap(), vec![test_entry(&marker, "new")]);
        j.record(test_entry(&marker, "newer")).unwrap();
        assert_eq!(j.entries().unwrap().len(), 2);
    }
}
