//! The event loop both modes run: guest frames in through the tap side,
//! through dispatch, replies out; signals, timers and the end conditions.
//!
//! Theory of operation: one epoll instance, single-threaded. The tap side
//! is either a UNIX stream (passt: a listener and at most one connection)
//! or a tun fd (pasta). Whatever the side, frames are read in batches,
//! handed to `Dispatch` in one call, and replies accumulate in one
//! `TxQueue`, flushed after every round of events; the fd is watched for
//! writability only while something is left to send. The loop returns an
//! `Outcome` and never exits the process itself: the caller cleans up.

use crate::conf::Config;
use crate::dispatch::Dispatch;
use crate::event::{EpollRef, EventLoop};
use crate::flow::{self, Flows, Kind};
use crate::fwd::Proto;
use crate::fwd::listen::Listeners;
use crate::isolate;
use crate::pcap::Pcap;
use crate::startup::{StartError, err_at};
use crate::stats::{self, Pacer, Snapshot, Step};
use crate::sys::tun::Offloads;
use crate::tap::stream::StreamRx;
use crate::tap::tun::{self, TunRx};
use crate::tap::{Batch, TxQueue};
use nix::sys::epoll::{EpollEvent, EpollFlags};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{setsockopt, sockopt};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

/// Bytes of frames we hold for a guest that doesn't read.
pub const TX_QUEUE_BYTES: usize = 4 << 20;

/// `SO_SNDBUF` asked for passt's guest connection (the kernel doubles it
/// for its overhead). Through bench_relay, TCP host → guest: 0.34 CPU s
/// per GB with 1 MiB, 0.37–0.40 with 4 MiB, 0.40–0.44 with the default;
/// a flood of 64 KiB UDP datagrams, though, did best with the default
/// (10.6–11.2 Gbit/s against 7.3–9.6 with 1 MiB).
pub const GUEST_SNDBUF: usize = 1 << 20;

/// Something that says when the program should end, such as the target
/// namespace going away or pasta's command exiting.
pub trait QuitSource: AsFd {
    /// Consume pending events; true when it's time to quit.
    fn gone(&mut self) -> bool;
}

/// Where guest frames come from.
pub enum TapSide {
    /// passt: a listening socket (absent with `--fd`) and at most one guest.
    Stream {
        /// The listening socket.
        listener: Option<UnixListener>,
        /// The connected guest.
        conn: Option<UnixStream>,
    },
    /// pasta: the tap device in the namespace.
    Tun {
        /// The tap's fd.
        dev: File,
        /// The virtio-net headers and offloads it was opened with
        /// (`sys::tun::open_tap_offload`).
        offloads: Offloads,
    },
    /// pasta `--splice-only`: no tap device, only spliced flows.
    Nothing,
}

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// SIGTERM, SIGINT or SIGQUIT (SIGUSR1 prints the stats and goes on).
    Signal,
    /// The guest left and `--one-off` (or `--fd`) was given.
    GuestGone,
    /// The quit source fired (namespace gone, command exited).
    Quit,
    /// The tap device failed (pasta: the interface disappeared).
    TapError,
}

/// The running translator.
pub struct Server<'c> {
    ev: EventLoop,
    signals: SignalFd,
    side: TapSide,
    quit: Option<Box<dyn QuitSource>>,
    /// Whether the tap fd is watched for writability.
    tap_out: bool,
    one_off: bool,
    stream_rx: StreamRx,
    tun_rx: TunRx,
    batch: Batch,
    tx: TxQueue,
    /// Every flow, of every protocol.
    conf: &'c Config,
    flows: Flows,
    /// Forwarded ports' sockets (`-t`, `-u`).
    listeners: Listeners,
    dispatch: Dispatch<'c>,
    /// When `Dispatch::periodic` is due next for its own timers (router
    /// advertisements); flows' timers are in `flows`.
    next_timer: Option<Instant>,
    /// How long to keep serving closing connections once the quit source
    /// fires (pasta's command exited), if at all.
    linger: Option<Duration>,
    /// Serving only until this, or until no connection is left.
    draining_until: Option<Instant>,
    /// `--stats`: when to print the counters.
    stats: Option<Pacer>,
    /// A change the pacer holds back: wake up then to print it.
    stats_due: Option<Instant>,
    /// How long to poll for events before sleeping, after a busy round
    /// (`next_events`); `None` where polling would only delay the peer we
    /// wait for (a single CPU) or `NO_BUSY_POLL_ENV` turns it off.
    busy_poll: Option<Duration>,
    /// Bytes read from the tap in this round.
    round_bytes: usize,
    /// Whether the round just handled makes polling worthwhile.
    poll_policy: PollPolicy,
    /// The guest sent frames in this round.
    guest_in: bool,
    /// Wake-ups so far (`TunRx::woke` counts the ones in a row that find
    /// the tun device readable).
    round: u64,
}

