//! The ENRT suite (`recipes/enrt/`): every recipe passes with its defaults
//! on the lab its header names (`//! lab: netns` or `//! lab: vm (why)`),
//! ends with no cleanup error and leaves nothing behind (no lab namespace,
//! record, agent or qemu), and `lnst-ctl validate` accepts each one.
//!
//! The netns recipes run one after another on a thread of their own while
//! the VM recipes take turns on the VM lab (holding the VM lock, like the
//! other VM tests): the guests are CPU-bound, the netns recipes mostly
//! wait on pings and short iperf runs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::Value;

use super::vm_lab::{lock, run_vm, vm_ready};
use crate::{run, run_lab, Tmp};

/// Which lab a recipe needs, from its `//! lab:` header line.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Lab {
    Netns,
    Vm,
}

/// Every `recipes/enrt/*.rhai` with its lab, sorted by name.
fn suite() -> Vec<(PathBuf, Lab)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipes/enrt");
    let mut v: Vec<(PathBuf, Lab)> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "rhai"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let lab = text
                .lines()
                .take_while(|l| l.starts_with("//!"))
                .find_map(|l| l.strip_prefix("//! lab:"))
                .map(|l| l.split_whitespace().next().unwrap_or(""))
                .unwrap_or_else(|| panic!("{}: no `//! lab:` header line", p.display()));
            let lab = match lab {
                "netns" => Lab::Netns,
                "vm" => Lab::Vm,
                other => panic!("{}: lab {other:?} is neither netns nor vm", p.display()),
            };
            (p, lab)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// The module file `import "lib/enrt"` reads for recipe `p`.
fn lib_path(p: &Path) -> PathBuf {
    p.parent().unwrap().join("lib/enrt.rhai")
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// The results that did not pass, each as its whole JSON (desc, data,
/// note: what a FLAKY line needs to be understood afterwards).
fn not_passed(v: &Value) -> Vec<String> {
    v["matches"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|m| m["results"].as_array().cloned().unwrap_or_default())
        .filter(|r| r["result"] != "PASS")
        .map(|r| r.to_string())
        .collect()
}

/// One run's verdict: exit 0, every result PASS, no cleanup error.
/// (`run_lab`/`run_vm` already checked that nothing of the lab is left.)
fn verdict(v: &Value, code: i32, err: &str) -> Result<(), String> {
    let bad = not_passed(v);
    let cleanup = v["cleanup_errors"].as_array().cloned().unwrap_or_default();
    if code == 0 && bad.is_empty() && cleanup.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "exit {code}, not passed: {bad:?}, cleanup errors: {cleanup:?}\n{err}"
        ))
    }
}

/// VM labs at once: 2 fit this 2-core machine's time budget best.
const VM_AT_ONCE: usize = 2;

/// The `fn NAME(` definitions of a Rhai file.
fn fn_names(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("fn "))
        .filter_map(|l| l.split_once('('))
        .map(|(n, _)| n.trim().to_string())
        .collect()
}

