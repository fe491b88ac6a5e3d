//! Typed checking of module options, done when the recipe calls `ping(..)`,
//! before any job runs.
//!
//! Each module declares its options as a table of [`OptSpec`]s; [`check`]
//! rejects an unknown key, a value of the wrong type or a missing required
//! key with a [`ModuleError`] that names the module, the option and every
//! accepted option with its type. The typed getters then read values that
//! are known to have the right type.

use serde_json::Value;

use super::Opts;

/// The type an option accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptType {
    Str,
    Int,
    /// A float; an int is accepted too.
    Float,
    Bool,
    /// A rate in bits per second: an int, or a string with an optional
    /// K/M/G suffix as iperf3's `-b` takes (`"10M"`).
    Bitrate,
    /// Anything (e.g. host objects that the runtime handles itself).
    Any,
}

impl OptType {
    /// The type's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            OptType::Str => "string",
            OptType::Int => "int",
            OptType::Float => "float",
            OptType::Bool => "bool",
            OptType::Bitrate => "int or string like \"10M\"",
            OptType::Any => "any",
        }
    }

    fn accepts(self, v: &Value) -> bool {
        match self {
            OptType::Str => v.is_string(),
            OptType::Int => v.is_i64() || v.is_u64(),
            OptType::Float => v.is_number(),
            OptType::Bool => v.is_boolean(),
            OptType::Bitrate => v.is_i64() || v.is_u64() || v.is_string(),
            OptType::Any => true,
        }
    }
}

/// One accepted option of a module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptSpec {
    pub name: &'static str,
    pub ty: OptType,
    pub required: bool,
}

impl OptSpec {
    /// An optional option.
    pub const fn opt(name: &'static str, ty: OptType) -> OptSpec {
        OptSpec {
            name,
            ty,
            required: false,
        }
    }

    /// A required option.
    pub const fn req(name: &'static str, ty: OptType) -> OptSpec {
        OptSpec {
            name,
            ty,
            required: true,
        }
    }
}

/// Why a module call was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModuleError {
    #[error("unknown module {module:?}; modules: {}", known.join(", "))]
    UnknownModule {
        module: String,
        known: Vec<&'static str>,
    },
    #[error("{module}: unknown option {option:?}; accepted: {accepted}")]
    UnknownOption {
        module: String,
        option: String,
        accepted: String,
    },
    #[error("{module}: option {option:?} must be {expected}, got {got}; accepted: {accepted}")]
    WrongType {
        module: String,
        option: String,
        expected: &'static str,
        got: String,
        accepted: String,
    },
    #[error("{module}: option {option:?} is required; accepted: {accepted}")]
    Missing {
        module: String,
        option: String,
        accepted: String,
    },
    #[error("{module}: option {option:?}: {message}")]
    BadValue {
        module: String,
        option: String,
        message: String,
    },
}

