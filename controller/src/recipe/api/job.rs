//! `Job`: a command started by `h.run(..)` (RECIPES.md §5, §6), and the
//! [`JobWatch`] that collects job output and exits from the agent's events
//! so that `wait_output` and `finished` need no polling.
//!
//! Every job is a result line: added when it starts, settled when it ends
//! (exit 0 passes, inverted by `expect_fail`; killed by its timeout fails;
//! stopped with `kill()` passes). A module (`ping(#{..})`) plugs in through
//! [`JobModule`]: it supplies the command and judges the finished job.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lnst_common::job::{JobExit, JobId, JobSpec, JobStatus, Stream};
use lnst_common::{Event, Request, Response};
use rhai::{Dynamic, Engine, Map};
use tokio::sync::{broadcast, watch};

use super::ctx::seconds;
use super::host::Host;
use super::{err, Core, R};
use crate::client::AgentClient;
use crate::recipe::value::{to_dynamic, to_json};
use crate::report::{ResultRec, Verdict};

/// Default foreground timeout (RECIPES.md §5).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long `kill()` and the end-of-test cleanup wait for a job to go.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// Hook for test modules (`ping(#{..})`, `iperf_client(#{..})`): what a
/// module contributes to a job. The modules register `run(Host, Module)`
/// overloads that call [`run_job`] with one of these.
pub trait JobModule {
    /// Shell command the agent runs.
    fn command(&self) -> String;
    /// Default description for the results.
    fn desc(&self) -> String;
    /// Judges a finished job: (passed, `job.result`, key figures).
    fn judge(
        &self,
        status: &JobStatus,
    ) -> (bool, Dynamic, serde_json::Map<String, serde_json::Value>);
}

/// Output and exits of one agent's jobs, fed by its event stream.
pub struct JobWatch {
    live: Mutex<HashMap<JobId, Live>>,
    /// Bumped on every event, so waiters wake without polling.
    tick: watch::Sender<u64>,
}

#[derive(Default)]
struct Live {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    exit: Option<JobExit>,
}

/// Largest stdout kept per job for `wait_output`.
const LIVE_MAX: usize = lnst_common::job::MAX_OUTPUT_BYTES;

impl JobWatch {
    /// Subscribes to the client's events now (before any job starts) and
    /// collects them on a task of `rt`.
    pub fn spawn(rt: &tokio::runtime::Handle, client: &AgentClient) -> Arc<JobWatch> {
        let w = Arc::new(JobWatch {
            live: Mutex::new(HashMap::new()),
            tick: watch::channel(0).0,
        });
        let mut rx = client.events();
        let w2 = Arc::clone(&w);
        rt.spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(ev) => w2.on_event(ev),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(
                            missed = n,
                            "job events lagged; wait_output may miss output"
                        );
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        w
    }

    fn on_event(&self, ev: Event) {
        {
            let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            match ev {
                Event::JobOutput { id, stream, data } => {
                    let l = live.entry(id).or_default();
                    let buf = match stream {
                        Stream::Stdout => &mut l.stdout,
                        Stream::Stderr => &mut l.stderr,
                    };
                    if buf.len() < LIVE_MAX {
                        buf.extend_from_slice(&data);
                    }
                }
                Event::JobFinished(exit) => {
                    let id = exit.id;
                    live.entry(id).or_default().exit = Some(exit)
                }
                _ => return,
            }
        }
        self.tick.send_modify(|t| *t += 1);
    }

    fn with<T>(&self, id: JobId, f: impl FnOnce(Option<&Live>) -> T) -> T {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        f(live.get(&id))
    }

    fn forget(&self, id: JobId) {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }
}

/// `run` options (RECIPES.md §5).
#[derive(Debug, Clone, Default)]
pub struct RunOpts {
    pub bg: bool,
    pub timeout: Option<Duration>,
    pub expect_fail: bool,
    pub cwd: Option<String>,
    pub env: Vec<(String, String)>,
    pub json: bool,
    pub desc: Option<String>,
    pub netns: Option<String>,
    /// A shell command journaled (as `h.defer`) before the job starts.
    pub undo: Option<String>,
}

const OPTS: &str = "bg, timeout, expect_fail, cwd, env, json, desc, netns, undo";

