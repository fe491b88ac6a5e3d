//! Jobs: shell commands the controller runs on this host.
//!
//! [`Jobs::start`] spawns `sh -c COMMAND` in its own process group
//! ([`spawn`]), then a supervisor task per job pumps stdout and stderr into
//! bounded buffers ([`output`]) while streaming them as
//! `Event::JobOutput`, enforces the timeout (TERM to the group, KILL after
//! [`KILL_GRACE`]), and on exit publishes the [`JobExit`] and sends
//! `Event::JobFinished`. Signals always go to the whole group (`kill
//! -SIG -PGID`), so grandchildren go too. Job ids are unique per agent
//! process, from 1. Each job is journaled as `KillJob` right after it is
//! spawned (no fsync), so the journal replay of a restarted agent ends
//! jobs that outlived a `kill -9` of the one that started them
//! ([`orphans`]). Every process a session's jobs start, detached or not,
//! is tracked in the session's cgroup and ended at session end
//! ([`cgroup`]).

pub mod cgroup;
pub mod orphans;
pub mod output;
pub mod spawn;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lnst_common::job::{JobExit, JobId, JobSpec, JobStatus, Stream};
use lnst_common::{Event, ToController, WireError};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Child;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::journal::Journal;
use crate::undo::UndoEntry;
use output::Bounded;
use spawn::NetnsSpawners;

/// Between TERM and KILL when a job is stopped for a timeout or at teardown.
pub const KILL_GRACE: Duration = Duration::from_secs(1);

/// After the job's shell exited, how long its output pipes may stay open
/// (a grandchild still holding them) before the job is reported finished
/// with what was read so far.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(200);

/// Where a job's events go: the writer of the session that started it.
pub type EventTx = mpsc::Sender<ToController>;

/// One job.
struct Job {
    id: JobId,
    /// Process group id (= the shell's pid).
    pgid: i32,
    /// The session that started it; its teardown kills the job.
    session: u64,
    /// A std mutex: held only to append a chunk or copy the output out.
    out: Mutex<(Bounded, Bounded)>,
    /// `None` while running; set once by the supervisor.
    exit: watch::Receiver<Option<JobExit>>,
    /// The first signal a `JobKill` sent while the shell still ran (0:
    /// none): reported as [`JobExit::stopped`].
    stopped: std::sync::atomic::AtomicI32,
}

impl Job {
    fn status(&self) -> JobStatus {
        let exit = self.exit.borrow().clone();
        let (stdout, stderr) = match self.out.lock() {
            Ok(o) => (o.0.bytes().to_vec(), o.1.bytes().to_vec()),
            Err(_) => (Vec::new(), Vec::new()),
        };
        JobStatus {
            id: self.id,
            exit,
            stdout,
            stderr,
        }
    }

    fn finished(&self) -> bool {
        self.exit.borrow().is_some()
    }
}

/// The agent's jobs.
#[derive(Default)]
pub struct Jobs {
    next_id: AtomicU64,
    /// A std mutex: held only for lookups and inserts.
    table: Mutex<HashMap<JobId, Arc<Job>>>,
    spawners: NetnsSpawners,
    /// Each session's cgroup, once it has started a job (`None` for the
    /// whole agent when no cgroup2 is usable: then the agent is the child
    /// subreaper). A std mutex: held only for lookups and inserts.
    cgroups: Mutex<HashMap<u64, PathBuf>>,
}

impl Jobs {
    /// The job table; makes the agent the child subreaper when there is no
    /// cgroup2 to track jobs' processes in.
    pub fn new() -> Self {
        if cgroup::base().is_none() && !cgroup::subreaper::enable() {
            tracing::warn!("no cgroup2 and cannot be the child subreaper: detached job processes may outlive their session");
        }
        Self::default()
    }

    /// The cgroup of `session`, created (and journaled first) at its first
    /// job; `None` without cgroup2.
    fn session_cgroup(
        &self,
        journal: &Journal,
        session: u64,
    ) -> Result<Option<PathBuf>, WireError> {
        let Some(base) = cgroup::base() else {
            return Ok(None);
        };
        let mut map = self
            .cgroups
            .lock()
            .map_err(|_| WireError::internal("cgroup table poisoned"))?;
        if let Some(p) = map.get(&session) {
            return Ok(Some(p.clone()));
        }
        let path = cgroup::session_path(base, session);
        journal.record(UndoEntry::KillCgroup {
            path: path.to_string_lossy().into_owned(),
        })?;
        cgroup::create(&path)
            .map_err(|e| WireError::os(format!("cannot create cgroup {}: {e}", path.display())))?;
        map.insert(session, path.clone());
        Ok(Some(path))
    }

