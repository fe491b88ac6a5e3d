//! `perf(#{ client, server, dst, duration, runs, proto, parallel, len, cpu,
//! desc })`: the
//! pure parts of a throughput measurement repeated `runs` times.
//!
//! The orchestration (start [`Perf::server_module`] on `server` in the
//! background and wait until it is ready, run [`Perf::client_module`] on
//! `client` `runs` times, stop the server, record one result) lives in the
//! recipe runtime; this file checks the options, builds the two modules and
//! turns the per-run `bps` figures into the summary
//! `#{ samples: [bps, ..], mean, stddev, unit: "bps" }` ([`summarize`]).
//! `stddev` is the sample standard deviation (n - 1 in the denominator),
//! 0 for a single run.
//!
//! Options: `client`, `server` (the hosts; any value here, the runtime
//! checks them), `dst` (string, required: the server address the client
//! connects to), `duration` (int seconds, default 10), `runs` (int, default
//! 3), `proto` (`"tcp"`/`"udp"`), `parallel` (int), `port` (int, default
//! 5201), `bitrate`, `reverse`, `len` (bytes per write), `cpu` (the CPU
//! both iperf3 ends are pinned to), `desc` (the result line's text; by
//! default it names the protocol, the destination and the hosts:
//! `perf tcp 192.0.2.2 (h1 -> h2)`, see [`Perf::line`]).

use serde_json::{json, Map, Value};

use super::iperf::IperfClient;
use super::options::{get_int_in, get_str, OptSpec, OptType};
use super::{human_bps, Module, ModuleError, Opts};

const NAME: &str = "perf";

/// The options `perf` accepts.
pub const OPTIONS: &[OptSpec] = &[
    OptSpec::opt("client", OptType::Any),
    OptSpec::opt("server", OptType::Any),
    OptSpec::req("dst", OptType::Str),
    OptSpec::opt("duration", OptType::Int),
    OptSpec::opt("runs", OptType::Int),
    OptSpec::opt("proto", OptType::Str),
    OptSpec::opt("parallel", OptType::Int),
    OptSpec::opt("port", OptType::Int),
    OptSpec::opt("bitrate", OptType::Bitrate),
    OptSpec::opt("reverse", OptType::Bool),
    OptSpec::opt("len", OptType::Int),
    OptSpec::opt("cpu", OptType::Int),
    OptSpec::opt("desc", OptType::Str),
];

/// Checked `perf` options.
#[derive(Debug, Clone, PartialEq)]
pub struct Perf {
    pub runs: i64,
    /// Every client run's settings (`server` is `dst`).
    pub client: IperfClient,
    /// The recipe's text for the result line.
    pub desc: Option<String>,
}

impl Perf {
    /// Checks the recipe's options (see the module doc).
    pub fn from_opts(opts: &Opts) -> Result<Perf, ModuleError> {
        let client = IperfClient::from_opts_as(NAME, OPTIONS, "dst", opts)?;
        Ok(Perf {
            runs: get_int_in(NAME, opts, "runs", 1, 1000)?.unwrap_or(3),
            client,
            desc: get_str(opts, "desc"),
        })
    }

    /// The result line: `desc`, or `perf PROTO DST (CLIENT -> SERVER)`
    /// with `reverse`, `parallel`, `len` and `cpu` when set, so that two
    /// measurements of one recipe are told apart in the summary.
    pub fn line(&self, client: &str, server: &str) -> String {
        if let Some(d) = &self.desc {
            return d.clone();
        }
        let c = &self.client;
        let mut s = format!("perf {} {} ({client} -> {server})", c.proto, c.server);
        if c.reverse {
            s.push_str(" reverse");
        }
        if c.parallel != 1 {
            s += &format!(" parallel {}", c.parallel);
        }
        if let Some(l) = c.len {
            s += &format!(" len {l}");
        }
        if let Some(n) = c.cpu {
            s += &format!(" cpu {n}");
        }
        s
    }

    /// The `iperf_server` to start (in the background) on the server host.
    pub fn server_module(&self) -> Result<Module, ModuleError> {
        let mut o = Map::new();
        o.insert("port".into(), json!(self.client.port));
        if let Some(n) = self.client.cpu {
            o.insert("cpu".into(), json!(n));
        }
        Module::new("iperf_server", o)
    }

    /// The `iperf_client` to run `runs` times on the client host.
    pub fn client_module(&self) -> Result<Module, ModuleError> {
        let c = &self.client;
        let mut o = Map::new();
        o.insert("server".into(), json!(c.server));
        o.insert("port".into(), json!(c.port));
        o.insert("duration".into(), json!(c.duration));
        o.insert("proto".into(), json!(c.proto.to_string()));
        o.insert("parallel".into(), json!(c.parallel));
        o.insert("reverse".into(), json!(c.reverse));
        if let Some(b) = &c.bitrate {
            o.insert("bitrate".into(), json!(b));
        }
        if let Some(l) = c.len {
            o.insert("len".into(), json!(l));
        }
        if let Some(n) = c.cpu {
            o.insert("cpu".into(), json!(n));
        }
        Module::new("iperf_client", o)
    }
}

