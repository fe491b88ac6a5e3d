//! Tracking every process a session's jobs start, however they fork or
//! detach (`setsid cmd &`, double forks): a cgroup v2 per session.
//!
//! A process group catches `cmd &` but not `setsid cmd &`; a cgroup
//! catches both, because every descendant of a member is a member. The
//! session's cgroup is created beside the agent's own (under the agent's
//! cgroup in the cgroup2 mount, `/sys/fs/cgroup` or, on a hybrid host,
//! `/sys/fs/cgroup/unified`) at its first job and journaled as
//! [`crate::undo::UndoEntry::KillCgroup`] first, so an agent restarted
//! after `kill -9` ends what the previous one left. At session end, after
//! the jobs' process groups had their TERM and grace, `cgroup.kill` ends
//! whatever is left (SIGKILL to every member, kernel 5.14+; older kernels:
//! SIGKILL to each pid in `cgroup.procs` until it is empty), then the
//! cgroup is removed.
//!
//! Joining: the job's shell is created in the cgroup
//! (`clone3(CLONE_INTO_CGROUP)`, [`super::clone3`]), so it is a member
//! before it runs anything. Where the kernel refuses that (before 5.7),
//! the shell moves itself in as its very first action (`{ echo 0
//! >CGROUP/cgroup.procs; } 2>/dev/null || exit 126; COMMAND`, [`wrap`]),
//! before it can fork anything, so no child escapes either; and the spawn
//! keeps `posix_spawn`'s fast path (a `pre_exec` hook would force
//! fork+exec and cost ~0.2 ms per job). Where no writable cgroup2 is found, the
//! agent is the child subreaper instead ([`subreaper`]): orphans of jobs
//! reparent to it and are ended at session end.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The cgroup2 directory the agent itself is in, if cgroup2 is mounted
/// and we can create cgroups there. Found once.
pub fn base() -> Option<&'static Path> {
    static BASE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    BASE.get_or_init(find_base).as_deref()
}

fn find_base() -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS ... - FSTYPE SOURCE SUPER"
    let mount = mountinfo.lines().find_map(|l| {
        let (a, b) = l.split_once(" - ")?;
        if b.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let mut f = a.split_whitespace();
        let root = f.nth(3)?;
        let point = f.next()?;
        Some((root.to_string(), PathBuf::from(point)))
    })?;
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = own.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    let rel = rel
        .strip_prefix(mount.0.trim_end_matches('/'))
        .unwrap_or(rel);
    let dir = mount.1.join(rel.trim_start_matches('/'));
    // A cgroup we can write: probe by creating and removing one.
    let probe = dir.join(format!("lnst-{}-probe", std::process::id()));
    match std::fs::create_dir(&probe) {
        Ok(()) => {
            let _ = std::fs::remove_dir(&probe);
            Some(dir)
        }
        Err(e) => {
            tracing::info!(dir = %dir.display(), error = %e,
                "no cgroup for jobs; detached job processes are tracked as orphans instead");
            None
        }
    }
}

/// The cgroup for `session`'s jobs: `BASE/lnst-<agent pid>-s<session>`.
pub fn session_path(base: &Path, session: u64) -> PathBuf {
    base.join(format!("lnst-{}-s{session}", std::process::id()))
}

/// Creates `path` (an existing one is fine: a reused name).
pub fn create(path: &Path) -> std::io::Result<()> {
    match std::fs::create_dir(path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        r => r,
    }
}

/// Opens the cgroup directory at `path` for `clone3(CLONE_INTO_CGROUP)`
/// (`O_PATH`: nothing is read through it).
pub fn open(path: &Path) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)?;
    Ok(f.into())
}