fn flag(k: &str, v: &Dynamic) -> R<bool> {
    v.as_bool().or_else(|_| {
        err(format!(
            "run option {k} must be a bool, not {}",
            v.type_name()
        ))
    })
}

fn text(k: &str, v: &Dynamic) -> R<String> {
    if v.is_string() {
        Ok(v.to_string())
    } else if let Some(h) = v.clone().try_cast::<Host>() {
        // A namespace given as a host-like object.
        h.0.netns
            .clone()
            .ok_or_else(|| format!("run option {k}: host {} is not a namespace", h.0.name).into())
    } else {
        err(format!(
            "run option {k} must be a string, not {}",
            v.type_name()
        ))
    }
}

impl RunOpts {
    /// Parses and checks the option map; unknown keys are an error.
    pub fn parse(opts: &Map) -> R<RunOpts> {
        let mut o = RunOpts::default();
        for (k, v) in opts {
            match k.as_str() {
                "bg" => o.bg = flag(k, v)?,
                "expect_fail" => o.expect_fail = flag(k, v)?,
                "json" => o.json = flag(k, v)?,
                "timeout" => o.timeout = Some(seconds(v.clone())?),
                "cwd" => o.cwd = Some(text(k, v)?),
                "desc" => o.desc = Some(text(k, v)?),
                "netns" => o.netns = Some(text(k, v)?),
                "undo" => {
                    if !v.is_string() {
                        return err(format!(
                            "run option undo must be a shell command string, not {}",
                            v.type_name()
                        ));
                    }
                    o.undo = Some(v.to_string());
                }
                "env" => {
                    let m = v.clone().try_cast::<Map>().ok_or_else(|| {
                        format!("run option env must be a map, not {}", v.type_name())
                    })?;
                    o.env = m
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                }
                other => return err(format!("unknown run option {other:?}; known: {OPTS}")),
            }
        }
        if o.bg && o.timeout.is_some() {
            return err("run option timeout applies to foreground jobs only; a background job runs until it ends or kill()");
        }
        Ok(o)
    }
}

/// A job. Cheap to clone.
#[derive(Clone)]
pub struct Job(pub Rc<JobInner>);

pub struct JobInner {
    host: Host,
    id: Cell<Option<JobId>>,
    opts: RunOpts,
    module: Option<Box<dyn JobModule>>,
    /// Index of its result line.
    line: usize,
    started: Instant,
    state: RefCell<State>,
}

#[derive(Default)]
struct State {
    status: Option<JobStatus>,
    /// Stopped by the recipe (or at the end of the test): it passes.
    killed: Option<&'static str>,
    result: Dynamic,
    passed: bool,
}

/// `h.run("command", #{..})`.
pub fn run_shell(h: &mut Host, cmd: &str, opts: Map) -> R<Job> {
    let opts = RunOpts::parse(&opts)?;
    run_job(h, cmd.to_string(), opts, None)
}

/// Starts a job (shell command or module) and, in the foreground, waits
/// for it.
pub fn run_job(
    h: &Host,
    command: String,
    opts: RunOpts,
    module: Option<Box<dyn JobModule>>,
) -> R<Job> {
    let core = Rc::clone(&h.0.core);
    let desc = opts.desc.clone().unwrap_or_else(|| match &module {
        Some(m) => m.desc(),
        None => command.clone(),
    });
    let line = core.push_result(ResultRec {
        host: Some(h.0.name.clone()),
        job: None,
        desc: desc.clone(),
        result: Verdict::Running,
        data: Default::default(),
        note: None,
        at: 0.0,
    });
    let spec = JobSpec {
        command,
        netns: match &opts.netns {
            Some(n) => Some(h.netns_kernel_name(n)),
            None => h.0.netns.clone(),
        },
        cwd: opts.cwd.clone(),
        env: opts.env.clone(),
        timeout_ms: if opts.bg {
            None
        } else {
            Some(opts.timeout.unwrap_or(DEFAULT_TIMEOUT).as_millis() as u64)
        },
        wait: !opts.bg,
    };
    let job = Job(Rc::new(JobInner {
        host: h.clone(),
        id: Cell::new(None),
        opts,
        module,
        line,
        started: Instant::now(),
        state: RefCell::new(State::default()),
    }));
    if let Some(undo) = &job.0.opts.undo {
        // Journaled on the agent before the job starts (RECIPES.md §5).
        if let Err(e) = core.request(
            &h.0.client,
            Request::Defer {
                netns: spec.netns.clone(),
                command: undo.clone(),
            },
        ) {
            let mut res = core.results.borrow_mut();
            res[line].result = Verdict::Error;
            res[line].note = Some(format!("undo not journaled, job not started: {e}"));
            return Err(e);
        }
    }
    (core.status)(&format!("{}: {}", h.0.name, desc));
    tracing::debug!(host = %h.0.name, desc = %desc, bg = job.0.opts.bg, "job start");
    let reply = core.request(&h.0.client, Request::JobStart(spec));
    let reply = match reply {
        Ok(r) => r,
        Err(e) => {
            let mut res = core.results.borrow_mut();
            res[line].result = Verdict::Error;
            res[line].note = Some(e.to_string());
            return Err(e);
        }
    };
    match reply {
        Response::JobStarted { id } => {
            job.0.id.set(Some(id));
            core.results.borrow_mut()[line].job = Some(id);
            core.jobs.borrow_mut().push(job.clone());
        }
        Response::Job(status) => job.settle(status),
        other => {
            return err(format!(
                "agent {}: unexpected reply {other:?} to JobStart",
                h.0.name
            ))
        }
    }
    Ok(job)
}

