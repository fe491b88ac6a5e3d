//! What `lnst-ctl run` shows while it runs and at the end. In a terminal
//! (stderr a TTY, no `-v`) a status line on stderr, redrawn in place every
//! half second: the match, the current step or job, the results so far,
//! the elapsed time; hidden while a breakpoint is paused. The summary's
//! verdicts are coloured when stdout is a terminal. Not a terminal: no
//! status line and no escape sequences; `NO_COLOR` (any non-empty value,
//! no-color.org) turns colour off everywhere.

use std::io::{IsTerminal, Write};
use std::rc::Weak;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use regex::Regex;

use crate::recipe::api::Core;
use crate::report::Verdict;

/// Set while a breakpoint waits at its prompt: the status line stays away.
pub static PAUSED: AtomicBool = AtomicBool::new(false);

/// How often the status line is redrawn (its clock moves).
const TICK: Duration = Duration::from_millis(500);

/// Whether colour is allowed at all (`NO_COLOR` unset or empty).
pub fn color_allowed() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The status line's content.
#[derive(Default)]
struct Line {
    /// `match 1/3`, or empty for a single match.
    label: String,
    step: String,
    pass: usize,
    fail: usize,
    running: usize,
    started: Option<Instant>,
    shown: bool,
}

impl Line {
    fn render(&self, color: bool) -> String {
        let secs = self
            .started
            .map(|t| t.elapsed().as_secs_f64())
            .unwrap_or(0.0);
        let c = |s: String, code: &str| {
            if color {
                format!("\x1b[{code}m{s}\x1b[0m")
            } else {
                s
            }
        };
        let mut counts = c(format!("{} pass", self.pass), "32");
        if self.fail > 0 {
            counts.push_str(&format!(" {}", c(format!("{} fail", self.fail), "1;31")));
        }
        if self.running > 0 {
            counts.push_str(&format!(" {} running", self.running));
        }
        let label = if self.label.is_empty() {
            String::new()
        } else {
            format!("{} ", self.label)
        };
        let step: String = self.step.chars().take(70).collect();
        format!("{label}[{secs:6.1} s] {counts} | {step}")
    }
}

/// The run's progress display.
pub struct Progress {
    /// A status line is drawn (stderr is a terminal, no `-v`).
    tty: bool,
    /// The status line may use colour.
    color: bool,
    line: Arc<Mutex<Line>>,
    stop: Arc<AtomicBool>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    /// `verbose`: with `-v` the run log goes to stderr, so no status line.
    pub fn new(verbose: u8) -> Progress {
        let tty = std::io::stderr().is_terminal() && verbose == 0;
        Progress {
            tty,
            color: tty && color_allowed(),
            line: Arc::new(Mutex::new(Line::default())),
            stop: Arc::new(AtomicBool::new(false)),
            ticker: None,
        }
    }

    /// No status line, whatever stderr is: a recipe of a suite, where
    /// several runs share stderr and the suite prints plain lines.
    pub fn quiet() -> Progress {
        Progress {
            tty: false,
            color: false,
            line: Arc::new(Mutex::new(Line::default())),
            stop: Arc::new(AtomicBool::new(false)),
            ticker: None,
        }
    }

    /// A match starts: its label, and the ticker that keeps the clock moving.
    pub fn start_match(&mut self, n: usize, of: usize) {
        if !self.tty {
            return;
        }
        {
            let mut l = lock(&self.line);
            *l = Line {
                label: if of > 1 {
                    format!("match {n}/{of}")
                } else {
                    String::new()
                },
                step: "connecting".into(),
                started: Some(Instant::now()),
                ..Line::default()
            };
        }
        self.stop.store(false, Ordering::Relaxed);
        let (line, stop, color) = (Arc::clone(&self.line), Arc::clone(&self.stop), self.color);
        self.ticker = std::thread::Builder::new()
            .name("lnst-progress".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    draw(&line, color);
                    std::thread::sleep(TICK);
                }
            })
            .ok();
    }

    /// The `Core::status` hook of a match: `step` is what is running now
    /// ("" keeps it and only recounts the results of `core`).
    pub fn status(&self, core: Weak<Core>) -> Box<dyn Fn(&str)> {
        if !self.tty {
            return Box::new(|_: &str| {});
        }
        let (line, color) = (Arc::clone(&self.line), self.color);
        Box::new(move |step: &str| {
            {
                let mut l = lock(&line);
                if !step.is_empty() {
                    l.step = step.to_string();
                }
                if let Some(core) = core.upgrade() {
                    if let Ok(rs) = core.results.try_borrow() {
                        l.pass = rs.iter().filter(|r| r.result == Verdict::Pass).count();
                        l.running = rs.iter().filter(|r| r.result == Verdict::Running).count();
                        l.fail = rs.len() - l.pass - l.running;
                    }
                }
            }
            draw(&line, color);
        })
    }

    /// The match ended: the ticker stops and the line is erased.
    pub fn end_match(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        clear(&self.line);
    }

    /// The summary with its verdicts coloured when stdout is a terminal.
    pub fn paint_summary(&self, summary: &str) -> String {
        if std::io::stdout().is_terminal() && color_allowed() {
            paint(summary)
        } else {
            summary.to_string()
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.end_match();
    }
}

