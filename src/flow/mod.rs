//! The flow table: every flow we translate, TCP, UDP and ping alike, in
//! one table owned by the event loop, found by slot (what epoll hands
//! back) or by addresses (one hash index).
//!
//! # Theory of operation
//!
//! A flow joins two sides. Each side is somewhere (`Side::Tap`: the
//! guest; `Side::Host`: a socket of ours on the host; pasta's namespace,
//! for the splice path, comes later) and has two addresses as seen from
//! there: the peer's and ours. For a flow the guest opens, the initiating
//! side (`End::Initiator`) is the tap: peer = the guest's address and
//! port, ours = the destination as the guest sees it. Its target
//! (`End::Target`) is what `fwd::outbound` decided: peer = where our host
//! socket goes, ours = that socket's local address and port. Sides are
//! fixed when the flow is opened and never change.
//!
//! Opening goes through a builder: `begin` reserves a slot of the right
//! kind if that kind has room (see "Limits" below) and returns a
//! `NewFlow`, which borrows
//! the table. It knows the references the flow will have, so its socket
//! can be registered in epoll under them, and `commit` makes the flow
//! live: stored, hashed by both sides, counted. Dropped uncommitted (an
//! early return on a failed `socket()`), it gives the slot back, so a
//! half-built flow can't outlive the handler that started it. `remove`
//! hands a live flow back to its protocol, which closes its socket.
//!
//! ```text
//!  free ──begin()──▶ reserved (NewFlow) ──commit()──▶ live ──remove()──▶ free
//!   ▲                   │ dropped uncommitted                              │
//!   └───────────────────┴──────────────────────────────────────────────────┘
//! ```
//!
//! Every slot has a generation, bumped whenever it is freed. An epoll
//! reference carries (kind, slot, end, generation) (`SideRef`), and
//! `get` only answers while the generation matches: an event already
//! queued for a flow closed earlier in the same round can't act on a new
//! flow that took its slot.
//!
//! Finding a flow by address is one hash lookup of (protocol, side, peer,
//! ours), answering which flow and which of its sides (`hash.rs`).
//! Opening and closing are O(1): free slots are chained through the slots
//! themselves, and the slot vector only ever grows into capacity reserved
//! at start-up, so nothing is allocated or moved while serving.
//!
//! Each kind has an ordered list through its slots that eviction takes
//! from, oldest first (`evict`): its protocol decides what is in it and
//! in which order (TCP: connections still in the handshake, by SYN; UDP
//! and ping: every flow, by last use, through `touch`).
//!
//! Timers: each flow has at most one armed deadline on one heap for the
//! whole table (`timer.rs`), so a round of the loop visits only the flows
//! whose deadline came (`pop_due`), never all of them.
//!
//! Limits: the table never holds more than its capacity, which comes
//! from the open files limit (`capacity_for`): every flow holds one
//! socket. Each kind has a reserve of its own (`reserves`) and the rest
//! is a pool all kinds share: a kind may open a flow while it is under
//! its reserve, or while the pool has room. The pool is used by the
//! flows each kind has beyond its reserve, so a kind's most is its
//! reserve plus the whole pool, and however much of the pool one kind
//! took, every other kind can still reach its reserve. When a kind has
//! no room it can only make room among its own flows (`evict`): nothing
//! it does can push another kind below its reserve.

mod hash;
mod timer;

use crate::fwd::Proto;
use nix::sys::socket::{SockaddrStorage, getpeername, getsockname};
use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Generations wrap within the bits `EpollRef` has for them.
pub const GEN_MASK: u32 = (1 << 24) - 1;

/// A slot index that stands for none, ending chains.
const NIL: u32 = u32::MAX;

/// The soonest a timer handler may schedule its flow again: a round of
/// timers always ends, even if a handler leaves something due.
pub const MIN_REARM: Duration = Duration::from_millis(1);

/// Where a side of a flow is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The guest, behind the tap (a VM's stream or pasta's tap device).
    Tap,
    /// The host: a socket of ours and its peer.
    Host,
    /// pasta's namespace, through a socket of ours opened inside it (the
    /// loopback splice path), not through the tap.
    Ns,
}

/// Which of a flow's two sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum End {
    /// The side that opened the flow.
    Initiator,
    /// The side the flow was forwarded to.
    Target,
}

impl End {
    fn bit(self) -> u32 {
        match self {
            End::Initiator => 0,
            End::Target => 1,
        }
    }

    fn from_bit(b: u32) -> End {
        if b & 1 == 0 {
            End::Initiator
        } else {
            End::Target
        }
    }
}

/// One side of a flow: where it is, and the two addresses as seen there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowSide {
    /// Where this side is.
    pub at: Side,
    /// The other party on this side: the guest, or the host peer.
    pub peer: SocketAddr,
    /// Our end on this side: the address the guest sent to, or our
    /// socket's local address.
    pub ours: SocketAddr,
}

impl FlowSide {
    /// A side at `at` between `peer` and `ours`.
    pub fn new(at: Side, peer: SocketAddr, ours: SocketAddr) -> Self {
        FlowSide { at, peer, ours }
    }
}

/// Both sides of a flow, fixed when it is opened: the table hashes them,
/// so they can't change while the flow lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sides([FlowSide; 2]);

impl Sides {
    /// The sides of a flow opened by `initiator` and forwarded to `target`.
    pub fn new(initiator: FlowSide, target: FlowSide) -> Self {
        Sides([initiator, target])
    }

    /// The side at `end`.
    pub fn get(&self, end: End) -> &FlowSide {
        match end {
            End::Initiator => &self.0[0],
            End::Target => &self.0[1],
        }
    }

    /// The side that opened the flow.
    pub fn initiator(&self) -> &FlowSide {
        &self.0[0]
    }

    /// The side the flow was forwarded to.
    pub fn target(&self) -> &FlowSide {
        &self.0[1]
    }

    /// The side on the tap (the first one, for a flow with two).
    pub fn tap(&self) -> &FlowSide {
        if self.0[0].at == Side::Tap {
            &self.0[0]
        } else {
            &self.0[1]
        }
    }

    /// The side on the host (the first one, for a flow with two).
    pub fn host(&self) -> &FlowSide {
        if self.0[0].at == Side::Host {
            &self.0[0]
        } else {
            &self.0[1]
        }
    }

    /// Which end is on the host: where a flow's one socket is.
    pub fn host_end(&self) -> End {
        if self.0[0].at == Side::Host {
            End::Initiator
        } else {
            End::Target
        }
    }
}

/// What a flow translates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A TCP connection from the guest, one host socket.
    Tcp,
    /// A UDP flow, one connected host socket.
    Udp,
    /// ICMP or ICMPv6 echo, one ping socket.
    Ping,
    /// A TCP connection between the host and pasta's namespace joined by
    /// `splice(2)`: two sockets and two pipes.
    Splice,
    /// A UDP flow between pasta's namespace and the host: two sockets,
    /// datagrams copied between them.
    UdpSplice,
}

impl Kind {
    /// Number of kinds, for per-kind arrays.
    pub const COUNT: usize = 5;