fn text_of(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `Job(ID on HOST)`: what `print`, `${job}` and result data show.
impl std::fmt::Display for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Job({} on {})", self.id(), self.0.host.0.name)
    }
}

impl Job {
    fn core(&self) -> &Rc<Core> {
        &self.0.host.0.core
    }

    fn id(&self) -> i64 {
        self.0.id.get().map(|i| i as i64).unwrap_or(-1)
    }

    fn is_settled(&self) -> bool {
        self.0.state.borrow().status.is_some()
    }

    /// Records the finished job: verdict, figures, output files.
    fn settle(&self, status: JobStatus) {
        let core = self.core();
        let host = &self.0.host.0;
        self.0.id.set(Some(status.id));
        host.watch.forget(status.id);
        let exit = status.exit.clone().unwrap_or(JobExit {
            id: status.id,
            exit_code: None,
            signal: None,
            timed_out: false,
            duration: self.0.started.elapsed().as_secs_f64(),
            stopped: None,
        });
        let mut data = serde_json::Map::new();
        data.insert("exit_code".into(), exit.exit_code.into());
        if let Some(s) = exit.signal {
            data.insert("signal".into(), s.into());
        }
        data.insert(
            "duration".into(),
            (((exit.duration * 1000.0).round()) / 1000.0).into(),
        );
        let mut note = None;
        let mut result = Dynamic::UNIT;
        let killed = self.0.state.borrow().killed;
        let mut passed = if exit.timed_out {
            note = Some(format!(
                "killed by its timeout of {} s",
                self.0.opts.timeout.unwrap_or(DEFAULT_TIMEOUT).as_secs_f64()
            ));
            false
        } else if let (Some(why), Some(_)) = (killed, exit.stopped) {
            // Stopped by the recipe while it ran. A job that had already
            // ended when the kill came is judged by how it ended.
            note = Some(why.to_string());
            true
        } else {
            (exit.exit_code == Some(0)) != self.0.opts.expect_fail
        };
        if let Some(m) = &self.0.module {
            let (ok, r, figures) = m.judge(&status);
            result = r;
            data.extend(figures);
            // A module is judged by its result, then inverted by
            // `expect_fail` like a shell job (RECIPES.md §5); a timeout
            // still fails.
            passed = !exit.timed_out && (ok != self.0.opts.expect_fail);
        } else if self.0.opts.json {
            match serde_json::from_slice::<serde_json::Value>(&status.stdout) {
                Ok(v) => result = to_dynamic(&v),
                Err(e) => {
                    passed = false;
                    note = Some(format!("stdout is not JSON: {e}"));
                }
            }
        }
        if let Some(dir) = &core.jobs_dir {
            // A namespace's host name is "h1/ns": keep the file in jobs/.
            let base = dir.join(format!("{}-{}", host.name.replace('/', "_"), status.id));
            let _ = std::fs::write(base.with_extension("stdout"), &status.stdout);
            let _ = std::fs::write(base.with_extension("stderr"), &status.stderr);
        }
        {
            let mut res = core.results.borrow_mut();
            let line = &mut res[self.0.line];
            line.job = Some(status.id);
            line.result = Verdict::from_bool(passed);
            line.data = data;
            line.note = note;
        }
        {
            let mut st = self.0.state.borrow_mut();
            st.result = result;
            st.passed = passed;
            st.status = Some(status);
        }
        // `--pause-on-fail`: a failed job is a failure like a FAIL check.
        let rec = core.results.borrow()[self.0.line].clone();
        core.result_changed(&rec);
    }

