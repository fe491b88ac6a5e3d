//! The VM lab's kernel: which kernel a guest boots and the modules that go
//! with it (`run --lab vm [--kernel SPEC]`). [`resolve`] turns the
//! `--kernel` argument into a [`Kernel`] — Debian's current distribution
//! kernel when there is none, a Debian version to fetch, or a kernel the
//! user built — and keeps fetched packages in a cache shared by every
//! controller on the machine ([`cache_root`]). The qemu side then boots
//! [`Kernel::image`] and copies the [`module_closure`] of the modules it
//! needs into the guest's initramfs ([`read_module`] decompresses them).
//!
//! Nothing here installs into the host's `/boot` or `/lib/modules`: a
//! Debian package is `apt-get download`ed and unpacked with `dpkg-deb -x`
//! into the cache. Cache layout (`<cache>` = [`cache_root`]):
//!
//! ```text
//! <cache>/.lock                              flock held while fetching
//! <cache>/linux-image-<release>/             one complete package
//!     boot/vmlinuz-<release>                 the bzImage
//!     lib/modules/<release>/modules.dep      indexed after unpacking
//!     vmlinux                                extracted ELF (PVH entry), if possible
//!     kernel.json                            written last: marks the entry complete
//! <cache>/linux-image-<release>.partial/     an entry being built (removed on retry)
//! <cache>/tmp-<pid>-<n>/                     apt-get download directory (removed)
//! <cache>/user/<key>/vmlinux, kernel.json    vmlinux extracted from a user's bzImage
//! ```

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

/// The Debian metapackage that names the current generic kernel.
const META_PACKAGE: &str = "linux-image-amd64";
/// The file that marks a cache entry complete; written last.
const MARKER: &str = "kernel.json";
/// Largest decompressed kernel accepted (a stripped vmlinux is ~60–100 MB).
const MAX_VMLINUX: u64 = 1 << 30;
/// How often the download directory's size is sampled.
const POLL: Duration = Duration::from_millis(250);
/// Minimum time between two "downloaded …" progress lines.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// A kernel ready to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// The guest's `uname -r`, e.g. `6.1.0-57-amd64`; names its
    /// `/lib/modules/<release>`.
    pub release: String,
    /// What qemu boots with `-kernel`: an ELF vmlinux with a PVH entry note
    /// when there is one (no in-guest decompression: ~2.7 s faster under
    /// TCG), else the bzImage.
    pub image: PathBuf,
    /// `…/lib/modules/<release>` holding `modules.dep`; `None` for a kernel
    /// without modules (all built in).
    pub modules: Option<PathBuf>,
    /// Where it came from, for messages: `Debian linux-image-… (cached in
    /// …)` or the path the user gave.
    pub source: String,
    /// The kernel's timer frequency (`CONFIG_HZ`), when its build config
    /// is at hand; it lets the guest skip calibrating the APIC timer.
    pub hz: Option<u32>,
    /// The build config says `CONFIG_MODULE_SIG_FORCE=y`: the kernel loads
    /// only modules it can verify, so they keep their signatures and the
    /// guest loads its keyring ([`unsigned_module`]).
    pub module_sig_force: bool,
}

/// The value of `key` (`CONFIG_…`) in the first of `configs` (kernel build
/// configs) that exists and sets it.
fn config_value(configs: &[PathBuf], key: &str) -> Option<String> {
    configs.iter().find_map(|c| {
        fs::read_to_string(c).ok()?.lines().find_map(|l| {
            l.strip_prefix(key)
                .and_then(|v| v.strip_prefix('='))
                .map(|v| v.trim().to_string())
        })
    })
}

/// `CONFIG_HZ` from the first of `configs` that exists and sets it.
pub fn config_hz(configs: &[PathBuf]) -> Option<u32> {
    config_value(configs, "CONFIG_HZ")?.parse().ok()
}

/// Whether the first of `configs` that sets it has
/// `CONFIG_MODULE_SIG_FORCE=y` (unknown: false).
pub fn config_module_sig_force(configs: &[PathBuf]) -> bool {
    config_value(configs, "CONFIG_MODULE_SIG_FORCE").as_deref() == Some("y")
}

/// The marker that ends a signed module (`scripts/sign-file`).
const MODULE_SIG_MAGIC: &[u8] = b"~Module signature appended~\n";

/// `ko` without its appended signature, if it has a well-formed one; else
/// `ko` unchanged. The signature is the PKCS#7 blob, then a 12-byte
/// `struct module_signature` whose last field is the blob's length (big
/// endian), then [`MODULE_SIG_MAGIC`]. The guest's kernel has no keyring
/// to check it against (`load_system_certificate_list` is not run), yet
/// it still hashed each signed module it loaded: the early modules load
/// 0.05 s faster under TCG without (0.21 -> 0.16 s, ABBA medians).
pub fn unsigned_module(mut ko: Vec<u8>) -> Vec<u8> {
    let Some(body) = ko.len().checked_sub(MODULE_SIG_MAGIC.len() + 12) else {
        return ko;
    };
    if !ko.ends_with(MODULE_SIG_MAGIC) {
        return ko;
    }
    let sig_len = u32::from_be_bytes([ko[body + 8], ko[body + 9], ko[body + 10], ko[body + 11]]);
    match body.checked_sub(sig_len as usize) {
        Some(end) if ko[..end].starts_with(b"\x7fELF") => {
            ko.truncate(end);
            ko
        }
        _ => ko,
    }
}

/// Why a kernel could not be resolved. Every message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// apt cannot name Debian's current kernel and nothing is cached.
    #[error(
        "cannot find Debian's current kernel: {detail}; and no kernel is cached in {cache}. \
         Run `apt-get update` (needs network once), or pass `--kernel PATH` to boot a kernel \
         you have (a bzImage, a vmlinux or a build tree; works offline)"
    )]
    NoAptLists { detail: String, cache: PathBuf },
    /// A version given to `--kernel` that apt does not know.
    #[error(
        "apt does not know the package {package}. Available: {}. Pass one of these to \
         --kernel (e.g. `--kernel {}`), run `apt-get update` if the version is newer, or \
         pass a path to a kernel you built",
        if available.is_empty() { "none (are the apt lists there? run `apt-get update`)".to_string() } else { available.join(", ") },
        available.first().map(String::as_str).unwrap_or("VERSION")
    )]
    UnknownVersion {
        package: String,
        available: Vec<String>,
    },
    /// A tool the fetch needs is not installed.
    #[error("`{tool}` is not installed (needed to {purpose}): install it with `apt-get install {package}`, or pass `--kernel PATH` to boot a kernel you have")]
    MissingTool {
        tool: String,
        purpose: String,
        package: String,
    },
    /// An external command failed.
    #[error("`{command}` failed ({status}): {stderr}. {hint}")]
    Command {
        command: String,
        status: String,
        stderr: String,
        hint: String,
    },
    /// A file operation failed.
    #[error("cannot {action} {}: {error}. Check permissions and free space there (set LNST_CACHE to move the kernel cache)", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    /// An unpacked Debian package does not look as expected.
    #[error("the package unpacked in {} is not a kernel package as expected: {detail}. Remove that directory and retry; if it happens again, pass `--kernel PATH`", path.display())]
    BadPackage { path: PathBuf, detail: String },
    /// `--kernel PATH` names nothing.
    #[error("kernel {} does not exist: give a bzImage (arch/x86/boot/bzImage), an ELF vmlinux with CONFIG_PVH=y, a kernel build tree, or a Debian version such as 6.1.0-57-amd64", path.display())]
    NotFound { path: PathBuf },
    /// `--kernel PATH` is not a kernel image.
    #[error("{} is not a kernel: {detail}. Expected a bzImage (arch/x86/boot/bzImage), an ELF vmlinux, or a build tree with `vmlinux` or `arch/x86/boot/bzImage` in it", path.display())]
    NotAKernel { path: PathBuf, detail: String },
    /// `--kernel PATH` is a kernel for another architecture.
    #[error("{} is a kernel for {arch}; the VM lab boots x86_64 guests: build with ARCH=x86_64 (e.g. `make ARCH=x86_64 defconfig bzImage`)", path.display())]
    WrongArch { path: PathBuf, arch: String },
    /// An ELF vmlinux qemu cannot boot (no PVH entry note).
    #[error("qemu cannot boot {} directly: the ELF vmlinux has no PVH entry note. Rebuild with CONFIG_PVH=y, or pass the bzImage (arch/x86/boot/bzImage) instead", path.display())]
    NoPvh { path: PathBuf },
    /// No release string found in a kernel image.
    #[error("cannot find the kernel release (the `uname -r` string) in {}: is it a complete kernel image? Pass arch/x86/boot/bzImage or the top-level vmlinux of the build", path.display())]
    NoRelease { path: PathBuf },
    /// A module that is neither in `modules.dep` nor built in.
    #[error("module `{name}` is neither in {}/modules.dep nor built in: check the name, or use a kernel that has it (CONFIG_…=m or =y)", modules.display())]
    UnknownModule { name: String, modules: PathBuf },
    /// A modules directory without a usable index.
    #[error("the modules in {} have no usable index: {detail}", path.display())]
    ModulesIndex { path: PathBuf, detail: String },
}

impl KernelError {
    fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> KernelError {
        let path = path.to_path_buf();
        move |source| KernelError::Io {
            action,
            path,
            error: source,
        }
    }
}

/// The marker file of a complete cache entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Marker {
    /// `linux-image-<release>` for a Debian entry, the image path for a
    /// user's.
    package: String,
    release: String,
    /// Relative to the entry: `vmlinux` or `boot/vmlinuz-<release>`.
    image: String,
    /// Relative to the entry, if there are modules.
    modules: Option<String>,
    /// What wrote `modules.dep`: `depmod`, or `lnst` (built-in generator,
    /// when kmod is not installed).
    index: Option<String>,
    /// Seconds since the epoch.
    created: u64,
}

/// The kernel cache shared by every lnst controller of this user:
/// `$LNST_CACHE/kernels`, else `$XDG_CACHE_HOME/lnst/kernels`, else
/// `~/.cache/lnst/kernels` (`/root/.cache/lnst/kernels` for root).
pub fn cache_root() -> PathBuf {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = var("LNST_CACHE") {
        return d.join("kernels");
    }
    if let Some(d) = var("XDG_CACHE_HOME") {
        return d.join("lnst").join("kernels");
    }
    let home = var("HOME").unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache").join("lnst").join("kernels")
}

