//! TCP segments (RFC 9293): a bounds-checked view, the options we use
//! (MSS, window scale), checksums over the IPv4 and IPv6 pseudo-headers,
//! parsed form, header emitter.
//!
//! TCP has no length field: the segment is the whole buffer handed in,
//! which must be exactly the IP payload.

use super::WireError;
use super::checksum;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = 20;
/// Longest header: data offset 15 words.
pub const MAX_HEADER_LEN: usize = 60;
/// Where the checksum field sits in the header (virtio-net `csum_offset`).
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM.start;

mod field {
    use std::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ: Range<usize> = 4..8;
    pub const ACK: Range<usize> = 8..12;
    pub const OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
}

const PROTO: u8 = 6;

/// Control bits (RFC 9293 3.1), as a byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags(pub u8);

impl Flags {
    /// No more data from sender.
    pub const FIN: Flags = Flags(0x01);
    /// Synchronize sequence numbers.
    pub const SYN: Flags = Flags(0x02);
    /// Reset the connection.
    pub const RST: Flags = Flags(0x04);
    /// Push function.
    pub const PSH: Flags = Flags(0x08);
    /// Acknowledgment field is significant.
    pub const ACK: Flags = Flags(0x10);

    /// True if every bit of `other` is set.
    pub fn has(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, o: Flags) -> Flags {
        Flags(self.0 | o.0)
    }
}

/// Option kinds (RFC 9293 3.2).
mod opt {
    pub const END: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WSCALE: u8 = 3;
}

/// RFC 7323 2.3: "the shift.cnt value ... is limited to 14".
pub const MAX_WSCALE: u8 = 14;

/// A view of a TCP segment.
#[derive(Debug)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap a buffer without checking it; only for buffers we size ourselves.
    pub fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wrap a buffer, checking the header length. Afterwards no accessor
    /// can panic.
    ///
    /// # Errors
    /// `Truncated` if the buffer is shorter than 20 bytes or than the data
    /// offset; `Malformed` if the data offset is below 5 words.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let hl = usize::from(b[field::OFF] >> 4) * 4;
        if hl < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if hl > b.len() {
            return Err(WireError::Truncated);
        }
        Ok(Packet { buffer })
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT.start)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT.start)
    }

    /// Sequence number.
    pub fn seq(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SEQ.start)
    }

    /// Acknowledgment number.
    pub fn ack(&self) -> u32 {
        be32(self.buffer.as_ref(), field::ACK.start)
    }

    /// Header length in bytes (data offset).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::OFF] >> 4) * 4
    }

    /// Control bits.
    pub fn flags(&self) -> Flags {
        Flags(self.buffer.as_ref()[field::FLAGS] & 0x3f)
    }

    /// Window, unscaled.
    pub fn window(&self) -> u16 {
        be16(self.buffer.as_ref(), field::WINDOW.start)
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// The option bytes.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// Payload: everything after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// True if the checksum is correct for a segment from `src` to `dst`
    /// over IPv4.
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let b = self.buffer.as_ref();
        let Ok(len) = u32::try_from(b.len()) else {
            return false;
        };
        checksum::fold(checksum::sum(b, checksum::pseudo_v4(src, dst, PROTO, len))) == 0
    }

    /// True if the checksum is correct for a segment from `src` to `dst`
    /// over IPv6.
    pub fn verify_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        let b = self.buffer.as_ref();
        let Ok(len) = u32::try_from(b.len()) else {
            return false;
        };
        checksum::fold(checksum::sum(b, checksum::pseudo_v6(src, dst, PROTO, len))) == 0
    }

    /// True if the checksum is correct for either family; false if the
    /// families differ.
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => self.verify_checksum_v4(s, d),
            (IpAddr::V6(s), IpAddr::V6(d)) => self.verify_checksum_v6(s, d),
            _ => false,
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Compute and store the checksum for IPv4; header and payload must be
    /// set and the buffer be exactly the segment.
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        let len = u32::try_from(self.buffer.as_ref().len()).unwrap_or(u32::MAX);
        self.fill_checksum_with(checksum::pseudo_v4(src, dst, PROTO, len));
    }

    /// Compute and store the checksum for IPv6, likewise.
    pub fn fill_checksum_v6(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        let len = u32::try_from(self.buffer.as_ref().len()).unwrap_or(u32::MAX);
        self.fill_checksum_with(checksum::pseudo_v6(src, dst, PROTO, len));
    }

    /// Store only the IPv4 pseudo-header's sum, not inverted, in the
    /// checksum field: a partial checksum, which whoever offloads it
    /// completes by summing the segment from its header on (Linux
    /// `CHECKSUM_PARTIAL`). Header and payload must be set.
    pub fn fill_partial_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        let len = u32::try_from(self.buffer.as_ref().len()).unwrap_or(u32::MAX);
        self.fill_partial_with(checksum::pseudo_v4(src, dst, PROTO, len));
    }

    /// The same for IPv6.
    pub fn fill_partial_checksum_v6(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        let len = u32::try_from(self.buffer.as_ref().len()).unwrap_or(u32::MAX);
        self.fill_partial_with(checksum::pseudo_v6(src, dst, PROTO, len));
    }

    fn fill_partial_with(&mut self, pseudo: u32) {
        // `fold` inverts: invert back for the plain folded sum.
        let sum = !checksum::fold(pseudo);
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
    }

    fn fill_checksum_with(&mut self, pseudo: u32) {
        let b = self.buffer.as_mut();
        b[field::CHECKSUM].copy_from_slice(&[0, 0]);
        let sum = checksum::fold(checksum::sum(b, pseudo));
        b[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
    }
}

