//! IPv6 fixed headers (RFC 8200): a bounds-checked view, setters, parsed
//! form, emitter, and a walker over extension headers to the upper layer.
//!
//! The payload is bounded by the Payload Length field, not by the buffer,
//! so Ethernet padding never reaches the upper layer. Jumbograms (RFC 2675,
//! Payload Length 0 with a Jumbo Payload option) are not supported: they
//! read as an empty payload.

use super::WireError;
use super::ip::IpProtocol;
use std::net::Ipv6Addr;

/// Length of the IPv6 fixed header.
pub const HEADER_LEN: usize = 40;

/// Most extension headers `upper_layer` walks before giving up.
pub const MAX_EXT_HEADERS: usize = 8;

mod field {
    use std::ops::Range;
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
}

/// A view of an IPv6 packet.
#[derive(Debug)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

fn check(b: &[u8]) -> Result<(), WireError> {
    if b.len() < HEADER_LEN {
        return Err(WireError::Truncated);
    }
    if b[0] >> 4 != 6 {
        return Err(WireError::Malformed);
    }
    let payload_len = usize::from(u16::from_be_bytes([
        b[field::LENGTH.start],
        b[field::LENGTH.start + 1],
    ]));
    if HEADER_LEN + payload_len > b.len() {
        return Err(WireError::Truncated);
    }
    Ok(())
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap a buffer without checking it; only for buffers we size ourselves.
    pub fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wrap a buffer, checking the version and that it holds the whole
    /// payload. Afterwards no accessor can panic.
    ///
    /// # Errors
    /// `Truncated` if the buffer is shorter than 40 bytes plus Payload
    /// Length; `Malformed` if the version is not 6.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        check(buffer.as_ref())?;
        Ok(Packet { buffer })
    }

    /// Give the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// IP version (6 for a checked packet).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    /// Traffic Class (DSCP and ECN).
    pub fn traffic_class(&self) -> u8 {
        ((self.first_word() >> 20) & 0xff) as u8
    }

    /// Flow Label (20 bits).
    pub fn flow_label(&self) -> u32 {
        self.first_word() & 0x000f_ffff
    }

    /// Payload Length: everything after the fixed header, extension
    /// headers included.
    pub fn payload_len(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[field::LENGTH.start], b[field::LENGTH.start + 1]])
    }

    /// Next Header: an extension header or the upper-layer protocol.
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::NXT_HDR])
    }

    /// Hop Limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    pub fn src(&self) -> Ipv6Addr {
        addr_at(self.buffer.as_ref(), field::SRC.start)
    }

    /// Destination address.
    pub fn dst(&self) -> Ipv6Addr {
        addr_at(self.buffer.as_ref(), field::DST.start)
    }

    /// Payload: Payload Length bytes after the fixed header (padding excluded).
    pub fn payload(&self) -> &[u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &self.buffer.as_ref()[HEADER_LEN..end]
    }

    /// The upper-layer protocol and its bytes, past any extension headers.
    ///
    /// `None` when `upper_layer` gives up (see there).
    pub fn upper_layer(&self) -> Option<(IpProtocol, &[u8])> {
        let payload = self.payload();
        let (proto, offset) = upper_layer(self.next_header(), payload)?;
        Some((proto, payload.get(offset..)?))
    }

    fn first_word(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VER_TC_FLOW];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set the version nibble.
    pub fn set_version(&mut self, version: u8) {
        let w = (self.first_word() & 0x0fff_ffff) | (u32::from(version & 0x0f) << 28);
        self.set_first_word(w);
    }

    /// Set the Traffic Class.
    pub fn set_traffic_class(&mut self, tc: u8) {
        let w = (self.first_word() & 0xf00f_ffff) | (u32::from(tc) << 20);
        self.set_first_word(w);
    }

    /// Set the Flow Label (the low 20 bits of `label`).
    pub fn set_flow_label(&mut self, label: u32) {
        let w = (self.first_word() & 0xfff0_0000) | (label & 0x000f_ffff);
        self.set_first_word(w);
    }

    /// Set Payload Length.
    pub fn set_payload_len(&mut self, len: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&len.to_be_bytes());
    }

    /// Set Next Header.
    pub fn set_next_header(&mut self, nh: IpProtocol) {
        self.buffer.as_mut()[field::NXT_HDR] = u8::from(nh);
    }

    /// Set Hop Limit.
    pub fn set_hop_limit(&mut self, hl: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = hl;
    }

    /// Set the source address.
    pub fn set_src(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.octets());
    }

    /// Set the destination address.
    pub fn set_dst(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.octets());
    }

    /// Payload, writable; Payload Length must be set.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    fn set_first_word(&mut self, w: u32) {
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&w.to_be_bytes());
    }
}

