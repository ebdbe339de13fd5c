//! What `--stats` and SIGUSR1 print: flows per kind, table occupancy and drops.
//!
//! # Theory of operation
//!
//! The loop takes a [`Snapshot`] of its counters after every round of
//! events (a few dozen integers, copied only when `--stats` is given) and
//! asks a [`Pacer`] what to do with it. The pacer prints a snapshot that
//! differs from the last one printed, at most once every DELAY seconds: a
//! change that comes too early is held, and the pacer names the time at
//! which the loop must wake up to print it. With nothing changed it asks
//! for no wake-up at all, so an idle process with `--stats` sleeps as
//! deeply as one without. SIGUSR1 prints a snapshot at once, changed or
//! not, and counts as a print.
//!
//! Where it goes: upstream's manual doesn't say, so the lines go where log
//! messages go, whatever the log level (`crate::log::always`): stderr in
//! the foreground, the system log once daemonised, or the `-l` file.

use crate::dispatch::DropCounters;
use crate::flow::{Flows, Kind};
use crate::tap::TxQueue;
use std::time::{Duration, Instant};

/// The counters one stats print shows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Open flows and the most there could be, per kind (TCP, UDP, ping).
    pub flows: [(usize, usize); Kind::COUNT],
    /// Flows in the table, of every kind.
    pub in_use: usize,
    /// The table's capacity.
    pub capacity: usize,
    /// The shared pool: in use (flows beyond their kind's reserve), size.
    pub shared: (usize, usize),
    /// Guest frames dropped, by reason.
    pub drops: DropCounters,
    /// Frames to the guest dropped: its queue was full.
    pub tx_dropped: u64,
    /// Times a socket was paused for a full guest queue.
    pub tx_stalled: u64,
    /// UDP datagrams that joined a run sent as one frame.
    pub tx_merged: u64,
    /// Flows evicted to make room, per kind.
    pub evicted: [u64; Kind::COUNT],
    /// Socket events for flows closed earlier in the same round, dropped.
    pub stale_events: u64,
}

/// The kinds, in the order of the per-kind arrays and of the output.
const KINDS: [(Kind, &str); Kind::COUNT] = [
    (Kind::Tcp, "TCP"),
    (Kind::Udp, "UDP"),
    (Kind::Ping, "ping"),
    (Kind::Splice, "TCP splice"),
    (Kind::UdpSplice, "UDP splice"),
];

impl Snapshot {
    /// The counters of a running loop.
    pub fn take(flows: &Flows, drops: &DropCounters, tx: &TxQueue) -> Self {
        Snapshot {
            flows: KINDS.map(|(k, _)| (flows.count(k), flows.max_flows(k))),
            in_use: flows.len(),
            capacity: flows.capacity(),
            shared: (flows.shared_used(), flows.shared()),
            drops: drops.clone(),
            tx_dropped: tx.dropped,
            tx_stalled: tx.stalled,
            tx_merged: tx.merged,
            evicted: KINDS.map(|(k, _)| flows.evicted(k)),
            stale_events: flows.stale_events(),
        }
    }