    /// Descriptors a flow of this kind holds beyond the one its slot
    /// stands for. Kinds holding more stay within their reserve, and the
    /// extra descriptors of a full reserve are set aside from the pool.
    pub fn extra_fds(self) -> usize {
        match self {
            Kind::Splice => SPLICE_EXTRA_FDS,
            Kind::UdpSplice => 1,
            Kind::Tcp | Kind::Udp | Kind::Ping => 0,
        }
    }

    fn index(self) -> usize {
        match self {
            Kind::Tcp => 0,
            Kind::Udp => 1,
            Kind::Ping => 2,
            Kind::Splice => 3,
            Kind::UdpSplice => 4,
        }
    }

    /// The transport protocol, part of every hash key.
    pub fn proto(self) -> Proto {
        match self {
            Kind::Tcp | Kind::Splice => Proto::Tcp,
            Kind::Udp | Kind::UdpSplice => Proto::Udp,
            Kind::Ping => Proto::Icmp,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Tcp => "TCP",
            Kind::Udp => "UDP",
            Kind::Ping => "ping",
            Kind::Splice => "TCP splice",
            Kind::UdpSplice => "UDP splice",
        })
    }
}

/// A flow of any kind, as the table stores it.
pub enum Flow {
    /// A TCP connection.
    Tcp(crate::tcp::Conn),
    /// A UDP flow.
    Udp(crate::udp::UdpFlow),
    /// An echo flow.
    Ping(crate::icmp::PingFlow),
    /// A spliced TCP connection.
    Splice(crate::tcp::spliced::SpliceFlow),
    /// A UDP flow between the namespace and the host.
    UdpSplice(crate::udp::spliced::UdpSpliceFlow),
}

/// What the table needs to know of the flows it stores.
pub trait FlowEntry {
    /// The flow's kind.
    fn kind(&self) -> Kind;
    /// The flow's two sides.
    fn sides(&self) -> &Sides;
}

impl Flow {
    /// The flow's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Flow::Tcp(_) => Kind::Tcp,
            Flow::Udp(_) => Kind::Udp,
            Flow::Ping(_) => Kind::Ping,
            Flow::Splice(_) => Kind::Splice,
            Flow::UdpSplice(_) => Kind::UdpSplice,
        }
    }

    /// The flow's two sides.
    pub fn sides(&self) -> &Sides {
        match self {
            Flow::Tcp(c) => c.sides(),
            Flow::Udp(u) => u.sides(),
            Flow::Ping(p) => p.sides(),
            Flow::Splice(s) => s.sides(),
            Flow::UdpSplice(u) => u.sides(),
        }
    }
}

impl FlowEntry for Flow {
    fn kind(&self) -> Kind {
        Flow::kind(self)
    }

    fn sides(&self) -> &Sides {
        Flow::sides(self)
    }
}

/// The flow table the event loop owns.
pub type Flows = Table<Flow>;

/// A flow as a reference names it: its slot and that slot's generation
/// when the flow was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowRef {
    /// Slot index.
    pub index: u32,
    /// Generation of the slot (24 bits).
    pub generation: u32,
}

/// One side of a flow: what an epoll reference carries for a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SideRef {
    /// The flow.
    pub flow: FlowRef,
    /// Which of its sides.
    pub end: End,
}

/// No room for another flow of that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// A side of the new flow has the key of a side already in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clash;

/// The hash key of a side: the protocol and the side as seen where it is.
#[derive(Hash)]
struct Key<'a> {
    proto: Proto,
    side: &'a FlowSide,
}

struct Slot<F> {
    generation: u32,
    /// Previous flow in its kind's list (`NIL` at the head or unlisted).
    prev: u32,
    /// Next flow in its kind's list, or next free slot while free.
    next: u32,
    /// The deadline of the flow's armed entry in the timer heap.
    timer: Option<Instant>,
    flow: Option<F>,
}

/// Whether heap entry `e` is its flow's armed timer.
fn armed<F>(slots: &[Slot<F>], e: &timer::Entry) -> bool {
    slots.get(e.flow.index as usize).is_some_and(|s| {
        s.generation == e.flow.generation && s.flow.is_some() && s.timer == Some(e.at)
    })
}

/// Most flows at once, whatever the open files limit.
pub const MAX_FLOWS: usize = 128 * 1024;

/// Descriptors kept for ourselves (standard streams, epoll, signalfd,
/// the tap side, capture and log files, namespace handles, pidfds), off
/// the open files limit before it is shared out to flows.
pub const RESERVED_FDS: u64 = 128;

/// The table's capacity under an open files limit of `nofile`: every flow
/// holds one socket, so one flow per descriptor left after ours, at most
/// `MAX_FLOWS`. A limit too small to leave `RESERVED_FDS` still gives
/// flows half of it.
pub fn capacity_for(nofile: u64) -> usize {
    let fds = nofile.saturating_sub(RESERVED_FDS).max(nofile / 2);
    usize::try_from(fds).map_or(MAX_FLOWS, |n| n.min(MAX_FLOWS))
}

/// The flows each kind is guaranteed in a table of `capacity` (in `Kind`
/// order), whatever the other kinds do; the rest is shared.
///
/// TCP an eighth: an established connection is never evicted, so TCP
/// can't win back pool space another kind holds, and its reserve is what
/// it is sure to have (2484 connections at 20 000 open files). UDP a
/// sixteenth: UDP makes room by closing its least recently used flow, so
/// its reserve is what stays open under any pressure, plenty for DNS and
/// a few hundred exchanges. Ping a sixty-fourth: echo flows are few and
/// short. Spliced connections a hundred and twenty-eighth, and no more:
/// each holds six descriptors (two sockets, two pipes), so they never
/// take from the pool, and the five extra descriptors of each are set
/// aside from it (`SPLICE_EXTRA_FDS`). Together about a fifth, so any
/// other kind alone can grow to about three quarters of the table
/// (15 000 UDP flows at 20 000 open files).
pub fn reserves(capacity: usize) -> [usize; Kind::COUNT] {
    [
        capacity / 8,
        capacity / 16,
        capacity / 64,
        capacity / 128,
        capacity / 128,
    ]
}

/// Descriptors a spliced connection holds beyond the one a slot stands
/// for.
pub const SPLICE_EXTRA_FDS: usize = 5;

/// Every kind, in index order.
pub const ALL_KINDS: [Kind; Kind::COUNT] = [
    Kind::Tcp,
    Kind::Udp,
    Kind::Ping,
    Kind::Splice,
    Kind::UdpSplice,
];

/// The ends of a kind's ordered list.
#[derive(Debug, Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

const EMPTY: List = List {
    head: NIL,
    tail: NIL,
};

