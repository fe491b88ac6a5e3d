//! Controller loss and agent death: jobs killed, journal replayed; the
//! agent's own start-up checks and signals.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use lnst_common::job::JobSpec;
use lnst_common::{Request, Response, ToAgent, ToController};
use lnst_ctl::client::AgentClient;

use super::harness::*;

fn journal_test(path: &std::path::Path, marker: &str) -> Request {
    Request::JournalTest {
        path: path_str(path),
        marker: marker.into(),
    }
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_controller_loses_its_jobs_and_changes() {
    let a = Agent::start_with(TempDir::new(), Some("300,1500"));
    let marker = a.dir.0.join("marker");
    let needle = format!("1000.{}", marker_num());
    let mut r = Raw::session(&a, "silent test").await;
    r.send(&ToAgent::Request {
        id: 1,
        req: journal_test(&marker, "undone"),
    })
    .await;
    r.send(&ToAgent::Request {
        id: 2,
        req: Request::JobStart(JobSpec::shell(format!("sleep {needle} & sleep {needle}"))),
    })
    .await;
    let mut replies = 0;
    while replies < 2 {
        match r.recv().await {
            Some(ToController::Reply { result, .. }) => {
                result.unwrap();
                replies += 1
            }
            Some(_) => {}
            None => panic!("closed early"),
        }
    }
    assert!(wait_until(Duration::from_secs(3), || procs_with(&needle)
        .len()
        >= 2));
    let silent_since = Instant::now();
    // Stay connected but silent (no heartbeats): the agent gives up after 1.5 s.
    assert!(wait_until(Duration::from_secs(6), || procs_with(&needle).is_empty()));
    let gone_after = silent_since.elapsed();
    assert!(
        gone_after >= Duration::from_millis(1400) && gone_after < Duration::from_millis(3000),
        "job gone after {gone_after:?}"
    );
    assert!(wait_until(Duration::from_secs(2), || read(&marker) == "undone\n"));
    assert!(r.closed_within(Duration::from_secs(3)).await);
    drop(r);
    // And the agent serves the next controller.
    let c = a.client().await;
    assert!(matches!(
        c.request(Request::Ping).await.unwrap(),
        Response::Pong
    ));
    c.close().await.unwrap();
}

/// Not a test on its own: run as a child by
/// `killed_controller_process_loses_its_jobs_and_changes`, it holds a
/// session with a job and a journal entry until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn helper_hold_session() {
    let Ok(sock) = std::env::var("LNST_TEST_SOCK") else {
        return;
    };
    let c = lnst_ctl::client::AgentClient::connect(
        "h1",
        &lnst_ctl::client::AgentAddr::Unix(sock.into()),
    )
    .await
    .unwrap();
    let marker = std::env::var("LNST_TEST_MARKER").unwrap();
    let needle = std::env::var("LNST_TEST_NEEDLE").unwrap();
    c.request(Request::JournalTest {
        path: marker,
        marker: "undone".into(),
    })
    .await
    .unwrap();
    start_bg(
        &c,
        JobSpec::shell(format!("sleep {needle} & sleep {needle}")),
    )
    .await;
    println!("HELD");
    tokio::time::sleep(Duration::from_secs(600)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_controller_process_loses_its_jobs_and_changes() {
    let a = Agent::start();
    let marker = a.dir.0.join("marker");
    let needle = format!("1000.{}", marker_num());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "agent::loss::helper_hold_session",
            "--nocapture",
        ])
        .env("LNST_TEST_SOCK", &a.sock)
        .env("LNST_TEST_MARKER", &marker)
        .env("LNST_TEST_NEEDLE", &needle)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let up = wait_until(Duration::from_secs(10), || procs_with(&needle).len() >= 2);
    if !up {
        let _ = child.kill();
        panic!("helper never started its job; agent log:\n{}", a.log_text());
    }
    assert_eq!(read(&marker), "");
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    let t = Instant::now();
    assert!(wait_until(Duration::from_secs(5), || procs_with(&needle).is_empty()));
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    assert!(wait_until(Duration::from_secs(2), || read(&marker) == "undone\n"));
    // The agent frees itself once the whole teardown is over, a moment
    // after the marker appears: the next controller gets in by then.
    let t = Instant::now();
    let c = loop {
        match AgentClient::connect("h1", &a.addr()).await {
            Ok(c) => break c,
            Err(e) if t.elapsed() < Duration::from_secs(3) => {
                assert!(e.to_string().contains("held by"), "{e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("agent still held 3 s after the controller died: {e}"),
        }
    };
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_session_reports_every_error_and_goes_on() {
    let a = Agent::start();
    let marker = a.dir.0.join("marker");
    let c = a.client().await;
    let needle = format!("1000.{}", marker_num());
    c.request(journal_test(&marker, "first")).await.unwrap();
    c.request(journal_test(
        std::path::Path::new("/nonexistent-lnst/x"),
        "bad",
    ))
    .await
    .unwrap();
    c.request(journal_test(&marker, "third")).await.unwrap();
    start_bg(&c, JobSpec::shell(format!("sleep {needle}"))).await;
    assert!(wait_until(Duration::from_secs(3), || !procs_with(&needle).is_empty()));
    let r = c.request(Request::EndSession).await.unwrap();
    let Response::Teardown { errors } = r else {
        panic!("{r:?}")
    };
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("/nonexistent-lnst/x"), "{errors:?}");
    assert_eq!(read(&marker), "third\nfirst\n");
    assert!(procs_with(&needle).is_empty());
    // The journal is empty now: Goodbye undoes nothing more.
    c.close().await.unwrap();
    assert!(wait_until(Duration::from_secs(2), || a
        .log_text()
        .contains("session ended")));
    assert_eq!(read(&marker), "third\nfirst\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_with_kill_9_replays_at_next_start() {
    let a = Agent::start();
    let marker = a.dir.0.join("marker");
    let c = a.client().await;
    for m in ["one", "two", "three"] {
        c.request(journal_test(&marker, m)).await.unwrap();
    }
    assert_eq!(c.welcome().replayed_at_start, 0);
    let dir = a.kill9();
    assert_eq!(read(&marker), "", "kill -9 must not undo");
    // Simulate a crash in mid-write: a torn last line.
    let journal = dir.0.join("state").join("journal");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&journal)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"1234abcd {\"Test\":{\"pa"))
        .unwrap();
    let a = Agent::start_with(dir, None);
    assert_eq!(read(&marker), "three\ntwo\none\n");
    assert!(a.wait_log("torn"), "{}", a.log_text());
    let c = a.client().await;
    assert_eq!(c.welcome().replayed_at_start, 3);
    assert_eq!(std::fs::metadata(&journal).unwrap().len(), 0);
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_undoes_and_exits_zero() {
    let mut a = Agent::start();
    let marker = a.dir.0.join("marker");
    let needle = format!("1000.{}", marker_num());
    let c = a.client().await;
    c.request(journal_test(&marker, "undone")).await.unwrap();
    start_bg(&c, JobSpec::shell(format!("sleep {needle}"))).await;
    assert!(wait_until(Duration::from_secs(3), || !procs_with(&needle).is_empty()));
    let st = a.stop(libc::SIGTERM);
    assert_eq!(st.code(), Some(0), "{}", a.log_text());
    assert_eq!(read(&marker), "undone\n");
    assert!(procs_with(&needle).is_empty());
    assert!(!a.sock.exists(), "socket file left behind");
}

#[test]
fn startup_checks() {
    let a = Agent::start();
    let mode = std::fs::metadata(&a.sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");

    // A second agent on the same state dir is refused (exit 3), naming it.
    let out = Command::new(env!("CARGO_BIN_EXE_lnst-agent"))
        .arg("--unix")
        .arg(a.dir.0.join("other.sock"))
        .arg("--state-dir")
        .arg(&a.state)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&path_str(&a.state)) && err.contains("--state-dir"),
        "{err}"
    );
    assert!(err.contains(&a.pid().to_string()), "{err}");

    // The same socket path while the agent lives: exit 3.
    let d = TempDir::new();
    let out = Command::new(env!("CARGO_BIN_EXE_lnst-agent"))
        .arg("--unix")
        .arg(&a.sock)
        .arg("--state-dir")
        .arg(&d.0)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // TCP without --insecure: usage error naming the flag.
    let out = Command::new(env!("CARGO_BIN_EXE_lnst-agent"))
        .args(["--listen", "127.0.0.1:0", "--state-dir"])
        .arg(&d.0)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--insecure"));

    // --help documents the exit codes.
    let out = Command::new(env!("CARGO_BIN_EXE_lnst-agent"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("Exit status") && help.contains("3  could not start"),
        "{help}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_with_insecure_serves() {
    let d = TempDir::new();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lnst-agent"))
        .args(["--listen", "127.0.0.1:0", "--insecure", "--state-dir"])
        .arg(&d.0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr: std::net::SocketAddr = line.trim().strip_prefix("READY ").unwrap().parse().unwrap();
    let c = lnst_ctl::client::AgentClient::connect_with(
        "h1",
        &lnst_ctl::client::AgentAddr::Tcp(addr),
        Some(&lnst_common::secure::ClientAuth::Insecure),
    )
    .await
    .unwrap();
    let s = run(&c, JobSpec::shell("echo tcp")).await;
    assert_eq!(s.stdout, b"tcp\n");
    c.close().await.unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
