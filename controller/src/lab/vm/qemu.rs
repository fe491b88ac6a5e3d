//! One guest's qemu: its command line, the process (in the lab
//! namespace, tied to the controller's life) and its console.
//!
//! qemu runs inside the lab namespace so that its taps are created there
//! and nothing touches the host's interfaces; it is spawned from the run's
//! long-lived thread with `PR_SET_PDEATHSIG` = `SIGKILL`, so a controller
//! killed with -9 takes every guest with it. The serial console (stdout)
//! is copied line by line to `console-<host>.log` in the run directory by
//! a reader thread, which also watches for the agent's `READY` line and
//! the guest init's error line.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::guest::{GUEST_ERROR, PORT_NAME, ROOT_TAG};

/// The qemu binary (Debian package `qemu-system-x86`).
pub const QEMU: &str = "qemu-system-x86_64";

/// Guest memory. 96 MiB boots (VMLAB.md); 256 leaves room for iperf3,
/// teamd and tc while the host keeps only what the guest touches.
pub const MEMORY_MIB: u32 = 256;

/// qemu's accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// The `-accel` argument. TCG's translation buffer is capped: without
    /// it RSS grows from 290 to 367 MiB in 20 s (VMLAB.md).
    fn arg(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg,tb-size=64",
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// One guest NIC: the tap it is plugged into, its MAC and the NIC model
/// qemu emulates (the requirement's `driver`).
#[derive(Debug, Clone)]
pub struct GuestNic {
    pub name: String,
    pub tap: String,
    pub mac: String,
    pub model: super::nic::NicModel,
}

/// Everything one guest's command line needs.
#[derive(Debug, Clone)]
pub struct GuestSpec {
    pub host: String,
    /// `lnst-<runid>-<host>`: the process name, for `ps` and clean-up.
    pub name: String,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The agent's path (on the host, seen the same in the guest).
    pub agent: PathBuf,
    /// The kernel's modules directory on the host, if any.
    pub modules: Option<PathBuf>,
    /// The kernel's `CONFIG_HZ`, if known.
    pub hz: Option<u32>,
    /// The kernel loads only signed modules (`CONFIG_MODULE_SIG_FORCE`):
    /// its keyring is loaded at boot.
    pub module_sig_force: bool,
    /// The unix socket qemu listens on for the agent's port.
    pub socket: PathBuf,
    /// The unix socket qemu listens on for the guest's shell console
    /// (`lnst-ctl shell`).
    pub shell: PathBuf,
    pub nics: Vec<GuestNic>,
    pub accel: Accel,
    pub verbose: bool,
    /// The host requirement's `init: "systemd"`: the guest boots systemd
    /// as PID 1, which starts the agent (so `h.service` has a real
    /// service manager).
    pub systemd: bool,
}

impl GuestSpec {
    /// The kernel command line.
    pub fn append(&self) -> String {
        let mut a = vec![
            "console=ttyS0".to_string(),
            "quiet".into(),
            "loglevel=3".into(),
            "panic=-1".into(),
            // No clocksource watchdog fighting TCG's timing, and no boot
            // check that the timer ticks fast enough: on a loaded host a
            // TCG guest fails it and panics ("IO-APIC + timer doesn't work").
            "tsc=reliable".into(),
            "no_timer_check".into(),
            // A throwaway test guest that runs only the lab's own code:
            // under TCG every retpoline, RSB fill and speculation barrier
            // is emulated at full cost on each indirect call, syscall and
            // context switch (the network stack and iperf3 pay it per
            // packet), and protects nothing.
            "mitigations=off".into(),
            // Debian zeroes every allocation (hardening); zeroing each
            // packet buffer under TCG cost ~8 % of TCP throughput between
            // guests (2.05-2.90 -> 2.95-3.28 Gbit/s, interleaved).
            "init_on_alloc=0".into(),
            // Boot work a throwaway guest does not need, each measured
            // under TCG (kernel uptime at /init 1.65 s -> 1.1 s, and
            // 0.4 s less to load the early modules):
            // - the crypto self-tests (0.3 s);
            // - the W+X page check and read-only data (0.1 s);
            // - the kprobe tracer and the X.509 keyring (0.1 s; modules
            //   then load unverified, which taints the guest kernel; the
            //   initramfs holds them unsigned, see `kernel::unsigned_module`;
            //   a kernel that forces signatures keeps its keyring);
            // - the block tracer, the SP800-108 KDF self-test, hibernation's
            //   /dev/snapshot, the ACPI PM timer clocksource (the guest
            //   runs on the TSC), IMA, the PS/2 controller and KSM (0.15 s);
            // - ACPI's IRQ routing: evaluating each PCI link's AML took
            //   0.1 s per virtio device; the BIOS's PIRQ table gives the
            //   same IRQs.
            "cryptomgr.notests".into(),
            "rodata=off".into(),
            format!(
                "initcall_blacklist=init_kprobe_trace,{}{}",
                if self.module_sig_force {
                    ""
                } else {
                    "load_system_certificate_list,"
                },
                concat!(
                    "init_blk_tracer,crypto_kdf108_init,snapshot_device_init,",
                    "init_acpi_pm_clocksource,init_ima,i8042_init,ksm_init"
                )
            ),
            "acpi=noirq".into(),
            format!("lnst.host={}", self.host),
            format!("lnst.agent={}", self.agent.display()),
        ];
        // The APIC timer's period, so the kernel does not spend 0.1 s
        // measuring it: qemu's local APIC counts at 1 GHz (under TCG and
        // KVM alike), so a jiffy is 10^9 / HZ counts. Only when the
        // kernel's HZ is known: a wrong period would skew every timer.
        if let Some(hz) = self.hz.filter(|&hz| hz > 0) {
            a.push(format!("lapic_timer_period={}", 1_000_000_000 / hz));
        }
        if let Some(m) = &self.modules {
            a.push(format!("lnst.modules={}", m.display()));
        }
        for n in &self.nics {
            a.push(format!("lnst.nic={},{}", n.name, n.mac));
        }
        if self.verbose {
            a.push("lnst.verbose=1".into());
        }
        if self.systemd {
            a.push("lnst.init=systemd".into());
        }
        a.join(" ")
    }

    /// The qemu arguments.
    pub fn args(&self) -> Vec<String> {
        let mut v: Vec<String> = [
            "-name",
            &self.name,
            "-accel",
            self.accel.arg(),
            "-M",
            "pc",
            "-m",
            &MEMORY_MIB.to_string(),
            "-smp",
            "1",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
            "-serial",
            "stdio",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend([
            "-kernel".into(),
            self.kernel.display().to_string(),
            "-initrd".into(),
            self.initrd.display().to_string(),
            "-append".into(),
            self.append(),
            "-fsdev".into(),
            "local,id=root,path=/,security_model=none,readonly=on,multidevs=remap".into(),
            "-device".into(),
            format!("virtio-9p-pci,fsdev=root,mount_tag={ROOT_TAG}"),
            "-device".into(),
            "virtio-serial-pci".into(),
            "-chardev".into(),
            format!(
                "socket,id=agent,path={},server=on,wait=off",
                self.socket.display()
            ),
            "-device".into(),
            format!("virtserialport,chardev=agent,name={PORT_NAME}"),
            // The shell console: the guest's first virtio console (hvc0).
            "-chardev".into(),
            format!(
                "socket,id=shell,path={},server=on,wait=off",
                self.shell.display()
            ),
            "-device".into(),
            "virtconsole,chardev=shell,name=lnst.shell".into(),
        ]);
        // No option ROM on the NICs (`romfile=`): the guest boots with
        // `-kernel`, never from the network, so it needs no iPXE ROM and the
        // lab works where the ROM files are not installed. (It saves no
        // measurable boot time: balanced A/B runs put the firmware's share
        // within 10 ms either way.)
        for (i, n) in self.nics.iter().enumerate() {
            v.extend([
                "-netdev".into(),
                format!("tap,id=n{i},ifname={},script=no,downscript=no", n.tap),
                "-device".into(),
                format!("{},netdev=n{i},mac={},romfile=", n.model.device, n.mac),
            ]);
        }
        v
    }
}

/// What a console reader reports.
pub enum ConsoleEvent {
    Ready,
    Failed(String),
    Exited,
}

/// A running guest.
pub struct Guest {
    pub host: String,
    pub child: Child,
    pub console: PathBuf,
}

/// Starts qemu for `spec` inside the namespace `netns` (a path under
/// /run/netns); the console goes to `console`, events to `tx`.
pub fn spawn(
    spec: &GuestSpec,
    netns: &Path,
    console: PathBuf,
    tx: mpsc::Sender<(String, ConsoleEvent)>,
) -> std::io::Result<Guest> {
    let ns = fs::File::open(netns)?;
    let ns_fd = ns.as_raw_fd();
    let mut cmd = Command::new(QEMU);
    cmd.args(spec.args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: only async-signal-safe syscalls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(ns_fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SCHED_BATCH (all of qemu's threads inherit it): a vCPU thread
            // waking no longer preempts the one running, so guests sharing
            // the cores switch less. Measured in interleaved runs, 4 guests
            // on 2 cores: lab up 5.16-5.47 -> 5.05-5.14 s, qemu CPU
            // 2.52-2.65 -> 2.43-2.50 s a guest; TCP between two guests
            // 2.45-2.89 -> 3.31-3.34 Gbit/s. Failing to set it only loses
            // that.
            let p = libc::sched_param { sched_priority: 0 };
            libc::sched_setscheduler(0, libc::SCHED_BATCH, &p);
            // No transparent huge pages for qemu (inherited across exec):
            // qemu asks for them on guest RAM, and on a host whose memory
            // is fragmented each 2 MiB fault compacts memory first. Loading
            // the kernel then cost qemu's main thread 0.18-0.24 s in most
            // boots instead of 0.06-0.09 s; qemu CPU to the guest's /init,
            // medians of eight boots each in ABBA order: 1.73 -> 1.54 s.
            // In the lab, a guest's agent READY at 2.2 s of qemu CPU instead
            // of 2.33 s (six boots each). Failing to set it only loses that.
            libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    drop(ns);
    let out = child.stdout.take();
    let err = child.stderr.take();
    let log = fs::File::create(&console)?;
    let host = spec.host.clone();
    std::thread::spawn(move || {
        let mut log = log;
        let mut said = false;
        if let Some(out) = out {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "{line}");
                if said {
                    continue;
                }
                if line.starts_with("READY ") {
                    said = true;
                    let _ = tx.send((host.clone(), ConsoleEvent::Ready));
                } else if let Some(rest) = line.split_once(GUEST_ERROR).map(|x| x.1) {
                    said = true;
                    let _ = tx.send((host.clone(), ConsoleEvent::Failed(rest.trim().to_string())));
                }
            }
        }
        // qemu's own complaints (bad option, no tap) come on stderr.
        if let Some(err) = err {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = writeln!(log, "qemu: {line}");
            }
        }
        if !said {
            let _ = tx.send((host, ConsoleEvent::Exited));
        }
    });
    Ok(Guest {
        host: spec.host.clone(),
        child,
        console,
    })
}

/// The last `n` lines of a console log, for error messages.
pub fn console_tail(path: &Path, n: usize) -> String {
    let s = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Whether qemu is installed: its path, or None.
pub fn find_qemu() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(QEMU))
            .find(|f| f.is_file())
    })
}

