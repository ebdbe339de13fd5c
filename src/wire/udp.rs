//! UDP datagrams (RFC 768): a bounds-checked view, checksums over the IPv4
//! and IPv6 pseudo-headers, parsed form, header emitter.
//!
//! The payload is bounded by the UDP Length field: the buffer handed in (the
//! IP payload) may be longer, and the extra bytes are ignored.

use super::WireError;
use super::checksum;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Length of a UDP header.
pub const HEADER_LEN: usize = 8;
/// Where the checksum field sits in the header (virtio-net `csum_offset`).
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM.start;

mod field {
    use std::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// The IP protocol number of UDP.
pub const PROTO: u8 = 17;

/// A view of a UDP datagram.
#[derive(Debug)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

fn check(b: &[u8]) -> Result<(), WireError> {
    if b.len() < HEADER_LEN {
        return Err(WireError::Truncated);
    }
    let len = usize::from(be16(b, field::LENGTH.start));
    if len < HEADER_LEN {
        return Err(WireError::Malformed);
    }
    if len > b.len() {
        return Err(WireError::Truncated);
    }
    Ok(())
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap a buffer without checking it; only for buffers we size ourselves.
    pub fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wrap a buffer, checking the header and the Length field. Afterwards
    /// no accessor can panic.
    ///
    /// # Errors
    /// `Truncated` if the buffer is shorter than 8 bytes or than Length;
    /// `Malformed` if Length is below 8.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        check(buffer.as_ref())?;
        Ok(Packet { buffer })
    }

    /// Give the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT.start)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT.start)
    }

    /// Length: header and payload, in bytes.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Payload: from the end of the header to Length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }

    /// True if the checksum is correct for an IPv4 datagram from `src` to `dst`.
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        // RFC 768: "An all zero transmitted checksum value means that the
        // transmitter generated no checksum".
        if self.checksum() == 0 {
            return true;
        }
        let len = self.len();
        let pseudo = checksum::pseudo_v4(src, dst, PROTO, u32::from(len));
        self.sum_is_zero(pseudo)
    }

    /// True if the checksum is correct for an IPv6 datagram from `src` to `dst`.
    pub fn verify_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        // RFC 8200 8.1: "IPv6 receivers must discard UDP packets containing
        // a zero checksum and should log the error."
        if self.checksum() == 0 {
            return false;
        }
        let len = self.len();
        let pseudo = checksum::pseudo_v6(src, dst, PROTO, u32::from(len));
        self.sum_is_zero(pseudo)
    }

    /// True if the checksum is correct for a datagram between `src` and
    /// `dst`, of either family; false if the families differ.
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => self.verify_checksum_v4(s, d),
            (IpAddr::V6(s), IpAddr::V6(d)) => self.verify_checksum_v6(s, d),
            _ => false,
        }
    }

    fn sum_is_zero(&self, pseudo: u32) -> bool {
        let b = &self.buffer.as_ref()[..usize::from(self.len())];
        checksum::fold(checksum::sum(b, pseudo)) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set the source port.
    pub fn set_src_port(&mut self, port: u16) {
        self.buffer.as_mut()[field::SRC_PORT].copy_from_slice(&port.to_be_bytes());
    }

    /// Set the destination port.
    pub fn set_dst_port(&mut self, port: u16) {
        self.buffer.as_mut()[field::DST_PORT].copy_from_slice(&port.to_be_bytes());
    }

    /// Set Length.
    pub fn set_len(&mut self, len: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&len.to_be_bytes());
    }

    /// Set the checksum field as is (see `fill_checksum_v4`/`_v6`).
    pub fn set_checksum(&mut self, sum: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
    }

    /// Compute and store the checksum for IPv4; Length and payload must be set.
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        let pseudo = checksum::pseudo_v4(src, dst, PROTO, u32::from(self.len()));
        self.fill_checksum_with(pseudo);
    }

    /// Compute and store the checksum for IPv6; Length and payload must be set.
    pub fn fill_checksum_v6(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        let pseudo = checksum::pseudo_v6(src, dst, PROTO, u32::from(self.len()));
        self.fill_checksum_with(pseudo);
    }

    /// Store only the pseudo-header's sum, not inverted, for the kernel
    /// to complete or trust (a frame sent with a virtio-net header's
    /// `NEEDS_CSUM`); Length must be set.
    pub fn fill_partial_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        let pseudo = checksum::pseudo_v4(src, dst, PROTO, u32::from(self.len()));
        self.set_checksum(!checksum::fold(pseudo));
    }

    /// The same for IPv6.
    pub fn fill_partial_checksum_v6(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        let pseudo = checksum::pseudo_v6(src, dst, PROTO, u32::from(self.len()));
        self.set_checksum(!checksum::fold(pseudo));
    }

    /// Payload, writable; Length must be set.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    fn fill_checksum_with(&mut self, pseudo: u32) {
        self.set_checksum(0);
        let end = usize::from(self.len());
        let sum = checksum::fold(checksum::sum(&self.buffer.as_ref()[..end], pseudo));
        // RFC 768: "If the computed checksum is zero, it is transmitted as
        // all ones"; zero on the wire would mean "no checksum".
        self.set_checksum(if sum == 0 { 0xffff } else { sum });
    }
}

