//! The command line (RECIPES.md §9): one file per subcommand, each with an
//! `exec`. This file holds the clap definitions and the runtime set-up
//! shared by the commands that talk to agents: a tokio runtime on the main
//! thread (which also watches for Ctrl-C) and the work — the Rhai engine
//! included — on one plain OS thread.

pub mod api;
pub mod compare;
pub mod completions;
pub mod doctor;
pub mod history;
pub mod import;
pub mod lab_clean;
pub mod pool_check;
pub mod pool_sync;
pub mod release;
pub mod report;
pub mod reserve;
pub mod run;
pub mod shell;
pub mod status;
pub mod validate;

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use lnst_common::secure::ClientAuth;

use crate::client::AgentAddr;
use crate::pool::Machine;

use crate::exit::{ExitCode, Failure, EXIT_HELP};
use crate::recipe::Cancel;

/// Runs Rhai network test recipes on lnst agents: a pool of machines, or a
/// netns lab built on this machine.
#[derive(Debug, Parser)]
#[command(name = "lnst-ctl", version, after_help = EXIT_HELP)]
pub struct Cli {
    /// More diagnostics on stderr (-v info, -vv debug); recipe print() lines too.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Runs a recipe (`lnst-ctl run recipe.rhai -- mtu=9000`), or a suite
    /// of them (`lnst-ctl run recipes/ --jobs 2`).
    #[command(after_help = EXIT_HELP)]
    Run(RunArgs),
    /// Shows a recipe's description, params, requirements and (with
    /// --pool) its mapping, without contacting any agent.
    #[command(after_help = EXIT_HELP)]
    Validate(ValidateArgs),
    /// Writes one self-contained HTML page for runs (run directories or
    /// ids from `history`: header, topology, results, job output, each
    /// measurement against its history), or with --history RECIPE the
    /// recipe's history page.
    #[command(after_help = EXIT_HELP)]
    Report(report::ReportArgs),
    /// Pool maintenance.
    #[command(subcommand)]
    Pool(PoolCmd),
    /// Netns lab maintenance.
    #[command(subcommand)]
    Lab(LabCmd),
    /// Holds machines of the shared pool (PostgreSQL --db) for a person:
    /// `lnst-ctl reserve --pool DIR m1 m2 --for 2h`, or a recipe's
    /// requirements; waits in the queue like a run.
    #[command(after_help = EXIT_HELP)]
    Reserve(ReserveArgs),
    /// Gives a shared-pool reservation back: its id, or a machine it holds.
    Release {
        /// Reservation ids (`lnst-ctl status`) or machine ids.
        #[arg(required = true)]
        targets: Vec<String>,
        /// The shared PostgreSQL (default $LNST_DB).
        #[arg(long, value_name = "URL")]
        db: Option<String>,
    },
    /// Shows the shared pool: each machine, who holds it since when until
    /// when, dirty machines, and the queue.
    Status {
        /// The shared PostgreSQL (default $LNST_DB).
        #[arg(long, value_name = "URL")]
        db: Option<String>,
    },
    /// Prints the recipe API: every function and property with its doc.
    Api {
        /// Write Rhai definition files (*.d.rhai) for the whole recipe
        /// API into DIR instead, for an editor with the Rhai language
        /// server (README: Editor support).
        #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
        definitions: Option<PathBuf>,
    },
    /// Checks what the labs and modules need on this machine (root,
    /// namespaces, link kinds, ping, iperf3, tcpdump, libpcap, qemu,
    /// busybox-static, kmod, a cached kernel) and prints the fix for each
    /// missing thing. Exit 0 when nothing is missing, 1 otherwise.
    Doctor {
        /// Install the missing Debian packages (apt-get install -y) and
        /// fetch the VM lab's kernel, then check again.
        #[arg(long)]
        fix: bool,
        /// Only what this lab needs: `netns` leaves out the VM lab's
        /// checks (qemu, busybox, kernel); default both.
        #[arg(long, value_name = "KIND", value_parser = ["netns", "vm"])]
        lab: Option<String>,
    },
    /// Prints a completion script: `source <(lnst-ctl completions bash)`,
    /// or save it where your shell loads completions from (README).
    Completions {
        #[arg(value_enum)]
        shell: completions::Shell,
    },
    /// Prints the man page lnst-ctl(1); with --dir, writes one page per
    /// command there (`lnst-ctl-run.1`, ..) and lists them.
    Man {
        #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
        dir: Option<PathBuf>,
    },
    /// Opens an interactive shell on HOST of the running lab RUN (its run
    /// id, or a unique prefix, as a breakpoint shows it): in a netns
    /// host's namespace, or on a VM guest's console; the prompt names the
    /// host; the shell closes when the run ends.
    Shell {
        /// The lab's run id (`ls /run/lnst/labs`).
        run: String,
        /// The host requirement's name (`h1`).
        host: String,
    },
    /// Lists recorded runs (newest first); with RECIPE also each
    /// measurement's trend with change points and baseline, and flaky
    /// checks (results that flipped PASS/FAIL repeatedly).
    History {
        /// A recipe file name (`perf_demo.rhai`, or its path).
        recipe: Option<String>,
        /// The results store (default: $LNST_DB, else
        /// ~/.local/share/lnst/results.db).
        #[arg(long, value_name = "URL")]
        db: Option<String>,
        /// How many runs to list.
        #[arg(long, value_name = "N", default_value_t = 20)]
        runs: usize,
        /// How many of each series' newest runs the trends use.
        #[arg(long, value_name = "N", default_value_t = 50)]
        points: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Compares two runs: each measurement's change and whether it is
    /// beyond noise, results that differ, environment differences. RUN is
    /// a run id as `history` prints it, or a run directory.
    #[command(after_help = COMPARE_EXIT_HELP)]
    Compare {
        /// The earlier run.
        a: String,
        /// The later run.
        b: String,
        /// The results store (default: $LNST_DB, else
        /// ~/.local/share/lnst/results.db).
        #[arg(long, value_name = "URL")]
        db: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Records run directories of earlier runs in the results store.
    Import {
        /// Run directories `lnst-ctl run` made.
        #[arg(required = true, value_name = "RUNDIR", value_hint = clap::ValueHint::DirPath)]
        dirs: Vec<PathBuf>,
        /// The results store (as for `run`): `postgres://…` or an SQLite
        /// file. Default: $LNST_DB, else ~/.local/share/lnst/results.db.
        #[arg(long, value_name = "URL")]
        db: Option<String>,
    },
    /// For shell completion: the params RECIPE declares, one `NAME=` a
    /// line (runs its declaration phase; nothing is contacted).
    #[command(name = "__params", hide = true)]
    Params { recipe: PathBuf },
    /// Creates the controller's key pair and prints the line each agent
    /// lists in accepted_keys (/etc/lnst/agent.toml).
    Keygen {
        /// Where to write the private key (default
        /// ~/.config/lnst/controller.key; the public key goes beside it as .pub).
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
        /// Replace an existing key (agents that accept the old one refuse
        /// the new one until their accepted_keys are updated).
        #[arg(long)]
        force: bool,
    },
}

/// How `run` and `pool check` authenticate to agents over TCP.
#[derive(Debug, Clone, Args)]
pub struct AuthArgs {
    /// The controller's key for agents over TCP (default
    /// ~/.config/lnst/controller.key, made by `lnst-ctl keygen`).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Drive agents over plain TCP, without authentication or encryption
    /// (the agents need --insecure too). Isolated labs only.
    #[arg(long)]
    pub insecure: bool,
}

/// Printed on stderr at the start of an `--insecure` run or check.
pub const INSECURE_WARNING: &str = "\
lnst-ctl: WARNING: --insecure: agents over TCP are driven WITHOUT AUTHENTICATION OR ENCRYPTION;
lnst-ctl: WARNING: anyone on the network can impersonate an agent or read and alter the traffic.";

/// The transport authentication for each machine (by id): `None` for a
/// unix socket, `Insecure` with `--insecure`, otherwise Noise with our key
/// (loaded once, only if some machine is over TCP) and the key its pool
/// file pins (a missing pin fails at connect time, showing the key the
/// agent presented). A missing or unusable controller key is an error
/// saying to run `lnst-ctl keygen`.
pub fn auth_for(
    a: &AuthArgs,
    machines: &[&Machine],
) -> anyhow::Result<BTreeMap<String, Option<ClientAuth>>> {
    let tcp = |m: &Machine| matches!(m.address.parse::<AgentAddr>(), Ok(AgentAddr::Tcp(_)));
    let ours = if !a.insecure && machines.iter().any(|m| tcp(m)) {
        Some(crate::keygen::load_key(a.key.as_deref()).with_context(|| {
            let tcp_ids: Vec<&str> = machines
                .iter()
                .filter(|m| tcp(m))
                .map(|m| m.id.as_str())
                .collect();
            format!(
                "agents over TCP ({}) need a controller key",
                tcp_ids.join(", ")
            )
        })?)
    } else {
        None
    };
    Ok(machines
        .iter()
        .map(|m| {
            let auth = if !tcp(m) {
                None
            } else if a.insecure {
                Some(ClientAuth::Insecure)
            } else {
                ours.as_ref().map(|k| ClientAuth::Noise {
                    ours: k.clone(),
                    pinned: m.agent_key(),
                })
            };
            (m.id.clone(), auth)
        })
        .collect())
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The recipe file (.rhai); several files, or directories (their
    /// *.rhai files, sorted), run as a suite: one summary, one JUnit file,
    /// the exit status of the worst.
    #[arg(value_hint = clap::ValueHint::AnyPath, required = true, num_args = 1..)]
    pub recipe: Vec<PathBuf>,
    /// Pool directory (one TOML file per machine); without it, a lab (--lab).
    #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
    pub pool: Option<PathBuf>,
    /// The lab to build when no --pool is given: `netns` (default; one
    /// network namespace per host) or `vm` (one qemu guest per host with a
    /// full distribution kernel, so every device kind exists).
    #[arg(long, value_name = "KIND", value_parser = ["netns", "vm"])]
    pub lab: Option<String>,
    /// The VM lab's kernel: a path to a bzImage or vmlinux (its modules
    /// in `lib/modules/<release>` beside it or under a kernel build tree),
    /// or a Debian kernel version to fetch (`6.1.0-28`). Default: Debian's
    /// current kernel, fetched and cached on first use. Implies --lab vm.
    #[arg(long, value_name = "PATH|VERSION")]
    pub kernel: Option<String>,
    /// The VM lab's qemu accelerator: `kvm`, `tcg` or `auto` (default:
    /// KVM when a probe guest boots with it, else TCG).
    #[arg(long, value_name = "ACCEL", value_parser = ["auto", "kvm", "tcg"])]
    pub accel: Option<String>,
    /// Run the test once for every match, not only the first.
    #[arg(long)]
    pub all_matches: bool,
    /// Place in the shared pool's queue (with a PostgreSQL --db): higher
    /// first, then in order of arrival.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub priority: i32,
    /// A suite runs up to N recipes at once, each on its own lab (or its
    /// own locked pool machines).
    #[arg(long, short = 'j', value_name = "N", default_value_t = 1)]
    pub jobs: usize,
    /// Where run directories go (default ./lnst-runs).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// The database for results history and shared-pool reservations:
    /// `postgres://USER@HOST/DB` for a shared PostgreSQL, or an SQLite file
    /// path. Default: $LNST_DB, else ~/.local/share/lnst/results.db.
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,
    /// At the first FAIL or ERROR, pause as `m.breakpoint` does: everything
    /// stays configured, each host's way in is shown; Enter continues, q
    /// ends the test. Ignored (with a note in the run log) when stdin is
    /// not a terminal.
    #[arg(long)]
    pub pause_on_fail: bool,
    /// The lnst-agent binary the labs run (default: beside lnst-ctl); the
    /// VM lab's guests run it from this machine's root too.
    #[arg(long, value_name = "PATH")]
    pub agent_bin: Option<PathBuf>,
    #[command(flatten)]
    pub auth: AuthArgs,
    /// Params: `-- name=value ...` (arrays and maps as JSON).
    #[arg(last = true, value_name = "NAME=VALUE")]
    pub params: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The recipe file (.rhai).
    #[arg(value_hint = clap::ValueHint::FilePath)]
    pub recipe: PathBuf,
    /// Pool directory to map the requirements onto.
    #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
    pub pool: Option<PathBuf>,
    /// The lab to plan when no --pool is given: `netns` or `vm` (the plan
    /// is shown; nothing is booted).
    #[arg(long, value_name = "KIND", value_parser = ["netns", "vm"])]
    pub lab: Option<String>,
    /// The VM lab's kernel (as for `run`); implies --lab vm.
    #[arg(long, value_name = "PATH|VERSION")]
    pub kernel: Option<String>,
    #[arg(last = true, value_name = "NAME=VALUE")]
    pub params: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ReserveArgs {
    /// Machine ids of the pool, or one recipe (.rhai) whose requirements
    /// pick them.
    pub targets: Vec<String>,
    /// The pool directory (its files must match the registered machines).
    #[arg(long, value_name = "DIR", default_value = "pools")]
    pub pool: PathBuf,
    /// How long: 2h, 30m, 1h30m (the lease; renewable).
    #[arg(long = "for", value_name = "DURATION", default_value = "1h")]
    pub r#for: String,
    /// Extend reservation ID to --for from now instead of reserving.
    #[arg(long, value_name = "ID")]
    pub renew: Option<i64>,
    /// Place in the queue: higher first, then in order of arrival.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub priority: i32,
    /// What for, shown by `status` (default: the machines asked for).
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
    /// The shared PostgreSQL (default $LNST_DB).
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,
    #[command(flatten)]
    pub auth: AuthArgs,
}

#[derive(Debug, Subcommand)]
pub enum PoolCmd {
    /// Connects to every machine of a pool: reachable, authenticated
    /// (or how it failed), protocol version, NICs present as the file says.
    Check {
        #[arg(long, value_name = "DIR", default_value = "pools")]
        pool: PathBuf,
        #[command(flatten)]
        auth: AuthArgs,
    },
    /// Registers the pool's machines in the shared pool (PostgreSQL
    /// --db): new files are added, changed ones updated.
    Sync {
        #[arg(long, value_name = "DIR", default_value = "pools")]
        pool: PathBuf,
        #[arg(long, value_name = "URL")]
        db: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum LabCmd {
    /// Removes labs (namespaces, agents) left by a controller that died.
    Clean,
}

/// Dispatches a parsed command line.
pub fn exec(cli: Cli) -> Result<ExitCode, Failure> {
    let v = cli.verbose;
    match cli.cmd {
        Cmd::Run(a) => on_thread(move |rt, cancel| run::exec(a, v, rt, cancel)),
        Cmd::Validate(a) => validate::exec(a),
        Cmd::Report(a) => report::exec(a),
        Cmd::Pool(PoolCmd::Check { pool, auth }) => {
            on_thread(move |rt, _| pool_check::exec(&pool, &auth, rt))
        }
        Cmd::Pool(PoolCmd::Sync { pool, db }) => {
            on_thread(move |rt, _| pool_sync::exec(&pool, db.as_deref(), rt))
        }
        Cmd::Reserve(a) => on_thread(move |rt, cancel| reserve::exec(a, rt, cancel)),
        Cmd::Release { targets, db } => {
            on_thread(move |rt, _| release::exec(&targets, db.as_deref(), rt))
        }
        Cmd::Status { db } => on_thread(move |rt, _| status::exec(db.as_deref(), rt)),
        Cmd::Lab(LabCmd::Clean) => lab_clean::exec(),
        Cmd::Api { definitions } => api::exec(definitions.as_deref()),
        Cmd::Shell { run, host } => shell::exec(&run, &host),
        Cmd::Doctor { fix, lab } => doctor::exec(fix, lab.as_deref()),
        Cmd::History {
            recipe,
            db,
            runs,
            points,
            json,
        } => history::exec(recipe.as_deref(), db.as_deref(), runs, points, json),
        Cmd::Compare { a, b, db, json } => compare::exec(&a, &b, db.as_deref(), json),
        Cmd::Import { dirs, db } => import::exec(&dirs, db.as_deref()),
        Cmd::Completions { shell } => completions::completions(shell),
        Cmd::Man { dir } => completions::man(dir.as_deref()),
        Cmd::Params { recipe } => completions::params(&recipe),
        Cmd::Keygen { out, force } => {
            let out = out.unwrap_or_else(crate::keygen::default_key_path);
            crate::keygen::keygen_main(&out, force)
                .map(|()| ExitCode::Pass)
                .map_err(|e| Failure::new(ExitCode::Usage, e))
        }
    }
}

/// `compare`'s exit statuses: `diff`'s, so scripts can gate on them.
const COMPARE_EXIT_HELP: &str = "\
Exit status:
  0    no measurement beyond noise, and results in both runs have the same verdict
  1    a measurement beyond noise, or a result whose verdict differs
  2    no such run or results store, or a bad thresholds file
  3    the results store cannot be read";

/// Runs `work` on its own OS thread with a runtime handle; the main thread
/// drives the runtime and turns Ctrl-C / SIGTERM into cancellation, then
/// waits for `work` to clean up and return.
fn on_thread(
    work: impl FnOnce(tokio::runtime::Handle, Cancel) -> Result<ExitCode, Failure> + Send + 'static,
) -> Result<ExitCode, Failure> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            Failure::new(
                ExitCode::Infra,
                anyhow::anyhow!("cannot start the async runtime: {e}"),
            )
        })?;
    let cancel = Cancel::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let handle = rt.handle().clone();
    let c = cancel.clone();
    let thread = std::thread::Builder::new()
        .name("lnst-run".into())
        .spawn(move || {
            let _ = tx.send(work(handle, c));
        })
        .map_err(|e| {
            Failure::new(
                ExitCode::Infra,
                anyhow::anyhow!("cannot start the run thread: {e}"),
            )
        })?;
    let result = rt.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).ok();
        let mut rx = rx;
        loop {
            tokio::select! {
                r = &mut rx => return r,
                _ = tokio::signal::ctrl_c() => {
                    eprintln!("\nlnst-ctl: interrupted; cleaning up (the run exits 130)");
                    cancel.cancel();
                }
                Some(_) = async { match term.as_mut() { Some(t) => t.recv().await, None => std::future::pending().await } } => {
                    eprintln!("lnst-ctl: SIGTERM; cleaning up (the run exits 130)");
                    cancel.cancel();
                }
            }
        }
    });
    let _ = thread.join();
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    result.unwrap_or_else(|_| {
        Err(Failure::new(
            ExitCode::Infra,
            anyhow::anyhow!("the run thread ended without a result (a bug; see the log)"),
        ))
    })
}
