//! `Request::Defer` (`h.defer`, the `undo` run option): the command is
//! journaled and runs at undo time in reverse order with the other
//! entries, in its namespace, also when a restarted agent replays the
//! journal of a killed one; a failing command is reported.

use std::process::Command;
use std::time::Duration;

use lnst_common::job::JobSpec;
use lnst_common::{Request, Response};

use super::harness::*;

fn read(p: &std::path::Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn defer(netns: Option<&str>, command: String) -> Request {
    Request::Defer {
        netns: netns.map(str::to_string),
        command,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_commands_run_in_reverse_order_with_the_rest() {
    let a = Agent::start();
    let f = a.dir.0.join("order");
    let fs = path_str(&f);
    let c = a.client().await;
    c.request(Request::JournalTest {
        path: fs.clone(),
        marker: "first".into(),
    })
    .await
    .unwrap();
    c.request(defer(None, format!("echo second >> {fs}")))
        .await
        .unwrap();
    // a job that makes a file, with a defer that removes it
    let made = a.dir.0.join("made-by-job");
    c.request(defer(None, format!("rm {}", path_str(&made))))
        .await
        .unwrap();
    let st = run(&c, JobSpec::shell(format!("touch {}", path_str(&made)))).await;
    assert_eq!(st.exit.unwrap().exit_code, Some(0));
    assert!(made.exists());
    c.request(Request::JournalTest {
        path: fs.clone(),
        marker: "third".into(),
    })
    .await
    .unwrap();
    assert_eq!(read(&f), "");
    let Response::Teardown { errors } = c.request(Request::EndSession).await.unwrap() else {
        panic!()
    };
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(read(&f), "third\nsecond\nfirst\n");
    assert!(!made.exists(), "the deferred rm did not run");
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_and_empty_deferred_commands_are_reported() {
    let a = Agent::start();
    let c = a.client().await;
    let e = c
        .request(defer(None, "  ".into()))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("empty"), "{e}");
    let e = c
        .request(defer(Some("lnst-no-such-netns"), "true".into()))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("lnst-no-such-netns"), "{e}");
    c.request(defer(None, "echo oops >&2; exit 7".into()))
        .await
        .unwrap();
    let Response::Teardown { errors } = c.request(Request::EndSession).await.unwrap() else {
        panic!()
    };
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("exit 7")
            && errors[0].contains("oops")
            && errors[0].contains("echo oops"),
        "{errors:?}"
    );
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_command_runs_in_its_namespace() {
    if !root() {
        return;
    }
    let ns = Netns::new().unwrap();
    let a = Agent::start();
    let c = a.client().await;
    // a job in the namespace makes a link; the defer deletes it there
    c.request(defer(Some(&ns.0), "ip link del dfr0".into()))
        .await
        .unwrap();
    let mut spec = JobSpec::shell("ip link add name dfr0 type veth peer name dfr1");
    spec.netns = Some(ns.0.clone());
    assert_eq!(run(&c, spec).await.exit.unwrap().exit_code, Some(0));
    let show = || {
        Command::new("ip")
            .args(["-n", &ns.0, "link", "show", "dfr0"])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(show());
    let Response::Teardown { errors } = c.request(Request::EndSession).await.unwrap() else {
        panic!()
    };
    assert!(errors.is_empty(), "{errors:?}");
    assert!(!show(), "dfr0 left in {}", ns.0);
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_agent_restarted_runs_the_deferred_command() {
    let a = Agent::start();
    let f = a.dir.0.join("marker");
    let c = a.client().await;
    c.request(defer(None, format!("echo replayed >> {}", path_str(&f))))
        .await
        .unwrap();
    drop(c);
    let dir = a.kill9();
    assert_eq!(read(&f), "");
    let b = Agent::start_with(dir, None);
    assert!(
        wait_until(Duration::from_secs(5), || read(&b.dir.0.join("marker"))
            == "replayed\n"),
        "log:\n{}",
        b.log_text()
    );
}
