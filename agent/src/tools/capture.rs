//! `lnst-agent capture --iface IF --filter BPF`: counts the packets on an
//! interface that match a BPF filter, for the `packet_assert` module.
//!
//! The capture goes through libpcap (the `pcap` crate): an `AF_PACKET`
//! socket with the filter compiled by libpcap and attached in the kernel,
//! as `tcpdump -i IF -n BPF` would do, without parsing tcpdump's text. Once
//! the socket is bound and the filter attached it prints `READY` on stderr,
//! so the controller (or a recipe's `wait_output`) knows that every packet
//! from then on is counted. On SIGTERM/SIGINT it drains what the kernel has
//! already queued, prints `{"packets": N, "dropped": D}` on stdout and exits
//! 0. `dropped` is what the kernel dropped for lack of buffer space
//! (`pcap_stats`); those packets are not in `packets`.

use std::io::Write;
use std::os::fd::AsRawFd;

use pcap::{Active, Capture};

use super::{check_known, install_stop_handler, stop_requested, take_opt};

/// How long one `poll` on the capture socket waits before checking for a
/// stop signal again (the signal also interrupts the `poll`).
const POLL_MS: u16 = 100;

/// Entry point of `lnst-agent capture`; `args` are the arguments after the
/// subcommand name. Returns the process exit code: 0 after a clean stop,
/// 1 when the capture fails, 2 for bad arguments.
pub fn capture_main(args: &[String]) -> i32 {
    let (iface, filter) = match parse_args(args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("lnst-agent capture: {e}");
            eprintln!("usage: lnst-agent capture --iface IF [--filter BPF]");
            return 2;
        }
    };
    match run(&iface, &filter) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("lnst-agent capture: {e}");
            1
        }
    }
}

fn parse_args(args: &[String]) -> Result<(String, String), String> {
    check_known(args, &["iface", "filter"])?;
    let iface = take_opt(args, "iface")?.ok_or("missing --iface")?;
    let filter = take_opt(args, "filter")?.unwrap_or_default();
    Ok((iface, filter))
}

#[tracing::instrument(name = "capture", skip_all, fields(iface = %iface, filter = %filter))]
fn run(iface: &str, filter: &str) -> Result<(), String> {
    install_stop_handler().map_err(|e| format!("installing signal handlers: {e}"))?;
    let mut cap = Capture::from_device(iface)
        .and_then(|c| {
            c.promisc(false)
                .snaplen(256)
                .immediate_mode(true)
                .buffer_size(4 << 20)
                .open()
        })
        .map_err(|e| format!("opening a capture on {iface:?}: {e}"))?;
    // `tcpdump -d FILTER` shows what this compiles to; an empty filter
    // matches every packet.
    cap.filter(filter, true)
        .map_err(|e| format!("compiling filter {filter:?}: {e}"))?;
    let mut cap = cap
        .setnonblock()
        .map_err(|e| format!("setting non-blocking mode: {e}"))?;
    eprintln!("READY");
    let _ = std::io::stderr().flush();

    let mut packets: u64 = 0;
    loop {
        packets += drain(&mut cap)?;
        if stop_requested() {
            break;
        }
        wait_readable(&cap);
    }
    // Packets the kernel queued before the signal are still counted.
    packets += drain(&mut cap)?;
    let dropped = cap.stats().map(|s| s.dropped).unwrap_or(0);
    println!("{{\"packets\": {packets}, \"dropped\": {dropped}}}");
    let _ = std::io::stdout().flush();
    Ok(())
}

/// Reads every packet queued right now; returns how many there were.
fn drain(cap: &mut Capture<Active>) -> Result<u64, String> {
    let mut n = 0;
    loop {
        match cap.next_packet() {
            Ok(_) => n += 1,
            Err(pcap::Error::TimeoutExpired) => return Ok(n),
            Err(e) => return Err(format!("reading packets: {e}")),
        }
    }
}

/// Waits until the capture socket has data, [`POLL_MS`] pass, or a signal
/// interrupts the wait.
fn wait_readable(cap: &Capture<Active>) {
    let mut fds = [libc::pollfd {
        fd: cap.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: one valid pollfd, owned by this frame; the fd belongs to `cap`,
    // which outlives the call. EINTR (the stop signal) and timeouts both just
    // return to the caller's loop.
    unsafe { libc::poll(fds.as_mut_ptr(), 1, i32::from(POLL_MS)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_need_an_interface() {
        let a: Vec<String> = vec!["--filter".into(), "icmp".into()];
        assert!(parse_args(&a).unwrap_err().contains("--iface"));
        let a: Vec<String> = vec!["--iface".into(), "lo".into()];
        assert_eq!(parse_args(&a).unwrap(), ("lo".into(), String::new()));
        assert_eq!(capture_main(&["--bogus".into()]), 2);
    }
}
