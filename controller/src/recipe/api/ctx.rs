//! `m`, the run context passed to `fn test(m)` (RECIPES.md §4): the
//! matched hosts, the params, and the result-recording calls.

use std::rc::Rc;
use std::time::Duration;

use rhai::{Array, Dynamic, Engine, Map};

use super::host::Host;
use super::job::{self, Job};
use super::{err, Core, R};
use crate::recipe::value::to_json;

/// The run context of one match.
#[derive(Clone)]
pub struct Ctx(pub Rc<CtxInner>);

pub struct CtxInner {
    pub core: Rc<Core>,
    /// In declaration order.
    pub hosts: Vec<Host>,
    pub params: Map,
}

impl Ctx {
    fn host(&mut self, name: &str) -> R<Host> {
        match self.0.hosts.iter().find(|h| h.0.name == name) {
            Some(h) => Ok(h.clone()),
            None => err(format!(
                "m has no host or member {name:?}; hosts: {}; members: hosts, params, check, result, sleep, wait_any, breakpoint",
                self.0.hosts.iter().map(|h| h.0.name.as_str()).collect::<Vec<_>>().join(", ")
            )),
        }
    }
}

fn secs(v: Dynamic) -> R<f64> {
    let s = if let Some(f) = v.clone().try_cast::<f64>() {
        f
    } else if let Some(i) = v.clone().try_cast::<i64>() {
        i as f64
    } else {
        return err(format!(
            "expected seconds as a number, got {}",
            v.type_name()
        ));
    };
    if !(0.0..=1e7).contains(&s) || s.is_nan() {
        return err(format!("seconds out of range: {s}"));
    }
    Ok(s)
}

/// Seconds from a Rhai int or float (for timeouts and sleeps).
pub fn seconds(v: Dynamic) -> R<Duration> {
    Ok(Duration::from_secs_f64(secs(v)?))
}

/// The test's end after `q` at a pause.
fn quit_check(core: &super::Core) -> R<()> {
    if core.pause.quitting() {
        return Err(crate::interact::breakpoint::Pause::quit_error());
    }
    Ok(())
}

/// `m.wait_any(jobs, timeout)`: the first of `jobs` to finish, or `()`
/// at the timeout (none given: waits forever).
fn wait_any(jobs: Array, timeout: Option<Dynamic>) -> R<Dynamic> {
    let t = timeout.map(seconds).transpose()?;
    let mut list = Vec::with_capacity(jobs.len());
    for (i, v) in jobs.into_iter().enumerate() {
        match v.clone().try_cast::<Job>() {
            Some(j) => list.push(j),
            None => {
                return err(format!(
                    "wait_any: jobs[{i}] is a {}, not a Job (from h.run(.., #{{ bg: true }}))",
                    v.type_name()
                ))
            }
        }
    }
    if list.is_empty() {
        return err("wait_any: the array of jobs is empty");
    }
    Ok(job::wait_any(&list, t)?.map_or(Dynamic::UNIT, Dynamic::from))
}

/// Registers `m`'s surface.
pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<Ctx>("Ctx");
    engine.register_indexer_get(|m: &mut Ctx, name: &str| m.host(name));
    engine.register_get("hosts", |m: &mut Ctx| {
        m.0.hosts
            .iter()
            .cloned()
            .map(Dynamic::from)
            .collect::<Array>()
    });
    engine.register_get("params", |m: &mut Ctx| m.0.params.clone());
    // A `q` at a `--pause-on-fail` pause inside check/result ends the test.
    engine.register_fn("check", |m: &mut Ctx, ok: bool, desc: &str| -> R<bool> {
        m.0.core.check(ok, desc.to_string(), Default::default());
        quit_check(&m.0.core)?;
        Ok(ok)
    });
    engine.register_fn(
        "result",
        |m: &mut Ctx, ok: bool, desc: &str, data: Map| -> R<()> {
            let data = data
                .iter()
                .map(|(k, v)| (k.to_string(), to_json(v)))
                .collect();
            m.0.core.check(ok, desc.to_string(), data);
            quit_check(&m.0.core)
        },
    );
    engine.register_fn("breakpoint", |m: &mut Ctx, why: &str| -> R<()> {
        m.0.core.pause.breakpoint(&m.0.core, why)
    });
    engine.register_fn(
        "wait_any",
        |_: &mut Ctx, jobs: Array, t: Dynamic| -> R<Dynamic> { wait_any(jobs, Some(t)) },
    );
    engine.register_fn("wait_any", |_: &mut Ctx, jobs: Array| -> R<Dynamic> {
        wait_any(jobs, None)
    });
    engine.register_fn("sleep", |m: &mut Ctx, s: Dynamic| -> R<()> {
        let d = seconds(s)?;
        // The timer is made inside `block`'s runtime: `tokio::time::sleep`
        // called here, on the recipe thread, panics (no reactor).
        m.0.core.block(async move { tokio::time::sleep(d).await })
    });
}
