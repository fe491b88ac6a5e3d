//! The netns lab: the default "pool" when `run` gets no `--pool`
//! (RECIPES.md §9). Per host requirement a network namespace
//! `lnst-<runid>-<host>` (the `ip netns` convention, so `ip netns list`
//! shows it) running `lnst-agent --lab` on a unix socket; per `net` label
//! an L2 segment — a veth pair for two NICs, a bridge in the lab namespace
//! `lnst-<runid>-lab` with one veth per NIC otherwise; NICs named as the
//! recipe names them.
//!
//! Bring-up is a handful of processes: one `ip -batch` creates every
//! namespace and every veth (each end directly in its namespace), then in
//! parallel one `ip -n NS -batch` per namespace (loopback up; bridges and
//! their ports in the lab namespace) and one `ip netns exec NS lnst-agent`
//! per host. The agents are spawned from the run's own long-lived thread:
//! they use `PR_SET_PDEATHSIG`, which fires when the spawning *thread*
//! exits.
//!
//! A record under `/run/lnst/labs/<runid>/` (owner pid and start time,
//! namespaces, agent pids; also the sockets and agent state dirs) lets
//! [`clean_stale`] remove what a killed controller left behind. [`Lab`]
//! tears down on drop, so errors and panics clean up too.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::AgentAddr;
use crate::mapper::Requirements;
use crate::pool::{Machine, Pool, PoolNic};

/// Where lab records live.
pub const LABS_DIR: &str = "/run/lnst/labs";

