//! The error that crosses the wire: a kind the controller can act on and a
//! message for people. Never an `io::Error` or a netlink type.

use serde::{Deserialize, Serialize};

/// What went wrong, coarsely, so the controller can decide (a recipe can
/// catch `Unsupported` and skip; `NotFound` names a missing device or file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The request itself was wrong: bad option, bad value, unknown key.
    InvalidArgument,
    /// A named device, job, namespace, file or route does not exist.
    NotFound,
    /// The thing already exists (device name taken, address present).
    AlreadyExists,
    /// This host's kernel or tools cannot do it (e.g. no bonding driver).
    Unsupported,
    /// The kernel or a syscall refused it (permission, busy, ...).
    Os,
    /// A wait ran out of time.
    Timeout,
    /// A bug or an unexpected state in the agent.
    Internal,
}

/// An error reply: `kind` for code, `message` for people. The message is
/// complete on its own ("device eth9 not found in netns lnst-1-h1").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct WireError {
    pub kind: ErrorKind,
    pub message: String,
}

impl WireError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        WireError {
            kind,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }
    pub fn os(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Os, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}
