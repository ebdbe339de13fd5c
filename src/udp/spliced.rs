//! UDP between pasta's namespace and the host without the tap: datagrams
//! to a `-U` port on the namespace's loopback, and from host loopback
//! clients of `-u` ports. A sender's first datagram opens a flow with two
//! sockets: one beside the listener, bound where the sender wrote to and
//! connected to it (as for inbound flows through the tap), and one on the
//! other side connected to the target (`Splicer::target`). Datagrams are
//! copied between them as they come, each whole, at most `RECV_BURST` per
//! event, gathered and sent in batches (`sendmmsg`); the sockets are
//! level-triggered, so what a burst leaves is read next round. Nothing is
//! queued past the event: a datagram the other socket can't take now is
//! dropped, as the kernel would drop it on a full buffer.
//!
//! Flows are `Kind::UdpSplice`, two descriptors each, within their own
//! reserve; the least recently used makes way for a new one, and one
//! without traffic for the UDP idle timeout is closed.

use crate::dgram::RECV_BURST;
use crate::event::{EpollRef, EventLoop};
use crate::flow::{End, Flow, FlowRef, FlowSide, Flows, Kind, Side, SideRef, Sides};
use crate::fwd::Proto;
use crate::fwd::listen::Listener;
use crate::sys::udp::{SEND_BATCH, send_batch};
use crate::tcp::spliced::Splicer;
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, recv, send};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

/// A UDP flow between the namespace and the host: its sides and its two
/// sockets (the client's first).
pub struct UdpSpliceFlow {
    sides: Sides,
    socks: [OwnedFd; 2],
    last: Instant,
}

impl UdpSpliceFlow {
    /// The flow's sides: the client's, then the target's.
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

/// A UDP socket connected to `to`.
fn connected(to: SocketAddr) -> Result<OwnedFd, Errno> {
    let sock = super::udp_socket(to.is_ipv6(), false)?;
    super::connect_to(&sock, to)?;
    Ok(sock)
}

/// Datagrams on `-U` port `l` in the namespace: each sender gets a flow
/// to the host's port, and its datagram goes there.
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
        let data = sp.buf.get(..n).unwrap_or(&[]);
        if let Err(e) = deliver(flows, ev, sp, l, sender, dst, data, idle, now) {
            log::debug!("UDP splice {sender} -> {}: {e}", l.bound);
        }
    }
}

/// Datagram `data` from `sender` to `dst` on forwarded port `l`: into
/// the sender's flow, opened now if new, and on to the other side.
///
/// # Errors
/// The flow couldn't be opened (table full, no socket).
#[allow(clippy::too_many_arguments)]
pub fn deliver(
    flows: &mut Flows,
    ev: &EventLoop,
    sp: &Splicer,
    l: &Listener,
    sender: SocketAddr,
    dst: IpAddr,
    data: &[u8],
    idle: Duration,
    now: Instant,
) -> Result<(), Errno> {
    let side = if l.ns { Side::Ns } else { Side::Host };
    let ini = FlowSide::new(side, sender, l.bound);
    let r = match flows.lookup(Proto::Udp, &ini) {
        Some(s) => s.flow,
        None => open(flows, ev, sp, l, ini, dst, idle, now)?,
    };
    flows.touch(r);
    if let Some(f) = flow_mut(flows, r) {
        f.last = now;
        let _ = send(f.socks[1].as_raw_fd(), data, MsgFlags::MSG_DONTWAIT);
    }
    Ok(())
}

/// Open the flow of client `ini` (which wrote to `dst` on `l`): a socket
/// beside the listener connected back to the client, and one on the
/// other side connected to the target.
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
    let (at, to) = sp.target(l, ini.peer);
    let (local, sender) = (SocketAddr::new(dst, l.bound.port()), ini.peer);
    let (client, target) = if at == Side::Host {
        let client = sp
            .worker
            .run(move || super::open_inbound_socket(local, sender))
            .unwrap_or(Err(Errno::EIO))?;
        (client, connected(to)?)
    } else {
        let target = sp
            .worker
            .run(move || connected(to))
            .unwrap_or(Err(Errno::EIO))?;
        (super::open_inbound_socket(local, sender)?, target)
    };
    let nf = flows.begin(Kind::UdpSplice).map_err(|_| Errno::ENOBUFS)?;
    let r = nf.flow_ref();
    for (end, s) in [(End::Initiator, &client), (End::Target, &target)] {
        ev.add(s, EpollRef::UdpSplice(SideRef { flow: r, end }), false)
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
    }
    let ours = crate::flow::local_addr(&target).unwrap_or(to);
    log::debug!(
        "UDP splice {}: {} -> {}, then {ours} -> {to}",
        r.index,
        ini.peer,
        ini.ours
    );
    let flow = UdpSpliceFlow {
        sides: Sides::new(ini, FlowSide::new(at, to, ours)),
        socks: [client, target],
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
    if relay(src.as_fd(), dst.as_fd(), &mut sp.buf) {
        f.last = now;
        flows.touch(r.flow);
    }
}

