//! The loopback splice engine: two connected TCP sockets joined by
//! `splice(2)` through a pipe per direction, so the data never enters user
//! space. This is pasta's path for a connection accepted on one side's
//! loopback for a forwarded port and connected to the same port on the
//! other side's loopback; it never touches the tap.
//!
//! ```text
//!   initiator ──splice──▶ pipe[0] ──splice──▶ target
//!   (accepted)  ◀──splice── pipe[1] ◀──splice──  (connected, maybe
//!                                                 still connecting)
//! ```
//!
//! A [`SpliceConn`] owns both sockets and both pipes: **6 descriptors per
//! connection** (2 sockets + 2 × 2 pipe ends), and the two pipes'
//! [`SpliceConn::pipe_capacity`] of kernel memory while both are full. Pipes count against the user's `/proc/sys/fs/pipe-user-pages-soft`
//! (64 MiB by default): past it, the kernel refuses to enlarge new pipes and
//! connections go on with the default size (or less), more slowly.
//!
//! It knows nothing of epoll references, flow tables or timers (an idle
//! timeout, if any, is the caller's): the caller registers
//! [`SpliceConn::socket`] for both ends, hands each event to
//! [`SpliceConn::on_event`] and acts on the [`Outcome`]. Nothing is
//! allocated after [`SpliceConn::new`]; an event costs its splices and
//! nothing else.
//!
//! # Moving data
//!
//! Each direction is pumped the same way: splice from the source socket
//! into its pipe while the pipe has room, and from the pipe into the other
//! socket while that socket takes it, until neither makes progress (the
//! kernel answered `EAGAIN`, or the pipe is full, or the source's EOF was
//! read). An event pumps the directions it concerns: input on a socket, the
//! direction out of it; output space, the direction into it; errors and
//! hang-ups, both.
//!
//! Back-pressure: a pipe that still holds data after a pump means the
//! destination refused more (`EAGAIN`), so its output space is what we wait
//! for, and the source is not read meanwhile; its data waits in the
//! kernel, and its sender is slowed by TCP's own window. The next output
//! event drains the pipe and reads the source again in the same pump.
//!
//! # Trigger mode
//!
//! Pumps run until the kernel says `EAGAIN` (or the pipe is full while the
//! destination said `EAGAIN`), which is what edge-triggered registration
//! needs: every stall is waiting for an edge that will come. The intended
//! registration, like the rest of `tcp/`, is edge-triggered for input,
//! output and the peer's close, once per socket (`EventLoop::add_edge`),
//! with no `epoll_ctl` per event. A pump moves at most [`PUMP_BUDGET`] per
//! direction so one busy connection can't hold the loop; when it stopped
//! for that reason, [`Outcome::Open`] says `again`, and the caller must call
//! [`SpliceConn::pump`] soon (no edge will come for data already queued).
//! The price of registering once: a source's input edges still come while
//! its pipe is full, and every input edge reports the socket's output
//! state as well. Neither costs a call: a destination that refused
//! (`EAGAIN`) is not tried again before its own output event, and output
//! room on a socket whose incoming pipe is empty pumps nothing (its
//! source was read until `EAGAIN`, and new data brings its own event).
//!
//! Level-triggered registration works as well if the caller applies the
//! [`Interest`] of each outcome ([`Interest::level_flags`]): input only
//! while the source's pipe is empty, output only while its pipe holds data
//! the socket refused. `EPOLLHUP` can't be masked, though, and a socket
//! whose write side we shut reports it for good once its peer's FIN is in,
//! even while we don't read it (its pipe is full): such a socket must leave
//! the epoll set until it is wanted again.
//!
//! # Closing
//!
//! The source's EOF (a splice returning 0) becomes `shutdown(SHUT_WR)` on
//! the destination once its pipe is drained; the connection is over
//! ([`Outcome::Closed`]) when both directions are shut and drained. An
//! error on either socket (an RST, a timeout) sets `SO_LINGER` 0 on both
//! ([`Outcome::Reset`]): dropping the connection then closes the other
//! socket with an RST, so its peer sees the reset too. A failed connect of
//! the target ([`Outcome::ConnectFailed`]) does the same to the initiator.
//!
//! Splicing into a socket whose write side is closed raises `SIGPIPE`
//! (`splice` has no `MSG_NOSIGNAL`): the process must ignore it, as Rust's
//! runtime arranges before `main`.

