//! The `iperf_server` and `iperf_client` modules on iperf3.
//!
//! `iperf_server(#{ bind, port, oneoff, cpu })` runs `iperf3 -s --forceflush` in
//! the background; `--forceflush` makes its `Server listening on PORT` line
//! reach stdout at once, which is the readiness signal ([`SERVER_READY`]).
//! Its result is `#{ port, connections }` (connections accepted).
//!
//! `iperf_client(#{ server, port, duration, proto, parallel, bitrate,
//! reverse, len, cpu, cport, bind })` runs `iperf3 -c SERVER -J` and reads
//! its JSON. `proto` is `tcp`, `udp` or `sctp` (`--sctp`), `len` the
//! message size in bytes (`-l`), `cpu` the CPU to pin iperf3 to (`-A`),
//! `cport` the client's source port (`--cport`), `bind` its source address
//! (`-B`).
//! Result: `#{ bps, retransmits, cpu_local, cpu_remote, intervals, bytes,
//! seconds, proto, streams }`; for UDP also `jitter_ms, lost_packets,
//! packets, lost_percent`. `bps` is the receiver's rate (`sum_received`; for
//! old UDP output without it, `sum`), `retransmits` the TCP sender's (`()`
//! for UDP), `cpu_*` the total utilisation in percent on this host and on
//! the server, `intervals` the bps of each reporting interval (1 s).
//! Passes when iperf3 reported no error and `bps > 0`; iperf3's own error
//! (`"unable to connect to server: Connection refused"`) becomes the job's
//! error message.

use serde_json::{json, Value};

use super::options::{self, bad, get_bool, get_int_in, get_str, get_word, OptSpec, OptType};
use super::{human_bps, shell_quote, ModuleError, Opts};

/// Regex over the server's stdout that says it listens.
pub const SERVER_READY: &str = r"Server listening on \d+";

/// iperf3's default port.
pub const DEFAULT_PORT: i64 = 5201;

/// The options `iperf_server` accepts.
pub const SERVER_OPTIONS: &[OptSpec] = &[
    OptSpec::opt("bind", OptType::Str),
    OptSpec::opt("port", OptType::Int),
    OptSpec::opt("oneoff", OptType::Bool),
    OptSpec::opt("cpu", OptType::Int),
];

/// The options `iperf_client` accepts.
pub const CLIENT_OPTIONS: &[OptSpec] = &[
    OptSpec::req("server", OptType::Str),
    OptSpec::opt("port", OptType::Int),
    OptSpec::opt("duration", OptType::Int),
    OptSpec::opt("proto", OptType::Str),
    OptSpec::opt("parallel", OptType::Int),
    OptSpec::opt("bitrate", OptType::Bitrate),
    OptSpec::opt("reverse", OptType::Bool),
    OptSpec::opt("len", OptType::Int),
    OptSpec::opt("cpu", OptType::Int),
    OptSpec::opt("cport", OptType::Int),
    OptSpec::opt("bind", OptType::Str),
];

/// Largest `len` iperf3 takes (its `MAX_BLOCKSIZE`, 1 MiB).
pub const MAX_LEN: i64 = 1024 * 1024;
/// Largest CPU number `cpu` takes (the kernel's `NR_CPUS` limit).
pub const MAX_CPU: i64 = 8191;

/// Checked `iperf_server` options.
#[derive(Debug, Clone, PartialEq)]
pub struct IperfServer {
    pub bind: Option<String>,
    pub port: i64,
    /// `-1`: serve one test, then exit.
    pub oneoff: bool,
    /// `-A CPU`: pin to this CPU.
    pub cpu: Option<i64>,
}

impl IperfServer {
    /// Checks the recipe's options (see the module doc).
    pub fn from_opts(opts: &Opts) -> Result<IperfServer, ModuleError> {
        const N: &str = "iperf_server";
        options::check(N, SERVER_OPTIONS, opts)?;
        Ok(IperfServer {
            bind: get_word(N, opts, "bind")?,
            port: get_int_in(N, opts, "port", 1, 65535)?.unwrap_or(DEFAULT_PORT),
            oneoff: get_bool(opts, "oneoff").unwrap_or(false),
            cpu: get_int_in(N, opts, "cpu", 0, MAX_CPU)?,
        })
    }

