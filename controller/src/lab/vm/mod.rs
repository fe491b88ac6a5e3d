//! The VM lab (`run --lab vm`, RECIPES.md §9): one qemu guest per host
//! requirement booting a full distribution kernel, so every device kind of
//! §7, qdiscs and netfilter exist whatever this machine's kernel lacks.
//!
//! Bring-up: the kernel ([`kernel`]: Debian's, fetched and cached, or
//! `--kernel`), one initramfs for the lab ([`guest`]: busybox, the early
//! modules, `/init`), the lab namespace with a bridge per `net` label and a
//! tap per NIC ([`links`]), then the guests' qemu ([`qemu`]), a core's
//! worth at a time, each awaited until its agent prints `READY` on its
//! console ([`boot`]). Each guest runs
//! `lnst-agent --virtio-port`; the controller reaches it through the unix
//! socket qemu makes of that port, in the lab record (mode 0700), the way
//! it reaches the netns lab's agents.
//!
//! Teardown (also on drop, on errors and Ctrl-C): qemu stopped, the lab
//! namespace deleted with its bridges and taps, the record removed. qemu
//! dies with the controller (`PR_SET_PDEATHSIG`), and the record lets
//! [`super::clean_stale`] remove the namespace and files after a kill -9.

mod boot;
pub mod guest;
pub mod kernel;
pub mod links;
pub mod nic;
pub mod qemu;

use std::collections::BTreeMap;
use std::fs;
use std::io::IsTerminal;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{
    delete_namespaces, finish, ip_batch, new_runid, write_owner, Lab, LabError, LabOptions,
    LABS_DIR,
};
use crate::client::AgentAddr;
use crate::mapper::Requirements;
use qemu::{Accel, Guest, GuestSpec};

/// A running VM lab.
pub struct VmLab {
    pub runid: String,
    /// `/run/lnst/labs/<runid>`: sockets, initramfs, qemu pids.
    pub record: PathBuf,
    pub addrs: BTreeMap<String, AgentAddr>,
    pub build_time: Duration,
    /// The lab namespace (bridges and taps; qemu runs there).
    pub netns: String,
    pub kernel: kernel::Kernel,
    pub accel: Accel,
    guests: Vec<Guest>,
    done: bool,
}

fn vm_err(s: impl Into<String>) -> LabError {
    LabError::Vm(s.into())
}

/// Prints kernel-cache progress on stderr: a line that rewrites itself on
/// a terminal, and only the milestones otherwise.
fn progress_printer() -> impl FnMut(&str) {
    let tty = std::io::stderr().is_terminal();
    move |s: &str| {
        if tty {
            eprint!("\r\x1b[2Klnst-ctl: {s}");
            if !s.starts_with("downloaded") {
                eprintln!();
            }
        } else if !s.starts_with("downloaded") {
            eprintln!("lnst-ctl: {s}");
        }
    }
}

/// The kernel a requirement asks for (`host("h1", #{ kernel: "6.1" })`)
/// matches a release when it equals it or is a prefix ending at a `.` or
/// `-` boundary; an array means "one of".
pub fn kernel_matches(want: &Value, release: &str) -> bool {
    match want {
        Value::Array(a) => a.iter().any(|v| kernel_matches(v, release)),
        Value::String(s) => {
            release == s
                || (release.starts_with(s.as_str())
                    && matches!(release.as_bytes().get(s.len()), Some(b'.' | b'-')))
        }
        Value::Number(n) => kernel_matches(&Value::String(n.to_string()), release),
        _ => false,
    }
}

/// Checks each host requirement's `kernel` against the lab's kernel.
pub fn check_kernel_params(req: &Requirements, release: &str) -> Result<(), LabError> {
    for h in &req.hosts {
        if let Some(want) = h.params.get("kernel") {
            if !kernel_matches(want, release) {
                return Err(LabError::Usage(format!(
                    "host {} asks for kernel {want} but the VM lab boots {release}; \
                     give --kernel with a matching version or path, or change the requirement",
                    h.name
                )));
            }
        }
    }
    Ok(())
}

