//! Spliced connections in the loop: pasta's loopback path between the
//! host and its namespace, as flows of the shared table.
//!
//! A connection accepted on a forwarded port gets a second socket on the
//! other side (in the namespace through its worker thread, or on the
//! host), connecting to the same port there, and the two are joined by
//! the engine in `splice.rs`; nothing crosses the tap. Which connections
//! take this path is decided by the listener's caller (`serve.rs`): a
//! host loopback client of a `-t` port (unless `--no-splice`), and every
//! client of a `-T` port.
//!
//! Both sockets are registered edge-triggered as `EpollRef::Splice`, one
//! per end; the engine says when it stopped at its per-pump budget
//! (`again`), and the flow's timer then comes up within `MIN_REARM` to
//! go on. That is the timer's only use: a spliced connection has no idle
//! timeout. Both its peers are sockets of this machine, whose kernel
//! closes them (and tells us) when their process goes, so a connection
//! can't outlive its ends unnoticed; one idle for hours between a
//! connection pool and a database, with or without keepalives (which
//! never cross a splice), is alive and must stay.

use crate::event::{EpollRef, EventLoop};
use crate::flow::{
    self, End, Flow, FlowRef, FlowSide, Flows, Kind, MIN_REARM, Side, SideRef, Sides,
};
use crate::tcp::TcpDrop;
use crate::tcp::splice::{Outcome, PIPE_SIZE, Ready, SpliceConn};
use nix::errno::Errno;
use nix::sys::epoll::EpollFlags;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::time::Instant;

/// A spliced connection: its sides and the engine holding both sockets.
pub struct SpliceFlow {
    sides: Sides,
    conn: SpliceConn,
    /// The engine has work left that no event will announce.
    again: bool,
}

impl SpliceFlow {
    /// The connection's sides: the accepted socket's, then ours.
    pub fn sides(&self) -> &Sides {
        &self.sides
    }

    /// Bytes moved from the initiator and from the target.
    pub fn moved(&self) -> (u64, u64) {
        (
            self.conn.moved(End::Initiator),
            self.conn.moved(End::Target),
        )
    }

    fn total(&self) -> u64 {
        let (a, b) = self.moved();
        a + b
    }
}

fn flow_mut(flows: &mut Flows, r: FlowRef) -> Option<&mut SpliceFlow> {
    match flows.get_mut(r)? {
        Flow::Splice(s) => Some(s),
        _ => None,
    }
}

/// Join `accepted` (a client of a forwarded port: `ini`) with `target`,
/// a socket on side `at` connecting (or connected) to `to`.
///
/// # Errors
/// `TableFull` when the splice budget is used up, `Socket` when the pipes
/// or epoll refuse: both sockets are closed, the client's with an RST.
#[allow(clippy::too_many_arguments)]
pub fn open(
    flows: &mut Flows,
    ev: &EventLoop,
    ini: FlowSide,
    at: Side,
    to: SocketAddr,
    accepted: OwnedFd,
    target: OwnedFd,
) -> Result<FlowRef, TcpDrop> {
    let reset = |a: OwnedFd| super::close_reset(a);
    if !flows.room_for(Kind::Splice) {
        reset(accepted);
        return Err(TcpDrop::TableFull);
    }
    let ours = flow::local_addr(&target).unwrap_or(to);
    let conn = match SpliceConn::new(accepted, target, PIPE_SIZE) {
        Ok(c) => c,
        Err(e) => {
            return Err(TcpDrop::Socket(Errno::from_raw(
                e.raw_os_error().unwrap_or(0),
            )));
        }
    };
    let nf = flows.begin(Kind::Splice).map_err(|_| TcpDrop::TableFull)?;
    let r = nf.flow_ref();
    for end in [End::Initiator, End::Target] {
        let sref = EpollRef::Splice(SideRef { flow: r, end });
        if let Err(e) = ev.add_edge(conn.socket(end), sref) {
            let _ = ev.remove(conn.socket(End::Initiator));
            return Err(TcpDrop::Socket(Errno::from_raw(
                e.raw_os_error().unwrap_or(0),
            )));
        }
    }
    log::debug!(
        "TCP splice {}: {} -> {} joined with {ours} -> {to}",
        r.index,
        ini.peer,
        ini.ours
    );
    let flow = SpliceFlow {
        sides: Sides::new(ini, FlowSide::new(at, to, ours)),
        conn,
        again: false,
    };
    let r = match nf.commit(Flow::Splice(flow)) {
        Ok(r) => r,
        Err((_, f)) => {
            if let Flow::Splice(f) = f {
                unregister(&f, ev);
            }
            return Err(TcpDrop::TableFull);
        }
    };
    Ok(r)
}