/// A parsed UDP header: the ports. Length and payload stay on the `Packet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

impl UdpRepr {
    /// Parse a datagram carried between `src` and `dst`, re-checking its
    /// lengths and verifying the checksum (so it can't be forgotten).
    ///
    /// # Errors
    /// Those of `Packet::new_checked`; `Malformed` for a bad checksum, a
    /// zero checksum over IPv6, or addresses of different families.
    pub fn parse<T: AsRef<[u8]>>(
        packet: &Packet<T>,
        src: IpAddr,
        dst: IpAddr,
    ) -> Result<Self, WireError> {
        check(packet.buffer.as_ref())?;
        if !packet.verify_checksum(src, dst) {
            return Err(WireError::Malformed);
        }
        Ok(UdpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
        })
    }

    /// Bytes `emit` writes: the header only, the payload is the caller's.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write the 8-byte header for `payload_len` bytes of payload into the
    /// start of `b`, with a zero checksum.
    ///
    /// Put the payload in place, then call `fill_checksum_v4`/`_v6` on a
    /// `Packet` over header and payload.
    ///
    /// # Panics
    /// If `b` is shorter than 8 bytes, or `payload_len` is over 65527:
    /// callers size both.
    pub fn emit(&self, b: &mut [u8], payload_len: usize) {
        let len =
            u16::try_from(HEADER_LEN + payload_len).expect("UDP payload_len over 65527 bytes");
        let mut p = Packet::new_unchecked(&mut b[..HEADER_LEN]);
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_len(len);
        p.set_checksum(0);
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
    const DST4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const SRC6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);
    const DST6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

    /// 40000 → 53, "abcd", checksummed for 192.0.2.2 → 192.0.2.1.
    static DATAGRAM_V4: [u8; 12] = [
        0x9c, 0x40, 0x00, 0x35, 0x00, 0x0c, 0x1a, 0x96, 0x61, 0x62, 0x63, 0x64,
    ];

    /// The same, checksummed for fe80::2 → fe80::1.
    static DATAGRAM_V6: [u8; 12] = [
        0x9c, 0x40, 0x00, 0x35, 0x00, 0x0c, 0xa1, 0x95, 0x61, 0x62, 0x63, 0x64,
    ];

    static PAYLOAD: [u8; 4] = *b"abcd";

    fn repr() -> UdpRepr {
        UdpRepr {
            src_port: 40000,
            dst_port: 53,
        }
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&DATAGRAM_V4[..]).unwrap();
        assert_eq!(p.src_port(), 40000);
        assert_eq!(p.dst_port(), 53);
        assert_eq!(p.len(), 12);
        assert_eq!(p.checksum(), 0x1a96);
        assert_eq!(p.payload(), &PAYLOAD);
        assert!(p.verify_checksum_v4(SRC4, DST4));
        let p = Packet::new_checked(&DATAGRAM_V6[..]).unwrap();
        assert!(p.verify_checksum_v6(SRC6, DST6));
    }

    #[test]
    fn construct() {
        let mut b = [0xa5u8; 12];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_src_port(40000);
        p.set_dst_port(53);
        p.set_len(12);
        p.set_checksum(0xffff);
        p.payload_mut().copy_from_slice(&PAYLOAD);
        p.fill_checksum_v4(SRC4, DST4);
        assert_eq!(b, DATAGRAM_V4);
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.fill_checksum_v6(SRC6, DST6);
        assert_eq!(b, DATAGRAM_V6);
    }

    #[test]
    fn parse() {
        let p = Packet::new_checked(&DATAGRAM_V4[..]).unwrap();
        assert_eq!(
            UdpRepr::parse(&p, SRC4.into(), DST4.into()).unwrap(),
            repr()
        );
        let p = Packet::new_checked(&DATAGRAM_V6[..]).unwrap();
        assert_eq!(
            UdpRepr::parse(&p, SRC6.into(), DST6.into()).unwrap(),
            repr()
        );
    }

    #[test]
    fn emit() {
        let mut b = [0u8; 12];
        let r = repr();
        assert_eq!(r.buffer_len(), 8);
        r.emit(&mut b, PAYLOAD.len());
        b[8..].copy_from_slice(&PAYLOAD);
        Packet::new_unchecked(&mut b[..]).fill_checksum_v4(SRC4, DST4);
        assert_eq!(b, DATAGRAM_V4);
    }

    #[test]
    fn trailing_bytes_ignored() {
        let mut b = [0u8; 18];
        b[..12].copy_from_slice(&DATAGRAM_V4);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload(), &PAYLOAD);
        assert!(p.verify_checksum_v4(SRC4, DST4));
    }

    #[test]
    fn bad_length() {
        let t = |b: &[u8]| Packet::new_checked(b).unwrap_err();
        assert_eq!(t(&DATAGRAM_V4[..7]), WireError::Truncated);
        assert_eq!(t(&DATAGRAM_V4[..11]), WireError::Truncated);
        let mut b = DATAGRAM_V4;
        b[5] = 7;
        assert_eq!(t(&b), WireError::Malformed);
        let p = Packet::new_unchecked(&DATAGRAM_V4[..5]);
        assert_eq!(
            UdpRepr::parse(&p, SRC4.into(), DST4.into()),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn bad_checksum() {
        let mut b = DATAGRAM_V4;
        b[11] ^= 1;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(!p.verify_checksum_v4(SRC4, DST4));
        assert_eq!(
            UdpRepr::parse(&p, SRC4.into(), DST4.into()),
            Err(WireError::Malformed)
        );
        // Right bytes, wrong pseudo-header.
        let p = Packet::new_checked(&DATAGRAM_V4[..]).unwrap();
        assert!(!p.verify_checksum_v4(SRC4, Ipv4Addr::new(192, 0, 2, 3)));
        // Mixed families.
        assert!(!p.verify_checksum(SRC4.into(), DST6.into()));
    }

    #[test]
    fn zero_checksum() {
        let mut b = DATAGRAM_V4;
        b[6] = 0;
        b[7] = 0;
        let p = Packet::new_checked(&b[..]).unwrap();
        // IPv4: "no checksum", accepted.
        assert!(p.verify_checksum_v4(SRC4, DST4));
        // IPv6: not allowed.
        assert!(!p.verify_checksum_v6(SRC6, DST6));
        assert_eq!(
            UdpRepr::parse(&p, SRC6.into(), DST6.into()),
            Err(WireError::Malformed)
        );
    }

    #[test]
    fn computed_zero_sent_as_ones() {
        // Pick the payload so that the checksum comes out as zero: with the
        // checksum field at 0 the sum must be 0xffff.
        let mut b = [0u8; 10];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_src_port(1);
        p.set_dst_port(2);
        p.set_len(10);
        let pseudo = checksum::pseudo_v4(SRC4, DST4, PROTO, 10);
        let partial = checksum::sum(&b, pseudo);
        let fill = 0xffff - partial as u16;
        b[8..].copy_from_slice(&fill.to_be_bytes());
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.fill_checksum_v4(SRC4, DST4);
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum_v4(SRC4, DST4));
    }
}
