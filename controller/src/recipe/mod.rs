//! Recipes: a Rhai file with a declaration phase (top level: `param`,
//! `host`, `nic`) and a test phase (`fn test(m)`), RECIPES.md §1.
//!
//! [`load`] compiles the file and runs the declaration phase once, before
//! any agent is contacted; the returned [`Loaded`] keeps the engine and the
//! AST so that [`Loaded::call_test`] can call `test` once per match without
//! re-running the top level. Everything here lives on one OS thread: the
//! engine is not `Send` (see [`engine`]).

pub mod api;
pub mod declare;
pub mod engine;
pub mod limits;
pub mod modules;
pub mod value;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rhai::{CallFnOptions, Dynamic, Engine, Scope, AST};

pub use declare::Declared;
pub use engine::{Cancel, LogSink, Names};

/// Why a recipe could not be loaded (all exit 2).
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    /// `error` is not a `#[source]`: the message already holds it, and
    /// `{:#}` would print it twice.
    #[error("cannot read recipe {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// `file:line:col: message`.
    #[error("{0}")]
    Script(String),
    #[error(transparent)]
    Param(#[from] crate::params::ParamError),
    #[error("{file}: the recipe has no `fn test(m)`; add one: it is called once per match")]
    NoTest { file: String },
}

/// A compiled recipe whose declaration phase has run.
pub struct Loaded {
    pub engine: Engine,
    pub ast: AST,
    pub path: PathBuf,
    /// File name, for messages and the summary.
    pub file: String,
    pub source: String,
    pub declared: Declared,
    /// How messages name the recipe and its modules.
    pub names: Rc<Names>,
    /// Every module file the recipe imports (also through other modules):
    /// the import path as written and the file read.
    pub imports: Vec<(String, PathBuf)>,
    /// The body of `fn test(m)` as top-level statements (with the recipe's
    /// functions), and the name of its parameter. Run this way, the
    /// engine's limit errors ("Stack overflow", "Too many operations",
    /// "Length of string too large") keep the line inside `test` where
    /// they happened: Rhai passes such errors through each function
    /// level and gives them that level's call position, which for a
    /// function called from Rust is none.
    test_body: Option<(AST, String)>,
}

