//! Recipe params: declarations made by `param(..)` in the declaration
//! phase and the `-- k=v` overrides from the command line.
//!
//! A param's type is its default's (int, float, bool, string, array, map);
//! a required param (`param(name, (), help)`) is a string unless a type is
//! named (`param(name, (), help, "int")`). Values are kept
//! as JSON so that the summary, `params.json` and the recipe see the same
//! thing; `recipe::api` converts them to Rhai values. Every error here
//! exits 2 before anything runs, naming the param and the declared ones.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

/// The type of a param, taken from its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    Int,
    Float,
    Bool,
    String,
    Array,
    Map,
}

impl ParamType {
    /// The type of a JSON value, `None` for `null` (a required param).
    pub fn of(v: &Value) -> Option<ParamType> {
        Some(match v {
            Value::Null => return None,
            Value::Bool(_) => ParamType::Bool,
            Value::Number(n) if n.is_i64() || n.is_u64() => ParamType::Int,
            Value::Number(_) => ParamType::Float,
            Value::String(_) => ParamType::String,
            Value::Array(_) => ParamType::Array,
            Value::Object(_) => ParamType::Map,
        })
    }
}

impl ParamType {
    /// Every type name, for messages.
    pub const NAMES: &'static str = "int, float, bool, string, array, map";

    /// A type by its name (`"int"`), as a required param declares it.
    pub fn parse(name: &str) -> Result<ParamType, String> {
        Ok(match name {
            "int" => ParamType::Int,
            "float" => ParamType::Float,
            "bool" => ParamType::Bool,
            "string" => ParamType::String,
            "array" => ParamType::Array,
            "map" => ParamType::Map,
            _ => {
                return Err(format!(
                    "unknown type {name:?}; types: {}",
                    ParamType::NAMES
                ))
            }
        })
    }
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParamType::Int => "int",
            ParamType::Float => "float",
            ParamType::Bool => "bool",
            ParamType::String => "string",
            ParamType::Array => "array",
            ParamType::Map => "map",
        })
    }
}

/// One `param(..)` call.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ParamDecl {
    pub name: String,
    pub ty: ParamType,
    /// `None`: required (declared with a `()` default).
    pub default: Option<Value>,
    pub help: Option<String>,
    /// The effective value: the override, else the default; `None` for a
    /// required param that was not given.
    pub value: Option<Value>,
    /// An override that did not parse: reported by [`check`] once every
    /// param is declared, so the error can list them (the declarations go
    /// on with the default meanwhile; they touch no machine).
    #[serde(skip)]
    pub invalid: Option<ParamError>,
    /// Where the recipe declares it (line, column), for error messages.
    #[serde(skip)]
    pub pos: Option<(usize, usize)>,
}

impl ParamDecl {
    pub fn required(&self) -> bool {
        self.default.is_none()
    }
}

/// Why params were refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamError {
    #[error("argument {arg:?} after `--` is not of the form NAME=VALUE")]
    Syntax { arg: String },
    #[error("param {name:?} given twice on the command line")]
    Duplicate { name: String },
    #[error(
        "{at}param {name:?}: {value:?} is not a valid {ty}: {why}; the recipe declares: {}",
        list(declared)
    )]
    BadValue {
        /// `file:line:col: ` of the declaration, or empty.
        at: String,
        name: String,
        ty: ParamType,
        value: String,
        why: String,
        /// Every param the recipe declares (empty until [`check`] fills it).
        declared: Vec<String>,
    },
    #[error("unknown param {name:?}; the recipe declares: {}", list(declared))]
    Unknown { name: String, declared: Vec<String> },
    #[error("required param {name:?} not given; pass it as `-- {name}=VALUE`")]
    Missing { name: String },
    #[error("param {name:?} declared twice in the recipe")]
    Redeclared { name: String },
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "(no params)".to_string()
    } else {
        names.join(", ")
    }
}

/// Splits `k=v` arguments into a map of raw strings.
pub fn parse_overrides(args: &[String]) -> Result<BTreeMap<String, String>, ParamError> {
    let mut out = BTreeMap::new();
    for arg in args {
        let Some((k, v)) = arg.split_once('=') else {
            return Err(ParamError::Syntax { arg: arg.clone() });
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(ParamError::Syntax { arg: arg.clone() });
        }
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(ParamError::Duplicate {
                name: k.to_string(),
            });
        }
    }
    Ok(out)
}

