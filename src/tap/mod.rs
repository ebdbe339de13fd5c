//! The guest-facing side: frames in from a stream socket (passt) or a tun
//! fd (pasta), frames out through one bounded queue.
//!
//! Theory of operation: only the framing modules (`stream`, later `tun`)
//! know where bytes come from. They cut the input into a `Batch` of frame
//! ranges inside their own receive buffer, which `dispatch` walks in one
//! go. Replies are built in place in `TxQueue`, stored with qemu's 4-byte
//! length prefix so a stream can send the queue as is, and a tun writer
//! can still find every frame boundary. A tun with virtio-net headers
//! (`vnet`) has each frame stored behind its header, so the tun writer
//! still writes each entry as is; the header lives only here and in `tun`.

pub mod stream;
pub mod tun;
pub mod vnet;

use crate::pcap::Pcap;
use std::ops::Range;
use vnet::{RxOffload, TxOffload, VnetError};

/// Largest Ethernet frame we accept from or send to the guest: a 14-byte
/// header and the largest IPv4/IPv6 packet the 16-bit length fields allow.
pub const MAX_FRAME: usize = 14 + 65535;

/// Most frames handed to dispatch in one batch.
pub const BATCH_MAX: usize = 512;

/// Most frames one builder fills at once (`TxQueue::push_run`).
pub const RUN_MAX: usize = 64;

/// Where a batch's receive buffer is, by address, while its frames are
/// handled: handlers that send the guest's payloads later, with no copy
/// (UDP's queued datagrams, TCP's gathered segments), keep them as places
/// in it, which mean something only for that buffer.
#[derive(Debug, Default)]
pub struct BatchPlaces {
    at: Range<usize>,
}

impl BatchPlaces {
    /// The batch in `buf` is about to be handled.
    pub fn begin(&mut self, buf: &[u8]) {
        let start = buf.as_ptr().addr();
        self.at = start..start + buf.len();
    }

    /// The batch is handled: nothing is inside it any more.
    pub fn end(&mut self) {
        self.at = 0..0;
    }

    /// Where `part` is in the batch's buffer, if it is inside it.
    pub fn of(&self, part: &[u8]) -> Option<Range<usize>> {
        let start = part.as_ptr().addr();
        if start < self.at.start || start + part.len() > self.at.end {
            return None;
        }
        let off = start - self.at.start;
        Some(off..off + part.len())
    }

    /// Whether `buf` is the buffer given to `begin`.
    pub fn is(&self, buf: &[u8]) -> bool {
        buf.as_ptr().addr() == self.at.start && buf.len() == self.at.len()
    }
}

/// Frame ranges inside a receive buffer, filled by a framing module.
#[derive(Debug)]
pub struct Batch {
    ranges: Vec<Range<usize>>,
    /// Per frame, what its virtio-net header said (the default without one).
    meta: Vec<Result<RxOffload, VnetError>>,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            ranges: Vec::with_capacity(BATCH_MAX),
            meta: Vec::with_capacity(BATCH_MAX),
        }
    }
}

impl Batch {
    /// Forget all ranges (keeps the allocation).
    pub fn clear(&mut self) {
        self.ranges.clear();
        self.meta.clear();
    }

    /// Whether another frame fits in this batch.
    pub fn is_full(&self) -> bool {
        self.ranges.len() >= BATCH_MAX
    }

    /// Add a frame; the caller checks `is_full` first.
    pub fn push(&mut self, r: Range<usize>) {
        self.push_meta(r, Ok(RxOffload::default()));
    }

    /// Add a frame with what its virtio-net header said (an error: drop it).
    pub fn push_meta(&mut self, r: Range<usize>, meta: Result<RxOffload, VnetError>) {
        self.ranges.push(r);
        self.meta.push(meta);
    }

