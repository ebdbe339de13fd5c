//! qemu's stream framing: each frame behind a 4-byte big-endian length.
//!
//! The stream is a byte pipe, so one read may carry many frames, or end in
//! the middle of one; the tail is kept and completed by the next read. A
//! length of zero or above `MAX_FRAME` means we lost track of the framing
//! (or the peer is hostile): nothing after it can be trusted, so the
//! caller drops the connection.

use super::{Batch, MAX_FRAME};
use std::io::{self, Read};

/// Receive buffer size: room for many frames per read.
pub const RX_BUF_SIZE: usize = 4 << 20;

/// The framing is broken; the connection must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// A frame announced as empty.
    #[error("zero-length frame")]
    ZeroLength,
    /// A frame longer than any valid Ethernet frame.
    #[error("frame length {0} exceeds {MAX_FRAME}")]
    Oversized(usize),
}

/// Reassembles frames from a byte stream.
pub struct StreamRx {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Default for StreamRx {
    fn default() -> Self {
        Self::with_capacity(RX_BUF_SIZE)
    }
}

impl StreamRx {
    /// A reassembler with a buffer of `size` bytes (at least one full frame).
    pub fn with_capacity(size: usize) -> Self {
        StreamRx {
            buf: vec![0u8; size.max(MAX_FRAME + 4)].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// The buffer that `Batch` ranges point into.
    pub fn buf(&self) -> &[u8] {
        &self.buf
    }

    /// Forget any partial frame (new connection).
    pub fn reset(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Read once from `src` into free space; `Ok(0)` means end of stream.
    ///
    /// Moves a leftover partial frame to the front first, which invalidates
    /// the ranges of the previous batch.
    ///
    /// # Errors
    /// Whatever the read returns, `WouldBlock` included.
    pub fn read_from(&mut self, mut src: impl Read) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = src.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// Append bytes directly (for tests and for callers that already read).
    pub fn feed(&mut self, data: &[u8]) -> usize {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = data.len().min(self.buf.len() - self.end);
        self.buf[self.end..self.end + n].copy_from_slice(&data[..n]);
        self.end += n;
        n
    }

    /// Cut complete frames into `batch`, until the batch is full or only a
    /// partial frame remains.
    ///
    /// # Errors
    /// `FramingError` if a length prefix is zero or too large.
    pub fn frames(&mut self, batch: &mut Batch) -> Result<(), FramingError> {
        batch.clear();
        while !batch.is_full() {
            let avail = &self.buf[self.start..self.end];
            let Some(hdr) = avail.first_chunk::<4>() else {
                break;
            };
            let len = u32::from_be_bytes(*hdr) as usize;
            if len == 0 {
                return Err(FramingError::ZeroLength);
            }
            if len > MAX_FRAME {
                return Err(FramingError::Oversized(len));
            }
            if avail.len() < 4 + len {
                break;
            }
            let from = self.start + 4;
            batch.push(from..from + len);
            self.start = from + len;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(frames: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for f in frames {
            v.extend_from_slice(&(f.len() as u32).to_be_bytes());
            v.extend_from_slice(f);
        }
        v
    }

    fn collect(rx: &mut StreamRx) -> Vec<Vec<u8>> {
        let mut batch = Batch::default();
        rx.frames(&mut batch).unwrap();
        batch.frames(rx.buf()).map(|f| f.to_vec()).collect()
    }

    #[test]
    fn several_frames_per_read() {
        let mut rx = StreamRx::with_capacity(0);
        rx.feed(&framed(&[b"one", b"two", b"three"]));
        assert_eq!(
            collect(&mut rx),
            vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
        );
    }

    #[test]
    fn frame_split_across_reads() {
        let data = framed(&[b"hello", b"world"]);
        let mut rx = StreamRx::with_capacity(0);
        let mut got = Vec::new();
        // Every split point, including inside the length prefix.
        for chunk in data.chunks(3) {
            rx.feed(chunk);
            got.extend(collect(&mut rx));
        }
        assert_eq!(got, vec![b"hello".to_vec(), b"world".to_vec()]);
    }

    #[test]
    fn broken_lengths() {
        let mut batch = Batch::default();
        let mut rx = StreamRx::with_capacity(0);
        rx.feed(&[0, 0, 0, 0, 1]);
        assert_eq!(rx.frames(&mut batch), Err(FramingError::ZeroLength));

        let mut rx = StreamRx::with_capacity(0);
        rx.feed(&((MAX_FRAME + 1) as u32).to_be_bytes());
        assert_eq!(
            rx.frames(&mut batch),
            Err(FramingError::Oversized(MAX_FRAME + 1))
        );
    }

    #[test]
    fn largest_frame_fits() {
        let big = vec![7u8; MAX_FRAME];
        let mut rx = StreamRx::with_capacity(0);
        let data = framed(&[&big]);
        let mut off = 0;
        let mut got = Vec::new();
        while off < data.len() {
            off += rx.feed(&data[off..]);
            got.extend(collect(&mut rx));
        }
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].len(), MAX_FRAME);
    }

    #[test]
    fn batch_limit_leaves_rest_for_next_call() {
        let frames: Vec<&[u8]> = vec![b"x"; super::super::BATCH_MAX + 5];
        let mut rx = StreamRx::with_capacity(0);
        rx.feed(&framed(&frames));
        assert_eq!(collect(&mut rx).len(), super::super::BATCH_MAX);
        assert_eq!(collect(&mut rx).len(), 5);
    }
}
