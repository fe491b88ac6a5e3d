//! The test-phase API: what `fn test(m)` sees. One file per script-visible
//! type — [`ctx`] (`m`), [`host`] (`m.h1`), [`device`] (`m.h1.eth0`),
//! [`job`] (`h.run(..)`) — each declaring its whole surface in its
//! `register` function, all called from [`register_all`]. [`API`] is the
//! reference that `lnst-ctl api` prints.
//!
//! The types are cheap handles (`Rc` inside): Rhai clones values, and a
//! handle makes `m.h1.eth0.mtu = 9000` change the one shared device.
//! Native calls reach the agents through [`Core::request`], which blocks
//! the recipe thread on the runtime and gives up on Ctrl-C.

pub mod ctx;
pub mod device;
pub mod host;
pub mod job;
pub mod module;
pub mod soft;

use std::cell::RefCell;
use std::future::Future;
use std::path::PathBuf;
use std::time::Instant;

use lnst_common::{Request, Response};
use rhai::{Engine, EvalAltResult};

use crate::client::{AgentClient, ClientError};
use crate::report::{ResultRec, Verdict};

use super::engine::Cancel;

/// Result type of native functions.
pub type R<T> = Result<T, Box<EvalAltResult>>;

/// A runtime error for the recipe (it may `catch` it).
pub fn err<T>(msg: impl Into<String>) -> R<T> {
    Err(msg.into().into())
}

/// Shared state of one match's test phase.
pub struct Core {
    /// Runtime that owns the agent clients.
    pub rt: tokio::runtime::Handle,
    pub cancel: Cancel,
    /// Result lines in order.
    pub results: RefCell<Vec<ResultRec>>,
    /// First infrastructure failure (an agent lost): the run exits 3.
    pub infra: RefCell<Option<String>>,
    /// `jobs/` of the run directory, for each job's stdout and stderr.
    pub jobs_dir: Option<PathBuf>,
    /// Every job started, to kill and note those still running at the end.
    pub jobs: RefCell<Vec<job::Job>>,
    pub started: Instant,
    /// Shows what is running (a TTY status line), or does nothing.
    pub status: Box<dyn Fn(&str)>,
    /// The match's agents (filled as hosts are made): any of them lost
    /// stops whatever the recipe is waiting for, even a local `m.sleep`.
    pub clients: RefCell<Vec<AgentClient>>,
    /// `m.breakpoint` and `--pause-on-fail` (`interact::breakpoint`).
    pub pause: crate::interact::breakpoint::Pause,
    /// Every host and namespace object made so far, so `dev.host` returns
    /// the one a device is on. Cleared by `job::end_of_test` (a Host holds
    /// the Core: this breaks the cycle).
    pub hosts: RefCell<Vec<host::Host>>,
}

impl Core {
    /// Runs an async operation to completion on the runtime; stops at
    /// Ctrl-C, and with an infrastructure error when an agent is lost.
    pub fn block<T>(&self, fut: impl Future<Output = T>) -> R<T> {
        if self.pause.quitting() {
            return Err(crate::interact::breakpoint::Pause::quit_error());
        }
        let cancel = self.cancel.clone();
        let clients = self.clients.borrow().clone();
        let lost = async move {
            if clients.is_empty() {
                return std::future::pending().await;
            }
            let each = clients.iter().map(|c| Box::pin(c.lost()));
            futures::future::select_all(each).await.0
        };
        let r = self.rt.block_on(async move {
            tokio::select! {
                r = fut => Ok(r),
                _ = cancel.cancelled() => Err(None),
                e = lost => Err(Some(e)),
            }
        });
        match r {
            Ok(v) => Ok(v),
            Err(Some(e)) => Err(self.client_error(e)),
            Err(None) => Err(EvalAltResult::ErrorTerminated(
                "interrupted".into(),
                rhai::Position::NONE,
            )
            .into()),
        }
    }

