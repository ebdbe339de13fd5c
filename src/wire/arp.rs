//! ARP packets for Ethernet and IPv4 (RFC 826): view, parsed form, emitter.

use super::{Mac, WireError};
use std::net::Ipv4Addr;

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;

mod field {
    use std::ops::Range;
    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// ARP operation codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// 1.
    Request,
    /// 2.
    Reply,
    /// Any other operation (RARP, InARP...).
    Unknown(u16),
}

impl From<u16> for Operation {
    fn from(v: u16) -> Self {
        match v {
            1 => Operation::Request,
            2 => Operation::Reply,
            n => Operation::Unknown(n),
        }
    }
}

impl From<Operation> for u16 {
    fn from(o: Operation) -> u16 {
        match o {
            Operation::Request => 1,
            Operation::Reply => 2,
            Operation::Unknown(n) => n,
        }
    }
}

/// A parsed Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    /// Request or reply.
    pub operation: Operation,
    /// Sender hardware address.
    pub sender_mac: Mac,
    /// Sender protocol address.
    pub sender_ip: Ipv4Addr,
    /// Target hardware address.
    pub target_mac: Mac,
    /// Target protocol address.
    pub target_ip: Ipv4Addr,
}

fn ip_at(b: &[u8], r: std::ops::Range<usize>) -> Ipv4Addr {
    let s = &b[r];
    Ipv4Addr::new(s[0], s[1], s[2], s[3])
}

fn mac_at(b: &[u8], r: std::ops::Range<usize>) -> Mac {
    let mut m = [0u8; 6];
    m.copy_from_slice(&b[r]);
    Mac(m)
}

impl ArpRepr {
    /// Parse an ARP payload (the bytes after the Ethernet header).
    ///
    /// Trailing bytes (Ethernet padding) are ignored.
    ///
    /// # Errors
    /// `Truncated` if shorter than 28 bytes; `Malformed` unless it is
    /// Ethernet (1) over IPv4 (0x0800) with lengths 6 and 4.
    pub fn parse(b: &[u8]) -> Result<Self, WireError> {
        if b.len() < PACKET_LEN {
            return Err(WireError::Truncated);
        }
        let htype = u16::from_be_bytes([b[field::HTYPE.start], b[field::HTYPE.start + 1]]);
        let ptype = u16::from_be_bytes([b[field::PTYPE.start], b[field::PTYPE.start + 1]]);
        if htype != 1 || ptype != 0x0800 || b[field::HLEN] != 6 || b[field::PLEN] != 4 {
            return Err(WireError::Malformed);
        }
        let oper = u16::from_be_bytes([b[field::OPER.start], b[field::OPER.start + 1]]);
        Ok(ArpRepr {
            operation: Operation::from(oper),
            sender_mac: mac_at(b, field::SHA),
            sender_ip: ip_at(b, field::SPA),
            target_mac: mac_at(b, field::THA),
            target_ip: ip_at(b, field::TPA),
        })
    }

    /// Bytes `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Write the packet into the first 28 bytes of `b`.
    ///
    /// # Panics
    /// If `b` is shorter than `buffer_len()`: callers size it.
    pub fn emit(&self, b: &mut [u8]) {
        b[field::HTYPE].copy_from_slice(&1u16.to_be_bytes());
        b[field::PTYPE].copy_from_slice(&0x0800u16.to_be_bytes());
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
        b[field::OPER].copy_from_slice(&u16::from(self.operation).to_be_bytes());
        b[field::SHA].copy_from_slice(&self.sender_mac.0);
        b[field::SPA].copy_from_slice(&self.sender_ip.octets());
        b[field::THA].copy_from_slice(&self.target_mac.0);
        b[field::TPA].copy_from_slice(&self.target_ip.octets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01, // eth/ipv4, request
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 192, 0, 2, 2, // sender
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 192, 0, 2, 1, // target
    ];

    fn repr() -> ArpRepr {
        ArpRepr {
            operation: Operation::Request,
            sender_mac: Mac([2, 0, 0, 0, 0, 1]),
            sender_ip: Ipv4Addr::new(192, 0, 2, 2),
            target_mac: Mac::ZERO,
            target_ip: Ipv4Addr::new(192, 0, 2, 1),
        }
    }

    #[test]
    fn parse() {
        assert_eq!(ArpRepr::parse(&REQUEST).unwrap(), repr());
    }

    #[test]
    fn emit() {
        let mut b = [0u8; 28];
        repr().emit(&mut b);
        assert_eq!(b, REQUEST);
    }

    #[test]
    fn padding_ignored() {
        let mut b = [0u8; 46];
        b[..28].copy_from_slice(&REQUEST);
        assert_eq!(ArpRepr::parse(&b).unwrap(), repr());
    }

    #[test]
    fn bad_length() {
        assert_eq!(ArpRepr::parse(&REQUEST[..27]), Err(WireError::Truncated));
    }

    #[test]
    fn bad_types() {
        for (at, v) in [(1, 6u8), (3, 0xdd), (4, 8), (5, 16)] {
            let mut b = REQUEST;
            b[at] = v;
            assert_eq!(ArpRepr::parse(&b), Err(WireError::Malformed), "byte {at}");
        }
    }
}