/// Flows of type `F` in up to `capacity` slots: each kind its reserve,
/// and a pool for all (see `room_for`).
pub struct Table<F> {
    /// Grows into capacity reserved at start-up, never beyond it.
    slots: Vec<Slot<F>>,
    capacity: usize,
    /// Head of the chain of free slots.
    free: u32,
    index: hash::Index,
    /// The hash key (SipHash), drawn at start-up: see `hash.rs`.
    keys: RandomState,
    /// The side index `lookup` found last, plus one (0: none). A batch
    /// of frames is mostly one connection's segments in a row, and
    /// comparing the key with that side's is much cheaper than SipHash.
    /// Only a hint: a hit is a side whose key matches, so a stale one
    /// (its flow closed, its slot reused) can only miss.
    last: Cell<u32>,
    counts: [usize; Kind::COUNT],
    /// Per kind, the flows it may always open, whatever the others hold.
    reserves: [usize; Kind::COUNT],
    /// The capacity left after the reserves, for any kind.
    shared: usize,
    /// Every flow's next deadline: see `timer.rs`.
    timers: timer::Heap,
    /// Per kind, the flows eviction takes from, oldest first (see
    /// `evict`).
    lists: [List; Kind::COUNT],
    evicted: [u64; Kind::COUNT],
    /// Events that named a flow no longer there (see `stale_event`).
    stale_events: u64,
}

/// The hash of side index `sidx` of the flows in `slots`.
fn side_hash<F: FlowEntry>(slots: &[Slot<F>], keys: &RandomState, sidx: u32) -> u64 {
    let Some(f) = slots
        .get((sidx >> 1) as usize)
        .and_then(|s| s.flow.as_ref())
    else {
        return 0;
    };
    keys.hash_one(Key {
        proto: f.kind().proto(),
        side: f.sides().get(End::from_bit(sidx)),
    })
}

impl<F: FlowEntry> Table<F> {
    /// A table of `capacity` flows, with the `reserves` of that size.
    pub fn new(capacity: usize) -> Self {
        Self::with_reserves(reserves(capacity), capacity)
    }

    /// A table of `capacity` flows, at least the sum of `reserves` (per
    /// kind, in `Kind` order) and at most 2^30; what the reserves leave
    /// is shared.
    pub fn with_reserves(reserves: [usize; Kind::COUNT], capacity: usize) -> Self {
        let reserved = reserves.iter().sum::<usize>();
        let capacity = capacity.max(reserved).min(1 << 30);
        let reserves = reserves.map(|r| r.min(capacity));
        Table {
            // Reserved, not touched: pages are used as slots are.
            slots: Vec::with_capacity(capacity),
            capacity,
            free: NIL,
            index: hash::Index::new(capacity * 2),
            keys: RandomState::new(),
            last: Cell::new(0),
            counts: [0; Kind::COUNT],
            reserves,
            shared: capacity.saturating_sub(reserved).saturating_sub(
                ALL_KINDS
                    .iter()
                    .map(|k| k.extra_fds() * reserves[k.index()])
                    .sum(),
            ),
            timers: timer::Heap::new(capacity),
            lists: [EMPTY; Kind::COUNT],
            evicted: [0; Kind::COUNT],
            stale_events: 0,
        }
    }

    /// Most flows at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The flows `kind` may always open, whatever the other kinds hold.
    pub fn reserve(&self, kind: Kind) -> usize {
        self.reserves[kind.index()]
    }

    /// The pool any kind may use beyond its reserve.
    pub fn shared(&self) -> usize {
        self.shared
    }

    /// How much of the pool is in use: every kind's flows beyond its
    /// reserve.
    pub fn shared_used(&self) -> usize {
        self.counts
            .iter()
            .zip(self.reserves)
            .map(|(&n, r)| n.saturating_sub(r))
            .sum()
    }

    /// Most flows of `kind` at once: its reserve and the whole pool, when
    /// no other kind uses any of it.
    pub fn max_flows(&self, kind: Kind) -> usize {
        if kind.extra_fds() > 0 {
            return self.reserve(kind);
        }
        self.reserve(kind) + self.shared
    }

    /// Flows of `kind` now.
    pub fn count(&self, kind: Kind) -> usize {
        self.counts[kind.index()]
    }

    /// Whether a flow of `kind` may be opened now: `kind` is under its
    /// reserve, or the pool has room. With the pool in use up to its size
    /// the table is full, so this never lets it outgrow its capacity.
    pub fn room_for(&self, kind: Kind) -> bool {
        self.count(kind) < self.reserve(kind)
            || (kind.extra_fds() == 0 && self.shared_used() < self.shared)
    }

    /// Number of flows.
    pub fn len(&self) -> usize {
        self.counts.iter().sum()
    }

    /// True when there are no flows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes a flow costs once its slot is in use (the slot, its share of
    /// the hash index and of the timer heap), and bytes reserved for the
    /// whole table, of which only what is used becomes resident.
    pub fn footprint(&self) -> (usize, usize) {
        let slot = std::mem::size_of::<Slot<F>>();
        let index = self.index.bytes() / self.capacity.max(1);
        let timers = 2 * std::mem::size_of::<timer::Entry>();
        let per_flow = slot + index + timers;
        (per_flow, per_flow * self.capacity)
    }

    /// The flow `r` names, if it is still there (not closed, its slot not
    /// reused since).
    pub fn get(&self, r: FlowRef) -> Option<&F> {
        let s = self.slots.get(usize::try_from(r.index).ok()?)?;
        if s.generation != r.generation {
            return None;
        }
        s.flow.as_ref()
    }

    /// The same, writable.
    pub fn get_mut(&mut self, r: FlowRef) -> Option<&mut F> {
        let s = self.slots.get_mut(usize::try_from(r.index).ok()?)?;
        if s.generation != r.generation {
            return None;
        }
        s.flow.as_mut()
    }

    /// The reference of the live flow in slot `index`.
    fn ref_at(&self, index: u32) -> Option<FlowRef> {
        let s = self.slots.get(index as usize)?;
        s.flow.as_ref()?;
        Some(FlowRef {
            index,
            generation: s.generation,
        })
    }

    /// The flow side of protocol `proto` that looks like `side`, if any.
    pub fn lookup(&self, proto: Proto, side: &FlowSide) -> Option<SideRef> {
        let is = |sidx: u32| {
            self.side_at(sidx)
                .is_some_and(|(k, s)| k.proto() == proto && s == side)
        };
        let sidx = match self.last.get().checked_sub(1).filter(|&h| is(h)) {
            Some(hint) => hint,
            None => {
                let h = self.keys.hash_one(Key { proto, side });
                let sidx = self.index.find(h, is)?;
                self.last.set(sidx.wrapping_add(1));
                sidx
            }
        };
        Some(SideRef {
            flow: self.ref_at(sidx >> 1)?,
            end: End::from_bit(sidx),
        })
    }

    /// The kind of flow and the side that side index `sidx` names.
    fn side_at(&self, sidx: u32) -> Option<(Kind, &FlowSide)> {
        let f = self.slots.get((sidx >> 1) as usize)?.flow.as_ref()?;
        Some((f.kind(), f.sides().get(End::from_bit(sidx))))
    }

