//! TCP socket queries nix doesn't wrap: the peek offset and the send queue.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Set `SO_PEEK_OFF`: where the next `MSG_PEEK` starts, relative to the
/// first unread byte (Linux 6.10 and later for TCP).
///
/// # Errors
/// `EINVAL`/`EOPNOTSUPP` where the kernel doesn't support it for TCP.
pub fn set_peek_off(fd: BorrowedFd<'_>, off: i32) -> io::Result<()> {
    set_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, off)
}

/// Leave quick-ACK mode (`TCP_QUICKACK` 0): the socket delays its next
/// ACKs, as a peer in a request/response exchange does. For tests that
/// need such a peer; nix has no name for the option.
#[cfg(test)]
pub fn delay_acks(fd: BorrowedFd<'_>) -> io::Result<()> {
    set_int(fd, libc::IPPROTO_TCP, libc::TCP_QUICKACK, 0)
}

/// An integer socket option.
fn set_int(fd: BorrowedFd<'_>, level: i32, opt: i32, val: i32) -> io::Result<()> {
    let len = libc::socklen_t::try_from(std::mem::size_of::<i32>()).unwrap_or(4);
    // SAFETY: the option value points to a live i32 of the length given;
    // the kernel only reads it.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            std::ptr::from_ref(&val).cast(),
            len,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Bytes in the socket's send queue, sent or not, not yet acknowledged by
/// the peer (`SIOCOUTQ`).
///
/// # Errors
/// The ioctl's error.
pub fn outq(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int through the pointer, which points to
    // a live c_int.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCOUTQ, &raw mut n) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

/// The socket's send buffer size and the memory its write queue holds,
/// both as the kernel accounts them (`SO_MEMINFO`: `SK_MEMINFO_SNDBUF`,
/// `SK_MEMINFO_WMEM_QUEUED`, Linux 4.6 and later). A write is taken while
/// the second is below the first, so this is the room a write will find,
/// in one call (`SO_SNDBUF` and `SIOCOUTQ` are two, and count data, not
/// memory).
///
/// # Errors
/// The `getsockopt` error.
pub fn send_mem(fd: BorrowedFd<'_>) -> io::Result<(usize, usize)> {
    let mut info = [0u32; 9];
    let mut len = libc::socklen_t::try_from(std::mem::size_of_val(&info)).unwrap_or(36);
    // SAFETY: the kernel writes at most `len` bytes (the array's size) to
    // the pointer, which points to the live array, and updates `len`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &raw mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let get = |i: libc::c_int| {
        usize::try_from(i)
            .ok()
            .and_then(|i| info.get(i))
            .map_or(0, |&v| v as usize)
    };
    let (buf, queued) = (
        get(libc::SK_MEMINFO_SNDBUF),
        get(libc::SK_MEMINFO_WMEM_QUEUED),
    );
    // An older kernel with fewer fields would leave these zero.
    if buf == 0 {
        return Err(io::ErrorKind::Unsupported.into());
    }
    Ok((buf, queued))
}

/// Peek at the bytes after the first `skip.len()` unread ones into `out`,
/// without `SO_PEEK_OFF`: the skipped prefix is copied into `skip` and
/// thrown away. Returns how many bytes the peek found in all, prefix
/// included: at most `skip.len()` means nothing new (and 0 with an empty
/// prefix, the peer's FIN).
///
/// # Errors
/// The `recvmsg` error (`EAGAIN` when nothing is there).
pub fn peek_after(fd: BorrowedFd<'_>, skip: &mut [u8], out: &mut [u8]) -> io::Result<usize> {
    let mut iov = [
        libc::iovec {
            iov_base: skip.as_mut_ptr().cast(),
            iov_len: skip.len(),
        },
        libc::iovec {
            iov_base: out.as_mut_ptr().cast(),
            iov_len: out.len(),
        },
    ];
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = 2;
    // SAFETY: both iovecs point into live, exclusively borrowed buffers of
    // the lengths given; msg points to them and lives across the call.
    let r = unsafe {
        libc::recvmsg(
            fd.as_raw_fd(),
            &raw mut msg,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(r).unwrap_or(0))
}

/// Throw away the next `n` unread bytes of a TCP socket without copying
/// them (`MSG_TRUNC`, which TCP takes as "discard"). Returns how many went.
///
/// # Errors
/// The `recv` error.
pub fn discard(fd: BorrowedFd<'_>, n: usize) -> io::Result<usize> {
    // SAFETY: for TCP, MSG_TRUNC makes the kernel drop the data instead of
    // copying it (tcp(7)), so the null buffer is never written.
    let r = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            n,
            libc::MSG_TRUNC | libc::MSG_DONTWAIT,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(r).unwrap_or(0))
}

/// Accept a connection waiting on listening socket `fd`, non-blocking and
/// close-on-exec (nix hands back a bare descriptor number).
///
/// # Errors
/// What `accept4` fails with (`EAGAIN` when none is waiting).
pub fn accept(fd: BorrowedFd<'_>) -> Result<std::os::fd::OwnedFd, nix::errno::Errno> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: null address pointers ask for no peer address, so accept4
    // writes no memory of ours; it only returns a descriptor or -1.
    let r = unsafe {
        libc::accept4(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if r < 0 {
        return Err(nix::errno::Errno::last());
    }
    // SAFETY: `r` is a descriptor accept4 just created for us: nothing
    // else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(r) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;

    #[test]
    fn peek_past_a_prefix_and_discard() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        a.write_all(b"abcdefgh").unwrap();
        assert!(outq(a.as_fd()).is_ok_and(|n| n <= 8));
        let fd = b.as_fd();
        let mut skip = [0u8; 2];
        let mut out = [0u8; 4];
        // The data may take a moment to show up on loopback.
        let mut n = 0;
        for _ in 0..100 {
            n = peek_after(fd, &mut skip, &mut out).unwrap_or(0);
            if n == 6 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!((n, &out), (6, b"cdef"));
        assert_eq!(discard(fd, 3).unwrap(), 3);
        let n = peek_after(fd, &mut [], &mut out).unwrap();
        assert_eq!(&out[..n], b"defg");
        // With SO_PEEK_OFF (Linux 6.10+), peeks move on by themselves.
        if set_peek_off(fd, 0).is_ok() {
            let mut one = [0u8; 2];
            assert_eq!(
                nix::sys::socket::recv(
                    fd.as_raw_fd(),
                    &mut one,
                    nix::sys::socket::MsgFlags::MSG_PEEK
                ),
                Ok(2)
            );
            let n = nix::sys::socket::recv(
                fd.as_raw_fd(),
                &mut one,
                nix::sys::socket::MsgFlags::MSG_PEEK,
            )
            .unwrap();
            assert_eq!(&one[..n], b"fg");
        }
    }
}
