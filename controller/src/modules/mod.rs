//! Test modules: typed test tools (`ping`, `iperf_server`, `iperf_client`,
//! `packet_assert`, `cpu_stat`) that a recipe runs with `h.run(module)`.
//!
//! Data flow: the Rhai runtime turns `ping(#{ dst: .. })` into
//! [`Module::new`], which checks every option ([`options`]) before anything
//! runs; `h.run` sends [`Module::command`] to the agent as an ordinary shell
//! job (with [`Module::needs_bg`] and [`Module::ready`] saying how to start
//! and when the job is usable); when the job ends, [`Module::parse`] turns
//! its stdout into the result map that lands in `job.result` and in the
//! summary's `data`, [`Module::passed`] applies the module's pass rule and
//! [`Module::key_figures`] gives the summary's short text. [`perf`] holds
//! the statistics of `perf(..)`, built from repeated `iperf_client` runs.
//!
//! Commands that use the agent's own helper programs start with
//! `exec "$LNST_AGENT_BIN"`: the agent sets `LNST_AGENT_BIN` to its
//! executable for every job.

pub mod cpu_stat;
pub mod iperf;
pub mod options;
pub mod packet_assert;
pub mod perf;
pub mod ping;

use lnst_common::job::Stream;
use serde_json::{Map, Value};

pub use options::ModuleError;

/// The option map of a module call, as the recipe wrote it (Rhai values
/// converted to JSON: ints, floats, strings, bools).
pub type Opts = Map<String, Value>;

/// Which module a [`Module`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleKind {
    Ping,
    IperfServer,
    IperfClient,
    PacketAssert,
    CpuStat,
}

impl ModuleKind {
    /// Every module, in the order the docs list them.
    pub const ALL: [ModuleKind; 5] = [
        ModuleKind::Ping,
        ModuleKind::IperfServer,
        ModuleKind::IperfClient,
        ModuleKind::PacketAssert,
        ModuleKind::CpuStat,
    ];

    /// The script-visible constructor name (`ping`, `iperf_client`, ..).
    pub fn name(self) -> &'static str {
        match self {
            ModuleKind::Ping => "ping",
            ModuleKind::IperfServer => "iperf_server",
            ModuleKind::IperfClient => "iperf_client",
            ModuleKind::PacketAssert => "packet_assert",
            ModuleKind::CpuStat => "cpu_stat",
        }
    }

    /// The kind whose [`name`](Self::name) is `name`.
    pub fn from_name(name: &str) -> Option<ModuleKind> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// How to tell that a background module job is ready (a server listens, a
/// capture has its filter attached): a regex over one of its streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    pub stream: Stream,
    pub pattern: &'static str,
}

/// The typed, checked options of one module call.
#[derive(Debug, Clone, PartialEq)]
enum Spec {
    Ping(ping::Ping),
    IperfServer(iperf::IperfServer),
    IperfClient(iperf::IperfClient),
    PacketAssert(packet_assert::PacketAssert),
    CpuStat(cpu_stat::CpuStat),
}

/// A module call with checked options: what `ping(#{ .. })` returns to the
/// script and `h.run(..)` consumes.
#[derive(Debug, Clone, PartialEq)]
pub struct Module {
    /// Which module.
    pub kind: ModuleKind,
    /// The options as the recipe gave them (defaults not filled in), kept
    /// for the summary and for `desc`.
    pub opts: Opts,
    spec: Spec,
}

impl Module {
    /// Checks `opts` for module `kind` (a constructor name such as
    /// `"ping"`): an unknown module, unknown option, wrong type, missing
    /// required option or out-of-range value is an error naming it.
    pub fn new(kind: &str, opts: Opts) -> Result<Module, ModuleError> {
        let k = ModuleKind::from_name(kind).ok_or_else(|| ModuleError::UnknownModule {
            module: kind.to_string(),
            known: ModuleKind::ALL.iter().map(|k| k.name()).collect(),
        })?;
        let spec = match k {
            ModuleKind::Ping => Spec::Ping(ping::Ping::from_opts(&opts)?),
            ModuleKind::IperfServer => Spec::IperfServer(iperf::IperfServer::from_opts(&opts)?),
            ModuleKind::IperfClient => Spec::IperfClient(iperf::IperfClient::from_opts(&opts)?),
            ModuleKind::PacketAssert => {
                Spec::PacketAssert(packet_assert::PacketAssert::from_opts(&opts)?)
            }
            ModuleKind::CpuStat => Spec::CpuStat(cpu_stat::CpuStat::from_opts(&opts)?),
        };
        Ok(Module {
            kind: k,
            opts,
            spec,
        })
    }

    /// The shell command line (run with `sh -c`) that performs the module.
    pub fn command(&self) -> String {
        match &self.spec {
            Spec::Ping(m) => m.command(),
            Spec::IperfServer(m) => m.command(),
            Spec::IperfClient(m) => m.command(),
            Spec::PacketAssert(m) => m.command(),
            Spec::CpuStat(m) => m.command(),
        }
    }

    /// Turns the finished job's stdout into the result map. `exit_code` is
    /// `None` when a signal ended the job (e.g. the recipe's `kill()`).
    /// `Err` is a message for the job's failure (tool error, no output).
    pub fn parse(&self, stdout: &str, exit_code: Option<i32>) -> Result<Value, String> {
        match &self.spec {
            Spec::Ping(_) => ping::parse(stdout, exit_code),
            Spec::IperfServer(_) => iperf::parse_server(stdout, exit_code),
            Spec::IperfClient(_) => iperf::parse_client(stdout, exit_code),
            Spec::PacketAssert(_) => packet_assert::parse(stdout, exit_code),
            Spec::CpuStat(_) => cpu_stat::parse(stdout, exit_code),
        }
    }