/// Stops guests: SIGTERM (qemu exits at once), then SIGKILL after
/// `grace`. Returns the hosts that needed SIGKILL.
pub fn stop_all(guests: &mut [Guest], grace: Duration) -> Vec<String> {
    for g in guests.iter() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(g.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let deadline = Instant::now() + grace;
    let mut killed = Vec::new();
    for g in guests.iter_mut() {
        loop {
            match g.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => {
                    let _ = g.child.kill();
                    let _ = g.child.wait();
                    killed.push(g.host.clone());
                    break;
                }
            }
        }
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(module_sig_force: bool) -> GuestSpec {
        GuestSpec {
            host: "h1".into(),
            name: "lnst-x-h1".into(),
            kernel: "/k/vmlinux".into(),
            initrd: "/r/initrd.cpio".into(),
            agent: "/bin/lnst-agent".into(),
            modules: None,
            hz: Some(250),
            module_sig_force,
            socket: "/r/h1.sock".into(),
            shell: "/r/h1.shell".into(),
            nics: ["eth0", "eth1"]
                .iter()
                .enumerate()
                .map(|(i, n)| GuestNic {
                    name: n.to_string(),
                    tap: format!("t0n{i}"),
                    mac: format!("52:54:00:00:00:0{i}"),
                    model: super::super::nic::for_driver(None).unwrap(),
                })
                .collect(),
            accel: Accel::Tcg,
            verbose: false,
            systemd: false,
        }
    }

    #[test]
    fn nics_have_no_option_rom() {
        let args = spec(false).args();
        let nics: Vec<&String> = args.iter().filter(|a| a.contains("netdev=n")).collect();
        assert_eq!(nics.len(), 2, "{args:?}");
        for n in nics {
            assert!(n.ends_with(",romfile="), "{n}");
        }
    }

    #[test]
    fn the_keyring_is_skipped_unless_the_kernel_forces_signatures() {
        let skips = |a: String| {
            a.split(' ')
                .find_map(|w| w.strip_prefix("initcall_blacklist="))
                .unwrap()
                .split(',')
                .any(|f| f == "load_system_certificate_list")
        };
        assert!(skips(spec(false).append()));
        assert!(!skips(spec(true).append()));
        assert!(spec(true)
            .append()
            .contains("initcall_blacklist=init_kprobe_trace,init_blk_tracer,"));
        assert!(spec(false).append().contains("lapic_timer_period=4000000"));
    }
}