use crate::flow::End;
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice};
use nix::sys::epoll::EpollFlags;
use nix::sys::socket::{
    Shutdown, SockaddrStorage, getpeername, getsockopt, setsockopt, shutdown, sockopt,
};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// Pipe size to ask for: large enough for loopback speed (a pipe smaller
/// than the socket buffers turns every pump into many small splices).
pub const PIPE_SIZE: usize = 1 << 20;

/// Most bytes spliced into one direction's pipe per pump; past it the
/// pump stops and asks to be called again.
pub const PUMP_BUDGET: usize = 8 << 20;

/// What to watch one socket for, after an event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Interest {
    /// Input: its pipe is empty and its EOF not read yet.
    pub read: bool,
    /// Output: its connect is in progress, or its pipe holds data it
    /// refused.
    pub write: bool,
    /// Its write side is shut: once its peer's FIN arrives it reports
    /// `EPOLLHUP` for good.
    pub shut: bool,
}

impl Interest {
    /// The level-triggered registration this asks for: `None` to take the
    /// socket out of the epoll set (nothing is wanted from it now and it may
    /// report `EPOLLHUP` for ever), else the flags (possibly none: epoll
    /// reports errors and hang-ups regardless).
    #[must_use]
    pub fn level_flags(self) -> Option<EpollFlags> {
        if !self.read && !self.write && self.shut {
            return None;
        }
        let mut f = EpollFlags::empty();
        if self.read {
            f |= EpollFlags::EPOLLIN;
        }
        if self.write {
            f |= EpollFlags::EPOLLOUT;
        }
        Some(f)
    }
}

/// What happened to a socket, as epoll said.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ready {
    /// `EPOLLIN` or `EPOLLRDHUP`: data or the peer's FIN.
    pub readable: bool,
    /// `EPOLLOUT`: room to write, or a connect completed.
    pub writable: bool,
    /// `EPOLLHUP`.
    pub hup: bool,
    /// `EPOLLERR`.
    pub error: bool,
}

impl From<EpollFlags> for Ready {
    fn from(f: EpollFlags) -> Self {
        Ready {
            readable: f.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP),
            writable: f.contains(EpollFlags::EPOLLOUT),
            hup: f.contains(EpollFlags::EPOLLHUP),
            error: f.contains(EpollFlags::EPOLLERR),
        }
    }
}

/// What the caller should do after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Still going: watch the initiator as `watch[0]` says and the target
    /// as `watch[1]` (needed for level-triggered registration only). With
    /// `again`, a pump stopped at [`PUMP_BUDGET`]: call
    /// [`SpliceConn::pump`] again soon.
    Open {
        /// Per end, initiator first.
        watch: [Interest; 2],
        /// Work is left that no event will announce.
        again: bool,
    },
    /// Both directions were shut and drained: drop the connection.
    Closed,
    /// `end` failed with `errno`: both sockets are set to close with an
    /// RST; drop the connection.
    Reset {
        /// The socket that failed.
        end: End,
        /// Why.
        errno: Errno,
    },
    /// The target's connect failed: the initiator is set to close with an
    /// RST; drop the connection.
    ConnectFailed(Errno),
}

/// One direction: source socket → pipe → destination socket.
#[derive(Debug)]
struct Dir {
    /// The pipe's read end.
    rd: OwnedFd,
    /// The pipe's write end.
    wr: OwnedFd,
    /// Bytes the pipe holds at most, as the kernel sized it.
    capacity: usize,
    /// Bytes in the pipe.
    pending: usize,
    /// The source's EOF was read.
    eof: bool,
    /// The destination was shut for writing.
    shut: bool,
    /// Bytes delivered to the destination.
    moved: u64,
    /// The destination refused the last splice into it (`EAGAIN`): only
    /// its output event (or a hang-up or error) can change that, so the
    /// source's input events meanwhile cost no call into the destination.
    blocked: bool,
    /// `splice` calls made, those that moved nothing included.
    splices: u64,
}