/// Whether `text` calls `f(..)` outside a `fn` line (the module's helpers
/// calling each other).
fn calls(text: &str, f: &str) -> bool {
    let call = format!("{f}(");
    text.lines().filter(|l| !l.starts_with("fn ")).any(|l| {
        l.match_indices(&call).any(|(i, _)| {
            !l[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
        })
    })
}

#[test]
fn enrt_recipes_validate() {
    let all = suite();
    assert!(all.len() >= 22, "{} ENRT recipes", all.len());
    // The shared helpers live once, in lib/enrt.rhai (a module, not in
    // the suite: `suite()` reads only the directory's own files); no
    // recipe carries a copy, and each helper is used by some recipe.
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipes/enrt/lib/enrt.rhai");
    let lib_text = std::fs::read_to_string(&lib).unwrap();
    let shared = fn_names(&lib_text);
    assert!(shared.len() >= 10, "{shared:?}");
    let mut used = std::collections::BTreeSet::new();
    for (p, _) in &all {
        let text = std::fs::read_to_string(p).unwrap();
        let own = fn_names(&text);
        let copies: Vec<&String> = own.iter().filter(|f| shared.contains(f)).collect();
        assert!(
            copies.is_empty(),
            "{}: copies of shared helpers {copies:?}",
            name(p)
        );
        for f in &shared {
            if text.contains(&format!("enrt::{f}(")) || calls(&lib_text, f) {
                used.insert(f.clone());
            }
        }
    }
    assert_eq!(
        used.len(),
        shared.len(),
        "unused helpers: {shared:?} vs {used:?}"
    );
    let base_params: Vec<&str> = lib_text
        .split("fn base_params(")
        .nth(1)
        .and_then(|body| body.split("\n}").next())
        .unwrap_or_default()
        .split("param(\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect();
    assert!(base_params.len() >= 10, "{base_params:?}");
    for (p, lab) in &all {
        let path = p.to_str().unwrap();
        let mut args = vec!["validate", path];
        if *lab == Lab::Vm {
            args.extend(["--lab", "vm"]);
        }
        let (code, out, err) = run(&args);
        assert_eq!(code, 0, "{}: {out}{err}", name(p));
        // A recipe calling the helpers imports the module, and validate
        // resolved it.
        let text = std::fs::read_to_string(p).unwrap();
        if text.contains("enrt::") {
            assert!(
                out.contains(&format!("import: \"lib/enrt\" ({})", lib_path(p).display())),
                "{}: {out}",
                name(p)
            );
        }
        // The common params are declared once, by enrt::base_params, and
        // validate lists them as the recipe's own.
        if text.contains("enrt::base_params(") {
            for b in &base_params {
                assert!(
                    !text.contains(&format!("param(\"{b}\"")),
                    "{}: declares {b} itself; enrt::base_params declares it",
                    name(p)
                );
                assert!(
                    out.lines()
                        .any(|l| l.trim_start().starts_with(&format!("{b} "))),
                    "{}: {b} not listed: {out}",
                    name(p)
                );
            }
        }
        // The header names the LNST recipe and what differs from it.
        assert!(
            text.contains("//! Follows LNST's `") && text.contains("Differs"),
            "{}: the header must say which LNST recipe it follows and what differs",
            name(p)
        );
        // The description (the `//!` block), the requirements and the
        // plan of the lab are shown.
        let plan = if *lab == Lab::Vm {
            "host1 -> guest host1"
        } else {
            "mapping: netns lab"
        };
        assert!(
            out.contains("ENRT") && out.contains("  host host1") && out.contains(plan),
            "{}: {out}",
            name(p)
        );
    }
}

#[test]
fn enrt_suite_passes_on_its_labs() {
    let Some(agent) = vm_ready("enrt_suite_passes_on_its_labs") else {
        return;
    };
    let t0 = Instant::now();
    let all = suite();
    let netns: Vec<PathBuf> = all
        .iter()
        .filter(|(_, l)| *l == Lab::Netns)
        .map(|(p, _)| p.clone())
        .collect();
    let mut vm: Vec<PathBuf> = all
        .iter()
        .filter(|(_, l)| *l == Lab::Vm)
        .map(|(p, _)| p.clone())
        .collect();
    // Popped from the end: the longest runs (measured) first, so that the
    // two workers end together.
    const SLOWEST: [&str; 4] = [
        "simple_macsec.rhai",
        "vlans.rhai",
        "vlans_over_bond.rhai",
        "ipsec_esp_aead.rhai",
    ];
    vm.sort_by_key(|p| {
        SLOWEST
            .iter()
            .position(|n| *n == name(p))
            .map_or(0, |i| SLOWEST.len() - i)
    });
    assert!(!netns.is_empty() && !vm.is_empty(), "{all:?}");

    let a = agent.clone();
    let netns_thread = std::thread::spawn(move || {
        let mut failed = Vec::new();
        for p in &netns {
            let t = Tmp::new();
            let s = Instant::now();
            let (code, v, err) = run_lab(&t, &a, p, &[]);
            match verdict(&v, code, &err) {
                Ok(()) => println!(
                    "{} (netns): PASS in {:.1} s",
                    name(p),
                    s.elapsed().as_secs_f64()
                ),
                Err(e) => failed.push(format!("{} on the netns lab: {e}", name(p))),
            }
        }
        failed
    });

    // The VM recipes two at a time (each lab is two or three one-vCPU
    // guests; much of a recipe is waiting on DAD, pings and iperf starts),
    // the longest first.
    let queue = std::sync::Mutex::new(vm);
    let report = std::sync::Mutex::new((Vec::<String>::new(), Vec::<String>::new()));
    {
        let _g = lock();
        std::thread::scope(|s| {
            for _ in 0..VM_AT_ONCE {
                s.spawn(|| loop {
                    let Some(p) = queue.lock().unwrap().pop() else {
                        break;
                    };
                    let t = Tmp::new();
                    let st = Instant::now();
                    let (code, v, err) = run_vm(&t, &agent, &p, &[]);
                    let mut outcome = verdict(&v, code, &err);
                    if let Err(e) = &outcome {
                        // One more try, as vm_lab does: a TCG guest on a
                        // loaded 2-core machine has lost a first ping now
                        // and then. The first failure is printed; a second
                        // one fails the test.
                        println!("FLAKY {} on the VM lab, retried once: {e}", name(&p));
                        report.lock().unwrap().1.push(name(&p));
                        let (code, v, err) = run_vm(&t, &agent, &p, &[]);
                        outcome = verdict(&v, code, &err);
                    }
                    match outcome {
                        Ok(()) => println!(
                            "{} (vm): PASS in {:.1} s",
                            name(&p),
                            st.elapsed().as_secs_f64()
                        ),
                        Err(e) => report
                            .lock()
                            .unwrap()
                            .0
                            .push(format!("{} on the VM lab: {e}", name(&p))),
                    }
                });
            }
        });
    }
    let (mut failed, flaky) = report.into_inner().unwrap();
    failed.extend(netns_thread.join().unwrap());
    println!(
        "ENRT suite: {} recipes in {:.1} s",
        all.len(),
        t0.elapsed().as_secs_f64()
    );
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
    assert!(
        flaky.len() <= 2,
        "more than two recipes needed a second try: {flaky:?}"
    );
}
