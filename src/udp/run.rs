//! Runs of one flow's datagrams to the guest, sent as one frame: a UDP
//! super-datagram the kernel splits back into datagrams as it delivers
//! them (`VIRTIO_NET_HDR_GSO_UDP_L4`, pasta's tap on Linux 6.2 and
//! later).
//!
//! Theory of operation: each datagram is read into a frame of its own, as
//! without the offload. When the frame queued just before it holds a run
//! of the same flow (the caller only feeds one flow's datagrams in a row)
//! and the new payload is no longer than the run's first, the new frame's
//! payload moves onto the end of that one (`TxQueue::merge_last`, a copy
//! of one datagram within the queue) and the run's headers are made true
//! again: lengths, the IPv4 header checksum, the partial UDP checksum
//! over the new length, and the virtio-net header naming the segment
//! size. A shorter datagram ends the run (only the last segment may be
//! short), as does reaching `MAX_SEGMENTS`, the 64 KiB an IP packet
//! holds or the largest frame we send (`MAX_FRAME`). So one write, and
//! one trip through the namespace's stack up to UDP, carries what took a
//! write per datagram; the guest's socket gets every datagram as it was
//! sent.

use crate::tap::TxQueue;
use crate::tap::vnet::{self, Gso, TxOffload};
use crate::wire::{checksum, ethernet, ipv4, ipv6, udp};
use std::net::Ipv6Addr;

/// Most datagrams in one super-datagram: the kernel's own limit for a
/// segmented UDP send (`UDP_MAX_SEGMENTS`) in the releases we support,
/// though later ones allow more.
pub const MAX_SEGMENTS: u16 = 64;

/// The run the last queued frame belongs to.
#[derive(Debug, Default)]
pub struct Run {
    /// Payload bytes of each datagram in the run but maybe the last.
    seg: usize,
    /// Datagrams in it.
    count: u16,
    /// Payload bytes in all.
    payload: usize,
    /// A shorter datagram came last: nothing more may follow.
    closed: bool,
}

impl Run {
    /// The datagram just queued in `tx` (the last frame, its UDP header
    /// `l4` bytes in, IPv6 if `v6`) joins the run before it if it can,
    /// or starts a new one.
    pub fn add(&mut self, tx: &mut TxQueue, l4: usize, v6: bool) {
        let hdr = l4 + udp::HEADER_LEN;
        let Some(n) = tx.last_len().and_then(|len| len.checked_sub(hdr)) else {
            *self = Run::default();
            return;
        };
        // What the IP length field counts besides the UDP datagram.
        let ip_extra = if v6 { 0 } else { ipv4::HEADER_LEN };
        let joins = self.count > 0
            && !self.closed
            && n > 0
            && n <= self.seg
            && self.count < MAX_SEGMENTS
            && ip_extra + udp::HEADER_LEN + self.payload + n <= usize::from(u16::MAX);
        if joins && let Some(frame) = tx.merge_last(hdr) {
            self.count += 1;
            self.payload += n;
            self.closed = n < self.seg;
            restate(frame, l4, v6, self.payload, self.seg);
            return;
        }
        // An empty datagram can't be a segment: it stays a frame alone.
        *self = Run {
            seg: n,
            count: u16::from(n > 0),
            payload: n,
            closed: false,
        };
    }
}

/// Make the headers of a grown run true: `buf` is its virtio-net header
/// and frame, UDP header at `l4`, `payload` bytes after it in datagrams
/// of `seg` (which `add` keeps within 16 bits).
fn restate(buf: &mut [u8], l4: usize, v6: bool, payload: usize, seg: usize) {
    let Some((hdr, frame)) = buf.split_first_chunk_mut::<{ vnet::LEN }>() else {
        return;
    };
    let udp_len = (udp::HEADER_LEN + payload) as u16;
    // Our own frame, built with these headers: always long enough.
    let Some(ip) = frame.get_mut(ethernet::HEADER_LEN..) else {
        return;
    };
    let pseudo = if v6 {
        let mut p = ipv6::Packet::new_unchecked(&mut *ip);
        p.set_payload_len(udp_len);
        let (src, dst) = (v6_at(ip, 8), v6_at(ip, 24));
        checksum::pseudo_v6(src, dst, udp::PROTO, u32::from(udp_len))
    } else {
        let mut p = ipv4::Packet::new_unchecked(&mut *ip);
        p.set_total_len(ipv4::HEADER_LEN as u16 + udp_len);
        p.fill_checksum();
        let (src, dst) = (p.src(), p.dst());
        checksum::pseudo_v4(src, dst, udp::PROTO, u32::from(udp_len))
    };
    let Some(l4_hdr) = frame.get_mut(l4..) else {
        return;
    };
    let mut d = udp::Packet::new_unchecked(l4_hdr);
    d.set_len(udp_len);
    d.set_checksum(!checksum::fold(pseudo));
    vnet::encode(
        &TxOffload {
            csum: Some((l4 as u16, udp::CHECKSUM_OFFSET as u16)),
            gso: Gso::Udp,
            gso_size: seg as u16,
            hdr_len: (l4 + udp::HEADER_LEN) as u16,
        },
        hdr,
    );
}

