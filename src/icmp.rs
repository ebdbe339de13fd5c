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
//! In the loop's flow table (`flow::Flows`) the echo identifier stands
//! for the port: the tap side is (guest address:identifier, pinged
//! address:identifier), the host side (our socket's address:its own
//! identifier, the pinged address as the host sees it:0).
//!
//! Limits: ping's reserve of the flow table and what it can get of the
//! shared pool, each flow closed after `IDLE_TIMEOUT` without requests;
//! when ping has no room (or the descriptors run out), its least recently
//! used flow is closed to make room. For ping
//! sockets to work at all, our group must be in
//! `net.ipv4.ping_group_range` (see the manual).

use crate::conf::Config;
use crate::dgram::{self, DgramFlow, Rx, Sockets};
use crate::errqueue;
use crate::event::{EpollRef, EventLoop};
use crate::flow::{self, End, Flow, FlowRef, FlowSide, Flows, Kind, Side, SideRef, Sides};
use crate::fwd::{self, Proto, Refused};
use crate::tap::{MAX_FRAME, TxQueue};
use crate::wire::icmp_error::Quoted;
use crate::wire::{Mac, compose, icmpv4, icmpv6};
use nix::errno::Errno;
use nix::sys::epoll::EpollFlags;
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn, SockaddrIn6, bind,
    sendto, socket,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// A flow without requests for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

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
    /// No room for a new flow, and none to evict (no reserve, the pool
    /// taken by other kinds).
    #[error("echo flow table full")]
    TableFull,
    /// The host refused the socket or the send.
    #[error("ping socket: {0}")]
    Socket(Errno),
}

/// An echo flow: its sides and its ping socket.
pub struct PingFlow {
    sides: Sides,
    sock: OwnedFd,
    last: Instant,
    /// Not watched for input: the guest's queue was full.
    paused: bool,
}

impl PingFlow {
    /// The flow's sides: the guest's, and our ping socket's.
    pub fn sides(&self) -> &Sides {
        &self.sides
    }

    /// The guest's address, destination of replies.
    fn guest(&self) -> IpAddr {
        self.sides.initiator().peer.ip()
    }

    /// The address the guest pinged, source of replies.
    fn remote(&self) -> IpAddr {
        self.sides.initiator().ours.ip()
    }

    /// The pinged address as the host sees it.
    fn target(&self) -> IpAddr {
        self.sides.target().peer.ip()
    }

    /// The guest's echo identifier.
    fn id(&self) -> u16 {
        self.sides.initiator().peer.port()
    }

    /// When the guest last sent a request.
    pub fn last_activity(&self) -> Instant {
        self.last
    }
}

/// The echo flow of `r`, if it is one.
fn flow_mut(flows: &mut Flows, r: FlowRef) -> Option<&mut PingFlow> {
    match flows.get_mut(r)? {
        Flow::Ping(p) => Some(p),
        _ => None,
    }
}

impl DgramFlow for PingFlow {
    const NAME: &'static str = "ping flow";
    const KIND: Kind = Kind::Ping;

    fn of(flows: &mut Flows, r: FlowRef) -> Option<&mut Self> {
        flow_mut(flows, r)
    }

    fn of_flow(f: &Flow) -> Option<&Self> {
        match f {
            Flow::Ping(p) => Some(p),
            _ => None,
        }
    }

    fn epoll_ref(&self, r: FlowRef) -> EpollRef {
        epoll_ref(r)
    }

    fn sock(&self) -> &OwnedFd {
        &self.sock
    }

    fn is_paused(&self) -> bool {
        self.paused
    }

    fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }

    fn last(&self) -> Instant {
        self.last
    }

    fn guest_ip(&self) -> IpAddr {
        self.guest()
    }

    fn remote_ip(&self) -> IpAddr {
        self.remote()
    }

    fn target_ip(&self) -> IpAddr {
        self.target()
    }

    fn quoted<'a>(&self, message: &'a [u8]) -> Quoted<'a> {
        // The request as the host sent it: ICMP header and data.
        Quoted::Echo {
            ident: self.id(),
            message,
        }
    }
}