    /// `iperf3 -s -p PORT [-B BIND] [-1] [-A CPU] --forceflush`.
    pub fn command(&self) -> String {
        let mut c = format!("exec iperf3 -s -p {}", self.port);
        if let Some(b) = &self.bind {
            c += &format!(" -B {}", shell_quote(b));
        }
        if self.oneoff {
            c.push_str(" -1");
        }
        if let Some(n) = self.cpu {
            c += &format!(" -A {n}");
        }
        c.push_str(" --forceflush");
        c
    }
}

/// Transport of an iperf test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    /// The values `proto` accepts.
    pub const NAMES: &'static str = "\"tcp\", \"udp\" or \"sctp\"";

    /// Reads option `proto` of module `n` (default tcp).
    pub fn from_opts(n: &str, opts: &Opts) -> Result<Proto, ModuleError> {
        match get_str(opts, "proto").as_deref() {
            None | Some("tcp") => Ok(Proto::Tcp),
            Some("udp") => Ok(Proto::Udp),
            Some("sctp") => Ok(Proto::Sctp),
            Some(p) => Err(bad(n, "proto", format!("{p:?} is not {}", Proto::NAMES))),
        }
    }
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        })
    }
}

/// Checked `iperf_client` options.
#[derive(Debug, Clone, PartialEq)]
pub struct IperfClient {
    pub server: String,
    pub port: i64,
    /// Seconds (`-t`; iperf3 takes whole seconds).
    pub duration: i64,
    pub proto: Proto,
    pub parallel: i64,
    /// As given to `-b` (`"10M"`, or bits per second).
    pub bitrate: Option<String>,
    pub reverse: bool,
    /// `-l LEN`: bytes per read/write (UDP: per datagram).
    pub len: Option<i64>,
    /// `-A CPU`: pin to this CPU.
    pub cpu: Option<i64>,
    /// `--cport PORT`: the client's source port.
    pub cport: Option<i64>,
    pub bind: Option<String>,
}

impl IperfClient {
    /// Checks the recipe's options (see the module doc).
    pub fn from_opts(opts: &Opts) -> Result<IperfClient, ModuleError> {
        Self::from_opts_as("iperf_client", CLIENT_OPTIONS, "server", opts)
    }

    /// Like [`from_opts`](Self::from_opts) for caller `n` (`perf`) with its
    /// own option table and the server address in option `server_key`.
    pub(crate) fn from_opts_as(
        n: &str,
        specs: &[OptSpec],
        server_key: &str,
        opts: &Opts,
    ) -> Result<IperfClient, ModuleError> {
        options::check(n, specs, opts)?;
        let proto = Proto::from_opts(n, opts)?;
        let bitrate = match opts.get("bitrate") {
            None => None,
            Some(Value::String(s)) => {
                let ok = s
                    .strip_suffix(['k', 'K', 'm', 'M', 'g', 'G'])
                    .unwrap_or(s)
                    .parse::<f64>()
                    .is_ok_and(|v| v >= 0.0);
                if !ok {
                    return Err(bad(
                        n,
                        "bitrate",
                        format!("{s:?} is not a rate like \"10M\""),
                    ));
                }
                Some(s.clone())
            }
            Some(v) => match v.as_u64() {
                Some(b) => Some(b.to_string()),
                None => return Err(bad(n, "bitrate", format!("{v} is negative"))),
            },
        };
        Ok(IperfClient {
            server: get_word(n, opts, server_key)?.unwrap_or_default(),
            port: get_int_in(n, opts, "port", 1, 65535)?.unwrap_or(DEFAULT_PORT),
            duration: get_int_in(n, opts, "duration", 1, 86400)?.unwrap_or(10),
            proto,
            parallel: get_int_in(n, opts, "parallel", 1, 128)?.unwrap_or(1),
            bitrate,
            reverse: get_bool(opts, "reverse").unwrap_or(false),
            len: get_int_in(n, opts, "len", 1, MAX_LEN)?,
            cpu: get_int_in(n, opts, "cpu", 0, MAX_CPU)?,
            cport: get_int_in(n, opts, "cport", 1, 65535)?,
            bind: get_word(n, opts, "bind")?,
        })
    }

