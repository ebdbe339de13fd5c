//! UDP translation: one connected host socket per flow, opened by the
//! guest, or by a host peer writing to a forwarded port (`-u`,
//! `Udp::forwarded`).
//!
//! Theory of operation: a datagram from the guest finds (or opens) the
//! flow for its source and destination. The flow's socket is bound to the
//! guest's source port when the host lets us (so the peer sees the same
//! port) and connected to the destination as the host must see it:
//! `--dns-forward` queries go to the `--dns-host` resolver, the gateway
//! address (`--map-host-loopback`) to the host's loopback,
//! `--map-guest-addr` to the host's own address. Being connected, the
//! socket only receives that peer's replies, which are read straight into
//! the guest's queue with the guest-visible addresses restored, one frame
//! per datagram (an empty one included). ICMP errors the host gets for a
//! flow's datagrams come back through the socket's error queue and are
//! relayed to the guest as errors about the datagram it sent
//! (`errqueue`, `wire::icmp_error`).
//!
//! Inbound: a forwarded port's socket (`fwd::listen`, bound to the
//! wildcard or the spec's address, with `IP_PKTINFO`) hands over the
//! first datagram of a sender; `fwd::inbound` says where in the guest it
//! goes, and the flow gets a socket of its own, bound to the address and
//! port the sender wrote to (`SO_REUSEADDR`, beside the listener) and
//! connected to the sender. The kernel prefers the connected socket, so
//! later datagrams take the same zero-copy path as outbound replies, and
//! the guest's answers leave from where the sender expects them.
//!
//! When the guest's queue has no room for another datagram, the socket
//! stops being watched for input and its datagrams wait in the kernel;
//! `resume` watches it again once the queue has drained. The socket is
//! level-triggered, so it would otherwise be reported ready for ever.
//!
//! Flows live in the loop's flow table (`flow::Flows`): the tap side is
//! (guest address:port, destination as the guest sees it), the host side
//! (our socket's address:port, the destination as the host sees it).
//!
//! Limits: UDP's reserve of the flow table and what it can get of the
//! shared pool, each flow closed after `IDLE_TIMEOUT` (for tests:
//! `IDLE_SECS_ENV`) without traffic
//! either way. When UDP has no room (or the descriptors run out), its
//! least recently used flow (a datagram either way is a use) is closed to
//! make room, so UDP can neither take another kind's reserve nor stop
//! opening new flows. The guest's datagrams leave in batches (`batch`).

pub mod batch;
pub mod run;
pub mod spliced;

use crate::conf::Config;
use crate::dgram::{self, DgramFlow, RECV_BURST, Rx, Sockets};
use crate::errqueue;
use crate::event::{EpollRef, EventLoop};
use crate::flow::{self, End, Flow, FlowRef, FlowSide, Flows, Kind, Side, SideRef, Sides};
use crate::fwd::listen::Listener;
use crate::fwd::{self, GuestAddrs, Proto, Refused};
use crate::tap::vnet::TxOffload;
use crate::tap::{MAX_FRAME, TxQueue};
use crate::tcp::spliced::Splicer;
use crate::wire::icmp_error::Quoted;
use crate::wire::{Mac, compose};
use nix::errno::Errno;
use nix::sys::epoll::EpollFlags;
use nix::sys::socket::{
    AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType, SockaddrIn, SockaddrIn6,
    SockaddrStorage, bind, connect, recvmsg, send, setsockopt, socket, sockopt,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// A flow without traffic for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(180);

/// Set to a number of seconds in the environment, it replaces
/// `IDLE_TIMEOUT`: a testing aid, so tests can watch thousands of flows
/// expire without waiting three minutes. Read once, at start-up.
pub const IDLE_SECS_ENV: &str = "PASST_RS_UDP_IDLE_SECS";

/// The idle timeout `IDLE_SECS_ENV` asks for (`value`), if any.
fn idle_timeout_from(value: Option<std::ffi::OsString>) -> Duration {
    crate::conf::secs_from_env(IDLE_SECS_ENV, value).unwrap_or(IDLE_TIMEOUT)
}

/// Why a datagram from the guest was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UdpDrop {
    /// `--no-udp`.
    #[error("UDP disabled")]
    Disabled,
    /// Nothing a host socket may send to for the guest (`fwd::outbound`).
    #[error("destination refused: {0}")]
    Destination(Refused),
    /// No room for a new flow, and none to evict (no reserve, the pool
    /// taken by other kinds).
    #[error("UDP flow table full")]
    TableFull,
    /// The host refused the socket or the send.
    #[error("UDP socket: {0}")]
    Socket(Errno),
}

