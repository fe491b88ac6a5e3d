//! Stage 2, mapping: the recipe's requirements onto the pool (`--pool`)
//! or onto the pool a lab stands for, the first match or all of them
//! (`--all-matches`), and the transport authentication for the machines
//! used. Errors are exit 2: nothing has been contacted yet.

use std::collections::BTreeMap;

use anyhow::{anyhow, Context};
use lnst_common::secure::ClientAuth;

use crate::commands::{auth_for, INSECURE_WARNING};
use crate::exit::{Classify, Failure};
use crate::lab;
use crate::mapper::{self, Mapping};
use crate::pool::{self, Pool};

use super::load::Recipe;
use super::Options;

/// Most matches `--all-matches` runs.
const MAX_MATCHES: usize = 10_000;

/// Where the recipe runs.
pub struct Mapped {
    pub pool: Pool,
    /// The pool directory, or `netns lab` / `vm lab`, for the report.
    pub pool_name: String,
    /// One per match to run.
    pub mappings: Vec<Mapping>,
    /// Per machine id: its transport authentication (`None`: unix socket).
    pub auths: BTreeMap<String, Option<ClientAuth>>,
    /// Agents over TCP are driven without authentication.
    pub insecure: bool,
    /// The shared-pool reservation held (its id), sent to the agents as
    /// the fencing token.
    pub fence: Option<u64>,
}

impl Mapped {
    /// The ids of the pool machines any match uses, sorted.
    pub fn machines(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .mappings
            .iter()
            .flat_map(|m| m.values().map(|hm| hm.machine.clone()))
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

/// Maps `r` as `o` says.
pub fn map(r: &Recipe, o: &Options) -> Result<Mapped, Failure> {
    let req = &r.loaded.declared.requirements;
    let file = &r.file;
    let (pool, pool_name) = match &o.pool {
        Some(d) => (pool::load_dir(d).usage()?, d.display().to_string()),
        None => (
            lab::pool_for(req, o.lab_kind)
                .map_err(|e| anyhow!("{e}"))
                .with_context(|| format!("{file}: no mapping onto the {} lab", o.lab_kind.name()))
                .usage()?,
            format!("{} lab", o.lab_kind.name()),
        ),
    };
    if o.all_matches && o.pool.is_none() && !o.quiet {
        // The lab is built for the recipe: its one meaningful match is the
        // identity (other matches only swap identical hosts).
        eprintln!(
            "lnst-ctl: --all-matches has no effect on the {} lab; running its one match",
            o.lab_kind.name()
        );
    }
    let mappings: Vec<Mapping> = if o.all_matches && o.pool.is_some() {
        mapper::map_all(req, &pool, MAX_MATCHES)
    } else {
        mapper::map_first(req, &pool).map(|m| vec![m])
    }
    .map_err(|e| anyhow!("{e}"))
    .with_context(|| format!("{file}: no mapping onto the {pool_name}"))
    .usage()?;
    // Transport authentication for the machines of the mappings (unix
    // sockets of the lab need none). Checked before anything is created.
    let insecure = o.auth.insecure && o.pool.is_some();
    let mut m = Mapped {
        pool,
        pool_name,
        mappings,
        auths: BTreeMap::new(),
        insecure,
        fence: None,
    };
    if o.pool.is_some() {
        m.auths = auths(&m, o)?;
    }
    if o.auth.insecure && !o.quiet {
        if o.pool.is_some() {
            eprintln!("{INSECURE_WARNING}");
        } else {
            eprintln!("lnst-ctl: --insecure has no effect on the netns lab (its agents are on unix sockets)");
        }
    }
    Ok(m)
}

/// The authentication of every machine the mappings use.
pub fn auths(m: &Mapped, o: &Options) -> Result<BTreeMap<String, Option<ClientAuth>>, Failure> {
    let ids = m.machines();
    let used: Vec<&pool::Machine> = m
        .pool
        .machines
        .iter()
        .filter(|x| ids.contains(&x.id))
        .collect();
    auth_for(&o.auth, &used).usage()
}
