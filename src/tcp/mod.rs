//! TCP translation: one host socket per connection, and no copy of the
//! data in user space. The guest opens connections to the host's peers;
//! host peers open them to the guest through forwarded ports (`-t`,
//! `accept`: our SYN to the guest, whose SYN-ACK establishes it).
//!
//! Theory of operation: a SYN from the guest opens a connection slot and a
//! non-blocking `connect()` to the destination as the host must see it
//! (`fwd::outbound`, which also refuses what no host socket may reach). When the connect completes the guest gets a SYN-ACK
//! (or an RST if it failed), and from then on the two byte streams are
//! mirrored:
//!
//! - guest → host: an in-order payload is written to the socket and the
//!   guest is acknowledged for what the kernel took, no more; out-of-order
//!   segments are dropped and the expected sequence number is ACKed again,
//!   so the guest retransmits. The window we advertise is the data the
//!   socket's send buffer surely still takes (`Conn::room`: its free memory
//!   from `SO_MEMINFO`, less the kernel's overhead per segment), so a
//!   segment inside it is never refused. When that leaves the socket full
//!   in the kernel's eyes, epoll looks at it again (`Conn::arm_space`):
//!   the kernel then reports `EPOLLOUT` as soon as the host peer's ACKs
//!   free room, and the guest gets its window update at once. Within a
//!   batch of frames, in-order data is acknowledged once per connection,
//!   at the end (`Tcp::end_batch`). Host sockets have no Nagle of their
//!   own (`no_nagle`): the guest already chose when small segments
//!   leave. Inside a batch of several frames, a connection's segments
//!   that continue its stream are gathered and written with one
//!   `sendmsg` when the run ends (`gather`); data that still goes
//!   before the batch's end goes with `MSG_MORE`, pushed at the end, so
//!   the kernel still gathers small segments into full ones.
//! - host → guest: data stays in the socket's receive queue until the
//!   guest acknowledges it. It is read with `MSG_PEEK` straight into frames
//!   in the guest's queue, from `SO_PEEK_OFF`, up to the guest's window
//!   (where the guest takes no offloads, a run of frames of one segment
//!   each per call: `Conn::peek_run`);
//!   an ACK discards that many bytes (`MSG_TRUNC`). After `RTO` without
//!   progress or three duplicate ACKs the peek offset goes back to the
//!   first unacknowledged byte and the data is sent again. Kernels without
//!   `SO_PEEK_OFF` for TCP (before 6.10) peek from the first unread byte
//!   into a scratch buffer and throw the already-sent prefix away: a copy
//!   of everything in flight per segment, so in flight is capped lower.
//! - close: the socket's EOF becomes our FIN once all data is out, the
//!   guest's FIN a `shutdown(SHUT_WR)`; the slot is freed when both ways
//!   are closed and our FIN is acknowledged. An RST from the guest closes
//!   the socket with `SO_LINGER` 0 (an RST to the peer); a socket error
//!   becomes an RST to the guest.
//!
//! Sockets are watched edge-triggered: unread data is left in the kernel
//! on purpose, so a level-triggered `EPOLLIN` would fire again and again
//! while the guest's window is full. Sending resumes on the guest's ACKs,
//! the next edge, or a short poll when the guest's queue was full.
//!
//! Connections live in the loop's flow table (`flow::Flows`): the tap side
//! is (guest address:port, destination as the guest sees it), the host
//! side (our socket's address:port, the destination as the host sees it).
//!
//! Limits: TCP's reserve of the flow table and what it can get of the
//! shared pool; `HANDSHAKE_TIMEOUT` from the SYN to connect and complete
//! the handshake; `MAX_RETRIES` retransmissions without progress reset
//! the connection. An idle connection lives as long as both its peers do
//! (`Keepalive`): a guest silent for two hours is probed, and reset if it
//! answers none of nine probes; the kernel probes the host peer
//! (`SO_KEEPALIVE`), and a socket that timed out becomes an RST to the
//! guest. Under pressure, connections still in the handshake are listed
//! in the table oldest first: when TCP has no room or the descriptors run
//! out, the oldest of them is reset to make room, and an established
//! connection never is; with none in the handshake, a new SYN gets an RST.
//! Still to come: SACK and timestamps. pasta's loopback path, which joins
//! two sockets with `splice(2)` and never reaches the tap, is [`splice`]
//! (the engine) and [`spliced`] (its flows in the loop).

mod gather;
mod ooo;
mod seq;
pub mod splice;
pub mod spliced;

use crate::conf::Config;
use crate::event::{EpollRef, EventLoop};
use crate::flow::{self, End, Flow, FlowRef, FlowSide, Flows, Kind, Side, SideRef, Sides, Waiting};
use crate::fwd::listen::Listener;
use crate::fwd::{self, GuestAddrs, Proto, Refused};
use crate::sys;
use crate::tap::vnet::Gso;
use crate::tap::{MAX_FRAME, RUN_MAX, TxQueue};
use crate::wire::tcp::{self as wire_tcp, Flags, Packet, TcpRepr};
use crate::wire::{compose, ethernet, ipv4, ipv6};
use nix::errno::Errno;
use nix::sys::epoll::EpollFlags;
use nix::sys::socket::{
    AddressFamily, MsgFlags, Shutdown, SockFlag, SockType, SockaddrIn, SockaddrIn6, connect,
    getsockopt, recv, recvmsg, sendmsg, setsockopt, shutdown, socket, sockopt,
};
use seq::{Fit, after};
use std::hash::{BuildHasher, Hash, Hasher};
use std::io::{IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime};

/// Time from the guest's SYN to the end of the handshake (our connect()
/// and the guest's ACK of our SYN-ACK). A connection that takes longer is
/// most likely aimed at nothing, and holds a socket someone else needs.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How an idle connection's peers are checked: the guest by probes of
/// ours, the host peer by the kernel's (`SO_KEEPALIVE` on our socket).
/// Without traffic, a connection lives as long as both answer, as one
/// between two hosts does: a reset after some idle time would break a
/// connection pool's link to a database left idle overnight, whose host
/// peer's own keepalives are answered by our socket's kernel and never
/// reach us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Silence from the guest before the first probe.
    pub idle: Duration,
    /// Between probes.
    pub interval: Duration,
    /// Unanswered probes that reset the connection.
    pub probes: u8,
    /// Give the host socket the same times; otherwise the host's
    /// `net.ipv4.tcp_keepalive_*` settings apply (by default those of
    /// `KEEPALIVE`).
    tune_socket: bool,
}

/// Linux's defaults for keepalives (`tcp_keepalive_time`, `_intvl`,
/// `_probes`).
pub const KEEPALIVE: Keepalive = Keepalive {
    idle: Duration::from_secs(2 * 3600),
    interval: Duration::from_secs(75),
    probes: 9,
    tune_socket: false,
};

/// Set to a number of seconds N in the environment, keepalives start
/// after N idle seconds, every N seconds, and three unanswered ones reset
/// the connection, on both sides: a testing aid, so tests can watch dead
/// peers found without waiting two hours. Read once, at start-up.
pub const KEEPALIVE_SECS_ENV: &str = "PASST_RS_TCP_KEEPALIVE_SECS";

/// Retransmission timeout (doubled per retry, up to 32 s).
pub const RTO: Duration = Duration::from_secs(1);
/// Retransmissions without progress before we give up.
pub const MAX_RETRIES: u8 = 8;
/// Our window scale shift (RFC 7323), when the guest offers scaling.
const WSCALE: u8 = 7;
/// Most bytes in flight towards the guest per connection.
pub const MAX_IN_FLIGHT: usize = 2 << 20;
/// The same without `SO_PEEK_OFF`: also the scratch buffer's size.
pub const FALLBACK_IN_FLIGHT: usize = 256 << 10;
/// Connections accepted per listener event.
const ACCEPT_BURST: usize = 64;
/// Poll interval when the guest's queue was full or our window closed.
const POLL: Duration = Duration::from_millis(5);
/// While our window stays shut, polls back off up to `POLL` << this (160 ms).
const POLL_MAX_SHIFT: u8 = 5;
/// Set (to anything) in the environment, TCP never uses `SO_PEEK_OFF`:
/// the path kernels before 6.10 take, forced for tests on newer ones.
pub const NO_PEEK_OFF_ENV: &str = "PASST_RS_NO_PEEK_OFF";
/// The MTU when the configuration leaves it unset.
const DEFAULT_MTU: usize = 65520;
/// Ethernet + IPv6 + TCP with our SYN options: room for any header we build.
const MAX_HEADERS: usize = ethernet::HEADER_LEN + ipv6::HEADER_LEN + 28;
/// Payload of a TCP super-segment towards the guest (segmentation
/// offload): what an IPv4 packet of 64 KiB holds after its headers, so
/// it fits either family.
const TSO_MAX_PAYLOAD: usize = 65535 - ipv4::HEADER_LEN - wire_tcp::HEADER_LEN;
/// Most of the guest's full-size segments our window lets it have in
/// flight. They wait in the tap device's queue until we read them, and
/// the device drops what doesn't fit (`txqueuelen`, 1000 frames by
/// default): with a small MTU, a window as large as the socket's buffer
/// made the guest burst past it, lose frames and fall back to
/// retransmissions. This is also what one batch of frames holds.
const GUEST_SEGMENTS_IN_FLIGHT: usize = crate::tap::BATCH_MAX;
/// Memory the kernel charges per segment queued on a socket beyond its
/// data (an skb's head and bookkeeping: about 1.3 KiB on Linux 6.x),
/// rounded up: a send buffer holds less data than its size, the less the
/// smaller the guest's segments.
const SKB_OVERHEAD: usize = 2048;

/// Why a segment from the guest was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TcpDrop {
    /// `--no-tcp`.
    #[error("TCP disabled")]
    Disabled,
    /// Bad header length or checksum.
    #[error("malformed segment")]
    Malformed,
    /// Nothing a host socket may connect to for the guest
    /// (`fwd::outbound`); the guest gets an RST.
    #[error("destination refused: {0}")]
    Destination(Refused),
    /// No room for TCP, and every connection is established (none to
    /// evict): the guest gets an RST.
    #[error("no room for another TCP connection")]
    TableFull,
    /// The host refused the socket.
    #[error("TCP socket: {0}")]
    Socket(Errno),
}

/// What became of a segment the guest sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Handled.
    Done,
    /// Left alone: it starts past a gap, and the caller asked to hold
    /// such segments (the missing one may come later in the same batch).
    Ahead,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `connect()` in progress; the guest waits for our SYN-ACK.
    Connecting,
    /// A host peer's connection through a forwarded port, accepted: our
    /// SYN went to the guest, which must answer with its SYN-ACK.
    SynSent,
    /// SYN-ACK sent, waiting for the guest's ACK.
    SynRcvd,
    /// Data flows.
    Established,
}

