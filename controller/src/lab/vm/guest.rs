//! What a VM lab guest boots into: a small initramfs (a static busybox,
//! the kernel modules needed to reach the root, and `/init`) that mounts
//! the host's `/` read-only over 9p under a tmpfs overlay and
//! `switch_root`s into it, so the guest runs the very binaries and tools
//! of the netns lab (`lnst-agent`, dash as `/bin/sh`, `ip`, `tc`, `ping`,
//! `iperf3`, `teamd`) with no image to maintain, and every write lands in
//! guest memory: each run starts from the same state.
//!
//! Per-guest settings travel on the kernel command line (`lnst.host=`,
//! `lnst.agent=`, `lnst.modules=`, `lnst.nic=NAME,MAC`), so one archive
//! serves every guest of a lab. `/init` also:
//! - binds the kernel's unpacked modules to `/lib/modules/<release>` in
//!   the new root (the host's `modprobe` then loads any module a recipe
//!   needs, also on the kernel's own request);
//! - sets module options so that loading bonding, dummy or ifb creates no
//!   `bond0`/`dummy0`/`ifb0`, and keeps tunnel modules' fallback devices
//!   (`gre0`, `tunl0`, ...) out of every namespace;
//! - renames the NICs, matched by MAC, to the recipe's names (through
//!   temporary names, as eth0 → eth1 would clash);
//! - links `/dev/virtio-ports/<name>` (no udev here);
//! - starts `lnst-agent --virtio-port` and powers off when it exits.
//!
//! It reports progress and failure on the console (`LNST-GUEST-ERROR`),
//! which the lab keeps as `console-<host>.log` in the run directory.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use cpio::newc::{trailer, Builder};

/// Modules the guest needs before its root is mounted (with their
/// dependencies, resolved from `modules.dep`): virtio PCI transport, 9p,
/// the overlay, the agent's port and the NICs.
pub const EARLY_MODULES: &[&str] = &[
    "virtio_pci",
    "9pnet_virtio",
    "9p",
    "overlay",
    "virtio_console",
    "virtio_net",
];

/// The systemd a guest with `init: "systemd"` boots (the host's, seen
/// through the 9p root).
pub const SYSTEMD: &str = "/lib/systemd/systemd";

/// The 9p tag of the host's root.
pub const ROOT_TAG: &str = "hostroot";

/// The virtio-serial port name the agent serves on.
pub const PORT_NAME: &str = "lnst.agent";

/// The guest's shell console: a virtio console (`/dev/hvc0` in the guest,
/// a unix socket `HOST.shell` in the lab record on the host) on which
/// `/init` keeps an interactive shell for `lnst-ctl shell`.
pub const SHELL_TTY: &str = "/dev/hvc0";

/// What the guest writes on the shell console when its shell exited (a
/// new one starts): `lnst-ctl shell` leaves when it sees this.
pub const SHELL_EXITED: &str = "lnst-guest: shell exited";

/// The guest's console line that says a step of `/init` failed.
pub const GUEST_ERROR: &str = "LNST-GUEST-ERROR";

/// How long either side of a guest's session may stay silent before the
/// other counts it as lost: a TCG guest on a loaded 2-core host stalls for
/// seconds (a 3 s limit lost agents under a parallel build, and once, at a
/// load of 7 with a release link running, 20 s was not enough either), and
/// a guest that really died is seen at once anyway: its qemu exits and the
/// socket closes.
pub const SILENCE_MS: u64 = 60_000;

/// Where the static busybox comes from (Debian's `busybox-static`).
pub const BUSYBOX: &str = "/bin/busybox";

/// Why the initramfs could not be made.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error("{BUSYBOX} not found: the VM lab's guests start from a static busybox; install it with `apt-get install busybox-static`")]
    NoBusybox,
    #[error("{BUSYBOX} is dynamically linked and cannot run in the guest's initramfs; install the static one with `apt-get install busybox-static`")]
    DynamicBusybox,
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot write the initramfs {path}: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// Whether an ELF file asks for a dynamic loader (has a `PT_INTERP`).
pub fn is_dynamic_elf(b: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(b[32..40].try_into().unwrap_or([0; 8])) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        b.get(o..o + 4)
            .map(|t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]) == PT_INTERP)
            .unwrap_or(false)
    })
}

/// The busybox applets `/init` calls by name; the initramfs links each in
/// `/bin`.
const INIT_APPLETS: &[&str] = &[
    "cp",
    "hostname",
    "ip",
    "ln",
    "mkdir",
    "modprobe",
    "mount",
    "sleep",
    "switch_root",
];