/// The shell line that moves the job's shell into `path` before it runs
/// `command`. If the cgroup is gone, the session that started the job has
/// ended (its request was abandoned while the job was being spawned in a
/// namespace): the job does not run, so it cannot outlive its session
/// unjournaled.
pub fn wrap(path: &Path, command: &str) -> String {
    let procs = path.join("cgroup.procs");
    format!(
        "{{ echo 0 >{}; }} 2>/dev/null || {{ echo 'lnst-agent: the session of this job has ended; not running it' >&2; exit 126; }}; {command}",
        shell_quote(&procs.to_string_lossy())
    )
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The pids in the cgroup (`cgroup.procs`); empty if it is gone.
pub fn members(path: &Path) -> Vec<i32> {
    let mut out: Vec<i32> = std::fs::read_to_string(path.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    // Jobs may make cgroups of their own below (`ip vrf exec` puts its
    // command in `<cgroup>/vrf/<name>`): their processes count too.
    for d in children(path) {
        out.extend(members(&d));
    }
    out
}

/// The child cgroups (subdirectories) of `path`.
fn children(path: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| e.path())
        .collect()
}

/// `rmdir` of `path` after its child cgroups, deepest first (a cgroup
/// with children cannot be removed).
fn remove_tree(path: &Path) -> std::io::Result<()> {
    for d in children(path) {
        remove_tree(&d)?;
    }
    std::fs::remove_dir(path)
}

/// Ends every process in the cgroup at `path` and removes it. A cgroup
/// already gone is fine. Runs blocking file I/O: call it from the
/// blocking pool ([`kill_and_remove`]).
fn kill_and_remove_blocking(path: &Path) -> Result<(), String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = members(path);
        if !left.is_empty() {
            tracing::debug!(cgroup = %path.display(), ?left, "killing what is left in the job cgroup");
            if std::fs::write(path.join("cgroup.kill"), "1").is_err() {
                // Before kernel 5.14: one by one (a process forking
                // meanwhile is caught on the next round).
                for pid in &left {
                    // SAFETY: kill has no memory-safety preconditions.
                    unsafe { libc::kill(*pid, libc::SIGKILL) };
                }
            }
        } else {
            // rmdir fails with EBUSY while exiting members are still
            // accounted, or when a job's shell joined just now: look again.
            match remove_tree(path) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) if std::time::Instant::now() > deadline => {
                    return Err(format!("cannot remove cgroup {}: {e}", path.display()))
                }
                Err(_) => {}
            }
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "processes {left:?} of cgroup {} still alive after SIGKILL",
                path.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// [`kill_and_remove_blocking`] on the blocking pool.
pub async fn kill_and_remove(path: PathBuf) -> Result<(), String> {
    tokio::task::spawn_blocking(move || kill_and_remove_blocking(&path))
        .await
        .map_err(|e| format!("cgroup task failed: {e}"))?
}

/// The fallback without cgroups: the agent as child subreaper
/// (`PR_SET_CHILD_SUBREAPER`), so a job's detached descendants reparent to
/// the agent when their parent exits, instead of to init, and can be found
/// (their parent is the agent) and ended at session end.
pub mod subreaper {
    use std::collections::HashSet;

    /// Makes this process the subreaper of its descendants.
    pub fn enable() -> bool {
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 }
    }

    /// Children of this process (from `/proc/*/stat`) not in `keep`.
    pub fn orphans(keep: &HashSet<i32>) -> Vec<i32> {
        let me = std::process::id() as i32;
        let mut out = Vec::new();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return out;
        };
        for e in dir.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(1))
                .and_then(|p| p.parse::<i32>().ok());
            if ppid == Some(me) && !keep.contains(&pid) {
                out.push(pid);
            }
        }
        out
    }

    /// SIGKILLs and reaps `pids` (children of ours that no `Child` owns).
    pub fn kill_and_reap(pids: &[i32]) {
        for &pid in pids {
            // SAFETY: kill and waitpid on our own children.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_quotes_the_path() {
        let w = wrap(Path::new("/sys/fs/cgroup/a'b"), "echo hi");
        assert_eq!(
            w,
            r"{ echo 0 >'/sys/fs/cgroup/a'\''b/cgroup.procs'; } 2>/dev/null || { echo 'lnst-agent: the session of this job has ended; not running it' >&2; exit 126; }; echo hi"
        );
    }
}
