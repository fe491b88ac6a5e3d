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
//! [`super::clean_stale`] remove what a killed controller left behind.
//! [`NetnsLab`] tears down on drop, so errors and panics clean up too.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{delete_namespaces, finish, ip_batch, new_runid, write_owner, Lab, LabError, LABS_DIR};
use crate::client::AgentAddr;
use crate::mapper::Requirements;

/// How long an agent may take to print `READY`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running netns lab.
pub struct NetnsLab {
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

impl NetnsLab {
    /// Builds the lab for `req` and starts its agents. `logs`: where each
    /// agent's stderr goes (`agent-<host>.log`).
    pub fn build(req: &Requirements, agent_bin: &Path, logs: &Path) -> Result<NetnsLab, LabError> {
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
            move |error| LabError::Record { path, error }
        };
        write_owner(&record)?;
        let mut lab = NetnsLab {
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
                // A plain wire, like the veth pairs: no multicast snooping.
                lab_lines.push(format!("link add {br} type bridge mcast_snooping 0"));
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

impl Lab for NetnsLab {
    fn kind(&self) -> &'static str {
        "netns"
    }
    fn runid(&self) -> &str {
        &self.runid
    }
    fn addrs(&self) -> &BTreeMap<String, AgentAddr> {
        &self.addrs
    }
    fn build_time(&self) -> Duration {
        self.build_time
    }
    fn describe(&self) -> String {
        format!("namespaces {}", self.namespaces.join(", "))
    }
    fn teardown(&mut self) -> Vec<String> {
        NetnsLab::teardown(self)
    }
}

impl Drop for NetnsLab {
    fn drop(&mut self) {
        for e in self.teardown() {
            tracing::warn!("lab teardown: {e}");
        }
    }
}
