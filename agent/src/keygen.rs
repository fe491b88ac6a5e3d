//! `lnst-agent keygen`: creates the agent's key pair and prints what to
//! put in the controller's pool file.
//!
//! The private key goes to `/etc/lnst/agent.key` (or `--key-file`), mode
//! 0600, next to `agent.key.pub`; an existing key is kept unless `--force`.

use std::path::Path;

use anyhow::Context;
use lnst_common::secure::{keygen, KeyPair};

/// What `keygen` prints on stdout after creating the pair at `path`.
pub fn report(kp: &KeyPair, path: &Path) -> String {
    format!(
        "Agent key written to {} (mode 0600).\n\
         public key:  {}\n\
         fingerprint: {}\n\
         \n\
         Pin it in this machine's pool file on the controller:\n\
         key = \"{}\"\n\
         and list the controller's key (from `lnst-ctl keygen`) in accepted_keys\n\
         in /etc/lnst/agent.toml.\n",
        path.display(),
        kp.public(),
        kp.public().fingerprint(),
        kp.public()
    )
}

/// Runs `lnst-agent keygen [--force] [--key-file PATH]`: creates the key
/// pair at `path`, refusing to replace an existing one unless `force`.
pub fn keygen_main(path: &Path, force: bool) -> anyhow::Result<()> {
    let kp = keygen(path, force).context("lnst-agent keygen")?;
    print!("{}", report(&kp, path));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_prints_and_refuses_to_overwrite() {
        let dir = std::env::temp_dir().join(format!("lnst-agent-keygen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let p = dir.join("agent.key");
        keygen_main(&p, false).unwrap();
        let kp = KeyPair::load(&p, "x").unwrap();
        let r = report(&kp, &p);
        assert!(r.contains(&format!("key = \"{}\"", kp.public())), "{r}");
        assert!(r.contains(&kp.public().fingerprint().to_string()), "{r}");
        let e = format!("{:#}", keygen_main(&p, false).unwrap_err());
        assert!(e.contains("--force"), "{e}");
        keygen_main(&p, true).unwrap();
        assert_ne!(KeyPair::load(&p, "x").unwrap().public(), kp.public());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
