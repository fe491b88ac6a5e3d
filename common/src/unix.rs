//! The unix-socket transport under the frames (both ends): a stream
//! registered with the runtime for readability only.
//!
//! A unix socket turns writable again each time the peer reads what was
//! sent to it, and the kernel then wakes whoever polls the socket for
//! writability. `tokio::net::UnixStream` always does (it registers for
//! both), so each frame one end read woke the other end's idle thread for
//! nothing: a context switch there and back per frame (`perf sched` on the
//! agent's roundtrip bench: controller 10 µs, agent 4 µs, controller 32 µs
//! after each reply, and the same on the controller's side as the agent
//! reads each request). [`UnixConn`] writes straight to the socket and
//! registers for writability only while a write waits for room (a full
//! socket buffer: a large frame, or a peer not reading), on a duplicate
//! of the descriptor that is dropped once the write went through.
//!
//! The one piece of this crate bound to a runtime (tokio's reactor): it is
//! here so that the agent and the controller share one copy, as they share
//! the TCP transport ([`crate::secure`]).

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// A unix stream polled for readability, written to directly.
pub struct UnixConn {
    /// The socket, registered for readability only.
    read: AsyncFd<UnixStream>,
    /// A duplicate of the socket registered for writability, present only
    /// while a write waits for room.
    write: Option<AsyncFd<OwnedFd>>,
}

impl UnixConn {
    /// Takes over `s` (call inside the runtime).
    pub fn new(s: tokio::net::UnixStream) -> io::Result<UnixConn> {
        let s = s.into_std()?;
        s.set_nonblocking(true)?;
        // SAFETY: the stream owns its fd and returns the same one for as
        // long as the AsyncFd owns it.
        let read = unsafe { AsyncFd::register_with_interest(s, Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(UnixConn { read, write: None })
    }
}

/// `AsyncRead::poll_read` for a non-blocking descriptor registered with
/// the runtime for readability: `read` reads what is there now. With
/// `short_read_empties` (a stream socket), a short read clears the
/// readiness, so the next read waits for the next edge instead of costing
/// a read that says "would block" (as tokio's own streams do). Shared by
/// [`UnixConn`] and the agent's virtio-serial port.
pub fn poll_read_fd<T>(
    fd: &AsyncFd<T>,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
    short_read_empties: bool,
    mut read: impl FnMut(&T, &mut [u8]) -> io::Result<usize>,
) -> Poll<io::Result<()>>
where
    T: std::os::fd::AsRawFd,
{
    loop {
        let mut guard = ready!(fd.poll_read_ready(cx))?;
        let unfilled = buf.initialize_unfilled();
        let want = unfilled.len();
        match guard.try_io(|inner| read(inner.get_ref(), unfilled)) {
            Ok(Ok(n)) => {
                if short_read_empties && n > 0 && n < want {
                    guard.clear_ready();
                }
                buf.advance(n);
                return Poll::Ready(Ok(()));
            }
            Ok(Err(e)) => return Poll::Ready(Err(e)),
            Err(_would_block) => continue,
        }
    }
}

impl AsyncRead for UnixConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        poll_read_fd(&self.read, cx, buf, true, |mut s: &UnixStream, b| s.read(b))
    }
}

impl AsyncWrite for UnixConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            match this.read.get_ref().write(data) {
                Ok(n) => {
                    this.write = None;
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => match &this.write {
                    // Registered just now: try again, room may have come
                    // before the registration.
                    None => {
                        let dup = this.read.get_ref().as_fd().try_clone_to_owned()?;
                        // SAFETY: as in `new`, for the duplicate.
                        let w = unsafe { AsyncFd::register_with_interest(dup, Interest::WRITABLE) }
                            .map_err(io::Error::from)?;
                        this.write = Some(w);
                    }
                    Some(w) => ready!(w.poll_write_ready(cx))?.clear_ready(),
                },
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.read.get_ref().shutdown(Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// More than the socket buffer holds goes through once the peer
    /// reads (the write waits for room), and both directions work.
    #[tokio::test]
    async fn large_writes_wait_for_room() {
        let (a, mut b) = tokio::net::UnixStream::pair().unwrap();
        let mut a = UnixConn::new(a).unwrap();
        let data: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let w = tokio::spawn(async move {
            a.write_all(&sent).await.unwrap();
            a.shutdown().await.unwrap();
            let mut back = [0u8; 3];
            a.read_exact(&mut back).await.unwrap();
            back
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), data.len());
        assert!(got == data);
        b.write_all(b"end").await.unwrap();
        assert_eq!(&w.await.unwrap(), b"end");
    }
}
