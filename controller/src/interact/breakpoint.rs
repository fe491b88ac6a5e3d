//! Breakpoints (RECIPES.md §4 `m.breakpoint(why)`, §9 `--pause-on-fail`):
//! the test stops with everything configured, the terminal shows how to
//! enter each host and what is configured on it, and a prompt waits.
//! Enter continues; `q` ends the test (cleanup runs as after any error);
//! `HOST COMMAND` runs `sh -c COMMAND` on that host through its agent and
//! prints the output (the way into a pool machine, which has no shell
//! path from here).
//!
//! The prompt is read on the recipe thread through [`Core::block`], so
//! Ctrl-C and a lost agent end the pause like any other wait, and the
//! runtime keeps running meanwhile: heartbeats flow, agents stay. When
//! stdin is not a terminal a breakpoint is a no-op noted in the run log.

use std::cell::Cell;
use std::io::{BufRead, Write};
use std::rc::Rc;
use std::sync::OnceLock;

use lnst_common::job::JobSpec;
use lnst_common::{Request, Response};
use rhai::EvalAltResult;

use super::enter::Entry;
use crate::client::AgentClient;
use crate::recipe::api::{Core, R};
use crate::report::{ResultRec, Verdict};

/// The text of the error that ends a test at `q` (not catchable by the
/// recipe: Rhai's `try` does not catch a termination).
pub const QUIT: &str = "ended at a breakpoint (q)";

/// Longest a command typed at the prompt may run.
const PROMPT_JOB_TIMEOUT_MS: u64 = 30_000;

/// One host as the prompt knows it.
pub struct PauseHost {
    pub name: String,
    pub machine: String,
    pub client: AgentClient,
    pub entry: Entry,
}

/// The breakpoint state of one match.
pub struct Pause {
    /// stdin is a terminal: a breakpoint waits; otherwise it is only logged.
    interactive: bool,
    /// `--pause-on-fail`: the first FAIL or ERROR pauses.
    on_fail: bool,
    /// The first failure has paused already.
    failed_once: Cell<bool>,
    /// `q` was answered: every later native call ends the test.
    quit: Cell<bool>,
    hosts: Vec<PauseHost>,
    /// Where "breakpoint ignored" and the like go (the run log).
    log: Rc<dyn Fn(String)>,
}

impl Pause {
    /// No breakpoints at all (unit tests, tools that build a `Core`).
    pub fn off() -> Pause {
        Pause {
            interactive: false,
            on_fail: false,
            failed_once: Cell::new(false),
            quit: Cell::new(false),
            hosts: Vec::new(),
            log: Rc::new(|_| {}),
        }
    }

    /// Breakpoints for one match: `interactive` when stdin is a terminal.
    pub fn new(
        interactive: bool,
        on_fail: bool,
        hosts: Vec<PauseHost>,
        log: Rc<dyn Fn(String)>,
    ) -> Pause {
        Pause {
            interactive,
            on_fail,
            failed_once: Cell::new(false),
            quit: Cell::new(false),
            hosts,
            log,
        }
    }

    /// Whether `q` ended the test.
    pub fn quitting(&self) -> bool {
        self.quit.get()
    }

    /// The error every native call returns once `q` was answered.
    pub fn quit_error() -> Box<EvalAltResult> {
        EvalAltResult::ErrorTerminated(QUIT.into(), rhai::Position::NONE).into()
    }

    /// `m.breakpoint(why)`.
    pub fn breakpoint(&self, core: &Core, why: &str) -> R<()> {
        self.pause(core, &format!("breakpoint: {why}"))
    }

    /// After a result is recorded: the first FAIL or ERROR pauses with
    /// `--pause-on-fail` (not after Ctrl-C, a lost agent, or `q`).
    pub fn after_result(&self, core: &Core, r: &ResultRec) {
        if !self.on_fail || self.failed_once.get() || self.quit.get() {
            return;
        }
        if !matches!(r.result, Verdict::Fail | Verdict::Error)
            || core.cancel.is_cancelled()
            || core.infra.borrow().is_some()
        {
            return;
        }
        self.failed_once.set(true);
        let what = match (&r.host, r.job) {
            (Some(h), Some(j)) => format!("{h} job {j}: {}", r.desc),
            _ => r.desc.clone(),
        };
        // A `q` here is seen by the next native call (Core::block).
        let _ = self.pause(core, &format!("{} {what}", r.result.as_str()));
    }