/// What a host requirement's `init` asks of its guest: `"systemd"` boots
/// the host's systemd as PID 1 (the agent then runs as its unit, and
/// `h.service` has a service manager); without it, `/init` starts the
/// agent itself (faster). Another value is a usage error.
pub fn boots_systemd(h: &crate::mapper::HostReq) -> Result<bool, LabError> {
    match h.params.get("init") {
        None => Ok(false),
        Some(Value::String(s)) if s == "systemd" => Ok(true),
        Some(v) => Err(LabError::Usage(format!(
            "host {}: init {v}: the VM lab boots \"systemd\" as init when asked (or its own /init when init is not given)",
            h.name
        ))),
    }
}

/// Chooses the accelerator: `--accel`, else KVM when /dev/kvm opens and a
/// probe guest prints its first line under KVM within a second, else TCG.
/// The probe's verdict is cached per boot of this machine.
fn choose_accel(asked: Option<&str>, image: &Path) -> Accel {
    match asked {
        Some("kvm") => return Accel::Kvm,
        Some("tcg") => return Accel::Tcg,
        _ => {}
    }
    if fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return Accel::Tcg;
    }
    let boot = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let memo = kernel::cache_root().join("kvm-probe");
    if let Some(verdict) = kvm_probe_verdict() {
        return verdict;
    }
    let ok = probe_kvm(image);
    let _ = fs::create_dir_all(kernel::cache_root());
    let _ = fs::write(
        &memo,
        format!("{} {}\n", boot.trim(), if ok { "kvm" } else { "tcg" }),
    );
    if ok {
        Accel::Kvm
    } else {
        eprintln!("lnst-ctl: KVM is present but a probe guest did not boot with it (nested virtualisation?); using TCG (--accel kvm forces it)");
        Accel::Tcg
    }
}

/// What the KVM probe found on this boot of the machine, if it ran.
pub fn kvm_probe_verdict() -> Option<Accel> {
    let boot = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let s = fs::read_to_string(kernel::cache_root().join("kvm-probe")).ok()?;
    let (id, verdict) = s.trim().split_once(' ')?;
    (id == boot.trim()).then_some(if verdict == "kvm" {
        Accel::Kvm
    } else {
        Accel::Tcg
    })
}

/// Boots `image` with no root under KVM and waits up to 2 s for the
/// kernel's first console line.
fn probe_kvm(image: &Path) -> bool {
    use std::io::Read;
    let Ok(mut child) = std::process::Command::new(qemu::QEMU)
        .args([
            "-accel",
            "kvm",
            "-M",
            "pc",
            "-m",
            "128",
            "-nodefaults",
            "-no-user-config",
        ])
        .args([
            "-display",
            "none",
            "-no-reboot",
            "-serial",
            "stdio",
            "-kernel",
        ])
        .arg(image)
        .args(["-append", "console=ttyS0 earlyprintk=ttyS0 panic=-1"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
    else {
        return false;
    };
    let out = child.stdout.take();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut b = [0u8; 64];
        let n = out.map(|mut o| o.read(&mut b).unwrap_or(0)).unwrap_or(0);
        let _ = tx.send(n > 0);
    });
    let ok = rx.recv_timeout(Duration::from_secs(2)).unwrap_or(false);
    let _ = child.kill();
    let _ = child.wait();
    ok
}

/// What one guest costs the host at most: its memory plus qemu's own
/// (translation buffer, devices), measured at 280–335 MiB RSS (VMLAB.md).
const GUEST_FOOTPRINT_MIB: u64 = qemu::MEMORY_MIB as u64 + 100;

