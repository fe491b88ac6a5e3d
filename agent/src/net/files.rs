//! Files on the host: `read`/`write` (small files such as under /proc and
//! /sys, read and written from inside the namespace, old content restored)
//! and the chunks of `send_file`/`recv_file` (`file_put`/`file_get`, in
//! the agent's own mount namespace, sizes bounded by [`MAX_CHUNK`]).
//!
//! Only regular files are read or written, and every open is non-blocking
//! (`O_NONBLOCK`, then `fstat`): a FIFO, socket or device at the path is
//! refused instead of blocking a thread until some peer appears, and so is
//! a FIFO met by an undo at start-up. A symlink at the path is followed to
//! the file it names, and that file is what is recorded and restored: the
//! link itself is never touched, so undo leaves exactly what was there.
//! All file work runs on the blocking pool or a namespace thread, never on
//! an async worker.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use lnst_common::WireError;

use super::error::io_error;
use super::nsthread::run_in;
use super::{ns_label, NetUndo, Nets, Recorder};

/// Largest chunk of `file_put`/`file_get`.
pub const MAX_CHUNK: usize = 1 << 20;
/// Largest file `file_read` returns and largest old content kept to restore.
pub const MAX_READ: u64 = 16 << 20;
/// Symlinks followed before giving up (the kernel's `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// What a file type is called in messages.
fn type_name(t: std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_symlink() {
        "symlink"
    } else {
        "regular file"
    }
}

/// `path` with symlinks in its last component followed (`readlink -m`
/// for the last component only): the file a write to `path` changes.
pub(crate) fn resolve(path: &str) -> Result<PathBuf, WireError> {
    let mut p = PathBuf::from(path);
    for _ in 0..MAX_LINKS {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let t = std::fs::read_link(&p)
                    .map_err(|e| io_error(e, format!("readlink {}", p.display())))?;
                p = if t.is_absolute() {
                    t
                } else {
                    p.parent().unwrap_or(Path::new("/")).join(t)
                };
            }
            _ => return Ok(p),
        }
    }
    Err(WireError::invalid(format!(
        "{path}: too many levels of symbolic links"
    )))
}

/// Opens `path` with `opts` plus `O_NONBLOCK | O_NOCTTY` and refuses it
/// unless it is a regular file. `what` prefixes messages.
fn open_regular(path: &Path, opts: &mut OpenOptions, what: &str) -> Result<File, WireError> {
    let ctx = || format!("{what} {}", path.display());
    if let Ok(m) = std::fs::symlink_metadata(path) {
        // The common refusal without opening at all (opening a FIFO for
        // writing with no reader fails with a less helpful ENXIO).
        if !m.file_type().is_file() && !m.file_type().is_symlink() {
            return Err(not_regular(path, m.file_type(), what));
        }
    }
    let f = opts
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| io_error(e, ctx()))?;
    let m = f.metadata().map_err(|e| io_error(e, ctx()))?;
    if !m.file_type().is_file() {
        return Err(not_regular(path, m.file_type(), what));
    }
    Ok(f)
}

fn not_regular(path: &Path, t: std::fs::FileType, what: &str) -> WireError {
    WireError::invalid(format!(
        "{what} {}: is a {}, not a regular file; only regular files are read, written or restored",
        path.display(),
        type_name(t)
    ))
}

fn read_bounded(path: &Path, what: &str) -> Result<Vec<u8>, WireError> {
    let f = open_regular(path, OpenOptions::new().read(true), what)?;
    let mut buf = Vec::new();
    f.take(MAX_READ + 1)
        .read_to_end(&mut buf)
        .map_err(|e| io_error(e, format!("{what} {}", path.display())))?;
    if buf.len() as u64 > MAX_READ {
        return Err(WireError::invalid(format!(
            "{what} {}: larger than {MAX_READ} bytes (use recv_file)",
            path.display()
        )));
    }
    Ok(buf)
}

