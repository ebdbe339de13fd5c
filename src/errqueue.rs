//! ICMP errors the host received for datagrams a flow's socket sent, read
//! from the socket's error queue (`IP_RECVERR`, `IPV6_RECVERR`).
//!
//! Theory of operation: with the option set, the kernel queues every ICMP
//! error it matches to the socket, with the type, code, MTU, the address
//! that sent it (the "offender") and the start of the offending datagram's
//! payload, and reports `EPOLLERR` until the queue is empty. UDP and ping
//! flows read it on `EPOLLERR` and hand the guest the matching error
//! (`wire::icmp_error`). The control-message buffer is allocated once, so
//! reading errors doesn't allocate per error.

use crate::conf::Config;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
use std::io::IoSliceMut;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, RawFd};

/// Bytes of an offending datagram we keep: enough for the largest quote
/// an ICMPv6 error can carry (`wire::icmp_error::MAX_ERROR6_LEN`).
pub const MAX_QUOTED: usize = 1280;

/// An ICMP or ICMPv6 error from a socket's error queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// ICMPv6 rather than ICMP.
    pub v6: bool,
    /// ICMP type.
    pub msg_type: u8,
    /// ICMP code.
    pub code: u8,
    /// Type-specific value: the MTU for "fragmentation needed" and Packet
    /// Too Big.
    pub info: u32,
    /// The address that sent the error, when the kernel knows it.
    pub offender: Option<IpAddr>,
    /// Bytes of the offending datagram's payload written to the buffer.
    pub len: usize,
}

/// Ask the kernel to queue ICMP errors on `sock` (of the given family).
///
/// # Errors
/// `setsockopt` failure.
pub fn enable(sock: impl AsFd, v6: bool) -> nix::Result<()> {
    if v6 {
        setsockopt(&sock, sockopt::Ipv6RecvErr, &true)
    } else {
        setsockopt(&sock, sockopt::Ipv4RecvErr, &true)
    }
}

/// Reads error queues into a control-message buffer allocated once.
pub struct ErrQueue {
    cmsg: Vec<u8>,
}

impl Default for ErrQueue {
    fn default() -> Self {
        ErrQueue {
            // One extended error and its offender, of the larger family.
            cmsg: nix::cmsg_space!(libc::sock_extended_err, libc::sockaddr_in6),
        }
    }
}

impl ErrQueue {
    /// Take the next entry from `fd`'s error queue, the start of the
    /// offending payload into `data`. `Ok(None)`: an entry that isn't an
    /// ICMP error (a local one), consumed all the same.
    ///
    /// # Errors
    /// `EAGAIN` once the queue is empty; other `recvmsg` failures.
    pub fn recv(&mut self, fd: RawFd, data: &mut [u8]) -> nix::Result<Option<Report>> {
        let mut iov = [IoSliceMut::new(data)];
        let msg = recvmsg::<()>(
            fd,
            &mut iov,
            Some(&mut self.cmsg),
            MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
        )?;
        let len = msg.bytes;
        // A truncated control message can't be read safely: skip the entry.
        let Ok(cmsgs) = msg.cmsgs() else {
            return Ok(None);
        };
        for c in cmsgs {
            let report = match c {
                ControlMessageOwned::Ipv4RecvErr(ee, off) => {
                    (ee.ee_origin == libc::SO_EE_ORIGIN_ICMP).then(|| Report {
                        v6: false,
                        msg_type: ee.ee_type,
                        code: ee.ee_code,
                        info: ee.ee_info,
                        offender: off
                            .filter(|a| i32::from(a.sin_family) == libc::AF_INET)
                            .map(|a| IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)))),
                        len,
                    })
                }
                ControlMessageOwned::Ipv6RecvErr(ee, off) => {
                    (ee.ee_origin == libc::SO_EE_ORIGIN_ICMP6).then(|| Report {
                        v6: true,
                        msg_type: ee.ee_type,
                        code: ee.ee_code,
                        info: ee.ee_info,
                        offender: off
                            .filter(|a| i32::from(a.sin6_family) == libc::AF_INET6)
                            .map(|a| IpAddr::V6(Ipv6Addr::from(a.sin6_addr.s6_addr))),
                        len,
                    })
                }
                _ => None,
            };
            if report.is_some() {
                return Ok(report);
            }
        }
        Ok(None)
    }
}

