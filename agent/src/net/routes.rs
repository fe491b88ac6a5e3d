//! `ip route add|del DST [via GW] [dev DEV] [table T] [metric M]`, IPv4 and
//! IPv6. `route_add` records `DelRoute`; `route_del` finds the route as
//! the kernel has it (protocol, scope, type, table, metric, src, via, dev,
//! onlink) and records `AddSavedRoute` with all of it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use lnst_common::device::DevRef;
use lnst_common::host::RouteSpec;
use lnst_common::WireError;
use netlink_packet_route::route::{RouteAttribute, RouteMessage, RouteProtocol, RouteScope};
use netlink_packet_route::AddressFamily;
use rtnetlink::RouteMessageBuilder;

use super::addrs::parse_cidr;
use super::error::{errno_of, nl_error};
use super::links::get_link;
use super::nsthread::NsConn;
use super::saved::{dump_routes, SavedRoute};
use super::{ns_label, NetUndo, Nets, Recorder};

/// `ip route` words of a spec, for messages.
pub fn describe(r: &RouteSpec) -> String {
    let mut s = r.dst.clone();
    if let Some(v) = &r.via {
        s += &format!(" via {v}");
    }
    if let Some(d) = &r.dev {
        s += &format!(" dev {d}");
    }
    if let Some(t) = r.table {
        s += &format!(" table {t}");
    }
    if let Some(m) = r.metric {
        s += &format!(" metric {m}");
    }
    s
}

