//! ICMP and ICMPv6 errors towards the guest (RFC 792, RFC 4443), quoting
//! the datagram the guest sent.
//!
//! # Theory of operation
//!
//! The host's kernel tells us about an ICMP error for a datagram one of
//! our sockets sent, and hands back (the start of) that datagram's
//! payload. The guest must see an error about the datagram *it* sent, so
//! the quote is rebuilt: IP and transport headers from the addresses,
//! ports and echo identifier the guest used, then the payload the host
//! gave back. Only that payload comes from outside, and it is only ever
//! copied: its length bounds nothing but itself.
//!
//! The quoted headers carry the lengths of the payload we were given (the
//! original may have been longer if the host's quote was cut; nothing
//! better is known). Transport checksums are computed when the whole
//! quoted datagram fits, as the guest's own would be; a cut UDP quote has
//! checksum 0, a cut echo request keeps the host's with the identifier
//! change folded in (RFC 1624).
//!
//! Sizes: RFC 1812 4.3.2.3 lets an IPv4 error be up to 576 bytes; RFC
//! 4443 2.4 (c) says an ICMPv6 error carries "as much of invoking packet
//! as possible without the ICMPv6 packet exceeding the minimum IPv6 MTU",
//! 1280 bytes.

use super::compose::{self, Link};
use super::{IpProtocol, checksum, icmpv4, icmpv6, ipv4, ipv6, udp};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Largest IPv4 datagram carrying one of our ICMP errors (RFC 1812 4.3.2.3).
pub const MAX_ERROR4_LEN: usize = 576;
/// Largest IPv6 packet carrying one of our ICMPv6 errors (RFC 4443 2.4 (c)).
pub const MAX_ERROR6_LEN: usize = 1280;
/// Largest frame either builder writes: an Ethernet header and the larger
/// of the two.
pub const MAX_ERROR_FRAME: usize = 14 + MAX_ERROR6_LEN;

/// Length of the ICMP and ICMPv6 error header: type, code, checksum and
/// four bytes of "unused" or MTU.
const ERROR_HEADER_LEN: usize = 8;

/// ICMP Destination Unreachable (RFC 792).
const DEST_UNREACH: u8 = 3;
/// ... code 4: fragmentation needed and DF set (RFC 1191: next-hop MTU in
/// the low 16 bits of the second word).
const FRAG_NEEDED: u8 = 4;
/// ICMP Time Exceeded (RFC 792).
const TIME_EXCEEDED: u8 = 11;
/// ICMPv6 Destination Unreachable (RFC 4443 3.1).
const DEST_UNREACH6: u8 = 1;
/// ICMPv6 Packet Too Big (RFC 4443 3.2).
const PACKET_TOO_BIG: u8 = 2;
/// ICMPv6 Time Exceeded (RFC 4443 3.3).
const TIME_EXCEEDED6: u8 = 3;

/// An ICMP error we relay to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error4 {
    /// Destination Unreachable with this code, other than 4 (net, host,
    /// protocol, port unreachable, administratively prohibited, ...).
    Unreachable(u8),
    /// Destination Unreachable, fragmentation needed, with the next-hop MTU.
    FragNeeded(u16),
    /// Time Exceeded with this code (0: TTL, 1: reassembly).
    TimeExceeded(u8),
}

impl Error4 {
    /// The error an ICMP message of this type and code is, `info` being
    /// the MTU for "fragmentation needed"; `None` for messages we don't
    /// relay (parameter problems point into a header we rebuilt).
    pub fn from_icmp(msg_type: u8, code: u8, info: u32) -> Option<Self> {
        match (msg_type, code) {
            (DEST_UNREACH, FRAG_NEEDED) => {
                Some(Error4::FragNeeded(u16::try_from(info).unwrap_or(u16::MAX)))
            }
            // RFC 792 codes 0-5, RFC 1122 6-12, RFC 1812 13-15.
            (DEST_UNREACH, 0..=15) => Some(Error4::Unreachable(code)),
            (TIME_EXCEEDED, 0..=1) => Some(Error4::TimeExceeded(code)),
            _ => None,
        }
    }

    fn header(self) -> [u8; ERROR_HEADER_LEN] {
        match self {
            Error4::Unreachable(code) => [DEST_UNREACH, code, 0, 0, 0, 0, 0, 0],
            Error4::FragNeeded(mtu) => {
                let m = mtu.to_be_bytes();
                [DEST_UNREACH, FRAG_NEEDED, 0, 0, 0, 0, m[0], m[1]]
            }
            Error4::TimeExceeded(code) => [TIME_EXCEEDED, code, 0, 0, 0, 0, 0, 0],
        }
    }
}

