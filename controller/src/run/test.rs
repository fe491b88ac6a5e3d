//! Stage 5, the test phase: per match, connect to its agents, call
//! `test(m)`, then end the session on every agent (jobs killed, changes
//! undone), even after an error or Ctrl-C. An agent that cannot be reached
//! or is lost stops the run (no further matches) and makes it exit 3.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rhai::Dynamic;
use tokio::runtime::Handle;

use crate::exit::Failure;
use crate::interact::progress::Progress;
use crate::recipe::api::{
    ctx::{Ctx, CtxInner},
    host::Host,
    job, Core,
};
use crate::recipe::value::map_to_dynamic;
use crate::recipe::{self, Cancel};
use crate::report::{self, summary, MatchReport, ResultRec, Verdict};
use crate::session::Session;
use crate::store::hook::RunHook;

use super::load::Recipe;
use super::log::Log;
use super::map::Mapped;
use super::place::{targets, Place};

/// What the test phase left for the report.
#[derive(Default)]
pub struct Tested {
    pub matches: Vec<MatchReport>,
    /// Changes not undone, agents lost while cleaning up, close errors.
    pub cleanup_errors: Vec<String>,
    /// The first infrastructure error (an agent unreachable or lost).
    pub infra: Option<String>,
    /// Requests sent per host, over all matches.
    pub rpcs: BTreeMap<String, u64>,
}

/// How long ending a session may take before its hosts are reported as
/// possibly not clean.
const END_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `test(m)` for each match of `m`.
#[allow(clippy::too_many_arguments)]
pub fn test(
    r: &Recipe,
    m: &Mapped,
    place: &Place,
    store: &RunHook,
    pause_on_fail: bool,
    progress: &mut Progress,
    log: &Log,
    rt: &Handle,
    cancel: &Cancel,
) -> Result<Tested, Failure> {
    let mut t = Tested::default();
    for (i, mapping) in m.mappings.iter().enumerate() {
        if cancel.is_cancelled() {
            break;
        }
        let mt0 = Instant::now();
        progress.start_match(i + 1, m.mappings.len());
        let _span = tracing::info_span!("match", n = i + 1).entered();
        log.borrow_mut().line(format!(
            "match {}: {}",
            i + 1,
            serde_json::to_string(mapping).unwrap_or_default()
        ));
        let targets = targets(place, m, mapping)?;
        let connected = rt.block_on(async {
            tokio::select! {
                r = Session::connect_fenced(&targets, m.fence) => Some(r),
                _ = cancel.cancelled() => None,
            }
        });
        let session = match connected {
            None => break,
            Some(Err(e)) => {
                t.infra = Some(e.to_string());
                t.matches.push(MatchReport {
                    mapping: mapping.clone(),
                    result: Verdict::Error,
                    results: vec![ResultRec {
                        host: None,
                        job: None,
                        desc: format!("connect to agents: {e}"),
                        result: Verdict::Error,
                        data: Default::default(),
                        note: None,
                        at: 0.0,
                    }],
                    duration: mt0.elapsed().as_secs_f64(),
                });
                break;
            }
            Some(Ok(s)) => s,
        };
        store.connected(i, mapping, &session);
        if let Some(d) = place.lab.as_ref().and_then(|l| l.silence_timeout()) {
            for c in session.clients.values() {
                c.set_silence_timeout(d);
            }
        }
        log.borrow_mut().line(format!(
            "connected to {} agent(s) in {:.1} ms",
            session.clients.len(),
            mt0.elapsed().as_secs_f64() * 1e3
        ));
        let core = Rc::new_cyclic(|me| Core {
            rt: rt.clone(),
            cancel: cancel.clone(),
            results: RefCell::new(Vec::new()),
            infra: RefCell::new(None),
            jobs_dir: Some(place.jobs_dir.clone()),
            jobs: RefCell::new(Vec::new()),
            started: Instant::now(),
            status: progress.status(me.clone()),
            clients: RefCell::new(Vec::new()),
            pause: {
                let l = Rc::clone(log);
                crate::interact::breakpoint::for_match(
                    pause_on_fail,
                    &session.clients,
                    mapping,
                    place.lab.as_deref(),
                    &m.pool,
                    Rc::new(move |s| l.borrow_mut().line(s)),
                )
            },
            hosts: RefCell::new(Vec::new()),
        });
        let hosts: Vec<Host> = r
            .loaded
            .declared
            .requirements
            .hosts
            .iter()
            .filter_map(|h| {
                let hm = mapping.get(&h.name)?;
                let client = session.clients.get(&h.name)?.clone();
                let machine = m.pool.machines.iter().find(|x| x.id == hm.machine);
                let mut params = machine.map(|x| x.params.clone()).unwrap_or_default();
                if let Some(l) = &place.lab {
                    params.extend(l.host_params(&h.name));
                }
                let params = map_to_dynamic(&params);
                Some(Host::new(
                    h.name.clone(),
                    hm.machine.clone(),
                    params,
                    client,
                    Rc::clone(&core),
                    &hm.nics,
                ))
            })
            .collect();
        let ctx = Ctx(Rc::new(CtxInner {
            core: Rc::clone(&core),
            hosts,
            params: map_to_dynamic(&r.params),
        }));
        (core.status)("test(m)");
        let outcome = r.loaded.call_test(Dynamic::from(ctx));
        log.borrow_mut().line("test returned".to_string());
        if let Err(msg) = &outcome {
            core.pause.after_error(&core, msg);
        }
        job::end_of_test(&core);
        progress.end_match();
        if let Err(msg) = outcome {
            let interrupted = recipe::engine::is_interrupt(&msg) || cancel.is_cancelled();
            log.borrow_mut().line(format!("test: {msg}"));
            core.push_result(ResultRec {
                host: None,
                job: None,
                desc: msg,
                result: Verdict::Error,
                data: Default::default(),
                note: interrupted.then(|| "interrupted".to_string()),
                at: 0.0,
            });
        }
        if let Some(e) = core.infra.borrow().clone() {
            // The lab may know why an agent was lost (a guest's qemu died).
            let why: Vec<String> = match place.lab.as_ref() {
                Some(l) => mapping
                    .keys()
                    .filter(|h| e.contains(&format!("agent {h}")))
                    .filter_map(|h| l.lost(h))
                    .collect(),
                None => Vec::new(),
            };
            let e = if why.is_empty() {
                e
            } else {
                format!("{e}; {}", why.join("; "))
            };
            t.infra.get_or_insert(e);
        }
        let dirty = end_session(&session, place, &mut t, rt);
        log.borrow_mut()
            .line("agents cleaned up and closed".to_string());
        for (h, n) in session.rpcs() {
            *t.rpcs.entry(h).or_default() += n;
        }
        let results = core.results.borrow().clone();
        for x in &results {
            log.borrow_mut().line(format!(
                "{} {} {} {} {}",
                x.result.as_str(),
                x.host.as_deref().unwrap_or("-"),
                x.job.map(|j| j.to_string()).unwrap_or_else(|| "-".into()),
                x.desc,
                summary::figures(x)
            ));
        }
        let mut result = report::overall(results.iter().map(|x| &x.result));
        if dirty && result == Verdict::Pass {
            // The test passed but the host is not as it was: not PASS.
            result = Verdict::Error;
        }
        t.matches.push(MatchReport {
            mapping: mapping.clone(),
            result,
            results,
            duration: mt0.elapsed().as_secs_f64(),
        });
        if t.infra.is_some() {
            break;
        }
    }
    Ok(t)
}

