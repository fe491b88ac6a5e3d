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

/// How to undo one change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UndoEntry {
    /// Test only (`Request::JournalTest`): the undo appends `marker` and a
    /// newline to the file `path`, so a test can watch replays happen.
    Test { path: String, marker: String },
}

/// What undos need from the running agent. Empty for now; the netlink layer
/// adds its handles here.
#[derive(Debug, Default)]
pub struct UndoCtx {}

impl UndoEntry {
    /// Reverts the change this entry covers. The error is a complete message
    /// for the teardown report.
    pub async fn undo(&self, _ctx: &UndoCtx) -> Result<(), String> {
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
        }
    }

    /// One line for logs and teardown messages.
    pub fn describe(&self) -> String {
        match self {
            UndoEntry::Test { path, marker } => format!("test marker {marker:?} -> {path}"),
        }
    }
}
