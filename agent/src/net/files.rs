//! Files on the host: `read`/`write` (small files such as under /proc and
//! /sys, read and written from inside the namespace, old content restored)
//! and the chunks of `send_file`/`recv_file` (`file_put`/`file_get`, in
//! the agent's own mount namespace, sizes bounded by [`MAX_CHUNK`]).

use std::io::{Read, Seek, SeekFrom, Write};

use lnst_common::WireError;

use super::error::io_error;
use super::nsthread::run_in;
use super::{ns_label, NetUndo, Nets, Recorder};

/// Largest chunk of `file_put`/`file_get`.
pub const MAX_CHUNK: usize = 1 << 20;
/// Largest file `file_read` returns and largest old content kept to restore.
pub const MAX_READ: u64 = 16 << 20;

fn read_bounded(path: &str, what: &str) -> Result<Vec<u8>, WireError> {
    let f = std::fs::File::open(path).map_err(|e| io_error(e, format!("{what} {path}")))?;
    let mut buf = Vec::new();
    f.take(MAX_READ + 1)
        .read_to_end(&mut buf)
        .map_err(|e| io_error(e, format!("{what} {path}")))?;
    if buf.len() as u64 > MAX_READ {
        return Err(WireError::invalid(format!(
            "{what} {path}: larger than {MAX_READ} bytes (use recv_file)"
        )));
    }
    Ok(buf)
}

fn check_path(path: &str) -> Result<(), WireError> {
    if !path.starts_with('/') {
        return Err(WireError::invalid(format!("path {path:?} is not absolute")));
    }
    Ok(())
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
    run_in(netns, move || read_bounded(&p, &what)).await
}

/// `echo VALUE > PATH` in `netns`; records the old content (or that the
/// file did not exist).
pub async fn file_write(
    nets: &Nets,
    rec: &dyn Recorder,
    netns: Option<&str>,
    path: &str,
    data: &[u8],
) -> Result<(), WireError> {
    check_path(path)?;
    let old = match file_read(nets, netns, path).await {
        Ok(d) => Some(d),
        Err(e) if e.kind == lnst_common::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    rec.record(NetUndo::RestoreFile {
        netns: netns.map(str::to_string),
        path: path.to_string(),
        data: old,
    })?;
    apply_write(netns, path, Some(data)).await
}

/// Writes `data` to `path` (`None`: removes it), from inside `netns`.
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
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&p)
                .map_err(|e| io_error(e, format!("write in {label}: {p}")))?;
            f.write_all(&d)
                .map_err(|e| io_error(e, format!("write in {label}: {p}")))
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
    if offset == 0 {
        let old = match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => return Err(WireError::invalid(format!("send_file: {path} is a directory"))),
            Ok(m) if m.len() > MAX_READ => {
                return Err(WireError::invalid(format!(
                    "send_file: refusing to overwrite {path} ({} bytes): too large to keep for restoring",
                    m.len()
                )))
            }
            Ok(_) => Some(read_bounded(path, "send_file: reading old")?),
            Err(_) => None,
        };
        if let Some(parent) = std::path::Path::new(path).parent() {
            if !parent.is_dir() {
                return Err(WireError::not_found(format!(
                    "send_file: directory {} does not exist on the agent",
                    parent.display()
                )));
            }
        }
        rec.record(NetUndo::RestoreFile {
            netns: None,
            path: path.to_string(),
            data: old,
        })?;
    }
    let (p, d) = (path.to_string(), data.to_vec());
    tokio::task::spawn_blocking(move || -> Result<(), WireError> {
        let ctx = || format!("send_file {p} at offset {offset}");
        let mut f = if offset == 0 {
            std::fs::File::create(&p).map_err(|e| io_error(e, ctx()))?
        } else {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .map_err(|e| io_error(e, ctx()))?;
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
    .await
    .map_err(|e| WireError::internal(format!("file task failed: {e}")))?
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
    tokio::task::spawn_blocking(move || -> Result<(Vec<u8>, bool), WireError> {
        let ctx = || format!("recv_file {p}");
        let mut f = std::fs::File::open(&p).map_err(|e| io_error(e, ctx()))?;
        let size = f.metadata().map_err(|e| io_error(e, ctx()))?.len();
        if f.metadata().map(|m| m.is_dir()).unwrap_or(false) {
            return Err(WireError::invalid(format!("recv_file: {p} is a directory")));
        }
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| io_error(e, ctx()))?;
        let mut buf = Vec::with_capacity(len);
        f.take(len as u64)
            .read_to_end(&mut buf)
            .map_err(|e| io_error(e, ctx()))?;
        let eof = offset + buf.len() as u64 >= size;
        Ok((buf, eof))
    })
    .await
    .map_err(|e| WireError::internal(format!("file task failed: {e}")))?
}
