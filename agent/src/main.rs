//! `lnst-agent`: the daemon on each test host that `lnst-ctl` drives.
//!
//! Parses the command line, sets up logging, opens the state dir (replaying
//! a journal left by a previous agent), binds the listeners, prints
//! `READY ...` and serves until SIGTERM/SIGINT, then undoes everything and
//! exits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use lnst_agent::{server, Agent, AgentConfig};
use tokio::sync::watch;

const EXIT_CODES: &str = "\
Exit status:
  0  stopped by SIGTERM/SIGINT (or parent death with --lab), everything undone
  1  stopped, but some undo failed (each error is logged)
  2  usage error (bad arguments, TCP without --insecure)
  3  could not start (state dir in use or unusable, cannot listen)

Environment:
  LNST_HEARTBEAT_MS=INTERVAL[,TIMEOUT]  heartbeat period and silence limit
                                        (default 1000,3000)
  RUST_LOG                              overrides the -v log filter";

/// The lnst test agent: runs jobs and configures devices for lnst-ctl.
#[derive(Debug, Parser)]
#[command(name = "lnst-agent", version, after_help = EXIT_CODES)]
struct Args {
    /// Listen on TCP ADDR:PORT (needs --insecure until authentication lands).
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// Allow --listen without authentication or encryption.
    #[arg(long)]
    insecure: bool,
    /// Listen on a unix socket (created with mode 0600).
    #[arg(long, value_name = "PATH")]
    unix: Option<PathBuf>,
    /// Where the undo journal and lock live; two agents need two dirs.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/lnst-agent")]
    state_dir: PathBuf,
    /// Netns lab mode: undo and exit when the process that started the
    /// agent dies (PR_SET_PDEATHSIG).
    #[arg(long)]
    lab: bool,
    /// More logging (-v info, -vv debug, -vvv trace); logs go to stderr.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn main() -> ExitCode {
    // Helper tools that test modules run as jobs (`lnst-agent capture ...`);
    // not part of the daemon's own command line.
    let raw: Vec<String> = std::env::args().skip(1).collect();
    match raw.first().map(String::as_str) {
        Some("capture") => return exit_code(lnst_agent::tools::capture_main(&raw[1..])),
        Some("cpu-stat") => return exit_code(lnst_agent::tools::cpu_stat_main(&raw[1..])),
        _ => {}
    }
    let args = Args::parse();
    init_logging(args.verbose);
    if args.listen.is_none() && args.unix.is_none() {
        eprintln!("lnst-agent: give --unix PATH and/or --listen ADDR:PORT --insecure");
        return ExitCode::from(2);
    }
    if args.listen.is_some() && !args.insecure {
        eprintln!(
            "lnst-agent: --listen without authentication requires --insecure \
             (TCP authentication is not available in this build)"
        );
        return ExitCode::from(2);
    }
    if args.lab {
        // SAFETY: prctl(PR_SET_PDEATHSIG) takes plain integers.
        // Note: the signal fires when the parent *thread* that forked us
        // exits; the lab spawns agents from a long-lived thread.
        let r = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) };
        if r != 0 {
            eprintln!(
                "lnst-agent: prctl(PR_SET_PDEATHSIG): {}",
                std::io::Error::last_os_error()
            );
            return ExitCode::from(3);
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lnst-agent: cannot start the runtime: {e}");
            return ExitCode::from(3);
        }
    };
    rt.block_on(run(args))
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn run(args: Args) -> ExitCode {
    let (agent, unix, tcp) = match start(&args).await {
        Ok(x) => x,
        Err(e) => {
            eprintln!("lnst-agent: {e:#}");
            return ExitCode::from(3);
        }
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        let stop = wait_for_signal().await;
        tracing::warn!(signal = stop, "stopping: undoing and exiting");
        let _ = stop_tx.send(true);
    });
    server::serve(agent.clone(), unix, tcp, stop_rx).await;
    if let Some(p) = &args.unix {
        let _ = std::fs::remove_file(p);
    }
    // Sessions undid their own changes; this catches anything journaled
    // outside a session.
    let r = agent.journal.replay(&agent.undo_ctx).await;
    for e in &r.errors {
        tracing::error!(error = %e, "undo at shutdown failed");
    }
    if r.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

type Started = (
    Arc<Agent>,
    Option<tokio::net::UnixListener>,
    Option<tokio::net::TcpListener>,
);

async fn start(args: &Args) -> anyhow::Result<Started> {
    let agent = Agent::start(AgentConfig::new(args.state_dir.clone())).await?;
    let unix = match &args.unix {
        Some(p) => Some(
            server::bind_unix(p).with_context(|| format!("cannot listen on {}", p.display()))?,
        ),
        None => None,
    };
    let tcp = match &args.listen {
        Some(a) => Some(
            tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on {a}"))?,
        ),
        None => None,
    };
    let mut ready = Vec::new();
    if let Some(p) = &args.unix {
        ready.push(p.display().to_string());
    }
    if let Some(l) = &tcp {
        ready.push(l.local_addr()?.to_string());
    }
    tracing::info!(listening = ?ready, state_dir = %args.state_dir.display(), "ready");
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "READY {}", ready.join(" "))?;
        out.flush()?;
    }
    Ok((Arc::new(agent), unix, tcp))
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; SIGTERM/SIGINT will not undo");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
