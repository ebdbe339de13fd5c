//! Whole frames towards the guest: Ethernet + IP + UDP/TCP/ICMP around a
//! payload that the caller writes in place.
//!
//! Every builder takes the output buffer and a closure that writes the
//! innermost payload into the space it is given and returns its length;
//! lengths and checksums are filled in afterwards. A payload that doesn't
//! fit is cut to the space available (callers size `out` to `MAX_FRAME`).
//!
//! For UDP and ICMP the closure returns an `Option`: `None` means there is
//! nothing to send (say, a socket that had no datagram after all) and the
//! builder returns 0, which `TxQueue::push_with` takes as "queue nothing";
//! `Some(0)` is a genuine empty UDP datagram and is built as one. TCP's
//! closure returns a plain length: a segment without payload is a valid
//! ACK, and whether to send one is the caller's decision.

use super::ethernet::{self, Frame};
use super::{EtherType, IpProtocol, Mac, icmpv4, icmpv6, ipv4, ipv6, tcp, udp};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Link-layer addresses of a frame: ours as source, the guest's as destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// Source MAC.
    pub src: Mac,
    /// Destination MAC.
    pub dst: Mac,
}

const UDP4_OFF: usize = ethernet::HEADER_LEN + ipv4::HEADER_LEN;
const UDP6_OFF: usize = ethernet::HEADER_LEN + ipv6::HEADER_LEN;
/// Where the L4 header starts in an IPv4 frame we build.
pub const L4_OFF_V4: usize = UDP4_OFF;
/// Where the L4 header starts in an IPv6 frame we build.
pub const L4_OFF_V6: usize = UDP6_OFF;

/// How much of a TCP or UDP checksum to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Csum {
    /// All of it.
    Full,
    /// The pseudo-header only, not inverted: the kernel completes or
    /// trusts it (a frame sent with a virtio-net header's `NEEDS_CSUM`).
    Partial,
}

/// Largest UDP payload an IPv4 frame can carry.
const MAX_UDP4_PAYLOAD: usize = 65535 - ipv4::HEADER_LEN - udp::HEADER_LEN;
/// Largest UDP payload an IPv6 frame can carry (no jumbograms).
const MAX_UDP6_PAYLOAD: usize = 65535 - udp::HEADER_LEN;

/// Build an Ethernet/IPv4/UDP frame; returns its length, or 0 if `out`
/// can't even hold the headers or `payload` had nothing to send.
pub fn udp4(
    out: &mut [u8],
    link: Link,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: impl FnOnce(&mut [u8]) -> Option<usize>,
) -> usize {
    udp4_csum(out, link, src, dst, Csum::Full, payload)
}

/// `udp4` computing only as much of the checksum as `csum` says.
pub fn udp4_csum(
    out: &mut [u8],
    link: Link,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    csum: Csum,
    payload: impl FnOnce(&mut [u8]) -> Option<usize>,
) -> usize {
    let payload_off = UDP4_OFF + udp::HEADER_LEN;
    if out.len() < payload_off {
        return 0;
    }
    let room = (out.len() - payload_off).min(MAX_UDP4_PAYLOAD);
    let Some(plen) = payload(&mut out[payload_off..payload_off + room]) else {
        return 0;
    };
    let plen = plen.min(room);
    let udp_len = udp::HEADER_LEN + plen;
    udp::UdpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
    }
    .emit(&mut out[UDP4_OFF..], plen);
    let mut dgram = udp::Packet::new_unchecked(&mut out[UDP4_OFF..UDP4_OFF + udp_len]);
    match csum {
        Csum::Full => dgram.fill_checksum_v4(*src.ip(), *dst.ip()),
        Csum::Partial => dgram.fill_partial_checksum_v4(*src.ip(), *dst.ip()),
    }
    ipv4::Ipv4Repr {
        src: *src.ip(),
        dst: *dst.ip(),
        protocol: IpProtocol::Udp,
        payload_len: udp_len,
        ttl: 255,
    }
    .emit(&mut out[ethernet::HEADER_LEN..]);
    Frame::new_unchecked(&mut out[..]).set_header(link.dst, link.src, EtherType::Ipv4);
    UDP4_OFF + udp_len
}