    /// `iperf3 -c SERVER -p PORT -t DURATION [-u|--sctp] [-P N] [-b RATE]
    /// [-R] [-l LEN] [-A CPU] [--cport PORT] [-B BIND] -J`.
    pub fn command(&self) -> String {
        let mut c = format!(
            "exec iperf3 -c {} -p {} -t {}",
            shell_quote(&self.server),
            self.port,
            self.duration
        );
        match self.proto {
            Proto::Tcp => {}
            Proto::Udp => c.push_str(" -u"),
            Proto::Sctp => c.push_str(" --sctp"),
        }
        if self.parallel != 1 {
            c += &format!(" -P {}", self.parallel);
        }
        if let Some(b) = &self.bitrate {
            c += &format!(" -b {}", shell_quote(b));
        }
        if self.reverse {
            c.push_str(" -R");
        }
        if let Some(l) = self.len {
            c += &format!(" -l {l}");
        }
        if let Some(n) = self.cpu {
            c += &format!(" -A {n}");
        }
        if let Some(p) = self.cport {
            c += &format!(" --cport {p}");
        }
        if let Some(b) = &self.bind {
            c += &format!(" -B {}", shell_quote(b));
        }
        c.push_str(" -J");
        c
    }
}

/// The server's result: `#{ port, connections }` from its text output.
///
/// iperf3 exits with code 1 when SIGTERM/SIGINT stops it (printing
/// `iperf3: interrupt - the server has terminated` on stderr), which is how
/// a recipe's `kill()` ends it; so once it listened, any exit is a normal
/// end. An exit before `Server listening` (port in use, bad address) is an
/// error.
pub fn parse_server(stdout: &str, exit_code: Option<i32>) -> Result<Value, String> {
    let port = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Server listening on "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse::<u64>().ok());
    let connections = stdout
        .lines()
        .filter(|l| l.starts_with("Accepted connection from "))
        .count();
    match (port, exit_code) {
        (None, Some(c)) if c != 0 => Err(format!(
            "iperf3 server exited with code {c} without listening (see its stderr)"
        )),
        _ => Ok(json!({ "port": port, "connections": connections })),
    }
}

/// `listening on 5201, 1 connection(s)`.
pub fn server_key_figures(result: &Value) -> String {
    format!(
        "listening on {}, {} connection(s)",
        result["port"], result["connections"]
    )
}

