//! The guest's datagrams leave in batches: those of one tap read are
//! queued as they are parsed, as places in the read buffer (no copy),
//! and go out once the read is handled, one `sendmmsg` per run of
//! datagrams of the same flow. A bulk sender's datagrams then cost one
//! send call per `SEND_BATCH`, not one each. Where a run's datagrams are
//! of one size (the last may be shorter), they go as one segmented send
//! (`UDP_SEGMENT`) instead, which crosses the kernel's stack once for the
//! whole run rather than once per datagram: `perf` put 80% of our time
//! in `sendmmsg` during a 1400-byte flood, most of it per datagram. A
//! flow whose route refuses segmented sends uses `sendmmsg` from then on.
//!
//! Only flow references are kept: a flow closed before the flush (an
//! eviction to make room) is found gone, and its datagrams are dropped
//! rather than sent on a socket that may have been reused.

use crate::flow::FlowRef;
use crate::sys::udp::{GSO_MAX_BYTES, SEND_BATCH, send_batch, send_segmented};
use crate::tap::BatchPlaces;
use nix::errno::Errno;
use std::cell::Cell;
use std::ops::Range;
use std::os::fd::BorrowedFd;

/// Bytes of datagrams that make the queue full, however few they are.
/// A batch read from passt's stream can hold 64 datagrams of 64 KiB: sent
/// in one call, they reach a host receiver whose socket buffer holds
/// three, and in one run of three or four the receiver fell behind and
/// took a fifth of the rate. Flushed every 256 KiB, a flood of 65000-byte
/// datagrams from passt's guest reached the receiver at 14.1–19.0 Gbit/s
/// in nine runs, against 4.5–17.6 (median 14.3) unflushed. A segmented
/// run is at most 64 KiB, so this still lets four of them wait.
const FLUSH_BYTES: usize = 256 << 10;

/// Datagrams waiting to be sent, in the order the guest sent them.
pub struct Outgoing {
    /// Where the tap batch's buffer is while one is handled.
    buf: BatchPlaces,
    /// Each datagram's flow and place in the buffer.
    queued: Vec<(FlowRef, Range<usize>)>,
    /// Their bytes, all together.
    bytes: usize,
}

impl Default for Outgoing {
    fn default() -> Self {
        Outgoing {
            buf: BatchPlaces::default(),
            queued: Vec::with_capacity(SEND_BATCH),
            bytes: 0,
        }
    }
}

impl Outgoing {
    /// A tap batch read into `buf` is about to be handled: datagrams
    /// inside it may wait for [`Outgoing::flush`].
    pub fn begin(&mut self, buf: &[u8]) {
        self.buf.begin(buf);
        self.clear();
    }

    fn clear(&mut self) {
        self.queued.clear();
        self.bytes = 0;
    }

    /// The batch is handled (after the last flush): nothing may wait.
    pub fn end(&mut self) {
        self.buf.end();
        self.clear();
    }

    /// Queue `payload` of flow `r`; false if it must go now instead (it
    /// is not in the batch's buffer, or the queue is full).
    pub fn queue(&mut self, r: FlowRef, payload: &[u8]) -> bool {
        let Some(place) = self.buf.of(payload).filter(|_| !self.is_full()) else {
            return false;
        };
        self.queued.push((r, place));
        self.bytes += payload.len();
        true
    }

    /// Whether the queue must be flushed before another datagram fits.
    pub fn is_full(&self) -> bool {
        self.queued.len() >= SEND_BATCH || self.bytes >= FLUSH_BYTES
    }

    /// Whether anything waits.
    pub fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }

    /// Send what waits, from `buf` (the buffer given to `begin`): one call
    /// per run of the same flow, on the socket `sock_of` names with the
    /// flow's "no segmented sends" mark (`None`: the flow is gone).
    /// `dropped` hears of each datagram that didn't go.
    pub fn flush<'f>(
        &mut self,
        buf: &[u8],
        mut sock_of: impl FnMut(FlowRef) -> Option<(BorrowedFd<'f>, &'f Cell<bool>)>,
        mut dropped: impl FnMut(Errno),
    ) {
        let mut slices: [&[u8]; SEND_BATCH] = [&[]; SEND_BATCH];
        let mut i = 0;
        while let Some((r, _)) = self.queued.get(i) {
            let r = *r;
            let run = self.queued[i..].iter().take_while(|(q, _)| *q == r).count();
            let mut n = 0;
            for ((_, range), s) in self.queued[i..i + run].iter().zip(slices.iter_mut()) {
                *s = buf.get(range.clone()).unwrap_or(&[]);
                n += 1;
            }
            i += run;
            match sock_of(r) {
                Some((fd, no_gso)) => send_all(fd, no_gso, &slices[..n], &mut dropped),
                None => (0..n).for_each(|_| dropped(Errno::EBADF)),
            }
        }
        self.clear();
    }
}

