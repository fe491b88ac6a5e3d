//! `lnst-agent cpu-stat --interval S [--count N]`: per-CPU utilisation
//! sampled from `/proc/stat`, for the `cpu_stat` module.
//!
//! Every `S` seconds (float) it reads `/proc/stat` again and prints one JSON
//! line computed from the difference to the previous read, like `mpstat -P
//! ALL S`:
//!
//! ```text
//! {"t": 1.000, "cpus": [{"cpu": "all", "util": 12.5, "user": 2.0, "system": 9.5,
//!   "irq": 0.0, "softirq": 1.0, "iowait": 0.0, "steal": 0.0}, {"cpu": "cpu0", ..}, ..]}
//! ```
//!
//! `t` is seconds since the start; every figure is a percentage of the
//! CPU's time in the interval; `util` is everything but idle and iowait.
//! `all` is the machine-wide line (`cpu` in `/proc/stat`). It runs until
//! SIGTERM/SIGINT (then exits 0) or until `--count` lines were printed.

use std::io::Write;
use std::time::{Duration, Instant};

use super::{check_known, install_stop_handler, stop_requested, take_opt};

/// One CPU's cumulative jiffies from one `/proc/stat` line.
#[derive(Debug, Clone, PartialEq, Default)]
struct Times {
    name: String,
    user: u64,
    nice: u64,
    system: u64,
    idle: u64,
    iowait: u64,
    irq: u64,
    softirq: u64,
    steal: u64,
}

impl Times {
    /// Sum of all states. `guest` and `guest_nice` are already counted in
    /// `user` and `nice`, so they are left out.
    fn total(&self) -> u64 {
        self.user
            + self.nice
            + self.system
            + self.idle
            + self.iowait
            + self.irq
            + self.softirq
            + self.steal
    }
}

/// Entry point of `lnst-agent cpu-stat`; `args` are the arguments after the
/// subcommand name. Returns the process exit code: 0 after a clean stop or
/// `--count` samples, 1 when `/proc/stat` cannot be read, 2 for bad
/// arguments.
pub fn cpu_stat_main(args: &[String]) -> i32 {
    let (interval, count) = match parse_args(args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("lnst-agent cpu-stat: {e}");
            eprintln!("usage: lnst-agent cpu-stat [--interval SECONDS] [--count N]");
            return 2;
        }
    };
    match run(interval, count) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("lnst-agent cpu-stat: {e}");
            1
        }
    }
}

fn parse_args(args: &[String]) -> Result<(Duration, Option<u64>), String> {
    check_known(args, &["interval", "count"])?;
    let interval = match take_opt(args, "interval")? {
        Some(s) => s
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.01 && *v <= 86400.0)
            .ok_or_else(|| format!("--interval {s:?} is not a number of seconds in 0.01..86400"))?,
        None => 1.0,
    };
    let count = match take_opt(args, "count")? {
        Some(s) => Some(
            s.parse::<u64>()
                .map_err(|_| format!("--count {s:?} is not a whole number"))?,
        ),
        None => None,
    };
    Ok((Duration::from_secs_f64(interval), count))
}

fn run(interval: Duration, count: Option<u64>) -> Result<(), String> {
    install_stop_handler().map_err(|e| format!("installing signal handlers: {e}"))?;
    let start = Instant::now();
    let mut prev = read_stat()?;
    let mut printed = 0u64;
    let mut next = start + interval;
    while count.is_none() || count > Some(printed) {
        // Sleep in short steps so a stop signal ends the wait promptly.
        while Instant::now() < next {
            if stop_requested() {
                return Ok(());
            }
            let left = next.saturating_duration_since(Instant::now());
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
        let now = read_stat()?;
        let line = sample_line(start.elapsed().as_secs_f64(), &prev, &now);
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")
            .and_then(|_| out.flush())
            .map_err(|e| format!("writing a sample: {e}"))?;
        prev = now;
        printed += 1;
        next += interval;
    }
    Ok(())
}

fn read_stat() -> Result<Vec<Times>, String> {
    let text =
        std::fs::read_to_string("/proc/stat").map_err(|e| format!("reading /proc/stat: {e}"))?;
    let cpus = parse_stat(&text);
    if cpus.is_empty() {
        return Err("no cpu lines in /proc/stat".into());
    }
    Ok(cpus)
}

/// The `cpu` and `cpuN` lines of `/proc/stat`, in file order.
fn parse_stat(text: &str) -> Vec<Times> {
    text.lines()
        .filter(|l| l.starts_with("cpu"))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let name = f.next()?.to_string();
            let v: Vec<u64> = f.map(|x| x.parse().unwrap_or(0)).collect();
            let get = |i: usize| v.get(i).copied().unwrap_or(0);
            Some(Times {
                name,
                user: get(0),
                nice: get(1),
                system: get(2),
                idle: get(3),
                iowait: get(4),
                irq: get(5),
                softirq: get(6),
                steal: get(7),
            })
        })
        .collect()
}

