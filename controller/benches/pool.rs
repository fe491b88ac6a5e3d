//! Shared-pool benchmarks on a local PostgreSQL (the tests' throwaway
//! server, `tests/support/postgres.rs`): `cargo bench -p lnst-ctl --bench
//! pool` (needs the postgresql package; run as root so the server can
//! start as the `postgres` user).
//!
//! - reserving and releasing 8 machines of 1 000 (a request, the
//!   scheduling step that grants it, its status; then the release and
//!   the step after it), by machine ids and by an 8-host recipe's
//!   requirements (goal ≤ 50 ms);
//! - 20 controllers contending for 4 machines, each holding them 20 ms:
//!   the time from one holder's release to the next grant being seen by
//!   its controller, woken by NOTIFY, through the same wait as `lnst-ctl
//!   run` (`hold::wait_for_grant`) (goal ≤ 100 ms each).

#[allow(dead_code)] // TmpDir: the other benches use it
mod support;
#[path = "../tests/support/postgres.rs"]
mod test_pg;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lnst_ctl::mapper::{HostReq, Requirements};
use lnst_ctl::pool::{Machine, Pool};
use lnst_ctl::recipe::Cancel;
use lnst_ctl::reserve::pg::hold;
use lnst_ctl::reserve::pg::queue::{self, Request, Want};
use lnst_ctl::reserve::pg::PgPool;
use serde_json::json;
use support::median;
use test_pg::TestPostgres;

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn pool(n: usize) -> Pool {
    Pool {
        machines: (0..n)
            .map(|i| Machine {
                id: format!("m{i:04}"),
                address: format!("10.{}.{}.{}:9999", i / 65536, (i / 256) % 256, i % 256),
                params: BTreeMap::from([
                    (
                        "arch".into(),
                        json!(if i % 2 == 0 { "x86_64" } else { "aarch64" }),
                    ),
                    ("rack".into(), json!(i / 100)),
                ]),
                nics: vec![],
                extra: BTreeMap::new(),
                file: Default::default(),
            })
            .collect(),
    }
}

fn request(want: Want) -> Request {
    Request {
        kind: "run",
        who: "bench".into(),
        what: "bench".into(),
        priority: 0,
        want,
        lease: Duration::from_secs(30),
    }
}

async fn reserve_release(pg: &mut PgPool, want: &Want) -> (Duration, Duration) {
    let t = Instant::now();
    let id = queue::submit(&pg.client, &request(want.clone()))
        .await
        .expect("submit");
    let s = queue::step(&mut pg.client).await.expect("step");
    assert_eq!(s.granted, vec![id]);
    let st = queue::status(&pg.client, id).await.expect("status");
    assert_eq!(st.state, "granted");
    assert_eq!(st.machines.len(), 8);
    let reserve = t.elapsed();
    let t = Instant::now();
    queue::release(&mut pg.client, id).await.expect("release");
    (reserve, t.elapsed())
}

async fn bench_reserve(url: &str) {
    let mut pg = PgPool::open(url).await.expect("open");
    let p = pool(1000);
    let t = Instant::now();
    pg.sync(&p).await.expect("sync");
    println!("pool sync of 1000 machines: {}", ms(t.elapsed()));
    let by_ids = Want {
        machines: Some((0..8).map(|i| format!("m{:04}", i * 97)).collect()),
        ..Default::default()
    };
    let by_req = Want {
        requirements: Some(Requirements {
            hosts: (0..8)
                .map(|i| HostReq {
                    name: format!("h{i}"),
                    params: BTreeMap::from([("arch".into(), json!("aarch64"))]),
                    nics: vec![],
                })
                .collect(),
        }),
        ..Default::default()
    };
    for (name, want) in [
        ("by machine ids", &by_ids),
        ("by an 8-host recipe", &by_req),
    ] {
        let mut res = Vec::new();
        let mut rel = Vec::new();
        let mut both = Vec::new();
        for _ in 0..40 {
            let (a, b) = reserve_release(&mut pg, want).await;
            res.push(a);
            rel.push(b);
            both.push(a + b);
        }
        let worst = *both.iter().max().expect("samples");
        println!(
            "reserve + release 8 of 1000 machines, {name}: median {} (reserve {}, release {}), worst {} (goal ≤ 50 ms)",
            ms(median(both)),
            ms(median(res)),
            ms(median(rel)),
            ms(worst)
        );
    }
}

async fn bench_contention(url: &str) {
    let mut admin = PgPool::open(url).await.expect("open");
    admin.sync(&pool(4)).await.expect("sync");
    let ids: Vec<String> = (0..4).map(|i| format!("m{i:04}")).collect();
    // When the holder started giving the machines back.
    let freed: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let lat: Arc<Mutex<Vec<Duration>>> = Arc::new(Mutex::new(Vec::new()));
    let local = tokio::task::LocalSet::new();
    let mut tasks = Vec::new();
    for c in 0..20 {
        let (url, ids, freed, lat) = (url.to_string(), ids.clone(), freed.clone(), lat.clone());
        // Local tasks: the wait's progress callback need not be Send.
        tasks.push(local.spawn_local(async move {
            let mut pg = PgPool::open(&url).await.expect("open");
            let (_aux, mut notes) = pg.listener().await.expect("listen");
            let want = Want {
                machines: Some(ids),
                ..Default::default()
            };
            let mut r = request(want);
            r.what = format!("contender {c}");
            let id = queue::submit(&pg.client, &r).await.expect("submit");
            // The controllers' own wait (lnst-ctl run and reserve use it).
            let st = hold::wait_for_grant(
                &mut pg,
                &mut notes,
                id,
                0,
                None,
                &BTreeMap::new(),
                &Cancel::new(),
                &mut |_| {},
            )
            .await
            .expect("wait for grant");
            assert_eq!(st.state, "granted");
            if let Some(t) = *freed.lock().unwrap() {
                lat.lock().unwrap().push(t.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            // Stamped before the release starts, so the figure includes
            // the release's own transaction (the next holder may wake
            // before this task runs again).
            *freed.lock().unwrap() = Some(Instant::now());
            queue::release(&mut pg.client, id).await.expect("release");
        }));
    }
    local
        .run_until(async {
            for t in tasks {
                t.await.expect("contender");
            }
        })
        .await;
    let lat = lat.lock().unwrap().clone();
    let worst = *lat.iter().max().expect("grants");
    println!(
        "20 controllers contending for 4 machines: {} grants after a release, median {} from free to granted, worst {} (goal ≤ 100 ms each)",
        lat.len(),
        ms(median(lat.clone())),
        ms(worst)
    );
}

fn main() {
    let Some(pg) = TestPostgres::get() else {
        println!("SKIP: no PostgreSQL");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(bench_reserve(&pg.new_db()));
    rt.block_on(bench_contention(&pg.new_db()));
}