/// A UDP flow: its sides and its connected host socket.
pub struct UdpFlow {
    sides: Sides,
    sock: OwnedFd,
    last: Instant,
    /// Not watched for input: the guest's queue was full.
    paused: bool,
    /// The route refused a segmented send (`batch`): none are tried again.
    no_gso: std::cell::Cell<bool>,
}

impl UdpFlow {
    /// The flow's sides: the guest's, and our host socket's.
    pub fn sides(&self) -> &Sides {
        &self.sides
    }

    /// The guest's address and port.
    fn guest(&self) -> SocketAddr {
        self.sides.tap().peer
    }

    /// The host peer as the guest sees it.
    fn remote(&self) -> SocketAddr {
        self.sides.tap().ours
    }

    /// The host peer as the host sees it.
    fn target(&self) -> SocketAddr {
        self.sides.host().peer
    }

    /// When traffic last went through the flow.
    pub fn last_activity(&self) -> Instant {
        self.last
    }
}

/// The UDP flow of `r`, if it is one.
fn flow_mut(flows: &mut Flows, r: FlowRef) -> Option<&mut UdpFlow> {
    match flows.get_mut(r)? {
        Flow::Udp(u) => Some(u),
        _ => None,
    }
}

impl DgramFlow for UdpFlow {
    const NAME: &'static str = "UDP flow";
    const KIND: Kind = Kind::Udp;

    fn of(flows: &mut Flows, r: FlowRef) -> Option<&mut Self> {
        flow_mut(flows, r)
    }

    fn of_flow(f: &Flow) -> Option<&Self> {
        match f {
            Flow::Udp(u) => Some(u),
            _ => None,
        }
    }

    fn epoll_ref(&self, r: FlowRef) -> EpollRef {
        epoll_ref(r, self.sides.host_end())
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
        self.guest().ip()
    }

    fn remote_ip(&self) -> IpAddr {
        self.remote().ip()
    }

    fn target_ip(&self) -> IpAddr {
        self.target().ip()
    }

    fn quoted<'a>(&self, payload: &'a [u8]) -> Quoted<'a> {
        Quoted::Udp {
            src_port: self.guest().port(),
            dst_port: self.remote().port(),
            payload,
        }
    }
}

/// What epoll knows a flow's socket by: its host side, `end`.
fn epoll_ref(r: FlowRef, end: End) -> EpollRef {
    EpollRef::Udp(SideRef { flow: r, end })
}

/// UDP translation state beside the flows themselves.
pub struct Udp {
    /// Paused sockets and the error queue's buffer (`dgram`).
    socks: Sockets,
    /// How long a flow lives without traffic: `IDLE_TIMEOUT`, unless
    /// `IDLE_SECS_ENV` says otherwise.
    idle: Duration,
    /// The first datagram of an inbound flow, read before we know its
    /// flow (and so the frame's addresses): later ones arrive on the
    /// flow's own socket and go straight into frames.
    first: Box<[u8]>,
    /// The guest's datagrams of the tap batch being handled, to be sent
    /// together.
    out: batch::Outgoing,
}

