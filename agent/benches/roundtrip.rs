//! `cargo bench -p lnst-agent --bench roundtrip`: the agent against raw
//! floors measured in the same run.
//!
//! - job round trip (`JobStart` of `true` with `wait`, a simple command
//!   the agent execs without a shell) vs a raw std fork/exec of `true`
//!   (goal ≤ 1.2×, issue 10), and the same through the shell (`true;`)
//!   vs a raw fork/exec of `sh -c 'true;'`;
//! - `Ping` request/reply vs a raw unix-socket echo of the same frame
//!   bytes (goal ≤ 2×);
//! - agent RSS (VmRSS) idle and after 1000 and 2000 jobs (goal ≤ 8 MiB,
//!   flat);
//! - job round trip over authenticated TCP (Noise XX on 127.0.0.1) vs the
//!   same over the unix socket, in alternating sessions (goal ≤ 1.10×);
//! - a legitimate controller's connect + hello (Noise over TCP, until the
//!   agent's `Welcome`) while 2 000 stalled unauthenticated TCP
//!   connections are held open, vs the same on a quiet agent, in
//!   alternating blocks (goal ≤ 2×, issue 10).
//!
//! Prints a table of medians. Starts the real `lnst-agent` binary (or the
//! one `LNST_BENCH_AGENT` names) on a unix socket and a Noise TCP listener
//! in a temp dir.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lnst_common::codec;
use lnst_common::job::JobSpec;
use lnst_common::secure::{keygen, ClientAuth, KeyPair};
use lnst_common::{Request, Response, ToAgent};
use lnst_ctl::client::{AgentAddr, AgentClient};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Raises this process's soft open-files limit to its hard limit (the
/// stalled connections need more than the default 1024).
fn raise_nofile() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

