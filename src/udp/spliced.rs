//! UDP between pasta's namespace and the host without the tap (`-U`):
//! a datagram to a forwarded port on the namespace's loopback opens a
//! flow with two sockets, one in the namespace connected to the sender
//! and bound where it wrote to (beside the listener, as for inbound flows
//! through the tap), one on the host connected to the same port on the
//! host's loopback (or the spec's address). Datagrams are copied between
//! them as they come, each whole, at most `RECV_BURST` per event; the
//! sockets are level-triggered, so what a burst leaves is read next
//! round. Nothing is queued in user space: a datagram the other socket
//! can't take now is dropped, as the kernel would drop it on a full
//! buffer.
//!
//! Flows are `Kind::UdpSplice`, two descriptors each, within their own
//! reserve; the least recently used makes way for a new one, and one
//! without traffic for the UDP idle timeout is closed.

use crate::dgram::RECV_BURST;
use crate::event::{EpollRef, EventLoop};
use crate::flow::{End, Flow, FlowRef, FlowSide, Flows, Kind, Side, SideRef, Sides};
use crate::fwd::Proto;
use crate::fwd::listen::Listener;
use crate::tcp::spliced::Splicer;
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, recv, send};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// A UDP flow between the namespace and the host: its sides and its two
/// sockets (the namespace's first).
pub struct UdpSpliceFlow {
    sides: Sides,
    socks: [OwnedFd; 2],
    last: Instant,
}

impl UdpSpliceFlow {
    /// The flow's sides: the namespace client's, then the host's.
    pub fn sides(&self) -> &Sides {
        &self.sides
    }
}

fn flow_mut(flows: &mut Flows, r: FlowRef) -> Option<&mut UdpSpliceFlow> {
    match flows.get_mut(r)? {
        Flow::UdpSplice(u) => Some(u),
        _ => None,
    }
}

fn end_index(end: End) -> usize {
    match end {
        End::Initiator => 0,
        End::Target => 1,
    }
}

/// A UDP socket on the host connected to `to`.
fn connected(to: SocketAddr) -> Result<OwnedFd, Errno> {
    let sock = super::udp_socket(to.is_ipv6(), false)?;
    super::connect_to(&sock, to)?;
    Ok(sock)
}

/// Datagrams on `-U` port `l` in the namespace: each sender gets a flow
/// to the host's port, and its datagram goes there.
#[allow(clippy::too_many_arguments)]
pub fn forwarded(
    flows: &mut Flows,
    ev: &EventLoop,
    sp: &mut Splicer,
    l: &Listener,
    idle: Duration,
    now: Instant,
) {
    let fd = l.sock.as_raw_fd();
    for _ in 0..RECV_BURST {
        let (n, sender, dst) = match super::recv_first(fd, &mut sp.buf) {
            Ok(Some(got)) => got,
            Ok(None) => continue,
            Err(_) => return,
        };
        let ini = FlowSide::new(Side::Ns, sender, l.bound);
        let r = match flows.lookup(Proto::Udp, &ini) {
            Some(s) => s.flow,
            None => match open(flows, ev, sp, l, ini, dst, idle, now) {
                Ok(r) => r,
                Err(e) => {
                    log::debug!("UDP splice {sender} -> {}: {e}", l.bound);
                    continue;
                }
            },
        };
        flows.touch(r);
        if let (Some(f), Some(data)) = (flow_mut(flows, r), sp.buf.get(..n)) {
            f.last = now;
            let _ = send(f.socks[1].as_raw_fd(), data, MsgFlags::MSG_DONTWAIT);
        }
    }
}

