//! Local locks: one lock file per pool machine, `flock`ed exclusively by
//! the run that uses it, for the whole run. The kernel drops the lock when
//! the process dies, so a killed controller never leaves a machine locked.
//!
//! The lock is keyed by the machine's agent **address**, not its pool file
//! name: two pool directories that name one machine differently still
//! share its lock. Lock files live in [`default_dir`] (`/run/lnst/locks`,
//! or `$LNST_LOCK_DIR`); the holder writes who it is into the file, so a
//! waiting run can say what it waits for, and removes it when it is done
//! (while still holding the lock; a run that locks a file after that
//! finds the path gone or naming another file, and starts over).
//!
//! A run takes the locks of its whole set at once ([`LocalLocks::try_lock_all`]):
//! all or none, so two runs each holding half of what the other needs can
//! never deadlock.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Where lock files live unless `$LNST_LOCK_DIR` says otherwise.
pub const LOCK_DIR: &str = "/run/lnst/locks";

/// The lock directory: `$LNST_LOCK_DIR`, else [`LOCK_DIR`].
pub fn default_dir() -> PathBuf {
    std::env::var_os("LNST_LOCK_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(LOCK_DIR))
}

/// The lock files of one directory.
#[derive(Debug, Clone)]
pub struct LocalLocks {
    dir: PathBuf,
}

/// A machine is locked by another run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Busy {
    /// The machine's id in our pool.
    pub machine: String,
    /// Who holds it, as the holder wrote it (`pid 123, x.rhai, since ...`).
    pub holder: String,
}

/// Locks held; each is released when this is dropped (or the process dies).
#[derive(Debug)]
pub struct Held {
    files: Vec<(String, File, PathBuf)>,
}

impl Held {
    /// The machine ids held.
    pub fn machines(&self) -> Vec<&str> {
        self.files.iter().map(|(m, _, _)| m.as_str()).collect()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        for (_, f, path) in &mut self.files {
            // Removed while still locked: a run that opened the old file
            // and then gets its lock sees that the path no longer names
            // it, and opens the path afresh (see `try_lock_all`).
            let _ = std::fs::remove_file(path);
            let _ = f.unlock();
        }
    }
}

impl LocalLocks {
    /// Opens (creating) `dir`, mode 1777 like /tmp so every user's runs
    /// can lock there.
    pub fn open(dir: &Path) -> std::io::Result<LocalLocks> {
        use std::os::unix::fs::PermissionsExt;
        if !dir.is_dir() {
            std::fs::create_dir_all(dir)?;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777));
        }
        Ok(LocalLocks {
            dir: dir.to_path_buf(),
        })
    }

    /// The lock file of the machine at `address`.
    pub fn path_for(&self, address: &str) -> PathBuf {
        self.dir.join(lock_name(address))
    }

    fn open_file(&self, address: &str) -> std::io::Result<File> {
        use std::os::unix::fs::OpenOptionsExt;
        let p = self.path_for(address);
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o666)
            .open(&p)
        {
            Ok(f) => Ok(f),
            // Another user's file: flock works on a read-only descriptor.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => File::open(&p),
            Err(e) => Err(e),
        }
    }

    /// Whether nobody holds the machine at `address` right now (a probe:
    /// it may be taken the next moment).
    pub fn is_free(&self, address: &str) -> bool {
        // No file: nobody holds it (and probing creates none).
        match File::open(self.path_for(address)) {
            Ok(f) => match f.try_lock() {
                Ok(()) => {
                    let _ = f.unlock();
                    true
                }
                Err(_) => false,
            },
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        }
    }

    /// Who holds the machine at `address`, as written in its lock file.
    pub fn holder(&self, address: &str) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(self.path_for(address)) {
            let _ = f.read_to_string(&mut s);
        }
        let s = s.trim();
        if s.is_empty() {
            "another run".to_string()
        } else {
            s.to_string()
        }
    }

    /// Locks every `(machine id, address)` or none: on the first busy one,
    /// the locks taken so far are released and it is returned. `who` is
    /// written into each lock file for waiting runs to show.
    pub fn try_lock_all(&self, machines: &[(String, String)], who: &str) -> Result<Held, Busy> {
        let mut held = Held { files: Vec::new() };
        for (id, addr) in machines {
            let busy = |holder: String| Busy {
                machine: id.clone(),
                holder,
            };
            let f = self
                .open_file(addr)
                .map_err(|e| busy(format!("cannot open its lock file: {e}")))?;
            match f.try_lock() {
                Ok(()) if !same_file(&f, &self.path_for(addr)) => {
                    // Its holder removed it between our open and our lock:
                    // the lock is on a file nobody else will open.
                    return Err(busy(
                        "its previous holder just released it; retrying".into(),
                    ));
                }
                Ok(()) => {
                    let mut f = f;
                    let _ = f.set_len(0);
                    let _ = f.rewind();
                    let _ = writeln!(f, "{who}");
                    held.files.push((id.clone(), f, self.path_for(addr)));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(busy(self.holder(addr)));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(busy(format!("cannot lock: {e}")));
                }
            }
        }
        Ok(held)
    }
}

