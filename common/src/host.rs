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
