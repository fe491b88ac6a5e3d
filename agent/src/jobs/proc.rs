//! A job's started shell as its supervisor sees it: the leader's pid, a
//! way to wait for its exit, and its two output pipes, whichever way it
//! was started ([`super::clone3`], or `posix_spawn` through tokio where
//! that is refused).

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, Interest};

/// A job's output stream (stdout or stderr): read through the runtime,
/// or straight from its fd once the job's shell is gone.
pub type Pipe = Box<dyn PipeRead + Send + Unpin>;

/// What a [`Pipe`] is: a non-blocking read end.
pub trait PipeRead: AsyncRead + std::os::fd::AsFd {}

impl<T: AsyncRead + std::os::fd::AsFd> PipeRead for T {}

/// A job's shell, started and not yet reaped.
pub struct Started {
    pub proc: Proc,
    pub stdout: Option<Pipe>,
    pub stderr: Option<Pipe>,
    /// The leader's start time (`/proc/PID/stat` field 22) if known
    /// without reading `/proc` ([`super::clone3::timed`]).
    pub start_time: Option<u64>,
}

impl Started {
    /// From a `clone3` child; registers its fds with the runtime (call
    /// inside one).
    pub fn from_clone3(c: super::clone3::Child, start_time: Option<u64>) -> io::Result<Started> {
        let stdout = tokio::net::unix::pipe::Receiver::from_owned_fd_unchecked(c.stdout)?;
        let stderr = tokio::net::unix::pipe::Receiver::from_owned_fd_unchecked(c.stderr)?;
        // SAFETY: an OwnedFd is a valid open fd and always returns the
        // same fd for as long as the AsyncFd owns it.
        let fd = unsafe { AsyncFd::register_with_interest(c.pidfd, Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(Started {
            proc: Proc::Pidfd {
                pid: c.pid,
                fd,
                status: None,
                writers: Some(c.writers),
            },
            stdout: Some(Box::new(stdout)),
            stderr: Some(Box::new(stderr)),
            start_time,
        })
    }

    /// From a tokio child (the fallback).
    pub fn from_child(
        mut c: tokio::process::Child,
        start_time: Option<u64>,
    ) -> io::Result<Started> {
        let pid = c
            .id()
            .ok_or_else(|| io::Error::other("spawned job has no pid"))?;
        let stdout = c.stdout.take().map(|s| Box::new(s) as Pipe);
        let stderr = c.stderr.take().map(|s| Box::new(s) as Pipe);
        Ok(Started {
            proc: Proc::Child {
                pid: pid as i32,
                child: c,
            },
            stdout,
            stderr,
            start_time,
        })
    }
}

/// The leader process, ours to wait for and reap.
pub enum Proc {
    /// Started by `posix_spawn` (tokio reaps it).
    Child {
        pid: i32,
        child: tokio::process::Child,
    },
    /// Started by `clone3`: its pidfd turns readable at exit, then we reap.
    Pidfd {
        pid: i32,
        fd: AsyncFd<OwnedFd>,
        /// Once reaped.
        status: Option<ExitStatus>,
        /// The write ends of its output pipes ([`super::clone3::Child`]),
        /// closed once it is reaped: its output then ends when what it
        /// left running (if anything) closes them too.
        writers: Option<[OwnedFd; 2]>,
    },
}

impl Proc {
    pub fn pid(&self) -> i32 {
        match self {
            Proc::Child { pid, .. } | Proc::Pidfd { pid, .. } => *pid,
        }
    }

    /// Waits for the leader to exit and reaps it. Cancel-safe, and
    /// returns the same status again once reaped.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        match self {
            Proc::Child { child, .. } => child.wait().await,
            Proc::Pidfd {
                pid,
                fd,
                status,
                writers,
            } => loop {
                if let Some(s) = *status {
                    *writers = None;
                    return Ok(s);
                }
                if let Some(s) = try_reap(*pid)? {
                    *status = Some(s);
                    continue;
                }
                let ready = fd.readable().await?;
                if try_reap(*pid)?.map(|s| *status = Some(s)).is_none() {
                    // Readable means the whole thread group is gone, so
                    // this is only a moment before the zombie can be
                    // reaped: look again shortly rather than wait for
                    // an edge that will not come.
                    drop(ready);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            },
        }
    }

    /// The pidfd, for tests.
    #[cfg(test)]
    fn raw_pidfd(&self) -> Option<i32> {
        match self {
            Proc::Pidfd { fd, .. } => Some(std::os::fd::AsRawFd::as_raw_fd(fd.get_ref())),
            Proc::Child { .. } => None,
        }
    }
}

/// `waitpid(pid, WNOHANG)`: the status if `pid` (our child) has exited.
fn try_reap(pid: i32) -> io::Result<Option<ExitStatus>> {
    let mut st = 0;
    // SAFETY: waitpid on our own child with a valid pointer.
    let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
    match r {
        0 => Ok(None),
        r if r == pid => Ok(Some(ExitStatus::from_raw(st))),
        _ => Err(io::Error::last_os_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::clone3;

    #[tokio::test]
    async fn pidfd_wait_reaps_and_repeats() {
        let p =
            clone3::Prepared::new("/bin/sh", &["-c", "exit 7"], None, std::iter::empty()).unwrap();
        let c = match clone3::spawn(&p, None) {
            Ok(c) => c,
            Err(clone3::Error::Unsupported) => return eprintln!("SKIP: clone3 refused here"),
            Err(clone3::Error::Io(e)) => panic!("{e}"),
        };
        let mut s = Started::from_clone3(c, None).unwrap();
        assert!(s.proc.raw_pidfd().is_some());
        let st = s.proc.wait().await.unwrap();
        assert_eq!(st.code(), Some(7));
        assert_eq!(s.proc.wait().await.unwrap().code(), Some(7));
        // Reaped: the pid is no child of ours any more.
        // SAFETY: waitpid with a null status pointer.
        let r = unsafe { libc::waitpid(s.proc.pid(), std::ptr::null_mut(), libc::WNOHANG) };
        assert_eq!(r, -1);
    }
}
