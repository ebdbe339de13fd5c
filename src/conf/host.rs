//! What the host's network looks like, as probed at start-up: the raw material for `Config`.

use std::net::{Ipv4Addr, Ipv6Addr};

/// One route of the template interface, as the kernel reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoute<A> {
    /// Destination network (the unspecified address for a default route).
    pub dst: A,
    /// Destination prefix length (0 for a default route).
    pub prefix_len: u8,
    /// Next hop, if the route has one.
    pub gateway: Option<A>,
    /// Route priority (metric), if set.
    pub metric: Option<u32>,
}

/// An address on the template interface with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostAddr<A> {
    /// The address itself.
    pub addr: A,
    /// Its prefix length.
    pub prefix_len: u8,
}

/// The template interface chosen for one address family, and what it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFamily<A> {
    /// Interface name, e.g. `eth0`.
    pub ifname: String,
    /// Interface index.
    pub ifindex: u32,
    /// Link MTU.
    pub mtu: u32,
    /// Addresses of this family on the interface, in kernel order; IPv6
    /// link-local addresses are excluded here and kept in `link_local`.
    pub addrs: Vec<HostAddr<A>>,
    /// Gateway of the first default route via this interface, if any.
    pub gateway: Option<A>,
    /// Every route of this family through the interface (main table).
    pub routes: Vec<HostRoute<A>>,
}

/// The host as seen at start-up: one template per family, and resolver settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostInfo {
    /// IPv4 template interface, or `None` if the host has no usable IPv4.
    pub v4: Option<HostFamily<Ipv4Addr>>,
    /// IPv6 template interface, or `None` if the host has no usable IPv6.
    pub v6: Option<HostFamily<Ipv6Addr>>,
    /// IPv6 link-local address of the v6 template interface, if any.
    pub v6_link_local: Option<Ipv6Addr>,
    /// Nameservers from resolv.conf, in file order.
    pub nameservers: Vec<std::net::IpAddr>,
    /// Search domains from resolv.conf (`search` or `domain`).
    pub search: Vec<String>,
}
