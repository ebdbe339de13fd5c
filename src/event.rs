//! The epoll loop's vocabulary: what each registered fd is, packed into
//! the 64-bit epoll data so one `match` routes every event.

use crate::flow::{End, FlowRef, GEN_MASK, SideRef};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

/// What a ready file descriptor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpollRef {
    /// The signalfd for SIGTERM, SIGINT, SIGQUIT and SIGUSR1.
    Signal,
    /// passt's listening UNIX socket.
    Listener,
    /// The connected guest stream (passt).
    TapStream,
    /// The tap device (pasta).
    TapTun,
    /// What ends the program besides signals (namespace gone, command exited).
    Quit,
    /// The ping socket of an echo flow (one of its sides).
    Ping(SideRef),
    /// The socket of a UDP flow.
    Udp(SideRef),
    /// The socket of a TCP connection.
    Tcp(SideRef),
    /// A forwarded TCP port's listening socket (`fwd::listen`), by number.
    TcpListen(u32),
    /// A forwarded UDP port's socket, by number.
    UdpListen(u32),
    /// One of the two sockets of a spliced TCP connection.
    Splice(SideRef),
    /// One of the two sockets of a UDP flow between namespace and host.
    UdpSplice(SideRef),
}

impl EpollRef {
    /// Bits 56..64: the kind; 32..56: the flow's generation; 31: which of
    /// its sides; 0..31: its slot.
    const KIND_SHIFT: u32 = 56;
    const GEN_SHIFT: u32 = 32;
    const END_BIT: u64 = 1 << 31;
    const INDEX_MASK: u64 = (1 << 31) - 1;
}

/// The reference of no flow, for the kinds that aren't flows.
const NO_FLOW: SideRef = SideRef {
    flow: FlowRef {
        index: 0,
        generation: 0,
    },
    end: End::Initiator,
};

/// A listener's number where a flow's slot goes (listeners are far
/// fewer than 2^31).
fn listener(i: u32) -> SideRef {
    SideRef {
        flow: FlowRef {
            index: i,
            generation: 0,
        },
        end: End::Initiator,
    }
}

impl From<EpollRef> for u64 {
    fn from(r: EpollRef) -> u64 {
        let (kind, f): (u64, SideRef) = match r {
            EpollRef::Signal => (1, NO_FLOW),
            EpollRef::Listener => (2, NO_FLOW),
            EpollRef::TapStream => (3, NO_FLOW),
            EpollRef::TapTun => (4, NO_FLOW),
            EpollRef::Quit => (5, NO_FLOW),
            EpollRef::Ping(f) => (6, f),
            EpollRef::Udp(f) => (7, f),
            EpollRef::Tcp(f) => (8, f),
            EpollRef::TcpListen(i) => (9, listener(i)),
            EpollRef::UdpListen(i) => (10, listener(i)),
            EpollRef::Splice(f) => (11, f),
            EpollRef::UdpSplice(f) => (12, f),
        };
        let end = match f.end {
            End::Initiator => 0,
            End::Target => EpollRef::END_BIT,
        };
        // Slots are numbered below 2^30 (`flow::Table`): the mask loses nothing.
        kind << EpollRef::KIND_SHIFT
            | u64::from(f.flow.generation & GEN_MASK) << EpollRef::GEN_SHIFT
            | end
            | (u64::from(f.flow.index) & EpollRef::INDEX_MASK)
    }
}

impl TryFrom<u64> for EpollRef {
    type Error = u64;

    fn try_from(v: u64) -> Result<Self, u64> {
        // Masked to 31 and 24 bits, so the casts keep every bit.
        let f = SideRef {
            flow: FlowRef {
                index: (v & EpollRef::INDEX_MASK) as u32,
                generation: ((v >> EpollRef::GEN_SHIFT) & u64::from(GEN_MASK)) as u32,
            },
            end: if v & EpollRef::END_BIT == 0 {
                End::Initiator
            } else {
                End::Target
            },
        };
        match v >> EpollRef::KIND_SHIFT {
            1 => Ok(EpollRef::Signal),
            2 => Ok(EpollRef::Listener),
            3 => Ok(EpollRef::TapStream),
            4 => Ok(EpollRef::TapTun),
            5 => Ok(EpollRef::Quit),
            6 => Ok(EpollRef::Ping(f)),
            7 => Ok(EpollRef::Udp(f)),
            8 => Ok(EpollRef::Tcp(f)),
            9 => Ok(EpollRef::TcpListen(f.flow.index)),
            10 => Ok(EpollRef::UdpListen(f.flow.index)),
            11 => Ok(EpollRef::Splice(f)),
            12 => Ok(EpollRef::UdpSplice(f)),
            _ => Err(v),
        }
    }
}

/// An epoll instance speaking `EpollRef`.
pub struct EventLoop {
    epoll: Epoll,
}

