//! `lnst-ctl run RECIPE`: params → declaration phase → mapping → run
//! directory → lab (or pool) → per match: connect, `test(m)`, end the
//! session → reports. Runs on the run thread (see [`super::on_thread`]);
//! every exit path after the lab exists tears it down.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use rhai::Dynamic;
use tokio::runtime::Handle;

use crate::client::AgentAddr;
use crate::commands::{auth_for, RunArgs, INSECURE_WARNING};
use crate::exit::{Classify, ExitCode, Failure};
use crate::lab::{self, Lab, LabOptions};
use crate::mapper::{self, Mapping};
use crate::recipe::api::{
    ctx::{Ctx, CtxInner},
    host::Host,
    job, Core,
};
use crate::recipe::engine::LogLine;
use crate::recipe::value::map_to_dynamic;
use crate::recipe::{self, Cancel};
use crate::report::{
    self, json, junit, rundir, summary, MatchReport, ResultRec, RunReport, Verdict,
};
use crate::session::Session;
use crate::{params, pool};

/// Most matches `--all-matches` runs.
const MAX_MATCHES: usize = 10_000;

/// The run log (`controller.log`): recipe print/debug lines and run
/// events, buffered until the run directory exists; echoed to stderr
/// with -v.
struct RunLog {
    file: Option<fs::File>,
    buf: Vec<String>,
    echo: bool,
    t0: Instant,
    recipe: String,
}

impl RunLog {
    fn line(&mut self, s: String) {
        let s = format!("[{:8.3}] {s}", self.t0.elapsed().as_secs_f64());
        if self.echo {
            eprintln!("{s}");
        }
        match &mut self.file {
            Some(f) => {
                let _ = writeln!(f, "{s}");
            }
            None => self.buf.push(s),
        }
    }
    fn attach(&mut self, path: &Path) {
        if let Ok(mut f) = fs::File::create(path) {
            for l in self.buf.drain(..) {
                let _ = writeln!(f, "{l}");
            }
            self.file = Some(f);
        }
    }
}

fn write_json(path: &Path, v: &impl serde::Serialize) -> anyhow::Result<()> {
    let s = serde_json::to_string_pretty(v)?;
    fs::write(path, s + "\n").with_context(|| format!("cannot write {}", path.display()))
}

fn agent_bin(a: &RunArgs) -> PathBuf {
    a.agent_bin.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .map(|p| p.with_file_name("lnst-agent"))
            .unwrap_or_else(|_| PathBuf::from("lnst-agent"))
    })
}