/// Reads, compiles and declares. Unknown or missing params are *not*
/// checked here (validate shows them); call [`crate::params::check`].
// Called once per run: the size of the error is irrelevant, and boxing it
// would change the public API for nothing.
#[allow(clippy::result_large_err)]
pub fn load(
    path: &Path,
    overrides: &BTreeMap<String, String>,
    log: LogSink,
    cancel: Cancel,
) -> Result<Loaded, RecipeError> {
    let source = std::fs::read_to_string(path).map_err(|error| RecipeError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let state = declare::DeclState::new(overrides.clone());
    let names = Names::new(&file, path.parent().unwrap_or(Path::new("")));
    let mut engine = engine::new(Rc::clone(&names), Rc::clone(&state), log, cancel);
    let ast = engine
        .compile(&source)
        .map_err(|e| RecipeError::Script(engine::parse_error(&file, &e)))?;
    // The recipe's own imports, checked here for a message at their line;
    // then Rhai resolves them all (nested ones too), before anything runs.
    for (import, _, pos) in modules::imports_of(&ast) {
        let at = engine::at(&file, pos);
        modules::check_path(&import)
            .map_err(|why| RecipeError::Script(format!("{at}: import {import:?}: {why}")))?;
        let f = names.module_file(&import);
        if !f.is_file() {
            return Err(RecipeError::Script(format!(
                "{at}: import {import:?}: no module file {}",
                f.display()
            )));
        }
    }
    state.borrow_mut().importing = true;
    let compiled = engine.compile_into_self_contained(&Scope::new(), &source);
    state.borrow_mut().importing = false;
    let ast = compiled.map_err(|e| RecipeError::Script(engine::eval_error(&names, &e)))?;
    let imports: Vec<(String, PathBuf)> = ast
        .resolver()
        .map(|r| {
            r.paths()
                .map(|p| (p.to_string(), names.module_file(p)))
                .collect()
        })
        .unwrap_or_default();
    // `fn test` is called on its own, without the top level's imports:
    // the top level's `import "p" as a` is made visible there as `a::`.
    for (import, alias) in modules::top_level_imports(&ast) {
        if let Some((_, m)) = ast
            .resolver()
            .and_then(|r| r.iter().find(|(p, _)| *p == import))
        {
            engine.register_static_module(&alias, m.clone());
        }
    }
    engine.set_module_resolver(modules::RecipeModules::late(Rc::clone(&names)));
    let mut scope = Scope::new();
    engine
        .run_ast_with_scope(&mut scope, &ast)
        .map_err(|e| RecipeError::Script(engine::eval_error(&names, &e)))?;
    state.borrow_mut().closed = true;
    if !ast
        .iter_functions()
        .any(|f| f.name == "test" && f.params.len() == 1)
    {
        return Err(RecipeError::NoTest { file });
    }
    let test_body = test_body(&engine, &ast, &source);
    let declared = declare::finish(&state, declare::description(&source));
    Ok(Loaded {
        engine,
        ast,
        path: path.to_path_buf(),
        file,
        source,
        declared,
        names,
        imports,
        test_body,
    })
}

/// `fn test(m)`'s body as a script of its own, with the recipe's
/// functions, and its parameter's name (see [`Loaded::test_body`]). The
/// body's text is compiled again as top-level code (statements compiled
/// inside a function do not run outside one: their closures find the
/// wrong variables), with everything before it blanked out so that lines
/// and columns stay those of the recipe. `None` if that fails; `test` is
/// then called as a function.
fn test_body(engine: &Engine, ast: &AST, source: &str) -> Option<(AST, String)> {
    let f = ast
        .iter_fn_def()
        .find(|f| f.name == "test" && f.params.len() == 1)?;
    let offset = |p: rhai::Position| -> Option<usize> {
        let (line, col) = (p.line()?, p.position()?);
        let (mut l, mut c) = (1, 1);
        for (i, ch) in source.char_indices() {
            if (l, c) == (line, col) {
                return Some(i);
            }
            if ch == '\n' {
                (l, c) = (l + 1, 1);
            } else {
                c += 1;
            }
        }
        None
    };
    let start = offset(f.body.start_position())?;
    let end = offset(f.body.end_position())?;
    if !source[start..].starts_with('{') || !source[end..].starts_with('}') {
        return None;
    }
    let mut text: String = source[..start]
        .chars()
        .map(|c| if c == '\n' { '\n' } else { ' ' })
        .collect();
    text.push_str(&source[start..=end]);
    let mut body = engine.compile(&text).ok()?;
    body.combine(ast.clone_functions_only());
    Some((body, f.params[0].to_string()))
}

impl Loaded {
    /// Calls `test(m)` without re-running the top level.
    /// The body runs as top-level statements with `m` in scope, which is
    /// what a call of `test` does, except that errors keep their line.
    pub fn call_test(&self, m: Dynamic) -> Result<(), String> {
        let mut scope = Scope::new();
        let r = match &self.test_body {
            Some((body, param)) => {
                scope.push(param.as_str(), m);
                self.engine.run_ast_with_scope(&mut scope, body)
            }
            None => {
                let opts = CallFnOptions::new().eval_ast(false).rewind_scope(true);
                self.engine
                    .call_fn_with_options::<Dynamic>(opts, &mut scope, &self.ast, "test", (m,))
                    .map(|_| ())
            }
        };
        r.map_err(|e| engine::eval_error(&self.names, &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn write(name: &str, src: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lnst-recipe-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join(name);
        std::fs::write(&p, src).unwrap();
        p
    }

    fn ov(a: &[(&str, &str)]) -> BTreeMap<String, String> {
        a.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const SPEC: &str = r#"//! Two hosts on one link ping each other at a configurable MTU.

let mtu = param("mtu", 1500, "MTU of both test NICs");
param("count", 5);
print(`mtu ${mtu}`);

let h1 = host("h1");
h1.nic("eth0", #{ net: "net1" });
let h2 = host("h2", #{ arch: ["x86_64", "aarch64"] });
h2.nic("eth0", #{ net: "net1", driver: "veth" });

fn test(m) {
    m.h1.eth0.mtu = m.params.mtu;
}
"#;

    #[test]
    fn declares_the_spec_recipe() {
        let p = write("spec.rhai", SPEC);
        let lines = Rc::new(RefCell::new(Vec::new()));
        let l2 = Rc::clone(&lines);
        let log: LogSink = Rc::new(move |l| l2.borrow_mut().push(l));
        let r = load(&p, &ov(&[("mtu", "9000")]), log, Cancel::new()).unwrap();
        let d = &r.declared;
        assert_eq!(
            d.description,
            "Two hosts on one link ping each other at a configurable MTU."
        );
        assert_eq!(d.params.len(), 2);
        assert_eq!(d.params[0].value, Some(serde_json::json!(9000)));
        assert_eq!(d.params[1].value, Some(serde_json::json!(5)));
        let hs = &d.requirements.hosts;
        assert_eq!(hs.len(), 2);
        assert_eq!(
            hs[1].params["arch"],
            serde_json::json!(["x86_64", "aarch64"])
        );
        assert_eq!(hs[1].nics[0].net.as_deref(), Some("net1"));
        assert_eq!(hs[1].nics[0].attrs["driver"], "veth");
        let lines = lines.borrow();
        assert_eq!(lines[0].text, "mtu 9000");
        assert_eq!(lines[0].line, Some(5));
    }

    #[test]
    fn errors_carry_file_line_col() {
        let p = write("syn.rhai", "let a = 1;\nlet b = ;\nfn test(m) {}\n");
        let e = load(&p, &ov(&[]), Rc::new(|_| {}), Cancel::new())
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("syn.rhai:2:"), "{e}");
        // A bad value is reported once every param is declared (so the
        // message can list them), still at the declaration's position.
        let p = write(
            "bad.rhai",
            "param(\"mtu\", 1500);\nparam(\"count\", 5);\nfn test(m) {}\n",
        );
        let o = ov(&[("mtu", "x")]);
        let l = load(&p, &o, Rc::new(|_| {}), Cancel::new()).unwrap();
        let e = crate::params::check(&l.declared.params, &o, "bad.rhai")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("bad.rhai:1:1: param \"mtu\""), "{e}");
        assert!(e.contains("declares: mtu, count"), "{e}");
        let p = write("thr.rhai", "let x = 1;\n  throw \"boom\";\nfn test(m) {}\n");
        let e = load(&p, &ov(&[]), Rc::new(|_| {}), Cancel::new())
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("thr.rhai:2:3: boom"), "{e}");
        let p = write("notest.rhai", "host(\"h1\");\n");
        assert!(matches!(
            load(&p, &ov(&[]), Rc::new(|_| {}), Cancel::new()),
            Err(RecipeError::NoTest { .. })
        ));
        let p = write("dup.rhai", "host(\"h1\");\nhost(\"h1\");\nfn test(m) {}\n");
        let e = load(&p, &ov(&[]), Rc::new(|_| {}), Cancel::new())
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("dup.rhai:2:") && e.contains("twice"), "{e}");
    }

    /// Issue 10 fault 12: the engine's limit errors name the recipe's
    /// file and line, in the declaration phase and in `test`, also when
    /// the limit is hit inside a recipe function.
    #[test]
    fn limit_errors_carry_file_line() {
        let cases = [
            ("so", "fn f(x) {\n  f(x + 1)\n}", "f(0);", "Stack overflow"),
            (
                "ops",
                "fn f() {\n  let i = 0;\n  loop { i += 1; }\n}",
                "f();",
                "Too many operations",
            ),
            (
                "str",
                "fn f() {\n  let s = \"x\";\n  loop { s += s; }\n}",
                "f();",
                "Length of string too large",
            ),
            (
                "inline",
                "// in test itself",
                "let s = \"y\";\n  loop { s += s; }",
                "too large",
            ),
        ];
        for (name, func, call, what) in cases {
            // The line of the statement in the recipe that hit the limit.
            let line = func.lines().count() + call.lines().count() + 2;
            // Declaration phase (the real operation limit takes minutes of
            // debug-build time: that case runs in the test phase only).
            if name != "ops" {
                let file = format!("{name}-decl.rhai");
                let src = format!("{func}\n\n\n  {call}\nfn test(m) {{}}\n");
                let p = write(&file, &src);
                let e = load(&p, &ov(&[]), Rc::new(|_| {}), Cancel::new())
                    .err()
                    .unwrap_or_else(|| panic!("{name}: no error"))
                    .to_string();
                assert!(e.starts_with(&format!("{file}:{line}:")), "{name}: {e}");
                assert!(e.contains(what), "{name}: {e}");
            }
            // Test phase, with a small operation limit so that "too many
            // operations" comes quickly.
            let file = format!("{name}-test.rhai");
            let src = format!("{func}\n\nfn test(m) {{\n  {call}\n}}\n");
            let p = write(&file, &src);
            let mut l = load(&p, &ov(&[]), Rc::new(|_| {}), Cancel::new()).unwrap();
            l.engine.set_max_operations(100_000);
            let e = l.call_test(Dynamic::UNIT).unwrap_err();
            assert!(e.starts_with(&format!("{file}:{line}:")), "{name}: {e}");
            assert!(e.contains(what), "{name}: {e}");
        }
    }

    #[test]
    fn test_fn_runs_without_rerunning_top_level() {
        let p = write(
            "twice.rhai",
            "print(\"top\");\nfn test(m) { print(`test ${m}`); if m == 2 { throw \"bad\" } }\n",
        );
        let lines = Rc::new(RefCell::new(Vec::new()));
        let l2 = Rc::clone(&lines);
        let r = load(
            &p,
            &ov(&[]),
            Rc::new(move |l| l2.borrow_mut().push(l.text)),
            Cancel::new(),
        )
        .unwrap();
        r.call_test(Dynamic::from(1_i64)).unwrap();
        let e = r.call_test(Dynamic::from(2_i64)).unwrap_err();
        assert!(
            e.starts_with("twice.rhai:2:") && e.ends_with(": bad"),
            "{e}"
        );
        assert_eq!(*lines.borrow(), ["top", "test 1", "test 2"]);
    }

    /// A directory of its own for one test's recipe and modules.
    fn dir(name: &str, files: &[(&str, &str)]) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("lnst-recipe-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        for (f, src) in files {
            let p = d.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, src).unwrap();
        }
        d
    }

    #[test]
    fn imports_resolve_from_the_recipe_dir_once_and_reach_test() {
        let d = dir(
            "imp",
            &[
                // lib/a imports lib/b: relative to the recipe's directory.
                ("lib/a.rhai", "import \"lib/b\" as b;\nprint(\"a loaded\");\nfn hosts() { host(\"h1\"); }\nfn twice(x) { b::plus(x, x) }\n"),
                ("lib/b.rhai", "fn plus(x, y) { print(`plus ${x}`); x + y }\n"),
                ("r.rhai", "import \"lib/a\" as a;\na::hosts();\nprint(`top ${a::twice(2)}`);\nfn test(m) { print(`test ${a::twice(m)}`); }\n"),
            ],
        );
        let lines = Rc::new(RefCell::new(Vec::new()));
        let l2 = Rc::clone(&lines);
        let log: LogSink = Rc::new(move |l| l2.borrow_mut().push(l));
        let r = load(&d.join("r.rhai"), &ov(&[]), log, Cancel::new()).unwrap();
        assert_eq!(r.declared.requirements.hosts[0].name, "h1");
        let files: Vec<_> = r
            .imports
            .iter()
            .map(|(p, f)| (p.as_str(), f.clone()))
            .collect();
        assert_eq!(
            files,
            [
                ("lib/a", d.join("lib/a.rhai")),
                ("lib/b", d.join("lib/b.rhai"))
            ]
        );
        r.call_test(Dynamic::from(5_i64)).unwrap();
        // An import inside `fn test` is resolved at load too.
        std::fs::write(
            d.join("inner.rhai"),
            "fn test(m) {\n  import \"lib/b\" as bb;\n  if bb::plus(m, 1) != 6 { throw \"no\" }\n}\n",
        )
        .unwrap();
        let inner = load(
            &d.join("inner.rhai"),
            &ov(&[]),
            Rc::new(|_| {}),
            Cancel::new(),
        )
        .unwrap();
        assert_eq!(inner.imports.len(), 1);
        inner.call_test(Dynamic::from(5_i64)).unwrap();
        let b = d.join("lib/b.rhai").display().to_string();
        let got: Vec<(Option<String>, Option<usize>, String)> = lines
            .borrow()
            .iter()
            .map(|l| (l.file.clone(), l.line, l.text.clone()))
            .collect();
        // The module's top level ran once (at load); its print and the
        // nested module's are logged at their own file and line.
        assert_eq!(
            got,
            [
                (
                    Some(d.join("lib/a.rhai").display().to_string()),
                    Some(2),
                    "a loaded".into()
                ),
                (Some(b.clone()), Some(1), "plus 2".into()),
                (None, Some(3), "top 4".into()),
                (Some(b), Some(1), "plus 5".into()),
                (None, Some(4), "test 10".into()),
            ]
        );
    }

    #[test]
    fn module_errors_name_the_module_file() {
        let d = dir(
            "imperr",
            &[
                (
                    "lib/m.rhai",
                    "fn ok() { 1 }\nfn bad(x) {\n    x.nosuch()\n}\n",
                ),
                ("lib/decl.rhai", "param(\"p\", 1);\n"),
                (
                    "r.rhai",
                    "import \"lib/m\" as m2;\nfn f(m) { m2::bad(m) }\nfn test(m) {\n  f(m);\n}\n",
                ),
                ("decl.rhai", "import \"lib/decl\" as x;\nfn test(m) {}\n"),
                (
                    "late.rhai",
                    "fn test(m) { let p = \"lib/m\"; import p as x; }\n",
                ),
                // A cycle through module top levels.
                ("lib/ca.rhai", "import \"lib/cb\" as b;\nfn fa() { 1 }\n"),
                ("lib/cb.rhai", "fn fb() { 2 }\nimport \"lib/ca\" as a;\n"),
                ("cyc.rhai", "import \"lib/ca\" as a;\nfn test(m) {}\n"),
            ],
        );
        let nolog = || -> LogSink { Rc::new(|_| {}) };
        let r = load(&d.join("r.rhai"), &ov(&[]), nolog(), Cancel::new()).unwrap();
        let e = r.call_test(Dynamic::from(1_i64)).unwrap_err();
        let m = d.join("lib/m.rhai").display().to_string();
        assert!(e.starts_with(&format!("{m}:3:7: ")), "{e}");
        assert!(e.ends_with("(in fn f → bad, called at r.rhai:2:15)"), "{e}");
        // A module's top level does not declare.
        let e = load(&d.join("decl.rhai"), &ov(&[]), nolog(), Cancel::new())
            .err()
            .unwrap()
            .to_string();
        let decl = d.join("lib/decl.rhai").display().to_string();
        assert!(
            e.starts_with(&format!("{decl}:1:1: param() declares")),
            "{e}"
        );
        // An import resolved after loading (not a literal) is refused.
        let r = load(&d.join("late.rhai"), &ov(&[]), nolog(), Cancel::new()).unwrap();
        let e = r.call_test(Dynamic::UNIT).unwrap_err();
        assert!(
            e.starts_with(
                "late.rhai:1:38: import \"lib/m\": imports are resolved when the recipe is loaded"
            ),
            "{e}"
        );
        // An import cycle is an error at the import that closes it, not a
        // stack overflow.
        let e = load(&d.join("cyc.rhai"), &ov(&[]), nolog(), Cancel::new())
            .err()
            .unwrap()
            .to_string();
        let cb = d.join("lib/cb.rhai").display().to_string();
        assert!(
            e.starts_with(&format!(
                "{cb}:2:8: import \"lib/ca\": an import cycle: lib/ca → lib/cb → lib/ca"
            )),
            "{e}"
        );
    }

    /// `test`'s body runs as a script of its own (for the lines of limit
    /// errors) but behaves as the function: closures (also capturing `m`
    /// and locals), `catch` variables, `return`, the recipe's functions.
    #[test]
    fn test_body_behaves_as_the_function() {
        for (i, body) in [
            "let a = [#{x: 1}]; if !a.some(|e| e.x == 1) { throw \"no\" }",
            "try { throw \"q\" } catch (e) { }\n let a = [#{x: 1}]; if !a.some(|e| e.x == 1) { throw \"no\" }",
            "let d = 5; let a = [#{x: 1}]; if !a.some(|e| e.x == 1 && d == 5 && m == 7) { throw \"no\" }",
            "if helper(m) == 8 { return; } throw \"not returned\"",
            "let f = |x| x + m; if f.call(1) != 8 { throw \"capture\" }",
        ]
        .iter()
        .enumerate()
        {
            let p = write(
                &format!("body{i}.rhai"),
                &format!("fn helper(x) {{ x + 1 }}\nfn test(m) {{\n{body}\n}}\n"),
            );
            let l = load(&p, &ov(&[]), Rc::new(|_| {}), Cancel::new()).unwrap();
            assert!(l.test_body.is_some(), "case {i}: body not compiled apart");
            let r = l.call_test(Dynamic::from(7_i64));
            assert_eq!(r, Ok(()), "case {i}: {body}");
        }
    }

    #[test]
    fn cancel_stops_a_busy_loop() {
        let p = write("loop.rhai", "fn test(m) { loop { } }\n");
        let c = Cancel::new();
        let r = load(&p, &ov(&[]), Rc::new(|_| {}), c.clone()).unwrap();
        let c2 = c.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            c2.cancel();
        });
        let e = r.call_test(Dynamic::UNIT).unwrap_err();
        t.join().unwrap();
        assert!(engine::is_interrupt(&e), "{e}");
    }
}