    fn get(&self, id: JobId) -> Result<Arc<Job>, WireError> {
        let t = self
            .table
            .lock()
            .map_err(|_| WireError::internal("job table poisoned"))?;
        match t.get(&id) {
            Some(j) => Ok(j.clone()),
            None if id >= 1 && id <= self.next_id.load(Ordering::Relaxed) => {
                Err(WireError::not_found(format!(
                    "job {id} has ended and its exit and output were already sent"
                )))
            }
            None => Err(WireError::not_found(format!(
                "no job with id {id} on this agent"
            ))),
        }
    }

    /// Whether `id` was a job of this agent that ended and was forgotten
    /// ([`Jobs::forget`]).
    fn delivered(&self, id: JobId) -> bool {
        id >= 1
            && id <= self.next_id.load(Ordering::Relaxed)
            && self.table.lock().is_ok_and(|t| !t.contains_key(&id))
    }

    /// Starts `spec` for `session`; its output and exit are sent to
    /// `events`. Returns at once with the id (the caller waits if
    /// `spec.wait`).
    ///
    /// The job is journaled in `journal` as [`UndoEntry::KillJob`] before
    /// this returns; if that fails, the job is killed and the error
    /// returned.
    pub async fn start(
        &self,
        journal: &Journal,
        spec: JobSpec,
        session: u64,
        events: EventTx,
    ) -> Result<JobId, WireError> {
        let mut child = match self.session_cgroup(journal, session)? {
            Some(cg) => {
                let mut wrapped = spec.clone();
                wrapped.command = cgroup::wrap(&cg, &spec.command);
                self.spawners.spawn(&wrapped).await?
            }
            None => self.spawners.spawn(&spec).await?,
        };
        let started = Instant::now();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let pgid = child
            .id()
            .ok_or_else(|| WireError::internal("spawned job has no pid"))?
            as i32;
        // The leader is our unreaped child, so its /proc entry exists even
        // if it already exited (a zombie).
        let start_time = orphans::start_time(pgid).unwrap_or(0);
        if let Err(e) = journal.record_unsynced(UndoEntry::KillJob { pgid, start_time }) {
            let _ = killpg(pgid, libc::SIGKILL);
            let _ = child.wait().await;
            return Err(e);
        }
        let (exit_tx, exit_rx) = watch::channel(None);
        let job = Arc::new(Job {
            id,
            pgid,
            session,
            out: Mutex::new((Bounded::default(), Bounded::default())),
            exit: exit_rx,
            stopped: std::sync::atomic::AtomicI32::new(0),
        });
        self.table
            .lock()
            .map_err(|_| WireError::internal("job table poisoned"))?
            .insert(id, job.clone());
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let timeout = spec.timeout_ms.map(Duration::from_millis);
        let span = tracing::info_span!("job", id, pgid);
        span.in_scope(|| tracing::info!(command = %spec.command, netns = ?spec.netns, "started"));
        tokio::spawn(
            supervise(
                job, child, stdout, stderr, timeout, started, exit_tx, events,
            )
            .instrument(span),
        );
        Ok(id)
    }

    /// Waits up to `timeout` (forever if `None`) for job `id` to end and
    /// returns its state and output (`exit` is `None` if it still runs).
    pub async fn wait(&self, id: JobId, timeout: Option<Duration>) -> Result<JobStatus, WireError> {
        let job = self.get(id)?;
        let mut rx = job.exit.clone();
        let done = async {
            let _ = rx.wait_for(Option::is_some).await;
        };
        match timeout {
            Some(t) => {
                let _ = tokio::time::timeout(t, done).await;
            }
            None => done.await,
        }
        Ok(job.status())
    }

    /// `kill -SIGNAL -PGID`: signals the job's whole process group. A job
    /// that already ended is not an error.
    pub fn kill(&self, id: JobId, signal: i32) -> Result<(), WireError> {
        if self.delivered(id) {
            return Ok(());
        }
        let job = self.get(id)?;
        // Whether the kill stops the job or finds it already ended (its
        // exit is then its own); the group is signalled either way, for
        // what it left running (`sh -c "server &"`).
        if signal != 0 && !job.finished() && !leader_exited(job.pgid) {
            let _ = job
                .stopped
                .compare_exchange(0, signal, Ordering::Relaxed, Ordering::Relaxed);
        }
        match killpg(job.pgid, signal) {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(nix::errno::Errno::EINVAL) => Err(WireError::invalid(format!(
                "invalid signal number {signal}"
            ))),
            Err(e) => Err(WireError::os(format!(
                "kill -{signal} -{} (job {id}): {e}",
                job.pgid
            ))),
        }
    }