/// `#{ samples, mean, stddev, unit: "bps" }` of the runs' `bps` figures.
pub fn summarize(samples: &[f64]) -> Value {
    let n = samples.len() as f64;
    let mean = if samples.is_empty() {
        0.0
    } else {
        samples.iter().sum::<f64>() / n
    };
    let stddev = if samples.len() < 2 {
        0.0
    } else {
        (samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    };
    json!({ "samples": samples, "mean": mean, "stddev": stddev, "unit": "bps" })
}

/// Every run measured something: `runs` samples, all above 0.
pub fn passed(summary: &Value, runs: i64) -> bool {
    summary["samples"].as_array().is_some_and(|s| {
        s.len() as i64 == runs && s.iter().all(|v| v.as_f64().is_some_and(|b| b > 0.0))
    })
}

/// `9.82 Gbit/s ± 0.12 Gbit/s over 3 runs`.
pub fn key_figures(summary: &Value) -> String {
    let n = summary["samples"].as_array().map_or(0, Vec::len);
    format!(
        "{} ± {} over {n} runs",
        human_bps(summary["mean"].as_f64().unwrap_or(0.0)),
        human_bps(summary["stddev"].as_f64().unwrap_or(0.0))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics() {
        let s = summarize(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_eq!(s["mean"], 5.0);
        // Sample standard deviation: sqrt(32 / 7).
        assert!((s["stddev"].as_f64().unwrap() - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        assert_eq!(s["unit"], "bps");
        assert_eq!(s["samples"].as_array().unwrap().len(), 8);
        let one = summarize(&[1e9]);
        assert_eq!(
            (one["mean"].as_f64(), one["stddev"].as_f64()),
            (Some(1e9), Some(0.0))
        );
        assert_eq!(key_figures(&one), "1.00 Gbit/s ± 0.00 bit/s over 1 runs");
        assert!(passed(&one, 1) && !passed(&one, 2));
        assert!(!passed(&summarize(&[1.0, 0.0]), 2));
        assert_eq!(summarize(&[])["mean"], 0.0);
    }

    #[test]
    fn options_and_modules() {
        let o = json!({"client": "h1", "server": "h2", "dst": "192.0.2.2", "duration": 1,
                       "runs": 2, "proto": "udp", "parallel": 2});
        let p = Perf::from_opts(o.as_object().unwrap()).unwrap();
        assert_eq!(p.runs, 2);
        assert_eq!(
            p.client_module().unwrap().command(),
            "exec iperf3 -c 192.0.2.2 -p 5201 -t 1 -u -P 2 -J"
        );
        assert_eq!(
            p.server_module().unwrap().command(),
            "exec iperf3 -s -p 5201 --forceflush"
        );
        assert_eq!(
            p.line("h1", "h2"),
            "perf udp 192.0.2.2 (h1 -> h2) parallel 2"
        );
        let o = json!({"dst": "fd00::2", "len": 9000, "cpu": 1, "duration": 1, "proto": "sctp"});
        let p = Perf::from_opts(o.as_object().unwrap()).unwrap();
        assert_eq!(
            p.client_module().unwrap().command(),
            "exec iperf3 -c fd00::2 -p 5201 -t 1 --sctp -l 9000 -A 1 -J"
        );
        assert_eq!(
            p.server_module().unwrap().command(),
            "exec iperf3 -s -p 5201 -A 1 --forceflush"
        );
        assert_eq!(
            p.line("a", "b"),
            "perf sctp fd00::2 (a -> b) len 9000 cpu 1"
        );
        let o = json!({"dst": "x", "desc": "jumbo frames"});
        assert_eq!(
            Perf::from_opts(o.as_object().unwrap())
                .unwrap()
                .line("a", "b"),
            "jumbo frames"
        );
        let e = Perf::from_opts(json!({"dst": "x", "cport": 2}).as_object().unwrap()).unwrap_err();
        assert!(e.to_string().contains("\"cport\""), "{e}");
        let e = Perf::from_opts(json!({"dst": "x", "rnus": 2}).as_object().unwrap()).unwrap_err();
        assert!(
            e.to_string().starts_with("perf: unknown option \"rnus\""),
            "{e}"
        );
        let e = Perf::from_opts(json!({"dst": "x", "runs": 0}).as_object().unwrap()).unwrap_err();
        assert!(e.to_string().contains("\"runs\""), "{e}");
    }
}
