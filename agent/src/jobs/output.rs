//! A job's kept output: each stream is kept in full up to
//! [`MAX_OUTPUT_BYTES`]; beyond that it is cut and [`TRUNCATION_MARKER`]
//! appended once. What is kept is also what is streamed to the controller.

use lnst_common::job::{MAX_OUTPUT_BYTES, TRUNCATION_MARKER};

/// One stream's bytes, bounded.
#[derive(Debug, Default)]
pub struct Bounded {
    data: Vec<u8>,
    truncated: bool,
    limit: Option<usize>,
}

impl Bounded {
    /// A buffer with a limit other than [`MAX_OUTPUT_BYTES`] (tests).
    pub fn with_limit(limit: usize) -> Self {
        Bounded {
            limit: Some(limit),
            ..Default::default()
        }
    }

    /// Appends `chunk` as far as the bound allows and returns what was
    /// added (to be streamed): a prefix of `chunk`, plus the marker when
    /// this chunk crossed the bound. Empty once truncated.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.truncated {
            return Vec::new();
        }
        let limit = self.limit.unwrap_or(MAX_OUTPUT_BYTES);
        let room = limit - self.data.len();
        let start = self.data.len();
        if chunk.len() <= room {
            self.data.extend_from_slice(chunk);
        } else {
            self.data.extend_from_slice(&chunk[..room]);
            self.data.extend_from_slice(TRUNCATION_MARKER.as_bytes());
            self.truncated = true;
        }
        self.data[start..].to_vec()
    }

    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    pub fn truncated(&self) -> bool {
        self.truncated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_at_the_limit_and_marks_once() {
        let mut b = Bounded::with_limit(10);
        assert_eq!(b.push(b"12345"), b"12345");
        let added = b.push(b"6789abcdef");
        assert_eq!(
            added,
            [b"6789a".as_slice(), TRUNCATION_MARKER.as_bytes()].concat()
        );
        assert!(b.push(b"more").is_empty());
        assert_eq!(
            b.bytes(),
            [b"123456789a".as_slice(), TRUNCATION_MARKER.as_bytes()].concat()
        );
        assert!(b.truncated());
    }

    #[test]
    fn exactly_the_limit_is_not_truncated() {
        let mut b = Bounded::with_limit(4);
        b.push(b"abcd");
        assert!(!b.truncated());
        assert_eq!(b.bytes(), b"abcd");
    }
}
