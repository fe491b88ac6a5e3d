//! Serving over a virtio-serial port (`--virtio-port
//! /dev/virtio-ports/lnst.agent`): how the VM lab's guests reach their
//! controller. qemu exposes the port on the host as a unix socket
//! (file-mode protected, like the netns lab's sockets); in the guest it is
//! a character device that exists whether or not anyone is connected on
//! the host side.
//!
//! Session start and end therefore follow the host side: while nobody is
//! connected the port polls `POLLHUP` and reads return EOF, so the agent
//! waits (woken by the `SIGIO` the driver sends on every host connect and
//! disconnect, with a slow timer as a fallback) and speaks its preamble
//! only once the host side is there; the host going away is EOF, which
//! ends the session like a closed socket, and the agent undoes and waits
//! for the next one. The device is opened once and kept: a virtio port
//! admits one opener at a time.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;

use crate::agent::Agent;
use crate::session;

/// How often the agent looks at the port when no `SIGIO` came: only a
/// fallback, the signal wakes it at once.
const IDLE_RECHECK: Duration = Duration::from_secs(1);

/// The opened port, shared by consecutive sessions. It is registered
/// with the runtime only for the length of a session: a registration made
/// while the host side is away records `POLLHUP` as a final "read closed"
/// state that tokio never clears, and every later read would spin.
pub struct VirtioPort {
    fd: OwnedFd,
    /// Host connect/disconnect notifications (`F_SETOWN` + `O_ASYNC`).
    sigio: Signal,
}

impl VirtioPort {
    /// Opens the port non-blocking and asks for `SIGIO` on host connect
    /// and disconnect. Installs the `SIGIO` handler first (the default
    /// action of `SIGIO` ends the process); call from within the runtime.
    pub fn open(path: &Path) -> io::Result<VirtioPort> {
        use std::os::unix::fs::OpenOptionsExt;
        let sigio = signal(SignalKind::io())?;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)?;
        let fd: OwnedFd = f.into();
        let raw = fd.as_raw_fd();
        // SAFETY: fcntl on a descriptor we own, with integer arguments.
        unsafe {
            if libc::fcntl(raw, libc::F_SETOWN, libc::getpid()) < 0 {
                return Err(io::Error::last_os_error());
            }
            let fl = libc::fcntl(raw, libc::F_GETFL);
            if fl < 0 || libc::fcntl(raw, libc::F_SETFL, fl | libc::O_ASYNC) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(VirtioPort { fd, sigio })
    }

    /// Whether the host side is connected now (no `POLLHUP`).
    pub fn host_connected(&self) -> bool {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        n >= 0 && p.revents & libc::POLLHUP == 0
    }

    /// A byte stream over the port for one session: a duplicate of the
    /// descriptor, registered afresh (readiness starts clean).
    fn stream(&self) -> io::Result<PortStream> {
        let dup = self.fd.try_clone()?;
        // SAFETY: `dup` is an OwnedFd moved into the AsyncFd, which keeps
        // it open (and unreplaced) until it is dropped.
        let fd = unsafe { AsyncFd::register(dup) }.map_err(|e| e.into_parts().1)?;
        Ok(PortStream { fd: Arc::new(fd) })
    }
}

/// Serves sessions over the port until `shutdown` turns true: waits for
/// the host side, runs one session, and again.
pub async fn serve(agent: Arc<Agent>, mut port: VirtioPort, shutdown: watch::Receiver<bool>) {
    let mut stop = shutdown.clone();
    loop {
        while !port.host_connected() {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::timeout(IDLE_RECHECK, port.sigio.recv()) => {}
            }
        }
        tracing::info!("host side of the virtio port connected");
        match port.stream() {
            Ok(stream) => {
                session::run(
                    agent.clone(),
                    stream,
                    "virtio-serial port (host)".to_string(),
                    shutdown.clone(),
                )
                .await
            }
            Err(e) => tracing::error!(error = %e, "cannot register the virtio port"),
        }
        if *shutdown.borrow() {
            return;
        }
        // A session can also end on a protocol error while the host side
        // stays: wait until it goes (dropping what it still sends), so the
        // next session starts with the next controller's preamble.
        while port.host_connected() {
            drain(&port.fd);
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }
}

/// Reads and drops whatever is pending.
fn drain(fd: &OwnedFd) {
    let mut buf = [0u8; 4096];
    while matches!(read_fd(fd.as_raw_fd(), &mut buf), Ok(n) if n > 0) {}
}

fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for buf.len() bytes.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn write_fd(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for buf.len() bytes.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// One session's view of the port: EOF when the host side goes.
struct PortStream {
    fd: Arc<AsyncFd<OwnedFd>>,
}

impl AsyncRead for PortStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        lnst_common::unix::poll_read_fd(&self.fd, cx, buf, false, |fd: &OwnedFd, b| {
            read_fd(fd.as_raw_fd(), b)
        })
    }
}

impl AsyncWrite for PortStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            match guard.try_io(|inner| write_fd(inner.as_raw_fd(), buf)) {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