/// What to do with a connection after handling something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Keep,
    /// Both directions closed: free the slot.
    Close,
    /// Reset: RST to the guest, `SO_LINGER` 0 on the socket.
    Abort,
    /// The guest reset: `SO_LINGER` 0, nothing to the guest.
    Reset,
}

/// A TCP connection: its sides, its host socket and the state of both
/// byte streams.
pub struct Conn {
    sides: Sides,
    sock: OwnedFd,
    state: State,
    // Guest to host.
    /// Next sequence number we expect from the guest.
    rcv_nxt: u32,
    /// Right edge of any window we advertised (RCV.NXT + RCV.WND at its
    /// furthest): where acceptable sequence numbers end.
    rcv_edge: u32,
    /// The guest's FIN was taken (socket shut for writing).
    guest_fin: bool,
    /// Window scale we apply to our window field (0: guest didn't offer).
    our_ws: u8,
    /// Window we last advertised, in bytes.
    adv_wnd: usize,
    /// MSS we told the guest.
    our_mss: u16,
    // Host to guest.
    iss: u32,
    snd_una: u32,
    snd_nxt: u32,
    /// Highest sequence number sent so far, plus one: after a rewind
    /// `snd_nxt` goes back but ACKs up to here are still good.
    snd_max: u32,
    /// The guest's window, in bytes.
    snd_wnd: usize,
    /// Sequence and acknowledgment numbers of the segment that last set
    /// `snd_wnd` (RFC 9293 SND.WL1, SND.WL2): an older one can't override it.
    wl1: u32,
    wl2: u32,
    /// The guest's window scale.
    peer_ws: u8,
    /// Segment size towards the guest.
    mss: usize,
    /// Sequence number of our FIN, once sent (it stays put across rewinds).
    fin_seq: Option<u32>,
    fin_acked: bool,
    /// The socket reported the peer's FIN (`EPOLLRDHUP`).
    peer_eof: bool,
    dup_acks: u8,
    /// In fast recovery until this sequence number is acknowledged
    /// (RFC 6582 "recover"): partial ACKs retransmit the next hole.
    recover: Option<u32>,
    /// Retransmit the first unacknowledged segment at the next chance.
    retransmit: bool,
    retries: u8,
    rto_at: Option<Instant>,
    /// Zero-window probe towards the guest (RFC 9293 3.8.6.1).
    persist_at: Option<Instant>,
    persist_backoff: u8,
    /// Look at the socket again: our window was closed, or the guest's
    /// queue was full.
    poll_at: Option<Instant>,
    poll_backoff: u8,
    /// The guest's queue was full: push again once it drains.
    tap_blocked: bool,
    /// Whether we wait for room in the socket's send buffer (`arm_space`).
    space: Space,
    /// The socket may hold data we haven't peeked: set by every socket
    /// event, cleared when a peek finds nothing new. Saves a failing peek
    /// per guest segment while data only flows towards the host.
    host_unread: bool,
    /// Listed in `Tcp::blocked` (at most once).
    listed_blocked: bool,
    /// Listed in `Tcp::acks_due`: an ACK goes at the end of the batch.
    ack_due: bool,
    /// Listed in `Tcp::corked`: data went to the socket with `MSG_MORE`
    /// in this batch, and is pushed at its end.
    corked: bool,
    /// Listed in `Tcp::pushes_due`: the guest's ACKs in this batch opened
    /// its window, and what it lets through goes at the batch's end.
    push_due: bool,
    /// When the guest last sent a segment (in the handshake: the SYN, or
    /// our accept of the host peer).
    last: Instant,
    /// Keepalive probes sent since then, none answered.
    ka_probes: u8,
    /// `SO_PEEK_OFF` works on this socket.
    peek_off: bool,
    /// Bytes the guest acknowledged that are still in the socket: removed
    /// (`settle`) before anything looks at the socket's queue again, not
    /// when the ACK arrives, so a segment carrying both an ACK and data
    /// writes its data first. For a request/response peer that takes the
    /// discard off the path to the host peer. Never more than was in
    /// flight: a `u32`, as sequence numbers are.
    acked_unread: u32,
}

/// Whether a connection waits for the kernel to report room in its
/// socket's send buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Space {
    /// Not waiting.
    Idle,
    /// Our window is low and the kernel would call the socket full: ask
    /// epoll to look at it again (`arm_space`), so the kernel notes that
    /// we wait for room and reports `EPOLLOUT` when some is freed.
    Want,
    /// Asked, and no `EPOLLOUT` since.
    Armed,
}

/// What a peek for the next bytes to send found.
enum Peeked {
    /// The guest's queue had no room: nothing was tried.
    NoRoom,
    /// This many new bytes, now in a frame; and whether they were all the
    /// socket held (a peek from `SO_PEEK_OFF` that came back short: TCP
    /// hands a peek everything queued up to its length).
    Data(usize, bool),
    /// Nothing new yet.
    Nothing,
    /// The peer closed and everything it sent is in flight.
    Eof,
    /// The socket failed.
    Failed(Errno),
}

impl Conn {
    /// A connection between `sides` through `sock`, our initial sequence
    /// number `iss`, before anything is known of the guest's end.
    fn new(sides: Sides, sock: OwnedFd, iss: u32, our_mss: u16, now: Instant) -> Conn {
        Conn {
            sides,
            sock,
            state: State::SynSent,
            rcv_nxt: 0,
            rcv_edge: 0,
            guest_fin: false,
            our_ws: 0,
            adv_wnd: 0,
            our_mss,
            iss,
            snd_una: iss,
            snd_nxt: iss.wrapping_add(1),
            snd_max: iss.wrapping_add(1),
            snd_wnd: 0,
            wl1: 0,
            wl2: iss,
            peer_ws: 0,
            mss: usize::from(our_mss),
            fin_seq: None,
            fin_acked: false,
            peer_eof: false,
            dup_acks: 0,
            recover: None,
            retransmit: false,
            retries: 0,
            rto_at: None,
            persist_at: None,
            persist_backoff: 0,
            poll_at: None,
            poll_backoff: 0,
            tap_blocked: false,
            space: Space::Idle,
            host_unread: true,
            listed_blocked: false,
            ack_due: false,
            corked: false,
            push_due: false,
            last: now,
            ka_probes: 0,
            peek_off: false,
            acked_unread: 0,
        }
    }

    /// The connection's sides: the guest's, and our host socket's.
    pub fn sides(&self) -> &Sides {
        &self.sides
    }

    /// The side on the tap: the initiator of a guest's connection, the
    /// target of one accepted through a forwarded port.
    fn tap(&self) -> &FlowSide {
        self.sides.tap()
    }

    /// The guest's address and port.
    fn guest(&self) -> SocketAddr {
        self.tap().peer
    }

    /// The host peer's address and port as the guest sees them.
    fn remote(&self) -> SocketAddr {
        self.tap().ours
    }

    /// When the guest's silence is due a keepalive probe, or (with every
    /// probe sent) the connection's reset; in the handshake, its timeout.
    fn silence_ends(&self, ka: &Keepalive) -> Instant {
        if self.state == State::Established {
            self.last + ka.idle + ka.interval * u32::from(self.ka_probes)
        } else {
            self.last + HANDSHAKE_TIMEOUT
        }
    }

    fn deadline(&self, ka: &Keepalive) -> Instant {
        let silence = self.silence_ends(ka);
        [self.rto_at, self.poll_at, self.persist_at]
            .into_iter()
            .flatten()
            .fold(silence, Instant::min)
    }

    /// The most payload one frame to the guest carries: its MSS, or with
    /// segmentation offload as much as one IP packet holds, which the
    /// kernel takes as MSS-sized segments.
    fn seg_max(&self, tx: &TxQueue) -> usize {
        if tx.offload() {
            TSO_MAX_PAYLOAD.max(self.mss)
        } else {
            self.mss
        }
    }

    fn in_flight(&self) -> usize {
        self.snd_nxt.wrapping_sub(self.snd_una) as usize
    }

    /// Our FIN is the last thing sent and not yet acknowledged.
    fn fin_in_flight(&self) -> bool {
        self.fin_seq
            .is_some_and(|f| self.snd_nxt == f.wrapping_add(1) && !self.fin_acked)
    }

    fn header(&self, flags: Flags, seq: u32) -> TcpRepr {
        TcpRepr {
            src_port: self.remote().port(),
            dst_port: self.guest().port(),
            seq,
            ack: self.rcv_nxt,
            flags,
            window: seq::window_field(self.adv_wnd, self.our_ws),
            mss: None,
            wscale: None,
        }
    }

    /// Room in the socket's send buffer, as the window for the guest: the
    /// data the kernel will surely take, so a segment inside our window is
    /// never refused. Also whether the kernel calls the socket full now
    /// (it only signals write space later if someone saw it full).
    fn room(&self) -> (usize, bool) {
        let fd = self.sock.as_fd();
        let Ok((buf, queued)) = sys::tcp::send_mem(fd) else {
            // No SO_MEMINFO: half the buffer for data (the kernel doubles
            // SO_SNDBUF for its overhead), less what is queued.
            let buf = getsockopt(&fd, sockopt::SndBuf).unwrap_or(0);
            let queued = sys::tcp::outq(fd).unwrap_or(usize::MAX);
            return ((buf / 2).saturating_sub(queued), false);
        };
        let free = buf.saturating_sub(queued);
        // A write is taken while the queue's memory is below the buffer;
        // how much data that memory holds depends on how the writes are
        // cut into segments. Each of the guest's segments (its MSS, as it
        // sends in bulk) may cost its data and `SKB_OVERHEAD`, or more, as
        // the queue itself says when it holds enough to tell (SIOCOUTQ:
        // its data); whichever is less. Queued data that was coalesced
        // says more than the next segments may get if they leave at once.
        // And never more than `GUEST_SEGMENTS_IN_FLIGHT` segments.
        let seg = self.mss.clamp(536, usize::from(self.our_mss).max(536));
        let mut ratio = (seg as u64, (seg + SKB_OVERHEAD) as u64);
        if queued >= buf / 8
            && queued > 0
            && let Ok(outq) = sys::tcp::outq(fd)
        {
            let (data, mem) = (outq.min(queued) as u64, queued as u64);
            if data * ratio.1 < ratio.0 * mem {
                ratio = (data, mem);
            }
        }
        let room = (free as u64 * ratio.0 / ratio.1).min((seg * GUEST_SEGMENTS_IN_FLIGHT) as u64);
        // tcp_poll() calls a socket writable while its free space is at
        // least half of what is queued (sk_stream_is_writeable).
        (
            usize::try_from(room).unwrap_or(usize::MAX),
            free < queued / 2,
        )
    }

