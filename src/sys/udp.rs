//! Batched datagram I/O: one `sendmmsg` for many datagrams of one
//! connected socket. nix's wrapper wants header buffers of its own and
//! iterators of slice arrays per message; the datagrams we send are
//! already slices of the tap's receive buffer, one `iovec` each.

use nix::errno::Errno;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The most datagrams one call takes.
pub const SEND_BATCH: usize = 64;

/// An `iovec` for each of the first `SEND_BATCH` of `datagrams`, for a
/// send (the kernel only reads through them).
fn iovecs(datagrams: &[&[u8]]) -> [libc::iovec; SEND_BATCH] {
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; SEND_BATCH];
    for (v, d) in iov.iter_mut().zip(datagrams) {
        v.iov_base = d.as_ptr().cast_mut().cast();
        v.iov_len = d.len();
    }
    iov
}

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
    let mut iov = iovecs(datagrams);
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

/// The most payload one segmented send carries: what an IP packet
/// holds after the largest IPv4 header and the UDP header.
pub const GSO_MAX_BYTES: usize = 65_535 - 60 - 8;

/// Send `datagrams` on connected socket `fd` as one segmented send
/// (`UDP_SEGMENT`): the kernel cuts the joined payload into datagrams of
/// `seg` bytes, so the whole batch crosses the stack once. The caller
/// makes every datagram but the last exactly `seg` bytes, the last at
/// most that, at most `SEND_BATCH` of them and `GSO_MAX_BYTES` in all.
///
/// # Errors
/// As for `send_batch`; also `EINVAL` or `EIO` where the route can't
/// take segmented sends (no checksum offload, a smaller MTU, IPsec),
/// after which the datagrams may still go one by one. Nothing went.
pub fn send_segmented(fd: BorrowedFd<'_>, datagrams: &[&[u8]], seg: u16) -> Result<(), Errno> {
    let n = datagrams.len().min(SEND_BATCH);
    let mut iov = iovecs(datagrams);
    // Room for one `cmsghdr` and its u16, aligned as the kernel wants.
    #[repr(C, align(8))]
    struct Cmsg([u8; 32]);
    let mut cbuf = Cmsg([0; 32]);
    // SAFETY: CMSG_SPACE only computes a length.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) } as usize;
    // SAFETY: an all-zero `msghdr` is valid: null pointers, zero lengths.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = n;
    msg.msg_control = cbuf.0.as_mut_ptr().cast();
    msg.msg_controllen = space.min(cbuf.0.len());
    // SAFETY: `msg` points at `cbuf`, aligned and at least CMSG_SPACE(2)
    // long, so CMSG_FIRSTHDR is a valid header inside it and CMSG_DATA
    // has room for the u16 written (unaligned, as CMSG_DATA may be).
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = libc::UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg);
    }
    // SAFETY: `msg` points at `iov[..n]` (into `datagrams`) and `cbuf`,
    // all live and unmoved for the call, which only reads them.
    let rc = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, libc::MSG_DONTWAIT) };
    if rc < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// Send `fd`'s datagrams without UDP checksums (`SO_NO_CHECK`): the
/// kernel then refuses segmented sends, as a route without checksum
/// offload does. For tests of that refusal.
#[cfg(test)]
pub fn no_checksums(fd: BorrowedFd<'_>) {
    let one: libc::c_int = 1;
    // SAFETY: a c_int option value, its size given.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NO_CHECK,
            std::ptr::from_ref(&one).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        )
    };
    assert_eq!(rc, 0, "SO_NO_CHECK");
}

/// A receiving socket on the loopback, and a sending one connected to
/// it. For tests.
#[cfg(test)]
pub fn pair() -> (std::net::UdpSocket, std::net::UdpSocket) {
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    tx.connect(rx.local_addr().expect("local address"))
        .expect("connect");
    (rx, tx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    /// `rx` gets exactly `data`, one datagram each, in order.
    fn receives(rx: &UdpSocket, data: &[Vec<u8>]) {
        let mut buf = [0u8; 4096];
        for d in data {
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], d.as_slice());
        }
    }

    #[test]
    fn every_datagram_goes_whole_and_in_order() {
        let (rx, tx) = pair();
        let data: Vec<Vec<u8>> = (0..70u8).map(|i| vec![i; usize::from(i) * 7]).collect();
        let slices: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        assert_eq!(send_batch(tx.as_fd(), &slices), Ok(SEND_BATCH));
        assert_eq!(send_batch(tx.as_fd(), &slices[SEND_BATCH..]), Ok(6));
        assert_eq!(send_batch(tx.as_fd(), &[]), Ok(0));
        receives(&rx, &data);
    }

    #[test]
    fn a_segmented_send_arrives_as_separate_datagrams() {
        let (rx, tx) = pair();
        let data: Vec<Vec<u8>> = (0..10u8)
            .map(|i| vec![i; 1000])
            .chain([vec![99; 10]])
            .collect();
        let slices: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        assert_eq!(send_segmented(tx.as_fd(), &slices, 1000), Ok(()));
        receives(&rx, &data);
    }

    #[test]
    fn a_socket_without_checksums_refuses_segmented_sends() {
        let (_rx, tx) = pair();
        no_checksums(tx.as_fd());
        let d = [7u8; 100];
        assert_eq!(
            send_segmented(tx.as_fd(), &[&d, &d], 100),
            Err(Errno::EINVAL)
        );
    }

    #[test]
    fn the_first_failure_is_the_error() {
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Not connected: nowhere to send.
        assert_eq!(send_batch(tx.as_fd(), &[b"x"]), Err(Errno::EDESTADDRREQ));
    }
}