fn unregister(f: &SpliceFlow, ev: &EventLoop) {
    for end in [End::Initiator, End::Target] {
        let _ = ev.remove(f.conn.socket(end));
    }
}

/// Events on one of the sockets of spliced connection `r`; the bytes
/// this moved, both ways.
pub fn event(flows: &mut Flows, ev: &EventLoop, r: SideRef, events: EpollFlags) -> u64 {
    let now = Instant::now();
    let Some(f) = flow_mut(flows, r.flow) else {
        return 0;
    };
    let before = f.total();
    let out = f.conn.on_event(r.end, Ready::from(events));
    let moved = f.total() - before;
    settle(flows, ev, r.flow, out, now);
    moved
}

/// The timer of connection `r`: more to move (and nothing else: no idle
/// timeout, see the module documentation).
pub fn timer(flows: &mut Flows, ev: &EventLoop, r: FlowRef, now: Instant) {
    let Some(f) = flow_mut(flows, r) else {
        return;
    };
    if f.again {
        let out = f.conn.pump();
        settle(flows, ev, r, out, now);
    }
}

/// Act on what the engine said.
fn settle(flows: &mut Flows, ev: &EventLoop, r: FlowRef, out: Outcome, now: Instant) {
    match out {
        Outcome::Open { again, .. } => {
            let Some(f) = flow_mut(flows, r) else {
                return;
            };
            f.again = again;
            if again {
                flows.rearm(r, now + MIN_REARM, now);
            }
        }
        Outcome::Closed | Outcome::Reset { .. } | Outcome::ConnectFailed(_) => {
            if let Some(Flow::Splice(f)) = flows.remove(r) {
                let (a, b) = f.moved();
                let calls = f.conn.splices(End::Initiator) + f.conn.splices(End::Target);
                log::debug!(
                    "TCP splice {}: {out:?} after {a}/{b} bytes, {calls} splices",
                    r.index
                );
                unregister(&f, ev);
            }
        }
    }
}

/// Close a spliced connection taken out of the table: both peers get an
/// RST (the guest went away).
pub fn close(f: SpliceFlow) {
    let SpliceFlow { conn, .. } = f;
    conn.reset_both();
}

/// What joins forwarded connections by splicing (pasta only): a thread
/// inside the namespace to open sockets there, and where they go.
pub struct Splicer {
    /// Opens sockets inside the namespace.
    pub worker: crate::ns::NsWorker,
    /// The namespace's addresses, where host loopback clients go unless
    /// `lo_to_lo`.
    pub ns4: Option<std::net::Ipv4Addr>,
    /// The same for IPv6.
    pub ns6: Option<std::net::Ipv6Addr>,
    /// `--host-lo-to-ns-lo`: to the namespace's loopback instead.
    pub lo_to_lo: bool,
    /// `--no-splice`: host loopback clients of `-t` go through the tap.
    pub no_splice: bool,
    /// `--splice-only`: every client of `-t` is spliced (there is no tap).
    pub splice_only: bool,
    /// Where spliced UDP datagrams pass through (`udp::spliced`), gathered
    /// for one send: room for four of the largest, or a whole batch of
    /// small ones.
    pub buf: Box<[u8]>,
}

impl Splicer {
    /// Whether a client at `peer` of listener `l` is spliced: every
    /// client of a `-T` port, and host loopback clients of `-t` ports.
    pub fn wants(&self, l: &crate::fwd::listen::Listener, peer: SocketAddr) -> bool {
        l.ns || self.splice_only || (!self.no_splice && peer.ip().is_loopback())
    }

