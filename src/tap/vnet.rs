//! virtio-net headers (`struct virtio_net_hdr`, virtio 1.0, little-endian)
//! on pasta's tap: what the kernel says about a frame it hands us, and what
//! we tell it about a frame we write.
//!
//! Theory of operation: with `IFF_VNET_HDR` every read and write on the tap
//! is a 10-byte header followed by the Ethernet frame. Reading, the header
//! says whether the frame's L4 checksum is only partial (`NEEDS_CSUM`: the
//! sender left it to offload; there is nothing to verify) or was already
//! checked (`DATA_VALID`), and whether the frame is a TCP super-segment
//! (`gso_type`) larger than the MTU, which we take as one segment: its
//! payload goes to a host socket, never split; or a run of UDP datagrams
//! of `gso_size` bytes each behind one set of headers, which dispatch
//! takes apart. Writing, a TCP segment carries `NEEDS_CSUM` with only the
//! pseudo-header summed into its checksum field, and, when longer than
//! the guest's MSS, `gso_type` and `gso_size`: the kernel trusts the
//! checksum on local delivery and cuts the segment only if it ever
//! forwards it. A run of a flow's UDP datagrams goes the same way
//! (`udp::run`).
//!
//! Only pasta's namespace writes to the tap, but its headers are checked as
//! hostile input anyway: `parse` refuses what makes no sense by itself, and
//! dispatch checks the rest against the frame (the protocol `gso_type`
//! names, the checksum's place at the L4 header).

/// Length of the header (without virtio 1.0's `num_buffers`, which tun
/// only adds when told a 12-byte size).
pub const LEN: usize = crate::sys::tun::VNET_HDR_LEN;

/// `flags`: the L4 checksum is partial, from `csum_start` on.
const F_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksum was verified.
const F_DATA_VALID: u8 = 2;
/// `gso_type` values.
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_TCPV6: u8 = 4;
/// UDP segmentation (`VIRTIO_NET_HDR_GSO_UDP_L4`).
const GSO_UDP_L4: u8 = 5;
/// `gso_type` bit: the first segment carries CWR (ECN).
const GSO_ECN: u8 = 0x80;

/// Segmentation a frame carries: a TCP super-segment of either family, or
/// a run of UDP datagrams of one size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Gso {
    /// An ordinary frame.
    #[default]
    None,
    /// TCP over IPv4, longer than the MTU.
    Tcp4,
    /// TCP over IPv6, longer than the MTU.
    Tcp6,
    /// UDP over either family: datagrams of `gso_size` bytes of payload
    /// (the last one maybe shorter) behind one set of headers.
    Udp,
}

/// What a received frame's L4 checksum needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RxCsum {
    /// Verify it: no header, or the header says nothing.
    #[default]
    Verify,
    /// The kernel verified it already.
    Valid,
    /// Partial: the checksum field, at `offset` into the L4 header
    /// starting `start` bytes into the frame, holds only the pseudo-header.
    Partial {
        /// Offset of the L4 header in the frame.
        start: u16,
        /// Offset of the checksum field in the L4 header.
        offset: u16,
    },
}

/// What the header of a received frame says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxOffload {
    /// Whether and where to skip checksum verification.
    pub csum: RxCsum,
    /// A TCP super-segment of this family, or a run of UDP datagrams.
    pub gso: Gso,
    /// With `gso`: the segment size (not 0); for UDP, each datagram's
    /// payload but the last's.
    pub gso_size: u16,
}

/// A header that makes no sense for the frame after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VnetError {
    /// Flag bits we never negotiated.
    #[error("unknown flags {0:#x}")]
    Flags(u8),
    /// A segmentation type we don't know.
    #[error("unknown gso_type {0:#x}")]
    GsoType(u8),
    /// Segmentation with a segment size of 0.
    #[error("gso_size 0")]
    GsoSize,
    /// Segmentation without a partial checksum (the kernel always sets one).
    #[error("segmentation without NEEDS_CSUM")]
    GsoCsum,
    /// `hdr_len` beyond the frame.
    #[error("hdr_len {0} beyond the frame")]
    HdrLen(u16),
    /// The checksum field beyond the frame.
    #[error("checksum at {0}+{1} beyond the frame")]
    CsumPlace(u16, u16),
    /// Shorter than the header itself.
    #[error("truncated header")]
    Truncated,
}

