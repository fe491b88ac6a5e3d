//! `ip tuntap add NAME mode tun|tap [user UID] [multi_queue]`: not a
//! netlink message but the `TUNSETIFF` ioctl on `/dev/net/tun`, called on
//! a thread inside the target namespace (`super::super::nsthread::run_in`).

use std::os::fd::AsRawFd;

use lnst_common::WireError;

/// `_IOW('T', 202, int)` etc. of `<linux/if_tun.h>`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const TUNSETOWNER: libc::c_ulong = 0x4004_54cc;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;

/// `struct ifreq` with `ifr_flags`.
#[repr(C)]
struct TunReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// `ip tuntap add NAME mode tun|tap [user UID] [multi_queue]`: `TUNSETIFF`
/// on `/dev/net/tun`, then `TUNSETOWNER` and `TUNSETPERSIST` so the device
/// outlives the file descriptor. The device is made in the namespace of
/// the calling thread (the one that opens `/dev/net/tun`).
pub fn tuntap_add(
    name: &str,
    tap: bool,
    owner: Option<u32>,
    multi_queue: bool,
) -> Result<(), WireError> {
    let mode = if tap { "tap" } else { "tun" };
    let what = |step: &str| format!("ip tuntap add {name} mode {mode}: {step}");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                WireError::unsupported(format!(
                    "this kernel does not support {mode} devices (/dev/net/tun: {e})"
                ))
            } else {
                super::super::error::io_error(e, what("open /dev/net/tun"))
            }
        })?;
    let mut req = TunReq {
        name: [0; libc::IFNAMSIZ],
        flags: if tap { IFF_TAP } else { IFF_TUN } | IFF_NO_PI,
        _pad: [0; 22],
    };
    if multi_queue {
        req.flags |= IFF_MULTI_QUEUE;
    }
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    let fd = file.as_raw_fd();
    let check = |r: libc::c_int, step: &str| {
        if r < 0 {
            Err(super::super::error::io_error(
                std::io::Error::last_os_error(),
                what(step),
            ))
        } else {
            Ok(())
        }
    };
    // SAFETY: `req` is a valid ifreq for TUNSETIFF, alive for the call.
    check(
        unsafe { libc::ioctl(fd, TUNSETIFF, &mut req as *mut TunReq) },
        "TUNSETIFF",
    )?;
    if let Some(uid) = owner {
        // SAFETY: TUNSETOWNER takes the uid as the argument value.
        check(
            unsafe { libc::ioctl(fd, TUNSETOWNER, uid as libc::c_ulong) },
            "TUNSETOWNER",
        )?;
    }
    // SAFETY: TUNSETPERSIST takes 0/1 as the argument value.
    check(
        unsafe { libc::ioctl(fd, TUNSETPERSIST, 1 as libc::c_ulong) },
        "TUNSETPERSIST",
    )
}
