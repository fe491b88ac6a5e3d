//! `lnst-ctl api`: prints the recipe API reference; `lnst-ctl api
//! --definitions DIR` writes Rhai definition files (`*.d.rhai`, from
//! Rhai's own metadata of the engine recipes run in) so that an editor
//! with the Rhai language server completes and checks recipes. Each
//! function of the recipe API gets its doc line from [`API`] as a `///`
//! comment.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use crate::exit::{ExitCode, Failure};
use crate::recipe::api::API;

pub fn exec(definitions: Option<&Path>) -> Result<ExitCode, Failure> {
    if let Some(dir) = definitions {
        let files = write_definitions(dir)
            .with_context(|| format!("cannot write definition files to {}", dir.display()))
            .map_err(|e| Failure::new(ExitCode::Usage, e))?;
        for f in files {
            println!("{f}");
        }
        return Ok(ExitCode::Pass);
    }
    let mut text =
        String::from("lnst recipe API (RECIPES.md). Declaration phase first, then fn test(m).\n\n");
    for it in API {
        text.push_str(&format!("{}\n    {}\n\n", it.sig, it.doc));
    }
    // A reader that stops early (`lnst-ctl api | head`) is not an error.
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::from(
            anyhow::anyhow!("cannot write to stdout: {e}"),
        )),
        _ => Ok(ExitCode::Pass),
    }
}

/// The engine's definition files, the recipe API's with docs; returns
/// the paths written.
fn write_definitions(dir: &Path) -> anyhow::Result<Vec<String>> {
    let state = crate::recipe::declare::DeclState::new(Default::default());
    let engine = crate::recipe::engine::new(
        crate::recipe::Names::new("definitions.rhai", std::path::Path::new("")),
        state,
        std::rc::Rc::new(|_| {}),
        crate::recipe::Cancel::new(),
    );
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (name, content) in engine
        .definitions()
        .include_standard_packages(true)
        .iter_files()
    {
        let content = if name == "__static__.d.rhai" {
            with_docs(&content)
        } else {
            content
        };
        let path = dir.join(&name);
        std::fs::write(&path, content)?;
        written.push(path.display().to_string());
    }
    Ok(written)
}

/// A definition line `fn [get |set ]NAME(ARGS) [-> RET];` taken apart.
struct DefLine<'a> {
    indent: &'a str,
    /// `get `, `set ` or empty.
    prop: &'a str,
    name: &'a str,
    /// Argument types, receiver included.
    args: Vec<&'a str>,
}

fn parse_def(line: &str) -> Option<DefLine<'_>> {
    let indent = &line[..line.len() - line.trim_start().len()];
    let rest = line.trim_start().strip_prefix("fn ")?;
    let (prop, rest) = match rest
        .strip_prefix("get ")
        .or_else(|| rest.strip_prefix("set "))
    {
        Some(r) => (&rest[..4], r),
        None => ("", rest),
    };
    let (name, rest) = rest.split_once('(')?;
    let (args, _) = rest.split_once(')')?;
    let args = args
        .split(", ")
        .filter(|a| !a.is_empty())
        .map(|a| a.split_once(':').map(|(_, t)| t.trim()).unwrap_or(a))
        .collect();
    Some(DefLine {
        indent,
        prop,
        name: name.trim(),
        args,
    })
}

/// An API table entry taken apart: receiver type, name, params
/// (`name: type`), return type.
fn parse_sig(sig: &str) -> (&str, &str, Vec<(&str, &str)>, Option<&str>) {
    let head = sig.split(['(', ' ']).next().unwrap_or("");
    let (ty, name) = head.rsplit_once('.').unwrap_or(("", head));
    let params = sig
        .split_once('(')
        .and_then(|(_, r)| r.split_once(')'))
        .map(|(p, _)| {
            p.split(", ")
                .filter(|x| !x.is_empty())
                .map(|x| {
                    x.split_once(':')
                        .map(|(n, t)| (n.trim(), t.trim()))
                        .unwrap_or((x, ""))
                })
                .collect()
        })
        .unwrap_or_default();
    let ret = sig.split_once("->").map(|(_, r)| r.trim());
    (ty, name, params, ret)
}

/// The API item a definition line declares: same name, same receiver
/// type for a method, then the best fit of arity and argument types.
fn item_for(d: &DefLine) -> Option<&'static crate::recipe::api::ApiItem> {
    let mut best: Option<(i32, &'static crate::recipe::api::ApiItem)> = None;
    for it in API {
        let (ty, name, params, _) = parse_sig(it.sig);
        if name != d.name {
            continue;
        }
        let own = if ty.is_empty() {
            &d.args[..]
        } else {
            d.args.get(1..).unwrap_or(&[])
        };
        let mut score = 0;
        if !ty.is_empty() && d.args.first() == Some(&ty) {
            score += 4;
        } else if !ty.is_empty() {
            continue;
        }
        if own.len() == params.len() {
            score += 2;
            score += own
                .iter()
                .zip(&params)
                .filter(|(a, (_, t))| t.split('|').any(|t| t.trim() == **a))
                .count() as i32;
        }
        if best.is_none_or(|(b, _)| score > b) {
            best = Some((score, it));
        }
    }
    best.map(|(_, it)| it)
}