fn le16(b: &[u8; LEN], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// Check the header `hdr` of a frame of `frame_len` bytes, on its own.
///
/// # Errors
/// A `VnetError` naming what makes no sense; the frame is to be dropped.
pub fn parse(hdr: &[u8; LEN], frame_len: usize) -> Result<RxOffload, VnetError> {
    let (flags, gso_type) = (hdr[0], hdr[1]);
    let (hdr_len, gso_size) = (le16(hdr, 2), le16(hdr, 4));
    let (start, offset) = (le16(hdr, 6), le16(hdr, 8));
    if flags & !(F_NEEDS_CSUM | F_DATA_VALID) != 0 {
        return Err(VnetError::Flags(flags));
    }
    let gso = match gso_type & !GSO_ECN {
        GSO_NONE if gso_type & GSO_ECN == 0 => Gso::None,
        GSO_TCPV4 => Gso::Tcp4,
        GSO_TCPV6 => Gso::Tcp6,
        GSO_UDP_L4 => Gso::Udp,
        _ => return Err(VnetError::GsoType(gso_type)),
    };
    if usize::from(hdr_len) > frame_len {
        return Err(VnetError::HdrLen(hdr_len));
    }
    if gso != Gso::None {
        if gso_size == 0 {
            return Err(VnetError::GsoSize);
        }
        if flags & F_NEEDS_CSUM == 0 {
            return Err(VnetError::GsoCsum);
        }
    }
    let csum = if flags & F_NEEDS_CSUM != 0 {
        if usize::from(start) + usize::from(offset) + 2 > frame_len {
            return Err(VnetError::CsumPlace(start, offset));
        }
        RxCsum::Partial { start, offset }
    } else if flags & F_DATA_VALID != 0 {
        RxCsum::Valid
    } else {
        RxCsum::Verify
    };
    let gso_size = if gso == Gso::None { 0 } else { gso_size };
    Ok(RxOffload {
        csum,
        gso,
        gso_size,
    })
}

/// What a frame we queue leaves to the kernel (nothing by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxOffload {
    /// The L4 checksum is partial: (offset of the L4 header in the frame,
    /// offset of the checksum field in it).
    pub csum: Option<(u16, u16)>,
    /// Segmentation, with `gso_size`.
    pub gso: Gso,
    /// Segment size when `gso` is set: the guest's MSS.
    pub gso_size: u16,
    /// Length of the frame's headers (Ethernet to TCP).
    pub hdr_len: u16,
}

