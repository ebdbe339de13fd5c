//! What UDP and ping flows share on the way to the guest: datagrams are
//! received straight into frames in the guest's queue, a burst at a time;
//! a socket is paused while that queue is full and resumed once it
//! drains; ICMP errors from the socket's error queue become errors
//! towards the guest about what it sent.
//!
//! Each kind says what differs through `DgramFlow` (its name in logs, its
//! epoll reference, how an error quotes the guest's datagram), and keeps
//! a `Sockets` for the state the shared part needs.

use crate::conf::Config;
use crate::errqueue::{self, ErrQueue};
use crate::event::{EpollRef, EventLoop};
use crate::flow::{Flow, FlowRef, Flows, SideRef, Waiting};
use crate::tap::{MAX_FRAME, TxQueue};
use crate::wire::compose;
use crate::wire::icmp_error::{self, Error4, Error6, MAX_ERROR_FRAME, Quote, Quoted};
use nix::errno::Errno;
use nix::sys::epoll::EpollFlags;
use nix::sys::socket::{MsgFlags, recv};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Most datagrams taken from one socket per event: the sockets are
/// level-triggered, so the rest comes next round, after other flows.
pub const RECV_BURST: usize = 64;

/// How a round of receiving ended.
#[derive(Debug, Default)]
pub struct Rx {
    /// The guest's queue had no room for another datagram: pause the socket.
    pub full: bool,
    /// A pending socket error came up: the error queue has news.
    pub error: bool,
}

/// Receive one datagram from `fd` into `buf`: its length, or `None` with
/// the error left in `failed`. An empty datagram is `Some(0)`, distinct
/// from nothing at all.
pub fn recv_into(fd: RawFd, buf: &mut [u8], failed: &mut Option<Errno>) -> Option<usize> {
    match recv(fd, buf, MsgFlags::MSG_DONTWAIT) {
        Ok(n) => Some(n),
        Err(e) => {
            *failed = Some(e);
            None
        }
    }
}

/// Queue up to `RECV_BURST` datagrams. `one` builds one frame in the
/// queue, reading its payload with `recv_into` and the error slot it is
/// given; it returns whether a frame was queued, or `None` when the flow
/// can't be framed at all.
pub fn receive(
    tx: &mut TxQueue,
    mut one: impl FnMut(&mut TxQueue, &mut Option<Errno>) -> Option<bool>,
) -> Rx {
    let mut rx = Rx::default();
    for _ in 0..RECV_BURST {
        if !tx.has_room(MAX_FRAME) {
            rx.full = true;
            break;
        }
        let mut failed = None;
        let Some(queued) = one(tx, &mut failed) else {
            break;
        };
        match failed {
            // Dry until the next event.
            Some(Errno::EAGAIN) => break,
            Some(Errno::EINTR) => {}
            // A pending socket error (an ICMP error for something we sent
            // earlier): datagrams may still follow.
            Some(_) => rx.error = true,
            // Nothing was read (`has_room` makes this unexpected).
            None if !queued => break,
            None => {}
        }
    }
    rx
}

/// A kind of flow with one datagram socket (UDP, ping), for the parts
/// they share.
pub trait DgramFlow: Sized {
    /// How log messages name a flow of this kind.
    const NAME: &'static str;
    /// The table's kind for these flows.
    const KIND: crate::flow::Kind;
    /// The flow of this kind `r` names, if it is still there.
    fn of(flows: &mut Flows, r: FlowRef) -> Option<&mut Self>;
    /// The same, read-only, from a flow of any kind.
    fn of_flow(f: &Flow) -> Option<&Self>;
    /// What epoll knows the socket of this flow, `r`, by.
    fn epoll_ref(&self, r: FlowRef) -> EpollRef;
    /// The flow's socket.
    fn sock(&self) -> &OwnedFd;
    /// Whether the socket is not watched for input (the guest's queue
    /// was full).
    fn is_paused(&self) -> bool;
    /// Record whether it is.
    fn set_paused(&mut self, paused: bool);
    /// When the flow was last used (what its idle timeout counts from).
    fn last(&self) -> std::time::Instant;
    /// The guest's address.
    fn guest_ip(&self) -> IpAddr;
    /// The address the guest sent to.
    fn remote_ip(&self) -> IpAddr;
    /// That address as the host sees it.
    fn target_ip(&self) -> IpAddr;
    /// The guest's datagram as an ICMP error quotes it, around `payload`,
    /// what the host gave back of it.
    fn quoted<'a>(&self, payload: &'a [u8]) -> Quoted<'a>;
}

/// State UDP or ping keeps beside its flows for the shared part.
pub struct Sockets {
    /// Flows whose socket is paused until the guest's queue drains.
    paused: Waiting,
    errq: ErrQueue,
}

impl Sockets {
    /// State for a kind of at most `most` flows.
    pub fn new(most: usize) -> Self {
        Sockets {
            paused: Waiting::new(most),
            errq: ErrQueue::default(),
        }
    }

