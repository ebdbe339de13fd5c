//! ICMP and ICMPv6 echo ("ping") translation through unprivileged ping
//! sockets (`SOCK_DGRAM` with `IPPROTO_ICMP`/`IPPROTO_ICMPV6`).
//!
//! Theory of operation: each (guest source, destination, echo identifier)
//! gets its own ping socket, bound to the guest's identifier when the
//! kernel lets us (so it shows up unchanged on the wire) and to any
//! identifier otherwise. The kernel rewrites the identifier and checksum
//! of what we send and hands back only replies for that socket, so a
//! reply is mapped back to the guest by the socket it arrives on: we put
//! the guest's identifier back, and the destination it asked for as the
//! source. Replies are received straight into the guest's output queue;
//! errors for our requests (host or network unreachable, time exceeded)
//! come through the socket's error queue and reach the guest as errors
//! quoting its own request. As with UDP, a socket is paused while the
//! guest's queue is full.
//!
//! Limits: at most `MAX_FLOWS` flows, each closed after `IDLE_TIMEOUT`
//! without requests; a request that needs a new flow when the table is
//! full is dropped and counted. For ping sockets to work at all, our group
//! must be in `net.ipv4.ping_group_range` (see the manual).

use crate::conf::Config;
use crate::errqueue::{self, ErrQueue};
use crate::event::{EpollRef, EventLoop};
use crate::flow::{FlowRef, FlowTable, SocketFlow};
use crate::fwd::{self, Proto, Refused};
use crate::tap::{MAX_FRAME, TxQueue};
use crate::wire::icmp_error::{self, Error4, Error6, MAX_ERROR_FRAME, Quote, Quoted};
use crate::wire::{Mac, compose, icmpv4, icmpv6};
use nix::errno::Errno;
use nix::sys::epoll::EpollFlags;
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn, SockaddrIn6, bind, recv,
    sendto, socket,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Most echo flows at once.
pub const MAX_FLOWS: usize = 256;
/// A flow without requests for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most replies read from one socket per event (see `udp::RECV_BURST`).
pub const RECV_BURST: usize = 64;

/// Why an echo request from the guest was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IcmpDrop {
    /// Truncated, bad checksum or non-zero code.
    #[error("malformed echo request")]
    Malformed,
    /// Not an echo request: other ICMP messages aren't forwarded.
    #[error("not an echo request")]
    NotEcho,
    /// `--no-icmp`.
    #[error("ICMP disabled")]
    Disabled,
    /// Nothing a host socket may send to for the guest (`fwd::outbound`).
    #[error("destination refused: {0}")]
    Destination(Refused),
    /// Every flow slot is taken.
    #[error("echo flow table full")]
    TableFull,
    /// The host refused the socket or the send.
    #[error("ping socket: {0}")]
    Socket(Errno),
}

/// What identifies an echo flow: guest address, pinged address, identifier.
type Key = (IpAddr, IpAddr, u16);

struct Flow {
    sock: OwnedFd,
    /// What epoll knows the socket by.
    r: FlowRef,
    /// The guest's address, destination of replies.
    guest: IpAddr,
    /// The address the guest pinged, source of replies.
    remote: IpAddr,
    /// The pinged address as the host sees it.
    target: IpAddr,
    /// The guest's echo identifier.
    id: u16,
    last: Instant,
    /// Not watched for input: the guest's queue was full.
    paused: bool,
}

impl SocketFlow for Flow {
    fn socket(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.sock)
    }
    fn last_activity(&self) -> Instant {
        self.last
    }
}

/// The echo flows.
pub struct Pings {
    flows: FlowTable<Key, Flow>,
    /// Some flow may be paused: `resume` has work to do.
    any_paused: bool,
    errq: ErrQueue,
}

impl Default for Pings {
    fn default() -> Self {
        Pings {
            flows: FlowTable::new(MAX_FLOWS),
            any_paused: false,
            errq: ErrQueue::default(),
        }
    }
}

/// Where a guest's destination is on the host: the policy all
/// translations share, with no port.
fn host_side(conf: &Config, remote: IpAddr) -> Result<IpAddr, Refused> {
    fwd::outbound(conf, Proto::Icmp, std::net::SocketAddr::new(remote, 0)).map(|a| a.ip())
}

