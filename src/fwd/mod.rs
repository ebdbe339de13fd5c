//! Forwarding decisions shared by the L4 translations: where the other
//! side of a new flow is, decided in one place.
//!
//! A flow starts with the side that opened it (`flow::FlowSide`), and the
//! functions here give its target side. `outbound` takes a side on the
//! tap (the guest opening a flow) and answers with one on the host;
//! `inbound` takes a side on the host (a connection or datagram accepted
//! by one of the forwarded ports' listeners, `listen.rs`) and answers with
//! one on the tap. Both directions are decided here and nowhere else.
//!
//! Theory of operation: the guest is hostile, and a host socket connected
//! on its behalf can reach whatever the host can, including services that
//! listen only on the host's loopback because they trust everything that
//! comes from there. So every destination a guest asks for (TCP, UDP and
//! ICMP alike) goes through `outbound`, which either returns the host
//! side, with the address the host socket must use, or refuses, with the
//! reason counted by the caller:
//!
//! 1. The configured mappings come first and are the only ways to the
//!    host itself: the `--dns-forward` address on the DNS ports goes to
//!    the `--dns-host` resolver, the `--map-host-loopback` address (the
//!    gateway unless `--no-map-gw`) to the host's loopback, the
//!    `--map-guest-addr` address to the host's own address.
//! 2. Anything else is taken as is, unless no host socket should ever
//!    send there for a guest: loopback (`127.0.0.0/8`, `::1`), the
//!    unspecified address and `0.0.0.0/8` (Linux connects both to
//!    itself), broadcast, multicast, IPv6 link-local (meaningless off the
//!    guest's link), and IPv4-mapped or IPv4-compatible IPv6 addresses
//!    (`::ffff:a.b.c.d`, `::a.b.c.d`): those never appear on the wire (RFC
//!    4291 2.5.5), and a socket would turn them into IPv4, around every
//!    IPv4 rule here and even with IPv4 disabled.
//! 3. Port 0 is refused for TCP and UDP, as source or destination.

pub mod auto;
pub mod listen;
pub mod scan;

use crate::conf::Config;
use crate::flow::{FlowSide, Side};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The DNS ports `--dns-forward` applies to (DNS, DNS over TLS/QUIC).
const DNS_PORTS: [u16; 2] = [53, 853];

/// The transport a destination is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP/ICMPv6 echo: no port.
    Icmp,
}

/// Why a guest's destination is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The host's loopback, not through `--map-host-loopback`.
    #[error("loopback destination")]
    Loopback,
    /// `0.0.0.0/8` or `::`, which Linux takes as the host itself.
    #[error("unspecified destination")]
    Unspecified,
    /// Broadcast or multicast: stays on the guest's link.
    #[error("broadcast or multicast destination")]
    NotUnicast,
    /// IPv6 link-local, not through a mapping.
    #[error("link-local destination")]
    LinkLocal,
    /// An IPv4-mapped or IPv4-compatible IPv6 address.
    #[error("IPv4-mapped IPv6 destination")]
    V4InV6,
    /// That IP version is disabled.
    #[error("IP version disabled")]
    FamilyDisabled,
    /// TCP or UDP port 0.
    #[error("port 0")]
    PortZero,
    /// A host peer on loopback (or with the guest's own address) with
    /// no mapping to show it to the guest as.
    #[error("no address to show a local peer as")]
    Unmapped,
}

/// The addresses the guest was last seen using, which inbound flows go
/// to: they may differ from the configured ones (a VM that picked its
/// own, a namespace with several).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GuestAddrs {
    /// Last IPv4 source address.
    pub v4: Option<Ipv4Addr>,
    /// Last global IPv6 source address.
    pub v6: Option<Ipv6Addr>,
    /// Last link-local IPv6 source address.
    pub v6_ll: Option<Ipv6Addr>,
}