    /// What frame `i`'s virtio-net header said (nothing without one).
    pub fn meta(&self, i: usize) -> Result<RxOffload, VnetError> {
        self.meta
            .get(i)
            .copied()
            .unwrap_or(Ok(RxOffload::default()))
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// True when there are no frames.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Frame `i`, as a slice of the buffer the ranges point into.
    pub fn frame<'a>(&self, buf: &'a [u8], i: usize) -> Option<&'a [u8]> {
        buf.get(self.ranges.get(i)?.clone())
    }

    /// The frames, as slices of the buffer the ranges point into.
    pub fn frames<'a>(&'a self, buf: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.ranges.iter().filter_map(move |r| buf.get(r.clone()))
    }
}

/// Frames waiting to go to the guest, each behind a 4-byte big-endian length
/// (and, on a tun with virtio-net headers, its header: the length covers both).
///
/// The capacity is fixed at start-up: when the guest doesn't read fast
/// enough and the queue is full, new frames are dropped and counted rather
/// than buffered without bound or blocking the loop.
pub struct TxQueue {
    buf: Box<[u8]>,
    head: usize,
    tail: usize,
    /// Each frame is stored behind a virtio-net header (pasta's tap with
    /// offloads): builders may leave checksums and segmentation to the kernel.
    vnet: bool,
    /// The kernel also splits UDP super-datagrams (`merge_last`).
    uso: bool,
    /// Where the last frame queued starts (its length), and the one
    /// before it, while both are whole in the queue: `merge_last` joins
    /// them.
    last: Option<usize>,
    prev: Option<usize>,
    /// Frames dropped because the queue was full.
    pub dropped: u64,
    /// Times a socket stopped being read because the queue was full (its
    /// data waits in the kernel, which drops what doesn't fit there).
    pub stalled: u64,
    /// Bytes written out so far, framing included.
    pub sent: u64,
    /// Frames appended to the one before (`merge_last`).
    pub merged: u64,
    pcap: Option<Pcap>,
}

impl TxQueue {
    /// A queue holding at most `capacity` bytes of framed frames.
    pub fn new(capacity: usize, pcap: Option<Pcap>) -> Self {
        TxQueue {
            buf: vec![0u8; capacity.max(MAX_FRAME + 4 + vnet::LEN)].into_boxed_slice(),
            head: 0,
            tail: 0,
            vnet: false,
            uso: false,
            last: None,
            prev: None,
            dropped: 0,
            stalled: 0,
            sent: 0,
            merged: 0,
            pcap,
        }
    }

    /// Store every frame behind a virtio-net header (a tun opened with
    /// `IFF_VNET_HDR`); set before anything is queued.
    pub fn set_vnet(&mut self, vnet: bool) {
        self.clear();
        self.vnet = vnet;
    }

    /// Whether frames may leave their L4 checksum and TCP segmentation to
    /// the kernel (`push_offload`); never on a stream, which has no header.
    pub fn offload(&self) -> bool {
        self.vnet
    }

    /// The kernel takes UDP super-datagrams (`vnet::Gso::Udp`) too: a
    /// tap whose kernel accepted USO; only with virtio-net headers.
    pub fn set_uso(&mut self, uso: bool) {
        self.uso = uso && self.vnet;
    }

    /// Whether a run of datagrams may go as one frame (`merge_last`).
    pub fn uso(&self) -> bool {
        self.uso
    }

    /// Length of the last frame queued, while it is whole in the queue
    /// (its virtio-net header not counted).
    pub fn last_len(&self) -> Option<usize> {
        let at = self.last?;
        Some(self.tail - at - 4 - self.headroom())
    }

    /// Append the last frame, less its first `skip` bytes (its headers),
    /// to the frame queued just before it: a run of a flow's datagrams
    /// becomes one UDP super-datagram, one write for the kernel to split.
    /// Returns the grown frame behind its virtio-net header, whose
    /// headers the caller then makes true; `None`, with nothing moved,
    /// without two whole frames or if the result wouldn't fit a frame.
    pub fn merge_last(&mut self, skip: usize) -> Option<&mut [u8]> {
        let (prev, last) = (self.prev?, self.last?);
        let room = self.headroom();
        let body = last + 4 + room + skip;
        if body > self.tail {
            return None;
        }
        let moved = self.tail - body;
        let len = (last - prev - 4) + moved;
        if len - room > MAX_FRAME {
            return None;
        }
        self.buf.copy_within(body..self.tail, last);
        // At most MAX_FRAME plus the header: fits in u32.
        self.buf[prev..prev + 4].copy_from_slice(&(len as u32).to_be_bytes());
        self.tail = last + moved;
        self.last = Some(prev);
        self.prev = None;
        self.merged += 1;
        Some(&mut self.buf[prev + 4..self.tail])
    }

