//! UDP translation, guest to host: one connected host socket per flow.
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
//! opening new flows. Still to come: forwarding host ports to the
//! guest (`-u`), and batching datagrams with `recvmmsg`/`sendmmsg`.

use crate::conf::Config;
use crate::dgram::{self, DgramFlow, Rx, Sockets};
use crate::errqueue;
use crate::event::{EpollRef, EventLoop};
use crate::flow::{self, End, Flow, FlowRef, FlowSide, Flows, Kind, Side, SideRef, Sides};
use crate::fwd::{self, Proto, Refused};
use crate::tap::{MAX_FRAME, TxQueue};
use crate::wire::icmp_error::Quoted;
use crate::wire::{Mac, compose};
use nix::errno::Errno;
use nix::sys::epoll::EpollFlags;
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockType, SockaddrIn, SockaddrIn6, bind, connect, send,
    socket,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// A flow without traffic for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(180);

/// Set to a number of seconds in the environment, it replaces
/// `IDLE_TIMEOUT`: a testing aid, so tests can watch thousands of flows
/// expire without waiting three minutes. Read once, at start-up.
pub const IDLE_SECS_ENV: &str = "PASST_RS_UDP_IDLE_SECS";

/// The idle timeout `IDLE_SECS_ENV` asks for, if it holds a whole number
/// of seconds above zero; anything else is ignored, with a warning.
fn idle_timeout_from(value: Option<std::ffi::OsString>) -> Duration {
    let Some(v) = value else {
        return IDLE_TIMEOUT;
    };
    match v.to_str().and_then(|s| s.trim().parse::<u64>().ok()) {
        Some(secs) if secs > 0 => Duration::from_secs(secs),
        _ => {
            log::warn!("{IDLE_SECS_ENV}={v:?}: not a number of seconds, using {IDLE_TIMEOUT:?}");
            IDLE_TIMEOUT
        }
    }
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
}

impl UdpFlow {
    /// The flow's sides: the guest's, and our host socket's.
    pub fn sides(&self) -> &Sides {
        &self.sides
    }

    /// The guest's address and port.
    fn guest(&self) -> SocketAddr {
        self.sides.initiator().peer
    }

    /// The destination as the guest sees it.
    fn remote(&self) -> SocketAddr {
        self.sides.initiator().ours
    }

    /// The destination as the host sees it.
    fn target(&self) -> SocketAddr {
        self.sides.target().peer
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

    fn of(flows: &mut Flows, r: FlowRef) -> Option<&mut Self> {
        flow_mut(flows, r)
    }

    fn of_flow(f: &Flow) -> Option<&Self> {
        match f {
            Flow::Udp(u) => Some(u),
            _ => None,
        }
    }

    fn epoll_ref(r: FlowRef) -> EpollRef {
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

/// What epoll knows a flow's socket by: its host side.
fn epoll_ref(r: FlowRef) -> EpollRef {
    EpollRef::Udp(SideRef {
        flow: r,
        end: End::Target,
    })
}

/// UDP translation state beside the flows themselves.
pub struct Udp {
    /// Paused sockets and the error queue's buffer (`dgram`).
    socks: Sockets,
    /// How long a flow lives without traffic: `IDLE_TIMEOUT`, unless
    /// `IDLE_SECS_ENV` says otherwise.
    idle: Duration,
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

fn open_socket(guest_port: u16, target: SocketAddr) -> Result<OwnedFd, Errno> {
    let v6 = target.is_ipv6();
    let family = if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    let sock = socket(family, SockType::Datagram, flags, None)?;
    // ICMP errors for what we send, to relay to the guest.
    errqueue::enable(&sock, v6)?;
    let fd = sock.as_raw_fd();
    // Keep the guest's source port if it's free (and not privileged).
    if bind_port(fd, v6, guest_port).is_err() {
        bind_port(fd, v6, 0)?;
    }
    match target {
        SocketAddr::V4(a) => connect(fd, &SockaddrIn::from(a))?,
        SocketAddr::V6(a) => connect(fd, &SockaddrIn6::from(a))?,
    }
    Ok(sock)
}

/// Close the least recently used UDP flow to make room for a new one;
/// false if there is none.
fn make_room(flows: &mut Flows, ev: &EventLoop) -> bool {
    match flows.evict(Kind::Udp) {
        Some((r, Flow::Udp(f))) => {
            log::debug!(
                "UDP flow {}: {} -> {} evicted (least recently used)",
                r.index,
                f.guest(),
                f.remote()
            );
            close(f, ev);
            true
        }
        // Only UDP flows are in the UDP list; anything else closes on drop.
        Some(_) => true,
        None => false,
    }
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
    let mut tgt = fwd::outbound(conf, Proto::Udp, &ini).map_err(UdpDrop::Destination)?;
    // The least recently used flow makes way when UDP has no room or the
    // descriptors run out: it is the one least likely to be missed.
    if !flows.room_for(Kind::Udp) && !make_room(flows, ev) {
        return Err(UdpDrop::TableFull);
    }
    let mut opened = open_socket(ini.peer.port(), tgt.peer);
    if matches!(opened, Err(Errno::EMFILE | Errno::ENFILE)) && make_room(flows, ev) {
        opened = open_socket(ini.peer.port(), tgt.peer);
    }
    let sock = opened.map_err(UdpDrop::Socket)?;
    let nf = flows.begin(Kind::Udp).map_err(|_| UdpDrop::TableFull)?;
    let r = nf.flow_ref();
    ev.add(&sock, epoll_ref(r), false)
        .map_err(|e| UdpDrop::Socket(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
    tgt.ours = flow::local_addr(&sock).unwrap_or(tgt.ours);
    log::debug!(
        "UDP flow {}: {} -> {} (host: {} -> {})",
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

impl Udp {
    /// State for the UDP flows of `flows`.
    pub fn new(flows: &Flows) -> Self {
        Udp {
            socks: Sockets::new(flows.max_flows(Kind::Udp)),
            idle: idle_timeout_from(std::env::var_os(IDLE_SECS_ENV)),
        }
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
        let Some(due) = flow_mut(flows, r).map(|f| f.last + self.idle) else {
            return;
        };
        if due > now {
            // Traffic since the timer was armed: each use only updates
            // `last`, and the timer catches up here.
            flows.rearm(r, due, now);
            return;
        }
        if let Some(Flow::Udp(f)) = flows.remove(r) {
            log::debug!(
                "UDP flow {}: {} -> {} closed (idle)",
                r.index,
                f.guest(),
                f.remote()
            );
            let _ = ev.remove(&f.sock);
        }
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
    dgram::receive(tx, |tx, failed| {
        let recv = |p: &mut [u8]| dgram::recv_into(fd, p, failed);
        Some(match (flow.remote(), flow.guest()) {
            (SocketAddr::V4(src), SocketAddr::V4(dst)) => {
                tx.push_with(MAX_FRAME, |out| compose::udp4(out, link, src, dst, recv))
            }
            (SocketAddr::V6(src), SocketAddr::V6(dst)) => {
                tx.push_with(MAX_FRAME, |out| compose::udp6(out, link, src, dst, recv))
            }
            _ => return None,
        })
    })
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
        for bad in ["", "0", "-1", "1.5", "soon"] {
            assert_eq!(secs(bad), IDLE_TIMEOUT, "{bad:?}");
        }
    }
}
