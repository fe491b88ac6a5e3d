//! Labs: throwaway test hosts that `lnst-ctl run` builds on this machine
//! when it gets no `--pool` (RECIPES.md §9). Every lab kind provides the
//! same thing to a run: one agent per host requirement, reachable at an
//! [`AgentAddr`], NICs named as the recipe names them, one L2 segment per
//! `net` label, and a teardown that removes everything — also after a
//! killed controller, through the record under [`LABS_DIR`] that
//! [`clean_stale`] reads.
//!
//! - [`netns`]: one network namespace and `lnst-agent` per host (default);
//! - [`vm`]: one qemu guest per host, booting a full distribution kernel.

pub mod netns;
pub mod vm;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::client::AgentAddr;
use crate::mapper::Requirements;
use crate::pool::{Machine, Pool, PoolNic};

pub use netns::NetnsLab;
pub use vm::VmLab;

/// A lab that is up: its agents are ready for `Session::connect`.
pub trait Lab {
    /// `"netns"` or `"vm"`, for messages.
    fn kind(&self) -> &'static str;
    /// The run id that names its namespaces and record.
    fn runid(&self) -> &str;
    /// Host requirement → its agent's address.
    fn addrs(&self) -> &BTreeMap<String, AgentAddr>;
    /// Bring-up time, for the report.
    fn build_time(&self) -> Duration;
    /// One line for the run log: what was built.
    fn describe(&self) -> String;
    /// Params the lab adds to a host's `h.params` (the VM lab: `kernel`).
    fn host_params(&self, _host: &str) -> BTreeMap<String, Value> {
        BTreeMap::new()
    }
    /// Why a host's agent was lost, when the lab knows more than the
    /// connection did (the VM lab: qemu exited, with its console tail).
    fn lost(&self, _host: &str) -> Option<String> {
        None
    }
    /// How long an agent may stay silent before it counts as lost, when
    /// the lab needs longer than the default (TCG guests on a loaded host
    /// stall for seconds).
    fn silence_timeout(&self) -> Option<Duration> {
        None
    }
    /// Whether its agents close the connection after `Goodbye` (an agent
    /// on a virtio-serial port cannot: the VM lab says false, and the
    /// session does not wait for it).
    fn agents_close(&self) -> bool {
        true
    }
    /// Stops the agents (they undo their changes) and removes everything
    /// the lab created. Keeps going after an error; returns them all.
    fn teardown(&mut self) -> Vec<String>;
}

/// Which lab `run` builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabKind {
    Netns,
    Vm,
}

impl LabKind {
    pub fn name(self) -> &'static str {
        match self {
            LabKind::Netns => "netns",
            LabKind::Vm => "vm",
        }
    }
    /// The driver a NIC requirement's `driver` param (`None`: not given)
    /// gets on the lab, as `dev.driver` will report it: the netns lab's
    /// NICs are veths; the VM lab emulates a model per NIC
    /// ([`vm::nic`]). A driver the lab cannot give is an error that says
    /// which it can.
    fn nic_driver(self, want: Option<&Value>) -> Result<&'static str, String> {
        match self {
            LabKind::Netns => match want {
                None => Ok("veth"),
                Some(w) if crate::mapper::value_matches(w, &Value::from("veth")) => Ok("veth"),
                Some(w) => Err(format!(
                    "driver {w}: the netns lab's NICs are veths (driver \"veth\"); \
                     --lab vm emulates NICs with driver {}, --pool has real ones",
                    vm::nic::accepted()
                )),
            },
            LabKind::Vm => vm::nic::for_driver(want).map(|m| m.driver),
        }
    }
}

/// The lab the command line asks for: `--lab` (default netns; `--kernel`
/// implies vm). A lab option next to `--pool` is a usage error.
pub fn kind_of(lab: Option<&str>, pool: bool, kernel: bool) -> anyhow::Result<LabKind> {
    if pool && (lab.is_some() || kernel) {
        anyhow::bail!(
            "--lab and --kernel build a lab on this machine; they cannot be combined with --pool"
        );
    }
    match (lab, kernel) {
        (Some("netns"), true) => {
            anyhow::bail!("--kernel boots VMs; use it with --lab vm (the netns lab runs on this machine's kernel)")
        }
        (Some("vm"), _) | (None, true) => Ok(LabKind::Vm),
        (Some("netns"), false) | (None, false) => Ok(LabKind::Netns),
        (Some(k), _) => anyhow::bail!("unknown lab {k:?}: use --lab netns or --lab vm"),
    }
}