/// Resolves `--kernel SPEC` to a bootable [`Kernel`], fetching into `cache`
/// if needed.
///
/// - `None`: Debian's current generic kernel (the package
///   `linux-image-amd64` depends on; `apt-cache`, no network), fetched
///   once. Without apt lists, the newest cached kernel.
/// - An existing path: a kernel the user built (bzImage, ELF vmlinux, or
///   a build tree); modules from `<dir>/lib/modules/<release>` (as `make
///   modules_install INSTALL_MOD_PATH=<dir>` leaves them; dir = the tree
///   or the image's directory), else `/lib/modules/<release>`, else none.
/// - Anything else: a Debian version, `6.1.0-28` or `6.1.0-28-amd64`
///   (`-amd64` appended when no flavour is given).
///
/// `progress` receives short human lines ("fetching …", "downloaded 34.1
/// MB", "ready: … in 12.3 s"); the caller decides how to show them.
pub fn resolve(
    spec: Option<&str>,
    cache: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Kernel, KernelError> {
    match spec {
        None => resolve_current(cache, progress),
        Some(s) => {
            let path = Path::new(s);
            if path.exists() {
                resolve_user(path, cache, progress)
            } else if s.contains('/') || s.starts_with('.') || s.starts_with('~') {
                Err(KernelError::NotFound {
                    path: path.to_path_buf(),
                })
            } else {
                let package = debian_package(s);
                if let Some(k) = cached(cache, &package)? {
                    return Ok(k);
                }
                if !apt_knows(&package)? {
                    // The default kernel first: newer series sort above it.
                    let mut available = available_versions(8);
                    if let Ok(current) = current_package_memo(cache) {
                        let v = current.trim_start_matches("linux-image-").to_string();
                        available.retain(|a| *a != v);
                        available.insert(0, v);
                        available.truncate(8);
                    }
                    return Err(KernelError::UnknownVersion { package, available });
                }
                fetch(&package, cache, progress)
            }
        }
    }
}

/// The Debian package for a version given to `--kernel`: `6.1.0-28` →
/// `linux-image-6.1.0-28-amd64`, `6.12.118+deb12-cloud` →
/// `linux-image-6.12.118+deb12-cloud-amd64`; `-amd64` is kept if given.
fn debian_package(version: &str) -> String {
    let v = version.strip_prefix("linux-image-").unwrap_or(version);
    if v.ends_with("-amd64") {
        format!("linux-image-{v}")
    } else {
        format!("linux-image-{v}-amd64")
    }
}

/// `resolve(None)`: the package `linux-image-amd64` depends on.
fn resolve_current(cache: &Path, progress: &mut dyn FnMut(&str)) -> Result<Kernel, KernelError> {
    let package = match current_package_memo(cache) {
        Ok(p) => p,
        Err(detail) => {
            return match newest_cached(cache)? {
                Some(k) => {
                    progress(&format!("{detail}; using the newest cached kernel {} (run `apt-get update` for the current one)", k.release));
                    Ok(k)
                }
                None => Err(KernelError::NoAptLists {
                    detail,
                    cache: cache.to_path_buf(),
                }),
            };
        }
    };
    if let Some(k) = cached(cache, &package)? {
        return Ok(k);
    }
    match fetch(&package, cache, progress) {
        Ok(k) => Ok(k),
        Err(e) => match newest_cached(cache)? {
            Some(k) => {
                progress(&format!(
                    "could not fetch {package} ({e}); using the newest cached kernel {}",
                    k.release
                ));
                Ok(k)
            }
            None => Err(e),
        },
    }
}

/// Where the last answer of [`current_package`] is kept, with the apt
/// lists' state it was computed from.
const CURRENT_MEMO: &str = "current.json";

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct CurrentMemo {
    /// [`lists_stamp`] when apt was asked.
    lists: String,
    package: String,
}

/// A cheap fingerprint of apt's package lists: names, sizes and mtimes of
/// `/var/lib/apt/lists/*` (`apt-get update` changes them).
fn lists_stamp() -> Option<String> {
    let mut items: Vec<String> = fs::read_dir("/var/lib/apt/lists")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let md = e.metadata().ok()?;
            let mtime = md
                .modified()
                .ok()?
                .duration_since(UNIX_EPOCH)
                .ok()?
                .as_nanos();
            md.is_file()
                .then(|| format!("{}:{}:{mtime}", e.file_name().to_string_lossy(), md.len()))
        })
        .collect();
    items.sort();
    (!items.is_empty()).then(|| format!("{:016x}", fnv1a(items.join("\n").as_bytes())))
}

/// [`current_package`], remembered in `<cache>/current.json` while the
/// apt lists stay the same: `apt-cache` takes ~1 s here (no pkgcache.bin),
/// a third of a VM's boot.
fn current_package_memo(cache: &Path) -> Result<String, String> {
    let stamp = lists_stamp();
    let memo_path = cache.join(CURRENT_MEMO);
    if let Some(stamp) = &stamp {
        let memo: Option<CurrentMemo> = fs::read_to_string(&memo_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        if let Some(m) = memo.filter(|m| &m.lists == stamp) {
            return Ok(m.package);
        }
    }
    let package = current_package()?;
    if let Some(lists) = stamp {
        let memo = CurrentMemo {
            lists,
            package: package.clone(),
        };
        if let Ok(text) = serde_json::to_string(&memo) {
            // Best effort: without the memo the next resolve asks apt again.
            let tmp = cache.join(format!("{CURRENT_MEMO}.{}", std::process::id()));
            if fs::create_dir_all(cache)
                .and_then(|()| fs::write(&tmp, text))
                .and_then(|()| fs::rename(&tmp, &memo_path))
                .is_err()
            {
                let _ = fs::remove_file(&tmp);
            }
        }
    }
    Ok(package)
}

/// Asks apt which package `linux-image-amd64` depends on; the error is a
/// short description for messages.
fn current_package() -> Result<String, String> {
    let out = Command::new("apt-cache")
        .args(["depends", META_PACKAGE])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run apt-cache ({e})"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "`apt-cache depends {META_PACKAGE}` failed: {}",
            first_line(&err)
        ));
    }
    parse_depends(&text).ok_or_else(|| {
        format!("apt-cache lists no kernel package for {META_PACKAGE} (are the apt lists there?)")
    })
}

/// The first `Depends: linux-image-…` of `apt-cache depends` output.
fn parse_depends(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let dep = l.trim().strip_prefix("Depends:")?.trim();
        let dep = dep.trim_start_matches('<').trim_end_matches('>');
        dep.starts_with("linux-image-").then(|| dep.to_string())
    })
}

/// Whether apt has a candidate for `package`.
fn apt_knows(package: &str) -> Result<bool, KernelError> {
    let out = Command::new("apt-cache")
        .args(["show", "--no-all-versions", package])
        .stdin(Stdio::null())
        .output()
        .map_err(|_| missing("apt-cache", "look up Debian kernel packages", "apt"))?;
    Ok(out.status.success() && !out.stdout.is_empty())
}

/// A few generic-flavour kernel versions apt knows, newest first, for
/// error messages (`-cloud-amd64` and `-rt-amd64` exist too).
fn available_versions(n: usize) -> Vec<String> {
    let Ok(out) = Command::new("apt-cache")
        .args(["pkgnames", "linux-image-"])
        .stdin(Stdio::null())
        .output()
    else {
        return Vec::new();
    };
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("linux-image-"))
        .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()) && v.ends_with("-amd64"))
        .filter(|v| {
            !["-dbg", "unsigned", "-cloud-", "-rt-"]
                .iter()
                .any(|x| v.contains(x))
        })
        .map(str::to_string)
        .collect();
    v.sort_by(|a, b| version_cmp(b, a));
    v.dedup();
    v.truncate(n);
    v
}

/// Compares version strings with digit runs compared as numbers.
fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn parts(s: &str) -> Vec<Result<u64, String>> {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut digits = false;
        for c in s.chars() {
            if c.is_ascii_digit() != digits && !cur.is_empty() {
                out.push(if digits {
                    Ok(cur.parse().unwrap_or(u64::MAX))
                } else {
                    Err(std::mem::take(&mut cur))
                });
                cur.clear();
            }
            digits = c.is_ascii_digit();
            cur.push(c);
        }
        if !cur.is_empty() {
            out.push(if digits {
                Ok(cur.parse().unwrap_or(u64::MAX))
            } else {
                Err(cur)
            });
        }
        out
    }
    parts(a).cmp(&parts(b))
}

fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no output")
        .to_string()
}

fn missing(tool: &str, purpose: &str, package: &str) -> KernelError {
    KernelError::MissingTool {
        tool: tool.into(),
        purpose: purpose.into(),
        package: package.into(),
    }
}

/// Finds a tool in PATH or the sbin directories (depmod lives in /sbin,
/// which a non-root PATH may lack).
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
                .into_iter()
                .map(PathBuf::from),
        )
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Runs a command to completion; a failure becomes [`KernelError::Command`].
fn run(cmd: &mut Command, hint: &str) -> Result<(), KernelError> {
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| KernelError::Command {
            command: shown.clone(),
            status: "could not start".into(),
            stderr: e.to_string(),
            hint: hint.into(),
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(KernelError::Command {
        command: shown,
        status: out.status.to_string(),
        stderr: tail(&String::from_utf8_lossy(&out.stderr), 5),
        hint: hint.into(),
    })
}

/// The last `n` non-empty lines of `s`, joined with "; ".
fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let t = lines[lines.len().saturating_sub(n)..].join("; ");
    if t.is_empty() {
        "no output".into()
    } else {
        t
    }
}

fn read_marker(entry: &Path) -> Option<Marker> {
    let text = fs::read_to_string(entry.join(MARKER)).ok()?;
    serde_json::from_str(&text).ok()
}

/// A complete cache entry as a [`Kernel`], if its files are still there.
fn kernel_of_entry(entry: &Path, m: &Marker) -> Option<Kernel> {
    let image = entry.join(&m.image);
    let modules = m.modules.as_ref().map(|d| entry.join(d));
    if !image.is_file()
        || modules
            .as_ref()
            .is_some_and(|d| !d.join("modules.dep").is_file())
    {
        return None;
    }
    let config = [entry.join("boot").join(format!("config-{}", m.release))];
    Some(Kernel {
        hz: config_hz(&config),
        module_sig_force: config_module_sig_force(&config),
        release: m.release.clone(),
        image,
        modules,
        source: format!("Debian {} (cached in {})", m.package, entry.display()),
    })
}

/// The cached entry for `package`, if complete.
fn cached(cache: &Path, package: &str) -> Result<Option<Kernel>, KernelError> {
    let entry = cache.join(package);
    Ok(read_marker(&entry).and_then(|m| kernel_of_entry(&entry, &m)))
}

/// The newest complete Debian entry in the cache.
fn newest_cached(cache: &Path) -> Result<Option<Kernel>, KernelError> {
    let Ok(dir) = fs::read_dir(cache) else {
        return Ok(None);
    };
    let mut best: Option<Kernel> = None;
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("linux-image-") || name.ends_with(".partial") {
            continue;
        }
        if let Some(k) = read_marker(&e.path()).and_then(|m| kernel_of_entry(&e.path(), &m)) {
            if best
                .as_ref()
                .is_none_or(|b| version_cmp(&k.release, &b.release).is_gt())
            {
                best = Some(k);
            }
        }
    }
    Ok(best)
}

/// An exclusive `flock` on `<cache>/.lock`, released on drop.
fn lock_cache(cache: &Path, progress: &mut dyn FnMut(&str)) -> Result<Flock<File>, KernelError> {
    let path = cache.join(".lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(KernelError::io("open the lock file", &path))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(l),
        Err((file, _)) => {
            progress(&format!(
                "waiting for another lnst-ctl fetching a kernel (lock {})",
                path.display()
            ));
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| KernelError::Io {
                action: "lock",
                path,
                error: io::Error::from(e),
            })
        }
    }
}

