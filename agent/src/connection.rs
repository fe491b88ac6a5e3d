//! Bytes to frames over any byte stream: the preamble exchange, a buffered
//! frame reader and a frame writer.
//!
//! Everything here is generic over `AsyncRead` / `AsyncWrite`, so the same
//! code runs over a unix socket, plain TCP or an encrypted stream slotted in
//! by the authentication layer. Messages are turned into bytes only by
//! `lnst_common::codec`; each frame goes out in one write, and frames
//! queued together go out in one write between them.

use lnst_common::codec::{self, CodecError, HEADER_LEN};
use lnst_common::handshake::{Preamble, PreambleError, PREAMBLE_LEN};
use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// What can go wrong on a connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("connection closed by peer")]
    Closed,
    #[error("connection closed in the middle of a frame ({got} of {want} bytes)")]
    Truncated { got: usize, want: usize },
    #[error(transparent)]
    Preamble(#[from] PreambleError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Sends our preamble and checks the peer's. Both sides send at once, so
/// neither waits on the other.
pub async fn exchange_preamble<S>(stream: &mut S) -> Result<Preamble, ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream.write_all(&Preamble::ours().encode()).await?;
    stream.flush().await?;
    let mut b = [0u8; PREAMBLE_LEN];
    read_exact_or(stream, &mut b).await?;
    Ok(Preamble::check(&b)?)
}

/// Reads exactly `buf.len()` bytes, telling a clean close before the first
/// byte ([`ConnError::Closed`]) from one in the middle ([`ConnError::Truncated`]).
async fn read_exact_or<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> Result<(), ConnError> {
    let mut got = 0;
    while got < buf.len() {
        let n = r.read(&mut buf[got..]).await?;
        if n == 0 {
            return Err(if got == 0 {
                ConnError::Closed
            } else {
                ConnError::Truncated {
                    got,
                    want: buf.len(),
                }
            });
        }
        got += n;
    }
    Ok(())
}

/// Reads frames from a byte stream through a buffer.
pub struct FrameReader<R> {
    inner: BufReader<R>,
    body: Vec<u8>,
}

/// The buffer of a [`FrameReader`]: small, since a stranger's connection
/// has one before it says anything (reads larger than this bypass it).
const READ_BUF: usize = 8 * 1024;
/// A frame's body is allocated as its bytes arrive, this much at a time:
/// a header announcing 16 MiB that is never followed by them costs 64 KiB,
/// not 16 MiB.
const BODY_STEP: usize = 64 * 1024;

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(r: R) -> Self {
        FrameReader {
            inner: BufReader::with_capacity(READ_BUF, r),
            body: Vec::new(),
        }
    }

    /// Reads one message. The header is checked against the frame limit
    /// before the body is read.
    pub async fn read<T: DeserializeOwned>(&mut self) -> Result<T, ConnError> {
        self.read_max(codec::MAX_FRAME_LEN).await
    }

    /// [`FrameReader::read`] of a frame of at most `max` bytes (a peer's
    /// first frame, its Hello, is small).
    pub async fn read_max<T: DeserializeOwned>(&mut self, max: usize) -> Result<T, ConnError> {
        let mut h = [0u8; HEADER_LEN];
        read_exact_or(&mut self.inner, &mut h).await?;
        let len = codec::decode_header(h)?;
        if len > max {
            return Err(CodecError::TooLarge { len, max }.into());
        }
        self.body.clear();
        let mut got = 0;
        while got < len {
            let step = (len - got).min(BODY_STEP);
            self.body.resize(got + step, 0);
            match read_exact_or(&mut self.inner, &mut self.body[got..got + step]).await {
                Ok(()) => got += step,
                Err(ConnError::Closed) => {
                    return Err(ConnError::Truncated {
                        got: HEADER_LEN + got,
                        want: HEADER_LEN + len,
                    })
                }
                Err(ConnError::Truncated { got: g, .. }) => {
                    return Err(ConnError::Truncated {
                        got: HEADER_LEN + got + g,
                        want: HEADER_LEN + len,
                    })
                }
                Err(e) => return Err(e),
            }
        }
        let msg = codec::decode_body(&self.body)?;
        if self.body.capacity() > 1024 * 1024 {
            // Do not keep a large job output's buffer for the whole session.
            self.body = Vec::new();
        }
        Ok(msg)
    }
}

