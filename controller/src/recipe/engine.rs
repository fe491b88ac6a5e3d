//! The Rhai engine of a run: limits, the script API, print/debug to the run
//! log, Ctrl-C through `on_progress`, and `file:line:col` error messages.
//!
//! Rhai's `Engine`, `AST` and `Dynamic` are not `Send` (no `sync` feature),
//! so the engine lives on one plain OS thread for the whole run and reaches
//! async code (the agent clients) through a runtime `Handle::block_on`; see
//! [`crate::recipe::api::Core`].

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use rhai::module_resolvers::FileModuleResolver;
use rhai::{Dynamic, Engine, EvalAltResult, NativeCallContext, ParseError, Position};
use tokio::sync::watch;

use super::declare::DeclState;

/// Cancellation of a run (Ctrl-C): checked by `on_progress` between script
/// operations and awaited by every blocking native call.
#[derive(Clone)]
pub struct Cancel {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Cancel {
    fn default() -> Self {
        Self::new()
    }
}

impl Cancel {
    pub fn new() -> Self {
        Cancel {
            tx: Arc::new(watch::channel(false).0),
        }
    }
    /// Requests cancellation; idempotent.
    pub fn cancel(&self) {
        self.tx.send_replace(true);
    }
    pub fn is_cancelled(&self) -> bool {
        *self.tx.borrow()
    }
    /// Resolves once cancelled.
    pub async fn cancelled(&self) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }
}

/// One `print`/`debug` line of the recipe.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub debug: bool,
    /// The imported module file the call is in (its path as
    /// [`Names::module_file`] shows it); `None`: the recipe itself.
    pub file: Option<String>,
    /// Line of the call in `file` (or the recipe), when known.
    pub line: Option<usize>,
    pub text: String,
}

/// How the sources of a run are named in messages: the recipe by its file
/// name, an imported module by its path (the recipe's directory joined with
/// the import path, `.rhai` appended), the file Rhai's
/// `FileModuleResolver` reads.
#[derive(Debug, Clone)]
pub struct Names {
    pub recipe: String,
    /// The recipe's directory: import paths are relative to it.
    pub base: PathBuf,
}

impl Names {
    pub fn new(recipe: &str, base: &Path) -> Rc<Names> {
        Rc::new(Names {
            recipe: recipe.to_string(),
            base: base.to_path_buf(),
        })
    }
    /// The file an `import "path"` reads.
    pub fn module_file(&self, import: &str) -> PathBuf {
        FileModuleResolver::new_with_path(&self.base).get_file_path(import, None)
    }
    /// A Rhai source (`""` or none: the recipe; else an import path).
    pub fn of(&self, source: Option<&str>) -> String {
        match source {
            None | Some("") => self.recipe.clone(),
            Some(s) => self.module_file(s).display().to_string(),
        }
    }
}

/// Where `print` and `debug` go (the run log and, with `-v`, stderr).
pub type LogSink = Rc<dyn Fn(LogLine)>;

/// A sink that prints to stderr, for `validate`.
pub fn stderr_sink(file: String) -> LogSink {
    Rc::new(move |l: LogLine| {
        let line = l.line.map(|n| format!(":{n}")).unwrap_or_default();
        eprintln!(
            "{}{line}: {}{}",
            l.file.as_deref().unwrap_or(&file),
            if l.debug { "debug: " } else { "" },
            l.text
        );
    })
}

