//! The messages. After the [`crate::handshake`] preamble, every frame is a
//! [`ToAgent`] (controller → agent) or a [`ToController`] (agent →
//! controller).
//!
//! Session: the controller sends `Hello`; the agent answers `Welcome` or
//! `Refused` (another controller holds it). Then requests carry an `id`
//! chosen by the controller, and the agent answers each with a `Reply` of
//! the same id, in any order: several requests may be in flight. The agent
//! pushes `Event`s (job output, job exit, device changes) unasked. Both
//! sides send `Heartbeat` every [`HEARTBEAT_INTERVAL_MS`]; a peer silent for
//! [`HEARTBEAT_TIMEOUT_MS`] is gone.
//!
//! Naming: a request `SetMtu` is handled by the agent's `set_mtu` and
//! backs the recipe property `dev.mtu`; grep finds the whole path.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::device::{DevRef, DeviceInfo, DeviceSpec};
use crate::error::WireError;
use crate::host::{NeighInfo, NeighSpec, NetemSpec, RouteSpec};
use crate::job::{JobExit, JobId, JobSpec, JobStatus, Stream};

/// Default interval between heartbeats, both directions.
pub const HEARTBEAT_INTERVAL_MS: u64 = 1000;
/// Silence after which a peer is considered gone.
pub const HEARTBEAT_TIMEOUT_MS: u64 = 3000;

/// Controller → agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToAgent {
    /// First frame after the preamble. `controller` says who is asking
    /// ("user@host pid 1234"), shown to a second controller that is refused.
    Hello { controller: String },
    /// A request; answered by a `Reply` with the same `id`.
    Request { id: u64, req: Request },
    /// "Still here". Any frame counts as a sign of life; this one is for
    /// quiet periods.
    Heartbeat,
    /// Orderly end: the agent undoes the session and closes.
    Goodbye,
    /// `Hello` from a controller holding a shared-pool reservation:
    /// `fence` is the reservation's id (RECIPES.md §13). The agent refuses
    /// a fence older than the newest it has served, so a controller whose
    /// lease expired (and whose machines went to another run) cannot come
    /// back and change them.
    HelloFenced { controller: String, fence: u64 },
}

/// Agent → controller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToController {
    Welcome(Welcome),
    /// The agent will not serve this controller; the connection closes.
    Refused {
        reason: String,
    },
    Reply {
        id: u64,
        result: Result<Response, WireError>,
    },
    Event(Event),
    Heartbeat,
}

/// What an agent tells a controller it accepted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Welcome {
    pub hostname: String,
    /// `lnst-agent` package version, for `pool check`.
    pub agent_version: String,
    pub pid: u32,
    /// Entries that were left in the undo journal by an earlier agent and
    /// replayed at start-up (0 normally).
    pub replayed_at_start: u32,
    /// The host's kernel, CPU and NICs at session start (protocol 3).
    pub env: crate::env::HostEnv,
}