/// A parsed IPv6 fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// Next Header of the fixed header (may be an extension header).
    pub next_header: IpProtocol,
    /// Payload Length in bytes.
    pub payload_len: usize,
    /// Hop Limit.
    pub hop_limit: u8,
}

impl Ipv6Repr {
    /// Parse a packet, re-checking its lengths and version.
    ///
    /// # Errors
    /// Those of `Packet::new_checked`.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Self, WireError> {
        check(packet.buffer.as_ref())?;
        Ok(Ipv6Repr {
            src: packet.src(),
            dst: packet.dst(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.payload_len()),
            hop_limit: packet.hop_limit(),
        })
    }

    /// Bytes `emit` writes: the fixed header only, the payload is the caller's.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write the 40-byte fixed header into the start of `b`, with Traffic
    /// Class and Flow Label zero.
    ///
    /// # Panics
    /// If `b` is shorter than 40 bytes, or `payload_len` is over 65535:
    /// callers size both.
    pub fn emit(&self, b: &mut [u8]) {
        let len = u16::try_from(self.payload_len).expect("IPv6 payload_len over 65535 bytes");
        let mut p = Packet::new_unchecked(&mut b[..HEADER_LEN]);
        p.set_first_word(6 << 28);
        p.set_payload_len(len);
        p.set_next_header(self.next_header);
        p.set_hop_limit(self.hop_limit);
        p.set_src(self.src);
        p.set_dst(self.dst);
    }
}

/// Find the upper-layer header behind IPv6 extension headers.
///
/// `next_header` is the fixed header's Next Header and `payload` the IPv6
/// payload. Returns the upper-layer protocol and its offset in `payload`
/// (`offset <= payload.len()`).
///
/// Walks Hop-by-Hop Options (only right after the fixed header),
/// Routing, Destination Options and atomic Fragment headers, at most
/// `MAX_EXT_HEADERS` of them. Returns `None` for: a header running past
/// the payload, Hop-by-Hop anywhere but first, No Next Header, a real
/// fragment (we don't reassemble), or too many headers. Anything that is
/// not one of the four headers above is returned as the upper layer,
/// including ESP, AH and Mobility, which the caller will not handle.
pub fn upper_layer(next_header: IpProtocol, payload: &[u8]) -> Option<(IpProtocol, usize)> {
    let mut nh = next_header;
    let mut offset = 0usize;
    for i in 0..=MAX_EXT_HEADERS {
        let len = match nh {
            // RFC 8200 4.3: "The Hop-by-Hop Options header, when present,
            // must immediately follow the IPv6 header."
            IpProtocol::HopByHop if i > 0 => return None,
            // RFC 8200 4.3-4.6: Next Header, then Hdr Ext Len "in 8-octet
            // units, not including the first 8 octets".
            IpProtocol::HopByHop | IpProtocol::Ipv6Route | IpProtocol::Ipv6Opts => {
                let ext_len = *payload.get(offset + 1)?;
                (usize::from(ext_len) + 1) * 8
            }
            IpProtocol::Ipv6Frag => {
                let frag = payload.get(offset..offset + 8)?;
                // RFC 8200 4.5: offset in the top 13 bits, M flag in the
                // lowest. RFC 6946 4: a fragment with offset 0 and M clear
                // (an "atomic fragment") is a whole packet and is processed
                // as such; any other fragment would need reassembly.
                if u16::from_be_bytes([frag[2], frag[3]]) & 0xfff9 != 0 {
                    return None;
                }
                8
            }
            // RFC 8200 4.7: nothing follows.
            IpProtocol::Ipv6NoNxt => return None,
            upper => return Some((upper, offset)),
        };
        if i == MAX_EXT_HEADERS {
            return None;
        }
        let end = offset.checked_add(len)?;
        if end > payload.len() {
            return None;
        }
        nh = IpProtocol::from(payload[offset]);
        offset = end;
    }
    None
}