/// Builds the route message; `oif` is the ifindex of `r.dev`. For a
/// delete, protocol and scope are left open so that routes the kernel or
/// others added match too (as `ip route del` does).
pub fn build_message(
    r: &RouteSpec,
    oif: Option<u32>,
    for_delete: bool,
) -> Result<RouteMessage, WireError> {
    let bad = |why: String| WireError::invalid(format!("route {}: {why}", describe(r)));
    let via: Option<IpAddr> = match &r.via {
        Some(v) => Some(
            v.parse()
                .map_err(|_| bad(format!("via {v:?} is not an IP address")))?,
        ),
        None => None,
    };
    let dst = match r.dst.as_str() {
        // `default` follows the gateway's family (IPv4 without one), like
        // `ip route add default via ...` / `ip -6 route add default ...`.
        "default" => match via {
            Some(IpAddr::V6(_)) => (IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
            _ => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        },
        "default6" | "::/0" => (IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
        d => parse_cidr(d).map_err(|e| bad(e.message))?,
    };
    if let Some(v) = via {
        if v.is_ipv4() != dst.0.is_ipv4() {
            return Err(bad("via and dst are of different address families".into()));
        }
    }
    if via.is_none() && oif.is_none() {
        return Err(bad("give via, dev or both".into()));
    }
    let mut b = RouteMessageBuilder::<IpAddr>::new();
    if dst.1 == 0 {
        b.get_mut().header.address_family = if dst.0.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
    } else {
        b = b
            .destination_prefix(dst.0, dst.1)
            .map_err(|e| bad(e.to_string()))?;
    }
    if let Some(v) = via {
        b = b.gateway(v).map_err(|e| bad(e.to_string()))?;
    }
    if let Some(i) = oif {
        b = b.output_interface(i);
    }
    if let Some(t) = r.table {
        b = b.table_id(t);
    }
    if let Some(m) = r.metric {
        b = b.priority(m);
    }
    if for_delete {
        b = b.protocol(RouteProtocol::Unspec).scope(RouteScope::NoWhere);
    } else if via.is_none() && dst.0.is_ipv4() {
        b = b.scope(RouteScope::Link);
    }
    Ok(b.build())
}

async fn message(
    conn: &NsConn,
    netns: Option<&str>,
    r: &RouteSpec,
    for_delete: bool,
) -> Result<RouteMessage, WireError> {
    let oif = oif_of(conn, netns, r.dev.as_deref()).await?;
    build_message(r, oif, for_delete)
}

/// `ip route add ...`
pub async fn route_add(
    nets: &Nets,
    rec: &dyn Recorder,
    netns: Option<&str>,
    route: &RouteSpec,
) -> Result<(), WireError> {
    let conn = nets.conn(netns).await?;
    let msg = message(&conn, netns, route, false).await?;
    rec.record(NetUndo::DelRoute {
        netns: netns.map(str::to_string),
        route: route.clone(),
    })?;
    conn.rt.route().add(msg).execute().await.map_err(|e| {
        nl_error(
            e,
            format!("ip route add {} in {}", describe(route), ns_label(netns)),
        )
    })
}

/// `ip route del ...`
pub async fn route_del(
    nets: &Nets,
    rec: &dyn Recorder,
    netns: Option<&str>,
    route: &RouteSpec,
) -> Result<(), WireError> {
    let conn = nets.conn(netns).await?;
    // Validate (and resolve dev) before recording anything.
    let want = message(&conn, netns, route, true).await?;
    let Some(found) = find(&conn, netns, &want).await? else {
        return Err(WireError::not_found(format!(
            "ip route del {} in {}: no such route",
            describe(route),
            ns_label(netns)
        )));
    };
    rec.record(NetUndo::AddSavedRoute {
        netns: netns.map(str::to_string),
        route: found.clone(),
    })?;
    // Delete exactly the route saved (the first match, as `ip route del`).
    let oif = oif_of(&conn, netns, found.dev.as_deref()).await?;
    conn.rt
        .route()
        .del(found.message(oif)?)
        .execute()
        .await
        .map_err(|e| {
            nl_error(
                e,
                format!("ip route del {} in {}", describe(route), ns_label(netns)),
            )
        })
}

fn table_of(m: &RouteMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(m.header.table))
}

/// The first route in the kernel matching the delete request `want` (as
/// `ip route del` picks it): same family, destination and table (main by
/// default), and the metric, gateway and device when given.
async fn find(
    conn: &NsConn,
    netns: Option<&str>,
    want: &RouteMessage,
) -> Result<Option<SavedRoute>, WireError> {
    let attr = |m: &RouteMessage, f: fn(&RouteAttribute) -> bool| {
        m.attributes.iter().find(|a| f(a)).cloned()
    };
    let is_dst = |a: &RouteAttribute| matches!(a, RouteAttribute::Destination(_));
    let is_gw = |a: &RouteAttribute| matches!(a, RouteAttribute::Gateway(_));
    let is_oif = |a: &RouteAttribute| matches!(a, RouteAttribute::Oif(_));
    let is_prio = |a: &RouteAttribute| matches!(a, RouteAttribute::Priority(_));
    let want_table = match table_of(want) {
        0 => 254,
        t => t,
    };
    let all = dump_routes(conn, netns).await?;
    let Some(m) = all.iter().find(|m| {
        m.header.address_family == want.header.address_family
            && m.header.destination_prefix_length == want.header.destination_prefix_length
            && attr(m, is_dst) == attr(want, is_dst)
            && table_of(m) == want_table
            && [is_gw, is_oif, is_prio]
                .iter()
                .all(|f| attr(want, *f).is_none() || attr(m, *f) == attr(want, *f))
    }) else {
        return Ok(None);
    };
    let mut names = std::collections::HashMap::new();
    if let Some(RouteAttribute::Oif(i)) = attr(m, is_oif) {
        let l = super::links::get_link_by_index(conn, i).await?;
        names.insert(i, super::links::link_name(&l).to_string());
    }
    Ok(SavedRoute::from_message(m, |i| names.get(&i).cloned()))
}

/// The ifindex of a route's device (by name) now, if it names one.
async fn oif_of(
    conn: &NsConn,
    netns: Option<&str>,
    dev: Option<&str>,
) -> Result<Option<u32>, WireError> {
    let Some(name) = dev else { return Ok(None) };
    let d = DevRef {
        netns: netns.map(str::to_string),
        name: name.to_string(),
    };
    Ok(Some(get_link(conn, &d).await?.header.index))
}

/// `ip route add` of a [`SavedRoute`]; one already there is fine.
pub(crate) async fn apply_add_saved(
    nets: &Nets,
    netns: Option<&str>,
    r: &SavedRoute,
) -> Result<(), WireError> {
    let conn = nets.conn(netns).await?;
    let oif = oif_of(&conn, netns, r.dev.as_deref()).await?;
    match conn.rt.route().add(r.message(oif)?).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno_of(&e) == Some(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(nl_error(
            e,
            format!("ip route add {} in {}", r.describe(), ns_label(netns)),
        )),
    }
}

/// Adds a route; with `tolerant`, one already present is fine.
pub(crate) async fn apply_add(
    nets: &Nets,
    netns: Option<&str>,
    route: &RouteSpec,
    tolerant: bool,
) -> Result<(), WireError> {
    let conn = nets.conn(netns).await?;
    let msg = message(&conn, netns, route, false).await?;
    match conn.rt.route().add(msg).execute().await {
        Ok(()) => Ok(()),
        Err(e) if tolerant && errno_of(&e) == Some(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(nl_error(
            e,
            format!("ip route add {} in {}", describe(route), ns_label(netns)),
        )),
    }
}

/// Deletes a route; with `tolerant`, one already gone is fine.
pub(crate) async fn apply_del(
    nets: &Nets,
    netns: Option<&str>,
    route: &RouteSpec,
    tolerant: bool,
) -> Result<(), WireError> {
    let conn = nets.conn(netns).await?;
    let msg = match message(&conn, netns, route, true).await {
        Ok(m) => m,
        // its device is gone, and the route with it
        Err(e) if tolerant && e.kind == lnst_common::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    match conn.rt.route().del(msg).execute().await {
        Ok(()) => Ok(()),
        Err(e) if tolerant && errno_of(&e) == Some(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => {
            let mut w = nl_error(
                e,
                format!("ip route del {} in {}", describe(route), ns_label(netns)),
            );
            if w.message.contains("No such process") {
                w.kind = lnst_common::ErrorKind::NotFound;
                w.message = w.message.replace("No such process", "no such route");
            }
            Err(w)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::route::RouteAddress;

    fn spec(dst: &str, via: Option<&str>) -> RouteSpec {
        RouteSpec {
            dst: dst.into(),
            via: via.map(Into::into),
            dev: None,
            table: Some(100),
            metric: Some(7),
        }
    }

    #[test]
    fn v4_v6_default() {
        let m = build_message(&spec("10.1.0.0/16", Some("10.0.0.1")), None, false).unwrap();
        assert_eq!(m.header.address_family, AddressFamily::Inet);
        assert_eq!(m.header.destination_prefix_length, 16);
        assert!(m
            .attributes
            .contains(&RouteAttribute::Gateway(RouteAddress::Inet(
                "10.0.0.1".parse().unwrap()
            ))));
        assert!(m.attributes.contains(&RouteAttribute::Priority(7)));
        let m = build_message(&spec("default", Some("fd00::1")), Some(3), false).unwrap();
        assert_eq!(m.header.address_family, AddressFamily::Inet6);
        assert_eq!(m.header.destination_prefix_length, 0);
        assert!(m.attributes.contains(&RouteAttribute::Oif(3)));
        assert!(build_message(&spec("10.0.0.0/8", Some("fd00::1")), None, false).is_err());
        assert!(build_message(&spec("10.0.0.0/8", None), None, false).is_err());
        assert!(build_message(&spec("nonsense", Some("10.0.0.1")), None, false).is_err());
    }
}
