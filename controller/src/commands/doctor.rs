//! `lnst-ctl doctor [--fix]`: checks what the labs and test modules need
//! on this machine — root, network namespaces, the kernel's link kinds,
//! the tools modules run (ping, iperf3, ethtool, tcpdump, libpcap), teamd, and
//! for the VM lab qemu, a static busybox, kmod and a cached kernel — and
//! prints for each missing thing the exact command that fixes it. `--fix`
//! runs `apt-get install -y` for the missing Debian packages (after an
//! `apt-get update` when the lists do not know them) and fetches the VM
//! lab's kernel, then checks again.
//!
//! The probes are the real thing: a throwaway namespace
//! `lnst-doctor-<pid>` where each link kind is created with `ip link add`
//! (which also loads its module), removed at the end.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::exit::{ExitCode, Failure};
use crate::lab::vm::kernel;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Ok,
    /// Needed and not there: the fix says what to do.
    Missing,
    /// Works, but worse than it could (TCG instead of KVM).
    Note,
}

/// What fixes a missing thing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fix {
    /// A Debian package (`apt-get install -y PKG`).
    Apt(&'static str),
    /// A command to run by hand (or by `--fix` when `auto`).
    Run { cmd: String, auto: bool },
}

impl Fix {
    fn text(&self) -> String {
        match self {
            Fix::Apt(p) => format!("apt-get install -y {p}"),
            Fix::Run { cmd, .. } => cmd.clone(),
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Check {
    /// `netns lab`, `modules`, `VM lab`.
    pub area: &'static str,
    pub what: String,
    pub state: State,
    pub detail: String,
    pub fix: Option<Fix>,
}

fn check(area: &'static str, what: &str, state: State, detail: String, fix: Option<Fix>) -> Check {
    Check {
        area,
        what: what.to_string(),
        state,
        detail,
        fix,
    }
}

/// Link kinds the recipe API can create: the probe's `ip link add`
/// arguments (`N` is the probe's name; `lnstd0` a veth to stack on) and
/// the module that provides the kind.
const KINDS: &[(&str, &str, &str)] = &[
    ("veth", "N type veth peer name lnstdp1", "veth"),
    ("bridge", "N type bridge", "bridge"),
    ("bond", "N type bond", "bonding"),
    ("team", "N type team", "team"),
    ("dummy", "N type dummy", "dummy"),
    ("vlan", "link lnstd0 name N type vlan id 10", "8021q"),
    ("macvlan", "link lnstd0 name N type macvlan", "macvlan"),
    ("ipvlan", "link lnstd0 name N type ipvlan", "ipvlan"),
    ("vxlan", "N type vxlan id 42 dstport 4789", "vxlan"),
    ("geneve", "N type geneve id 42 remote 192.0.2.1", "geneve"),
    (
        "gre",
        "N type gre remote 192.0.2.1 local 192.0.2.2",
        "ip_gre",
    ),
    (
        "gretap",
        "N type gretap remote 192.0.2.1 local 192.0.2.2",
        "ip_gre",
    ),
    (
        "ipip",
        "N type ipip remote 192.0.2.1 local 192.0.2.2",
        "ipip",
    ),
    ("sit", "N type sit remote 192.0.2.1 local 192.0.2.2", "sit"),
    (
        "ip6gre",
        "N type ip6gre remote 2001:db8::1 local 2001:db8::2",
        "ip6_gre",
    ),
    ("vrf", "N type vrf table 10", "vrf"),
];

/// A program on `PATH` (or in the sbin directories root has).
fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].iter().map(PathBuf::from))
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

fn tool(area: &'static str, prog: &str, purpose: &str, pkg: &'static str) -> Check {
    match which(prog) {
        Some(p) => check(
            area,
            prog,
            State::Ok,
            format!("{} ({purpose})", p.display()),
            None,
        ),
        None => check(
            area,
            prog,
            State::Missing,
            format!("not found ({purpose})"),
            Some(Fix::Apt(pkg)),
        ),
    }
}

fn run_ok(cmd: &mut Command) -> Result<(), String> {
    match cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
    {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(String::from_utf8_lossy(&o.stderr)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// The shared library `name` (`libpcap.so.0.8`) as the loader finds it.
fn have_library(prefix: &str) -> bool {
    let dirs = [
        "/lib/x86_64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/lib64",
        "/usr/lib64",
        "/lib",
        "/usr/lib",
        "/usr/local/lib",
    ];
    dirs.iter().any(|d| {
        std::fs::read_dir(d)
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with(prefix))
            })
            .unwrap_or(false)
    })
}

/// Every check, in report order; `vm`: the VM lab's too.
pub fn checks(vm: bool) -> Vec<Check> {
    let mut out = Vec::new();
    let root = nix::unistd::geteuid().is_root();
    out.push(if root {
        check(
            "netns lab",
            "root",
            State::Ok,
            "running as root".into(),
            None,
        )
    } else {
        check(
            "netns lab",
            "root",
            State::Missing,
            "the labs create namespaces and devices".into(),
            Some(Fix::Run {
                cmd: "sudo lnst-ctl doctor (run lnst-ctl as root)".into(),
                auto: false,
            }),
        )
    });
    let ip = tool("netns lab", "ip", "namespaces, veths, bridges", "iproute2");
    let have_ip = ip.state == State::Ok;
    out.push(ip);
    let agent = std::env::current_exe()
        .map(|p| p.with_file_name("lnst-agent"))
        .unwrap_or_else(|_| PathBuf::from("lnst-agent"));
    out.push(if agent.is_file() {
        check("netns lab", "lnst-agent", State::Ok, agent.display().to_string(), None)
    } else {
        // Not built yet is normal before the first `cargo build`.
        check(
            "netns lab",
            "lnst-agent",
            State::Note,
            format!(
                "{} not built yet (the labs' hosts run it): cargo build -p lnst-agent, or run --agent-bin PATH",
                agent.display()
            ),
            None,
        )
    });
    if root && have_ip {
        out.extend(namespace_checks());
    }
    // Both labs run teamd from this machine's root (guests see it through 9p).
    out.push(tool(
        "netns lab",
        "teamd",
        "team devices (team(#{..}))",
        "libteam-utils",
    ));
    out.push(tool(
        "modules",
        "ping",
        "ping(), h.run(\"ping ..\")",
        "iputils-ping",
    ));
    out.push(tool(
        "modules",
        "iperf3",
        "iperf_server/iperf_client, perf()",
        "iperf3",
    ));
    out.push(tool(
        "modules",
        "ethtool",
        "shell jobs with ethtool",
        "ethtool",
    ));
    out.push(tool(
        "modules",
        "tcpdump",
        "capturing by hand at a breakpoint",
        "tcpdump",
    ));
    // lnst-agent links libpcap (packet_assert): the library to run it,
    // the header and pkg-config to build it.
    out.push(
        if have_library("libpcap.so") && Path::new("/usr/include/pcap.h").exists() {
            check(
                "modules",
                "libpcap",
                State::Ok,
                "packet_assert (lnst-agent capture)".into(),
                None,
            )
        } else {
            check(
                "modules",
                "libpcap",
                State::Missing,
                "lnst-agent builds against it (packet_assert)".into(),
                Some(Fix::Apt("libpcap-dev")),
            )
        },
    );
    out.push(tool(
        "modules",
        "pkg-config",
        "building lnst-agent against libpcap",
        "pkg-config",
    ));
    if vm {
        out.extend(vm_checks());
    }
    out.push(results_store());
    out
}

/// Namespaces work, and which link kinds this kernel creates.
fn namespace_checks() -> Vec<Check> {
    let ns = format!("lnst-doctor-{}", std::process::id());
    let mut out = Vec::new();
    if let Err(e) = run_ok(Command::new("ip").args(["netns", "add", &ns])) {
        out.push(check(
            "netns lab",
            "network namespaces",
            State::Missing,
            format!("`ip netns add` failed: {e}"),
            Some(Fix::Run {
                cmd: "use a kernel with CONFIG_NET_NS, outside a container that forbids it".into(),
                auto: false,
            }),
        ));
        return out;
    }
    out.push(check(
        "netns lab",
        "network namespaces",
        State::Ok,
        "`ip netns add` works".into(),
        None,
    ));
    let _ = run_ok(Command::new("ip").args([
        "-n", &ns, "link", "add", "lnstd0", "type", "veth", "peer", "name", "lnstdp0",
    ]));
    let mut missing = Vec::new();
    let mut ok = Vec::new();
    for (i, (kind, args, module)) in KINDS.iter().enumerate() {
        let name = format!("lnstk{i}");
        let mut cmd = Command::new("ip");
        cmd.args(["-n", &ns, "link", "add"])
            .args(
                args.split_whitespace()
                    .map(|a| if a == "N" { name.as_str() } else { a }),
            );
        match run_ok(&mut cmd) {
            Ok(()) => ok.push(*kind),
            Err(e) => missing.push((*kind, *module, e)),
        }
    }
    let _ = run_ok(Command::new("ip").args(["netns", "del", &ns]));
    out.push(check(
        "netns lab",
        "link kinds",
        State::Ok,
        ok.join(" "),
        None,
    ));
    // A module this kernel has but did not load is a fix away; one it
    // does not have at all is what the VM lab is for.
    let mut absent = Vec::new();
    for (kind, module, e) in missing {
        if run_ok(Command::new("modprobe").args(["-n", module])).is_ok() {
            out.push(check(
                "netns lab",
                &format!("link kind {kind}"),
                State::Missing,
                format!("`ip link add type {kind}` failed: {e}"),
                Some(Fix::Run {
                    cmd: format!("modprobe {module}"),
                    auto: false,
                }),
            ));
        } else {
            absent.push(kind);
        }
    }
    if !absent.is_empty() {
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push(check(
            "netns lab",
            "link kinds absent",
            State::Note,
            format!(
                "{}: kernel {release} has no module for them; recipes that need them run with --lab vm",
                absent.join(" ")
            ),
            None,
        ));
    }
    out
}

fn vm_checks() -> Vec<Check> {
    let mut out = Vec::new();
    out.push(tool(
        "VM lab",
        "qemu-system-x86_64",
        "the guests",
        "qemu-system-x86",
    ));
    let bb = Path::new(crate::lab::vm::guest::BUSYBOX);
    out.push(match std::fs::read(bb) {
        Ok(b) if !crate::lab::vm::guest::is_dynamic_elf(&b) => check(
            "VM lab",
            "busybox (static)",
            State::Ok,
            bb.display().to_string(),
            None,
        ),
        Ok(_) => check(
            "VM lab",
            "busybox (static)",
            State::Missing,
            format!("{} is dynamically linked", bb.display()),
            Some(Fix::Apt("busybox-static")),
        ),
        Err(_) => check(
            "VM lab",
            "busybox (static)",
            State::Missing,
            format!("{} not found", bb.display()),
            Some(Fix::Apt("busybox-static")),
        ),
    });
    out.push(tool(
        "VM lab",
        "depmod",
        "indexing the guest kernel's modules",
        "kmod",
    ));
    out.push(tool(
        "VM lab",
        "dpkg-deb",
        "unpacking Debian's kernel",
        "dpkg",
    ));
    let cache = kernel::cache_root();
    let cached: Vec<String> = std::fs::read_dir(&cache)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().join("kernel.json").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    out.push(if cached.is_empty() {
        check(
            "VM lab",
            "kernel",
            State::Missing,
            format!(
                "none cached in {} (the first VM run fetches Debian's, ~100 MB)",
                cache.display()
            ),
            Some(Fix::Run {
                cmd: "lnst-ctl doctor --fix (fetches Debian's current kernel now)".into(),
                auto: true,
            }),
        )
    } else {
        check(
            "VM lab",
            "kernel",
            State::Ok,
            format!("cached: {} ({})", cached.join(", "), cache.display()),
            None,
        )
    });
    let kvm = Path::new("/dev/kvm");
    out.push(
        if std::fs::OpenOptions::new().read(true).write(true).open(kvm).is_ok() {
            match crate::lab::vm::kvm_probe_verdict() {
                Some(crate::lab::vm::qemu::Accel::Tcg) => check(
                    "VM lab",
                    "KVM",
                    State::Note,
                    "/dev/kvm opens but a probe guest did not boot with it (nested virtualisation?): guests run under TCG".into(),
                    None,
                ),
                _ => check("VM lab", "KVM", State::Ok, "/dev/kvm usable".into(), None),
            }
        } else {
            check("VM lab", "KVM", State::Note, "no usable /dev/kvm: guests run under TCG (slower)".into(), None)
        },
    );
    out
}

/// The report: one line per check, fixes beside what is missing, then
/// one apt-get line for every missing package.
pub fn render(checks: &[Check], color: bool) -> String {
    let paint = |s: &str, code: &str| {
        if color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    };
    let mut s = String::new();
    let mut area = "";
    for c in checks {
        if c.area != area {
            area = c.area;
            s.push_str(&format!("{area}:\n"));
        }
        let (tag, code) = match c.state {
            State::Ok => ("ok", "32"),
            State::Missing => ("MISSING", "1;31"),
            State::Note => ("note", "33"),
        };
        let pad = " ".repeat(8usize.saturating_sub(tag.len()));
        s.push_str(&format!(
            "  {}{pad}{:<20} {}\n",
            paint(tag, code),
            c.what,
            c.detail
        ));
        if let Some(f) = &c.fix {
            if c.state == State::Missing {
                s.push_str(&format!("          fix: {}\n", f.text()));
            }
        }
    }
    let pkgs = packages(checks);
    let missing = checks.iter().filter(|c| c.state == State::Missing).count();
    if missing == 0 {
        s.push_str("nothing missing\n");
    } else {
        s.push_str(&format!("{missing} missing"));
        if !pkgs.is_empty() {
            s.push_str(&format!(
                "; the packages in one go: apt-get install -y {} (or lnst-ctl doctor --fix)",
                pkgs.join(" ")
            ));
        }
        s.push('\n');
    }
    s
}

/// The results store `LNST_DB` (or the embedded default) names: opens
/// without creating or migrating it, and reports its schema version. A
/// store that does not exist yet is fine (the first run creates it); one
/// that cannot be used only costs history (runs still work): a note.
fn results_store() -> Check {
    use crate::store::{migrate, Store, StoreError};
    let target = crate::db::DbTarget::resolve(None);
    match Store::inspect(&target) {
        Ok(mut s) => {
            let v = s.schema_version().unwrap_or(0);
            let runs = s.count_runs(None).unwrap_or(0);
            let (state, detail) = if v < migrate::LATEST {
                (
                    State::Note,
                    format!("{target}: schema {v}, the next run migrates it to {}; {runs} runs", migrate::LATEST),
                )
            } else {
                (State::Ok, format!("{target}: schema {v}, {runs} runs"))
            };
            check("results store", "results store", state, detail, None)
        }
        Err(StoreError::NotCreated { .. }) => check(
            "results store",
            "results store",
            State::Ok,
            format!("{target}: not created yet (the first run creates it)"),
            None,
        ),
        Err(e) => check(
            "results store",
            "results store",
            State::Note,
            format!("{e}"),
            Some(Fix::Run {
                cmd: "runs still work, without history; fix the store or set --db/LNST_DB to another one".into(),
                auto: false,
            }),
        ),
    }
}

/// The missing Debian packages, each once.
pub fn packages(checks: &[Check]) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = Vec::new();
    for c in checks.iter().filter(|c| c.state == State::Missing) {
        if let Some(Fix::Apt(p)) = c.fix {
            if !v.contains(&p) {
                v.push(p);
            }
        }
    }
    v
}