    /// The module's pass rule applied to a result from [`parse`](Self::parse).
    pub fn passed(&self, result: &Value) -> bool {
        match &self.spec {
            Spec::Ping(m) => m.passed(result),
            Spec::IperfServer(_) => true,
            Spec::IperfClient(_) => iperf::client_passed(result),
            Spec::PacketAssert(m) => m.passed(result),
            Spec::CpuStat(_) => cpu_stat::passed(result),
        }
    }

    /// A short human text of the result's main figures for the summary,
    /// e.g. `loss 0.0% (5/5), rtt avg 0.135 ms`.
    pub fn key_figures(&self, result: &Value) -> String {
        match &self.spec {
            Spec::Ping(_) => ping::key_figures(result),
            Spec::IperfServer(_) => iperf::server_key_figures(result),
            Spec::IperfClient(_) => iperf::client_key_figures(result),
            Spec::PacketAssert(m) => m.key_figures(result),
            Spec::CpuStat(_) => cpu_stat::key_figures(result),
        }
    }

    /// Whether the module only makes sense as a background job (`bg: true`),
    /// stopped by the recipe's `kill()`: servers, captures, samplers.
    pub fn needs_bg(&self) -> bool {
        matches!(
            self.kind,
            ModuleKind::IperfServer | ModuleKind::PacketAssert | ModuleKind::CpuStat
        )
    }

    /// For background modules: what to wait for before `run` returns, so the
    /// job is usable (the server listens, the capture counts).
    pub fn ready(&self) -> Option<Ready> {
        match self.kind {
            ModuleKind::IperfServer => Some(Ready {
                stream: Stream::Stdout,
                pattern: iperf::SERVER_READY,
            }),
            ModuleKind::PacketAssert => Some(Ready {
                stream: Stream::Stderr,
                pattern: packet_assert::READY,
            }),
            _ => None,
        }
    }

    /// A default description for the summary, e.g. `ping 192.0.2.2`.
    pub fn desc(&self) -> String {
        match &self.spec {
            Spec::Ping(m) => format!("ping {}", m.dst),
            Spec::IperfServer(m) => format!("iperf_server port {}", m.port),
            Spec::IperfClient(m) => format!("iperf_client {} {}", m.proto, m.server),
            Spec::PacketAssert(m) => format!("packet_assert {} {:?}", m.iface, m.filter),
            Spec::CpuStat(_) => "cpu_stat".to_string(),
        }
    }
}

/// Quotes `s` for `sh` (single quotes; `'` becomes `'\''`), leaving plain
/// words as they are.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.,:/%@+=".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Formats bits per second with an SI prefix: `9.82 Gbit/s`.
pub fn human_bps(bps: f64) -> String {
    let (div, unit) = if bps >= 1e9 {
        (1e9, "Gbit/s")
    } else if bps >= 1e6 {
        (1e6, "Mbit/s")
    } else if bps >= 1e3 {
        (1e3, "kbit/s")
    } else {
        (1.0, "bit/s")
    };
    format!("{:.2} {unit}", bps / div)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts(v: Value) -> Opts {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn unknown_module_is_named() {
        let e = Module::new("pong", Opts::new()).unwrap_err().to_string();
        assert!(e.contains("pong") && e.contains("ping"), "{e}");
    }

    #[test]
    fn mistyped_option_names_it_and_the_accepted_ones() {
        let e = Module::new("ping", opts(json!({"dst": "192.0.2.2", "cuont": 5})))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cuont"), "{e}");
        assert!(e.contains("ping"), "{e}");
        assert!(e.contains("count (int)"), "{e}");
        let e = Module::new("ping", opts(json!({"dst": "192.0.2.2", "count": "five"})))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("count") && e.contains("int") && e.contains("five"),
            "{e}"
        );
    }

    #[test]
    fn background_modules_say_how_they_are_ready() {
        let s = Module::new("iperf_server", Opts::new()).unwrap();
        assert!(s.needs_bg());
        let r = s.ready().unwrap();
        assert_eq!(r.stream, Stream::Stdout);
        let re = regex::Regex::new(r.pattern).unwrap();
        let out = include_str!("../../tests/fixtures/modules/iperf_server_tcp.txt");
        assert!(re.is_match(out));
        let p = Module::new("packet_assert", opts(json!({"iface": "eth0"}))).unwrap();
        assert!(p.needs_bg());
        assert_eq!(p.ready().unwrap().stream, Stream::Stderr);
        let ping = Module::new("ping", opts(json!({"dst": "::1"}))).unwrap();
        assert!(!ping.needs_bg() && ping.ready().is_none());
        assert_eq!(ping.desc(), "ping ::1");
    }

    #[test]
    fn quoting_survives_the_shell() {
        for s in [
            "icmp",
            "icmp[icmptype] == icmp-echo",
            "it's",
            "",
            "a\"b$c`d",
        ] {
            let out = std::process::Command::new("sh")
                .args(["-c", &format!("printf %s {}", shell_quote(s))])
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), s);
        }
    }

    #[test]
    fn bitrates_read_well() {
        assert_eq!(human_bps(9_822_009_930.2), "9.82 Gbit/s");
        assert_eq!(human_bps(49_948_056.0), "49.95 Mbit/s");
        assert_eq!(human_bps(0.0), "0.00 bit/s");
    }
}
