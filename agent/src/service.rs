//! `systemctl start|stop|restart NAME` for `h.service(name, action)`, with
//! the unit's state put back after the run: the journal gets
//! `UndoEntry::Service` with whether the unit was active before
//! (`systemctl is-active`), and the undo starts or stops it to match.
//!
//! Only systemd is supported. A host where systemd is not the running
//! init (`/run/systemd/system` absent, as `sd_booted()` checks; a
//! container, a busybox guest) gets an `Unsupported` error that says so
//! instead of a half-working fallback.

use std::path::Path;

use lnst_common::{ErrorKind, WireError};

use crate::undo::UndoEntry;

/// The actions `h.service` takes.
pub const ACTIONS: &str = "\"start\", \"stop\", \"restart\"";

/// Which `systemctl` to run; tests point it at a stand-in.
#[derive(Debug, Clone)]
pub struct Systemctl {
    pub bin: String,
}

impl Default for Systemctl {
    fn default() -> Self {
        Systemctl {
            bin: "systemctl".into(),
        }
    }
}

/// Whether systemd runs this host (`sd_booted()`).
pub fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// A unit name as systemd takes it: letters, digits and `:-_.\@`, not
/// starting with `-` (never an option to systemctl).
pub fn check_name(name: &str) -> Result<(), WireError> {
    let ok = !name.is_empty()
        && name.len() <= 256
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":-_.\\@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(WireError::invalid(format!(
            "service {name:?}: not a unit name (letters, digits and :-_.\\@, e.g. \"nginx\" or \"getty@tty1.service\")"
        )))
    }
}

impl Systemctl {
    async fn run(&self, args: &[&str]) -> Result<(bool, String), WireError> {
        let out = tokio::process::Command::new(&self.bin)
            .args(args)
            .output()
            .await
            .map_err(|e| {
                WireError::new(
                    ErrorKind::Unsupported,
                    format!("{} {}: cannot run: {e}", self.bin, args.join(" ")),
                )
            })?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Ok((
            out.status.success(),
            if text.is_empty() { err } else { text },
        ))
    }

    /// `systemctl is-active NAME` is `active` (or `reloading`, `activating`).
    pub async fn is_active(&self, name: &str) -> Result<bool, WireError> {
        let (_, state) = self.run(&["is-active", "--", name]).await?;
        Ok(matches!(
            state.as_str(),
            "active" | "reloading" | "activating"
        ))
    }

    /// `systemctl ACTION NAME`, its message in the error when it fails.
    pub async fn act(&self, action: &str, name: &str) -> Result<(), WireError> {
        let (ok, msg) = self.run(&[action, "--", name]).await?;
        if ok {
            Ok(())
        } else {
            Err(WireError::os(format!("systemctl {action} {name}: {msg}")))
        }
    }
}

/// `h.service(name, action)`: records how to give back the unit's state,
/// then acts; answers `systemctl is-active NAME` after the action.
pub async fn service(
    sc: &Systemctl,
    booted: bool,
    record: &(dyn Fn(UndoEntry) -> Result<(), WireError> + Sync),
    name: &str,
    action: &str,
) -> Result<String, WireError> {
    if !matches!(action, "start" | "stop" | "restart") {
        return Err(WireError::invalid(format!(
            "service {name}: unknown action {action:?}; actions: {ACTIONS}"
        )));
    }
    check_name(name)?;
    if !booted {
        return Err(WireError::new(
            ErrorKind::Unsupported,
            format!(
                "service {name}: no service manager on this host: systemd is not running \
                 (/run/systemd/system is absent), and h.service needs systemd; use a job \
                 with `undo` for another init system"
            ),
        ));
    }
    let was_active = sc.is_active(name).await?;
    record(UndoEntry::Service {
        name: name.to_string(),
        active: was_active,
        systemctl: sc.bin.clone(),
    })?;
    sc.act(action, name).await?;
    let (_, state) = sc.run(&["is-active", "--", name]).await?;
    Ok(state)
}

/// The undo: start or stop `name` so it is active as before.
pub async fn restore(sc: &Systemctl, name: &str, active: bool) -> Result<(), String> {
    let now = sc.is_active(name).await.map_err(|e| e.message)?;
    if now == active {
        return Ok(());
    }
    sc.act(if active { "start" } else { "stop" }, name)
        .await
        .map_err(|e| e.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["nginx", "getty@tty1.service", "a-b_c:d.e"] {
            check_name(ok).unwrap();
        }
        for bad in ["", "-now", "a b", "x;rm", "a/b"] {
            assert!(
                check_name(bad)
                    .unwrap_err()
                    .message
                    .contains("not a unit name"),
                "{bad}"
            );
        }
    }
}
