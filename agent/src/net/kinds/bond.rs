//! `ip link add NAME type bond [mode M] [miimon N] ...`: every option of
//! `ip link add type bond` (ip-link(8), "BOND Type Support"), each
//! checked here with the accepted values named. Ports join later with
//! `ip link set PORT master NAME` (`super::super::links::set_master`,
//! which takes an up port down for the change).

use lnst_common::device::BondOptions;
use lnst_common::WireError;
use netlink_packet_route::link::{
    BondAdSelect, BondAllPortActive, BondArpAllTargets, BondArpValidate, BondFailOverMac,
    BondLacpRate, BondMode, BondPrimaryReselect, BondXmitHashPolicy, LinkMessage,
};
use rtnetlink::LinkBond;

use super::Ctx;

pub const MODES: &[(&str, BondMode)] = &[
    ("balance-rr", BondMode::BalanceRr),
    ("active-backup", BondMode::ActiveBackup),
    ("balance-xor", BondMode::BalanceXor),
    ("broadcast", BondMode::Broadcast),
    ("802.3ad", BondMode::Ieee8023Ad),
    ("balance-tlb", BondMode::BalanceTlb),
    ("balance-alb", BondMode::BalanceAlb),
    ("0", BondMode::BalanceRr),
    ("1", BondMode::ActiveBackup),
    ("2", BondMode::BalanceXor),
    ("3", BondMode::Broadcast),
    ("4", BondMode::Ieee8023Ad),
    ("5", BondMode::BalanceTlb),
    ("6", BondMode::BalanceAlb),
];
const XMIT_HASH: &[(&str, BondXmitHashPolicy)] = &[
    ("layer2", BondXmitHashPolicy::Layer2),
    ("layer3+4", BondXmitHashPolicy::Layer34),
    ("layer2+3", BondXmitHashPolicy::Layer23),
    ("encap2+3", BondXmitHashPolicy::Encap23),
    ("encap3+4", BondXmitHashPolicy::Encap34),
    ("vlan+srcmac", BondXmitHashPolicy::VlanSrcMac),
];
const LACP_RATE: &[(&str, BondLacpRate)] = &[
    ("slow", BondLacpRate::Slow),
    ("fast", BondLacpRate::Fast),
    ("0", BondLacpRate::Slow),
    ("1", BondLacpRate::Fast),
];
const ARP_VALIDATE: &[(&str, BondArpValidate)] = &[
    ("none", BondArpValidate::None),
    ("active", BondArpValidate::Active),
    ("backup", BondArpValidate::Backup),
    ("all", BondArpValidate::All),
    ("filter", BondArpValidate::Filter),
    ("filter_active", BondArpValidate::FilterActive),
    ("filter_backup", BondArpValidate::FilterBackup),
];
const ARP_ALL_TARGETS: &[(&str, BondArpAllTargets)] = &[
    ("any", BondArpAllTargets::Any),
    ("all", BondArpAllTargets::All),
];
const PRIMARY_RESELECT: &[(&str, BondPrimaryReselect)] = &[
    ("always", BondPrimaryReselect::Always),
    ("better", BondPrimaryReselect::Better),
    ("failure", BondPrimaryReselect::Failure),
];
const FAIL_OVER_MAC: &[(&str, BondFailOverMac)] = &[
    ("none", BondFailOverMac::None),
    ("active", BondFailOverMac::Active),
    ("follow", BondFailOverMac::Follow),
];
const AD_SELECT: &[(&str, BondAdSelect)] = &[
    ("stable", BondAdSelect::Stable),
    ("bandwidth", BondAdSelect::Bandwidth),
    ("count", BondAdSelect::Count),
    ("actor_port_prio", BondAdSelect::ActorPortPrio),
];

/// The kernel's limit on `arp_ip_target` and `ns_ip6_target` entries.
const MAX_TARGETS: usize = 16;

fn range(c: &Ctx, key: &str, v: u32, lo: u32, hi: u32) -> Result<u32, WireError> {
    if v < lo || v > hi {
        return Err(c.bad(key, &v.to_string(), &format!("{lo}-{hi}")));
    }
    Ok(v)
}