/// Undoes the match on every agent, even after Ctrl-C (bounded). A change
/// not undone makes the run not PASS (returns true); an agent lost while
/// cleaning up is an infrastructure error (exit 3) naming the host.
fn end_session(session: &Session, place: &Place, t: &mut Tested, rt: &Handle) -> bool {
    let wait_close = place.lab.as_ref().is_none_or(|l| l.agents_close());
    let ended = rt.block_on(async {
        tokio::time::timeout(END_TIMEOUT, async {
            let t0 = Instant::now();
            let e = session.end().await;
            tracing::info!(ms = t0.elapsed().as_secs_f64() * 1e3, "EndSession");
            let closing = session.close_waiting(wait_close).await;
            tracing::info!(ms = t0.elapsed().as_secs_f64() * 1e3, "closed");
            (e, closing)
        })
        .await
    });
    match ended {
        Ok((e, closing)) => {
            let dirty = !e.not_undone.is_empty();
            if let Some(l) = e.lost.first() {
                t.infra.get_or_insert_with(|| l.clone());
            }
            t.cleanup_errors.extend(e.not_undone);
            t.cleanup_errors.extend(e.lost);
            t.cleanup_errors.extend(closing);
            dirty
        }
        Err(_) => {
            let hosts: Vec<&str> = session.clients.keys().map(String::as_str).collect();
            let msg = format!(
                "agents did not finish cleaning up within {} s; hosts {} may not be clean",
                END_TIMEOUT.as_secs(),
                hosts.join(", ")
            );
            t.infra.get_or_insert_with(|| msg.clone());
            t.cleanup_errors.push(msg);
            false
        }
    }
}
