//! A throwaway PostgreSQL server for tests and benchmarks: the Debian
//! package's real `postgres`, in a scratch directory, reachable only over
//! a unix socket in that directory, started once per test process and
//! stopped when the process exits (parent-death signal). Each test gets a
//! database of its own from [`TestPostgres::new_db`].
//!
//! Without the binaries it returns `None` and tests print SKIP, unless
//! `LNST_REQUIRE_PG=1` (set by `.ci/run`), where that is a failure.
//!
//! Include with `#[path = "…/support/postgres.rs"] mod postgres;`.

#![allow(dead_code)]

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// One running server.
pub struct TestPostgres {
    /// Holds `data/` and the socket.
    pub dir: PathBuf,
    /// The server's process id.
    pub pid: u32,
}

static SERVER: OnceLock<Option<TestPostgres>> = OnceLock::new();
static DBS: AtomicUsize = AtomicUsize::new(0);

impl TestPostgres {
    /// The process's server, started on first use; `None` (after printing
    /// SKIP) when PostgreSQL is not installed and not required.
    pub fn get() -> Option<&'static TestPostgres> {
        SERVER
            .get_or_init(|| match find_bin_dir() {
                Some(bin) => Some(start(&bin).unwrap_or_else(|e| panic!("test PostgreSQL: {e}"))),
                None => {
                    if std::env::var("LNST_REQUIRE_PG").as_deref() == Ok("1") {
                        panic!("LNST_REQUIRE_PG=1 but no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (apt-get install postgresql)");
                    }
                    eprintln!("SKIP: PostgreSQL is not installed (apt-get install postgresql)");
                    None
                }
            })
            .as_ref()
    }

    /// A connection URL for database `db` on this server.
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://lnst@{}/{db}", pct(&self.dir))
    }

    /// A fresh, empty database of its own for one test; returns its URL.
    pub fn new_db(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            DBS.fetch_add(1, Ordering::Relaxed)
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// Runs SQL with `psql` as the superuser `lnst`; panics on failure.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let bin = find_bin_dir().expect("postgres binaries");
        let psql = ["/usr/bin/psql".into(), bin.join("psql")]
            .into_iter()
            .find(|p: &PathBuf| p.exists())
            .expect("psql");
        let out = Command::new(psql)
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.dir)
            .args(["-U", "lnst", "-d", db, "-c", sql])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A URL on which no server listens (a socket directory with nothing
    /// in it), for "the database is down" tests.
    pub fn down_url() -> String {
        format!(
            "postgresql://lnst@{}/lnst",
            pct(Path::new("/nonexistent-lnst-pg"))
        )
    }
}

/// `/tmp/x` → `%2Ftmp%2Fx`, a unix-socket host in a URL.
fn pct(p: &Path) -> String {
    p.display().to_string().replace('/', "%2F")
}

/// The newest `/usr/lib/postgresql/<N>/bin` holding `postgres` and `initdb`.
fn find_bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("postgres").exists() && bin.join("initdb").exists()).then_some((v, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, b)| b)
}

/// uid and gid of the `postgres` system user (the server refuses root).
fn postgres_user() -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string())?;
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&"postgres") && f.len() > 3)
                .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
                .flatten()
        })
        .ok_or_else(|| {
            "no `postgres` user in /etc/passwd (apt-get install postgresql creates it)".into()
        })
}

fn start(bin: &Path) -> Result<TestPostgres, String> {
    remove_stale_dirs();
    let (uid, gid) = postgres_user()?;
    let dir = std::env::temp_dir().join(format!("lnst-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
    let data = dir.join("data");
    let out = Command::new(bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "lnst",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        ])
        .uid(uid)
        .gid(gid)
        .current_dir(&dir)
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // The server is spawned by a thread that never ends, so its
    // parent-death signal fires when this process exits, not when the
    // test thread that happened to start it does.
    let (tx, rx) = std::sync::mpsc::channel();
    let (bin, dir2) = (bin.to_owned(), dir.clone());
    std::thread::spawn(move || {
        let log = std::fs::File::create(dir2.join("server.log")).expect("server.log");
        let child = Command::new(bin.join("postgres"))
            .arg("-D")
            .arg(dir2.join("data"))
            .arg("-k")
            .arg(&dir2)
            .args([
                "-c",
                "listen_addresses=",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
            ])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=200"])
            .uid(uid)
            .gid(gid)
            .current_dir(&dir2)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .pre_exec_deathsig()
            .spawn();
        let _ = tx.send(child.map(|c| c.id()).map_err(|e| e.to_string()));
        loop {
            std::thread::park();
        }
    });
    let pid = rx.recv().map_err(|e| e.to_string())??;
    let sock = dir.join(".s.PGSQL.5432");
    let t0 = Instant::now();
    while !sock.exists() {
        if t0.elapsed() > Duration::from_secs(30) {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            return Err(format!("the server did not start in 30 s: {log}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let pg = TestPostgres { dir, pid };
    // The socket appears before the server accepts logins: wait for one.
    let t0 = Instant::now();
    loop {
        let ok = Command::new(find_bin_dir().unwrap().join("pg_isready"))
            .arg("-h")
            .arg(&pg.dir)
            .args(["-U", "lnst", "-q"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            break;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            return Err("the server did not accept connections in 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = writeln!(std::io::stderr(), "test PostgreSQL at {}", pg.dir.display());
    Ok(pg)
}

/// Scratch directories of test processes that are gone.
fn remove_stale_dirs() {
    for e in std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("lnst-pg-")) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

trait DeathSig {
    fn pre_exec_deathsig(&mut self) -> &mut Self;
}

impl DeathSig for Command {
    /// SIGINT (PostgreSQL's fast shutdown) to the server when its parent
    /// thread, and so this process, ends.
    fn pre_exec_deathsig(&mut self) -> &mut Self {
        unsafe {
            self.pre_exec(|| {
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGINT as libc::c_ulong,
                    0,
                    0,
                    0,
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        }
    }
}