/// The IPv6 address `at` bytes into an IPv6 header.
fn v6_at(ip: &[u8], at: usize) -> Ipv6Addr {
    ip.get(at..at + 16)
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .map_or(Ipv6Addr::UNSPECIFIED, Ipv6Addr::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Mac, compose};
    use std::net::SocketAddr;

    const LINK: compose::Link = compose::Link {
        src: Mac([2, 0, 0, 0, 0, 1]),
        dst: Mac([2, 0, 0, 0, 0, 2]),
    };

    fn queue() -> TxQueue {
        let mut tx = TxQueue::new(4 << 20, None);
        tx.set_vnet(true);
        tx.set_uso(true);
        tx
    }

    fn addrs(v6: bool) -> (SocketAddr, SocketAddr) {
        if v6 {
            (
                "[2001:db8::1]:53".parse().unwrap(),
                "[2001:db8::2]:4000".parse().unwrap(),
            )
        } else {
            (
                "192.0.2.1:53".parse().unwrap(),
                "192.0.2.2:4000".parse().unwrap(),
            )
        }
    }

    /// Queue `payload` as a datagram to the guest, as `udp::receive` does.
    fn push(tx: &mut TxQueue, run: &mut Run, v6: bool, payload: &[u8]) {
        let (src, dst) = addrs(v6);
        let queued = crate::udp::push_datagram(tx, LINK, src, dst, |p| {
            p[..payload.len()].copy_from_slice(payload);
            Some(payload.len())
        });
        assert_eq!(queued, Some(true));
        let l4 = if v6 {
            compose::L4_OFF_V6
        } else {
            compose::L4_OFF_V4
        };
        run.add(tx, l4, v6);
    }

    /// The queued frames: (virtio-net header, frame).
    fn frames(tx: &TxQueue) -> Vec<([u8; vnet::LEN], Vec<u8>)> {
        let mut out = Vec::new();
        let mut rest = tx.pending();
        while let Some((len, tail)) = rest.split_first_chunk::<4>() {
            let len = u32::from_be_bytes(*len) as usize;
            let (entry, next) = tail.split_at(len);
            let (hdr, frame) = entry.split_first_chunk::<{ vnet::LEN }>().unwrap();
            out.push((*hdr, frame.to_vec()));
            rest = next;
        }
        out
    }

    fn gso(hdr: &[u8; vnet::LEN]) -> (u8, u16) {
        (hdr[1], u16::from_le_bytes([hdr[4], hdr[5]]))
    }

    /// Each frame's UDP payload and, for a run, its segment size.
    fn payloads(tx: &TxQueue, v6: bool) -> Vec<(usize, Option<u16>)> {
        let l4 = if v6 {
            compose::L4_OFF_V6
        } else {
            compose::L4_OFF_V4
        };
        frames(tx)
            .iter()
            .map(|(h, f)| {
                let (t, size) = gso(h);
                (f.len() - l4 - 8, (t == 5).then_some(size))
            })
            .collect()
    }

    #[test]
    fn a_run_of_equal_datagrams_leaves_as_one_frame_with_true_headers() {
        for v6 in [false, true] {
            let mut tx = queue();
            let mut run = Run::default();
            for i in 0..3u8 {
                push(&mut tx, &mut run, v6, &[i; 1000]);
            }
            // Shorter: the run's last; then a new run starts.
            push(&mut tx, &mut run, v6, &[9; 500]);
            push(&mut tx, &mut run, v6, &[7; 1000]);
            assert_eq!(tx.merged, 3);
            let f = frames(&tx);
            assert_eq!(f.len(), 2);
            let (hdr, frame) = &f[0];
            let l4 = if v6 { 54 } else { 34 };
            assert_eq!(gso(hdr), (5, 1000));
            // NEEDS_CSUM at the UDP checksum, headers up to UDP.
            assert_eq!(hdr[0], 1);
            assert_eq!(u16::from_le_bytes([hdr[2], hdr[3]]), l4 as u16 + 8);
            assert_eq!(u16::from_le_bytes([hdr[6], hdr[7]]), l4 as u16);
            assert_eq!(u16::from_le_bytes([hdr[8], hdr[9]]), 6);
            let udp_len = 8 + 3500u16;
            let ip = &frame[14..];
            let (src, dst) = addrs(v6);
            let pseudo = if v6 {
                assert_eq!(u16::from_be_bytes([ip[4], ip[5]]), udp_len);
                checksum::pseudo_v6(ip6(src), ip6(dst), 17, u32::from(udp_len))
            } else {
                let p = ipv4::Packet::new_unchecked(ip);
                assert_eq!(p.total_len(), 20 + udp_len);
                assert!(p.verify_checksum());
                checksum::pseudo_v4(p.src(), p.dst(), 17, u32::from(udp_len))
            };
            let d = udp::Packet::new_unchecked(&frame[l4..]);
            assert_eq!(d.len(), udp_len);
            assert_eq!(d.checksum(), !checksum::fold(pseudo));
            let mut want = Vec::new();
            for i in 0..3u8 {
                want.extend_from_slice(&[i; 1000]);
            }
            want.extend_from_slice(&[9; 500]);
            assert_eq!(&frame[l4 + 8..], &want[..]);
            // The datagram after the run goes alone, as built.
            assert_eq!(gso(&f[1].0), (0, 0));
            assert_eq!(&f[1].1[l4 + 8..], &[7; 1000][..]);
        }
    }

    fn ip6(a: SocketAddr) -> Ipv6Addr {
        match a {
            SocketAddr::V6(a) => *a.ip(),
            SocketAddr::V4(_) => Ipv6Addr::UNSPECIFIED,
        }
    }

    #[test]
    fn a_run_ends_at_a_longer_or_empty_datagram_64_segments_or_64_kib() {
        let mut tx = queue();
        let mut run = Run::default();
        push(&mut tx, &mut run, false, &[1; 100]);
        push(&mut tx, &mut run, false, &[1; 100]);
        push(&mut tx, &mut run, false, &[1; 200]);
        push(&mut tx, &mut run, false, &[]);
        push(&mut tx, &mut run, false, &[]);
        push(&mut tx, &mut run, false, &[1; 10]);
        assert_eq!(
            payloads(&tx, false),
            [
                (200, Some(100)),
                (200, None),
                (0, None),
                (0, None),
                (10, None)
            ]
        );
        let mut tx = queue();
        let mut run = Run::default();
        for _ in 0..70 {
            push(&mut tx, &mut run, false, &[2; 10]);
        }
        assert_eq!(payloads(&tx, false), [(640, Some(10)), (60, Some(10))]);
        // 16377 bytes: three fit in an IPv4 packet, and four would take
        // an IPv6 frame past the largest we send.
        for (v6, first) in [(false, 3), (true, 3)] {
            let mut tx = queue();
            let mut run = Run::default();
            for _ in 0..6 {
                push(&mut tx, &mut run, v6, &[3; 16377]);
            }
            assert_eq!(
                payloads(&tx, v6),
                [
                    (first * 16377, Some(16377)),
                    ((6 - first) * 16377, Some(16377))
                ]
            );
        }
    }

    #[test]
    fn nothing_joins_without_uso_or_a_whole_frame_before() {
        // A stream (passt) has no virtio-net header: no USO whatever asked.
        let mut tx = TxQueue::new(1 << 20, None);
        tx.set_uso(true);
        assert!(!tx.uso());
        // The frame before was partly written out: it can't grow.
        let mut tx = queue();
        let mut run = Run::default();
        push(&mut tx, &mut run, false, &[1; 100]);
        tx.consume(10);
        push(&mut tx, &mut run, false, &[1; 100]);
        assert_eq!(tx.merged, 0);
        // The queue compacted under a run: it still grows in place.
        let mut tx = queue();
        let mut run = Run::default();
        push(&mut tx, &mut run, false, &[1; 100]);
        let first = tx.pending().len();
        tx.consume(first);
        push(&mut tx, &mut run, false, &[2; 100]);
        push(&mut tx, &mut run, false, &[2; 100]);
        assert_eq!(payloads(&tx, false), [(200, Some(100))]);
    }
}
