//! The thin syscall layer: the only place `unsafe` is allowed.
//!
//! Each function wraps one operation that nix does not offer safely, and
//! hands back owned, typed results (`OwnedFd`, enums) so callers stay safe.

pub mod inotify;
pub mod nsfs;
pub mod process;
pub mod tcp;
pub mod tun;
pub mod udp;

use std::io;

/// Which side of a `fork()` we are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// The original process; carries the child's PID.
    Parent(i32),
    /// The new process.
    Child,
}

/// Fork the process.
///
/// Only call this while single-threaded: after `fork()` only the calling
/// thread exists in the child, and locks held by other threads would stay
/// locked forever.
///
/// # Errors
/// The `fork()` error, e.g. `EAGAIN` at the process limit.
pub fn fork() -> io::Result<Forked> {
    // SAFETY: callers fork before starting any thread (documented above),
    // so the child does not inherit locks held by threads that vanish.
    match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
        nix::unistd::ForkResult::Parent { child } => Ok(Forked::Parent(child.as_raw())),
        nix::unistd::ForkResult::Child => Ok(Forked::Child),
    }
}

/// Take ownership of a descriptor inherited from our parent (`--fd`),
/// after checking that it is open, so a wrong number is an error rather
/// than a descriptor we close or reuse by accident.
///
/// # Errors
/// `EBADF` if `fd` is negative or not open.
pub fn adopt_fd(fd: std::os::fd::RawFd) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: F_GETFD only reads the descriptor flags of `fd`; it has no
    // memory effects and fails with EBADF if `fd` isn't open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is open (checked above) and, per `--fd`'s contract, was
    // handed to us to own; nothing else in this process refers to it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}
