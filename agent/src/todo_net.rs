//! PLACEHOLDER for the netlink layer: every device, host-configuration and
//! file request lands here and is refused as unsupported. The lead replaces
//! this module with the real domain modules when merging; each function
//! below is the seam for one request variant (same name, snake case).

use lnst_common::device::{DevRef, DeviceSpec};
use lnst_common::host::RouteSpec;
use lnst_common::{Response, WireError};

use crate::dispatch::SessionCtx;

type R = Result<Response, WireError>;

fn todo(what: &str) -> R {
    Err(WireError::unsupported(format!(
        "{what}: not implemented in this agent build"
    )))
}

pub async fn devices(_: &SessionCtx, _netns: Option<String>) -> R {
    todo("devices")
}
pub async fn set_mtu(_: &SessionCtx, _dev: DevRef, _mtu: u32) -> R {
    todo("set_mtu")
}
pub async fn set_mac(_: &SessionCtx, _dev: DevRef, _mac: String) -> R {
    todo("set_mac")
}
pub async fn set_state(_: &SessionCtx, _dev: DevRef, _up: bool) -> R {
    todo("set_state")
}
pub async fn set_master(_: &SessionCtx, _dev: DevRef, _master: Option<String>) -> R {
    todo("set_master")
}
pub async fn ip_add(_: &SessionCtx, _dev: DevRef, _cidr: String) -> R {
    todo("ip_add")
}
pub async fn ip_del(_: &SessionCtx, _dev: DevRef, _cidr: String) -> R {
    todo("ip_del")
}
pub async fn ip_flush(_: &SessionCtx, _dev: DevRef) -> R {
    todo("ip_flush")
}
pub async fn features(_: &SessionCtx, _dev: DevRef) -> R {
    todo("features")
}
pub async fn set_features(
    _: &SessionCtx,
    _dev: DevRef,
    _f: std::collections::BTreeMap<String, bool>,
) -> R {
    todo("set_features")
}
pub async fn wait_carrier(_: &SessionCtx, _dev: DevRef, _timeout_ms: u64) -> R {
    todo("wait_carrier")
}
pub async fn move_to(_: &SessionCtx, _dev: DevRef, _netns: Option<String>) -> R {
    todo("move_to")
}
pub async fn destroy(_: &SessionCtx, _dev: DevRef) -> R {
    todo("destroy")
}
pub async fn create(_: &SessionCtx, _netns: Option<String>, _name: String, _spec: DeviceSpec) -> R {
    todo("create")
}
pub async fn netns_create(_: &SessionCtx, _name: String) -> R {
    todo("netns_create")
}
pub async fn sysctl_get(_: &SessionCtx, _netns: Option<String>, _key: String) -> R {
    todo("sysctl_get")
}
pub async fn sysctl_set(_: &SessionCtx, _netns: Option<String>, _key: String, _value: String) -> R {
    todo("sysctl_set")
}
pub async fn file_read(_: &SessionCtx, _netns: Option<String>, _path: String) -> R {
    todo("file_read")
}
pub async fn file_write(
    _: &SessionCtx,
    _netns: Option<String>,
    _path: String,
    _data: Vec<u8>,
) -> R {
    todo("file_write")
}
pub async fn route_add(_: &SessionCtx, _netns: Option<String>, _route: RouteSpec) -> R {
    todo("route_add")
}
pub async fn route_del(_: &SessionCtx, _netns: Option<String>, _route: RouteSpec) -> R {
    todo("route_del")
}
pub async fn file_put(
    _: &SessionCtx,
    _path: String,
    _offset: u64,
    _data: Vec<u8>,
    _last: bool,
) -> R {
    todo("file_put")
}
pub async fn file_get(_: &SessionCtx, _path: String, _offset: u64, _len: u32) -> R {
    todo("file_get")
}
