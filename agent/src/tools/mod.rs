//! Helper programs reached through the `lnst-agent` binary as hidden
//! subcommands, which the controller's test modules run as ordinary jobs.
//!
//! Data flow: a module (`packet_assert`, `cpu_stat` in the controller's
//! `modules/`) renders a command line such as
//! `"$LNST_AGENT_BIN" capture --iface eth0 --filter icmp`; the agent runs it
//! like any job, with `LNST_AGENT_BIN` set to its own executable, so the
//! binary re-enters here through [`cpu_stat_main`], or [`exec_capture`],
//! which runs the `lnst-capture` program beside it ([`capture_main`]: only
//! that binary links libpcap); the program prints JSON on stdout, which the
//! module parses into `job.result`.
//! Both programs stop cleanly (printing their result, exit 0) on SIGTERM or
//! SIGINT, which is how a job's `kill()` ends them.

mod capture;
mod cpu_stat;

pub use capture::capture_main;
pub use cpu_stat::cpu_stat_main;

/// The capture program's file name, beside `lnst-agent`.
pub const CAPTURE_BIN: &str = "lnst-capture";

/// `lnst-agent capture ARGS`: replaces this process with the
/// [`CAPTURE_BIN`] beside the running executable. Returns only when that
/// fails: 1, with the reason on stderr.
pub fn exec_capture(args: &[String]) -> i32 {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe();
    let bin = match exe.as_ref().ok().and_then(|e| e.parent()) {
        Some(dir) => dir.join(CAPTURE_BIN),
        None => {
            eprintln!("lnst-agent capture: cannot find the agent's own executable: {exe:?}");
            return 1;
        }
    };
    let e = std::process::Command::new(&bin).args(args).exec();
    eprintln!(
        "lnst-agent capture: cannot run {}: {e}; {CAPTURE_BIN} is built with lnst-agent \
         (cargo build) and installed beside it (README, \"Setting up an agent\")",
        bin.display()
    );
    1
}

use std::sync::atomic::{AtomicBool, Ordering};

/// Set by the SIGTERM/SIGINT handler; polled by the programs' loops.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_signal: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::SeqCst);
}

/// Makes SIGTERM and SIGINT request a clean stop instead of killing the
/// process, without `SA_RESTART` so a blocking `poll` returns `EINTR`.
fn install_stop_handler() -> Result<(), nix::Error> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_stop_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe { sigaction(signal, &action) }?;
    }
    Ok(())
}

/// Whether a stop signal has arrived.
fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Takes the value following `--name` out of `args` (`--name VALUE` or
/// `--name=VALUE`); `Err` names the option when the value is missing.
fn take_opt(args: &[String], name: &str) -> Result<Option<String>, String> {
    let flag = format!("--{name}");
    let prefix = format!("--{name}=");
    let mut found = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if *a == flag {
            match it.next() {
                Some(v) => found = Some(v.clone()),
                None => return Err(format!("option {flag} needs a value")),
            }
        } else if let Some(v) = a.strip_prefix(&prefix) {
            found = Some(v.to_string());
        }
    }
    Ok(found)
}

/// Rejects anything in `args` that is not one of the `known` `--options`
/// (each of which takes a value).
fn check_known(args: &[String], known: &[&str]) -> Result<(), String> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let name = a
            .strip_prefix("--")
            .map(|n| n.split('=').next().unwrap_or(n));
        match name {
            Some(n) if known.contains(&n) => {
                if !a.contains('=') {
                    it.next();
                }
            }
            _ => {
                let list: Vec<String> = known.iter().map(|k| format!("--{k}")).collect();
                return Err(format!(
                    "unexpected argument {a:?}; accepted: {}",
                    list.join(", ")
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_are_taken_in_both_forms() {
        let a = v(&["--iface", "eth0", "--filter=icmp and host 1.2.3.4"]);
        assert_eq!(take_opt(&a, "iface").unwrap().as_deref(), Some("eth0"));
        assert_eq!(
            take_opt(&a, "filter").unwrap().as_deref(),
            Some("icmp and host 1.2.3.4")
        );
        assert_eq!(take_opt(&a, "count").unwrap(), None);
        assert!(check_known(&a, &["iface", "filter"]).is_ok());
        let e = check_known(&a, &["iface"]).unwrap_err();
        assert!(e.contains("--filter") && e.contains("--iface"), "{e}");
        assert!(take_opt(&v(&["--iface"]), "iface").is_err());
    }
}