/// Whom the guest hears an error from: the address it sent to when the
/// error comes from that peer or from the host itself (`is_peer_or_host`),
/// else the router that sent it.
///
/// `remote` is the destination as the guest sees it. An offender on the
/// host's loopback stands for a mapped destination. The host's own
/// addresses are the guest's by default, and the guest would take an
/// error from its own address for a spoof; with `-a` they are addresses
/// the guest can't reach as such.
pub fn error_source(
    offender: Option<IpAddr>,
    remote: IpAddr,
    is_peer_or_host: impl Fn(IpAddr) -> bool,
) -> IpAddr {
    let router = |o: IpAddr| {
        let plausible = match (o, remote) {
            (IpAddr::V4(a), IpAddr::V4(_)) => !a.is_loopback() && !a.is_unspecified(),
            (IpAddr::V6(a), IpAddr::V6(_)) => {
                !a.is_loopback() && !a.is_unspecified() && a.to_ipv4_mapped().is_none()
            }
            _ => false,
        };
        plausible && !is_peer_or_host(o)
    };
    match offender {
        Some(o) if router(o) => o,
        _ => remote,
    }
}

/// Whether `a` is the host itself as far as the configuration knows: an
/// address of the template interface, or the one the guest was given
/// (the host's, unless `-a`).
pub fn is_host(conf: &Config, a: IpAddr) -> bool {
    match a {
        IpAddr::V4(a) => conf
            .ip4
            .as_ref()
            .is_some_and(|c| c.addr == a || c.host_addrs.iter().any(|h| h.addr == a)),
        IpAddr::V6(a) => conf
            .ip6
            .as_ref()
            .is_some_and(|c| c.addr == a || c.host_addrs.iter().any(|h| h.addr == a)),
    }
}

/// Errors we can't act on still have to leave the socket: a pending one
/// keeps a level-triggered `EPOLLERR` up. Reading `SO_ERROR` clears it.
pub fn clear_pending(sock: impl AsFd) {
    let _ = nix::sys::socket::getsockopt(&sock, sockopt::SocketError);
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::errno::Errno;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn error_source_names_the_peer_or_a_router() {
        let (remote, target) = (ip("192.0.2.1"), ip("127.0.0.1"));
        let peer = |o: IpAddr| o == target || o == ip("192.0.2.2");
        // The peer itself (here behind --map-host-loopback), the host, or
        // nobody said.
        for off in [
            None,
            Some(target),
            Some(ip("127.0.0.5")),
            Some(ip("0.0.0.0")),
            Some(ip("192.0.2.2")),
        ] {
            assert_eq!(error_source(off, remote, peer), remote, "{off:?}");
        }
        // A router on the way.
        let r = ip("198.51.100.7");
        assert_eq!(error_source(Some(r), remote, peer), r);
        // Nothing of the other family, no IPv4-mapped or loopback IPv6.
        let remote6 = ip("2001:db8:1::1");
        for off in [
            ip("198.51.100.7"),
            ip("::ffff:198.51.100.7"),
            ip("::1"),
            ip("::"),
        ] {
            assert_eq!(
                error_source(Some(off), remote6, |_| false),
                remote6,
                "{off}"
            );
        }
        let r6 = ip("2001:db8:5::1");
        assert_eq!(error_source(Some(r6), remote6, |_| false), r6);
    }

    #[test]
    fn the_host_is_its_template_addresses_and_the_guests() {
        let mut c = Config::example();
        let ip4 = c.ip4.as_mut().unwrap();
        ip4.addr = Ipv4Addr::new(10, 0, 0, 2);
        ip4.host_addrs = vec![crate::conf::host::HostAddr {
            addr: Ipv4Addr::new(192, 0, 2, 2),
            prefix_len: 24,
        }];
        assert!(is_host(&c, ip("10.0.0.2")));
        assert!(is_host(&c, ip("192.0.2.2")));
        assert!(!is_host(&c, ip("192.0.2.3")));
        c.ip6 = None;
        assert!(!is_host(&c, ip("2001:db8::2")));
    }

    #[test]
    fn empty_queue_is_eagain() {
        let s = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Inet,
            nix::sys::socket::SockType::Datagram,
            nix::sys::socket::SockFlag::SOCK_NONBLOCK,
            None,
        )
        .unwrap();
        enable(&s, false).unwrap();
        let mut q = ErrQueue::default();
        let mut data = [0u8; 16];
        let e = q
            .recv(std::os::fd::AsRawFd::as_raw_fd(&s), &mut data)
            .unwrap_err();
        assert_eq!(e, Errno::EAGAIN);
    }
}
