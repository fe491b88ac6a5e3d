//! The declaration phase: `param`, `host`, `H.nic` and the `//!`
//! description. It runs once, before any agent is contacted, and yields
//! [`Declared`]: what `validate` shows and what the mapper matches.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use rhai::{Dynamic, Engine, EvalAltResult, Map, NativeCallContext};

use crate::mapper::{HostReq, NicReq, Requirements};
use crate::params::{self, ParamDecl};

use super::value::{to_dynamic, to_json};

/// What the declaration phase produced.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Declared {
    /// The leading `//!` block.
    pub description: String,
    pub params: Vec<ParamDecl>,
    pub requirements: Requirements,
}

/// Collected while the top level runs.
pub struct DeclState {
    overrides: BTreeMap<String, String>,
    params: Vec<ParamDecl>,
    hosts: Vec<HostReq>,
    /// Set once the top level finished: declaring inside `test` is an error.
    pub closed: bool,
    /// Set while imported modules are loaded: a module's top level does not
    /// declare (the recipe does, possibly through a module's function).
    pub importing: bool,
}

impl DeclState {
    pub fn new(overrides: BTreeMap<String, String>) -> Rc<RefCell<DeclState>> {
        Rc::new(RefCell::new(DeclState {
            overrides,
            params: Vec::new(),
            hosts: Vec::new(),
            closed: false,
            importing: false,
        }))
    }
}

/// A host requirement being declared: `let h1 = host("h1"); h1.nic(..)`.
#[derive(Clone)]
pub struct HostDecl {
    idx: usize,
    state: Rc<RefCell<DeclState>>,
}

type R<T> = Result<T, Box<EvalAltResult>>;

fn err<T>(msg: impl Into<String>) -> R<T> {
    Err(msg.into().into())
}

fn open(state: &Rc<RefCell<DeclState>>, what: &str) -> R<()> {
    if state.borrow().importing {
        return err(format!(
            "{what}() declares the recipe: a module's top level cannot; call it from the recipe's top level (a module's function may)"
        ));
    }
    if state.borrow().closed {
        return err(format!(
            "{what}() declares the recipe: call it at the top level, not inside fn test"
        ));
    }
    Ok(())
}

fn check_name(kind: &str, name: &str, max: usize) -> R<()> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if ok {
        Ok(())
    } else {
        err(format!(
            "{kind} name {name:?} is not valid: use 1 to {max} letters, digits, '_', '-' or '.'"
        ))
    }
}

fn param(
    state: &Rc<RefCell<DeclState>>,
    ctx: &NativeCallContext,
    name: &str,
    default: Dynamic,
    help: Option<String>,
    ty: Option<&str>,
) -> R<Dynamic> {
    open(state, "param")?;
    let ty = match ty {
        None => None,
        Some(t) => {
            if !default.is_unit() {
                return err(format!(
                    "param {name:?}: a type is given only with a () default (a required param); \
                     otherwise the type is the default's"
                ));
            }
            Some(params::ParamType::parse(t).map_err(|e| format!("param {name:?}: {e}"))?)
        }
    };
    check_name("param", name, 64)?;
    let mut st = state.borrow_mut();
    if st.params.iter().any(|p| p.name == name) {
        return Err(params::ParamError::Redeclared { name: name.into() }
            .to_string()
            .into());
    }
    let mut d = params::declare_typed(name, to_json(&default), help, ty, &st.overrides)
        .map_err(|e| -> Box<EvalAltResult> { e.to_string().into() })?;
    let p = ctx.call_position();
    d.pos = p.line().map(|l| (l, p.position().unwrap_or(1)));
    let v = d.value.as_ref().map(to_dynamic).unwrap_or(Dynamic::UNIT);
    st.params.push(d);
    Ok(v)
}

fn host(state: &Rc<RefCell<DeclState>>, name: &str, params: Map) -> R<HostDecl> {
    open(state, "host")?;
    check_name("host", name, 32)?;
    let mut st = state.borrow_mut();
    if st.hosts.iter().any(|h| h.name == name) {
        return err(format!("host {name:?} declared twice"));
    }
    st.hosts.push(HostReq {
        name: name.into(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), to_json(v)))
            .collect(),
        nics: Vec::new(),
    });
    Ok(HostDecl {
        idx: st.hosts.len() - 1,
        state: Rc::clone(state),
    })
}

fn nic(h: &mut HostDecl, name: &str, mut attrs: Map) -> R<HostDecl> {
    open(&h.state, "nic")?;
    // Interface names: at most 15 bytes (IFNAMSIZ - 1), as `ip link` needs.
    check_name("nic", name, 15)?;
    let net = match attrs.remove("net") {
        None => None,
        Some(v) if v.is_unit() => None,
        Some(v) if v.is_string() => Some(v.to_string()),
        Some(v) => {
            return err(format!(
                "nic {name}: `net` must be a string label, not {}",
                v.type_name()
            ))
        }
    };
    if let Some(l) = &net {
        check_name("net label", l, 32)?;
    }
    let mut st = h.state.borrow_mut();
    let hr = &mut st.hosts[h.idx];
    if hr.nics.iter().any(|n| n.name == name) {
        return err(format!("host {}: nic {name:?} declared twice", hr.name));
    }
    hr.nics.push(NicReq {
        name: name.into(),
        net,
        attrs: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), to_json(v)))
            .collect(),
    });
    Ok(h.clone())
}

/// Registers `param`, `host` and `nic`.
pub fn register(engine: &mut Engine, state: Rc<RefCell<DeclState>>) {
    engine.register_type_with_name::<HostDecl>("HostRequirement");
    let s = Rc::clone(&state);
    engine.register_fn(
        "param",
        move |ctx: NativeCallContext, name: &str, default: Dynamic| {
            param(&s, &ctx, name, default, None, None)
        },
    );
    let s = Rc::clone(&state);
    engine.register_fn(
        "param",
        move |ctx: NativeCallContext, name: &str, default: Dynamic, help: &str| {
            param(&s, &ctx, name, default, Some(help.to_string()), None)
        },
    );
    let s = Rc::clone(&state);
    engine.register_fn(
        "param",
        move |ctx: NativeCallContext, name: &str, default: Dynamic, help: &str, ty: &str| {
            param(&s, &ctx, name, default, Some(help.to_string()), Some(ty))
        },
    );
    let s = Rc::clone(&state);
    engine.register_fn("host", move |name: &str| host(&s, name, Map::new()));
    let s = Rc::clone(&state);
    engine.register_fn("host", move |name: &str, params: Map| {
        host(&s, name, params)
    });
    engine.register_fn("nic", |h: &mut HostDecl, name: &str| {
        nic(h, name, Map::new())
    });
    engine.register_fn("nic", nic);
    engine.register_get("name", |h: &mut HostDecl| {
        h.state.borrow().hosts[h.idx].name.clone()
    });
}

/// The leading `//!` block of a recipe, without the markers.
pub fn description(source: &str) -> String {
    source
        .lines()
        .skip_while(|l| l.trim().is_empty() || l.starts_with("#!"))
        .map_while(|l| l.trim_start().strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

/// The result of the phase.
pub fn finish(state: &Rc<RefCell<DeclState>>, description: String) -> Declared {
    let st = state.borrow();
    Declared {
        description,
        params: st.params.clone(),
        requirements: Requirements {
            hosts: st.hosts.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_block() {
        let s = "//! Two hosts\n//! ping.\n\nlet x = 1; //! not this\n";
        assert_eq!(description(s), "Two hosts\nping.");
        assert_eq!(description("let a = 1;\n"), "");
    }
}
