//! The authenticated TCP transport end to end (issue 6): two fresh network
//! namespaces joined by a veth pair (192.0.2.1 controller side, 192.0.2.2
//! agent side), the real `lnst-agent --listen 192.0.2.2:9999` in one via
//! `ip netns exec`, the real `lnst-ctl` in the other, keys made by both
//! `keygen` commands and a pool directory written here. Checks exit codes,
//! both sides' messages and the agent's log.

#[path = "../../../controller/tests/support/results_store.rs"]
mod results_store;
use results_store::isolate_results_store;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::harness::{unique, TempDir};

const AGENT_ADDR: &str = "192.0.2.2:9999";

fn agent_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lnst-agent"))
}

/// `lnst-ctl`, built beside `lnst-agent` by the workspace build.
fn ctl_bin() -> PathBuf {
    isolate_results_store();
    let p = agent_bin().with_file_name("lnst-ctl");
    assert!(
        p.exists(),
        "{} missing: build it first (cargo build -p lnst-ctl)",
        p.display()
    );
    p
}

fn sh(args: &[&str]) -> Output {
    Command::new(args[0]).args(&args[1..]).output().unwrap()
}

/// Two namespaces and a veth between them, deleted on drop with the
/// agent (killed) and the temp dir.
struct Net {
    agent_ns: String,
    ctl_ns: String,
    dir: TempDir,
    agent: Option<Child>,
    log: PathBuf,
}