/// Two TCP sockets joined both ways; see the module documentation.
#[derive(Debug)]
pub struct SpliceConn {
    /// Initiator, target.
    socks: [OwnedFd; 2],
    /// `dirs[i]` carries data from `socks[i]` to the other socket.
    dirs: [Dir; 2],
    /// The target's connect is still in progress.
    connecting: bool,
    /// Set once the connection is over: every later event gets it again.
    done: Option<Outcome>,
}

fn idx(end: End) -> usize {
    match end {
        End::Initiator => 0,
        End::Target => 1,
    }
}

fn end_of(i: usize) -> End {
    if i == 0 { End::Initiator } else { End::Target }
}

/// Retry a call interrupted by a signal.
fn retry<T>(mut f: impl FnMut() -> nix::Result<T>) -> nix::Result<T> {
    loop {
        match f() {
            Err(Errno::EINTR) => {}
            r => return r,
        }
    }
}

/// A non-blocking pipe, grown towards `want` bytes as far as the kernel
/// lets us; returns its ends and its capacity.
fn make_pipe(want: usize) -> io::Result<(OwnedFd, OwnedFd, usize)> {
    let (rd, wr) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
    let current = usize::try_from(fcntl(&wr, FcntlArg::F_GETPIPE_SZ)?).unwrap_or(0);
    // The kernel rounds sizes up to a power of two of pages, up to 2^31.
    let mut size = want
        .checked_next_power_of_two()
        .unwrap_or(1 << 30)
        .min(1 << 30);
    // Unprivileged, the limit is /proc/sys/fs/pipe-max-size (EPERM above
    // it), or the per-user total (EPERM for any growth): halve and retry,
    // down to what the pipe already has.
    while size > current {
        let arg = i32::try_from(size).unwrap_or(i32::MAX);
        if let Ok(n) = fcntl(&wr, FcntlArg::F_SETPIPE_SZ(arg)) {
            return Ok((rd, wr, usize::try_from(n).unwrap_or(size)));
        }
        size /= 2;
    }
    Ok((rd, wr, current))
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    if !flags.contains(OFlag::O_NONBLOCK) {
        fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    }
    Ok(())
}

/// Make the next close of `fd` send an RST.
fn set_reset_on_close(fd: &OwnedFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // Failing leaves an ordinary close: the peer sees a FIN rather than an
    // RST, which is all we could do anyway.
    let _ = setsockopt(fd, sockopt::Linger, &linger);
}

/// The socket's pending error (`SO_ERROR`, which reading clears), if any.
fn take_error(fd: &OwnedFd) -> Option<Errno> {
    match getsockopt(fd, sockopt::SocketError) {
        Ok(0) => None,
        Ok(e) => Some(Errno::from_raw(e)),
        Err(e) => Some(e),
    }
}

fn is_connected(fd: &OwnedFd) -> bool {
    getpeername::<SockaddrStorage>(fd.as_raw_fd()).is_ok()
}

/// How a pump of one direction ended.
enum Pumped {
    /// Stalled, waiting for an event (or done).
    Idle,
    /// Stopped at the budget with work left.
    Budget,
    /// A socket failed.
    Failed(usize, Errno),
}

