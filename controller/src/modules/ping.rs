//! The `ping` module: `ping -n -q` (iputils) to an IPv4 or IPv6 address,
//! judged by its packet loss.
//!
//! Options: `dst` (string, required), `count` (int, default 10), `interval`
//! (float seconds, default 1; 0 floods, root only), `size` (int payload
//! bytes, `-s`), `iface` (string, `-I`: interface or source address),
//! `ttl` (int, `-t`), `timeout` (float seconds to wait for a reply, `-W`,
//! default 2: without it ping lingers 10 s when nothing answers) and
//! `max_loss` (float percent, default 0).
//!
//! Result: `#{ sent, received, loss, duplicates, errors, time_ms, rtt_min,
//! rtt_avg, rtt_max, rtt_mdev }`: `loss` is the percentage of sent packets
//! that got no reply, computed from the counts (a float, not ping's rounded
//! figure); the `rtt_*` fields are in ms and `()` (JSON null) when nothing
//! was received. Passes when `loss <= max_loss`.

use serde_json::{json, Value};

use super::options::{self, get_float_in, get_int_in, get_word, OptSpec, OptType};
use super::{shell_quote, ModuleError, Opts};

const NAME: &str = "ping";

/// The options `ping` accepts.
pub const OPTIONS: &[OptSpec] = &[
    OptSpec::req("dst", OptType::Str),
    OptSpec::opt("count", OptType::Int),
    OptSpec::opt("interval", OptType::Float),
    OptSpec::opt("size", OptType::Int),
    OptSpec::opt("iface", OptType::Str),
    OptSpec::opt("ttl", OptType::Int),
    OptSpec::opt("timeout", OptType::Float),
    OptSpec::opt("max_loss", OptType::Float),
];

/// Checked `ping` options.
#[derive(Debug, Clone, PartialEq)]
pub struct Ping {
    pub dst: String,
    pub count: i64,
    pub interval: f64,
    pub size: Option<i64>,
    pub iface: Option<String>,
    pub ttl: Option<i64>,
    pub timeout: f64,
    pub max_loss: f64,
}

impl Ping {
    /// Checks the recipe's options (see the module doc).
    pub fn from_opts(opts: &Opts) -> Result<Ping, ModuleError> {
        options::check(NAME, OPTIONS, opts)?;
        Ok(Ping {
            dst: get_word(NAME, opts, "dst")?.unwrap_or_default(),
            count: get_int_in(NAME, opts, "count", 1, 1 << 31)?.unwrap_or(10),
            interval: get_float_in(NAME, opts, "interval", 0.0, 3600.0)?.unwrap_or(1.0),
            size: get_int_in(NAME, opts, "size", 0, 65507)?,
            iface: get_word(NAME, opts, "iface")?,
            ttl: get_int_in(NAME, opts, "ttl", 1, 255)?,
            timeout: get_float_in(NAME, opts, "timeout", 0.001, 3600.0)?.unwrap_or(2.0),
            max_loss: get_float_in(NAME, opts, "max_loss", 0.0, 100.0)?.unwrap_or(0.0),
        })
    }

    /// `ping -n -q [-6] -c COUNT -i INTERVAL -W TIMEOUT [-s SIZE] [-I IFACE]
    /// [-t TTL] DST`. `-q` keeps the output to the summary however long the
    /// run; `-6` when `dst` contains a `:`.
    pub fn command(&self) -> String {
        let mut c = String::from("exec ping -n -q");
        if self.dst.contains(':') {
            c.push_str(" -6");
        }
        c += &format!(
            " -c {} -i {} -W {}",
            self.count, self.interval, self.timeout
        );
        if let Some(s) = self.size {
            c += &format!(" -s {s}");
        }
        if let Some(i) = &self.iface {
            c += &format!(" -I {}", shell_quote(i));
        }
        if let Some(t) = self.ttl {
            c += &format!(" -t {t}");
        }
        c += &format!(" {}", shell_quote(&self.dst));
        c
    }

    /// `loss <= max_loss`.
    pub fn passed(&self, result: &Value) -> bool {
        result["loss"]
            .as_f64()
            .is_some_and(|loss| loss <= self.max_loss + 1e-9)
    }
}