fn addr_at(b: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// fe80::2 → fe80::1, UDP, hop limit 64, 12 bytes of payload.
    static PACKET: [u8; 52] = [
        0x60, 0x00, 0x00, 0x00, // v6, tc 0, flow 0
        0x00, 0x0c, 0x11, 0x40, // payload 12, UDP, hop limit 64
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, // src
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // dst
        0x9c, 0x40, 0x00, 0x35, 0x00, 0x0c, 0xa1, 0x95, 0x61, 0x62, 0x63, 0x64, // UDP
    ];

    static PAYLOAD: [u8; 12] = [
        0x9c, 0x40, 0x00, 0x35, 0x00, 0x0c, 0xa1, 0x95, 0x61, 0x62, 0x63, 0x64,
    ];

    const SRC: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);
    const DST: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

    fn repr() -> Ipv6Repr {
        Ipv6Repr {
            src: SRC,
            dst: DST,
            next_header: IpProtocol::Udp,
            payload_len: 12,
            hop_limit: 64,
        }
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0);
        assert_eq!(p.flow_label(), 0);
        assert_eq!(p.payload_len(), 12);
        assert_eq!(p.next_header(), IpProtocol::Udp);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src(), SRC);
        assert_eq!(p.dst(), DST);
        assert_eq!(p.payload(), &PAYLOAD);
        assert_eq!(p.upper_layer(), Some((IpProtocol::Udp, &PAYLOAD[..])));
    }

    #[test]
    fn construct() {
        let mut b = [0xa5u8; 52];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_version(6);
        p.set_traffic_class(0);
        p.set_flow_label(0);
        p.set_payload_len(12);
        p.set_next_header(IpProtocol::Udp);
        p.set_hop_limit(64);
        p.set_src(SRC);
        p.set_dst(DST);
        p.payload_mut().copy_from_slice(&PAYLOAD);
        assert_eq!(b, PACKET);
    }

    #[test]
    fn traffic_class_and_flow_label() {
        let mut b = PACKET;
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_traffic_class(0xb8);
        p.set_flow_label(0xf_1234);
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0xb8);
        assert_eq!(p.flow_label(), 0xf_1234);
        assert_eq!(&b[..4], &[0x6b, 0x8f, 0x12, 0x34]);
    }

    #[test]
    fn parse() {
        let p = Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(Ipv6Repr::parse(&p).unwrap(), repr());
    }

    #[test]
    fn emit() {
        let mut b = [0u8; 52];
        let r = repr();
        assert_eq!(r.buffer_len(), 40);
        r.emit(&mut b);
        b[40..].copy_from_slice(&PAYLOAD);
        assert_eq!(b, PACKET);
    }

    #[test]
    fn padding_excluded() {
        let mut b = [0u8; 60];
        b[..52].copy_from_slice(&PACKET);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload(), &PAYLOAD);
    }

    #[test]
    fn bad_length() {
        let t = |b: &[u8]| Packet::new_checked(b).unwrap_err();
        assert_eq!(t(&PACKET[..39]), WireError::Truncated);
        assert_eq!(t(&PACKET[..51]), WireError::Truncated);
        let p = Packet::new_unchecked(&PACKET[..20]);
        assert_eq!(Ipv6Repr::parse(&p), Err(WireError::Truncated));
    }

    #[test]
    fn bad_version() {
        let mut b = PACKET;
        b[0] = 0x40;
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap_err(),
            WireError::Malformed
        );
    }

    // Extension headers: [next header, length, ...] blocks.

    fn hbh(next: u8) -> [u8; 8] {
        [next, 0, 1, 4, 0, 0, 0, 0] // PadN of 4
    }

    #[test]
    fn ext_none() {
        assert_eq!(
            upper_layer(IpProtocol::Tcp, &[]),
            Some((IpProtocol::Tcp, 0))
        );
    }

    #[test]
    fn ext_chain() {
        // HBH → Dest opts (16 bytes) → Routing → atomic fragment → UDP.
        let mut p = Vec::new();
        p.extend_from_slice(&hbh(60));
        p.extend_from_slice(&[43, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        p.extend_from_slice(&[44, 0, 0, 0, 0, 0, 0, 0]);
        p.extend_from_slice(&[17, 0, 0, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&PAYLOAD);
        assert_eq!(
            upper_layer(IpProtocol::HopByHop, &p),
            Some((IpProtocol::Udp, 40))
        );
    }

    #[test]
    fn ext_in_packet() {
        let mut b = [0u8; 60];
        b[..40].copy_from_slice(&PACKET[..40]);
        b[5] = 20;
        b[6] = 60;
        b[40..48].copy_from_slice(&hbh(17));
        b[48..].copy_from_slice(&PAYLOAD);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.upper_layer(), Some((IpProtocol::Udp, &PAYLOAD[..])));
    }

    #[test]
    fn ext_overrun() {
        // Header claims 16 bytes, 8 present.
        assert_eq!(
            upper_layer(IpProtocol::Ipv6Opts, &[17, 1, 0, 0, 0, 0, 0, 0]),
            None
        );
        // Not even the length byte.
        assert_eq!(upper_layer(IpProtocol::Ipv6Opts, &[17]), None);
        assert_eq!(upper_layer(IpProtocol::Ipv6Route, &[]), None);
        // Fragment header cut short.
        assert_eq!(upper_layer(IpProtocol::Ipv6Frag, &[17, 0, 0, 0]), None);
        // Exactly fits, upper layer empty.
        assert_eq!(
            upper_layer(IpProtocol::Ipv6Opts, &hbh(59)[..]),
            None,
            "no next header"
        );
        assert_eq!(
            upper_layer(IpProtocol::Ipv6Opts, &hbh(6)[..]),
            Some((IpProtocol::Tcp, 8))
        );
    }

    #[test]
    fn ext_hop_by_hop_not_first() {
        let mut p = Vec::new();
        p.extend_from_slice(&hbh(0));
        p.extend_from_slice(&hbh(17));
        assert_eq!(upper_layer(IpProtocol::Ipv6Opts, &p), None);
        assert_eq!(upper_layer(IpProtocol::HopByHop, &p), None);
    }

    #[test]
    fn ext_fragments() {
        // First fragment: offset 0, M set.
        assert_eq!(
            upper_layer(IpProtocol::Ipv6Frag, &[17, 0, 0, 1, 0, 0, 0, 1]),
            None
        );
        // Later fragment: offset 1 (8 bytes), M clear.
        assert_eq!(
            upper_layer(IpProtocol::Ipv6Frag, &[17, 0, 0, 8, 0, 0, 0, 1]),
            None
        );
        // Atomic fragment; reserved bits are ignored.
        assert_eq!(
            upper_layer(IpProtocol::Ipv6Frag, &[17, 0xff, 0, 6, 0, 0, 0, 1]),
            Some((IpProtocol::Udp, 8))
        );
    }

    #[test]
    fn ext_too_many() {
        let mut p = Vec::new();
        for _ in 0..MAX_EXT_HEADERS {
            p.extend_from_slice(&hbh(60)[..]);
        }
        p.extend_from_slice(&PAYLOAD);
        let last = (MAX_EXT_HEADERS - 1) * 8;
        // Exactly the cap: fine.
        p[last] = 17;
        assert_eq!(
            upper_layer(IpProtocol::Ipv6Opts, &p),
            Some((IpProtocol::Udp, MAX_EXT_HEADERS * 8))
        );
        // One more: refused.
        p[last] = 60;
        p.splice(last + 8..last + 8, hbh(17));
        assert_eq!(upper_layer(IpProtocol::Ipv6Opts, &p), None);
    }

    #[test]
    fn ext_unknown_is_upper() {
        // ESP is returned for the caller to drop.
        assert_eq!(
            upper_layer(IpProtocol::from(50), &[0; 8]),
            Some((IpProtocol::Unknown(50), 0))
        );
    }
}
