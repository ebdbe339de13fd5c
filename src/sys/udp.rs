//! Batched datagram I/O: one `sendmmsg` for many datagrams of one
//! connected socket. nix's wrapper wants header buffers of its own and
//! iterators of slice arrays per message; the datagrams we send are
//! already slices of the tap's receive buffer, one `iovec` each.

use nix::errno::Errno;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The most datagrams one call takes.
pub const SEND_BATCH: usize = 64;

/// Send `datagrams` (at most `SEND_BATCH` of them; the rest are left
/// alone) on connected socket `fd` without blocking, each as one
/// datagram, in order: how many went.
///
/// # Errors
/// The error of the first datagram, when not even that one went
/// (`EAGAIN` with a full buffer, an ICMP error reported for an earlier
/// datagram, ...).
pub fn send_batch(fd: BorrowedFd<'_>, datagrams: &[&[u8]]) -> Result<usize, Errno> {
    let n = datagrams.len().min(SEND_BATCH);
    if n == 0 {
        return Ok(0);
    }
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; SEND_BATCH];
    for (v, d) in iov.iter_mut().zip(datagrams) {
        // The kernel only reads through `iov_base` for a send.
        v.iov_base = d.as_ptr().cast_mut().cast();
        v.iov_len = d.len();
    }
    // SAFETY: an all-zero `mmsghdr` is valid: null pointers with zero
    // lengths, no flags.
    let mut msgs: [libc::mmsghdr; SEND_BATCH] = unsafe { std::mem::zeroed() };
    for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
        m.msg_hdr.msg_iov = std::ptr::from_mut(v);
        m.msg_hdr.msg_iovlen = 1;
    }
    let vlen = u32::try_from(n).unwrap_or(1);
    // SAFETY: `msgs[..n]` point at `iov[..n]`, which point into
    // `datagrams`: all live and unmoved for the call; the kernel writes
    // only `msg_len` of each header.
    let rc = unsafe { libc::sendmmsg(fd.as_raw_fd(), msgs.as_mut_ptr(), vlen, libc::MSG_DONTWAIT) };
    usize::try_from(rc).map_err(|_| Errno::last())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    #[test]
    fn every_datagram_goes_whole_and_in_order() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        let data: Vec<Vec<u8>> = (0..70u8).map(|i| vec![i; usize::from(i) * 7]).collect();
        let slices: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        assert_eq!(send_batch(tx.as_fd(), &slices), Ok(SEND_BATCH));
        assert_eq!(send_batch(tx.as_fd(), &slices[SEND_BATCH..]), Ok(6));
        assert_eq!(send_batch(tx.as_fd(), &[]), Ok(0));
        let mut buf = [0u8; 1024];
        for d in &data {
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], d.as_slice());
        }
    }

    #[test]
    fn the_first_failure_is_the_error() {
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Not connected: nowhere to send.
        assert_eq!(send_batch(tx.as_fd(), &[b"x"]), Err(Errno::EDESTADDRREQ));
    }
}
