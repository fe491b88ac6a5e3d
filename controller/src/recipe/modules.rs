//! `import "lib/enrt" as enrt;`: Rhai modules for recipes, this project's
//! extension of RECIPES.md (see docs/DECISIONS.md).
//!
//! Resolution is Rhai's own [`FileModuleResolver`] with the recipe's
//! directory as base path: every import path, also one written inside a
//! module, is relative to the recipe's directory, with `.rhai` appended.
//! [`RecipeModules`] only adds the path rule in front of it: a path is
//! relative and goes down only (`lib/enrt`, not `/x`, `../x` or `./x`), so
//! that a recipe's directory with its modules is all a run needs and the
//! run directory can keep a copy of each module at the same relative path.
//!
//! Imports are resolved when the recipe is loaded, before anything runs
//! ([`crate::recipe::load`] compiles with
//! `Engine::compile_into_self_contained`); after that the engine's resolver
//! is [`RecipeModules::late`], which refuses an import whose path is not a
//! string literal (it would be read after the run directory was written).

use std::cell::RefCell;
use std::path::{Component, Path};
use std::rc::Rc;

use rhai::module_resolvers::FileModuleResolver;
use rhai::{
    ASTNode, Engine, EvalAltResult, Expr, GlobalRuntimeState, Module, ModuleResolver, Position,
    Scope, Shared, Stmt, AST,
};

use super::engine::Names;

type R<T> = Result<T, Box<EvalAltResult>>;
type SharedModule = Shared<Module>;

/// Why an import path is refused, or `Ok`.
pub fn check_path(path: &str) -> Result<(), String> {
    let p = Path::new(path);
    if path.is_empty() {
        return Err("the path is empty".into());
    }
    if p.is_absolute() {
        return Err(
            "an absolute path is not allowed: import paths are relative to the recipe's directory"
                .into(),
        );
    }
    if !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(
            "use a path down from the recipe's directory, like \"lib/enrt\" (no \"..\" or \".\")"
                .into(),
        );
    }
    Ok(())
}

/// The engine's module resolver: the path rule, then Rhai's
/// `FileModuleResolver` (or, once loaded, nothing).
pub struct RecipeModules {
    names: Rc<Names>,
    /// `None` once the recipe is loaded.
    files: Option<FileModuleResolver>,
    /// The modules being loaded, outermost first: a module's top level
    /// importing one of them is a cycle (Rhai would recurse until the
    /// stack overflows).
    loading: RefCell<Vec<String>>,
}

impl RecipeModules {
    pub fn new(names: Rc<Names>) -> Self {
        let files = FileModuleResolver::new_with_path(&names.base);
        RecipeModules {
            names,
            files: Some(files),
            loading: RefCell::new(Vec::new()),
        }
    }
    /// After loading: every module the recipe can import is in its AST.
    pub fn late(names: Rc<Names>) -> Self {
        RecipeModules {
            names,
            files: None,
            loading: RefCell::new(Vec::new()),
        }
    }

    /// Runs `load` (which evaluates the module's top level) with `path`
    /// on the loading stack, refusing a cycle.
    fn loading<T>(&self, path: &str, pos: Position, load: impl FnOnce() -> R<T>) -> R<T> {
        let stack = self.loading.borrow().clone();
        if stack.iter().any(|p| p == path) {
            let chain: Vec<&str> = stack.iter().map(String::as_str).chain([path]).collect();
            return Err(EvalAltResult::ErrorRuntime(
                format!("import {path:?}: an import cycle: {}", chain.join(" → ")).into(),
                pos,
            )
            .into());
        }
        self.loading.borrow_mut().push(path.to_string());
        let r = load();
        self.loading.borrow_mut().pop();
        r
    }

    fn files(&self, path: &str, pos: Position) -> R<&FileModuleResolver> {
        let refuse = |why: String| -> Box<EvalAltResult> {
            EvalAltResult::ErrorRuntime(format!("import {path:?}: {why}").into(), pos).into()
        };
        check_path(path).map_err(refuse)?;
        self.files.as_ref().ok_or_else(|| {
            refuse(format!(
                "imports are resolved when the recipe is loaded: write the path as a string \
                 literal (the module file would be {})",
                self.names.module_file(path).display()
            ))
        })
    }
}

impl ModuleResolver for RecipeModules {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> R<SharedModule> {
        let files = self.files(path, pos)?;
        self.loading(path, pos, || files.resolve(engine, source, path, pos))
    }

    fn resolve_raw(
        &self,
        engine: &Engine,
        global: &mut GlobalRuntimeState,
        scope: &mut Scope,
        path: &str,
        pos: Position,
    ) -> R<SharedModule> {
        let files = self.files(path, pos)?;
        self.loading(path, pos, || {
            files.resolve_raw(engine, global, scope, path, pos)
        })
    }

    fn resolve_ast(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Option<R<AST>> {
        match self.files(path, pos) {
            Ok(f) => f.resolve_ast(engine, source, path, pos),
            Err(e) => Some(Err(e)),
        }
    }
}

/// The `import "literal"` statements of an AST (functions included), with
/// the position of each and its alias (`""` when none).
pub fn imports_of(ast: &AST) -> Vec<(String, String, Position)> {
    let mut v = Vec::new();
    ast.walk(&mut |path: &[ASTNode]| {
        if let Some(ASTNode::Stmt(Stmt::Import(x, pos))) = path.last() {
            if let Expr::StringConstant(s, _) = &x.0 {
                v.push((s.to_string(), x.1.name.to_string(), *pos));
            }
        }
        true
    });
    v
}

/// The top-level `import "literal" as alias` statements: what `fn test`
/// sees as `alias::f` (see [`crate::recipe::load`]).
pub fn top_level_imports(ast: &AST) -> Vec<(String, String)> {
    ast.statements()
        .iter()
        .filter_map(|s| match s {
            Stmt::Import(x, _) => match &x.0 {
                Expr::StringConstant(p, _) if !x.1.name.is_empty() => {
                    Some((p.to_string(), x.1.name.to_string()))
                }
                _ => None,
            },
            _ => None,
        })
        .collect()
}
