//! `lnst-ctl report`: its errors (no root needed), and the page opened in
//! a real headless browser (Debian's `chromium`): real recipes run on the
//! netns lab (perf_demo with short params, and one that FAILs, creates
//! soft devices and prints hostile output), then the DOM is checked for
//! the result names, figures and SVG elements, the screenshot for being a
//! real picture, the file for references outside itself. A synthetic run
//! with a history that has a step change checks the band, points and
//! change point in the plot.
//!
//! Without chromium the browser tests print SKIP, unless
//! `LNST_REQUIRE_BROWSER=1` (set by `.ci/run`), where they fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lnst_ctl::report::html::{model::ReportModel, page};
use lnst_ctl::report::series::{Baseline, HistoryPoint, SeriesHistory, SeriesKey};

use crate::{ctl, lab_ready, run, run_lab, Tmp};

/// One chromium at a time (it is heavy; the machine has 2 cores).
static BROWSER: Mutex<()> = Mutex::new(());

/// The browser, or None after printing SKIP; panics when it is missing
/// and `LNST_REQUIRE_BROWSER=1`.
fn browser(test: &str) -> Option<PathBuf> {
    let p = std::env::var("LNST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/usr/bin/chromium"));
    if p.is_file() {
        return Some(p);
    }
    if std::env::var("LNST_REQUIRE_BROWSER").as_deref() == Ok("1") {
        panic!(
            "{test}: LNST_REQUIRE_BROWSER=1 but there is no browser at {} (apt-get install chromium)",
            p.display()
        );
    }
    println!(
        "SKIP {test}: no chromium at {} (apt-get install chromium, or set LNST_CHROMIUM)",
        p.display()
    );
    None
}

/// Runs headless chromium on `file` with `args`; returns its stdout.
fn chromium(bin: &Path, t: &Tmp, file: &Path, args: &[&str]) -> String {
    let _one = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let profile = t.0.join("chromium-profile");
    let url = format!("file://{}", file.canonicalize().unwrap().display());
    let mut child = Command::new("nice")
        .arg("-n")
        .arg("10")
        .arg(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(&url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .current_dir(&t.0)
        .spawn()
        .expect("start chromium");
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut { stdout }, &mut s);
        s
    });
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if t0.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 120 s on {url}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap()
}

/// Every `src=`/`href=` value of an HTML text.
fn refs(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\"", "src='", "href='"] {
        let q = attr.chars().last().unwrap();
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            let v = &rest[i + attr.len()..];
            let end = v.find(q).unwrap_or(v.len());
            out.push(v[..end].to_string());
            rest = &v[end..];
        }
    }
    out
}