impl GuestAddrs {
    /// Note the source address of a frame from the guest.
    pub fn saw(&mut self, src: IpAddr) {
        match src {
            IpAddr::V4(a) if !a.is_unspecified() && !a.is_broadcast() => self.v4 = Some(a),
            IpAddr::V6(a) if a.is_unicast_link_local() => self.v6_ll = Some(a),
            IpAddr::V6(a) if !a.is_unspecified() && !a.is_multicast() => self.v6 = Some(a),
            _ => {}
        }
    }
}

/// The tap side of a flow a host peer opens through a forwarded port
/// (`ini`: the peer and the local address it reached, a side on the
/// host), going to the guest's port `to_port`, at `to_addr` if the port
/// spec names one, else at the guest's address (as last seen, or as
/// configured). What the guest sees as the peer's address is the peer's
/// own, except for the host itself, which the guest could neither tell
/// from itself nor answer: its loopback appears as the
/// `--map-host-loopback` address, or the gateway even with `--no-map-gw`
/// (which only stops the guest reaching the host through the gateway),
/// and the host's address the guest shares as the `--map-guest-addr`
/// address, else the same as loopback. This is what upstream does.
///
/// # Errors
/// `Refused` with the reason.
pub fn inbound(
    conf: &Config,
    guest: &GuestAddrs,
    ini: &FlowSide,
    to_addr: Option<IpAddr>,
    to_port: u16,
) -> Result<FlowSide, Refused> {
    let client = ini.peer;
    if client.port() == 0 || to_port == 0 {
        return Err(Refused::PortZero);
    }
    let (from, to): (IpAddr, IpAddr) = match client.ip() {
        IpAddr::V4(a) => {
            let c = conf.ip4.as_ref().ok_or(Refused::FamilyDisabled)?;
            let host = c.map_host_loopback.unwrap_or(c.gateway);
            let shown = if a.is_loopback() {
                host
            } else if a.octets()[0] == 0 || a.is_broadcast() || a.is_multicast() {
                return Err(Refused::Unspecified);
            } else if a == c.addr || Some(a) == guest.v4 {
                c.map_guest_addr.unwrap_or(host)
            } else {
                a
            };
            if shown.is_unspecified() {
                return Err(Refused::Unmapped);
            }
            let to = match to_addr {
                Some(IpAddr::V4(t)) => t,
                Some(IpAddr::V6(_)) => return Err(Refused::FamilyDisabled),
                None => guest.v4.unwrap_or(c.addr),
            };
            (IpAddr::V4(shown), IpAddr::V4(to))
        }
        IpAddr::V6(a) => {
            let c = conf.ip6.as_ref().ok_or(Refused::FamilyDisabled)?;
            if let Some(v4) = a.to_ipv4_mapped() {
                // A dual-stack socket's IPv4 peer: one family per flow.
                let side = FlowSide::new(
                    ini.at,
                    SocketAddr::new(IpAddr::V4(v4), client.port()),
                    ini.ours,
                );
                return inbound(conf, guest, &side, to_addr, to_port);
            }
            let host = c.map_host_loopback.unwrap_or(c.gateway);
            let shown = if a.is_loopback() {
                host
            } else if a.is_unspecified() || a.is_multicast() {
                return Err(Refused::Unspecified);
            } else if a == c.addr || Some(a) == guest.v6 {
                c.map_guest_addr.unwrap_or(host)
            } else {
                a
            };
            if shown.is_unspecified() {
                return Err(Refused::Unmapped);
            }
            let to = match to_addr {
                Some(IpAddr::V6(t)) => t,
                Some(IpAddr::V4(_)) => return Err(Refused::FamilyDisabled),
                // A link-local peer (the gateway standing for the host)
                // can only reach the guest's link-local address.
                None if shown.is_unicast_link_local() => guest.v6_ll.ok_or(Refused::LinkLocal)?,
                None => guest.v6.unwrap_or(c.addr),
            };
            (IpAddr::V6(shown), IpAddr::V6(to))
        }
    };
    Ok(FlowSide::new(
        Side::Tap,
        SocketAddr::new(to, to_port),
        SocketAddr::new(from, client.port()),
    ))
}

