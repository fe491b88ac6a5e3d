//! The `packet_assert` module: counts the packets matching a BPF filter on
//! an interface while it runs, and passes when the count is in a range.
//!
//! Options: `iface` (string, required), `filter` (string, BPF syntax as for
//! `tcpdump`, default: every packet), `min` (int, default 1), `max` (int,
//! default: no limit). It runs the agent's own capture program,
//! `lnst-agent capture --iface IF --filter BPF` (libpcap, not tcpdump text),
//! in the background; the program prints `READY` on stderr once the filter
//! is attached, and on the recipe's `kill()` (SIGTERM) prints
//! `{"packets": N, "dropped": D}` and exits 0.
//!
//! Result: `#{ packets, dropped }` (`dropped`: lost by the kernel for lack
//! of buffer, not counted in `packets`). Passes when
//! `min <= packets <= max`.

use serde_json::{json, Value};

use super::options::{self, bad, get_int, get_str, get_word, OptSpec, OptType};
use super::{shell_quote, ModuleError, Opts};

const NAME: &str = "packet_assert";

/// Regex over the capture's stderr that says it counts.
pub const READY: &str = "(?m)^READY$";

/// The options `packet_assert` accepts.
pub const OPTIONS: &[OptSpec] = &[
    OptSpec::req("iface", OptType::Str),
    OptSpec::opt("filter", OptType::Str),
    OptSpec::opt("min", OptType::Int),
    OptSpec::opt("max", OptType::Int),
];

/// Checked `packet_assert` options.
#[derive(Debug, Clone, PartialEq)]
pub struct PacketAssert {
    pub iface: String,
    pub filter: String,
    pub min: i64,
    pub max: Option<i64>,
}

impl PacketAssert {
    /// Checks the recipe's options (see the module doc).
    pub fn from_opts(opts: &Opts) -> Result<PacketAssert, ModuleError> {
        options::check(NAME, OPTIONS, opts)?;
        let min = get_int(opts, "min").unwrap_or(1);
        let max = get_int(opts, "max");
        if min < 0 {
            return Err(bad(NAME, "min", format!("{min} is negative")));
        }
        if let Some(m) = max.filter(|m| *m < min) {
            return Err(bad(NAME, "max", format!("{m} is below min {min}")));
        }
        Ok(PacketAssert {
            iface: get_word(NAME, opts, "iface")?.unwrap_or_default(),
            filter: get_str(opts, "filter").unwrap_or_default(),
            min,
            max,
        })
    }

    /// `exec "$LNST_AGENT_BIN" capture --iface IF --filter BPF`.
    pub fn command(&self) -> String {
        format!(
            "exec \"$LNST_AGENT_BIN\" capture --iface {} --filter {}",
            shell_quote(&self.iface),
            shell_quote(&self.filter)
        )
    }

    /// `min <= packets <= max`.
    pub fn passed(&self, result: &Value) -> bool {
        result["packets"]
            .as_i64()
            .is_some_and(|p| p >= self.min && !matches!(self.max, Some(m) if p > m))
    }

    /// `7 packets (expected 7..=7)`.
    pub fn key_figures(&self, result: &Value) -> String {
        let range = match self.max {
            Some(m) => format!("{}..={m}", self.min),
            None => format!(">= {}", self.min),
        };
        format!("{} packets (expected {range})", result["packets"])
    }
}

/// Reads the capture program's `{"packets": N, "dropped": D}` line.
pub fn parse(stdout: &str, exit_code: Option<i32>) -> Result<Value, String> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'));
    let Some(doc) = line.and_then(|l| serde_json::from_str::<Value>(l).ok()) else {
        return Err(match exit_code {
            Some(c) => format!("capture printed no count (exit code {c}; see its stderr)"),
            None => "capture was killed before printing its count".to_string(),
        });
    };
    let packets = doc["packets"]
        .as_u64()
        .ok_or_else(|| format!("capture output has no packet count: {doc}"))?;
    Ok(json!({ "packets": packets, "dropped": doc["dropped"].as_u64().unwrap_or(0) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pa(v: Value) -> PacketAssert {
        PacketAssert::from_opts(v.as_object().unwrap()).unwrap()
    }

    #[test]
    fn counts_and_range() {
        let r = parse("{\"packets\": 7, \"dropped\": 0}\n", Some(0)).unwrap();
        assert_eq!(r, json!({"packets": 7, "dropped": 0}));
        let exact = pa(json!({"iface": "eth0", "filter": "icmp", "min": 7, "max": 7}));
        assert!(exact.passed(&r));
        assert_eq!(exact.key_figures(&r), "7 packets (expected 7..=7)");
        assert!(!exact.passed(&json!({"packets": 8})));
        assert!(!exact.passed(&json!({"packets": 6})));
        let any = pa(json!({"iface": "eth0"}));
        assert!(any.passed(&r) && !any.passed(&json!({"packets": 0})));
        let none = pa(json!({"iface": "eth0", "min": 0, "max": 0}));
        assert!(none.passed(&json!({"packets": 0})) && !none.passed(&r));
    }

    #[test]
    fn missing_count_is_an_error() {
        assert!(parse("", Some(1)).unwrap_err().contains("exit code 1"));
        assert!(parse("", None).unwrap_err().contains("killed"));
        assert!(parse("{\"pkts\": 1}", Some(0))
            .unwrap_err()
            .contains("no packet count"));
    }

    #[test]
    fn command_and_options() {
        let m = pa(json!({"iface": "veth1", "filter": "icmp[icmptype] == icmp-echo"}));
        assert_eq!(
            m.command(),
            "exec \"$LNST_AGENT_BIN\" capture --iface veth1 --filter 'icmp[icmptype] == icmp-echo'"
        );
        let e = PacketAssert::from_opts(
            json!({"iface": "x", "min": 3, "max": 2})
                .as_object()
                .unwrap(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("\"max\""), "{e}");
        let e =
            PacketAssert::from_opts(json!({"filter": "icmp"}).as_object().unwrap()).unwrap_err();
        assert!(e.to_string().contains("\"iface\" is required"), "{e}");
    }
}
