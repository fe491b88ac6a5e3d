//! `import "lib/x" as x;` in recipes (this project's extension, see
//! docs/DECISIONS.md): a module file beside the recipe, its functions
//! calling the recipe API on the netns lab; errors in a module named by its
//! file and line; a missing or refused module stops the run with exit 2
//! before anything runs; `validate` resolves imports; the run directory
//! keeps a copy of each module.

use std::path::{Path, PathBuf};

use crate::{lab_ready, results, run, run_lab, Tmp};

/// A module of helpers: it declares hosts through a function the recipe's
/// top level calls, configures devices, pings and checks in `fn test`, and
/// imports a second module (relative to the recipe's directory too).
const NET: &str = r#"// helpers for the import tests
import "lib/addr" as addr;

fn two_hosts() {
    for n in ["h1", "h2"] { host(n).nic("eth0", #{ net: "n1" }); }
}

fn setup(m) {
    let i = 0;
    for d in [m.h1.eth0, m.h2.eth0] {
        i += 1;
        d.up();
        d.wait_carrier(10);
        d.ip_add(addr::of(m.params.net, i));
        m.check(d.ips.contains(addr::of(m.params.net, i)), `${d.host.name} has ${addr::of(m.params.net, i)}`);
    }
    print("set up by the module");
}

fn ping_pair(m) {
    let dst = addr::of(m.params.net, 2).split("/")[0];
    m.h1.run(ping(#{ dst: dst, count: 2, interval: 0.2 }), #{ desc: `module ping ${dst}` })
}

fn fail(m) {
    let x = 1;
    throw `module gave up after ${x}`;
}
"#;

const ADDR: &str = "/// \"10.9.0.0/24\", 2 -> \"10.9.0.2/24\"\nfn of(net, i) {\n    let p = net.split(\"/\");\n    let o = p[0].split(\".\");\n    `${o[0]}.${o[1]}.${o[2]}.${o[3].parse_int() + i}/${p[1]}`\n}\n";

const RECIPE: &str = r#"//! two hosts set up by an imported module
import "lib/net" as net;
param("net", "10.9.0.0/24");
param("fail", false);
net::two_hosts();

fn test(m) {
    net::setup(m);
    net::ping_pair(m);
    if m.params.fail { net::fail(m); }
}
"#;

fn recipe_dir(t: &Tmp) -> PathBuf {
    t.write("recipes/lib/net.rhai", NET);
    t.write("recipes/lib/addr.rhai", ADDR);
    t.write("recipes/r.rhai", RECIPE)
}

fn run_dir(v: &serde_json::Value) -> PathBuf {
    PathBuf::from(v["run_dir"].as_str().unwrap())
}

#[test]
fn imported_module_drives_the_lab_and_is_kept_in_the_run_dir() {
    let Some(agent) = lab_ready("imported_module_drives_the_lab_and_is_kept_in_the_run_dir") else {
        return;
    };
    let t = Tmp::new();
    let r = recipe_dir(&t);
    let (code, v, err) = run_lab(&t, &agent, &r, &[]);
    let res = results(&v);
    assert_eq!(code, 0, "{res:?}\n{err}");
    assert_eq!(
        res,
        [
            ("h1 has 10.9.0.1/24".to_string(), "PASS".to_string()),
            ("h2 has 10.9.0.2/24".to_string(), "PASS".to_string()),
            ("module ping 10.9.0.2".to_string(), "PASS".to_string()),
        ]
    );
    let dir = run_dir(&v);
    assert_eq!(std::fs::read_to_string(dir.join("r.rhai")).unwrap(), RECIPE);
    assert_eq!(
        std::fs::read_to_string(dir.join("lib/net.rhai")).unwrap(),
        NET
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("lib/addr.rhai")).unwrap(),
        ADDR
    );
    // A module's print is logged at the module's file and line.
    let log = std::fs::read_to_string(dir.join("controller.log")).unwrap();
    let line = NET.lines().position(|l| l.contains("set up by")).unwrap() + 1;
    assert!(
        log.contains(&format!("lib/net.rhai:{line}: set up by the module")),
        "{log}"
    );

    // The run directory is self-describing: it runs as it is.
    let t2 = Tmp::new();
    let (code, v2, err) = run_lab(&t2, &agent, &dir.join("r.rhai"), &[]);
    assert_eq!(code, 0, "{:?}\n{err}", results(&v2));
}

#[test]
fn runtime_error_in_a_module_names_its_file_and_line() {
    let Some(agent) = lab_ready("runtime_error_in_a_module_names_its_file_and_line") else {
        return;
    };
    let t = Tmp::new();
    let r = recipe_dir(&t);
    let (code, v, err) = run_lab(&t, &agent, &r, &["fail=true"]);
    assert_eq!(code, 1, "{err}");
    let res = results(&v);
    let last = res.last().unwrap();
    assert_eq!(last.1, "ERROR", "{res:?}");
    let line = NET.lines().position(|l| l.contains("throw")).unwrap() + 1;
    let module = Path::new(&t.0).join("recipes/lib/net.rhai");
    assert!(
        last.0.starts_with(&format!(
            "{}:{line}:5: module gave up after 1",
            module.display()
        )),
        "{last:?}"
    );
    // ... with the recipe line that called into the module.
    assert!(
        last.0.contains("(in fn fail, called at r.rhai:10:"),
        "{last:?}"
    );
}

#[test]
fn import_errors_exit_2_before_anything_runs() {
    let t = Tmp::new();
    let runs = t.0.join("runs");
    let out = runs.to_str().unwrap();
    let base = t.0.join("recipes");
    let go = |name: &str, src: &str| {
        let r = t.write(&format!("recipes/{name}"), src);
        let (code, _, err) = run(&["run", r.to_str().unwrap(), "--out", out]);
        assert_eq!(code, 2, "{name}: {err}");
        let (vcode, _, verr) = run(&["validate", r.to_str().unwrap()]);
        assert_eq!(vcode, 2, "{name}: {verr}");
        assert_eq!(err.trim_end(), verr.trim_end(), "{name}");
        err
    };
    // A missing module: the import's line and the file looked for.
    let err = go(
        "missing.rhai",
        "let h = host(\"h1\");\nimport \"lib/nope\" as x;\nfn test(m) {}\n",
    );
    assert!(
        err.contains(&format!(
            "missing.rhai:2:1: import \"lib/nope\": no module file {}",
            base.join("lib/nope.rhai").display()
        )),
        "{err}"
    );
    // A syntax error inside a module: the module's file and line.
    t.write("recipes/lib/syn.rhai", "fn f() {\n    let = 1;\n}\n");
    let err = go("syn.rhai", "import \"lib/syn\" as s;\nfn test(m) {}\n");
    assert!(
        err.contains(&format!(
            "{}:2:9: syntax error",
            base.join("lib/syn.rhai").display()
        )),
        "{err}"
    );
    // A runtime error at a module's top level.
    t.write(
        "recipes/lib/thr.rhai",
        "let a = 1;\nthrow \"module top\";\n",
    );
    let err = go("thr.rhai", "import \"lib/thr\" as s;\nfn test(m) {}\n");
    assert!(
        err.contains(&format!(
            "{}:2:1: module top",
            base.join("lib/thr.rhai").display()
        )),
        "{err}"
    );
    // Absolute paths and paths out of the recipe's directory are refused.
    let err = go(
        "abs.rhai",
        "import \"/etc/hostname\" as s;\nfn test(m) {}\n",
    );
    assert!(
        err.contains("abs.rhai:1:1:") && err.contains("absolute path is not allowed"),
        "{err}"
    );
    t.write("up.rhai", ADDR);
    let err = go("up.rhai", "import \"../up\" as s;\nfn test(m) {}\n");
    assert!(
        err.contains("up.rhai:1:1:") && err.contains("no \"..\""),
        "{err}"
    );
    // A path computed at run time is not resolved late.
    let err = go(
        "dyn.rhai",
        "let p = \"lib/addr\";\nimport p as s;\nfn test(m) {}\n",
    );
    assert!(err.contains("string literal"), "{err}");
    // Nothing ran: no run directory.
    assert!(!runs.exists(), "a run directory was made");
}

#[test]
fn validate_resolves_imports() {
    let t = Tmp::new();
    let r = recipe_dir(&t);
    let (code, out, err) = run(&["validate", r.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let base = t.0.join("recipes");
    for (p, f) in [("lib/addr", "lib/addr.rhai"), ("lib/net", "lib/net.rhai")] {
        assert!(
            out.contains(&format!("import: \"{p}\" ({})", base.join(f).display())),
            "{out}"
        );
    }
    // The hosts come from the module's function.
    assert!(out.contains("host h1") && out.contains("host h2"), "{out}");
    assert!(out.contains("nic eth0 net=n1"), "{out}");
}