/// Refuses a lab this machine cannot hold, before anything is started.
fn check_memory(guests: usize) -> Result<(), LabError> {
    let avail_kib = fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("MemAvailable:"))
            .and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            })
    });
    let need = guests as u64 * GUEST_FOOTPRINT_MIB;
    match avail_kib {
        Some(kib) if kib / 1024 < need => Err(vm_err(format!(
            "{guests} guest(s) need about {need} MiB ({} MiB of guest memory plus qemu's own, each) \
             but only {} MiB are available: stop other VMs or run a recipe with fewer hosts",
            qemu::MEMORY_MIB,
            kib / 1024
        ))),
        _ => Ok(()),
    }
}

/// What `validate --lab vm` shows: the guests, their NICs and the
/// segments, without fetching or booting anything.
pub fn plan_text(req: &Requirements, kernel_spec: Option<&str>) -> Result<String, String> {
    let w = links::plan(req)?;
    let mut s = format!(
        "mapping: vm lab: one qemu guest per host ({} MiB, kernel {}), NICs on one bridge per net:\n",
        qemu::MEMORY_MIB,
        kernel_spec.unwrap_or("Debian's current, fetched and cached on first use")
    );
    for h in &req.hosts {
        let nics: Vec<String> = w.nics[&h.name]
            .iter()
            .map(|n| format!("{} ({}, {})", n.name, n.mac, n.model.driver))
            .collect();
        s.push_str(&format!(
            "  {} -> guest {} [{}]\n",
            h.name,
            h.name,
            nics.join(", ")
        ));
    }
    for (label, br) in &w.bridges {
        s.push_str(&format!("  net {label} -> bridge {br}\n"));
    }
    Ok(s)
}

