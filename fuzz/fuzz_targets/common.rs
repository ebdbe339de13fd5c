//! The fixed configuration both targets answer with: every DHCP(v6)
//! feature on, an off-link IPv4 gateway (classless routes), a search list
//! that needs compression.

use passt_rs::conf::*;
use std::net::Ipv6Addr;

/// The guest's MAC address, as dispatch would pass it.
pub const GUEST_MAC: passt_rs::wire::Mac = passt_rs::wire::Mac([2, 0, 0, 0, 0, 1]);
/// The guest's link-local address, source of its DHCPv6 messages.
#[allow(dead_code)] // each target compiles this module, not each uses all of it
pub const GUEST_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x5e);
/// What dispatch hands to `reply` as `out`.
pub const OUT_LEN: usize = 65549;

pub fn config() -> Config {
    Config::example()
}