/// Longest poll for events before sleeping, after a round with events
/// (`Server::next_events`). Measured on a 2-CPU virtual machine: 1-byte
/// request/response through pasta twice as fast, with no more CPU time
/// per transaction; at most this much CPU time per burst of traffic.
const BUSY_POLL: Duration = Duration::from_micros(50);

/// A round that moved this much through the tap or between spliced
/// sockets, both ways, was bulk transfer: the next event comes on its own,
/// and polling for it would only add CPU time per byte (about a tenth in
/// passt mode).
const BUSY_POLL_MAX_BYTES: u64 = 32 << 10;

/// Rounds that moved some bytes, but not many, before polling resumes
/// after a bulk round; rounds that moved nothing don't count. Between a
/// stream's bursts come events that move nothing (an input edge while the
/// pipe is full, an output edge with nothing to send), and each would
/// start another poll that catches the next such event: splicing a `-T`
/// stream, that was 270 thousand `epoll_wait` a second, and the stream
/// 10% slower than without polling.
const BUSY_POLL_BULK_COOLDOWN: u8 = 4;

/// After this many rounds in a row with frames from the guest, it is
/// streaming (a flood of small datagrams, say): its next frame comes on
/// its own, and polling for it only takes CPU time from the processes at
/// either end. A 1400-byte UDP flood from the namespace reached the
/// receiver at 1.8–1.9 Gbit/s with polling and 2.1–2.2 without. A
/// request/response exchange alternates guest rounds with socket rounds.
const BUSY_POLL_MAX_GUEST_ROUNDS: u8 = 4;

/// Whether to poll for the next events rather than sleep, from what the
/// rounds so far were like.
#[derive(Default)]
struct PollPolicy {
    /// Rounds in a row, the last one included, with frames from the guest.
    guest_rounds: u8,
    /// Rounds left before polling may resume after bulk transfer.
    cooldown: u8,
}

impl PollPolicy {
    /// A round handled `events` events and moved `moved` bytes through
    /// the tap or between spliced sockets, with frames still waiting for
    /// the tap (`tap_out`) and frames from the guest (`guest_in`) or not:
    /// is the next event likely an answer worth polling for? Not after a
    /// quiet round, bulk transfer (`BUSY_POLL_MAX_BYTES`) or the few rounds
    /// after it (`BUSY_POLL_BULK_COOLDOWN`), a guest streaming frames
    /// (`BUSY_POLL_MAX_GUEST_ROUNDS`), or with frames waiting, since
    /// what comes next is then paced by the guest's reader.
    fn after_round(&mut self, events: usize, moved: u64, tap_out: bool, guest_in: bool) -> bool {
        self.guest_rounds = if guest_in {
            self.guest_rounds.saturating_add(1)
        } else {
            0
        };
        if moved >= BUSY_POLL_MAX_BYTES {
            self.cooldown = BUSY_POLL_BULK_COOLDOWN;
        } else if moved > 0 {
            self.cooldown = self.cooldown.saturating_sub(1);
        }
        events > 0
            && moved < BUSY_POLL_MAX_BYTES
            && self.cooldown == 0
            && !tap_out
            && self.guest_rounds < BUSY_POLL_MAX_GUEST_ROUNDS
    }
}

/// Set (to anything) in the environment, the loop never polls: it
/// sleeps in `epoll_wait` as soon as nothing is ready.
pub const NO_BUSY_POLL_ENV: &str = "PASST_RS_NO_BUSY_POLL";

