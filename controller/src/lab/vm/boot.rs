//! Booting a lab's guests: how many start at once, and the wait for each
//! agent's `READY` on its console.
//!
//! Under TCG a booting guest is CPU-bound, and more booting guests than
//! cores slow each other down: four bare guests on two cores took 1.57–1.81 s
//! of CPU each against 1.38–1.56 s two at a time (their translation caches
//! evict each other and the host switches between them), so all four were
//! at `/init` up to 14 % later than in two waves (five rounds of six, three
//! in each order). Guests therefore start at most
//! one per core at a time ([`may_start`]), the next as soon as one is up;
//! the last few (fewer than twice the cores) start together, which beats a
//! last wave that leaves a core idle (three guests on two cores). The
//! count is per process ([`Totals`]): the labs of a suite run with
//! `--jobs N` share the cores too. Each guest's boot timeout counts from
//! its own start.

use std::collections::BTreeMap;
use std::fs;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use super::qemu::{self, ConsoleEvent, GuestSpec};
use super::{vm_err, LabError, VmLab};
use crate::lab::LabOptions;

/// How long one guest may take to boot to a ready agent, by default. TCG
/// boots one in ~2.5 s; the margin is for loaded CI machines.
/// `LNST_VM_BOOT_TIMEOUT` (seconds) changes it.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

fn boot_timeout() -> Duration {
    std::env::var("LNST_VM_BOOT_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(BOOT_TIMEOUT)
}

/// Whether another guest may start while `booting` guests boot and
/// `pending` (this one included) have not started, on `cores` cores: while
/// fewer than `cores` boot, or when the guests left are fewer than twice
/// the cores (then they all start).
pub fn may_start(booting: usize, pending: usize, cores: usize) -> bool {
    pending > 0 && (booting < cores.max(1) || booting + pending < 2 * cores.max(1))
}

/// The guests of every lab in this process: how many boot, how many wait
/// to start. [`may_start`] decides on these totals, so the labs of a suite
/// share the cores as one lab would.
#[derive(Debug, Default, PartialEq)]
struct Totals {
    booting: usize,
    pending: usize,
}

static TOTALS: Mutex<Totals> = Mutex::new(Totals {
    booting: 0,
    pending: 0,
});

fn totals() -> std::sync::MutexGuard<'static, Totals> {
    TOTALS.lock().unwrap_or_else(|p| p.into_inner())
}

/// One lab's part of [`TOTALS`]: its guests not started yet, and those
/// booting (host -> when it started), until they are up or the lab gives
/// up on them (dropped: on an error or Ctrl-C).
struct Booting {
    unstarted: usize,
    booting: BTreeMap<String, Instant>,
}

impl Booting {
    fn new(guests: usize) -> Booting {
        totals().pending += guests;
        Booting {
            unstarted: guests,
            booting: BTreeMap::new(),
        }
    }

    /// Takes a place for this lab's next guest if [`may_start`] allows one
    /// (decided and taken under one lock).
    fn admit(&mut self, cores: usize) -> bool {
        if self.unstarted == 0 {
            return false;
        }
        let mut t = totals();
        if !may_start(t.booting, t.pending, cores) {
            return false;
        }
        t.booting += 1;
        t.pending -= 1;
        self.unstarted -= 1;
        true
    }

    /// The admitted guest started as `host`.
    fn started(&mut self, host: String) {
        self.booting.insert(host, Instant::now());
    }

    /// The admitted guest did not start: its place goes back.
    fn failed(&mut self) {
        totals().booting -= 1;
    }

    /// `host`'s agent is ready.
    fn up(&mut self, host: &str) {
        if self.booting.remove(host).is_some() {
            totals().booting -= 1;
        }
    }
}

impl Drop for Booting {
    fn drop(&mut self) {
        let mut t = totals();
        t.booting -= self.booting.len();
        t.pending -= self.unstarted;
    }
}

/// A guest not started yet.
pub(super) struct Pending {
    pub spec: GuestSpec,
    pub console: PathBuf,
}

/// Starts `pending` in the lab namespace `ns` as [`may_start`] allows and
/// waits until every agent is ready. Started guests go into `lab` (its
/// teardown stops them, whatever this returns); their pids into the
/// record's `agents` file.
pub(super) fn boot(
    lab: &mut VmLab,
    pending: Vec<Pending>,
    ns: &Path,
    opts: &LabOptions,
) -> Result<(), LabError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let total = pending.len();
    let timeout = boot_timeout();
    let mut pending = std::collections::VecDeque::from(pending);
    let (tx, rx) = mpsc::channel();
    let mut booting = Booting::new(pending.len());
    let mut pids = String::new();
    let mut ready = 0;
    let mut waiting = BootWait::new(total, lab.accel.name(), timeout);
    let console_of = |host: &str| opts.run_dir.join(format!("console-{host}.log"));
    while ready < total {
        while booting.admit(cores) {
            let Some(p) = pending.pop_front() else {
                booting.failed();
                break;
            };
            let host = p.spec.host.clone();
            let g = match qemu::spawn(&p.spec, ns, p.console, tx.clone()) {
                Ok(g) => g,
                Err(e) => {
                    booting.failed();
                    return Err(vm_err(format!(
                        "cannot start {} for host {host}: {e}",
                        qemu::QEMU
                    )));
                }
            };
            pids.push_str(&format!("{}\n", g.child.id()));
            let _ = fs::write(lab.record.join("agents"), &pids);
            lab.guests.push(g);
            booting.started(host);
        }
        waiting.show(ready);
        if opts.cancel.is_cancelled() {
            return Err(LabError::Interrupted);
        }
        let oldest = booting
            .booting
            .values()
            .min()
            .copied()
            .unwrap_or_else(Instant::now);
        let left = (oldest + timeout).saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(Duration::from_millis(100))) {
            Err(mpsc::RecvTimeoutError::Timeout) if !left.is_zero() => continue,
            Ok((host, ConsoleEvent::Ready)) => {
                booting.up(&host);
                ready += 1;
            }
            Ok((host, ConsoleEvent::Failed(why))) => {
                return Err(vm_err(format!(
                    "guest {host} failed to start: {why} (console: {})",
                    console_of(&host).display()
                )));
            }
            Ok((host, ConsoleEvent::Exited)) => {
                let log = console_of(&host);
                // Give the reader a moment to flush qemu's stderr.
                std::thread::sleep(Duration::from_millis(50));
                return Err(vm_err(format!(
                    "qemu for host {host} exited before its agent was ready; the console ({}) ends with:\n{}",
                    log.display(),
                    qemu::console_tail(&log, 8)
                )));
            }
            Err(_) => {
                let slow: Vec<&str> = booting.booting.keys().map(String::as_str).collect();
                return Err(vm_err(format!(
                    "no agent READY within {:.0} s (guests {}; accel {}); consoles are in {} \
                     (LNST_VM_BOOT_TIMEOUT=SECONDS waits longer)",
                    timeout.as_secs_f64(),
                    slow.join(", "),
                    lab.accel.name(),
                    opts.run_dir.display()
                )));
            }
        }
    }
    Ok(())
}