    /// When our window is low (`refresh_window`): have epoll look at the
    /// socket again, which makes the kernel note that we wait for room
    /// (SOCK_NOSPACE): freed space is then an EPOLLOUT edge, and the
    /// guest's window reopens as soon as the host peer acknowledges,
    /// rather than at our next poll.
    fn arm_space(&mut self, r: FlowRef, ev: &EventLoop) {
        if self.space == Space::Want {
            let armed = ev
                .rearm_edge(&self.sock, epoll_ref(r, self.sides.host_end()))
                .is_ok();
            self.space = if armed { Space::Armed } else { Space::Idle };
        }
    }

    /// Take our window from the socket's room (`room`).
    fn refresh_window(&mut self) {
        let (room, full) = self.room();
        self.adv_wnd = room;
        if full && self.space == Space::Idle {
            self.space = Space::Want;
        }
    }

    /// Queue a segment without payload.
    fn emit(&self, link: compose::Link, tx: &mut TxQueue, hdr: &TcpRepr) -> bool {
        emit_segment(link, tx, self.remote(), self.guest(), hdr, 0, |_| 0)
    }

    /// Refresh our window and acknowledge.
    fn ack(&mut self, link: compose::Link, tx: &mut TxQueue, now: Instant) {
        self.ack_due = false;
        // Past the guest's FIN, its window means nothing.
        if !self.guest_fin {
            self.refresh_window();
        }
        // The window is scaled: what the guest sees is rounded down.
        let wnd = (self.adv_wnd >> self.our_ws << self.our_ws) as u32;
        let edge = self.rcv_nxt.wrapping_add(wnd);
        if after(edge, self.rcv_edge) {
            self.rcv_edge = edge;
        }
        if self.adv_wnd < self.mss.max(usize::from(self.our_mss)) {
            // The socket's EPOLLOUT (`arm_space`) usually tells us first;
            // in case the kernel didn't see it full after all, look again,
            // sooner at first, then backing off while it stays shut.
            self.poll_at = Some(now + POLL * (1u32 << self.poll_backoff.min(POLL_MAX_SHIFT)));
        } else {
            self.poll_backoff = 0;
        }
        let hdr = self.header(Flags::ACK, self.snd_nxt);
        self.emit(link, tx, &hdr);
    }

    fn syn_ack(&mut self, link: compose::Link, tx: &mut TxQueue, now: Instant) {
        self.adv_wnd = self.room().0;
        self.rcv_edge = self
            .rcv_nxt
            .wrapping_add(u32::try_from(self.adv_wnd.min(0xffff)).unwrap_or(0));
        let mut hdr = self.header(Flags::SYN | Flags::ACK, self.iss);
        // RFC 7323 2.2: the window field of a SYN is never scaled.
        hdr.window = seq::window_field(self.adv_wnd, 0);
        hdr.mss = Some(self.our_mss);
        hdr.wscale = (self.our_ws > 0).then_some(self.our_ws);
        self.emit(link, tx, &hdr);
        self.rto_at = Some(now + backoff(self.retries));
    }

    /// Our SYN, for a connection accepted through a forwarded port: we
    /// always offer window scaling, and keep it only if the guest does.
    fn syn(&mut self, link: compose::Link, tx: &mut TxQueue, now: Instant) {
        self.adv_wnd = self.room().0;
        let mut hdr = self.header(Flags::SYN, self.iss);
        hdr.ack = 0;
        hdr.window = seq::window_field(self.adv_wnd, 0);
        hdr.mss = Some(self.our_mss);
        hdr.wscale = Some(WSCALE);
        self.emit(link, tx, &hdr);
        self.rto_at = Some(now + backoff(self.retries));
    }

    /// Peek up to `len` bytes following the `in_flight` already sent into
    /// a segment starting at `seq`.
    fn peek_segment(
        &self,
        link: compose::Link,
        tx: &mut TxQueue,
        scratch: &mut [u8],
        seq: u32,
        in_flight: usize,
        len: usize,
    ) -> Peeked {
        let hdr = self.header(Flags::ACK | Flags::PSH, seq);
        let fd = self.sock.as_fd();
        let mut got = Peeked::NoRoom;
        emit_data(
            link,
            tx,
            self.remote(),
            self.guest(),
            &hdr,
            len,
            self.mss,
            |p| {
                got = if self.peek_off {
                    match recv(
                        fd.as_raw_fd(),
                        p,
                        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
                    ) {
                        // From the peek offset, 0 is the peer's FIN.
                        Ok(0) => Peeked::Eof,
                        Ok(n) => Peeked::Data(n, n < p.len()),
                        Err(Errno::EAGAIN | Errno::EINTR) => Peeked::Nothing,
                        Err(e) => Peeked::Failed(e),
                    }
                } else {
                    let Some(skip) = scratch.get_mut(..in_flight) else {
                        return 0;
                    };
                    match sys::tcp::peek_after(fd, skip, p) {
                        Ok(0) if in_flight == 0 => Peeked::Eof,
                        Ok(n) if n > in_flight => Peeked::Data(n - in_flight, false),
                        // Nothing beyond what is in flight. A peek can't tell
                        // "more to come" from "that was all" while data is
                        // still queued: the FIN we saw on the socket can.
                        Ok(_) if self.peer_eof => Peeked::Eof,
                        Ok(_) => Peeked::Nothing,
                        Err(e) => match Errno::from_raw(e.raw_os_error().unwrap_or(0)) {
                            Errno::EAGAIN | Errno::EINTR => Peeked::Nothing,
                            e => Peeked::Failed(e),
                        },
                    }
                };
                match got {
                    Peeked::Data(n, _) => n,
                    _ => 0,
                }
            },
        );
        got
    }

    /// Peek up to `len` bytes, from the peek offset, into a run of frames
    /// of one segment each starting at `seq` (`TxQueue::push_run`): one
    /// `recvmsg` for up to `RUN_MAX` segments where the guest takes no
    /// offloads, so a segment is one MSS. At MTU 1500 a peek per segment
    /// was most of passt's time sending to its guest: `perf` put 58% of
    /// its samples under `recvfrom`, most of it the cost of the call, not
    /// of the copy.
    fn peek_run(&self, link: compose::Link, tx: &mut TxQueue, seq: u32, len: usize) -> Peeked {
        let (from, to) = (self.remote(), self.guest());
        let data = self.header(Flags::ACK | Flags::PSH, seq);
        let l4 = if from.is_ipv4() {
            compose::L4_OFF_V4
        } else {
            compose::L4_OFF_V6
        };
        let hl = l4 + data.buffer_len();
        let mss = self.mss;
        let fd = self.sock.as_raw_fd();
        let mut got = Peeked::NoRoom;
        tx.push_run(hl + mss, len.div_ceil(mss), |frames| {
            let mut iov: [IoSliceMut; RUN_MAX] = std::array::from_fn(|_| IoSliceMut::new(&mut []));
            let (mut want, mut n) = (0, 0);
            for (f, io) in frames.iter_mut().zip(iov.iter_mut()) {
                let take = mss.min(len - want);
                let Some(p) = f.get_mut(hl..hl + take).filter(|_| take > 0) else {
                    break;
                };
                *io = IoSliceMut::new(p);
                want += take;
                n += 1;
            }
            if n == 0 {
                // No frame holds a segment (can't be: a frame is sized
                // for one); a peek into nothing would read as the EOF.
                return (0, 0);
            }
            let flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT;
            got = match recvmsg::<()>(fd, &mut iov[..n], None, flags).map(|m| m.bytes) {
                // From the peek offset, 0 is the peer's FIN.
                Ok(0) => Peeked::Eof,
                Ok(b) => Peeked::Data(b, b < want),
                Err(Errno::EAGAIN | Errno::EINTR) => Peeked::Nothing,
                Err(e) => Peeked::Failed(e),
            };
            let Peeked::Data(bytes, _) = got else {
                return (0, 0);
            };
            let made = bytes.div_ceil(mss);
            let mut last = 0;
            for (i, f) in frames.iter_mut().take(made).enumerate() {
                let plen = mss.min(bytes - i * mss);
                // At most RUN_MAX segments of at most 64 KiB: fits in u32.
                let hdr = self.header(Flags::ACK | Flags::PSH, seq.wrapping_add((i * mss) as u32));
                let out = &mut f[..hl + plen];
                last = compose::tcp(out, link, from, to, &hdr, compose::Csum::Full, |_| plen);
            }
            if last == 0 {
                // Headers that didn't fit their frame: can't be, but then
                // nothing went, and the data waits for the next try.
                got = Peeked::NoRoom;
            }
            (made, last)
        });
        got
    }

