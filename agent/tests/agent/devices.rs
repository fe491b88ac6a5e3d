//! Device requests through the real agent: the change is visible to `ip -j`,
//! and the journal undoes it at `EndSession` and after a `kill -9` of the
//! agent followed by a restart.

use std::process::Command;

use lnst_common::device::{DevRef, DeviceSpec};
use lnst_common::{Request, Response};

use super::harness::{Agent, Netns};

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

fn link_names(ns: &str) -> Vec<String> {
    ip_json(ns, &["link", "show"])
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap().to_string())
        .collect()
}

async fn make_veth(c: &lnst_ctl::client::AgentClient, ns: &str) {
    let dev = |name: &str| DevRef {
        netns: Some(ns.to_string()),
        name: name.to_string(),
    };
    let r = c
        .request(Request::Create {
            netns: Some(ns.to_string()),
            name: "t0".into(),
            // Both ends in the test's namespace: never the host's own.
            spec: DeviceSpec::Veth {
                peer: "t1".into(),
                peer_netns: Some(ns.to_string()),
            },
        })
        .await
        .unwrap();
    assert!(matches!(r, Response::Device(ref d) if d.name == "t0" && d.kind == "veth"));
    let r = c
        .request(Request::SetMtu {
            dev: dev("t0"),
            mtu: 9000,
        })
        .await
        .unwrap();
    assert!(matches!(r, Response::Device(ref d) if d.mtu == 9000));
    c.request(Request::IpAdd {
        dev: dev("t0"),
        cidr: "192.0.2.1/24".into(),
    })
    .await
    .unwrap();
    c.request(Request::SetState {
        dev: dev("lo"),
        up: true,
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_changes_are_undone_at_end_session() {
    let ns = Netns::new().unwrap();
    let a = Agent::start();
    let c = a.client().await;
    make_veth(&c, &ns.0).await;
    // Checked from outside: ip -j sees the veth with its MTU and address.
    let links = ip_json(&ns.0, &["link", "show", "t0"]);
    assert_eq!(links[0]["mtu"], 9000);
    let addrs = ip_json(&ns.0, &["addr", "show", "t0"]);
    assert_eq!(addrs[0]["addr_info"][0]["local"], "192.0.2.1");
    let lo = ip_json(&ns.0, &["link", "show", "lo"]);
    assert!(lo[0]["flags"].as_array().unwrap().iter().any(|f| f == "UP"));

    let r = c.request(Request::EndSession).await.unwrap();
    assert!(
        matches!(r, Response::Teardown { ref errors } if errors.is_empty()),
        "{r:?}"
    );
    assert_eq!(link_names(&ns.0), vec!["lo".to_string()]);
    let lo = ip_json(&ns.0, &["link", "show", "lo"]);
    assert!(
        !lo[0]["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "lo left up: {lo}"
    );
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_changes_are_undone_after_agent_kill9_and_restart() {
    let ns = Netns::new().unwrap();
    let a = Agent::start();
    let c = a.client().await;
    make_veth(&c, &ns.0).await;
    assert!(link_names(&ns.0).contains(&"t0".to_string()));
    let dir = a.kill9();
    // Still there: nobody undid it yet.
    assert!(link_names(&ns.0).contains(&"t0".to_string()));
    let a = Agent::start_with(dir, None);
    let c = a.client().await;
    assert!(c.welcome().replayed_at_start >= 4, "{:?}", c.welcome());
    assert_eq!(link_names(&ns.0), vec!["lo".to_string()]);
    c.close().await.unwrap();
}