fn open_socket(v6: bool, id: u16) -> Result<OwnedFd, Errno> {
    let (family, proto) = if v6 {
        (AddressFamily::Inet6, SockProtocol::IcmpV6)
    } else {
        (AddressFamily::Inet, SockProtocol::Icmp)
    };
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    let sock = socket(family, SockType::Datagram, flags, proto)?;
    // ICMP errors for what we send, to relay to the guest.
    errqueue::enable(&sock, v6)?;
    // The "port" of a ping socket is its echo identifier: keep the guest's
    // if nobody else has it, else let the kernel pick one.
    for port in [id, 0] {
        let r = if v6 {
            bind(
                sock.as_raw_fd(),
                &SockaddrIn6::from(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0)),
            )
        } else {
            bind(
                sock.as_raw_fd(),
                &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)),
            )
        };
        if r.is_ok() {
            return Ok(sock);
        }
    }
    Err(Errno::EADDRINUSE)
}

impl Pings {
    /// Forward an echo request the guest sent from `guest` to `remote`
    /// (`msg` is the ICMP or ICMPv6 message).
    ///
    /// # Errors
    /// An `IcmpDrop` saying why nothing was sent.
    pub fn request(
        &mut self,
        conf: &Config,
        ev: &EventLoop,
        guest: IpAddr,
        remote: IpAddr,
        msg: &[u8],
        now: Instant,
    ) -> Result<(), IcmpDrop> {
        if !conf.services.icmp {
            return Err(IcmpDrop::Disabled);
        }
        let id = match (guest, remote) {
            (IpAddr::V4(_), IpAddr::V4(_)) => {
                let p = icmpv4::Packet::new_checked(msg).map_err(|_| IcmpDrop::Malformed)?;
                if p.msg_type() != icmpv4::ECHO_REQUEST {
                    return Err(IcmpDrop::NotEcho);
                }
                if p.code() != 0 || !p.verify_checksum() {
                    return Err(IcmpDrop::Malformed);
                }
                p.echo_ident()
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                let p = icmpv6::Packet::new_checked(msg).map_err(|_| IcmpDrop::Malformed)?;
                if p.msg_type() != icmpv6::Message::EchoRequest {
                    return Err(IcmpDrop::NotEcho);
                }
                if p.code() != 0 || !p.verify_checksum(src, dst) {
                    return Err(IcmpDrop::Malformed);
                }
                p.echo_ident_seq().ok_or(IcmpDrop::Malformed)?.0
            }
            _ => return Err(IcmpDrop::Malformed),
        };
        let target = host_side(conf, remote).map_err(IcmpDrop::Destination)?;
        let key = (guest, remote, id);
        let idx = match self.flows.lookup(&key) {
            Some(i) => i,
            None => self.open(ev, key, target, now)?,
        };
        let Some(flow) = self.flows.get_mut(idx) else {
            return Err(IcmpDrop::TableFull);
        };
        flow.last = now;
        let fd = flow.sock.as_raw_fd();
        let send = || match target {
            IpAddr::V4(a) => sendto(
                fd,
                msg,
                &SockaddrIn::from(SocketAddrV4::new(a, 0)),
                MsgFlags::empty(),
            ),
            IpAddr::V6(a) => sendto(
                fd,
                msg,
                &SockaddrIn6::from(SocketAddrV6::new(a, 0, 0, 0)),
                MsgFlags::empty(),
            ),
        };
        // An ICMP error for an earlier request is also reported, once, by
        // the next send, which it fails: this request still goes.
        send()
            .or_else(|_| send())
            .map(|_| ())
            .map_err(IcmpDrop::Socket)
    }

