//! IP protocol numbers shared by the IPv4 Protocol and IPv6 Next Header fields.

use std::fmt;

/// An IANA "Assigned Internet Protocol Number", with the ones we don't
/// handle kept as `Unknown`.
///
/// The IPv6 extension headers we walk (`ipv6::upper_layer`) have variants of
/// their own so they read as names, not numbers, where they are matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpProtocol {
    /// 0: IPv6 Hop-by-Hop Options header.
    HopByHop,
    /// 1.
    Icmp,
    /// 6.
    Tcp,
    /// 17.
    Udp,
    /// 43: IPv6 Routing header.
    Ipv6Route,
    /// 44: IPv6 Fragment header.
    Ipv6Frag,
    /// 58.
    Icmpv6,
    /// 59: IPv6 "No Next Header".
    Ipv6NoNxt,
    /// 60: IPv6 Destination Options header.
    Ipv6Opts,
    /// Anything else.
    Unknown(u8),
}

impl From<u8> for IpProtocol {
    fn from(v: u8) -> Self {
        match v {
            0 => IpProtocol::HopByHop,
            1 => IpProtocol::Icmp,
            6 => IpProtocol::Tcp,
            17 => IpProtocol::Udp,
            43 => IpProtocol::Ipv6Route,
            44 => IpProtocol::Ipv6Frag,
            58 => IpProtocol::Icmpv6,
            59 => IpProtocol::Ipv6NoNxt,
            60 => IpProtocol::Ipv6Opts,
            n => IpProtocol::Unknown(n),
        }
    }
}

impl From<IpProtocol> for u8 {
    fn from(p: IpProtocol) -> u8 {
        match p {
            IpProtocol::HopByHop => 0,
            IpProtocol::Icmp => 1,
            IpProtocol::Tcp => 6,
            IpProtocol::Udp => 17,
            IpProtocol::Ipv6Route => 43,
            IpProtocol::Ipv6Frag => 44,
            IpProtocol::Icmpv6 => 58,
            IpProtocol::Ipv6NoNxt => 59,
            IpProtocol::Ipv6Opts => 60,
            IpProtocol::Unknown(n) => n,
        }
    }
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpProtocol::HopByHop => f.write_str("IPv6 hop-by-hop"),
            IpProtocol::Icmp => f.write_str("ICMP"),
            IpProtocol::Tcp => f.write_str("TCP"),
            IpProtocol::Udp => f.write_str("UDP"),
            IpProtocol::Ipv6Route => f.write_str("IPv6 routing"),
            IpProtocol::Ipv6Frag => f.write_str("IPv6 fragment"),
            IpProtocol::Icmpv6 => f.write_str("ICMPv6"),
            IpProtocol::Ipv6NoNxt => f.write_str("IPv6 no-next-header"),
            IpProtocol::Ipv6Opts => f.write_str("IPv6 destination options"),
            IpProtocol::Unknown(n) => write!(f, "protocol {n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        for n in 0..=u8::MAX {
            assert_eq!(u8::from(IpProtocol::from(n)), n);
        }
    }

    #[test]
    fn known_numbers() {
        assert_eq!(IpProtocol::from(1), IpProtocol::Icmp);
        assert_eq!(IpProtocol::from(6), IpProtocol::Tcp);
        assert_eq!(IpProtocol::from(17), IpProtocol::Udp);
        assert_eq!(IpProtocol::from(58), IpProtocol::Icmpv6);
        assert_eq!(IpProtocol::from(132), IpProtocol::Unknown(132));
    }

    #[test]
    fn display() {
        assert_eq!(IpProtocol::Udp.to_string(), "UDP");
        assert_eq!(IpProtocol::Unknown(132).to_string(), "protocol 132");
    }
}
