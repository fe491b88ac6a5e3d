//! Bytes to messages and back: the only place that knows the encoding.
//!
//! A frame is a 4-byte big-endian body length followed by the body, a
//! bincode 2 (serde) encoding of one message. Lengths above
//! [`MAX_FRAME_LEN`] are refused before anything is allocated, and the
//! decoder is configured with the same limit so that a hostile length
//! *inside* a body (a `Vec` claiming 2^60 elements) cannot allocate beyond
//! it either. Swap the encoding here and nowhere else.

use serde::{de::DeserializeOwned, Serialize};

/// Largest body accepted, in bytes. Large enough for a job's full bounded
/// output and a file chunk, small enough that a peer cannot make us
/// allocate much.
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// Length of the frame header.
pub const HEADER_LEN: usize = 4;

/// What can go wrong turning bytes into a message.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("cannot encode message: {0}")]
    Encode(String),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_big_endian()
        .with_variable_int_encoding()
        .with_limit::<MAX_FRAME_LEN>()
}

/// Encodes `msg` as a complete frame (header + body) in one buffer, so it
/// goes out in a single write.
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, CodecError> {
    let mut buf = vec![0u8; HEADER_LEN];
    bincode::serde::encode_into_std_write(msg, &mut buf, config())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    let len = buf.len() - HEADER_LEN;
    if len > MAX_FRAME_LEN {
        return Err(CodecError::TooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    buf[..HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(buf)
}

/// Reads a frame header and checks the announced length.
pub fn decode_header(header: [u8; HEADER_LEN]) -> Result<usize, CodecError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME_LEN {
        return Err(CodecError::TooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    Ok(len)
}

/// Decodes one frame body. Trailing bytes are an error: a frame holds
/// exactly one message.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, CodecError> {
    let (msg, used) = bincode::serde::decode_from_slice(body, config())
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if used != body.len() {
        return Err(CodecError::Malformed(format!(
            "{} trailing bytes after the message",
            body.len() - used
        )));
    }
    Ok(msg)
}

/// Tries to take one whole frame off the front of `buf`. Returns
/// `Ok(None)` when more bytes are needed, and the message and the number of
/// bytes consumed otherwise. Used by decoders over a byte stream and by the
/// fuzz/property tests.
pub fn decode_frame<T: DeserializeOwned>(buf: &[u8]) -> Result<Option<(T, usize)>, CodecError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = decode_header([buf[0], buf[1], buf[2], buf[3]])?;
    if buf.len() < HEADER_LEN + len {
        return Ok(None);
    }
    let msg = decode_body(&buf[HEADER_LEN..HEADER_LEN + len])?;
    Ok(Some((msg, HEADER_LEN + len)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobSpec;
    use crate::proto::{Request, ToAgent};
    use proptest::prelude::*;

    fn sample() -> ToAgent {
        ToAgent::Request {
            id: 7,
            req: Request::JobStart(JobSpec::shell("echo hi")),
        }
    }

    #[test]
    fn round_trip() {
        let f = encode_frame(&sample()).unwrap();
        let (m, used): (ToAgent, usize) = decode_frame(&f).unwrap().unwrap();
        assert_eq!(used, f.len());
        assert_eq!(format!("{m:?}"), format!("{:?}", sample()));
    }

    #[test]
    fn truncated_frame_needs_more() {
        let f = encode_frame(&sample()).unwrap();
        for cut in 0..f.len() {
            assert!(decode_frame::<ToAgent>(&f[..cut]).unwrap().is_none());
        }
    }

    #[test]
    fn huge_length_refused_without_allocating() {
        let e = decode_frame::<ToAgent>(&[0xff, 0xff, 0xff, 0xff, 0]).unwrap_err();
        assert!(matches!(e, CodecError::TooLarge { .. }), "{e}");
    }

    #[test]
    fn hostile_inner_length_refused() {
        // A JobStart whose command string claims u64::MAX bytes.
        let mut body = vec![1u8, 7, 2]; // Request variant, id, JobStart
        body.extend_from_slice(&[253, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert!(decode_body::<ToAgent>(&body).is_err());
    }

    #[test]
    fn trailing_bytes_refused() {
        let mut f = encode_frame(&sample()).unwrap();
        f.push(0);
        let len = (f.len() - HEADER_LEN) as u32;
        f[..4].copy_from_slice(&len.to_be_bytes());
        assert!(decode_frame::<ToAgent>(&f).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]
        /// The decoder never panics and never claims more bytes than it had.
        #[test]
        fn decoder_total_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(Some((_m, used))) = decode_frame::<ToAgent>(&bytes) {
                prop_assert!(used <= bytes.len());
            }
            let _ = decode_body::<crate::proto::ToController>(&bytes);
        }

        /// Any single corrupted byte gives an error or a message, never a panic.
        #[test]
        fn decoder_total_on_corruption(pos in 0usize..64, val in any::<u8>()) {
            let mut f = encode_frame(&sample()).unwrap();
            let p = pos % f.len();
            f[p] = val;
            let _ = decode_frame::<ToAgent>(&f);
        }
    }
}
