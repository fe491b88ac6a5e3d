//! Starting a job's process: `sh -c COMMAND` in its own process group with
//! piped output, in the session's cgroup, either from the runtime (the
//! agent's own namespace) or from a long-lived OS thread that entered a
//! named network namespace.
//!
//! The shell is started by [`super::clone3`] straight into the cgroup (a
//! simple command is exec'd without it, [`super::simple`]); where the
//! kernel refuses that, by `posix_spawn` (tokio's `Command`) with the shell
//! moving itself into the cgroup first ([`super::cgroup::wrap`]).
//!
//! A process inherits the network namespace of the *thread* that forks it.
//! `setns` must never run on a tokio worker (they are reused for other
//! tasks), so each named namespace gets one dedicated thread, cached and
//! reused (spawning from it keeps the fast vfork path). The thread checks
//! before each spawn that `/run/netns/NAME` is still the namespace it is
//! in: a namespace deleted and re-created under the same name gets a fresh
//! thread. [`NetnsSpawners::clear`] lets the threads go so they stop
//! pinning namespaces (at session end).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use lnst_common::job::JobSpec;
use lnst_common::WireError;
use tokio::process::Command;
use tokio::sync::oneshot;

use super::clone3;
use super::proc::Started;

/// Builds the command for `spec` (not yet spawned).
pub fn command(spec: &JobSpec) -> Result<Command, WireError> {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(&spec.command)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(false);
    if let Some(cwd) = &spec.cwd {
        check_cwd(cwd)?;
        cmd.current_dir(cwd);
    }
    // Modules run the agent's own helper tools (`"$LNST_AGENT_BIN" capture
    // ...`); tell every job where this binary is.
    if let Some(exe) = agent_exe() {
        cmd.env("LNST_AGENT_BIN", exe);
    }
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    Ok(cmd)
}

fn check_cwd(cwd: &str) -> Result<(), WireError> {
    match std::fs::metadata(cwd) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(WireError::invalid(format!(
            "job cwd {cwd} is not a directory"
        ))),
        Err(e) => Err(WireError::not_found(format!("job cwd {cwd}: {e}"))),
    }
}

/// Where a job's shell goes: its session's cgroup, by path (for the
/// fallback's shell to write its pid to) and open (for `clone3`).
#[derive(Clone)]
pub struct CgroupTarget {
    pub path: PathBuf,
    pub dir: Arc<OwnedFd>,
}

/// How to start one job, made on the request's side and run on the thread
/// whose network namespace the job gets.
struct Launch {
    /// `None` once `clone3` was refused on this host.
    prepared: Option<clone3::Prepared>,
    spec: JobSpec,
    cgroup: Option<CgroupTarget>,
}

impl Launch {
    fn new(spec: &JobSpec, cgroup: Option<CgroupTarget>) -> Result<Launch, WireError> {
        if let Some(cwd) = &spec.cwd {
            check_cwd(cwd)?;
        }
        let prepared = if clone3::usable() {
            let exe = agent_exe().map(|e| (OsStr::new("LNST_AGENT_BIN"), e.as_os_str()));
            let env = exe.into_iter().chain(
                spec.env
                    .iter()
                    .map(|(k, v)| (OsStr::new(k.as_str()), OsStr::new(v.as_str()))),
            );
            Some(
                clone3::Prepared::job(&spec.command, spec.cwd.as_deref(), env)
                    .map_err(|e| WireError::invalid(format!("cannot start job: {e}")))?,
            )
        } else {
            None
        };
        Ok(Launch {
            prepared,
            spec: spec.clone(),
            cgroup,
        })
    }

    /// Starts the job's shell on this thread (so in its network
    /// namespace); inside the runtime's context.
    fn run(self) -> std::io::Result<Started> {
        if let Some(p) = &self.prepared {
            let fd = self.cgroup.as_ref().map(|c| c.dir.as_raw_fd());
            let (r, start_time) = clone3::timed(|| clone3::spawn(p, fd));
            match r {
                Ok(c) => return Started::from_clone3(c, start_time),
                Err(clone3::Error::Io(e)) => return Err(e),
                Err(clone3::Error::Unsupported) => {}
            }
        }
        let mut spec = self.spec;
        if let Some(cg) = &self.cgroup {
            spec.command = super::cgroup::wrap(&cg.path, &spec.command);
        }
        let mut cmd = command(&spec).map_err(|e| std::io::Error::other(e.message))?;
        let (r, start_time) = clone3::timed(|| cmd.spawn());
        Started::from_child(r?, start_time)
    }
}

/// This agent's executable, resolved once.
fn agent_exe() -> Option<&'static std::path::Path> {
    static EXE: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    EXE.get_or_init(|| std::env::current_exe().ok()).as_deref()
}

fn spawn_error(spec: &JobSpec, e: std::io::Error) -> WireError {
    if e.raw_os_error() == Some(libc::ENODEV) {
        // clone3 into a cgroup already removed: the request was abandoned
        // and its session ended while the job was being started.
        return WireError::os(format!(
            "cannot start job `{}`: the session of this job has ended",
            spec.command
        ));
    }
    WireError::os(format!("cannot start job `{}`: {e}", spec.command))
}

