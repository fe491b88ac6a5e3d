//! Stage 1, params and recipe: the declaration phase runs (RECIPES.md §1)
//! with the `-- k=v` overrides, then the params are checked. Nothing has
//! been created yet, so every error here is exit 2 (or 130 for Ctrl-C).

use std::collections::BTreeMap;
use std::path::Path;

use crate::exit::{Classify, ExitCode, Failure};
use crate::params;
use crate::recipe::{self, Cancel};

use super::log::{recipe_sink, Log};

/// Which `-- k=v` overrides a recipe must know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamScope {
    /// One recipe: an override it does not declare is an error.
    Strict,
    /// A recipe of a suite: it takes the overrides it declares; the suite
    /// has already checked that every override is declared by some recipe.
    Declared,
}

/// A recipe after its declaration phase, with its effective params.
pub struct Recipe {
    pub loaded: recipe::Loaded,
    /// The file name, as reports name the recipe.
    pub file: String,
    /// Every declared param's effective value (`m.params`, `params.json`).
    pub params: serde_json::Map<String, serde_json::Value>,
}

/// Runs the declaration phase of `path` and checks its params.
pub fn load(
    path: &Path,
    overrides: &BTreeMap<String, String>,
    scope: ParamScope,
    log: &Log,
    cancel: &Cancel,
) -> Result<Recipe, Failure> {
    let file = recipe_label(path);
    let loaded = match recipe::load(path, overrides, recipe_sink(log), cancel.clone()) {
        Ok(l) => l,
        // Ctrl-C during the declaration phase: nothing was built yet.
        Err(e) if cancel.is_cancelled() => return Err(Failure::new(ExitCode::Interrupted, e)),
        Err(e) => return Err(Failure::new(ExitCode::Usage, e)),
    };
    let mine: BTreeMap<String, String> = match scope {
        ParamScope::Strict => overrides.clone(),
        ParamScope::Declared => overrides
            .iter()
            .filter(|(k, _)| loaded.declared.params.iter().any(|d| &d.name == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    params::check(&loaded.declared.params, &mine, &file).usage()?;
    let params = params::values(&loaded.declared.params);
    Ok(Recipe {
        loaded,
        file,
        params,
    })
}

/// The recipe's file name as errors show it (`hello_world.rhai:5:13: ...`).
pub fn recipe_label(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
