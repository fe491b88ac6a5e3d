//! Runs started by tests and benchmarks go to a scratch results store,
//! never the user's. One copy for every test and bench binary that starts
//! `lnst-ctl`; include with `#[path = "…/support/results_store.rs"] mod
//! results_store;`.

/// The runs of these tests and benchmarks go to a scratch results store,
/// never the user's (`~/.local/share/lnst/results.db`): `LNST_DB` set once
/// for this process, so every `lnst-ctl` it starts inherits it. One store
/// per test process (history from earlier test runs must not judge this
/// one's perf() lines); those of processes that are gone are removed.
pub fn isolate_results_store() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let base = std::env::temp_dir().join("lnst-test-results");
        for e in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            let name = e.file_name();
            let pid = name.to_string_lossy();
            if pid.parse::<u32>().is_ok() && !std::path::Path::new("/proc").join(&*pid).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let d = base.join(std::process::id().to_string());
        let _ = std::fs::create_dir_all(&d);
        std::env::set_var("LNST_DB", d.join("results.db"));
    });
}