/// Build an Ethernet/IPv6/UDP frame; returns its length, or 0 if `out`
/// can't even hold the headers or `payload` had nothing to send.
pub fn udp6(
    out: &mut [u8],
    link: Link,
    src: SocketAddrV6,
    dst: SocketAddrV6,
    payload: impl FnOnce(&mut [u8]) -> Option<usize>,
) -> usize {
    udp6_csum(out, link, src, dst, Csum::Full, payload)
}

/// `udp6` computing only as much of the checksum as `csum` says.
pub fn udp6_csum(
    out: &mut [u8],
    link: Link,
    src: SocketAddrV6,
    dst: SocketAddrV6,
    csum: Csum,
    payload: impl FnOnce(&mut [u8]) -> Option<usize>,
) -> usize {
    let payload_off = UDP6_OFF + udp::HEADER_LEN;
    if out.len() < payload_off {
        return 0;
    }
    let room = (out.len() - payload_off).min(MAX_UDP6_PAYLOAD);
    let Some(plen) = payload(&mut out[payload_off..payload_off + room]) else {
        return 0;
    };
    let plen = plen.min(room);
    let udp_len = udp::HEADER_LEN + plen;
    udp::UdpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
    }
    .emit(&mut out[UDP6_OFF..], plen);
    let mut dgram = udp::Packet::new_unchecked(&mut out[UDP6_OFF..UDP6_OFF + udp_len]);
    match csum {
        Csum::Full => dgram.fill_checksum_v6(*src.ip(), *dst.ip()),
        Csum::Partial => dgram.fill_partial_checksum_v6(*src.ip(), *dst.ip()),
    }
    ip6_header(out, *src.ip(), *dst.ip(), IpProtocol::Udp, udp_len, 255);
    Frame::new_unchecked(&mut out[..]).set_header(link.dst, link.src, EtherType::Ipv6);
    UDP6_OFF + udp_len
}

/// Build an Ethernet/IPv6/ICMPv6 frame with hop limit 255 (as NDP
/// requires, RFC 4861 7.1.2); `message` writes the whole ICMPv6 message and
/// the checksum is filled here. Returns the frame length, or 0 if the
/// message doesn't fit, `message` had nothing to send or wrote less than a
/// header.
pub fn icmp6(
    out: &mut [u8],
    link: Link,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    message: impl FnOnce(&mut [u8]) -> Option<usize>,
) -> usize {
    if out.len() < UDP6_OFF + icmpv6::HEADER_LEN {
        return 0;
    }
    let room = (out.len() - UDP6_OFF).min(65535);
    let Some(mlen) = message(&mut out[UDP6_OFF..UDP6_OFF + room]) else {
        return 0;
    };
    let mlen = mlen.min(room);
    if mlen < icmpv6::HEADER_LEN {
        return 0;
    }
    icmpv6::Packet::new_unchecked(&mut out[UDP6_OFF..UDP6_OFF + mlen]).fill_checksum(src, dst);
    ip6_header(out, src, dst, IpProtocol::Icmpv6, mlen, 255);
    Frame::new_unchecked(&mut out[..]).set_header(link.dst, link.src, EtherType::Ipv6);
    UDP6_OFF + mlen
}

