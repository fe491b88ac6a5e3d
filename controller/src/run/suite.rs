//! Several recipes in one command (RECIPES.md §9): `lnst-ctl run A.rhai
//! B.rhai dir/`. Directories expand to their `.rhai` files, sorted. Each
//! recipe runs through [`super::run_one`] with the `-- k=v` overrides it
//! declares; `--jobs N` runs up to N at once, each on its own OS thread
//! with its own lab (distinct run ids) or its own locked pool machines.
//! Progress is one plain stderr line per start and end, naming what runs
//! and how many wait. At the end: one summary (stdout, `--json`), one
//! `summary.json` and one `junit.xml` in the suite's directory, which
//! holds every recipe's run directory; the exit status is the worst
//! recipe's ([`crate::report::suite::severity`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context};
use tokio::runtime::Handle;

use crate::exit::{Classify, ExitCode, Failure};
use crate::interact::progress::Progress;
use crate::recipe::{self, Cancel};
use crate::report::suite::{self as sreport, SuiteEntry, SuiteReport};
use crate::report::{rundir, Verdict};

use super::load::recipe_label;
use super::{run_one, Options, ParamScope};

/// The recipes the arguments name: files as given, directories as their
/// `*.rhai` files sorted by name (not recursive).
pub fn expand(args: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for a in args {
        if a.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(a)
                .with_context(|| format!("cannot read recipe directory {}", a.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "rhai"))
                .collect();
            if found.is_empty() {
                bail!("recipe directory {} holds no *.rhai files", a.display());
            }
            found.sort();
            out.extend(found);
        } else {
            out.push(a.clone());
        }
    }
    Ok(out)
}

/// Whether the arguments make a suite: more than one, or a directory.
pub fn is_suite(args: &[PathBuf]) -> bool {
    args.len() > 1 || args.iter().any(|a| a.is_dir())
}

/// Every override must be declared by some recipe of the suite (exit 2,
/// before anything runs). A recipe that does not load is left out of
/// the check (it reports its own error when its turn comes), unless no
/// recipe loads at all.
pub fn check_overrides(
    recipes: &[PathBuf],
    overrides: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    if overrides.is_empty() {
        return Ok(());
    }
    let mut declared = BTreeSet::new();
    let mut broken = 0;
    for p in recipes {
        let quiet: recipe::engine::LogSink = std::rc::Rc::new(|_| {});
        match recipe::load(p, &BTreeMap::new(), quiet, Cancel::new()) {
            Ok(l) => declared.extend(l.declared.params.iter().map(|d| d.name.clone())),
            Err(_) => broken += 1,
        }
    }
    if broken > 0 && broken == recipes.len() {
        return Ok(());
    }
    for k in overrides.keys() {
        if !declared.contains(k) {
            bail!(
                "param {k:?} is declared by no recipe of the suite (declared: {})",
                if declared.is_empty() {
                    "none".to_string()
                } else {
                    declared.iter().cloned().collect::<Vec<_>>().join(", ")
                }
            );
        }
    }
    Ok(())
}

/// What the suite shows while it runs: one line per start and end.
struct Board {
    running: Vec<String>,
    waiting: usize,
    done: usize,
    total: usize,
}

impl Board {
    fn line(&self, what: &str) {
        eprintln!(
            "lnst-ctl: suite [{}/{} done] {what}; running: {}; waiting: {}",
            self.done,
            self.total,
            if self.running.is_empty() {
                "-".to_string()
            } else {
                self.running.join(", ")
            },
            self.waiting
        );
    }
}