/// What epoll knows a flow's socket by: its host side.
fn epoll_ref(r: FlowRef) -> EpollRef {
    EpollRef::Ping(SideRef {
        flow: r,
        end: End::Target,
    })
}

/// Echo translation state beside the flows themselves.
pub struct Pings {
    /// Paused sockets and the error queue's buffer (`dgram`).
    socks: Sockets,
}

/// Where a guest's destination is on the host: the policy all
/// translations share, with no port.
#[cfg(test)]
fn host_side(conf: &Config, remote: IpAddr) -> Result<IpAddr, Refused> {
    let guest = match remote {
        IpAddr::V4(_) => SocketAddr::new(Ipv4Addr::new(10, 0, 0, 2).into(), 1),
        IpAddr::V6(_) => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 1),
    };
    let ini = FlowSide::new(Side::Tap, guest, SocketAddr::new(remote, 1));
    fwd::outbound(conf, Proto::Icmp, &ini).map(|s| s.peer.ip())
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

/// Open the flow the guest starts from `ini`: its host side as
/// `fwd::outbound` decides, a ping socket, and the flow in the table.
fn open(
    conf: &Config,
    ev: &EventLoop,
    flows: &mut Flows,
    ini: FlowSide,
    now: Instant,
) -> Result<FlowRef, IcmpDrop> {
    let mut tgt = fwd::outbound(conf, Proto::Icmp, &ini).map_err(IcmpDrop::Destination)?;
    // The least recently used flow makes way when ping has no room or the
    // descriptors run out: it is the one least likely to be missed.
    if !flows.room_for(Kind::Ping) && !dgram::make_room::<PingFlow>(flows, ev) {
        return Err(IcmpDrop::TableFull);
    }
    let mut opened = open_socket(ini.peer.is_ipv6(), ini.peer.port());
    if matches!(opened, Err(Errno::EMFILE | Errno::ENFILE))
        && dgram::make_room::<PingFlow>(flows, ev)
    {
        opened = open_socket(ini.peer.is_ipv6(), ini.peer.port());
    }
    let sock = opened.map_err(IcmpDrop::Socket)?;
    let nf = flows.begin(Kind::Ping).map_err(|_| IcmpDrop::TableFull)?;
    let r = nf.flow_ref();
    ev.add(&sock, epoll_ref(r), false)
        .map_err(|e| IcmpDrop::Socket(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
    tgt.ours = flow::local_addr(&sock).unwrap_or(tgt.ours);
    log::debug!(
        "ping flow {}: {} -> {}, id {}",
        r.index,
        ini.peer.ip(),
        ini.ours.ip(),
        ini.peer.port()
    );
    let flow = PingFlow {
        sides: Sides::new(ini, tgt),
        sock,
        last: now,
        paused: false,
    };
    let r = nf.commit(Flow::Ping(flow)).map_err(|(_, f)| {
        if let Flow::Ping(f) = f {
            let _ = ev.remove(&f.sock);
        }
        IcmpDrop::TableFull
    })?;
    flows.schedule(r, now + IDLE_TIMEOUT);
    Ok(r)
}

impl Pings {
    /// State for the echo flows of `flows`.
    pub fn new(flows: &Flows) -> Self {
        Pings {
            socks: Sockets::new(flows.max_flows(Kind::Ping)),
        }
    }

    /// Forward an echo request the guest sent from `guest` to `remote`
    /// (`msg` is the ICMP or ICMPv6 message).
    ///
    /// # Errors
    /// An `IcmpDrop` saying why nothing was sent.
    #[allow(clippy::too_many_arguments)]
    pub fn request(
        &mut self,
        conf: &Config,
        ev: &EventLoop,
        flows: &mut Flows,
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
        let ini = FlowSide::new(
            Side::Tap,
            SocketAddr::new(guest, id),
            SocketAddr::new(remote, id),
        );
        let r = match flows.lookup(Proto::Icmp, &ini) {
            Some(s) => s.flow,
            None => open(conf, ev, flows, ini, now)?,
        };
        flows.touch(r);
        let Some(flow) = flow_mut(flows, r) else {
            return Err(IcmpDrop::TableFull);
        };
        flow.last = now;
        let target = flow.target();
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

    /// Events on the socket of flow `r`: replies to queue for the guest,
    /// and ICMP errors to relay.
    #[allow(clippy::too_many_arguments)]
    pub fn event(
        &mut self,
        flows: &mut Flows,
        r: SideRef,
        events: EpollFlags,
        conf: &Config,
        guest_mac: Mac,
        tx: &mut TxQueue,
        ev: &EventLoop,
    ) {
        let link = compose::Link {
            src: Mac(conf.our_mac),
            dst: guest_mac,
        };
        // Replies don't count as use for the idle timeout: only requests.
        self.socks.event(
            flows,
            r,
            events,
            conf,
            link,
            tx,
            ev,
            |flow: &mut PingFlow, tx| receive(flow, link, tx),
        );
    }

    /// The guest's queue has room again: watch paused sockets for input.
    pub fn resume(&mut self, flows: &mut Flows, ev: &EventLoop) {
        self.socks.resume::<PingFlow>(flows, ev);
    }

    /// Close flow `r` if it has had no request for `IDLE_TIMEOUT`;
    /// otherwise schedule it for when it will have had none for that long.
    pub fn expire(&mut self, flows: &mut Flows, ev: &EventLoop, r: FlowRef, now: Instant) {
        dgram::expire::<PingFlow>(flows, ev, r, IDLE_TIMEOUT, now);
    }

    /// The guest went away: its flows are gone.
    pub fn clear(&mut self) {
        self.socks.clear();
    }
}

/// Close an echo flow taken out of the table.
pub fn close(flow: PingFlow, ev: &EventLoop) {
    let _ = ev.remove(&flow.sock);
}

/// Queue the replies `flow`'s socket holds for the guest, at most
/// `RECV_BURST` of them.
fn receive(flow: &PingFlow, link: compose::Link, tx: &mut TxQueue) -> Rx {
    let fd = flow.sock.as_raw_fd();
    let id = flow.id();
    dgram::receive(tx, |tx, failed| {
        // Each reply is received in place, the guest's identifier put
        // back (ICMP and ICMPv6 echo both have it at bytes 4-5).
        let recv = |m: &mut [u8]| {
            let n = dgram::recv_into(fd, m, failed)?;
            if let Some(msg) = m.get_mut(..n)
                && let Ok(mut p) = icmpv4::Packet::new_checked(msg)
            {
                p.set_echo_ident(id);
            }
            Some(n)
        };
        Some(match (flow.remote(), flow.guest()) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                tx.push_with(MAX_FRAME, |out| compose::icmp4(out, link, src, dst, recv))
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                tx.push_with(MAX_FRAME, |out| compose::icmp6(out, link, src, dst, recv))
            }
            _ => return None,
        })
    })
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
        let mut flows = Flows::new(64);
        let mut p = Pings::new(&flows);
        let g = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let r = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9));
        let now = Instant::now();
        assert_eq!(
            p.request(&c, &ev, &mut flows, g, r, &[8, 0, 0], now),
            Err(IcmpDrop::Malformed)
        );
        let mut reply = [0u8, 0, 0, 0, 0, 1, 0, 1];
        icmpv4::Packet::new_unchecked(&mut reply[..]).fill_checksum();
        assert_eq!(
            p.request(&c, &ev, &mut flows, g, r, &reply, now),
            Err(IcmpDrop::NotEcho)
        );
        let mut bad = [8u8, 0, 0, 0, 0, 1, 0, 1];
        icmpv4::Packet::new_unchecked(&mut bad[..]).fill_checksum();
        bad[7] ^= 1;
        assert_eq!(
            p.request(&c, &ev, &mut flows, g, r, &bad, now),
            Err(IcmpDrop::Malformed)
        );
        let mut off = c.clone();
        off.services.icmp = false;
        assert_eq!(
            p.request(&off, &ev, &mut flows, g, r, &bad, now),
            Err(IcmpDrop::Disabled)
        );
        assert!(flows.is_empty());
    }
}