/// Write the header for a frame leaving `o` to the kernel.
pub fn encode(o: &TxOffload, out: &mut [u8; LEN]) {
    let (start, offset) = o.csum.unwrap_or((0, 0));
    let gso_type = match o.gso {
        Gso::None => GSO_NONE,
        Gso::Tcp4 => GSO_TCPV4,
        Gso::Tcp6 => GSO_TCPV6,
        Gso::Udp => GSO_UDP_L4,
    };
    out[0] = if o.csum.is_some() { F_NEEDS_CSUM } else { 0 };
    out[1] = gso_type;
    let gso_size = if o.gso == Gso::None { 0 } else { o.gso_size };
    out[2..4].copy_from_slice(&o.hdr_len.to_le_bytes());
    out[4..6].copy_from_slice(&gso_size.to_le_bytes());
    out[6..8].copy_from_slice(&start.to_le_bytes());
    out[8..10].copy_from_slice(&offset.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(flags: u8, gso: u8, hdr_len: u16, size: u16, start: u16, off: u16) -> [u8; LEN] {
        let mut h = [0u8; LEN];
        h[0] = flags;
        h[1] = gso;
        h[2..4].copy_from_slice(&hdr_len.to_le_bytes());
        h[4..6].copy_from_slice(&size.to_le_bytes());
        h[6..8].copy_from_slice(&start.to_le_bytes());
        h[8..10].copy_from_slice(&off.to_le_bytes());
        h
    }

    #[test]
    fn plain_partial_and_valid() {
        assert_eq!(parse(&[0; LEN], 60), Ok(RxOffload::default()));
        assert_eq!(
            parse(&hdr(2, 0, 0, 0, 0, 0), 60).map(|o| o.csum),
            Ok(RxCsum::Valid)
        );
        let tso = parse(&hdr(1, 1, 66, 1448, 34, 16), 20000).unwrap();
        assert_eq!(tso.gso, Gso::Tcp4);
        assert_eq!(
            tso.csum,
            RxCsum::Partial {
                start: 34,
                offset: 16
            }
        );
        assert_eq!(
            parse(&hdr(1, 4 | 0x80, 86, 1428, 54, 16), 9000)
                .unwrap()
                .gso,
            Gso::Tcp6
        );
    }

    #[test]
    fn nonsense_is_refused() {
        assert_eq!(parse(&hdr(4, 0, 0, 0, 0, 0), 60), Err(VnetError::Flags(4)));
        assert_eq!(
            parse(&hdr(1, 3, 0, 1400, 34, 6), 9000),
            Err(VnetError::GsoType(3))
        );
        assert_eq!(
            parse(&hdr(1, 6, 0, 1400, 34, 6), 9000),
            Err(VnetError::GsoType(6))
        );
        assert_eq!(
            parse(&hdr(1, 5, 0, 0, 34, 6), 9000),
            Err(VnetError::GsoSize)
        );
        assert_eq!(
            parse(&hdr(0, 0x80, 0, 0, 0, 0), 60),
            Err(VnetError::GsoType(0x80))
        );
        assert_eq!(
            parse(&hdr(1, 1, 0, 0, 34, 16), 9000),
            Err(VnetError::GsoSize)
        );
        assert_eq!(
            parse(&hdr(0, 1, 0, 1448, 0, 0), 9000),
            Err(VnetError::GsoCsum)
        );
        assert_eq!(
            parse(&hdr(0, 0, 61, 0, 0, 0), 60),
            Err(VnetError::HdrLen(61))
        );
        assert_eq!(
            parse(&hdr(1, 0, 0, 0, 50, 16), 60),
            Err(VnetError::CsumPlace(50, 16))
        );
        assert_eq!(
            parse(&hdr(1, 0, 0, 0, u16::MAX, u16::MAX), 60),
            Err(VnetError::CsumPlace(u16::MAX, u16::MAX))
        );
    }

    #[test]
    fn every_header_parses_or_errs() {
        // A seeded walk over random headers: never a panic.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut h = [0u8; LEN];
            h[..8].copy_from_slice(&x.to_le_bytes());
            h[8] = (x >> 3) as u8;
            h[9] = (x >> 11) as u8 & 1;
            let _ = parse(&h, (x >> 40) as usize & 0x1ffff);
        }
    }

    #[test]
    fn encode_round_trips() {
        let o = TxOffload {
            csum: Some((54, 16)),
            gso: Gso::Tcp6,
            gso_size: 1440,
            hdr_len: 74,
        };
        let mut h = [0u8; LEN];
        encode(&o, &mut h);
        assert_eq!(h, hdr(1, 4, 74, 1440, 54, 16));
        let r = parse(&h, 40000).unwrap();
        assert_eq!(
            (r.gso, r.csum),
            (
                Gso::Tcp6,
                RxCsum::Partial {
                    start: 54,
                    offset: 16
                }
            )
        );
        // A run of UDP datagrams, either way.
        let o = TxOffload {
            csum: Some((34, 6)),
            gso: Gso::Udp,
            gso_size: 1400,
            hdr_len: 42,
        };
        encode(&o, &mut h);
        assert_eq!(h, hdr(1, 5, 42, 1400, 34, 6));
        let r = parse(&h, 2850).unwrap();
        assert_eq!((r.gso, r.gso_size), (Gso::Udp, 1400));
        encode(&TxOffload::default(), &mut h);
        assert_eq!(h, [0; LEN]);
    }
}