/// An ICMPv6 error we relay to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error6 {
    /// Destination Unreachable with this code (0: no route, 1:
    /// prohibited, 3: address, 4: port unreachable, ...).
    Unreachable(u8),
    /// Packet Too Big, with the MTU.
    PacketTooBig(u32),
    /// Time Exceeded with this code (0: hop limit, 1: reassembly).
    TimeExceeded(u8),
}

impl Error6 {
    /// The error an ICMPv6 message of this type and code is, `info` being
    /// the MTU for Packet Too Big; `None` for messages we don't relay.
    pub fn from_icmp6(msg_type: u8, code: u8, info: u32) -> Option<Self> {
        match (msg_type, code) {
            // RFC 4443 3.1 codes 0-6.
            (DEST_UNREACH6, 0..=6) => Some(Error6::Unreachable(code)),
            (PACKET_TOO_BIG, 0) => Some(Error6::PacketTooBig(info)),
            (TIME_EXCEEDED6, 0..=1) => Some(Error6::TimeExceeded(code)),
            _ => None,
        }
    }

    fn header(self) -> [u8; ERROR_HEADER_LEN] {
        match self {
            Error6::Unreachable(code) => [DEST_UNREACH6, code, 0, 0, 0, 0, 0, 0],
            Error6::PacketTooBig(mtu) => {
                let m = mtu.to_be_bytes();
                [PACKET_TOO_BIG, 0, 0, 0, m[0], m[1], m[2], m[3]]
            }
            Error6::TimeExceeded(code) => [TIME_EXCEEDED6, code, 0, 0, 0, 0, 0, 0],
        }
    }
}

/// The transport part of the datagram an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quoted<'a> {
    /// A UDP datagram: its ports and (the start of) its payload.
    Udp {
        /// The guest's port.
        src_port: u16,
        /// The port the guest sent to.
        dst_port: u16,
        /// Payload, or as much of it as the host gave back.
        payload: &'a [u8],
    },
    /// An echo request: (the start of) the message as the host sent it,
    /// and the guest's identifier to put back in it.
    Echo {
        /// The guest's echo identifier.
        ident: u16,
        /// ICMP or ICMPv6 message, header included.
        message: &'a [u8],
    },
}

impl Quoted<'_> {
    /// Transport length the quoted IP header announces.
    fn len(&self) -> usize {
        match self {
            Quoted::Udp { payload, .. } => udp::HEADER_LEN + payload.len(),
            Quoted::Echo { message, .. } => message.len(),
        }
    }
}

/// The datagram an error is about, as the guest sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote<'a, A> {
    /// The guest's address.
    pub src: A,
    /// The address the guest sent to.
    pub dst: A,
    /// Its transport header and payload.
    pub l4: Quoted<'a>,
}

/// Build an Ethernet/IPv4/ICMP error frame from `from` to `to` about
/// `quote`; returns its length, or 0 if `out` can't hold the headers and
/// at least eight bytes of quoted transport header.
pub fn icmp4_error(
    out: &mut [u8],
    link: Link,
    from: Ipv4Addr,
    to: Ipv4Addr,
    err: Error4,
    quote: &Quote<'_, Ipv4Addr>,
) -> usize {
    compose::icmp4(out, link, from, to, |m| {
        let room = m.len().min(MAX_ERROR4_LEN - ipv4::HEADER_LEN);
        // RFC 792: "the internet header plus the first 64 bits of the
        // original datagram's data", at least.
        if room < ERROR_HEADER_LEN + ipv4::HEADER_LEN + 8 {
            return None;
        }
        let (hdr, rest) = m[..room].split_at_mut(ERROR_HEADER_LEN);
        hdr.copy_from_slice(&err.header());
        Some(ERROR_HEADER_LEN + quote4(rest, quote))
    })
}

/// Build an Ethernet/IPv6/ICMPv6 error frame from `from` to `to` about
/// `quote`; returns its length, or 0 if `out` can't hold the headers and
/// at least eight bytes of quoted transport header.
pub fn icmp6_error(
    out: &mut [u8],
    link: Link,
    from: Ipv6Addr,
    to: Ipv6Addr,
    err: Error6,
    quote: &Quote<'_, Ipv6Addr>,
) -> usize {
    compose::icmp6(out, link, from, to, |m| {
        let room = m.len().min(MAX_ERROR6_LEN - ipv6::HEADER_LEN);
        if room < ERROR_HEADER_LEN + ipv6::HEADER_LEN + 8 {
            return None;
        }
        let (hdr, rest) = m[..room].split_at_mut(ERROR_HEADER_LEN);
        hdr.copy_from_slice(&err.header());
        Some(ERROR_HEADER_LEN + quote6(rest, quote))
    })
}

