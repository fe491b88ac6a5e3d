//! The encrypted byte stream that frames travel over once the handshake is
//! done.
//!
//! Writes are cut into records: a 2-byte big-endian length, then one Noise
//! transport message (ChaCha20-Poly1305 ciphertext plus a 16-byte tag, at
//! most 65535 bytes in all). Reads reassemble and decrypt whole records; a
//! record that fails authentication (tampered, truncated, replayed,
//! reordered: Noise nonces are implicit counters) is an `InvalidData` error
//! and the stream stays broken from then on. [`SecureStream`] implements
//! `AsyncRead + AsyncWrite`, so the frame codec runs over it unchanged.
//!
//! Like `BufWriter` and TLS streams, a write may leave the last record in
//! an internal buffer when the socket is full: call `flush` after a frame
//! (`write_all` then `flush`) to be sure it left.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Largest Noise message (ciphertext + tag), fixed by the Noise spec.
pub const MAX_RECORD: usize = 65535;
/// Authentication tag appended to every record.
pub const TAG_LEN: usize = 16;
/// Most plaintext one record carries.
pub const MAX_PLAIN: usize = MAX_RECORD - TAG_LEN;
/// Record length prefix.
pub const LEN_PREFIX: usize = 2;

/// Room for one whole record plus the start of the next, so a read from the
/// socket is never smaller than a record.
const RAW_CAP: usize = 2 * (LEN_PREFIX + MAX_RECORD);

/// An authenticated, encrypted stream over `S` (usually a `TcpStream`).
pub struct SecureStream<S> {
    inner: S,
    /// Noise transport state: the two cipher states with their counters.
    noise: snow::TransportState,
    /// Bytes read from `inner` not yet decrypted: `raw[rstart..rend]`.
    raw: Box<[u8]>,
    rstart: usize,
    rend: usize,
    /// The decrypted record being handed out: `plain[ppos..]`.
    plain: Vec<u8>,
    ppos: usize,
    /// Encrypted records not yet written to `inner`: `wbuf[wpos..]`.
    wbuf: Vec<u8>,
    wpos: usize,
    /// Set once a record failed to decrypt: every later read fails too.
    broken: bool,
}

impl<S> std::fmt::Debug for SecureStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureStream")
            .field("buffered_in", &(self.rend - self.rstart))
            .field("buffered_out", &(self.wbuf.len() - self.wpos))
            .field("broken", &self.broken)
            .finish()
    }
}