/// Build an Ethernet/IPv4/ICMP frame: `message` writes the whole ICMP
/// message, the checksum is filled here. Returns the frame length, or 0 if
/// the message doesn't fit, `message` had nothing to send or wrote less
/// than a header.
pub fn icmp4(
    out: &mut [u8],
    link: Link,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    message: impl FnOnce(&mut [u8]) -> Option<usize>,
) -> usize {
    if out.len() < UDP4_OFF + icmpv4::HEADER_LEN {
        return 0;
    }
    let room = (out.len() - UDP4_OFF).min(65535 - ipv4::HEADER_LEN);
    let Some(mlen) = message(&mut out[UDP4_OFF..UDP4_OFF + room]) else {
        return 0;
    };
    let mlen = mlen.min(room);
    if mlen < icmpv4::HEADER_LEN {
        return 0;
    }
    icmpv4::Packet::new_unchecked(&mut out[UDP4_OFF..UDP4_OFF + mlen]).fill_checksum();
    ipv4::Ipv4Repr {
        src,
        dst,
        protocol: IpProtocol::Icmp,
        payload_len: mlen,
        ttl: 64,
    }
    .emit(&mut out[ethernet::HEADER_LEN..]);
    Frame::new_unchecked(&mut out[..]).set_header(link.dst, link.src, EtherType::Ipv4);
    UDP4_OFF + mlen
}

/// `tcp4` or `tcp6`, as the addresses' family says: 0 for a mixed pair.
pub fn tcp(
    out: &mut [u8],
    link: Link,
    src: SocketAddr,
    dst: SocketAddr,
    hdr: &tcp::TcpRepr,
    csum: Csum,
    payload: impl FnOnce(&mut [u8]) -> usize,
) -> usize {
    match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            tcp4(out, link, *s.ip(), *d.ip(), hdr, csum, payload)
        }
        (SocketAddr::V6(s), SocketAddr::V6(d)) => {
            tcp6(out, link, *s.ip(), *d.ip(), hdr, csum, payload)
        }
        _ => 0,
    }
}

/// Build an Ethernet/IPv4/TCP frame with header `hdr` (ports, sequence
/// numbers, flags, window, SYN options) and the checksum `csum` says;
/// returns its length, or 0 if `out` can't even hold the headers.
pub fn tcp4(
    out: &mut [u8],
    link: Link,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    hdr: &tcp::TcpRepr,
    csum: Csum,
    payload: impl FnOnce(&mut [u8]) -> usize,
) -> usize {
    let hl = hdr.buffer_len();
    let payload_off = UDP4_OFF + hl;
    if out.len() < payload_off {
        return 0;
    }
    let room = (out.len() - payload_off).min(65535 - ipv4::HEADER_LEN - hl);
    let plen = payload(&mut out[payload_off..payload_off + room]).min(room);
    let seg_len = hl + plen;
    hdr.emit(&mut out[UDP4_OFF..]);
    let mut seg = tcp::Packet::new_unchecked(&mut out[UDP4_OFF..UDP4_OFF + seg_len]);
    match csum {
        Csum::Full => seg.fill_checksum_v4(src, dst),
        Csum::Partial => seg.fill_partial_checksum_v4(src, dst),
    }
    ipv4::Ipv4Repr {
        src,
        dst,
        protocol: IpProtocol::Tcp,
        payload_len: seg_len,
        ttl: 255,
    }
    .emit(&mut out[ethernet::HEADER_LEN..]);
    Frame::new_unchecked(&mut out[..]).set_header(link.dst, link.src, EtherType::Ipv4);
    UDP4_OFF + seg_len
}

/// Build an Ethernet/IPv6/TCP frame, likewise.
pub fn tcp6(
    out: &mut [u8],
    link: Link,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hdr: &tcp::TcpRepr,
    csum: Csum,
    payload: impl FnOnce(&mut [u8]) -> usize,
) -> usize {
    let hl = hdr.buffer_len();
    let payload_off = UDP6_OFF + hl;
    if out.len() < payload_off {
        return 0;
    }
    let room = (out.len() - payload_off).min(65535 - hl);
    let plen = payload(&mut out[payload_off..payload_off + room]).min(room);
    let seg_len = hl + plen;
    hdr.emit(&mut out[UDP6_OFF..]);
    let mut seg = tcp::Packet::new_unchecked(&mut out[UDP6_OFF..UDP6_OFF + seg_len]);
    match csum {
        Csum::Full => seg.fill_checksum_v6(src, dst),
        Csum::Partial => seg.fill_partial_checksum_v6(src, dst),
    }
    ip6_header(out, src, dst, IpProtocol::Tcp, seg_len, 255);
    Frame::new_unchecked(&mut out[..]).set_header(link.dst, link.src, EtherType::Ipv6);
    UDP6_OFF + seg_len
}

