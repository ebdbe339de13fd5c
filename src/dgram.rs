//! What UDP and ping flows share on the way to the guest: datagrams are
//! received straight into frames in the guest's queue, a burst at a time.

use crate::tap::{MAX_FRAME, TxQueue};
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, recv};
use std::os::fd::RawFd;

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