/// The `/init` script. `modules`: module names (files `/m/NAME.ko`), in
/// load order.
pub fn init_script(modules: &[String]) -> String {
    let mods = modules.join(" ");
    format!(
        r#"#!/bin/busybox sh
# lnst VM lab guest init, generated by lnst-ctl (lab/vm/guest.rs).
# Applets are called by name: Debian's static busybox runs mkdir, ln, cp,
# modprobe, ip and hostname in a forked shell with no exec (1-1.5 ms of
# guest CPU under TCG, against 3.5 ms for an exec). mount and switch_root
# do exec, so the mounts go in three `mount -a` batches. /bin holds a link
# per applet for a busybox built without that.
export PATH=/bin
fail() {{ echo "{GUEST_ERROR} $*"; echo o > /proc/sysrq-trigger; sleep 30; }}
mkdir -p /proc /sys /dev /host /rw /newroot /lib/modules
printf 'proc /proc proc defaults 0 0\nsys /sys sysfs defaults 0 0\ndev /dev devtmpfs defaults 0 0\nrw /rw tmpfs mode=0755 0 0\n' > /fstab.early
mount -a -T /fstab.early
# devtmpfs is one file system however often it is mounted: these also
# appear in the new root's /dev.
mkdir -p /rw/upper /rw/work /dev/pts /dev/shm /dev/virtio-ports
HOST=guest; AGENT=; MODS=; NICS=; ARGS=; V=; INIT=
# Files are read and written with the shell's own `read` and `printf`: a
# `cat` would be an exec.
read -r CMDLINE < /proc/cmdline
for x in $CMDLINE; do
  case "$x" in
    lnst.host=*) HOST="${{x#*=}}" ;;
    lnst.agent=*) AGENT="${{x#*=}}" ;;
    lnst.modules=*) MODS="${{x#*=}}" ;;
    lnst.nic=*) NICS="$NICS ${{x#*=}}" ;;
    lnst.verbose=*) ARGS="-v"; V=1 ;;
    lnst.init=*) INIT="${{x#*=}}" ;;
  esac
done
# With lnst.verbose=1 (LNST_VM_AGENT_VERBOSE), each step's uptime.
t() {{ [ -n "$V" ] && read -r up _ < /proc/uptime && echo "lnst-init $up $*"; }}
t start
read -r REL < /proc/sys/kernel/osrelease
# One modprobe for all (an insmod each cost 15 execs): /m holds the
# modules, in load order, with a modules.dep that lnst-ctl wrote.
ln -s /m /lib/modules/$REL
[ -z "{mods}" ] || modprobe -a {mods} || fail "modprobe {mods}"
t modules loaded
printf '{ROOT_TAG} /host 9p ro,trans=virtio,version=9p2000.L,msize=512000,cache=loose 0 0\noverlay /newroot overlay lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work 0 0\n' > /fstab.root
mount -a -T /fstab.root || fail "mount of the host root over 9p, or of the overlay on it (see the lines above)"
t root mounted
R=/newroot
mkdir -p $R/etc/modprobe.d $R/lib/modules/$REL
printf 'proc %s/proc proc defaults 0 0\nsys %s/sys sysfs defaults 0 0\ndev %s/dev devtmpfs defaults 0 0\ndevpts %s/dev/pts devpts defaults 0 0\nshm %s/dev/shm tmpfs defaults 0 0\nrun %s/run tmpfs mode=0755 0 0\ncgroup2 %s/sys/fs/cgroup cgroup2 defaults 0 0\n' $R $R $R $R $R $R $R > /fstab.new
[ -z "$MODS" ] || echo "/host$MODS $R/lib/modules/$REL none bind 0 0" >> /fstab.new
mount -a -T /fstab.new
[ -d $R/proc/self ] && [ -c $R/dev/null ] || fail "mounts in the new root (see the lines above)"
[ -z "$MODS" ] || [ -e $R/lib/modules/$REL/modules.dep ] || fail "modules $MODS"
printf 'options bonding max_bonds=0\noptions dummy numdummies=0\noptions ifb numifbs=0\n' > $R/etc/modprobe.d/lnst-lab.conf
echo 2 > /proc/sys/net/core/fb_tunnels_only_for_init_net 2>/dev/null
for p in /sys/class/virtio-ports/*; do
  n=; read -r n < $p/name 2>/dev/null; [ -n "$n" ] && ln -sf ../${{p##*/}} $R/dev/virtio-ports/$n
