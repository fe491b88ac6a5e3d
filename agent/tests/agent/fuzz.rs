//! Issue 10's brief structured fuzz: every request kind with hostile
//! values (huge and empty strings, NUL bytes, `..`, numbers at their
//! limits) against an agent running inside a namespace of the test's own
//! (so its "host" is that namespace), with files only under the test's
//! temp dir. Every request must be answered, the agent must keep serving
//! and log no panic, and after EndSession the namespace and the files are
//! as before. `LNST_FUZZ_ROUNDS` (default 3) repeats the whole set with
//! other values; a longer run (≥ 10 minutes) is
//! `LNST_FUZZ_ROUNDS=2000 cargo test -p lnst-agent --test agent fuzz`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use lnst_common::device::{DevRef, DeviceSpec};
use lnst_common::host::RouteSpec;
use lnst_common::job::JobSpec;
use lnst_common::{Request, Response};
use lnst_ctl::client::{AgentAddr, AgentClient};

use super::harness::*;

fn strings(dir: &str, r: u64) -> Vec<String> {
    vec![
        String::new(),
        "\0".into(),
        "a\0b".into(),
        "x".repeat(16),
        "x".repeat(70_000 + r as usize),
        "..".into(),
        "../../..".into(),
        format!("{dir}/../{}", "y".repeat(300)),
        format!("{dir}/f{r}"),
        format!("{dir}/nodir/f"),
        "relative/path".into(),
        "é\u{202e}\u{fffd}".into(),
        "o0".into(),
        "lo".into(),
        "-1".into(),
        "999999999999999999999".into(),
        "0.0.0.0/0".into(),
        "::/0".into(),
        "300.1.1.1/33".into(),
        "ff:ff:ff:ff:ff:ff".into(),
    ]
}

fn requests(dir: &str, ns: &str, r: u64) -> Vec<Request> {
    let ss = strings(dir, r);
    let nums32 = [0u32, 1, 67, 68, 1500, 65535, 65536, u32::MAX];
    let mut out = vec![Request::Ping];
    let dev = |n: &str| DevRef {
        netns: None,
        name: n.into(),
    };
    for s in &ss {
        let d = dev(s);
        out.push(Request::Devices {
            netns: Some(s.clone()),
        });
        out.push(Request::SetMac {
            dev: dev("o0"),
            mac: s.clone(),
        });
        out.push(Request::SetMaster {
            dev: d.clone(),
            master: Some(s.clone()),
        });
        out.push(Request::IpAdd {
            dev: dev("o0"),
            cidr: s.clone(),
        });
        out.push(Request::IpDel {
            dev: d.clone(),
            cidr: s.clone(),
        });
        out.push(Request::IpFlush { dev: d.clone() });
        out.push(Request::Features { dev: d.clone() });
        let mut f = BTreeMap::new();
        f.insert(s.clone(), r % 2 == 0);
        out.push(Request::SetFeatures {
            dev: dev("o0"),
            features: f,
        });
        out.push(Request::WaitCarrier {
            dev: d.clone(),
            timeout_ms: 1,
        });
        out.push(Request::MoveTo {
            dev: d.clone(),
            netns: Some(s.clone()),
        });
        out.push(Request::Destroy { dev: d.clone() });
        out.push(Request::Create {
            netns: None,
            name: s.clone(),
            spec: DeviceSpec::Veth {
                peer: s.clone(),
                peer_netns: Some(s.clone()),
            },
        });
        out.push(Request::Create {
            netns: None,
            name: format!("z{}", r % 10),
            spec: DeviceSpec::Vxlan {
                id: u32::MAX,
                link: Some(s.clone()),
                local: Some(s.clone()),
                remote: None,
                group: Some(s.clone()),
                dstport: Some(0),
                ttl: Some(255),
            },
        });
        out.push(Request::NetnsCreate { name: s.clone() });
        out.push(Request::SysctlGet {
            netns: None,
            key: s.clone(),
        });
        out.push(Request::SysctlSet {
            netns: None,
            key: format!("net.ipv4.{s}"),
            value: s.clone(),
        });
        out.push(Request::FileRead {
            netns: Some(s.clone()),
            path: s.clone(),
        });
        if s.starts_with(dir) || !s.starts_with('/') {
            out.push(Request::FileWrite {
                netns: None,
                path: s.clone(),
                data: s.as_bytes().to_vec(),
            });
            out.push(Request::FilePut {
                path: s.clone(),
                offset: [0, 1, u64::MAX][(r % 3) as usize],
                data: vec![0; (r as usize * 977) % 5000],
                last: true,
            });
        }
        out.push(Request::FileGet {
            path: s.clone(),
            offset: u64::MAX - r,
            len: u32::MAX,
        });
        out.push(Request::RouteAdd {
            netns: None,
            route: RouteSpec {
                dst: s.clone(),
                via: Some(s.clone()),
                dev: Some(s.clone()),
                table: Some(u32::MAX),
                metric: Some(u32::MAX),
            },
        });
        out.push(Request::RouteDel {
            netns: Some(s.clone()),
            route: RouteSpec {
                dst: s.clone(),
                via: None,
                dev: None,
                table: None,
                metric: None,
            },
        });
        let mut spec = JobSpec::shell(format!("exit {}", r % 256));
        spec.cwd = Some(s.clone());
        spec.env = vec![(s.clone(), s.clone())];
        spec.netns = Some(s.clone());
        spec.timeout_ms = Some(u64::MAX);
        spec.wait = true;
        out.push(Request::JobStart(spec));
        // The string as the command, with hostile PATHs: the agent's own
        // PATH search (a simple command is exec'd without the shell).
        for path in [s.clone(), ":".repeat(100_000)] {
            let mut spec = JobSpec::shell(s.clone());
            spec.env = vec![("PATH".into(), path)];
            spec.timeout_ms = Some(5_000);
            spec.wait = true;
            out.push(Request::JobStart(spec));
        }
    }
    for &n in &nums32 {
        out.push(Request::SetMtu {
            dev: dev("o0"),
            mtu: n,
        });
        out.push(Request::JobWait {
            id: u64::from(n),
            timeout_ms: Some(0),
        });
        out.push(Request::JobKill {
            id: u64::MAX - u64::from(n),
            signal: n as i32,
        });
    }
    out.push(Request::JobKill {
        id: 1,
        signal: i32::MIN,
    });
    out.push(Request::SetState {
        dev: dev("o0"),
        up: true,
    });
    let _ = ns;
    out
}