/// The page references nothing outside itself but local files that exist.
fn assert_self_contained(html_file: &Path) {
    let html = std::fs::read_to_string(html_file).unwrap();
    let low = html.to_ascii_lowercase();
    assert!(
        !low.contains("http://") && !low.contains("https://"),
        "a URL in the page"
    );
    assert!(!low.contains("<script"), "a script in the page");
    assert!(!low.contains("<link") && !low.contains("@import") && !low.contains("url("));
    let dir = html_file.parent().unwrap();
    for r in refs(&html) {
        if r.starts_with('#') {
            continue;
        }
        assert!(!r.contains(':'), "non-relative reference {r:?}");
        let path = dir.join(percent_decode(&r));
        assert!(
            path.is_file(),
            "link {r:?} does not resolve to a file ({})",
            path.display()
        );
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// Decodes a PNG: (width, height, distinct colours, share of pixels that
/// are not the background colour of the top-left corner).
fn png_stats(path: &Path) -> (u32, u32, usize, f64) {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let ch = info.color_type.samples();
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let px: Vec<&[u8]> = buf[..info.buffer_size()].chunks(ch).collect();
    let bg = px[0];
    let other = px.iter().filter(|p| *p != &bg).count();
    let colours: std::collections::HashSet<&[u8]> = px.iter().copied().collect();
    (
        info.width,
        info.height,
        colours.len(),
        other as f64 / px.len() as f64,
    )
}

const FAILING: &str = r#"//! A run that FAILs: soft devices, hostile output, a failed check.
let h1 = host("h1");
h1.nic("eth0", #{ net: "net1" });
let h2 = host("h2");
h2.nic("eth0", #{ net: "net1" });
fn test(m) {
    let h = m.h1;
    h.br0 = bridge(#{ stp: false });
    h.v0 = veth(#{ peer: "v0p" });
    h.v0.master = h.br0;
    h.eth0.master = h.br0;
    for d in [h.br0, h.v0, h.eth0, m.h2.eth0] { d.up(); }
    m.h2.eth0.ip_add("10.9.0.2/24");
    h.run("echo '<script>alert(1)</script> & \"quoted\"'", #{ desc: "hostile <b>output</b>" });
    m.h2.run("exit 3", #{ desc: "a job on h2 that fails" });
    m.check(false, "deliberately fails & says <so>");
}
"#;

#[test]
fn report_errors_name_the_path_and_exit_2() {
    let t = Tmp::new();
    let missing = t.0.join("nope");
    let (code, _, err) = run(&["report", missing.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(missing.to_str().unwrap()) && err.contains("not a run directory"),
        "{err}"
    );
    std::fs::create_dir_all(t.0.join("empty")).unwrap();
    let (code, _, err) = run(&["report", t.0.join("empty").to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no summary.json") && err.contains("lnst-runs"),
        "{err}"
    );
    let bad = t.write("bad/summary.json", "{\"recipe\": ");
    let (code, _, err) = run(&["report", bad.parent().unwrap().to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("bad/summary.json") && err.contains("corrupt JSON"),
        "{err}"
    );
    // A good run directory, written into a directory that does not exist.
    let good = synthetic_run(&t, "20261201-100000-syn");
    let out = t.0.join("no/such/dir/r.html");
    let (code, _, err) = run(&[
        "report",
        good.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no/such/dir") && err.contains("does not exist"),
        "{err}"
    );
    assert!(!out.exists());
    let (code, out, err) = run(&["report", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), good.join("report.html").to_str().unwrap());
    let (code, _, err) = run(&[
        "report",
        "--history",
        "syn",
        "--out",
        t.0.join("nope").to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nope"), "{err}");
}

/// A run directory written by hand: one measurement with three samples,
/// a FAIL line with a hostile description.
fn synthetic_run(t: &Tmp, id: &str) -> PathBuf {
    let summary = serde_json::json!({
        "recipe": "syn.rhai", "params": {"mtu": 9000}, "result": "FAIL", "pool": "netns lab",
        "duration": 1.5, "lab": "abc", "lab_ms": 20.0, "insecure": false, "rpcs": {},
        "matches": [{
            "mapping": {"h1": {"machine": "h1", "nics": {"eth0": "eth0"}}},
            "result": "FAIL", "duration": 1.2,
            "results": [
                {"host": null, "job": null, "desc": "perf tcp 10.0.0.2 (h1 -> h2)", "result": "PASS",
                 "data": {"samples": [5.1e9, 4.9e9, 5.0e9], "mean": 5.0e9, "stddev": 1e8, "unit": "bps",
                          "figures": "5.00 Gbit/s"}, "at": 1.0},
                {"host": null, "job": null, "desc": "<script>alert('x')</script> & \"q\"", "result": "FAIL", "at": 1.1}
            ]
        }]
    });
    t.write(&format!("runs/{id}/summary.json"), &summary.to_string());
    let env = serde_json::json!({ "h1": { "machine": "h1", "kernel": "6.1.0-28-amd64",
        "cmdline": "ro quiet", "cpu_model": "Xeon <E5>", "cpus": 8,
        "nics": { "eth0": { "ifname": "ens1f0", "driver": "ixgbe", "driver_version": "5.1",
            "firmware": "0x800", "bus": "0000:01:00.0", "speed_mbps": 10000, "mtu": 9000,
            "mac": "02:00:00:00:00:01", "features": { "gro": true } } } } });
    t.write(&format!("runs/{id}/environment.json"), &env.to_string());
    t.0.join("runs").join(id)
}

fn step_history() -> SeriesHistory {
    let means = [9.0e9, 9.1e9, 8.9e9, 9.0e9, 5.0e9, 5.1e9, 4.9e9];
    SeriesHistory {
        key: SeriesKey {
            recipe: "syn.rhai".into(),
            params: "{\"mtu\":9000}".into(),
            role: "h1->h2".into(),
            measurement: "perf tcp 10.0.0.2 (h1 -> h2)".into(),
            metric: "bps".into(),
        },
        unit: "bps".into(),
        points: means
            .iter()
            .enumerate()
            .map(|(i, m)| HistoryPoint {
                run_id: format!("hist-{i}"),
                started: format!("2026-11-{:02}T10:00:00Z", i + 1),
                mean: *m,
                samples: vec![m * 0.98, m * 1.02],
                verdict: if i == 4 { "FAIL".into() } else { "PASS".into() },
                change_point: i == 4,
            })
            .collect(),
        baseline: Some(Baseline {
            n: 3,
            centre: 5.0e9,
            low: 4.8e9,
            high: 5.2e9,
        }),
    }
}

#[test]
fn synthetic_history_plot_shows_band_points_and_change_in_a_browser() {
    let Some(bin) = browser("synthetic_history_plot") else {
        return;
    };
    let t = Tmp::new();
    let dir = synthetic_run(&t, "20261201-100000-syn");
    let mut model = ReportModel::from_rundir(&dir).unwrap();
    model.history = vec![step_history()];
    let file = t.0.join("syn.html");
    std::fs::write(&file, page::render(&[model], &t.0)).unwrap();
    assert_self_contained(&file);
    let dom = chromium(&bin, &t, &file, &["--dump-dom"]);
    assert!(dom.contains("<svg class=\"plot\""), "{dom}");
    assert_eq!(dom.matches("class=\"band\"").count(), 1, "{dom}");
    assert_eq!(dom.matches("class=\"centre\"").count(), 1);
    // 7 earlier runs and this one.
    assert_eq!(dom.matches("class=\"point").count(), 8);
    assert_eq!(dom.matches("class=\"point current\"").count(), 1);
    assert_eq!(dom.matches("class=\"sample\"").count(), 7 * 2 + 3);
    assert_eq!(dom.matches("class=\"change\"").count(), 1);
    assert!(dom.contains("change point at hist-4"), "{dom}");
    assert!(dom.contains("history: 7 earlier run(s)"));
    // environment.json: the NIC's driver and speed in the picture, the
    // host's kernel and CPU in the table.
    assert!(dom.contains("ixgbe · 10G"), "{dom}");
    assert!(dom.contains("<h2>Environment</h2>"));
    assert!(dom.contains("Xeon &lt;E5&gt; × 8"));
    // Hostile text arrives as text, not as an element.
    assert!(
        dom.contains("&lt;script&gt;alert('x')&lt;/script&gt; &amp; \"q\""),
        "{dom}"
    );
    assert!(!dom.to_ascii_lowercase().contains("<script"), "{dom}");
    // The earlier means (9 Gbit/s) are drawn above the band (5 Gbit/s).
    let band_y: f64 = attr(&dom, "class=\"band\"", "y").unwrap();
    let first_y: f64 = attr(&dom, "class=\"point\"", "cy").unwrap();
    assert!(
        first_y < band_y,
        "first point at y={first_y}, band at y={band_y}"
    );
    // On screen: the change marker's orange and the band's blue tint.
    let shot = t.0.join("syn.png");
    chromium(
        &bin,
        &t,
        &file,
        &[
            "--window-size=1000,1400",
            "--hide-scrollbars",
            &format!("--screenshot={}", shot.display()),
        ],
    );
    if let Ok(keep) = std::env::var("LNST_KEEP_SCREENSHOT") {
        let _ = std::fs::copy(&shot, keep);
    }
    let near = |rgb: [u8; 3], tol: i32| {
        let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
        let mut rd = dec.read_info().unwrap();
        let mut buf = vec![0; rd.output_buffer_size().unwrap()];
        let info = rd.next_frame(&mut buf).unwrap();
        let ch = info.color_type.samples();
        buf[..info.buffer_size()]
            .chunks(ch)
            .filter(|p| (0..3).all(|i| (p[i] as i32 - rgb[i] as i32).abs() <= tol))
            .count()
    };
    assert!(
        near([0xe6, 0x51, 0x00], 8) > 10,
        "no change-point orange on screen"
    );
    // #1565c0 at 12 % over #fbfcfe.
    assert!(
        near([0xe0, 0xe7, 0xf4], 6) > 500,
        "no baseline band on screen"
    );
}

/// The numeric attribute `name` of the first element with `marker`.
fn attr(dom: &str, marker: &str, name: &str) -> Option<f64> {
    let i = dom.find(marker)?;
    let el_end = dom[i..].find('>')? + i;
    let el = &dom[i..el_end];
    let k = el.find(&format!(" {name}=\""))? + name.len() + 3;
    el[k..].split('"').next()?.parse().ok()
}

#[test]
fn report_of_real_runs_in_a_browser() {
    let Some(agent) = lab_ready("report_of_real_runs_in_a_browser") else {
        return;
    };
    let Some(bin) = browser("report_of_real_runs_in_a_browser") else {
        return;
    };
    let t = Tmp::new();
    let perf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipes/perf_demo.rhai");
    let (code, v1, err) = run_lab(&t, &agent, &perf, &["duration=1", "runs=2"]);
    assert_eq!(code, 0, "{err}");
    let failing = t.write("failing.rhai", FAILING);
    let (code, v2, err) = run_lab(&t, &agent, &failing, &[]);
    assert_eq!(code, 1, "{err}");
    let d1 = PathBuf::from(v1["run_dir"].as_str().unwrap());
    let d2 = PathBuf::from(v2["run_dir"].as_str().unwrap());
    let devices = std::fs::read_to_string(d2.join("devices.json")).unwrap();
    assert!(
        devices.contains("\"bridge\"") && devices.contains("\"v0p\""),
        "{devices}"
    );

    // Both runs in one page, written elsewhere: links go back to jobs/.
    std::fs::create_dir_all(t.0.join("pages")).unwrap();
    let file = t.0.join("pages/both.html");
    let t0 = Instant::now();
    let out = Command::new(ctl())
        .args([
            "report",
            d1.to_str().unwrap(),
            d2.to_str().unwrap(),
            "-o",
            file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let report_ms = t0.elapsed().as_secs_f64() * 1e3;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("report of 2 real runs: {report_ms:.0} ms");
    assert_self_contained(&file);
    let html = std::fs::read_to_string(&file).unwrap();
    assert!(
        html.contains("href=\"../runs/"),
        "job output is linked relative to the page"
    );

    let dom = chromium(&bin, &t, &file, &["--dump-dom"]);
    assert_eq!(dom.matches("<section class=\"run\"").count(), 2);
    for (id, v) in [(&d1, &v1), (&d2, &v2)] {
        let name = id.file_name().unwrap().to_str().unwrap();
        assert!(dom.contains(name), "run id {name} missing");
        for r in v["matches"][0]["results"].as_array().unwrap() {
            let desc = r["desc"].as_str().unwrap();
            let shown = desc
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
            assert!(dom.contains(&shown), "result {desc:?} missing");
        }
    }
    // Figures: perf's throughput, the failed check, the verdicts.
    let mean = v1["matches"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|r| r["data"]["mean"].as_f64())
        .unwrap();
    // Four significant digits: 9.020 Gbit/s, 10.40 Gbit/s.
    let g = mean / 1e9;
    let shown = match g {
        g if g < 10.0 => format!("{g:.3} Gbit/s"),
        g if g < 100.0 => format!("{g:.2} Gbit/s"),
        g => format!("{g:.1} Gbit/s"),
    };
    assert!(
        dom.contains(&shown) || (g < 1.0 && dom.contains("Mbit/s")),
        "mean {mean}: {shown} not shown"
    );
    assert!(dom.contains("<span class=\"verdict FAIL\">FAIL</span>"));
    assert!(dom.contains("<span class=\"verdict PASS\">PASS</span>"));
    assert!(dom.contains("deliberately fails &amp; says &lt;so&gt;"));
    // The job's hostile output is inlined as text.
    assert!(
        dom.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; \"quoted\""),
        "{dom}"
    );
    assert!(!dom.to_ascii_lowercase().contains("<script"));
    // SVG: two topologies, one plot of perf's samples (no history).
    assert_eq!(dom.matches("<svg class=\"topology\"").count(), 2);
    assert_eq!(dom.matches("<svg class=\"plot\"").count(), 1);
    assert_eq!(dom.matches("class=\"point current\"").count(), 2);
    assert!(dom.contains("sample (no history yet)"));
    assert_eq!(dom.matches("<g class=\"host\"").count(), 4);
    assert_eq!(dom.matches("<g class=\"nic\"").count(), 4);
    assert!(dom.contains("<g class=\"soft\" data-kind=\"bridge\""));
    assert_eq!(
        dom.matches("<g class=\"soft\" data-kind=\"veth\"").count(),
        2
    );
    assert!(dom.matches("class=\"edge enslaved\"").count() >= 2);
    assert!(dom.contains("class=\"edge peer\""));
    // h2 ran the failed job: its box is FAIL; h1's jobs passed.
    assert_eq!(
        dom.matches("<g class=\"host\" data-result=\"FAIL\"")
            .count(),
        1
    );
    assert!(
        // (then the kernel, from the run's environment.json)
        dom.contains("<title>host h2 (machine h2): FAIL"),
        "{dom}"
    );
    assert_eq!(dom.matches("<g class=\"net\"").count(), 2);

    // A screenshot is a real picture: its size, many colours, not blank.
    let png_path = t.0.join("shot.png");
    chromium(
        &bin,
        &t,
        &file,
        &[
            "--window-size=1200,1600",
            "--hide-scrollbars",
            &format!("--screenshot={}", png_path.display()),
        ],
    );
    let (w, h, colours, ink) = png_stats(&png_path);
    println!(
        "screenshot {w}x{h}, {colours} colours, {:.1}% not background",
        ink * 100.0
    );
    assert_eq!((w, h), (1200, 1600));
    assert!(colours > 50, "{colours} colours");
    assert!(
        ink > 0.03,
        "only {ink} of the pixels differ from the background"
    );
    // The verdict colours are on screen (PASS green, FAIL red).
    let dec = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&png_path).unwrap(),
    ));
    let mut rd = dec.read_info().unwrap();
    let mut buf = vec![0; rd.output_buffer_size().unwrap()];
    let info = rd.next_frame(&mut buf).unwrap();
    let ch = info.color_type.samples();
    let has = |rgb: [u8; 3]| buf[..info.buffer_size()].chunks(ch).any(|p| p[..3] == rgb);
    assert!(has([0x1f, 0x8a, 0x3b]), "no PASS green on screen");

    // The history page of perf_demo, from the run directories.
    let (code, _, err) = run_lab(&t, &agent, &perf, &["duration=1", "runs=2"]);
    assert_eq!(code, 0, "{err}");
    let hist = t.0.join("pages/history.html");
    let (code, _, err) = run(&[
        "report",
        "--history",
        "perf_demo",
        "--out",
        t.0.join("runs").to_str().unwrap(),
        "-o",
        hist.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_self_contained(&hist);
    let dom = chromium(&bin, &t, &hist, &["--dump-dom"]);
    assert!(dom.contains("History of perf_demo.rhai"), "{dom}");
    assert!(
        dom.contains("2 run(s): 2 PASS, 0 FAIL, 0 ERROR; 1 measurement series"),
        "{dom}"
    );
    assert_eq!(dom.matches("<svg class=\"plot\"").count(), 1);
    assert_eq!(dom.matches("class=\"point\"").count(), 2);
    assert_eq!(dom.matches("class=\"sample\"").count(), 4);
    assert_eq!(dom.matches("<tr class=\"run row-PASS\"").count(), 2);
    assert!(!dom.contains("failing"), "another recipe's run leaked in");
}
