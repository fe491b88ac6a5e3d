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
    /// `systemctl start|stop NAME` so that it is `active` as before
    /// (`h.service`); `systemctl` is the binary that acted.
    Service {
        name: String,
        active: bool,
        systemctl: String,
    },
}

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
/// errors and returning all of them. Runs of network entries go to
/// [`crate::net::undo_all`], which batches link and namespace deletions
/// (a kernel link delete costs ~20 ms each when done one by one).
pub async fn undo_all(ctx: &UndoCtx, entries: &[UndoEntry]) -> Vec<String> {
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
                    | UndoEntry::Service { .. } => None,
                })
                .collect();
            errors.extend(crate::net::undo_all(&ctx.nets, run).await);
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
            errors.extend(crate::jobs::orphans::kill_groups(&groups).await);
            end = start;
        } else {
            let entry = &entries[end - 1];
            match entry.undo(ctx).await {
                Ok(()) => tracing::info!(entry = %entry.describe(), "undone"),
                Err(e) => {
                    tracing::warn!(entry = %entry.describe(), error = %e, "undo failed");
                    errors.push(e);
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
        }
    }

    /// One line for logs and teardown messages.
    pub fn describe(&self) -> String {
        match self {
            UndoEntry::Test { path, marker } => format!("test marker {marker:?} -> {path}"),
            UndoEntry::Net(n) => n.describe(),
            UndoEntry::KillJob { pgid, .. } => format!("kill job process group {pgid}"),
            UndoEntry::Service { name, active, .. } => format!(
                "service {name} {}",
                if *active { "active" } else { "inactive" }
            ),
        }
    }
}