    /// `JobWait`: `None` waits forever. Returns whether it finished.
    fn wait_for(&self, timeout: Option<Duration>) -> R<bool> {
        if self.is_settled() {
            return Ok(true);
        }
        let Some(id) = self.0.id.get() else {
            return Ok(true);
        };
        let host = &self.0.host.0;
        let req = Request::JobWait {
            id,
            timeout_ms: timeout.map(|t| t.as_millis() as u64),
        };
        match self.core().request(&host.client, req)? {
            Response::Job(st) if st.exit.is_some() => {
                self.settle(st);
                Ok(true)
            }
            Response::Job(_) => Ok(false),
            other => err(format!(
                "agent {}: unexpected reply {other:?} to JobWait",
                host.name
            )),
        }
    }

    /// Settles the job if the agent already said it exited (no request
    /// otherwise).
    fn refresh(&self) -> R<()> {
        if self.is_settled() {
            return Ok(());
        }
        let Some(id) = self.0.id.get() else {
            return Ok(());
        };
        if self
            .0
            .host
            .0
            .watch
            .with(id, |l| l.is_some_and(|l| l.exit.is_some()))
        {
            self.wait_for(Some(Duration::ZERO))?;
        }
        Ok(())
    }

    fn kill_with(&self, signal: i32, why: &'static str) -> R<()> {
        if self.is_settled() {
            return Ok(());
        }
        let Some(id) = self.0.id.get() else {
            return Ok(());
        };
        self.0.state.borrow_mut().killed = Some(why);
        let host = &self.0.host.0;
        self.core()
            .request(&host.client, Request::JobKill { id, signal })?;
        if !self.wait_for(Some(KILL_WAIT))? {
            self.core().request(
                &host.client,
                Request::JobKill {
                    id,
                    signal: libc::SIGKILL,
                },
            )?;
            self.wait_for(Some(KILL_WAIT))?;
        }
        Ok(())
    }

    fn wait_output(&self, re: &str, timeout: Dynamic) -> R<bool> {
        let t = seconds(timeout)?;
        self.wait_stream(false, re, t.as_secs_f64())
    }

    /// The job's description in the results.
    pub fn desc(&self) -> String {
        self.core().results.borrow()[self.0.line].desc.clone()
    }

    /// Waits until stdout (or stderr) matches `re`, the job ends, or
    /// `timeout` seconds pass. Event-driven: wakes on each output event.
    pub fn wait_stream(&self, stderr: bool, re: &str, timeout: f64) -> R<bool> {
        let re = regex::Regex::new(re).map_err(|e| format!("wait_output: bad regex: {e}"))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(timeout.max(0.0));
        let pick = move |out: &[u8], errb: &[u8]| text_of(if stderr { errb } else { out });
        let Some(id) = self.0.id.get() else {
            return Ok(self
                .0
                .state
                .borrow()
                .status
                .as_ref()
                .is_some_and(|st| re.is_match(&pick(&st.stdout, &st.stderr))));
        };
        let watch = Arc::clone(&self.0.host.0.watch);
        loop {
            let mut rx = watch.tick.subscribe();
            if let Some(st) = &self.0.state.borrow().status {
                return Ok(re.is_match(&pick(&st.stdout, &st.stderr)));
            }
            let (matched, exited) = watch.with(id, |l| match l {
                Some(l) => (re.is_match(&pick(&l.stdout, &l.stderr)), l.exit.is_some()),
                None => (false, false),
            });
            if matched {
                return Ok(true);
            }
            if exited {
                self.wait_for(Some(Duration::ZERO))?;
                continue;
            }
            let woke = self.core().block(async move {
                tokio::time::timeout_at(deadline, rx.changed())
                    .await
                    .is_ok()
            })?;
            if !woke {
                return Ok(false);
            }
        }
    }

