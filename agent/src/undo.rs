//! What the undo journal stores: one [`UndoEntry`] per change, saying how to
//! revert it, and [`UndoCtx`], what an undo needs to do its work.
//!
//! Domain modules build an entry *before* they change the host and hand it
//! to [`crate::journal::Journal::record`]; the journal replays entries in
//! reverse order. Entries are serialised (JSON) to the journal file, so they
//! must carry everything needed to undo without the session that made them
//! (an agent restarted after `kill -9` replays them).

use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::net::{NetUndo, Nets};

/// How to undo one change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UndoEntry {
    /// Test only (`Request::JournalTest`): the undo appends `marker` and a
    /// newline to the file `path`, so a test can watch replays happen.
    Test { path: String, marker: String },
    /// A device, address, route, namespace, sysctl or file change.
    Net(NetUndo),
    /// A job started: `kill -TERM -PGID`, then `-KILL`, if the group still
    /// runs and its leader is the process that started at `start_time`
    /// (`/proc/PID/stat` field 22), so a reused pid is never signalled.
    /// Journaled without fsync (see [`crate::journal::Journal::record_unsynced`]).
    KillJob { pgid: i32, start_time: u64 },
    /// `h.defer(COMMAND)` / `run(.., #{ undo: COMMAND })`: undone by
    /// running `sh -c COMMAND` in `netns` (`None`: the agent's own), with
    /// [`DEFER_TIMEOUT`]. A namespace that is gone takes the command's
    /// effects with it: skipped, not an error.
    Command {
        netns: Option<String>,
        command: String,
    },
    /// A session's job cgroup: SIGKILL to every process in it
    /// (`cgroup.kill`), then `rmdir`. Catches what a job detached with
    /// `setsid` or a double fork. Recorded (fsynced) before the cgroup is
    /// made.
    KillCgroup { path: String },
    /// `systemctl start|stop NAME` so that it is `active` as before
    /// (`h.service`); `systemctl` is the binary that acted.
    Service {
        name: String,
        active: bool,
        systemctl: String,
    },
}

/// How long a deferred command may run at undo time before its process
/// group is killed (and the undo reported as failed).
pub const DEFER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// What undos need from the running agent: the per-namespace netlink
/// sockets.
pub struct UndoCtx {
    pub nets: Nets,
}

impl UndoCtx {
    /// `prefix` names the namespaces this agent creates (`ip netns add
    /// PREFIXname`), so two agents or runs never clash.
    pub fn new(prefix: String) -> Self {
        UndoCtx {
            nets: Nets::new(prefix),
        }
    }
}

/// Undoes `entries` (in recorded order) newest first, keeping on past
/// errors and returning all of them, each with the index in `entries` of
/// the entry whose undo failed (the journal keeps those to retry them).
/// Runs of network entries go to [`crate::net::undo_all_indexed`], which
/// batches link and namespace deletions (a kernel link delete costs ~20 ms
/// each when done one by one).
pub async fn undo_all(ctx: &UndoCtx, entries: &[UndoEntry]) -> Vec<(usize, String)> {
    let mut errors = Vec::new();
    let mut end = entries.len();
    while end > 0 {
        let mut start = end;
        while start > 0 && matches!(entries[start - 1], UndoEntry::Net(_)) {
            start -= 1;
        }
        if start < end {
            let run: Vec<NetUndo> = entries[start..end]
                .iter()
                .filter_map(|e| match e {
                    UndoEntry::Net(n) => Some(n.clone()),
                    UndoEntry::Test { .. }
                    | UndoEntry::KillJob { .. }
                    | UndoEntry::Command { .. }
                    | UndoEntry::KillCgroup { .. }
                    | UndoEntry::Service { .. } => None,
                })
                .collect();
            errors.extend(
                crate::net::undo_all_indexed(&ctx.nets, &run)
                    .await
                    .into_iter()
                    .map(|(i, e)| (start + i, e)),
            );
            end = start;
        } else if matches!(entries[end - 1], UndoEntry::KillJob { .. }) {
            // A run of jobs: one /proc scan, TERM to all, one grace period.
            while start > 0 && matches!(entries[start - 1], UndoEntry::KillJob { .. }) {
                start -= 1;
            }
            let groups: Vec<(i32, u64)> = entries[start..end]
                .iter()
                .filter_map(|e| match e {
                    UndoEntry::KillJob { pgid, start_time } => Some((*pgid, *start_time)),
                    _ => None,
                })
                .collect();
            let left = crate::jobs::orphans::survivors(&groups).await;
            for (i, (pgid, _)) in groups.iter().enumerate() {
                if left.contains(pgid) {
                    errors.push((
                        start + i,
                        format!("job process group {pgid} still alive after SIGKILL"),
                    ));
                }
            }
            end = start;
        } else {
            let entry = &entries[end - 1];
            match entry.undo(ctx).await {
                Ok(()) => tracing::info!(entry = %entry.describe(), "undone"),
                Err(e) => {
                    tracing::warn!(entry = %entry.describe(), error = %e, "undo failed");
                    errors.push((end - 1, e));
                }
            }
            end -= 1;
        }
    }
    errors
}

