//! tun framing (pasta): every read or write on the tap fd is exactly one
//! Ethernet frame (behind a virtio-net header when the tap was opened with
//! one, see `vnet`), so batching means reading until the fd runs dry.

use super::vnet::{self, VnetError};
use super::{Batch, MAX_FRAME, TxQueue};
use std::io::{self, Read, Write};

/// Wake-ups in a row that find the device readable, beyond the first,
/// before it is read to `EAGAIN` again (`TunRx::woke`). A closing
/// connection and the next one's SYN make two, which is not a burst.
const BUSY: u8 = 2;

/// Receive buffer size: room for a batch of full-size frames.
pub const RX_BUF_SIZE: usize = 4 << 20;

/// Collects frames read from a tun fd into one buffer.
pub struct TunRx {
    buf: Box<[u8]>,
    /// Each read starts with a virtio-net header.
    vnet: bool,
    /// The last `read_batch` ended on an empty device, not a full batch.
    dry: bool,
    /// Frames come one per wake-up (request/response, handshakes): read
    /// one and let the level-triggered device report the next, rather
    /// than spend a read on the `EAGAIN` that nearly always follows.
    sparse: bool,
    /// The last wake-up (the event loop's count) that found the device
    /// readable, and how many in a row did before it.
    woke_at: u64,
    streak: u8,
    /// Bytes the last `read_batch` read.
    used: usize,
}

impl Default for TunRx {
    fn default() -> Self {
        TunRx {
            buf: vec![0u8; RX_BUF_SIZE.max(MAX_FRAME + vnet::LEN)].into_boxed_slice(),
            vnet: false,
            dry: false,
            sparse: false,
            woke_at: 0,
            streak: 0,
            used: 0,
        }
    }
}

impl TunRx {
    /// Reads from a tap opened with `IFF_VNET_HDR`: each frame follows a
    /// header, whose verdict goes into the batch beside the frame.
    pub fn set_vnet(&mut self, vnet: bool) {
        self.vnet = vnet;
    }

    /// Bytes the last `read_batch` read, headers included.
    pub fn bytes(&self) -> usize {
        self.used
    }

    /// The buffer that `Batch` ranges point into.
    pub fn buf(&self) -> &[u8] {
        &self.buf
    }

    /// Whether the last `read_batch` found the device empty, or stopped
    /// after its one frame when frames come sparsely: either way, the next
    /// read waits for the next readiness event (the device is
    /// level-triggered, so nothing is missed).
    pub fn dry(&self) -> bool {
        self.dry
    }

    /// The device is readable at wake-up `round` of the event loop. At
    /// `BUSY` wake-ups in a row beyond the first, frames come in bursts:
    /// read each batch until `EAGAIN` again.
    pub fn woke(&mut self, round: u64) {
        self.streak = if self.woke_at.wrapping_add(1) == round {
            self.streak.saturating_add(1)
        } else {
            0
        };
        self.woke_at = round;
        if self.streak >= BUSY {
            self.sparse = false;
        }
    }