fn bind_port(fd: RawFd, v6: bool, port: u16) -> nix::Result<()> {
    if v6 {
        bind(
            fd,
            &SockaddrIn6::from(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0)),
        )
    } else {
        bind(
            fd,
            &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)),
        )
    }
}

/// A non-blocking UDP socket of `v6`'s family, with ICMP errors for what
/// it sends queued (`errqueue`) when `recverr`.
pub(crate) fn udp_socket(v6: bool, recverr: bool) -> Result<OwnedFd, Errno> {
    let family = if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    let sock = socket(family, SockType::Datagram, flags, None)?;
    if recverr {
        errqueue::enable(&sock, v6)?;
    }
    Ok(sock)
}

/// Connect `sock` to `to`.
pub(crate) fn connect_to(sock: &OwnedFd, to: SocketAddr) -> Result<(), Errno> {
    match to {
        SocketAddr::V4(a) => connect(sock.as_raw_fd(), &SockaddrIn::from(a)),
        SocketAddr::V6(a) => connect(sock.as_raw_fd(), &SockaddrIn6::from(a)),
    }
}

fn open_socket(guest_port: u16, target: SocketAddr) -> Result<OwnedFd, Errno> {
    let v6 = target.is_ipv6();
    // ICMP errors for what we send, to relay to the guest.
    let sock = udp_socket(v6, true)?;
    let fd = sock.as_raw_fd();
    // Keep the guest's source port if it's free (and not privileged).
    if bind_port(fd, v6, guest_port).is_err() {
        bind_port(fd, v6, 0)?;
    }
    connect_to(&sock, target)?;
    Ok(sock)
}

/// Receive a datagram from a forwarded port's socket into `buf`: its
/// length, sender, and the local address it was sent to (the socket
/// may be bound to a wildcard; `IP_PKTINFO` tells which address).
/// `None` for a datagram without a usable sender.
pub(crate) fn recv_first(
    fd: RawFd,
    buf: &mut [u8],
) -> Result<Option<(usize, SocketAddr, IpAddr)>, Errno> {
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo);
    let msg = recvmsg::<SockaddrStorage>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT)?;
    let n = msg.bytes;
    let Some(sender) = msg.address.as_ref().and_then(|ss| {
        if let Some(a) = ss.as_sockaddr_in() {
            return Some(SocketAddr::V4((*a).into()));
        }
        ss.as_sockaddr_in6().map(|a| SocketAddr::V6((*a).into()))
    }) else {
        return Ok(None);
    };
    let mut dst = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            match c {
                ControlMessageOwned::Ipv4PacketInfo(i) => {
                    dst = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(i.ipi_addr.s_addr))));
                }
                ControlMessageOwned::Ipv6PacketInfo(i) => {
                    dst = Some(IpAddr::V6(Ipv6Addr::from(i.ipi6_addr.s6_addr)));
                }
                _ => {}
            }
        }
    }
    let dst = dst.unwrap_or(match sender {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    });
    Ok(Some((n, sender, dst)))
}

/// The socket of an inbound flow: bound to the forwarded port beside its
/// listener (`SO_REUSEADDR`, which the listener has too), on the address
/// the sender wrote to, and connected to the sender, so the kernel hands
/// it the sender's later datagrams (a connected socket is the better
/// match) and the guest's replies leave from the address and port the
/// sender expects them from.
pub(crate) fn open_inbound_socket(bound: SocketAddr, sender: SocketAddr) -> Result<OwnedFd, Errno> {
    let sock = udp_socket(sender.is_ipv6(), true)?;
    setsockopt(&sock, sockopt::ReuseAddr, &true)?;
    let fd = sock.as_raw_fd();
    match (bound, sender) {
        (SocketAddr::V4(b), SocketAddr::V4(_)) => bind(fd, &SockaddrIn::from(b))?,
        (SocketAddr::V6(b), SocketAddr::V6(_)) => {
            setsockopt(&sock, sockopt::Ipv6V6Only, &true)?;
            bind(fd, &SockaddrIn6::from(b))?;
        }
        _ => return Err(Errno::EAFNOSUPPORT),
    }
    connect_to(&sock, sender)?;
    Ok(sock)
}