/// Parses a command-line value to the param's type.
pub fn parse_value(name: &str, ty: ParamType, raw: &str) -> Result<Value, ParamError> {
    let bad = |why: String| ParamError::BadValue {
        at: String::new(),
        name: name.to_string(),
        ty,
        value: raw.to_string(),
        why,
        declared: Vec::new(),
    };
    let t = raw.trim();
    match ty {
        ParamType::String => Ok(Value::String(raw.to_string())),
        ParamType::Int => t
            .parse::<i64>()
            .map(Value::from)
            .map_err(|e| bad(e.to_string())),
        ParamType::Float => {
            let f = t.parse::<f64>().map_err(|e| bad(e.to_string()))?;
            serde_json::Number::from_f64(f)
                .map(Value::Number)
                .ok_or_else(|| bad("not a finite number".into()))
        }
        ParamType::Bool => match t.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(Value::Bool(true)),
            "false" | "no" | "off" | "0" => Ok(Value::Bool(false)),
            _ => Err(bad("expected true or false".into())),
        },
        ParamType::Array | ParamType::Map => {
            let v: Value =
                serde_json::from_str(t).map_err(|e| bad(format!("invalid JSON: {e}")))?;
            match (ty, &v) {
                (ParamType::Array, Value::Array(_)) | (ParamType::Map, Value::Object(_)) => Ok(v),
                _ => Err(bad(format!(
                    "expected a JSON {}",
                    if ty == ParamType::Array {
                        "array like [1,2]"
                    } else {
                        "object like {\"k\":1}"
                    }
                ))),
            }
        }
    }
}

/// Builds a declaration from a `param(name, default, help)` call, applying
/// the override if one was given. `default` is `Value::Null` for a
/// required param.
pub fn declare(
    name: &str,
    default: Value,
    help: Option<String>,
    overrides: &BTreeMap<String, String>,
) -> Result<ParamDecl, ParamError> {
    declare_typed(name, default, help, None, overrides)
}

/// [`declare`] with the type of a required param named (`ty`; the
/// default's type otherwise, a string for a required param without one).
pub fn declare_typed(
    name: &str,
    default: Value,
    help: Option<String>,
    ty: Option<ParamType>,
    overrides: &BTreeMap<String, String>,
) -> Result<ParamDecl, ParamError> {
    let ty = ty
        .or_else(|| ParamType::of(&default))
        .unwrap_or(ParamType::String);
    let default = (!default.is_null()).then_some(default);
    let (value, invalid) = match overrides.get(name) {
        Some(raw) => match parse_value(name, ty, raw) {
            Ok(v) => (Some(v), None),
            Err(e) => (default.clone(), Some(e)),
        },
        None => (default.clone(), None),
    };
    Ok(ParamDecl {
        invalid,
        pos: None,
        name: name.to_string(),
        ty,
        default,
        help,
        value,
    })
}

/// After the declaration phase: every override must name a declared param
/// and every required param must have a value. Returns the first error.
/// `file` names the recipe in the position of a bad value.
pub fn check(
    decls: &[ParamDecl],
    overrides: &BTreeMap<String, String>,
    file: &str,
) -> Result<(), ParamError> {
    let declared: Vec<String> = decls.iter().map(|d| d.name.clone()).collect();
    if let Some((e, pos)) = decls
        .iter()
        .find_map(|d| d.invalid.clone().map(|e| (e, d.pos)))
    {
        return Err(match e {
            ParamError::BadValue {
                name,
                ty,
                value,
                why,
                ..
            } => ParamError::BadValue {
                at: pos
                    .map(|(l, c)| format!("{file}:{l}:{c}: "))
                    .unwrap_or_default(),
                name,
                ty,
                value,
                why,
                declared,
            },
            other => other,
        });
    }
    for name in overrides.keys() {
        if !declared.contains(name) {
            return Err(ParamError::Unknown {
                name: name.clone(),
                declared,
            });
        }
    }
    for d in decls {
        if d.value.is_none() {
            return Err(ParamError::Missing {
                name: d.name.clone(),
            });
        }
    }
    Ok(())
}

