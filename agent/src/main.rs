//! `lnst-agent`: the daemon on each test host that `lnst-ctl` drives.
//!
//! Reads `/etc/lnst/agent.toml` (or `--config`), lets the flags override
//! it, checks that TCP can be served (a key and accepted controller keys,
//! or `--insecure`, warned about loudly), sets up logging, opens the state
//! dir (replaying a journal left by a previous agent), binds the listeners,
//! prints `READY ...` and serves until SIGTERM/SIGINT, then undoes
//! everything and exits. `lnst-agent keygen` creates the agent's key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lnst_agent::config::{self, AgentConfig as FileConfig};
use lnst_agent::{server, virtio, Agent, AgentConfig};
use lnst_common::secure::ServerAuth;
use tokio::sync::watch;

const EXIT_CODES: &str = "\
Exit status:
  0  stopped by SIGTERM/SIGINT (or parent death with --lab), everything undone
  1  stopped, but some undo failed (each error is logged)
  2  usage or configuration error (bad arguments or config file, TCP
     without a key or accepted_keys and without --insecure)
  3  could not start (state dir in use or unusable, cannot listen)

Files:
  /etc/lnst/agent.toml  configuration (--config for another; see
                        packaging/agent.toml.example and docs/SECURITY.md)
  /etc/lnst/agent.key   this agent's key (lnst-agent keygen)

Environment:
  LNST_HEARTBEAT_MS=INTERVAL[,TIMEOUT]  heartbeat period and silence limit
                                        (default 1000,3000)
  RUST_LOG                              overrides -v and log_level";

/// The lnst test agent: runs jobs and configures devices for lnst-ctl.
///
/// Over TCP the agent authenticates controllers by key (Noise XX) and
/// encrypts the channel; plain TCP needs --insecure here and on lnst-ctl.
#[derive(Debug, Parser)]
#[command(name = "lnst-agent", version, after_help = EXIT_CODES)]
struct Args {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Configuration file (default /etc/lnst/agent.toml; a missing default
    /// file means defaults). Flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen on TCP ADDR:PORT, authenticated and encrypted (replaces the
    /// config's `listen`; repeatable).
    #[arg(long, value_name = "ADDR:PORT", value_parser = config::parse_listen)]
    listen: Vec<SocketAddr>,
    /// Serve TCP in plain text, without authentication: anyone who reaches
    /// the port runs commands as root. Isolated labs only.
    #[arg(long)]
    insecure: bool,
    /// Listen on a unix socket (created with mode 0600).
    #[arg(long, value_name = "PATH")]
    unix: Option<PathBuf>,
    /// Serve the controller on a virtio-serial port (the VM lab's guests:
    /// `/dev/virtio-ports/lnst.agent`); a session starts when the host
    /// side connects and ends when it goes.
    #[arg(long, value_name = "DEVICE")]
    virtio_port: Option<PathBuf>,
    /// Where the undo journal and lock live; two agents need two dirs
    /// (default /var/lib/lnst-agent, or the config's state_dir).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Netns lab mode: undo and exit when the process that started the
    /// agent dies (PR_SET_PDEATHSIG).
    #[arg(long)]
    lab: bool,
    /// More logging (-v info, -vv debug, -vvv trace); logs go to stderr.
    /// Without it, the config's log_level.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Creates this agent's key pair and prints the public key to pin in
    /// the controller's pool file.
    Keygen {
        /// Where to write the private key (the public one goes beside it
        /// as .pub).
        #[arg(long, value_name = "PATH", default_value = config::DEFAULT_KEY_FILE)]
        out: PathBuf,
        /// Replace an existing key (it stops working wherever it is pinned).
        #[arg(long)]
        force: bool,
    },
}

/// What the daemon runs with: the config file merged with the flags.
struct Settings {
    file: FileConfig,
    /// The TCP listeners' policy, when there are TCP listeners.
    auth: Option<ServerAuth>,
    lab: bool,
    virtio_port: Option<PathBuf>,
}

/// Merges the flags over the configuration file and checks that what is
/// asked for can be served. Errors are usage errors (exit 2).
fn settings(args: &Args) -> anyhow::Result<Settings> {
    let (path, explicit) = match &args.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(config::DEFAULT_CONFIG_PATH), false),
    };
    let mut c = FileConfig::load(&path, explicit)?;
    if !args.listen.is_empty() {
        c.listen = args.listen.clone();
    }
    if args.unix.is_some() {
        c.unix = args.unix.clone();
    }
    if let Some(d) = &args.state_dir {
        c.state_dir = d.clone();
    }
    c.insecure |= args.insecure;
    if c.listen.is_empty() && c.unix.is_none() && args.virtio_port.is_none() {
        anyhow::bail!(
            "nothing to listen on: give --unix PATH, --listen ADDR:PORT and/or --virtio-port DEVICE \
             (or `listen`/`unix` in {})",
            c.path.display()
        );
    }
    let auth = if c.listen.is_empty() {
        None
    } else {
        let a = c.server_auth()?;
        if let ServerAuth::Noise { accepted, .. } = &a {
            if accepted.is_empty() {
                anyhow::bail!(
                    "no controller keys accepted: add the controller's public key \
                     (printed by `lnst-ctl keygen` on the controller) to accepted_keys \
                     in {}{}; or start with --insecure (unauthenticated, isolated labs only)",
                    c.path.display(),
                    if explicit || c.path.exists() {
                        ""
                    } else {
                        " (the file does not exist yet: install packaging/agent.toml.example there)"
                    }
                );
            }
        }
        Some(a)
    };
    Ok(Settings {
        file: c,
        auth,
        lab: args.lab,
        virtio_port: args.virtio_port.clone(),
    })
}

