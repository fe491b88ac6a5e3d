//! Host configuration carried on the wire: routes.

use serde::{Deserialize, Serialize};

/// `ip route add|del DST [via GW] [dev DEV] [table T] [metric M]`.
/// Addresses are text (`"10.0.0.0/24"`, `"default"`, `"fd00::1"`); the
/// controller checks them before sending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSpec {
    pub dst: String,
    pub via: Option<String>,
    pub dev: Option<String>,
    pub table: Option<u32>,
    pub metric: Option<u32>,
}

/// `ip neigh add|del DST [lladdr MAC] dev DEV`: a neighbour (ARP/NDP)
/// entry. `lladdr` is required to add and ignored to delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighSpec {
    /// An IPv4 or IPv6 address.
    pub dst: String,
    /// `aa:bb:cc:dd:ee:ff`.
    pub lladdr: Option<String>,
    pub dev: String,
}

/// One entry as `ip neigh show` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighInfo {
    pub dst: String,
    /// `None` for an entry without one (`INCOMPLETE`, `FAILED`).
    pub lladdr: Option<String>,
    pub dev: String,
    /// `ip neigh` words: `PERMANENT`, `REACHABLE`, `STALE`, `NOARP`, ..
    pub state: String,
}

/// `tc qdisc replace dev DEV root netem ..`: every field optional; times
/// in milliseconds, probabilities in percent, `rate` in bits per second.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetemSpec {
    pub delay: Option<f64>,
    pub jitter: Option<f64>,
    pub loss: Option<f64>,
    pub duplicate: Option<f64>,
    pub reorder: Option<f64>,
    pub corrupt: Option<f64>,
    pub rate: Option<u64>,
}
