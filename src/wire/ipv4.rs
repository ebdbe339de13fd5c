//! IPv4 headers (RFC 791): a bounds-checked view, setters, parsed form, emitter.
//!
//! The payload is bounded by the Total Length field, not by the buffer: a
//! frame shorter than 60 bytes arrives with Ethernet padding after the
//! datagram, and that padding must not reach the upper layer.

use super::WireError;
use super::checksum;
use super::ip::IpProtocol;
use std::net::Ipv4Addr;

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;

mod field {
    use std::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

/// Flags and fragment offset bits of bytes 6..8.
const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet.
#[derive(Debug)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

fn check(b: &[u8]) -> Result<(), WireError> {
    if b.len() < HEADER_LEN {
        return Err(WireError::Truncated);
    }
    if b[field::VER_IHL] >> 4 != 4 {
        return Err(WireError::Malformed);
    }
    let header_len = usize::from(b[field::VER_IHL] & 0x0f) * 4;
    // RFC 791 3.1: "the minimum value for a correct header is 5".
    if header_len < HEADER_LEN {
        return Err(WireError::Malformed);
    }
    if header_len > b.len() {
        return Err(WireError::Truncated);
    }
    let total_len = usize::from(be16(b, field::LENGTH.start));
    if total_len < header_len {
        return Err(WireError::Malformed);
    }
    if total_len > b.len() {
        return Err(WireError::Truncated);
    }
    Ok(())
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap a buffer without checking it; only for buffers we size ourselves.
    pub fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wrap a buffer, checking every length and the version.
    ///
    /// Afterwards no accessor can panic. The buffer may be longer than the
    /// datagram (Ethernet padding).
    ///
    /// # Errors
    /// `Truncated` if the buffer is shorter than 20 bytes, than the header
    /// length or than the total length; `Malformed` if the version is not
    /// 4, the IHL is below 5 or the total length is below the header length.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        check(buffer.as_ref())?;
        Ok(Packet { buffer })
    }

    /// Give the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// IP version (4 for a checked packet).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// Differentiated Services Code Point (RFC 2474), the top six bits.
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    /// Explicit Congestion Notification (RFC 3168), the low two bits.
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x03
    }

    /// Total length: header and payload, in bytes.
    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT.start)
    }

    /// Don't Fragment flag.
    pub fn dont_frag(&self) -> bool {
        self.flags_offset() & FLAG_DF != 0
    }

    /// More Fragments flag.
    pub fn more_frags(&self) -> bool {
        self.flags_offset() & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field counts 8-byte units).
    pub fn frag_offset(&self) -> u16 {
        (self.flags_offset() & OFFSET_MASK) << 3
    }

    /// True for any piece of a fragmented datagram: MF set or offset non-zero.
    pub fn is_fragment(&self) -> bool {
        self.flags_offset() & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol of the payload.
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::PROTOCOL])
    }

    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Source address.
    pub fn src(&self) -> Ipv4Addr {
        ip_at(self.buffer.as_ref(), field::SRC.start)
    }

    /// Destination address.
    pub fn dst(&self) -> Ipv4Addr {
        ip_at(self.buffer.as_ref(), field::DST.start)
    }

    /// Options: the header bytes after the fixed 20.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// Payload: from the end of the header to Total Length (padding excluded).
    pub fn payload(&self) -> &[u8] {
        let end = usize::from(self.total_len());
        &self.buffer.as_ref()[self.header_len()..end]
    }

    /// True if the header checksum is correct.
    pub fn verify_checksum(&self) -> bool {
        let header = &self.buffer.as_ref()[..self.header_len()];
        checksum::fold(checksum::sum(header, 0)) == 0
    }

    fn flags_offset(&self) -> u16 {
        be16(self.buffer.as_ref(), field::FLG_OFF.start)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set the version nibble.
    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (version << 4);
    }

    /// Set the header length in bytes (a multiple of 4, 20 to 60).
    pub fn set_header_len(&mut self, len: usize) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((len / 4) as u8 & 0x0f);
    }

    /// Set the DSCP (six bits).
    pub fn set_dscp(&mut self, dscp: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0x03) | (dscp << 2);
    }

    /// Set the ECN codepoint (two bits).
    pub fn set_ecn(&mut self, ecn: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0xfc) | (ecn & 0x03);
    }

    /// Set Total Length.
    pub fn set_total_len(&mut self, len: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&len.to_be_bytes());
    }

    /// Set Identification.
    pub fn set_ident(&mut self, ident: u16) {
        self.buffer.as_mut()[field::IDENT].copy_from_slice(&ident.to_be_bytes());
    }

    /// Clear all three flag bits (reserved, DF, MF), keeping the offset.
    pub fn clear_flags(&mut self) {
        self.set_flag_bits(!OFFSET_MASK, 0);
    }

    /// Set or clear Don't Fragment.
    pub fn set_dont_frag(&mut self, on: bool) {
        self.set_flag_bits(FLAG_DF, if on { FLAG_DF } else { 0 });
    }

    /// Set or clear More Fragments.
    pub fn set_more_frags(&mut self, on: bool) {
        self.set_flag_bits(FLAG_MF, if on { FLAG_MF } else { 0 });
    }

    /// Set the fragment offset in bytes (rounded down to 8-byte units).
    pub fn set_frag_offset(&mut self, offset: u16) {
        self.set_flag_bits(OFFSET_MASK, offset >> 3);
    }

    /// Set Time to Live.
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    /// Set Protocol.
    pub fn set_protocol(&mut self, proto: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = u8::from(proto);
    }

    /// Set the checksum field as is (see `fill_checksum`).
    pub fn set_checksum(&mut self, sum: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
    }

    /// Set the source address.
    pub fn set_src(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.octets());
    }

    /// Set the destination address.
    pub fn set_dst(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.octets());
    }

    /// Compute and store the header checksum; the header length must be set.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let len = self.header_len();
        let sum = checksum::fold(checksum::sum(&self.buffer.as_ref()[..len], 0));
        self.set_checksum(sum);
    }

    /// Options, writable.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let len = self.header_len();
        &mut self.buffer.as_mut()[HEADER_LEN..len]
    }

    /// Payload, writable; header length and total length must be set.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), usize::from(self.total_len()));
        &mut self.buffer.as_mut()[start..end]
    }

    fn set_flag_bits(&mut self, mask: u16, bits: u16) {
        let v = (self.flags_offset() & !mask) | (bits & mask);
        self.buffer.as_mut()[field::FLG_OFF].copy_from_slice(&v.to_be_bytes());
    }
}