/// A parsed TCP header: what a segment says besides its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number (meaningful with `Flags::ACK`).
    pub ack: u32,
    /// Control bits.
    pub flags: Flags,
    /// Window field, unscaled.
    pub window: u16,
    /// Maximum segment size option.
    pub mss: Option<u16>,
    /// Window scale option, capped at `MAX_WSCALE`.
    pub wscale: Option<u8>,
}

impl TcpRepr {
    /// Parse a segment carried between `src` and `dst`, verifying the
    /// checksum (so it can't be forgotten). Unknown options are skipped;
    /// a malformed option list ends the walk (RFC 9293 3.1 asks receivers
    /// to be prepared for any option and not to crash on bad lengths).
    ///
    /// # Errors
    /// `Malformed` for a bad checksum or addresses of different families.
    pub fn parse<T: AsRef<[u8]>>(
        packet: &Packet<T>,
        src: IpAddr,
        dst: IpAddr,
    ) -> Result<Self, WireError> {
        if !packet.verify_checksum(src, dst) {
            return Err(WireError::Malformed);
        }
        Ok(Self::parse_trusted(packet))
    }

    /// Parse a segment whose checksum is trusted, not verified: every
    /// guest segment ("The guest's TCP checksums", ARCHITECTURE.md).
    /// Otherwise as `parse`.
    pub fn parse_trusted<T: AsRef<[u8]>>(packet: &Packet<T>) -> Self {
        let mut r = TcpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq: packet.seq(),
            ack: packet.ack(),
            flags: packet.flags(),
            window: packet.window(),
            mss: None,
            wscale: None,
        };
        // At most 40 option bytes: the walk ends within 40 steps.
        let mut o = packet.options();
        while let Some(&kind) = o.first() {
            match kind {
                opt::END => break,
                opt::NOP => {
                    o = &o[1..];
                    continue;
                }
                _ => {}
            }
            let Some(&len) = o.get(1) else { break };
            let len = usize::from(len);
            if len < 2 || len > o.len() {
                break;
            }
            match (kind, len) {
                (opt::MSS, 4) => r.mss = Some(be16(o, 2)),
                (opt::WSCALE, 3) => r.wscale = Some(o[2].min(MAX_WSCALE)),
                _ => {}
            }
            o = &o[len..];
        }
        r
    }

    /// Header length this repr emits, options included.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
            + if self.mss.is_some() { 4 } else { 0 }
            + if self.wscale.is_some() { 4 } else { 0 }
    }

    /// Write the header (options included, checksum zero) into the start
    /// of `b`, which must hold `buffer_len()` bytes.
    pub fn emit(&self, b: &mut [u8]) {
        let hl = self.buffer_len();
        b[field::SRC_PORT].copy_from_slice(&self.src_port.to_be_bytes());
        b[field::DST_PORT].copy_from_slice(&self.dst_port.to_be_bytes());
        b[field::SEQ].copy_from_slice(&self.seq.to_be_bytes());
        b[field::ACK].copy_from_slice(&self.ack.to_be_bytes());
        // hl is at most 28: fits in the high nibble as words.
        b[field::OFF] = ((hl / 4) as u8) << 4;
        b[field::FLAGS] = self.flags.0;
        b[field::WINDOW].copy_from_slice(&self.window.to_be_bytes());
        b[field::CHECKSUM].copy_from_slice(&[0, 0]);
        b[field::URGENT].copy_from_slice(&[0, 0]);
        let mut at = HEADER_LEN;
        if let Some(mss) = self.mss {
            let m = mss.to_be_bytes();
            b[at..at + 4].copy_from_slice(&[opt::MSS, 4, m[0], m[1]]);
            at += 4;
        }
        if let Some(ws) = self.wscale {
            b[at..at + 4].copy_from_slice(&[opt::NOP, opt::WSCALE, 3, ws.min(MAX_WSCALE)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
    const DST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

    /// A SYN from 192.0.2.2:40000 to 203.0.113.1:80, seq 1000, window
    /// 64240, options MSS 1460, SACK permitted, timestamps, NOP, wscale 7
    /// (as Linux sends them), checksum filled.
    fn syn() -> Vec<u8> {
        let mut b = vec![
            0x9c, 0x40, 0x00, 0x50, // ports
            0x00, 0x00, 0x03, 0xe8, // seq
            0x00, 0x00, 0x00, 0x00, // ack
            0xa0, 0x02, 0xfa, 0xf0, // offset 10, SYN, window
            0x00, 0x00, 0x00, 0x00, // checksum, urgent
            0x02, 0x04, 0x05, 0xb4, // MSS 1460
            0x04, 0x02, // SACK permitted
            0x08, 0x0a, 0, 0, 0, 1, 0, 0, 0, 0, // timestamps
            0x01, 0x03, 0x03, 0x07, // NOP, wscale 7
        ];
        Packet::new_unchecked(&mut b[..]).fill_checksum_v4(SRC, DST);
        b
    }

    #[test]
    fn deconstruct() {
        let b = syn();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (40000, 80));
        assert_eq!((p.seq(), p.ack()), (1000, 0));
        assert_eq!(p.header_len(), 40);
        assert_eq!(p.flags(), Flags::SYN);
        assert_eq!(p.window(), 64240);
        assert!(p.payload().is_empty());
        assert!(p.verify_checksum_v4(SRC, DST));
    }

    #[test]
    fn parse_options() {
        let b = syn();
        let p = Packet::new_checked(&b[..]).unwrap();
        let r = TcpRepr::parse(&p, SRC.into(), DST.into()).unwrap();
        assert_eq!(r.mss, Some(1460));
        assert_eq!(r.wscale, Some(7));
        assert!(r.flags.has(Flags::SYN) && !r.flags.has(Flags::ACK));
    }

    #[test]
    fn bad_checksum_and_lengths() {
        let mut b = syn();
        b[30] ^= 1;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            TcpRepr::parse(&p, SRC.into(), DST.into()),
            Err(WireError::Malformed)
        );
        let b = syn();
        assert_eq!(
            Packet::new_checked(&b[..19]).err(),
            Some(WireError::Truncated)
        );
        assert_eq!(
            Packet::new_checked(&b[..39]).err(),
            Some(WireError::Truncated)
        );
        let mut b = syn();
        b[12] = 0x40;
        assert_eq!(
            Packet::new_checked(&b[..]).err(),
            Some(WireError::Malformed)
        );
    }

    #[test]
    fn hostile_options_end_the_walk() {
        // Zero length, length past the end, huge wscale.
        for opts in [
            [2u8, 0, 0, 0, 0, 0, 0, 0],
            [1, 1, 2, 9, 0, 0, 0, 0],
            [3, 3, 200, 0, 0, 0, 0, 0],
        ] {
            let mut b = [0u8; 28];
            b[12] = 0x70;
            b[20..].copy_from_slice(&opts);
            Packet::new_unchecked(&mut b[..]).fill_checksum_v4(SRC, DST);
            let p = Packet::new_checked(&b[..]).unwrap();
            let r = TcpRepr::parse(&p, SRC.into(), DST.into()).unwrap();
            assert_eq!(r.mss, None);
            assert!(r.wscale.is_none() || r.wscale == Some(MAX_WSCALE));
        }
    }

    #[test]
    fn construct_and_parse_back_v4_v6() {
        let r = TcpRepr {
            src_port: 80,
            dst_port: 40000,
            seq: 0xdead_beef,
            ack: 1001,
            flags: Flags::SYN | Flags::ACK,
            window: 65535,
            mss: Some(65480),
            wscale: Some(7),
        };
        let mut b = vec![0u8; r.buffer_len() + 3];
        assert_eq!(r.buffer_len(), 28);
        r.emit(&mut b);
        b[28..].copy_from_slice(b"abc");
        Packet::new_unchecked(&mut b[..]).fill_checksum_v4(DST, SRC);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(TcpRepr::parse(&p, DST.into(), SRC.into()), Ok(r));
        assert_eq!(p.payload(), b"abc");

        let (a, z): (Ipv6Addr, Ipv6Addr) =
            ("2001:db8::1".parse().unwrap(), "fe80::2".parse().unwrap());
        Packet::new_unchecked(&mut b[..]).fill_checksum_v6(a, z);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum_v6(a, z));
        // (Swapping the addresses keeps the sum: the check is on content.)
        assert!(!p.verify_checksum_v6(a, "fe80::3".parse().unwrap()));
        assert!(!p.verify_checksum(a.into(), SRC.into()));
        let plain = TcpRepr {
            mss: None,
            wscale: None,
            flags: Flags::ACK,
            ..r
        };
        assert_eq!(plain.buffer_len(), HEADER_LEN);
    }

    /// Mutated SYNs (bit flips, truncation, junk options, checksum fixed
    /// up half of the time so the option walk runs) never panic.
    #[test]
    fn mutation_smoke() {
        let seed = syn();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let mut m = seed.clone();
            for _ in 0..1 + next() % 4 {
                let len = m.len();
                match next() % 4 {
                    0 if len > 0 => m[(next() as usize) % len] ^= 1 << (next() % 8),
                    1 => m.truncate((next() as usize) % (len + 1)),
                    2 if len > 0 => m[(next() as usize) % len] = next() as u8,
                    _ => m.extend((0..next() % 40).map(|_| next() as u8)),
                }
            }
            if next() & 1 == 0 && m.len() >= HEADER_LEN {
                Packet::new_unchecked(&mut m[..]).fill_checksum_v4(SRC, DST);
            }
            if let Ok(p) = Packet::new_checked(&m[..]) {
                assert!(p.header_len() <= m.len());
                let _ = p.payload();
                if let Ok(r) = TcpRepr::parse(&p, SRC.into(), DST.into()) {
                    assert!(r.wscale.is_none_or(|w| w <= MAX_WSCALE));
                }
            }
        }
    }
}