impl UndoEntry {
    /// Reverts the change this entry covers. The error is a complete message
    /// for the teardown report.
    pub async fn undo(&self, ctx: &UndoCtx) -> Result<(), String> {
        match self {
            UndoEntry::Test { path, marker } => {
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("undo test entry: cannot open {path}: {e}"))?;
                f.write_all(format!("{marker}\n").as_bytes())
                    .map_err(|e| format!("undo test entry: cannot write {path}: {e}"))
            }
            UndoEntry::Net(n) => n.undo(&ctx.nets).await,
            UndoEntry::KillCgroup { path } => {
                crate::jobs::cgroup::kill_and_remove(path.into()).await
            }
            UndoEntry::Service {
                name,
                active,
                systemctl,
            } => {
                let sc = crate::service::Systemctl {
                    bin: systemctl.clone(),
                };
                crate::service::restore(&sc, name, *active)
                    .await
                    .map_err(|e| format!("undo service {name}: {e}"))
            }
            UndoEntry::KillJob { pgid, start_time } => {
                let errors = crate::jobs::orphans::kill_groups(&[(*pgid, *start_time)]).await;
                if errors.is_empty() {
                    Ok(())
                } else {
                    Err(errors.join("; "))
                }
            }
            UndoEntry::Command { netns, command } => {
                run_deferred(netns.as_deref(), command, DEFER_TIMEOUT).await
            }
        }
    }

    /// One line for logs and teardown messages.
    pub fn describe(&self) -> String {
        match self {
            UndoEntry::Test { path, marker } => format!("test marker {marker:?} -> {path}"),
            UndoEntry::Net(n) => n.describe(),
            UndoEntry::KillJob { pgid, .. } => format!("kill job process group {pgid}"),
            UndoEntry::Command { netns, command } => match netns {
                Some(n) => format!("deferred `{command}` (netns {n})"),
                None => format!("deferred `{command}`"),
            },
            UndoEntry::KillCgroup { path } => format!("kill job cgroup {path}"),
            UndoEntry::Service { name, active, .. } => format!(
                "service {name} {}",
                if *active { "active" } else { "inactive" }
            ),
        }
    }
}

/// Runs a deferred command: `sh -c COMMAND` in its own process group, on a
/// thread inside `netns`, stdin and stdout to /dev/null, stderr kept (its
/// end goes into the error). Exit 0 is success; a non-zero exit, a signal
/// or `timeout` (TERM, then KILL to the group) is an error naming the
/// command.
pub async fn run_deferred(
    netns: Option<&str>,
    command: &str,
    timeout: std::time::Duration,
) -> Result<(), String> {
    if let Some(n) = netns {
        if crate::net::nsthread::netns_ident(n).is_err() {
            tracing::info!(netns = n, command, "deferred command skipped: netns gone");
            return Ok(());
        }
    }
    let cmd = command.to_string();
    let what = |why: String| match netns {
        Some(n) => format!("deferred `{command}` (netns {n}): {why}"),
        None => format!("deferred `{command}`: {why}"),
    };
    let r = crate::net::nsthread::run_in(netns, move || Ok(run_blocking(&cmd, timeout))).await;
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(why)) => Err(what(why)),
        Err(e) => Err(what(e.message)),
    }
}

fn run_blocking(command: &str, timeout: std::time::Duration) -> Result<(), String> {
    use std::io::Read;
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::{Command, Stdio};
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .current_dir("/")
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    let pgid = child.id() as i32;
    let mut stderr = child.stderr.take();
    // A reader thread, so a chatty command cannot fill the pipe and stall.
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.take(64 * 1024).read_to_end(&mut buf);
        }
        buf
    });
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if std::time::Instant::now() >= deadline => break None,
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(10)),
            Err(e) => return Err(format!("wait: {e}")),
        }
    };
    let status = match status {
        Some(s) => s,
        None => {
            // SAFETY: plain kill(2) on the group this function started.
            unsafe { libc::kill(-pgid, libc::SIGTERM) };
            std::thread::sleep(std::time::Duration::from_millis(500));
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            let _ = child.wait();
            return Err(format!(
                "still running after {} s; killed",
                timeout.as_secs()
            ));
        }
    };
    let err = reader.join().unwrap_or_default();
    let err = String::from_utf8_lossy(&err);
    let tail: String = err
        .trim()
        .chars()
        .rev()
        .take(300)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let tail = if tail.is_empty() {
        String::new()
    } else {
        format!(": {tail}")
    };
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(()),
        (Some(c), _) => Err(format!("exit {c}{tail}")),
        (None, Some(s)) => Err(format!("killed by signal {s}{tail}")),
        (None, None) => Err(format!("ended abnormally{tail}")),
    }
}
