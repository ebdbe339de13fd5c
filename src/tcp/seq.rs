//! Pure TCP bookkeeping: sequence-number arithmetic (RFC 9293 3.4, modulo
//! 2^32), what an incoming segment's payload means for the next expected
//! byte, windows and segment sizes.

/// True if `a` comes after `b` in sequence space.
pub fn after(a: u32, b: u32) -> bool {
    // The difference read as signed: RFC 9293 3.4 compares modulo 2^32.
    (a.wrapping_sub(b) as i32) > 0
}

/// Where a guest segment starting at `seq` with `len` bytes stands against
/// `rcv_nxt`, the next byte we expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Starts at or before `rcv_nxt` and has new bytes from this offset on.
    New(usize),
    /// Nothing new: a retransmission of bytes already taken.
    Old,
    /// Starts beyond `rcv_nxt`: a gap we don't fill (no reassembly).
    Ahead,
}

/// Classify a segment (see `Fit`).
pub fn fit(rcv_nxt: u32, seq: u32, len: usize) -> Fit {
    if after(seq, rcv_nxt) {
        return Fit::Ahead;
    }
    let skip = rcv_nxt.wrapping_sub(seq) as usize;
    if skip < len { Fit::New(skip) } else { Fit::Old }
}

/// The window field to advertise for `bytes` of room under shift `shift`.
pub fn window_field(bytes: usize, shift: u8) -> u16 {
    u16::try_from(bytes >> shift).unwrap_or(u16::MAX)
}

/// Bytes the guest accepts given its window field and scale.
pub fn peer_window(field: u16, shift: u8) -> usize {
    usize::from(field) << shift
}

/// Segment size towards the guest: its MSS option (RFC 9293 3.7.1: 536
/// when absent), at most what our MTU carries after `ip_tcp_hdr` bytes of
/// headers, and never below 1.
pub fn send_mss(guest_mss: Option<u16>, mtu: usize, ip_tcp_hdr: usize) -> usize {
    let theirs = usize::from(guest_mss.unwrap_or(536));
    theirs.min(mtu.saturating_sub(ip_tcp_hdr)).max(1)
}

/// The MSS option we advertise: what the MTU carries.
pub fn our_mss(mtu: usize, ip_tcp_hdr: usize) -> u16 {
    u16::try_from(mtu.saturating_sub(ip_tcp_hdr).max(536)).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_space_wraps() {
        assert!(after(1, 0));
        assert!(after(5, u32::MAX - 5));
        assert!(!after(u32::MAX - 5, 5));
        assert!(!after(7, 7));
    }

    #[test]
    fn segments_against_rcv_nxt() {
        assert_eq!(fit(100, 100, 10), Fit::New(0));
        assert_eq!(fit(100, 95, 10), Fit::New(5));
        assert_eq!(fit(100, 90, 10), Fit::Old);
        assert_eq!(fit(100, 101, 10), Fit::Ahead);
        assert_eq!(fit(3, u32::MAX - 1, 10), Fit::New(5));
        assert_eq!(fit(100, 100, 0), Fit::Old);
    }

    #[test]
    fn windows_and_mss() {
        assert_eq!(window_field(1 << 20, 7), 8192);
        assert_eq!(window_field(1 << 30, 0), u16::MAX);
        assert_eq!(peer_window(8192, 7), 1 << 20);
        assert_eq!(send_mss(None, 65520, 40), 536);
        assert_eq!(send_mss(Some(65495), 65520, 40), 65480);
        assert_eq!(send_mss(Some(1460), 1500, 60), 1440);
        assert_eq!(send_mss(Some(0), 1500, 40), 1);
        assert_eq!(our_mss(65520, 40), 65480);
        assert_eq!(our_mss(1280, 60), 1220);
    }
}