    /// Start opening a flow of `kind`.
    ///
    /// # Errors
    /// `Full` when `kind` has no room (`room_for`).
    pub fn begin(&mut self, kind: Kind) -> Result<NewFlow<'_, F>, Full> {
        if !self.room_for(kind) {
            return Err(Full);
        }
        let index = if self.free != NIL {
            let i = self.free;
            let s = self.slots.get_mut(i as usize).ok_or(Full)?;
            self.free = s.next;
            s.next = NIL;
            i
        } else if self.slots.len() < self.capacity {
            // Within the reserved capacity: no reallocation.
            self.slots.push(Slot {
                generation: 0,
                prev: NIL,
                next: NIL,
                timer: None,
                flow: None,
            });
            u32::try_from(self.slots.len() - 1).map_err(|_| Full)?
        } else {
            return Err(Full);
        };
        let generation = self.slots.get(index as usize).map_or(0, |s| s.generation);
        Ok(NewFlow {
            table: self,
            r: FlowRef { index, generation },
            kind,
            done: false,
        })
    }

    /// Put slot `index` back on the free chain, for a new generation.
    fn release(&mut self, index: u32) {
        if let Some(s) = self.slots.get_mut(index as usize) {
            s.flow = None;
            s.timer = None;
            s.generation = (s.generation + 1) & GEN_MASK;
            s.prev = NIL;
            s.next = self.free;
            self.free = index;
        }
    }

    /// Take the flow `r` names out of the table.
    pub fn remove(&mut self, r: FlowRef) -> Option<F> {
        let kind = self.get(r)?.kind();
        for end in [End::Initiator, End::Target] {
            let sidx = r.index << 1 | end.bit();
            // Hashes are computed from the flows, so the flow stays in its
            // slot until both its entries are out.
            let (slots, keys) = (&self.slots, &self.keys);
            let h = side_hash(slots, keys, sidx);
            self.index
                .remove(h, sidx, |other| side_hash(slots, keys, other));
        }
        self.unlink(r.index, kind);
        let flow = self.slots.get_mut(r.index as usize)?.flow.take();
        self.release(r.index);
        if let Some(c) = self.counts.get_mut(kind.index()) {
            *c = c.saturating_sub(1);
        }
        flow
    }

    /// Every live flow with its reference.
    pub fn iter(&self) -> impl Iterator<Item = (FlowRef, &F)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            let f = s.flow.as_ref()?;
            let index = u32::try_from(i).ok()?;
            Some((
                FlowRef {
                    index,
                    generation: s.generation,
                },
                f,
            ))
        })
    }

    /// Arm flow `r`'s timer for `at`, unless it is armed for no later
    /// already: then the protocol finds nothing due when that comes, and
    /// schedules again.
    pub fn schedule(&mut self, r: FlowRef, at: Instant) {
        let Some(s) = self.slots.get_mut(r.index as usize) else {
            return;
        };
        if s.generation != r.generation || s.flow.is_none() || s.timer.is_some_and(|t| t <= at) {
            return;
        }
        s.timer = Some(at);
        let slots = &self.slots;
        self.timers
            .push(timer::Entry { at, flow: r }, |e| armed(slots, e));
    }

    /// Schedule flow `r` again from its timer handler: at `at`, but not
    /// before `MIN_REARM` after `now`.
    pub fn rearm(&mut self, r: FlowRef, at: Instant, now: Instant) {
        self.schedule(r, at.max(now + MIN_REARM));
    }

    /// The next flow whose timer is due by `now`, disarmed: the caller
    /// runs its protocol's timers, which schedule the next one.
    pub fn pop_due(&mut self, now: Instant) -> Option<FlowRef> {
        while let Some(e) = self.timers.peek() {
            if e.at > now {
                return None;
            }
            self.timers.pop();
            if armed(&self.slots, &e) {
                if let Some(s) = self.slots.get_mut(e.flow.index as usize) {
                    s.timer = None;
                }
                return Some(e.flow);
            }
        }
        None
    }

    /// When the earliest armed timer is due; stale entries on top are
    /// dropped on the way, so they cost no wake-up.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(e) = self.timers.peek() {
            if armed(&self.slots, &e) {
                return Some(e.at);
            }
            self.timers.pop();
        }
        None
    }

    /// Whether the flow in slot `index`, of `kind`, is in its kind's list.
    fn listed(&self, index: u32, kind: Kind) -> bool {
        self.slots
            .get(index as usize)
            .is_some_and(|s| s.prev != NIL)
            || self.lists[kind.index()].head == index
    }

    /// Append the flow in slot `index` to its kind's list.
    fn link_back(&mut self, index: u32, kind: Kind) {
        let list = &mut self.lists[kind.index()];
        let tail = list.tail;
        if let Some(s) = self.slots.get_mut(index as usize) {
            s.prev = tail;
            s.next = NIL;
        }
        match self.slots.get_mut(tail as usize) {
            Some(t) => t.next = index,
            None => list.head = index,
        }
        list.tail = index;
    }

    /// Take the flow in slot `index`, of `kind`, out of its kind's list.
    fn unlink(&mut self, index: u32, kind: Kind) {
        if !self.listed(index, kind) {
            return;
        }
        let Some(s) = self.slots.get_mut(index as usize) else {
            return;
        };
        let (prev, next) = (s.prev, s.next);
        s.prev = NIL;
        s.next = NIL;
        let list = &mut self.lists[kind.index()];
        match self.slots.get_mut(prev as usize) {
            Some(p) => p.next = next,
            None => list.head = next,
        }
        match self.slots.get_mut(next as usize) {
            Some(n) => n.prev = prev,
            None => list.tail = prev,
        }
    }

    /// Flow `r` was just used: if it is in its kind's list, it moves to
    /// the back (UDP and ping: least recently used first).
    pub fn touch(&mut self, r: FlowRef) {
        let Some(kind) = self.get(r).map(F::kind) else {
            return;
        };
        if self.listed(r.index, kind) && self.lists[kind.index()].tail != r.index {
            self.unlink(r.index, kind);
            self.link_back(r.index, kind);
        }
    }

    /// Flow `r` leaves its kind's list for good: it may no longer be
    /// evicted (an established TCP connection).
    pub fn unlist(&mut self, r: FlowRef) {
        if let Some(kind) = self.get(r).map(F::kind) {
            self.unlink(r.index, kind);
        }
    }

    /// The flow at the front of `kind`'s list: the next one `evict` takes.
    pub fn oldest(&self, kind: Kind) -> Option<FlowRef> {
        self.ref_at(self.lists[kind.index()].head)
    }

    /// Make room for a new flow of `kind` by taking out the oldest one in
    /// its list (flows are listed when committed, in that order; `touch`
    /// and `unlist` change the order and membership), handing it back
    /// for its protocol to close. `None` when no flow of `kind` may go.
    pub fn evict(&mut self, kind: Kind) -> Option<(FlowRef, F)> {
        let r = self.oldest(kind)?;
        let f = self.remove(r)?;
        self.evicted[kind.index()] += 1;
        Some((r, f))
    }

    /// Flows of `kind` evicted so far.
    pub fn evicted(&self, kind: Kind) -> u64 {
        self.evicted[kind.index()]
    }

    /// Count an epoll event for a flow `get` no longer finds: closed
    /// (evicted, expired, reset) earlier in the same round of events, its
    /// slot free or already another flow's. The event is then dropped; the
    /// count shows how often that happens (thousands under eviction
    /// pressure).
    pub fn stale_event(&mut self) {
        self.stale_events += 1;
    }

    /// Stale events so far (`stale_event`).
    pub fn stale_events(&self) -> u64 {
        self.stale_events
    }

    /// Remove every flow, handing each to `gone`.
    pub fn drain(&mut self, mut gone: impl FnMut(F)) {
        self.index.clear();
        self.timers.clear();
        self.lists = [EMPTY; Kind::COUNT];
        for i in 0..self.slots.len() {
            let Ok(i) = u32::try_from(i) else { break };
            let flow = self.slots.get_mut(i as usize).and_then(|s| s.flow.take());
            if let Some(f) = flow {
                self.release(i);
                gone(f);
            }
        }
        self.counts = [0; Kind::COUNT];
    }
}