/// Runs the suite; prints its summary; returns the worst exit status.
#[allow(clippy::too_many_arguments)]
pub fn run(
    recipes: &[PathBuf],
    overrides: &BTreeMap<String, String>,
    mut o: Options,
    jobs: usize,
    json: bool,
    rt: &Handle,
    cancel: &Cancel,
) -> Result<ExitCode, Failure> {
    let t0 = Instant::now();
    check_overrides(recipes, overrides).usage()?;
    let dir = rundir::create_named(&o.out, "suite")
        .with_context(|| format!("cannot create a suite directory under {}", o.out.display()))
        .infra()?;
    if o.auth.insecure && o.pool.is_some() {
        eprintln!("{}", crate::commands::INSECURE_WARNING);
    }
    if o.all_matches && o.pool.is_none() {
        eprintln!(
            "lnst-ctl: --all-matches has no effect on the {} lab; each recipe runs its one match",
            o.lab_kind.name()
        );
    }
    o.out = dir.clone();
    o.params = ParamScope::Declared;
    o.quiet = true;
    let jobs = jobs.clamp(1, recipes.len().max(1));
    let queue: Mutex<VecDeque<usize>> = Mutex::new((0..recipes.len()).collect());
    let entries: Mutex<Vec<Option<SuiteEntry>>> = Mutex::new(vec![None; recipes.len()]);
    let board = Mutex::new(Board {
        running: Vec::new(),
        waiting: recipes.len(),
        done: 0,
        total: recipes.len(),
    });
    std::thread::scope(|s| {
        for w in 0..jobs {
            let (queue, entries, board, o) = (&queue, &entries, &board, &o);
            let spawned = std::thread::Builder::new()
                .name(format!("lnst-suite-{w}"))
                .spawn_scoped(s, move || loop {
                    let next = match queue.lock() {
                        Ok(mut q) => q.pop_front(),
                        Err(p) => p.into_inner().pop_front(),
                    };
                    let Some(i) = next else { break };
                    let path = &recipes[i];
                    let name = recipe_label(path);
                    let entry = if cancel.is_cancelled() {
                        let mut b = lock(board);
                        b.waiting -= 1;
                        b.done += 1;
                        not_run(path, "not run: interrupted")
                    } else {
                        {
                            let mut b = lock(board);
                            b.waiting -= 1;
                            b.running.push(name.clone());
                            b.line(&format!("start {name}"));
                        }
                        let e = one(path, overrides, o, rt, cancel);
                        let mut b = lock(board);
                        b.running.retain(|n| n != &name);
                        b.done += 1;
                        b.line(&format!(
                            "{} {name} in {:.1} s{}",
                            e.result.as_str(),
                            e.duration,
                            if e.exit > 1 {
                                format!(" (exit {})", e.exit)
                            } else {
                                String::new()
                            }
                        ));
                        e
                    };
                    match entries.lock() {
                        Ok(mut v) => v[i] = Some(entry),
                        Err(p) => p.into_inner()[i] = Some(entry),
                    }
                });
            if let Err(e) = spawned {
                eprintln!("lnst-ctl: cannot start suite worker {w}: {e}");
            }
        }
    });
    let entries: Vec<SuiteEntry> = entries
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .zip(recipes)
        .map(|(e, p)| e.unwrap_or_else(|| not_run(p, "not run: no suite worker took it")))
        .collect();
    let exit = sreport::worst(entries.iter().map(|e| e.exit));
    let rep = SuiteReport {
        suite: true,
        result: sreport::verdict(&entries),
        exit,
        jobs,
        duration: t0.elapsed().as_secs_f64(),
        run_dir: dir.display().to_string(),
        recipes: entries,
    };
    let _ = std::fs::write(dir.join("summary.json"), sreport::render_json(&rep) + "\n");
    let _ = std::fs::write(dir.join("junit.xml"), sreport::render_junit(&rep));
    if json {
        println!("{}", sreport::render_json(&rep));
    } else {
        print!(
            "{}",
            Progress::quiet().paint_summary(&sreport::render(&rep))
        );
    }
    Ok(match exit {
        0 => ExitCode::Pass,
        1 => ExitCode::Fail,
        2 => ExitCode::Usage,
        3 => ExitCode::Infra,
        _ => ExitCode::Interrupted,
    })
}

/// One recipe of the suite, on this worker thread.
fn one(
    path: &Path,
    overrides: &BTreeMap<String, String>,
    o: &Options,
    rt: &Handle,
    cancel: &Cancel,
) -> SuiteEntry {
    let t0 = Instant::now();
    let mut progress = Progress::quiet();
    let (report, exit, error) = match run_one(path, overrides, o, &mut progress, rt, cancel) {
        Ok(f) => match f.exit() {
            Ok(code) => (Some(f.report), code, None),
            Err(e) => (Some(f.report), e.code, Some(format!("{:#}", e.error))),
        },
        Err(e) => (None, e.code, Some(format!("{:#}", e.error))),
    };
    SuiteEntry {
        recipe: recipe_label(path),
        path: path.display().to_string(),
        result: report
            .as_ref()
            .map(|r| r.result)
            .filter(|_| exit != ExitCode::Infra)
            .unwrap_or(Verdict::Error),
        exit: exit.code(),
        error,
        duration: t0.elapsed().as_secs_f64(),
        report,
    }
}

fn lock(m: &Mutex<Board>) -> std::sync::MutexGuard<'_, Board> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn not_run(path: &Path, why: &str) -> SuiteEntry {
    SuiteEntry {
        recipe: recipe_label(path),
        path: path.display().to_string(),
        result: Verdict::Error,
        exit: ExitCode::Interrupted.code(),
        error: Some(why.to_string()),
        duration: 0.0,
        report: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lnst-suite-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn directories_expand_sorted_rhai_only() {
        let d = tmp("expand");
        for f in ["b.rhai", "a.rhai", "notes.txt"] {
            std::fs::write(d.join(f), "").unwrap();
        }
        std::fs::create_dir(d.join("sub.rhai")).unwrap();
        let x = d.join("x.rhai");
        let got = expand(&[x.clone(), d.clone()]).unwrap();
        assert_eq!(got, vec![x, d.join("a.rhai"), d.join("b.rhai")]);
        assert!(is_suite(std::slice::from_ref(&d)));
        assert!(!is_suite(&[d.join("a.rhai")]));
        let empty = tmp("empty");
        let e = expand(std::slice::from_ref(&empty))
            .unwrap_err()
            .to_string();
        assert!(e.contains("holds no *.rhai"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
        let _ = std::fs::remove_dir_all(&empty);
    }

    #[test]
    fn an_override_must_be_declared_by_some_recipe() {
        let d = tmp("params");
        let a = d.join("a.rhai");
        let b = d.join("b.rhai");
        std::fs::write(&a, "param(\"mtu\", 1500);\nfn test(m) {}\n").unwrap();
        std::fs::write(&b, "param(\"count\", 5);\nfn test(m) {}\n").unwrap();
        let ov = |k: &str| [(k.to_string(), "1".to_string())].into_iter().collect();
        check_overrides(&[a.clone(), b.clone()], &ov("mtu")).unwrap();
        check_overrides(&[a.clone(), b.clone()], &ov("count")).unwrap();
        let e = check_overrides(&[a, b], &ov("size"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"size\"") && e.contains("count, mtu"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