    /// Kills every job of `session` (TERM to each group, KILL after
    /// [`KILL_GRACE`] to those still there), waits for them, and forgets
    /// them. Groups of jobs whose shell already ended are signalled too if
    /// processes of theirs remain (`sh -c "server &"`). Returns errors met.
    pub async fn end_session(&self, session: u64) -> Vec<String> {
        let mut errors = Vec::new();
        let jobs: Vec<Arc<Job>> = match self.table.lock() {
            Ok(mut t) => {
                let ids: Vec<JobId> = t
                    .values()
                    .filter(|j| j.session == session)
                    .map(|j| j.id)
                    .collect();
                ids.iter().filter_map(|id| t.remove(id)).collect()
            }
            Err(_) => {
                errors.push("job table poisoned".to_string());
                return errors;
            }
        };
        self.spawners.clear();
        let cg = self
            .cgroups
            .lock()
            .ok()
            .and_then(|mut m| m.remove(&session));
        tracing::debug!(session, jobs = jobs.len(), cgroup = ?cg, "ending the session's jobs");
        if !jobs.is_empty() {
            errors.extend(self.end_jobs(&jobs, cg.as_deref()).await);
        }
        match cg {
            // Whatever is left (detached with setsid, double-forked).
            Some(cg) => {
                if let Err(e) = cgroup::kill_and_remove(cg).await {
                    errors.push(e);
                }
            }
            None if cgroup::base().is_none() => {
                let keep: HashSet<i32> = match self.table.lock() {
                    Ok(t) => t.values().map(|j| j.pgid).collect(),
                    Err(_) => HashSet::new(),
                };
                let orphans = cgroup::subreaper::orphans(&keep);
                if !orphans.is_empty() {
                    tracing::info!(?orphans, "killing processes left by the session's jobs");
                    tokio::task::spawn_blocking(move || cgroup::subreaper::kill_and_reap(&orphans))
                        .await
                        .ok();
                }
            }
            None => {}
        }
        errors
    }

