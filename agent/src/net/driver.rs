//! `ethtool -i DEV`: the driver name through the `SIOCETHTOOL` ioctl with
//! `ETHTOOL_GDRVINFO` (ethtool netlink has no driver query), and the raw
//! `ETHTOOL_SFEATURES` ioctl that `features.rs` uses to change offloads.
//! The ioctls go to an AF_INET socket created in the device's namespace.

use std::os::fd::{AsRawFd, OwnedFd};

use lnst_common::WireError;

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;
const ETHTOOL_SFEATURES: u32 = 0x0000_003b;

/// `struct ethtool_drvinfo` of `<linux/ethtool.h>`.
#[repr(C)]
struct DrvInfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

/// `struct ifreq` with `ifr_data`.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

fn ifreq(dev: &str, data: *mut libc::c_void) -> Result<IfReq, WireError> {
    let mut name = [0u8; libc::IFNAMSIZ];
    if dev.is_empty() || dev.len() >= libc::IFNAMSIZ {
        return Err(WireError::invalid(format!("invalid device name {dev:?}")));
    }
    name[..dev.len()].copy_from_slice(dev.as_bytes());
    Ok(IfReq {
        name,
        data,
        _pad: [0; 16],
    })
}

pub(super) fn ethtool_ioctl(
    sock: &OwnedFd,
    dev: &str,
    data: *mut libc::c_void,
    what: &str,
) -> Result<i32, WireError> {
    let mut req = ifreq(dev, data)?;
    // SAFETY: `req` is a valid ifreq whose data pointer points at a live
    // buffer of the layout the command expects, for the duration of the call.
    // The kernel takes rtnl_lock for most ethtool commands: this may wait.
    let r = crate::blocking::in_place(|| unsafe {
        libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut req as *mut IfReq)
    });
    if r < 0 {
        let e = std::io::Error::last_os_error();
        return Err(super::error::io_error(e, format!("ethtool {what} {dev}")));
    }
    Ok(r)
}

/// `ethtool -i DEV` → `driver:` (`veth`, `bridge`, ...).
pub fn driver_name(sock: &OwnedFd, dev: &str) -> Result<String, WireError> {
    Ok(drvinfo(sock, dev)?.driver)
}

/// What `ethtool -i DEV` prints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drv {
    pub driver: String,
    pub version: String,
    pub firmware: String,
    pub bus: String,
}

/// `ethtool -i DEV`: driver, version, firmware-version, bus-info.
pub fn drvinfo(sock: &OwnedFd, dev: &str) -> Result<Drv, WireError> {
    // SAFETY: DrvInfo is plain old data; all-zero is a valid value.
    let mut info: DrvInfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    ethtool_ioctl(
        sock,
        dev,
        &mut info as *mut DrvInfo as *mut libc::c_void,
        "-i",
    )?;
    let s = |b: &[u8; 32]| {
        let end = b.iter().position(|&c| c == 0).unwrap_or(32);
        String::from_utf8_lossy(&b[..end]).into_owned()
    };
    Ok(Drv {
        driver: s(&info.driver),
        version: s(&info.version),
        firmware: s(&info.fw_version),
        bus: s(&info.bus_info),
    })
}

const ETHTOOL_GSET: u32 = 0x0000_0001;

/// `ethtool DEV` → `Speed:` in Mb/s through the legacy `ETHTOOL_GSET`
/// (`struct ethtool_cmd`: `speed` at byte 12, `speed_hi` at byte 28);
/// `None` for `Unknown!` (`SPEED_UNKNOWN`, or 0 on a device without carrier).
pub fn link_speed(sock: &OwnedFd, dev: &str) -> Result<Option<u32>, WireError> {
    // struct ethtool_cmd is 44 bytes; u32 words keep the buffer aligned.
    let mut buf = [0u32; 11];
    buf[0] = ETHTOOL_GSET;
    ethtool_ioctl(sock, dev, buf.as_mut_ptr() as *mut libc::c_void, "(speed)")?;
    let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let lo = u16::from_ne_bytes([bytes[12], bytes[13]]) as u32;
    let hi = u16::from_ne_bytes([bytes[28], bytes[29]]) as u32;
    let speed = (hi << 16) | lo;
    Ok((speed != 0 && speed != u32::MAX && speed != 0xFFFF).then_some(speed))
}

