//! The agent's configuration file, `/etc/lnst/agent.toml` (`--config` for
//! another path).
//!
//! Read once at start, before the listeners open: listen addresses, the
//! unix socket, the agent's key file, the controller keys it accepts, the
//! state (journal) directory, the log level, and `insecure`. Unknown keys
//! are errors naming the file and line, so a typo (`accepted_key`) never
//! silently leaves an agent open or closed. Command-line flags override
//! the file; [`AgentConfig::server_auth`] turns it into what
//! `lnst_common::secure::server_accept` needs, failing with a clear
//! message when no key is configured.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lnst_common::secure::{KeyError, KeyPair, PublicKey, ServerAuth};
use serde::Deserialize;

/// Where the agent looks for its configuration without `--config`.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/lnst/agent.toml";
/// Where `lnst-agent keygen` writes, and the agent reads, its key.
pub const DEFAULT_KEY_FILE: &str = "/etc/lnst/agent.key";
/// Default undo-journal directory (RECIPES.md §9).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/lnst-agent";
/// Default TCP port when `listen` is given without one.
pub const DEFAULT_PORT: u16 = 9999;

/// What can be wrong with the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Parse {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    #[error("no agent key: {0}; or start the agent with --insecure (unauthenticated, for isolated labs only)")]
    NoKey(KeyError),
    #[error(transparent)]
    Key(KeyError),
}

/// One accepted controller key, with the comment written after it
/// (`"lnst1:… alice@laptop"`, like `authorized_keys`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedKey {
    pub key: PublicKey,
    pub comment: String,
}

/// The agent's configuration, defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// The file it came from (for messages), or the default path.
    pub path: PathBuf,
    /// TCP addresses to listen on (`--listen` adds to / replaces these).
    pub listen: Vec<SocketAddr>,
    /// Unix socket path, created 0600.
    pub unix: Option<PathBuf>,
    /// The agent's private key (0600).
    pub key_file: PathBuf,
    /// Controller keys allowed to connect over TCP.
    pub accepted_keys: Vec<AcceptedKey>,
    /// Undo journal directory (`--state-dir` overrides).
    pub state_dir: PathBuf,
    /// A `tracing` filter (`info`, `lnst_agent=debug`, …).
    pub log_level: String,
    /// Plain TCP without authentication; also needs `--insecure` on the
    /// controller.
    pub insecure: bool,
    /// Bound on a connection's handshake.
    pub handshake_timeout: Duration,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            path: PathBuf::from(DEFAULT_CONFIG_PATH),
            listen: Vec::new(),
            unix: None,
            key_file: PathBuf::from(DEFAULT_KEY_FILE),
            accepted_keys: Vec::new(),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            log_level: "info".into(),
            insecure: false,
            handshake_timeout: lnst_common::secure::DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

/// The file as written; every field optional, nothing else allowed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<Vec<String>>,
    unix: Option<PathBuf>,
    key_file: Option<PathBuf>,
    accepted_keys: Option<Vec<String>>,
    state_dir: Option<PathBuf>,
    log_level: Option<String>,
    insecure: Option<bool>,
    handshake_timeout_secs: Option<u64>,
}

/// Parses `ADDR:PORT`, `[V6]:PORT`, or a bare address (default port).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let ip = s
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .map_err(|_| format!("listen address {s:?} is not ADDR:PORT (e.g. \"0.0.0.0:{DEFAULT_PORT}\" or \"[::]:{DEFAULT_PORT}\")"))?;
    Ok(SocketAddr::new(ip, DEFAULT_PORT))
}

/// Parses an accepted-key line: the key, then an optional comment.
pub fn parse_accepted(s: &str) -> Result<AcceptedKey, String> {
    let s = s.trim();
    let (key, comment) = s.split_once(char::is_whitespace).unwrap_or((s, ""));
    let key = key.parse::<PublicKey>().map_err(|e| e.to_string())?;
    Ok(AcceptedKey {
        key,
        comment: comment.trim().to_string(),
    })
}

/// 1-based line of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// Finds the line where the string `needle` appears as a value, for
/// errors found after TOML parsing (a bad key or address).
fn line_of_value(text: &str, needle: &str) -> Option<usize> {
    text.find(needle).map(|at| line_of(text, at))
}