    /// Bytes stored before each frame besides its length.
    fn headroom(&self) -> usize {
        if self.vnet { vnet::LEN } else { 0 }
    }

    /// Build one frame of at most `max_len` bytes in place: `build` gets the
    /// space and returns how many bytes it wrote (0: nothing to send).
    /// Returns false when nothing was queued; a full queue counts a drop.
    pub fn push_with(&mut self, max_len: usize, build: impl FnOnce(&mut [u8]) -> usize) -> bool {
        self.push_offload(max_len, |out, _| build(out))
    }

    /// `push_with` for a builder that may also leave work to the kernel,
    /// by filling the `TxOffload` it is handed: only when `offload()`
    /// says so (elsewhere it is ignored, and would send a frame with a
    /// partial checksum).
    pub fn push_offload(
        &mut self,
        max_len: usize,
        build: impl FnOnce(&mut [u8], &mut TxOffload) -> usize,
    ) -> bool {
        let room = self.headroom();
        let need = 4 + room + max_len.min(MAX_FRAME);
        if self.buf.len() - self.tail < need {
            self.compact();
            if self.buf.len() - self.tail < need {
                self.dropped += 1;
                return false;
            }
        }
        let start = self.tail + 4 + room;
        let space = &mut self.buf[start..self.tail + need];
        let mut off = TxOffload::default();
        let len = build(space, &mut off).min(space.len());
        // A zero length would desynchronise a stream peer: send nothing.
        let Ok(len32) = u32::try_from(len + room) else {
            return false;
        };
        if len == 0 {
            return false;
        }
        debug_assert!(self.vnet || off == TxOffload::default());
        self.buf[self.tail..self.tail + 4].copy_from_slice(&len32.to_be_bytes());
        if let Some(h) = self.buf[self.tail + 4..start].first_chunk_mut::<{ vnet::LEN }>() {
            vnet::encode(&off, h);
        }
        if let Some(p) = self.pcap.as_mut() {
            // The capture shows the frame as the guest sees it: the
            // header is for the kernel, and a super-segment is recorded
            // whole, with its partial checksum.
            p.record(&self.buf[start..start + len]);
        }
        self.prev = self.last;
        self.last = Some(self.tail);
        self.tail = start + len;
        true
    }

    /// Build a run of up to `count` frames in place, each `frame_len`
    /// bytes long but the last, which may be shorter, for a builder that
    /// fills many frames with one syscall (a peek into all their
    /// payloads). `build` gets one space of `frame_len` bytes per frame
    /// that fits (fewer than `count` when the queue is short of room) and
    /// returns how many it made and the last one's length; frames made
    /// carry no offloads. Returns the number of frames queued; a queue
    /// without room for one counts a drop.
    pub fn push_run(
        &mut self,
        frame_len: usize,
        count: usize,
        build: impl FnOnce(&mut [&mut [u8]]) -> (usize, usize),
    ) -> usize {
        let prefix = 4 + self.headroom();
        let frame_len = frame_len.min(MAX_FRAME);
        let stride = prefix + frame_len;
        let count = count.min(RUN_MAX);
        if self.buf.len() - self.tail < stride * count {
            self.compact();
        }
        let count = count.min((self.buf.len() - self.tail) / stride);
        if count == 0 {
            self.dropped += 1;
            return 0;
        }
        let region = &mut self.buf[self.tail..self.tail + stride * count];
        let mut frames: [&mut [u8]; RUN_MAX] = std::array::from_fn(|_| <&mut [u8]>::default());
        for (f, chunk) in frames.iter_mut().zip(region.chunks_mut(stride)) {
            *f = &mut chunk[prefix..];
        }
        let (made, last) = build(&mut frames[..count]);
        let made = made.min(count);
        if made == 0 || last == 0 || last > frame_len {
            return 0;
        }
        for i in 0..made {
            let at = self.tail + i * stride;
            let len = if i + 1 == made { last } else { frame_len };
            // At most MAX_FRAME plus the header: fits in u32.
            let len32 = (len + self.headroom()) as u32;
            self.buf[at..at + 4].copy_from_slice(&len32.to_be_bytes());
            if let Some(h) = self.buf[at + 4..at + prefix].first_chunk_mut::<{ vnet::LEN }>() {
                vnet::encode(&TxOffload::default(), h);
            }
            if let Some(p) = self.pcap.as_mut() {
                p.record(&self.buf[at + prefix..at + prefix + len]);
            }
        }
        self.tail += (made - 1) * stride + prefix + last;
        self.last = None;
        self.prev = None;
        made
    }

