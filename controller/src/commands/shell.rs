//! `lnst-ctl shell RUN HOST`: an interactive shell in a host of a running
//! netns lab (`ip netns exec lnst-RUN-HOST bash`, the way containerlab's
//! `exec` enters a node), with a prompt naming the host and `LNST_RUN` /
//! `LNST_HOST` set. The shell is closed (SIGHUP) when the run ends and its
//! namespace goes away. On a VM lab guest it attaches to the guest's shell
//! console (a virtio console that the guest's `/init` keeps a shell on,
//! a unix socket in the lab record): the terminal is put in raw mode and
//! relayed, like `virsh console`; `exit` in the guest, Ctrl-D at the
//! prompt or Ctrl-] leaves, and so does the end of the run (qemu closes
//! the socket).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};

use crate::exit::{ExitCode, Failure};
use crate::interact::enter::{self, Found};

pub fn exec(run: &str, host: &str) -> Result<ExitCode, Failure> {
    let netns = match enter::find(&enter::labs_dir(), run, host) {
        Found::Netns(ns) => ns,
        Found::VmShell { runid, socket } => {
            return console(&socket, &runid, host)
                .map(|()| ExitCode::Pass)
                .map_err(|e| Failure::new(ExitCode::Infra, e));
        }
        Found::NoNamespace => {
            return Err(Failure::new(
                ExitCode::Usage,
                anyhow!("run {run} has no shell for its hosts (a VM lab from an older lnst-ctl?); pause the run (m.breakpoint or --pause-on-fail) and type `{host} COMMAND` at the prompt"),
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

/// Ctrl-]: leaves a guest's console (as telnet and `virsh console` do).
const DETACH: u8 = 0x1d;

/// The terminal in raw mode (every key, Ctrl-C included, goes to the
/// guest, whose own terminal does the line editing and signals) until
/// dropped.
struct RawTerminal(libc::termios);

impl RawTerminal {
    /// `None` when stdin is not a terminal.
    fn enter() -> Option<RawTerminal> {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with valid termios pointers.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return None;
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            if libc::tcsetattr(0, libc::TCSANOW, &t) != 0 {
                return None;
            }
            Some(RawTerminal(saved))
        }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        // SAFETY: restores the attributes read in `enter`.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, &self.0);
        }
    }
}

/// Why the relay stopped.
const RUNNING: u8 = 0;
const SHELL_EXITED: u8 = 1;
const RUN_ENDED: u8 = 2;

/// Relays this terminal to the guest's shell console at `socket` until
/// the guest's shell exits, the user leaves (Ctrl-D at an empty line is
/// the shell's `exit`; Ctrl-] detaches) or the run ends.
fn console(socket: &Path, runid: &str, host: &str) -> anyhow::Result<()> {
    let sock = UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot open the shell console of {host} ({}): has the run ended?",
            socket.display()
        )
    })?;
    eprintln!(
        "lnst-ctl: shell on {host} (VM guest console of run {runid}); exit or Ctrl-] leaves it"
    );
    let state = Arc::new(AtomicU8::new(RUNNING));
    let mut from_guest = sock.try_clone().context("cannot duplicate a socket")?;
    let state2 = state.clone();
    let reader = std::thread::spawn(move || {
        let marker = crate::lab::vm::guest::SHELL_EXITED.as_bytes();
        let mut tail: Vec<u8> = Vec::new();
        let mut buf = [0u8; 4096];
        let mut out = std::io::stdout();
        loop {
            let n = match from_guest.read(&mut buf) {
                Ok(0) | Err(_) => {
                    state2.store(RUN_ENDED, Ordering::SeqCst);
                    return;
                }
                Ok(n) => n,
            };
            let _ = out.write_all(&buf[..n]);
            let _ = out.flush();
            tail.extend_from_slice(&buf[..n]);
            if tail.windows(marker.len()).any(|w| w == marker) {
                state2.store(SHELL_EXITED, Ordering::SeqCst);
                return;
            }
            let keep = tail.len().saturating_sub(marker.len());
            tail.drain(..keep);
        }
    });
    let raw = RawTerminal::enter();
    let mut to_guest = sock;
    // A fresh prompt: what the shell printed before we came went nowhere.
    let _ = to_guest.write_all(b"\n");
    let mut buf = [0u8; 1024];
    while state.load(Ordering::SeqCst) == RUNNING {
        let mut pfd = libc::pollfd {
            fd: 0,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, 200) };
        if r <= 0 {
            continue;
        }
        // SAFETY: read into a live buffer of its length.
        let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        let bytes = &buf[..n as usize];
        let (send, detach) = match bytes.iter().position(|&b| b == DETACH) {
            Some(i) => (&bytes[..i], true),
            None => (bytes, false),
        };
        if to_guest.write_all(send).is_err() {
            break;
        }
        if detach {
            break;
        }
    }
    drop(raw);
    let why = state.load(Ordering::SeqCst);
    // Also ends the reader, blocked in its read.
    let _ = to_guest.shutdown(std::net::Shutdown::Both);
    match why {
        RUN_ENDED => {
            eprintln!("\r\nlnst-ctl: run {runid} ended (guest {host} stopped); closing the shell on {host}")
        }
        SHELL_EXITED => eprintln!("\r\nlnst-ctl: the shell on {host} exited"),
        _ => eprintln!("\r\nlnst-ctl: left the shell on {host} (it keeps running in the guest)"),
    }
    let _ = reader.join();
    Ok(())
}