/// "waiting for N guests to boot" on stderr while they do (a TCG boot
/// takes tens of seconds): on a terminal a line that rewrites itself each
/// second with how many are up and the time so far, removed when all are
/// up; otherwise one line at the start and one every 15 s.
struct BootWait {
    tty: bool,
    n: usize,
    what: String,
    t0: Instant,
    last: Option<Instant>,
}

impl BootWait {
    fn new(n: usize, accel: &str, timeout: Duration) -> BootWait {
        BootWait {
            tty: std::io::stderr().is_terminal(),
            n,
            what: format!(
                "waiting for {n} guest{} to boot ({accel}, up to {:.0} s each)",
                if n == 1 { "" } else { "s" },
                timeout.as_secs_f64()
            ),
            t0: Instant::now(),
            last: None,
        }
    }

    fn show(&mut self, ready: usize) {
        let every = if self.tty {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(15)
        };
        if self.last.is_some_and(|l| l.elapsed() < every) {
            return;
        }
        self.last = Some(Instant::now());
        let line = format!(
            "lnst-ctl: {}: {ready}/{} up, {:.0} s",
            self.what,
            self.n,
            self.t0.elapsed().as_secs_f64()
        );
        if self.tty {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
    }
}

impl Drop for BootWait {
    /// The terminal line goes, whether the guests came up or not.
    fn drop(&mut self) {
        if self.tty && self.last.is_some() {
            eprint!("\r\x1b[2K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{may_start, totals, Booting};

    #[test]
    fn two_labs_share_the_cores_as_one_lab_would() {
        // The only test that touches the process-wide totals.
        let base = {
            let t = totals();
            (t.booting, t.pending)
        };
        let now = || {
            let t = totals();
            (t.booting - base.0, t.pending - base.1)
        };
        // Two labs of two guests on two cores (nothing else booting).
        let (mut a, mut b) = (Booting::new(2), Booting::new(2));
        assert_eq!(now(), (0, 4));
        assert!(a.admit(2 + base.0));
        a.started("h1".into());
        assert!(b.admit(2 + base.0));
        b.started("h1".into());
        // Four left in all: neither lab's second guest may start yet,
        // though each lab alone would count 2 + 1 < 4.
        assert!(!a.admit(2 + base.0) && !b.admit(2 + base.0));
        assert_eq!(now(), (2, 2));
        // One up: the last three start together.
        a.up("h1");
        a.up("h1");
        assert!(a.admit(2 + base.0) && b.admit(2 + base.0));
        assert!(!a.admit(2 + base.0), "a has nothing left");
        assert_eq!(now(), (3, 0));
        // A guest that fails to start gives its place back; a lab dropped
        // on an error gives back what it held.
        a.failed();
        assert_eq!(now(), (2, 0));
        drop(a);
        b.started("h2".into());
        drop(b);
        assert_eq!(now(), (0, 0));
    }

    /// How many guests start, wave by wave, when each wave's guests all
    /// come up before the next starts.
    fn waves(n: usize, cores: usize) -> Vec<usize> {
        let (mut pending, mut out) = (n, Vec::new());
        while pending > 0 {
            let mut booting = 0;
            while may_start(booting, pending, cores) {
                booting += 1;
                pending -= 1;
            }
            out.push(booting);
        }
        out
    }

    #[test]
    fn guests_start_a_core_at_a_time_and_the_last_few_together() {
        assert_eq!(waves(1, 2), [1]);
        assert_eq!(waves(2, 2), [2]);
        assert_eq!(waves(3, 2), [3]);
        assert_eq!(waves(4, 2), [2, 2]);
        assert_eq!(waves(5, 2), [2, 3]);
        assert_eq!(waves(8, 2), [2, 2, 2, 2]);
        assert_eq!(waves(4, 1), [1, 1, 1, 1]);
        assert_eq!(waves(3, 8), [3]);
        assert_eq!(waves(20, 8), [8, 12]);
        // No cores reported still starts guests.
        assert_eq!(waves(2, 0), [1, 1]);
        assert!(!may_start(0, 0, 2));
    }
}