    /// For a finished job, its exit code (`None` after a signal) and the
    /// last line of its stderr that mentions an error (else the last
    /// non-empty one: iperf3 ends with "iperf3: exiting"); `None` while it
    /// runs. Lets a module say why it ended before it was ready.
    pub fn ended(&self) -> Option<(Option<i32>, String)> {
        let _ = self.refresh();
        let st = self.0.state.borrow();
        let status = st.status.as_ref()?;
        let err = text_of(&status.stderr);
        let mut lines = err.lines().rev().filter(|l| !l.trim().is_empty());
        let last = lines
            .clone()
            .find(|l| l.to_ascii_lowercase().contains("error"))
            .or_else(|| lines.next());
        Some((
            status.exit.as_ref().and_then(|e| e.exit_code),
            last.unwrap_or("").to_string(),
        ))
    }

    /// `job.result` (module result or parsed JSON), `()` while running.
    pub fn result_value(&self) -> Dynamic {
        let _ = self.refresh();
        self.0.state.borrow().result.clone()
    }

    /// `kill()`: stops a background job; it passes.
    pub fn stop(&self) -> R<()> {
        self.kill_with(libc::SIGTERM, "stopped with kill()")
    }

    fn stdout_now(&self) -> R<String> {
        self.refresh()?;
        if let Some(st) = &self.0.state.borrow().status {
            return Ok(text_of(&st.stdout));
        }
        let id = self.0.id.get().unwrap_or_default();
        Ok(self
            .0
            .host
            .0
            .watch
            .with(id, |l| l.map(|l| text_of(&l.stdout)).unwrap_or_default()))
    }

    fn exit(&self) -> R<Option<JobExit>> {
        self.refresh()?;
        Ok(self
            .0
            .state
            .borrow()
            .status
            .as_ref()
            .and_then(|s| s.exit.clone()))
    }
}

/// `m.wait_any(jobs, timeout)`: waits until one of `jobs` has finished and
/// returns the first finished one in the array's order, or `None` when
/// `timeout` (`None`: forever) passes first. Event-driven like
/// [`Job::wait_stream`]: it wakes on each job event of the jobs' hosts.
pub fn wait_any(jobs: &[Job], timeout: Option<Duration>) -> R<Option<Job>> {
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    loop {
        // Subscribe before looking, so an exit between the two wakes us.
        let mut rxs: Vec<watch::Receiver<u64>> = jobs
            .iter()
            .map(|j| j.0.host.0.watch.tick.subscribe())
            .collect();
        for j in jobs {
            j.refresh()?;
            if j.is_settled() {
                return Ok(Some(j.clone()));
            }
        }
        let core = Rc::clone(jobs[0].core());
        let woke = core.block(async move {
            let any = futures::future::select_all(rxs.iter_mut().map(|r| Box::pin(r.changed())));
            match deadline {
                Some(d) => tokio::time::timeout_at(d, any).await.is_ok(),
                None => {
                    let _ = any.await;
                    true
                }
            }
        })?;
        if !woke {
            return Ok(None);
        }
    }
}

/// At the end of `test`: kills and notes every job still running.
pub fn end_of_test(core: &Core) {
    // The topology the HTML report draws: recorded before the host
    // objects (and the devices' cached state) are dropped.
    if let Some(run_dir) = core.jobs_dir.as_deref().and_then(|j| j.parent()) {
        let recs = super::host::device_records(core);
        if let Err(e) = crate::report::devices::append(run_dir, recs) {
            tracing::warn!(
                "cannot write {}: {e}",
                run_dir.join("devices.json").display()
            );
        }
    }
    core.hosts.borrow_mut().clear();
    let jobs: Vec<Job> = core.jobs.borrow_mut().drain(..).collect();
    for j in jobs {
        if !j.is_settled() {
            if let Err(e) = j.kill_with(libc::SIGTERM, "still running when test ended; killed") {
                let mut res = core.results.borrow_mut();
                let line = &mut res[j.0.line];
                if line.result == Verdict::Running {
                    line.result = Verdict::Error;
                    line.note = Some(format!("could not stop the job: {e}"));
                }
            }
        }
    }
}

