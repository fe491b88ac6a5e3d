//! Pools: one TOML file per machine in a directory (RECIPES.md §10). The
//! file name without `.toml` is the machine id.
//!
//! ```toml
//! address = "192.0.2.10:9999"        # or "unix:/run/lnst/agent.sock"
//! key = "lnst1:…"                    # the agent's public key (TCP only)
//! [params]
//! arch = "x86_64"
//! [[nic]]
//! name = "ens1f0"
//! net = "tnet1"
//! driver = "ixgbe"
//! speed = 10000
//! ```
//!
//! Parsing only: the [`crate::mapper`] matches requirements against a
//! [`Pool`], `pool check` connects to the addresses. Errors name the file
//! and the line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lnst_common::secure::PublicKey;
use serde_json::Value;

/// One machine of a pool.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Machine {
    /// The file name without `.toml`.
    pub id: String,
    /// `HOST:PORT` or `unix:/path`.
    pub address: String,
    /// `[params]`: what `host(name, #{ k: v })` matches against.
    pub params: BTreeMap<String, Value>,
    pub nics: Vec<PoolNic>,
    /// Other top-level keys, kept as they are; `key` (the agent's pinned
    /// public key, checked when the file is read) among them: use
    /// [`Machine::agent_key`].
    pub extra: BTreeMap<String, Value>,
    pub file: PathBuf,
}

impl Machine {
    /// The agent public key this file pins (`key = "lnst1:…"`), which the
    /// TCP handshake requires the agent to present. Checked by
    /// [`parse_machine`], so a present key always parses here.
    pub fn agent_key(&self) -> Option<PublicKey> {
        self.extra
            .get("key")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
    }
}

/// One `[[nic]]` of a machine.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PoolNic {
    pub name: String,
    /// The pool network this NIC is cabled to; `None`: not cabled.
    pub net: Option<String>,
    /// Every key of the table, `name` and `net` included, for matching
    /// `nic(name, #{ driver: .., speed: .. })`.
    pub attrs: BTreeMap<String, Value>,
}

/// All machines of a pool directory, sorted by id.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Pool {
    pub machines: Vec<Machine>,
}

/// Why a pool could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("cannot read pool directory {dir}: {error} (give the pool with --pool DIR: one TOML file per machine)")]
    Dir { dir: PathBuf, error: std::io::Error },
    #[error("cannot read {file}: {error}")]
    Read {
        file: PathBuf,
        error: std::io::Error,
    },
    #[error("{file}:{line}: {message}")]
    Invalid {
        file: PathBuf,
        line: usize,
        message: String,
    },
    #[error("pool directory {dir} holds no *.toml machine files")]
    Empty { dir: PathBuf },
}

/// Reads every `*.toml` file of `dir`.
pub fn load_dir(dir: &Path) -> Result<Pool, PoolError> {
    let rd = std::fs::read_dir(dir).map_err(|error| PoolError::Dir {
        dir: dir.to_path_buf(),
        error,
    })?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(PoolError::Empty {
            dir: dir.to_path_buf(),
        });
    }
    let mut machines = Vec::with_capacity(files.len());
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|error| PoolError::Read {
            file: file.clone(),
            error,
        })?;
        let id = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        machines.push(parse_machine(&id, &file, &text)?);
    }
    Ok(Pool { machines })
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Parses one machine file.
pub fn parse_machine(id: &str, file: &Path, text: &str) -> Result<Machine, PoolError> {
    let invalid = |offset: Option<usize>, message: String| PoolError::Invalid {
        file: file.to_path_buf(),
        line: offset.map(|o| line_of(text, o)).unwrap_or(1),
        message,
    };
    let doc: toml::Spanned<toml::Table> = toml::from_str(text)
        .map_err(|e| invalid(e.span().map(|s| s.start), e.message().to_string()))?;
    // Spans of top-level keys and of each [[nic]] table, for error lines.
    let key_line = |key: &str| -> Option<usize> {
        text.lines()
            .position(|l| {
                let l = l.trim_start();
                l.starts_with(key) && l[key.len()..].trim_start().starts_with('=')
            })
            .map(|i| i + 1)
    };
    let nic_lines: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim().starts_with("[[nic]]"))
        .map(|(i, _)| i + 1)
        .collect();
    let at = |line: Option<usize>, message: String| PoolError::Invalid {
        file: file.to_path_buf(),
        line: line.unwrap_or(1),
        message,
    };
    let mut table = doc.into_inner();
    let address = match table.remove("address") {
        Some(toml::Value::String(s)) => s,
        Some(_) => return Err(at(key_line("address"), "`address` must be a string".into())),
        None => {
            return Err(at(
                Some(1),
                "missing `address = \"HOST:PORT\"` (or \"unix:/path\")".into(),
            ))
        }
    };
    check_address(&address).map_err(|m| at(key_line("address"), m))?;
    match table.get("key") {
        None => {}
        Some(toml::Value::String(k)) => {
            k.parse::<PublicKey>().map_err(|e| {
                at(
                    key_line("key"),
                    format!("`key` is not an agent public key: {e}"),
                )
            })?;
        }
        Some(_) => {
            return Err(at(
                key_line("key"),
                "`key` must be a string: the agent's public key, key = \"lnst1:…\" \
                 (printed by `lnst-agent keygen`)"
                    .into(),
            ))
        }
    }
    let params = match table.remove("params") {
        Some(toml::Value::Table(t)) => t.into_iter().map(|(k, v)| (k, to_json(v))).collect(),
        Some(_) => return Err(at(key_line("params"), "`params` must be a table".into())),
        None => BTreeMap::new(),
    };
    let mut nics = Vec::new();
    match table.remove("nic") {
        None => {}
        Some(toml::Value::Array(a)) => {
            for (i, v) in a.into_iter().enumerate() {
                let line = nic_lines.get(i).copied();
                let toml::Value::Table(t) = v else {
                    return Err(at(line, "each `[[nic]]` must be a table".into()));
                };
                let attrs: BTreeMap<String, Value> =
                    t.into_iter().map(|(k, v)| (k, to_json(v))).collect();
                let name = match attrs.get("name") {
                    Some(Value::String(s)) if !s.is_empty() => s.clone(),
                    _ => return Err(at(line, "`[[nic]]` needs `name = \"IFNAME\"`".into())),
                };
                let net = match attrs.get("net") {
                    None => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(_) => return Err(at(line, format!("nic {name}: `net` must be a string"))),
                };
                if nics.iter().any(|n: &PoolNic| n.name == name) {
                    return Err(at(line, format!("nic {name} listed twice")));
                }
                nics.push(PoolNic { name, net, attrs });
            }
        }
        Some(_) => {
            return Err(at(
                key_line("nic"),
                "`nic` must be an array of tables: write `[[nic]]`".into(),
            ))
        }
    }
    let extra = table.into_iter().map(|(k, v)| (k, to_json(v))).collect();
    Ok(Machine {
        id: id.to_string(),
        address,
        params,
        nics,
        extra,
        file: file.to_path_buf(),
    })
}

