//! The transport hello: six bytes each side sends in the clear, at once,
//! before anything else on a TCP connection.
//!
//! `b"lnst"`, the transport version, then the mode: `N` for Noise
//! (authenticated and encrypted) or `P` for plain (`--insecure`). Each side
//! reads the other's, so a mode mismatch is told apart on *both* sides with
//! a message saying which side runs `--insecure`, instead of a handshake
//! failing on garbage. Garbage (an HTTP client, a port scanner, an older
//! lnst that starts with its `LNST` preamble) is recognised here too.

use tokio::io::{AsyncRead, AsyncReadExt};

use super::SecureError;

/// Magic that opens a transport hello. Lower case, unlike the protocol
/// preamble's `LNST`, so the two are never confused.
pub const HELLO_MAGIC: [u8; 4] = *b"lnst";
/// Version of this transport layer (hello, handshake pattern, records).
pub const TRANSPORT_VERSION: u8 = 1;
/// Length of a hello.
pub const HELLO_LEN: usize = 6;

/// How a side wants the connection protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `Noise_XX_25519_ChaChaPoly_BLAKE2s`: keys checked, traffic encrypted.
    Noise,
    /// Plain TCP, only with `--insecure` on both sides.
    Plain,
}

impl Mode {
    fn byte(self) -> u8 {
        match self {
            Mode::Noise => b'N',
            Mode::Plain => b'P',
        }
    }
}

/// The bytes of our hello in `mode`.
pub fn encode(mode: Mode) -> [u8; HELLO_LEN] {
    let m = HELLO_MAGIC;
    [m[0], m[1], m[2], m[3], TRANSPORT_VERSION, mode.byte()]
}

/// Judges a peer's hello.
pub fn decode(b: &[u8; HELLO_LEN]) -> Result<Mode, SecureError> {
    if b[..4] != HELLO_MAGIC {
        if &b[..4] == b"LNST" {
            return Err(SecureError::Protocol(
                "peer sent the lnst protocol preamble without the transport hello: \
                 an lnst build without authenticated transport (upgrade it), \
                 or a unix-socket client pointed at a TCP port"
                    .into(),
            ));
        }
        return Err(SecureError::NotLnst(b.to_vec()));
    }
    if b[4] != TRANSPORT_VERSION {
        return Err(SecureError::TransportVersion {
            ours: TRANSPORT_VERSION,
            peer: b[4],
        });
    }
    match b[5] {
        b'N' => Ok(Mode::Noise),
        b'P' => Ok(Mode::Plain),
        _ => Err(SecureError::NotLnst(b.to_vec())),
    }
}

/// Reads and judges the peer's hello. `Ok(None)` if the peer closed the
/// connection before sending one whole.
pub async fn read<S: AsyncRead + Unpin>(s: &mut S) -> Result<Option<Mode>, SecureError> {
    let mut b = [0u8; HELLO_LEN];
    match s.read_exact(&mut b).await {
        Ok(_) => decode(&b).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(SecureError::Io {
            stage: "reading the peer's transport hello",
            error: e,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_and_garbage_is_named() {
        assert_eq!(decode(&encode(Mode::Noise)).unwrap(), Mode::Noise);
        assert_eq!(decode(&encode(Mode::Plain)).unwrap(), Mode::Plain);
        assert!(matches!(decode(b"GET / "), Err(SecureError::NotLnst(_))));
        assert!(matches!(decode(b"lnst\x01X"), Err(SecureError::NotLnst(_))));
        assert!(matches!(
            decode(b"lnst\x07N"),
            Err(SecureError::TransportVersion { peer: 7, .. })
        ));
        let e = decode(b"LNST\0\0").unwrap_err().to_string();
        assert!(e.contains("without the transport hello"), "{e}");
    }
}