fn mac(c: &Ctx, key: &str, v: &str) -> Result<[u8; 6], WireError> {
    let parts: Vec<&str> = v.split(':').collect();
    let mut out = [0u8; 6];
    if parts.len() != 6 {
        return Err(c.bad(key, v, "a MAC address aa:bb:cc:dd:ee:ff"));
    }
    for (o, p) in out.iter_mut().zip(parts) {
        *o = u8::from_str_radix(p, 16)
            .map_err(|_| c.bad(key, v, "a MAC address aa:bb:cc:dd:ee:ff"))?;
    }
    Ok(out)
}

pub fn message(
    c: &Ctx,
    mode: Option<&str>,
    miimon: Option<u32>,
    xmit_hash_policy: Option<&str>,
    lacp_rate: Option<&str>,
    o: &BondOptions,
) -> Result<LinkMessage, WireError> {
    let mut b = LinkBond::new(c.name);
    if let Some(m) = mode {
        b = b.mode(c.pick("mode", m, MODES)?);
    }
    if let Some(n) = miimon {
        b = b.miimon(n);
    }
    if let Some(p) = xmit_hash_policy {
        b = b.xmit_hash_policy(c.pick("xmit_hash_policy", p, XMIT_HASH)?);
    }
    if let Some(r) = lacp_rate {
        b = b.ad_lacp_rate(c.pick("lacp_rate", r, LACP_RATE)?);
    }
    if let Some(v) = o.updelay {
        b = b.updelay(v);
    }
    if let Some(v) = o.downdelay {
        b = b.downdelay(v);
    }
    if let Some(v) = o.peer_notify_delay {
        b = b.peer_notif_delay(v);
    }
    if let Some(v) = o.use_carrier {
        b = b.use_carrier(v);
    }
    if let Some(v) = o.arp_interval {
        b = b.arp_interval(v);
    }
    if let Some(v) = &o.arp_validate {
        b = b.arp_validate(c.pick("arp_validate", v, ARP_VALIDATE)?);
    }
    if let Some(v) = &o.arp_all_targets {
        b = b.arp_all_targets(c.pick("arp_all_targets", v, ARP_ALL_TARGETS)?);
    }
    if let Some(ts) = &o.arp_ip_target {
        if ts.len() > MAX_TARGETS {
            return Err(c.bad("arp_ip_target", &ts.join(","), "at most 16 IPv4 addresses"));
        }
        let ips = ts
            .iter()
            .map(|t| c.ip4("arp_ip_target", t))
            .collect::<Result<Vec<_>, _>>()?;
        b = b.arp_ip_target(ips);
    }
    if let Some(ts) = &o.ns_ip6_target {
        if ts.len() > MAX_TARGETS {
            return Err(c.bad("ns_ip6_target", &ts.join(","), "at most 16 IPv6 addresses"));
        }
        let ips = ts
            .iter()
            .map(|t| c.ip6("ns_ip6_target", t))
            .collect::<Result<Vec<_>, _>>()?;
        b = b.ns_ip6_target(ips);
    }
    if let Some(v) = o.arp_missed_max {
        b = b.missed_max(range(c, "arp_missed_max", v.into(), 1, 255)? as u8);
    }
    if let Some(p) = &o.primary {
        b = b.primary(c.link(p)?);
    }
    if let Some(v) = &o.primary_reselect {
        b = b.primary_reselect(c.pick("primary_reselect", v, PRIMARY_RESELECT)?);
    }
    if let Some(v) = &o.fail_over_mac {
        b = b.fail_over_mac(c.pick("fail_over_mac", v, FAIL_OVER_MAC)?);
    }
    if let Some(v) = o.resend_igmp {
        b = b.resend_igmp(range(c, "resend_igmp", v, 0, 255)?);
    }
    if let Some(v) = o.num_peer_notif {
        b = b.num_peer_notif(v);
    }
    if let Some(v) = o.all_slaves_active {
        b = b.all_ports_active(if v {
            BondAllPortActive::Delivered
        } else {
            BondAllPortActive::Dropped
        });
    }
    if let Some(v) = o.min_links {
        b = b.min_links(v);
    }
    if let Some(v) = o.lp_interval {
        b = b.lp_interval(range(c, "lp_interval", v, 1, i32::MAX as u32)?);
    }
    if let Some(v) = o.packets_per_slave {
        b = b.packets_per_port(range(c, "packets_per_slave", v, 0, 65535)?);
    }
    if let Some(v) = o.tlb_dynamic_lb {
        b = b.tlb_dynamic_lb(v);
    }
    if let Some(v) = o.lacp_active {
        b = b.ad_lacp_active(v);
    }
    if let Some(v) = &o.ad_select {
        b = b.ad_select(c.pick("ad_select", v, AD_SELECT)?);
    }
    if let Some(v) = o.ad_user_port_key {
        b = b.ad_user_port_key(range(c, "ad_user_port_key", v.into(), 0, 1023)? as u16);
    }
    if let Some(v) = o.ad_actor_sys_prio {
        b = b.ad_actor_sys_prio(range(c, "ad_actor_sys_prio", v.into(), 1, 65535)? as u16);
    }
    if let Some(v) = &o.ad_actor_system {
        b = b.ad_actor_system(mac(c, "ad_actor_system", v)?);
    }
    if let Some(v) = o.coupled_control {
        b = b.append_info_data(netlink_packet_route::link::InfoBond::CoupledControl(v));
    }
    if let Some(v) = o.broadcast_neigh {
        b = b.append_info_data(netlink_packet_route::link::InfoBond::BroadcastNeigh(v));
    }
    Ok(b.build())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use lnst_common::device::{BondOptions, DeviceSpec};
    use lnst_common::ErrorKind;
    use netlink_packet_route::link::*;

    fn bond(mode: &str, opts: BondOptions) -> DeviceSpec {
        DeviceSpec::Bond {
            mode: Some(mode.into()),
            miimon: Some(100),
            xmit_hash_policy: Some("layer3+4".into()),
            lacp_rate: Some("fast".into()),
            opts: Box::new(opts),
        }
    }

    #[test]
    fn every_option_reaches_the_message() {
        let o = BondOptions {
            updelay: Some(200),
            downdelay: Some(300),
            peer_notify_delay: Some(400),
            use_carrier: Some(false),
            arp_interval: Some(250),
            arp_validate: Some("filter_active".into()),
            arp_all_targets: Some("all".into()),
            arp_ip_target: Some(vec!["10.0.0.1".into(), "10.0.0.2".into()]),
            ns_ip6_target: Some(vec!["fd00::1".into()]),
            arp_missed_max: Some(3),
            primary: Some("eth1".into()),
            primary_reselect: Some("better".into()),
            fail_over_mac: Some("active".into()),
            resend_igmp: Some(2),
            num_peer_notif: Some(5),
            all_slaves_active: Some(true),
            min_links: Some(1),
            lp_interval: Some(2),
            packets_per_slave: Some(3),
            tlb_dynamic_lb: Some(false),
            lacp_active: Some(true),
            ad_select: Some("bandwidth".into()),
            ad_user_port_key: Some(7),
            ad_actor_sys_prio: Some(100),
            ad_actor_system: Some("02:00:00:00:00:09".into()),
            coupled_control: Some(false),
            broadcast_neigh: Some(true),
        };
        let (k, d) = infos(&build(bond("802.3ad", o)));
        assert_eq!(k, Some(InfoKind::Bond));
        let Some(InfoData::Bond(v)) = d else { panic!() };
        for want in [
            InfoBond::Mode(BondMode::Ieee8023Ad),
            InfoBond::MiiMon(100),
            InfoBond::XmitHashPolicy(BondXmitHashPolicy::Layer34),
            InfoBond::AdLacpRate(BondLacpRate::Fast),
            InfoBond::UpDelay(200),
            InfoBond::DownDelay(300),
            InfoBond::PeerNotifDelay(400),
            InfoBond::UseCarrier(false),
            InfoBond::ArpInterval(250),
            InfoBond::ArpValidate(BondArpValidate::FilterActive),
            InfoBond::ArpAllTargets(BondArpAllTargets::All),
            InfoBond::ArpIpTarget(vec![
                "10.0.0.1".parse().unwrap(),
                "10.0.0.2".parse().unwrap(),
            ]),
            InfoBond::NsIp6Target(vec!["fd00::1".parse().unwrap()]),
            InfoBond::MissedMax(3),
            InfoBond::Primary(8),
            InfoBond::PrimaryReselect(BondPrimaryReselect::Better),
            InfoBond::FailOverMac(BondFailOverMac::Active),
            InfoBond::ResendIgmp(2),
            InfoBond::NumPeerNotif(5),
            InfoBond::AllPortsActive(BondAllPortActive::Delivered),
            InfoBond::MinLinks(1),
            InfoBond::LpInterval(2),
            InfoBond::PacketsPerPort(3),
            InfoBond::TlbDynamicLb(false),
            InfoBond::AdLacpActive(true),
            InfoBond::AdSelect(BondAdSelect::Bandwidth),
            InfoBond::AdUserPortKey(7),
            InfoBond::AdActorSysPrio(100),
            InfoBond::AdActorSystem([2, 0, 0, 0, 0, 9]),
            InfoBond::CoupledControl(false),
            InfoBond::BroadcastNeigh(true),
        ] {
            assert!(v.contains(&want), "{want:?} missing in {v:?}");
        }
    }

    #[test]
    fn wrong_values_name_the_key_and_the_accepted_ones() {
        let e = build_err(bond("fastest", BondOptions::default()));
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert!(
            e.message.contains("mode")
                && e.message.contains("fastest")
                && e.message.contains("active-backup"),
            "{}",
            e.message
        );
        let cases: Vec<(BondOptions, &str, &str)> = vec![
            (
                BondOptions {
                    arp_validate: Some("most".into()),
                    ..Default::default()
                },
                "arp_validate",
                "filter_backup",
            ),
            (
                BondOptions {
                    fail_over_mac: Some("x".into()),
                    ..Default::default()
                },
                "fail_over_mac",
                "follow",
            ),
            (
                BondOptions {
                    ad_select: Some("x".into()),
                    ..Default::default()
                },
                "ad_select",
                "bandwidth",
            ),
            (
                BondOptions {
                    primary_reselect: Some("x".into()),
                    ..Default::default()
                },
                "primary_reselect",
                "failure",
            ),
            (
                BondOptions {
                    arp_all_targets: Some("x".into()),
                    ..Default::default()
                },
                "arp_all_targets",
                "any",
            ),
            (
                BondOptions {
                    arp_ip_target: Some(vec!["fd00::1".into()]),
                    ..Default::default()
                },
                "arp_ip_target",
                "IPv4",
            ),
            (
                BondOptions {
                    ns_ip6_target: Some(vec!["10.0.0.1".into()]),
                    ..Default::default()
                },
                "ns_ip6_target",
                "IPv6",
            ),
            (
                BondOptions {
                    ad_actor_system: Some("02:00".into()),
                    ..Default::default()
                },
                "ad_actor_system",
                "MAC",
            ),
            (
                BondOptions {
                    ad_user_port_key: Some(2000),
                    ..Default::default()
                },
                "ad_user_port_key",
                "0-1023",
            ),
            (
                BondOptions {
                    packets_per_slave: Some(70000),
                    ..Default::default()
                },
                "packets_per_slave",
                "0-65535",
            ),
            (
                BondOptions {
                    arp_missed_max: Some(0),
                    ..Default::default()
                },
                "arp_missed_max",
                "1-255",
            ),
            (
                BondOptions {
                    primary: Some("eth9".into()),
                    ..Default::default()
                },
                "eth9",
                "not found",
            ),
        ];
        for (o, key, accepted) in cases {
            let e = build_err(bond("active-backup", o));
            assert!(
                e.message.contains(key) && e.message.contains(accepted),
                "{key}: {}",
                e.message
            );
        }
        let e = build_err(DeviceSpec::Bond {
            mode: None,
            miimon: None,
            xmit_hash_policy: Some("layer5".into()),
            lacp_rate: None,
            opts: Default::default(),
        });
        assert!(e.message.contains("vlan+srcmac"), "{}", e.message);
    }
}
