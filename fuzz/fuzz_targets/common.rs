//! The fixed configuration both targets answer with: every DHCP(v6)
//! feature on, an off-link IPv4 gateway (classless routes), a search list
//! that needs compression.

use passt_rs::conf::*;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The guest's MAC address, as dispatch would pass it.
pub const GUEST_MAC: passt_rs::wire::Mac = passt_rs::wire::Mac([2, 0, 0, 0, 0, 1]);
/// The guest's link-local address, source of its DHCPv6 messages.
#[allow(dead_code)] // each target compiles this module, not each uses all of it
pub const GUEST_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x5e);
/// What dispatch hands to `reply` as `out`.
pub const OUT_LEN: usize = 65549;

pub fn config() -> Config {
    Config {
        mode: Mode::Passt,
        debug: false,
        trace: false,
        quiet: true,
        foreground: true,
        log_file: None,
        log_size: DEFAULT_LOG_SIZE,
        runas: None,
        pcap: None,
        pidfile: None,
        our_mac: DEFAULT_OUR_MAC,
        mtu: Some(DEFAULT_MTU),
        ip4: Some(Ip4Config {
            addr: Ipv4Addr::new(10, 0, 0, 2),
            prefix_len: 24,
            gateway: Ipv4Addr::new(192, 0, 2, 1),
            addr_from_cli: false,
            gateway_from_cli: false,
            dns: vec![Ipv4Addr::new(192, 0, 2, 53)],
            dns_forward: None,
            dns_host: None,
            map_host_loopback: None,
            map_guest_addr: None,
            outbound: None,
            outbound_if: None,
            host_addrs: vec![],
            host_routes: vec![],
        }),
        ip6: Some(Ip6Config {
            addr: "2001:db8::2".parse().unwrap(),
            prefix_len: 64,
            gateway: "fe80::1".parse().unwrap(),
            addr_from_cli: false,
            gateway_from_cli: false,
            dns: vec!["2001:db8::53".parse().unwrap()],
            dns_forward: None,
            dns_host: None,
            map_host_loopback: None,
            map_guest_addr: None,
            outbound: None,
            outbound_if: None,
            host_addrs: vec![],
            host_routes: vec![],
        }),
        template_if4: Some("eth0".into()),
        template_if6: Some("eth0".into()),
        search: vec!["example.com".into(), "sub.example.com".into()],
        hostname: Some("guest".into()),
        fqdn: Some("guest.example.com".into()),
        services: Services {
            tcp: true,
            udp: true,
            icmp: true,
            dhcp: true,
            ndp: true,
            dhcpv6: true,
            ra: true,
            dhcp_dns: true,
            dhcp_search: true,
        },
        freebind: false,
        chroot_fallback: false,
        fwd: Forwarding::default(),
        passt: PasstConfig::default(),
        pasta: None,
    }
}
