//! `lnst-capture --iface IF --filter BPF`: the packet counter of the
//! `packet_assert` module (`lnst_agent::tools::capture_main`), a program of
//! its own so that only it links libpcap. `lnst-agent capture ARGS` runs
//! it from beside the agent's own executable; the agent daemon itself maps
//! none of libpcap's ten libraries (dbus, systemd, gcrypt, …), which cost
//! every VM lab guest ~0.04 s of CPU to load at boot.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = lnst_agent::tools::capture_main(&args);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
