//! `lnst-ctl keygen`: creates the controller's key pair and prints the line
//! every agent must list in its `accepted_keys`.
//!
//! The key lives in `$XDG_CONFIG_HOME/lnst/controller.key` (else
//! `~/.config/lnst/controller.key`), mode 0600; `lnst-ctl run` loads it from
//! there (or `--key`) to authenticate to agents over TCP.

use std::path::{Path, PathBuf};

use anyhow::Context;
use lnst_common::secure::{keygen, KeyPair};

/// The controller's key file when none is named: under
/// `$XDG_CONFIG_HOME` or `$HOME/.config`, else `/etc/lnst`.
pub fn default_key_path() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        });
    match base {
        Some(b) => b.join("lnst").join("controller.key"),
        None => PathBuf::from("/etc/lnst/controller.key"),
    }
}

/// What `keygen` prints on stdout after creating the pair at `path`.
pub fn report(kp: &KeyPair, path: &Path) -> String {
    format!(
        "Controller key written to {} (mode 0600).\n\
         public key:  {}\n\
         fingerprint: {}\n\
         \n\
         On each agent, add this line to accepted_keys in /etc/lnst/agent.toml:\n\
         \x20 \"{} {}\",\n",
        path.display(),
        kp.public(),
        kp.public().fingerprint(),
        kp.public(),
        whoami()
    )
}

fn whoami() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "controller".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{user}@{}", host.trim())
}

/// Runs `lnst-ctl keygen [--force] [--key PATH]`: creates the key pair at
/// `path`, refusing to replace an existing one unless `force`.
pub fn keygen_main(path: &Path, force: bool) -> anyhow::Result<()> {
    let kp = keygen(path, force).context("lnst-ctl keygen")?;
    print!("{}", report(&kp, path));
    Ok(())
}

/// Loads the controller's key for `run` (from `path`, or the default),
/// with a message naming `lnst-ctl keygen` when there is none.
pub fn load_key(path: Option<&Path>) -> anyhow::Result<KeyPair> {
    let p = path.map(Path::to_path_buf).unwrap_or_else(default_key_path);
    KeyPair::load(&p, "lnst-ctl keygen").context(
        "no usable controller key (needed for agents over TCP; --insecure skips authentication)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_loads_and_refuses_to_overwrite() {
        let dir = std::env::temp_dir().join(format!("lnst-ctl-keygen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let p = dir.join("controller.key");
        let e = format!("{:#}", load_key(Some(&p)).unwrap_err());
        assert!(e.contains("lnst-ctl keygen"), "{e}");
        keygen_main(&p, false).unwrap();
        let kp = load_key(Some(&p)).unwrap();
        let r = report(&kp, &p);
        assert!(r.contains(&format!("\"{} ", kp.public())), "{r}");
        assert!(keygen_main(&p, false).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn default_path_is_per_user() {
        assert!(default_key_path().ends_with("lnst/controller.key"));
    }
}
