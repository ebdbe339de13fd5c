//! Asking a namespace file (`/proc/PID/ns/*`, a bind mount of one) what
//! kind of namespace it refers to (`ioctl_ns(2)`).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `NS_GET_NSTYPE` = `_IO(0xb7, 0x3)` from `<linux/nsfs.h>` (Linux 4.11).
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// The `CLONE_NEW*` constant of the namespace `fd` refers to, e.g.
/// `libc::CLONE_NEWNET`.
///
/// # Errors
/// `ENOTTY` if `fd` is not a namespace file (a regular file, a directory).
pub fn ns_type(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    // SAFETY: NS_GET_NSTYPE takes no argument and only returns an integer;
    // `fd` is a valid descriptor for the duration of the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}