/// `BUSY_POLL`, unless we may only run on one CPU (where polling would
/// hold off the very process we wait for) or the environment says not to.
fn busy_poll() -> Option<Duration> {
    if std::env::var_os(NO_BUSY_POLL_ENV).is_some() {
        return None;
    }
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    (cpus > 1).then_some(BUSY_POLL)
}

impl<'c> Server<'c> {
    /// Set up the loop around a tap side.
    ///
    /// # Errors
    /// epoll or signalfd set-up failures.
    pub fn new(
        conf: &'c Config,
        side: TapSide,
        pcap: Option<Pcap>,
        quit: Option<Box<dyn QuitSource>>,
        listeners: Listeners,
    ) -> Result<Self, StartError> {
        let ev = EventLoop::new().map_err(|e| err_at("epoll", e))?;
        let signals = SignalFd::with_flags(
            &isolate::handled_sigset(),
            SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
        )
        .map_err(|e| err_at("signalfd", e))?;
        let ep = |e| err_at("epoll", e);
        ev.add(&signals, EpollRef::Signal, false).map_err(ep)?;
        if let Some(q) = &quit {
            ev.add(q.as_fd(), EpollRef::Quit, false).map_err(ep)?;
        }
        let sock = |e| err_at("socket", e);
        let one_off = match &side {
            TapSide::Stream { listener, conn } => {
                if let Some(l) = listener {
                    l.set_nonblocking(true).map_err(sock)?;
                    ev.add(l, EpollRef::Listener, false).map_err(ep)?;
                }
                if let Some(c) = conn {
                    c.set_nonblocking(true).map_err(sock)?;
                    ev.add(c, EpollRef::TapStream, false).map_err(ep)?;
                }
                // --fd: nobody to listen for once this guest leaves.
                conf.passt.one_off || listener.is_none()
            }
            TapSide::Tun { dev, .. } => {
                ev.add(dev, EpollRef::TapTun, false).map_err(ep)?;
                false
            }
            TapSide::Nothing => false,
        };
        for (i, l) in listeners.iter() {
            let r = match l.proto {
                Proto::Tcp => EpollRef::TcpListen(i),
                _ => EpollRef::UdpListen(i),
            };
            ev.add(&l.sock, r, false).map_err(ep)?;
        }
        // Listeners hold descriptors too, and `auto` may open more.
        let auto = if listeners.auto.is_some() {
            crate::fwd::auto::cap()
        } else {
            0
        };
        let fds = isolate::fd_limit().saturating_sub((listeners.len() + auto) as u64);
        let flows = Flows::new(flow::capacity_for(fds));
        let (per_flow, reserved) = flows.footprint();
        log::debug!(
            "flow table: {} flows (reserved TCP {}, UDP {}, ping {}; {} shared; {} spliced connections, {} descriptors each; {} spliced UDP flows, {} descriptors each) for {} open files; {per_flow} bytes per flow in use, {} KiB reserved",
            flows.capacity(),
            flows.reserve(Kind::Tcp),
            flows.reserve(Kind::Udp),
            flows.reserve(Kind::Ping),
            flows.shared(),
            flows.reserve(Kind::Splice),
            Kind::Splice.extra_fds() + 1,
            flows.reserve(Kind::UdpSplice),
            Kind::UdpSplice.extra_fds() + 1,
            isolate::fd_limit(),
            reserved >> 10,
        );
        let offloads = match &side {
            TapSide::Tun { offloads, .. } => *offloads,
            _ => Offloads::default(),
        };
        let vnet = offloads.vnet;
        let mut tx = TxQueue::new(TX_QUEUE_BYTES, pcap);
        tx.set_vnet(vnet);
        tx.set_uso(offloads.uso);
        let mut tun_rx = TunRx::default();
        tun_rx.set_vnet(vnet);
        let dispatch = Dispatch::new(conf, &flows);
        let stats = conf
            .stats
            .map(|every| Pacer::new(every, Snapshot::take(&flows, &dispatch.drops, &tx)));
        let mut s = Server {
            ev,
            signals,
            side,
            quit,
            tap_out: false,
            one_off,
            stream_rx: StreamRx::default(),
            tun_rx,
            batch: Batch::default(),
            tx,
            dispatch,
            conf,
            flows,
            listeners,
            next_timer: None,
            linger: None,
            draining_until: None,
            stats,
            stats_due: None,
            busy_poll: busy_poll(),
            round_bytes: 0,
            poll_policy: PollPolicy::default(),
            guest_in: false,
            round: 0,
        };
        if s.guest_present() {
            s.guest_attached();
        }
        Ok(s)
    }