/// Parses the statistics lines of iputils `ping` (with or without `-q`):
///
/// ```text
/// 10 packets transmitted, 6 received, +2 duplicates, +4 errors, 40% packet loss, time 1836ms
/// rtt min/avg/max/mdev = 0.030/0.048/0.056/0.008 ms
/// ```
pub fn parse(stdout: &str, exit_code: Option<i32>) -> Result<Value, String> {
    let Some(stats) = stdout
        .lines()
        .find(|l| l.contains(" packets transmitted, "))
    else {
        let last = stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(match exit_code {
            Some(c) => format!("ping printed no statistics (exit code {c}); last line: {last:?}"),
            None => format!("ping was killed before printing statistics; last line: {last:?}"),
        });
    };
    let mut sent = None;
    let mut received = None;
    let (mut duplicates, mut errors, mut corrupted) = (0u64, 0u64, 0u64);
    let mut time_ms = Value::Null;
    for part in stats.split(", ") {
        let mut w = part.split_whitespace();
        let (Some(num), Some(what)) = (w.next(), w.next()) else {
            continue;
        };
        let n = |s: &str| s.trim_start_matches('+').parse::<u64>().ok();
        match (num, what) {
            (_, "packets") => sent = n(num),
            (_, "received") => received = n(num),
            (_, "duplicates") => duplicates = n(num).unwrap_or(0),
            (_, "errors") => errors = n(num).unwrap_or(0),
            (_, "corrupted") => corrupted = n(num).unwrap_or(0),
            ("time", t) => {
                time_ms = t
                    .trim_end_matches("ms")
                    .parse::<u64>()
                    .map(Value::from)
                    .unwrap_or(Value::Null)
            }
            _ => {}
        }
    }
    let (Some(sent), Some(received)) = (sent, received) else {
        return Err(format!("cannot read ping statistics line {stats:?}"));
    };
    let loss = if sent == 0 {
        100.0
    } else {
        100.0 * sent.saturating_sub(received) as f64 / sent as f64
    };
    let mut rtt = [Value::Null, Value::Null, Value::Null, Value::Null];
    if let Some(line) = stdout
        .lines()
        .find(|l| l.starts_with("rtt ") || l.starts_with("round-trip "))
    {
        let nums = line
            .split_once('=')
            .map(|(_, r)| r.trim())
            .and_then(|r| r.split_whitespace().next())
            .ok_or_else(|| format!("cannot read ping rtt line {line:?}"))?;
        let v: Vec<f64> = nums.split('/').filter_map(|x| x.parse().ok()).collect();
        if v.len() != 4 {
            return Err(format!("cannot read ping rtt line {line:?}"));
        }
        for (slot, x) in rtt.iter_mut().zip(v) {
            *slot = json!(x);
        }
    } else if received > 0 {
        return Err(format!(
            "ping received {received} replies but printed no rtt line"
        ));
    }
    let [rtt_min, rtt_avg, rtt_max, rtt_mdev] = rtt;
    Ok(json!({
        "sent": sent,
        "received": received,
        "loss": loss,
        "duplicates": duplicates,
        "errors": errors,
        "corrupted": corrupted,
        "time_ms": time_ms,
        "rtt_min": rtt_min,
        "rtt_avg": rtt_avg,
        "rtt_max": rtt_max,
        "rtt_mdev": rtt_mdev,
    }))
}

