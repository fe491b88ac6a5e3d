//! Test modules in recipes: the constructors `ping(#{..})`,
//! `iperf_server(#{..})`, `iperf_client(#{..})`, `packet_assert(#{..})`,
//! `cpu_stat(#{..})` return a checked [`Module`] (unknown or mistyped
//! options fail here, before anything runs), and `h.run(module[, opts])`
//! runs it as a job whose result the module judges ([`JobModule`]).

use lnst_common::job::{JobStatus, Stream};
use rhai::{Dynamic, Engine, Map};

use super::device::Device;
use super::host::Host;
use super::job::{self, Job, JobModule, RunOpts};
use super::{err, R};
use crate::modules::{Module, ModuleKind, Opts};
use crate::recipe::value::{to_dynamic, to_json};

/// How long `run` waits for a background module to be ready.
const READY_TIMEOUT_S: f64 = 10.0;

impl JobModule for Module {
    fn command(&self) -> String {
        Module::command(self)
    }
    fn desc(&self) -> String {
        Module::desc(self)
    }
    fn judge(
        &self,
        status: &JobStatus,
    ) -> (bool, Dynamic, serde_json::Map<String, serde_json::Value>) {
        let stdout = String::from_utf8_lossy(&status.stdout);
        let code = status.exit.as_ref().and_then(|e| e.exit_code);
        match self.parse(&stdout, code) {
            Ok(v) => {
                let passed = self.passed(&v);
                let mut figures = serde_json::Map::new();
                figures.insert("figures".into(), self.key_figures(&v).into());
                // The whole result travels as `data` (RECIPES.md §9), lists
                // such as iperf's `intervals` included; the human summary
                // shows only `figures`.
                if let serde_json::Value::Object(o) = &v {
                    for (k, x) in o {
                        figures.insert(k.clone(), x.clone());
                    }
                }
                (passed, to_dynamic(&v), figures)
            }
            Err(e) => {
                let mut figures = serde_json::Map::new();
                figures.insert("error".into(), e.into());
                (false, Dynamic::UNIT, figures)
            }
        }
    }
}

/// A device given as an option (`iface: m.h1.eth0`) stands for its name on
/// the machine (the pool's `ens1f0` for the recipe's `eth0`).
fn opt_json(v: &Dynamic) -> serde_json::Value {
    match v.clone().try_cast::<Device>() {
        Some(d) => d.0.dref_name().into(),
        None => to_json(v),
    }
}

fn construct(kind: &str, opts: Map) -> R<Module> {
    let o: Opts = opts
        .iter()
        .map(|(k, v)| (k.to_string(), opt_json(v)))
        .collect();
    Module::new(kind, o).map_err(|e| e.to_string().into())
}

fn run_module(h: &mut Host, m: Module, opts: Map) -> R<Job> {
    let mut o = RunOpts::parse(&opts)?;
    if m.needs_bg() && !o.bg {
        if opts.contains_key("bg") {
            return err(format!(
                "{} runs in the background: use bg: true and stop it with kill()",
                m.kind.name()
            ));
        }
        o.bg = true;
    }
    let ready = m.ready();
    let j = job::run_job(h, Module::command(&m), o, Some(Box::new(m)))?;
    if let Some(r) = ready {
        if !j.wait_stream(r.stream == Stream::Stderr, r.pattern, READY_TIMEOUT_S)? {
            if let Some((code, last)) = j.ended() {
                let how = code.map_or("was killed".to_string(), |c| format!("exited {c}"));
                return err(format!(
                    "{} on {} {how} before it was ready: {}",
                    j.desc(),
                    h.0.name,
                    if last.is_empty() { "no message" } else { &last }
                ));
            }
            return err(format!(
                "{} on {} did not become ready within {READY_TIMEOUT_S} s (waited for /{}/)",
                j.desc(),
                h.0.name,
                r.pattern
            ));
        }
    }
    Ok(j)
}