/// Open the flow a host peer starts from `ini` through forwarded port
/// `l`: its tap side as `fwd::inbound` decides, a socket of its own, and
/// the flow in the table.
#[allow(clippy::too_many_arguments)]
fn open_inbound(
    conf: &Config,
    guest: &GuestAddrs,
    l: &Listener,
    dst: IpAddr,
    ev: &EventLoop,
    flows: &mut Flows,
    ini: FlowSide,
    now: Instant,
    idle: Duration,
) -> Result<FlowRef, UdpDrop> {
    let tgt =
        fwd::inbound(conf, guest, &ini, l.to_addr, l.to_port).map_err(UdpDrop::Destination)?;
    let local = SocketAddr::new(dst, l.bound.port());
    let sender = ini.peer;
    install(ev, flows, ini, tgt, End::Initiator, now, idle, || {
        open_inbound_socket(local, sender)
    })
}

/// The steps every new flow takes once its sides are known: room in the
/// table (the least recently used flow makes way when UDP has none, or
/// when the descriptors run out: it is the one least likely to be
/// missed), a socket from `open_sock` on the host side (`host_end`),
/// epoll, the table, and the idle timer.
#[allow(clippy::too_many_arguments)]
fn install(
    ev: &EventLoop,
    flows: &mut Flows,
    ini: FlowSide,
    mut tgt: FlowSide,
    host_end: End,
    now: Instant,
    idle: Duration,
    mut open_sock: impl FnMut() -> Result<OwnedFd, Errno>,
) -> Result<FlowRef, UdpDrop> {
    if !flows.room_for(Kind::Udp) && !dgram::make_room::<UdpFlow>(flows, ev) {
        return Err(UdpDrop::TableFull);
    }
    let mut opened = open_sock();
    if matches!(opened, Err(Errno::EMFILE | Errno::ENFILE))
        && dgram::make_room::<UdpFlow>(flows, ev)
    {
        opened = open_sock();
    }
    let sock = opened.map_err(UdpDrop::Socket)?;
    let nf = flows.begin(Kind::Udp).map_err(|_| UdpDrop::TableFull)?;
    let r = nf.flow_ref();
    ev.add(&sock, epoll_ref(r, host_end), false)
        .map_err(|e| UdpDrop::Socket(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
    if host_end == End::Target {
        // The guest's flow: our socket's address is only known now.
        tgt.ours = flow::local_addr(&sock).unwrap_or(tgt.ours);
    }
    log::debug!(
        "UDP flow {}: {} -> {}, then {} -> {}",
        r.index,
        ini.peer,
        ini.ours,
        tgt.ours,
        tgt.peer
    );
    let flow = UdpFlow {
        sides: Sides::new(ini, tgt),
        sock,
        last: now,
        paused: false,
        no_gso: std::cell::Cell::new(false),
    };
    let r = nf.commit(Flow::Udp(flow)).map_err(|(_, f)| {
        if let Flow::Udp(f) = f {
            let _ = ev.remove(&f.sock);
        }
        UdpDrop::TableFull
    })?;
    flows.schedule(r, now + idle);
    Ok(r)
}

/// Open the flow the guest starts from `ini`: its host side as
/// `fwd::outbound` decides, a socket there, and the flow in the table.
fn open(
    conf: &Config,
    ev: &EventLoop,
    flows: &mut Flows,
    ini: FlowSide,
    now: Instant,
    idle: Duration,
) -> Result<FlowRef, UdpDrop> {
    let tgt = fwd::outbound(conf, Proto::Udp, &ini).map_err(UdpDrop::Destination)?;
    let (port, to) = (ini.peer.port(), tgt.peer);
    install(ev, flows, ini, tgt, End::Target, now, idle, || {
        open_socket(port, to)
    })
}

impl Udp {
    /// State for the UDP flows of `flows`.
    pub fn new(flows: &Flows) -> Self {
        Udp {
            socks: Sockets::new(flows.max_flows(Kind::Udp)),
            idle: idle_timeout_from(std::env::var_os(IDLE_SECS_ENV)),
            first: vec![0u8; 1 << 16].into_boxed_slice(),
            out: batch::Outgoing::default(),
        }
    }

    /// How long a flow lives without traffic.
    pub fn idle(&self) -> Duration {
        self.idle
    }

    /// Send a datagram the guest sent from `guest` to `remote`.
    ///
    /// # Errors
    /// An `UdpDrop` saying why nothing was sent.
    #[allow(clippy::too_many_arguments)]
    pub fn request(
        &mut self,
        conf: &Config,
        ev: &EventLoop,
        flows: &mut Flows,
        guest: SocketAddr,
        remote: SocketAddr,
        payload: &[u8],
        now: Instant,
    ) -> Result<(), UdpDrop> {
        if !conf.services.udp {
            return Err(UdpDrop::Disabled);
        }
        let ini = FlowSide::new(Side::Tap, guest, remote);
        let r = match flows.lookup(Proto::Udp, &ini) {
            Some(s) => s.flow,
            None => open(conf, ev, flows, ini, now, self.idle)?,
        };
        flows.touch(r);
        let Some(flow) = flow_mut(flows, r) else {
            return Err(UdpDrop::TableFull);
        };
        flow.last = now;
        if self.out.queue(r, payload) {
            return Ok(());
        }
        let fd = flow.sock.as_raw_fd();
        match send(fd, payload, MsgFlags::MSG_DONTWAIT) {
            Ok(_) => Ok(()),
            // An ICMP error for an earlier datagram is also reported, once,
            // by the next send, which it fails (ECONNREFUSED, EHOSTUNREACH,
            // EMSGSIZE, ...): this datagram still goes. A real failure
            // fails again.
            Err(e) if e != Errno::EAGAIN => send(fd, payload, MsgFlags::MSG_DONTWAIT)
                .map(|_| ())
                .map_err(UdpDrop::Socket),
            Err(e) => Err(UdpDrop::Socket(e)),
        }
    }

    /// A tap batch read into `buf` is about to be handled: the guest's
    /// datagrams in it wait for [`Udp::flush`] (see `batch`).
    pub fn begin_batch(&mut self, buf: &[u8]) {
        self.out.begin(buf);
    }

    /// Whether waiting datagrams must be flushed before the next frame.
    pub fn batch_full(&self) -> bool {
        self.out.is_full()
    }

    /// Send the guest's waiting datagrams, read into `buf`; `dropped`
    /// hears of each that didn't go.
    pub fn flush(&mut self, buf: &[u8], flows: &Flows, mut dropped: impl FnMut(UdpDrop)) {
        if self.out.is_empty() {
            return;
        }
        self.out.flush(
            buf,
            |r| match flows.get(r) {
                Some(Flow::Udp(f)) => Some((f.sock.as_fd(), &f.no_gso)),
                _ => None,
            },
            |e| dropped(UdpDrop::Socket(e)),
        );
    }

    /// The tap batch is handled: datagrams go at once again.
    pub fn end_batch(&mut self) {
        self.out.end();
    }

    /// Datagrams on forwarded port `l` (`-u`): each opens a flow to the
    /// guest's port, or joins the sender's, and goes to the guest; at
    /// most `RECV_BURST` per event. Senders `splicer` wants (pasta's
    /// host loopback clients) go into the namespace without the tap
    /// instead. `dropped` hears of each one that can't go.
    #[allow(clippy::too_many_arguments)]
    pub fn forwarded(
        &mut self,
        conf: &Config,
        guest: &GuestAddrs,
        l: &Listener,
        ev: &EventLoop,
        flows: &mut Flows,
        splicer: Option<&Splicer>,
        link: compose::Link,
        tx: &mut TxQueue,
        now: Instant,
        mut dropped: impl FnMut(UdpDrop),
    ) {
        let fd = l.sock.as_raw_fd();
        for _ in 0..RECV_BURST {
            if !tx.has_room(MAX_FRAME) {
                // Leave it in the kernel until the guest reads (the
                // listener is level-triggered: polled again next round).
                tx.stalled += 1;
                return;
            }
            let (n, sender, dst) = match recv_first(fd, &mut self.first) {
                Ok(Some(got)) => got,
                Ok(None) => continue,
                Err(Errno::EAGAIN | Errno::EINTR) => return,
                Err(e) => {
                    dropped(UdpDrop::Socket(e));
                    return;
                }
            };
            let ini = FlowSide::new(Side::Host, sender, l.bound);
            let known = flows.lookup(Proto::Udp, &ini).map(|s| s.flow);
            if let Some(sp) = splicer {
                let spliced = match known {
                    Some(r) => flows.get(r).is_some_and(|f| f.kind() == Kind::UdpSplice),
                    None => sp.wants(l, sender),
                };
                if spliced {
                    let data = self.first.get(..n).unwrap_or(&[]);
                    let idle = self.idle;
                    if let Err(e) = spliced::deliver(flows, ev, sp, l, sender, dst, data, idle, now)
                    {
                        dropped(UdpDrop::Socket(e));
                    }
                    continue;
                }
            }
            let r = match known {
                Some(r) => r,
                None => match open_inbound(conf, guest, l, dst, ev, flows, ini, now, self.idle) {
                    Ok(r) => r,
                    Err(e) => {
                        dropped(e);
                        continue;
                    }
                },
            };
            flows.touch(r);
            let Some(flow) = flow_mut(flows, r) else {
                continue;
            };
            flow.last = now;
            let data = self.first.get(..n).unwrap_or(&[]);
            let copy = |p: &mut [u8]| {
                let k = data.len().min(p.len());
                p[..k].copy_from_slice(&data[..k]);
                Some(k)
            };
            push_datagram(tx, link, flow.remote(), flow.guest(), copy);
        }
    }

    /// Events on the socket of flow `r`: datagrams to queue for the
    /// guest, and ICMP errors to relay.
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
        now: Instant,
    ) {
        let link = compose::Link {
            src: Mac(conf.our_mac),
            dst: guest_mac,
        };
        self.socks.event(
            flows,
            r,
            events,
            conf,
            link,
            tx,
            ev,
            |flow: &mut UdpFlow, tx| {
                // A datagram either way is a use.
                flow.last = now;
                receive(flow, link, tx)
            },
        );
    }

    /// The guest's queue has room again: watch paused sockets for input.
    pub fn resume(&mut self, flows: &mut Flows, ev: &EventLoop) {
        self.socks.resume::<UdpFlow>(flows, ev);
    }

    /// Close flow `r` if it has been idle for the idle timeout; otherwise
    /// schedule it for when it will have been.
    pub fn expire(&mut self, flows: &mut Flows, ev: &EventLoop, r: FlowRef, now: Instant) {
        dgram::expire::<UdpFlow>(flows, ev, r, self.idle, now);
    }

    /// The guest went away: its flows are gone.
    pub fn clear(&mut self) {
        self.socks.clear();
    }
}

/// Close a UDP flow taken out of the table.
pub fn close(flow: UdpFlow, ev: &EventLoop) {
    let _ = ev.remove(&flow.sock);
}

/// Queue what `flow`'s socket holds for the guest, as it came, at most
/// `RECV_BURST` datagrams.
fn receive(flow: &UdpFlow, link: compose::Link, tx: &mut TxQueue) -> Rx {
    let fd = flow.sock.as_raw_fd();
    let v6 = flow.guest().is_ipv6();
    let l4 = if v6 {
        compose::L4_OFF_V6
    } else {
        compose::L4_OFF_V4
    };
    let mut run = run::Run::default();
    dgram::receive(tx, |tx, failed| {
        let recv = |p: &mut [u8]| dgram::recv_into(fd, p, failed);
        let queued = push_datagram(tx, link, flow.remote(), flow.guest(), recv)?;
        if queued && tx.uso() {
            run.add(tx, l4, v6);
        }
        Some(queued)
    })
}

/// Queue a datagram for the guest from `src` to `dst`, its payload
/// written in place by `payload`: whether a frame was queued, `None` for
/// addresses of two families. On a tap with offloads the kernel is left
/// the checksum: only the pseudo-header is summed here, not the payload
/// (it trusts the rest on local delivery, and completes it if it ever
/// forwards the datagram).
fn push_datagram(
    tx: &mut TxQueue,
    link: compose::Link,
    src: SocketAddr,
    dst: SocketAddr,
    payload: impl FnOnce(&mut [u8]) -> Option<usize>,
) -> Option<bool> {
    let csum = if tx.offload() {
        compose::Csum::Partial
    } else {
        compose::Csum::Full
    };
    Some(match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => tx.push_offload(MAX_FRAME, |out, off| {
            let n = compose::udp4_csum(out, link, s, d, csum, payload);
            mark_partial(off, csum, compose::L4_OFF_V4, n)
        }),
        (SocketAddr::V6(s), SocketAddr::V6(d)) => tx.push_offload(MAX_FRAME, |out, off| {
            let n = compose::udp6_csum(out, link, s, d, csum, payload);
            mark_partial(off, csum, compose::L4_OFF_V6, n)
        }),
        _ => return None,
    })
}