fn ip6_header(
    out: &mut [u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next: IpProtocol,
    payload_len: usize,
    hop: u8,
) {
    ipv6::Ipv6Repr {
        src,
        dst,
        next_header: next,
        payload_len,
        hop_limit: hop,
    }
    .emit(&mut out[ethernet::HEADER_LEN..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINK: Link = Link {
        src: Mac([0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55]),
        dst: Mac([2, 0, 0, 0, 0, 1]),
    };

    #[test]
    fn udp4_frame_parses_back() {
        let mut out = [0u8; 200];
        let src = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 67);
        let dst = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 2), 68);
        let n = udp4(&mut out, LINK, src, dst, |b| {
            b[..5].copy_from_slice(b"hello");
            Some(5)
        });
        assert_eq!(n, 14 + 20 + 8 + 5);
        let f = Frame::new_checked(&out[..n]).unwrap();
        assert_eq!(
            (f.dst(), f.src(), f.ethertype()),
            (LINK.dst, LINK.src, EtherType::Ipv4)
        );
        let ip = ipv4::Packet::new_checked(f.payload()).unwrap();
        let repr = ipv4::Ipv4Repr::parse(&ip).unwrap();
        assert_eq!(
            (repr.src, repr.dst, repr.protocol),
            (*src.ip(), *dst.ip(), IpProtocol::Udp)
        );
        let u = udp::Packet::new_checked(ip.payload()).unwrap();
        assert!(u.verify_checksum_v4(*src.ip(), *dst.ip()));
        assert_eq!(u.payload(), b"hello");
    }

    #[test]
    fn udp6_and_icmp6_frames_parse_back() {
        let a: Ipv6Addr = "fe80::1".parse().unwrap();
        let b: Ipv6Addr = "fe80::2".parse().unwrap();
        let mut out = [0u8; 200];
        let n = udp6(
            &mut out,
            LINK,
            SocketAddrV6::new(a, 547, 0, 0),
            SocketAddrV6::new(b, 546, 0, 0),
            |p| {
                p[0] = 7;
                Some(1)
            },
        );
        let f = Frame::new_checked(&out[..n]).unwrap();
        let ip = ipv6::Packet::new_checked(f.payload()).unwrap();
        let u = udp::Packet::new_checked(ip.payload()).unwrap();
        assert!(u.verify_checksum_v6(a, b));
        assert_eq!(u.payload(), &[7]);

        let n = icmp6(&mut out, LINK, a, b, |m| {
            m[..8].copy_from_slice(&[129, 0, 0, 0, 0, 1, 0, 1]);
            Some(8)
        });
        let f = Frame::new_checked(&out[..n]).unwrap();
        let ip = ipv6::Packet::new_checked(f.payload()).unwrap();
        assert_eq!(ip.hop_limit(), 255);
        let m = icmpv6::Packet::new_checked(ip.payload()).unwrap();
        assert!(m.verify_checksum(a, b));
    }

    #[test]
    fn icmp4_frame_parses_back() {
        let mut out = [0u8; 100];
        let (a, b) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
        let n = icmp4(&mut out, LINK, a, b, |m| {
            m[..10].copy_from_slice(&[0, 0, 0, 0, 0, 9, 0, 1, b'h', b'i']);
            Some(10)
        });
        assert_eq!(n, 14 + 20 + 10);
        let f = Frame::new_checked(&out[..n]).unwrap();
        let ip = ipv4::Packet::new_checked(f.payload()).unwrap();
        let r = ipv4::Ipv4Repr::parse(&ip).unwrap();
        assert_eq!((r.src, r.dst, r.protocol), (a, b, IpProtocol::Icmp));
        let m = icmpv4::Packet::new_checked(ip.payload()).unwrap();
        assert!(m.verify_checksum());
        assert_eq!(m.echo_ident(), 9);
    }

    #[test]
    fn tcp4_and_tcp6_frames_parse_back() {
        let mut out = [0u8; 200];
        let (a, b) = (Ipv4Addr::new(203, 0, 113, 1), Ipv4Addr::new(192, 0, 2, 2));
        let hdr = tcp::TcpRepr {
            src_port: 80,
            dst_port: 40000,
            seq: 7,
            ack: 9,
            flags: tcp::Flags::ACK | tcp::Flags::PSH,
            window: 1000,
            ..Default::default()
        };
        let n = tcp4(&mut out, LINK, a, b, &hdr, Csum::Full, |p| {
            p[..3].copy_from_slice(b"xyz");
            3
        });
        assert_eq!(n, 14 + 20 + 20 + 3);
        let f = Frame::new_checked(&out[..n]).unwrap();
        let ip = ipv4::Packet::new_checked(f.payload()).unwrap();
        assert_eq!(
            ipv4::Ipv4Repr::parse(&ip).unwrap().protocol,
            IpProtocol::Tcp
        );
        let t = tcp::Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(tcp::TcpRepr::parse(&t, a.into(), b.into()), Ok(hdr));
        assert_eq!(t.payload(), b"xyz");

        let (a6, b6): (Ipv6Addr, Ipv6Addr) = (
            "2001:db8:1::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        );
        let syn = tcp::TcpRepr {
            flags: tcp::Flags::SYN | tcp::Flags::ACK,
            mss: Some(1440),
            wscale: Some(7),
            ..hdr
        };
        let n = tcp6(&mut out, LINK, a6, b6, &syn, Csum::Full, |_| 0);
        assert_eq!(n, 14 + 40 + 28);
        let f = Frame::new_checked(&out[..n]).unwrap();
        let ip = ipv6::Packet::new_checked(f.payload()).unwrap();
        let (proto, l4) = ip.upper_layer().unwrap();
        assert_eq!(proto, IpProtocol::Tcp);
        let t = tcp::Packet::new_checked(l4).unwrap();
        assert_eq!(tcp::TcpRepr::parse(&t, a6.into(), b6.into()), Ok(syn));
    }

    #[test]
    fn partial_udp_checksum_completes_to_the_full_one() {
        let (mut full, mut part) = ([0u8; 200], [0u8; 200]);
        let body = |p: &mut [u8]| {
            p[..5].copy_from_slice(b"hello");
            Some(5)
        };
        // What the kernel does with CHECKSUM_PARTIAL (UDP turns a zero
        // result into all ones, as we do).
        let complete = |l4: &mut [u8]| {
            let done = crate::wire::checksum::fold(crate::wire::checksum::sum(l4, 0));
            let done = if done == 0 { 0xffff } else { done };
            let at = udp::CHECKSUM_OFFSET;
            l4[at..at + 2].copy_from_slice(&done.to_be_bytes());
        };
        let (a, b): (SocketAddrV4, SocketAddrV4) = (
            "203.0.113.1:53".parse().unwrap(),
            "192.0.2.2:40000".parse().unwrap(),
        );
        let n = udp4(&mut full, LINK, a, b, body);
        assert_eq!(udp4_csum(&mut part, LINK, a, b, Csum::Partial, body), n);
        complete(&mut part[L4_OFF_V4..n]);
        assert_eq!(full[..n], part[..n]);
        let (a6, b6): (SocketAddrV6, SocketAddrV6) = (
            "[2001:db8::1]:53".parse().unwrap(),
            "[2001:db8::2]:40000".parse().unwrap(),
        );
        let n = udp6(&mut full, LINK, a6, b6, body);
        assert_eq!(udp6_csum(&mut part, LINK, a6, b6, Csum::Partial, body), n);
        complete(&mut part[L4_OFF_V6..n]);
        assert_eq!(full[..n], part[..n]);
    }

    #[test]
    fn partial_checksum_completes_to_the_full_one() {
        let mut full = [0u8; 200];
        let mut part = [0u8; 200];
        let (a, b) = (Ipv4Addr::new(203, 0, 113, 1), Ipv4Addr::new(192, 0, 2, 2));
        let hdr = tcp::TcpRepr {
            src_port: 80,
            dst_port: 40000,
            flags: tcp::Flags::ACK,
            ..Default::default()
        };
        let body = |p: &mut [u8]| {
            p[..5].copy_from_slice(b"hello");
            5
        };
        let n = tcp4(&mut full, LINK, a, b, &hdr, Csum::Full, body);
        assert_eq!(tcp4(&mut part, LINK, a, b, &hdr, Csum::Partial, body), n);
        // What the kernel does with CHECKSUM_PARTIAL: sum from the L4
        // header on, over the pseudo-header sum in the field, and invert.
        let l4 = &mut part[L4_OFF_V4..n];
        let done = crate::wire::checksum::fold(crate::wire::checksum::sum(l4, 0));
        l4[16..18].copy_from_slice(&done.to_be_bytes());
        assert_eq!(full[..n], part[..n]);

        let (a6, b6): (Ipv6Addr, Ipv6Addr) = (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        );
        let n = tcp6(&mut full, LINK, a6, b6, &hdr, Csum::Full, body);
        tcp6(&mut part, LINK, a6, b6, &hdr, Csum::Partial, body);
        let l4 = &mut part[L4_OFF_V6..n];
        let done = crate::wire::checksum::fold(crate::wire::checksum::sum(l4, 0));
        l4[16..18].copy_from_slice(&done.to_be_bytes());
        assert_eq!(full[..n], part[..n]);
    }

    #[test]
    fn too_small_buffers_give_zero() {
        let mut out = [0u8; 20];
        let any4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1);
        assert_eq!(udp4(&mut out, LINK, any4, any4, |_| Some(0)), 0);
        let any6 = Ipv6Addr::LOCALHOST;
        assert_eq!(icmp6(&mut out, LINK, any6, any6, |_| Some(8)), 0);
    }

    #[test]
    fn payload_cut_to_space() {
        let mut out = [0u8; 50];
        let a = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1);
        assert_eq!(udp4(&mut out, LINK, a, a, |_| Some(1000)), 50);
    }

    #[test]
    fn nothing_is_not_an_empty_datagram() {
        let mut out = [0u8; 200];
        let a = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 53);
        let b = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 2), 4000);
        assert_eq!(udp4(&mut out, LINK, a, b, |_| None), 0);
        // An empty datagram is a datagram: headers only, Length 8.
        let n = udp4(&mut out, LINK, a, b, |_| Some(0));
        assert_eq!(n, 14 + 20 + 8);
        let ip = ipv4::Packet::new_checked(&out[14..n]).unwrap();
        let u = udp::Packet::new_checked(ip.payload()).unwrap();
        assert_eq!((u.len(), u.payload().len()), (8, 0));
        assert!(u.verify_checksum_v4(*a.ip(), *b.ip()));
        let (a6, b6): (Ipv6Addr, Ipv6Addr) = (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        );
        let (s6, d6) = (
            SocketAddrV6::new(a6, 53, 0, 0),
            SocketAddrV6::new(b6, 4000, 0, 0),
        );
        assert_eq!(udp6(&mut out, LINK, s6, d6, |_| None), 0);
        assert_eq!(udp6(&mut out, LINK, s6, d6, |_| Some(0)), 14 + 40 + 8);
        assert_eq!(icmp4(&mut out, LINK, *a.ip(), *b.ip(), |_| None), 0);
        assert_eq!(icmp6(&mut out, LINK, a6, b6, |_| None), 0);
    }
}