/// `loss 40.0% (6/10 received), rtt avg 0.048 ms`.
pub fn key_figures(result: &Value) -> String {
    let mut s = format!(
        "loss {:.1}% ({}/{} received)",
        result["loss"].as_f64().unwrap_or(f64::NAN),
        result["received"],
        result["sent"]
    );
    if let Some(avg) = result["rtt_avg"].as_f64() {
        s += &format!(", rtt avg {avg:.3} ms");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($f:literal) => {
            include_str!(concat!("../../tests/fixtures/modules/", $f))
        };
    }

    fn ping(v: Value) -> Ping {
        Ping::from_opts(v.as_object().unwrap()).unwrap()
    }

    #[test]
    fn ipv4_without_loss() {
        let r = parse(fixture!("ping4_ok.txt"), Some(0)).unwrap();
        assert_eq!(r["sent"], 5);
        assert_eq!(r["received"], 5);
        assert_eq!(r["loss"], 0.0);
        assert_eq!(r["rtt_min"], 0.047);
        assert_eq!(r["rtt_avg"], 0.123);
        assert_eq!(r["rtt_max"], 0.427);
        assert_eq!(r["rtt_mdev"], 0.151);
        assert_eq!(r["time_ms"], 815);
        assert!(ping(json!({"dst": "192.0.2.2"})).passed(&r));
        assert_eq!(
            key_figures(&r),
            "loss 0.0% (5/5 received), rtt avg 0.123 ms"
        );
    }

    #[test]
    fn ipv6_without_loss() {
        let r = parse(fixture!("ping6_ok.txt"), Some(0)).unwrap();
        assert_eq!(
            (r["sent"].as_u64(), r["received"].as_u64()),
            (Some(5), Some(5))
        );
        assert_eq!(r["rtt_avg"], 0.050);
    }

    #[test]
    fn quiet_and_sized_outputs() {
        let r = parse(fixture!("ping4_quiet.txt"), Some(0)).unwrap();
        assert_eq!(
            (r["sent"].as_u64(), r["received"].as_u64()),
            (Some(4), Some(4))
        );
        assert_eq!(r["rtt_max"], 0.155);
        let r = parse(fixture!("ping4_size_iface.txt"), Some(0)).unwrap();
        assert_eq!(r["received"], 3);
    }

    #[test]
    fn partial_loss_v4_and_v6() {
        for f in [fixture!("ping4_loss.txt"), fixture!("ping6_loss.txt")] {
            let r = parse(f, Some(1)).unwrap();
            assert_eq!(r["sent"], 10);
            assert_eq!(r["received"], 6);
            assert_eq!(r["loss"], 40.0);
            assert!(r["rtt_avg"].is_f64());
            assert!(!ping(json!({"dst": "x"})).passed(&r));
            assert!(ping(json!({"dst": "x", "max_loss": 40})).passed(&r));
            assert!(!ping(json!({"dst": "x", "max_loss": 39.9})).passed(&r));
        }
    }

    #[test]
    fn total_loss_with_errors_has_no_rtt() {
        let r = parse(fixture!("ping4_all_lost.txt"), Some(1)).unwrap();
        assert_eq!(r["sent"], 4);
        assert_eq!(r["received"], 0);
        assert_eq!(r["errors"], 4);
        assert_eq!(r["loss"], 100.0);
        assert!(r["rtt_avg"].is_null() && r["rtt_min"].is_null());
        assert!(!ping(json!({"dst": "x", "max_loss": 99.9})).passed(&r));
        assert!(ping(json!({"dst": "x", "max_loss": 100})).passed(&r));
        assert_eq!(key_figures(&r), "loss 100.0% (0/4 received)");
    }

    #[test]
    fn total_loss_silent() {
        for f in [
            fixture!("ping4_ignored.txt"),
            fixture!("ping6_all_lost.txt"),
        ] {
            let r = parse(f, Some(1)).unwrap();
            assert_eq!(r["received"], 0);
            assert_eq!(r["errors"], 0);
            assert_eq!(r["loss"], 100.0);
            assert!(r["rtt_mdev"].is_null());
        }
    }

    #[test]
    fn duplicates_are_not_received_packets() {
        let r = parse(fixture!("ping4_duplicates.txt"), Some(0)).unwrap();
        assert_eq!(r["sent"], 3);
        assert_eq!(r["received"], 3);
        assert_eq!(r["duplicates"], 2);
        assert_eq!(r["loss"], 0.0);
    }

    #[test]
    fn malformed_output_is_a_clean_error() {
        let e = parse("ping: connect: Network is unreachable\n", Some(2)).unwrap_err();
        assert!(
            e.contains("no statistics") && e.contains("exit code 2"),
            "{e}"
        );
        let e = parse("PING x\n", None).unwrap_err();
        assert!(e.contains("killed"), "{e}");
        let e = parse("5 packets transmitted, lots received\n", Some(0)).unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
        let cut = "3 packets transmitted, 3 received, 0% packet loss, time 2ms\nrtt min/avg/max/mdev = 0.1/0.2\n";
        assert!(parse(cut, Some(0)).unwrap_err().contains("rtt line"));
        let no_rtt = "3 packets transmitted, 3 received, 0% packet loss, time 2ms\n";
        assert!(parse(no_rtt, Some(0)).is_err());
    }

    #[test]
    fn commands() {
        assert_eq!(
            ping(json!({"dst": "192.0.2.2", "count": 3, "interval": 0.2})).command(),
            "exec ping -n -q -c 3 -i 0.2 -W 2 192.0.2.2"
        );
        assert_eq!(
            ping(json!({"dst": "fd00::2", "size": 1000, "iface": "veth0", "ttl": 3, "timeout": 1}))
                .command(),
            "exec ping -n -q -6 -c 10 -i 1 -W 1 -s 1000 -I veth0 -t 3 fd00::2"
        );
    }

    #[test]
    fn option_errors() {
        let e = Ping::from_opts(json!({"dst": "x", "cuont": 1}).as_object().unwrap()).unwrap_err();
        assert!(e.to_string().contains("\"cuont\""));
        let e = Ping::from_opts(json!({"dst": "x", "count": 0}).as_object().unwrap()).unwrap_err();
        assert!(e.to_string().contains("\"count\""), "{e}");
        let e = Ping::from_opts(json!({"dst": "x; rm -rf /"}).as_object().unwrap()).unwrap_err();
        assert!(e.to_string().contains("\"dst\""), "{e}");
        let e =
            Ping::from_opts(json!({"dst": "x", "max_loss": 101}).as_object().unwrap()).unwrap_err();
        assert!(e.to_string().contains("max_loss"), "{e}");
    }
}
