//! Jobs: shell commands the controller runs on this host.
//!
//! [`Jobs::start`] spawns `sh -c COMMAND` in its own process group
//! ([`spawn`]; a simple command is exec'd without the shell, [`simple`]), then one supervisor per job ([`Supervisor`]) pumps stdout
//! and stderr into bounded buffers ([`output`]) while streaming them as
//! `Event::JobOutput`, enforces the timeout (TERM to the group, KILL after
//! [`KILL_GRACE`]), and on exit publishes the [`JobExit`] and sends
//! `Event::JobFinished`. A job started with `wait` is supervised by the
//! request itself ([`Jobs::run`]: no task to hand over to and wake back
//! from), and by a task of its own if the request is dropped first. Signals always go to the whole group (`kill
//! -SIG -PGID`), so grandchildren go too. Job ids are unique per agent
//! process, from 1. Each job is journaled as `KillJob` right after it is
//! spawned (no fsync), so the journal replay of a restarted agent ends
//! jobs that outlived a `kill -9` of the one that started them
//! ([`orphans`]). Every process a session's jobs start, detached or not,
//! is tracked in the session's cgroup and ended at session end
//! ([`cgroup`]).

pub mod cgroup;
pub mod clone3;
pub mod orphans;
pub mod output;
pub mod proc;
pub mod simple;
pub mod spawn;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lnst_common::job::{JobExit, JobId, JobSpec, JobStatus, Stream};
use lnst_common::{Event, ToController, WireError};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::journal::Journal;
use crate::undo::UndoEntry;
use output::Bounded;
use proc::{Pipe, Proc};
use spawn::{CgroupTarget, NetnsSpawners};

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
    /// subreaper), with its directory open for `CLONE_INTO_CGROUP`. A std
    /// mutex: held only for lookups and inserts.
    cgroups: Mutex<HashMap<u64, CgroupTarget>>,
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
    ) -> Result<Option<CgroupTarget>, WireError> {
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
        let dir = cgroup::open(&path)
            .map_err(|e| WireError::os(format!("cannot open cgroup {}: {e}", path.display())))?;
        let target = CgroupTarget {
            path,
            dir: Arc::new(dir),
        };
        map.insert(session, target.clone());
        Ok(Some(target))
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
    /// `events`. Returns at once with the id, the job supervised by a task
    /// of its own (see [`Jobs::run`] to wait for it).
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
        let (id, sup, span) = self.launch(journal, spec, session, events).await?;
        tokio::spawn(async move { sup.run_owned().await }.instrument(span));
        Ok(id)
    }

    /// Starts `spec` like [`Jobs::start`], waits for it to end and returns
    /// its state and output (the job is then forgotten: the caller sends
    /// this final status). The job is supervised by this future itself; if
    /// it is dropped before the job ended (its session is over), a task
    /// takes over the supervision.
    pub async fn run(
        &self,
        journal: &Journal,
        spec: JobSpec,
        session: u64,
        events: EventTx,
    ) -> Result<JobStatus, WireError> {
        let (id, sup, span) = self.launch(journal, spec, session, events).await?;
        let job = sup.job.clone();
        let mut guard = HandOff(Some(sup), span.clone());
        if let Some(sup) = guard.0.as_mut() {
            sup.run().instrument(span).await;
        }
        let status = job.status();
        self.forget(id);
        Ok(status)
    }

    /// Spawns and journals the job and puts it in the table; returns its
    /// supervisor, not yet running, and its span.
    async fn launch(
        &self,
        journal: &Journal,
        spec: JobSpec,
        session: u64,
        events: EventTx,
    ) -> Result<(JobId, Supervisor, tracing::Span), WireError> {
        let cgroup = self.session_cgroup(journal, session)?;
        let started = self.spawners.spawn(&spec, cgroup).await?;
        let t0 = Instant::now();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let mut proc = started.proc;
        let pgid = proc.pid();
        // The leader is our unreaped child, so its /proc entry exists even
        // if it already exited (a zombie).
        let start_time = started
            .start_time
            .or_else(|| orphans::start_time(pgid))
            .unwrap_or(0);
        if let Err(e) = journal.record_unsynced(UndoEntry::KillJob { pgid, start_time }) {
            let _ = killpg(pgid, libc::SIGKILL);
            let _ = proc.wait().await;
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
        let span = tracing::info_span!("job", id, pgid);
        span.in_scope(|| tracing::info!(command = %spec.command, netns = ?spec.netns, "started"));
        let sup = Supervisor {
            job,
            proc,
            stdout: started.stdout,
            stderr: started.stderr,
            bufs: None,
            deadline: spec
                .timeout_ms
                .map(|t| tokio::time::Instant::now() + Duration::from_millis(t)),
            timeout: spec.timeout_ms.map(Duration::from_millis),
            timed_out: false,
            status: None,
            drain_until: None,
            started: t0,
            exit_tx,
            events,
            done: false,
        };
        Ok((id, sup, span))
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
            .and_then(|mut m| m.remove(&session))
            .map(|t| t.path);
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

/// One job's supervision: its output pipes, its leader's exit, its
/// timeout, all in one future. The state lives here, not in the future,
/// so a supervision interrupted (the request running it dropped) can be
/// resumed by another task ([`HandOff`]): every await in [`Supervisor::run`]
/// is cancel-safe (pipe reads, the pidfd or tokio wait, timers), except
/// that an event being sent to a session that is ending may be lost.
struct Supervisor {
    job: Arc<Job>,
    proc: Proc,
    /// `None` once at end of file (or given up after the exit).
    stdout: Option<Pipe>,
    stderr: Option<Pipe>,
    /// Read buffers for stdout and stderr, made at the first read.
    bufs: Option<Box<[[u8; 16 * 1024]; 2]>>,
    /// When to TERM the group (the job's timeout), then, once TERM was
    /// sent, when to KILL it; `None`: no (more) deadline.
    deadline: Option<tokio::time::Instant>,
    timeout: Option<Duration>,
    timed_out: bool,
    /// The leader's exit, once reaped.
    status: Option<std::io::Result<std::process::ExitStatus>>,
    /// After the exit, how long the pipes may stay open.
    drain_until: Option<tokio::time::Instant>,
    started: Instant,
    exit_tx: watch::Sender<Option<JobExit>>,
    events: EventTx,
    /// The exit was published.
    done: bool,
}

enum Step {
    Read(usize, std::io::Result<usize>),
    Exited(std::io::Result<std::process::ExitStatus>),
    Deadline,
    DrainOver,
}

/// Reads from `pipe` into `buf`; never ready if the pipe is closed.
async fn read_some(pipe: &mut Option<Pipe>, buf: &mut [u8]) -> std::io::Result<usize> {
    match pipe {
        Some(p) => p.read(buf).await,
        None => std::future::pending().await,
    }
}

/// Reads from `pipe` straight from its fd, whatever the reactor last
/// said about it: `None` if the pipe is closed or has nothing yet.
fn read_now(pipe: &Option<Pipe>, buf: &mut [u8]) -> Option<std::io::Result<usize>> {
    match nix::unistd::read(&**pipe.as_ref()?, buf) {
        Ok(n) => Some(Ok(n)),
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => None,
        Err(e) => Some(Err(e.into())),
    }
}

async fn sleep_until(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl Supervisor {
    /// Supervises the job to its end and publishes its exit. May be
    /// dropped and called again: it goes on where it was.
    async fn run(&mut self) {
        while !self.done {
            if self.status.is_some() && self.stdout.is_none() && self.stderr.is_none() {
                self.finish().await;
                return;
            }
            let bufs = self
                .bufs
                .get_or_insert_with(|| Box::new([[0u8; 16 * 1024]; 2]));
            let [out_buf, err_buf] = &mut **bufs;
            let reaped = self.status.is_some();
            let step = tokio::select! {
                biased;
                r = read_some(&mut self.stdout, out_buf) => Step::Read(0, r),
                r = read_some(&mut self.stderr, err_buf) => Step::Read(1, r),
                s = self.proc.wait(), if !reaped => Step::Exited(s),
                _ = sleep_until(self.deadline), if !reaped => Step::Deadline,
                _ = sleep_until(self.drain_until) => Step::DrainOver,
            };
            match step {
                Step::Read(i, Ok(n)) if n > 0 => {
                    let chunk = if i == 0 { &out_buf[..n] } else { &err_buf[..n] };
                    let stream = if i == 0 {
                        Stream::Stdout
                    } else {
                        Stream::Stderr
                    };
                    output(&self.job, &self.events, stream, chunk).await;
                }
                Step::Read(i, _) => {
                    // End of file (or a read error: nothing more to get).
                    if i == 0 {
                        self.stdout = None;
                    } else {
                        self.stderr = None;
                    }
                }
                Step::Exited(s) => {
                    if self.timed_out {
                        // The shell is gone; members that ignore TERM go now.
                        let _ = killpg(self.job.pgid, libc::SIGKILL);
                    }
                    self.status = Some(s);
                    self.drain_until = Some(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
                    // The shell is reaped and our copies of the write ends
                    // are closed (`Proc::wait`): what it wrote is in the
                    // pipes, and so is their end unless something it
                    // started holds them. Read it now rather than after
                    // another turn of the reactor.
                    for (pipe, buf, stream) in [
                        (&mut self.stdout, &mut out_buf[..], Stream::Stdout),
                        (&mut self.stderr, &mut err_buf[..], Stream::Stderr),
                    ] {
                        while let Some(r) = read_now(pipe, buf) {
                            match r {
                                Ok(n) if n > 0 => {
                                    output(&self.job, &self.events, stream, &buf[..n]).await
                                }
                                _ => *pipe = None,
                            }
                        }
                    }
                }
                Step::Deadline if !self.timed_out => {
                    self.timed_out = true;
                    tracing::info!(timeout = ?self.timeout, "timed out; SIGTERM to the group");
                    let _ = killpg(self.job.pgid, libc::SIGTERM);
                    self.deadline = Some(tokio::time::Instant::now() + KILL_GRACE);
                }
                Step::Deadline => {
                    tracing::info!("still there after grace; SIGKILL to the group");
                    let _ = killpg(self.job.pgid, libc::SIGKILL);
                    self.deadline = None;
                }
                Step::DrainOver => {
                    tracing::debug!("output still open after exit (a child holds it); not waiting");
                    self.stdout = None;
                    self.stderr = None;
                }
            }
        }
    }

    /// [`Supervisor::run`] on an owned supervisor (a task of its own).
    async fn run_owned(mut self) {
        self.run().await
    }

    /// Publishes the exit and sends `JobFinished`.
    async fn finish(&mut self) {
        self.bufs = None;
        let (exit_code, signal) = match &self.status {
            Some(Ok(s)) => {
                use std::os::unix::process::ExitStatusExt;
                (s.code(), s.signal())
            }
            Some(Err(e)) => {
                tracing::error!(error = %e, "cannot wait for job");
                (None, None)
            }
            None => (None, None),
        };
        let job = &self.job;
        let exit = JobExit {
            id: job.id,
            exit_code,
            signal,
            timed_out: self.timed_out,
            duration: self.started.elapsed().as_secs_f64(),
            stopped: match job.stopped.load(Ordering::Relaxed) {
                0 => None,
                s => Some(s),
            },
        };
        tracing::info!(?exit_code, ?signal, timed_out = self.timed_out, "finished");
        self.exit_tx.send_replace(Some(exit.clone()));
        self.done = true;
        let _ = self
            .events
            .send(ToController::Event(Event::JobFinished(exit)))
            .await;
    }
}

/// Keeps `chunk` of `stream` in `job`'s output and streams what was kept.
async fn output(job: &Job, events: &EventTx, stream: Stream, chunk: &[u8]) {
    let added = match job.out.lock() {
        Ok(mut o) => match stream {
            Stream::Stdout => o.0.push(chunk),
            Stream::Stderr => o.1.push(chunk),
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

/// A supervisor run by a request: if the request is dropped before the
/// job ended, a task of its own carries on (a job must never be left
/// unwatched: its exit is what the session's teardown waits for).
struct HandOff(Option<Supervisor>, tracing::Span);

impl Drop for HandOff {
    fn drop(&mut self) {
        let Some(sup) = self.0.take() else { return };
        if sup.done {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(sup.run_owned().instrument(self.1.clone()));
            }
            Err(_) => tracing::error!(pgid = sup.job.pgid, "job left unsupervised (no runtime)"),
        }
    }
}