    /// When the quit source fires, keep serving the connections still
    /// open for up to `limit` before returning `Outcome::Quit`: what a
    /// command wrote just before exiting still reaches its peer.
    pub fn linger_on_quit(&mut self, limit: Duration) {
        self.linger = Some(limit);
    }

    /// The next events, waiting up to `timeout`. After a round with
    /// events (`active`), poll for up to `busy_poll` first: the answer to
    /// what we just passed on (a reply, an ACK, the next request) usually
    /// comes within tens of microseconds, and catching it without
    /// sleeping saves two context switches and the wake-up latency,
    /// which on a virtual machine cost more than everything else on the
    /// path. Between polls the CPU is offered to whatever else is ready to
    /// run on it (`sched_yield`), so under load polling takes no time from
    /// the processes at either end. Idle, nothing is polled.
    fn next_events(
        &self,
        events: &mut [EpollEvent],
        timeout: Option<Duration>,
        active: bool,
    ) -> std::io::Result<usize> {
        if let Some(budget) = self.busy_poll.filter(|_| active) {
            let start = Instant::now();
            loop {
                match self.ev.wait(events, Some(Duration::ZERO)) {
                    Ok(0) if start.elapsed() < budget => {
                        let _ = nix::sched::sched_yield();
                    }
                    Ok(0) => break,
                    other => return other,
                }
            }
        }
        self.ev.wait(events, timeout)
    }

    /// A guest appeared: greet it with what it would otherwise wait for.
    fn guest_attached(&mut self) {
        self.dispatch.guest_attached();
        self.next_timer = Some(Instant::now());
    }

    /// Run until something ends the program.
    pub fn serve(&mut self) -> Outcome {
        let mut events = [EpollEvent::empty(); 64];
        // Whether the next events are likely an answer worth polling for
        // (`PollPolicy`).
        let mut active = false;
        loop {
            let timeout = self.timeout();
            let polled = self.next_events(&mut events, timeout, active);
            let sent = self.tx.sent;
            // Bytes spliced between host and namespace sockets this round:
            // bulk transfer that never touches the tap, but bulk all the
            // same for `PollPolicy`.
            let mut spliced = 0u64;
            self.round_bytes = 0;
            self.guest_in = false;
            let n = match polled {
                Ok(n) => {
                    self.round = self.round.wrapping_add(1);
                    n
                }
                Err(e) => {
                    log::error!("epoll_wait: {e}");
                    return Outcome::Signal;
                }
            };
            for ev in &events[..n] {
                let Ok(r) = EpollRef::try_from(ev.data()) else {
                    continue;
                };
                let end = match r {
                    EpollRef::Signal => self.on_signal(),
                    EpollRef::Listener => {
                        self.on_accept();
                        None
                    }
                    EpollRef::TapStream => self.on_stream(ev.events()),
                    EpollRef::TapTun => self.on_tun(ev.events()),
                    EpollRef::Quit => self.on_quit(),
                    EpollRef::Ping(r) | EpollRef::Udp(r) | EpollRef::Tcp(r)
                        if self.flows.get(r.flow).is_none() =>
                    {
                        // Queued before its flow closed earlier in this
                        // round: whatever now has the slot isn't it.
                        self.flows.stale_event();
                        None
                    }
                    EpollRef::Ping(r) => {
                        self.dispatch.ping_event(
                            &mut self.flows,
                            r,
                            ev.events(),
                            &mut self.tx,
                            &self.ev,
                        );
                        None
                    }
                    EpollRef::Udp(r) => {
                        self.dispatch.udp_event(
                            &mut self.flows,
                            r,
                            ev.events(),
                            &mut self.tx,
                            &self.ev,
                        );
                        None
                    }
                    EpollRef::TcpListen(i) => {
                        self.on_tcp_listener(i);
                        None
                    }
                    EpollRef::UdpListen(i) => {
                        self.on_udp_listener(i);
                        None
                    }
                    EpollRef::UdpSplice(r) => {
                        if let Some(mut sp) = self.listeners.splicer.take() {
                            crate::udp::spliced::event(&mut self.flows, &mut sp, r, Instant::now());
                            self.listeners.splicer = Some(sp);
                        }
                        None
                    }
                    EpollRef::Splice(r) => {
                        spliced +=
                            crate::tcp::spliced::event(&mut self.flows, &self.ev, r, ev.events());
                        None
                    }
                    EpollRef::Tcp(r) => {
                        self.dispatch.tcp_event(
                            &mut self.flows,
                            r,
                            ev.events(),
                            &mut self.tx,
                            &self.ev,
                        );
                        None
                    }
                };
                if let Some(o) = end {
                    return o;
                }
            }
            self.timers();
            self.auto_round();
            if let Err(o) = self.flush() {
                return o;
            }
            let moved = self.round_bytes as u64 + (self.tx.sent - sent) + spliced;
            active = self
                .poll_policy
                .after_round(n, moved, self.tap_out, self.guest_in);
            self.stats_round();
            if let Some(until) = self.draining_until
                && (self.flows.count(Kind::Tcp) == 0 || Instant::now() >= until)
            {
                if self.flows.count(Kind::Tcp) > 0 {
                    log::debug!("connections still open after the linger time");
                }
                return Outcome::Quit;
            }
        }
    }