fn lock(l: &Mutex<Line>) -> std::sync::MutexGuard<'_, Line> {
    match l.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn draw(line: &Mutex<Line>, color: bool) {
    if PAUSED.load(Ordering::Relaxed) {
        return;
    }
    let mut l = lock(line);
    let text = l.render(color);
    l.shown = true;
    let mut e = std::io::stderr().lock();
    let _ = write!(e, "\r\x1b[2K{text}");
    let _ = e.flush();
}

/// Erases the status line if it is on screen (before other output).
fn clear(line: &Mutex<Line>) {
    let mut l = lock(line);
    if l.shown {
        l.shown = false;
        let mut e = std::io::stderr().lock();
        let _ = write!(e, "\r\x1b[2K");
        let _ = e.flush();
    }
}

/// Hides the status line for a breakpoint's output and prompt; shown
/// again at the next tick after [`resume`].
pub fn pause() {
    PAUSED.store(true, Ordering::Relaxed);
    if std::io::stderr().is_terminal() {
        eprint!("\r\x1b[2K");
    }
}

/// The breakpoint is over.
pub fn resume() {
    PAUSED.store(false, Ordering::Relaxed);
}

/// Colours the verdicts of a summary: result lines, match lines and the
/// final line (PASS green, FAIL and ERROR red, others yellow).
pub fn paint(summary: &str) -> String {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        // Invariant: a constant, valid pattern.
        Regex::new(r"(?m)^(  |  match \d+: |\S+\.rhai: )(PASS|FAIL|ERROR|SKIP|RUNNING)\b")
            .expect("valid regex")
    });
    re.replace_all(summary, |c: &regex::Captures| {
        let code = match &c[2] {
            "PASS" => "32",
            "FAIL" | "ERROR" => "1;31",
            _ => "33",
        };
        format!("{}\x1b[{code}m{}\x1b[0m", &c[1], &c[2])
    })
    .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paints_verdicts_only_where_they_are_verdicts() {
        let s = "match 1/1 on netns lab:\n  h1 -> h1 [eth0=eth0]\n  PASS  -        -       says FAIL\n  FAIL  h1       job 1   ping\n  match 1: FAIL in 0.04 s\nr.rhai: FAIL (2 results, 1 not passed) in 0.10 s\n";
        let p = paint(s);
        assert!(
            p.contains("  \x1b[32mPASS\x1b[0m  -        -       says FAIL\n"),
            "{p}"
        );
        assert!(p.contains("  \x1b[1;31mFAIL\x1b[0m  h1"), "{p}");
        assert!(p.contains("  match 1: \x1b[1;31mFAIL\x1b[0m in"), "{p}");
        assert!(
            p.contains("r.rhai: \x1b[1;31mFAIL\x1b[0m (2 results"),
            "{p}"
        );
        assert_eq!(p.matches("\x1b[0m").count(), 4);
    }

    #[test]
    fn status_line_counts_and_step() {
        let l = Line {
            label: "match 2/3".into(),
            step: "h1: ping 10.0.0.2".into(),
            pass: 3,
            fail: 1,
            running: 1,
            started: None,
            shown: false,
        };
        assert_eq!(
            l.render(false),
            "match 2/3 [   0.0 s] 3 pass 1 fail 1 running | h1: ping 10.0.0.2"
        );
        assert!(l.render(true).contains("\x1b[1;31m1 fail\x1b[0m"));
    }
}