impl VmLab {
    /// Builds the lab for `req`: kernel, initramfs, wiring, guests; waits
    /// until every agent is ready.
    pub fn build(req: &Requirements, opts: &LabOptions) -> Result<VmLab, LabError> {
        let t0 = Instant::now();
        if !nix::unistd::geteuid().is_root() {
            return Err(vm_err(
                "the VM lab needs root (taps and a lab namespace); run as root or give --pool DIR",
            ));
        }
        if qemu::find_qemu().is_none() {
            return Err(vm_err(format!(
                "{} not found: install it with `apt-get install qemu-system-x86`",
                qemu::QEMU
            )));
        }
        let agent = fs::canonicalize(&opts.agent_bin)
            .map_err(|_| LabError::NoAgent(opts.agent_bin.clone()))?;
        if agent.to_string_lossy().contains(char::is_whitespace) {
            return Err(vm_err(format!(
                "the agent's path {} has white space, which the guest's kernel command line cannot carry; move it",
                agent.display()
            )));
        }
        if !Path::new("/dev/net/tun").exists() {
            return Err(vm_err(
                "/dev/net/tun is missing: load the tun module (`modprobe tun`)",
            ));
        }
        check_memory(req.hosts.len())?;
        for h in &req.hosts {
            if boots_systemd(h)? && !Path::new(guest::SYSTEMD).is_file() {
                return Err(vm_err(format!(
                    "host {} asks for init \"systemd\", which the guest boots from this machine's {}, \
                     and it is missing: install it with `apt-get install systemd`",
                    h.name,
                    guest::SYSTEMD
                )));
            }
        }
        let mut progress = progress_printer();
        let kernel = kernel::resolve(opts.kernel.as_deref(), &kernel::cache_root(), &mut progress)
            .map_err(|e| {
                use kernel::KernelError as K;
                match e {
                    // The user's --kernel is at fault: a usage error.
                    K::UnknownVersion { .. }
                    | K::NotFound { .. }
                    | K::NotAKernel { .. }
                    | K::WrongArch { .. }
                    | K::NoPvh { .. }
                    | K::NoRelease { .. } => LabError::Usage(format!("--kernel: {e}")),
                    e => vm_err(e.to_string()),
                }
            })?;
        check_kernel_params(req, &kernel.release)?;
        let runid = new_runid();
        let _span = tracing::info_span!("vmlab", runid = %runid).entered();
        let record = Path::new(LABS_DIR).join(&runid);
        write_owner(&record)?;
        let _ = fs::set_permissions(&record, fs::Permissions::from_mode(0o700));
        let netns = format!("lnst-{runid}-lab");
        fs::write(record.join("namespaces"), format!("{netns}\n")).map_err(|source| {
            LabError::Record {
                path: record.join("namespaces"),
                error: source,
            }
        })?;
        let accel = choose_accel(opts.accel.as_deref(), &kernel.image);
        let mut lab = VmLab {
            runid: runid.clone(),
            record: record.clone(),
            addrs: BTreeMap::new(),
            build_time: Duration::ZERO,
            netns: netns.clone(),
            kernel,
            accel,
            guests: Vec::new(),
            done: false,
        };
        // The wiring (lab namespace, bridges, taps: two `ip` processes,
        // 0.1-0.3 s on a loaded host) is built on a thread while the
        // initramfs is written, so that qemu starts as early as it can.
        let wiring = links::plan(req).map_err(LabError::Usage)?;
        let wire = {
            let (netns, batch) = (netns.clone(), wiring.batch.clone());
            std::thread::spawn(move || -> Result<(), LabError> {
                finish(
                    ip_batch(None, &[format!("netns add {netns}")])?,
                    "ip netns add",
                )?;
                finish(
                    ip_batch(Some(&netns), &batch)?,
                    &format!("ip -n {netns} -batch (bridges and taps)"),
                )
            })
        };
        // The initramfs, shared by the lab's guests.
        let initrd = record.join("initrd.cpio");
        let made = match &lab.kernel.modules {
            // The early modules, and the drivers of the NIC models used
            // (only those: a lab of virtio NICs boots as it always did).
            Some(m) => {
                let mut names = guest::EARLY_MODULES.to_vec();
                names.extend(links::nic_modules(&wiring));
                kernel::module_closure(m, &names).map_err(|e| vm_err(e.to_string()))
            }
            None => Ok(Vec::new()),
        }
        .and_then(|modules| {
            let sig_force = lab.kernel.module_sig_force;
            let read = |p: &Path| {
                kernel::read_module(p).map(|ko| {
                    if sig_force {
                        ko
                    } else {
                        kernel::unsigned_module(ko)
                    }
                })
            };
            guest::write_initramfs(&initrd, &modules, &read).map_err(|e| vm_err(e.to_string()))
        });
        // Joined before any error returns: the namespace is in the record
        // either way, and teardown must not race its creation.
        let wired = wire
            .join()
            .unwrap_or_else(|_| Err(vm_err("the thread building the lab's wiring panicked")));
        made?;
        wired?;
        // The guests: specs first (a bad requirement starts nothing), then
        // booted a core at a time ([`boot`]).
        let mut pending = Vec::new();
        for h in &req.hosts {
            let socket = record.join(format!("{}.sock", h.name));
            let spec = GuestSpec {
                host: h.name.clone(),
                name: format!("lnst-{runid}-{}", h.name),
                kernel: lab.kernel.image.clone(),
                initrd: initrd.clone(),
                agent: agent.clone(),
                modules: lab.kernel.modules.clone(),
                hz: lab.kernel.hz,
                module_sig_force: lab.kernel.module_sig_force,
                socket: socket.clone(),
                shell: record.join(format!("{}.shell", h.name)),
                nics: wiring.nics.get(&h.name).cloned().unwrap_or_default(),
                accel,
                verbose: std::env::var_os("LNST_VM_AGENT_VERBOSE").is_some(),
                systemd: boots_systemd(h)?,
            };
            let console = opts.run_dir.join(format!("console-{}.log", h.name));
            pending.push(boot::Pending { spec, console });
            lab.addrs.insert(h.name.clone(), AgentAddr::Unix(socket));
        }
        boot::boot(
            &mut lab,
            pending,
            &Path::new("/run/netns").join(&netns),
            opts,
        )?;
        lab.build_time = t0.elapsed();
        tracing::info!(runid = %lab.runid, ms = lab.build_time.as_secs_f64() * 1e3, "vm lab up");
        Ok(lab)
    }

