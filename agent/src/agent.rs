//! The agent's shared state: configuration, the undo journal, the jobs and
//! who holds the agent now. One [`Agent`] per process, shared by every
//! connection through an `Arc`.
//!
//! Holding: one controller at a time. [`Agent::claim`] gives the first
//! controller a session id; a second is refused with a message naming the
//! holder and since when. [`Agent::teardown`] kills the session's jobs and
//! replays the journal; [`Agent::release`] frees the agent for the next.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use lnst_common::proto::{HEARTBEAT_INTERVAL_MS, HEARTBEAT_TIMEOUT_MS};

use crate::jobs::Jobs;
use crate::journal::{Journal, JournalError};
use crate::undo::UndoCtx;

/// Environment variable overriding the heartbeat: `INTERVAL_MS` or
/// `INTERVAL_MS,TIMEOUT_MS` (the timeout defaults to three intervals).
pub const HEARTBEAT_ENV: &str = "LNST_HEARTBEAT_MS";

/// How an agent is set up.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Where the journal and the lock live.
    pub state_dir: PathBuf,
    /// Between heartbeats we send.
    pub heartbeat_interval: Duration,
    /// Silence after which the controller is gone.
    pub heartbeat_timeout: Duration,
}

impl AgentConfig {
    /// Defaults, with the heartbeat overridable by [`HEARTBEAT_ENV`].
    pub fn new(state_dir: PathBuf) -> Self {
        let (i, t) = std::env::var(HEARTBEAT_ENV)
            .ok()
            .and_then(|v| parse_heartbeat(&v))
            .unwrap_or((HEARTBEAT_INTERVAL_MS, HEARTBEAT_TIMEOUT_MS));
        AgentConfig {
            state_dir,
            heartbeat_interval: Duration::from_millis(i),
            heartbeat_timeout: Duration::from_millis(t),
        }
    }
}

fn parse_heartbeat(v: &str) -> Option<(u64, u64)> {
    let mut it = v.split(',').map(|s| s.trim().parse::<u64>());
    let i = it.next()?.ok().filter(|&i| i > 0)?;
    let t = match it.next() {
        Some(t) => t.ok().filter(|&t| t > 0)?,
        None => i * 3,
    };
    Some((i, t))
}

/// The file in the state dir holding the newest fencing token served.
const FENCE_FILE: &str = "fence";

/// Who holds the agent.
#[derive(Debug, Clone)]
struct Holder {
    session: u64,
    controller: String,
    peer: String,
    since: SystemTime,
}

/// The agent.
pub struct Agent {
    pub config: AgentConfig,
    pub journal: Journal,
    pub jobs: Jobs,
    pub undo_ctx: UndoCtx,
    /// Journal entries found and replayed at start-up.
    pub replayed_at_start: u32,
    pub hostname: String,
    /// A std mutex: held only to read or swap the holder.
    holder: Mutex<Option<Holder>>,
    next_session: AtomicU64,
    /// The newest shared-pool reservation (fencing token) served; kept in
    /// `<state-dir>/fence` so a restart does not forget it.
    fence: AtomicU64,
}

impl Agent {
    /// Locks the state dir, replays any journal a previous agent left, and
    /// returns the agent ready to serve. Undo errors from that replay are
    /// logged (nobody is connected to hear them).
    pub async fn start(config: AgentConfig) -> Result<Agent, JournalError> {
        let journal = Journal::open(&config.state_dir)?;
        let undo_ctx = UndoCtx::new(format!("lnst-{}-", std::process::id()));
        let r = journal.replay(&undo_ctx).await;
        if r.entries > 0 {
            tracing::warn!(entries = r.entries, errors = r.errors.len(), dir = %config.state_dir.display(),
                "replayed an undo journal left by a previous agent");
            for e in &r.errors {
                tracing::error!(error = %e, "undo at start-up failed");
            }
        }
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default();
        Ok(Agent {
            journal,
            jobs: Jobs::new(),
            undo_ctx,
            replayed_at_start: r.entries as u32,
            hostname,
            holder: Mutex::new(None),
            next_session: AtomicU64::new(1),
            fence: AtomicU64::new(
                std::fs::read_to_string(config.state_dir.join(FENCE_FILE))
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0),
            ),
            config,
        })
    }

    /// Makes `controller` (connected from `peer`) the holder and returns its
    /// session id, or the reason it is refused.
    pub fn claim(&self, controller: &str, peer: &str) -> Result<u64, String> {
        let mut h = self
            .holder
            .lock()
            .map_err(|_| "agent holder state poisoned".to_string())?;
        if let Some(cur) = &*h {
            let ago = cur.since.elapsed().map_or(0, |d| d.as_secs());
            return Err(format!(
                "agent {} is held by controller {:?} connected from {} since {} ({ago} s ago); \
                 try again when that run has ended",
                self.hostname,
                cur.controller,
                cur.peer,
                crate::time::rfc3339(cur.since)
            ));
        }
        let session = self.next_session.fetch_add(1, Ordering::Relaxed);
        *h = Some(Holder {
            session,
            controller: controller.to_string(),
            peer: peer.to_string(),
            since: SystemTime::now(),
        });
        Ok(session)
    }

    /// [`Agent::claim`] for a controller that holds shared-pool
    /// reservation `fence`: refused when this agent has already served a
    /// newer reservation (the controller's lease expired and the machine
    /// went to another run); a newer one is remembered.
    pub fn claim_fenced(
        &self,
        controller: &str,
        peer: &str,
        fence: Option<u64>,
    ) -> Result<u64, String> {
        let last = self.fence.load(Ordering::Relaxed);
        if let Some(f) = fence {
            if f < last {
                return Err(format!(
                    "agent {} refuses controller {controller:?}: its reservation's fencing token \
                     {f} is older than token {last}, which this agent has served since; its \
                     lease has expired",
                    self.hostname
                ));
            }
        }
        let session = self.claim(controller, peer)?;
        if let Some(f) = fence.filter(|f| *f > last) {
            self.fence.store(f, Ordering::Relaxed);
            let path = self.config.state_dir.join(FENCE_FILE);
            if let Err(e) = std::fs::write(&path, format!("{f}\n")) {
                tracing::warn!(error = %e, path = %path.display(), "cannot keep the fencing token");
            }
        }
        Ok(session)
    }

    /// Frees the agent if `session` holds it.
    pub fn release(&self, session: u64) {
        if let Ok(mut h) = self.holder.lock() {
            if h.as_ref().is_some_and(|c| c.session == session) {
                *h = None;
            }
        }
    }

    /// Kills `session`'s jobs and replays the undo journal; goes on past
    /// errors and returns them all.
    pub async fn teardown(&self, session: u64) -> Vec<String> {
        let mut errors = self.jobs.end_session(session).await;
        let r = self.journal.replay(&self.undo_ctx).await;
        tracing::info!(
            session,
            undone = r.entries,
            errors = errors.len() + r.errors.len(),
            "teardown"
        );
        errors.extend(r.errors);
        release_freed_memory();
        errors
    }
}

/// Returns memory freed during the session to the system (glibc keeps
/// freed heap pages otherwise, and the agent's RSS would only grow).
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_env_parses() {
        assert_eq!(parse_heartbeat("100"), Some((100, 300)));
        assert_eq!(parse_heartbeat("100,250"), Some((100, 250)));
        assert_eq!(parse_heartbeat("x"), None);
        assert_eq!(parse_heartbeat("0"), None);
    }
}
