//! Packet capture (`-p`): tap-side frames appended to a classic pcap file.
//!
//! The file format is libpcap's original one: a 24-byte global header, then
//! per frame a 16-byte record header (timestamp in seconds and
//! microseconds, captured and original length) followed by the frame bytes.
//! All fields are written in host byte order. Readers tell the order from
//! the magic number.
//!
//! Capturing is a debugging aid: a failed write is logged once, then
//! capture stops and traffic carries on.

use std::fs::File;
use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

/// Magic number of microsecond-resolution pcap files.
const MAGIC: u32 = 0xa1b2_c3d4;
const VERSION_MAJOR: u16 = 2;
const VERSION_MINOR: u16 = 4;
/// Largest frame recorded in full: libpcap's own maximum, well above any
/// frame we handle (65535 bytes of IP plus the Ethernet header).
const SNAPLEN: u32 = 262_144;
/// LINKTYPE_ETHERNET.
const LINKTYPE_ETHERNET: u32 = 1;

const GLOBAL_HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 16;

/// Batched records are written out once this many bytes are pending, so
/// the buffer stays small however long the batch.
const FLUSH_AT: usize = 256 * 1024;

/// A pcap capture file being written.
#[derive(Debug)]
pub struct Pcap {
    file: File,
    /// Records being assembled; kept between calls so its capacity is reused.
    buf: Vec<u8>,
    /// Set after a write error: capture is off for good.
    disabled: bool,
}

impl Pcap {
    /// Starts a capture on `file` (opened by the caller) by writing the pcap global header.
    ///
    /// # Errors
    /// The error from writing the header.
    pub fn new(mut file: File) -> io::Result<Self> {
        let mut hdr = [0u8; GLOBAL_HEADER_LEN];
        hdr[0..4].copy_from_slice(&MAGIC.to_ne_bytes());
        hdr[4..6].copy_from_slice(&VERSION_MAJOR.to_ne_bytes());
        hdr[6..8].copy_from_slice(&VERSION_MINOR.to_ne_bytes());
        // thiszone (8..12) and sigfigs (12..16) stay zero: timestamps are UTC.
        hdr[16..20].copy_from_slice(&SNAPLEN.to_ne_bytes());
        hdr[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_ne_bytes());
        file.write_all(&hdr)?;
        Ok(Self {
            file,
            buf: Vec::new(),
            disabled: false,
        })
    }

    /// Appends one Ethernet frame, stamped with the current time.
    pub fn record(&mut self, frame: &[u8]) {
        self.record_many(std::iter::once(frame));
    }

    /// Appends a batch of frames, all stamped with the same current time.
    pub fn record_many<'a>(&mut self, frames: impl Iterator<Item = &'a [u8]>) {
        if self.disabled {
            return;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        // The 32-bit seconds field runs out in 2106.
        let sec = u32::try_from(now.as_secs()).unwrap_or(u32::MAX);
        let usec = now.subsec_micros();

        self.buf.clear();
        for frame in frames {
            let orig_len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
            let incl_len = orig_len.min(SNAPLEN);
            let mut hdr = [0u8; RECORD_HEADER_LEN];
            hdr[0..4].copy_from_slice(&sec.to_ne_bytes());
            hdr[4..8].copy_from_slice(&usec.to_ne_bytes());
            hdr[8..12].copy_from_slice(&incl_len.to_ne_bytes());
            hdr[12..16].copy_from_slice(&orig_len.to_ne_bytes());
            self.buf.extend_from_slice(&hdr);
            self.buf.extend_from_slice(&frame[..incl_len as usize]);
            if self.buf.len() >= FLUSH_AT && !self.flush() {
                return;
            }
        }
        self.flush();
    }

    /// Writes out the pending records; false if capture had to stop.
    fn flush(&mut self) -> bool {
        if self.buf.is_empty() {
            return true;
        }
        let res = self.file.write_all(&self.buf);
        self.buf.clear();
        if let Err(e) = res {
            log::error!("pcap: write failed, capture disabled: {e}");
            self.disabled = true;
            // Give the memory back: we won't write again.
            self.buf = Vec::new();
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const HDR: usize = RECORD_HEADER_LEN;

    fn frame(len: usize, fill: u8) -> Vec<u8> {
        // Broadcast destination, some source, IPv4 ethertype, filler payload.
        let mut f = vec![fill; len];
        f[0..6].fill(0xff);
        f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f
    }

    fn temp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!(
            "passt-rs-pcaptest-{}-{name}.pcap",
            std::process::id()
        ))
    }

    #[test]
    fn header_and_records() {
        let path = temp("bytes");
        let mut p = Pcap::new(File::create(&path).expect("create")).expect("pcap");
        let (a, b) = (frame(60, 0xaa), frame(100, 0xbb));
        p.record(&a);
        p.record_many([a.as_slice(), b.as_slice()].into_iter());
        drop(p);

        let bytes = std::fs::read(&path).expect("read back");
        let u32_at = |o: usize| u32::from_ne_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
        let u16_at = |o: usize| u16::from_ne_bytes(bytes[o..o + 2].try_into().expect("2 bytes"));
        assert_eq!(u32_at(0), 0xa1b2_c3d4);
        assert_eq!((u16_at(4), u16_at(6)), (2, 4));
        assert_eq!((u32_at(8), u32_at(12)), (0, 0));
        assert!(u32_at(16) >= 65535);
        assert_eq!(u32_at(20), 1);
        assert_eq!(bytes.len(), GLOBAL_HEADER_LEN + 3 * HDR + 60 + 60 + 100);

        let r1 = GLOBAL_HEADER_LEN;
        assert_eq!((u32_at(r1 + 8), u32_at(r1 + 12)), (60, 60));
        assert!(u32_at(r1 + 4) < 1_000_000);
        assert_eq!(&bytes[r1 + HDR..r1 + HDR + 60], a.as_slice());
        let r2 = r1 + HDR + 60;
        let r3 = r2 + HDR + 60;
        // One timestamp for the whole batch.
        assert_eq!(bytes[r2..r2 + 8], bytes[r3..r3 + 8]);
        assert_eq!((u32_at(r3 + 8), u32_at(r3 + 12)), (100, 100));
        assert_eq!(&bytes[r3 + HDR..], b.as_slice());
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn tcpdump_reads_it() {
        let path = temp("tcpdump");
        let mut p = Pcap::new(File::create(&path).expect("create")).expect("pcap");
        p.record(&frame(60, 0x11));
        p.record(&frame(1514, 0x22));
        drop(p);

        let out = Command::new("tcpdump")
            .args(["-r", path.to_str().expect("UTF-8 temp path"), "-nn"])
            .output()
            .expect("run tcpdump (is it installed?)");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "tcpdump failed: {stderr}");
        assert!(stderr.contains("link-type EN10MB"), "{stderr}");
        assert_eq!(stdout.lines().count(), 2, "{stdout}");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn write_error_disables_capture() {
        // A read-only descriptor: the header write fails at once...
        let ro = File::open("/dev/null").expect("open /dev/null");
        assert!(Pcap::new(ro).is_err());
        // ...and a full device fails record writes, which must not panic.
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("open /dev/full");
        let mut p = Pcap {
            file: full,
            buf: Vec::new(),
            disabled: false,
        };
        p.record(&frame(60, 0));
        assert!(p.disabled);
        p.record(&frame(60, 0));
    }
}
