//! `sysctl KEY` / `sysctl -w KEY=VALUE` through `/proc/sys`, read from a
//! thread inside the namespace so `net.*` keys are the namespace's own.
//! `sysctl_set` records the old value.

use lnst_common::WireError;

use super::error::io_error;
use super::nsthread::run_in;
use super::{ns_label, NetUndo, Nets, Recorder};

/// `net.ipv4.ip_forward` → `/proc/sys/net/ipv4/ip_forward`; a key with `/`
/// is taken as a path under `/proc/sys` (for names holding dots, such as
/// `net/ipv4/conf/eth0.10/forwarding`).
pub fn key_path(key: &str) -> Result<String, WireError> {
    let rel = if key.contains('/') {
        key.trim_start_matches('/').to_string()
    } else {
        key.replace('.', "/")
    };
    if key.is_empty() || rel.split('/').any(|p| p.is_empty() || p == "..") {
        return Err(WireError::invalid(format!("invalid sysctl key {key:?}")));
    }
    Ok(format!("/proc/sys/{rel}"))
}

fn read_key(key: &str, netns: Option<&str>) -> Result<String, WireError> {
    let path = key_path(key)?;
    let s = std::fs::read_to_string(&path)
        .map_err(|e| io_error(e, format!("sysctl {key} in {} ({path})", ns_label(netns))))?;
    Ok(s.trim_end_matches('\n').to_string())
}

fn write_key(key: &str, value: &str, netns: Option<&str>) -> Result<(), WireError> {
    let path = key_path(key)?;
    std::fs::write(&path, value.as_bytes()).map_err(|e| {
        io_error(
            e,
            format!("sysctl -w {key}={value} in {} ({path})", ns_label(netns)),
        )
    })
}

/// `sysctl KEY` in `netns`.
pub async fn sysctl_get(_nets: &Nets, netns: Option<&str>, key: &str) -> Result<String, WireError> {
    let (k, n) = (key.to_string(), netns.map(str::to_string));
    run_in(netns, move || read_key(&k, n.as_deref())).await
}

/// `sysctl -w KEY=VALUE` in `netns`; returns the value read back.
pub async fn sysctl_set(
    nets: &Nets,
    rec: &dyn Recorder,
    netns: Option<&str>,
    key: &str,
    value: &str,
) -> Result<String, WireError> {
    let old = sysctl_get(nets, netns, key).await?;
    let undo = NetUndo::RestoreSysctl {
        netns: netns.map(str::to_string),
        key: key.to_string(),
        value: old,
    };
    rec.record(undo.clone())?;
    if let Err(e) = apply(netns, key, value).await {
        rec.cancel(&undo);
        return Err(e);
    }
    sysctl_get(nets, netns, key).await
}

pub(crate) async fn apply(netns: Option<&str>, key: &str, value: &str) -> Result<(), WireError> {
    let (k, v, n) = (
        key.to_string(),
        value.to_string(),
        netns.map(str::to_string),
    );
    run_in(netns, move || write_key(&k, &v, n.as_deref())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(
            key_path("net.ipv4.ip_forward").unwrap(),
            "/proc/sys/net/ipv4/ip_forward"
        );
        assert_eq!(
            key_path("net/ipv4/conf/eth0.10/forwarding").unwrap(),
            "/proc/sys/net/ipv4/conf/eth0.10/forwarding"
        );
        assert!(key_path("net/../../etc/passwd").is_err());
        assert!(key_path("").is_err());
        assert!(key_path("net..ipv4").is_err());
    }
}