pub fn exec(a: RunArgs, verbose: u8, rt: Handle, cancel: Cancel) -> Result<ExitCode, Failure> {
    let t0 = Instant::now();
    let overrides = params::parse_overrides(&a.params).usage()?;
    let lab_kind = lab::kind_of(a.lab.as_deref(), a.pool.is_some(), a.kernel.is_some()).usage()?;
    for l in lab::clean_stale() {
        eprintln!("lnst-ctl: removed a leftover lab: {l}");
    }
    let file = a
        .recipe
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let log = Rc::new(RefCell::new(RunLog {
        file: None,
        buf: Vec::new(),
        echo: verbose > 0,
        t0,
        recipe: file.clone(),
    }));
    let l2 = Rc::clone(&log);
    let sink = Rc::new(move |l: LogLine| {
        let mut lg = l2.borrow_mut();
        let file = l.file.unwrap_or_else(|| lg.recipe.clone());
        let at = l.line.map(|n| format!("{file}:{n}")).unwrap_or(file);
        lg.line(format!(
            "{at}: {}{}",
            if l.debug { "debug: " } else { "" },
            l.text
        ));
    });
    let loaded = match recipe::load(&a.recipe, &overrides, sink, cancel.clone()) {
        Ok(l) => l,
        // Ctrl-C during the declaration phase: nothing was built yet.
        Err(e) if cancel.is_cancelled() => return Err(Failure::new(ExitCode::Interrupted, e)),
        Err(e) => return Err(Failure::new(ExitCode::Usage, e)),
    };
    params::check(
        &loaded.declared.params,
        &overrides,
        &recipe_label(&a.recipe),
    )
    .usage()?;
    let req = loaded.declared.requirements.clone();
    let (pool, pool_name) = match &a.pool {
        Some(d) => (pool::load_dir(d).usage()?, d.display().to_string()),
        None => (
            lab::pool_for(&req, lab_kind),
            format!("{} lab", lab_kind.name()),
        ),
    };
    if a.all_matches && a.pool.is_none() {
        // The lab is built for the recipe: its one meaningful match is the
        // identity (other matches only swap identical hosts).
        eprintln!(
            "lnst-ctl: --all-matches has no effect on the {} lab; running its one match",
            lab_kind.name()
        );
    }
    let mappings: Vec<Mapping> = if a.all_matches && a.pool.is_some() {
        mapper::map_all(&req, &pool, MAX_MATCHES)
    } else {
        mapper::map_first(&req, &pool).map(|m| vec![m])
    }
    .map_err(|e| anyhow!("{e}"))
    .with_context(|| format!("{file}: no mapping onto the {pool_name}"))
    .usage()?;
    let param_values = params::values(&loaded.declared.params);
    // Transport authentication for the machines of the mappings (unix
    // sockets of the lab need none). Checked before anything is created.
    let insecure = a.auth.insecure && a.pool.is_some();
    let auths = if a.pool.is_some() {
        let used: Vec<&pool::Machine> = pool
            .machines
            .iter()
            .filter(|m| {
                mappings
                    .iter()
                    .any(|mp| mp.values().any(|hm| hm.machine == m.id))
            })
            .collect();
        auth_for(&a.auth, &used).usage()?
    } else {
        BTreeMap::new()
    };
    if a.auth.insecure {
        if a.pool.is_some() {
            eprintln!("{INSECURE_WARNING}");
        } else {
            eprintln!("lnst-ctl: --insecure has no effect on the netns lab (its agents are on unix sockets)");
        }
    }

    // The run directory.
    let base = a.out.clone().unwrap_or_else(|| PathBuf::from("lnst-runs"));
    let dir = rundir::create(&base, &a.recipe)
        .with_context(|| format!("cannot create a run directory under {}", base.display()))
        .infra()?;
    log.borrow_mut().attach(&dir.join("controller.log"));
    let _ = fs::write(dir.join(&file), &loaded.source);
    // Each imported module beside it, at its import path (relative and
    // down only, see recipe::modules), so that the run directory can be
    // re-run as it is.
    for (import, src) in &loaded.imports {
        let to = dir.join(
            loaded
                .names
                .module_file(import)
                .strip_prefix(&loaded.names.base)
                .unwrap_or(Path::new(import)),
        );
        let copied = to
            .parent()
            .map_or(Ok(()), fs::create_dir_all)
            .and_then(|_| fs::copy(src, &to));
        copied
            .with_context(|| {
                format!(
                    "cannot copy module {} into {}",
                    src.display(),
                    dir.display()
                )
            })
            .infra()?;
    }
    write_json(&dir.join("params.json"), &param_values).infra()?;
    write_json(&dir.join("mapping.json"), &mappings).infra()?;
    write_json(&dir.join("requirements.json"), &req).infra()?;
    let store_hook =
        crate::store::hook::RunHook::begin(a.db.as_deref(), &a.recipe, &param_values, &dir);
    let jobs_dir = dir.join("jobs");

    // The lab, or the pool's addresses.
    let mut the_lab: Option<Box<dyn Lab>> = None;
    if a.pool.is_none() {
        let opts = LabOptions {
            kind: lab_kind,
            agent_bin: agent_bin(&a),
            kernel: a.kernel.clone(),
            accel: a.accel.clone(),
            run_dir: dir.clone(),
            cancel: cancel.clone(),
        };
        let l = match lab::build(&req, &opts) {
            Ok(l) => l,
            Err(lab::LabError::Interrupted) => {
                eprintln!("lnst-ctl: interrupted; the lab was removed");
                return Ok(ExitCode::Interrupted);
            }
            Err(e @ lab::LabError::Usage(_)) => {
                return Err(Failure::new(
                    ExitCode::Usage,
                    anyhow!("{file}: cannot run on the {pool_name}: {e}"),
                ))
            }
            Err(e) => {
                return Err(Failure::new(
                    ExitCode::Infra,
                    anyhow!(e).context(format!(
                        "cannot build the {} lab (`lnst-ctl doctor` checks what it needs)",
                        lab_kind.name()
                    )),
                ))
            }
        };
        log.borrow_mut().line(format!(
            "{} lab {} up in {:.1} ms: {}",
            l.kind(),
            l.runid(),
            l.build_time().as_secs_f64() * 1e3,
            l.describe()
        ));
        the_lab = Some(l);
    }
    let addr_of = |machine: &str| -> Result<AgentAddr, Failure> {
        if let Some(l) = &the_lab {
            return l.addrs().get(machine).cloned().ok_or_else(|| {
                Failure::new(ExitCode::Infra, anyhow!("lab has no agent for {machine}"))
            });
        }
        let m = pool
            .machines
            .iter()
            .find(|m| m.id == machine)
            .ok_or_else(|| {
                Failure::new(ExitCode::Infra, anyhow!("pool has no machine {machine}"))
            })?;
        m.address
            .parse::<AgentAddr>()
            .map_err(|e| Failure::new(ExitCode::Usage, anyhow!("{}: {e}", m.file.display())))
    };

    let mut progress = crate::interact::progress::Progress::new(verbose);
    let mut matches = Vec::new();
    let mut cleanup_errors = Vec::new();
    let mut infra: Option<String> = None;
    let mut rpcs: BTreeMap<String, u64> = BTreeMap::new();
    for (i, mapping) in mappings.iter().enumerate() {
        if cancel.is_cancelled() {
            break;
        }
        let mt0 = Instant::now();
        progress.start_match(i + 1, mappings.len());
        let _span = tracing::info_span!("match", n = i + 1).entered();
        log.borrow_mut().line(format!(
            "match {}: {}",
            i + 1,
            serde_json::to_string(mapping).unwrap_or_default()
        ));
        let mut targets = BTreeMap::new();
        for (h, hm) in mapping {
            let auth = auths.get(&hm.machine).cloned().flatten();
            targets.insert(h.clone(), (addr_of(&hm.machine)?, auth));
        }
        let connected = rt.block_on(async {
            tokio::select! {
                r = Session::connect_with(&targets) => Some(r),
                _ = cancel.cancelled() => None,
            }
        });
        let session = match connected {
            None => break,
            Some(Err(e)) => {
                infra = Some(e.to_string());
                matches.push(MatchReport {
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
        store_hook.connected(mapping, &session);
        if let Some(d) = the_lab.as_ref().and_then(|l| l.silence_timeout()) {
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
            jobs_dir: Some(jobs_dir.clone()),
            jobs: RefCell::new(Vec::new()),
            started: Instant::now(),
            status: progress.status(me.clone()),
            clients: RefCell::new(Vec::new()),
            pause: {
                let l = Rc::clone(&log);
                crate::interact::breakpoint::for_match(
                    a.pause_on_fail,
                    &session.clients,
                    mapping,
                    the_lab.as_deref(),
                    &pool,
                    Rc::new(move |s| l.borrow_mut().line(s)),
                )
            },
            hosts: RefCell::new(Vec::new()),
        });
        let hosts: Vec<Host> = req
            .hosts
            .iter()
            .filter_map(|h| {
                let hm = mapping.get(&h.name)?;
                let client = session.clients.get(&h.name)?.clone();
                let machine = pool.machines.iter().find(|m| m.id == hm.machine);
                let mut params = machine.map(|m| m.params.clone()).unwrap_or_default();
                if let Some(l) = &the_lab {
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
            params: map_to_dynamic(&param_values),
        }));
        (core.status)("test(m)");
        let outcome = loaded.call_test(Dynamic::from(ctx));
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
            let why: Vec<String> = match the_lab.as_ref() {
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
            infra.get_or_insert(e);
        }
        // Undo the match on every agent, even after Ctrl-C (bounded).
        // A change not undone makes the run not PASS; an agent lost while
        // cleaning up is an infrastructure error (exit 3) naming the host.
        let wait_close = the_lab.as_ref().is_none_or(|l| l.agents_close());
        let ended = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(60), async {
                let t = Instant::now();
                let e = session.end().await;
                tracing::info!(ms = t.elapsed().as_secs_f64() * 1e3, "EndSession");
                let closing = session.close_waiting(wait_close).await;
                tracing::info!(ms = t.elapsed().as_secs_f64() * 1e3, "closed");
                (e, closing)
            })
            .await
        });
        let mut dirty = false;
        match ended {
            Ok((e, closing)) => {
                dirty = !e.not_undone.is_empty();
                if let Some(l) = e.lost.first() {
                    infra.get_or_insert_with(|| l.clone());
                }
                cleanup_errors.extend(e.not_undone);
                cleanup_errors.extend(e.lost);
                cleanup_errors.extend(closing);
            }
            Err(_) => {
                let hosts: Vec<&str> = session.clients.keys().map(String::as_str).collect();
                let msg = format!(
                    "agents did not finish cleaning up within 60 s; hosts {} may not be clean",
                    hosts.join(", ")
                );
                infra.get_or_insert_with(|| msg.clone());
                cleanup_errors.push(msg);
            }
        }
        log.borrow_mut()
            .line("agents cleaned up and closed".to_string());
        for (h, n) in session.rpcs() {
            *rpcs.entry(h).or_default() += n;
        }
        let results = core.results.borrow().clone();
        for r in &results {
            log.borrow_mut().line(format!(
                "{} {} {} {} {}",
                r.result.as_str(),
                r.host.as_deref().unwrap_or("-"),
                r.job.map(|j| j.to_string()).unwrap_or_else(|| "-".into()),
                r.desc,
                summary::figures(r)
            ));
        }
        let mut result = report::overall(results.iter().map(|r| &r.result));
        if dirty && result == Verdict::Pass {
            // The test passed but the host is not as it was: not PASS.
            result = Verdict::Error;
        }
        matches.push(MatchReport {
            mapping: mapping.clone(),
            result,
            results,
            duration: mt0.elapsed().as_secs_f64(),
        });
        if infra.is_some() {
            break;
        }
    }
    let lab_id = the_lab.as_ref().map(|l| l.runid().to_string());
    let lab_ms = the_lab.as_ref().map(|l| l.build_time().as_secs_f64() * 1e3);
    if let Some(mut l) = the_lab.take() {
        let errs = l.teardown();
        cleanup_errors.extend(errs);
    }
    log.borrow_mut().line("lab torn down".to_string());
    let result = report::overall(matches.iter().map(|m| &m.result));
    let rep = RunReport {
        recipe: file,
        params: param_values,
        result: if matches.is_empty() {
            Verdict::Error
        } else {
            result
        },
        matches,
        pool: pool_name,
        duration: t0.elapsed().as_secs_f64(),
        rpcs,
        run_dir: Some(dir.display().to_string()),
        lab: lab_id,
        lab_ms,
        cleanup_errors,
        insecure,
    };
    let _ = fs::write(dir.join("summary.json"), json::render(&rep) + "\n");
    let _ = fs::write(dir.join("junit.xml"), junit::render(&rep));
    store_hook.finish();
    log.borrow_mut().line(format!(
        "result {} in {:.3} s",
        rep.result.as_str(),
        rep.duration
    ));
    if a.json {
        println!("{}", json::render(&rep));
    } else {
        progress.end_match();
        print!("{}", progress.paint_summary(&summary::render(&rep)));
    }
    if cancel.is_cancelled() {
        return Ok(ExitCode::Interrupted);
    }
    if let Some(e) = infra {
        return Err(Failure::new(
            ExitCode::Infra,
            anyhow!("{e}; results so far are in {}", dir.display()),
        ));
    }
    Ok(if rep.result == Verdict::Pass {
        ExitCode::Pass
    } else {
        ExitCode::Fail
    })
}

/// The recipe's file name as errors show it (`hello_world.rhai:5:13: ...`).
pub fn recipe_label(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