    /// Events on the socket of flow `r`: what it received goes to the
    /// guest through `receive` (which knows the kind's framing), and ICMP
    /// errors are relayed. A socket whose datagrams don't fit in the
    /// guest's queue is paused: it is level-triggered, so it would
    /// otherwise be reported ready for ever.
    #[allow(clippy::too_many_arguments)]
    pub fn event<F: DgramFlow>(
        &mut self,
        flows: &mut Flows,
        r: SideRef,
        events: EpollFlags,
        conf: &Config,
        link: compose::Link,
        tx: &mut TxQueue,
        ev: &EventLoop,
        receive: impl FnOnce(&mut F, &mut TxQueue) -> Rx,
    ) {
        let r = r.flow;
        let Some(flow) = F::of(flows, r) else {
            return;
        };
        let mut failed = events.contains(EpollFlags::EPOLLERR);
        let mut paused = false;
        if events.contains(EpollFlags::EPOLLIN) {
            let rx = receive(flow, tx);
            failed |= rx.error;
            if rx.full {
                // Leave the datagrams in the kernel until the guest reads:
                // polling a socket we can't empty would only spin.
                tx.stalled += 1;
                match ev.watch_input(flow.sock(), flow.epoll_ref(r), false) {
                    Ok(()) => {
                        flow.set_paused(true);
                        paused = true;
                    }
                    Err(e) => log::warn!("{} {}: can't pause: {e}", F::NAME, r.index),
                }
            }
        }
        if failed {
            relay_errors(r, flow, &mut self.errq, conf, link, tx);
        }
        if events.contains(EpollFlags::EPOLLIN) {
            flows.touch(r);
        }
        if paused {
            self.paused.push(r, |w| {
                flows
                    .get(w)
                    .and_then(F::of_flow)
                    .is_some_and(|f| f.is_paused())
            });
        }
    }

    /// The guest's queue has room again: watch paused sockets for input.
    pub fn resume<F: DgramFlow>(&mut self, flows: &mut Flows, ev: &EventLoop) {
        if self.paused.is_empty() {
            return;
        }
        let waiting = self.paused.take();
        for &r in &waiting {
            let Some(flow) = F::of(flows, r).filter(|f| f.is_paused()) else {
                continue;
            };
            match ev.watch_input(flow.sock(), flow.epoll_ref(r), true) {
                Ok(()) => flow.set_paused(false),
                Err(e) => log::warn!("{} {}: can't resume: {e}", F::NAME, r.index),
            }
        }
        self.paused.give_back(waiting);
    }

    /// The guest went away: its flows are gone.
    pub fn clear(&mut self) {
        self.paused.clear();
    }
}

/// Turn the ICMP errors queued on `flow`'s socket into errors towards the
/// guest about what it sent, at most `RECV_BURST` of them (the rest keep
/// `EPOLLERR` up for the next round). An error that doesn't fit in the
/// guest's queue is dropped and counted there.
fn relay_errors<F: DgramFlow>(
    r: FlowRef,
    flow: &F,
    errq: &mut ErrQueue,
    conf: &Config,
    link: compose::Link,
    tx: &mut TxQueue,
) {
    let fd = flow.sock().as_raw_fd();
    let (guest, remote) = (flow.guest_ip(), flow.remote_ip());
    let mut data = [0u8; errqueue::MAX_QUOTED];
    for _ in 0..RECV_BURST {
        let report = match errq.recv(fd, &mut data) {
            Ok(Some(r)) => r,
            // Not from ICMP (a local error): nothing to tell the guest.
            Ok(None) => continue,
            Err(_) => break,
        };
        // What the host sent: UDP payload, or ICMP header and data.
        let payload = data.get(..report.len).unwrap_or(&[]);
        let from = errqueue::error_source(report.offender, remote, |o| {
            o == flow.target_ip() || o == guest || errqueue::is_host(conf, o)
        });
        log::debug!(
            "{} {}: ICMP{} type {} code {} from {from}",
            F::NAME,
            r.index,
            if report.v6 { "v6" } else { "" },
            report.msg_type,
            report.code
        );
        let l4 = flow.quoted(payload);
        // The socket has the guest's destination's family (`fwd::outbound`
        // keeps it), and so do its errors.
        match (from, guest, remote, report.v6) {
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
    errqueue::clear_pending(flow.sock());
}

/// Close flow `r` of kind `F` if it has been idle for `idle`; otherwise
/// look again when it will have been. Each use of a flow only updates
/// its `last`, and the timer catches up here.
pub fn expire<F: DgramFlow>(
    flows: &mut Flows,
    ev: &crate::event::EventLoop,
    r: FlowRef,
    idle: std::time::Duration,
    now: std::time::Instant,
) {
    let Some(due) = F::of(flows, r).map(|f| f.last() + idle) else {
        return;
    };
    if due > now {
        flows.rearm(r, due, now);
        return;
    }
    if let Some(f) = flows.remove(r)
        && let Some(d) = F::of_flow(&f)
    {
        log::debug!(
            "{} {}: {} -> {} closed (idle)",
            F::NAME,
            r.index,
            d.guest_ip(),
            d.remote_ip()
        );
        let _ = ev.remove(d.sock());
    }
}

/// Close the least recently used flow of kind `F` to make room for a new
/// one; false if there is none.
pub fn make_room<F: DgramFlow>(flows: &mut Flows, ev: &crate::event::EventLoop) -> bool {
    let Some((r, f)) = flows.evict(F::KIND) else {
        return false;
    };
    // Only flows of the kind are in its list; anything else closes on drop.
    if let Some(d) = F::of_flow(&f) {
        log::debug!(
            "{} {}: {} -> {} evicted (least recently used)",
            F::NAME,
            r.index,
            d.guest_ip(),
            d.remote_ip()
        );
        let _ = ev.remove(d.sock());
    }
    true
}