/// The effective values, for `m.params` and `params.json`.
pub fn values(decls: &[ParamDecl]) -> serde_json::Map<String, Value> {
    decls
        .iter()
        .map(|d| (d.name.clone(), d.value.clone().unwrap_or(Value::Null)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ov(a: &[&str]) -> BTreeMap<String, String> {
        parse_overrides(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn types_from_defaults() {
        let o = ov(&[
            "i=9000",
            "f=2.5",
            "b=false",
            "s=a=b",
            "a=[1,\"x\"]",
            "m={\"k\":1}",
        ]);
        assert_eq!(
            declare("i", json!(1500), None, &o).unwrap().value,
            Some(json!(9000))
        );
        assert_eq!(
            declare("f", json!(1.0), None, &o).unwrap().value,
            Some(json!(2.5))
        );
        assert_eq!(
            declare("b", json!(true), None, &o).unwrap().value,
            Some(json!(false))
        );
        assert_eq!(
            declare("s", json!(""), None, &o).unwrap().value,
            Some(json!("a=b"))
        );
        assert_eq!(
            declare("a", json!([]), None, &o).unwrap().value,
            Some(json!([1, "x"]))
        );
        assert_eq!(
            declare("m", json!({}), None, &o).unwrap().value,
            Some(json!({"k": 1}))
        );
        let d = declare("x", json!(3), Some("h".into()), &o).unwrap();
        assert_eq!(
            (d.ty, d.value, d.help),
            (ParamType::Int, Some(json!(3)), Some("h".into()))
        );
    }

    #[test]
    fn float_accepts_integer_text() {
        assert_eq!(parse_value("f", ParamType::Float, "3").unwrap(), json!(3.0));
    }

    #[test]
    fn bad_values_name_the_param_and_the_declared_ones() {
        let o = ov(&["mtu=big", "a={}", "m=[1]", "b=maybe"]);
        let d = vec![
            declare("count", json!(5), None, &o).unwrap(),
            declare("mtu", json!(1500), None, &o).unwrap(),
        ];
        // The declaration goes on with the default; check reports it.
        assert_eq!(d[1].value, Some(json!(1500)));
        let e = check(&d, &o, "r.rhai").unwrap_err().to_string();
        assert!(
            e.contains("\"mtu\"") && e.contains("int") && e.contains("big"),
            "{e}"
        );
        assert!(e.contains("declares: count, mtu"), "{e}");
        for (n, def) in [("a", json!([])), ("m", json!({})), ("b", json!(true))] {
            let d = declare(n, def, None, &o).unwrap();
            assert!(
                matches!(d.invalid, Some(ParamError::BadValue { .. })),
                "{n}"
            );
        }
    }

    #[test]
    fn a_required_param_can_be_typed() {
        let o = ov(&["mtu=9000", "rate=fast"]);
        let d = declare_typed("mtu", Value::Null, None, Some(ParamType::Int), &o).unwrap();
        assert!(d.required());
        assert_eq!((d.ty, d.value), (ParamType::Int, Some(json!(9000))));
        let d = declare_typed("rate", Value::Null, None, Some(ParamType::Float), &o).unwrap();
        assert!(matches!(d.invalid, Some(ParamError::BadValue { .. })));
        let e = check(&[d], &o, "r.rhai").unwrap_err().to_string();
        assert!(
            e.contains("\"rate\"") && e.contains("float") && e.contains("fast"),
            "{e}"
        );
        assert_eq!(ParamType::parse("map"), Ok(ParamType::Map));
        let e = ParamType::parse("integer").unwrap_err();
        assert!(
            e.contains("\"integer\"") && e.contains(ParamType::NAMES),
            "{e}"
        );
    }

    #[test]
    fn unknown_and_missing() {
        let o = ov(&["mtux=1"]);
        let d = vec![
            declare("mtu", json!(1500), None, &o).unwrap(),
            declare("count", json!(5), None, &o).unwrap(),
        ];
        let e = check(&d, &o, "r.rhai").unwrap_err().to_string();
        assert!(e.contains("mtux") && e.contains("mtu, count"), "{e}");
        let o = ov(&[]);
        let d = vec![declare("peer", Value::Null, Some("x".into()), &o).unwrap()];
        assert!(d[0].required());
        assert_eq!(d[0].ty, ParamType::String);
        assert!(matches!(
            check(&d, &o, "r.rhai"),
            Err(ParamError::Missing { .. })
        ));
        let o = ov(&["peer=10.0.0.1"]);
        let d = vec![declare("peer", Value::Null, None, &o).unwrap()];
        assert!(check(&d, &o, "r.rhai").is_ok());
        assert_eq!(d[0].value, Some(json!("10.0.0.1")));
    }

    #[test]
    fn override_syntax() {
        let a = |s: &[&str]| parse_overrides(&s.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert!(matches!(a(&["novalue"]), Err(ParamError::Syntax { .. })));
        assert!(matches!(a(&["=1"]), Err(ParamError::Syntax { .. })));
        assert!(matches!(
            a(&["a=1", "a=2"]),
            Err(ParamError::Duplicate { .. })
        ));
        assert_eq!(a(&["a="]).unwrap()["a"], "");
    }
}