    /// One request to an agent. An error reply becomes a catchable runtime
    /// error; a lost or broken agent also marks the run as an
    /// infrastructure failure.
    pub fn request(&self, client: &AgentClient, req: Request) -> R<Response> {
        let c = client.clone();
        match self.block(async move { c.request(req).await })? {
            Ok(r) => Ok(r),
            Err(e) => Err(self.client_error(e)),
        }
    }

    /// Converts a client error, noting infrastructure failures.
    pub fn client_error(&self, e: ClientError) -> Box<EvalAltResult> {
        if e.remote().is_none() {
            self.infra.borrow_mut().get_or_insert_with(|| e.to_string());
        }
        e.to_string().into()
    }

    /// Appends a result line; returns its index.
    pub fn push_result(&self, mut r: ResultRec) -> usize {
        r.at = self.started.elapsed().as_secs_f64();
        let n = {
            let mut v = self.results.borrow_mut();
            v.push(r.clone());
            v.len() - 1
        };
        self.result_changed(&r);
        n
    }

    /// A result line was added or got its verdict: the status line
    /// recounts, and `--pause-on-fail` may pause.
    pub fn result_changed(&self, r: &ResultRec) {
        (self.status)("");
        self.pause.after_result(self, r);
    }

    /// Records a PASS/FAIL line with no host or job.
    pub fn check(&self, ok: bool, desc: String, data: serde_json::Map<String, serde_json::Value>) {
        self.push_result(ResultRec {
            host: None,
            job: None,
            desc,
            result: Verdict::from_bool(ok),
            data,
            note: None,
            at: 0.0,
        });
    }
}

/// A finished job's result as JSON (for `perf`).
pub fn value_of(j: &job::Job) -> Option<serde_json::Map<String, serde_json::Value>> {
    match crate::recipe::value::to_json(&j.result_value()) {
        serde_json::Value::Object(o) => Some(o),
        _ => None,
    }
}

/// Registers every script-visible type and function of the test phase.
pub fn register_all(engine: &mut Engine) {
    ctx::register(engine);
    host::register(engine);
    device::register(engine);
    job::register(engine);
    module::register(engine);
    soft::register(engine);
}

/// One entry of the API reference.
pub struct ApiItem {
    pub sig: &'static str,
    pub doc: &'static str,
}

const fn item(sig: &'static str, doc: &'static str) -> ApiItem {
    ApiItem { sig, doc }
}