/// Rhai cannot name the result type of a fallible native function (it
/// writes `-> EvalAltResult>>`): the API table's return type when it is
/// a plain type name, else none. Argument names come from the table too.
fn fix_line(line: &str, d: &DefLine, it: Option<&crate::recipe::api::ApiItem>) -> String {
    let (params, ret) = match it {
        Some(it) => {
            let (ty, _, params, ret) = parse_sig(it.sig);
            let own = if ty.is_empty() {
                d.args.len()
            } else {
                d.args.len().saturating_sub(1)
            };
            let names: Vec<&str> = if own == params.len() && d.prop.is_empty() {
                params.iter().map(|(n, _)| *n).collect()
            } else {
                Vec::new()
            };
            (names, ret)
        }
        None => (Vec::new(), None),
    };
    let mut args: Vec<String> = Vec::new();
    let skip = d.args.len() - params.len().min(d.args.len());
    for (i, t) in d.args.iter().enumerate() {
        let name = if !params.is_empty() && i >= skip {
            params[i - skip]
        } else {
            "_"
        };
        args.push(format!("{name}: {t}"));
    }
    let ret = if line.contains("EvalAltResult") {
        match ret {
            Some(r)
                if !r.is_empty() && r.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                format!(" -> {r}")
            }
            _ => String::new(),
        }
    } else {
        line.split_once(") -> ")
            .map(|(_, r)| format!(" -> {}", r.trim_end_matches(';')))
            .unwrap_or_default()
    };
    format!(
        "{}fn {}{}({}){ret};",
        d.indent,
        d.prop,
        d.name,
        args.join(", ")
    )
}

/// Puts a `///` doc line from the API table above each function it
/// documents and repairs the signature Rhai wrote (see [`fix_line`]).
fn with_docs(defs: &str) -> String {
    let mut out = String::with_capacity(defs.len() * 2);
    let mut prev_doc = false;
    for line in defs.lines() {
        let Some(d) = parse_def(line) else {
            prev_doc = line.trim_start().starts_with("///");
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let it = item_for(&d);
        if let (false, Some(it)) = (prev_doc, it) {
            out.push_str(&format!("{}/// {}\n", d.indent, it.doc));
        }
        let fixed = if line.contains("EvalAltResult") || it.is_some() {
            fix_line(line, &d, it)
        } else {
            line.to_string()
        };
        out.push_str(&fixed);
        out.push('\n');
        prev_doc = false;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_names_and_return_types_from_the_api_table() {
        let s = with_docs("fn check(_: Ctx, _: bool, _: string) -> EvalAltResult>>;\n");
        assert!(s.starts_with("/// Records a PASS or FAIL result"), "{s}");
        assert!(
            s.ends_with("fn check(_: Ctx, cond: bool, desc: string) -> bool;\n"),
            "{s}"
        );
        let s = with_docs("fn run(_: Host, _: Module, _: map) -> EvalAltResult>>;\n");
        assert!(s.contains("/// Same with run options"), "{s}");
        assert!(
            s.contains("fn run(_: Host, module: Module, opts: map) -> Job;"),
            "{s}"
        );
        let s = with_docs("fn get mtu(_: Device) -> EvalAltResult>>;\n");
        assert!(s.contains("/// MTU; settable"), "{s}");
        assert!(s.contains("fn get mtu(_: Device) -> int;"), "{s}");
        let s = with_docs("fn breakpoint(_: Ctx, _: string) -> EvalAltResult>>;\n");
        assert!(s.contains("fn breakpoint(_: Ctx, why: string);"), "{s}");
        assert_eq!(
            with_docs("fn abs(x: int) -> int;\n"),
            "fn abs(x: int) -> int;\n"
        );
    }

    #[test]
    fn definitions_cover_the_api() {
        let d = std::env::temp_dir().join(format!("lnst-defs-{}", std::process::id()));
        let files = write_definitions(&d).unwrap();
        assert!(
            files.iter().any(|f| f.ends_with("__static__.d.rhai")),
            "{files:?}"
        );
        let s = std::fs::read_to_string(d.join("__static__.d.rhai")).unwrap();
        for f in [
            "fn breakpoint(",
            "fn check(",
            "fn ip_add(",
            "fn host(",
            "fn param(",
        ] {
            assert!(s.contains(f), "{f} missing");
        }
        assert!(
            s.contains("/// Pauses with everything configured"),
            "no docs"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