/// Open the flow of namespace client `ini` (which wrote to `dst`).
#[allow(clippy::too_many_arguments)]
fn open(
    flows: &mut Flows,
    ev: &EventLoop,
    sp: &Splicer,
    l: &Listener,
    ini: FlowSide,
    dst: IpAddr,
    idle: Duration,
    now: Instant,
) -> Result<FlowRef, Errno> {
    if !flows.room_for(Kind::UdpSplice) {
        match flows.evict(Kind::UdpSplice) {
            Some((_, Flow::UdpSplice(f))) => close(f, ev),
            Some(_) => {}
            None => return Err(Errno::ENOBUFS),
        }
    }
    let loopback = match ini.peer {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    };
    let to = SocketAddr::new(l.to_addr.unwrap_or(loopback), l.to_port);
    let host = connected(to)?;
    let (local, sender) = (SocketAddr::new(dst, l.bound.port()), ini.peer);
    let ns = sp
        .worker
        .run(move || super::open_inbound_socket(local, sender))
        .unwrap_or(Err(Errno::EIO))?;
    let nf = flows.begin(Kind::UdpSplice).map_err(|_| Errno::ENOBUFS)?;
    let r = nf.flow_ref();
    for (end, s) in [(End::Initiator, &ns), (End::Target, &host)] {
        ev.add(s, EpollRef::UdpSplice(SideRef { flow: r, end }), false)
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
    }
    let ours = crate::flow::local_addr(&host).unwrap_or(to);
    log::debug!(
        "UDP splice {}: {} -> {}, then {ours} -> {to}",
        r.index,
        ini.peer,
        ini.ours
    );
    let flow = UdpSpliceFlow {
        sides: Sides::new(ini, FlowSide::new(Side::Host, to, ours)),
        socks: [ns, host],
        last: now,
    };
    let r = nf.commit(Flow::UdpSplice(flow)).map_err(|(_, f)| {
        if let Flow::UdpSplice(f) = f {
            close(f, ev);
        }
        Errno::EEXIST
    })?;
    flows.schedule(r, now + idle);
    Ok(r)
}

/// Datagrams on one of the sockets of flow `r`: over to the other one.
pub fn event(flows: &mut Flows, sp: &mut Splicer, r: SideRef, now: Instant) {
    let Some(f) = flow_mut(flows, r.flow) else {
        return;
    };
    let from = end_index(r.end);
    let (Some(src), Some(dst)) = (f.socks.get(from), f.socks.get(1 - from)) else {
        return;
    };
    let mut moved = false;
    for _ in 0..RECV_BURST {
        match recv(src.as_raw_fd(), &mut sp.buf, MsgFlags::MSG_DONTWAIT) {
            Ok(n) => {
                moved = true;
                if let Some(data) = sp.buf.get(..n) {
                    let _ = send(dst.as_raw_fd(), data, MsgFlags::MSG_DONTWAIT);
                }
            }
            // An ICMP error for an earlier datagram (ECONNREFUSED) is
            // reported once; the next read goes on. A socket with
            // IP_RECVERR also queues it, which would keep EPOLLERR up:
            // nobody to tell, so it is read and dropped.
            Err(Errno::ECONNREFUSED | Errno::EHOSTUNREACH | Errno::ENETUNREACH) => {
                let flags = MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT;
                while recv(src.as_raw_fd(), &mut sp.buf, flags).is_ok() {}
            }
            Err(_) => break,
        }
    }
    if moved {
        f.last = now;
        flows.touch(r.flow);
    }
}

/// Close flow `r` if it has been idle for `idle`; else look again then.
pub fn expire(flows: &mut Flows, ev: &EventLoop, r: FlowRef, idle: Duration, now: Instant) {
    let Some(due) = flow_mut(flows, r).map(|f| f.last + idle) else {
        return;
    };
    if due > now {
        flows.rearm(r, due, now);
        return;
    }
    if let Some(Flow::UdpSplice(f)) = flows.remove(r) {
        log::debug!("UDP splice {}: closed (idle)", r.index);
        close(f, ev);
    }
}

/// Close a flow taken out of the table.
pub fn close(f: UdpSpliceFlow, ev: &EventLoop) {
    for s in &f.socks {
        let _ = ev.remove(s);
    }
}
