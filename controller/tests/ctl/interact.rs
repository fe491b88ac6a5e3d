//! Breakpoints and lab shells as a person uses them: `lnst-ctl run` in a
//! real terminal (a private tmux server per test, `tmux -L`), keys sent
//! with `send-keys`, the screen read with `capture-pane`. The run's JSON
//! summary goes to a file so the pane shows only the terminal side.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{assert_no_leftovers, ctl, lab_ready, results, Tmp};

static N: AtomicUsize = AtomicUsize::new(0);

/// A private tmux server with one session; killed on drop.
struct Tmux {
    sock: String,
}

impl Tmux {
    /// Starts `cmd` (a shell command line) in window 0, or None (SKIP)
    /// without tmux.
    fn start(test: &str, cmd: &str) -> Option<Tmux> {
        if Command::new("tmux").arg("-V").output().is_err() {
            println!("SKIP {test}: tmux is not installed (apt-get install -y tmux)");
            return None;
        }
        let t = Tmux {
            sock: format!(
                "lnsttest-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ),
        };
        // The pane stays after the command so its last lines can be read.
        let full = format!("{cmd}; echo EXIT=$?; sleep 600");
        let ok = t
            .tmux(&[
                "new-session",
                "-d",
                "-s",
                "t",
                "-x",
                "200",
                "-y",
                "60",
                &full,
            ])
            .status
            .success();
        assert!(ok, "tmux new-session failed");
        Some(t)
    }
    fn tmux(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.sock])
            .args(args)
            .output()
            .unwrap()
    }
    fn window(&self, cmd: &str) {
        let full = format!("{cmd}; echo EXIT=$?; sleep 600");
        // `t:` is session t's next free window (a bare `t` may also name a window).
        let o = self.tmux(&["new-window", "-t", "t:", &full]);
        assert!(
            o.status.success(),
            "tmux new-window: {}; window 0:\n{}",
            String::from_utf8_lossy(&o.stderr),
            self.screen(0)
        );
    }
    fn screen(&self, w: usize) -> String {
        let o = self.tmux(&[
            "capture-pane",
            "-p",
            "-J",
            "-S",
            "-500",
            "-t",
            &format!("t:{w}"),
        ]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
    fn keys(&self, w: usize, text: &str) {
        let t = format!("t:{w}");
        if !text.is_empty() {
            assert!(self
                .tmux(&["send-keys", "-t", &t, "-l", text])
                .status
                .success());
        }
        assert!(self
            .tmux(&["send-keys", "-t", &t, "Enter"])
            .status
            .success());
    }
    /// Waits until window `w` shows `needle` (`count` times); returns the screen.
    fn wait_for(&self, w: usize, needle: &str, count: usize, secs: u64) -> String {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.screen(w);
            if s.matches(needle).count() >= count {
                return s;
            }
            if Instant::now() > end {
                panic!("window {w} never showed {needle:?} x{count}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
        // A killed server leaves its socket file behind.
        let base = std::env::var("TMUX_TMPDIR").unwrap_or_else(|_| "/tmp".into());
        // SAFETY: geteuid has no preconditions and cannot fail.
        let uid = unsafe { libc::geteuid() };
        let _ = std::fs::remove_file(
            Path::new(&base)
                .join(format!("tmux-{uid}"))
                .join(&self.sock),
        );
    }
}

/// `lnst-ctl run` of `recipe` for a tmux window: the JSON summary to
/// `T/summary.json`, stderr (the pause) on the terminal.
fn run_line(t: &Tmp, agent: &Path, recipe: &str, extra: &str) -> (String, PathBuf) {
    let r = t.write("r.rhai", recipe);
    let json = t.0.join("summary.json");
    let line = format!(
        "{} run {} --json --out {} --agent-bin {} {extra} > {}",
        ctl(),
        r.display(),
        t.0.join("runs").display(),
        agent.display(),
        json.display()
    );
    (line, json)
}

fn summary(json: &Path) -> Value {
    let s = std::fs::read_to_string(json).unwrap();
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("bad JSON ({e}): {s}"))
}

/// The run id the pause prints (`lnst-ctl shell RUNID h1`).
fn runid_of(screen: &str) -> String {
    let i = screen.find("lnst-ctl shell ").expect("no shell line");
    screen[i + 15..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

const BREAKPOINT: &str = r#"//! pauses between two checks
let h1 = host("h1");
h1.nic("eth0", #{ net: "n" });
let h2 = host("h2");
h2.nic("eth0", #{ net: "n" });
fn test(m) {
    m.h1.eth0.ip_add("10.77.0.1/24"); m.h1.eth0.up();
    m.h2.eth0.ip_add("10.77.0.2/24"); m.h2.eth0.up();
    m.check(true, "before");
    m.breakpoint("look around");
    m.check(m.h1.run("ping -c1 -W2 10.77.0.2").passed, "after");
}
"#;

/// The whole story of issue 14: the run pauses at `m.breakpoint`, shows
/// how to enter each host and its address; `lnst-ctl shell` in another
/// terminal sees the configured address with a prompt naming the host;
/// a command typed at the pause runs on h2; the pause outlasts several
/// heartbeat timeouts without losing an agent; Enter continues, the run
/// passes, the shell is closed when the lab goes and nothing is left.
#[test]
fn breakpoint_pauses_shell_sees_config_enter_continues() {
    let test = "breakpoint_pauses_shell_sees_config_enter_continues";
    let Some(agent) = lab_ready(test) else { return };
    let t = Tmp::new();
    let (line, json) = run_line(&t, &agent, BREAKPOINT, "");
    // Heartbeats every 250 ms, lost after 750 ms: the pause lasts several times that.
    let Some(tm) = Tmux::start(test, &format!("LNST_HEARTBEAT_MS=250 {line}")) else {
        return;
    };
    let s = tm.wait_for(0, "lnst paused>", 1, 60);
    assert!(s.contains("== breakpoint: look around"), "{s}");
    assert!(s.contains("PASS  before"), "{s}");
    assert!(
        s.contains("10.77.0.1/24") && s.contains("10.77.0.2/24"),
        "{s}"
    );
    let runid = runid_of(&s);
    assert!(
        s.contains(&format!("ip netns exec lnst-{runid}-h2 bash")),
        "{s}"
    );

    tm.window(&format!("{} shell {runid} h1", ctl()));
    if std::panic::catch_unwind(|| tm.wait_for(1, "[lnst h1]", 1, 20)).is_err() {
        panic!("no shell prompt; the run's window:\n{}", tm.screen(0));
    }
    tm.keys(1, "ip -br addr show eth0; echo host=$LNST_HOST");
    let sh = tm.wait_for(1, "host=h1", 1, 20);
    assert!(sh.contains("10.77.0.1/24"), "{sh}");

    tm.keys(0, "h2 ip -br addr show eth0");
    let s = tm.wait_for(0, "lnst paused>", 2, 20);
    assert!(s.matches("10.77.0.2/24").count() >= 2, "{s}");
    std::thread::sleep(Duration::from_millis(2500));
    tm.keys(0, "");
    let s = tm.wait_for(0, "EXIT=", 1, 60);
    assert!(s.contains("EXIT=0"), "{s}");
    let v = summary(&json);
    assert_eq!(
        results(&v),
        vec![
            ("before".into(), "PASS".into()),
            ("ping -c1 -W2 10.77.0.2".into(), "PASS".into()),
            ("after".into(), "PASS".into())
        ]
    );
    assert_no_leftovers(&v);
    let sh = tm.wait_for(1, "EXIT=", 1, 10);
    assert!(sh.contains(&format!("run {runid} ended")), "{sh}");
}

/// `q` at the pause ends the test: an ERROR saying so, nothing after the
/// breakpoint runs, cleanup runs, exit 1.
#[test]
fn q_at_a_breakpoint_ends_the_test_and_cleans_up() {
    let test = "q_at_a_breakpoint_ends_the_test_and_cleans_up";
    let Some(agent) = lab_ready(test) else { return };
    let t = Tmp::new();
    let (line, json) = run_line(&t, &agent, BREAKPOINT, "");
    let Some(tm) = Tmux::start(test, &line) else {
        return;
    };
    tm.wait_for(0, "lnst paused>", 1, 60);
    tm.keys(0, "q");
    let s = tm.wait_for(0, "EXIT=", 1, 60);
    assert!(s.contains("EXIT=1"), "{s}");
    let v = summary(&json);
    let r = results(&v);
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(r[0], ("before".into(), "PASS".into()));
    assert!(
        r[1].0.ends_with("ended at a breakpoint (q)") && r[1].1 == "ERROR",
        "{r:?}"
    );
    assert_no_leftovers(&v);
}

/// `--pause-on-fail` pauses at the first FAIL only (not at the second,
/// not at a pass), and a recipe error is a failure too when it is first.
#[test]
fn pause_on_fail_pauses_only_at_the_first_failure() {
    let test = "pause_on_fail_pauses_only_at_the_first_failure";
    let Some(agent) = lab_ready(test) else { return };
    let t = Tmp::new();
    let recipe = r#"//! two failures
let h1 = host("h1");
h1.nic("eth0", #{ net: "n" });
fn test(m) {
    m.check(true, "fine");
    m.h1.run("exit 3", #{ desc: "first failure" });
    m.check(false, "second failure");
    throw "third";
}
"#;
    let (line, json) = run_line(&t, &agent, recipe, "--pause-on-fail");
    let Some(tm) = Tmux::start(test, &line) else {
        return;
    };
    let s = tm.wait_for(0, "lnst paused>", 1, 60);
    assert!(s.contains("== FAIL h1 job"), "{s}");
    assert!(s.contains("first failure"), "{s}");
    tm.keys(0, "");
    let s = tm.wait_for(0, "EXIT=", 1, 60);
    assert!(s.contains("EXIT=1"), "{s}");
    assert_eq!(s.matches("lnst paused>").count(), 1, "{s}");
    let v = summary(&json);
    let r = results(&v);
    assert_eq!(r.len(), 4, "{r:?}");
    assert_no_leftovers(&v);
}

/// A recipe error that is the first failure pauses before its jobs are
/// stopped, with the error in the title.
#[test]
fn pause_on_fail_pauses_at_a_recipe_error() {
    let test = "pause_on_fail_pauses_at_a_recipe_error";
    let Some(agent) = lab_ready(test) else { return };
    let t = Tmp::new();
    let recipe = r#"//! an error
let h1 = host("h1");
h1.nic("eth0", #{ net: "n" });
fn test(m) {
    m.check(true, "fine");
    throw "boom";
}
"#;
    let (line, json) = run_line(&t, &agent, recipe, "--pause-on-fail");
    let Some(tm) = Tmux::start(test, &line) else {
        return;
    };
    let s = tm.wait_for(0, "lnst paused>", 1, 60);
    assert!(s.contains("== ERROR ") && s.contains("boom"), "{s}");
    tm.keys(0, "");
    let s = tm.wait_for(0, "EXIT=", 1, 60);
    assert!(s.contains("EXIT=1"), "{s}");
    assert_no_leftovers(&summary(&json));
}

/// Without a terminal on stdin neither a breakpoint nor --pause-on-fail
/// waits: both are noted in the run log and the run goes on.
#[test]
fn without_a_terminal_breakpoints_never_wait() {
    let test = "without_a_terminal_breakpoints_never_wait";
    let Some(agent) = lab_ready(test) else { return };
    let t = Tmp::new();
    let recipe = r#"//! breakpoint and failure
let h1 = host("h1");
h1.nic("eth0", #{ net: "n" });
fn test(m) {
    m.breakpoint("here");
    m.check(false, "fails");
}
"#;
    let r = t.write("r.rhai", recipe);
    let t0 = Instant::now();
    let o = crate::lab_command(&t, &agent, &r, &[])
        .arg("--pause-on-fail")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_no_leftovers(&v);
    let dir = v["run_dir"].as_str().unwrap();
    let log = std::fs::read_to_string(Path::new(dir).join("controller.log")).unwrap();
    assert!(
        log.contains("breakpoint: here: not paused (stdin is not a terminal)"),
        "{log}"
    );
    assert!(
        log.contains("FAIL fails: not paused (stdin is not a terminal)"),
        "{log}"
    );
}

/// Completions for `COMP_WORDS` from the bash script `lnst-ctl
/// completions bash` prints, as bash's programmable completion calls it.
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    bash_complete_with(script, "_lnst__ctl", words)
}

/// [`bash_complete`] through the completion function `func`.
fn bash_complete_with(script: &Path, func: &str, words: &[&str]) -> Vec<String> {
    let cword = words.len() - 1;
    let prog = format!(
        "source {}; COMP_WORDS=({}); COMP_CWORD={cword}; {func} '{}' '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" "),
        words[0],
        words[cword],
        words[cword - 1],
    );
    let o = Command::new("bash").arg("-c").arg(prog).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The bash completion script loads and completes subcommands, flags of a
/// subcommand and of a nested subcommand; zsh and fish scripts are made.
#[test]
fn completions_load_in_bash_and_complete_subcommands_and_flags() {
    if Command::new("bash").arg("--version").output().is_err() {
        println!("SKIP completions_load_in_bash: no bash");
        return;
    }
    let t = Tmp::new();
    let o = Command::new(ctl())
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let script = t.write("lnst-ctl.bash", &String::from_utf8_lossy(&o.stdout));
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p lnst-ctl",
            script.display()
        ))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("-F _lnst__ctl_params"),
        "{o:?}"
    );
    let subs = bash_complete(&script, &["lnst-ctl", ""]);
    for s in ["run", "validate", "shell", "completions", "man", "api"] {
        assert!(subs.iter().any(|x| x == s), "{s} not in {subs:?}");
    }
    assert_eq!(
        bash_complete(&script, &["lnst-ctl", "run", "--pa"]),
        vec!["--pause-on-fail"]
    );
    let pool = bash_complete(&script, &["lnst-ctl", "pool", "check", "--"]);
    assert!(pool.iter().any(|x| x == "--insecure"), "{pool:?}");
    // After `--`, the recipe's params (from its declarations), through the
    // function `complete` registers; before it, clap's completion.
    let r = t.write(
        "p.rhai",
        "param(\"mtu\", 1500);\nparam(\"count\", 5);\nfn test(m) {}\n",
    );
    let (c, rp) = (ctl().to_string(), r.display().to_string());
    let f = "_lnst__ctl_params";
    assert_eq!(
        bash_complete_with(&script, f, &[&c, "run", &rp, "--lab", "netns", "--", "m"]),
        vec!["mtu="]
    );
    let mut all = bash_complete_with(&script, f, &[&c, "validate", &rp, "--", "mtu=9000", ""]);
    all.sort();
    assert_eq!(all, vec!["count=", "mtu="]);
    assert_eq!(
        bash_complete_with(&script, f, &[&c, "run", &rp, "--pa"]),
        vec!["--pause-on-fail"]
    );
    for sh in ["zsh", "fish"] {
        let o = Command::new(ctl())
            .args(["completions", sh])
            .output()
            .unwrap();
        assert!(o.status.success() && o.stdout.len() > 1000, "{sh}");
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("pause-on-fail"),
            "{sh}"
        );
    }
}

/// `lnst-ctl man` prints lnst-ctl(1); `--dir` writes a page per command
/// with the same options as --help.
#[test]
fn man_pages_come_from_the_same_definitions() {
    let o = Command::new(ctl()).arg("man").output().unwrap();
    let page = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && page.contains(".TH lnst-ctl 1"),
        "{page}"
    );
    let t = Tmp::new();
    let dir = t.0.join("man1");
    let o = Command::new(ctl())
        .arg("man")
        .arg("--dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let run = std::fs::read_to_string(dir.join("lnst-ctl-run.1")).unwrap();
    assert!(run.contains("pause\\-on\\-fail"), "{run}");
    assert!(dir.join("lnst-ctl-pool-check.1").exists());
    assert!(dir.join("lnst-ctl-shell.1").exists());
}

/// `lnst-ctl doctor` checks each need and exits 1 exactly when something
/// is missing; a tool off PATH is reported with its apt-get fix, and all
/// missing packages once more in one apt-get line.
#[test]
fn doctor_names_each_missing_tool_with_its_fix() {
    let o = Command::new(ctl()).arg("doctor").output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    for need in [
        "root",
        "iperf3",
        "tcpdump",
        "libpcap",
        "qemu-system-x86_64",
        "busybox (static)",
        "kernel",
    ] {
        assert!(out.contains(need), "{need} not checked:\n{out}");
    }
    assert_eq!(o.status.code() == Some(1), out.contains("MISSING"), "{out}");

    // Nothing on PATH: ping and iperf3 (in /usr/bin) are missing.
    let t = Tmp::new();
    let o = Command::new(ctl())
        .arg("doctor")
        .env("PATH", &t.0)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("MISSING iperf3"), "{out}");
    assert!(out.contains("fix: apt-get install -y iperf3"), "{out}");
    assert!(
        out.contains("fix: apt-get install -y iputils-ping"),
        "{out}"
    );
    let last = out.lines().last().unwrap_or("");
    assert!(
        last.contains("apt-get install -y")
            && last.contains("iputils-ping")
            && last.contains("iperf3"),
        "{last}"
    );
    assert!(!out.contains('\x1b'), "{out}");
}

/// In a terminal: a status line with the results so far and the running
/// job, and coloured verdicts in the summary; with NO_COLOR the same
/// without escape sequences; piped output never has any.
#[test]
fn progress_line_and_colours_in_a_terminal_none_with_no_color() {
    let test = "progress_line_and_colours_in_a_terminal_none_with_no_color";
    let Some(agent) = lab_ready(test) else { return };
    let recipe = r#"//! a pass, a fail, a slow job
let h1 = host("h1");
h1.nic("eth0", #{ net: "n" });
fn test(m) {
    m.check(true, "one");
    m.check(false, "two");
    m.h1.run("sleep 2", #{ desc: "sleeping a while" });
}
"#;
    for no_color in [false, true] {
        let t = Tmp::new();
        let r = t.write("r.rhai", recipe);
        let line = format!(
            "{}{} run {} --out {} --agent-bin {}",
            if no_color { "NO_COLOR=1 " } else { "" },
            ctl(),
            r.display(),
            t.0.join("runs").display(),
            agent.display()
        );
        let Some(tm) = Tmux::start(test, &line) else {
            return;
        };
        let status = tm.wait_for(0, "sleeping a while", 1, 60);
        assert!(
            status.contains("1 pass") && status.contains("1 fail") && status.contains("1 running"),
            "{status}"
        );
        tm.wait_for(0, "EXIT=", 1, 60);
        let o = tm.tmux(&["capture-pane", "-e", "-p", "-J", "-t", "t:0"]);
        let screen = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(screen.contains("EXIT=1"), "{screen}");
        if no_color {
            assert!(!screen.contains('\x1b'), "{screen:?}");
        } else {
            let fail = screen.lines().find(|l| l.contains("two")).unwrap_or("");
            assert!(fail.contains('\x1b') && fail.contains("FAIL"), "{fail:?}");
        }
    }
    let t = Tmp::new();
    let r = t.write("r.rhai", recipe);
    let o = crate::lab_command(&t, &agent, &r, &[]).output().unwrap();
    assert!(!o.stderr.contains(&0x1b) && !o.stdout.contains(&0x1b));
}

/// Ctrl-C at the pause ends the wait like any other: cleanup runs and the
/// run exits 130.
#[test]
fn ctrl_c_at_a_breakpoint_cleans_up_and_exits_130() {
    let test = "ctrl_c_at_a_breakpoint_cleans_up_and_exits_130";
    let Some(agent) = lab_ready(test) else { return };
    let t = Tmp::new();
    let (line, json) = run_line(&t, &agent, BREAKPOINT, "");
    let Some(tm) = Tmux::start(test, &line) else {
        return;
    };
    tm.wait_for(0, "lnst paused>", 1, 60);
    assert!(tm.tmux(&["send-keys", "-t", "t:0", "C-c"]).status.success());
    let s = tm.wait_for(0, "EXIT=", 1, 60);
    assert!(s.contains("EXIT=130"), "{s}");
    assert_no_leftovers(&summary(&json));
}

/// On the VM lab the pause shows the guests' devices and how to enter
/// them: `lnst-ctl shell RUN h1` opens the guest's console shell (prompt
/// naming the host; `ip -j link` there shows the recipe's NIC, `uname -r`
/// the guest's kernel) and `h1 COMMAND` at the prompt runs in the guest;
/// Enter continues, the shell closes when the run ends, nothing is left.
#[test]
fn vm_lab_breakpoint_runs_commands_in_the_guest() {
    let test = "vm_lab_breakpoint_runs_commands_in_the_guest";
    let Some(agent) = crate::ctl::vm_lab::vm_ready(test) else {
        return;
    };
    let _one = crate::ctl::vm_lab::lock();
    let t = Tmp::new();
    let (line, json) = run_line(&t, &agent, BREAKPOINT, "--lab vm");
    let Some(tm) = Tmux::start(test, &line) else {
        return;
    };
    let s = tm.wait_for(0, "lnst paused>", 1, 300);
    assert!(s.contains("`h1 COMMAND` at the prompt"), "{s}");
    assert!(s.contains("10.77.0.1/24"), "{s}");
    let runid = runid_of(&s);
    let host = String::from_utf8_lossy(&Command::new("uname").arg("-r").output().unwrap().stdout)
        .trim()
        .to_string();

    tm.window(&format!("{} shell {runid} h1", ctl()));
    if std::panic::catch_unwind(|| tm.wait_for(1, "[lnst h1]", 1, 60)).is_err() {
        panic!("no shell prompt; the run's window:\n{}", tm.screen(0));
    }
    tm.keys(1, "ip -j link show eth0; uname -r; echo host=$LNST_HOST");
    let sh = tm.wait_for(1, "host=h1", 1, 60);
    let out = &sh[sh.rfind("ip -j link show eth0").unwrap()..];
    assert!(out.contains("\"ifname\":\"eth0\""), "{sh}");
    assert!(out.contains("-amd64") && !out.contains(&host), "{sh}");
    // `exit` leaves lnst-ctl shell; the guest starts a new shell, which a
    // second lnst-ctl shell finds (and which the run's end closes).
    tm.keys(1, "exit");
    let sh = tm.wait_for(1, "EXIT=", 1, 60);
    assert!(
        sh.contains("the shell on h1 exited") && sh.contains("EXIT=0"),
        "{sh}"
    );
    tm.window(&format!("{} shell {runid} h1", ctl()));
    if std::panic::catch_unwind(|| tm.wait_for(2, "[lnst h1]", 1, 60)).is_err() {
        panic!("no second shell prompt:\n{}", tm.screen(2));
    }

    tm.keys(0, "h1 uname -r; ip -br addr show eth0");
    let s = tm.wait_for(0, "lnst paused>", 2, 60);
    let after = &s[s.find("h1 uname -r").unwrap()..];
    assert!(
        after.contains("-amd64") && !after.contains(&host),
        "{after}"
    );
    assert!(after.contains("10.77.0.1/24"), "{after}");
    tm.keys(0, "");
    let s = tm.wait_for(0, "EXIT=", 1, 120);
    assert!(s.contains("EXIT=0"), "{s}");
    let v = summary(&json);
    assert_no_leftovers(&v);
    crate::ctl::vm_lab::assert_no_qemu_of(v["lab"].as_str().unwrap_or("-"));
    let sh = tm.wait_for(2, "EXIT=", 1, 30);
    assert!(sh.contains(&format!("run {runid} ended")), "{sh}");
}
