//! A connection's in-order data from one batch of the guest's frames,
//! written to its socket in one call.
//!
//! A bulk sender's frames arrive as runs of one connection's segments. One
//! `send` each costs a syscall per segment, and at MTU 1500 that, not
//! the copy, is what limits passt's uploads: a call per 1448 bytes.
//! So the segments that continue a connection's stream exactly are only
//! noted, as places in the batch's buffer (no copy), and go in one
//! `sendmsg` when the run ends: at a segment that doesn't continue it
//! (another connection's, a gap, a FIN, a control segment), or at the end
//! of the batch.
//!
//! The data is not in the socket until then, so nothing of it may be
//! acknowledged before: the connection's `rcv_nxt` stays where the
//! socket's data ends, and only the send moves it, by what the kernel
//! took. Every ACK in between (there are few: ACKs for in-order data wait
//! for the batch's end anyway) says less than the guest sent, never more.
//! A run is bounded by `GATHER_MAX` segments; only one connection's run
//! is open at a time.

use crate::flow::FlowRef;
use crate::tap::BatchPlaces;
use std::io::IoSlice;
use std::ops::Range;

/// Segments in one run: one `sendmsg` at most every this many. A batch of
/// 1500-byte frames from passt's stream holds about 40 per 64 KiB read.
pub const GATHER_MAX: usize = 64;

/// The open run, if any.
pub struct Gather {
    /// Where the batch's buffer is while one is handled.
    buf: BatchPlaces,
    /// Whose data this is.
    flow: Option<FlowRef>,
    /// The sequence number just past the gathered data.
    end: u32,
    /// The segments' places in the buffer, in order.
    ranges: Vec<Range<usize>>,
}

impl Default for Gather {
    fn default() -> Self {
        Gather {
            buf: BatchPlaces::default(),
            flow: None,
            end: 0,
            ranges: Vec::with_capacity(GATHER_MAX),
        }
    }
}

impl Gather {
    /// A batch read into `buf` is about to be handled: segments inside it
    /// may be gathered.
    pub fn begin(&mut self, buf: &[u8]) {
        self.buf.begin(buf);
        self.clear();
    }

    /// The batch is handled (after the last send): nothing may wait.
    pub fn end(&mut self) {
        self.buf.end();
        self.clear();
    }

    /// Forget the run (it was sent, or its connection is gone).
    pub fn clear(&mut self) {
        self.flow = None;
        self.ranges.clear();
    }

    /// The connection whose run is open.
    pub fn flow(&self) -> Option<FlowRef> {
        self.flow
    }

    /// Where connection `r`'s stream goes on after its run, if it has one.
    pub fn end_of(&self, r: FlowRef) -> Option<u32> {
        (self.flow == Some(r)).then_some(self.end)
    }

    /// Whether the run takes no more segments.
    pub fn is_full(&self) -> bool {
        self.ranges.len() >= GATHER_MAX
    }

    /// Add `payload`, starting at sequence number `seq`, to connection
    /// `r`'s run (opening it): false if it can't be (another connection's
    /// run is open, it doesn't continue this one, the run is full, or the
    /// payload is not in the batch's buffer). The caller sends it then.
    pub fn add(&mut self, r: FlowRef, seq: u32, payload: &[u8]) -> bool {
        let Ok(len) = u32::try_from(payload.len()) else {
            return false;
        };
        let continues = match self.flow {
            None => true,
            Some(f) => f == r && seq == self.end,
        };
        if !continues || payload.is_empty() || self.is_full() {
            return false;
        }
        let Some(place) = self.buf.of(payload) else {
            return false;
        };
        self.ranges.push(place);
        self.flow = Some(r);
        self.end = seq.wrapping_add(len);
        true
    }

    /// The run's data in `buf` (the buffer given to `begin`), in order, for
    /// one `sendmsg`: the slices and how many there are (none for another
    /// buffer than the batch's).
    pub fn slices<'b>(&self, buf: &'b [u8]) -> ([IoSlice<'b>; GATHER_MAX], usize) {
        let mut iov = [IoSlice::new(&[]); GATHER_MAX];
        if !self.buf.is(buf) {
            // Not the batch the run is in: its places mean nothing here,
            // and sending nothing only costs the guest a retransmission.
            log::warn!("TCP: gathered data of another batch, not sent");
            return (iov, 0);
        }
        let mut n = 0;
        for (range, slot) in self.ranges.iter().zip(iov.iter_mut()) {
            *slot = IoSlice::new(buf.get(range.clone()).unwrap_or(&[]));
            n += 1;
        }
        (iov, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    fn flow(index: u32) -> FlowRef {
        FlowRef {
            index,
            generation: 1,
        }
    }

    #[test]
    fn a_run_continues_one_connections_stream_exactly() {
        let buf = vec![7u8; 4000];
        let mut g = Gather::default();
        g.begin(&buf);
        assert!(g.add(flow(1), 100, &buf[0..1000]));
        assert_eq!(g.end_of(flow(1)), Some(1100));
        assert!(!g.add(flow(1), 1200, &buf[1000..2000]), "past a gap");
        assert!(!g.add(flow(1), 1000, &buf[1000..2000]), "overlapping");
        assert!(
            !g.add(flow(2), 1100, &buf[1000..2000]),
            "another connection"
        );
        assert!(!g.add(flow(1), 1100, &[1u8; 10]), "outside the batch");
        assert!(!g.add(flow(1), 1100, &buf[1000..1000]), "empty");
        assert!(g.add(flow(1), 1100, &buf[1000..2000]));
        let (iov, n) = g.slices(&buf);
        let bytes: usize = iov[..n].iter().map(|s| s.len()).sum();
        assert_eq!((g.flow(), bytes), (Some(flow(1)), 2000));
        assert_eq!(g.end_of(flow(2)), None);
        g.clear();
        assert!(g.add(flow(2), 5, &buf[2000..2100]), "a new run");
        g.end();
        assert!(!g.add(flow(2), 105, &buf[2100..2200]), "no batch");
    }

    #[test]
    fn a_run_is_bounded_and_wraps_around_sequence_space() {
        let buf = vec![0u8; GATHER_MAX + 1];
        let mut g = Gather::default();
        g.begin(&buf);
        let mut seq = u32::MAX - 5;
        for i in 0..GATHER_MAX {
            assert!(g.add(flow(1), seq, &buf[i..=i]));
            seq = seq.wrapping_add(1);
        }
        assert!(!g.add(flow(1), seq, &buf[GATHER_MAX..]), "full");
        assert_eq!(g.end_of(flow(1)), Some((GATHER_MAX - 6) as u32));
    }

    #[test]
    fn the_run_goes_in_one_call_in_order() {
        use nix::sys::socket::{MsgFlags, sendmsg};
        let buf: Vec<u8> = (0..=255u8).collect();
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut g = Gather::default();
        g.begin(&buf);
        assert!(g.add(flow(1), 0, &buf[10..20]));
        assert!(g.add(flow(1), 10, &buf[200..256]));
        assert!(g.add(flow(1), 66, &buf[0..1]));
        let (iov, n) = g.slices(&buf);
        let sent = sendmsg::<()>(a.as_raw_fd(), &iov[..n], &[], MsgFlags::empty(), None);
        assert_eq!(sent, Ok(67));
        let mut got = vec![0u8; 67];
        b.read_exact(&mut got).unwrap();
        let want: Vec<u8> = (10..20u8).chain(200..=255).chain([0]).collect();
        assert_eq!(got, want);
        // Another buffer than the batch's: nothing goes.
        let other = buf.clone();
        assert_eq!(g.slices(&other).1, 0);
    }
}
