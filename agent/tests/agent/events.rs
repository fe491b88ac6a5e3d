//! Device events and the agent's device cache, through the real agent: a
//! change made behind the agent's back (an `ip link set` job) shows up in
//! `Devices` at once and as `Event::DeviceChanged`; a deletion as
//! `Event::DeviceRemoved`; namespaces the session never named stay quiet.

use std::process::Command;
use std::time::{Duration, Instant};

use lnst_common::device::{DeviceInfo, DeviceSpec};
use lnst_common::job::JobSpec;
use lnst_common::{Event, Request, Response};
use tokio::sync::broadcast;

use super::harness::{root, run, Agent, Netns};

async fn devices(c: &lnst_ctl::client::AgentClient, ns: &str) -> Vec<DeviceInfo> {
    match c
        .request(Request::Devices {
            netns: Some(ns.to_string()),
        })
        .await
        .unwrap()
    {
        Response::Devices(d) => d,
        other => panic!("expected Devices, got {other:?}"),
    }
}

/// Waits up to `max` for an event matching `f`; returns it.
async fn wait_event(
    rx: &mut broadcast::Receiver<Event>,
    max: Duration,
    mut f: impl FnMut(&Event) -> bool,
) -> Option<Event> {
    let deadline = Instant::now() + max;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Ok(ev)) if f(&ev) => return Some(ev),
            Ok(Ok(_)) => {}
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => panic!("event channel: {e}"),
            Err(_) => return None,
        }
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_changes_reach_the_cache_and_the_controller() {
    if !root() {
        return;
    }
    let ns = Netns::new().unwrap();
    let quiet = Netns::new().unwrap();
    let a = Agent::start();
    let c = a.client().await;
    let mut ev = c.events();

    // Naming the namespace in a request makes the session hear about it.
    let r = c
        .request(Request::Create {
            netns: Some(ns.0.clone()),
            name: "m0".into(),
            spec: DeviceSpec::Veth {
                peer: "m1".into(),
                peer_netns: Some(ns.0.clone()),
            },
        })
        .await
        .unwrap();
    let Response::Device(m0) = r else {
        panic!("{r:?}")
    };
    assert_eq!(m0.mtu, 1500);
    let created = wait_event(&mut ev, Duration::from_secs(3), |e| {
        matches!(e, Event::DeviceChanged { netns, device }
            if netns.as_deref() == Some(ns.0.as_str()) && device.name == "m1")
    })
    .await;
    assert!(created.is_some(), "no DeviceChanged for the new peer m1");

    // Behind the agent's back: a shell job running ip.
    let s = run(
        &c,
        JobSpec::shell(format!("ip -n {} link set m0 mtu 1400", ns.0)),
    )
    .await;
    assert_eq!(s.exit.as_ref().unwrap().exit_code, Some(0), "{s:?}");
    // The very next read has it (no sleep): the cache caught up.
    let d = devices(&c, &ns.0).await;
    let m0 = d.iter().find(|d| d.name == "m0").expect("m0 listed");
    assert_eq!(m0.mtu, 1400);
    // The same from ip itself.
    let out = Command::new("ip")
        .args(["-j", "-n", &ns.0, "link", "show", "m0"])
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j[0]["mtu"], 1400);
    let e = wait_event(&mut ev, Duration::from_secs(3), |e| {
        matches!(e, Event::DeviceChanged { netns, device }
            if netns.as_deref() == Some(ns.0.as_str()) && device.name == "m0" && device.mtu == 1400)
    })
    .await;
    let Some(Event::DeviceChanged { device, .. }) = e else {
        panic!("no DeviceChanged with mtu 1400 for m0")
    };
    assert_eq!(device.ifindex, m0.ifindex);
    assert_eq!(device.kind, "veth");
    assert_eq!(device.driver, "veth");

    // An address added by a job shows in the next read and in an event.
    run(
        &c,
        JobSpec::shell(format!("ip -n {} addr add 198.51.100.7/24 dev m0", ns.0)),
    )
    .await;
    let d = devices(&c, &ns.0).await;
    let m0d = d.iter().find(|d| d.name == "m0").unwrap();
    assert_eq!(m0d.ips, vec!["198.51.100.7/24".to_string()]);
    assert!(
        wait_event(&mut ev, Duration::from_secs(3), |e| matches!(e,
            Event::DeviceChanged { device, .. } if device.name == "m0"
                && device.ips.contains(&"198.51.100.7/24".to_string())))
        .await
        .is_some(),
        "no event with the new address"
    );

    // A namespace never named by this session: nothing from it.
    ip(&[
        "-n", &quiet.0, "link", "add", "q0", "type", "veth", "peer", "name", "q1",
    ]);

    // Deleting m1 takes m0 along: two DeviceRemoved.
    run(&c, JobSpec::shell(format!("ip -n {} link del m1", ns.0))).await;
    let mut gone = Vec::new();
    let t = Instant::now();
    while gone.len() < 2 && t.elapsed() < Duration::from_secs(3) {
        match wait_event(&mut ev, Duration::from_secs(3), |e| {
            matches!(e, Event::DeviceRemoved { .. })
        })
        .await
        {
            Some(Event::DeviceRemoved {
                netns,
                ifindex,
                name,
            }) => {
                assert_eq!(netns.as_deref(), Some(ns.0.as_str()));
                if name == "m0" {
                    assert_eq!(ifindex, m0.ifindex);
                }
                gone.push(name);
            }
            _ => break,
        }
    }
    gone.sort();
    assert_eq!(gone, vec!["m0".to_string(), "m1".to_string()]);
    let names: Vec<String> = devices(&c, &ns.0)
        .await
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, vec!["lo".to_string()]);
    // Nothing about the quiet namespace arrived meanwhile.
    let noise = wait_event(&mut ev, Duration::from_millis(300), |e| match e {
        Event::DeviceChanged { netns, .. } | Event::DeviceRemoved { netns, .. } => {
            netns.as_deref() == Some(quiet.0.as_str())
        }
        _ => false,
    })
    .await;
    assert!(
        noise.is_none(),
        "event from an untouched namespace: {noise:?}"
    );
    c.close().await.unwrap();
}

/// A burst of changes to one device gives few events, the last with the
/// final state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_are_coalesced() {
    if !root() {
        return;
    }
    let ns = Netns::new().unwrap();
    ip(&[
        "-n", &ns.0, "link", "add", "b0", "type", "veth", "peer", "name", "b1",
    ]);
    let a = Agent::start();
    let c = a.client().await;
    let mut ev = c.events();
    devices(&c, &ns.0).await; // names the namespace
    let script: String = (0..50)
        .map(|i| format!("ip -n {} link set b0 mtu {};", ns.0, 1300 + i))
        .collect();
    run(&c, JobSpec::shell(script)).await;
    let mut n = 0;
    let mut last = 0;
    while let Some(Event::DeviceChanged { device, .. }) = wait_event(
        &mut ev,
        Duration::from_millis(500),
        |e| matches!(e, Event::DeviceChanged { device, .. } if device.name == "b0"),
    )
    .await
    {
        n += 1;
        last = device.mtu;
    }
    assert_eq!(last, 1349, "the last event carries the final MTU");
    assert!(n < 50, "{n} events for 50 changes: not coalesced");
    println!("50 MTU changes by a job -> {n} DeviceChanged events");
    c.close().await.unwrap();
}
