//! Devices: how a request names one, what the agent reports about one, and
//! the typed specification of a soft device to create.
//!
//! `DeviceSpec` is typed so that validation (unknown key, bad value) happens
//! in the controller before any request is sent; the agent only turns it
//! into netlink messages.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A device by name inside a namespace (`None`: the agent's own).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DevRef {
    pub netns: Option<String>,
    pub name: String,
}

/// `ip -s -d link show` condensed: what a recipe reads from a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub ifindex: u32,
    pub name: String,
    /// Link kind (`veth`, `bridge`, ...), `""` for a physical NIC.
    pub kind: String,
    /// Driver name from `ETHTOOL_GDRVINFO` (`""` when it has none).
    pub driver: String,
    /// `aa:bb:cc:dd:ee:ff`
    pub mac: String,
    pub mtu: u32,
    /// Administrative state (IFF_UP).
    pub up: bool,
    pub carrier: bool,
    /// `addr/prefix`, IPv4 then IPv6, kernel order.
    pub ips: Vec<String>,
    /// Name of the master device (bridge, bond), if any.
    pub master: Option<String>,
    pub stats: LinkStats,
}

/// The counters of `ip -s link`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStats {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
}

/// A soft device to create: `ip link add NAME type KIND ...`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DeviceSpec {
    /// `type veth peer name PEER [netns NS]`; without `peer_netns` the peer
    /// is in the device's namespace, as with `ip link add`.
    Veth {
        peer: String,
        peer_netns: Option<String>,
    },
    /// `type bridge [stp_state 0|1] [vlan_filtering 0|1]`
    Bridge {
        stp: Option<bool>,
        vlan_filtering: Option<bool>,
    },
    /// `type bond [mode M] [miimon N] [xmit_hash_policy P] [lacp_rate R]`
    /// and every other option of `ip link add type bond` in `opts`.
    Bond {
        mode: Option<String>,
        miimon: Option<u32>,
        xmit_hash_policy: Option<String>,
        lacp_rate: Option<String>,
        /// Boxed: the other variants are a fraction of its size.
        opts: Box<BondOptions>,
    },
    /// A team device: the agent writes a teamd config with the runner and
    /// link watch and starts `teamd -t NAME` (teamd makes the device).
    Team {
        runner: Option<String>,
        link_watch: Option<String>,
    },
    /// `link LINK type vlan id ID [protocol 802.1Q|802.1ad]`
    Vlan {
        link: String,
        id: u16,
        protocol: Option<String>,
    },
    /// `link LINK type macvlan [mode M]`
    Macvlan { link: String, mode: Option<String> },
    /// `link LINK type ipvlan [mode M]`
    Ipvlan { link: String, mode: Option<String> },
    /// `type vxlan id ID [dev LINK] [local A] [remote A | group A] [dstport P] [ttl T]`
    Vxlan {
        id: u32,
        link: Option<String>,
        local: Option<String>,
        remote: Option<String>,
        group: Option<String>,
        dstport: Option<u16>,
        ttl: Option<u8>,
    },
    /// `type geneve id ID remote A [dstport P]`
    Geneve {
        id: u32,
        remote: String,
        dstport: Option<u16>,
    },
    /// `type gre|gretap|ipip|sit|ip6gre|ip6tnl|vti local A remote A [key K] [ttl T] [dev LINK] [mode M]`
    Tunnel {
        kind: TunnelKind,
        local: Option<String>,
        remote: Option<String>,
        key: Option<u32>,
        ttl: Option<u8>,
        link: Option<String>,
        /// ipip: `ipip|mplsip|any`; sit: `ip6ip|ipip|mplsip|any`; ip6tnl:
        /// `ip6ip6|ipip6|any` (as `ip link add .. type T mode M`).
        mode: Option<String>,
    },
    /// `type dummy`
    Dummy,
    /// `type vrf table T`
    Vrf { table: u32 },
    /// `ip tuntap add NAME mode tun [user UID] [multi_queue]`: a persistent
    /// tun device (made with the `TUNSETIFF` ioctl, not rtnetlink).
    Tun {
        owner: Option<u32>,
        multi_queue: bool,
    },
    /// `ip tuntap add NAME mode tap [user UID] [multi_queue]`
    Tap {
        owner: Option<u32>,
        multi_queue: bool,
    },
    /// `link LINK type macsec [port P] [encrypt on|off]` (keys via
    /// `ip macsec` jobs).
    Macsec {
        link: String,
        port: Option<u16>,
        encrypt: Option<bool>,
    },
}

/// The options of `ip link add type bond` beyond the four most used (they
/// stay in `DeviceSpec::Bond` itself). Names as `ip link` spells them;
/// enumerated values are strings checked by the agent, which names the
/// accepted ones. `primary` is a port's name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BondOptions {
    pub updelay: Option<u32>,
    pub downdelay: Option<u32>,
    pub peer_notify_delay: Option<u32>,
    pub use_carrier: Option<bool>,
    pub arp_interval: Option<u32>,
    pub arp_validate: Option<String>,
    pub arp_all_targets: Option<String>,
    pub arp_ip_target: Option<Vec<String>>,
    pub ns_ip6_target: Option<Vec<String>>,
    pub arp_missed_max: Option<u8>,
    pub primary: Option<String>,
    pub primary_reselect: Option<String>,
    pub fail_over_mac: Option<String>,
    pub resend_igmp: Option<u32>,
    pub num_peer_notif: Option<u8>,
    pub all_slaves_active: Option<bool>,
    pub min_links: Option<u32>,
    pub lp_interval: Option<u32>,
    pub packets_per_slave: Option<u32>,
    pub tlb_dynamic_lb: Option<bool>,
    pub lacp_active: Option<bool>,
    pub ad_select: Option<String>,
    pub ad_user_port_key: Option<u16>,
    pub ad_actor_sys_prio: Option<u16>,
    pub ad_actor_system: Option<String>,
    pub coupled_control: Option<bool>,
    pub broadcast_neigh: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TunnelKind {
    Gre,
    Gretap,
    Ipip,
    Sit,
    Ip6gre,
    Ip6tnl,
    Vti,
}

/// A feature map as `ethtool -k` shows it (`"gro" → true`).
pub type Features = BTreeMap<String, bool>;