/// How long an agent may take to print `READY`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the lab could not be built (exit 3).
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("the netns lab needs root (network namespaces); run as root or give --pool DIR")]
    NotRoot,
    #[error("agent binary {0} not found; build it (`cargo build -p lnst-agent`) or give --agent-bin PATH")]
    NoAgent(PathBuf),
    #[error("cannot write lab record {path}: {source}")]
    Record {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{cmd}` failed: {message}")]
    Command { cmd: String, message: String },
    #[error("agent for host {host} did not start: {message} (its log: {log})")]
    Agent {
        host: String,
        message: String,
        log: PathBuf,
    },
}

/// The pool a lab stands for: one machine per host requirement (id = host
/// name, params = the requirement's, first of an array), NICs named as the
/// recipe names them; a label is a network, an unlabelled NIC gets a
/// network of its own.
pub fn pool_for(req: &Requirements) -> Pool {
    let machines = req
        .hosts
        .iter()
        .map(|h| Machine {
            id: h.name.clone(),
            address: String::new(),
            params: h
                .params
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::Array(a) => a.first().cloned().unwrap_or(Value::Null),
                        v => v.clone(),
                    };
                    (k.clone(), v)
                })
                .collect(),
            nics: h
                .nics
                .iter()
                .map(|n| {
                    let net = n
                        .net
                        .clone()
                        .unwrap_or_else(|| format!("{}.{}", h.name, n.name));
                    let mut attrs: BTreeMap<String, Value> = n
                        .attrs
                        .iter()
                        .map(|(k, v)| match v {
                            Value::Array(a) => {
                                (k.clone(), a.first().cloned().unwrap_or(Value::Null))
                            }
                            v => (k.clone(), v.clone()),
                        })
                        .collect();
                    attrs.insert("name".into(), Value::String(n.name.clone()));
                    attrs.insert("net".into(), Value::String(net.clone()));
                    attrs
                        .entry("driver".into())
                        .or_insert_with(|| "veth".into());
                    PoolNic {
                        name: n.name.clone(),
                        net: Some(net),
                        attrs,
                    }
                })
                .collect(),
            extra: BTreeMap::new(),
            file: PathBuf::from("(netns lab)"),
        })
        .collect();
    Pool { machines }
}

/// A running lab.
pub struct Lab {
    pub runid: String,
    /// `/run/lnst/labs/<runid>`.
    pub record: PathBuf,
    /// Host requirement → its agent's address.
    pub addrs: BTreeMap<String, AgentAddr>,
    /// Every namespace created, host namespaces first.
    pub namespaces: Vec<String>,
    agents: Vec<(String, Child, Option<ChildStdout>)>,
    /// Bring-up time, for the report.
    pub build_time: Duration,
    done: bool,
}

fn ip_batch(netns: Option<&str>, lines: &[String]) -> Result<Child, LabError> {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    cmd.args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| LabError::Command {
        cmd: "ip -batch -".into(),
        message: e.to_string(),
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(lines.join("\n").as_bytes());
        let _ = stdin.write_all(b"\n");
    }
    Ok(child)
}

fn finish(child: Child, what: &str) -> Result<(), LabError> {
    let out = child.wait_with_output().map_err(|e| LabError::Command {
        cmd: what.into(),
        message: e.to_string(),
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LabError::Command {
            cmd: what.into(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// A run id short enough for namespace and socket names, unique per
/// process and start.
pub fn new_runid() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:x}{:03x}", std::process::id(), (nanos >> 10) & 0xfff)
}

/// Start time of a process (field 22 of /proc/PID/stat), to tell a live
/// owner from a reused pid.
fn start_time(pid: u32) -> Option<String> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    rest.split_whitespace().nth(19).map(str::to_string)
}

impl Lab {
    /// Builds the lab for `req` and starts its agents. `logs`: where each
    /// agent's stderr goes (`agent-<host>.log`).
    pub fn build(req: &Requirements, agent_bin: &Path, logs: &Path) -> Result<Lab, LabError> {
        let t0 = Instant::now();
        if !nix::unistd::geteuid().is_root() {
            return Err(LabError::NotRoot);
        }
        if !agent_bin.is_file() {
            return Err(LabError::NoAgent(agent_bin.to_path_buf()));
        }
        if let Some(h) = req
            .hosts
            .iter()
            .find(|h| h.nics.iter().any(|n| n.name == "lo"))
        {
            return Err(LabError::Command {
                cmd: "lab plan".into(),
                message: format!(
                    "host {}: a NIC named \"lo\" collides with the loopback device of its namespace; rename it in the recipe",
                    h.name
                ),
            });
        }
        let runid = new_runid();
        let _span = tracing::info_span!("lab", runid = %runid).entered();
        let record = Path::new(LABS_DIR).join(&runid);
        let rec_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LabError::Record { path, source }
        };
        fs::create_dir_all(&record).map_err(rec_err(&record))?;
        let me = std::process::id();
        let owner = format!("{me} {}\n", start_time(me).unwrap_or_default());
        fs::write(record.join("owner"), owner).map_err(rec_err(&record.join("owner")))?;
        let mut lab = Lab {
            runid: runid.clone(),
            record: record.clone(),
            addrs: BTreeMap::new(),
            namespaces: Vec::new(),
            agents: Vec::new(),
            build_time: Duration::ZERO,
            done: false,
        };
        let ns_of = |h: &str| format!("lnst-{runid}-{h}");
        let lab_ns = format!("lnst-{runid}-lab");
        // Segments: label → [(host, nic)].
        let mut segs: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for h in &req.hosts {
            for n in &h.nics {
                let label = n
                    .net
                    .clone()
                    .unwrap_or_else(|| format!("\0{}.{}", h.name, n.name));
                segs.entry(label)
                    .or_default()
                    .push((h.name.clone(), n.name.clone()));
            }
        }
        let need_lab_ns = segs.values().any(|v| v.len() != 2);
        lab.namespaces = req.hosts.iter().map(|h| ns_of(&h.name)).collect();
        if need_lab_ns {
            lab.namespaces.push(lab_ns.clone());
        }
        fs::write(record.join("namespaces"), lab.namespaces.join("\n") + "\n")
            .map_err(rec_err(&record.join("namespaces")))?;
        // 1. namespaces and veths in one `ip -batch`.
        let mut lines: Vec<String> = lab
            .namespaces
            .iter()
            .map(|ns| format!("netns add {ns}"))
            .collect();
        let mut lab_lines = Vec::new();
        let mut port = 0usize;
        for (bridge_no, ends) in segs.values().enumerate() {
            if ends.len() == 2 {
                let (a, b) = (&ends[0], &ends[1]);
                lines.push(format!(
                    "link add {} netns {} type veth peer name {} netns {}",
                    a.1,
                    ns_of(&a.0),
                    b.1,
                    ns_of(&b.0)
                ));
                continue;
            }
            let br = format!("br{bridge_no}");
            if ends.len() > 2 {
                lab_lines.push(format!("link add {br} type bridge"));
                lab_lines.push(format!("link set {br} up"));
            }
            for (h, n) in ends {
                port += 1;
                let p = format!("p{port}");
                lines.push(format!(
                    "link add {n} netns {} type veth peer name {p} netns {lab_ns}",
                    ns_of(h)
                ));
                if ends.len() > 2 {
                    lab_lines.push(format!("link set {p} master {br}"));
                }
                lab_lines.push(format!("link set {p} up"));
            }
        }
        finish(ip_batch(None, &lines)?, "ip -batch (namespaces and veths)")?;
        // 2. in parallel: per-namespace set-up and the agents.
        let mut setups = Vec::new();
        for (i, ns) in lab.namespaces.iter().enumerate() {
            let mut l = vec!["link set lo up".to_string()];
            if need_lab_ns && i == lab.namespaces.len() - 1 {
                l.extend(lab_lines.iter().cloned());
            }
            setups.push((ns.clone(), ip_batch(Some(ns), &l)?));
        }
        let mut pids = String::new();
        for h in &req.hosts {
            let sock = record.join(format!("{}.sock", h.name));
            let state = record.join(format!("state-{}", h.name));
            let log = logs.join(format!("agent-{}.log", h.name));
            let stderr = fs::File::create(&log).map_err(rec_err(&log))?;
            // Own process group: a terminal's Ctrl-C reaches the controller,
            // which then ends the sessions in order, not the agents directly.
            let mut child = Command::new("ip")
                .process_group(0)
                .args(["netns", "exec", &ns_of(&h.name)])
                .arg(agent_bin)
                .arg("--lab")
                .arg("--unix")
                .arg(&sock)
                .arg("--state-dir")
                .arg(&state)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(stderr)
                .spawn()
                .map_err(|e| LabError::Agent {
                    host: h.name.clone(),
                    message: e.to_string(),
                    log: log.clone(),
                })?;
            pids.push_str(&format!("{}\n", child.id()));
            let out = child.stdout.take();
            lab.agents.push((h.name.clone(), child, out));
            lab.addrs.insert(h.name.clone(), AgentAddr::Unix(sock));
        }
        let _ = fs::write(record.join("agents"), pids);
        for (ns, c) in setups {
            finish(c, &format!("ip -n {ns} -batch"))?;
        }
        // 3. wait for every READY.
        let (tx, rx) = mpsc::channel();
        for (host, _, out) in lab.agents.iter_mut() {
            let Some(out) = out.take() else { continue };
            let tx = tx.clone();
            let host = host.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(out);
                let mut line = String::new();
                let res = match r.read_line(&mut line) {
                    Ok(n) if n > 0 && line.starts_with("READY") => Ok(()),
                    Ok(_) => Err(format!("exited without READY (said {:?})", line.trim())),
                    Err(e) => Err(e.to_string()),
                };
                let _ = tx.send((host, res, r));
            });
        }
        drop(tx);
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut ready = 0;
        while ready < lab.agents.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((_, Ok(()), r)) => {
                    ready += 1;
                    // Keep the pipe open: the agent may write more.
                    std::mem::forget(r);
                }
                Ok((host, Err(message), _)) => {
                    let log = logs.join(format!("agent-{host}.log"));
                    return Err(LabError::Agent { host, message, log });
                }
                Err(_) => {
                    return Err(LabError::Agent {
                        host: "(some)".into(),
                        message: format!("no READY within {READY_TIMEOUT:?}"),
                        log: logs.to_path_buf(),
                    })
                }
            }
        }
        lab.build_time = t0.elapsed();
        tracing::info!(runid = %lab.runid, ms = lab.build_time.as_secs_f64() * 1e3, "lab up");
        Ok(lab)
    }

    /// Stops the agents (they undo their changes), deletes the namespaces
    /// and the record. Keeps going after an error; returns them all.
    pub fn teardown(&mut self) -> Vec<String> {
        if self.done {
            return Vec::new();
        }
        self.done = true;
        let mut errors = Vec::new();
        for (_, c, _) in &self.agents {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for (host, c, _) in &mut self.agents {
            loop {
                match c.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    _ => {
                        errors.push(format!("agent for {host} did not stop on SIGTERM; killed"));
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                }
            }
        }
        errors.extend(delete_namespaces(&self.namespaces));
        if let Err(e) = fs::remove_dir_all(&self.record) {
            errors.push(format!("cannot remove {}: {e}", self.record.display()));
        }
        errors
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for e in self.teardown() {
            tracing::warn!("lab teardown: {e}");
        }
    }
}

/// `ip netns del` for each that exists; returns the errors.
fn delete_namespaces(names: &[String]) -> Vec<String> {
    let present: Vec<String> = names
        .iter()
        .filter(|n| Path::new("/run/netns").join(n).exists())
        .map(|n| format!("netns del {n}"))
        .collect();
    if present.is_empty() {
        return Vec::new();
    }
    match ip_batch(None, &present).and_then(|c| finish(c, "ip -batch (netns del)")) {
        Ok(()) => Vec::new(),
        Err(e) => vec![e.to_string()],
    }
}

/// Removes labs whose controller is gone (`lnst-ctl lab clean`, and at the
/// start of every `run`). Returns what was cleaned, one line each.
pub fn clean_stale() -> Vec<String> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(LABS_DIR) else {
        return out;
    };
    for e in rd.flatten() {
        let dir = e.path();
        let runid = e.file_name().to_string_lossy().into_owned();
        let owner = fs::read_to_string(dir.join("owner")).unwrap_or_default();
        let mut it = owner.split_whitespace();
        let pid: Option<u32> = it.next().and_then(|p| p.parse().ok());
        let st = it.next().map(str::to_string);
        let alive = pid.is_some_and(|p| start_time(p).is_some() && start_time(p) == st);
        if alive {
            continue;
        }
        for pid in fs::read_to_string(dir.join("agents"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse::<i32>().ok())
        {
            let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmd).contains("lnst-agent") {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let mut names: Vec<String> = fs::read_to_string(dir.join("namespaces"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect();
        // Also any namespace of that run the record missed.
        if let Ok(rd) = fs::read_dir("/run/netns") {
            for n in rd.flatten() {
                let n = n.file_name().to_string_lossy().into_owned();
                if n.starts_with(&format!("lnst-{runid}-")) && !names.contains(&n) {
                    names.push(n);
                }
            }
        }
        let errs = delete_namespaces(&names);
        let _ = fs::remove_dir_all(&dir);
        out.push(format!(
            "lab {runid} (owner pid {} gone): removed namespaces {}{}",
            pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
            if names.is_empty() {
                "(none)".to_string()
            } else {
                names.join(", ")
            },
            if errs.is_empty() {
                String::new()
            } else {
                format!("; errors: {}", errs.join("; "))
            }
        ));
    }
    out
}