/// Downloads, unpacks, indexes and marks `package` in the cache.
fn fetch(
    package: &str,
    cache: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Kernel, KernelError> {
    fs::create_dir_all(cache).map_err(KernelError::io("create the kernel cache", cache))?;
    let _lock = lock_cache(cache, progress)?;
    // Another controller may have fetched it while we waited.
    if let Some(k) = cached(cache, package)? {
        return Ok(k);
    }
    let apt_get =
        find_tool("apt-get").ok_or_else(|| missing("apt-get", "download Debian kernels", "apt"))?;
    let dpkg_deb = find_tool("dpkg-deb")
        .ok_or_else(|| missing("dpkg-deb", "unpack Debian kernels", "dpkg"))?;
    let start = Instant::now();
    clean_leftovers(cache);

    progress(&format!("fetching Debian kernel {package} …"));
    let tmp = cache.join(format!("tmp-{}-{}", std::process::id(), now_secs()));
    fs::create_dir_all(&tmp).map_err(KernelError::io("create a download directory", &tmp))?;
    let result = fetch_into(package, cache, &tmp, &apt_get, &dpkg_deb, start, progress);
    let _ = fs::remove_dir_all(&tmp);
    if result.is_err() {
        // Do not leave ~400 MB of a half-built entry behind.
        let _ = fs::remove_dir_all(cache.join(format!("{package}.partial")));
    }
    result
}

/// Removes entries a killed fetch left behind (we hold the lock).
/// Also removes user-kernel partials whose process is gone.
fn clean_leftovers(cache: &Path) {
    if let Ok(dir) = fs::read_dir(cache) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".partial") || name.starts_with("tmp-") {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    if let Ok(dir) = fs::read_dir(cache.join("user")) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name
                .rsplit_once(".partial-")
                .map(|(_, pid)| pid.to_string());
            if pid.is_some_and(|pid| !Path::new("/proc").join(pid).exists()) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

fn fetch_into(
    package: &str,
    cache: &Path,
    tmp: &Path,
    apt_get: &Path,
    dpkg_deb: &Path,
    start: Instant,
    progress: &mut dyn FnMut(&str),
) -> Result<Kernel, KernelError> {
    download(package, tmp, apt_get, progress)?;
    let deb = fs::read_dir(tmp)
        .map_err(KernelError::io("list", tmp))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| KernelError::BadPackage {
            path: tmp.to_path_buf(),
            detail: "apt-get download left no .deb file".into(),
        })?;

    progress(&format!(
        "unpacking {} …",
        deb.file_name().unwrap_or_default().to_string_lossy()
    ));
    let partial = cache.join(format!("{package}.partial"));
    run(
        Command::new(dpkg_deb).arg("-x").arg(&deb).arg(&partial),
        "Check free space in the cache (a kernel needs ~400 MB unpacked)",
    )?;
    let _ = fs::remove_file(&deb);

    let release = package_release(&partial)?;
    let rel_modules = format!("lib/modules/{release}");
    let modules = partial.join(&rel_modules);
    progress("indexing modules …");
    let index = index_modules(&partial, &release, &modules)?;

    let vmlinuz = partial.join("boot").join(format!("vmlinuz-{release}"));
    let data = fs::read(&vmlinuz).map_err(KernelError::io("read", &vmlinuz))?;
    let image = match extract_vmlinux(&data).filter(|v| has_pvh_note(v)) {
        Some(v) => {
            let out = partial.join("vmlinux");
            fs::write(&out, v).map_err(KernelError::io("write", &out))?;
            "vmlinux".to_string()
        }
        None => {
            progress("could not extract a PVH vmlinux from the bzImage; the guests boot the bzImage (~2.7 s slower under TCG)");
            format!("boot/vmlinuz-{release}")
        }
    };
    let marker = Marker {
        package: package.to_string(),
        release: release.clone(),
        image,
        modules: Some(rel_modules),
        index: Some(index.into()),
        created: now_secs(),
    };
    write_marker(&partial, &marker)?;
    let entry = cache.join(package);
    if entry.exists() {
        // An incomplete entry (no valid marker); we hold the lock.
        fs::remove_dir_all(&entry)
            .map_err(KernelError::io("remove the incomplete cache entry", &entry))?;
    }
    fs::rename(&partial, &entry).map_err(KernelError::io("move into place", &partial))?;
    progress(&format!(
        "ready: {release} in {:.1} s",
        start.elapsed().as_secs_f64()
    ));
    kernel_of_entry(&entry, &marker).ok_or_else(|| KernelError::BadPackage {
        path: entry.clone(),
        detail: "files vanished after unpacking".into(),
    })
}

/// `apt-get download package` in `dir`, reporting the downloaded size.
fn download(
    package: &str,
    dir: &Path,
    apt_get: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<(), KernelError> {
    let log = dir.join("apt-get.log");
    let log_file = File::create(&log).map_err(KernelError::io("create", &log))?;
    let err_file = log_file
        .try_clone()
        .map_err(KernelError::io("open", &log))?;
    let mut cmd = Command::new(apt_get);
    // As root, apt downloads as the _apt user, who cannot write into
    // root's cache; apt then warns and downloads as root anyway.
    if nix::unistd::geteuid().is_root() {
        cmd.args(["-o", "APT::Sandbox::User=root"]);
    }
    cmd.args(["download", package])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(err_file);
    let shown = format!("apt-get download {package}");
    let mut child = cmd.spawn().map_err(|e| KernelError::Command {
        command: shown.clone(),
        status: "could not start".into(),
        stderr: e.to_string(),
        hint: "Check that apt is installed, or pass `--kernel PATH`".into(),
    })?;
    let mut last_size = 0;
    let mut last_report = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(e) => {
                return Err(KernelError::Command {
                    command: shown,
                    status: "wait failed".into(),
                    stderr: e.to_string(),
                    hint: "Retry; if it happens again, pass `--kernel PATH`".into(),
                })
            }
        }
        std::thread::sleep(POLL);
        let size = dir_size(dir);
        if size != last_size && last_report.elapsed() >= PROGRESS_EVERY {
            progress(&format!("downloaded {:.1} MB", size as f64 / 1e6));
            last_report = Instant::now();
            last_size = size;
        }
    };
    if status.success() {
        return Ok(());
    }
    let text = fs::read_to_string(&log).unwrap_or_default();
    Err(KernelError::Command {
        command: shown,
        status: status.to_string(),
        stderr: tail(&text, 4),
        hint: "Check the network and /etc/apt/sources.list, run `apt-get update`, or pass `--kernel PATH`".into(),
    })
}

/// Total size of the files in `dir` and its subdirectories (apt keeps the
/// file being downloaded in `partial/`).
fn dir_size(dir: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    rd.flatten()
        .filter_map(|e| {
            let md = e.metadata().ok()?;
            Some(if md.is_dir() {
                dir_size(&e.path())
            } else if e.file_name() == "apt-get.log" {
                0
            } else {
                md.len()
            })
        })
        .sum()
}

/// The one release under `<root>/lib/modules` of an unpacked package.
fn package_release(root: &Path) -> Result<String, KernelError> {
    let dir = root.join("lib/modules");
    let bad = |detail: String| KernelError::BadPackage {
        path: root.to_path_buf(),
        detail,
    };
    let names: Vec<String> = fs::read_dir(&dir)
        .map_err(|e| bad(format!("no lib/modules ({e})")))?
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let [release] = names.as_slice() else {
        return Err(bad(format!(
            "expected one directory in lib/modules, found {names:?}"
        )));
    };
    if !root
        .join("boot")
        .join(format!("vmlinuz-{release}"))
        .is_file()
    {
        return Err(bad(format!("no boot/vmlinuz-{release}")));
    }
    Ok(release.clone())
}

/// Writes `<modules>/modules.dep`: with kmod's `depmod -b base release`
/// when installed, else with [`write_modules_dep`] (modules.dep only, from
/// each module's `.modinfo` `depends=`; enough for [`module_closure`] and
/// busybox `modprobe`). Returns which one ran.
fn index_modules(base: &Path, release: &str, modules: &Path) -> Result<&'static str, KernelError> {
    if let Some(depmod) = find_tool("depmod") {
        run(
            Command::new(depmod).arg("-b").arg(base).arg(release),
            "Check the unpacked modules; remove the cache entry and retry",
        )?;
        Ok("depmod")
    } else {
        write_modules_dep(modules)?;
        Ok("lnst")
    }
}

fn write_marker(entry: &Path, m: &Marker) -> Result<(), KernelError> {
    let path = entry.join(MARKER);
    let text = serde_json::to_string_pretty(m).map_err(|e| KernelError::Io {
        action: "encode",
        path: path.clone(),
        error: io::Error::other(e),
    })?;
    let tmp = entry.join(format!("{MARKER}.tmp"));
    fs::write(&tmp, text).map_err(KernelError::io("write", &tmp))?;
    fs::rename(&tmp, &path).map_err(KernelError::io("write", &path))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------
// A kernel the user built.

/// What a file given as a kernel is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ImageKind {
    /// An x86 bzImage (boot header "HdrS").
    BzImage,
    /// An x86_64 ELF vmlinux.
    Elf,
}

/// Classifies an image; the error is the detail for [`KernelError`], with
/// `Err(Ok(arch))` for a kernel of another architecture.
fn classify(data: &[u8]) -> Result<ImageKind, Result<String, String>> {
    if data.get(0x202..0x206) == Some(b"HdrS") {
        let protocol = u16_at(data, 0x206).unwrap_or(0);
        let xloadflags = u16_at(data, 0x236).unwrap_or(0);
        if protocol >= 0x020c && xloadflags & 1 == 0 {
            return Err(Ok("32-bit x86 (the bzImage has no 64-bit entry)".into()));
        }
        return Ok(ImageKind::BzImage);
    }
    if data.starts_with(b"\x7fELF") {
        let class = data.get(4).copied().unwrap_or(0);
        let machine = u16_at(data, 0x12).unwrap_or(0);
        return match (class, machine) {
            (2, 62) => Ok(ImageKind::Elf),
            (_, m) => Err(Ok(elf_machine_name(m))),
        };
    }
    if data.get(0x38..0x3c) == Some(b"ARM\x64") {
        return Err(Ok("arm64 (an arm64 Image)".into()));
    }
    if data.get(0x30..0x34) == Some(b"RSC\x05") || data.get(0x38..0x3c) == Some(b"RSC\x05") {
        return Err(Ok("riscv (a RISC-V Image)".into()));
    }
    if data.get(0x24..0x28) == Some(&[0x18, 0x28, 0x6f, 0x01]) {
        return Err(Ok("32-bit arm (a zImage)".into()));
    }
    if data.starts_with(b"\x1f\x8b")
        || data.starts_with(b"\xfd7zXZ\0")
        || data.starts_with(b"\x28\xb5\x2f\xfd")
    {
        return Err(Err("it is a compressed file, not a boot image; decompress it, or pass arch/x86/boot/bzImage".into()));
    }
    Err(Err(
        "no x86 boot header (\"HdrS\" at 0x202) and no ELF header".into(),
    ))
}

fn elf_machine_name(m: u16) -> String {
    match m {
        3 => "32-bit x86 (i386 ELF)".into(),
        40 => "32-bit arm".into(),
        183 => "arm64 (aarch64 ELF)".into(),
        243 => "riscv".into(),
        21 => "ppc64".into(),
        22 => "s390".into(),
        62 => "x86_64 in a 32-bit ELF".into(),
        m => format!("ELF machine {m}"),
    }
}