/// Writes frames: one write per frame, or one for several queued
/// together ([`FrameWriter::queue`]).
pub struct FrameWriter<W> {
    inner: W,
    /// Frames encoded by [`FrameWriter::queue`] and not yet written.
    queued: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(w: W) -> Self {
        FrameWriter {
            inner: w,
            queued: Vec::new(),
        }
    }

    /// Encodes and writes one message (after any queued ones).
    pub async fn write<T: Serialize>(&mut self, msg: &T) -> Result<(), ConnError> {
        self.queue(msg)?;
        self.send_queued().await
    }

    /// Encodes one message behind those already queued; nothing is
    /// written until [`FrameWriter::send_queued`].
    pub fn queue<T: Serialize>(&mut self, msg: &T) -> Result<(), ConnError> {
        let buf = codec::encode_frame(msg)?;
        if self.queued.is_empty() {
            self.queued = buf;
        } else {
            self.queued.extend_from_slice(&buf);
        }
        Ok(())
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.queued.len()
    }

    /// Writes every queued frame in one write.
    pub async fn send_queued(&mut self) -> Result<(), ConnError> {
        let buf = std::mem::take(&mut self.queued);
        self.inner.write_all(&buf).await?;
        self.inner.flush().await?;
        Ok(())
    }

    /// Shuts the write half down (FIN on a socket).
    pub async fn shutdown(&mut self) -> Result<(), ConnError> {
        self.inner.shutdown().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lnst_common::{Request, ToAgent};
    use tokio::io::AsyncWriteExt;

    fn frames() -> Vec<u8> {
        let mut b = Vec::new();
        for id in 0..50u64 {
            let m = ToAgent::Request {
                id,
                req: Request::JournalTest {
                    path: "x".repeat(id as usize * 37),
                    marker: id.to_string(),
                },
            };
            b.extend(codec::encode_frame(&m).unwrap());
        }
        b
    }

    /// Frames split at every chunk size from 1 byte up decode the same.
    #[tokio::test]
    async fn frames_survive_any_chunking() {
        let all = frames();
        for chunk in [1usize, 2, 3, 7, 64, 1000, 1 << 20] {
            let (mut a, b) = tokio::io::duplex(256);
            let data = all.clone();
            let w = tokio::spawn(async move {
                for c in data.chunks(chunk) {
                    a.write_all(c).await.unwrap();
                }
            });
            let mut r = FrameReader::new(b);
            for id in 0..50u64 {
                match r.read::<ToAgent>().await.unwrap() {
                    ToAgent::Request { id: got, .. } => assert_eq!(got, id, "chunk {chunk}"),
                    other => panic!("{other:?}"),
                }
            }
            w.await.unwrap();
            assert!(matches!(r.read::<ToAgent>().await, Err(ConnError::Closed)));
        }
    }

    #[tokio::test]
    async fn closed_mid_frame_is_truncated_not_closed() {
        let f = codec::encode_frame(&ToAgent::Goodbye).unwrap();
        for cut in 1..f.len() {
            let (mut a, b) = tokio::io::duplex(1 << 16);
            a.write_all(&f[..cut]).await.unwrap();
            drop(a);
            let mut r = FrameReader::new(b);
            match r.read::<ToAgent>().await {
                Err(ConnError::Truncated { got, want }) => {
                    assert_eq!(got, cut);
                    assert!(want > got);
                }
                other => panic!("cut {cut}: {other:?}"),
            }
        }
    }
}