/// Reads `iperf3 -J` output (see the module doc for the result).
pub fn parse_client(stdout: &str, exit_code: Option<i32>) -> Result<Value, String> {
    let doc: Value = serde_json::from_str(stdout).map_err(|e| {
        let code = exit_code.map_or("killed".to_string(), |c| format!("exit code {c}"));
        format!("iperf3 output is not JSON ({e}; {code})")
    })?;
    if let Some(err) = doc.get("error").and_then(Value::as_str) {
        return Err(format!("iperf3: {err}"));
    }
    let end = doc
        .get("end")
        .filter(|e| e.as_object().is_some_and(|o| !o.is_empty()))
        .ok_or("iperf3 JSON has no \"end\" section")?;
    let start = &doc["start"]["test_start"];
    let udp = start["protocol"].as_str() == Some("UDP");
    let proto = start["protocol"]
        .as_str()
        .map_or("tcp".to_string(), str::to_ascii_lowercase);
    let sum = if end.get("sum_received").is_some() {
        &end["sum_received"]
    } else if end.get("sum").is_some() {
        &end["sum"]
    } else {
        return Err("iperf3 JSON has no sum_received or sum".into());
    };
    let bps = sum["bits_per_second"]
        .as_f64()
        .ok_or("iperf3 JSON has no bits_per_second")?;
    let intervals: Vec<Value> = doc["intervals"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|i| i["sum"]["omitted"].as_bool() != Some(true))
                .filter_map(|i| i["sum"]["bits_per_second"].as_f64())
                .map(Value::from)
                .collect()
        })
        .unwrap_or_default();
    let cpu = &end["cpu_utilization_percent"];
    let mut r = json!({
        "bps": bps,
        "retransmits": if udp { Value::Null } else { end["sum_sent"]["retransmits"].clone() },
        "cpu_local": cpu["host_total"].clone(),
        "cpu_remote": cpu["remote_total"].clone(),
        "intervals": intervals,
        "bytes": sum["bytes"].clone(),
        "seconds": sum["seconds"].clone(),
        "proto": proto,
        "streams": start["num_streams"].clone(),
    });
    if udp {
        let s = &end["sum"];
        for k in ["jitter_ms", "lost_packets", "packets", "lost_percent"] {
            r[k] = s[k].clone();
        }
    }
    Ok(r)
}

/// `bps > 0`.
pub fn client_passed(result: &Value) -> bool {
    result["bps"].as_f64().is_some_and(|b| b > 0.0)
}