/// Write the quoted IPv4 datagram, cut to `b`; returns its length.
/// `b` holds at least an IPv4 header and eight bytes.
fn quote4(b: &mut [u8], q: &Quote<'_, Ipv4Addr>) -> usize {
    let l4_len = q.l4.len().min(usize::from(u16::MAX) - ipv4::HEADER_LEN);
    let (protocol, proto) = match q.l4 {
        Quoted::Udp { .. } => (IpProtocol::Udp, L4Sum::Udp4(q.src, q.dst)),
        Quoted::Echo { .. } => (IpProtocol::Icmp, L4Sum::Icmp4),
    };
    ipv4::Ipv4Repr {
        src: q.src,
        dst: q.dst,
        protocol,
        payload_len: l4_len,
        // Unknown; the guest's own default.
        ttl: 64,
    }
    .emit(b);
    ipv4::HEADER_LEN + quote_l4(&mut b[ipv4::HEADER_LEN..], &q.l4, proto)
}

/// Write the quoted IPv6 packet, cut to `b`; returns its length.
/// `b` holds at least an IPv6 header and eight bytes.
fn quote6(b: &mut [u8], q: &Quote<'_, Ipv6Addr>) -> usize {
    let l4_len = q.l4.len().min(usize::from(u16::MAX));
    let (next_header, proto) = match q.l4 {
        Quoted::Udp { .. } => (IpProtocol::Udp, L4Sum::Udp6(q.src, q.dst)),
        Quoted::Echo { .. } => (IpProtocol::Icmpv6, L4Sum::Icmp6(q.src, q.dst)),
    };
    ipv6::Ipv6Repr {
        src: q.src,
        dst: q.dst,
        next_header,
        payload_len: l4_len,
        hop_limit: 64,
    }
    .emit(b);
    ipv6::HEADER_LEN + quote_l4(&mut b[ipv6::HEADER_LEN..], &q.l4, proto)
}

/// How a quoted transport header's checksum is computed.
#[derive(Clone, Copy)]
enum L4Sum {
    Udp4(Ipv4Addr, Ipv4Addr),
    Udp6(Ipv6Addr, Ipv6Addr),
    Icmp4,
    Icmp6(Ipv6Addr, Ipv6Addr),
}

