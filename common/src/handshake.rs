//! The connection preamble: the first bytes each side sends.
//!
//! It is raw bytes, not bincode, so that two builds whose message enums
//! differ still understand each other well enough to say which protocol
//! versions they speak. Both sides send [`Preamble`] at once; each checks
//! the other's and refuses a mismatch with a message naming both versions.

/// Version of the message enums in [`crate::proto`]. Bump on any change to
/// their encoding.
/// 2: device specs gained fields (bond options, team link_watch, tunnel
/// mode, macsec), new requests (defer, neighbours, ethtool groups, netem,
/// service) and job exit details.
/// 3: `Welcome` carries the host's environment (`env::HostEnv`); the
/// shared pool's `HelloFenced` and `JournalEmpty`.
pub const PROTOCOL_VERSION: u32 = 3;

/// Magic bytes that open every connection, so garbage is told apart from an
/// old or new lnst at once.
pub const MAGIC: [u8; 4] = *b"LNST";

/// Length of the encoded preamble in bytes.
pub const PREAMBLE_LEN: usize = 8;

/// `MAGIC` followed by the sender's protocol version (big endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preamble {
    pub version: u32,
}

/// Why a received preamble was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreambleError {
    #[error("peer is not an lnst endpoint (first bytes {0:02x?}, expected \"LNST\")")]
    BadMagic([u8; 4]),
    #[error("protocol version mismatch: peer speaks version {peer}, this side speaks version {ours}; install matching lnst-ctl and lnst-agent builds")]
    VersionMismatch { ours: u32, peer: u32 },
}

impl Preamble {
    /// The preamble this build sends.
    pub const fn ours() -> Self {
        Preamble {
            version: PROTOCOL_VERSION,
        }
    }

    pub fn encode(&self) -> [u8; PREAMBLE_LEN] {
        let mut b = [0u8; PREAMBLE_LEN];
        b[..4].copy_from_slice(&MAGIC);
        b[4..].copy_from_slice(&self.version.to_be_bytes());
        b
    }

    /// Parses a peer's preamble without judging its version.
    pub fn decode(b: &[u8; PREAMBLE_LEN]) -> Result<Self, PreambleError> {
        let magic = [b[0], b[1], b[2], b[3]];
        if magic != MAGIC {
            return Err(PreambleError::BadMagic(magic));
        }
        Ok(Preamble {
            version: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        })
    }

    /// Parses a peer's preamble and checks it speaks our version.
    pub fn check(b: &[u8; PREAMBLE_LEN]) -> Result<Self, PreambleError> {
        let p = Self::decode(b)?;
        if p.version != PROTOCOL_VERSION {
            return Err(PreambleError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                peer: p.version,
            });
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let ours = Preamble::ours().encode();
        assert_eq!(Preamble::check(&ours).unwrap().version, PROTOCOL_VERSION);
        let other = Preamble { version: 99 }.encode();
        let e = Preamble::check(&other).unwrap_err().to_string();
        assert!(
            e.contains("99") && e.contains(&PROTOCOL_VERSION.to_string()),
            "{e}"
        );
        let garbage = *b"GET / HT";
        assert!(matches!(
            Preamble::check(&garbage),
            Err(PreambleError::BadMagic(_))
        ));
    }
}