/// `resolve(Some(path))` for an existing path.
fn resolve_user(
    path: &Path,
    cache: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Kernel, KernelError> {
    let path = fs::canonicalize(path).map_err(KernelError::io("resolve", path))?;
    let (file, tree) = if path.is_dir() {
        let vmlinux = path.join("vmlinux");
        let bzimage = path.join("arch/x86/boot/bzImage");
        let file = if vmlinux.is_file() && has_pvh_note_file(&vmlinux) {
            vmlinux
        } else if bzimage.is_file() {
            bzimage
        } else if vmlinux.is_file() {
            vmlinux
        } else {
            return Err(KernelError::NotAKernel {
                path: path.clone(),
                detail: "a directory without `vmlinux` or `arch/x86/boot/bzImage` (is the kernel built?)".into(),
            });
        };
        (file, path.clone())
    } else {
        // The build tree's top for `<tree>/arch/x86/boot/bzImage`, else
        // the image's directory.
        let in_tree =
            path.ends_with("arch/x86/boot/bzImage") || path.ends_with("arch/x86_64/boot/bzImage");
        let dir = match path.ancestors().nth(if in_tree { 4 } else { 1 }) {
            Some(d) => d.to_path_buf(),
            None => PathBuf::from("/"),
        };
        (path.clone(), dir)
    };
    let data = fs::read(&file).map_err(KernelError::io("read", &file))?;
    let kind = classify(&data).map_err(|e| match e {
        Ok(arch) => KernelError::WrongArch {
            path: file.clone(),
            arch,
        },
        Err(detail) => KernelError::NotAKernel {
            path: file.clone(),
            detail,
        },
    })?;
    let release = release_of(&data).ok_or_else(|| KernelError::NoRelease { path: file.clone() })?;
    let image = match kind {
        ImageKind::Elf if has_pvh_note(&data) => file.clone(),
        ImageKind::Elf => return Err(KernelError::NoPvh { path: file.clone() }),
        ImageKind::BzImage => user_vmlinux(&file, &data, &release, cache, progress)?,
    };
    let modules = user_modules(&tree, &release, progress)?;
    // A build tree's .config, or a packaged kernel's config beside it.
    let dir = file.parent().unwrap_or(&tree);
    let config = [tree.join(".config"), dir.join(format!("config-{release}"))];
    Ok(Kernel {
        release,
        image,
        modules,
        source: file.display().to_string(),
        hz: config_hz(&config),
        module_sig_force: config_module_sig_force(&config),
    })
}

/// The vmlinux extracted from a user's bzImage, cached under
/// `<cache>/user/<key>` (key: path, size, mtime); the bzImage itself when
/// extraction fails.
fn user_vmlinux(
    file: &Path,
    data: &[u8],
    release: &str,
    cache: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<PathBuf, KernelError> {
    let mtime = fs::metadata(file)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let key = format!(
        "{:016x}",
        fnv1a(format!("{}\0{}\0{mtime}", file.display(), data.len()).as_bytes())
    );
    let entry = cache.join("user").join(&key);
    if let Some(m) = read_marker(&entry) {
        let image = entry.join(&m.image);
        if image.is_file() {
            return Ok(image);
        }
    }
    let Some(vmlinux) = extract_vmlinux(data).filter(|v| has_pvh_note(v)) else {
        progress(&format!("could not extract a PVH vmlinux from {}; booting the bzImage (~2.7 s slower under TCG)", file.display()));
        return Ok(file.to_path_buf());
    };
    let partial = cache
        .join("user")
        .join(format!("{key}.partial-{}", std::process::id()));
    fs::create_dir_all(&partial).map_err(KernelError::io("create", &partial))?;
    let out = partial.join("vmlinux");
    fs::write(&out, vmlinux).map_err(KernelError::io("write", &out))?;
    let marker = Marker {
        package: file.display().to_string(),
        release: release.to_string(),
        image: "vmlinux".into(),
        modules: None,
        index: None,
        created: now_secs(),
    };
    write_marker(&partial, &marker)?;
    let _ = fs::remove_dir_all(&entry);
    if fs::rename(&partial, &entry).is_err() {
        // Another controller won the race; its entry is as good as ours.
        let _ = fs::remove_dir_all(&partial);
    }
    Ok(entry.join("vmlinux"))
}

/// FNV-1a: a hash that stays the same across Rust versions, for cache keys.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

/// Modules for a user's kernel: `<tree>/lib/modules/<release>` (`make
/// modules_install INSTALL_MOD_PATH=<tree>`), then `/lib/modules/<release>`.
/// A user's tree without `modules.dep` is indexed in place (as
/// `modules_install` would have done); the host's `/lib/modules` is never
/// written to.
fn user_modules(
    tree: &Path,
    release: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<Option<PathBuf>, KernelError> {
    let own = tree.join("lib/modules").join(release);
    if own.is_dir() {
        if !own.join("modules.dep").is_file() {
            progress(&format!("indexing modules in {} …", own.display()));
            index_modules(tree, release, &own).map_err(|e| KernelError::ModulesIndex {
                path: own.clone(),
                detail: format!("{e}. Run `depmod -b {} {release}`", tree.display()),
            })?;
        }
        return Ok(Some(own));
    }
    let host = Path::new("/lib/modules").join(release);
    if host.is_dir() {
        if !host.join("modules.dep").is_file() {
            return Err(KernelError::ModulesIndex {
                path: host.clone(),
                detail: format!("modules.dep is missing. Run `depmod {release}` as root"),
            });
        }
        return Ok(Some(host));
    }
    progress(&format!(
        "no modules for {release} (looked in {} and {}): fine for a kernel with everything built in; \
         else run `make modules_install INSTALL_MOD_PATH={}`",
        own.display(),
        host.display(),
        tree.display()
    ));
    Ok(None)
}

// ---------------------------------------------------------------------
// Kernel images.

fn u16_at(d: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(off..off + 2)?.try_into().ok()?))
}
fn u32_at(d: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(off..off + 4)?.try_into().ok()?))
}
fn u64_at(d: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(d.get(off..off + 8)?.try_into().ok()?))
}

/// The release (`uname -r`) of a kernel image: from a bzImage's header
/// (`kernel_version` at 0x20E, +0x200) or an ELF vmlinux's banner ("Linux
/// version X ").
pub fn release_of(image: &[u8]) -> Option<String> {
    if image.get(0x202..0x206) == Some(b"HdrS") {
        let off = usize::from(u16_at(image, 0x20e)?) + 0x200;
        if off == 0x200 {
            return None;
        }
        return release_token(image.get(off..)?);
    }
    if image.starts_with(b"\x7fELF") {
        const BANNER: &[u8] = b"Linux version ";
        let mut from = 0;
        while let Some(i) = find(&image[from..], BANNER) {
            let at = from + i + BANNER.len();
            if let Some(r) = release_token(&image[at..]) {
                return Some(r);
            }
            from = at;
        }
    }
    None
}

/// The first word of `s` if it looks like a release: starts with a digit,
/// ends at a space or NUL, only release characters.
fn release_token(s: &[u8]) -> Option<String> {
    let end = s.iter().take(128).position(|&b| b == b' ' || b == 0)?;
    let tok = std::str::from_utf8(&s[..end]).ok()?;
    let ok = tok.starts_with(|c: char| c.is_ascii_digit())
        && tok
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+~".contains(c));
    ok.then(|| tok.to_string())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        match hay[i..=hay.len() - needle.len()]
            .iter()
            .position(|&b| b == first)
        {
            None => return None,
            Some(p) => {
                i += p;
                if &hay[i..i + needle.len()] == needle {
                    return Some(i);
                }
                i += 1;
            }
        }
    }
    None
}

/// A compression format a bzImage payload (or a module) may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Gzip,
    Xz,
    Zstd,
    Lz4,
    Lzma,
    Bzip2,
}

/// Magics as scripts/extract-vmlinux searches them.
const MAGICS: &[(Format, &[u8])] = &[
    (Format::Xz, b"\xfd7zXZ\x00"),
    (Format::Zstd, b"\x28\xb5\x2f\xfd"),
    (Format::Gzip, b"\x1f\x8b\x08"),
    (Format::Lz4, b"\x02\x21\x4c\x18"),
    (Format::Lzma, b"\x5d\x00\x00\x00"),
    (Format::Bzip2, b"BZh"),
];

/// The format whose magic `data` starts with.
fn format_at(data: &[u8]) -> Option<Format> {
    MAGICS
        .iter()
        .find(|(_, m)| data.starts_with(m))
        .map(|(f, _)| *f)
}

/// Every offset where a magic occurs, in file order (at most `per_magic`
/// per format: `BZh` and the lzma magic also occur by chance in code).
fn scan_magics(data: &[u8], per_magic: usize) -> Vec<(usize, Format)> {
    let mut hits = Vec::new();
    for &(f, m) in MAGICS {
        let mut from = 0;
        let mut n = 0;
        while n < per_magic {
            let Some(i) = find(&data[from..], m) else {
                break;
            };
            hits.push((from + i, f));
            from += i + 1;
            n += 1;
        }
    }
    hits.sort_by_key(|h| h.0);
    hits
}

/// Decompresses one stream of `format` from the start of `data` (trailing
/// bytes are allowed), up to `limit` bytes. A decoder error after output
/// was produced returns the output: the caller checks it is a whole ELF.
fn decompress(format: Format, data: &[u8], limit: u64) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let res = match format {
        Format::Gzip => flate2::read::GzDecoder::new(data)
            .take(limit)
            .read_to_end(&mut out),
        Format::Xz => liblzma::read::XzDecoder::new(data)
            .take(limit)
            .read_to_end(&mut out),
        Format::Lzma => {
            let stream = liblzma::stream::Stream::new_lzma_decoder(u64::MAX).ok()?;
            liblzma::read::XzDecoder::new_stream(data, stream)
                .take(limit)
                .read_to_end(&mut out)
        }
        Format::Zstd => ruzstd::decoding::StreamingDecoder::new(data)
            .ok()?
            .take(limit)
            .read_to_end(&mut out),
        Format::Bzip2 => bzip2::read::BzDecoder::new(data)
            .take(limit)
            .read_to_end(&mut out),
        Format::Lz4 => return lz4_legacy(data, limit),
    };
    match res {
        Ok(_) => Some(out),
        Err(_) if !out.is_empty() => Some(out),
        Err(_) => None,
    }
}

/// The lz4 "legacy" frame the kernel uses: magic, then blocks of a
/// little-endian u32 compressed size and up to 8 MiB of output each.
fn lz4_legacy(data: &[u8], limit: u64) -> Option<Vec<u8>> {
    const CHUNK: usize = 8 << 20;
    let mut out = Vec::new();
    let mut pos = 4;
    let mut buf = vec![0u8; CHUNK];
    while let Some(size) = u32_at(data, pos) {
        let size = size as usize;
        // Another magic, or the trailing size field: the stream has ended.
        if size == 0x184c2102 || size > CHUNK + CHUNK / 255 + 16 {
            break;
        }
        let Some(block) = data.get(pos + 4..pos + 4 + size) else {
            break;
        };
        let Ok(n) = lz4_flex::block::decompress_into(block, &mut buf) else {
            break;
        };
        out.extend_from_slice(&buf[..n]);
        if out.len() as u64 > limit {
            return None;
        }
        pos += 4 + size;
    }
    (!out.is_empty()).then_some(out)
}