/// How many of `datagrams`, from the first, one segmented send can
/// carry, and their size: all as long as the first but the last, which
/// may be shorter but not empty (an empty datagram would vanish into
/// the joined payload). `None` unless that makes two or more.
fn segmentable(datagrams: &[&[u8]]) -> Option<(usize, u16)> {
    let seg = datagrams.first()?.len();
    let seg16 = u16::try_from(seg).ok().filter(|&s| s > 0)?;
    let (mut n, mut total) = (0, 0);
    for d in datagrams.iter().take(SEND_BATCH) {
        if d.is_empty() || d.len() > seg || total + d.len() > GSO_MAX_BYTES {
            break;
        }
        total += d.len();
        n += 1;
        if d.len() < seg {
            break;
        }
    }
    (n >= 2).then_some((n, seg16))
}

/// Send `datagrams` on `fd` in order, segmented where they allow it and
/// `no_gso` isn't set (it is set when the route refuses). An error on a
/// datagram that a retry may clear (an ICMP error for an earlier
/// datagram is reported, once, by failing the next send) gets one more
/// try; otherwise that datagram is dropped and the rest go on, except on
/// a full buffer (`EAGAIN`), which drops them all.
fn send_all(
    fd: BorrowedFd<'_>,
    no_gso: &Cell<bool>,
    datagrams: &[&[u8]],
    dropped: &mut impl FnMut(Errno),
) {
    let mut at = 0;
    let mut retried = false;
    while let Some(rest) = datagrams.get(at..).filter(|r| !r.is_empty()) {
        if let Some((n, seg)) = segmentable(rest).filter(|_| !no_gso.get()) {
            match send_segmented(fd, &rest[..n], seg) {
                Ok(()) => {
                    at += n;
                    retried = false;
                    continue;
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => {
                    rest.iter().for_each(|_| dropped(Errno::EAGAIN));
                    return;
                }
                // The route can't take them: one by one, now and later.
                Err(Errno::EINVAL | Errno::EIO | Errno::EOPNOTSUPP) => no_gso.set(true),
                Err(_) if !retried => {
                    retried = true;
                    continue;
                }
                // Failed twice, so not an error reported for an earlier
                // datagram: one by one from now on, which drops only the
                // datagrams that fail.
                Err(_) => no_gso.set(true),
            }
        }
        match send_batch(fd, rest) {
            Ok(0) => {
                rest.iter().for_each(|_| dropped(Errno::EIO));
                return;
            }
            Ok(k) => {
                at += k;
                retried = false;
            }
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                rest.iter().for_each(|_| dropped(Errno::EAGAIN));
                return;
            }
            Err(_) if !retried => retried = true,
            Err(e) => {
                dropped(e);
                at += 1;
                retried = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    fn r(index: u32) -> FlowRef {
        FlowRef {
            index,
            generation: 1,
        }
    }

    #[test]
    fn runs_of_one_flow_go_to_its_socket_in_order() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (a, b) = (
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            UdpSocket::bind("127.0.0.1:0").unwrap(),
        );
        a.connect(rx.local_addr().unwrap()).unwrap();
        b.connect(rx.local_addr().unwrap()).unwrap();
        let buf: Vec<u8> = (0..=255u8).collect();
        let mut out = Outgoing::default();
        out.begin(&buf);
        assert!(out.queue(r(1), &buf[0..3]));
        assert!(out.queue(r(1), &buf[3..10]));
        assert!(out.queue(r(2), &buf[10..12]));
        assert!(out.queue(r(1), &buf[12..13]));
        // Outside the buffer: must go at once.
        assert!(!out.queue(r(1), b"elsewhere"));
        let mut drops = 0;
        let no_gso = Cell::new(false);
        out.flush(
            &buf,
            |f| Some((if f == r(1) { a.as_fd() } else { b.as_fd() }, &no_gso)),
            |_| drops += 1,
        );
        assert_eq!(drops, 0);
        assert!(out.is_empty());
        let mut got = [0u8; 64];
        for (want, from) in [
            (&buf[0..3], a.local_addr().unwrap()),
            (&buf[3..10], a.local_addr().unwrap()),
            (&buf[10..12], b.local_addr().unwrap()),
            (&buf[12..13], a.local_addr().unwrap()),
        ] {
            let (n, src) = rx.recv_from(&mut got).unwrap();
            assert_eq!((&got[..n], src), (want, from));
        }
    }

    #[test]
    fn runs_of_one_size_are_segmented_up_to_a_longer_or_shorter_one() {
        let d = |n: usize| vec![0u8; n];
        let v = [d(100), d(100), d(100), d(40), d(100)];
        let s: Vec<&[u8]> = v.iter().map(Vec::as_slice).collect();
        assert_eq!(segmentable(&s), Some((4, 100)));
        assert_eq!(segmentable(&s[3..]), None, "a longer one ends the run");
        assert_eq!(segmentable(&s[4..]), None, "one alone isn't worth it");
        let v = [d(0), d(0)];
        let s: Vec<&[u8]> = v.iter().map(Vec::as_slice).collect();
        assert_eq!(segmentable(&s), None, "empty datagrams can't be cut");
        let v = [d(100), d(100), d(0)];
        let s: Vec<&[u8]> = v.iter().map(Vec::as_slice).collect();
        assert_eq!(segmentable(&s), Some((2, 100)), "nor end a run");
        assert_eq!(segmentable(&s[1..]), None);
        let v = vec![d(1400); 64];
        let s: Vec<&[u8]> = v.iter().map(Vec::as_slice).collect();
        assert_eq!(segmentable(&s), Some((GSO_MAX_BYTES / 1400, 1400)));
        let v = [d(40_000), d(40_000)];
        let s: Vec<&[u8]> = v.iter().map(Vec::as_slice).collect();
        assert_eq!(segmentable(&s), None, "too big together");
    }

    #[test]
    fn a_route_that_refuses_segments_gets_every_datagram_one_by_one() {
        let (rx, tx) = crate::sys::udp::pair();
        crate::sys::udp::no_checksums(tx.as_fd());
        let buf: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let mut out = Outgoing::default();
        for round in 0..2 {
            out.begin(&buf);
            for i in 0..5 {
                assert!(out.queue(r(1), &buf[i * 100..i * 100 + 100]));
            }
            let (no_gso, mut drops) = (Cell::new(false), 0);
            if round == 1 {
                no_gso.set(true);
            }
            out.flush(&buf, |_| Some((tx.as_fd(), &no_gso)), |_| drops += 1);
            assert_eq!(drops, 0);
            assert!(no_gso.get(), "the refusal is remembered");
            let mut got = [0u8; 256];
            for i in 0..5 {
                let n = rx.recv(&mut got).unwrap();
                assert_eq!(&got[..n], &buf[i * 100..i * 100 + 100]);
            }
        }
    }

    #[test]
    fn an_empty_datagram_after_a_run_of_equal_ones_arrives_too() {
        let (rx, tx) = crate::sys::udp::pair();
        let buf: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let mut out = Outgoing::default();
        out.begin(&buf);
        for range in [0..100, 100..200, 200..200, 200..300, 300..300] {
            assert!(out.queue(r(1), &buf[range]));
        }
        let (no_gso, mut drops) = (Cell::new(false), 0);
        out.flush(&buf, |_| Some((tx.as_fd(), &no_gso)), |_| drops += 1);
        assert_eq!(drops, 0);
        let mut got = [0u8; 256];
        for want in [100, 100, 0, 100, 0] {
            assert_eq!(rx.recv(&mut got).unwrap(), want);
        }
    }

    #[test]
    fn a_quarter_mebibyte_fills_the_queue() {
        let buf = vec![0u8; FLUSH_BYTES];
        let mut out = Outgoing::default();
        out.begin(&buf);
        let big = 60_000;
        for i in 0..FLUSH_BYTES / big {
            assert!(out.queue(r(1), &buf[i * big..(i + 1) * big]));
            assert!(!out.is_full());
        }
        let rest = FLUSH_BYTES / big * big;
        assert!(out.queue(r(1), &buf[rest..]));
        assert!(out.is_full());
        out.end();
        out.begin(&buf);
        assert!(!out.is_full(), "a new batch starts empty");
    }

    #[test]
    fn a_gone_flow_drops_its_datagrams_and_a_full_queue_says_so() {
        let buf = vec![0u8; 4096];
        let mut out = Outgoing::default();
        out.begin(&buf);
        for i in 0..SEND_BATCH {
            assert!(out.queue(r(7), &buf[i..=i]));
        }
        assert!(out.is_full());
        assert!(!out.queue(r(7), &buf[0..1]));
        let mut drops = 0;
        out.flush(&buf, |_| None, |_| drops += 1);
        assert_eq!(drops, SEND_BATCH);
        out.end();
        assert!(!out.queue(r(7), &buf[0..1]), "no batch: nothing waits");
    }
}
