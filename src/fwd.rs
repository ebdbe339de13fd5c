//! Forwarding decisions shared by the L4 translations: where a guest's
//! destination is as the host must see it.

use crate::conf::Config;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The DNS ports `--dns-forward` applies to (DNS, DNS over TLS/QUIC).
const DNS_PORTS: [u16; 2] = [53, 853];

/// Where the guest's destination is on the host: `--dns-forward`
/// queries go to the `--dns-host` resolver, the gateway address
/// (`--map-host-loopback`) to the host's loopback, `--map-guest-addr` to
/// the host's own address; anything else as is.
pub fn host_side(conf: &Config, remote: SocketAddr) -> SocketAddr {
    let port = remote.port();
    let ip = match remote.ip() {
        IpAddr::V4(a) => match &conf.ip4 {
            Some(c) if c.dns_forward == Some(a) && DNS_PORTS.contains(&port) => {
                c.dns_host.map_or(remote.ip(), IpAddr::V4)
            }
            Some(c) if c.map_host_loopback == Some(a) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Some(c) if c.map_guest_addr == Some(a) => IpAddr::V4(c.addr),
            _ => remote.ip(),
        },
        IpAddr::V6(a) => match &conf.ip6 {
            Some(c) if c.dns_forward == Some(a) && DNS_PORTS.contains(&port) => {
                c.dns_host.map_or(remote.ip(), IpAddr::V6)
            }
            Some(c) if c.map_host_loopback == Some(a) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            Some(c) if c.map_guest_addr == Some(a) => IpAddr::V6(c.addr),
            _ => remote.ip(),
        },
    };
    SocketAddr::new(ip, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn destinations_as_the_host_sees_them() {
        let mut c = Config::example();
        if let Some(ip4) = c.ip4.as_mut() {
            ip4.dns_forward = Some(Ipv4Addr::new(169, 254, 1, 1));
            ip4.dns_host = Some(Ipv4Addr::new(192, 0, 2, 53));
            ip4.map_host_loopback = Some(Ipv4Addr::new(192, 0, 2, 1));
        }
        assert_eq!(host_side(&c, sa("169.254.1.1:53")), sa("192.0.2.53:53"));
        assert_eq!(host_side(&c, sa("169.254.1.1:853")), sa("192.0.2.53:853"));
        assert_eq!(host_side(&c, sa("169.254.1.1:80")), sa("169.254.1.1:80"));
        assert_eq!(host_side(&c, sa("192.0.2.1:5000")), sa("127.0.0.1:5000"));
        assert_eq!(
            host_side(&c, sa("[2001:db8::9]:53")),
            sa("[2001:db8::9]:53")
        );
    }
}
