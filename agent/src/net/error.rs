//! Netlink errors turned into [`WireError`]s: the errno picks the kind, the
//! kernel's extended-ACK message (when the socket enabled it) and the
//! caller's context make the text ("creating bond0 in netns lnst-1-h1:
//! Operation not supported (kernel: Unknown device type)").

use lnst_common::{ErrorKind, WireError};
use nix::errno::Errno;

/// `NLMSGERR_ATTR_MSG`: the extended-ACK attribute carrying a string.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// Size of the `nlmsghdr` echoed back in a capped error reply.
const NLMSGHDR_LEN: usize = 16;

/// The errno of a netlink error, if it is one.
pub fn errno_of(e: &rtnetlink::Error) -> Option<Errno> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| Errno::from_raw(-c.get())),
        _ => None,
    }
}

/// The kernel's extended-ACK text in an error reply, if any.
pub fn ext_ack_message(payload: &[u8]) -> Option<String> {
    let mut off = NLMSGHDR_LEN;
    while off + 4 <= payload.len() {
        let len = u16::from_ne_bytes([payload[off], payload[off + 1]]) as usize;
        let kind = u16::from_ne_bytes([payload[off + 2], payload[off + 3]]) & 0x3fff;
        if len < 4 || off + len > payload.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let raw = &payload[off + 4..off + len];
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            return Some(String::from_utf8_lossy(&raw[..end]).into_owned());
        }
        off += (len + 3) & !3;
    }
    None
}

/// The kind an errno maps to.
pub fn kind_of(errno: Errno) -> ErrorKind {
    match errno {
        Errno::ENOENT | Errno::ENODEV | Errno::ESRCH | Errno::EADDRNOTAVAIL => ErrorKind::NotFound,
        Errno::EEXIST | Errno::EADDRINUSE => ErrorKind::AlreadyExists,
        Errno::EOPNOTSUPP => ErrorKind::Unsupported,
        Errno::EINVAL | Errno::ERANGE | Errno::E2BIG | Errno::EPROTONOSUPPORT => {
            ErrorKind::InvalidArgument
        }
        _ => ErrorKind::Os,
    }
}

/// `context: <strerror> (kernel: <ext ack>)` with the matching kind.
pub fn nl_error(e: rtnetlink::Error, context: impl std::fmt::Display) -> WireError {
    match &e {
        rtnetlink::Error::NetlinkError(m) => {
            let errno = Errno::from_raw(-m.raw_code());
            let ext = ext_ack_message(&m.header)
                .map(|s| format!(" (kernel: {s})"))
                .unwrap_or_default();
            WireError::new(kind_of(errno), format!("{context}: {}{ext}", errno.desc()))
        }
        _ => WireError::os(format!("{context}: {e}")),
    }
}

/// An io error with context; `NotFound` for a missing path.
pub fn io_error(e: std::io::Error, context: impl std::fmt::Display) -> WireError {
    let kind = match e.kind() {
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
        std::io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
        std::io::ErrorKind::InvalidInput => ErrorKind::InvalidArgument,
        _ => ErrorKind::Os,
    };
    WireError::new(kind, format!("{context}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ext_ack_is_found_after_the_capped_header() {
        let mut p = vec![0u8; NLMSGHDR_LEN];
        // an OFFS attribute first, then MSG
        p.extend_from_slice(&8u16.to_ne_bytes());
        p.extend_from_slice(&2u16.to_ne_bytes());
        p.extend_from_slice(&7u32.to_ne_bytes());
        let msg = b"Unknown device type\0";
        p.extend_from_slice(&((4 + msg.len()) as u16).to_ne_bytes());
        p.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        p.extend_from_slice(msg);
        assert_eq!(ext_ack_message(&p).as_deref(), Some("Unknown device type"));
        assert_eq!(ext_ack_message(&p[..NLMSGHDR_LEN]), None);
    }

    #[test]
    fn errno_kinds() {
        assert_eq!(kind_of(Errno::EOPNOTSUPP), ErrorKind::Unsupported);
        assert_eq!(kind_of(Errno::ENODEV), ErrorKind::NotFound);
        assert_eq!(kind_of(Errno::EEXIST), ErrorKind::AlreadyExists);
    }
}