/// `dst (string, required), count (int), ..` for messages.
pub fn describe(specs: &[OptSpec]) -> String {
    specs
        .iter()
        .map(|s| {
            if s.required {
                format!("{} ({}, required)", s.name, s.ty.name())
            } else {
                format!("{} ({})", s.name, s.ty.name())
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks that every key of `opts` is in `specs` with the right type and
/// every required key is present. Keys are checked in sorted order so the
/// first error is stable.
pub fn check(module: &str, specs: &[OptSpec], opts: &Opts) -> Result<(), ModuleError> {
    let mut keys: Vec<&String> = opts.keys().collect();
    keys.sort();
    for key in keys {
        let Some(spec) = specs.iter().find(|s| s.name == key.as_str()) else {
            return Err(ModuleError::UnknownOption {
                module: module.into(),
                option: key.clone(),
                accepted: describe(specs),
            });
        };
        let v = &opts[key.as_str()];
        if !spec.ty.accepts(v) {
            return Err(ModuleError::WrongType {
                module: module.into(),
                option: key.clone(),
                expected: spec.ty.name(),
                got: describe_value(v),
                accepted: describe(specs),
            });
        }
    }
    if let Some(s) = specs
        .iter()
        .find(|s| s.required && !opts.contains_key(s.name))
    {
        return Err(ModuleError::Missing {
            module: module.into(),
            option: s.name.into(),
            accepted: describe(specs),
        });
    }
    Ok(())
}

/// `string "five"`, `float 2.5`, ..
fn describe_value(v: &Value) -> String {
    match v {
        Value::Null => "()".into(),
        Value::Bool(b) => format!("bool {b}"),
        Value::Number(n) if n.is_f64() => format!("float {n}"),
        Value::Number(n) => format!("int {n}"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "array".into(),
        Value::Object(_) => "map".into(),
    }
}

/// A [`ModuleError::BadValue`].
pub fn bad(module: &str, option: &str, message: impl Into<String>) -> ModuleError {
    ModuleError::BadValue {
        module: module.into(),
        option: option.into(),
        message: message.into(),
    }
}

/// A string option (checked by [`check`] first).
pub fn get_str(opts: &Opts, name: &str) -> Option<String> {
    opts.get(name).and_then(Value::as_str).map(String::from)
}

/// An int option (checked by [`check`] first).
pub fn get_int(opts: &Opts, name: &str) -> Option<i64> {
    opts.get(name).and_then(Value::as_i64)
}

/// A float option; ints convert (checked by [`check`] first).
pub fn get_float(opts: &Opts, name: &str) -> Option<f64> {
    opts.get(name).and_then(Value::as_f64)
}

/// A bool option (checked by [`check`] first).
pub fn get_bool(opts: &Opts, name: &str) -> Option<bool> {
    opts.get(name).and_then(Value::as_bool)
}

/// An int option that must lie in `min..=max`.
pub fn get_int_in(
    module: &str,
    opts: &Opts,
    name: &str,
    min: i64,
    max: i64,
) -> Result<Option<i64>, ModuleError> {
    match get_int(opts, name) {
        Some(v) if v < min || v > max => Err(bad(
            module,
            name,
            format!("{v} is out of range {min}..={max}"),
        )),
        v => Ok(v),
    }
}

/// A float option that must lie in `min..=max`.
pub fn get_float_in(
    module: &str,
    opts: &Opts,
    name: &str,
    min: f64,
    max: f64,
) -> Result<Option<f64>, ModuleError> {
    match get_float(opts, name) {
        Some(v) if !(min..=max).contains(&v) => Err(bad(
            module,
            name,
            format!("{v} is out of range {min}..={max}"),
        )),
        v => Ok(v),
    }
}

/// A string option that must not be empty or contain whitespace (an
/// address, an interface name).
pub fn get_word(module: &str, opts: &Opts, name: &str) -> Result<Option<String>, ModuleError> {
    match get_str(opts, name) {
        Some(s) if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            Err(bad(module, name, format!("{s:?} is not a single word")))
        }
        v => Ok(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SPECS: &[OptSpec] = &[
        OptSpec::req("dst", OptType::Str),
        OptSpec::opt("count", OptType::Int),
        OptSpec::opt("interval", OptType::Float),
        OptSpec::opt("bitrate", OptType::Bitrate),
    ];

    fn o(v: Value) -> Opts {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn accepts_right_types() {
        check(
            "m",
            SPECS,
            &o(json!({"dst": "x", "count": 3, "interval": 1})),
        )
        .unwrap();
        check(
            "m",
            SPECS,
            &o(json!({"dst": "x", "interval": 0.5, "bitrate": "10M"})),
        )
        .unwrap();
        check("m", SPECS, &o(json!({"dst": "x", "bitrate": 1000}))).unwrap();
    }

    #[test]
    fn unknown_key_names_it_and_lists_accepted() {
        let e = check("ping", SPECS, &o(json!({"dst": "x", "cuont": 3}))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ping: unknown option \"cuont\"; accepted: dst (string, required), count (int), \
             interval (float), bitrate (int or string like \"10M\")"
        );
    }

    #[test]
    fn wrong_type_names_option_type_and_value() {
        let e = check("ping", SPECS, &o(json!({"dst": "x", "count": "five"}))).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("ping: option \"count\" must be int, got string \"five\";"),
            "{e}"
        );
        let e = check("ping", SPECS, &o(json!({"dst": "x", "count": 2.5}))).unwrap_err();
        assert!(e.to_string().contains("got float 2.5"), "{e}");
        let e = check("ping", SPECS, &o(json!({"dst": 1}))).unwrap_err();
        assert!(e.to_string().contains("\"dst\" must be string"), "{e}");
    }

    #[test]
    fn missing_required_is_named() {
        let e = check("ping", SPECS, &o(json!({"count": 1}))).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("ping: option \"dst\" is required"),
            "{e}"
        );
    }

    #[test]
    fn ranges_and_words() {
        let m = o(json!({"count": 0, "interval": -1.0, "dst": "a b"}));
        assert!(get_int_in("ping", &m, "count", 1, 10)
            .unwrap_err()
            .to_string()
            .contains("count"));
        assert!(get_float_in("ping", &m, "interval", 0.0, 10.0).is_err());
        assert!(get_word("ping", &m, "dst").is_err());
        assert_eq!(get_int_in("ping", &m, "missing", 1, 2).unwrap(), None);
    }
}