/// One output line from two reads of `/proc/stat`. A CPU missing from
/// either read (hot-unplugged) is left out.
fn sample_line(t: f64, prev: &[Times], now: &[Times]) -> String {
    let mut cpus = Vec::new();
    for n in now {
        let Some(p) = prev.iter().find(|p| p.name == n.name) else {
            continue;
        };
        let total = n.total().saturating_sub(p.total());
        let pct = |a: u64, b: u64| {
            if total == 0 {
                0.0
            } else {
                100.0 * a.saturating_sub(b) as f64 / total as f64
            }
        };
        let idle = pct(n.idle + n.iowait, p.idle + p.iowait);
        let util = if total == 0 {
            0.0
        } else {
            (100.0 - idle).max(0.0)
        };
        let name = if n.name == "cpu" { "all" } else { &n.name };
        cpus.push(format!(
            "{{\"cpu\": \"{name}\", \"util\": {:.2}, \"user\": {:.2}, \"system\": {:.2}, \
             \"irq\": {:.2}, \"softirq\": {:.2}, \"iowait\": {:.2}, \"steal\": {:.2}}}",
            util,
            pct(n.user + n.nice, p.user + p.nice),
            pct(n.system, p.system),
            pct(n.irq, p.irq),
            pct(n.softirq, p.softirq),
            pct(n.iowait, p.iowait),
            pct(n.steal, p.steal),
        ));
    }
    format!("{{\"t\": {t:.3}, \"cpus\": [{}]}}", cpus.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "cpu  100 0 100 800 0 0 0 0 0 0\n\
                     cpu0 50 0 50 400 0 0 0 0 0 0\n\
                     cpu1 50 0 50 400 0 0 0 0 0 0\nintr 1 2 3\n";
    const B: &str = "cpu  150 0 150 900 0 0 0 0 0 0\n\
                     cpu0 100 0 100 400 0 0 0 0 0 0\n\
                     cpu1 50 0 50 500 0 0 0 0 0 0\nintr 1 2 3\n";

    #[test]
    fn deltas_give_percentages() {
        let line = sample_line(1.0, &parse_stat(A), &parse_stat(B));
        assert_eq!(
            line,
            "{\"t\": 1.000, \"cpus\": [\
             {\"cpu\": \"all\", \"util\": 50.00, \"user\": 25.00, \"system\": 25.00, \"irq\": 0.00, \"softirq\": 0.00, \"iowait\": 0.00, \"steal\": 0.00}, \
             {\"cpu\": \"cpu0\", \"util\": 100.00, \"user\": 50.00, \"system\": 50.00, \"irq\": 0.00, \"softirq\": 0.00, \"iowait\": 0.00, \"steal\": 0.00}, \
             {\"cpu\": \"cpu1\", \"util\": 0.00, \"user\": 0.00, \"system\": 0.00, \"irq\": 0.00, \"softirq\": 0.00, \"iowait\": 0.00, \"steal\": 0.00}]}"
        );
    }

    #[test]
    fn bad_interval_is_refused() {
        let a: Vec<String> = vec!["--interval".into(), "x".into()];
        assert!(parse_args(&a).unwrap_err().contains("--interval"));
        assert_eq!(cpu_stat_main(&a), 2);
    }
}