    /// The test raised an error: with `--pause-on-fail`, pause before its
    /// jobs are stopped (the error's result line is recorded after).
    pub fn after_error(&self, core: &Core, msg: &str) {
        if crate::recipe::engine::is_interrupt(msg) || msg.ends_with(QUIT) {
            return;
        }
        let rec = ResultRec {
            host: None,
            job: None,
            desc: msg.to_string(),
            result: Verdict::Error,
            data: Default::default(),
            note: None,
            at: 0.0,
        };
        self.after_result(core, &rec);
    }

    fn pause(&self, core: &Core, title: &str) -> R<()> {
        if self.quit.get() {
            return Err(Self::quit_error());
        }
        if !self.interactive {
            (self.log)(format!("{title}: not paused (stdin is not a terminal)"));
            return Ok(());
        }
        (self.log)(format!("{title}: paused"));
        super::progress::pause();
        let _shown = ResumeOnDrop;
        let mut text = format!(
            "\n== {title} ({:.1} s into the test) ==\n",
            core.started.elapsed().as_secs_f64()
        );
        text.push_str(&results_so_far(&core.results.borrow()));
        for h in &self.hosts {
            text.push_str(&format!("\n{}  (machine {})\n", h.name, h.machine));
            for l in h.entry.how(&h.name) {
                text.push_str(&format!("    enter: {l}\n"));
            }
            text.push_str(&devices_of(core, h));
        }
        text.push_str(&format!(
            "\nEnter continues; q ends the test (cleanup runs); `HOST COMMAND` runs COMMAND on HOST ({}).\n",
            self.hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", ")
        ));
        eprint!("{text}");
        loop {
            eprint!("lnst paused> ");
            let _ = std::io::stderr().flush();
            let line = match core.block(read_line())? {
                Some(l) => l,
                None => {
                    (self.log)(format!("{title}: stdin closed; continuing"));
                    eprintln!();
                    return Ok(());
                }
            };
            let line = line.trim();
            if line.is_empty() {
                (self.log)(format!("{title}: continued"));
                eprintln!("lnst: continuing");
                return Ok(());
            }
            if line == "q" || line == "quit" {
                (self.log)(format!("{title}: q: the test ends"));
                eprintln!("lnst: ending the test; cleaning up");
                self.quit.set(true);
                return Err(Self::quit_error());
            }
            let (host, cmd) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            match self.hosts.iter().find(|h| h.name == host) {
                Some(h) if !cmd.trim().is_empty() => {
                    (self.log)(format!("{title}: {host}: {}", cmd.trim()));
                    eprint!("{}", run_on(core, h, cmd.trim())?);
                }
                _ => eprintln!(
                    "lnst: Enter continues, q ends the test, `HOST COMMAND` runs a command (hosts: {})",
                    self.hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", ")
                ),
            }
        }
    }
}

/// Lets the status line back when the pause ends, however it ends.
struct ResumeOnDrop;
impl Drop for ResumeOnDrop {
    fn drop(&mut self) {
        super::progress::resume();
    }
}

/// The results recorded so far, one line each (the failures in full).
fn results_so_far(results: &[ResultRec]) -> String {
    if results.is_empty() {
        return "no results yet\n".to_string();
    }
    let mut s = String::from("results so far:\n");
    for r in results {
        let who = match (&r.host, r.job) {
            (Some(h), Some(j)) => format!("{h}#{j} "),
            (Some(h), None) => format!("{h} "),
            _ => String::new(),
        };
        s.push_str(&format!("  {:5} {who}{}\n", r.result.as_str(), r.desc));
    }
    s
}

/// The host's devices as `ip -br addr` shows them (what the test
/// configured), or why they could not be listed.
fn devices_of(core: &Core, h: &PauseHost) -> String {
    let c = h.client.clone();
    let reply = core.block(async move { c.request(Request::Devices { netns: None }).await });
    let list = match reply {
        Ok(Ok(Response::Devices(list))) => list,
        Ok(Ok(other)) => return format!("    (unexpected reply {other:?})\n"),
        Ok(Err(e)) => return format!("    (cannot list devices: {e})\n"),
        Err(e) => return format!("    (cannot list devices: {e})\n"),
    };
    let mut s = String::new();
    for d in list.iter().filter(|d| d.name != "lo") {
        let master = d
            .master
            .as_ref()
            .map(|m| format!(" master {m}"))
            .unwrap_or_default();
        let kind = if d.kind.is_empty() {
            String::new()
        } else {
            format!(" {}", d.kind)
        };
        s.push_str(&format!(
            "    {:<12} {:<4} mtu {:<5}{kind}{master} {}\n",
            d.name,
            if d.up { "UP" } else { "DOWN" },
            d.mtu,
            d.ips.join(" ")
        ));
    }
    s
}