fn bad_data(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl<S> SecureStream<S> {
    /// Wraps `inner` once the handshake has produced `noise`. `leftover` is
    /// what the handshake already read past its last message.
    pub(crate) fn new(inner: S, noise: snow::TransportState, leftover: &[u8]) -> Self {
        let mut raw = vec![0u8; RAW_CAP.max(leftover.len())].into_boxed_slice();
        raw[..leftover.len()].copy_from_slice(leftover);
        SecureStream {
            inner,
            noise,
            raw,
            rstart: 0,
            rend: leftover.len(),
            plain: Vec::with_capacity(MAX_PLAIN),
            ppos: 0,
            wbuf: Vec::with_capacity(LEN_PREFIX + MAX_RECORD),
            wpos: 0,
            broken: false,
        }
    }

    /// The underlying stream (for `peer_addr`, `set_nodelay`, …). Reading or
    /// writing it directly breaks the channel.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The raw stream, for tests that inject bytes under the encryption.
    #[cfg(test)]
    pub(crate) fn inner_mut_for_tests(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Encrypts one record of at most [`MAX_PLAIN`] bytes into `wbuf`.
    fn seal(&mut self, plain: &[u8]) -> io::Result<()> {
        debug_assert!(plain.len() <= MAX_PLAIN);
        let at = self.wbuf.len();
        self.wbuf.resize(at + LEN_PREFIX + plain.len() + TAG_LEN, 0);
        let n = self
            .noise
            .write_message(plain, &mut self.wbuf[at + LEN_PREFIX..])
            .map_err(|e| io::Error::other(format!("cannot encrypt record: {e}")))?;
        // n <= MAX_RECORD because plain.len() <= MAX_PLAIN.
        self.wbuf[at..at + LEN_PREFIX].copy_from_slice(&(n as u16).to_be_bytes());
        self.wbuf.truncate(at + LEN_PREFIX + n);
        Ok(())
    }

    /// Takes the next whole record out of `raw`, if there is one, and
    /// decrypts it into `plain`.
    fn open_buffered(&mut self) -> io::Result<bool> {
        let avail = self.rend - self.rstart;
        if avail < LEN_PREFIX {
            return Ok(false);
        }
        let len = u16::from_be_bytes([self.raw[self.rstart], self.raw[self.rstart + 1]]) as usize;
        if len < TAG_LEN {
            self.broken = true;
            return Err(bad_data(format!(
                "secure channel: record of {len} bytes is shorter than its tag"
            )));
        }
        if avail < LEN_PREFIX + len {
            return Ok(false);
        }
        let body = self.rstart + LEN_PREFIX..self.rstart + LEN_PREFIX + len;
        self.plain.resize(len, 0);
        let n = match self.noise.read_message(&self.raw[body], &mut self.plain) {
            Ok(n) => n,
            Err(e) => {
                self.broken = true;
                self.plain.clear();
                return Err(bad_data(format!(
                    "secure channel: record failed authentication ({e}): tampered or corrupted data"
                )));
            }
        };
        self.plain.truncate(n);
        self.ppos = 0;
        self.rstart += LEN_PREFIX + len;
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        }
        Ok(true)
    }
}

impl<S: AsyncRead + Unpin> SecureStream<S> {
    /// Makes the next record's plaintext available in `plain`. `Ok(false)`
    /// on a clean end of stream between records.
    fn poll_next_record(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        if self.broken {
            return Poll::Ready(Err(bad_data(
                "secure channel: broken by an earlier bad record".into(),
            )));
        }
        loop {
            if self.open_buffered()? {
                return Poll::Ready(Ok(true));
            }
            if self.rend == self.raw.len() {
                // Move the partial record to the front; RAW_CAP holds a
                // whole record, so there is room after that.
                self.raw.copy_within(self.rstart..self.rend, 0);
                self.rend -= self.rstart;
                self.rstart = 0;
            }
            let mut rb = ReadBuf::new(&mut self.raw[self.rend..]);
            ready!(Pin::new(&mut self.inner).poll_read(cx, &mut rb))?;
            let got = rb.filled().len();
            if got == 0 {
                return if self.rend == self.rstart {
                    Poll::Ready(Ok(false))
                } else {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "secure channel: connection closed in the middle of a record",
                    )))
                };
            }
            self.rend += got;
        }
    }

    /// Reads one whole record (used for the agent's verdict after the
    /// handshake). `None` on a clean end of stream.
    pub(crate) async fn read_record(&mut self) -> io::Result<Option<Vec<u8>>> {
        if self.ppos < self.plain.len() {
            let out = self.plain[self.ppos..].to_vec();
            self.ppos = self.plain.len();
            return Ok(Some(out));
        }
        let more = std::future::poll_fn(|cx| self.poll_next_record(cx)).await?;
        if !more {
            return Ok(None);
        }
        let out = std::mem::take(&mut self.plain);
        self.ppos = 0;
        Ok(Some(out))
    }
}

impl<S: AsyncWrite + Unpin> SecureStream<S> {
    /// Writes out every buffered record.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.wpos < self.wbuf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.wbuf[self.wpos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wpos += n;
        }
        self.wbuf.clear();
        self.wpos = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SecureStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        // An empty record decrypts to nothing: keep going rather than
        // returning 0 bytes, which would read as end of stream.
        while this.ppos >= this.plain.len() {
            if !ready!(this.poll_next_record(cx))? {
                return Poll::Ready(Ok(()));
            }
        }
        let n = buf.remaining().min(this.plain.len() - this.ppos);
        buf.put_slice(&this.plain[this.ppos..this.ppos + n]);
        this.ppos += n;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SecureStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // Accept new data only once earlier records are out, so the buffer
        // stays bounded by one write's worth.
        ready!(this.poll_drain(cx))?;
        // Seal up to 4 records per call: a large write costs fewer syscalls.
        let mut taken = 0;
        for chunk in buf.chunks(MAX_PLAIN).take(4) {
            this.seal(chunk)?;
            taken += chunk.len();
        }
        // Try to send now; if the socket is full the records wait in the
        // buffer for the next write or flush (the waker is registered).
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(taken))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