/// Whether `path` still names the open file `f` (same inode).
fn same_file(f: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// `unix:/tmp/a.sock` → `unix__tmp_a.sock-<hash>.lock`: readable, and
/// distinct for distinct addresses (the hash of the exact string).
fn lock_name(address: &str) -> String {
    let clean: String = address
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    format!("{clean}-{:016x}.lock", fnv1a(address.as_bytes()))
}

fn fnv1a(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for x in b {
        h ^= u64::from(*x);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> PathBuf {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let d = std::env::temp_dir().join(format!(
            "lnst-locks-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn set(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn names_are_distinct_and_readable() {
        assert_ne!(lock_name("a:b"), lock_name("a_b"));
        assert!(lock_name("unix:/tmp/a.sock").starts_with("unix__tmp_a.sock-"));
        assert!(lock_name(&"x".repeat(500)).len() < 120);
    }

    #[test]
    fn all_or_none_and_released_on_drop() {
        let d = tmp();
        let l = LocalLocks::open(&d).unwrap();
        let a = l.try_lock_all(&set(&[("m1", "unix:/a")]), "run A").unwrap();
        assert!(!l.is_free("unix:/a"));
        assert!(l.is_free("unix:/b"));
        // B wants m2 and m1: gets neither, and hears who holds m1.
        let busy = l
            .try_lock_all(&set(&[("m2", "unix:/b"), ("m1", "unix:/a")]), "run B")
            .unwrap_err();
        assert_eq!(busy.machine, "m1");
        assert_eq!(busy.holder, "run A");
        assert!(l.is_free("unix:/b"), "the partial lock on m2 was released");
        drop(a);
        assert!(l.is_free("unix:/a"));
        let b = l
            .try_lock_all(&set(&[("m2", "unix:/b"), ("m1", "unix:/a")]), "run B")
            .unwrap();
        assert_eq!(b.machines(), vec!["m2", "m1"]);
        drop(b);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn released_files_are_removed_and_a_stale_descriptor_is_not_a_lock() {
        let d = tmp();
        let l = LocalLocks::open(&d).unwrap();
        let a = l.try_lock_all(&set(&[("m", "unix:/m")]), "A").unwrap();
        let path = l.path_for("unix:/m");
        assert!(path.exists());
        // B opened the file while A held it...
        let stale = File::open(&path).unwrap();
        drop(a);
        assert!(!path.exists(), "A removed its lock file");
        // ...its lock on that descriptor would be on a dead file: refused.
        stale.try_lock().unwrap();
        assert!(!same_file(&stale, &path));
        // A fresh open works and excludes others.
        let b = l.try_lock_all(&set(&[("m", "unix:/m")]), "B").unwrap();
        assert!(l.try_lock_all(&set(&[("m", "unix:/m")]), "C").is_err());
        drop(b);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_second_open_in_one_process_conflicts() {
        // flock belongs to the open file description: two runs of one
        // suite (threads of one process) exclude each other too.
        let d = tmp();
        let l1 = LocalLocks::open(&d).unwrap();
        let l2 = LocalLocks::open(&d).unwrap();
        let _a = l1
            .try_lock_all(&set(&[("m", "10.0.0.1:9999")]), "x")
            .unwrap();
        assert!(l2
            .try_lock_all(&set(&[("m", "10.0.0.1:9999")]), "y")
            .is_err());
        let _ = std::fs::remove_dir_all(&d);
    }
}
