//! The "virtual gateway": link-layer and configuration protocols we answer
//! ourselves. Handlers are pure: a parsed request and the configuration in,
//! an optional reply out; the caller (`dispatch`) emits it.

pub mod arp;
pub mod dhcp;
pub mod dhcpv6;
pub mod ndp;

use crate::conf::Config;
use std::net::Ipv6Addr;

/// Our link-local address towards the guest: source of router
/// advertisements, neighbour advertisements for the router and DHCPv6
/// replies. The host's gateway when it is link-local (so the guest's
/// routes look like the host's), fe80::1 otherwise.
pub fn router_ll(conf: &Config) -> Ipv6Addr {
    match &conf.ip6 {
        Some(ip6) if ip6.gateway.is_unicast_link_local() => ip6.gateway,
        _ => Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
    }
}