/// Builds the engine with limits, hooks and the whole script API.
/// `import` resolves through [`super::modules::RecipeModules`], relative to
/// `names.base`.
pub fn new(names: Rc<Names>, decl: Rc<RefCell<DeclState>>, log: LogSink, cancel: Cancel) -> Engine {
    let mut engine = Engine::new();
    super::limits::apply(&mut engine);
    engine.set_module_resolver(super::modules::RecipeModules::new(Rc::clone(&names)));
    let c = cancel.clone();
    engine.on_progress(move |_ops| {
        if c.is_cancelled() {
            Some(Dynamic::from("interrupted"))
        } else {
            None
        }
    });
    // `print` has no position in Rhai's hook, so it is overridden with a
    // native function that knows its call site; it returns the text, which
    // Rhai then hands to the (silent) on_print hook.
    let module_file = |n: &Names, src: Option<&str>| match src {
        None | Some("") => None,
        s => Some(n.of(s)),
    };
    let (l, n) = (log.clone(), Rc::clone(&names));
    engine.register_fn("print", move |ctx: NativeCallContext, x: Dynamic| {
        let text = if x.is_string() {
            x.to_string()
        } else {
            format!("{x}")
        };
        l(LogLine {
            debug: false,
            file: module_file(&n, ctx.call_source()),
            line: ctx.call_position().line(),
            text: text.clone(),
        });
        text
    });
    let (l, n) = (log.clone(), Rc::clone(&names));
    engine.register_fn("print", move |ctx: NativeCallContext, x: &str| {
        l(LogLine {
            debug: false,
            file: module_file(&n, ctx.call_source()),
            line: ctx.call_position().line(),
            text: x.to_string(),
        });
        x.to_string()
    });
    engine.on_print(|_| {});
    let (l, n) = (log, names);
    engine.on_debug(move |s, src, pos| {
        l(LogLine {
            debug: true,
            file: module_file(&n, src),
            line: pos.line(),
            text: s.to_string(),
        })
    });
    super::declare::register(&mut engine, decl);
    super::api::register_all(&mut engine);
    engine
}

pub(crate) fn at(file: &str, pos: Position) -> String {
    match (pos.line(), pos.position()) {
        (Some(l), Some(c)) => format!("{file}:{l}:{c}"),
        (Some(l), None) => format!("{file}:{l}"),
        _ => file.to_string(),
    }
}

/// `file:line:col: message` for a syntax error.
pub fn parse_error(file: &str, e: &ParseError) -> String {
    format!("{}: syntax error: {}", at(file, e.position()), e.err_type())
}

/// `file:line:col: message` for a runtime error, from the innermost call
/// so that the line is where it happened, not where `test` was called.
/// The file is the one the innermost code is in: the recipe or an
/// imported module; when that is a module, the recipe line that called
/// into it follows the function trail.
pub fn eval_error(names: &Names, e: &EvalAltResult) -> String {
    let mut e = e;
    let mut trail = Vec::new();
    // The source the current position is in ("": the recipe).
    let mut src = String::new();
    let mut called_at: Option<Position> = None;
    loop {
        match e {
            EvalAltResult::ErrorInFunctionCall(name, fsrc, inner, pos) => {
                if name != "test" {
                    trail.push(name.clone());
                }
                if src.is_empty() && !fsrc.is_empty() && !pos.is_none() {
                    called_at = Some(*pos);
                }
                src = fsrc.clone();
                e = inner;
            }
            // An error while a module's top level ran or it was compiled.
            EvalAltResult::ErrorInModule(path, inner, _) => {
                src = path.clone();
                e = inner;
            }
            _ => break,
        }
    }
    let pos = e.position();
    let msg = match e {
        EvalAltResult::ErrorRuntime(v, _) => v.to_string(),
        // Ctrl-C says "interrupted"; `q` at a breakpoint says why.
        EvalAltResult::ErrorTerminated(v, _) => v
            .clone()
            .into_string()
            .unwrap_or_else(|_| "interrupted".to_string()),
        EvalAltResult::ErrorParsing(t, _) => format!("syntax error: {t}"),
        // Rhai's "Function not found: foo ()", with where to look.
        EvalAltResult::ErrorFunctionNotFound(sig, _) => format!(
            "Function not found: {sig}: neither the recipe nor the recipe API has it \
             (`lnst-ctl api` lists every function, device kind and module)"
        ),
        EvalAltResult::ErrorModuleNotFound(path, _) => format!(
            "import {path:?}: no module file {}",
            names.module_file(path).display()
        ),
        other => {
            // Display appends " (line L, position C)"; the position is
            // already in front.
            let s = other.to_string();
            match s.rfind(" (line ") {
                Some(i) if s.ends_with(')') => s[..i].to_string(),
                _ => s,
            }
        }
    };
    let mut notes = Vec::new();
    if !trail.is_empty() {
        notes.push(format!("in fn {}", trail.join(" → ")));
    }
    if let Some(p) = called_at {
        notes.push(format!("called at {}", at(&names.recipe, p)));
    }
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join(", "))
    };
    format!("{}: {msg}{notes}", at(&names.of(Some(&src)), pos))
}

/// Whether a runtime error is the Ctrl-C termination.
pub fn is_interrupt(msg: &str) -> bool {
    msg.ends_with(": interrupted")
}