fn state(ns: &str, dir: &std::path::Path) -> String {
    let sh = |c: &str| {
        let o = Command::new("sh").args(["-c", c]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("agent") && n != "state")
        .collect();
    files.sort();
    format!(
        "{}\n{}\n{}\n{}\n{files:?}",
        // (Bringing a veth up once attaches its default qdisc for good: not
        // something a run changes or lnst restores.)
        sh(&format!(
            "ip -n {ns} -o link show | sed -e 's/^[0-9]*: //' -e 's/qdisc [a-z_]* //' | sort"
        )),
        sh(&format!(
            "ip -n {ns} -o addr show | awk '{{print $2, $4}}' | sort"
        )),
        sh(&format!("ip -n {ns} route show table all | sort")),
        sh(&format!(
            "ip netns exec {ns} sysctl -a 2>/dev/null | grep '^net.ipv4.conf.o0' | sort"
        ))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_values_in_every_request_are_answered_without_a_panic() {
    if !root() {
        return;
    }
    let ns = Netns::new().unwrap();
    let st = Command::new("ip")
        .args([
            "-n", &ns.0, "link", "add", "o0", "type", "veth", "peer", "name", "o1",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let dir = TempDir::new();
    let d = path_str(&dir.0);
    let sock = dir.0.join("a.sock");
    let log = dir.0.join("agent.log");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .arg(env!("CARGO_BIN_EXE_lnst-agent"))
        .arg("--unix")
        .arg(&sock)
        .arg("--state-dir")
        .arg(dir.0.join("state"))
        .arg("-v")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("READY"), "{line}");
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
            let _ = self.0.wait();
        }
    }
    let _stop = Stop(child);
    let before = state(&ns.0, &dir.0);
    let rounds: u64 = std::env::var("LNST_FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let c = AgentClient::connect("h1", &AgentAddr::Unix(sock.clone()))
        .await
        .unwrap();
    let mut sent = 0;
    for r in 0..rounds {
        for req in requests(&d, &ns.0, r) {
            let what = format!("{req:?}");
            let what: String = what.chars().take(200).collect();
            match tokio::time::timeout(Duration::from_secs(10), c.request(req)).await {
                Ok(Ok(_)) | Ok(Err(lnst_ctl::client::ClientError::Remote { .. })) => {}
                Ok(Err(e)) => panic!("{what}: {e}"),
                Err(_) => panic!("no answer in 10 s to {what}"),
            }
            sent += 1;
        }
        let r = c.request(Request::EndSession).await.unwrap();
        assert!(matches!(r, Response::Teardown { .. }), "{r:?}");
    }
    assert!(matches!(
        c.request(Request::Ping).await.unwrap(),
        Response::Pong
    ));
    c.close().await.unwrap();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!text.contains("panicked"), "panic in the agent log");
    let after = state(&ns.0, &dir.0);
    assert_eq!(after, before, "{sent} requests left the namespace changed");
    println!("fuzz: {sent} requests in {rounds} rounds");
}