done
# A NIC already under its name stays; the others go through temporary
# names, as eth0 -> eth1 would clash.
i=0; MAP=
for e in $NICS; do
  name="${{e%%,*}}"; mac="${{e#*,}}"; found=
  for d in /sys/class/net/*; do
    read -r a < $d/address
    if [ "$a" = "$mac" ]; then
      found=1
      [ "${{d##*/}}" = "$name" ] && continue
      i=$((i+1)); ip link set dev ${{d##*/}} name lnsttmp$i || fail "rename ${{d##*/}}"
      MAP="$MAP lnsttmp$i,$name"
    fi
  done
  [ -n "$found" ] || fail "no NIC with MAC $mac for $name"
done
for e in $MAP; do ip link set dev "${{e%%,*}}" name "${{e#*,}}" || fail "rename to ${{e#*,}}"; done
ip link set lo up
hostname "$HOST"
echo "$HOST" > $R/etc/hostname
: > $R/run/lnst-agent.toml
[ -x "$R$AGENT" ] || fail "agent $AGENT not found in the host root"
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root NO_COLOR=1 LNST_HEARTBEAT_MS=1000,{SILENCE_MS}
# lnst-ctl shell: an interactive shell on the shell console, with a prompt
# naming the host. It starts when someone attaches (lnst-ctl shell sends a
# newline first), so a guest nobody enters spends no CPU on it, and again
# after each exit.
{{ printf "export PS1='[lnst %s] # ' TERM=linux LNST_HOST='%s'\n" "$HOST" "$HOST"
  printf '%s\n' 'cd /root 2>/dev/null || cd /' \
    'while [ -c {SHELL_TTY} ]; do' \
    '  read -r _ <{SHELL_TTY} || {{ sleep 1; continue; }}' \
    '  /usr/bin/setsid -w -c /bin/sh -i <{SHELL_TTY} >{SHELL_TTY} 2>&1' \
    '  echo "{SHELL_EXITED}" >{SHELL_TTY}' \
    '  sleep 1' \
    'done'
}} > $R/run/lnst-shell
if [ "$INIT" = systemd ]; then
  # host("h1", #{{ init: "systemd" }}): systemd is PID 1 and starts only
  # lnst.target: the agent (its output on the console, the guest powered
  # off when it exits) and the shell loop, as units.
  D=$R/run/systemd/system; mkdir -p $D
  printf '[Unit]\nDescription=lnst VM lab guest\nRequires=lnst-agent.service lnst-shell.service\n' > $D/lnst.target
  printf '[Unit]\nDefaultDependencies=no\n[Service]\nEnvironment=PATH=%s HOME=%s NO_COLOR=1 LNST_HEARTBEAT_MS=%s\nExecStart=%s --virtio-port /dev/virtio-ports/{PORT_NAME} --state-dir /run/lnst-agent --config /run/lnst-agent.toml %s\nExecStopPost=/bin/sh -c "echo o > /proc/sysrq-trigger"\nStandardOutput=tty\nStandardError=tty\nTTYPath=/dev/console\nDelegate=yes\n' "$PATH" "$HOME" "$LNST_HEARTBEAT_MS" "$AGENT" "$ARGS" > $D/lnst-agent.service
  printf '[Unit]\nDefaultDependencies=no\n[Service]\nExecStart=/bin/sh /run/lnst-shell\nStandardOutput=null\nStandardError=null\n' > $D/lnst-shell.service
  # The guest's /tmp is the host's (read-only under the overlay). tmp.conf's
  # `D /tmp` would have systemd-tmpfiles-setup, which sysinit.target (so
  # any unit with default dependencies) pulls in, walk all of it over 9p
  # to hide it: 33 s of a 44 s sysinit.target with a build tree there.
  # /tmp stays as /init's guests have it.
  mkdir -p $R/run/tmpfiles.d && printf 'd /tmp 1777 root root -\n' > $R/run/tmpfiles.d/tmp.conf
  t starting systemd
  exec switch_root $R {SYSTEMD} --unit=lnst.target --show-status=false --log-level=warning
fi
# The static busybox (already in memory) runs the shell loop and starts
# the agent: dash from the 9p root cost ~0.1 s of guest CPU each.
mkdir -p $R/run/lnst-init && cp /bin/busybox $R/run/lnst-init/busybox
t starting the agent
exec switch_root $R /run/lnst-init/busybox sh -c "/run/lnst-init/busybox sh /run/lnst-shell </dev/null >/dev/null 2>&1 & \"$AGENT\" --virtio-port /dev/virtio-ports/{PORT_NAME} --state-dir /run/lnst-agent --config /run/lnst-agent.toml $ARGS; echo o > /proc/sysrq-trigger"
"#
    )
}

