//! The run directory `./lnst-runs/<time>-<recipe>/`: the recipe, its
//! params, the mapping, each job's output (`jobs/`), `controller.log`,
//! `summary.json` and `junit.xml`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// UTC `YYYYmmdd-HHMMSS` for a Unix time.
pub fn stamp(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Creates `<base>/<time>-<recipe stem>/` (with a suffix if taken) and its
/// `jobs/`, both mode 0700: job output can hold secrets (tokens a command
/// printed, keys it read), so only the user who ran the recipe reads them.
pub fn create(base: &Path, recipe: &Path) -> std::io::Result<PathBuf> {
    let stem = recipe
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "recipe".into());
    let dir = create_named(base, &stem)?;
    private_dir(&dir.join("jobs"))?;
    Ok(dir)
}

/// Creates `<base>/<time>-<stem>/` (with a suffix if taken), mode 0700:
/// a suite's directory, holding its recipes' run directories.
pub fn create_named(base: &Path, stem: &str) -> std::io::Result<PathBuf> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    fs::create_dir_all(base)?;
    let name = format!("{}-{stem}", stamp(secs));
    for n in 0.. {
        let dir = if n == 0 {
            base.join(&name)
        } else {
            base.join(format!("{name}.{n}"))
        };
        match private_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    unreachable!("0.. is endless")
}

/// `mkdir -m 0700 DIR` (no window with a wider mode).
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().mode(0o700).create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_directories_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir().join(format!("lnst-rundir-{}", std::process::id()));
        let d = create(&base, Path::new("r.rhai")).unwrap();
        for p in [&d, &d.join("jobs")] {
            let mode = fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", p.display());
        }
        let _ = fs::remove_dir_all(&base);
    }

    #[test]
    fn stamps() {
        assert_eq!(stamp(0), "19700101-000000");
        assert_eq!(stamp(1_700_000_000), "20231114-221320");
        assert_eq!(stamp(951_782_400), "20000229-000000");
    }
}