    /// Where a spliced client at `peer` of listener `l` goes: the side to
    /// open the other socket on, and the address to reach there.
    pub fn target(&self, l: &crate::fwd::listen::Listener, peer: SocketAddr) -> (Side, SocketAddr) {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        let loopback = match peer {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        let (at, ip) = if l.ns {
            // From the namespace to the host's loopback (or the spec's
            // target address).
            (Side::Host, l.to_addr.unwrap_or(loopback))
        } else {
            let own = match peer {
                SocketAddr::V4(_) => self.ns4.map(IpAddr::V4),
                SocketAddr::V6(_) => self.ns6.map(IpAddr::V6),
            };
            let ip = match l.to_addr {
                Some(a) => a,
                // Without a tap the namespace has no other address.
                None if self.lo_to_lo || self.splice_only => loopback,
                None => own.unwrap_or(loopback),
            };
            (Side::Ns, ip)
        };
        (at, SocketAddr::new(ip, l.to_port))
    }

    /// Join client `sock` of listener `l` with a new socket on the other
    /// side.
    ///
    /// # Errors
    /// As [`open`]; a connect refused at once resets the client.
    #[allow(clippy::too_many_arguments)]
    pub fn join(
        &self,
        flows: &mut Flows,
        ev: &EventLoop,
        l: &crate::fwd::listen::Listener,
        sock: OwnedFd,
        peer: SocketAddr,
        ours: SocketAddr,
    ) -> Result<(), TcpDrop> {
        let (at, to) = self.target(l, peer);
        let opened = if at == Side::Host {
            super::open_socket(to)
        } else {
            self.worker
                .run(move || super::open_socket(to))
                .unwrap_or(Err(Errno::EIO))
        };
        let target = match opened {
            Ok((s, _)) => s,
            Err(e) => {
                log::debug!("TCP splice {peer} -> {ours}: connect {to}: {e}");
                super::close_reset(sock);
                return Err(TcpDrop::Socket(e));
            }
        };
        let side = if l.ns { Side::Ns } else { Side::Host };
        open(
            flows,
            ev,
            FlowSide::new(side, peer, ours),
            at,
            to,
            sock,
            target,
        )
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    /// A connected pair on loopback: the client and the accepted socket.
    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let c = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (s, _) = l.accept().expect("accept");
        for t in [&c, &s] {
            t.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
        }
        (c, s)
    }

    /// Hours without a byte, as between a connection pool and its
    /// database: no timer comes for the connection, which then carries
    /// data both ways as before.
    #[test]
    fn an_idle_connection_is_never_timed_out() {
        let ev = EventLoop::new().expect("epoll");
        let mut flows = Flows::with_reserves([0, 0, 0, 4, 0], 4);
        let (mut a, accepted) = pair();
        let (target, mut b) = pair();
        let (peer, ours) = (
            accepted.peer_addr().expect("peer"),
            accepted.local_addr().expect("local"),
        );
        let to = target.peer_addr().expect("peer");
        let r = open(
            &mut flows,
            &ev,
            FlowSide::new(Side::Host, peer, ours),
            Side::Ns,
            to,
            accepted.into(),
            target.into(),
        )
        .expect("joined");
        let later = Instant::now() + Duration::from_secs(24 * 3600);
        while let Some(due) = flows.pop_due(later) {
            timer(&mut flows, &ev, due, later);
        }
        assert!(flows.get(r).is_some(), "an idle connection was closed");
        let mut relay = |from: End, w: &mut TcpStream, rd: &mut TcpStream| {
            w.write_all(b"still here").expect("write");
            // As the loop would on each input event, until all of it
            // crossed (it may take a moment to reach our socket).
            let ready = EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT;
            let until = Instant::now() + Duration::from_secs(5);
            let mut moved = 0;
            while moved < 10 && Instant::now() < until {
                moved += event(&mut flows, &ev, SideRef { flow: r, end: from }, ready);
                std::thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(moved, 10, "the data didn't cross");
            let mut got = [0u8; 10];
            rd.read_exact(&mut got).expect("read");
            assert_eq!(&got, b"still here");
        };
        relay(End::Initiator, &mut a, &mut b);
        relay(End::Target, &mut b, &mut a);
    }
}