/// Runs `cmd` on the host and returns its output and exit for the terminal.
fn run_on(core: &Core, h: &PauseHost, cmd: &str) -> R<String> {
    let mut spec = JobSpec::shell(cmd);
    spec.wait = true;
    spec.timeout_ms = Some(PROMPT_JOB_TIMEOUT_MS);
    let c = h.client.clone();
    let reply = core.block(async move { c.request(Request::JobStart(spec)).await })?;
    Ok(match reply {
        Ok(Response::Job(st)) => {
            let mut s = String::from_utf8_lossy(&st.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&st.stderr));
            if !s.is_empty() && !s.ends_with('\n') {
                s.push('\n');
            }
            match st.exit {
                Some(e) if e.exit_code == Some(0) => s,
                Some(e) => match (e.exit_code, e.signal, e.timed_out) {
                    (_, _, true) => format!("{s}[{}: timed out]\n", h.name),
                    (Some(c), _, _) => format!("{s}[{}: exit {c}]\n", h.name),
                    (None, sig, _) => format!("{s}[{}: signal {}]\n", h.name, sig.unwrap_or(0)),
                },
                None => format!("{s}[{}: still running]\n", h.name),
            }
        }
        Ok(other) => format!("[{}: unexpected reply {other:?}]\n", h.name),
        Err(e) => format!("[{}: {e}]\n", h.name),
    })
}

/// The breakpoints of one match of a run: each host's agent and way in
/// (`lab`, or the pool machine's address).
pub fn for_match(
    on_fail: bool,
    clients: &std::collections::BTreeMap<String, AgentClient>,
    mapping: &crate::mapper::Mapping,
    lab: Option<&dyn crate::lab::Lab>,
    pool: &crate::pool::Pool,
    log: Rc<dyn Fn(String)>,
) -> Pause {
    let hosts = mapping
        .iter()
        .filter_map(|(host, hm)| {
            let address = pool
                .machines
                .iter()
                .find(|m| m.id == hm.machine)
                .map(|m| m.address.clone())
                .unwrap_or_default();
            Some(PauseHost {
                name: host.clone(),
                machine: hm.machine.clone(),
                client: clients.get(host)?.clone(),
                entry: Entry::of(lab, host, &address),
            })
        })
        .collect();
    Pause::new(super::stdin_is_terminal(), on_fail, hosts, log)
}

/// The prompt's input: one thread reads stdin for the whole process and
/// hands lines over, so a pause that Ctrl-C ended leaves no reader
/// behind to steal the next pause's line.
struct Lines {
    /// An async lock: the receiver is held while the prompt waits.
    rx: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Option<String>>>,
}

fn lines() -> &'static Lines {
    static LINES: OnceLock<Lines> = OnceLock::new();
    LINES.get_or_init(|| {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let _ = std::thread::Builder::new()
            .name("lnst-stdin".into())
            .spawn(move || {
                let stdin = std::io::stdin();
                loop {
                    let mut l = String::new();
                    match stdin.lock().read_line(&mut l) {
                        Ok(0) | Err(_) => {
                            let _ = tx.send(None);
                            return;
                        }
                        Ok(_) => {
                            if tx.send(Some(l)).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        Lines {
            rx: tokio::sync::Mutex::new(rx),
        }
    })
}

/// The next line typed at the prompt (type-ahead from before the pause
/// is dropped); `None` at end of input.
async fn read_line() -> Option<String> {
    let mut rx = lines().rx.lock().await;
    while let Ok(stale) = rx.try_recv() {
        stale.as_ref()?;
    }
    rx.recv().await.flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_so_far_names_host_and_job() {
        let r = ResultRec {
            host: Some("h1".into()),
            job: Some(3),
            desc: "ping 10.0.0.2".into(),
            result: Verdict::Fail,
            data: Default::default(),
            note: None,
            at: 0.0,
        };
        let s = results_so_far(&[r]);
        assert!(s.contains("FAIL  h1#3 ping 10.0.0.2"), "{s}");
        assert_eq!(results_so_far(&[]), "no results yet\n");
    }
}