/// The old content of `path` to restore later (`None`: it does not exist).
fn old_content(path: &Path, what: &str) -> Result<Option<Vec<u8>>, WireError> {
    match read_bounded(path, what) {
        Ok(d) => Ok(Some(d)),
        Err(e) if e.kind == lnst_common::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn check_path(path: &str) -> Result<(), WireError> {
    if !path.starts_with('/') {
        return Err(WireError::invalid(format!("path {path:?} is not absolute")));
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, WireError> + Send + 'static,
) -> Result<T, WireError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| WireError::internal(format!("file task failed: {e}")))?
}

/// `cat PATH` in `netns`.
pub async fn file_read(
    _nets: &Nets,
    netns: Option<&str>,
    path: &str,
) -> Result<Vec<u8>, WireError> {
    check_path(path)?;
    let p = path.to_string();
    let what = format!("read in {}:", ns_label(netns));
    run_in(netns, move || read_bounded(Path::new(&p), &what)).await
}

/// `echo VALUE > PATH` in `netns`; records the old content (or that the
/// file did not exist) of the file the path names (through a symlink).
pub async fn file_write(
    _nets: &Nets,
    rec: &dyn Recorder,
    netns: Option<&str>,
    path: &str,
    data: &[u8],
) -> Result<(), WireError> {
    check_path(path)?;
    let p = path.to_string();
    let what = format!("write in {}:", ns_label(netns));
    let (target, old) = run_in(netns, move || {
        let target = resolve(&p)?;
        let old = old_content(&target, &what)?;
        Ok((target, old))
    })
    .await?;
    let target = target.to_string_lossy().into_owned();
    let undo = NetUndo::RestoreFile {
        netns: netns.map(str::to_string),
        path: target.clone(),
        data: old,
    };
    rec.record(undo.clone())?;
    let r = apply_write(netns, &target, Some(data)).await;
    if r.is_err() {
        rec.cancel(&undo);
    }
    r
}

/// Writes `data` to `path` (`None`: removes it), from inside `netns`.
/// Only a regular file (or nothing) at `path` is written.
pub(crate) async fn apply_write(
    netns: Option<&str>,
    path: &str,
    data: Option<&[u8]>,
) -> Result<(), WireError> {
    let (p, d) = (path.to_string(), data.map(|d| d.to_vec()));
    let label = ns_label(netns);
    run_in(netns, move || match d {
        Some(d) => {
            // No O_TRUNC games for /proc and /sys: open for write, write once.
            let what = format!("write in {label}:");
            let mut f = open_regular(
                Path::new(&p),
                OpenOptions::new().write(true).create(true).truncate(true),
                &what,
            )?;
            f.write_all(&d)
                .map_err(|e| io_error(e, format!("{what} {p}")))
        }
        None => match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(e, format!("rm {p}"))),
        },
    })
    .await
}

/// One chunk of `send_file`: the chunk at `offset` 0 creates or truncates
/// the file (recording its old content, or that it did not exist); later
/// chunks append at `offset`, which must be the current size.
pub async fn file_put(
    _nets: &Nets,
    rec: &dyn Recorder,
    path: &str,
    offset: u64,
    data: &[u8],
    _last: bool,
) -> Result<(), WireError> {
    check_path(path)?;
    if data.len() > MAX_CHUNK {
        return Err(WireError::invalid(format!(
            "send_file chunk of {} bytes exceeds {MAX_CHUNK}",
            data.len()
        )));
    }
    let p = path.to_string();
    let target = blocking(move || resolve(&p)).await?;
    let mut recorded = None;
    if offset == 0 {
        let t = target.clone();
        let old = blocking(move || {
            if let Ok(m) = std::fs::metadata(&t) {
                if !m.file_type().is_file() {
                    return Err(not_regular(&t, m.file_type(), "send_file:"));
                }
                if m.len() > MAX_READ {
                    return Err(WireError::invalid(format!(
                        "send_file: refusing to overwrite {} ({} bytes): too large to keep for restoring",
                        t.display(),
                        m.len()
                    )));
                }
            }
            if let Some(parent) = t.parent() {
                if !parent.is_dir() {
                    return Err(WireError::not_found(format!(
                        "send_file: directory {} does not exist on the agent",
                        parent.display()
                    )));
                }
            }
            old_content(&t, "send_file: reading old")
        })
        .await?;
        let undo = NetUndo::RestoreFile {
            netns: None,
            path: target.to_string_lossy().into_owned(),
            data: old,
        };
        rec.record(undo.clone())?;
        recorded = Some(undo);
    }
    let d = data.to_vec();
    let written = blocking(move || -> Result<(), WireError> {
        let ctx = || format!("send_file {} at offset {offset}", target.display());
        let what = format!("send_file at offset {offset}:");
        let mut f = if offset == 0 {
            open_regular(
                &target,
                OpenOptions::new().write(true).create(true).truncate(true),
                &what,
            )?
        } else {
            let f = open_regular(&target, OpenOptions::new().write(true), &what)?;
            let len = f.metadata().map_err(|e| io_error(e, ctx()))?.len();
            if len != offset {
                return Err(WireError::invalid(format!(
                    "{}: the file has {len} bytes",
                    ctx()
                )));
            }
            f
        };
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| io_error(e, ctx()))?;
        f.write_all(&d).map_err(|e| io_error(e, ctx()))
    })
    .await;
    if let (Err(_), Some(undo)) = (&written, &recorded) {
        rec.cancel(undo);
    }
    written
}

/// One chunk of `recv_file`: up to `len` (≤ [`MAX_CHUNK`]) bytes at
/// `offset`, and whether the end of the file was reached.
pub async fn file_get(
    _nets: &Nets,
    path: &str,
    offset: u64,
    len: u32,
) -> Result<(Vec<u8>, bool), WireError> {
    check_path(path)?;
    let len = (len as usize).min(MAX_CHUNK);
    let p = path.to_string();
    blocking(move || -> Result<(Vec<u8>, bool), WireError> {
        let ctx = || format!("recv_file {p}");
        let mut f = open_regular(Path::new(&p), OpenOptions::new().read(true), "recv_file:")?;
        let size = f.metadata().map_err(|e| io_error(e, ctx()))?.len();
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| io_error(e, ctx()))?;
        let mut buf = Vec::with_capacity(len.min(size.saturating_sub(offset) as usize));
        f.take(len as u64)
            .read_to_end(&mut buf)
            .map_err(|e| io_error(e, ctx()))?;
        let eof = offset + buf.len() as u64 >= size;
        Ok((buf, eof))
    })
    .await
}