/// The host side of a flow of `proto` the guest opens from `ini` (a side
/// on the tap: the guest's address and port, and the destination as the
/// guest sees it), or why no host socket may go there (see the module
/// documentation). The host side's own address is unspecified, port 0:
/// it is known once the caller's socket is bound.
///
/// # Errors
/// `Refused` with the reason.
pub fn outbound(conf: &Config, proto: Proto, ini: &FlowSide) -> Result<FlowSide, Refused> {
    let (guest, remote) = (ini.peer, ini.ours);
    let port = remote.port();
    if proto != Proto::Icmp && (port == 0 || guest.port() == 0) {
        return Err(Refused::PortZero);
    }
    let dns = proto != Proto::Icmp && DNS_PORTS.contains(&port);
    let ip = match remote.ip() {
        IpAddr::V4(a) => {
            let c = conf.ip4.as_ref().ok_or(Refused::FamilyDisabled)?;
            if dns && c.dns_forward == Some(a) {
                IpAddr::V4(c.dns_host.unwrap_or(a))
            } else if c.map_host_loopback == Some(a) {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            } else if c.map_guest_addr == Some(a) {
                IpAddr::V4(c.addr)
            } else {
                check_v4(a)?;
                IpAddr::V4(a)
            }
        }
        IpAddr::V6(a) => {
            let c = conf.ip6.as_ref().ok_or(Refused::FamilyDisabled)?;
            if dns && c.dns_forward == Some(a) {
                IpAddr::V6(c.dns_host.unwrap_or(a))
            } else if c.map_host_loopback == Some(a) {
                IpAddr::V6(Ipv6Addr::LOCALHOST)
            } else if c.map_guest_addr == Some(a) {
                IpAddr::V6(c.addr)
            } else {
                check_v6(a)?;
                IpAddr::V6(a)
            }
        }
    };
    // An echo request has no port on the host: the ping socket's own
    // identifier stands in for it.
    let port = if proto == Proto::Icmp { 0 } else { port };
    let unbound = match ip {
        IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    };
    Ok(FlowSide::new(
        Side::Host,
        SocketAddr::new(ip, port),
        unbound,
    ))
}

fn check_v4(a: Ipv4Addr) -> Result<(), Refused> {
    if a.is_loopback() {
        Err(Refused::Loopback)
    } else if a.octets()[0] == 0 {
        Err(Refused::Unspecified)
    } else if a.is_broadcast() || a.is_multicast() {
        Err(Refused::NotUnicast)
    } else {
        Ok(())
    }
}

