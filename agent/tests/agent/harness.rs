//! Shared test plumbing: a running agent, unique names, raw sockets.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use lnst_common::codec;
use lnst_common::handshake::{Preamble, PREAMBLE_LEN};
use lnst_common::job::{JobSpec, JobStatus};
use lnst_common::{Request, Response, ToAgent, ToController};
use lnst_ctl::client::{AgentAddr, AgentClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

static N: AtomicU32 = AtomicU32::new(0);

/// `lnsttest-<pid>-<n>`: unique per test process and call.
pub fn unique(tag: &str) -> String {
    format!(
        "lnsttest-{}-{}{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A number unique to this process and call, for markers in command lines.
pub fn marker_num() -> String {
    format!(
        "{}{:04}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A temp dir removed on drop.
pub struct TempDir(pub PathBuf);
impl TempDir {
    pub fn new() -> Self {
        let d = std::env::temp_dir().join(unique("-dir"));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `lnst-agent`, stopped (SIGKILL) on drop.
pub struct Agent {
    pub child: Option<Child>,
    pub sock: PathBuf,
    pub state: PathBuf,
    pub log: PathBuf,
    pub dir: TempDir,
}

impl Agent {
    pub fn start() -> Agent {
        Self::start_with(TempDir::new(), None)
    }

    /// Starts an agent in `dir` (state dir `dir/state`), heartbeat from
    /// `hb` (`LNST_HEARTBEAT_MS` value) if given.
    pub fn start_with(dir: TempDir, hb: Option<&str>) -> Agent {
        Self::start_env(dir, hb, &[])
    }

    /// [`Agent::start_with`] with extra environment variables (a `PATH`
    /// with stand-in tools, ..).
    pub fn start_env(dir: TempDir, hb: Option<&str>, env: &[(&str, String)]) -> Agent {
        let sock = dir.0.join("agent.sock");
        let state = dir.0.join("state");
        let log = dir
            .0
            .join(format!("agent-{}.log", N.fetch_add(1, Ordering::Relaxed)));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lnst-agent"));
        cmd.arg("--unix")
            .arg(&sock)
            .arg("--state-dir")
            .arg(&state)
            .arg("-vv")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        match hb {
            Some(hb) => cmd.env("LNST_HEARTBEAT_MS", hb),
            None => cmd.env_remove("LNST_HEARTBEAT_MS"),
        };
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start lnst-agent");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            format!("READY {}", sock.display()),
            "agent log: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Agent {
            child: Some(child),
            sock,
            state,
            log,
            dir,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn addr(&self) -> AgentAddr {
        AgentAddr::Unix(self.sock.clone())
    }

    pub async fn client(&self) -> AgentClient {
        AgentClient::connect("h1", &self.addr())
            .await
            .unwrap_or_else(|e| panic!("connect: {e}\nagent log:\n{}", self.log_text()))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) until the agent log contains `s`.
    pub fn wait_log(&self, s: &str) -> bool {
        wait_until(Duration::from_secs(5), || self.log_text().contains(s))
    }

    /// Sends `sig` and waits for the exit status.
    pub fn stop(&mut self, sig: i32) -> std::process::ExitStatus {
        let mut c = self.child.take().unwrap();
        unsafe { libc::kill(c.id() as i32, sig) };
        c.wait().unwrap()
    }

    /// Takes the temp dir (state survives), killing the agent with SIGKILL.
    pub fn kill9(mut self) -> TempDir {
        self.stop(libc::SIGKILL);
        std::mem::replace(&mut self.dir, TempDir(PathBuf::new()))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn wait_until(max: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < max {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// Pids whose command line contains `needle`.
pub fn procs_with(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid as u32 == std::process::id() {
            continue;
        }
        let mut cmd = Vec::new();
        if std::fs::File::open(e.path().join("cmdline"))
            .and_then(|mut f| f.read_to_end(&mut cmd))
            .is_ok()
        {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            // A zombie has an empty cmdline; it counts as gone.
            if cmd.contains(needle) {
                out.push(pid);
            }
        }
    }
    out
}

/// Runs `spec` in the foreground and returns its status.
pub async fn run(c: &AgentClient, mut spec: JobSpec) -> JobStatus {
    spec.wait = true;
    match c.request(Request::JobStart(spec)).await.unwrap() {
        Response::Job(s) => s,
        other => panic!("expected Job, got {other:?}"),
    }
}

pub async fn start_bg(c: &AgentClient, spec: JobSpec) -> u64 {
    match c.request(Request::JobStart(spec)).await.unwrap() {
        Response::JobStarted { id } => id,
        other => panic!("expected JobStarted, got {other:?}"),
    }
}

/// A raw connection for protocol tests.
pub struct Raw(pub UnixStream);

impl Raw {
    pub async fn connect(a: &Agent) -> Raw {
        Raw(UnixStream::connect(&a.sock).await.unwrap())
    }

    /// Preamble + Hello; panics unless Welcome.
    pub async fn session(a: &Agent, who: &str) -> Raw {
        let mut r = Raw::connect(a).await;
        r.0.write_all(&Preamble::ours().encode()).await.unwrap();
        let mut p = [0u8; PREAMBLE_LEN];
        r.0.read_exact(&mut p).await.unwrap();
        Preamble::check(&p).unwrap();
        r.send(&ToAgent::Hello {
            controller: who.into(),
        })
        .await;
        match r.recv().await {
            Some(ToController::Welcome(_)) => r,
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    pub async fn send(&mut self, m: &ToAgent) {
        self.0
            .write_all(&codec::encode_frame(m).unwrap())
            .await
            .unwrap();
    }

    /// Next frame other than a heartbeat; `None` on close.
    pub async fn recv(&mut self) -> Option<ToController> {
        loop {
            let mut h = [0u8; 4];
            if self.0.read_exact(&mut h).await.is_err() {
                return None;
            }
            let len = codec::decode_header(h).unwrap();
            let mut b = vec![0u8; len];
            self.0.read_exact(&mut b).await.ok()?;
            match codec::decode_body(&b).unwrap() {
                ToController::Heartbeat => continue,
                m => return Some(m),
            }
        }
    }

    /// Reads until the agent closes; true if it did within `max`.
    pub async fn closed_within(&mut self, max: Duration) -> bool {
        let mut buf = [0u8; 4096];
        tokio::time::timeout(max, async {
            loop {
                match self.0.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok()
    }
}

/// A network namespace made with `ip netns add`, deleted on drop.
pub struct Netns(pub String);
impl Netns {
    pub fn new() -> Result<Netns, String> {
        let name = unique("-ns");
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .map_err(|e| format!("ip netns add: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "ip netns add {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(Netns(name))
    }
}
impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Whether this process runs as root (namespaces, veth and capture need it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// [`is_root`], printing `SKIP` when not, for a test to return early.
pub fn root() -> bool {
    if is_root() {
        true
    } else {
        println!("SKIP: needs root (network namespaces)");
        false
    }
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}
