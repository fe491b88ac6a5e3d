//! Issue 10: undo that never loses a change, and an agent nobody can hold
//! hostage. Each test reproduces one fault found by hostile probing and
//! checks the host from outside afterwards (`ip -j`, `/proc`, files).

use std::process::Command;
use std::time::Duration;

use lnst_common::device::{DevRef, DeviceSpec};
use lnst_common::host::RouteSpec;
use lnst_common::{Request, Response};

use super::harness::*;

fn ip_json(ns: &str, what: &[&str]) -> serde_json::Value {
    let out = Command::new("ip")
        .args(["-j", "-n", ns])
        .args(what)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sh(cmd: &str) {
    let st = Command::new("sh").args(["-c", cmd]).status().unwrap();
    assert!(st.success(), "{cmd}");
}

fn mtu(ns: &str, dev: &str) -> u64 {
    ip_json(ns, &["link", "show", dev])[0]["mtu"].as_u64().unwrap()
}

/// A veth pair the *test* made (not the agent), both ends in `ns`.
fn outside_veth(ns: &str) {
    sh(&format!(
        "ip -n {ns} link add o0 type veth peer name o1 && ip -n {ns} link set o0 mtu 1500"
    ));
}

/// Fault 1: a 70 000-byte name used to panic netlink-packet-route inside
/// the namespace's connection task; every later netlink request there
/// failed, the MTU undo with it, and the journal dropped the entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_names_are_refused_and_the_undo_still_happens() {
    if !root() {
        return;
    }
    let ns = Netns::new().unwrap();
    outside_veth(&ns.0);
    let a = Agent::start();
    let c = a.client().await;
    let dev = |name: &str| DevRef {
        netns: Some(ns.0.clone()),
        name: name.into(),
    };
    c.request(Request::SetMtu {
        dev: dev("o0"),
        mtu: 9000,
    })
    .await
    .unwrap();
    assert_eq!(mtu(&ns.0, "o0"), 9000);
    let s = "x".repeat(70_000);
    let hostile = [
        Request::SetMaster {
            dev: dev("o0"),
            master: Some(s.clone()),
        },
        Request::RouteAdd {
            netns: Some(ns.0.clone()),
            route: RouteSpec {
                dst: "10.9.0.0/16".into(),
                via: None,
                dev: Some(s.clone()),
                table: None,
                metric: None,
            },
        },
        Request::Create {
            netns: Some(ns.0.clone()),
            name: "v0".into(),
            spec: DeviceSpec::Veth {
                peer: s.clone(),
                peer_netns: Some(ns.0.clone()),
            },
        },
        Request::SetMtu {
            dev: dev(&s),
            mtu: 1400,
        },
        Request::SetMtu {
            dev: dev("0123456789abcdef"),
            mtu: 1400,
        },
    ];
    for r in hostile {
        let e = c.request(r).await.unwrap_err().to_string();
        assert!(e.contains("too long"), "{e}");
        assert!(e.len() < 400, "message not bounded: {} bytes", e.len());
    }
    // The namespace's netlink connection still works.
    c.request(Request::SetState {
        dev: dev("o0"),
        up: true,
    })
    .await
    .unwrap();
    let r = c.request(Request::EndSession).await.unwrap();
    assert!(
        matches!(r, Response::Teardown { ref errors } if errors.is_empty()),
        "{r:?}\nagent log:\n{}",
        a.log_text()
    );
    assert_eq!(mtu(&ns.0, "o0"), 1500, "MTU not restored");
    assert!(!a.log_text().contains("panicked"), "{}", a.log_text());
    c.close().await.unwrap();
}

/// Fault 1: an undo that fails is kept in the journal, reported, and
/// retried at the next start, where it succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_undo_is_kept_reported_and_retried_at_next_start() {
    let a = Agent::start();
    let later = a.dir.0.join("later");
    let target = later.join("x");
    let c = a.client().await;
    c.request(Request::JournalTest {
        path: path_str(&target),
        marker: "undone".into(),
    })
    .await
    .unwrap();
    let r = c.request(Request::EndSession).await.unwrap();
    let Response::Teardown { errors } = r else {
        panic!("{r:?}")
    };
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("later/x"), "{errors:?}");
    // Still in the journal file, as read from outside.
    let journal = a.state.join("journal");
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(text.contains("later/x"), "journal: {text:?}");
    let dir = a.kill9();
    std::fs::create_dir(&later).unwrap();
    let a = Agent::start_with(dir, None);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "undone\n");
    assert_eq!(std::fs::read_to_string(&journal).unwrap(), "");
    let c = a.client().await;
    assert_eq!(c.welcome().replayed_at_start, 1);
    c.close().await.unwrap();
}

/// Fault 12: a NUL byte in a namespace name is refused, not a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_in_a_namespace_name_is_answered() {
    let a = Agent::start();
    let c = a.client().await;
    for req in [
        Request::NetnsCreate {
            name: "a\0b".into(),
        },
        Request::Devices {
            netns: Some("a\0b".into()),
        },
    ] {
        let e = tokio::time::timeout(Duration::from_secs(5), c.request(req))
            .await
            .expect("request never answered")
            .unwrap_err();
        assert!(e.to_string().contains("NUL"), "{e}");
    }
    assert!(matches!(
        c.request(Request::Ping).await.unwrap(),
        Response::Pong
    ));
    assert!(!a.log_text().contains("panicked"), "{}", a.log_text());
    c.close().await.unwrap();
}