/// A flow being opened: a reserved slot, given back unless `commit`ted.
/// It borrows the table, so it can't outlive the handler that began it.
pub struct NewFlow<'t, F: FlowEntry> {
    table: &'t mut Table<F>,
    r: FlowRef,
    kind: Kind,
    done: bool,
}

impl<F: FlowEntry> NewFlow<'_, F> {
    /// The reference the flow will have.
    pub fn flow_ref(&self) -> FlowRef {
        self.r
    }

    /// The reference of one of its sides, for epoll.
    pub fn side_ref(&self, end: End) -> SideRef {
        SideRef { flow: self.r, end }
    }

    /// Make the flow live: stored, found by both its sides, counted.
    ///
    /// # Errors
    /// `Clash` when a side's key is already taken (or `flow` is of another
    /// kind than begun): the flow is handed back unstored, for its
    /// protocol to close, and the slot freed.
    pub fn commit(mut self, flow: F) -> Result<FlowRef, (Clash, F)> {
        let proto = self.kind.proto();
        let t = &mut *self.table;
        let taken = flow.kind() != self.kind
            || [End::Initiator, End::Target]
                .iter()
                .any(|&e| t.lookup(proto, flow.sides().get(e)).is_some())
            || flow.sides().initiator() == flow.sides().target();
        if taken {
            return Err((Clash, flow));
        }
        let hashes = [End::Initiator, End::Target].map(|e| {
            t.keys.hash_one(Key {
                proto,
                side: flow.sides().get(e),
            })
        });
        let Some(slot) = t.slots.get_mut(self.r.index as usize) else {
            return Err((Clash, flow));
        };
        slot.flow = Some(flow);
        for (end, h) in [End::Initiator, End::Target].into_iter().zip(hashes) {
            // Sized for two sides per slot: never full.
            t.index.insert(h, self.r.index << 1 | end.bit());
        }
        if let Some(c) = t.counts.get_mut(self.kind.index()) {
            *c += 1;
        }
        t.link_back(self.r.index, self.kind);
        self.done = true;
        Ok(self.r)
    }
}

impl<F: FlowEntry> Drop for NewFlow<'_, F> {
    fn drop(&mut self) {
        if !self.done {
            self.table.release(self.r.index);
        }
    }
}

/// The local address `sock` is bound to: what a host side calls `ours`.
pub fn local_addr(sock: &impl AsRawFd) -> Option<SocketAddr> {
    let ss: SockaddrStorage = getsockname(sock.as_raw_fd()).ok()?;
    if let Some(a) = ss.as_sockaddr_in() {
        return Some(SocketAddr::V4((*a).into()));
    }
    ss.as_sockaddr_in6().map(|a| SocketAddr::V6((*a).into()))
}

/// The address `sock` is connected to, if it is an IP socket.
pub fn peer_addr(sock: &impl AsRawFd) -> Option<SocketAddr> {
    let ss: SockaddrStorage = getpeername(sock.as_raw_fd()).ok()?;
    if let Some(a) = ss.as_sockaddr_in() {
        return Some(SocketAddr::V4((*a).into()));
    }
    ss.as_sockaddr_in6().map(|a| SocketAddr::V6((*a).into()))
}

/// Flows of one kind waiting for room in the guest's queue, in the order
/// they found it full.
///
/// A flow is listed at most once while it waits (its protocol keeps a
/// flag), and references to flows closed meanwhile are dropped whenever
/// the list fills up, so it never grows past the kind's most flows and never
/// allocates after start-up. `take` hands the list over and starts an
/// empty one, so flows that fill the queue again while the old list is
/// being served wait for the next round.
pub struct Waiting {
    refs: Vec<FlowRef>,
    spare: Vec<FlowRef>,
}

impl Waiting {
    /// A list for up to `most` flows.
    pub fn new(most: usize) -> Self {
        Waiting {
            refs: Vec::with_capacity(most + 1),
            spare: Vec::with_capacity(most + 1),
        }
    }

    /// List `r`; `waits` says whether a listed flow still exists and
    /// waits, to make room when the list is full.
    pub fn push(&mut self, r: FlowRef, waits: impl Fn(FlowRef) -> bool) {
        if self.refs.len() == self.refs.capacity() {
            self.refs.retain(|&w| waits(w));
        }
        self.refs.push(r);
    }

    /// True when no flow waits.
    pub fn is_empty(&self) -> bool {
        self.refs.is_empty()
    }

    /// The waiting flows, oldest first; hand the list back with
    /// `give_back` once served.
    pub fn take(&mut self) -> Vec<FlowRef> {
        let fresh = std::mem::take(&mut self.spare);
        std::mem::replace(&mut self.refs, fresh)
    }

    /// Return a list from `take`, for reuse.
    pub fn give_back(&mut self, mut served: Vec<FlowRef>) {
        served.clear();
        self.spare = served;
    }