impl Net {
    /// `None` (after printing SKIP) when namespaces cannot be made here.
    fn new() -> Option<Net> {
        let base = unique("");
        let (agent_ns, ctl_ns) = (format!("{base}a"), format!("{base}c"));
        let dir = TempDir::new();
        if !sh(&["ip", "netns", "add", &agent_ns]).status.success() {
            println!("SKIP: cannot create network namespaces (not root?)");
            return None;
        }
        let net = Net {
            log: dir.0.join("agent.log"),
            agent_ns,
            ctl_ns,
            dir,
            agent: None,
        };
        let ok = |o: Output| {
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        };
        ok(sh(&["ip", "netns", "add", &net.ctl_ns]));
        ok(sh(&[
            "ip",
            "link",
            "add",
            "vc",
            "netns",
            &net.ctl_ns,
            "type",
            "veth",
            "peer",
            "name",
            "va",
            "netns",
            &net.agent_ns,
        ]));
        for (ns, dev, addr) in [
            (&net.ctl_ns, "vc", "192.0.2.1/24"),
            (&net.agent_ns, "va", "192.0.2.2/24"),
        ] {
            ok(sh(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]));
            ok(sh(&["ip", "-n", ns, "link", "set", dev, "up"]));
            ok(sh(&["ip", "-n", ns, "link", "set", "lo", "up"]));
        }
        Some(net)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }

    /// Runs `lnst-agent keygen` / `lnst-ctl keygen` into `name`; returns
    /// the printed public key and fingerprint.
    fn keygen(&self, bin: &Path, name: &str) -> (String, String) {
        let o = Command::new(bin)
            .args(["keygen", "--out"])
            .arg(self.path(name))
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "{out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let field = |k: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| panic!("no {k} in {out}"))
        };
        (field("public key:"), field("fingerprint:"))
    }

    /// Starts the agent in its namespace with a config accepting
    /// `accepted` (and `extra` flags); waits for READY.
    fn start_agent(&mut self, accepted: &[&str], extra: &[&str]) {
        let keys: Vec<String> = accepted
            .iter()
            .map(|k| format!("  \"{k} test\","))
            .collect();
        let cfg = format!(
            "key_file = \"{}\"\naccepted_keys = [\n{}\n]\nstate_dir = \"{}\"\nhandshake_timeout_secs = 30\n",
            self.path("agent.key").display(),
            keys.join("\n"),
            self.path("state").display()
        );
        std::fs::write(self.path("agent.toml"), cfg).unwrap();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.agent_ns])
            .arg(agent_bin())
            .arg("--config")
            .arg(self.path("agent.toml"))
            .args(["--listen", AGENT_ADDR, "-vv"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&self.log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), format!("READY {AGENT_ADDR}"), "{}", self.log());
        self.agent = Some(child);
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) for `s` in the agent log.
    fn wait_log(&self, s: &str) -> bool {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if self.log().contains(s) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Writes the pool (machine m1 at the agent, pinning `pin`) and a
    /// one-job recipe.
    fn pool_and_recipe(&self, pin: Option<&str>) {
        let pool = self.path("pool");
        std::fs::create_dir_all(&pool).unwrap();
        let key = pin.map(|k| format!("key = \"{k}\"\n")).unwrap_or_default();
        std::fs::write(
            pool.join("m1.toml"),
            format!("address = \"{AGENT_ADDR}\"\n{key}"),
        )
        .unwrap();
        std::fs::write(
            self.path("r.rhai"),
            "host(\"h1\");\nfn test(m) {\n  let j = m.h1.run(\"echo over-noise\");\n  \
             m.check(j.stdout.contains(\"over-noise\"), \"job output came back\");\n}\n",
        )
        .unwrap();
    }

    /// `lnst-ctl ARGS` in the controller namespace.
    fn ctl(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ctl_ns])
            .arg(ctl_bin())
            .args(args)
            .env_remove("LNST_HEARTBEAT_MS")
            .output()
            .unwrap()
    }

    /// `lnst-ctl run r.rhai --pool pool --out runs ARGS`.
    fn run(&self, args: &[&str]) -> Output {
        let (r, p, o) = (self.path("r.rhai"), self.path("pool"), self.path("runs"));
        let mut a = vec![
            "run",
            r.to_str().unwrap(),
            "--pool",
            p.to_str().unwrap(),
            "--out",
            o.to_str().unwrap(),
        ];
        a.extend_from_slice(args);
        self.ctl(&a)
    }

    /// A raw TCP socket to the agent, opened in the controller namespace
    /// (on a short-lived thread that entered it).
    fn raw_socket(&self) -> std::net::TcpStream {
        let ns = format!("/run/netns/{}", self.ctl_ns);
        std::thread::spawn(move || {
            let f = std::fs::File::open(&ns).unwrap();
            // SAFETY: setns on this thread only, with a valid netns fd; the
            // thread ends right after creating the socket.
            let r = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            std::net::TcpStream::connect(AGENT_ADDR).unwrap()
        })
        .join()
        .unwrap()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Some(mut c) = self.agent.take() {
            // `ip netns exec` execs the agent: this pid is the agent.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
        let _ = sh(&["ip", "netns", "del", &self.agent_ns]);
        let _ = sh(&["ip", "netns", "del", &self.ctl_ns]);
    }
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Sets up keys for both sides; returns (agent pub, agent fp, ctl pub, ctl fp).
fn keys(n: &Net) -> (String, String, String, String) {
    let (ak, af) = n.keygen(&agent_bin(), "agent.key");
    let (ck, cf) = n.keygen(&ctl_bin(), "ctl.key");
    (ak, af, ck, cf)
}

#[test]
fn good_keys_run_a_recipe_and_pool_check_shows_the_agent_key() {
    let Some(mut n) = Net::new() else { return };
    let (ak, af, ck, _) = keys(&n);
    n.start_agent(&[&ck], &[]);
    n.pool_and_recipe(Some(&ak));
    let key = n.path("ctl.key");
    let o = n.run(&["--key", key.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\nagent log:\n{}",
        text(&o),
        n.log()
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("job output came back"));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("WARNING"));
    assert!(n.log().contains("controller authenticated"), "{}", n.log());

    let p = n.path("pool");
    let o = n.ctl(&[
        "pool",
        "check",
        "--pool",
        p.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        out.contains("OK") && out.contains(&format!("authenticated, agent key {af}")),
        "{out}"
    );
}

#[test]
fn unknown_controller_key_is_refused_before_any_request() {
    let Some(mut n) = Net::new() else { return };
    let (ak, _, ck, _) = keys(&n);
    let (_, other_fp) = n.keygen(&ctl_bin(), "other.key");
    n.start_agent(&[&ck], &[]);
    n.pool_and_recipe(Some(&ak));
    let other = n.path("other.key");
    let o = n.run(&["--key", other.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        err.contains(&format!(
            "agent h1 refused this controller's key {other_fp}"
        )) && err.contains("accepted_keys"),
        "{}",
        text(&o)
    );
    // Both sides name the file the agent was started with (`--config`),
    // not the default /etc/lnst/agent.toml.
    let config = n.path("agent.toml").display().to_string();
    assert!(
        err.contains(&format!("accepted_keys in {config} ")) && !err.contains("/etc/lnst"),
        "{}",
        text(&o)
    );
    assert!(n.wait_log("refused controller key"), "{}", n.log());
    let log = n.log();
    assert!(log.contains(&other_fp.to_string()), "{log}");
    assert!(
        log.contains(&format!("accepted_keys in {config} ")) && !log.contains("/etc/lnst"),
        "{log}"
    );
    // No session, no request: the session module never logged anything.
    assert!(
        !log.contains("controller connected") && !log.contains("lnst_agent::session"),
        "{log}"
    );

    // pool check reports the refusal as an AUTH problem, exit 3.
    let p = n.path("pool");
    let o = n.ctl(&[
        "pool",
        "check",
        "--pool",
        p.to_str().unwrap(),
        "--key",
        other.to_str().unwrap(),
    ]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(out.contains("AUTH") && out.contains("refused"), "{out}");
}

#[test]
fn pin_mismatch_is_refused_by_the_controller_with_both_fingerprints() {
    let Some(mut n) = Net::new() else { return };
    let (ak, af, ck, _) = keys(&n);
    let (wrong, wrong_fp) = n.keygen(&agent_bin(), "impostor.key");
    n.start_agent(&[&ck], &[]);
    n.pool_and_recipe(Some(&wrong));
    let key = n.path("ctl.key");
    let o = n.run(&["--key", key.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        err.contains("agent h1")
            && err.contains(&af)
            && err.contains(&wrong_fp)
            && err.contains("man in the middle"),
        "{}",
        text(&o)
    );
    // The controller hung up before proving its key: nothing served.
    assert!(
        n.wait_log("closed the connection during the handshake"),
        "{}",
        n.log()
    );
    assert!(!n.log().contains("controller connected"), "{}", n.log());

    // No pin at all: refused, showing the key to pin.
    n.pool_and_recipe(None);
    let o = n.run(&["--key", key.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        err.contains("pins no key") && err.contains(&af) && err.contains(&ak),
        "{}",
        text(&o)
    );
}

#[test]
fn insecure_on_one_side_only_is_a_clear_error_on_each_side() {
    let Some(mut n) = Net::new() else { return };
    let (ak, _, ck, _) = keys(&n);
    let key = n.path("ctl.key");
    n.pool_and_recipe(Some(&ak));

    // Agent authenticated, controller --insecure.
    n.start_agent(&[&ck], &[]);
    let o = n.run(&["--insecure"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        err.contains("WARNING") && err.contains("--insecure"),
        "{err}"
    );
    assert!(err.contains("agent h1 requires authentication"), "{err}");
    assert!(
        n.wait_log("controller connected without authentication but this agent was not started with --insecure"),
        "{}",
        n.log()
    );
    // The summary says the run was insecure, in JSON too.
    let o = n.run(&["--insecure", "--json"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("\"insecure\": true"),
        "{}",
        text(&o)
    );
    drop(n.agent.take().map(|mut c| {
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        c.wait()
    }));

    // Agent --insecure, controller authenticated.
    n.start_agent(&[&ck], &["--insecure"]);
    assert!(n.log().contains("WITHOUT AUTHENTICATION"), "{}", n.log());
    let o = n.run(&["--key", key.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        err.contains("agent h1 was started with --insecure"),
        "{err}"
    );
    assert!(
        n.wait_log("controller requires authentication but this agent was started with --insecure"),
        "{}",
        n.log()
    );
    // Both sides --insecure: runs, and says so.
    let o = n.run(&["--insecure"]);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", text(&o), n.log());
    assert!(String::from_utf8_lossy(&o.stdout).contains("WARNING: run with --insecure"));
}

#[test]
fn garbage_and_stalled_handshakes_do_not_block_a_good_controller() {
    let Some(mut n) = Net::new() else { return };
    let (ak, _, ck, _) = keys(&n);
    n.start_agent(&[&ck], &[]);
    n.pool_and_recipe(Some(&ak));
    // Stalled: connects and sends nothing (the agent allows 30 s).
    let stalled = n.raw_socket();
    // Garbage before the handshake.
    let mut http = n.raw_socket();
    http.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    // Garbage during it: a valid hello, then a junk Noise message (too
    // short for an ephemeral key), or an oversized one.
    let mut junk = n.raw_socket();
    junk.write_all(b"lnst\x01N\x00\x10").unwrap();
    junk.write_all(&[0x5a; 16]).unwrap();
    let mut huge = n.raw_socket();
    huge.write_all(b"lnst\x01N\xff\xff").unwrap();
    huge.write_all(&[0x5a; 512]).unwrap();
    // Half a hello, then silence.
    let mut half = n.raw_socket();
    half.write_all(b"lns").unwrap();

    let key = n.path("ctl.key");
    let t = Instant::now();
    let o = n.run(&["--key", key.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\nagent log:\n{}",
        text(&o),
        n.log()
    );
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "served only after {:?}",
        t.elapsed()
    );
    assert!(n.wait_log("not an lnst transport endpoint"), "{}", n.log());
    assert!(n.wait_log("handshake failed"), "{}", n.log());
    assert!(n.wait_log("exceeds the limit"), "{}", n.log());
    // The stalled sockets are still open and unanswered beyond the hello.
    drop((stalled, http, junk, huge, half));
}