/// `perf(#{ client, server, dst, duration, runs, proto, parallel, len, cpu,
/// desc })`: an
/// iperf server on `server`, `runs` client runs on `client`, one result
/// with every sample, judged against its history in the results store;
/// returns `#{ samples, mean, stddev, unit: "bps", evaluation }`.
fn perf(opts: Map) -> R<Map> {
    let host = |k: &str| -> R<Host> {
        opts.get(k)
            .and_then(|v| v.clone().try_cast::<Host>())
            .ok_or_else(|| format!("perf(): {k} must be a host (m.h1)").into())
    };
    let (mut client, mut server) = (host("client")?, host("server")?);
    let o: Opts = opts
        .iter()
        .map(|(k, v)| {
            let v = if k == "client" || k == "server" {
                serde_json::Value::String(v.to_string())
            } else {
                to_json(v)
            };
            (k.to_string(), v)
        })
        .collect();
    let p = crate::modules::perf::Perf::from_opts(&o).map_err(|e| e.to_string())?;
    let mut sopts = Map::new();
    sopts.insert(
        "desc".into(),
        format!("perf: iperf server on {}", server.0.name).into(),
    );
    let srv = run_module(
        &mut server,
        p.server_module().map_err(|e| e.to_string())?,
        sopts,
    )?;
    let secs = p.client.duration as f64;
    let runs = p.runs;
    let line = p.line(&client.0.name, &server.0.name);
    // `runs` client runs; the bps of each that measured something.
    let measure = |client: &mut Host, again: bool| -> R<Vec<f64>> {
        let mut samples = Vec::new();
        for i in 1..=runs {
            let mut copts = Map::new();
            let what = if again { "re-measure run" } else { "run" };
            copts.insert("desc".into(), format!("{line}: {what} {i}/{runs}").into());
            copts.insert("timeout".into(), Dynamic::from(secs + 30.0));
            let j = run_module(client, p.client_module().map_err(|e| e.to_string())?, copts)?;
            let r = super::value_of(&j);
            if let Some(bps) = r.and_then(|r| r.get("bps").and_then(|b| b.as_f64())) {
                samples.push(bps);
            }
        }
        Ok(samples)
    };
    let (cname, sname) = (client.0.name.clone(), server.0.name.clone());
    let judge = |samples: &[f64]| {
        let summary = crate::modules::perf::summarize(samples);
        let ok = crate::modules::perf::passed(&summary, runs);
        let mut e = crate::store::hook::evaluate_perf(&line, &cname, &sname, "bps", samples);
        if !ok && e.verdict != crate::store::baseline::Verdict::Noisy {
            // An errored or empty run: never compared, never a baseline.
            e.verdict = crate::store::baseline::Verdict::Noisy;
            e.change_pct = None;
            e.reason = format!(
                "{} of {runs} runs measured nothing",
                runs as usize - samples.iter().filter(|b| **b > 0.0).count()
            );
        }
        (summary, ok, e)
    };
    let first = measure(&mut client, false);
    let mut outcome = first.map(|s| {
        let (summary, ok, e) = judge(&s);
        (summary, ok, e, None::<Vec<f64>>)
    });
    // A suspected regression is measured once more; it FAILs only if the
    // second measurement is one too (docs/DECISIONS.md, Baselines).
    if let Ok((_, _, e, _)) = &outcome {
        if e.verdict == crate::store::baseline::Verdict::Fail {
            let suspected = e.reason.clone();
            let before = outcome.as_ref().ok().map(|o| o.0["samples"].clone());
            outcome = measure(&mut client, true).map(|s| {
                let (summary, ok, mut e2) = judge(&s);
                e2.reason = format!("re-measured after {suspected}: {}", e2.reason);
                let first: Vec<f64> = before
                    .and_then(|v| serde_json::from_value(v).ok())
                    .unwrap_or_default();
                (summary, ok, e2, Some(first))
            });
        }
    }
    let _ = srv.stop();
    let (mut summary, ok, eval, first) = outcome?;
    let evaluation = serde_json::json!({
        "verdict": eval.verdict.as_str(),
        "change_pct": eval.change_pct,
        "baseline_n": eval.baseline_n,
        "reason": eval.reason,
    });
    let passed = ok && eval.verdict != crate::store::baseline::Verdict::Fail;
    if let serde_json::Value::Object(o) = &mut summary {
        o.insert("evaluation".into(), evaluation);
    }
    let mut data = match &summary {
        serde_json::Value::Object(o) => o.clone(),
        _ => serde_json::Map::new(),
    };
    data.insert("client".into(), client.0.name.clone().into());
    data.insert("server".into(), server.0.name.clone().into());
    if let Some(f) = first {
        data.insert("first_samples".into(), f.into());
    }
    let change = eval
        .change_pct
        .map(|c| format!(" {c:+.1}% vs {} runs", eval.baseline_n))
        .unwrap_or_default();
    data.insert(
        "figures".into(),
        format!(
            "{}; {}{change}",
            crate::modules::perf::key_figures(&summary),
            eval.verdict.as_str()
        )
        .into(),
    );
    client.0.core.check(passed, line, data);
    Ok(to_dynamic(&summary).try_cast::<Map>().unwrap_or_default())
}

/// Registers the module constructors and `run(Module)`.
pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<Module>("Module");
    for k in ModuleKind::ALL {
        let name = k.name();
        engine.register_fn(name, move |opts: Map| construct(name, opts));
        engine.register_fn(name, move || construct(name, Map::new()));
    }
    engine.register_fn("run", |h: &mut Host, m: Module| {
        run_module(h, m, Map::new())
    });
    engine.register_fn("run", run_module);
    engine.register_fn("perf", perf);
    engine.register_fn("to_string", |m: &mut Module| {
        format!("Module({})", Module::desc(m))
    });
}
