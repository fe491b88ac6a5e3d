//! Job behaviour, checked from outside: exit codes, exact bytes, env, cwd,
//! timeouts measured by the test, process groups gone from `/proc`,
//! concurrency, truncation, namespaces, streaming.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use lnst_common::job::{JobSpec, Stream, MAX_OUTPUT_BYTES, TRUNCATION_MARKER};
use lnst_common::{ErrorKind, Event, Request, Response};

use super::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_code_exact_output_env_cwd() {
    let a = Agent::start();
    let c = a.client().await;

    let s = run(
        &c,
        JobSpec::shell(r"printf 'a\000b\n'; printf 'err' >&2; exit 7"),
    )
    .await;
    let exit = s.exit.unwrap();
    assert_eq!(exit.exit_code, Some(7));
    assert_eq!(exit.signal, None);
    assert!(!exit.timed_out);
    assert_eq!(s.stdout, b"a\0b\n");
    assert_eq!(s.stderr, b"err");

    let mut spec = JobSpec::shell(r#"printf '%s|%s' "$LNST_T1" "$LNST_T2""#);
    spec.env = vec![
        ("LNST_T1".into(), "one two".into()),
        ("LNST_T2".into(), "ü".into()),
    ];
    assert_eq!(run(&c, spec).await.stdout, "one two|ü".as_bytes());

    let d = TempDir::new();
    let mut spec = JobSpec::shell("pwd -P");
    spec.cwd = Some(path_str(&d.0));
    let want = std::fs::canonicalize(&d.0).unwrap();
    assert_eq!(
        String::from_utf8(run(&c, spec).await.stdout)
            .unwrap()
            .trim_end(),
        path_str(&want)
    );

    let mut spec = JobSpec::shell("true");
    spec.cwd = Some("/nonexistent-lnst-dir".into());
    let e = c.request(Request::JobStart(spec)).await.unwrap_err();
    assert_eq!(e.remote().unwrap().kind, ErrorKind::NotFound, "{e}");

    // A job killed by a signal reports the signal, not an exit code.
    let s = run(&c, JobSpec::shell("kill -USR1 $$")).await;
    assert_eq!(s.exit.as_ref().unwrap().signal, Some(libc::SIGUSR1));
    assert_eq!(s.exit.unwrap().exit_code, None);
    c.close().await.unwrap();
}

/// A simple command is exec'd without the shell (`jobs::simple`); the same
/// command with a `;` goes through `sh -c`. What the job sees and what it
/// reports must not tell them apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_commands_get_what_the_shell_would_give() {
    let a = Agent::start();
    let c = a.client().await;
    let sorted = |b: Vec<u8>| {
        let mut l: Vec<String> = String::from_utf8(b)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        l.sort();
        l
    };
    for env in [vec![], vec![("LNST_T".to_string(), "a b".to_string())]] {
        let mut direct = JobSpec::shell("env");
        direct.env = env.clone();
        let mut shell = JobSpec::shell("env;");
        shell.env = env;
        let (d, s) = (run(&c, direct).await, run(&c, shell).await);
        let (d, s) = (sorted(d.stdout), sorted(s.stdout));
        assert_eq!(d, s, "the environment differs");
        assert!(d.iter().any(|l| l.starts_with("PWD=/")), "{d:?}");
        assert!(d.iter().any(|l| l.starts_with("LNST_AGENT_BIN=")), "{d:?}");
    }
    for cmd in [
        "false",
        "lnst-missing-tool --x",
        "ls -d /nonexistent-lnst",
        "/nonexistent-lnst/tool",
        "/etc/hostname",
        "sh -c false",
    ] {
        let d = run(&c, JobSpec::shell(cmd)).await;
        let s = run(&c, JobSpec::shell(format!("{cmd};"))).await;
        let (de, se) = (d.exit.unwrap(), s.exit.unwrap());
        assert_eq!(
            (de.exit_code, de.signal, &d.stdout, &d.stderr),
            (se.exit_code, se.signal, &s.stdout, &s.stderr),
            "{cmd}"
        );
        assert_ne!(de.exit_code, Some(0), "{cmd}");
    }
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_ids_unknown_ids_and_unknown_netns() {
    let a = Agent::start();
    let c = a.client().await;
    let id1 = start_bg(&c, JobSpec::shell("true")).await;
    let id2 = start_bg(&c, JobSpec::shell("true")).await;
    assert_eq!((id1, id2), (1, 2));
    for req in [
        Request::JobWait {
            id: 999,
            timeout_ms: Some(10),
        },
        Request::JobKill {
            id: 999,
            signal: libc::SIGTERM,
        },
    ] {
        let e = c.request(req).await.unwrap_err();
        assert_eq!(e.remote().unwrap().kind, ErrorKind::NotFound, "{e}");
        assert!(e.to_string().contains("999"), "{e}");
    }
    let e = c
        .request(Request::Devices {
            netns: Some("lnsttest-no-such-netns".into()),
        })
        .await
        .unwrap_err();
    assert_eq!(e.remote().unwrap().kind, ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("lnsttest-no-such-netns"), "{e}");
    assert!(matches!(
        c.request(Request::Ping).await.unwrap(),
        Response::Pong
    ));
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_terms_then_kills_the_group() {
    let a = Agent::start();
    let c = a.client().await;

    let mark = marker_num();
    let mut spec = JobSpec::shell(format!("sleep 1000.{mark} & sleep 1000.{mark}"));
    spec.timeout_ms = Some(500);
    let t = Instant::now();
    let s = run(&c, spec).await;
    let took = t.elapsed();
    let exit = s.exit.unwrap();
    assert!(exit.timed_out);
    assert_eq!(exit.signal, Some(libc::SIGTERM));
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_millis(1300),
        "took {took:?}"
    );
    assert!(wait_until(Duration::from_secs(2), || procs_with(&format!(
        "1000.{mark}"
    ))
    .is_empty()));

    // A group that ignores TERM is KILLed after the ~1 s grace.
    let mark = marker_num();
    let mut spec = JobSpec::shell(format!(
        "trap '' TERM; sleep 1000.{mark} & sleep 1000.{mark}"
    ));
    spec.timeout_ms = Some(300);
    let t = Instant::now();
    let s = run(&c, spec).await;
    let took = t.elapsed();
    let exit = s.exit.unwrap();
    assert!(exit.timed_out);
    assert_eq!(exit.signal, Some(libc::SIGKILL));
    assert!(
        took >= Duration::from_millis(1250) && took < Duration::from_millis(2500),
        "took {took:?}"
    );
    assert!(wait_until(Duration::from_secs(2), || procs_with(&format!(
        "1000.{mark}"
    ))
    .is_empty()));
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_reaches_grandchildren_and_wait_times_out() {
    let a = Agent::start();
    let c = a.client().await;
    let mark = marker_num();
    let needle = format!("1000.{mark}");
    let id = start_bg(
        &c,
        JobSpec::shell(format!("sleep {needle} & sh -c 'sleep {needle}' & wait")),
    )
    .await;
    assert!(
        wait_until(Duration::from_secs(3), || procs_with(&needle).len() >= 2),
        "grandchildren never appeared"
    );
    // wait with a timeout returns the running state.
    let t = Instant::now();
    let r = c
        .request(Request::JobWait {
            id,
            timeout_ms: Some(300),
        })
        .await
        .unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300));
    let Response::Job(s) = r else { panic!("{r:?}") };
    assert!(s.exit.is_none());

    c.request(Request::JobKill {
        id,
        signal: libc::SIGTERM,
    })
    .await
    .unwrap();
    let r = c
        .request(Request::JobWait {
            id,
            timeout_ms: Some(5000),
        })
        .await
        .unwrap();
    let Response::Job(s) = r else { panic!("{r:?}") };
    assert_eq!(s.exit.unwrap().signal, Some(libc::SIGTERM));
    assert!(
        wait_until(Duration::from_secs(2), || procs_with(&needle).is_empty()),
        "left behind: {:?}",
        procs_with(&needle)
    );
    // Killing a finished job is fine; a bad signal is not.
    c.request(Request::JobKill {
        id,
        signal: libc::SIGTERM,
    })
    .await
    .unwrap();
    let id2 = start_bg(&c, JobSpec::shell("sleep 5")).await;
    let e = c
        .request(Request::JobKill {
            id: id2,
            signal: 9999,
        })
        .await
        .unwrap_err();
    assert_eq!(e.remote().unwrap().kind, ErrorKind::InvalidArgument, "{e}");
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_background_jobs_all_reported() {
    let a = Agent::start();
    let c = a.client().await;
    let mut events = c.events();
    let mut ids = HashMap::new();
    let starts: Vec<_> = (0..100)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move {
                let id = start_bg(&c, JobSpec::shell(format!("sleep 0.2; echo job{i}"))).await;
                (id, i)
            })
        })
        .collect();
    for s in starts {
        let (id, i) = s.await.unwrap();
        ids.insert(id, i);
    }
    assert_eq!(ids.len(), 100, "ids not unique");
    let mut finished = BTreeSet::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while finished.len() < 100 {
            if let Ok(Event::JobFinished(x)) = events.recv().await {
                assert_eq!(x.exit_code, Some(0));
                finished.insert(x.id);
            }
        }
    })
    .await
    .expect("not all 100 jobs reported finished");
    assert_eq!(finished, ids.keys().copied().collect());
    for (id, i) in ids {
        let r = c
            .request(Request::JobWait {
                id,
                timeout_ms: Some(0),
            })
            .await
            .unwrap();
        let Response::Job(s) = r else { panic!("{r:?}") };
        assert_eq!(s.stdout, format!("job{i}\n").as_bytes());
    }
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_is_truncated_with_marker() {
    let a = Agent::start();
    let c = a.client().await;
    let s = run(
        &c,
        JobSpec::shell(format!(
            "head -c {} /dev/zero; echo tail >&2",
            MAX_OUTPUT_BYTES + 12345
        )),
    )
    .await;
    assert_eq!(s.exit.unwrap().exit_code, Some(0));
    assert_eq!(s.stdout.len(), MAX_OUTPUT_BYTES + TRUNCATION_MARKER.len());
    assert!(s.stdout[..MAX_OUTPUT_BYTES].iter().all(|&b| b == 0));
    assert!(s.stdout.ends_with(TRUNCATION_MARKER.as_bytes()));
    assert_eq!(s.stderr, b"tail\n");
    let s = run(
        &c,
        JobSpec::shell(format!("head -c {MAX_OUTPUT_BYTES} /dev/zero")),
    )
    .await;
    assert_eq!(
        s.stdout.len(),
        MAX_OUTPUT_BYTES,
        "exactly the bound is kept whole"
    );
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_in_a_named_netns_sees_only_lo() {
    let ns = match Netns::new() {
        Ok(ns) => ns,
        Err(e) => {
            println!("SKIP: cannot create a network namespace: {e}");
            return;
        }
    };
    let a = Agent::start();
    let c = a.client().await;
    let names = |out: &[u8]| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_slice(out).expect("ip -j link output");
        v.as_array()
            .unwrap()
            .iter()
            .map(|l| l["ifname"].as_str().unwrap().to_string())
            .collect()
    };
    let mut spec = JobSpec::shell("ip -j link show");
    spec.netns = Some(ns.0.clone());
    // Twice: the second spawn reuses the namespace thread.
    for _ in 0..2 {
        let s = run(&c, spec.clone()).await;
        assert_eq!(s.exit.as_ref().unwrap().exit_code, Some(0), "{s:?}");
        assert_eq!(names(&s.stdout), vec!["lo".to_string()]);
    }
    // The namespace is independent of the agent's: a device made in it is
    // seen there and not outside.
    let veth = format!("lt{}", marker_num());
    let veth = &veth[..veth.len().min(15)];
    let mut mk = JobSpec::shell(format!("ip link add {veth} type veth peer name {veth}p"));
    mk.netns = Some(ns.0.clone());
    let s = run(&c, mk).await;
    assert_eq!(s.exit.as_ref().unwrap().exit_code, Some(0), "{s:?}");
    let s = run(&c, spec.clone()).await;
    assert!(names(&s.stdout).contains(&veth.to_string()));
    let host = run(&c, JobSpec::shell("ip -j link show")).await;
    assert!(!names(&host.stdout).contains(&veth.to_string()));
    // The agent's own namespace is not the new one.
    let host = run(&c, JobSpec::shell("readlink /proc/self/ns/net")).await;
    let mut inside = JobSpec::shell("readlink /proc/self/ns/net");
    inside.netns = Some(ns.0.clone());
    let inside = run(&c, inside).await;
    assert_ne!(host.stdout, inside.stdout);

    let mut bad = JobSpec::shell("true");
    bad.netns = Some(unique("-missing"));
    let e = c.request(Request::JobStart(bad)).await.unwrap_err();
    assert_eq!(e.remote().unwrap().kind, ErrorKind::NotFound, "{e}");
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_streams_before_exit() {
    let a = Agent::start();
    let c = a.client().await;
    let mut events = c.events();
    let t = Instant::now();
    let id = start_bg(
        &c,
        JobSpec::shell("echo ready; echo warn >&2; sleep 5; echo done"),
    )
    .await;
    let mut seen = (false, false);
    let first_at = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.recv().await.unwrap() {
                Event::JobOutput {
                    id: i,
                    stream,
                    data,
                } if i == id => {
                    match stream {
                        Stream::Stdout => {
                            assert_eq!(data, b"ready\n");
                            seen.0 = true
                        }
                        Stream::Stderr => {
                            assert_eq!(data, b"warn\n");
                            seen.1 = true
                        }
                    }
                    if seen == (true, true) {
                        return t.elapsed();
                    }
                }
                Event::JobFinished(x) if x.id == id => panic!("finished before output"),
                _ => {}
            }
        }
    })
    .await
    .unwrap();
    assert!(
        first_at < Duration::from_millis(4000),
        "first output after {first_at:?} (the job exits only after 5 s)"
    );
    // Then "done", then the finish event, in that order.
    let rest = tokio::time::timeout(Duration::from_secs(15), async {
        let mut out = Vec::new();
        loop {
            match events.recv().await.unwrap() {
                Event::JobOutput { id: i, data, .. } if i == id => out.extend(data),
                Event::JobFinished(x) if x.id == id => return (out, x),
                _ => {}
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(rest.0, b"done\n");
    assert_eq!(rest.1.exit_code, Some(0));
    assert!(rest.1.duration >= 2.0);
    c.close().await.unwrap();
}

/// Kernel release (major, minor) from `uname -r`.
fn kernel() -> (u32, u32) {
    let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut it = r.trim().split(['.', '-']).map(|p| p.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_shell_is_born_in_its_session_cgroup_with_clean_signals() {
    if !root() {
        return;
    }
    let a = Agent::start();
    let c = a.client().await;
    let s = run(
        &c,
        JobSpec::shell(
            // The shell reads its own status with builtins: while it forks
            // and waits for a child (a `grep`), dash blocks every signal
            // for a moment, which a child reading /proc/$$/status can see.
            "cat /proc/$$/cgroup; while read -r l; do case $l in SigIgn*|SigBlk*) echo \"$l\";; esac; done </proc/$$/status; tr '\\0' ' ' </proc/$$/cmdline",
        ),
    )
    .await;
    assert_eq!(s.exit.as_ref().unwrap().exit_code, Some(0), "{s:?}");
    let out = String::from_utf8(s.stdout).unwrap();
    // What posix_spawn through std gives too: the SIGPIPE the agent's
    // runtime ignores is back to its default, nothing is blocked, and no
    // handler of the agent's is left (it cannot be: exec resets them).
    assert!(out.contains("SigBlk:\t0000000000000000\n"), "{out}");
    let ign = out
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:\t"))
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap();
    assert_eq!(
        ign & (1 << (libc::SIGPIPE - 1)),
        0,
        "SIGPIPE ignored: {out}"
    );
    let unified = std::path::Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists()
        || std::path::Path::new("/sys/fs/cgroup/cgroup.procs").exists();
    if !unified {
        eprintln!("SKIP (cgroup part): no cgroup2 mounted");
        return c.close().await.unwrap();
    }
    let cg = out
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or("");
    assert!(
        cg.contains(&format!("/lnst-{}-s", a.pid())),
        "the job's shell is not in the session's cgroup: {out}"
    );
    if cfg!(target_arch = "x86_64") && kernel() >= (5, 7) {
        // Created in the cgroup (clone3 CLONE_INTO_CGROUP): the shell runs
        // the command as given, with no `echo 0 >cgroup.procs` before it.
        let cmdline = out.lines().last().unwrap_or("");
        assert!(
            cmdline.starts_with("/bin/sh -c cat /proc/$$/cgroup;"),
            "{cmdline}"
        );
    } else {
        eprintln!(
            "SKIP (clone3 part): kernel {:?} before 5.7 or not x86_64",
            kernel()
        );
    }
    c.close().await.unwrap();
}