/// `lab`: only what that lab needs (`netns`: no VM lab checks).
pub fn exec(fix: bool, lab: Option<&str>) -> Result<ExitCode, Failure> {
    let vm = lab != Some("netns");
    let color = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let mut found = checks(vm);
    print!("{}", render(&found, color));
    if fix && found.iter().any(|c| c.state == State::Missing) {
        println!();
        let pkgs = packages(&found);
        if !pkgs.is_empty() {
            apt_install(&pkgs).map_err(|e| Failure::new(ExitCode::Infra, e))?;
        }
        let wants_kernel = found.iter().any(|c| {
            c.state == State::Missing && matches!(c.fix, Some(Fix::Run { auto: true, .. }))
        });
        if wants_kernel {
            println!("fetching Debian's current kernel for the VM lab");
            let mut progress = |s: &str| println!("  {s}");
            if let Err(e) = kernel::resolve(None, &kernel::cache_root(), &mut progress) {
                println!("  cannot fetch the kernel: {e}");
            }
        }
        println!("\nafter --fix:");
        found = checks(vm);
        print!("{}", render(&found, color));
    }
    Ok(if found.iter().any(|c| c.state == State::Missing) {
        ExitCode::Fail
    } else {
        ExitCode::Pass
    })
}

/// `apt-get install -y PKGS`, with `apt-get update` first when the lists
/// do not know a package.
fn apt_install(pkgs: &[&str]) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!("--fix installs packages with apt-get and needs root");
    }
    let install = || {
        println!("+ apt-get install -y {}", pkgs.join(" "));
        Command::new("apt-get")
            .args(["install", "-y"])
            .args(pkgs)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
    };
    let st = install().map_err(|e| anyhow::anyhow!("cannot run apt-get: {e}"))?;
    if st.success() {
        return Ok(());
    }
    println!("+ apt-get update");
    let _ = Command::new("apt-get").arg("update").status();
    let st = install().map_err(|e| anyhow::anyhow!("cannot run apt-get: {e}"))?;
    if !st.success() {
        anyhow::bail!("apt-get install -y {} failed ({st})", pkgs.join(" "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lists_fixes_and_packages_once() {
        let cs = vec![
            check(
                "modules",
                "iperf3",
                State::Missing,
                "not found".into(),
                Some(Fix::Apt("iperf3")),
            ),
            check("modules", "ping", State::Ok, "/usr/bin/ping".into(), None),
            check(
                "VM lab",
                "depmod",
                State::Missing,
                "not found".into(),
                Some(Fix::Apt("kmod")),
            ),
            check(
                "VM lab",
                "modprobe",
                State::Missing,
                "not found".into(),
                Some(Fix::Apt("kmod")),
            ),
        ];
        assert_eq!(packages(&cs), vec!["iperf3", "kmod"]);
        let r = render(&cs, false);
        assert!(r.contains("modules:\n  MISSING iperf3"), "{r}");
        assert!(r.contains("fix: apt-get install -y iperf3"), "{r}");
        assert!(
            r.contains("3 missing; the packages in one go: apt-get install -y iperf3 kmod"),
            "{r}"
        );
        assert!(!r.contains('\x1b'));
        assert!(render(&cs, true).contains("\x1b[1;31mMISSING"));
    }
}