/// The warning an `--insecure` agent prints at start, on stderr and in the
/// log.
const INSECURE_WARNING: &str = "\
WARNING: lnst-agent is serving TCP WITHOUT AUTHENTICATION OR ENCRYPTION (--insecure).
WARNING: anyone who can reach the port can run commands as root on this machine.
WARNING: use it only on an isolated lab network; see docs/SECURITY.md.";

fn main() -> ExitCode {
    // Helper tools that test modules run as jobs (`lnst-agent capture ...`);
    // not part of the daemon's own command line.
    let raw: Vec<String> = std::env::args().skip(1).collect();
    match raw.first().map(String::as_str) {
        Some("capture") => return exit_code(lnst_agent::tools::exec_capture(&raw[1..])),
        Some("cpu-stat") => return exit_code(lnst_agent::tools::cpu_stat_main(&raw[1..])),
        _ => {}
    }
    let args = Args::parse();
    if let Some(Cmd::Keygen { out, force }) = &args.cmd {
        return match lnst_agent::keygen::keygen_main(out, *force) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("lnst-agent: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    let s = match settings(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("lnst-agent: {e:#}");
            return ExitCode::from(2);
        }
    };
    init_logging(args.verbose, &s.file.log_level);
    match &s.auth {
        Some(ServerAuth::Insecure) => {
            eprintln!("{INSECURE_WARNING}");
            tracing::warn!("serving TCP without authentication or encryption (--insecure)");
        }
        Some(ServerAuth::Noise { ours, accepted, .. }) => tracing::info!(
            key = %ours.public(),
            fingerprint = %ours.public().fingerprint(),
            accepted = accepted.len(),
            "TCP authenticated with Noise XX"
        ),
        None => {}
    }
    if s.lab {
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
    rt.block_on(run(s))
}

fn init_logging(verbose: u8, configured: &str) {
    let level = match verbose {
        0 => configured,
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|e| {
            eprintln!("lnst-agent: log_level {level:?} is not a valid filter ({e}); using warn");
            tracing_subscriber::EnvFilter::new("warn")
        });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn run(s: Settings) -> ExitCode {
    let (agent, unix, tcp, virtio) = match start(&s.file, s.virtio_port.as_deref()).await {
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
    let tcp_auth = server::TcpAuth {
        auth: Arc::new(s.auth.unwrap_or(ServerAuth::Insecure)),
        timeout: s.file.handshake_timeout,
    };
    let port = async {
        if let Some(p) = virtio {
            virtio::serve(agent.clone(), p, stop_rx.clone()).await;
        }
    };
    tokio::join!(
        server::serve(agent.clone(), unix, tcp, tcp_auth, stop_rx.clone()),
        port
    );
    if let Some(p) = &s.file.unix {
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
    Vec<tokio::net::TcpListener>,
    Option<virtio::VirtioPort>,
);

async fn start(c: &FileConfig, virtio_port: Option<&std::path::Path>) -> anyhow::Result<Started> {
    let agent = Agent::start(AgentConfig::new(c.state_dir.clone())).await?;
    let virtio = match virtio_port {
        Some(p) => Some(
            virtio::VirtioPort::open(p)
                .with_context(|| format!("cannot open the virtio port {}", p.display()))?,
        ),
        None => None,
    };
    let unix = match &c.unix {
        Some(p) => Some(
            server::bind_unix(p).with_context(|| format!("cannot listen on {}", p.display()))?,
        ),
        None => None,
    };
    let mut tcp = Vec::new();
    for a in &c.listen {
        tcp.push(
            tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on {a}"))?,
        );
    }
    let mut ready = Vec::new();
    if let Some(p) = &c.unix {
        ready.push(p.display().to_string());
    }
    for l in &tcp {
        ready.push(l.local_addr()?.to_string());
    }
    if let Some(p) = virtio_port {
        ready.push(p.display().to_string());
    }
    tracing::info!(listening = ?ready, state_dir = %c.state_dir.display(), "ready");
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "READY {}", ready.join(" "))?;
        out.flush()?;
    }
    Ok((Arc::new(agent), unix, tcp, virtio))
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