/// Checks the form of an agent address: `ADDR:PORT` or `unix:/path`, as
/// [`crate::client::AgentAddr`] parses it.
pub fn check_address(a: &str) -> Result<(), String> {
    let parsed: crate::client::AgentAddr = a.parse()?;
    if let crate::client::AgentAddr::Unix(p) = parsed {
        if !p.is_absolute() {
            return Err(format!(
                "address {a:?}: a unix socket path must be absolute"
            ));
        }
    }
    Ok(())
}

/// TOML to JSON (datetimes become strings).
pub fn to_json(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.into_iter().map(to_json).collect()),
        toml::Value::Table(t) => {
            Value::Object(t.into_iter().map(|(k, v)| (k, to_json(v))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = r#"
address = "192.0.2.10:9999"
[params]
arch = "x86_64"
[[nic]]
name = "ens1f0"
net = "tnet1"
driver = "ixgbe"
speed = 10000
[[nic]]
name = "ens1f1"
"#;

    #[test]
    fn parses_the_spec_example() {
        let m = parse_machine("host-a", Path::new("host-a.toml"), A).unwrap();
        assert_eq!(m.id, "host-a");
        assert_eq!(m.params["arch"], "x86_64");
        assert_eq!(m.nics.len(), 2);
        assert_eq!(m.nics[0].net.as_deref(), Some("tnet1"));
        assert_eq!(m.nics[0].attrs["speed"], 10000);
        assert_eq!(m.nics[1].net, None);
    }

    #[test]
    fn errors_name_file_and_line() {
        let bad = "address = \"1.2.3.4:1\"\n[[nic]]\nname = \"a\"\n[[nic]]\nnet = \"x\"\n";
        let e = parse_machine("m", Path::new("p/m.toml"), bad)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("p/m.toml:4:") && e.contains("name"), "{e}");
        let e = parse_machine(
            "m",
            Path::new("m.toml"),
            "address = \"1.2.3.4:1\"\nx = = 1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("m.toml:2:"), "{e}");
        let e = parse_machine("m", Path::new("m.toml"), "\n\naddress = \"nowhere\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("m.toml:3:"), "{e}");
        assert!(parse_machine("m", Path::new("m.toml"), "[params]\n").is_err());
    }

    #[test]
    fn key_pins_the_agent_and_bad_keys_name_the_line() {
        let k = lnst_common::secure::KeyPair::generate().unwrap();
        let text = format!("address = \"192.0.2.1:9999\"\nkey = \"{}\"\n", k.public());
        let m = parse_machine("m", Path::new("m.toml"), &text).unwrap();
        assert_eq!(m.agent_key(), Some(*k.public()));
        let m = parse_machine("m", Path::new("m.toml"), "address = \"192.0.2.1:9\"\n").unwrap();
        assert_eq!(m.agent_key(), None);
        let e = parse_machine(
            "m",
            Path::new("p/m.toml"),
            "address = \"192.0.2.1:9\"\n\nkey = \"lnst1:AAAA\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("p/m.toml:3:") && e.contains("invalid public key"),
            "{e}"
        );
        let e = parse_machine(
            "m",
            Path::new("m.toml"),
            "address = \"192.0.2.1:9\"\nkey = 5\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("m.toml:2:") && e.contains("lnst-agent keygen"),
            "{e}"
        );
    }

    #[test]
    fn addresses() {
        assert!(check_address("unix:/run/a.sock").is_ok());
        assert!(check_address("192.0.2.1:9999").is_ok());
        assert!(check_address("[fd00::1]:9999").is_ok());
        assert!(check_address("unix:rel").is_err());
        assert!(check_address("1.2.3.4").is_err());
    }

    #[test]
    fn load_dir_sorts_and_names_by_file() {
        let d = std::env::temp_dir().join(format!("lnst-pool-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("b.toml"), A).unwrap();
        std::fs::write(d.join("a.toml"), "address = \"unix:/x\"\n").unwrap();
        std::fs::write(d.join("README"), "not a machine").unwrap();
        let p = load_dir(&d).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
        let ids: Vec<_> = p.machines.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
    }
}