/// Whether `data` is a whole ELF64 file: header, program and section
/// header tables all inside it.
fn elf_complete(data: &[u8]) -> bool {
    if !data.starts_with(b"\x7fELF") || data.get(4) != Some(&2) {
        return false;
    }
    let end = |off: Option<u64>, size: Option<u16>, num: Option<u16>| -> Option<u64> {
        Some(off? + u64::from(size?) * u64::from(num?))
    };
    let ph = end(u64_at(data, 0x20), u16_at(data, 0x36), u16_at(data, 0x38));
    let sh = end(u64_at(data, 0x28), u16_at(data, 0x3a), u16_at(data, 0x3c));
    matches!((ph, sh), (Some(p), Some(s)) if p <= data.len() as u64 && s <= data.len() as u64)
}

/// The ELF vmlinux inside a bzImage, as scripts/extract-vmlinux finds it:
/// the payload the boot header points at (setup sectors at 0x1F1, offset
/// and length at 0x248/0x24C), else the first stream found by scanning
/// for gzip, xz, zstd, lz4, lzma and bzip2 magics that decompresses to a
/// whole ELF. `None` if there is none (e.g. an lzo kernel).
pub fn extract_vmlinux(bzimage: &[u8]) -> Option<Vec<u8>> {
    if let Some(payload) = header_payload(bzimage) {
        // The payload ends with the 4-byte decompressed size. Its magic
        // names the format; lzma's "magic" is only its usual properties
        // and dictionary size, so every decoder gets a try.
        let body = &payload[..payload.len().saturating_sub(4)];
        let first = format_at(body);
        let tries = first
            .into_iter()
            .chain(MAGICS.iter().map(|(f, _)| *f).filter(|f| Some(*f) != first));
        for f in tries {
            if let Some(v) = decompress(f, body, MAX_VMLINUX).filter(|v| elf_complete(v)) {
                return Some(v);
            }
        }
    }
    scan_magics(bzimage, 64).into_iter().find_map(|(off, f)| {
        decompress(f, &bzimage[off..], MAX_VMLINUX).filter(|v| elf_complete(v))
    })
}

/// The compressed payload a bzImage's boot header (protocol ≥ 2.08)
/// points at.
fn header_payload(b: &[u8]) -> Option<&[u8]> {
    if b.get(0x202..0x206) != Some(b"HdrS") || u16_at(b, 0x206)? < 0x0208 {
        return None;
    }
    let setup = match b.get(0x1f1)? {
        0 => 4,
        n => usize::from(*n),
    };
    let start = (setup + 1) * 512 + u32_at(b, 0x248)? as usize;
    let len = u32_at(b, 0x24c)? as usize;
    b.get(start..start.checked_add(len)?)
}

/// Whether an ELF vmlinux has the PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY,
/// name "Xen", type 18) that qemu needs to boot it with `-kernel`.
pub fn has_pvh_note(elf: &[u8]) -> bool {
    if !elf.starts_with(b"\x7fELF") || elf.get(4) != Some(&2) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) =
        (u64_at(elf, 0x20), u16_at(elf, 0x36), u16_at(elf, 0x38))
    else {
        return false;
    };
    (0..usize::from(phnum)).any(|i| {
        let ph = phoff as usize + i * usize::from(phentsize);
        if u32_at(elf, ph) != Some(4) {
            return false; // not PT_NOTE
        }
        let (Some(off), Some(size)) = (u64_at(elf, ph + 8), u64_at(elf, ph + 0x20)) else {
            return false;
        };
        elf.get(off as usize..(off as usize).saturating_add(size as usize))
            .is_some_and(notes_have_pvh)
    })
}

fn notes_have_pvh(mut notes: &[u8]) -> bool {
    let pad = |n: usize| (n + 3) & !3;
    while let (Some(namesz), Some(descsz), Some(ty)) =
        (u32_at(notes, 0), u32_at(notes, 4), u32_at(notes, 8))
    {
        let (namesz, descsz) = (namesz as usize, descsz as usize);
        let name = notes.get(12..12 + namesz).unwrap_or_default();
        if ty == 18 && name.starts_with(b"Xen") {
            return true;
        }
        let next = 12 + pad(namesz) + pad(descsz);
        match notes.get(next..) {
            Some(rest) if next > 12 => notes = rest,
            _ => return false,
        }
    }
    false
}

/// [`has_pvh_note`] of a file, reading only its headers and notes.
fn has_pvh_note_file(path: &Path) -> bool {
    // A build tree's vmlinux carries debug info (hundreds of MB); its
    // notes sit near the start, so the first 64 MiB are enough to decide.
    let mut head = Vec::new();
    File::open(path)
        .and_then(|f| f.take(64 << 20).read_to_end(&mut head))
        .is_ok()
        && has_pvh_note(&head)
}

// ---------------------------------------------------------------------
// Modules.

/// A module's name as the kernel spells it: file stem without `.ko[.xz|
/// .zst|.gz]`, `-` as `_`.
fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = base.find(".ko").map_or(base, |i| &base[..i]);
    stem.replace('-', "_")
}

/// A parsed `modules.dep`: module name → (path as written, deps as
/// written, in depmod's order: the last is loaded first).
type DepMap = HashMap<String, (String, Vec<String>)>;

fn parse_modules_dep(text: &str) -> DepMap {
    text.lines()
        .filter_map(|l| {
            let (path, deps) = l.split_once(':')?;
            let path = path.trim();
            (!path.is_empty()).then(|| {
                (
                    module_name(path),
                    (
                        path.to_string(),
                        deps.split_whitespace().map(str::to_string).collect(),
                    ),
                )
            })
        })
        .collect()
}

fn parse_builtin(text: &str) -> HashSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(module_name)
        .collect()
}