/// Write the quoted transport header and payload, cut to `b`; returns
/// the bytes written.
fn quote_l4(b: &mut [u8], l4: &Quoted<'_>, sum: L4Sum) -> usize {
    match *l4 {
        Quoted::Udp {
            src_port,
            dst_port,
            payload,
        } => {
            let Some((hdr, rest)) = b.split_at_mut_checked(udp::HEADER_LEN) else {
                return 0;
            };
            let n = payload.len().min(rest.len());
            rest[..n].copy_from_slice(&payload[..n]);
            let udp_len = u16::try_from(udp::HEADER_LEN + payload.len()).unwrap_or(u16::MAX);
            let mut u = udp::Packet::new_unchecked(&mut *hdr);
            u.set_src_port(src_port);
            u.set_dst_port(dst_port);
            u.set_len(udp_len);
            u.set_checksum(0);
            let whole = udp::HEADER_LEN + n;
            if n == payload.len() && usize::from(udp_len) == whole {
                let mut u = udp::Packet::new_unchecked(&mut b[..whole]);
                match sum {
                    L4Sum::Udp4(s, d) => u.fill_checksum_v4(s, d),
                    L4Sum::Udp6(s, d) => u.fill_checksum_v6(s, d),
                    L4Sum::Icmp4 | L4Sum::Icmp6(..) => {}
                }
            }
            whole
        }
        Quoted::Echo { ident, message } => {
            let n = message.len().min(b.len());
            let m = &mut b[..n];
            m.copy_from_slice(&message[..n]);
            // Identifier at bytes 4-5 and checksum at 2-3 in both ICMP
            // and ICMPv6 echo requests.
            if n < icmpv4::HEADER_LEN {
                return n;
            }
            let old = u16::from_be_bytes([m[4], m[5]]);
            m[4..6].copy_from_slice(&ident.to_be_bytes());
            if n == message.len() {
                match sum {
                    L4Sum::Icmp4 => icmpv4::Packet::new_unchecked(&mut *m).fill_checksum(),
                    L4Sum::Icmp6(s, d) => {
                        icmpv6::Packet::new_unchecked(&mut *m).fill_checksum(s, d);
                    }
                    L4Sum::Udp4(..) | L4Sum::Udp6(..) => {}
                }
            } else {
                let field = u16::from_be_bytes([m[2], m[3]]);
                m[2..4].copy_from_slice(&checksum::update(field, old, ident).to_be_bytes());
            }
            n
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ethernet::Frame;
    use crate::wire::{EtherType, Mac};

    const LINK: Link = Link {
        src: Mac([0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55]),
        dst: Mac([2, 0, 0, 0, 0, 1]),
    };
    const GUEST4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
    const REMOTE4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

    fn udp_quote4(payload: &[u8]) -> Quote<'_, Ipv4Addr> {
        Quote {
            src: GUEST4,
            dst: REMOTE4,
            l4: Quoted::Udp {
                src_port: 40000,
                dst_port: 53,
                payload,
            },
        }
    }

    #[test]
    fn port_unreachable_v4_bytes() {
        let mut out = [0u8; 200];
        let n = icmp4_error(
            &mut out,
            LINK,
            REMOTE4,
            GUEST4,
            Error4::Unreachable(3),
            &udp_quote4(b"abc"),
        );
        assert_eq!(n, 14 + 20 + 8 + 20 + 8 + 3);
        let f = Frame::new_checked(&out[..n]).unwrap();
        assert_eq!(f.ethertype(), EtherType::Ipv4);
        let ip = ipv4::Packet::new_checked(f.payload()).unwrap();
        let r = ipv4::Ipv4Repr::parse(&ip).unwrap();
        assert_eq!(
            (r.src, r.dst, r.protocol),
            (REMOTE4, GUEST4, IpProtocol::Icmp)
        );
        let m = ip.payload();
        assert!(icmpv4::Packet::new_checked(m).unwrap().verify_checksum());
        assert_eq!(&m[..2], &[3, 3], "type 3 code 3");
        assert_eq!(&m[4..8], &[0; 4]);
        #[rustfmt::skip]
        let quoted_ip = [
            0x45, 0, 0, 31, 0, 0, 0x40, 0, 64, 17, 0, 0,
            192, 0, 2, 2, 203, 0, 113, 1,
        ];
        assert_eq!(&m[8..18], &quoted_ip[..10]);
        assert_eq!(&m[20..28], &quoted_ip[12..]);
        let q = ipv4::Packet::new_checked(&m[8..]).unwrap();
        assert!(q.verify_checksum());
        let u = udp::Packet::new_checked(q.payload()).unwrap();
        assert_eq!(&q.payload()[..6], &[0x9c, 0x40, 0, 53, 0, 11]);
        assert_eq!(u.payload(), b"abc");
        assert!(
            u.verify_checksum_v4(GUEST4, REMOTE4),
            "whole: real checksum"
        );
    }

    #[test]
    fn frag_needed_carries_the_mtu_and_is_cut_to_576() {
        let payload = [7u8; 1400];
        let mut out = [0u8; 2000];
        let err = Error4::from_icmp(3, 4, 1300).unwrap();
        assert_eq!(err, Error4::FragNeeded(1300));
        let n = icmp4_error(&mut out, LINK, REMOTE4, GUEST4, err, &udp_quote4(&payload));
        assert_eq!(n, 14 + MAX_ERROR4_LEN);
        let ip = ipv4::Packet::new_checked(&out[14..n]).unwrap();
        let m = ip.payload();
        assert_eq!(&m[..2], &[3, 4]);
        assert_eq!(&m[4..8], &[0, 0, 0x05, 0x14]);
        assert!(icmpv4::Packet::new_checked(m).unwrap().verify_checksum());
        // The quote announces the whole datagram but holds what fits.
        let q = &m[8..];
        assert_eq!(u16::from_be_bytes([q[2], q[3]]), 20 + 8 + 1400);
        let udp_len = (8u16 + 1400).to_be_bytes();
        assert_eq!(
            &q[20..28],
            &[0x9c, 0x40, 0, 53, udp_len[0], udp_len[1], 0, 0],
            "cut: checksum 0"
        );
        assert_eq!(q.len(), 576 - 20 - 8);
    }

    #[test]
    fn which_errors_are_relayed() {
        assert_eq!(Error4::from_icmp(3, 1, 0), Some(Error4::Unreachable(1)));
        assert_eq!(Error4::from_icmp(3, 16, 0), None);
        assert_eq!(Error4::from_icmp(11, 0, 0), Some(Error4::TimeExceeded(0)));
        assert_eq!(Error4::from_icmp(12, 0, 0), None, "parameter problem");
        assert_eq!(Error4::from_icmp(5, 0, 0), None, "redirect");
        assert_eq!(
            Error4::from_icmp(3, 4, 70000),
            Some(Error4::FragNeeded(u16::MAX))
        );
        assert_eq!(Error6::from_icmp6(1, 4, 0), Some(Error6::Unreachable(4)));
        assert_eq!(Error6::from_icmp6(1, 9, 0), None);
        assert_eq!(
            Error6::from_icmp6(2, 0, 1280),
            Some(Error6::PacketTooBig(1280))
        );
        assert_eq!(Error6::from_icmp6(3, 0, 0), Some(Error6::TimeExceeded(0)));
        assert_eq!(Error6::from_icmp6(4, 0, 0), None, "parameter problem");
    }

    #[test]
    fn echo_quote_gets_the_guests_identifier_back() {
        // Echo request as the host sent it: identifier 0x4e3c, seq 1.
        let mut host_msg = [8u8, 0, 0, 0, 0x4e, 0x3c, 0, 1, b'h', b'i'];
        icmpv4::Packet::new_unchecked(&mut host_msg[..]).fill_checksum();
        let q = Quote {
            src: GUEST4,
            dst: REMOTE4,
            l4: Quoted::Echo {
                ident: 0x1234,
                message: &host_msg,
            },
        };
        let mut out = [0u8; 200];
        let n = icmp4_error(&mut out, LINK, REMOTE4, GUEST4, Error4::Unreachable(1), &q);
        let m = &out[14 + 20..n];
        assert_eq!(&m[..2], &[3, 1]);
        let quoted = ipv4::Packet::new_checked(&m[8..]).unwrap();
        assert_eq!(quoted.protocol(), IpProtocol::Icmp);
        let e = icmpv4::Packet::new_checked(quoted.payload()).unwrap();
        assert_eq!((e.echo_ident(), e.echo_seq()), (0x1234, 1));
        assert!(e.verify_checksum());
    }

    #[test]
    fn cut_echo_quote_keeps_a_valid_checksum_update() {
        let mut host_msg = vec![8u8, 0, 0, 0, 0x4e, 0x3c, 0, 1];
        host_msg.extend(std::iter::repeat_n(0xa5, 1000));
        icmpv4::Packet::new_unchecked(&mut host_msg[..]).fill_checksum();
        let mut expect = host_msg.clone();
        expect[4..6].copy_from_slice(&[0x12, 0x34]);
        icmpv4::Packet::new_unchecked(&mut expect[..]).fill_checksum();
        let q = Quote {
            src: GUEST4,
            dst: REMOTE4,
            l4: Quoted::Echo {
                ident: 0x1234,
                message: &host_msg,
            },
        };
        let mut out = [0u8; 2000];
        let n = icmp4_error(&mut out, LINK, REMOTE4, GUEST4, Error4::Unreachable(1), &q);
        assert_eq!(n, 14 + MAX_ERROR4_LEN);
        let quoted = &out[14 + 20 + 8 + 20..n];
        assert_eq!(&quoted[..8], &expect[..8], "checksum as over the whole");
    }

    #[test]
    fn port_unreachable_and_packet_too_big_v6() {
        let guest: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let remote: Ipv6Addr = "2001:db8:1::1".parse().unwrap();
        let payload = [1u8; 2000];
        let q = Quote {
            src: guest,
            dst: remote,
            l4: Quoted::Udp {
                src_port: 5000,
                dst_port: 6000,
                payload: &payload[..10],
            },
        };
        let mut out = [0u8; 3000];
        let err = Error6::from_icmp6(1, 4, 0).unwrap();
        let n = icmp6_error(&mut out, LINK, remote, guest, err, &q);
        assert_eq!(n, 14 + 40 + 8 + 40 + 8 + 10);
        let ip = ipv6::Packet::new_checked(&out[14..n]).unwrap();
        assert_eq!((ip.src(), ip.dst()), (remote, guest));
        let m = icmpv6::Packet::new_checked(ip.payload()).unwrap();
        assert!(m.verify_checksum(remote, guest));
        assert_eq!(&ip.payload()[..2], &[1, 4]);
        let quoted = ipv6::Packet::new_checked(&ip.payload()[8..]).unwrap();
        assert_eq!(
            (quoted.src(), quoted.dst(), quoted.next_header()),
            (guest, remote, IpProtocol::Udp)
        );
        let u = udp::Packet::new_checked(quoted.payload()).unwrap();
        assert_eq!((u.src_port(), u.dst_port()), (5000, 6000));
        assert!(u.verify_checksum_v6(guest, remote));

        let big = Quote {
            l4: Quoted::Udp {
                src_port: 5000,
                dst_port: 6000,
                payload: &payload,
            },
            ..q
        };
        let n = icmp6_error(
            &mut out,
            LINK,
            remote,
            guest,
            Error6::PacketTooBig(1400),
            &big,
        );
        assert_eq!(n, 14 + MAX_ERROR6_LEN);
        let ip = ipv6::Packet::new_checked(&out[14..n]).unwrap();
        assert_eq!(&ip.payload()[..8], {
            let mut h = [2u8, 0, 0, 0, 0, 0, 0x05, 0x78];
            h[2..4].copy_from_slice(&ip.payload()[2..4]);
            h
        });
        assert!(
            icmpv6::Packet::new_checked(ip.payload())
                .unwrap()
                .verify_checksum(remote, guest)
        );
        let quoted = &ip.payload()[8..];
        assert_eq!(u16::from_be_bytes([quoted[4], quoted[5]]), 8 + 2000);
    }

    #[test]
    fn tiny_buffers_and_empty_quotes_are_safe() {
        let mut out = [0u8; 14 + 20 + 8 + 20 + 7];
        let q = udp_quote4(b"");
        assert_eq!(
            icmp4_error(&mut out, LINK, REMOTE4, GUEST4, Error4::Unreachable(3), &q),
            0
        );
        let mut out = [0u8; 200];
        let n = icmp4_error(&mut out, LINK, REMOTE4, GUEST4, Error4::Unreachable(3), &q);
        assert_eq!(n, 14 + 20 + 8 + 20 + 8);
        let echo = Quote {
            l4: Quoted::Echo {
                ident: 1,
                message: &[8, 0, 0],
            },
            ..q
        };
        let n = icmp4_error(
            &mut out,
            LINK,
            REMOTE4,
            GUEST4,
            Error4::Unreachable(3),
            &echo,
        );
        assert_eq!(n, 14 + 20 + 8 + 20 + 3);
    }

    #[test]
    fn any_sizes_stay_in_bounds() {
        // xorshift64: reproducible without a dependency.
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |m: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % m as u64) as usize
        };
        let data = [0x5au8; 3000];
        let mut out = vec![0u8; 2000];
        let (g6, r6): (Ipv6Addr, Ipv6Addr) = (
            "2001:db8::2".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
        );
        for _ in 0..2000 {
            let out_len = next(out.len() + 1);
            let body = &data[..next(data.len() + 1)];
            let l4 = if next(2) == 0 {
                Quoted::Udp {
                    src_port: 1,
                    dst_port: 2,
                    payload: body,
                }
            } else {
                Quoted::Echo {
                    ident: 7,
                    message: body,
                }
            };
            let q4 = Quote {
                src: GUEST4,
                dst: REMOTE4,
                l4,
            };
            let n = icmp4_error(
                &mut out[..out_len],
                LINK,
                REMOTE4,
                GUEST4,
                Error4::Unreachable(3),
                &q4,
            );
            assert!(n <= out_len.min(14 + MAX_ERROR4_LEN));
            if n > 0 {
                let ip = ipv4::Packet::new_checked(&out[14..n]).unwrap();
                assert!(
                    icmpv4::Packet::new_checked(ip.payload())
                        .unwrap()
                        .verify_checksum()
                );
            }
            let q6 = Quote {
                src: g6,
                dst: r6,
                l4,
            };
            let n = icmp6_error(
                &mut out[..out_len],
                LINK,
                r6,
                g6,
                Error6::PacketTooBig(1280),
                &q6,
            );
            assert!(n <= out_len.min(14 + MAX_ERROR6_LEN));
            if n > 0 {
                let ip = ipv6::Packet::new_checked(&out[14..n]).unwrap();
                assert!(
                    icmpv6::Packet::new_checked(ip.payload())
                        .unwrap()
                        .verify_checksum(r6, g6)
                );
            }
        }
    }
}