    /// Write the guest's in-order data, `iov` in order, to the socket, with
    /// `MSG_MORE` if `more`, and count in what the kernel took: `Abort` if
    /// the socket failed.
    fn write(&mut self, iov: &[IoSlice<'_>], more: bool) -> Next {
        let offered: usize = iov.iter().map(|s| s.len()).sum();
        if offered == 0 {
            return Next::Keep;
        }
        let mut flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
        if more {
            // nix has no name for it.
            flags |= MsgFlags::from_bits_retain(libc::MSG_MORE);
        }
        let taken = match sendmsg::<()>(self.sock.as_raw_fd(), iov, &[], flags, None) {
            Ok(n) => n,
            Err(Errno::EAGAIN | Errno::EINTR) => 0,
            Err(e) => {
                log::debug!("TCP {} -> {}: send: {e}", self.guest(), self.remote());
                return Next::Abort;
            }
        };
        if taken < offered {
            // Past the room our window promised: the guest sends the rest
            // again, after its retransmission timeout.
            log::debug!(
                "TCP {} -> {}: socket took {taken} of {offered} bytes",
                self.guest(),
                self.remote()
            );
        }
        // At most a run of 64 segments of 64 KiB: fits in u32.
        self.rcv_nxt = self.rcv_nxt.wrapping_add(taken as u32);
        Next::Keep
    }

    /// Send what the socket holds and the guest's window allows, then our
    /// FIN if the socket is at EOF and everything went out.
    fn push(
        &mut self,
        link: compose::Link,
        tx: &mut TxQueue,
        scratch: &mut [u8],
        now: Instant,
    ) -> Next {
        if self.settle() != Next::Keep {
            return Next::Abort;
        }
        if self.state != State::Established {
            return Next::Keep;
        }
        if self.retransmit {
            self.retransmit = false;
            if let Some(n) = self.retransmit_first(link, tx, scratch) {
                return n;
            }
        }
        let cap = if self.peek_off {
            MAX_IN_FLIGHT
        } else {
            FALLBACK_IN_FLIGHT.min(scratch.len())
        };
        // Set when a peek found the socket at EOF with everything sent.
        let mut at_end = false;
        while !self.fin_in_flight() && !self.fin_acked && self.host_unread {
            let limit = self.snd_wnd.min(cap);
            let in_flight = self.in_flight();
            if in_flight >= limit {
                break;
            }
            let room = limit - in_flight;
            let peeked = if self.peek_off && !tx.offload() && room > self.mss {
                self.peek_run(link, tx, self.snd_nxt, room.min(RUN_MAX * self.mss))
            } else {
                let len = self.seg_max(tx).min(room);
                self.peek_segment(link, tx, scratch, self.snd_nxt, in_flight, len)
            };
            match peeked {
                Peeked::NoRoom => {
                    self.tap_blocked = true;
                    break;
                }
                Peeked::Eof => {
                    at_end = true;
                    break;
                }
                Peeked::Data(n, drained) => {
                    // At most `len`, which fits in u32.
                    self.snd_nxt = self.snd_nxt.wrapping_add(n as u32);
                    if after(self.snd_nxt, self.snd_max) {
                        self.snd_max = self.snd_nxt;
                    }
                    self.rto_at.get_or_insert(now + backoff(self.retries));
                    // Everything queued is in flight: another peek would
                    // only say EAGAIN (a syscall per reply of a
                    // request/response peer). New data, or the peer's FIN,
                    // is a new edge on the socket; a FIN already seen
                    // (`peer_eof`) still needs the peek that finds it.
                    if drained && !self.peer_eof {
                        self.host_unread = false;
                        break;
                    }
                }
                Peeked::Nothing => {
                    self.host_unread = false;
                    break;
                }
                Peeked::Failed(e) => {
                    log::debug!("TCP {} -> {}: {e}", self.guest(), self.remote());
                    return Next::Abort;
                }
            }
        }
        if at_end {
            let hdr = self.header(Flags::ACK | Flags::FIN, self.snd_nxt);
            if self.emit(link, tx, &hdr) {
                self.fin_seq = Some(self.snd_nxt);
                self.snd_nxt = self.snd_nxt.wrapping_add(1);
                if after(self.snd_nxt, self.snd_max) {
                    self.snd_max = self.snd_nxt;
                }
                self.rto_at.get_or_insert(now + backoff(self.retries));
            } else {
                self.tap_blocked = true;
            }
        }
        // RFC 9293 3.8.6.1: with the guest's window shut and nothing in
        // flight to bring an ACK back, only a probe learns that it opened
        // (its window update may be lost).
        if self.snd_wnd == 0 && self.snd_max == self.snd_una && !self.fin_acked {
            self.persist_at
                .get_or_insert(now + backoff(self.persist_backoff));
        }
        self.closed()
    }

    /// Send the first unacknowledged segment again (fast retransmit, or a
    /// partial ACK in recovery), leaving `snd_nxt` where it is.
    fn retransmit_first(
        &mut self,
        link: compose::Link,
        tx: &mut TxQueue,
        scratch: &mut [u8],
    ) -> Option<Next> {
        if self.fin_seq == Some(self.snd_una) {
            let hdr = self.header(Flags::ACK | Flags::FIN, self.snd_una);
            self.emit(link, tx, &hdr);
            return None;
        }
        let data_out = self
            .fin_seq
            .map_or(self.snd_max, |f| f)
            .wrapping_sub(self.snd_una) as usize;
        let len = self.mss.min(data_out);
        if len == 0 {
            return None;
        }
        let fd = self.sock.as_fd();
        // With SO_PEEK_OFF the peek starts at the offset: move it to the
        // first unacknowledged byte for this one segment, then back.
        if self.peek_off {
            let _ = sys::tcp::set_peek_off(fd, 0);
        }
        let peek_off = self.peek_off;
        self.peek_off = false;
        let r = self.peek_segment(link, tx, scratch, self.snd_una, 0, len);
        self.peek_off = peek_off;
        if peek_off {
            let back = i32::try_from(self.in_flight()).unwrap_or(i32::MAX);
            let _ = sys::tcp::set_peek_off(fd, back);
        }
        match r {
            Peeked::Failed(e) => {
                log::debug!("TCP {} -> {}: {e}", self.guest(), self.remote());
                Some(Next::Abort)
            }
            _ => None,
        }
    }

    /// A zero-window probe: an ACK one byte before what the guest has
    /// acknowledged, which it must answer with its current window.
    fn probe(&mut self, link: compose::Link, tx: &mut TxQueue, now: Instant) {
        self.ack_old(link, tx);
        self.persist_backoff = self.persist_backoff.saturating_add(1);
        self.persist_at = Some(now + backoff(self.persist_backoff));
    }

    /// An ACK one byte before what the guest has acknowledged: outside
    /// its window, so it answers with an ACK of its own (RFC 9293
    /// 3.10.7.4), or an RST if it forgot the connection. A zero-window
    /// probe, and a keepalive probe (RFC 9293 3.8.4).
    fn ack_old(&mut self, link: compose::Link, tx: &mut TxQueue) {
        let hdr = self.header(Flags::ACK, self.snd_una.wrapping_sub(1));
        self.emit(link, tx, &hdr);
    }

    fn closed(&self) -> Next {
        if self.guest_fin && self.fin_acked {
            Next::Close
        } else {
            Next::Keep
        }
    }

    /// Go back to the first unacknowledged byte (retransmission timeout).
    fn rewind(&mut self) {
        self.snd_nxt = self.snd_una;
        self.host_unread = true;
        self.dup_acks = 0;
        self.recover = None;
        self.retransmit = false;
        // A failure stays for `push` to find.
        let _ = self.settle();
        if self.peek_off {
            let _ = sys::tcp::set_peek_off(self.sock.as_fd(), 0);
        }
    }

    /// Remove from the socket what the guest acknowledged
    /// (`acked_unread`): `Abort` if the socket failed.
    fn settle(&mut self) -> Next {
        while self.acked_unread > 0 {
            match sys::tcp::discard(self.sock.as_fd(), self.acked_unread as usize) {
                // Can't be: what was sent was in the socket.
                Ok(0) => self.acked_unread = 0,
                Ok(n) => {
                    let n = u32::try_from(n).unwrap_or(u32::MAX);
                    self.acked_unread = self.acked_unread.saturating_sub(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("TCP {} -> {}: discard: {e}", self.guest(), self.remote());
                    return Next::Abort;
                }
            }
        }
        Next::Keep
    }

    /// The guest acknowledged up to `ack` and offers `window` bytes, in a
    /// segment with sequence number `seq`. Touches no socket: what was
    /// acknowledged leaves it at the next `settle`.
    fn on_ack(&mut self, seq: u32, ack: u32, window: usize, pure: bool, now: Instant) {
        let outstanding = self.snd_max.wrapping_sub(self.snd_una) as usize;
        let acked = ack.wrapping_sub(self.snd_una) as usize;
        if acked > 0 && acked <= outstanding {
            let mut data = acked;
            if self.fin_seq == Some(ack.wrapping_sub(1)) {
                self.fin_acked = true;
                data -= 1;
            }
            // Acknowledged data was in flight: less than 2^31 bytes.
            self.acked_unread = self.acked_unread.saturating_add(data as u32);
            self.snd_una = ack;
            // Data sent before a rewind, acknowledged now: the peek offset
            // went back to 0 with the discard, as `snd_nxt` does here.
            if after(ack, self.snd_nxt) {
                self.snd_nxt = ack;
            }
            self.dup_acks = 0;
            self.retries = 0;
            self.rto_at = (self.snd_max != self.snd_una).then(|| now + RTO);
            match self.recover {
                // RFC 6582 3.2: a partial ACK means the next segment was
                // lost too.
                Some(r) if after(r, ack) => self.retransmit = true,
                Some(_) => self.recover = None,
                None => {}
            }
        } else if acked == 0 && outstanding > 0 && pure && window == self.snd_wnd {
            // RFC 5681 3.2: the third duplicate ACK means a loss; send that
            // one segment again, not the whole window.
            self.dup_acks = self.dup_acks.saturating_add(1);
            if self.dup_acks == 3 && self.recover.is_none() {
                self.recover = Some(self.snd_max);
                self.retransmit = true;
            }
        }
        // RFC 9293 3.10.7.4: only a segment at least as new as the one
        // that last set the window may change it.
        if after(seq, self.wl1) || (seq == self.wl1 && !after(self.wl2, ack)) {
            if window > 0 {
                self.persist_at = None;
                self.persist_backoff = 0;
            }
            self.snd_wnd = window;
            self.wl1 = seq;
            self.wl2 = ack;
        }
    }
}

fn backoff(retries: u8) -> Duration {
    RTO * (1u32 << retries.min(5))
}

/// Build a TCP segment from `from` to `to` in the guest's queue; `payload`
/// writes at most `len` bytes. False if nothing was queued.
fn emit_segment(
    link: compose::Link,
    tx: &mut TxQueue,
    from: SocketAddr,
    to: SocketAddr,
    hdr: &TcpRepr,
    len: usize,
    payload: impl FnOnce(&mut [u8]) -> usize,
) -> bool {
    emit_data(link, tx, from, to, hdr, len, usize::MAX, payload)
}

/// `emit_segment` for data towards a guest whose MSS is `mss`. Where the
/// tap takes offloads (`TxQueue::offload`), the checksum is left partial
/// for the kernel, and a payload longer than `mss` goes as one
/// super-segment with `gso_size` = `mss`, which the kernel delivers
/// whole (or cuts, if it ever forwards it).
#[allow(clippy::too_many_arguments)]
fn emit_data(
    link: compose::Link,
    tx: &mut TxQueue,
    from: SocketAddr,
    to: SocketAddr,
    hdr: &TcpRepr,
    len: usize,
    mss: usize,
    payload: impl FnOnce(&mut [u8]) -> usize,
) -> bool {
    let max = (MAX_HEADERS + len).min(MAX_FRAME);
    let csum = if tx.offload() {
        compose::Csum::Partial
    } else {
        compose::Csum::Full
    };
    tx.push_offload(max, |out, off| {
        let mut written = 0;
        let body = |p: &mut [u8]| {
            let l = len.min(p.len());
            written = payload(&mut p[..l]);
            written
        };
        let n = compose::tcp(out, link, from, to, hdr, csum, body);
        let (l4_off, gso) = if from.is_ipv4() {
            (compose::L4_OFF_V4, Gso::Tcp4)
        } else {
            (compose::L4_OFF_V6, Gso::Tcp6)
        };
        // Data segments with nothing read aren't sent.
        if n == 0 || (len > 0 && written == 0) {
            return 0;
        }
        if csum == compose::Csum::Partial {
            let hdr_len = l4_off + hdr.buffer_len();
            // Frames and their headers are at most 64 KiB.
            off.csum = Some((l4_off as u16, wire_tcp::CHECKSUM_OFFSET as u16));
            off.hdr_len = hdr_len as u16;
            if written > mss {
                off.gso = gso;
                off.gso_size = u16::try_from(mss).unwrap_or(u16::MAX);
            }
        }
        n
    })
}

/// TCP translation state beside the connections themselves.
pub struct Tcp {
    /// Throw-away space for peeking past sent data without `SO_PEEK_OFF`.
    scratch: Box<[u8]>,
    /// Seeds initial sequence numbers.
    isn_key: std::collections::hash_map::RandomState,
    isn_count: u32,
    /// `NO_PEEK_OFF_ENV` was set.
    no_peek_off: bool,
    /// Keepalive times, `KEEPALIVE` unless `KEEPALIVE_SECS_ENV` was set.
    keepalive: Keepalive,
    /// Connections waiting for room in the guest's queue.
    blocked: Waiting,
    /// Guest segments that arrived past a gap.
    ooo: ooo::OooStore,
    /// Inside a batch of the guest's frames (`begin_batch`): ACKs for
    /// in-order data wait for its end.
    batching: bool,
    /// Connections owing the guest an ACK at the end of the batch, each
    /// once; never more than a batch has frames, reserved up front.
    acks_due: Vec<FlowRef>,
    /// The batch has more than one frame: data goes to sockets with
    /// `MSG_MORE`, so the kernel gathers a connection's segments into
    /// full ones (the host sockets have no Nagle, `no_nagle`).
    cork: bool,
    /// Connections that sent with `MSG_MORE` in this batch, each once;
    /// reserved like `acks_due`.
    corked: Vec<FlowRef>,
    /// A connection's in-order data from this batch, waiting to go to its
    /// socket in one call (`gather`).
    gather: gather::Gather,
    /// Connections whose pure ACKs in this batch wait for its end to
    /// push, each once; reserved like `acks_due`. A guest receiving in
    /// bulk sends an ACK for every two segments, many to a batch: pushing
    /// at each one cost a discard and a peek of two segments (passt, MTU
    /// 1500, host to guest: 17 of each per read from the socket).
    pushes_due: Vec<FlowRef>,
}

/// The TCP connection of `r`, if it is one.
fn conn_mut(flows: &mut Flows, r: FlowRef) -> Option<&mut Conn> {
    match flows.get_mut(r)? {
        Flow::Tcp(c) => Some(c),
        _ => None,
    }
}

fn mtu(conf: &Config) -> usize {
    conf.mtu.map_or(DEFAULT_MTU, usize::from)
}

fn ip_tcp_header(a: SocketAddr) -> usize {
    if a.is_ipv4() {
        ipv4::HEADER_LEN + 20
    } else {
        ipv6::HEADER_LEN + 20
    }
}

/// An RST answering `seg` (RFC 9293 3.10.7.1), for a segment that belongs
/// to no connection.
fn rst_for(seg: &TcpRepr, payload_len: usize) -> TcpRepr {
    let mut r = TcpRepr {
        src_port: seg.dst_port,
        dst_port: seg.src_port,
        ..TcpRepr::default()
    };
    if seg.flags.has(Flags::ACK) {
        r.seq = seg.ack;
        r.flags = Flags::RST;
    } else {
        let mut len = payload_len;
        if seg.flags.has(Flags::SYN) {
            len += 1;
        }
        if seg.flags.has(Flags::FIN) {
            len += 1;
        }
        r.ack = seg.seq.wrapping_add(len as u32);
        r.flags = Flags::RST | Flags::ACK;
    }
    r
}

/// List connection `r` for the end of the batch in `list`, once (`listed`
/// says it is), within the room reserved up front: whether it is listed.
fn list_once(list: &mut Vec<FlowRef>, listed: &mut bool, r: FlowRef) -> bool {
    if !*listed && list.len() < list.capacity() {
        *listed = true;
        list.push(r);
    }
    *listed
}

/// Turn off Nagle's algorithm on a host socket of ours. Whoever writes
/// through us (the guest's TCP, or the client at the other end of a
/// splice) already decided when small segments leave, with its own Nagle
/// or `TCP_NODELAY`. A second Nagle here would hold its next small write
/// until the host peer acknowledged the last one, and a peer that delays
/// its ACKs (40 ms on Linux) then stalls every write-write-read exchange.
/// A failure only leaves the default behind, so it is not an error.
/// Every host socket we write to comes from `open_socket` or a
/// listener's accept (`Tcp::accept`), spliced ones included.
fn no_nagle(fd: impl AsFd) {
    if let Err(e) = setsockopt(&fd, sockopt::TcpNoDelay, &true) {
        log::debug!("TCP_NODELAY: {e}");
    }
}

/// The keepalive times `KEEPALIVE_SECS_ENV` asks for (`value`), if any.
fn keepalive_from(value: Option<std::ffi::OsString>) -> Keepalive {
    match crate::conf::secs_from_env(KEEPALIVE_SECS_ENV, value) {
        Some(secs) => Keepalive {
            idle: secs,
            interval: secs,
            probes: 3,
            tune_socket: true,
        },
        None => KEEPALIVE,
    }
}

/// Turn keepalives on for host socket `fd` of a connection through the
/// tap. A spliced connection needs none: both its ends are sockets of
/// this machine, whose end the kernel reports. A failure only leaves a
/// dead host peer unnoticed, so it is not an error.
fn host_keepalive(fd: impl AsFd, ka: &Keepalive) {
    let mut r = setsockopt(&fd, sockopt::KeepAlive, &true);
    if ka.tune_socket {
        let secs = u32::try_from(ka.idle.as_secs()).unwrap_or(u32::MAX);
        let intvl = u32::try_from(ka.interval.as_secs()).unwrap_or(u32::MAX);
        r = r
            .and_then(|()| setsockopt(&fd, sockopt::TcpKeepIdle, &secs))
            .and_then(|()| setsockopt(&fd, sockopt::TcpKeepInterval, &intvl))
            .and_then(|()| setsockopt(&fd, sockopt::TcpKeepCount, &u32::from(ka.probes)));
    }
    if let Err(e) = r {
        log::debug!("SO_KEEPALIVE: {e}");
    }
}

/// A non-blocking socket connecting to `target`, and whether it already
/// is connected.
fn open_socket(target: SocketAddr) -> Result<(OwnedFd, bool), Errno> {
    let family = if target.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    let sock = socket(family, SockType::Stream, flags, None)?;
    no_nagle(&sock);
    let r = match target {
        SocketAddr::V4(a) => connect(sock.as_raw_fd(), &SockaddrIn::from(a)),
        SocketAddr::V6(a) => connect(sock.as_raw_fd(), &SockaddrIn6::from(a)),
    };
    match r {
        Ok(()) => Ok((sock, true)),
        Err(Errno::EINPROGRESS) => Ok((sock, false)),
        Err(e) => Err(e),
    }
}

/// Close with `SO_LINGER` 0: the peer gets an RST.
pub fn close_reset(sock: OwnedFd) {
    let _ = setsockopt(
        &sock,
        sockopt::Linger,
        &libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
    );
    drop(sock);
}

impl Tcp {
    /// State for the TCP connections of `flows`.
    pub fn new(flows: &Flows) -> Self {
        Tcp {
            scratch: vec![0u8; FALLBACK_IN_FLIGHT].into_boxed_slice(),
            isn_key: std::collections::hash_map::RandomState::new(),
            isn_count: 0,
            no_peek_off: std::env::var_os(NO_PEEK_OFF_ENV).is_some(),
            keepalive: keepalive_from(std::env::var_os(KEEPALIVE_SECS_ENV)),
            blocked: Waiting::new(flows.max_flows(Kind::Tcp)),
            ooo: ooo::OooStore::default(),
            batching: false,
            acks_due: Vec::with_capacity(crate::tap::BATCH_MAX),
            cork: false,
            corked: Vec::with_capacity(crate::tap::BATCH_MAX),
            gather: gather::Gather::default(),
            pushes_due: Vec::with_capacity(crate::tap::BATCH_MAX),
        }
    }

    fn isn(&mut self, guest: SocketAddr, remote: SocketAddr) -> u32 {
        // RFC 6528: a clock plus a keyed hash of the connection's addresses.
        self.isn_count = self.isn_count.wrapping_add(1);
        let mut h = self.isn_key.build_hasher();
        (guest, remote).hash(&mut h);
        self.isn_count.hash(&mut h);
        let clock = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| (d.as_micros() / 4) as u32);
        (h.finish() as u32).wrapping_add(clock)
    }

    /// Handle a segment the guest sent from `guest` to `remote`: `segment`
    /// is the whole IP payload, inside `batch`, the buffer given to
    /// `begin_batch` (empty outside a batch). With `hold_ahead`, data or a
    /// FIN past a gap is not looked at (`Taken::Ahead`), so the caller can
    /// offer it again once the segments before it were taken.
    ///
    /// # Errors
    /// A `TcpDrop` saying why the segment was ignored.
    #[allow(clippy::too_many_arguments)]
    pub fn segment(
        &mut self,
        conf: &Config,
        ev: &EventLoop,
        flows: &mut Flows,
        link: compose::Link,
        guest: SocketAddr,
        remote: SocketAddr,
        segment: &[u8],
        batch: &[u8],
        hold_ahead: bool,
        tx: &mut TxQueue,
        now: Instant,
    ) -> Result<Taken, TcpDrop> {
        if !conf.services.tcp {
            return Err(TcpDrop::Disabled);
        }
        let pkt = Packet::new_checked(segment).map_err(|_| TcpDrop::Malformed)?;
        // The checksum is not verified: see "The guest's TCP checksums"
        // in ARCHITECTURE.md.
        let seg = TcpRepr::parse_trusted(&pkt);
        let payload = pkt.payload();
        let ini = FlowSide::new(Side::Tap, guest, remote);
        let Some(found) = flows.lookup(Proto::Tcp, &ini) else {
            if seg.flags.has(Flags::RST) {
                return Ok(Taken::Done);
            }
            if seg.flags.has(Flags::SYN) && !seg.flags.has(Flags::ACK) {
                return self
                    .open(conf, ev, flows, link, ini, &seg, tx, now)
                    .map(|()| Taken::Done);
            }
            emit_segment(
                link,
                tx,
                remote,
                guest,
                &rst_for(&seg, payload.len()),
                0,
                |_| 0,
            );
            return Ok(Taken::Done);
        };
        let r = found.flow;
        // Data gathered for this connection is as good as taken here.
        let gathered = self.gather.end_of(r);
        if hold_ahead
            && (!payload.is_empty() || seg.flags.has(Flags::FIN))
            && !seg.flags.has(Flags::RST)
            && !seg.flags.has(Flags::SYN)
            && conn_mut(flows, r).is_some_and(|c| {
                c.state == State::Established && after(seg.seq, gathered.unwrap_or(c.rcv_nxt))
            })
        {
            return Ok(Taken::Ahead);
        }
        // Anything but the next data of the open run ends it: what the
        // segment says must be answered with the data in the socket.
        let extends = gathered == Some(seg.seq)
            && !payload.is_empty()
            && (seg.flags.0 & !(Flags::ACK | Flags::PSH).0) == 0
            && !self.gather.is_full();
        if self.gather.flow().is_some() && !extends {
            self.flush_gather(flows, batch, true, link, ev, tx, now);
        }
        let next = self.on_segment(flows, r, link, &seg, payload, tx, now);
        self.finish(flows, r, next, link, ev, tx, now);
        Ok(Taken::Done)
    }

    #[allow(clippy::too_many_arguments)]
    fn open(
        &mut self,
        conf: &Config,
        ev: &EventLoop,
        flows: &mut Flows,
        link: compose::Link,
        ini: FlowSide,
        syn: &TcpRepr,
        tx: &mut TxQueue,
        now: Instant,
    ) -> Result<(), TcpDrop> {
        let (guest, remote) = (ini.peer, ini.ours);
        let mut tgt = match fwd::outbound(conf, Proto::Tcp, &ini) {
            Ok(t) => t,
            Err(why) => {
                // Fail the guest's connect at once, as a closed port would.
                emit_segment(link, tx, remote, guest, &rst_for(syn, 0), 0, |_| 0);
                return Err(TcpDrop::Destination(why));
            }
        };
        // Room for TCP (its reserve, or the shared pool): the oldest
        // connection still in the handshake makes way if need be. Other
        // kinds' flows never do. With every connection
        // established, the new one is refused at once, as a closed port
        // would be, rather than left to time out.
        if !flows.room_for(Kind::Tcp) && !self.make_room(flows, link, tx) {
            emit_segment(link, tx, remote, guest, &rst_for(syn, 0), 0, |_| 0);
            return Err(TcpDrop::TableFull);
        }
        let mut opened = open_socket(tgt.peer);
        if matches!(opened, Err(Errno::EMFILE | Errno::ENFILE)) && self.make_room(flows, link, tx) {
            // Out of descriptors: the same, one handshake for this one.
            opened = open_socket(tgt.peer);
        }
        let (sock, connected) = match opened {
            Ok(s) => s,
            Err(e @ (Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM)) => {
                emit_segment(link, tx, remote, guest, &rst_for(syn, 0), 0, |_| 0);
                return Err(TcpDrop::Socket(e));
            }
            Err(e) => {
                // Refused or unreachable right away: tell the guest.
                log::debug!("TCP {guest} -> {remote}: connect: {e}");
                emit_segment(link, tx, remote, guest, &rst_for(syn, 0), 0, |_| 0);
                return Ok(());
            }
        };
        // `make_room` left room for TCP, so this only fails if the table
        // were wrong; the socket then just closes.
        let nf = flows.begin(Kind::Tcp).map_err(|_| TcpDrop::TableFull)?;
        let r = nf.flow_ref();
        ev.add_edge(&sock, epoll_ref(r, End::Target))
            .map_err(|e| TcpDrop::Socket(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
        tgt.ours = flow::local_addr(&sock).unwrap_or(tgt.ours);
        log::debug!(
            "TCP {}: {guest} -> {remote} (host: {} -> {})",
            r.index,
            tgt.ours,
            tgt.peer
        );
        host_keepalive(&sock, &self.keepalive);
        let hdr = ip_tcp_header(remote);
        let iss = self.isn(guest, remote);
        let mut conn = Conn::new(
            Sides::new(ini, tgt),
            sock,
            iss,
            seq::our_mss(mtu(conf), hdr),
            now,
        );
        conn.state = State::Connecting;
        conn.rcv_nxt = syn.seq.wrapping_add(1);
        conn.rcv_edge = conn.rcv_nxt;
        conn.our_ws = if syn.wscale.is_some() { WSCALE } else { 0 };
        // The SYN's window is never scaled (RFC 7323 2.2).
        conn.snd_wnd = usize::from(syn.window);
        conn.wl1 = syn.seq;
        conn.peer_ws = syn.wscale.unwrap_or(0);
        conn.mss = seq::send_mss(syn.mss, mtu(conf), hdr);
        let r = match nf.commit(Flow::Tcp(conn)) {
            Ok(r) => r,
            Err((_, f)) => {
                if let Flow::Tcp(c) = f {
                    let _ = ev.remove(&c.sock);
                }
                return Err(TcpDrop::TableFull);
            }
        };
        // Either way through `finish`, which arms the handshake's timer: a
        // connect that never completes must still time out.
        let next = if connected {
            self.connected(flows, r, link, tx, now, false)
        } else {
            Next::Keep
        };
        self.finish(flows, r, next, link, ev, tx, now);
        Ok(())
    }

    /// Connections waiting on the listening socket of a forwarded port
    /// (`l`): each accepted one becomes our SYN to the guest's port, at
    /// most `ACCEPT_BURST` per event (the listener is level-triggered,
    /// the rest comes next round).
    #[allow(clippy::too_many_arguments)]
    pub fn accept(
        &mut self,
        conf: &Config,
        guest: &GuestAddrs,
        l: &Listener,
        splicer: Option<&spliced::Splicer>,
        ev: &EventLoop,
        flows: &mut Flows,
        link: compose::Link,
        tx: &mut TxQueue,
        now: Instant,
    ) -> Result<(), TcpDrop> {
        for _ in 0..ACCEPT_BURST {
            let sock = match sys::tcp::accept(l.sock.as_fd()) {
                Ok(fd) => {
                    no_nagle(&fd);
                    fd
                }
                Err(Errno::EAGAIN | Errno::EINTR) => return Ok(()),
                Err(e @ (Errno::EMFILE | Errno::ENFILE)) => {
                    // Out of descriptors: a handshake makes way, else the
                    // peer waits in the backlog.
                    if !self.make_room(flows, link, tx) {
                        return Err(TcpDrop::Socket(e));
                    }
                    continue;
                }
                Err(e) => return Err(TcpDrop::Socket(e)),
            };
            if let Some(sp) = splicer
                && let (Some(peer), Some(ours)) = (flow::peer_addr(&sock), flow::local_addr(&sock))
                && sp.wants(l, peer)
            {
                sp.join(flows, ev, l, sock, peer, ours)?;
                continue;
            }
            if l.ns {
                // A namespace port without splicing: nowhere to go.
                close_reset(sock);
                continue;
            }
            self.accepted(conf, guest, l, sock, ev, flows, link, tx, now)?;
        }
        Ok(())
    }

    /// One connection accepted on `l`.
    #[allow(clippy::too_many_arguments)]
    fn accepted(
        &mut self,
        conf: &Config,
        guest: &GuestAddrs,
        l: &Listener,
        sock: OwnedFd,
        ev: &EventLoop,
        flows: &mut Flows,
        link: compose::Link,
        tx: &mut TxQueue,
        now: Instant,
    ) -> Result<(), TcpDrop> {
        let (Some(peer), Some(ours)) = (flow::peer_addr(&sock), flow::local_addr(&sock)) else {
            close_reset(sock);
            return Ok(());
        };
        let ini = FlowSide::new(Side::Host, peer, ours);
        let tgt = match fwd::inbound(conf, guest, &ini, l.to_addr, l.to_port) {
            Ok(t) => t,
            Err(why) => {
                log::debug!("TCP {peer} -> {ours}: not forwarded: {why}");
                close_reset(sock);
                return Err(TcpDrop::Destination(why));
            }
        };
        if !flows.room_for(Kind::Tcp) && !self.make_room(flows, link, tx) {
            close_reset(sock);
            return Err(TcpDrop::TableFull);
        }
        let Ok(nf) = flows.begin(Kind::Tcp) else {
            close_reset(sock);
            return Err(TcpDrop::TableFull);
        };
        let r = nf.flow_ref();
        if let Err(e) = ev.add_edge(&sock, epoll_ref(r, End::Initiator)) {
            close_reset(sock);
            return Err(TcpDrop::Socket(Errno::from_raw(
                e.raw_os_error().unwrap_or(0),
            )));
        }
        log::debug!(
            "TCP {}: {peer} -> {ours} forwarded to {} -> {}",
            r.index,
            tgt.ours,
            tgt.peer
        );
        host_keepalive(&sock, &self.keepalive);
        let hdr = ip_tcp_header(tgt.peer);
        let iss = self.isn(tgt.peer, tgt.ours);
        let conn = Conn::new(
            Sides::new(ini, tgt),
            sock,
            iss,
            seq::our_mss(mtu(conf), hdr),
            now,
        );
        let r = match nf.commit(Flow::Tcp(conn)) {
            Ok(r) => r,
            Err((_, f)) => {
                // The guest already has a connection with those ports.
                if let Flow::Tcp(c) = f {
                    let _ = ev.remove(&c.sock);
                    close_reset(c.sock);
                }
                return Err(TcpDrop::TableFull);
            }
        };
        if let Some(c) = conn_mut(flows, r) {
            c.syn(link, tx, now);
        }
        self.finish(flows, r, Next::Keep, link, ev, tx, now);
        Ok(())
    }

    /// A connect completed: SYN-ACK or RST to the guest. `failed` when
    /// epoll reported an error or a hang-up with it. Without either,
    /// `EPOLLOUT` alone means it succeeded (the kernel reports a failed
    /// connect as `EPOLLERR`), so the common case costs no `SO_ERROR`
    /// lookup.
    fn connected(
        &mut self,
        flows: &mut Flows,
        r: FlowRef,
        link: compose::Link,
        tx: &mut TxQueue,
        now: Instant,
        failed: bool,
    ) -> Next {
        let idx = r.index;
        let Some(c) = conn_mut(flows, r) else {
            return Next::Keep;
        };
        if failed {
            match getsockopt(&c.sock, sockopt::SocketError) {
                Ok(0) => {}
                Ok(e) => {
                    log::debug!("TCP {idx}: connect: {}", Errno::from_raw(e));
                    return Next::Abort;
                }
                Err(e) => {
                    log::debug!("TCP {idx}: connect: {e}");
                    return Next::Abort;
                }
            }
        }
        c.peek_off = !self.no_peek_off && sys::tcp::set_peek_off(c.sock.as_fd(), 0).is_ok();
        if !c.peek_off {
            log::trace!("TCP {idx}: without SO_PEEK_OFF");
        }
        c.state = State::SynRcvd;
        c.syn_ack(link, tx, now);
        Next::Keep
    }

    #[allow(clippy::too_many_arguments)]
    fn on_segment(
        &mut self,
        flows: &mut Flows,
        r: FlowRef,
        link: compose::Link,
        seg: &TcpRepr,
        payload: &[u8],
        tx: &mut TxQueue,
        now: Instant,
    ) -> Next {
        let Some(c) = conn_mut(flows, r) else {
            return Next::Keep;
        };
        // The handshake's clock runs from the SYN: a guest repeating its
        // SYN to an address that never answers doesn't hold on to a socket.
        if c.state == State::Established {
            c.last = now;
            c.ka_probes = 0;
        }
        if c.state == State::SynSent {
            // RFC 9293 3.10.7.3: only a segment acknowledging our SYN
            // counts; an RST with it is the guest refusing the connection,
            // which the host peer then sees as a reset.
            if !seg.flags.has(Flags::ACK) || seg.ack != c.iss.wrapping_add(1) {
                return Next::Keep;
            }
            if seg.flags.has(Flags::RST) {
                return Next::Reset;
            }
            if !seg.flags.has(Flags::SYN) {
                return Next::Keep;
            }
            c.rcv_nxt = seg.seq.wrapping_add(1);
            c.rcv_edge = c.rcv_nxt;
            if seg.wscale.is_none() {
                c.our_ws = 0;
            } else {
                c.our_ws = WSCALE;
                c.peer_ws = seg.wscale.unwrap_or(0);
            }
            c.snd_wnd = usize::from(seg.window);
            c.wl1 = seg.seq;
            c.wl2 = seg.ack;
            c.mss = usize::from(seg.mss.unwrap_or(536))
                .min(usize::from(c.our_mss))
                .max(1);
            c.snd_una = seg.ack;
            c.state = State::Established;
            c.last = now;
            c.rto_at = None;
            c.retries = 0;
            c.peek_off = !self.no_peek_off && sys::tcp::set_peek_off(c.sock.as_fd(), 0).is_ok();
            c.ack(link, tx, now);
            return c.push(link, tx, &mut self.scratch, now);
        }
        if seg.flags.has(Flags::RST) {
            // RFC 5961 3.2: only an RST at exactly the next expected byte
            // resets; one elsewhere in the window gets a challenge ACK (a
            // genuine sender answers it with an exact RST), and the rest is
            // ignored, so a blind or stale RST can't kill the connection.
            if seg.seq == c.rcv_nxt {
                return Next::Reset;
            }
            if after(seg.seq, c.rcv_nxt) && !after(seg.seq, c.rcv_edge) {
                c.ack(link, tx, now);
            }
            return Next::Keep;
        }
        if seg.flags.has(Flags::SYN) {
            // A retransmitted SYN: the SYN-ACK may have been lost.
            if c.state == State::SynRcvd {
                c.syn_ack(link, tx, now);
            } else if c.state == State::Established {
                c.ack(link, tx, now);
            }
            return Next::Keep;
        }
        if !seg.flags.has(Flags::ACK) || c.state == State::Connecting {
            return Next::Keep;
        }
        if c.state == State::SynRcvd {
            if seg.ack != c.iss.wrapping_add(1) {
                return Next::Keep;
            }
            c.state = State::Established;
            c.last = now;
            c.snd_una = seg.ack;
            c.rto_at = None;
            c.retries = 0;
        }
        let window = seq::peer_window(seg.window, c.peer_ws);
        let pure = payload.is_empty() && !seg.flags.has(Flags::FIN);
        // RFC 9293 3.10.7.4: a segment outside the window (a keepalive
        // probe one byte back, a zero-window probe, an old duplicate) is
        // answered with an ACK carrying our current window, and dropped.
        // A pure ACK may sit one past our window's edge, after a FIN.
        if pure && (after(c.rcv_nxt, seg.seq) || after(seg.seq, c.rcv_edge.wrapping_add(1))) {
            c.ack(link, tx, now);
            return Next::Keep;
        }
        if after(seg.ack, c.snd_max) {
            // Acknowledges what we never sent: RFC 9293 3.10.7.4, ACK and drop.
            c.ack(link, tx, now);
            return Next::Keep;
        }
        c.on_ack(seg.seq, seg.ack, window, pure, now);
        if !pure {
            let fin = seg.flags.has(Flags::FIN);
            // In a batch of several frames, data that goes on where the
            // stream (or its open run) stands joins the run, to go to the
            // socket in one call (`gather`); its ACK waits for the end of
            // the batch, as in-order data's does.
            if self.batching
                && self.cork
                && !fin
                && c.state == State::Established
                && !c.guest_fin
                && seg.seq == self.gather.end_of(r).unwrap_or(c.rcv_nxt)
                && !self.ooo.holds(ooo_key(r))
                && (c.ack_due || self.acks_due.len() < self.acks_due.capacity())
                && self.gather.add(r, seg.seq, payload)
            {
                list_once(&mut self.acks_due, &mut c.ack_due, r);
                return c.push(link, tx, &mut self.scratch, now);
            }
            let mut next = Next::Keep;
            let start = c.rcv_nxt;
            if after(seg.seq, c.rcv_nxt) {
                // Past a gap: keep a copy if there's room (see `ooo`).
                if c.state == State::Established && !c.guest_fin {
                    self.ooo.insert(ooo_key(r), seg.seq, payload, fin);
                }
            } else {
                // Corked data must be pushed at the end of the batch: only
                // with room to list the connection.
                let more =
                    self.batching && self.cork && list_once(&mut self.corked, &mut c.corked, r);
                next = take_data(c, seg.seq, payload, fin, more);
                // The gap may be filled: what was held goes next.
                while next == Next::Keep
                    && let Some((slot, seq, data, fin)) = self.ooo.next(ooo_key(r), c.rcv_nxt)
                {
                    // Held segments are at most 64 KiB.
                    let end = seq.wrapping_add(data.len() as u32);
                    next = take_data(c, seq, data, fin, more);
                    if c.rcv_nxt != end && !c.guest_fin {
                        // The socket is full: the rest stays held.
                        break;
                    }
                    self.ooo.release(slot);
                }
            }
            // In-order data taken whole, in a batch of frames: one ACK for
            // the connection at the end of the batch (`end_batch`) covers it
            // and every segment after it, with the window the socket has
            // left by then. Everything else (a partial write, a FIN, a
            // duplicate, a gap filled, held segments taken) is answered now.
            let end = seg.seq.wrapping_add(payload.len() as u32);
            let whole = seg.seq == start && c.rcv_nxt == end && !payload.is_empty();
            let deferred = self.batching
                && next == Next::Keep
                && !fin
                && whole
                && list_once(&mut self.acks_due, &mut c.ack_due, r);
            if !deferred {
                c.ack(link, tx, now);
            }
            if next != Next::Keep {
                return next;
            }
        }
        // A pure ACK in a batch: the batch's end pushes once for all of
        // them (`pushes_due`). Not past the guest's FIN, where an ACK may
        // be the last the connection waits for.
        if pure
            && self.batching
            && c.state == State::Established
            && !c.guest_fin
            && list_once(&mut self.pushes_due, &mut c.push_due, r)
        {
            return Next::Keep;
        }
        c.push(link, tx, &mut self.scratch, now)
    }

    /// Events on the socket of connection `r`.
    pub fn event(
        &mut self,
        flows: &mut Flows,
        r: SideRef,
        events: EpollFlags,
        link: compose::Link,
        ev: &EventLoop,
        tx: &mut TxQueue,
    ) {
        let now = Instant::now();
        let r = r.flow;
        // A connection closed earlier in this round, or its slot reused.
        let Some(c) = conn_mut(flows, r) else {
            return;
        };
        // The peer's FIN, in whatever state: a peer quick to answer and
        // close (`echo` behind a server) may have done both before we saw
        // our connect complete, all in one event, and no later edge will
        // say it again.
        if events.intersects(EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLHUP) {
            c.peer_eof = true;
        }
        let next = if c.state == State::Connecting {
            if events.intersects(EpollFlags::EPOLLOUT | EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP)
            {
                let failed = events.intersects(EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP);
                self.connected(flows, r, link, tx, now, failed)
            } else {
                Next::Keep
            }
        } else if events.contains(EpollFlags::EPOLLERR)
            && let Ok(e) = getsockopt(&c.sock, sockopt::SocketError)
            && e != 0
        {
            // ETIMEDOUT: among others, the kernel's keepalives found the
            // host peer gone.
            log::debug!(
                "TCP {} -> {}: {}",
                c.guest(),
                c.remote(),
                Errno::from_raw(e)
            );
            Next::Abort
        } else {
            c.host_unread = true;
            if events.contains(EpollFlags::EPOLLOUT) {
                // Any event reports a writable socket: look only when we
                // asked, or when our window is low.
                let asked = std::mem::replace(&mut c.space, Space::Idle) == Space::Armed;
                if c.state == State::Established
                    && !c.guest_fin
                    && (asked || c.adv_wnd < c.mss.max(usize::from(c.our_mss)) * 4)
                    && c.room().0 > c.adv_wnd + c.mss.min(c.adv_wnd.max(1))
                {
                    // Room in the send buffer again: a window update.
                    c.ack(link, tx, now);
                }
            }
            c.push(link, tx, &mut self.scratch, now)
        };
        self.finish(flows, r, next, link, ev, tx, now);
    }

    /// Free or reset a connection as `next` says; one that stays open
    /// has its timer moved to its next deadline.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &mut self,
        flows: &mut Flows,
        r: FlowRef,
        next: Next,
        link: compose::Link,
        ev: &EventLoop,
        tx: &mut TxQueue,
        now: Instant,
    ) {
        if next == Next::Keep {
            let Some(c) = conn_mut(flows, r) else {
                return;
            };
            c.arm_space(r, ev);
            let deadline = c.deadline(&self.keepalive);
            let established = c.state == State::Established;
            if c.tap_blocked && !c.listed_blocked {
                c.listed_blocked = true;
                self.blocked.push(r, |w| {
                    flows
                        .get(w)
                        .is_some_and(|f| matches!(f, Flow::Tcp(c) if c.listed_blocked))
                });
            }
            if established {
                // Never evicted once established (`make_room`).
                flows.unlist(r);
            }
            // Costs nothing unless the deadline moved earlier (timer.rs).
            flows.rearm(r, deadline, now);
            return;
        }
        self.ooo.forget(ooo_key(r));
        if let Some(Flow::Tcp(c)) = flows.remove(r) {
            end(r, c, next, link, tx);
        }
    }

    /// Make room for one more connection: when TCP has no room, or
    /// out of descriptors, the oldest connection still in the handshake
    /// goes (an RST to its guest). False when every connection is
    /// established: those are never evicted for a new one.
    fn make_room(&mut self, flows: &mut Flows, link: compose::Link, tx: &mut TxQueue) -> bool {
        match flows.evict(Kind::Tcp) {
            Some((r, Flow::Tcp(c))) => {
                log::debug!(
                    "TCP {}: {} -> {} evicted in the handshake",
                    r.index,
                    c.guest(),
                    c.remote()
                );
                self.ooo.forget(ooo_key(r));
                end(r, c, Next::Abort, link, tx);
                true
            }
            // Only TCP connections are in TCP's list; dropping anything
            // else there would still close its socket.
            Some(_) => true,
            None => false,
        }
    }

    /// The timer of connection `r` came up: what is due of
    /// retransmission, polls, probes and timeouts, then the timer moves to
    /// the next deadline (`finish`).
    pub fn timer(
        &mut self,
        flows: &mut Flows,
        r: FlowRef,
        now: Instant,
        link: compose::Link,
        ev: &EventLoop,
        tx: &mut TxQueue,
    ) {
        let Some(c) = conn_mut(flows, r) else {
            return;
        };
        let ka = &self.keepalive;
        let mut next = Next::Keep;
        if c.silence_ends(ka) <= now {
            if c.state != State::Established {
                log::debug!("TCP {} -> {}: handshake timed out", c.guest(), c.remote());
                next = Next::Abort;
            } else if c.ka_probes >= ka.probes {
                log::debug!(
                    "TCP {} -> {}: {} keepalive probes unanswered",
                    c.guest(),
                    c.remote(),
                    c.ka_probes
                );
                next = Next::Abort;
            } else {
                c.ka_probes += 1;
                c.ack_old(link, tx);
            }
        } else if c.rto_at.is_some_and(|t| t <= now) && c.tap_blocked {
            // What is in flight still sits in the guest's queue (a
            // paused VM): nothing was lost, and it's no reason to give up.
            c.rto_at = Some(now + backoff(c.retries));
        } else if c.rto_at.is_some_and(|t| t <= now) {
            c.retries = c.retries.saturating_add(1);
            c.rto_at = None;
            if c.retries > MAX_RETRIES {
                next = Next::Abort;
            } else if c.state == State::SynRcvd {
                c.syn_ack(link, tx, now);
            } else if c.state == State::SynSent {
                c.syn(link, tx, now);
            } else {
                c.rewind();
                next = c.push(link, tx, &mut self.scratch, now);
            }
        } else if c.poll_at.is_some_and(|t| t <= now) {
            c.poll_at = None;
            if c.state == State::Established && !c.guest_fin {
                if c.room().0 > c.adv_wnd {
                    // Room again: a window update, without waiting
                    // for the guest's probe.
                    c.ack(link, tx, now);
                } else if c.adv_wnd < c.mss.max(usize::from(c.our_mss)) {
                    c.poll_backoff = c.poll_backoff.saturating_add(1);
                    let wait = POLL * (1u32 << c.poll_backoff.min(POLL_MAX_SHIFT));
                    c.poll_at = Some(now + wait);
                }
            }
            next = c.push(link, tx, &mut self.scratch, now);
        } else if c.persist_at.is_some_and(|t| t <= now) {
            c.persist_at = None;
            if c.state == State::Established && c.snd_wnd == 0 {
                c.probe(link, tx, now);
            }
        }
        self.finish(flows, r, next, link, ev, tx, now);
    }

    /// The guest's queue has room again: connections that found it full
    /// send what they can. Costs nothing when none did, so a guest that
    /// stopped reading costs no polling.
    pub fn tap_drained(
        &mut self,
        flows: &mut Flows,
        link: compose::Link,
        ev: &EventLoop,
        tx: &mut TxQueue,
    ) {
        if self.blocked.is_empty() {
            return;
        }
        let now = Instant::now();
        let waiting = self.blocked.take();
        for &r in &waiting {
            let Some(c) = conn_mut(flows, r) else {
                continue;
            };
            c.listed_blocked = false;
            if !c.tap_blocked {
                continue;
            }
            c.tap_blocked = false;
            let next = c.push(link, tx, &mut self.scratch, now);
            self.finish(flows, r, next, link, ev, tx, now);
        }
        self.blocked.give_back(waiting);
    }

    /// A batch of `frames` of the guest's frames starts: ACKs for in-order
    /// data wait for `end_batch`, and so does the push of data written
    /// while more frames follow.
    pub fn begin_batch(&mut self, buf: &[u8], frames: usize) {
        self.batching = true;
        self.cork = frames > 1;
        self.gather.begin(buf);
    }

    /// Send the open run of gathered data (`gather`) to its connection's
    /// socket, from `batch`, with `MSG_MORE` if `more` frames follow; what
    /// the socket took is owed the guest an ACK.
    #[allow(clippy::too_many_arguments)]
    fn flush_gather(
        &mut self,
        flows: &mut Flows,
        batch: &[u8],
        more: bool,
        link: compose::Link,
        ev: &EventLoop,
        tx: &mut TxQueue,
        now: Instant,
    ) {
        let Some(r) = self.gather.flow() else {
            return;
        };
        // Closed since: the guest never heard the data was taken.
        let Some(c) = conn_mut(flows, r) else {
            self.gather.clear();
            return;
        };
        let more = more && self.cork && list_once(&mut self.corked, &mut c.corked, r);
        let (iov, n) = self.gather.slices(batch);
        let next = c.write(iov.get(..n).unwrap_or(&[]), more);
        self.gather.clear();
        if next == Next::Keep && !list_once(&mut self.acks_due, &mut c.ack_due, r) {
            c.ack(link, tx, now);
        }
        if next != Next::Keep {
            self.finish(flows, r, next, link, ev, tx, now);
        }
    }

    /// The batch is through: one ACK per connection that took data in it,
    /// carrying the window left after all of it. Per segment, that saves a
    /// frame to the guest (a write to the tap) and its processing there.
    pub fn end_batch(
        &mut self,
        flows: &mut Flows,
        batch: &[u8],
        link: compose::Link,
        ev: &EventLoop,
        tx: &mut TxQueue,
    ) {
        // The last run goes before the pushes and ACKs below, which count
        // it in.
        self.flush_gather(flows, batch, false, link, ev, tx, Instant::now());
        self.gather.end();
        self.batching = false;
        // Setting TCP_NODELAY again sends what MSG_MORE held back.
        for &r in &self.corked {
            if let Some(c) = conn_mut(flows, r)
                && c.corked
            {
                c.corked = false;
                no_nagle(&c.sock);
            }
        }
        self.corked.clear();
        let now = Instant::now();
        for i in 0..self.acks_due.len() {
            let Some(&r) = self.acks_due.get(i) else {
                break;
            };
            // Closed during the batch, or acknowledged since (any ACK we
            // sent carried everything taken).
            if let Some(c) = conn_mut(flows, r)
                && c.ack_due
            {
                c.ack(link, tx, now);
                c.arm_space(r, ev);
                let deadline = c.deadline(&self.keepalive);
                flows.rearm(r, deadline, now);
            }
        }
        self.acks_due.clear();
        for i in 0..self.pushes_due.len() {
            let Some(&r) = self.pushes_due.get(i) else {
                break;
            };
            // Closed during the batch (its slot may hold another by now).
            let Some(c) = conn_mut(flows, r).filter(|c| c.push_due) else {
                continue;
            };
            c.push_due = false;
            let next = c.push(link, tx, &mut self.scratch, now);
            self.finish(flows, r, next, link, ev, tx, now);
        }
        self.pushes_due.clear();
    }

    /// The guest went away: its connections are gone.
    pub fn clear(&mut self) {
        self.gather.end();
        self.acks_due.clear();
        self.pushes_due.clear();
        self.corked.clear();
        self.batching = false;
        self.blocked.clear();
        self.ooo.clear();
    }
}

/// The end of connection `r`, taken out of the table, as `next` says:
/// an RST both ways (`Abort`), to the host peer only (`Reset`), or a
/// plain close. Closing the socket takes it out of epoll: no
/// `EPOLL_CTL_DEL` first (a syscall per connection), as nothing else holds
/// the descriptor.
fn end(r: FlowRef, mut c: Conn, next: Next, link: compose::Link, tx: &mut TxQueue) {
    log::debug!(
        "TCP {}: {} -> {} closed ({next:?})",
        r.index,
        c.guest(),
        c.remote()
    );
    match next {
        Next::Abort => {
            let seq = if c.state == State::Connecting {
                0
            } else {
                c.snd_nxt
            };
            let mut hdr = c.header(Flags::RST | Flags::ACK, seq);
            hdr.window = 0;
            c.emit(link, tx, &hdr);
            close_reset(c.sock);
        }
        Next::Reset => close_reset(c.sock),
        // A socket closed with unread data sends an RST: what the guest
        // acknowledged last (`acked_unread`) leaves it first, so the
        // host peer sees the FIN.
        Next::Close | Next::Keep => {
            let _ = c.settle();
        }
    }
}

/// What the out-of-order store knows a connection by: slot and
/// generation, so nothing held for a closed connection matches the next.
fn ooo_key(r: FlowRef) -> u64 {
    u64::from(r.generation) << 32 | u64::from(r.index)
}

/// What epoll knows a connection's socket by: its host side, `end`.
fn epoll_ref(r: FlowRef, end: End) -> EpollRef {
    EpollRef::Tcp(SideRef { flow: r, end })
}

/// Close a connection taken out of the table (the guest went away): the
/// host peer gets an RST.
pub fn close(c: Conn, ev: &EventLoop) {
    let _ = ev.remove(&c.sock);
    close_reset(c.sock);
}

/// Write the guest's in-order payload to the socket, and take its FIN
/// once everything before it went. With `more`, the kernel may hold a
/// partial segment back until the batch's end pushes it (`end_batch`).
fn take_data(c: &mut Conn, seq: u32, payload: &[u8], fin: bool, more: bool) -> Next {
    if c.guest_fin {
        return Next::Keep;
    }
    let data = match seq::fit(c.rcv_nxt, seq, payload.len()) {
        Fit::Ahead => return Next::Keep,
        Fit::Old => &[][..],
        Fit::New(skip) => &payload[skip..],
    };
    if c.write(&[IoSlice::new(data)], more) != Next::Keep {
        return Next::Abort;
    }
    let end = seq.wrapping_add(payload.len() as u32);
    if fin && c.rcv_nxt == end {
        c.rcv_nxt = c.rcv_nxt.wrapping_add(1);
        c.guest_fin = true;
        // With our FIN acknowledged the connection closes right after
        // this, and close() sends the FIN itself: everything the peer sent
        // was acknowledged and is read by then (`end`), so it is a FIN,
        // not an RST. One syscall less per connection the host peer
        // closed first.
        if !c.fin_acked
            && let Err(e) = shutdown(c.sock.as_raw_fd(), Shutdown::Write)
        {
            log::debug!("TCP {} -> {}: shutdown: {e}", c.guest(), c.remote());
        }
    }
    c.closed()
}

#[cfg(test)]
mod tests;