/// Everything a controller can ask of an agent. Grouped by domain; each
/// variant's doc names the command line it matches.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    // ---- session ----
    /// Answered with `Pong`; measures the round trip.
    Ping,
    /// Kill every job of this session and replay the undo journal. Answered
    /// with `Teardown` listing every error met (teardown does not stop at
    /// the first).
    EndSession,
    /// Test only: journal an entry whose undo appends `marker` and a newline
    /// to the file `path`. Lets tests watch the journal being replayed.
    JournalTest { path: String, marker: String },

    // ---- jobs ----
    /// `sh -c COMMAND`. Answered with `JobStarted`, or with `Job` once it
    /// ended when `spec.wait` is set.
    JobStart(JobSpec),
    /// Wait up to `timeout_ms` (forever if `None`) for the job to end;
    /// answered with `Job` (check `exit`: `None` means still running).
    JobWait { id: JobId, timeout_ms: Option<u64> },
    /// `kill -SIGNAL -PGID`: signals the job's whole process group.
    JobKill { id: JobId, signal: i32 },

    // ---- devices (ip link / ip addr / ethtool) ----
    /// `ip -d link show` in a namespace (`None`: the agent's own).
    Devices { netns: Option<String> },
    /// `ip link set DEV mtu N`
    SetMtu { dev: DevRef, mtu: u32 },
    /// `ip link set DEV address MAC`
    SetMac { dev: DevRef, mac: String },
    /// `ip link set DEV up|down`
    SetState { dev: DevRef, up: bool },
    /// `ip link set DEV master M` / `nomaster`
    SetMaster { dev: DevRef, master: Option<String> },
    /// `ip addr add CIDR dev DEV`
    IpAdd { dev: DevRef, cidr: String },
    /// `ip addr del CIDR dev DEV`
    IpDel { dev: DevRef, cidr: String },
    /// `ip addr flush dev DEV`
    IpFlush { dev: DevRef },
    /// `ethtool -k DEV`
    Features { dev: DevRef },
    /// `ethtool -K DEV gro off ...`
    SetFeatures {
        dev: DevRef,
        features: BTreeMap<String, bool>,
    },
    /// Waits until the device has carrier; answered with `Bool`.
    WaitCarrier { dev: DevRef, timeout_ms: u64 },
    /// `ip link set DEV netns NS` (`None`: the agent's own namespace).
    MoveTo { dev: DevRef, netns: Option<String> },
    /// `ip link del DEV`
    Destroy { dev: DevRef },
    /// `ip link add NAME type KIND ...` in `netns`.
    Create {
        netns: Option<String>,
        name: String,
        spec: DeviceSpec,
    },

    // ---- host configuration ----
    /// `ip netns add` under the session's prefix; answered with `Netns`
    /// carrying the full name.
    NetnsCreate { name: String },
    /// `sysctl KEY` (in `netns` for net.* keys); answered with `Text`.
    SysctlGet { netns: Option<String>, key: String },
    /// `sysctl -w KEY=VALUE`; the old value is restored after the run.
    SysctlSet {
        netns: Option<String>,
        key: String,
        value: String,
    },
    /// `cat PATH`; answered with `Bytes`.
    FileRead { netns: Option<String>, path: String },
    /// `echo VALUE > PATH`; the old content is restored after the run.
    FileWrite {
        netns: Option<String>,
        path: String,
        data: Vec<u8>,
    },
    /// `ip route add ...`
    RouteAdd {
        netns: Option<String>,
        route: RouteSpec,
    },
    /// `ip route del ...`
    RouteDel {
        netns: Option<String>,
        route: RouteSpec,
    },
    /// One chunk of `send_file`: written at `offset`; `last` closes the
    /// file. The first chunk (offset 0) creates or truncates it.
    FilePut {
        path: String,
        offset: u64,
        data: Vec<u8>,
        last: bool,
    },
    /// One chunk of `recv_file`; answered with `FileChunk`.
    FileGet { path: String, offset: u64, len: u32 },

    // ---- undo for what jobs change (added in protocol 1 wave 3) ----
    /// `h.defer(COMMAND)` / `run(.., #{ undo: COMMAND })`: journal
    /// `sh -c COMMAND` (in `netns`) to run when the session's changes are
    /// undone, in reverse order with them, also after a crash. Answered
    /// with `Done` once the entry is on disk.
    Defer {
        netns: Option<String>,
        command: String,
    },
    // ---- added for issue 11 (native APIs with exact undo) ----
    /// `ip neigh replace DST lladdr MAC dev DEV nud permanent`; an entry
    /// the recipe replaces is put back after the run, one it adds removed.
    NeighAdd {
        netns: Option<String>,
        neigh: NeighSpec,
    },
    /// `ip neigh del DST dev DEV`; a permanent entry is put back after the
    /// run.
    NeighDel {
        netns: Option<String>,
        neigh: NeighSpec,
    },
    /// `ip neigh show [dev DEV]`; answered with `Neighs`.
    Neighs {
        netns: Option<String>,
        dev: Option<String>,
    },
    /// `ethtool -c|-g|-l|-a DEV` (`group` is `coalesce`, `rings`,
    /// `channels` or `pause`); answered with `Settings`.
    EthtoolGet { dev: DevRef, group: String },
    /// `ethtool -C|-G|-L|-A DEV KEY VALUE ..`; the old values of the keys
    /// set are restored after the run. Answered with `Settings` as after.
    EthtoolSet {
        dev: DevRef,
        group: String,
        values: BTreeMap<String, i64>,
    },
    /// `ip addr add CIDR dev DEV [nodad]`: like `IpAdd`, which also waits
    /// for IPv6 DAD; `nodad` skips it.
    IpAddWith {
        dev: DevRef,
        cidr: String,
        nodad: bool,
    },
    /// `tc qdisc replace dev DEV root netem ..` (`None`: `tc qdisc del dev
    /// DEV root` of a netem qdisc); the root qdisc of before is back after
    /// the run.
    Netem {
        dev: DevRef,
        netem: Option<NetemSpec>,
    },
    /// `systemctl start|stop|restart NAME` (`action`); answered with
    /// `Text`, `systemctl is-active NAME` afterwards. The unit is started
    /// or stopped after the run to be as active as before.
    Service { name: String, action: String },
    /// Whether the undo journal is empty (nothing a run changed is left to
    /// undo); answered with `Bool`. A shared pool hands out a machine
    /// whose last holder died only after this says true.
    JournalEmpty,
}

/// Successful replies. Which one a request gets is documented on the
/// request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    Pong,
    /// Done; nothing to report.
    Done,
    Teardown {
        errors: Vec<String>,
    },
    JobStarted {
        id: JobId,
    },
    Job(JobStatus),
    Devices(Vec<DeviceInfo>),
    /// The device as it is after the change.
    Device(DeviceInfo),
    Features(BTreeMap<String, bool>),
    Bool(bool),
    Text(String),
    Bytes(Vec<u8>),
    Netns {
        name: String,
    },
    FileChunk {
        data: Vec<u8>,
        eof: bool,
    },
    /// Neighbour entries (`Neighs`).
    Neighs(Vec<NeighInfo>),
    /// An ethtool settings group, key → value (bools as 0/1).
    Settings(BTreeMap<String, i64>),
}

/// Pushed by the agent without being asked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Event {
    /// Bytes a job wrote, as they arrive.
    JobOutput {
        id: JobId,
        stream: Stream,
        data: Vec<u8>,
    },
    /// A job ended (its full output comes with `JobWait`).
    JobFinished(JobExit),
    /// A device appeared or changed (netlink notification).
    DeviceChanged {
        netns: Option<String>,
        device: DeviceInfo,
    },
    /// A device went away (or left the namespace).
    DeviceRemoved {
        netns: Option<String>,
        ifindex: u32,
        name: String,
    },
}