    /// Forget every flow.
    pub fn clear(&mut self) {
        self.refs.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flow of any kind with only its sides: the table's view of it.
    struct T(Kind, Sides);

    impl FlowEntry for T {
        fn kind(&self) -> Kind {
            self.0
        }
        fn sides(&self) -> &Sides {
            &self.1
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// The guest at port `p` to 192.0.2.9:80, through our host socket at
    /// port `p` as well.
    fn sides(p: u16) -> Sides {
        let guest = SocketAddr::new([10, 0, 0, 2].into(), p);
        let ours = SocketAddr::new([192, 0, 2, 2].into(), p);
        Sides::new(
            FlowSide::new(Side::Tap, guest, sa("192.0.2.9:80")),
            FlowSide::new(Side::Host, sa("192.0.2.9:80"), ours),
        )
    }

    fn open(t: &mut Table<T>, kind: Kind, p: u16) -> Result<FlowRef, Full> {
        let nf = t.begin(kind)?;
        Ok(nf.commit(T(kind, sides(p))).ok().expect("no clash"))
    }

    #[test]
    fn insert_lookup_remove() {
        let mut t: Table<T> = Table::with_reserves([2, 1, 1, 0, 0], 0);
        let a = open(&mut t, Kind::Tcp, 1).unwrap();
        let b = open(&mut t, Kind::Tcp, 2).unwrap();
        assert_eq!(
            open(&mut t, Kind::Tcp, 3),
            Err(Full),
            "TCP's reserve, no pool"
        );
        assert_eq!(t.len(), 2);
        let s = sides(2);
        let tap = t.lookup(Proto::Tcp, s.initiator()).unwrap();
        assert_eq!((tap.flow, tap.end), (b, End::Initiator));
        let host = t.lookup(Proto::Tcp, s.target()).unwrap();
        assert_eq!((host.flow, host.end), (b, End::Target));
        // Same addresses, other protocol or other side: nothing.
        assert_eq!(t.lookup(Proto::Udp, s.initiator()), None);
        let mut elsewhere = *s.initiator();
        elsewhere.at = Side::Host;
        assert_eq!(t.lookup(Proto::Tcp, &elsewhere), None);
        assert!(t.get(a).is_some_and(|f| f.1 == sides(1)));
        assert!(t.remove(a).is_some());
        assert_eq!(t.lookup(Proto::Tcp, sides(1).initiator()), None);
        assert_eq!(t.lookup(Proto::Tcp, sides(1).target()), None);
        assert_eq!(t.lookup(Proto::Tcp, s.target()).map(|s| s.flow), Some(b));
        assert_eq!(t.count(Kind::Tcp), 1);
        assert!(open(&mut t, Kind::Tcp, 3).is_ok());
    }

    #[test]
    fn the_last_lookup_is_only_a_hint() {
        let mut t: Table<T> = Table::with_reserves([2, 1, 1, 0, 0], 0);
        let a = open(&mut t, Kind::Tcp, 1).unwrap();
        // Found through the hash, then again through the hint.
        for _ in 0..2 {
            let r = t.lookup(Proto::Tcp, sides(1).initiator()).unwrap();
            assert_eq!((r.flow, r.end), (a, End::Initiator));
        }
        // The hinted side is the key asked for, or nothing: another
        // protocol or side with the same addresses misses it.
        assert_eq!(t.lookup(Proto::Udp, sides(1).initiator()), None);
        let r = t.lookup(Proto::Tcp, sides(1).target()).unwrap();
        assert_eq!((r.flow, r.end), (a, End::Target));
        // Its flow gone and its slot taken by another: the old key
        // misses, the new one is found, with the new generation.
        t.lookup(Proto::Tcp, sides(1).initiator()).unwrap();
        assert!(t.remove(a).is_some());
        assert_eq!(t.lookup(Proto::Tcp, sides(1).initiator()), None);
        let b = open(&mut t, Kind::Tcp, 2).unwrap();
        assert_eq!(b.index, a.index, "the freed slot is reused");
        assert_eq!(t.lookup(Proto::Tcp, sides(1).initiator()), None);
        let r = t.lookup(Proto::Tcp, sides(2).initiator()).unwrap();
        assert_eq!(r.flow, b);
        assert_ne!(r.flow, a);
    }

    #[test]
    fn reserves_alone_are_per_kind() {
        // No pool: each kind has exactly its reserve.
        let mut t: Table<T> = Table::with_reserves([1, 2, 1, 0, 0], 0);
        assert_eq!((t.capacity(), t.shared()), (4, 0));
        open(&mut t, Kind::Udp, 1).unwrap();
        open(&mut t, Kind::Udp, 2).unwrap();
        assert_eq!(open(&mut t, Kind::Udp, 3), Err(Full));
        assert!(!t.room_for(Kind::Udp));
        // Full of UDP, yet TCP and ping still have their share.
        open(&mut t, Kind::Tcp, 4).unwrap();
        open(&mut t, Kind::Ping, 5).unwrap();
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn reserves_and_pool_at_start_up_sizes() {
        let t: Table<T> = Table::new(19872);
        // The line `-d` logs, which tests/flow_scale.rs reads.
        assert_eq!(reserves(19872), [2484, 1242, 310, 155, 155]);
        // Spliced flows' extra descriptors come off the pool.
        assert_eq!(t.shared(), 19872 - 4346 - 5 * 155 - 155);
        assert_eq!(t.max_flows(Kind::Udp), 15838, "15 000 UDP flows fit");
        assert_eq!(t.max_flows(Kind::Tcp), 17080);
        assert_eq!(
            t.max_flows(Kind::Splice),
            155,
            "splices stay in their reserve"
        );
        assert_eq!(t.max_flows(Kind::UdpSplice), 155);
        assert_eq!(reserves(131072), [16384, 8192, 2048, 1024, 1024]);
        for c in [0, 1, 7, 100, 896, 131072] {
            let t: Table<T> = Table::new(c);
            let r = reserves(c);
            let reserved: usize = r.iter().sum();
            assert_eq!(t.capacity(), c);
            assert_eq!(
                reserved + SPLICE_EXTRA_FDS * r[3] + r[4] + t.shared(),
                c,
                "no descriptor lost to rounding, none counted twice"
            );
        }
    }

    #[test]
    fn a_reserve_stays_open_when_another_kind_took_the_pool() {
        // Reserves TCP 2, UDP 2, ping 1; a pool of 3.
        let mut t: Table<T> = Table::with_reserves([2, 2, 1, 0, 0], 8);
        assert_eq!(t.shared(), 3);
        assert_eq!(t.max_flows(Kind::Udp), 5);
        for p in 1..=5 {
            open(&mut t, Kind::Udp, p).unwrap();
        }
        // UDP holds its reserve and the whole pool: no more for UDP...
        assert_eq!(t.shared_used(), 3);
        assert!(!t.room_for(Kind::Udp));
        assert_eq!(open(&mut t, Kind::Udp, 6), Err(Full));
        // ...but TCP and ping still reach their reserves, and no further.
        assert!(t.room_for(Kind::Tcp));
        open(&mut t, Kind::Tcp, 10).unwrap();
        open(&mut t, Kind::Tcp, 11).unwrap();
        assert_eq!(open(&mut t, Kind::Tcp, 12), Err(Full));
        open(&mut t, Kind::Ping, 20).unwrap();
        assert_eq!(open(&mut t, Kind::Ping, 21), Err(Full));
        assert_eq!(t.len(), t.capacity(), "full, and never beyond");
    }

    #[test]
    fn removing_a_flow_gives_back_what_it_held() {
        let mut t: Table<T> = Table::with_reserves([2, 2, 1, 0, 0], 8);
        let udp: Vec<_> = (1..=5)
            .map(|p| open(&mut t, Kind::Udp, p).unwrap())
            .collect();
        let tcp = open(&mut t, Kind::Tcp, 10).unwrap();
        // A flow within its kind's reserve frees nothing of the pool: TCP
        // may open again, UDP still not.
        t.remove(tcp);
        assert_eq!(t.shared_used(), 3);
        assert!(t.room_for(Kind::Tcp));
        assert!(!t.room_for(Kind::Udp));
        // A flow beyond its reserve gives its place in the pool back, to
        // any kind: here TCP takes it, beyond its own reserve.
        t.remove(udp[0]);
        assert_eq!(t.shared_used(), 2);
        assert!(t.room_for(Kind::Udp));
        for p in 10..=12 {
            open(&mut t, Kind::Tcp, p).unwrap();
        }
        assert_eq!(t.count(Kind::Tcp), 3);
        assert_eq!(t.shared_used(), 3);
        assert!(!t.room_for(Kind::Udp), "the pool went to TCP");
        // UDP, down to its reserve, again has room of its own.
        for &r in &udp[1..4] {
            t.remove(r);
        }
        assert_eq!(t.count(Kind::Udp), 1);
        assert_eq!(t.shared_used(), 1);
        open(&mut t, Kind::Udp, 30).unwrap();
        open(&mut t, Kind::Udp, 31).unwrap();
        open(&mut t, Kind::Udp, 32).unwrap();
        assert_eq!(t.shared_used(), 3);
        assert!(!t.room_for(Kind::Udp));
        assert!(!t.room_for(Kind::Tcp));
        assert!(t.room_for(Kind::Ping), "ping's reserve is untouched");
    }

    #[test]
    fn eviction_makes_room_only_within_a_kind() {
        let mut t: Table<T> = Table::with_reserves([2, 2, 1, 0, 0], 8);
        for p in 1..=5 {
            open(&mut t, Kind::Udp, p).unwrap();
        }
        let tcp: Vec<_> = (10..=11)
            .map(|p| open(&mut t, Kind::Tcp, p).unwrap())
            .collect();
        // Established connections are not listed: TCP has nothing to
        // evict, and never takes another kind's flow.
        for &r in &tcp {
            t.unlist(r);
        }
        assert!(t.evict(Kind::Tcp).is_none());
        assert_eq!(t.count(Kind::Udp), 5);
        assert!(!t.room_for(Kind::Tcp));
        // UDP makes room for UDP by closing its own oldest flow.
        let (_, gone) = t.evict(Kind::Udp).unwrap();
        assert_eq!(gone.0, Kind::Udp);
        assert!(t.room_for(Kind::Udp));
        open(&mut t, Kind::Udp, 6).unwrap();
        assert_eq!(t.count(Kind::Tcp), 2);
        assert_eq!(t.evicted(Kind::Tcp), 0);
        assert_eq!(t.evicted(Kind::Udp), 1);
    }

    #[test]
    fn no_churn_breaks_the_reserves() {
        // Random opens and removes of every kind: the table never holds
        // more than its capacity, and a kind under its reserve can always
        // open.
        let mut t: Table<T> = Table::with_reserves([5, 3, 2, 0, 0], 20);
        let mut live: Vec<FlowRef> = Vec::new();
        let mut seed = 11u32;
        let mut port = 0u16;
        for _ in 0..20_000 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let kind = [Kind::Tcp, Kind::Udp, Kind::Ping][(seed >> 16) as usize % 3];
            if (seed >> 8) % 5 < 2 && !live.is_empty() {
                let i = (seed >> 4) as usize % live.len();
                assert!(t.remove(live.swap_remove(i)).is_some());
            } else {
                port = port.wrapping_add(1).max(1);
                let under = t.count(kind) < t.reserve(kind);
                match open(&mut t, kind, port) {
                    Ok(r) => live.push(r),
                    Err(Full) => assert!(!under, "{kind} refused under its reserve"),
                }
            }
            assert!(t.len() <= t.capacity());
            assert!(t.shared_used() <= t.shared());
            assert_eq!(t.len(), live.len());
        }
    }

    #[test]
    fn capacity_follows_the_open_files_limit() {
        assert_eq!(capacity_for(1024), 1024 - RESERVED_FDS as usize);
        assert_eq!(capacity_for(20_000), 20_000 - RESERVED_FDS as usize);
        assert_eq!(capacity_for(1 << 20), MAX_FLOWS);
        assert_eq!(capacity_for(u64::MAX), MAX_FLOWS);
        assert_eq!(capacity_for(100), 50, "a tiny limit still gives flows half");
        assert_eq!(capacity_for(0), 0);
        let t: Table<T> = Table::new(0);
        assert_eq!(t.capacity(), 0);
    }

    #[test]
    fn a_flow_costs_what_architecture_md_says() {
        // ARCHITECTURE.md, "Limits": keep the two in step.
        assert!(std::mem::size_of::<Slot<Flow>>() <= 336);
        let t = Flows::new(MAX_FLOWS);
        let (per_flow, reserved) = t.footprint();
        assert!(per_flow <= 400, "{per_flow} bytes per flow");
        assert!(reserved <= 50 << 20, "{reserved} bytes reserved");
    }

    #[test]
    fn stale_references_miss_a_reused_slot() {
        let mut t: Table<T> = Table::with_reserves([1, 0, 0, 0, 0], 0);
        let a = open(&mut t, Kind::Tcp, 1).unwrap();
        assert!(t.get(a).is_some());
        t.remove(a);
        assert!(t.get(a).is_none(), "closed");
        let b = open(&mut t, Kind::Tcp, 2).unwrap();
        assert_eq!(b.index, a.index, "the slot is reused");
        assert_ne!(b.generation, a.generation);
        assert!(t.get(a).is_none(), "slot reused by another flow");
        assert!(t.get_mut(a).is_none());
        assert!(t.remove(a).is_none(), "a stale reference removes nothing");
        assert!(t.get(b).is_some());
        let bad = FlowRef {
            index: 7,
            generation: 0,
        };
        assert!(t.get(bad).is_none());
    }

    #[test]
    fn free_slots_are_reused_before_new_ones() {
        let mut t: Table<T> = Table::with_reserves([8, 0, 0, 0, 0], 0);
        let refs: Vec<_> = (1..=4)
            .map(|p| open(&mut t, Kind::Tcp, p).unwrap())
            .collect();
        assert_eq!(t.slots.len(), 4, "slots are touched only as used");
        t.remove(refs[1]);
        t.remove(refs[3]);
        // Last freed, first reused: no new slot while old ones are free.
        assert_eq!(open(&mut t, Kind::Tcp, 5).unwrap().index, refs[3].index);
        assert_eq!(open(&mut t, Kind::Tcp, 6).unwrap().index, refs[1].index);
        assert_eq!(open(&mut t, Kind::Tcp, 7).unwrap().index, 4);
        assert_eq!(t.slots.len(), 5);
        assert_eq!(t.slots.capacity(), 8, "never reallocated");
    }

    #[test]
    fn an_unfinished_flow_gives_its_slot_back() {
        let mut t: Table<T> = Table::with_reserves([1, 0, 0, 0, 0], 0);
        let r = {
            let nf = t.begin(Kind::Tcp).unwrap();
            assert_eq!(nf.side_ref(End::Target).flow, nf.flow_ref());
            nf.flow_ref()
            // Dropped here, as when a handler returns early.
        };
        assert!(t.is_empty());
        assert!(t.get(r).is_none());
        let again = open(&mut t, Kind::Tcp, 1).unwrap();
        assert_eq!(again.index, r.index);
        assert_ne!(
            again.generation, r.generation,
            "an epoll reference taken meanwhile is stale"
        );
    }

    #[test]
    fn a_clashing_side_is_refused() {
        let mut t: Table<T> = Table::with_reserves([2, 1, 0, 0, 0], 0);
        open(&mut t, Kind::Tcp, 1).unwrap();
        // Another flow with the same guest side.
        let mut s = sides(2);
        s.0[0] = *sides(1).initiator();
        let nf = t.begin(Kind::Tcp).unwrap();
        assert!(matches!(nf.commit(T(Kind::Tcp, s)), Err((Clash, _))));
        // Of another kind than begun.
        let nf = t.begin(Kind::Udp).unwrap();
        assert!(nf.commit(T(Kind::Tcp, sides(3))).is_err());
        assert_eq!(t.len(), 1);
        // The same addresses under another protocol are another flow.
        assert!(open(&mut t, Kind::Udp, 1).is_ok());
    }

    #[test]
    fn every_flow_stays_reachable_through_churn() {
        let mut t: Table<T> = Table::with_reserves([4096, 0, 0, 0, 0], 0);
        let mut live = std::collections::HashMap::new();
        let mut seed = 7u32;
        for round in 0..20_000u32 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let p = (seed >> 8) as u16 % 5000 + 1;
            if let Some(r) = live.remove(&p) {
                assert!(t.remove(r).is_some());
            } else if let Ok(r) = open(&mut t, Kind::Tcp, p) {
                live.insert(p, r);
            }
            if round % 997 == 0 {
                for (&p, &r) in &live {
                    let s = sides(p);
                    assert_eq!(t.lookup(Proto::Tcp, s.initiator()).map(|x| x.flow), Some(r));
                    assert_eq!(t.lookup(Proto::Tcp, s.target()).map(|x| x.flow), Some(r));
                }
            }
        }
        assert_eq!(t.len(), live.len());
        let mut gone = 0;
        t.drain(|_| gone += 1);
        assert_eq!(gone, live.len());
        assert!(t.is_empty());
        assert_eq!(t.lookup(Proto::Tcp, sides(1).initiator()), None);
    }

    #[test]
    fn timers_come_in_deadline_order() {
        let mut t: Table<T> = Table::with_reserves([8, 0, 0, 0, 0], 0);
        let r: Vec<_> = (1..=4)
            .map(|p| open(&mut t, Kind::Tcp, p).unwrap())
            .collect();
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        t.schedule(r[0], s(30));
        t.schedule(r[1], s(10));
        t.schedule(r[2], s(20));
        t.schedule(r[3], s(40));
        // Later than armed: nothing moves, the earlier entry stands.
        t.schedule(r[1], s(50));
        // Earlier than armed: the old entry goes stale.
        t.schedule(r[3], s(5));
        t.remove(r[2]);
        assert_eq!(t.next_deadline(), Some(s(5)));
        assert_eq!(t.pop_due(s(4)), None, "nothing due yet");
        let mut order = Vec::new();
        while let Some(f) = t.pop_due(s(100)) {
            order.push(f);
        }
        // Each flow once, at its armed deadline; the removed one never.
        assert_eq!(order, vec![r[3], r[1], r[0]]);
        assert_eq!(t.next_deadline(), None);
        // Once fired, a flow can be scheduled again, even later.
        t.rearm(r[0], s(1), s(100));
        assert_eq!(
            t.next_deadline(),
            Some(s(100) + MIN_REARM),
            "never in the past"
        );
    }

    #[test]
    fn stale_timers_never_outgrow_the_heap() {
        let mut t: Table<T> = Table::with_reserves([2, 0, 0, 0, 0], 0);
        let a = open(&mut t, Kind::Tcp, 1).unwrap();
        let t0 = Instant::now();
        let reserved = t.timers.len() + 2 * 2 + 16;
        // Ever earlier deadlines leave a stale entry each time.
        for i in 0..10_000u64 {
            t.schedule(a, t0 + Duration::from_secs(100_000 - i));
        }
        assert!(t.timers.len() <= reserved, "{} entries", t.timers.len());
        assert_eq!(t.pop_due(t0 + Duration::from_secs(1_000_000)), Some(a));
        assert_eq!(t.pop_due(t0 + Duration::from_secs(1_000_000)), None);
        // A closed flow's timer never fires, nor one of its slot's next flow.
        t.schedule(a, t0);
        t.remove(a);
        let b = open(&mut t, Kind::Tcp, 2).unwrap();
        assert_eq!(b.index, a.index);
        assert_eq!(t.pop_due(t0 + Duration::from_secs(1)), None);
    }

    #[test]
    fn eviction_takes_the_least_recently_used() {
        let mut t: Table<T> = Table::with_reserves([0, 4, 0, 0, 0], 0);
        let r: Vec<_> = (1..=4)
            .map(|p| open(&mut t, Kind::Udp, p).unwrap())
            .collect();
        assert_eq!(t.oldest(Kind::Udp), Some(r[0]));
        t.touch(r[0]);
        t.touch(r[2]);
        // Least recently used first: 1, 3, 0, 2.
        let mut order = Vec::new();
        while let Some((gone, f)) = t.evict(Kind::Udp) {
            // The flow itself comes back, for its protocol to close.
            let port = r.iter().position(|&x| x == gone).unwrap() as u16 + 1;
            assert_eq!(f.1, sides(port));
            order.push(gone);
        }
        assert_eq!(order, vec![r[1], r[3], r[0], r[2]]);
        assert_eq!(t.evicted(Kind::Udp), 4);
        assert!(t.is_empty());
        // Evicted flows are gone for good: their sides are free again.
        assert!(open(&mut t, Kind::Udp, 1).is_ok());
    }

    #[test]
    fn only_listed_flows_can_be_evicted() {
        // TCP lists connections in the handshake, oldest first, and
        // unlists them once established.
        let mut t: Table<T> = Table::with_reserves([4, 0, 0, 0, 0], 0);
        let r: Vec<_> = (1..=4)
            .map(|p| open(&mut t, Kind::Tcp, p).unwrap())
            .collect();
        t.unlist(r[0]);
        t.unlist(r[2]);
        t.touch(r[0]); // no effect: not listed any more
        assert_eq!(t.evict(Kind::Tcp).map(|e| e.0), Some(r[1]));
        assert_eq!(t.evict(Kind::Tcp).map(|e| e.0), Some(r[3]));
        assert!(t.evict(Kind::Tcp).is_none(), "established ones stay");
        assert_eq!(t.count(Kind::Tcp), 2);
        // Removing listed and unlisted flows keeps the list sound.
        let n = open(&mut t, Kind::Tcp, 5).unwrap();
        let m = open(&mut t, Kind::Tcp, 6).unwrap();
        t.remove(r[0]);
        t.remove(n);
        assert_eq!(t.oldest(Kind::Tcp), Some(m));
        t.remove(m);
        assert_eq!(t.oldest(Kind::Tcp), None);
        // Kinds don't share a list.
        assert_eq!(t.oldest(Kind::Udp), None);
    }

    #[test]
    fn waiting_lists_stay_within_their_kinds_most() {
        let mut w = Waiting::new(2);
        let r = |index| FlowRef {
            index,
            generation: 0,
        };
        // Flows 0 and 1 wait, then close; 2 and 3 wait.
        for i in 0..4 {
            w.push(r(i), |x| x.index >= 2);
        }
        assert_eq!(w.refs.capacity(), 3, "no growth: closed flows made room");
        let got = w.take();
        assert_eq!(got, vec![r(2), r(3)]);
        assert!(w.is_empty());
        w.push(r(5), |_| true);
        w.give_back(got);
        assert_eq!(w.take(), vec![r(5)]);
    }
}