impl SpliceConn {
    /// Join `initiator` and `target`, both connected TCP sockets (the
    /// target may still be connecting, non-blocking: that is told by
    /// `getpeername`, and the connect completes on its first output event).
    /// Both are made non-blocking. Each direction gets a pipe of up to
    /// `pipe_size` bytes ([`PIPE_SIZE`] is a good choice), less if the
    /// kernel won't allow it.
    ///
    /// # Errors
    /// Creating the pipes (`EMFILE`, `ENFILE`) or setting `O_NONBLOCK`.
    pub fn new(
        initiator: impl Into<OwnedFd>,
        target: impl Into<OwnedFd>,
        pipe_size: usize,
    ) -> io::Result<Self> {
        let socks = [initiator.into(), target.into()];
        for s in &socks {
            set_nonblocking(s)?;
        }
        let connecting = !is_connected(&socks[1]);
        let want = pipe_size.max(1);
        let pipes = [make_pipe(want)?, make_pipe(want)?];
        let dir = |(rd, wr, capacity)| Dir {
            rd,
            wr,
            capacity,
            pending: 0,
            eof: false,
            shut: false,
            moved: 0,
            blocked: false,
            splices: 0,
        };
        Ok(SpliceConn {
            socks,
            dirs: pipes.map(dir),
            connecting,
            done: None,
        })
    }

    /// Give up on the connection: both sockets close with an RST.
    pub fn reset_both(self) {
        for s in &self.socks {
            set_reset_on_close(s);
        }
    }