/// Tell the kernel where a partial UDP checksum is (frame of `n` bytes,
/// UDP header at `l4`); passes `n` on.
fn mark_partial(off: &mut TxOffload, csum: compose::Csum, l4: usize, n: usize) -> usize {
    if n > 0 && csum == compose::Csum::Partial {
        // Headers are a few dozen bytes: always within u16.
        off.csum = Some((l4 as u16, crate::wire::udp::CHECKSUM_OFFSET as u16));
        off.hdr_len = (l4 + crate::wire::udp::HEADER_LEN) as u16;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn no_udp_sends_nothing() {
        let mut c = Config::example();
        c.services.udp = false;
        let ev = EventLoop::new().unwrap();
        let mut flows = Flows::new(64);
        let mut u = Udp::new(&flows);
        let r = u.request(
            &c,
            &ev,
            &mut flows,
            sa("10.0.0.2:4000"),
            sa("192.0.2.9:53"),
            b"q",
            Instant::now(),
        );
        assert_eq!(r, Err(UdpDrop::Disabled));
        c.services.udp = true;
        for dst in [
            "127.0.0.1:53",
            "[::ffff:127.0.0.1]:53",
            "255.255.255.255:67",
            "224.0.0.251:5353",
            "192.0.2.9:0",
            "[ff02::fb]:5353",
        ] {
            let r = u.request(
                &c,
                &ev,
                &mut flows,
                sa("10.0.0.2:4000"),
                sa(dst),
                b"q",
                Instant::now(),
            );
            assert!(matches!(r, Err(UdpDrop::Destination(_))), "{dst}");
        }
        assert!(flows.is_empty());
    }

    #[test]
    fn the_idle_timeout_can_be_shortened_for_tests() {
        let secs = |v: &str| idle_timeout_from(Some(v.into()));
        assert_eq!(idle_timeout_from(None), IDLE_TIMEOUT);
        assert_eq!(secs("3"), Duration::from_secs(3));
        assert_eq!(secs(" 7\n"), Duration::from_secs(7));
        for bad in ["", "0", "-1", "1.5", "soon", "99999999999"] {
            assert_eq!(secs(bad), IDLE_TIMEOUT, "{bad:?}");
        }
    }
}