fn check_v6(a: Ipv6Addr) -> Result<(), Refused> {
    let s = a.segments();
    if a.is_loopback() {
        Err(Refused::Loopback)
    } else if a.is_unspecified() {
        Err(Refused::Unspecified)
    } else if s[..5] == [0; 5] && (s[5] == 0 || s[5] == 0xffff) {
        // ::/96 (IPv4-compatible) and ::ffff:0:0/96 (IPv4-mapped).
        Err(Refused::V4InV6)
    } else if a.is_multicast() {
        Err(Refused::NotUnicast)
    } else if a.is_unicast_link_local() {
        Err(Refused::LinkLocal)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Where the guest at a fixed address of `d`'s family sends to `d`:
    /// the host peer, or why not.
    fn to(c: &Config, p: Proto, d: &str) -> Result<SocketAddr, Refused> {
        let d = sa(d);
        let guest = if d.is_ipv4() {
            sa("10.0.0.2:40000")
        } else {
            sa("[2001:db8::2]:40000")
        };
        let host = outbound(c, p, &FlowSide::new(Side::Tap, guest, d))?;
        assert_eq!(host.at, Side::Host);
        assert!(host.ours.ip().is_unspecified() && host.ours.port() == 0);
        Ok(host.peer)
    }

    fn config() -> Config {
        let mut c = Config::example();
        if let Some(ip4) = c.ip4.as_mut() {
            ip4.dns_forward = Some(Ipv4Addr::new(169, 254, 1, 1));
            ip4.dns_host = Some(Ipv4Addr::new(192, 0, 2, 53));
            ip4.map_host_loopback = Some(Ipv4Addr::new(192, 0, 2, 1));
            ip4.map_guest_addr = Some(Ipv4Addr::new(169, 254, 1, 2));
        }
        if let Some(ip6) = c.ip6.as_mut() {
            ip6.map_host_loopback = Some("fe80::1".parse().unwrap());
        }
        c
    }

    #[test]
    fn mappings_reach_the_host() {
        let c = config();
        let ok = |p, d| to(&c, p, d);
        assert_eq!(ok(Proto::Udp, "169.254.1.1:53"), Ok(sa("192.0.2.53:53")));
        assert_eq!(ok(Proto::Tcp, "169.254.1.1:853"), Ok(sa("192.0.2.53:853")));
        assert_eq!(ok(Proto::Tcp, "169.254.1.1:80"), Ok(sa("169.254.1.1:80")));
        assert_eq!(ok(Proto::Tcp, "192.0.2.1:5000"), Ok(sa("127.0.0.1:5000")));
        assert_eq!(ok(Proto::Icmp, "192.0.2.1:0"), Ok(sa("127.0.0.1:0")));
        assert_eq!(ok(Proto::Udp, "[fe80::1]:7"), Ok(sa("[::1]:7")));
        assert_eq!(ok(Proto::Tcp, "169.254.1.2:22"), Ok(sa("10.0.0.2:22")));
        assert_eq!(
            ok(Proto::Udp, "[2001:db8::9]:53"),
            Ok(sa("[2001:db8::9]:53"))
        );
    }

    #[test]
    fn the_host_is_reached_only_through_mappings() {
        let mut c = config();
        let refused = [
            ("127.0.0.1:22", Refused::Loopback),
            ("127.255.0.9:22", Refused::Loopback),
            ("[::1]:22", Refused::Loopback),
            ("0.0.0.0:22", Refused::Unspecified),
            ("0.1.2.3:22", Refused::Unspecified),
            ("[::]:22", Refused::Unspecified),
            ("[::ffff:127.0.0.1]:22", Refused::V4InV6),
            ("[::ffff:0.0.0.0]:22", Refused::V4InV6),
            ("[::ffff:192.0.2.1]:22", Refused::V4InV6),
            ("[::ffff:198.51.100.7]:22", Refused::V4InV6),
            ("[::127.0.0.1]:22", Refused::V4InV6),
            ("255.255.255.255:22", Refused::NotUnicast),
            ("224.0.0.251:5353", Refused::NotUnicast),
            ("[ff02::fb]:5353", Refused::NotUnicast),
            ("[fe80::2]:22", Refused::LinkLocal),
            ("198.51.100.7:0", Refused::PortZero),
        ];
        for (d, why) in refused {
            for p in [Proto::Tcp, Proto::Udp] {
                assert_eq!(to(&c, p, d), Err(why), "{p:?} {d}");
            }
        }
        assert_eq!(to(&c, Proto::Icmp, "127.0.0.1:0"), Err(Refused::Loopback));
        // --no-map-gw: the gateway is just another address, and loopback
        // stays out of reach.
        if let Some(ip4) = c.ip4.as_mut() {
            ip4.map_host_loopback = None;
        }
        assert_eq!(
            to(&c, Proto::Tcp, "192.0.2.1:5000"),
            Ok(sa("192.0.2.1:5000"))
        );
        assert_eq!(to(&c, Proto::Tcp, "127.0.0.1:5000"), Err(Refused::Loopback));
        // The guest's own port 0 is no better.
        let zero = FlowSide::new(Side::Tap, sa("10.0.0.2:0"), sa("198.51.100.7:80"));
        for p in [Proto::Tcp, Proto::Udp] {
            assert_eq!(outbound(&c, p, &zero), Err(Refused::PortZero));
        }
        // A disabled family is unreachable, mapped or not.
        c.ip4 = None;
        assert_eq!(
            to(&c, Proto::Tcp, "192.0.2.1:5000"),
            Err(Refused::FamilyDisabled)
        );
    }

    /// Where a host peer at `client` reaching port 8080 goes in the
    /// guest (forwarded to port 80): (the peer as the guest sees it, the
    /// guest's address and port).
    fn from(c: &Config, g: &GuestAddrs, client: &str) -> Result<(SocketAddr, SocketAddr), Refused> {
        let client = sa(client);
        let ours = if client.is_ipv4() {
            sa("0.0.0.0:8080")
        } else {
            sa("[::]:8080")
        };
        let tap = inbound(c, g, &FlowSide::new(Side::Host, client, ours), None, 80)?;
        assert_eq!(tap.at, Side::Tap);
        Ok((tap.ours, tap.peer))
    }

    #[test]
    fn inbound_peers_appear_as_themselves_or_as_the_host() {
        let mut c = config();
        let mut g = GuestAddrs::default();
        let ok = |c: &Config, g: &GuestAddrs, client| from(c, g, client);
        // A remote peer as itself, to the configured address until the
        // guest used another.
        assert_eq!(
            ok(&c, &g, "198.51.100.7:4000"),
            Ok((sa("198.51.100.7:4000"), sa("10.0.0.2:80")))
        );
        g.saw("10.0.0.9".parse().unwrap());
        assert_eq!(
            ok(&c, &g, "198.51.100.7:4000"),
            Ok((sa("198.51.100.7:4000"), sa("10.0.0.9:80")))
        );
        // The host's loopback as the loopback mapping, the host's own
        // address (which the guest shares) as --map-guest-addr.
        assert_eq!(
            ok(&c, &g, "127.0.0.1:4000").map(|t| t.0),
            Ok(sa("192.0.2.1:4000"))
        );
        assert_eq!(
            ok(&c, &g, "10.0.0.2:4000").map(|t| t.0),
            Ok(sa("169.254.1.2:4000"))
        );
        // A dual-stack socket's IPv4 peer is an IPv4 flow.
        assert_eq!(
            ok(&c, &g, "[::ffff:127.0.0.1]:4000").map(|t| t.0),
            Ok(sa("192.0.2.1:4000"))
        );
        // IPv6 loopback as the link-local mapping: only the guest's
        // link-local address can answer it, once known.
        assert_eq!(ok(&c, &g, "[::1]:4000"), Err(Refused::LinkLocal));
        g.saw("fe80::99".parse().unwrap());
        assert_eq!(
            ok(&c, &g, "[::1]:4000"),
            Ok((sa("[fe80::1]:4000"), sa("[fe80::99]:80")))
        );
        assert_eq!(
            ok(&c, &g, "[2001:db8:5::5]:4000"),
            Ok((sa("[2001:db8:5::5]:4000"), sa("[2001:db8::2]:80")))
        );
        // --no-map-gw leaves the gateway standing for the host (as
        // upstream does), and without --map-guest-addr the host's own
        // address appears as that too.
        if let Some(ip4) = c.ip4.as_mut() {
            ip4.map_host_loopback = None;
            ip4.map_guest_addr = None;
        }
        assert_eq!(
            ok(&c, &g, "127.0.0.1:4000").map(|t| t.0),
            Ok(sa("192.0.2.1:4000"))
        );
        assert_eq!(
            ok(&c, &g, "10.0.0.9:4000").map(|t| t.0),
            Ok(sa("192.0.2.1:4000"))
        );
        assert_eq!(ok(&c, &g, "0.0.0.0:4000"), Err(Refused::Unspecified));
        assert_eq!(ok(&c, &g, "198.51.100.7:0"), Err(Refused::PortZero));
        c.ip6 = None;
        assert_eq!(
            ok(&c, &g, "[2001:db8:5::5]:4000"),
            Err(Refused::FamilyDisabled)
        );
        // A target address in the spec wins over the guest's own.
        let t = inbound(
            &c,
            &g,
            &FlowSide::new(Side::Host, sa("198.51.100.7:1"), sa("0.0.0.0:5000")),
            Some("192.0.2.5".parse().unwrap()),
            6000,
        );
        assert_eq!(t.map(|t| t.peer), Ok(sa("192.0.2.5:6000")));
    }
}