    /// TERM to each job's group (and to every process of the session's
    /// cgroup), KILL after [`KILL_GRACE`] to the groups still there.
    async fn end_jobs(&self, jobs: &[Arc<Job>], cg: Option<&std::path::Path>) -> Vec<String> {
        let mut errors = Vec::new();
        let live = crate::blocking::in_place(live_pgids);
        let targets: Vec<&Arc<Job>> = jobs
            .iter()
            .filter(|j| !j.finished() || live.contains(&j.pgid))
            .collect();
        for j in &targets {
            tracing::info!(job = j.id, pgid = j.pgid, "killing at session end");
            let _ = killpg(j.pgid, libc::SIGTERM);
        }
        if let Some(cg) = cg {
            for pid in cgroup::members(cg) {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
        let deadline = tokio::time::Instant::now() + KILL_GRACE;
        let mut still = Vec::new();
        for j in &targets {
            let mut rx = j.exit.clone();
            let gone = tokio::time::timeout_at(deadline, rx.wait_for(Option::is_some)).await;
            if gone.is_err() || group_alive(j.pgid) {
                still.push(*j);
            }
        }
        for j in &still {
            let _ = killpg(j.pgid, libc::SIGKILL);
        }
        for j in &still {
            let mut rx = j.exit.clone();
            if tokio::time::timeout(Duration::from_secs(5), rx.wait_for(Option::is_some))
                .await
                .is_err()
            {
                errors.push(format!(
                    "job {} (pgid {}) did not end after SIGKILL",
                    j.id, j.pgid
                ));
            }
        }
        errors
    }

    /// Forgets job `id` once the controller has its final status (its exit
    /// and output went out in a reply): a session of 10 000 jobs then
    /// keeps none of them. What the job left running is still ended at
    /// session end (its cgroup, its journaled group).
    pub fn forget(&self, id: JobId) {
        if let Ok(mut t) = self.table.lock() {
            t.remove(&id);
            if t.is_empty() {
                // Give the emptied table's memory back too.
                t.shrink_to_fit();
            }
        }
    }

    /// Lets go of the thread for namespace `name` (call before deleting it).
    pub fn forget_netns(&self, name: &str) {
        self.spawners.forget(name);
    }

    /// Number of jobs remembered (all sessions).
    pub fn len(&self) -> usize {
        self.table.lock().map_or(0, |t| t.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn killpg(pgid: i32, signal: i32) -> Result<(), nix::errno::Errno> {
    // SAFETY: killpg has no memory-safety preconditions.
    let r = unsafe { libc::killpg(pgid, signal) };
    nix::errno::Errno::result(r).map(drop)
}

/// Whether the job's shell (our child, `pid`) has exited, without reaping
/// it (`waitid(WNOWAIT)`): tokio reaps it.
fn leader_exited(pid: i32) -> bool {
    // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid on our own child with a valid pointer.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if r != 0 {
        // ECHILD: already reaped by its supervisor, whose exit report may
        // still be on its way (it drains the output first).
        return nix::errno::Errno::last() == nix::errno::Errno::ECHILD;
    }
    // SAFETY: si_pid is valid to read after a successful waitid.
    unsafe { info.si_pid() == pid }
}

fn group_alive(pgid: i32) -> bool {
    killpg(pgid, 0).is_ok()
}

/// Process groups that have members now (from `/proc/*/stat`).
fn live_pgids() -> HashSet<i32> {
    let mut out = HashSet::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...; comm may hold spaces and ')'.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            if let Some(pgrp) = rest.split_whitespace().nth(2).and_then(|s| s.parse().ok()) {
                out.insert(pgrp);
            }
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
async fn supervise(
    job: Arc<Job>,
    mut child: Child,
    stdout: Option<tokio::process::ChildStdout>,
    stderr: Option<tokio::process::ChildStderr>,
    timeout: Option<Duration>,
    started: Instant,
    exit_tx: watch::Sender<Option<JobExit>>,
    events: EventTx,
) {
    let mut pumps = Vec::new();
    if let Some(s) = stdout {
        pumps.push(tokio::spawn(pump(
            s,
            Stream::Stdout,
            job.clone(),
            events.clone(),
        )));
    }
    if let Some(s) = stderr {
        pumps.push(tokio::spawn(pump(
            s,
            Stream::Stderr,
            job.clone(),
            events.clone(),
        )));
    }
    let mut timed_out = false;
    let status = match timeout {
        None => child.wait().await,
        Some(t) => match tokio::time::timeout(t, child.wait()).await {
            Ok(s) => s,
            Err(_) => {
                timed_out = true;
                tracing::info!(timeout = ?t, "timed out; SIGTERM to the group");
                let _ = killpg(job.pgid, libc::SIGTERM);
                match tokio::time::timeout(KILL_GRACE, child.wait()).await {
                    Ok(s) => {
                        // The shell is gone; members that ignore TERM go now.
                        let _ = killpg(job.pgid, libc::SIGKILL);
                        s
                    }
                    Err(_) => {
                        tracing::info!("still there after grace; SIGKILL to the group");
                        let _ = killpg(job.pgid, libc::SIGKILL);
                        child.wait().await
                    }
                }
            }
        },
    };
    let drain = async {
        for p in pumps.iter_mut() {
            let _ = p.await;
        }
    };
    if tokio::time::timeout(DRAIN_AFTER_EXIT, drain).await.is_err() {
        tracing::debug!("output still open after exit (a child holds it); not waiting");
        for p in &pumps {
            p.abort();
        }
    }
    let (exit_code, signal) = match &status {
        Ok(s) => {
            use std::os::unix::process::ExitStatusExt;
            (s.code(), s.signal())
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot wait for job");
            (None, None)
        }
    };
    let exit = JobExit {
        id: job.id,
        exit_code,
        signal,
        timed_out,
        duration: started.elapsed().as_secs_f64(),
        stopped: match job.stopped.load(Ordering::Relaxed) {
            0 => None,
            s => Some(s),
        },
    };
    tracing::info!(?exit_code, ?signal, timed_out, "finished");
    exit_tx.send_replace(Some(exit.clone()));
    let _ = events
        .send(ToController::Event(Event::JobFinished(exit)))
        .await;
}

async fn pump<R: AsyncRead + Unpin>(mut r: R, stream: Stream, job: Arc<Job>, events: EventTx) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let added = match job.out.lock() {
            Ok(mut o) => match stream {
                Stream::Stdout => o.0.push(&buf[..n]),
                Stream::Stderr => o.1.push(&buf[..n]),
            },
            Err(_) => return,
        };
        if !added.is_empty() {
            let _ = events
                .send(ToController::Event(Event::JobOutput {
                    id: job.id,
                    stream,
                    data: added,
                }))
                .await;
        }
    }
}