/// Path of a named namespace: a bare name is `/run/netns/NAME` (as `ip
/// netns` makes them); a path (`/proc/PID/ns/net`) is used as it is.
pub fn netns_path(name: &str) -> PathBuf {
    if name.contains('/') {
        PathBuf::from(name)
    } else {
        PathBuf::from("/run/netns").join(name)
    }
}

type SpawnReq = (Launch, oneshot::Sender<std::io::Result<Spawned>>);

/// A child on its way from a namespace thread to the request that asked
/// for it. If the request was abandoned (its session ended) before taking
/// it, dropping this kills the job's group and reaps it: a job nobody
/// journals or watches must not run, nor leave a zombie that keeps the
/// session's cgroup busy.
struct Spawned(Option<Started>);

impl Spawned {
    fn take(mut self) -> Started {
        // Invariant: only `take` empties it, and it consumes `self`.
        self.0.take().expect("Spawned holds its child until taken")
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let Some(mut started) = self.0.take() else {
            return;
        };
        // SAFETY: killpg has no memory-safety preconditions.
        unsafe { libc::killpg(started.proc.pid(), libc::SIGKILL) };
        tracing::info!("job spawned for a request that was abandoned; killed");
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = started.proc.wait().await;
            });
        }
    }
}

/// A thread sitting in one namespace, spawning what it is sent.
struct NetnsThread {
    tx: std::sync::mpsc::Sender<SpawnReq>,
    /// (st_dev, st_ino) of the namespace the thread entered.
    ns_id: (u64, u64),
}

/// The cache of namespace threads, by namespace name.
#[derive(Default)]
pub struct NetnsSpawners {
    /// A std mutex: held only to look up or insert, never across an await.
    threads: Mutex<HashMap<String, NetnsThread>>,
}

impl NetnsSpawners {
    /// Spawns `spec` in `netns` (None: here, from the runtime), in
    /// `cgroup` (None: the agent's own).
    pub async fn spawn(
        &self,
        spec: &JobSpec,
        cgroup: Option<CgroupTarget>,
    ) -> Result<Started, WireError> {
        let launch = Launch::new(spec, cgroup)?;
        let Some(ns) = &spec.netns else {
            return launch.run().map_err(|e| spawn_error(spec, e));
        };
        let path = netns_path(ns);
        let meta = std::fs::metadata(&path).map_err(|e| {
            WireError::not_found(format!("network namespace {ns} ({}): {e}", path.display()))
        })?;
        let ns_id = (meta.dev(), meta.ino());
        let (reply_tx, reply_rx) = oneshot::channel();
        {
            let mut threads = self
                .threads
                .lock()
                .map_err(|_| WireError::internal("netns thread table poisoned"))?;
            let stale = threads.get(ns).is_some_and(|t| t.ns_id != ns_id);
            if stale {
                threads.remove(ns);
            }
            let t = match threads.entry(ns.clone()) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(start_thread(ns, path.clone(), ns_id)?)
                }
            };
            if let Err(std::sync::mpsc::SendError((c, r))) = t.tx.send((launch, reply_tx)) {
                // The thread died (setns failed earlier); start a new one.
                threads.remove(ns);
                let t = start_thread(ns, path.clone(), ns_id)?;
                t.tx.send((c, r))
                    .map_err(|_| WireError::internal("netns thread gone"))?;
                threads.insert(ns.clone(), t);
            }
        }
        reply_rx
            .await
            .map_err(|_| {
                WireError::os(format!(
                    "cannot enter network namespace {ns} ({})",
                    path.display()
                ))
            })?
            .map(Spawned::take)
            .map_err(|e| spawn_error(spec, e))
    }

    /// Lets every namespace thread end, so none pins a namespace.
    pub fn clear(&self) {
        if let Ok(mut t) = self.threads.lock() {
            t.clear();
        }
    }

    /// Lets the thread for `name` end (call before deleting that namespace).
    pub fn forget(&self, name: &str) {
        if let Ok(mut t) = self.threads.lock() {
            t.remove(name);
        }
    }
}

fn start_thread(ns: &str, path: PathBuf, ns_id: (u64, u64)) -> Result<NetnsThread, WireError> {
    let (tx, rx) = std::sync::mpsc::channel::<SpawnReq>();
    let rt = tokio::runtime::Handle::current();
    let name = ns.to_string();
    std::thread::Builder::new()
        .name(format!("netns-{ns}"))
        .spawn(move || {
            let entered = std::fs::File::open(&path).and_then(|f| {
                nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(std::io::Error::from)
            });
            if let Err(e) = entered {
                tracing::error!(netns = %name, path = %path.display(), error = %e,
                    "cannot enter network namespace");
                if let Ok((_, reply)) = rx.recv() {
                    let _ = reply.send(Err(std::io::Error::new(
                        e.kind(),
                        format!(
                            "cannot enter network namespace {name} ({}): {e}",
                            path.display()
                        ),
                    )));
                }
                return;
            }
            // Spawning registers the child's pipes with the runtime's reactor.
            let _rt = rt.enter();
            while let Ok((launch, reply)) = rx.recv() {
                // A reply nobody receives any more is dropped here or with
                // the channel: `Spawned` then ends the job.
                let _ = reply.send(launch.run().map(|c| Spawned(Some(c))));
            }
        })
        .map_err(|e| WireError::os(format!("cannot start a thread for netns {ns}: {e}")))?;
    Ok(NetnsThread { tx, ns_id })
}