/// `ETHTOOL_SFEATURES`: sets feature bits (`index → on`). `count` is the
/// number of feature strings ([`feature_bits`]); the kernel insists on
/// exactly its number of 32-bit words. Returns the ioctl's non-negative
/// result (flags such as `ETHTOOL_F_UNSUPPORTED`).
pub fn set_feature_bits(
    sock: &OwnedFd,
    dev: &str,
    count: usize,
    bits: &[(u32, bool)],
) -> Result<i32, WireError> {
    let max = bits.iter().map(|b| b.0 as usize + 1).max().unwrap_or(0);
    let blocks = count.max(max).div_ceil(32);
    // struct ethtool_sfeatures { u32 cmd; u32 size; { u32 valid; u32 requested; } features[size]; }
    let mut buf = vec![0u32; 2 + 2 * blocks];
    buf[0] = ETHTOOL_SFEATURES;
    buf[1] = blocks as u32;
    for &(i, on) in bits {
        let b = (i / 32) as usize;
        let m = 1u32 << (i % 32);
        buf[2 + 2 * b] |= m;
        if on {
            buf[3 + 2 * b] |= m;
        }
    }
    ethtool_ioctl(sock, dev, buf.as_mut_ptr() as *mut libc::c_void, "-K")
}

const ETHTOOL_GSTRINGS: u32 = 0x0000_001b;
const ETHTOOL_GSSET_INFO: u32 = 0x0000_0037;
const ETHTOOL_GFEATURES: u32 = 0x0000_003a;
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;

/// One feature as `ETHTOOL_GFEATURES` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureBit {
    /// Number of feature strings of the device (same for every bit).
    pub count: usize,
    /// Kernel name (`rx-gro`, `tx-checksum-ipv4`, ...).
    pub name: String,
    pub index: u32,
    /// In `hw_features`: user-changeable.
    pub changeable: bool,
    pub active: bool,
    /// Can never change (`[fixed]` even if in hw).
    pub never_changed: bool,
}

/// `ethtool -k DEV` at the ioctl level: the feature string set
/// (`ETHTOOL_GSSET_INFO` + `ETHTOOL_GSTRINGS`) and the feature words
/// (`ETHTOOL_GFEATURES`).
pub fn feature_bits(sock: &OwnedFd, dev: &str) -> Result<Vec<FeatureBit>, WireError> {
    // struct ethtool_sset_info { u32 cmd; u32 reserved; u64 sset_mask; u32 data[]; }
    let mut sset = [0u32; 5];
    sset[0] = ETHTOOL_GSSET_INFO;
    let mask = 1u64 << ETH_SS_FEATURES;
    sset[2] = mask as u32;
    sset[3] = (mask >> 32) as u32;
    ethtool_ioctl(sock, dev, sset.as_mut_ptr() as *mut libc::c_void, "-k")?;
    let count = sset[4] as usize;
    if count == 0 {
        return Ok(vec![]);
    }
    // struct ethtool_gstrings { u32 cmd; u32 string_set; u32 len; u8 data[]; }
    let mut gs = vec![0u8; 12 + count * ETH_GSTRING_LEN];
    gs[0..4].copy_from_slice(&ETHTOOL_GSTRINGS.to_ne_bytes());
    gs[4..8].copy_from_slice(&ETH_SS_FEATURES.to_ne_bytes());
    gs[8..12].copy_from_slice(&(count as u32).to_ne_bytes());
    ethtool_ioctl(sock, dev, gs.as_mut_ptr() as *mut libc::c_void, "-k")?;
    // struct ethtool_gfeatures { u32 cmd; u32 size; { u32 available, requested, active, never_changed; }[size] }
    let blocks = count.div_ceil(32);
    let mut gf = vec![0u32; 2 + 4 * blocks];
    gf[0] = ETHTOOL_GFEATURES;
    gf[1] = blocks as u32;
    ethtool_ioctl(sock, dev, gf.as_mut_ptr() as *mut libc::c_void, "-k")?;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let raw = &gs[12 + i * ETH_GSTRING_LEN..12 + (i + 1) * ETH_GSTRING_LEN];
        let end = raw.iter().position(|&b| b == 0).unwrap_or(ETH_GSTRING_LEN);
        let name = String::from_utf8_lossy(&raw[..end]).into_owned();
        if name.is_empty() {
            continue;
        }
        let (b, m) = (i / 32, 1u32 << (i % 32));
        let word = |k: usize| gf[2 + 4 * b + k] & m != 0;
        out.push(FeatureBit {
            count,
            name,
            index: i as u32,
            changeable: word(0) && !word(3),
            active: word(2),
            never_changed: word(3),
        });
    }
    Ok(out)
}