/// Writes the initramfs to `out`: busybox, `/init`, the modules.
/// `modules`: module files (absolute paths) in load order, and a reader
/// that returns each one's uncompressed bytes.
pub fn write_initramfs(
    out: &Path,
    modules: &[PathBuf],
    read_module: &dyn Fn(&Path) -> std::io::Result<Vec<u8>>,
) -> Result<(), GuestError> {
    let busybox = static_busybox()?;
    let mut names = Vec::new();
    let mut files: Vec<(String, u32, Vec<u8>)> = vec![
        ("bin".into(), 0o040755, Vec::new()),
        ("m".into(), 0o040755, Vec::new()),
        ("dev".into(), 0o040755, Vec::new()),
        ("bin/busybox".into(), 0o100755, busybox),
    ];
    files.extend(
        INIT_APPLETS
            .iter()
            .map(|a| (format!("bin/{a}"), 0o120777, b"busybox".to_vec())),
    );
    for m in modules {
        let name = m
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Compressed modules are stored uncompressed (busybox insmod
        // takes plain .ko files).
        let name = name
            .trim_end_matches(".xz")
            .trim_end_matches(".zst")
            .trim_end_matches(".gz")
            .to_string();
        let bytes = read_module(m).map_err(|source| GuestError::Read {
            path: m.clone(),
            error: source,
        })?;
        files.push((format!("m/{name}"), 0o100644, bytes));
        names.push(name);
    }
    // Each module without dependencies: `modprobe -a` gets them in load
    // order already (resolved from the kernel's own modules.dep).
    let dep: String = names.iter().map(|n| format!("{n}:\n")).collect();
    files.push(("m/modules.dep".into(), 0o100644, dep.into_bytes()));
    let names: Vec<String> = names
        .iter()
        .map(|n| n.trim_end_matches(".ko").to_string())
        .collect();
    files.push(("init".into(), 0o100755, init_script(&names).into_bytes()));
    write_archive(out, &files)
}

/// Writes a newc archive of `(path, mode, bytes)` entries (directories
/// with an empty body) plus `/dev/console`.
pub fn write_archive(out: &Path, files: &[(String, u32, Vec<u8>)]) -> Result<(), GuestError> {
    let mut w = Cursor::new(Vec::with_capacity(8 << 20));
    let io = |source| GuestError::Write {
        path: out.to_path_buf(),
        error: source,
    };
    for (ino, (name, mode, data)) in files.iter().enumerate() {
        let mut fp = Builder::new(name)
            .ino(ino as u32 + 1)
            .mode(*mode)
            .nlink(if *mode & 0o040000 != 0 { 2 } else { 1 })
            .write(&mut w, data.len() as u32);
        fp.write_all(data).map_err(io)?;
        fp.finish().map_err(io)?;
    }
    // /dev/console, so /init has its stdio before devtmpfs is mounted.
    let fp = Builder::new("dev/console")
        .ino(files.len() as u32 + 1)
        .mode(0o020600)
        .rdev_major(5)
        .rdev_minor(1)
        .write(&mut w, 0);
    fp.finish().map_err(io)?;
    trailer(&mut w).map_err(io)?;
    std::fs::write(out, w.into_inner()).map_err(io)
}

/// The static busybox, checked (for initramfs builders).
pub fn static_busybox() -> Result<Vec<u8>, GuestError> {
    let busybox = std::fs::read(BUSYBOX).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => GuestError::NoBusybox,
        _ => GuestError::Read {
            path: BUSYBOX.into(),
            error: e,
        },
    })?;
    if is_dynamic_elf(&busybox) {
        return Err(GuestError::DynamicBusybox);
    }
    Ok(busybox)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_script_loads_modules_in_order_and_starts_the_agent() {
        let s = init_script(&["virtio".into(), "9p".into()]);
        assert!(s.starts_with("#!/bin/busybox sh\n"));
        assert!(s.contains("|| modprobe -a virtio 9p ||"));
        assert!(s.contains("--virtio-port /dev/virtio-ports/lnst.agent"));
        assert!(s.contains("options bonding max_bonds=0"));
        // No Rust format braces leaked into the shell.
        assert!(!s.contains("{{"));
        // lnst.init=systemd: systemd starts the agent and the shell as units.
        assert!(s.contains("lnst.init=*) INIT="));
        assert!(s.contains("switch_root $R /lib/systemd/systemd --unit=lnst.target"));
        assert!(s.contains("ExecStart=%s --virtio-port /dev/virtio-ports/lnst.agent"));
    }

    #[test]
    fn tells_static_from_dynamic_elf() {
        let me = std::fs::read("/proc/self/exe").expect("own binary");
        assert!(is_dynamic_elf(&me), "the test binary is dynamically linked");
        assert!(!is_dynamic_elf(
            b"not an elf at all, but long enough to be looked at.........."
        ));
    }
}