impl AgentConfig {
    /// Parses configuration `text`; `path` is only for messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let perr = |line, message: String| ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            message,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            perr(line, e.message().to_string())
        })?;
        let mut c = AgentConfig {
            path: path.to_path_buf(),
            ..AgentConfig::default()
        };
        if let Some(l) = raw.listen {
            c.listen = l
                .iter()
                .map(|s| parse_listen(s).map_err(|m| perr(line_of_value(text, s), m)))
                .collect::<Result<_, _>>()?;
        }
        if let Some(k) = raw.accepted_keys {
            for s in &k {
                let a = parse_accepted(s).map_err(|m| perr(line_of_value(text, s), m))?;
                if !c.accepted_keys.iter().any(|x| x.key == a.key) {
                    c.accepted_keys.push(a);
                }
            }
        }
        c.unix = raw.unix;
        if let Some(k) = raw.key_file {
            c.key_file = k;
        }
        if let Some(d) = raw.state_dir {
            c.state_dir = d;
        }
        if let Some(l) = raw.log_level {
            if l.trim().is_empty() {
                return Err(perr(None, "log_level is empty".into()));
            }
            c.log_level = l;
        }
        c.insecure = raw.insecure.unwrap_or(false);
        if let Some(t) = raw.handshake_timeout_secs {
            if t == 0 {
                return Err(perr(
                    None,
                    "handshake_timeout_secs must be at least 1".into(),
                ));
            }
            c.handshake_timeout = Duration::from_secs(t);
        }
        Ok(c)
    }

    /// Reads the file at `path`. If the file is missing and `explicit` is
    /// false (no `--config` given), the defaults are used.
    pub fn load(path: &Path, explicit: bool) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(AgentConfig {
                path: path.to_path_buf(),
                ..AgentConfig::default()
            }),
            Err(e) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                error: e,
            }),
        }
    }

    /// The accepted keys alone.
    pub fn accepted(&self) -> Vec<PublicKey> {
        self.accepted_keys.iter().map(|a| a.key).collect()
    }

    /// What the TCP listener enforces: plain when `insecure`, otherwise the
    /// agent's key (loaded now, refused if missing or readable by others)
    /// and the accepted controller keys. An empty `accepted_keys` is
    /// allowed (each refused controller is told how to get in) but the
    /// caller should warn at start.
    pub fn server_auth(&self) -> Result<ServerAuth, ConfigError> {
        if self.insecure {
            return Ok(ServerAuth::Insecure);
        }
        let ours = KeyPair::load(&self.key_file, "lnst-agent keygen").map_err(|e| match e {
            KeyError::Missing { .. } => ConfigError::NoKey(e),
            e => ConfigError::Key(e),
        })?;
        Ok(ServerAuth::Noise {
            ours,
            accepted: self.accepted(),
            config: self.path.display().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lnst_common::secure::keygen;
    use std::os::unix::fs::PermissionsExt;

    fn p() -> PathBuf {
        PathBuf::from("/etc/lnst/agent.toml")
    }

    #[test]
    fn full_file_parses() {
        let k1 = KeyPair::generate().unwrap();
        let k2 = KeyPair::generate().unwrap();
        let text = format!(
            r#"
# lab agent
listen = ["0.0.0.0:9999", "[::1]:7000", "192.0.2.1"]
unix = "/run/lnst/agent.sock"
key_file = "/etc/lnst/other.key"
accepted_keys = [
  "{} alice@laptop",
  "{}",
]
state_dir = "/var/lib/lnst-b"
log_level = "lnst_agent=debug"
handshake_timeout_secs = 3
"#,
            k1.public(),
            k2.public()
        );
        let c = AgentConfig::parse(&text, &p()).unwrap();
        assert_eq!(
            c.listen,
            vec![
                "0.0.0.0:9999".parse().unwrap(),
                "[::1]:7000".parse().unwrap(),
                "192.0.2.1:9999".parse().unwrap()
            ]
        );
        assert_eq!(c.unix.as_deref(), Some(Path::new("/run/lnst/agent.sock")));
        assert_eq!(c.key_file, Path::new("/etc/lnst/other.key"));
        assert_eq!(c.accepted(), vec![*k1.public(), *k2.public()]);
        assert_eq!(c.accepted_keys[0].comment, "alice@laptop");
        assert_eq!(c.state_dir, Path::new("/var/lib/lnst-b"));
        assert_eq!(c.log_level, "lnst_agent=debug");
        assert_eq!(c.handshake_timeout, Duration::from_secs(3));
        assert!(!c.insecure);
    }

    #[test]
    fn packaged_example_parses() {
        let text = include_str!("../../packaging/agent.toml.example");
        let c = AgentConfig::parse(text, &p()).unwrap();
        assert_eq!(c.listen, vec!["0.0.0.0:9999".parse().unwrap()]);
        assert!(!c.insecure && c.accepted_keys.is_empty());
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = AgentConfig::parse("", &p()).unwrap();
        assert_eq!(c, AgentConfig::default());
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let e = AgentConfig::parse("log_level = \"info\"\n\naccepted_key = []\n", &p())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/etc/lnst/agent.toml line 3:") && e.contains("accepted_key"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_the_line() {
        let e = AgentConfig::parse("listen = [\n  \"nonsense\",\n]\n", &p())
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("nonsense"), "{e}");
        let e = AgentConfig::parse("\naccepted_keys = [\"lnst1:short\"]\n", &p())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 2") && e.contains("invalid public key"),
            "{e}"
        );
        let e = AgentConfig::parse("insecure = \"yes\"\n", &p())
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn missing_file_is_fine_only_without_config_flag() {
        let path =
            std::env::temp_dir().join(format!("lnst-cfg-missing-{}.toml", std::process::id()));
        assert_eq!(AgentConfig::load(&path, false).unwrap().listen, vec![]);
        let e = AgentConfig::load(&path, true).unwrap_err().to_string();
        assert!(e.contains("cannot read"), "{e}");
    }

    #[test]
    fn server_auth_loads_the_key_or_explains() {
        let dir = std::env::temp_dir().join(format!("lnst-cfg-auth-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let key_file = dir.join("agent.key");
        let mut c = AgentConfig {
            key_file: key_file.clone(),
            ..AgentConfig::default()
        };
        let e = c.server_auth().unwrap_err().to_string();
        assert!(
            e.contains("lnst-agent keygen") && e.contains("--insecure"),
            "{e}"
        );

        let kp = keygen(&key_file, false).unwrap();
        let ctl = KeyPair::generate().unwrap();
        c.accepted_keys.push(AcceptedKey {
            key: *ctl.public(),
            comment: String::new(),
        });
        match c.server_auth().unwrap() {
            ServerAuth::Noise { ours, accepted, .. } => {
                assert_eq!(ours.public(), kp.public());
                assert_eq!(accepted, vec![*ctl.public()]);
            }
            ServerAuth::Insecure => panic!("insecure without asking"),
        }
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = c.server_auth().unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");

        c.insecure = true;
        assert!(matches!(c.server_auth().unwrap(), ServerAuth::Insecure));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