fn signal_number(name: &str) -> R<i32> {
    let up = name.trim().to_ascii_uppercase();
    let full = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    nix::sys::signal::Signal::from_str(&full)
        .map(|s| s as i32)
        .or_else(|_| {
            err(format!(
                "unknown signal {name:?} (try \"SIGINT\", \"SIGTERM\", \"SIGKILL\")"
            ))
        })
}

fn opt_int(v: Option<i32>) -> Dynamic {
    v.map(|i| Dynamic::from(i as i64)).unwrap_or(Dynamic::UNIT)
}

/// Registers `Job`'s surface.
pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<Job>("Job");
    engine.register_get("id", |j: &mut Job| j.id());
    engine.register_get("finished", |j: &mut Job| -> R<bool> {
        j.refresh()?;
        Ok(j.is_settled())
    });
    engine.register_get("passed", |j: &mut Job| -> R<bool> {
        j.refresh()?;
        Ok(j.0.state.borrow().passed)
    });
    engine.register_get("exit_code", |j: &mut Job| -> R<Dynamic> {
        Ok(opt_int(j.exit()?.and_then(|e| e.exit_code)))
    });
    engine.register_get("signal", |j: &mut Job| -> R<Dynamic> {
        Ok(opt_int(j.exit()?.and_then(|e| e.signal)))
    });
    engine.register_get("stdout", |j: &mut Job| j.stdout_now());
    engine.register_get("stderr", |j: &mut Job| -> R<String> {
        j.refresh()?;
        Ok(j.0
            .state
            .borrow()
            .status
            .as_ref()
            .map(|s| text_of(&s.stderr))
            .unwrap_or_default())
    });
    engine.register_get("result", |j: &mut Job| -> R<Dynamic> {
        j.refresh()?;
        Ok(j.0.state.borrow().result.clone())
    });
    engine.register_get("duration", |j: &mut Job| -> R<f64> {
        Ok(match j.exit()? {
            Some(e) => e.duration,
            None => j.0.started.elapsed().as_secs_f64(),
        })
    });
    // Returns whether it finished, like `wait(timeout)` (always true here),
    // so `m.check(j.wait(), ..)` reads as it should.
    engine.register_fn("wait", |j: &mut Job| -> R<bool> { j.wait_for(None) });
    engine.register_fn("wait", |j: &mut Job, t: Dynamic| -> R<bool> {
        let t = seconds(t)?;
        j.wait_for(Some(t))
    });
    engine.register_fn("kill", |j: &mut Job| {
        j.kill_with(libc::SIGTERM, "stopped with kill()")
    });
    engine.register_fn("kill", |j: &mut Job, sig: &str| {
        let s = signal_number(sig)?;
        j.kill_with(s, "stopped with kill()")
    });
    engine.register_fn("wait_output", |j: &mut Job, re: &str, t: Dynamic| {
        j.wait_output(re, t)
    });
    engine.register_fn("to_string", |j: &mut Job| j.to_string());
    let _ = to_json;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_options() {
        let mut m = Map::new();
        m.insert("bg".into(), true.into());
        m.insert(
            "env".into(),
            Dynamic::from_map([("A".into(), Dynamic::from(1_i64))].into_iter().collect()),
        );
        let o = RunOpts::parse(&m).unwrap();
        assert!(o.bg && o.env == vec![("A".to_string(), "1".to_string())]);
        m.insert("timeout".into(), 5_i64.into());
        assert!(RunOpts::parse(&m)
            .unwrap_err()
            .to_string()
            .contains("foreground"));
        let mut m = Map::new();
        m.insert("tiemout".into(), 5_i64.into());
        let e = RunOpts::parse(&m).unwrap_err().to_string();
        assert!(e.contains("tiemout") && e.contains("expect_fail"), "{e}");
        let mut m = Map::new();
        m.insert("timeout".into(), 0.5_f64.into());
        assert_eq!(
            RunOpts::parse(&m).unwrap().timeout,
            Some(Duration::from_millis(500))
        );
    }

    #[test]
    fn signals() {
        assert_eq!(signal_number("SIGINT").unwrap(), libc::SIGINT);
        assert_eq!(signal_number("kill").unwrap(), libc::SIGKILL);
        assert!(signal_number("SIGNOPE").is_err());
    }
}
