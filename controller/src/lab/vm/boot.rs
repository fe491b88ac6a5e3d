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
//! count is per process ([`BOOTING`]): the labs of a suite run with
//! `--jobs N` share the cores too. Each guest's boot timeout counts from
//! its own start.

use std::collections::BTreeMap;
use std::fs;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
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

/// Guests booting in this process, whatever lab they belong to.
static BOOTING: AtomicUsize = AtomicUsize::new(0);

/// One lab's booting guests (host -> when it started), counted in
/// [`BOOTING`] until they are up or the lab gives up on them.
#[derive(Default)]
struct Booting(BTreeMap<String, Instant>);

impl Booting {
    fn started(&mut self, host: String) {
        if self.0.insert(host, Instant::now()).is_none() {
            BOOTING.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn up(&mut self, host: &str) {
        if self.0.remove(host).is_some() {
            BOOTING.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Booting {
    /// A lab that stops waiting (error, Ctrl-C) no longer holds cores.
    fn drop(&mut self) {
        BOOTING.fetch_sub(self.0.len(), Ordering::SeqCst);
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
    let mut booting = Booting::default();
    let mut pids = String::new();
    let mut ready = 0;
    let mut waiting = BootWait::new(total, lab.accel.name(), timeout);
    let console_of = |host: &str| opts.run_dir.join(format!("console-{host}.log"));
    while ready < total {
        while may_start(BOOTING.load(Ordering::SeqCst), pending.len(), cores) {
            let Some(p) = pending.pop_front() else { break };
            let host = p.spec.host.clone();
            let g = qemu::spawn(&p.spec, ns, p.console, tx.clone())
                .map_err(|e| vm_err(format!("cannot start {} for host {host}: {e}", qemu::QEMU)))?;
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
            .0
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
                let slow: Vec<&str> = booting.0.keys().map(String::as_str).collect();
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
    use super::{may_start, Booting, BOOTING};
    use std::sync::atomic::Ordering;

    #[test]
    fn booting_guests_are_counted_per_process_until_up_or_given_up() {
        let base = BOOTING.load(Ordering::SeqCst);
        let mut a = Booting::default();
        a.started("h1".into());
        a.started("h1".into());
        a.started("h2".into());
        let mut b = Booting::default();
        b.started("h1".into());
        assert_eq!(BOOTING.load(Ordering::SeqCst), base + 3);
        a.up("h1");
        a.up("h1");
        a.up("nobody");
        assert_eq!(BOOTING.load(Ordering::SeqCst), base + 2);
        drop(a);
        assert_eq!(BOOTING.load(Ordering::SeqCst), base + 1);
        drop(b);
        assert_eq!(BOOTING.load(Ordering::SeqCst), base);
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