    /// Read frames from `src` into `batch` until it would block, the batch
    /// is full, or there is no room for another full-size frame. Returns
    /// the number of frames read; `Ok(0)` means nothing was pending.
    ///
    /// # Errors
    /// A read error other than `WouldBlock`/`Interrupted` (e.g. the
    /// namespace's interface went away).
    pub fn read_batch(&mut self, mut src: impl Read, batch: &mut Batch) -> io::Result<usize> {
        batch.clear();
        self.dry = false;
        let mut used = 0;
        let room = if self.vnet { vnet::LEN } else { 0 };
        while !batch.is_full() && self.buf.len() - used >= room + MAX_FRAME {
            if self.sparse && !batch.is_empty() {
                self.dry = true;
                break;
            }
            match src.read(&mut self.buf[used..used + room + MAX_FRAME]) {
                Ok(0) => {
                    self.dry = true;
                    break;
                }
                Ok(n) if room == 0 => {
                    batch.push(used..used + n);
                    used += n;
                }
                Ok(n) => {
                    // The frame is what follows the header; the header
                    // stays where it is, unused by anything but this check.
                    let frame = (used + room).min(used + n)..used + n;
                    let meta = match self.buf[used..used + n].first_chunk::<{ vnet::LEN }>() {
                        Some(h) => vnet::parse(h, frame.len()),
                        None => Err(VnetError::Truncated),
                    };
                    batch.push_meta(frame, meta);
                    used += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.dry = true;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        // One frame, then EAGAIN: the guest sends a frame at a time.
        if self.dry && batch.len() == 1 {
            self.sparse = true;
        }
        self.used = used;
        Ok(batch.len())
    }
}

/// Write queued frames to a tun fd, one write per frame, until the queue is
/// empty or the device pushes back; returns whether anything is left.
///
/// # Errors
/// A write error other than `WouldBlock`/`Interrupted`.
pub fn flush(mut dst: impl Write, tx: &mut TxQueue) -> io::Result<bool> {
    loop {
        let pending = tx.pending();
        let Some(hdr) = pending.first_chunk::<4>() else {
            return Ok(false);
        };
        let len = u32::from_be_bytes(*hdr) as usize;
        let Some(frame) = pending.get(4..4 + len) else {
            // The queue only ever holds whole frames.
            tx.clear();
            return Ok(false);
        };
        match dst.write(frame) {
            Ok(_) => tx.consume(4 + len),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
            // The interface is down (the namespace didn't bring it up
            // yet): the frame has nowhere to go, like on a cable unplugged.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                tx.consume(4 + len);
                tx.dropped += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames as a tun fd would deliver them: one per read, then EAGAIN.
    struct FakeTun(Vec<Vec<u8>>);

    impl Read for FakeTun {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let f = self.0.remove(0);
            buf[..f.len()].copy_from_slice(&f);
            Ok(f.len())
        }
    }

    #[derive(Default)]
    struct Sink(Vec<Vec<u8>>, usize);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.0.len() == self.1 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.0.push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn reads_until_dry() {
        let mut rx = TunRx::default();
        let mut batch = Batch::default();
        let n = rx
            .read_batch(
                FakeTun(vec![b"one".to_vec(), b"three".to_vec()]),
                &mut batch,
            )
            .unwrap();
        assert_eq!(n, 2);
        let got: Vec<&[u8]> = batch.frames(rx.buf()).collect();
        assert_eq!(got, vec![&b"one"[..], &b"three"[..]]);
        assert!(rx.dry(), "it read until EAGAIN");
    }

    #[test]
    fn one_frame_at_a_time_stops_probing_until_busy() {
        let mut rx = TunRx::default();
        let mut batch = Batch::default();
        let frames = |n| FakeTun(vec![b"f".to_vec(); n]);
        assert_eq!(rx.read_batch(frames(1), &mut batch).unwrap(), 1);
        assert!(rx.dry());
        // Sparse now: one frame a batch, without the read that finds EAGAIN.
        assert_eq!(rx.read_batch(frames(3), &mut batch).unwrap(), 1);
        assert!(rx.dry(), "the device reports the rest");
        // Readable at wake-ups 7, 9 and 10: two in a row, still sparse;
        // at 11, the third in a row: bursts.
        rx.woke(7);
        rx.woke(9);
        rx.woke(10);
        assert_eq!(rx.read_batch(frames(3), &mut batch).unwrap(), 1);
        rx.woke(11);
        assert_eq!(rx.read_batch(frames(3), &mut batch).unwrap(), 3);
        assert!(rx.dry());
        assert_eq!(rx.read_batch(frames(2), &mut batch).unwrap(), 2);
    }

    #[test]
    fn a_full_batch_is_not_dry() {
        let mut rx = TunRx::default();
        let mut batch = Batch::default();
        let frames = vec![b"f".to_vec(); crate::tap::BATCH_MAX + 3];
        let n = rx.read_batch(FakeTun(frames), &mut batch).unwrap();
        assert_eq!(n, crate::tap::BATCH_MAX);
        assert!(!rx.dry(), "frames are left to read now");
    }

    #[test]
    fn vnet_frames_come_without_their_header() {
        let mut rx = TunRx::default();
        rx.set_vnet(true);
        let mut batch = Batch::default();
        let mut tso = vec![1u8, 1, 0, 0, 0xa8, 5, 34, 0, 16, 0];
        tso.extend_from_slice(&[7; 3000]);
        let mut bogus = vec![0u8, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0];
        bogus.extend_from_slice(b"frame");
        let reads = vec![tso, bogus, vec![0; 4]];
        assert_eq!(rx.read_batch(FakeTun(reads), &mut batch).unwrap(), 3);
        let got: Vec<usize> = batch.frames(rx.buf()).map(<[u8]>::len).collect();
        assert_eq!(got, vec![3000, 5, 0]);
        assert_eq!(batch.meta(0).map(|m| m.gso), Ok(vnet::Gso::Tcp4));
        assert_eq!(batch.meta(1), Err(VnetError::HdrLen(0xffff)));
        assert_eq!(batch.meta(2), Err(VnetError::Truncated));
    }

    #[test]
    fn vnet_queue_entries_carry_their_header() {
        let mut tx = TxQueue::new(0, None);
        tx.set_vnet(true);
        assert!(tx.offload());
        tx.push_offload(5, |b, off| {
            b[..5].copy_from_slice(b"frame");
            off.csum = Some((34, 16));
            off.hdr_len = 54;
            5
        });
        let mut sink = Sink(Vec::new(), 10);
        assert!(!flush(&mut sink, &mut tx).unwrap());
        assert_eq!(sink.0, vec![b"\x01\0\x36\0\0\0\x22\0\x10\0frame".to_vec()]);
    }

    #[test]
    fn writes_whole_frames_and_keeps_the_rest() {
        let mut tx = TxQueue::new(0, None);
        for f in [&b"ab"[..], b"cde", b"f"] {
            tx.push_with(f.len(), |b| {
                b[..f.len()].copy_from_slice(f);
                f.len()
            });
        }
        let mut sink = Sink(Vec::new(), 2);
        assert!(flush(&mut sink, &mut tx).unwrap(), "one frame left");
        assert_eq!(sink.0, vec![b"ab".to_vec(), b"cde".to_vec()]);
        sink.1 = 10;
        assert!(!flush(&mut sink, &mut tx).unwrap());
        assert_eq!(sink.0.last().unwrap(), b"f");
    }
}
