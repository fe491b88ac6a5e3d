//! The Rhai engine of a run: limits, the script API, print/debug to the run
//! log, Ctrl-C through `on_progress`, and `file:line:col` error messages.
//!
//! Rhai's `Engine`, `AST` and `Dynamic` are not `Send` (no `sync` feature),
//! so the engine lives on one plain OS thread for the whole run and reaches
//! async code (the agent clients) through a runtime `Handle::block_on`; see
//! [`crate::recipe::api::Core`].

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

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
    /// Recipe line of the call, when known.
    pub line: Option<usize>,
    pub text: String,
}

/// Where `print` and `debug` go (the run log and, with `-v`, stderr).
pub type LogSink = Rc<dyn Fn(LogLine)>;

/// A sink that prints to stderr, for `validate`.
pub fn stderr_sink(file: String) -> LogSink {
    Rc::new(move |l: LogLine| {
        let line = l.line.map(|n| format!(":{n}")).unwrap_or_default();
        eprintln!(
            "{file}{line}: {}{}",
            if l.debug { "debug: " } else { "" },
            l.text
        );
    })
}

/// Builds the engine with limits, hooks and the whole script API.
pub fn new(file: &str, decl: Rc<RefCell<DeclState>>, log: LogSink, cancel: Cancel) -> Engine {
    let mut engine = Engine::new();
    super::limits::apply(&mut engine);
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
    let l = log.clone();
    engine.register_fn("print", move |ctx: NativeCallContext, x: Dynamic| {
        let text = if x.is_string() {
            x.to_string()
        } else {
            format!("{x}")
        };
        l(LogLine {
            debug: false,
            line: ctx.call_position().line(),
            text: text.clone(),
        });
        text
    });
    let l = log.clone();
    engine.register_fn("print", move |ctx: NativeCallContext, x: &str| {
        l(LogLine {
            debug: false,
            line: ctx.call_position().line(),
            text: x.to_string(),
        });
        x.to_string()
    });
    engine.on_print(|_| {});
    let l = log;
    engine.on_debug(move |s, _src, pos| {
        l(LogLine {
            debug: true,
            line: pos.line(),
            text: s.to_string(),
        })
    });
    let _ = file;
    super::declare::register(&mut engine, decl);
    super::api::register_all(&mut engine);
    engine
}

fn at(file: &str, pos: Position) -> String {
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
pub fn eval_error(file: &str, e: &EvalAltResult) -> String {
    let mut e = e;
    let mut trail = Vec::new();
    while let EvalAltResult::ErrorInFunctionCall(name, _, inner, _) = e {
        if name != "test" {
            trail.push(name.clone());
        }
        e = inner;
    }
    let pos = e.position();
    let msg = match e {
        EvalAltResult::ErrorRuntime(v, _) => v.to_string(),
        // Ctrl-C says "interrupted"; `q` at a breakpoint says why.
        EvalAltResult::ErrorTerminated(v, _) => v
            .clone()
            .into_string()
            .unwrap_or_else(|_| "interrupted".to_string()),
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
    let trail = if trail.is_empty() {
        String::new()
    } else {
        format!(" (in fn {})", trail.join(" → "))
    };
    format!("{}: {msg}{trail}", at(file, pos))
}

/// Whether a runtime error is the Ctrl-C termination.
pub fn is_interrupt(msg: &str) -> bool {
    msg.ends_with(": interrupted")
}