/// The recipe API, printed by `lnst-ctl api`. A unit test checks that each
/// function named here is registered.
pub const API: &[ApiItem] = &[
    item("param(name: string, default) -> value", "Declares a param; its type is the default's (int, float, bool, string, array, map). Returns the effective value (`-- name=value` overrides)."),
    item("param(name: string, default, help: string) -> value", "Same, with a help line shown by `lnst-ctl validate`. A `()` default makes the param required (a string)."),
    item("param(name: string, (), help: string, type: string) -> value", "A required param of a named type: \"int\", \"float\", \"bool\", \"string\", \"array\" or \"map\" (`-- name=VALUE` is parsed to it)."),
    item("host(name: string) -> HostRequirement", "Declares a host requirement; in `test`, `m.NAME` is the matched host."),
    item("host(name: string, params: map) -> HostRequirement", "Same; each key must equal the pool machine's param (an array means one of)."),
    item("HostRequirement.nic(name: string) -> HostRequirement", "Declares an interface requirement; in `test`, `h.NAME` is the matched device."),
    item("HostRequirement.nic(name: string, attrs: map) -> HostRequirement", "Same; `net` is a network label (NICs with one label share an L2 network), other keys match the pool NIC's attributes (driver, speed, ..). On a lab, `driver` is what the lab gives: the netns lab `veth`; the VM lab emulates `virtio_net` (default), `e1000e`, `e1000`, `vmxnet3` or `8139cp`; another driver is an error before anything runs."),
    item("print(value)", "Writes a line to the run log, with the recipe line."),
    item("debug(value)", "Writes a debug line to the run log, with the recipe line."),
    item("Ctx.NAME -> Host", "The matched host for requirement NAME (also `m[\"NAME\"]`)."),
    item("Ctx.hosts -> array", "All matched hosts, in declaration order."),
    item("Ctx.params -> map", "Every param with its effective value."),
    item("Ctx.check(cond: bool, desc: string) -> bool", "Records a PASS or FAIL result; returns cond; does not stop the test."),
    item("Ctx.result(passed: bool, desc: string, data: map)", "Records a result with data (shown in the summary and JSON)."),
    item("Ctx.sleep(seconds: float|int)", "Sleeps (Ctrl-C interrupts)."),
    item("Ctx.breakpoint(why: string)", "Pauses with everything configured and shows how to enter each host and its devices; Enter continues, q ends the test (cleanup runs), `HOST COMMAND` runs a command on a host. A logged no-op when stdin is not a terminal."),
    item("Ctx.wait_any(jobs: array, timeout: float|int) -> Job|()", "Waits until one of the jobs has finished and returns it (the first finished in the array's order), or () at the timeout; without a timeout it waits as long as it takes."),
    item("Host.name -> string", "Requirement name."),
    item("Host.machine -> string", "Pool machine id."),
    item("Host.params -> map", "Pool machine params."),
    item("Host.NIC -> Device", "The matched NIC named NIC in the recipe (also `h[\"NIC\"]`), a device the recipe created, or one a job made (`ip link add`), found by name."),
    item("Host.NAME = Host", "`h.ns1 = h.netns(\"ns1\")` (LNST's habit): keeps the namespace object as a member; `h.ns1` returns it."),
    item("Host.netns_name -> string|()", "A namespace object's kernel name (as `ip netns list` shows it, `lnst-<agent>-s<session>-NAME`), for shell jobs: `ip netns exec ${ns.netns_name} ..`; () for a host itself."),
    item("Host.devices -> array", "Every device now on the host (`ip link show`)."),
    item("Host.run(command: string) -> Job", "Runs `command` on the host as `sh -c` would (a simple command is exec'd directly); a result line. Foreground: waits (timeout 60 s)."),
    item("Host.run(command: string, opts: map) -> Job", "Options: bg (bool), timeout (seconds, foreground), expect_fail (bool), cwd (string), env (map), json (parse stdout into job.result), desc (string), netns (a namespace object, the name given to `h.netns(..)`, or a name as `ip netns` lists it), undo (a shell command journaled as with `h.defer` before the job starts; runs in the job's namespace)."),
    item("Host.run(module: Module) -> Job", "Runs a test module (see below); background modules (servers, captures) start in the background and return once ready."),
    item("Host.run(module: Module, opts: map) -> Job", "Same with run options (desc, timeout, netns, ..)."),
    item("ping(opts: map) -> Module", "#{ dst, count, interval, size, iface, max_loss, timeout, ttl } (iface: a name or a device such as m.h1.eth0); result #{ sent, received, loss, rtt_min, rtt_avg, rtt_max, rtt_mdev }; passes when loss <= max_loss (default 0)."),
    item("iperf_server(opts: map) -> Module", "#{ bind, port, oneoff, cpu }; runs in the background, ready when it listens; cpu pins it (`iperf3 -A`)."),
    item("iperf_client(opts: map) -> Module", "#{ server, port, duration, proto (\"tcp\", \"udp\", \"sctp\"), parallel, bitrate, reverse, len (bytes per write, `-l`), cpu (pin, `-A`), cport (client port), bind (source address) }; result #{ bps, retransmits, cpu_local, cpu_remote, intervals, proto }."),
    item("packet_assert(opts: map) -> Module", "#{ iface, filter, min, max } (iface: a name or a device); background, stop with kill(); result #{ packets }; passes when min <= packets <= max."),
    item("cpu_stat(opts: map) -> Module", "#{ interval }; background; per-CPU utilisation samples."),
    item("Host.NAME = SPEC", "Creates a soft device NAME on the host (`ip link add NAME type KIND ..`); then `h.NAME` is the device."),
    item("Host.create(name: string, spec: DeviceSpec) -> Device", "Same, returning the device."),
    item("Host.netns(name: string) -> Host", "`ip netns add`: a namespace on the host; a host-like object with the same members (removed after the run)."),
    item("Host.sysctl(key: string) -> string", "`sysctl KEY` (net.* keys in the host's namespace)."),
    item("Host.sysctl(key: string, value)", "`sysctl -w KEY=VALUE`; restored after the run."),
    item("Host.read(path: string) -> string", "Reads a file such as under /proc or /sys."),
    item("Host.write(path: string, value)", "Writes a file; the old content is restored after the run."),
    item("Host.route_add(route: map)", "`ip route add` with #{ dst, via, dev, table, metric }; removed after the run."),
    item("Host.route_del(route: map)", "`ip route del` with the same keys."),
    item("Host.neigh_add(neigh: map)", "`ip neigh replace DST lladdr MAC dev DEV nud permanent` with #{ dst, lladdr, dev } (dev: a device or its name); removed after the run, or the static entry it replaced put back."),
    item("Host.neigh_del(neigh: map)", "`ip neigh del DST dev DEV` with #{ dst, dev }; a static entry is put back after the run."),
    item("Host.neighs() -> array", "`ip neigh show`: #{ dst, lladdr, dev, state } per entry (state as ip prints it: PERMANENT, REACHABLE, STALE, ..)."),
    item("Host.neighs(dev: Device|string) -> array", "`ip neigh show dev DEV`."),
    item("Host.service(name: string, action: string) -> string", "`systemctl start|stop|restart NAME`; returns `systemctl is-active NAME` after it; the unit is started or stopped after the run to be as active as before. Needs systemd on the host (an error says so when there is no service manager); a VM lab guest has it with `host(\"h1\", #{ init: \"systemd\" })`."),
    item("Host.send_file(local: string, remote: string)", "Copies a local file to the host."),
    item("Host.recv_file(remote: string, local: string)", "Copies a file from the host."),
    item("Host.defer(command: string)", "A shell command (`sh -c`, in the host's or namespace's netns) the agent runs when the run's changes are undone, in reverse order with them, also after a crash of the controller or the agent; killed after 30 s. For what has no API: tc, nft, xfrm, files a job made."),
    item("veth(opts: map) -> DeviceSpec", "#{ peer, peer_netns }: the pair; the peer is h.PEER (or ns.PEER); peer_netns is a namespace object, the name given to `h.netns(..)`, or a name as `ip netns` lists it."),
    item("bridge(opts: map) -> DeviceSpec", "#{ stp, vlan_filtering }"),
    item("bond(opts: map) -> DeviceSpec", "Every option of `ip link add type bond`: #{ mode, miimon, updelay, downdelay, peer_notify_delay, use_carrier, arp_interval, arp_validate, arp_all_targets, arp_ip_target (array or \"A,B\"), ns_ip6_target, arp_missed_max, primary, primary_reselect, fail_over_mac, xmit_hash_policy, resend_igmp, num_grat_arp / num_unsol_na, all_slaves_active, min_links, lp_interval, packets_per_slave, tlb_dynamic_lb, lacp_rate, lacp_active, ad_select, ad_user_port_key, ad_actor_sys_prio, ad_actor_system, coupled_control, broadcast_neigh }; a wrong value names the accepted ones. Ports join with dev.master = bond (an up port is taken down for the change and brought back up)."),
    item("team(opts: map) -> DeviceSpec", "#{ runner, link_watch }: runner activebackup (default), roundrobin, loadbalance, broadcast, lacp, random; link_watch ethtool (default), arp_ping, nsna_ping, or a map with name and teamd options. The agent starts teamd for it and stops it after the run; ports join with dev.master = team."),
    item("vlan(opts: map) -> DeviceSpec", "#{ link, id, protocol }"),
    item("macvlan(opts: map) -> DeviceSpec", "#{ link, mode } (also ipvlan)."),
    item("vxlan(opts: map) -> DeviceSpec", "#{ id, link, local, remote, group, dstport, ttl }"),
    item("geneve(opts: map) -> DeviceSpec", "#{ id, remote, dstport }"),
    item("gre(opts: map) -> DeviceSpec", "#{ local, remote, key, ttl, link } (also gretap, ip6gre; vti without ttl)."),
    item("ipip(opts: map) -> DeviceSpec", "#{ local, remote, ttl, link, mode } (also sit, ip6tnl); mode as `ip link` takes it: ipip ipip|mplsip|any, sit ip6ip|ipip|mplsip|any, ip6tnl ip6ip6|ipip6|any."),
    item("macsec(opts: map) -> DeviceSpec", "#{ link, port, encrypt }: `ip link add link LINK NAME type macsec`; keys via `ip macsec` jobs."),
    item("dummy() -> DeviceSpec", "A dummy device."),
    item("vrf(opts: map) -> DeviceSpec", "#{ table }"),
    item("perf(opts: map) -> map", "#{ client: h1, server: h2, dst, duration, runs, proto, parallel, port, bitrate, reverse, len, cpu, desc }: iperf `runs` times, one result with every sample, its line named by desc or `perf PROTO DST (CLIENT -> SERVER)`; returns #{ samples, mean, stddev, unit: \"bps\", evaluation: #{ verdict, change_pct, baseline_n, reason } } judged against the results store's history of the same measurement (PASS, FAIL: a regression seen twice, IMPROVED, NOISY, NO_BASELINE)."),
    item("Job.id -> int", "Agent job id."),
    item("Job.finished -> bool", "Whether the job has ended."),
    item("Job.passed -> bool", "Exit 0 (inverted by expect_fail); a job killed by its timeout fails; one stopped with kill() passes."),
    item("Job.exit_code -> int|()", "Exit code, () while running or when killed by a signal."),
    item("Job.signal -> int|()", "The signal that ended it, or ()."),
    item("Job.stdout -> string", "Standard output (so far, while running)."),
    item("Job.stderr -> string", "Standard error (when finished)."),
    item("Job.result -> value", "Parsed JSON stdout (`json: true`) or a module's result; () otherwise."),
    item("Job.duration -> float", "Seconds from start to end (or until now)."),
    item("Job.wait() -> bool", "Waits until the job ends; returns true (it finished), as wait(timeout) would."),
    item("Job.wait(timeout: float|int) -> bool", "Waits up to timeout seconds; returns whether it finished."),
    item("Job.kill()", "SIGTERM to the job's process group, then waits for it; the job passes."),
    item("Job.kill(signal: string)", "Same with a signal name (\"SIGINT\", \"KILL\", ..)."),
    item("Job.wait_output(regex: string, timeout: float|int) -> bool", "Waits until stdout matches regex (e.g. a server is ready); returns whether it did. A program writing into a pipe may hold its output back until it exits: `iperf3 --forceflush`, or `stdbuf -oL CMD` for stdio programs."),
    item("Device.name -> string", "Interface name (`ip link show DEV`)."),
    item("Device.ifindex -> int", "Interface index."),
    item("Device.kind -> string", "Link kind, \"\" for a physical NIC."),
    item("Device.driver -> string", "Driver name (`ethtool -i`)."),
    item("Device.mac -> string", "MAC address; settable (`ip link set DEV address MAC`)."),
    item("Device.mtu -> int", "MTU; settable (`ip link set DEV mtu N`)."),
    item("Device.state -> string", "\"up\" or \"down\" (administrative)."),
    item("Device.carrier -> bool", "Carrier (refreshed on each read)."),
    item("Device.ips -> array", "Addresses as \"addr/prefix\" (`ip addr show DEV`)."),
    item("Device.master -> Device|()", "The master device (bridge, bond) or (); settable to a Device, its name or () (`ip link set DEV master M|nomaster`; a port joining a bond or team is taken down for the change and brought back to its state). Devices compare with == by namespace and name, and with a string by name."),
    item("Device.stats -> map", "rx/tx bytes, packets, dropped, errors (`ip -s link`), refreshed on each read."),
    item("Device.features -> map", "ethtool features (`ethtool -k DEV`), readable by the `ethtool -k` names and by the `ethtool -K` short names alike (`features.gro`)."),
    item("Device.host -> Host", "The host or namespace object the device is on (after move_to, the namespace); hosts compare with == (same agent, same namespace)."),
    item("Device.info() -> map", "Every attribute above in one map (name, ifindex, kind, driver, mac, mtu, state, carrier, ips, master, stats, features, host), the values as the properties give them, read fresh."),
    item("Device.up()", "`ip link set DEV up`."),
    item("Device.down()", "`ip link set DEV down`."),
    item("Device.ip_add(cidr: string)", "`ip addr add CIDR dev DEV`; an IPv6 address is usable when it returns (duplicate address detection done; a duplicate is an error and the address is removed). On a device that is down DAD runs when it comes up."),
    item("Device.ip_add(cidr: string, opts: map)", "Same with #{ nodad: true }: `ip addr add CIDR dev DEV nodad`, no DAD."),
    item("Device.ip_del(cidr: string)", "`ip addr del CIDR dev DEV`."),
    item("Device.ip_flush()", "`ip addr flush dev DEV`."),
    item("Device.set_features(features: map)", "`ethtool -K DEV gro off ..`."),
    item("Device.coalesce -> map", "`ethtool -c DEV` by `ethtool -C` names with _: rx_usecs, rx_frames, tx_usecs, tx_frames, adaptive_rx (bool), adaptive_tx, *_irq, *_low, *_high, pkt_rate_low/high, stats_block_usecs, sample_interval. Set by assigning a map of the keys to change (`dev.coalesce = #{ rx_usecs: 50 }`, `ethtool -C`); restored after the run. A key the driver lacks is an error naming it."),
    item("Device.rings -> map", "`ethtool -g DEV`: rx, rx_mini, rx_jumbo, tx and their max_*; set rx, rx_mini, rx_jumbo, tx by assigning a map (`ethtool -G`); restored after the run."),
    item("Device.channels -> map", "`ethtool -l DEV`: rx, tx, other, combined and their max_*; set by assigning a map (`ethtool -L`); restored after the run."),
    item("Device.pause -> map", "`ethtool -a DEV`: autoneg, rx, tx (bools); set by assigning a map (`ethtool -A`); restored after the run."),
    item("Device.netem(opts: map|())", "`tc qdisc replace dev DEV root netem ..` with #{ delay, jitter (ms), loss, duplicate, reorder, corrupt (percent), rate (bits per second) }; `dev.netem(())` removes it (`tc qdisc del dev DEV root`). The root qdisc of before is back after the run. Needs a kernel with sch_netem (the VM lab's)."),
    item("Device.wait_carrier(timeout: float|int) -> bool", "Waits until the device has carrier."),
    item("Device.move_to(netns: Host|string)", "`ip link set DEV netns NS`: NS is a namespace object from `h.netns(..)` (the device then is `ns.NAME`) the name given to `h.netns(..)` (the same), or a namespace name as `ip netns` lists it."),
    item("Device.destroy()", "`ip link del DEV`."),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every function or property in [`API`] is registered under that name.
    #[test]
    fn api_table_matches_registration() {
        let state = crate::recipe::declare::DeclState::new(Default::default());
        let engine = crate::recipe::engine::new(
            crate::recipe::Names::new("t.rhai", std::path::Path::new("")),
            state,
            std::rc::Rc::new(|_| {}),
            Cancel::new(),
        );
        let sigs = engine.gen_fn_signatures(false).join("\n");
        for it in API {
            let head = it.sig.split(['(', ' ']).next().unwrap_or("");
            let name = head.rsplit('.').next().unwrap_or(head);
            if name == "NAME" || name == "NIC" || name == "debug" {
                continue; // indexer fallback / built-in
            }
            let getter = format!("get${name}");
            assert!(
                sigs.contains(&format!("{name}(")) || sigs.contains(&getter),
                "{} is not registered",
                it.sig
            );
        }
    }
}