/// What `run` passes to a lab's build.
#[derive(Clone)]
pub struct LabOptions {
    pub kind: LabKind,
    /// The `lnst-agent` binary the hosts run (beside `lnst-ctl`, or
    /// `--agent-bin`).
    pub agent_bin: PathBuf,
    /// `--kernel`: a path or a version (VM lab).
    pub kernel: Option<String>,
    /// `--accel` (VM lab).
    pub accel: Option<String>,
    /// The run directory: agent logs, guest consoles.
    pub run_dir: PathBuf,
    /// Ctrl-C: a long bring-up (VM boot) stops waiting.
    pub cancel: crate::recipe::Cancel,
}

/// Builds the lab `opts.kind` for `req`.
pub fn build(req: &Requirements, opts: &LabOptions) -> Result<Box<dyn Lab>, LabError> {
    Ok(match opts.kind {
        LabKind::Netns => Box::new(NetnsLab::build(req, &opts.agent_bin, &opts.run_dir)?),
        LabKind::Vm => Box::new(VmLab::build(req, opts)?),
    })
}

/// Where lab records live.
pub const LABS_DIR: &str = "/run/lnst/labs";

/// Why the lab could not be built (exit 3).
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("the netns lab needs root (network namespaces); run as root or give --pool DIR")]
    NotRoot,
    #[error("agent binary {0} not found; build it (`cargo build -p lnst-agent`) or give --agent-bin PATH")]
    NoAgent(PathBuf),
    #[error("cannot write lab record {path}: {error}")]
    Record {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("`{cmd}` failed: {message}")]
    Command { cmd: String, message: String },
    #[error("VM lab: {0}")]
    Vm(String),
    #[error("interrupted while the lab was being built")]
    Interrupted,
    /// What the user gave cannot work: a requirement the lab cannot
    /// satisfy, a `--kernel` that is not one (exit 2, nothing ran).
    #[error("{0}")]
    Usage(String),
    #[error("agent for host {host} did not start: {message} (its log: {log})")]
    Agent {
        host: String,
        message: String,
        log: PathBuf,
    },
}

/// The pool a lab stands for: one machine per host requirement (id = host
/// name, params = the requirement's, first of an array), NICs named as the
/// recipe names them, with the driver the lab gives them; a label is a
/// network, an unlabelled NIC gets a network of its own. A NIC whose
/// `driver` the lab cannot give is an error naming the host, the NIC and
/// the drivers the lab has (a mapping error: exit 2).
pub fn pool_for(req: &Requirements, kind: LabKind) -> Result<Pool, String> {
    for h in &req.hosts {
        // The netns lab's hosts share this machine's init: asking for one
        // is a VM lab request, refused here rather than matched and then
        // failing in `h.service`.
        if kind == LabKind::Netns {
            if let Some(init) = h.params.get("init") {
                return Err(format!(
                    "host {}: init {init}: the netns lab's hosts are namespaces of this machine, with its init; \
                     --lab vm boots a guest with init \"systemd\"",
                    h.name
                ));
            }
        }
        for n in &h.nics {
            kind.nic_driver(n.attrs.get("driver")).map_err(|e| {
                format!("host {} nic {}: {e} ({} lab)", h.name, n.name, kind.name())
            })?;
        }
    }
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
                    // Checked above.
                    let driver = kind.nic_driver(n.attrs.get("driver")).unwrap_or("?");
                    attrs.insert("driver".into(), Value::from(driver));
                    PoolNic {
                        name: n.name.clone(),
                        net: Some(net),
                        attrs,
                    }
                })
                .collect(),
            extra: BTreeMap::new(),
            file: PathBuf::from(format!("({} lab)", kind.name())),
        })
        .collect();
    Ok(Pool { machines })
}

pub(crate) fn ip_batch(netns: Option<&str>, lines: &[String]) -> Result<Child, LabError> {
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

pub(crate) fn finish(child: Child, what: &str) -> Result<(), LabError> {
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
    // pid, then a per-process sequence number, then a few clock bits: labs
    // built at once by the runs of one suite (`--jobs`) get distinct ids.
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{:x}{:03x}{:02x}",
        std::process::id(),
        seq & 0xfff,
        (nanos >> 10) & 0xff
    )
}

/// Start time of a process (field 22 of /proc/PID/stat), to tell a live
/// owner from a reused pid.
pub(crate) fn start_time(pid: u32) -> Option<String> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    rest.split_whitespace().nth(19).map(str::to_string)
}

