//! Stage 4, the place the run happens: its run directory (recipe, params,
//! mapping, `controller.log`), then the lab it builds (no `--pool`) or the
//! pool machines' agent addresses. Errors from here on are exit 3, except
//! a lab that cannot host the recipe (exit 2) and Ctrl-C (130).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};

use crate::client::AgentAddr;
use crate::exit::{Classify, ExitCode, Failure};
use crate::lab::{self, Lab, LabOptions};
use crate::recipe::Cancel;
use crate::report::rundir;

use super::load::Recipe;
use super::log::Log;
use super::map::Mapped;
use super::Options;

/// The run directory and, for a lab run, the lab.
pub struct Place {
    pub dir: PathBuf,
    pub jobs_dir: PathBuf,
    /// The lab, until [`super::cleanup`] tears it down.
    pub lab: Option<Box<dyn Lab>>,
}

impl Place {
    /// The agent address of a machine (a lab host, or a pool machine).
    pub fn addr_of(&self, m: &Mapped, machine: &str) -> Result<AgentAddr, Failure> {
        if let Some(l) = &self.lab {
            return l.addrs().get(machine).cloned().ok_or_else(|| {
                Failure::new(ExitCode::Infra, anyhow!("lab has no agent for {machine}"))
            });
        }
        let x = m
            .pool
            .machines
            .iter()
            .find(|x| x.id == machine)
            .ok_or_else(|| {
                Failure::new(ExitCode::Infra, anyhow!("pool has no machine {machine}"))
            })?;
        x.address
            .parse::<AgentAddr>()
            .map_err(|e| Failure::new(ExitCode::Usage, anyhow!("{}: {e}", x.file.display())))
    }
}

fn write_json(path: &Path, v: &impl serde::Serialize) -> anyhow::Result<()> {
    let s = serde_json::to_string_pretty(v)?;
    fs::write(path, s + "\n").with_context(|| format!("cannot write {}", path.display()))
}

/// Creates the run directory under `o.out` and fills in what is known.
pub fn run_dir(
    path: &Path,
    r: &Recipe,
    m: &Mapped,
    o: &Options,
    log: &Log,
) -> Result<PathBuf, Failure> {
    let dir = rundir::create(&o.out, path)
        .with_context(|| format!("cannot create a run directory under {}", o.out.display()))
        .infra()?;
    log.borrow_mut().attach(&dir.join("controller.log"));
    let _ = fs::write(dir.join(&r.file), &r.loaded.source);
    copy_imports(r, &dir).infra()?;
    write_json(&dir.join("params.json"), &r.params).infra()?;
    write_json(&dir.join("mapping.json"), &m.mappings).infra()?;
    // The recipe's hosts and the `net` of each NIC: the HTML report's
    // topology.
    write_json(
        &dir.join("requirements.json"),
        &r.loaded.declared.requirements,
    )
    .infra()?;
    Ok(dir)
}

/// Each imported module beside the recipe, at its import path (relative
/// and down only, see recipe::modules), so that the run directory can be
/// run again as it is.
fn copy_imports(r: &Recipe, dir: &Path) -> anyhow::Result<()> {
    let names = &r.loaded.names;
    for (import, src) in &r.loaded.imports {
        let to = dir.join(
            names
                .module_file(import)
                .strip_prefix(&names.base)
                .unwrap_or(Path::new(import)),
        );
        to.parent()
            .map_or(Ok(()), fs::create_dir_all)
            .and_then(|_| fs::copy(src, &to))
            .with_context(|| {
                format!(
                    "cannot copy module {} into {}",
                    src.display(),
                    dir.display()
                )
            })?;
    }
    Ok(())
}

/// Builds the lab when the run has no pool.
pub fn place(
    dir: PathBuf,
    r: &Recipe,
    m: &Mapped,
    o: &Options,
    log: &Log,
    cancel: &Cancel,
) -> Result<Place, Failure> {
    let jobs_dir = dir.join("jobs");
    let mut place = Place {
        dir,
        jobs_dir,
        lab: None,
    };
    if o.pool.is_some() {
        return Ok(place);
    }
    let opts = LabOptions {
        kind: o.lab_kind,
        agent_bin: o.agent_bin.clone(),
        kernel: o.kernel.clone(),
        accel: o.accel.clone(),
        run_dir: place.dir.clone(),
        cancel: cancel.clone(),
    };
    let l = match lab::build(&r.loaded.declared.requirements, &opts) {
        Ok(l) => l,
        Err(lab::LabError::Interrupted) => {
            return Err(Failure::new(
                ExitCode::Interrupted,
                anyhow!("interrupted; the lab was removed"),
            ));
        }
        Err(e @ lab::LabError::Usage(_)) => {
            return Err(Failure::new(
                ExitCode::Usage,
                anyhow!("{}: cannot run on the {}: {e}", r.file, m.pool_name),
            ))
        }
        Err(e) => {
            return Err(Failure::new(
                ExitCode::Infra,
                anyhow!(e).context(format!(
                    "cannot build the {} lab (`lnst-ctl doctor` checks what it needs)",
                    o.lab_kind.name()
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
    place.lab = Some(l);
    Ok(place)
}

/// Agent address and authentication of each host of a match.
pub fn targets(
    place: &Place,
    m: &Mapped,
    mapping: &crate::mapper::Mapping,
) -> Result<BTreeMap<String, (AgentAddr, Option<lnst_common::secure::ClientAuth>)>, Failure> {
    let mut targets = BTreeMap::new();
    for (h, hm) in mapping {
        let auth = m.auths.get(&hm.machine).cloned().flatten();
        targets.insert(h.clone(), (place.addr_of(m, &hm.machine)?, auth));
    }
    Ok(targets)
}