    /// Whether a frame of up to `max_len` bytes fits now (`push_with` would
    /// take it); makes room by compacting if needed.
    pub fn has_room(&mut self, max_len: usize) -> bool {
        let need = 4 + self.headroom() + max_len.min(MAX_FRAME);
        if self.buf.len() - self.tail < need {
            self.compact();
        }
        self.buf.len() - self.tail >= need
    }

    /// Whether the queue has drained enough to read paused sockets again:
    /// at most half full, and room for the largest frame. The gap between
    /// "full" and this keeps a guest that reads slowly from toggling
    /// sockets in and out of epoll for every frame.
    pub fn drained(&self) -> bool {
        let used = self.tail - self.head;
        used <= self.buf.len() / 2 && self.buf.len() - used >= 4 + self.headroom() + MAX_FRAME
    }

    /// Bytes not yet sent, in stream framing (each entry's length covers
    /// its virtio-net header, if any, and the frame).
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.head..self.tail]
    }

    /// Mark `n` bytes of `pending()` as sent.
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.tail - self.head);
        self.sent += n as u64;
        self.head += n;
        // A frame partly sent can't grow any more.
        if self.prev.is_some_and(|at| at < self.head) {
            self.prev = None;
        }
        if self.last.is_some_and(|at| at < self.head) {
            self.last = None;
        }
        if self.head == self.tail {
            self.clear();
        }
    }

    /// Drop everything queued (the guest went away).
    pub fn clear(&mut self) {
        self.head = 0;
        self.tail = 0;
        self.last = None;
        self.prev = None;
    }

    /// Record frames the guest sent, for the capture file.
    pub fn capture_rx<'a>(&mut self, frames: impl Iterator<Item = &'a [u8]>) {
        if let Some(p) = self.pcap.as_mut() {
            p.record_many(frames);
        }
    }

    /// Whether a capture file is being written.
    pub fn capturing(&self) -> bool {
        self.pcap.is_some()
    }

    fn compact(&mut self) {
        if self.head > 0 {
            self.buf.copy_within(self.head..self.tail, 0);
            self.tail -= self.head;
            // Both at or after head (`consume` forgets them otherwise).
            self.last = self.last.map(|at| at - self.head);
            self.prev = self.prev.map(|at| at - self.head);
            self.head = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_offsets_inside_the_batch_only() {
        let buf = [0u8; 100];
        let mut p = BatchPlaces::default();
        assert_eq!(p.of(&buf[10..20]), None, "no batch yet");
        p.begin(&buf);
        assert_eq!(p.of(&buf[10..20]), Some(10..20));
        assert_eq!(p.of(&buf[..]), Some(0..100));
        assert_eq!(p.of(&[1u8; 10]), None, "elsewhere");
        assert!(p.is(&buf) && !p.is(&buf[..99]));
        p.end();
        assert_eq!(p.of(&buf[10..20]), None);
        assert!(!p.is(&buf));
    }

    #[test]
    fn frames_are_length_prefixed() {
        let mut q = TxQueue::new(0, None);
        assert!(q.push_with(3, |b| {
            b[..3].copy_from_slice(b"abc");
            3
        }));
        assert!(q.push_with(100, |b| {
            b[0] = b'z';
            1
        }));
        assert_eq!(q.pending(), b"\0\0\0\x03abc\0\0\0\x01z");
        q.consume(5);
        assert_eq!(q.pending(), b"bc\0\0\0\x01z");
        q.consume(100);
        assert!(q.pending().is_empty());
    }

    #[test]
    fn full_queue_drops_and_counts() {
        let mut q = TxQueue::new(0, None);
        let mut pushed = 0;
        while q.push_with(MAX_FRAME, |_| MAX_FRAME) {
            pushed += 1;
        }
        assert_eq!(pushed, 1);
        assert_eq!(q.dropped, 1);
        // Sending part of the queue makes room again once compacted.
        q.consume(q.pending().len());
        assert!(!q.push_with(10, |_| 0), "nothing queued for an empty frame");
        assert!(q.pending().is_empty());
        assert_eq!(q.dropped, 1);
        assert!(q.push_with(10, |_| 10));
    }

    #[test]
    fn a_run_of_frames_is_queued_back_to_back() {
        let mut q = TxQueue::new(0, None);
        let made = q.push_run(4, 3, |frames| {
            assert_eq!(frames.len(), 3);
            for (i, f) in frames.iter_mut().enumerate() {
                assert_eq!(f.len(), 4);
                f.fill(b'a' + i as u8);
            }
            (3, 2)
        });
        assert_eq!(made, 3);
        assert_eq!(q.pending(), b"\0\0\0\x04aaaa\0\0\0\x04bbbb\0\0\0\x02cc");
        // Fewer made than offered: only those count.
        let made = q.push_run(4, 3, |f| {
            f[0][0] = b'z';
            (1, 1)
        });
        assert_eq!(made, 1);
        assert!(q.pending().ends_with(b"cc\0\0\0\x01z"));
        // Nothing made, or a last frame longer than a frame: nothing queued.
        let before = q.pending().len();
        assert_eq!(q.push_run(4, 3, |_| (0, 4)), 0);
        assert_eq!(q.push_run(4, 3, |_| (2, 5)), 0);
        assert_eq!(q.pending().len(), before);
    }

    #[test]
    fn a_run_takes_what_room_is_left() {
        let stride = 4 + 1000;
        let mut q = TxQueue::new(MAX_FRAME + 4 + vnet::LEN, None);
        let fit = q.buf.len() / stride;
        let made = q.push_run(1000, RUN_MAX + 10, |frames| {
            assert_eq!(frames.len(), fit.min(RUN_MAX));
            (frames.len(), 1000)
        });
        assert_eq!(made, fit.min(RUN_MAX));
        while q.push_run(1000, RUN_MAX, |f| (f.len(), 1000)) > 0 {}
        assert_eq!(q.dropped, 1, "no room for one frame counts a drop");
        // The queue sent: room again, at its start.
        q.consume(q.pending().len());
        assert_eq!(q.push_run(1000, 2, |f| (f.len(), 10)), 2);
        assert_eq!(q.pending().len(), stride + 4 + 10);
    }

    #[test]
    fn room_and_drained() {
        let mut q = TxQueue::new(4 * (MAX_FRAME + 4), None);
        assert!(q.drained() && q.has_room(MAX_FRAME));
        while q.has_room(MAX_FRAME) {
            assert!(q.push_with(MAX_FRAME, |_| MAX_FRAME));
        }
        assert_eq!(q.dropped, 0, "has_room said no before a drop");
        assert!(!q.drained());
        // One frame sent: room again, but not drained yet.
        q.consume(4 + MAX_FRAME);
        assert!(q.has_room(MAX_FRAME));
        assert!(!q.drained());
        q.consume(4 + MAX_FRAME);
        assert!(q.drained());
        assert!(q.has_room(100));
    }
}
