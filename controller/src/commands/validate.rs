//! `lnst-ctl validate RECIPE [--pool DIR | --lab vm] [-- k=v]`: the
//! description, params (type, default, value, help), requirements and —
//! with a pool — the mapping, or the lab's plan, without contacting any
//! agent or booting anything.

use anyhow::Context;

use crate::commands::ValidateArgs;
use crate::exit::{Classify, ExitCode, Failure};
use crate::recipe::{self, engine::stderr_sink, Cancel};
use crate::{mapper, params, pool};

fn show(v: &Option<serde_json::Value>) -> String {
    match v {
        None => "(required)".into(),
        Some(v) => v.to_string(),
    }
}

pub fn exec(a: ValidateArgs) -> Result<ExitCode, Failure> {
    let overrides = params::parse_overrides(&a.params).usage()?;
    let file = a.recipe.display().to_string();
    let r = recipe::load(
        &a.recipe,
        &overrides,
        stderr_sink(file.clone()),
        Cancel::new(),
    )
    .usage()?;
    let d = &r.declared;
    println!("recipe: {file}");
    for (import, f) in &r.imports {
        println!("import: {import:?} ({})", f.display());
    }
    if !d.description.is_empty() {
        println!("\n{}\n", d.description);
    }
    println!("params:");
    if d.params.is_empty() {
        println!("  (none)");
    }
    for p in &d.params {
        println!(
            "  {:<16} {:<7} default {:<12} value {:<12} {}",
            p.name,
            p.ty.to_string(),
            show(&p.default),
            match &p.value {
                None => "(not given)".into(),
                v => show(v),
            },
            p.help.as_deref().unwrap_or("")
        );
    }
    println!("requirements:");
    for h in &d.requirements.hosts {
        let ps: Vec<String> = h.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "  host {}{}",
            h.name,
            if ps.is_empty() {
                String::new()
            } else {
                format!(" [{}]", ps.join(", "))
            }
        );
        for n in &h.nics {
            let mut at: Vec<String> = n.net.iter().map(|l| format!("net={l}")).collect();
            at.extend(n.attrs.iter().map(|(k, v)| format!("{k}={v}")));
            println!("    nic {} {}", n.name, at.join(", "));
        }
    }
    let check = params::check(
        &d.params,
        &overrides,
        &crate::run::load::recipe_label(&a.recipe),
    );
    if a.pool.is_some() && (a.lab.is_some() || a.kernel.is_some()) {
        crate::lab::kind_of(a.lab.as_deref(), true, a.kernel.is_some()).usage()?;
    }
    match &a.pool {
        Some(dir) => {
            let p = pool::load_dir(dir).usage()?;
            let m = mapper::map_first(&d.requirements, &p)
                .with_context(|| format!("no mapping onto pool {}", dir.display()))
                .usage()?;
            println!("mapping onto {}:", dir.display());
            for (h, hm) in &m {
                let nics: Vec<String> = hm.nics.iter().map(|(a, b)| format!("{a}={b}")).collect();
                println!("  {h} -> {} [{}]", hm.machine, nics.join(" "));
            }
        }
        None => {
            let kind = crate::lab::kind_of(a.lab.as_deref(), false, a.kernel.is_some()).usage()?;
            // What `run` refuses (a NIC driver the lab cannot give), refused here too.
            crate::lab::pool_for(&d.requirements, kind)
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| format!("no mapping onto the {} lab", kind.name()))
                .usage()?;
            match kind {
                crate::lab::LabKind::Netns => println!("mapping: netns lab (one namespace and agent per host; give --pool DIR to map onto a pool, --lab vm for VMs)"),
                crate::lab::LabKind::Vm => print!(
                    "{}",
                    crate::lab::vm::plan_text(&d.requirements, a.kernel.as_deref())
                        .map_err(|e| anyhow::anyhow!("{e}"))
                        .usage()?
                ),
            }
        }
    }
    check.usage()?;
    println!("OK");
    Ok(ExitCode::Pass)
}
