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
pub mod value;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rhai::{CallFnOptions, Dynamic, Engine, Scope, AST};

pub use declare::Declared;
pub use engine::{Cancel, LogSink};

/// Why a recipe could not be loaded (all exit 2).
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("cannot read recipe {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
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
}

/// Reads, compiles and declares. Unknown or missing params are *not*
/// checked here (validate shows them); call [`crate::params::check`].
pub fn load(
    path: &Path,
    overrides: &BTreeMap<String, String>,
    log: LogSink,
    cancel: Cancel,
) -> Result<Loaded, RecipeError> {
    let source = std::fs::read_to_string(path).map_err(|source| RecipeError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let state = declare::DeclState::new(overrides.clone());
    let engine = engine::new(&file, Rc::clone(&state), log, cancel);
    let ast = engine
        .compile(&source)
        .map_err(|e| RecipeError::Script(engine::parse_error(&file, &e)))?;
    let mut scope = Scope::new();
    engine
        .run_ast_with_scope(&mut scope, &ast)
        .map_err(|e| RecipeError::Script(engine::eval_error(&file, &e)))?;
    state.borrow_mut().closed = true;
    if !ast
        .iter_functions()
        .any(|f| f.name == "test" && f.params.len() == 1)
    {
        return Err(RecipeError::NoTest { file });
    }
    let declared = declare::finish(&state, declare::description(&source));
    Ok(Loaded {
        engine,
        ast,
        path: path.to_path_buf(),
        file,
        source,
        declared,
    })
}

impl Loaded {
    /// Calls `test(m)` without re-running the top level.
    pub fn call_test(&self, m: Dynamic) -> Result<(), String> {
        let mut scope = Scope::new();
        let opts = CallFnOptions::new().eval_ast(false).rewind_scope(true);
        self.engine
            .call_fn_with_options::<Dynamic>(opts, &mut scope, &self.ast, "test", (m,))
            .map(|_| ())
            .map_err(|e| engine::eval_error(&self.file, &e))
    }
}