impl EventLoop {
    /// Create the epoll instance.
    ///
    /// # Errors
    /// `epoll_create1` failure.
    pub fn new() -> io::Result<Self> {
        Ok(EventLoop {
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
        })
    }

    /// Watch `fd` for input (and output if `out`).
    ///
    /// # Errors
    /// `epoll_ctl` failure.
    pub fn add(&self, fd: impl AsFd, r: EpollRef, out: bool) -> io::Result<()> {
        Ok(self.epoll.add(fd, EpollEvent::new(flags(out), r.into()))?)
    }

    /// Watch `fd` edge-triggered for input, output and the peer's close:
    /// for sockets whose data is left in the kernel on purpose (TCP), where
    /// level-triggered readiness would spin.
    ///
    /// # Errors
    /// `epoll_ctl` failure.
    pub fn add_edge(&self, fd: impl AsFd, r: EpollRef) -> io::Result<()> {
        let f = flags(true) | EpollFlags::EPOLLET;
        Ok(self.epoll.add(fd, EpollEvent::new(f, r.into()))?)
    }

    /// Register `fd` (added with `add_edge`) again, unchanged: the kernel
    /// looks at its readiness anew, and a TCP socket it finds with a full
    /// send buffer then reports `EPOLLOUT` once room is freed (without
    /// this, only after a write that failed).
    ///
    /// # Errors
    /// `epoll_ctl` failure.
    pub fn rearm_edge(&self, fd: impl AsFd, r: EpollRef) -> io::Result<()> {
        let mut ev = EpollEvent::new(flags(true) | EpollFlags::EPOLLET, r.into());
        Ok(self.epoll.modify(fd, &mut ev)?)
    }

    /// Change whether `fd` is watched for output.
    ///
    /// # Errors
    /// `epoll_ctl` failure.
    pub fn modify(&self, fd: impl AsFd, r: EpollRef, out: bool) -> io::Result<()> {
        let mut ev = EpollEvent::new(flags(out), r.into());
        Ok(self.epoll.modify(fd, &mut ev)?)
    }

    /// Start or stop watching `fd` (level-triggered, registered with `add`
    /// and no output) for input: a socket whose data has nowhere to go yet
    /// is left alone, rather than reported ready over and over. Errors and
    /// hang-ups are reported either way.
    ///
    /// # Errors
    /// `epoll_ctl` failure.
    pub fn watch_input(&self, fd: impl AsFd, r: EpollRef, input: bool) -> io::Result<()> {
        let mut f = EpollFlags::EPOLLRDHUP;
        if input {
            f |= EpollFlags::EPOLLIN;
        }
        let mut ev = EpollEvent::new(f, r.into());
        Ok(self.epoll.modify(fd, &mut ev)?)
    }

    /// Stop watching `fd`.
    ///
    /// # Errors
    /// `epoll_ctl` failure.
    pub fn remove(&self, fd: impl AsFd) -> io::Result<()> {
        Ok(self.epoll.delete(fd)?)
    }

    /// Wait up to `timeout` (to the millisecond; `None`: for ever) for
    /// events.
    ///
    /// # Errors
    /// `epoll_wait` failure other than `EINTR` (which yields no events).
    pub fn wait(&self, events: &mut [EpollEvent], timeout: Option<Duration>) -> io::Result<usize> {
        let t = match timeout {
            None => EpollTimeout::NONE,
            Some(d) => EpollTimeout::try_from(d).unwrap_or(EpollTimeout::MAX),
        };
        match self.epoll.wait(events, t) {
            Ok(n) => Ok(n),
            Err(nix::errno::Errno::EINTR) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }
}

fn flags(out: bool) -> EpollFlags {
    let mut f = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP;
    if out {
        f |= EpollFlags::EPOLLOUT;
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_round_trip() {
        let f = |index, generation| SideRef {
            flow: FlowRef { index, generation },
            end: End::Target,
        };
        let i = |index, generation| SideRef {
            flow: FlowRef { index, generation },
            end: End::Initiator,
        };
        for r in [
            EpollRef::Signal,
            EpollRef::Listener,
            EpollRef::TapStream,
            EpollRef::TapTun,
            EpollRef::Quit,
            EpollRef::Ping(f(0, 0)),
            EpollRef::Ping(f((1 << 31) - 1, GEN_MASK)),
            EpollRef::Udp(f(7, 3)),
            EpollRef::Udp(i(7, 3)),
            EpollRef::Tcp(f(0, 1)),
            EpollRef::Tcp(i((1 << 31) - 1, 12345)),
            EpollRef::TcpListen(0),
            EpollRef::TcpListen(70000),
            EpollRef::UdpListen(3),
            EpollRef::Splice(i(9, 4)),
        ] {
            assert_eq!(EpollRef::try_from(u64::from(r)), Ok(r));
        }
        assert!(EpollRef::try_from(0).is_err());
    }
}
