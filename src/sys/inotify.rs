//! A minimal inotify wrapper: enough to notice a file being removed from a
//! directory (nix's own wrapper sits behind a feature we don't enable).

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub use libc::{
    IN_DELETE, IN_DELETE_SELF, IN_IGNORED, IN_MOVE_SELF, IN_MOVED_FROM, IN_Q_OVERFLOW, IN_UNMOUNT,
};

/// Size of the fixed part of `struct inotify_event`: wd, mask, cookie, len.
const EVENT_HEADER: usize = 16;

/// An inotify instance, non-blocking and close-on-exec.
#[derive(Debug)]
pub struct Inotify {
    fd: OwnedFd,
}

/// One event read from an [`Inotify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    /// The watch it belongs to.
    pub wd: i32,
    /// `IN_*` bits.
    pub mask: u32,
    /// The entry's name inside a watched directory, if any.
    pub name: Option<&'a OsStr>,
}

impl Inotify {
    /// Create an instance.
    ///
    /// # Errors
    /// `EMFILE` at the per-user instance limit, `ENFILE`, `ENOMEM`.
    pub fn new() -> io::Result<Self> {
        // SAFETY: inotify_init1 takes flags only and returns a new
        // descriptor or -1.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this descriptor; we own it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd })
    }

    /// Watch `path` for the events in `mask`; returns the watch descriptor.
    ///
    /// # Errors
    /// `ENOENT`, `EACCES` (no read permission), `ENOSPC` at the watch limit.
    pub fn add_watch(&self, path: &Path, mask: u32) -> io::Result<i32> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: `c` is a NUL-terminated string alive across the call and
        // `self.fd` is an open inotify descriptor.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), mask) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(wd)
    }

    /// Read the pending events into `buf` (at least 4 KiB is sensible) and
    /// return them; empty when nothing is pending.
    ///
    /// # Errors
    /// Read errors other than `EAGAIN`.
    pub fn read_events<'b>(&self, buf: &'b mut [u8]) -> io::Result<Vec<Event<'b>>> {
        let n = match nix::unistd::read(&self.fd, buf) {
            Ok(n) => n,
            Err(nix::errno::Errno::EAGAIN) => 0,
            Err(e) => return Err(e.into()),
        };
        Ok(parse_events(&buf[..n]))
    }
}

impl AsFd for Inotify {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Split a buffer read from inotify into events; a truncated tail (which
/// the kernel never produces) is ignored rather than trusted.
fn parse_events(mut b: &[u8]) -> Vec<Event<'_>> {
    let field = |b: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    let mut out = Vec::new();
    while b.len() >= EVENT_HEADER {
        let (Some(wd), Some(mask), Some(len)) = (field(b, 0), field(b, 4), field(b, 12)) else {
            break;
        };
        let end = EVENT_HEADER + len as usize;
        let Some(raw) = b.get(EVENT_HEADER..end) else {
            break;
        };
        // The name is NUL-padded to an alignment boundary.
        let name = raw.split(|&c| c == 0).next().filter(|n| !n.is_empty());
        out.push(Event {
            wd: wd as i32,
            mask,
            name: name.map(OsStr::from_bytes),
        });
        b = &b[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(wd: i32, mask: u32, name: &[u8], pad: usize) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&wd.to_ne_bytes());
        v.extend_from_slice(&mask.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v.extend_from_slice(&((name.len() + pad) as u32).to_ne_bytes());
        v.extend_from_slice(name);
        v.extend(std::iter::repeat_n(0, pad));
        v
    }

    #[test]
    fn parses_named_and_unnamed_events() {
        let mut b = event(1, IN_DELETE, b"netns-x", 9);
        b.extend(event(1, IN_IGNORED, b"", 0));
        let ev = parse_events(&b);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].name, Some(OsStr::new("netns-x")));
        assert_eq!((ev[1].mask, ev[1].name), (IN_IGNORED, None));
    }

    #[test]
    fn truncated_event_is_dropped() {
        let b = event(1, IN_DELETE, b"abc", 5);
        assert!(parse_events(&b[..b.len() - 1]).is_empty());
        assert!(parse_events(&b[..10]).is_empty());
    }

    #[test]
    fn sees_a_file_removed() {
        let dir = std::env::temp_dir().join(format!("passt-rs-inotify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("victim");
        std::fs::write(&f, b"").unwrap();
        let ino = Inotify::new().unwrap();
        ino.add_watch(&dir, IN_DELETE).unwrap();
        std::fs::remove_file(&f).unwrap();
        let mut buf = [0u8; 4096];
        let ev = ino.read_events(&mut buf).unwrap();
        std::fs::remove_dir(&dir).unwrap();
        assert!(
            ev.iter()
                .any(|e| e.mask & IN_DELETE != 0 && e.name == Some(OsStr::new("victim")))
        );
    }
}