/// Time from TCP connect to the agent's `Welcome` (Noise handshake and
/// hello included), then a polite close that waits for the agent to be
/// free again (not timed).
async fn connect_hello(tcp: std::net::SocketAddr, auth: &ClientAuth) -> Duration {
    let t = Instant::now();
    let c = AgentClient::connect_with("bench", &AgentAddr::Tcp(tcp), Some(auth))
        .await
        .unwrap_or_else(|e| panic!("connect + hello: {e}"));
    let d = t.elapsed();
    c.close().await.unwrap();
    d
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing
    // useful: run a short version then.
    let full = std::env::args().any(|a| a == "--bench");
    let (jobs_n, pings_n, rss_jobs) = if full {
        (500, 5000, 1000)
    } else {
        (20, 100, 50)
    };

    let dir = std::env::temp_dir().join(format!("lnst-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("agent.sock");
    let agent_key = keygen(&dir.join("agent.key"), false).unwrap();
    let ctl_key = KeyPair::generate().unwrap();
    std::fs::write(
        dir.join("agent.toml"),
        format!(
            "key_file = \"{}\"\naccepted_keys = [\"{}\"]\nlog_level = \"warn\"\n",
            dir.join("agent.key").display(),
            ctl_key.public()
        ),
    )
    .unwrap();
    // LNST_BENCH_AGENT: another build of the agent to measure (A/B
    // against a saved binary in the same conditions).
    let agent_bin = std::env::var_os("LNST_BENCH_AGENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_lnst-agent")));
    println!("agent binary: {}", agent_bin.display());
    let mut agent = Command::new(&agent_bin)
        .arg("--config")
        .arg(dir.join("agent.toml"))
        .args(["--listen", "127.0.0.1:0"])
        .arg("--unix")
        .arg(&sock)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start lnst-agent");
    let mut line = String::new();
    BufReader::new(agent.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("READY"), "{line}");
    let tcp: std::net::SocketAddr = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    let noise = ClientAuth::Noise {
        ours: ctl_key,
        pinned: Some(*agent_key.public()),
    };
    let pid = agent.id();

    // The client on one thread: the request future and the client's
    // reader/writer tasks then wake each other without crossing cores.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rows = rt.block_on(async {
        let c = AgentClient::connect("bench", &AgentAddr::Unix(sock.clone()))
            .await
            .unwrap();
        let rss_idle = rss_kib(pid);

        // Job round trip vs raw fork/exec: `true` is a simple command the
        // agent execs itself, `true;` goes through `sh -c`.
        let mut spec = JobSpec::shell("true");
        spec.wait = true;
        let mut shell_spec = JobSpec::shell("true;");
        shell_spec.wait = true;
        for _ in 0..20 {
            c.request(Request::JobStart(spec.clone())).await.unwrap();
            c.request(Request::JobStart(shell_spec.clone())).await.unwrap();
        }
        // Interleaved, so that load from elsewhere hits all four alike.
        let (mut agent_job, mut raw_job) = (Vec::new(), Vec::new());
        let (mut agent_sh, mut raw_sh) = (Vec::new(), Vec::new());
        for _ in 0..jobs_n {
            for (spec, out) in [(&spec, &mut agent_job), (&shell_spec, &mut agent_sh)] {
                let t = Instant::now();
                let r = c.request(Request::JobStart(spec.clone())).await.unwrap();
                out.push(t.elapsed());
                assert!(matches!(r, Response::Job(s) if s.exit.as_ref().and_then(|e| e.exit_code) == Some(0)));
            }
            let t = Instant::now();
            let st = Command::new("true").status().unwrap();
            raw_job.push(t.elapsed());
            assert!(st.success());
            let t = Instant::now();
            Command::new("/bin/sh").args(["-c", "true;"]).status().unwrap();
            raw_sh.push(t.elapsed());
        }

        // Ping vs raw echo of the same bytes.
        for _ in 0..100 {
            c.request(Request::Ping).await.unwrap();
        }
        let frame = codec::encode_frame(&ToAgent::Request { id: 12345, req: Request::Ping }).unwrap();
        let echo_path: PathBuf = dir.join("echo.sock");
        let l = UnixListener::bind(&echo_path).unwrap();
        let flen = frame.len();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut b = vec![0u8; flen];
            while s.read_exact(&mut b).is_ok() {
                if s.write_all(&b).is_err() {
                    break;
                }
            }
        });
        let mut e = UnixStream::connect(&echo_path).unwrap();
        let mut back = vec![0u8; flen];
        let (mut agent_ping, mut raw_echo) = (Vec::new(), Vec::new());
        for _ in 0..100 {
            e.write_all(&frame).unwrap();
            e.read_exact(&mut back).unwrap();
        }
        for _ in 0..pings_n {
            let t = Instant::now();
            c.request(Request::Ping).await.unwrap();
            agent_ping.push(t.elapsed());
            let t = Instant::now();
            e.write_all(&frame).unwrap();
            e.read_exact(&mut back).unwrap();
            raw_echo.push(t.elapsed());
        }

        // RSS after many jobs.
        for _ in 0..rss_jobs {
            c.request(Request::JobStart(spec.clone())).await.unwrap();
        }
        let rss_1 = rss_kib(pid);
        for _ in 0..rss_jobs {
            c.request(Request::JobStart(spec.clone())).await.unwrap();
        }
        let rss_2 = rss_kib(pid);
        c.close().await.unwrap();
        let rss_after_close = rss_kib(pid);

        // Authenticated TCP vs unix socket: one controller at a time, so
        // alternate sessions of `block` jobs each.
        let (mut unix_job, mut noise_job) = (Vec::new(), Vec::new());
        let block = 25;
        for _ in 0..(jobs_n / block).max(2) {
            for (addr, auth, out) in [
                (AgentAddr::Unix(sock.clone()), None, &mut unix_job),
                (AgentAddr::Tcp(tcp), Some(&noise), &mut noise_job),
            ] {
                let c = loop {
                    match AgentClient::connect_with("bench", &addr, auth).await {
                        Ok(c) => break c,
                        // The previous session may still be releasing.
                        Err(lnst_ctl::client::ClientError::Refused { .. }) => {
                            tokio::time::sleep(Duration::from_millis(5)).await
                        }
                        Err(e) => panic!("{e}"),
                    }
                };
                for i in 0..block + 3 {
                    let t = Instant::now();
                    c.request(Request::JobStart(spec.clone())).await.unwrap();
                    if i >= 3 {
                        out.push(t.elapsed());
                    }
                }
                c.close().await.unwrap();
            }
        }
        // connect + hello: quiet vs 2000 stalled connections held open,
        // alternating blocks so that load elsewhere hits both alike.
        raise_nofile();
        let stalled_n = if full { 2000 } else { 200 };
        let per_block = if full { 15 } else { 3 };
        let (mut quiet, mut crowded) = (Vec::new(), Vec::new());
        let mut still_open = 0;
        for _ in 0..3 {
            for _ in 0..per_block {
                quiet.push(connect_hello(tcp, &noise).await);
            }
            let stalled: Vec<std::net::TcpStream> = (0..stalled_n)
                .filter_map(|_| std::net::TcpStream::connect(tcp).ok())
                .collect();
            assert!(stalled.len() * 10 >= stalled_n * 9, "only {} stalled connections", stalled.len());
            tokio::time::sleep(Duration::from_millis(100)).await;
            for _ in 0..per_block {
                crowded.push(connect_hello(tcp, &noise).await);
            }
            // How many the agent had not closed (evicted) by then.
            still_open = stalled
                .iter()
                .filter(|s| {
                    s.set_nonblocking(true).unwrap();
                    let mut b = [0u8; 64];
                    // Open: no data yet (WouldBlock) or the agent's
                    // preamble; closed: 0 bytes or a reset.
                    loop {
                        match (&**s).read(&mut b) {
                            Ok(0) => return false,
                            Ok(_) => continue,
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                            Err(_) => return false,
                        }
                    }
                })
                .count();
        }
        let connects = (median(quiet), median(crowded), stalled_n, still_open);
        (
            connects,
            median(agent_job),
            median(raw_job),
            median(agent_sh),
            median(raw_sh),
            median(agent_ping),
            median(raw_echo),
            rss_idle,
            rss_1,
            rss_2,
            rss_after_close,
            median(unix_job),
            median(noise_job),
        )
    });
    let ((cq, cc, stalled_n, still_open), aj, rj, ash, rsh, ap, re, idle, r1, r2, rc, uj, nj) =
        rows;
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = agent.wait();
    let _ = std::fs::remove_dir_all(&dir);

    println!("lnst-agent benchmark (medians; {jobs_n} jobs, {pings_n} pings)");
    println!(
        "{:<44} {:>12} {:>12} {:>8} {:>6}",
        "measure", "agent", "floor", "ratio", "goal"
    );
    println!(
        "{:<44} {:>10.0}us {:>10.0}us {:>7.2}x {:>6}",
        "job `true` round trip vs fork/exec `true`",
        us(aj),
        us(rj),
        us(aj) / us(rj),
        "<=1.2x"
    );
    println!(
        "{:<44} {:>10.0}us {:>10.0}us {:>7.2}x {:>6}",
        "job `true;` (sh -c) vs fork/exec `sh -c true;`",
        us(ash),
        us(rsh),
        us(ash) / us(rsh),
        ""
    );
    println!(
        "{:<44} {:>10.1}us {:>10.1}us {:>7.2}x {:>6}",
        "Ping request/reply vs unix echo",
        us(ap),
        us(re),
        us(ap) / us(re),
        "<=2x"
    );
    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "{:<44} {:>10.1}MiB {:>23}",
        "agent RSS idle",
        mib(idle),
        "goal <=8MiB"
    );
    println!(
        "{:<44} {:>10.1}MiB",
        format!("agent RSS after {rss_jobs} more jobs"),
        mib(r1)
    );
    println!(
        "{:<44} {:>10.1}MiB",
        format!("agent RSS after {} more jobs", 2 * rss_jobs),
        mib(r2)
    );
    println!("{:<44} {:>10.1}MiB", "agent RSS after session end", mib(rc));
    println!(
        "{:<44} {:>10.0}us {:>10.0}us {:>7.2}x {:>6}",
        "job `true`: Noise TCP vs unix socket",
        us(nj),
        us(uj),
        us(nj) / us(uj),
        "<=1.10x"
    );
    println!(
        "{:<44} {:>10.0}us {:>10.0}us {:>7.2}x {:>6}",
        format!("connect + hello, {stalled_n} stalled vs quiet"),
        us(cc),
        us(cq),
        us(cc) / us(cq),
        "<=2x"
    );
    println!("  ({still_open} of the {stalled_n} stalled connections still open at the end; the agent evicts the oldest)");
}