/// Up to `RECV_BURST` datagrams from `src` to `dst`, gathered in `buf` and
/// sent with one `sendmmsg` per batch (a 1400-byte flood made two calls
/// per datagram before, about 1.4 now): whether any came.
fn relay(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, buf: &mut [u8]) -> bool {
    // Where each gathered datagram lies in `buf`.
    let mut spans = [(0usize, 0usize); SEND_BATCH];
    let (mut n, mut off) = (0, 0);
    let mut moved = false;
    for _ in 0..RECV_BURST {
        if n == SEND_BATCH || buf.len().saturating_sub(off) < MAX_DATAGRAM {
            send_all(dst, buf, &spans[..n]);
            (n, off) = (0, 0);
        }
        let Some(room) = buf.get_mut(off..) else {
            break;
        };
        match recv(src.as_raw_fd(), room, MsgFlags::MSG_DONTWAIT) {
            Ok(len) => {
                moved = true;
                if let Some(span) = spans.get_mut(n) {
                    *span = (off, len);
                    n += 1;
                    off += len;
                }
            }
            // An ICMP error for an earlier datagram (ECONNREFUSED) is
            // reported once; the next read goes on. A socket with
            // IP_RECVERR also queues it, which would keep EPOLLERR up:
            // nobody to tell, so it is read (past what is gathered) and
            // dropped.
            Err(Errno::ECONNREFUSED | Errno::EHOSTUNREACH | Errno::ENETUNREACH) => {
                let flags = MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT;
                while recv(src.as_raw_fd(), room, flags).is_ok() {}
            }
            Err(_) => break,
        }
    }
    send_all(dst, buf, &spans[..n]);
    moved
}

/// Room kept for the next datagram: the largest UDP payload.
const MAX_DATAGRAM: usize = 1 << 16;

/// Send the datagrams at `spans` of `buf` on `dst`. What it can't take
/// now is dropped, as the kernel drops on a full buffer; an error for an
/// earlier datagram (reported on this send) costs one more try, not the
/// batch.
fn send_all(dst: BorrowedFd<'_>, buf: &[u8], spans: &[(usize, usize)]) {
    let mut ds: [&[u8]; SEND_BATCH] = [&[]; SEND_BATCH];
    for (d, &(at, len)) in ds.iter_mut().zip(spans) {
        *d = buf.get(at..at + len).unwrap_or(&[]);
    }
    let ds = ds.get(..spans.len()).unwrap_or(&[]);
    let (mut sent, mut failures) = (0, 0);
    while sent < ds.len() && failures < 2 {
        match send_batch(dst, ds.get(sent..).unwrap_or(&[])) {
            // Never 0 for a non-empty batch; `max` keeps the loop finite.
            Ok(k) => sent += k.max(1),
            Err(_) => failures += 1,
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{setsockopt, sockopt};

    /// Datagrams of every size, the empty and the largest among them,
    /// cross whole, once and in order, also where the gathering buffer
    /// runs out of room for another of the largest, and in bursts longer
    /// than one call takes.
    #[test]
    fn every_datagram_crosses_whole_once_and_in_order() {
        // (receiver, sender connected to it)
        let (src, client) = crate::sys::udp::pair();
        let (server, dst) = crate::sys::udp::pair();
        for s in [&src, &server] {
            setsockopt(s, sockopt::RcvBuf, &(1 << 20)).expect("SO_RCVBUF");
        }
        server.set_nonblocking(true).expect("non-blocking");
        let mut buf = vec![0u8; 1 << 18];
        let mut got = vec![0u8; 1 << 16];
        // Four of the largest fill the buffer past its room for the fifth;
        // then more small ones than a call reads (`RECV_BURST`). Two
        // rounds, so that each fits in the receive buffers.
        let big = 65507;
        let rounds: [Vec<usize>; 2] = [
            vec![0, big, 1, big, big, big, big],
            std::iter::repeat_n(1400, 70).chain([big, 2]).collect(),
        ];
        let mut tag = 0u8;
        for sizes in rounds {
            for (i, &len) in sizes.iter().enumerate() {
                client
                    .send(&vec![tag.wrapping_add(i as u8); len])
                    .expect("send");
            }
            let mut calls = 0;
            while relay(src.as_fd(), dst.as_fd(), &mut buf) {
                calls += 1;
                assert!(calls < 100, "never dry");
            }
            for (i, &len) in sizes.iter().enumerate() {
                let n = server.recv(&mut got).expect("a datagram");
                assert_eq!(n, len, "datagram {i}");
                let t = tag.wrapping_add(i as u8);
                assert!(got[..n].iter().all(|&b| b == t), "datagram {i}");
            }
            assert!(server.recv(&mut got).is_err(), "one too many");
            tag = tag.wrapping_add(100);
        }
    }
}
