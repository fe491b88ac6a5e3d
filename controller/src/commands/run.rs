//! `lnst-ctl run RECIPE..`: one recipe through the stages of [`crate::run`]
//! (its summary printed as today), or several as a suite
//! ([`crate::run::suite`]). Runs on the run thread (see
//! [`super::on_thread`]).

use tokio::runtime::Handle;

use crate::commands::RunArgs;
use crate::exit::{Classify, ExitCode, Failure};
use crate::interact::progress::Progress;
use crate::lab;
use crate::params;
use crate::recipe::Cancel;
use crate::report::{json, summary};
use crate::run::{self, suite, Options};

pub fn exec(a: RunArgs, verbose: u8, rt: Handle, cancel: Cancel) -> Result<ExitCode, Failure> {
    let overrides = params::parse_overrides(&a.params).usage()?;
    let lab_kind = lab::kind_of(a.lab.as_deref(), a.pool.is_some(), a.kernel.is_some()).usage()?;
    if a.jobs == 0 {
        return Err(Failure::new(
            ExitCode::Usage,
            anyhow::anyhow!("--jobs must be at least 1"),
        ));
    }
    let recipes = suite::expand(&a.recipe).usage()?;
    for l in lab::clean_stale() {
        eprintln!("lnst-ctl: removed a leftover lab: {l}");
    }
    let o = Options::from_args(&a, lab_kind, verbose);
    if suite::is_suite(&a.recipe) {
        return suite::run(&recipes, &overrides, o, a.jobs, a.json, &rt, &cancel);
    }
    let mut progress = Progress::new(verbose);
    let f = run::run_one(&recipes[0], &overrides, &o, &mut progress, &rt, &cancel)?;
    if a.json {
        println!("{}", json::render(&f.report));
    } else {
        progress.end_match();
        print!("{}", progress.paint_summary(&summary::render(&f.report)));
    }
    f.exit()
}