    /// When the loop must wake up even without events: the next
    /// advertisement, the earliest flow timer, the end of lingering, a
    /// stats print held back.
    /// `None` (nothing due, ever) blocks until an event comes.
    /// pasta's `auto`: follow the ports bound on the other side, when a
    /// scan is due.
    fn auto_round(&mut self) {
        let Some(mut auto) = self.listeners.auto.take() else {
            return;
        };
        auto.tick(self.conf, &mut self.listeners, &self.ev, Instant::now());
        self.listeners.auto = Some(auto);
    }

    fn wake_at(&mut self) -> Option<Instant> {
        let flows = if self.guest_present() {
            self.flows.next_deadline()
        } else {
            None
        };
        let auto = self.listeners.auto.as_ref().map(|a| a.due());
        [
            self.next_timer,
            flows,
            self.draining_until,
            self.stats_due,
            auto,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn timeout(&mut self) -> Option<Duration> {
        let t = self.wake_at()?;
        // At least a millisecond: epoll counts in those, and waking up
        // before the deadline would only go round again.
        Some(
            t.saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        )
    }

    /// Run what is due: only flows whose deadline came (a heap in
    /// `flow`), so a round with nothing due costs a look at its top.
    fn timers(&mut self) {
        if !self.guest_present() {
            self.next_timer = None;
            return;
        }
        let now = Instant::now();
        let flows_due = self.flows.next_deadline().is_some_and(|t| t <= now);
        if flows_due || self.next_timer.is_some_and(|t| t <= now) {
            self.next_timer = self
                .dispatch
                .periodic(now, &mut self.tx, &self.ev, &mut self.flows);
        }
    }

    fn guest_present(&self) -> bool {
        match &self.side {
            TapSide::Stream { conn, .. } => conn.is_some(),
            TapSide::Tun { .. } | TapSide::Nothing => true,
        }
    }

    /// The counters now.
    fn snapshot(&self) -> Snapshot {
        Snapshot::take(&self.flows, &self.dispatch.drops, &self.tx)
    }

    /// With `--stats`, after each round: print what changed, or wake up
    /// when it may be printed. Costs nothing without `--stats`.
    fn stats_round(&mut self) {
        if self.stats.is_none() {
            return;
        }
        let snap = self.snapshot();
        let Some(pacer) = &mut self.stats else {
            return;
        };
        self.stats_due = match pacer.step(Instant::now(), &snap) {
            Step::Print => {
                stats::print(&snap);
                None
            }
            Step::WakeAt(t) => Some(t),
            Step::Idle => None,
        };
    }

    fn on_signal(&mut self) -> Option<Outcome> {
        let Ok(Some(si)) = self.signals.read_signal() else {
            return None;
        };
        let sig = i32::try_from(si.ssi_signo)
            .ok()
            .and_then(|n| nix::sys::signal::Signal::try_from(n).ok());
        if sig == Some(isolate::STATS_SIGNAL) {
            let snap = self.snapshot();
            stats::print(&snap);
            if let Some(p) = &mut self.stats {
                p.printed(Instant::now(), &snap);
                self.stats_due = None;
            }
            return None;
        }
        log::info!("{} received, exiting", sig.map_or("signal", |s| s.as_str()));
        Some(Outcome::Signal)
    }

    fn on_quit(&mut self) -> Option<Outcome> {
        let q = self.quit.as_mut()?;
        if !q.gone() {
            return None;
        }
        match self.linger {
            Some(limit) if self.flows.count(Kind::Tcp) > 0 => {
                // Stop watching it (it stays readable), and drain.
                let _ = self.ev.remove(q.as_fd());
                self.draining_until = Some(Instant::now() + limit);
                None
            }
            _ => Some(Outcome::Quit),
        }
    }

    /// A host peer connecting to a forwarded TCP port. Without a guest
    /// there is nowhere to go: the peer is refused at once.
    fn on_tcp_listener(&mut self, i: u32) {
        let Some(l) = self.listeners.get(i) else {
            return;
        };
        if !self.guest_present() {
            while let Ok(c) = crate::sys::tcp::accept(l.sock.as_fd()) {
                crate::tcp::close_reset(c);
            }
            return;
        }
        self.dispatch.tcp_accept(
            l,
            self.listeners.splicer.as_ref(),
            &mut self.flows,
            &mut self.tx,
            &self.ev,
        );
    }

    /// Datagrams on a forwarded UDP port; dropped while no guest is there.
    fn on_udp_listener(&mut self, i: u32) {
        if self.listeners.get(i).is_some_and(|l| l.ns) {
            // -U: from the namespace to the host, never through the tap.
            let Some(mut sp) = self.listeners.splicer.take() else {
                return;
            };
            if let Some(l) = self.listeners.get(i) {
                let idle = self.dispatch.udp_idle();
                crate::udp::spliced::forwarded(
                    &mut self.flows,
                    &self.ev,
                    &mut sp,
                    l,
                    idle,
                    Instant::now(),
                );
            }
            self.listeners.splicer = Some(sp);
            return;
        }
        let Some(l) = self.listeners.get(i) else {
            return;
        };
        let splicer = self.listeners.splicer.as_ref();
        if !self.guest_present() && splicer.is_none() {
            let mut sink = [0u8; 1];
            while nix::sys::socket::recv(
                std::os::fd::AsRawFd::as_raw_fd(&l.sock),
                &mut sink,
                nix::sys::socket::MsgFlags::MSG_DONTWAIT,
            )
            .is_ok()
            {}
            return;
        }
        self.dispatch
            .udp_forwarded(l, &mut self.flows, splicer, &mut self.tx, &self.ev);
    }

    fn on_accept(&mut self) {
        let TapSide::Stream {
            listener: Some(l),
            conn,
        } = &mut self.side
        else {
            return;
        };
        let c = match l.accept() {
            Ok((c, _)) => c,
            Err(e) => {
                if e.kind() != io::ErrorKind::WouldBlock {
                    log::warn!("accept: {e}");
                }
                return;
            }
        };
        if conn.is_some() {
            // One guest at a time; the connection closes when `c` drops.
            log::warn!("refusing a second guest connection");
            return;
        }
        // A send buffer of a few large frames' worth: the default
        // (net.core.wmem_default, 208 KiB) holds three 64 KiB frames, and
        // each time it fills, our next write and the guest's reader wait
        // on each other's wake-ups. Much larger did worse, probably as
        // what we wrote goes cold in the cache before the reader copies
        // it (`GUEST_SNDBUF`). The kernel caps it at net.core.wmem_max;
        // failing, the default stays.
        if let Err(e) = setsockopt(&c, sockopt::SndBuf, &GUEST_SNDBUF) {
            log::debug!("guest connection: SO_SNDBUF: {e}");
        }
        let attach = c
            .set_nonblocking(true)
            .and_then(|()| self.ev.add(&c, EpollRef::TapStream, false));
        match attach {
            Ok(()) => {
                *conn = Some(c);
                self.tap_out = false;
                self.stream_rx.reset();
                self.tx.clear();
                log::info!("guest connected");
                self.guest_attached();
            }
            Err(e) => log::warn!("can't serve the guest connection: {e}"),
        }
    }

    fn on_stream(&mut self, flags: EpollFlags) -> Option<Outcome> {
        if flags.contains(EpollFlags::EPOLLOUT) {
            // Errors surface on the read side as a hang-up.
            let _ = self.flush();
        }
        let readable = EpollFlags::EPOLLIN
            | EpollFlags::EPOLLHUP
            | EpollFlags::EPOLLERR
            | EpollFlags::EPOLLRDHUP;
        if !flags.intersects(readable) {
            return None;
        }
        let TapSide::Stream { conn: Some(c), .. } = &self.side else {
            return None;
        };
        let reason = match self.stream_rx.read_from(c) {
            Ok(0) => "guest disconnected".to_string(),
            Ok(n) => {
                self.round_bytes += n;
                self.guest_in = true;
                loop {
                    match self.stream_rx.frames(&mut self.batch) {
                        Ok(()) if self.batch.is_empty() => return None,
                        Ok(()) => self.dispatch.handle_batch(
                            self.stream_rx.buf(),
                            &self.batch,
                            &mut self.tx,
                            &self.ev,
                            &mut self.flows,
                        ),
                        Err(e) => {
                            break format!(
                                "guest stream out of sync ({e}), closing the connection"
                            );
                        }
                    }
                }
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                return None;
            }
            Err(e) => format!("guest connection error: {e}"),
        };
        self.detach(&reason)
    }

    fn on_tun(&mut self, flags: EpollFlags) -> Option<Outcome> {
        if flags.contains(EpollFlags::EPOLLOUT) && self.flush().is_err() {
            return Some(Outcome::TapError);
        }
        let TapSide::Tun { dev, .. } = &self.side else {
            return None;
        };
        self.tun_rx.woke(self.round);
        loop {
            match self.tun_rx.read_batch(dev, &mut self.batch) {
                Ok(0) => return None,
                Ok(_) => {
                    self.round_bytes += self.tun_rx.bytes();
                    self.guest_in = true;
                    self.dispatch.handle_batch(
                        self.tun_rx.buf(),
                        &self.batch,
                        &mut self.tx,
                        &self.ev,
                        &mut self.flows,
                    );
                    // The device is level-triggered: what arrived since it
                    // ran dry comes up in the next wait, without a read
                    // here that would only say EAGAIN (one syscall per
                    // wake-up, a twelfth of a 1-byte request/response).
                    if self.tun_rx.dry() {
                        return None;
                    }
                }
                Err(e) => {
                    log::error!("tap device: {e}");
                    return Some(Outcome::TapError);
                }
            }
        }
    }

    /// Close the guest connection; returns `GuestGone` if we should exit.
    fn detach(&mut self, reason: &str) -> Option<Outcome> {
        if let TapSide::Stream { conn, .. } = &mut self.side
            && let Some(c) = conn.take()
        {
            let _ = self.ev.remove(&c);
        }
        log::info!("{reason}");
        self.report_drops();
        self.stream_rx.reset();
        self.tx.clear();
        self.dispatch.guest_left(&self.ev, &mut self.flows);
        self.next_timer = None;
        if self.one_off {
            log::info!("exiting (one-off)");
            return Some(Outcome::GuestGone);
        }
        None
    }

    /// Log what was dropped so far, if anything.
    pub fn report_drops(&self) {
        if self.dispatch.drops.total() > 0 {
            log::info!("dropped guest frames: {}", self.dispatch.drops);
        }
        if self.tx.dropped > 0 {
            log::info!(
                "frames to guest dropped (guest not reading): {}",
                self.tx.dropped
            );
        }
        if self.tx.stalled > 0 {
            log::info!("sockets paused (guest not reading): {}", self.tx.stalled);
        }
        let evicted = [Kind::Tcp, Kind::Udp, Kind::Ping].map(|k| self.flows.evicted(k));
        if evicted.iter().any(|&n| n > 0) {
            log::info!(
                "flows evicted to make room: TCP {} (in the handshake), UDP {}, ping {}",
                evicted[0],
                evicted[1],
                evicted[2]
            );
        }
    }

    /// Send what we can of the queue, and watch for writability only while
    /// something is left; once it has drained, sockets and connections
    /// paused for a full queue go on, and what they queued is sent too.
    /// Err only for a failed tun device.
    fn flush(&mut self) -> Result<(), Outcome> {
        self.write_out()?;
        if self.tx.drained() {
            self.dispatch
                .tap_drained(&self.ev, &mut self.tx, &mut self.flows);
            if !self.tx.pending().is_empty() {
                self.write_out()?;
            }
        }
        Ok(())
    }

    /// Write the queue to the tap side and track whether we wait for
    /// writability.
    fn write_out(&mut self) -> Result<(), Outcome> {
        let left = match &self.side {
            TapSide::Stream { conn: Some(c), .. } => {
                let mut c: &UnixStream = c;
                flush_stream(&mut c, &mut self.tx)
            }
            TapSide::Stream { conn: None, .. } => return Ok(()),
            TapSide::Nothing => {
                // Nowhere for frames to go (router advertisements).
                self.tx.clear();
                return Ok(());
            }
            TapSide::Tun { dev, .. } => match tun::flush(dev, &mut self.tx) {
                Ok(left) => left,
                Err(e) => {
                    log::error!("tap device: {e}");
                    return Err(Outcome::TapError);
                }
            },
        };
        if left != self.tap_out {
            let r = match &self.side {
                TapSide::Stream { conn: Some(c), .. } => {
                    self.ev.modify(c, EpollRef::TapStream, left)
                }
                TapSide::Tun { dev, .. } => self.ev.modify(dev, EpollRef::TapTun, left),
                TapSide::Stream { conn: None, .. } | TapSide::Nothing => Ok(()),
            };
            if let Err(e) = r {
                log::warn!("epoll: {e}");
            }
            self.tap_out = left;
        }
        Ok(())
    }
}

/// Write the queue to a stream; returns whether anything is left. A write
/// error empties the queue: the read side will see the hang-up.
fn flush_stream(conn: &mut impl Write, tx: &mut TxQueue) -> bool {
    while !tx.pending().is_empty() {
        match conn.write(tx.pending()) {
            Ok(n) => tx.consume(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::debug!("write to guest: {e}");
                tx.clear();
                return false;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_follows_exchanges_not_bulk_or_streams() {
        let mut p = PollPolicy::default();
        assert!(!p.after_round(0, 0, false, false), "a quiet round");
        assert!(!p.after_round(3, BUSY_POLL_MAX_BYTES, false, true), "bulk");
        // The events between a stream's bursts don't poll; a lull after it
        // as long as the cooldown lets polling resume.
        for _ in 0..100 {
            assert!(!p.after_round(1, 0, false, false), "between bursts");
        }
        for _ in 1..BUSY_POLL_BULK_COOLDOWN {
            assert!(!p.after_round(1, 100, false, false), "right after bulk");
        }
        assert!(!p.after_round(1, 100, true, false), "frames wait");
        // Request/response: the guest's round, then the socket's, for ever.
        for _ in 0..100 {
            assert!(p.after_round(1, 100, false, true));
            assert!(p.after_round(1, 100, false, false));
        }
        // A guest that sends in every round streams: polls stop at the
        // limit and start again after a round without its frames.
        let mut polled = 0;
        for _ in 0..100 {
            polled += usize::from(p.after_round(1, 1400, false, true));
        }
        assert_eq!(polled, usize::from(BUSY_POLL_MAX_GUEST_ROUNDS) - 1);
        assert!(p.after_round(1, 100, false, false));
    }
}