/// `ip netns del` for each that exists; returns the errors.
pub(crate) fn delete_namespaces(names: &[String]) -> Vec<String> {
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

/// Writes the record's `owner` line (pid and start time) so that
/// [`clean_stale`] can tell a live controller from a dead one.
pub(crate) fn write_owner(record: &Path) -> Result<(), LabError> {
    // The record appears whole: made under a dot-name that `clean_stale`
    // skips, with its owner line, then renamed into place. (A record seen
    // before its owner line was written looked like a dead controller's
    // and was removed by another controller's `run`.)
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |error| LabError::Record { path, error }
    };
    let name = record
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = record.with_file_name(format!(".{name}.new"));
    fs::create_dir_all(&tmp).map_err(err(&tmp))?;
    let me = std::process::id();
    let owner = format!("{me} {}\n", start_time(me).unwrap_or_default());
    fs::write(tmp.join("owner"), owner).map_err(err(&tmp.join("owner")))?;
    fs::rename(&tmp, record).map_err(err(record))
}

/// SIGTERM to each process (an agent then undoes what its session left,
/// deferred commands included; qemu exits), SIGKILL to those still there
/// after `grace`.
fn stop_processes(pids: &[i32], grace: Duration) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    for p in pids {
        let _ = kill(Pid::from_raw(*p), Signal::SIGTERM);
    }
    let alive = |p: &i32| {
        fs::read_to_string(format!("/proc/{p}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().to_string()))
            .is_some_and(|r| !r.starts_with('Z'))
    };
    let deadline = std::time::Instant::now() + grace;
    while pids.iter().any(alive) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for p in pids.iter().filter(|p| alive(p)) {
        let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
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
        if runid.starts_with('.') {
            // A record being made (see `write_owner`).
            continue;
        }
        let owner = fs::read_to_string(dir.join("owner")).unwrap_or_default();
        let mut it = owner.split_whitespace();
        let pid: Option<u32> = it.next().and_then(|p| p.parse().ok());
        let st = it.next().map(str::to_string);
        let alive = pid.is_some_and(|p| start_time(p).is_some() && start_time(p) == st);
        if alive {
            continue;
        }
        let ours: Vec<i32> = fs::read_to_string(dir.join("agents"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse::<i32>().ok())
            .filter(|pid| {
                let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd);
                cmd.contains("lnst-agent") || cmd.contains("qemu-system")
            })
            .collect();
        stop_processes(&ours, Duration::from_secs(5));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapper::{HostReq, NicReq};

    fn req(driver: Option<Value>) -> Requirements {
        Requirements {
            hosts: vec![HostReq {
                name: "h1".into(),
                params: Default::default(),
                nics: vec![NicReq {
                    name: "eth0".into(),
                    net: Some("n".into()),
                    attrs: driver
                        .map(|d| BTreeMap::from([("driver".to_string(), d)]))
                        .unwrap_or_default(),
                }],
            }],
        }
    }

    fn driver_of(p: &Pool) -> &Value {
        &p.machines[0].nics[0].attrs["driver"]
    }

    #[test]
    fn lab_pool_nics_carry_the_driver_the_lab_gives_and_refuse_others() {
        use serde_json::json;
        let netns = pool_for(&req(None), LabKind::Netns).unwrap();
        assert_eq!(driver_of(&netns), "veth");
        let vm = pool_for(&req(None), LabKind::Vm).unwrap();
        assert_eq!(driver_of(&vm), "virtio_net");
        let e1000e = pool_for(&req(Some(json!("e1000e"))), LabKind::Vm).unwrap();
        assert_eq!(driver_of(&e1000e), "e1000e");
        // "one of": the first the lab emulates, which the mapper then matches
        let r = req(Some(json!(["ixgbe", "e1000"])));
        let p = pool_for(&r, LabKind::Vm).unwrap();
        assert_eq!(driver_of(&p), "e1000");
        assert!(crate::mapper::map_first(&r, &p).is_ok());
        // what a lab cannot give is named with what it can
        let e = pool_for(&req(Some(json!("ixgbe"))), LabKind::Vm).unwrap_err();
        assert!(
            e.contains("host h1 nic eth0") && e.contains("\"ixgbe\"") && e.contains("e1000e"),
            "{e}"
        );
        let e = pool_for(&req(Some(json!("e1000e"))), LabKind::Netns).unwrap_err();
        assert!(e.contains("veth") && e.contains("--lab vm"), "{e}");
        assert!(pool_for(&req(Some(json!("veth"))), LabKind::Netns).is_ok());
        // init: a VM lab host param; the netns lab refuses it
        let mut r = req(None);
        r.hosts[0].params.insert("init".into(), json!("systemd"));
        let e = pool_for(&r, LabKind::Netns).unwrap_err();
        assert!(
            e.contains("host h1: init \"systemd\"") && e.contains("--lab vm"),
            "{e}"
        );
        assert!(pool_for(&r, LabKind::Vm).is_ok());
    }
}