    fn open(
        &mut self,
        ev: &EventLoop,
        key: Key,
        target: IpAddr,
        now: Instant,
    ) -> Result<u32, IcmpDrop> {
        let (guest, remote, id) = key;
        let idx = self.flows.free_slot().ok_or(IcmpDrop::TableFull)?;
        let sock = open_socket(remote.is_ipv6(), id).map_err(IcmpDrop::Socket)?;
        ev.add(&sock, EpollRef::Ping(idx), false)
            .map_err(|e| IcmpDrop::Socket(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
        log::debug!("ping flow {}: {guest} -> {remote}, id {id}", idx.index);
        let flow = Flow {
            sock,
            r: idx,
            guest,
            remote,
            target,
            id,
            last: now,
            paused: false,
        };
        self.flows
            .insert(key, flow)
            .map_err(|_| IcmpDrop::TableFull)
    }

    /// Events on the socket of flow `r`: replies to queue for the guest,
    /// and ICMP errors to relay.
    pub fn event(
        &mut self,
        r: FlowRef,
        events: EpollFlags,
        conf: &Config,
        guest_mac: Mac,
        tx: &mut TxQueue,
        ev: &EventLoop,
    ) {
        let Some(flow) = self.flows.resolve(r).and_then(|i| self.flows.get_mut(i)) else {
            return;
        };
        let link = compose::Link {
            src: Mac(conf.our_mac),
            dst: guest_mac,
        };
        let mut failed = events.contains(EpollFlags::EPOLLERR);
        if events.contains(EpollFlags::EPOLLIN) {
            let rx = receive(flow, link, tx);
            failed |= rx.error;
            if rx.full {
                // Leave the replies in the kernel until the guest reads.
                tx.stalled += 1;
                match ev.watch_input(&flow.sock, EpollRef::Ping(flow.r), false) {
                    Ok(()) => {
                        flow.paused = true;
                        self.any_paused = true;
                    }
                    Err(e) => log::warn!("ping flow {}: can't pause: {e}", flow.r.index),
                }
            }
        }
        if failed {
            relay_errors(flow, &mut self.errq, conf, link, tx);
        }
    }

    /// The guest's queue has room again: watch paused sockets for input.
    pub fn resume(&mut self, ev: &EventLoop) {
        if !self.any_paused {
            return;
        }
        self.any_paused = false;
        for flow in self.flows.iter_mut().filter(|f| f.paused) {
            match ev.watch_input(&flow.sock, EpollRef::Ping(flow.r), true) {
                Ok(()) => flow.paused = false,
                Err(e) => {
                    log::warn!("ping flow {}: can't resume: {e}", flow.r.index);
                    self.any_paused = true;
                }
            }
        }
    }

    /// Close flows idle for `IDLE_TIMEOUT`; returns when to look again.
    pub fn expire(&mut self, ev: &EventLoop, now: Instant) -> Option<Instant> {
        self.flows.expire(ev, now, IDLE_TIMEOUT)
    }

    /// Close every flow (the guest went away).
    pub fn clear(&mut self, ev: &EventLoop) {
        self.flows.close_all(ev);
        self.any_paused = false;
    }
}

/// How a round of receiving ended.
#[derive(Debug, Default)]
struct Rx {
    /// The guest's queue had no room for another reply.
    full: bool,
    /// A pending socket error came up: the error queue has news.
    error: bool,
}

/// Queue the replies `flow`'s socket holds for the guest, at most
/// `RECV_BURST` of them.
fn receive(flow: &Flow, link: compose::Link, tx: &mut TxQueue) -> Rx {
    let fd = flow.sock.as_raw_fd();
    let id = flow.id;
    let mut rx = Rx::default();
    for _ in 0..RECV_BURST {
        if !tx.has_room(MAX_FRAME) {
            rx.full = true;
            break;
        }
        let mut failed = None;
        // Each reply is received in place, the guest's identifier put
        // back (ICMP and ICMPv6 echo both have it at bytes 4-5).
        let recv_into = |m: &mut [u8]| match recv(fd, m, MsgFlags::MSG_DONTWAIT) {
            Ok(n) => {
                if let Some(msg) = m.get_mut(..n)
                    && let Ok(mut p) = icmpv4::Packet::new_checked(msg)
                {
                    p.set_echo_ident(id);
                }
                Some(n)
            }
            Err(e) => {
                failed = Some(e);
                None
            }
        };
        let queued = match (flow.remote, flow.guest) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => tx.push_with(MAX_FRAME, |out| {
                compose::icmp4(out, link, src, dst, recv_into)
            }),
            (IpAddr::V6(src), IpAddr::V6(dst)) => tx.push_with(MAX_FRAME, |out| {
                compose::icmp6(out, link, src, dst, recv_into)
            }),
            _ => break,
        };
        match failed {
            // Dry until the next event.
            Some(Errno::EAGAIN) => break,
            Some(Errno::EINTR) => {}
            // A pending socket error: replies may still follow.
            Some(_) => rx.error = true,
            // Nothing was read (`has_room` makes this unexpected).
            None if !queued => break,
            None => {}
        }
    }
    rx
}

/// Turn the ICMP errors queued on `flow`'s socket into errors towards the
/// guest about the echo requests it sent, at most `RECV_BURST` of them.
/// An error that doesn't fit in the guest's queue is dropped and counted
/// there.
fn relay_errors(
    flow: &Flow,
    errq: &mut ErrQueue,
    conf: &Config,
    link: compose::Link,
    tx: &mut TxQueue,
) {
    let fd = flow.sock.as_raw_fd();
    let mut data = [0u8; errqueue::MAX_QUOTED];
    for _ in 0..RECV_BURST {
        let report = match errq.recv(fd, &mut data) {
            Ok(Some(r)) => r,
            // Not from ICMP (a local error): nothing to tell the guest.
            Ok(None) => continue,
            Err(_) => break,
        };
        // The request as the host sent it: ICMP header and data.
        let message = data.get(..report.len).unwrap_or(&[]);
        let from = errqueue::error_source(report.offender, flow.remote, |o| {
            o == flow.target || o == flow.guest || errqueue::is_host(conf, o)
        });
        log::debug!(
            "ping flow {}: ICMP{} type {} code {} from {from}",
            flow.r.index,
            if report.v6 { "v6" } else { "" },
            report.msg_type,
            report.code
        );
        let l4 = Quoted::Echo {
            ident: flow.id,
            message,
        };
        match (from, flow.guest, flow.remote, report.v6) {
            (IpAddr::V4(from), IpAddr::V4(g), IpAddr::V4(r), false) => {
                let Some(err) = Error4::from_icmp(report.msg_type, report.code, report.info) else {
                    continue;
                };
                let quote = Quote { src: g, dst: r, l4 };
                tx.push_with(MAX_ERROR_FRAME, |out| {
                    icmp_error::icmp4_error(out, link, from, g, err, &quote)
                });
            }
            (IpAddr::V6(from), IpAddr::V6(g), IpAddr::V6(r), true) => {
                let Some(err) = Error6::from_icmp6(report.msg_type, report.code, report.info)
                else {
                    continue;
                };
                let quote = Quote { src: g, dst: r, l4 };
                tx.push_with(MAX_ERROR_FRAME, |out| {
                    icmp_error::icmp6_error(out, link, from, g, err, &quote)
                });
            }
            _ => {}
        }
    }
    errqueue::clear_pending(&flow.sock);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_addresses_go_to_the_host() {
        let mut c = Config::example();
        if let Some(ip4) = c.ip4.as_mut() {
            ip4.map_host_loopback = Some(Ipv4Addr::new(192, 0, 2, 1));
            ip4.map_guest_addr = Some(Ipv4Addr::new(169, 254, 1, 2));
        }
        let v4 = |a: [u8; 4]| IpAddr::V4(Ipv4Addr::from(a));
        assert_eq!(host_side(&c, v4([192, 0, 2, 1])), Ok(v4([127, 0, 0, 1])));
        assert_eq!(host_side(&c, v4([169, 254, 1, 2])), Ok(v4([10, 0, 0, 2])));
        assert_eq!(
            host_side(&c, v4([198, 51, 100, 1])),
            Ok(v4([198, 51, 100, 1]))
        );
        assert_eq!(host_side(&c, v4([127, 0, 0, 1])), Err(Refused::Loopback));
    }

    #[test]
    fn bad_requests_are_dropped_before_any_socket() {
        let c = Config::example();
        let ev = EventLoop::new().unwrap();
        let mut p = Pings::default();
        let g = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let r = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9));
        let now = Instant::now();
        assert_eq!(
            p.request(&c, &ev, g, r, &[8, 0, 0], now),
            Err(IcmpDrop::Malformed)
        );
        let mut reply = [0u8, 0, 0, 0, 0, 1, 0, 1];
        icmpv4::Packet::new_unchecked(&mut reply[..]).fill_checksum();
        assert_eq!(
            p.request(&c, &ev, g, r, &reply, now),
            Err(IcmpDrop::NotEcho)
        );
        let mut bad = [8u8, 0, 0, 0, 0, 1, 0, 1];
        icmpv4::Packet::new_unchecked(&mut bad[..]).fill_checksum();
        bad[7] ^= 1;
        assert_eq!(
            p.request(&c, &ev, g, r, &bad, now),
            Err(IcmpDrop::Malformed)
        );
        let mut off = c.clone();
        off.services.icmp = false;
        assert_eq!(
            p.request(&off, &ev, g, r, &bad, now),
            Err(IcmpDrop::Disabled)
        );
        assert!(p.flows.is_empty());
    }
}
