//! How a person enters a host of a run: the netns lab's hosts are network
//! namespaces `lnst-<runid>-<host>` (the lab's naming, see
//! `lab/netns.rs`), entered with `lnst-ctl shell RUN HOST` or plain
//! `ip netns exec`; the VM lab's guests through `lnst-ctl shell RUN HOST`
//! too, which attaches to the guest's shell console (`HOST.shell` in the
//! lab record); a pool machine is entered however its owner reaches it, so
//! only its address is shown.

use std::path::PathBuf;

use crate::lab::{Lab, LABS_DIR};

/// The namespace of `host` in the netns lab `runid`.
pub fn netns_name(runid: &str, host: &str) -> String {
    format!("lnst-{runid}-{host}")
}

/// One host's way in, as a breakpoint shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A netns lab host: its namespace and the lab's run id.
    Netns { runid: String, netns: String },
    /// A VM lab guest: `lnst-ctl shell` opens its shell console.
    Vm { runid: String },
    /// A pool machine: its agent's address from the pool file.
    Machine { address: String },
}

impl Entry {
    /// The entry for `host` of a run on `lab`, or on the pool machine
    /// with agent `address`.
    pub fn of(lab: Option<&dyn Lab>, host: &str, address: &str) -> Entry {
        match lab {
            Some(l) if l.kind() == "netns" => Entry::Netns {
                runid: l.runid().to_string(),
                netns: netns_name(l.runid(), host),
            },
            Some(l) => Entry::Vm {
                runid: l.runid().to_string(),
            },
            None => Entry::Machine {
                address: address.to_string(),
            },
        }
    }

    /// The lines telling how to enter the host (`host` names it).
    pub fn how(&self, host: &str) -> Vec<String> {
        match self {
            Entry::Netns { runid, netns } => vec![
                format!("lnst-ctl shell {runid} {host}"),
                format!("(or: ip netns exec {netns} bash)"),
            ],
            Entry::Vm { runid } => vec![
                format!("lnst-ctl shell {runid} {host}"),
                format!("(the guest's console shell; or `{host} COMMAND` at the prompt)"),
            ],
            Entry::Machine { address } => vec![format!(
                "pool machine, agent at {address}; log in as you usually do (or `{host} COMMAND` at the prompt)"
            )],
        }
    }
}

/// What `lnst-ctl shell` finds about a run id in the lab records.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// A netns lab host's namespace.
    Netns(String),
    /// A VM lab guest: the unix socket of its shell console.
    VmShell { runid: String, socket: PathBuf },
    /// A lab without namespaces for its hosts and no shell consoles.
    NoNamespace,
    /// No such run; the runs that are up, for the message.
    NoRun(Vec<String>),
    /// The run is up but has no such host; its hosts.
    NoHost(Vec<String>),
}

/// Looks `run` (a run id, or a unique prefix of one) and `host` up under
/// [`LABS_DIR`] (`dir` in tests).
pub fn find(dir: &std::path::Path, run: &str, host: &str) -> Found {
    let runs: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let hits: Vec<&String> = runs.iter().filter(|r| r.starts_with(run)).collect();
    let runid = match hits.as_slice() {
        [one] => one.as_str(),
        _ if runs.iter().any(|r| r == run) => run,
        _ => return Found::NoRun(runs),
    };
    let listed = std::fs::read_to_string(dir.join(runid).join("namespaces")).unwrap_or_default();
    let prefix = format!("lnst-{runid}-");
    let hosts: Vec<String> = listed
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter(|h| *h != "lab")
        .map(str::to_string)
        .collect();
    if hosts.is_empty() {
        // A VM lab: its guests' shell consoles, `HOST.shell`.
        let guests: Vec<String> = std::fs::read_dir(dir.join(runid))
            .map(|rd| {
                let mut v: Vec<String> = rd
                    .flatten()
                    .filter_map(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        n.strip_suffix(".shell").map(str::to_string)
                    })
                    .collect();
                v.sort();
                v
            })
            .unwrap_or_default();
        if guests.iter().any(|h| h == host) {
            return Found::VmShell {
                runid: runid.to_string(),
                socket: dir.join(runid).join(format!("{host}.shell")),
            };
        }
        if !guests.is_empty() {
            return Found::NoHost(guests);
        }
        return Found::NoNamespace;
    }
    if hosts.iter().any(|h| h == host) {
        Found::Netns(netns_name(runid, host))
    } else {
        Found::NoHost(hosts)
    }
}

/// The lab records' directory.
pub fn labs_dir() -> PathBuf {
    PathBuf::from(LABS_DIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_host_by_run_prefix() {
        let d = std::env::temp_dir().join(format!("lnst-enter-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("1a2b3c")).unwrap();
        std::fs::create_dir_all(d.join("ffee00")).unwrap();
        std::fs::write(
            d.join("1a2b3c/namespaces"),
            "lnst-1a2b3c-h1\nlnst-1a2b3c-h2\nlnst-1a2b3c-lab\n",
        )
        .unwrap();
        assert_eq!(find(&d, "1a2", "h2"), Found::Netns("lnst-1a2b3c-h2".into()));
        assert_eq!(
            find(&d, "1a2b3c", "h9"),
            Found::NoHost(vec!["h1".into(), "h2".into()])
        );
        assert_eq!(find(&d, "ffee00", "h1"), Found::NoNamespace);
        // A VM lab: its guests' shell console sockets.
        std::fs::write(d.join("ffee00/namespaces"), "lnst-ffee00-lab\n").unwrap();
        std::fs::write(d.join("ffee00/h1.shell"), "").unwrap();
        std::fs::write(d.join("ffee00/h1.sock"), "").unwrap();
        assert_eq!(
            find(&d, "ffee00", "h1"),
            Found::VmShell {
                runid: "ffee00".into(),
                socket: d.join("ffee00/h1.shell")
            }
        );
        assert_eq!(find(&d, "ffee", "h2"), Found::NoHost(vec!["h1".into()]));
        assert!(matches!(find(&d, "77", "h1"), Found::NoRun(r) if r.len() == 2));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn pool_and_netns_entries_say_how() {
        let e = Entry::Netns {
            runid: "abc".into(),
            netns: netns_name("abc", "h1"),
        };
        assert_eq!(e.how("h1")[0], "lnst-ctl shell abc h1");
        assert!(e.how("h1")[1].contains("ip netns exec lnst-abc-h1 bash"));
        let m = Entry::Machine {
            address: "192.0.2.10:9999".into(),
        };
        assert!(m.how("h1")[0].contains("192.0.2.10:9999"));
    }
}
