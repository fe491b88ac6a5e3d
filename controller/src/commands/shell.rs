//! `lnst-ctl shell RUN HOST`: an interactive shell in a host of a running
//! netns lab (`ip netns exec lnst-RUN-HOST bash`, the way containerlab's
//! `exec` enters a node), with a prompt naming the host and `LNST_RUN` /
//! `LNST_HOST` set. The shell is closed (SIGHUP) when the run ends and its
//! namespace goes away. The VM lab's guests have no shell path: the
//! breakpoint prompt runs commands on them instead.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, Context};

use crate::exit::{ExitCode, Failure};
use crate::interact::enter::{self, Found};

pub fn exec(run: &str, host: &str) -> Result<ExitCode, Failure> {
    let netns = match enter::find(&enter::labs_dir(), run, host) {
        Found::Netns(ns) => ns,
        Found::NoNamespace => {
            return Err(Failure::new(
                ExitCode::Usage,
                anyhow!("run {run} is a VM lab: its guests have no shell; pause the run (m.breakpoint or --pause-on-fail) and type `{host} COMMAND` at the prompt"),
            ))
        }
        Found::NoHost(hosts) => {
            return Err(Failure::new(
                ExitCode::Usage,
                anyhow!("run {run} has no host {host:?}; its hosts: {}", hosts.join(", ")),
            ))
        }
        Found::NoRun(runs) => {
            return Err(Failure::new(
                ExitCode::Usage,
                anyhow!(
                    "no running lab {run:?}; running: {}",
                    if runs.is_empty() { "none".to_string() } else { runs.join(", ") }
                ),
            ))
        }
    };
    let runid = netns
        .strip_prefix("lnst-")
        .and_then(|r| r.strip_suffix(&format!("-{host}")))
        .unwrap_or(run)
        .to_string();
    let code = shell(&netns, &runid, host).map_err(|e| Failure::new(ExitCode::Infra, e))?;
    Ok(if code == 0 {
        ExitCode::Pass
    } else {
        ExitCode::Fail
    })
}

/// Runs the shell in `netns` until it exits or the namespace goes away;
/// returns its exit status.
fn shell(netns: &str, runid: &str, host: &str) -> anyhow::Result<i32> {
    let prompt = format!("[lnst {host}] \\w\\$ ");
    let (prog, args): (&str, Vec<String>) = if Path::new("/bin/bash").exists() {
        // The user's bashrc first (aliases), then the prompt over it.
        let rc = std::env::temp_dir().join(format!("lnst-shell-{}.bashrc", std::process::id()));
        std::fs::write(
            &rc,
            format!(
                "[ -f ~/.bashrc ] && . ~/.bashrc\nPS1='{prompt}'\nrm -f '{}'\n",
                rc.display()
            ),
        )
        .with_context(|| format!("cannot write {}", rc.display()))?;
        (
            "bash",
            vec!["--rcfile".into(), rc.display().to_string(), "-i".into()],
        )
    } else {
        ("sh", vec!["-i".into()])
    };
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns, prog])
        .args(&args)
        .env("PS1", &prompt)
        .env("LNST_RUN", runid)
        .env("LNST_HOST", host);
    // While the shell runs, Ctrl-C and Ctrl-\ are the shell's, not ours
    // (as system(3) does); the shell gets the default dispositions back.
    // SAFETY: only async-signal-safe calls (signal) between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGQUIT, libc::SIG_DFL);
            Ok(())
        });
    }
    eprintln!("lnst-ctl: shell on {host} (namespace {netns}); exit or Ctrl-D leaves it");
    // SAFETY: setting a disposition to SIG_IGN has no handler to race with.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
    }
    let mut child = cmd
        .spawn()
        .context("cannot start `ip netns exec` (is iproute2 installed?)")?;
    let ns_path = Path::new("/run/netns").join(netns);
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(st.code().unwrap_or(1));
        }
        if !ns_path.exists() {
            eprintln!("\r\nlnst-ctl: run {runid} ended (namespace {netns} removed); closing the shell on {host}");
            // The shell and what it started in the foreground.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGHUP,
            );
            child.wait()?;
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