    /// The printed form, one line each: flows, guest drops, the way back.
    pub fn lines(&self) -> [String; 3] {
        let per_kind = |f: &dyn Fn(usize) -> String, kinds: &[(Kind, &str)]| {
            kinds
                .iter()
                .enumerate()
                .map(|(i, (_, name))| format!("{name} {}", f(i)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let flows = per_kind(
            &|i| format!("{}/{}", self.flows[i].0, self.flows[i].1),
            &KINDS,
        );
        // Spliced connections are never evicted.
        let evicted = per_kind(&|i| self.evicted[i].to_string(), &KINDS[..3]);
        let drops = if self.drops.total() == 0 {
            "none".to_string()
        } else {
            self.drops.to_string()
        };
        [
            format!(
                "stats: flows: {flows}; table {}/{}, shared {}/{}",
                self.in_use, self.capacity, self.shared.0, self.shared.1
            ),
            format!("stats: guest frames dropped: {drops}"),
            format!(
                "stats: to guest: frames dropped {}, sockets paused {}, UDP datagrams joined to runs {}; evicted: {evicted}; stale events {}",
                self.tx_dropped, self.tx_stalled, self.tx_merged, self.stale_events
            ),
        ]
    }
}

/// What the loop does with a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Print it now.
    Print,
    /// It changed but the last print is too recent: wake up then and ask again.
    WakeAt(Instant),
    /// Nothing new: no print, no wake-up.
    Idle,
}

/// Prints changed snapshots at most every `every`.
#[derive(Debug)]
pub struct Pacer {
    every: Duration,
    /// The last snapshot printed (at first, the loop's starting state).
    last: Snapshot,
    /// When it was printed; `None` before the first print.
    at: Option<Instant>,
}

impl Pacer {
    /// A pacer printing at most every `every`, comparing with `start`.
    pub fn new(every: Duration, start: Snapshot) -> Self {
        Pacer {
            every,
            last: start,
            at: None,
        }
    }

    /// Decide on `snap`, taken at `now`; on `Step::Print` it is recorded
    /// as printed.
    pub fn step(&mut self, now: Instant, snap: &Snapshot) -> Step {
        if *snap == self.last {
            return Step::Idle;
        }
        match self.at.map(|t| t + self.every) {
            Some(next) if now < next => Step::WakeAt(next),
            _ => {
                self.printed(now, snap);
                Step::Print
            }
        }
    }

    /// Record a print made outside `step` (SIGUSR1).
    pub fn printed(&mut self, now: Instant, snap: &Snapshot) {
        self.last = snap.clone();
        self.at = Some(now);
    }
}

/// Print `snap` where log messages go, whatever the log level.
pub fn print(snap: &Snapshot) {
    for line in snap.lines() {
        crate::log::always(format_args!("{line}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::DropReason;

    fn snap(udp: usize) -> Snapshot {
        Snapshot {
            flows: [(0, 140), (udp, 130), (0, 122), (0, 2), (0, 2)],
            in_use: udp,
            capacity: 160,
            shared: (udp.saturating_sub(10), 120),
            ..Snapshot::default()
        }
    }

    #[test]
    fn lines_quiet() {
        assert_eq!(
            snap(1).lines(),
            [
                "stats: flows: TCP 0/140, UDP 1/130, ping 0/122, TCP splice 0/2, UDP splice 0/2; table 1/160, shared 0/120",
                "stats: guest frames dropped: none",
                "stats: to guest: frames dropped 0, sockets paused 0, UDP datagrams joined to runs 0; evicted: TCP 0, UDP 0, ping 0; stale events 0",
            ]
        );
    }

    #[test]
    fn lines_with_drops() {
        let mut s = snap(0);
        s.drops.bump(DropReason::FlowLimit);
        s.drops.bump(DropReason::FlowLimit);
        s.drops.bump(DropReason::Destination);
        s.tx_dropped = 7;
        s.tx_stalled = 2;
        s.tx_merged = 5;
        s.evicted = [1, 2, 3, 0, 0];
        s.stale_events = 4;
        let [_, drops, back] = s.lines();
        assert_eq!(
            drops,
            "stats: guest frames dropped: destination refused: 1, flow limit: 2"
        );
        assert_eq!(
            back,
            "stats: to guest: frames dropped 7, sockets paused 2, UDP datagrams joined to runs 5; evicted: TCP 1, UDP 2, ping 3; stale events 4"
        );
    }

    #[test]
    fn nothing_changed_nothing_printed() {
        let t0 = Instant::now();
        let mut p = Pacer::new(Duration::from_secs(5), snap(0));
        assert_eq!(p.step(t0, &snap(0)), Step::Idle);
        assert_eq!(p.step(t0 + Duration::from_secs(60), &snap(0)), Step::Idle);
    }

    #[test]
    fn first_change_prints_at_once_then_waits_for_the_delay() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut p = Pacer::new(s(5), snap(0));
        assert_eq!(p.step(t0, &snap(1)), Step::Print);
        // Same as printed: nothing, however late.
        assert_eq!(p.step(t0 + s(1), &snap(1)), Step::Idle);
        // Changed too early: wake up when the delay is over.
        assert_eq!(p.step(t0 + s(2), &snap(2)), Step::WakeAt(t0 + s(5)));
        assert_eq!(p.step(t0 + s(4), &snap(3)), Step::WakeAt(t0 + s(5)));
        assert_eq!(p.step(t0 + s(5), &snap(3)), Step::Print);
        // Back to what was printed before the delay ran out: nothing to say.
        assert_eq!(p.step(t0 + s(6), &snap(4)), Step::WakeAt(t0 + s(10)));
        assert_eq!(p.step(t0 + s(7), &snap(3)), Step::Idle);
        assert_eq!(p.step(t0 + s(30), &snap(4)), Step::Print);
    }

    #[test]
    fn a_signal_print_counts() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut p = Pacer::new(s(5), snap(0));
        p.printed(t0, &snap(1));
        assert_eq!(p.step(t0 + s(1), &snap(1)), Step::Idle);
        assert_eq!(p.step(t0 + s(1), &snap(2)), Step::WakeAt(t0 + s(5)));
    }

    #[test]
    fn zero_delay_prints_every_change() {
        let t0 = Instant::now();
        let mut p = Pacer::new(Duration::ZERO, snap(0));
        assert_eq!(p.step(t0, &snap(1)), Step::Print);
        assert_eq!(p.step(t0, &snap(2)), Step::Print);
        assert_eq!(p.step(t0, &snap(2)), Step::Idle);
    }
}