/// A parsed IPv4 header: what the upper layers need.
///
/// Options, DSCP/ECN and fragmentation are left on the `Packet`: dispatch
/// looks at `Packet::is_fragment` to decide what to do with fragments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Protocol of the payload.
    pub protocol: IpProtocol,
    /// Payload length in bytes (Total Length minus header length).
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
}

impl Ipv4Repr {
    /// Parse a packet, re-checking lengths and verifying the header checksum.
    ///
    /// # Errors
    /// Those of `Packet::new_checked`, and `Malformed` for a bad checksum.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Self, WireError> {
        check(packet.buffer.as_ref())?;
        // RFC 1122 3.2.1.2: "A host MUST verify the IP header checksum on
        // every received datagram and silently discard every datagram that
        // has a bad checksum."
        if !packet.verify_checksum() {
            return Err(WireError::Malformed);
        }
        Ok(Ipv4Repr {
            src: packet.src(),
            dst: packet.dst(),
            protocol: packet.protocol(),
            payload_len: usize::from(packet.total_len()) - packet.header_len(),
            ttl: packet.ttl(),
        })
    }

    /// Bytes `emit` writes: the header only, the payload is the caller's.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write a 20-byte header, checksum included, into the start of `b`.
    ///
    /// No options, DSCP/ECN zero, Don't Fragment set and Identification 0:
    /// RFC 6864 4.1, "The IPv4 ID field MUST NOT be used for purposes other
    /// than fragmentation and reassembly", so atomic datagrams (DF set,
    /// not fragmented) may carry any value.
    ///
    /// # Panics
    /// If `b` is shorter than 20 bytes, or if `payload_len` doesn't fit in
    /// Total Length (over 65515): callers size both.
    pub fn emit(&self, b: &mut [u8]) {
        let total = u16::try_from(HEADER_LEN + self.payload_len)
            .expect("IPv4 payload_len over 65515 bytes");
        let mut p = Packet::new_unchecked(&mut b[..HEADER_LEN]);
        p.buffer[field::VER_IHL] = 0x45;
        p.buffer[field::DSCP_ECN] = 0;
        p.set_total_len(total);
        p.set_ident(0);
        p.buffer[field::FLG_OFF].copy_from_slice(&FLAG_DF.to_be_bytes());
        p.set_ttl(self.ttl);
        p.set_protocol(self.protocol);
        p.set_src(self.src);
        p.set_dst(self.dst);
        p.fill_checksum();
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn ip_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 192.0.2.2 → 192.0.2.1, UDP, TTL 64, DF, 12 bytes of payload.
    static PACKET: [u8; 32] = [
        0x45, 0x00, 0x00, 0x20, // v4, ihl 5, total 32
        0x00, 0x00, 0x40, 0x00, // ident 0, DF
        0x40, 0x11, 0xb6, 0xc9, // ttl 64, UDP, checksum
        0xc0, 0x00, 0x02, 0x02, // src
        0xc0, 0x00, 0x02, 0x01, // dst
        0x9c, 0x40, 0x00, 0x35, 0x00, 0x0c, 0x1a, 0x96, 0x61, 0x62, 0x63, 0x64, // UDP
    ];

    static PAYLOAD: [u8; 12] = [
        0x9c, 0x40, 0x00, 0x35, 0x00, 0x0c, 0x1a, 0x96, 0x61, 0x62, 0x63, 0x64,
    ];

    fn repr() -> Ipv4Repr {
        Ipv4Repr {
            src: Ipv4Addr::new(192, 0, 2, 2),
            dst: Ipv4Addr::new(192, 0, 2, 1),
            protocol: IpProtocol::Udp,
            payload_len: 12,
            ttl: 64,
        }
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.dscp(), 0);
        assert_eq!(p.ecn(), 0);
        assert_eq!(p.total_len(), 32);
        assert_eq!(p.ident(), 0);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), IpProtocol::Udp);
        assert_eq!(p.checksum(), 0xb6c9);
        assert_eq!(p.src(), Ipv4Addr::new(192, 0, 2, 2));
        assert_eq!(p.dst(), Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(p.options(), &[] as &[u8]);
        assert_eq!(p.payload(), &PAYLOAD);
        assert!(p.verify_checksum());
    }

    #[test]
    fn construct() {
        let mut b = [0xa5u8; 32];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_version(4);
        p.set_header_len(20);
        p.set_dscp(0);
        p.set_ecn(0);
        p.set_total_len(32);
        p.set_ident(0);
        p.clear_flags();
        p.set_dont_frag(true);
        p.set_more_frags(false);
        p.set_frag_offset(0);
        p.set_ttl(64);
        p.set_protocol(IpProtocol::Udp);
        p.set_src(Ipv4Addr::new(192, 0, 2, 2));
        p.set_dst(Ipv4Addr::new(192, 0, 2, 1));
        p.payload_mut().copy_from_slice(&PAYLOAD);
        p.fill_checksum();
        assert_eq!(b, PACKET);
    }

    #[test]
    fn parse() {
        let p = Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&p).unwrap(), repr());
    }

    #[test]
    fn emit() {
        let mut b = [0u8; 32];
        let r = repr();
        assert_eq!(r.buffer_len(), 20);
        r.emit(&mut b);
        b[20..].copy_from_slice(&PAYLOAD);
        assert_eq!(b, PACKET);
    }

    #[test]
    fn padding_excluded() {
        let mut b = [0u8; 46];
        b[..32].copy_from_slice(&PACKET);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload(), &PAYLOAD);
        assert_eq!(Ipv4Repr::parse(&p).unwrap(), repr());
    }

    #[test]
    fn bad_length() {
        let t = |b: &[u8]| Packet::new_checked(b).unwrap_err();
        assert_eq!(t(&PACKET[..19]), WireError::Truncated);
        // Total length 32 but only 31 bytes.
        assert_eq!(t(&PACKET[..31]), WireError::Truncated);
        // Total length below the header length.
        let mut b = PACKET;
        b[3] = 19;
        assert_eq!(t(&b), WireError::Malformed);
        // IHL 4.
        let mut b = PACKET;
        b[0] = 0x44;
        assert_eq!(t(&b), WireError::Malformed);
        // IHL 15 (60 bytes) in a 32-byte buffer.
        let mut b = PACKET;
        b[0] = 0x4f;
        assert_eq!(t(&b), WireError::Truncated);
    }

    #[test]
    fn bad_version() {
        let mut b = PACKET;
        b[0] = 0x65;
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap_err(),
            WireError::Malformed
        );
    }

    #[test]
    fn bad_checksum() {
        let mut b = PACKET;
        b[8] = 63; // TTL changed, checksum not updated
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(!p.verify_checksum());
        assert_eq!(Ipv4Repr::parse(&p), Err(WireError::Malformed));
    }

    #[test]
    fn parse_unchecked_does_not_panic() {
        let p = Packet::new_unchecked(&PACKET[..10]);
        assert_eq!(Ipv4Repr::parse(&p), Err(WireError::Truncated));
    }

    #[test]
    fn options_and_fragments() {
        // IHL 6 with a 4-byte option (NOP NOP NOP EOL), MF, offset 1480.
        let mut b = [0u8; 28];
        b[0] = 0x46;
        b[2..4].copy_from_slice(&28u16.to_be_bytes());
        b[6..8].copy_from_slice(&(0x2000u16 | 185).to_be_bytes());
        b[9] = 17;
        b[20..24].copy_from_slice(&[1, 1, 1, 0]);
        b[24..28].copy_from_slice(&[9, 9, 9, 9]);
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.fill_checksum();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert_eq!(p.payload(), &[9, 9, 9, 9]);
        assert!(p.more_frags());
        assert!(!p.dont_frag());
        assert_eq!(p.frag_offset(), 1480);
        assert!(p.is_fragment());
        assert_eq!(Ipv4Repr::parse(&p).unwrap().payload_len, 4);

        // Last fragment: MF clear but offset set.
        let mut b2 = b;
        let mut p = Packet::new_unchecked(&mut b2[..]);
        p.set_more_frags(false);
        assert!(p.is_fragment());
        p.set_frag_offset(0);
        assert!(!p.is_fragment());
    }

    #[test]
    fn dscp_ecn() {
        let mut b = PACKET;
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_dscp(46); // EF
        p.set_ecn(2); // ECT(0)
        assert_eq!(p.dscp(), 46);
        assert_eq!(p.ecn(), 2);
        assert_eq!(b[1], 0xba);
    }
}