/// `9.82 Gbit/s, 1211 retransmits` / `49.95 Mbit/s, lost 0%`.
pub fn client_key_figures(result: &Value) -> String {
    let mut s = human_bps(result["bps"].as_f64().unwrap_or(0.0));
    if let Some(r) = result["retransmits"].as_u64() {
        s += &format!(", {r} retransmits");
    }
    if let Some(l) = result["lost_percent"].as_f64() {
        s += &format!(", lost {l:.2}%");
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

    fn o(v: Value) -> Opts {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn tcp_result() {
        let r = parse_client(fixture!("iperf_tcp.json"), Some(0)).unwrap();
        assert_eq!(r["bps"], 9822009930.21686);
        assert_eq!(r["retransmits"], 1211);
        assert_eq!(r["cpu_local"], 36.73096893040873);
        assert_eq!(r["cpu_remote"], 45.2945517439033);
        assert_eq!(r["intervals"], json!([10156102300.411, 9484549605.155704]));
        assert_eq!(r["proto"], "tcp");
        assert_eq!(r["streams"], 1);
        assert!(r.get("lost_percent").is_none());
        assert!(client_passed(&r));
        assert_eq!(client_key_figures(&r), "9.82 Gbit/s, 1211 retransmits");
    }

    #[test]
    fn udp_result() {
        let r = parse_client(fixture!("iperf_udp.json"), Some(0)).unwrap();
        assert_eq!(r["bps"], 49948056.28452176);
        assert!(r["retransmits"].is_null());
        assert_eq!(r["lost_percent"], 0);
        assert_eq!(r["packets"], 4313);
        assert_eq!(r["jitter_ms"], 0.00778809533833951);
        assert_eq!(r["proto"], "udp");
        assert_eq!(r["intervals"].as_array().unwrap().len(), 2);
        assert!(client_passed(&r));
        assert_eq!(client_key_figures(&r), "49.95 Mbit/s, lost 0.00%");
    }

    #[test]
    fn parallel_reverse_result() {
        let r = parse_client(fixture!("iperf_tcp_parallel_reverse.json"), Some(0)).unwrap();
        assert_eq!(r["bps"], 12814455962.91614);
        assert_eq!(r["streams"], 2);
        assert_eq!(r["retransmits"], 458);
    }

    #[test]
    fn iperf_error_becomes_the_message() {
        let e = parse_client(fixture!("iperf_refused.json"), Some(1)).unwrap_err();
        assert_eq!(e, "iperf3: unable to connect to server: Connection refused");
        let e = parse_client("iperf3: error - oops\n", Some(1)).unwrap_err();
        assert!(e.contains("not JSON") && e.contains("exit code 1"), "{e}");
        let e = parse_client("{\"start\": {}, \"end\": {}}", Some(0)).unwrap_err();
        assert!(e.contains("end"), "{e}");
        assert!(!client_passed(&json!({"bps": 0.0})));
    }

    #[test]
    fn server_output() {
        let r = parse_server(fixture!("iperf_server_tcp.txt"), Some(0)).unwrap();
        assert_eq!(r, json!({"port": 5201, "connections": 1}));
        // Killed by the recipe: by a signal, or iperf3's exit 1 on SIGTERM.
        let r = parse_server("Server listening on 5202 (test #1)\n", None).unwrap();
        assert_eq!(r["port"], 5202);
        let r = parse_server("Server listening on 5202 (test #1)\n", Some(1)).unwrap();
        assert_eq!(r["connections"], 0);
        assert!(parse_server("", Some(1))
            .unwrap_err()
            .contains("without listening"));
        let re = regex::Regex::new(SERVER_READY).unwrap();
        assert!(re.is_match(fixture!("iperf_server_tcp.txt")));
    }

    #[test]
    fn commands_and_options() {
        let s = IperfServer::from_opts(&o(json!({"bind": "192.0.2.2", "port": 5300}))).unwrap();
        assert_eq!(
            s.command(),
            "exec iperf3 -s -p 5300 -B 192.0.2.2 --forceflush"
        );
        let c = IperfClient::from_opts(&o(json!({"server": "192.0.2.2", "duration": 1}))).unwrap();
        assert_eq!(c.command(), "exec iperf3 -c 192.0.2.2 -p 5201 -t 1 -J");
        let c = IperfClient::from_opts(&o(json!({
            "server": "fd00::2", "proto": "udp", "parallel": 4, "bitrate": "100M",
            "reverse": true, "port": 6000, "duration": 2
        })))
        .unwrap();
        assert_eq!(
            c.command(),
            "exec iperf3 -c fd00::2 -p 6000 -t 2 -u -P 4 -b 100M -R -J"
        );
        let c = IperfClient::from_opts(&o(json!({"server": "x", "bitrate": 1000000}))).unwrap();
        assert_eq!(c.bitrate.as_deref(), Some("1000000"));
        let c = IperfClient::from_opts(&o(json!({
            "server": "192.0.2.2", "proto": "sctp", "len": 1400, "cpu": 1, "cport": 40000,
            "bind": "192.0.2.1", "duration": 1
        })))
        .unwrap();
        assert_eq!(
            c.command(),
            "exec iperf3 -c 192.0.2.2 -p 5201 -t 1 --sctp -l 1400 -A 1 --cport 40000 -B 192.0.2.1 -J"
        );
        let s = IperfServer::from_opts(&o(json!({"cpu": 0}))).unwrap();
        assert_eq!(s.command(), "exec iperf3 -s -p 5201 -A 0 --forceflush");
        let e = IperfClient::from_opts(&o(json!({"server": "x", "proto": "quic"})))
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"tcp\", \"udp\" or \"sctp\""), "{e}");
        for (bad, name) in [
            (json!({"server": "x", "proto": "quic"}), "proto"),
            (json!({"server": "x", "len": 0}), "len"),
            (json!({"server": "x", "len": "1k"}), "len"),
            (json!({"server": "x", "cpu": -1}), "cpu"),
            (json!({"server": "x", "cport": 70000}), "cport"),
            (json!({"server": "x", "bitrate": "fast"}), "bitrate"),
            (json!({"server": "x", "duration": 1.5}), "duration"),
            (json!({"server": "x", "paralel": 2}), "paralel"),
            (json!({"duration": 1}), "server"),
        ] {
            let e = IperfClient::from_opts(&o(bad)).unwrap_err().to_string();
            assert!(e.contains(&format!("\"{name}\"")), "{e}");
        }
    }
}