    /// The guests' qemu pids, in host order (benchmarks read their RSS
    /// and CPU time).
    pub fn qemu_pids(&self) -> Vec<u32> {
        self.guests.iter().map(|g| g.child.id()).collect()
    }

    /// Stops the guests, deletes the lab namespace and the record.
    pub fn teardown(&mut self) -> Vec<String> {
        if self.done {
            return Vec::new();
        }
        self.done = true;
        let mut errors = Vec::new();
        for host in qemu::stop_all(&mut self.guests, Duration::from_secs(5)) {
            errors.push(format!("qemu for {host} did not stop on SIGTERM; killed"));
        }
        errors.extend(delete_namespaces(std::slice::from_ref(&self.netns)));
        if let Err(e) = fs::remove_dir_all(&self.record) {
            if e.kind() != std::io::ErrorKind::NotFound {
                errors.push(format!("cannot remove {}: {e}", self.record.display()));
            }
        }
        errors
    }
}

impl Lab for VmLab {
    fn kind(&self) -> &'static str {
        "vm"
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
        format!(
            "{} guest(s), kernel {} ({}), accel {}, lab namespace {}",
            self.guests.len(),
            self.kernel.release,
            self.kernel.source,
            self.accel.name(),
            self.netns
        )
    }
    fn host_params(&self, _host: &str) -> BTreeMap<String, Value> {
        BTreeMap::from([(
            "kernel".to_string(),
            Value::String(self.kernel.release.clone()),
        )])
    }
    fn agents_close(&self) -> bool {
        false
    }
    fn silence_timeout(&self) -> Option<Duration> {
        Some(Duration::from_millis(guest::SILENCE_MS))
    }
    fn lost(&self, host: &str) -> Option<String> {
        let g = self.guests.iter().find(|g| g.host == host)?;
        // An exited child is a zombie until waited for (at teardown). A
        // killed qemu closes its sockets before it has finished exiting
        // (freeing guest memory comes first), so give it a moment.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let stat =
                fs::read_to_string(format!("/proc/{}/stat", g.child.id())).unwrap_or_default();
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next().map(str::to_string));
            if matches!(state.as_deref(), None | Some("Z") | Some("X")) {
                break;
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(format!(
            "qemu for host {host} is gone; its console ({}) ends with:\n{}",
            g.console.display(),
            qemu::console_tail(&g.console, 8)
        ))
    }
    fn teardown(&mut self) -> Vec<String> {
        VmLab::teardown(self)
    }
}

impl Drop for VmLab {
    fn drop(&mut self) {
        for e in self.teardown() {
            tracing::warn!("vm lab teardown: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_requirement_matches_on_version_boundaries() {
        let r = "6.1.0-57-amd64";
        assert!(kernel_matches(&Value::from("6.1"), r));
        assert!(kernel_matches(&Value::from("6.1.0-57-amd64"), r));
        assert!(kernel_matches(&Value::from("6"), r));
        assert!(!kernel_matches(&Value::from("6.12"), r));
        assert!(!kernel_matches(&Value::from("6.1.0-5"), r));
        assert!(kernel_matches(&serde_json::json!(["5.10", "6.1"]), r));
        assert!(kernel_matches(&serde_json::json!(6.1), r));
    }

    #[test]
    fn init_param_boots_systemd_or_is_refused() {
        let h = |init: Option<Value>| crate::mapper::HostReq {
            name: "h1".into(),
            params: init.map(|v| ("init".to_string(), v)).into_iter().collect(),
            nics: Vec::new(),
        };
        assert!(!boots_systemd(&h(None)).unwrap());
        assert!(boots_systemd(&h(Some(Value::from("systemd")))).unwrap());
        let e = boots_systemd(&h(Some(Value::from("openrc"))))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("host h1") && e.contains("\"openrc\"") && e.contains("\"systemd\""),
            "{e}"
        );
    }
}