    /// The socket at `end`, to register with epoll.
    #[must_use]
    pub fn socket(&self, end: End) -> BorrowedFd<'_> {
        self.socks[idx(end)].as_fd()
    }

    /// Bytes delivered so far from the socket at `from` to the other one.
    #[must_use]
    pub fn moved(&self, from: End) -> u64 {
        self.dirs[idx(from)].moved
    }

    /// `splice` calls made so far for the data from the socket at `from`.
    #[must_use]
    pub fn splices(&self, from: End) -> u64 {
        self.dirs[idx(from)].splices
    }

    /// Bytes the pipe carrying data from `from` holds at most.
    #[must_use]
    pub fn pipe_capacity(&self, from: End) -> usize {
        self.dirs[idx(from)].capacity
    }

    /// Whether the target's connect is still in progress.
    #[must_use]
    pub fn is_connecting(&self) -> bool {
        self.connecting
    }

    /// What the socket at `end` should be watched for now.
    #[must_use]
    pub fn interest(&self, end: End) -> Interest {
        let i = idx(end);
        let out = &self.dirs[i];
        let inn = &self.dirs[1 - i];
        let connecting = self.connecting && i == 1;
        Interest {
            read: !connecting && !out.eof && out.pending == 0,
            write: connecting || inn.pending > 0,
            shut: inn.shut,
        }
    }

    /// Handle an event `ready` on the socket at `end`: complete the
    /// target's connect, or move what can be moved in the directions it
    /// concerns.
    pub fn on_event(&mut self, end: End, ready: Ready) -> Outcome {
        if let Some(o) = self.done {
            return o;
        }
        let i = idx(end);
        let mut dirs = [false; 2];
        if self.connecting && i == 1 {
            if !(ready.writable || ready.hup || ready.error) {
                return self.open(false);
            }
            if let Some(e) = take_error(&self.socks[1]) {
                return self.connect_failed(e);
            }
            if !is_connected(&self.socks[1]) {
                if ready.hup {
                    // Closed without an error to tell: it never will.
                    return self.connect_failed(Errno::ECONNABORTED);
                }
                return self.open(false);
            }
            self.connecting = false;
            dirs = [true; 2];
        } else {
            // Errors on a socket whose streams are both complete (EOF read,
            // write side shut) change nothing for its peer.
            let retired = self.dirs[i].eof && self.dirs[1 - i].shut;
            if ready.error
                && !retired
                && let Some(e) = take_error(&self.socks[i])
            {
                return self.reset(i, e);
            }
            if ready.readable || ready.hup || ready.error {
                dirs[i] = true;
            }
            if ready.writable || ready.hup || ready.error {
                // Room to write matters only to data already in the pipe:
                // with the pipe empty, the source was read until `EAGAIN`
                // and its own input event comes with anything new. An
                // edge-triggered socket reports its output state with
                // every input event, so this spares a call per event.
                let into = &mut self.dirs[1 - i];
                into.blocked = false;
                dirs[1 - i] = into.pending > 0 || ready.hup || ready.error;
            }
        }
        self.pump_dirs(dirs)
    }

    /// Move what can be moved both ways, without an event: after
    /// [`Outcome::Open`] with `again`, or to start right after `new` if
    /// registration might miss data already queued.
    pub fn pump(&mut self) -> Outcome {
        if let Some(o) = self.done {
            return o;
        }
        self.pump_dirs([true; 2])
    }

    fn pump_dirs(&mut self, which: [bool; 2]) -> Outcome {
        let mut again = false;
        for (d, &go) in which.iter().enumerate() {
            if !go {
                continue;
            }
            match self.pump_one(d) {
                Pumped::Idle => {}
                Pumped::Budget => again = true,
                Pumped::Failed(at, e) => return self.reset(at, e),
            }
        }
        if self.dirs.iter().all(|d| d.shut) {
            self.done = Some(Outcome::Closed);
            return Outcome::Closed;
        }
        self.open(again)
    }

    /// Pump direction `d` (from `socks[d]` to the other socket).
    fn pump_one(&mut self, d: usize) -> Pumped {
        let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
        let src_connecting = self.connecting && d == 1;
        let dst_connecting = self.connecting && d == 0;
        let [sock0, sock1] = &self.socks;
        let (src, dst) = if d == 0 {
            (sock0, sock1)
        } else {
            (sock1, sock0)
        };
        let dir = &mut self.dirs[d];
        if dir.shut || src_connecting {
            return Pumped::Idle;
        }
        let mut filled = 0usize;
        // Once the destination refused, it stays full until its output
        // event, which brings us back.
        let dst_full = |dir: &Dir| dst_connecting || dir.blocked;
        loop {
            let mut progress = false;
            let room = dir.capacity.saturating_sub(dir.pending);
            if !dir.eof && room > 0 {
                dir.splices += 1;
                match retry(|| splice(src, None, &dir.wr, None, room, flags)) {
                    Ok(0) => {
                        dir.eof = true;
                        progress = true;
                    }
                    Ok(n) => {
                        dir.pending += n;
                        filled += n;
                        progress = true;
                    }
                    // The source is dry, or the pipe full (its slots can run
                    // out before its bytes): either way the drain decides.
                    Err(Errno::EAGAIN) => {}
                    Err(e) => return Pumped::Failed(d, e),
                }
            }
            if dir.pending > 0 && !dst_full(dir) {
                dir.splices += 1;
                match retry(|| splice(&dir.rd, None, dst, None, dir.pending, flags)) {
                    Ok(n) => {
                        dir.pending -= n;
                        dir.moved += n as u64;
                        progress |= n > 0;
                    }
                    Err(Errno::EAGAIN) => dir.blocked = true,
                    Err(e) => return Pumped::Failed(1 - d, e),
                }
            }
            if !progress {
                break;
            }
            if filled >= PUMP_BUDGET {
                return Pumped::Budget;
            }
        }
        if dir.eof && dir.pending == 0 && !dst_connecting {
            match shutdown(dst.as_raw_fd(), Shutdown::Write) {
                Ok(()) => dir.shut = true,
                // ENOTCONN after an RST: the socket's own error says more.
                Err(e) => return Pumped::Failed(1 - d, take_error(dst).unwrap_or(e)),
            }
        }
        Pumped::Idle
    }

    fn open(&self, again: bool) -> Outcome {
        Outcome::Open {
            watch: [self.interest(End::Initiator), self.interest(End::Target)],
            again,
        }
    }

    fn reset(&mut self, at: usize, errno: Errno) -> Outcome {
        for s in &self.socks {
            set_reset_on_close(s);
        }
        let o = Outcome::Reset {
            end: end_of(at),
            errno,
        };
        self.done = Some(o);
        o
    }

    fn connect_failed(&mut self, errno: Errno) -> Outcome {
        set_reset_on_close(&self.socks[0]);
        let o = Outcome::ConnectFailed(errno);
        self.done = Some(o);
        o
    }
}

#[cfg(test)]
mod tests;