/// The load order for `names` and everything they need: deps first, each
/// module once. Builtins are skipped; anything else unknown is `Err(name)`.
fn closure_order(
    deps: &DepMap,
    builtin: &HashSet<String>,
    names: &[&str],
) -> Result<Vec<String>, String> {
    fn visit(name: &str, deps: &DepMap, seen: &mut HashSet<String>, out: &mut Vec<String>) {
        if !seen.insert(name.to_string()) {
            return;
        }
        if let Some((path, ds)) = deps.get(name) {
            for d in ds.iter().rev() {
                visit(&module_name(d), deps, seen, out);
            }
            out.push(path.clone());
        }
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for n in names {
        let name = module_name(n);
        if deps.contains_key(&name) {
            visit(&name, deps, &mut seen, &mut out);
        } else if !builtin.contains(&name) {
            return Err(n.to_string());
        }
    }
    Ok(out)
}

/// The modules to load for `names` (`-` and `_` alike), with all their
/// dependencies, from `<modules>/modules.dep`: absolute paths in load
/// order (dependencies first), no duplicates; modules listed in
/// `modules.builtin` are skipped. A name that is neither is an error.
/// Read each file with [`read_module`] (they may be compressed).
pub fn module_closure(modules: &Path, names: &[&str]) -> Result<Vec<PathBuf>, KernelError> {
    let dep_path = modules.join("modules.dep");
    let text = fs::read_to_string(&dep_path).map_err(|e| KernelError::ModulesIndex {
        path: modules.to_path_buf(),
        detail: format!(
            "cannot read {} ({e}); run `depmod -b <dir above lib/modules> <release>`",
            dep_path.display()
        ),
    })?;
    let deps = parse_modules_dep(&text);
    let builtin = fs::read_to_string(modules.join("modules.builtin"))
        .map(|t| parse_builtin(&t))
        .unwrap_or_default();
    let order =
        closure_order(&deps, &builtin, names).map_err(|name| KernelError::UnknownModule {
            name,
            modules: modules.to_path_buf(),
        })?;
    Ok(order.into_iter().map(|p| modules.join(p)).collect())
}

/// A module file's bytes, decompressed if it is `.ko.xz`, `.ko.zst` or
/// `.ko.gz` (the guest's busybox `insmod` may not decompress).
pub fn read_module(path: &Path) -> io::Result<Vec<u8>> {
    let data = fs::read(path)?;
    let name = path.to_string_lossy();
    let format = if name.ends_with(".xz") {
        Format::Xz
    } else if name.ends_with(".zst") {
        Format::Zstd
    } else if name.ends_with(".gz") {
        Format::Gzip
    } else {
        return Ok(data);
    };
    let mut out = Vec::new();
    let res = match format {
        Format::Xz => liblzma::read::XzDecoder::new(&data[..]).read_to_end(&mut out),
        Format::Zstd => ruzstd::decoding::StreamingDecoder::new(&data[..])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?
            .read_to_end(&mut out),
        _ => flate2::read::GzDecoder::new(&data[..]).read_to_end(&mut out),
    };
    res.map_err(|e| io::Error::new(e.kind(), format!("decompressing {}: {e}", path.display())))?;
    Ok(out)
}

/// The `.modinfo` `depends=` list of a module (ELF64 section parsing).
fn modinfo_depends(ko: &[u8]) -> Option<Vec<String>> {
    if !ko.starts_with(b"\x7fELF") || ko.get(4) != Some(&2) {
        return None;
    }
    let shoff = u64_at(ko, 0x28)? as usize;
    let shentsize = usize::from(u16_at(ko, 0x3a)?);
    let shnum = usize::from(u16_at(ko, 0x3c)?);
    let shstrndx = usize::from(u16_at(ko, 0x3e)?);
    let section = |i: usize| -> Option<(u32, &[u8])> {
        let sh = shoff + i * shentsize;
        let name = u32_at(ko, sh)?;
        let off = u64_at(ko, sh + 0x18)? as usize;
        let size = u64_at(ko, sh + 0x20)? as usize;
        Some((name, ko.get(off..off.checked_add(size)?)?))
    };
    let (_, strtab) = section(shstrndx)?;
    let modinfo = (0..shnum).find_map(|i| {
        let (name, data) = section(i)?;
        let n = strtab.get(name as usize..)?;
        n.starts_with(b".modinfo\0").then_some(data)
    })?;
    let deps = modinfo
        .split(|&b| b == 0)
        .find_map(|kv| kv.strip_prefix(b"depends="))
        .map(|v| {
            String::from_utf8_lossy(v)
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Some(deps)
}

/// Writes `<modules>/modules.dep` without kmod: each module's direct deps
/// from its `.modinfo` `depends=` (what modpost recorded), closed
/// transitively and listed as depmod does (the last is loaded first).
/// Only modules.dep: no aliases, no binary indexes.
fn write_modules_dep(modules: &Path) -> Result<(), KernelError> {
    let text = modules_dep_text(modules)?;
    let out = modules.join("modules.dep");
    fs::write(&out, text).map_err(KernelError::io("write", &out))
}

/// The text of [`write_modules_dep`].
fn modules_dep_text(modules: &Path) -> Result<String, KernelError> {
    let mut files = Vec::new();
    collect_modules(modules, modules, &mut files)
        .map_err(KernelError::io("list the modules in", modules))?;
    files.sort();
    let mut direct: HashMap<String, (String, Vec<String>)> = HashMap::new();
    for rel in &files {
        let data = read_module(&modules.join(rel))
            .map_err(KernelError::io("read the module", &modules.join(rel)))?;
        let deps = modinfo_depends(&data).ok_or_else(|| KernelError::ModulesIndex {
            path: modules.to_path_buf(),
            detail: format!("{rel} is not an x86_64 module; install kmod (`apt-get install kmod`) so depmod can index it"),
        })?;
        direct.insert(module_name(rel), (rel.clone(), deps));
    }
    let mut text = String::new();
    for rel in &files {
        // Load order of the deps (deepest first), then reversed as depmod writes it.
        let mut order = Vec::new();
        let mut seen = HashSet::from([module_name(rel)]);
        fn visit(
            n: &str,
            direct: &HashMap<String, (String, Vec<String>)>,
            seen: &mut HashSet<String>,
            order: &mut Vec<String>,
        ) {
            let Some((path, ds)) = direct.get(n) else {
                return;
            };
            for d in ds {
                if seen.insert(module_name(d)) {
                    visit(&module_name(d), direct, seen, order);
                }
            }
            order.push(path.clone());
        }
        if let Some((_, ds)) = direct.get(&module_name(rel)) {
            for d in ds {
                if seen.insert(module_name(d)) {
                    visit(&module_name(d), &direct, &mut seen, &mut order);
                }
            }
        }
        order.reverse();
        text.push_str(rel);
        text.push(':');
        for d in &order {
            text.push(' ');
            text.push_str(d);
        }
        text.push('\n');
    }
    Ok(text)
}

/// Relative paths of every `*.ko*` under `dir`.
fn collect_modules(root: &Path, dir: &Path, out: &mut Vec<String>) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_dir() {
            collect_modules(root, &p, out)?;
        } else if let Some(rel) = p.strip_prefix(root).ok().and_then(Path::to_str) {
            if rel.ends_with(".ko") || rel.contains(".ko.") {
                out.push(rel.to_string());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A fresh scratch directory under the system temp dir.
    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("lnst-kernel-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn module_sig_force_is_read_from_the_config() {
        let d = scratch("sigforce");
        fs::write(
            d.join("a"),
            "CONFIG_MODULE_SIG=y\n# CONFIG_MODULE_SIG_FORCE is not set\n",
        )
        .unwrap();
        fs::write(
            d.join("b"),
            "CONFIG_MODULE_SIG_FORCE=y\nCONFIG_MODULE_SIG_FORCE_X=n\n",
        )
        .unwrap();
        assert!(!config_module_sig_force(&[d.join("a")]));
        assert!(config_module_sig_force(&[d.join("missing"), d.join("b")]));
        assert!(!config_module_sig_force(&[d.join("missing")]));
        fs::remove_dir_all(&d).unwrap();
    }

    /// A module as `scripts/sign-file` leaves it: body, PKCS#7 blob,
    /// `struct module_signature` (blob length last, big endian), marker.
    fn signed(body: &[u8], sig: &[u8]) -> Vec<u8> {
        let mut v = body.to_vec();
        v.extend_from_slice(sig);
        v.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        v.extend_from_slice(&(sig.len() as u32).to_be_bytes());
        v.extend_from_slice(MODULE_SIG_MAGIC);
        v
    }

    #[test]
    fn unsigned_module_drops_a_well_formed_signature_only() {
        let body = b"\x7fELF\x02 module text".repeat(20);
        assert_eq!(unsigned_module(signed(&body, &[0x30; 600])), body);
        // No signature, a length past the start, a body that is not ELF,
        // a file shorter than the trailer: left as they are.
        assert_eq!(unsigned_module(body.clone()), body);
        let mut bad = signed(&body, &[0x30; 600]);
        let n = bad.len() - MODULE_SIG_MAGIC.len() - 4;
        bad[n..n + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(unsigned_module(bad.clone()), bad);
        let not_elf = signed(b"garbage", &[1; 10]);
        assert_eq!(unsigned_module(not_elf.clone()), not_elf);
        assert_eq!(unsigned_module(MODULE_SIG_MAGIC.to_vec()), MODULE_SIG_MAGIC);
    }

    #[test]
    fn config_hz_reads_the_first_config_that_sets_it() {
        let d = scratch("hz");
        fs::write(
            d.join("a"),
            "# CONFIG_HZ_1000 is not set\nCONFIG_HZ_250=y\n",
        )
        .unwrap();
        fs::write(d.join("b"), "CONFIG_HZ_250=y\nCONFIG_HZ=250\n").unwrap();
        fs::write(d.join("c"), "CONFIG_HZ=1000\n").unwrap();
        let p = |n: &str| d.join(n);
        assert_eq!(
            config_hz(&[p("missing"), p("a"), p("b"), p("c")]),
            Some(250)
        );
        assert_eq!(config_hz(&[p("c"), p("b")]), Some(1000));
        assert_eq!(config_hz(&[p("a"), p("missing")]), None);
        let _ = fs::remove_dir_all(&d);
    }

    /// A minimal ELF64 x86_64 file: header, one PT_NOTE program header,
    /// the note, and padding. With `pvh`, the note is Xen type 18.
    fn tiny_elf(pvh: bool, banner: &str) -> Vec<u8> {
        let mut e = vec![0u8; 64];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2; // 64-bit
        e[5] = 1; // little endian
        e[0x12..0x14].copy_from_slice(&62u16.to_le_bytes());
        e[0x20..0x28].copy_from_slice(&64u64.to_le_bytes()); // phoff
        e[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        e[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        let mut note = Vec::new();
        note.extend_from_slice(&4u32.to_le_bytes());
        note.extend_from_slice(&4u32.to_le_bytes());
        note.extend_from_slice(&(if pvh { 18u32 } else { 1 }).to_le_bytes());
        note.extend_from_slice(b"Xen\0");
        note.extend_from_slice(&0x100_0000u32.to_le_bytes());
        let mut ph = vec![0u8; 56];
        ph[..4].copy_from_slice(&4u32.to_le_bytes());
        ph[8..16].copy_from_slice(&120u64.to_le_bytes());
        ph[0x20..0x28].copy_from_slice(&(note.len() as u64).to_le_bytes());
        e.extend_from_slice(&ph);
        e.extend_from_slice(&note);
        e.extend_from_slice(banner.as_bytes());
        e.extend_from_slice(&[0xcc; 300]);
        e
    }

    /// A bzImage-shaped buffer: boot header with the version string and
    /// `payload` where the header says, followed by the 4-byte size.
    fn tiny_bzimage(version: &str, payload: &[u8], plain_len: usize) -> Vec<u8> {
        let setup_sects = 2u8;
        let mut b = vec![0u8; (usize::from(setup_sects) + 1) * 512];
        b[0x1f1] = setup_sects;
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        b[0x236..0x238].copy_from_slice(&1u16.to_le_bytes()); // XLF_KERNEL_64
        let vo = 0x300usize;
        b[0x20e..0x210].copy_from_slice(&((vo - 0x200) as u16).to_le_bytes());
        b[vo..vo + version.len()].copy_from_slice(version.as_bytes());
        let off = 0x40u32; // payload offset inside the protected-mode part
        b[0x248..0x24c].copy_from_slice(&off.to_le_bytes());
        b[0x24c..0x250].copy_from_slice(&((payload.len() + 4) as u32).to_le_bytes());
        b.extend_from_slice(&[0x90; 0x40]);
        b.extend_from_slice(payload);
        b.extend_from_slice(&(plain_len as u32).to_le_bytes());
        b.extend_from_slice(&[0u8; 64]);
        b
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn xz(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        liblzma::read::XzEncoder::new(data, 1)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    const DEP: &str = "\
kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko
kernel/net/9p/9pnet.ko:
kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/fs/netfs/netfs.ko:
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/sound/snd-hda-intel.ko.xz:
";

    #[test]
    fn closure_is_in_load_order_without_duplicates() {
        let deps = parse_modules_dep(DEP);
        let order = closure_order(
            &deps,
            &HashSet::new(),
            &["9p", "9pnet-virtio", "virtio_net"],
        )
        .unwrap();
        assert_eq!(
            order,
            [
                "kernel/fs/netfs/netfs.ko",
                "kernel/fs/fscache/fscache.ko",
                "kernel/net/9p/9pnet.ko",
                "kernel/fs/9p/9p.ko",
                "kernel/drivers/virtio/virtio.ko",
                "kernel/drivers/virtio/virtio_ring.ko",
                "kernel/net/9p/9pnet_virtio.ko",
                "kernel/net/core/failover.ko",
                "kernel/drivers/net/net_failover.ko",
                "kernel/drivers/net/virtio_net.ko",
            ]
        );
        // Every module comes after everything it depends on.
        for (i, p) in order.iter().enumerate() {
            for d in &deps[&module_name(p)].1 {
                assert!(order[..i].contains(d), "{d} must load before {p}");
            }
        }
    }

    #[test]
    fn closure_accepts_dashes_and_underscores_and_compressed_names() {
        let deps = parse_modules_dep(DEP);
        assert_eq!(
            closure_order(&deps, &HashSet::new(), &["snd_hda_intel"]).unwrap(),
            ["kernel/sound/snd-hda-intel.ko.xz"]
        );
        assert_eq!(
            closure_order(&deps, &HashSet::new(), &["snd-hda-intel"]).unwrap(),
            ["kernel/sound/snd-hda-intel.ko.xz"]
        );
        assert_eq!(
            module_name("kernel/sound/snd-hda-intel.ko.zst"),
            "snd_hda_intel"
        );
    }

    #[test]
    fn closure_skips_builtins_and_rejects_unknown_modules() {
        let deps = parse_modules_dep(DEP);
        let builtin =
            parse_builtin("kernel/fs/overlayfs/overlay.ko\nkernel/drivers/block/virtio_blk.ko\n");
        assert_eq!(
            closure_order(&deps, &builtin, &["overlay", "virtio-blk", "9pnet"]).unwrap(),
            ["kernel/net/9p/9pnet.ko"]
        );
        assert_eq!(
            closure_order(&deps, &builtin, &["9pnet", "nosuch"]),
            Err("nosuch".to_string())
        );
    }

    #[test]
    fn module_closure_returns_absolute_paths_and_names_unknown_modules() {
        let d = scratch("closure");
        fs::write(d.join("modules.dep"), DEP).unwrap();
        fs::write(
            d.join("modules.builtin"),
            "kernel/fs/overlayfs/overlay.ko\n",
        )
        .unwrap();
        let got = module_closure(&d, &["overlay", "9pnet"]).unwrap();
        assert_eq!(got, [d.join("kernel/net/9p/9pnet.ko")]);
        let err = module_closure(&d, &["bonding"]).unwrap_err();
        assert!(
            matches!(&err, KernelError::UnknownModule { name, .. } if name == "bonding"),
            "{err}"
        );
        assert!(err.to_string().contains("modules.dep"), "{err}");
        let err = module_closure(&d.join("missing"), &["9pnet"]).unwrap_err();
        assert!(err.to_string().contains("depmod"), "{err}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn read_module_decompresses_by_extension() {
        let d = scratch("readmod");
        let body = b"\x7fELF module body".repeat(100);
        fs::write(d.join("a.ko"), &body).unwrap();
        fs::write(d.join("b.ko.xz"), xz(&body)).unwrap();
        fs::write(d.join("c.ko.gz"), gzip(&body)).unwrap();
        for f in ["a.ko", "b.ko.xz", "c.ko.gz"] {
            assert_eq!(read_module(&d.join(f)).unwrap(), body, "{f}");
        }
        fs::write(d.join("bad.ko.xz"), b"not xz").unwrap();
        assert!(read_module(&d.join("bad.ko.xz")).is_err());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn parses_apt_cache_depends() {
        let out = "linux-image-amd64\n  Depends: linux-image-6.1.0-57-amd64\n";
        assert_eq!(
            parse_depends(out).as_deref(),
            Some("linux-image-6.1.0-57-amd64")
        );
        assert_eq!(
            parse_depends("linux-image-amd64\n  Depends: <linux-image-6.1.0-9-amd64>\n").as_deref(),
            Some("linux-image-6.1.0-9-amd64")
        );
        assert_eq!(parse_depends("foo\n  Depends: libc6\n"), None);
    }

    #[test]
    fn versions_get_a_flavour_and_sort_numerically() {
        assert_eq!(debian_package("6.1.0-28"), "linux-image-6.1.0-28-amd64");
        assert_eq!(
            debian_package("6.1.0-28-amd64"),
            "linux-image-6.1.0-28-amd64"
        );
        assert_eq!(
            debian_package("6.1.0-28-cloud-amd64"),
            "linux-image-6.1.0-28-cloud-amd64"
        );
        assert_eq!(
            debian_package("linux-image-6.1.0-28"),
            "linux-image-6.1.0-28-amd64"
        );
        assert_eq!(
            debian_package("6.12.118+deb12-cloud"),
            "linux-image-6.12.118+deb12-cloud-amd64"
        );
        assert_eq!(
            debian_package("6.12.118+deb12"),
            "linux-image-6.12.118+deb12-amd64"
        );
        assert!(version_cmp("6.1.0-57-amd64", "6.1.0-9-amd64").is_gt());
        assert!(version_cmp("6.12.0-1-amd64", "6.1.0-57-amd64").is_gt());
    }

    #[test]
    fn bzimage_header_gives_release_and_payload() {
        let elf = tiny_elf(true, "");
        let payload = gzip(&elf);
        let bz = tiny_bzimage(
            "6.1.0-57-amd64 (debian-kernel@lists.debian.org) #1 SMP",
            &payload,
            elf.len(),
        );
        assert_eq!(release_of(&bz).as_deref(), Some("6.1.0-57-amd64"));
        assert_eq!(classify(&bz), Ok(ImageKind::BzImage));
        assert_eq!(
            header_payload(&bz).map(<[u8]>::len),
            Some(payload.len() + 4)
        );
        assert_eq!(extract_vmlinux(&bz), Some(elf));
    }

    #[test]
    fn extracts_xz_payload_with_x86_filter_header() {
        let elf = tiny_elf(true, "");
        let bz = tiny_bzimage("6.1.0-1-amd64 #1", &xz(&elf), elf.len());
        let v = extract_vmlinux(&bz).unwrap();
        assert_eq!(v, elf);
        assert!(has_pvh_note(&v));
    }

    #[test]
    fn scanning_finds_a_payload_without_a_usable_header() {
        let elf = tiny_elf(true, "");
        for payload in [gzip(&elf), xz(&elf)] {
            let mut data = vec![0x5a; 1000];
            data.extend_from_slice(b"BZh9 junk \x1f\x8b\x08 junk ");
            data.extend_from_slice(&payload);
            data.extend_from_slice(&[0u8; 100]);
            assert_eq!(extract_vmlinux(&data), Some(elf.clone()));
        }
        assert_eq!(extract_vmlinux(&[0u8; 4096]), None);
    }

    #[test]
    fn magics_are_found_in_file_order() {
        let mut data = vec![0u8; 64];
        data[10..13].copy_from_slice(b"\x1f\x8b\x08");
        data[30..36].copy_from_slice(b"\xfd7zXZ\0");
        data[50..54].copy_from_slice(b"\x28\xb5\x2f\xfd");
        assert_eq!(
            scan_magics(&data, 8),
            [(10, Format::Gzip), (30, Format::Xz), (50, Format::Zstd)]
        );
        assert_eq!(format_at(b"\x02\x21\x4c\x18...."), Some(Format::Lz4));
    }

    #[test]
    fn lz4_legacy_frames_decode() {
        // One block: a single literal-only sequence (token 0xA0, 10 bytes).
        let mut f = vec![0x02, 0x21, 0x4c, 0x18];
        f.extend_from_slice(&11u32.to_le_bytes());
        f.push(0xa0);
        f.extend_from_slice(b"0123456789");
        f.extend_from_slice(&1234u32.to_le_bytes()); // a trailing size field
        assert_eq!(
            decompress(Format::Lz4, &f, 1 << 20).as_deref(),
            Some(&b"0123456789"[..])
        );
    }

    #[test]
    fn elf_banner_gives_release_and_pvh_note_is_seen() {
        let elf = tiny_elf(
            true,
            "Linux version %s\0Linux version 6.8.0-rc1+ (me@host) #3\0",
        );
        assert_eq!(release_of(&elf).as_deref(), Some("6.8.0-rc1+"));
        assert!(has_pvh_note(&elf));
        assert!(!has_pvh_note(&tiny_elf(false, "")));
        assert!(elf_complete(&elf));
        assert!(!elf_complete(&elf[..40]));
    }

    #[test]
    fn other_architectures_and_non_kernels_are_named() {
        let mut arm = vec![0u8; 0x40];
        arm[0x38..0x3c].copy_from_slice(b"ARM\x64");
        assert!(matches!(classify(&arm), Err(Ok(a)) if a.contains("arm64")));
        let mut elf = tiny_elf(true, "");
        elf[0x12..0x14].copy_from_slice(&183u16.to_le_bytes());
        assert!(matches!(classify(&elf), Err(Ok(a)) if a.contains("aarch64")));
        assert!(matches!(classify(b"#!/bin/sh\n"), Err(Err(_))));
        let mut bz32 = tiny_bzimage("4.0 #1", b"", 0);
        bz32[0x236] = 0;
        assert!(matches!(classify(&bz32), Err(Ok(a)) if a.contains("32-bit")));
    }

    #[test]
    fn user_paths_that_are_not_kernels_say_what_was_expected() {
        let d = scratch("user");
        let cache = d.join("cache");
        let mut quiet = |_: &str| {};
        let err = resolve(Some("/nonexistent/bzImage"), &cache, &mut quiet).unwrap_err();
        assert!(matches!(err, KernelError::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/bzImage"), "{err}");
        let text = d.join("notes.txt");
        fs::write(&text, "hello").unwrap();
        let err = resolve(Some(text.to_str().unwrap()), &cache, &mut quiet).unwrap_err();
        assert!(matches!(err, KernelError::NotAKernel { .. }), "{err}");
        let err = resolve(Some(d.to_str().unwrap()), &cache, &mut quiet).unwrap_err();
        assert!(err.to_string().contains("arch/x86/boot/bzImage"), "{err}");
        let novm = d.join("vmlinux-nopvh");
        fs::write(&novm, tiny_elf(false, "Linux version 6.9.0 #1")).unwrap();
        let err = resolve(Some(novm.to_str().unwrap()), &cache, &mut quiet).unwrap_err();
        assert!(matches!(err, KernelError::NoPvh { .. }), "{err}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_user_bzimage_is_extracted_once_and_finds_installed_modules() {
        let d = scratch("userbz");
        let cache = d.join("cache");
        let elf = tiny_elf(true, "");
        fs::write(
            d.join("bzImage"),
            tiny_bzimage("6.9.0-lnst #1", &xz(&elf), elf.len()),
        )
        .unwrap();
        let mods = d.join("lib/modules/6.9.0-lnst");
        fs::create_dir_all(&mods).unwrap();
        fs::write(mods.join("modules.dep"), "").unwrap();
        let mut lines = Vec::new();
        let k = resolve(
            Some(d.join("bzImage").to_str().unwrap()),
            &cache,
            &mut |l| lines.push(l.to_string()),
        )
        .unwrap();
        assert_eq!(k.release, "6.9.0-lnst");
        assert!(
            k.image.starts_with(cache.join("user")),
            "{}",
            k.image.display()
        );
        assert_eq!(fs::read(&k.image).unwrap(), elf);
        assert_eq!(k.modules.as_deref(), Some(mods.as_path()));
        let again = resolve(
            Some(d.join("bzImage").to_str().unwrap()),
            &cache,
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(again, k);
        // A build tree, given as the tree or as its bzImage, finds the
        // modules installed into it (and indexes them: no modules.dep yet).
        let boot = d.join("tree/arch/x86/boot");
        fs::create_dir_all(&boot).unwrap();
        fs::copy(d.join("bzImage"), boot.join("bzImage")).unwrap();
        fs::create_dir_all(d.join("tree/lib/modules/6.9.0-lnst")).unwrap();
        for spec in [d.join("tree"), boot.join("bzImage")] {
            let k = resolve(Some(spec.to_str().unwrap()), &cache, &mut |_| {}).unwrap();
            assert_eq!(
                k.modules,
                Some(d.join("tree/lib/modules/6.9.0-lnst")),
                "{}",
                spec.display()
            );
            assert!(d.join("tree/lib/modules/6.9.0-lnst/modules.dep").is_file());
        }
        // Without installed modules: none, and progress says where it looked.
        fs::remove_dir_all(d.join("tree/lib")).unwrap();
        let mut lines = Vec::new();
        let k = resolve(Some(d.join("tree").to_str().unwrap()), &cache, &mut |l| {
            lines.push(l.to_string())
        })
        .unwrap();
        assert_eq!(k.modules, None);
        assert!(
            lines
                .iter()
                .any(|l| l.contains("no modules for 6.9.0-lnst")),
            "{lines:?}"
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn writes_modules_dep_from_modinfo() {
        /// A module ELF with only a `.modinfo` section.
        fn ko(depends: &str) -> Vec<u8> {
            let modinfo = format!("license=GPL\0depends={depends}\0name=x\0");
            let shstr = b"\0.modinfo\0.shstrtab\0";
            let mut e = vec![0u8; 64];
            e[..4].copy_from_slice(b"\x7fELF");
            e[4] = 2;
            let modinfo_off = e.len();
            e.extend_from_slice(modinfo.as_bytes());
            let shstr_off = e.len();
            e.extend_from_slice(shstr);
            let shoff = e.len();
            let sh = |name: u32, off: usize, size: usize| {
                let mut s = vec![0u8; 64];
                s[..4].copy_from_slice(&name.to_le_bytes());
                s[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
                s[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
                s
            };
            e.extend(sh(0, 0, 0));
            e.extend(sh(1, modinfo_off, modinfo.len()));
            e.extend(sh(10, shstr_off, shstr.len()));
            e[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
            e[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
            e[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
            e[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
            e
        }
        let d = scratch("modinfo");
        for (path, deps) in [
            ("fs/a.ko", "b,c"),
            ("fs/b.ko", "c"),
            ("net/c.ko", ""),
            ("net/d-e.ko", "a"),
        ] {
            fs::create_dir_all(d.join(path).parent().unwrap()).unwrap();
            fs::write(d.join(path), ko(deps)).unwrap();
        }
        write_modules_dep(&d).unwrap();
        let text = fs::read_to_string(d.join("modules.dep")).unwrap();
        assert_eq!(text, "fs/a.ko: fs/b.ko net/c.ko\nfs/b.ko: net/c.ko\nnet/c.ko:\nnet/d-e.ko: fs/a.ko fs/b.ko net/c.ko\n");
        let got = module_closure(&d, &["d_e"]).unwrap();
        assert_eq!(
            got,
            ["net/c.ko", "fs/b.ko", "fs/a.ko", "net/d-e.ko"].map(|p| d.join(p))
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn newest_complete_cache_entry_wins() {
        let cache = scratch("newest");
        let entry = |name: &str, release: &str, marker: bool| {
            let e = cache.join(name);
            fs::create_dir_all(e.join("lib/modules").join(release)).unwrap();
            fs::write(e.join("lib/modules").join(release).join("modules.dep"), "").unwrap();
            fs::write(e.join("vmlinux"), b"\x7fELF").unwrap();
            if marker {
                let m = Marker {
                    package: name.trim_end_matches(".partial").into(),
                    release: release.into(),
                    image: "vmlinux".into(),
                    modules: Some(format!("lib/modules/{release}")),
                    index: Some("depmod".into()),
                    created: 0,
                };
                write_marker(&e, &m).unwrap();
            }
        };
        entry("linux-image-6.1.0-9-amd64", "6.1.0-9-amd64", true);
        entry("linux-image-6.1.0-57-amd64", "6.1.0-57-amd64", true);
        entry("linux-image-6.1.0-60-amd64", "6.1.0-60-amd64", false);
        entry("linux-image-6.1.0-61-amd64.partial", "6.1.0-61-amd64", true);
        let k = newest_cached(&cache).unwrap().unwrap();
        assert_eq!(k.release, "6.1.0-57-amd64");
        assert_eq!(k.image, cache.join("linux-image-6.1.0-57-amd64/vmlinux"));
        assert!(
            k.source
                .starts_with("Debian linux-image-6.1.0-57-amd64 (cached in "),
            "{}",
            k.source
        );
        assert_eq!(
            cached(&cache, "linux-image-6.1.0-9-amd64")
                .unwrap()
                .unwrap()
                .release,
            "6.1.0-9-amd64"
        );
        assert_eq!(cached(&cache, "linux-image-6.1.0-60-amd64").unwrap(), None);
        // A cached version resolves without asking apt.
        assert_eq!(
            resolve(Some("6.1.0-9"), &cache, &mut |_| {})
                .unwrap()
                .release,
            "6.1.0-9-amd64"
        );
        fs::remove_dir_all(&cache).unwrap();
    }

    /// The built-in modules.dep generator agrees with depmod on every
    /// module's dependency set (when depmod indexed the entry).
    fn builtin_index_matches_depmod(modules: &Path) {
        let marker = read_marker(modules.ancestors().nth(3).unwrap()).unwrap();
        if marker.index.as_deref() != Some("depmod") {
            println!("SKIP: depmod not installed, built-in modules.dep not compared");
            return;
        }
        let t = Instant::now();
        let ours = parse_modules_dep(&modules_dep_text(modules).unwrap());
        let theirs = parse_modules_dep(&fs::read_to_string(modules.join("modules.dep")).unwrap());
        println!(
            "built-in modules.dep for {} modules in {:.2} s",
            ours.len(),
            t.elapsed().as_secs_f64()
        );
        assert_eq!(ours.len(), theirs.len());
        for (name, (path, deps)) in &theirs {
            let (p, d) = &ours[name];
            assert_eq!(p, path);
            let set = |v: &Vec<String>| v.iter().cloned().collect::<HashSet<_>>();
            assert_eq!(set(d), set(deps), "deps of {name}");
        }
    }

    /// Fetches the Debian version in `$LNST_TEST_KERNEL` (e.g.
    /// `6.12.118+deb12-cloud`) into a scratch cache, as `--kernel VERSION`.
    #[test]
    #[ignore]
    fn live_resolve_debian_version() {
        let Some(version) = std::env::var("LNST_TEST_KERNEL").ok() else {
            println!("SKIP: set LNST_TEST_KERNEL to a Debian kernel version");
            return;
        };
        let cache = scratch("version");
        let t = Instant::now();
        let k = resolve(Some(&version), &cache, &mut |l| {
            println!("progress [{:.1} s]: {l}", t.elapsed().as_secs_f64())
        })
        .unwrap();
        println!("{k:?}");
        assert!(version.starts_with(k.release.trim_end_matches("-amd64")));
        assert!(has_pvh_note(&fs::read(&k.image).unwrap()));
        let modules = k.modules.unwrap();
        for m in module_closure(&modules, &["virtio_net", "virtio_pci", "overlay"]).unwrap() {
            assert!(
                read_module(&m).unwrap().starts_with(b"\x7fELF"),
                "{}",
                m.display()
            );
        }
        builtin_index_matches_depmod(&modules);
        if std::env::var_os("LNST_TEST_KEEP").is_some() {
            println!("kept {}", cache.display());
        } else {
            fs::remove_dir_all(&cache).unwrap();
        }
    }

    /// Every payload format on a real vmlinux: builds bzImage-shaped files
    /// with the compressors the kernel's Makefile uses and extracts them.
    /// Slow (~1 min); run with `--ignored` after the live test.
    #[test]
    #[ignore]
    fn every_format_on_the_real_vmlinux() {
        let Some(k) = newest_cached(&cache_root()).unwrap() else {
            println!(
                "SKIP: no cached Debian kernel (run live_resolve_current_debian_kernel first)"
            );
            return;
        };
        let elf = fs::read(&k.image).unwrap();
        let formats: [(&str, &str, &[&str]); 6] = [
            ("gzip", "gzip", &["-1", "-c"]),
            (
                "xz",
                "xz",
                &["--check=crc32", "--x86", "--lzma2=preset=0", "-c"],
            ),
            ("zstd", "zstd", &["-3", "--long=27", "-c", "-q"]),
            ("lz4", "lz4", &["-l", "-1", "-c", "-q"]),
            // As the kernel's `lzma -9`: a 64 MiB dictionary, which the magic assumes.
            (
                "lzma",
                "xz",
                &["--format=lzma", "--lzma1=preset=0,dict=64MiB", "-c"],
            ),
            ("bzip2", "bzip2", &["-1", "-c"]),
        ];
        for (label, tool, args) in formats {
            if find_tool(tool).is_none() {
                println!("SKIP {label}: {tool} not installed");
                continue;
            }
            let mut child = Command::new(tool)
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            let input = elf.clone();
            let writer = std::thread::spawn(move || stdin.write_all(&input));
            let out = child.wait_with_output().unwrap();
            writer.join().unwrap().unwrap();
            assert!(out.status.success(), "{label}");
            let bz = tiny_bzimage("6.1.0-57-amd64 #1", &out.stdout, elf.len());
            let t = Instant::now();
            let got = extract_vmlinux(&bz);
            println!(
                "{label}: {} bytes compressed, extracted in {:.2} s",
                out.stdout.len(),
                t.elapsed().as_secs_f64()
            );
            assert!(
                got.as_deref() == Some(&elf[..]),
                "{label} payload not extracted"
            );
            // And by scanning, without the header's help.
            let mut bare = vec![0u8; 4096];
            bare.extend_from_slice(&out.stdout);
            assert!(
                extract_vmlinux(&bare).as_deref() == Some(&elf[..]),
                "{label} payload not found by scanning"
            );
        }
    }

    /// Fetches Debian's current kernel for real (~70 MB once; later runs
    /// reuse the shared cache) and checks the result from outside.
    #[test]
    fn live_resolve_current_debian_kernel() {
        if find_tool("apt-get").is_none()
            || find_tool("dpkg-deb").is_none()
            || find_tool("apt-cache").is_none()
        {
            println!("SKIP: apt-get, apt-cache or dpkg-deb not installed");
            return;
        }
        let cache = cache_root();
        let t = Instant::now();
        let k = match resolve(None, &cache, &mut |l| {
            println!("progress [{:.1} s]: {l}", t.elapsed().as_secs_f64())
        }) {
            Ok(k) => k,
            Err(e @ KernelError::NoAptLists { .. }) => {
                println!("SKIP: {e}");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        let first = t.elapsed();
        let t = Instant::now();
        let again = resolve(None, &cache, &mut |l| println!("progress: {l}")).unwrap();
        let cached = t.elapsed();
        println!(
            "resolve: {:.2} s; cached resolve: {:.1} ms; {}",
            first.as_secs_f64(),
            cached.as_secs_f64() * 1e3,
            k.source
        );
        assert_eq!(again, k);

        let mut head = [0u8; 4];
        File::open(&k.image).unwrap().read_exact(&mut head).unwrap();
        assert_eq!(
            &head,
            b"\x7fELF",
            "{} is not the extracted vmlinux",
            k.image.display()
        );
        let modules = k.modules.clone().unwrap();
        assert_eq!(
            modules.file_name().unwrap().to_str(),
            Some(k.release.as_str())
        );
        assert_eq!(modules.parent().unwrap().file_name().unwrap(), "modules");
        assert!(modules.join("modules.dep").is_file());
        let image = fs::read(&k.image).unwrap();
        assert_eq!(release_of(&image).as_deref(), Some(k.release.as_str()));
        assert!(has_pvh_note(&image));

        let names = [
            "9p",
            "9pnet_virtio",
            "overlay",
            "virtio_net",
            "virtio_console",
        ];
        let closure = module_closure(&modules, &names).unwrap();
        for p in &closure {
            assert!(p.is_absolute() && p.is_file(), "{}", p.display());
            assert!(read_module(p).unwrap().starts_with(b"\x7fELF"));
        }
        let stems: Vec<String> = closure
            .iter()
            .map(|p| module_name(&p.to_string_lossy()))
            .collect();
        println!("closure: {}", stems.join(" "));
        for n in names {
            assert!(
                stems.iter().any(|s| s == n)
                    || n == "overlay" && !stems.iter().any(|s| s == "overlay"),
                "{n} missing"
            );
        }
        assert!(
            stems.iter().any(|s| s == "overlay"),
            "overlay is a module in Debian's kernel"
        );
        let pos = |n: &str| stems.iter().position(|s| s == n).unwrap();
        assert!(pos("9pnet") < pos("9p") && pos("9pnet") < pos("9pnet_virtio"));

        // A version apt does not know lists real ones.
        match resolve(Some("0.0.1-1"), &cache, &mut |_| {}) {
            Err(KernelError::UnknownVersion { package, available }) => {
                assert_eq!(package, "linux-image-0.0.1-1-amd64");
                assert_eq!(
                    available.first(),
                    Some(&k.release),
                    "the default comes first"
                );
                assert!(
                    available
                        .iter()
                        .all(|v| v.ends_with("-amd64") && !v.contains("cloud")),
                    "{available:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        builtin_index_matches_depmod(&modules);
        // The cached bzImage as a user kernel gives the same release.
        let bz = modules
            .ancestors()
            .nth(3)
            .unwrap()
            .join("boot")
            .join(format!("vmlinuz-{}", k.release));
        let user = resolve(
            Some(bz.to_str().unwrap()),
            &std::env::temp_dir().join(format!("lnst-kernel-live-user-{}", std::process::id())),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(user.release, k.release);
        assert!(has_pvh_note(&fs::read(&user.image).unwrap()));
        // The extracted ELF vmlinux as a user kernel: booted as is, release
        // from its banner.
        let elf = resolve(Some(k.image.to_str().unwrap()), &cache, &mut |_| {}).unwrap();
        assert_eq!(
            (elf.release.as_str(), &elf.image),
            (k.release.as_str(), &k.image)
        );
        let _ = fs::remove_dir_all(
            std::env::temp_dir().join(format!("lnst-kernel-live-user-{}", std::process::id())),
        );
    }
}
