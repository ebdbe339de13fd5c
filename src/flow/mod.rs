//! The flow table: fixed-capacity slots of per-protocol flow state, found
//! by key or by slot index (the index is what epoll hands back).
//!
//! Theory of operation: capacity is set at start-up and the slots, the
//! free list and the key index are allocated then, so opening or finding
//! a flow never allocates and a guest can't grow the table. A full table
//! refuses new flows; the caller counts the drop. Removal goes through
//! `retain` or `remove`, which hand the flow back so its socket can leave
//! epoll before it is closed.
//!
//! Every slot has a generation, bumped when its flow is removed. The
//! epoll reference of a flow's socket carries (slot, generation) as a
//! `FlowRef`, and `get_ref` only answers while both match: an event that
//! was already queued for a flow closed earlier in the same round can't
//! act on a new flow that took its slot.

use crate::event::EventLoop;
use std::collections::HashMap;
use std::hash::Hash;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

/// A flow that owns a socket registered in the event loop.
pub trait SocketFlow {
    /// The socket, to take out of epoll when the flow goes.
    fn socket(&self) -> BorrowedFd<'_>;
    /// When traffic last went through the flow.
    fn last_activity(&self) -> Instant;
}

/// The table is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// Generations wrap within the bits `EpollRef` has for them.
pub const GEN_MASK: u32 = (1 << 24) - 1;

/// A flow as an epoll reference names it: its slot and that slot's
/// generation when the flow was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowRef {
    /// Slot index.
    pub index: u32,
    /// Generation of the slot (24 bits).
    pub generation: u32,
}

struct Slot<K, F> {
    generation: u32,
    entry: Option<(K, F)>,
}

/// Fixed-capacity flows of type `F`, keyed by `K`.
pub struct FlowTable<K, F> {
    slots: Vec<Slot<K, F>>,
    /// Free slot indices; the next flow takes the last one.
    free: Vec<u32>,
    index: HashMap<K, u32>,
}

impl<K: Hash + Eq + Copy, F> FlowTable<K, F> {
    /// A table of at most `capacity` flows.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.min(u32::MAX as usize);
        FlowTable {
            slots: (0..capacity)
                .map(|_| Slot {
                    generation: 0,
                    entry: None,
                })
                .collect(),
            // Lowest indices first, so small tables stay dense.
            free: (0..capacity as u32).rev().collect(),
            index: HashMap::with_capacity(capacity),
        }
    }

    /// The slot of the flow with this key.
    pub fn lookup(&self, key: &K) -> Option<u32> {
        self.index.get(key).copied()
    }

    /// Store a new flow, returning its slot.
    ///
    /// # Errors
    /// `Full` when every slot is taken.
    pub fn insert(&mut self, key: K, flow: F) -> Result<u32, Full> {
        let idx = self.free.pop().ok_or(Full)?;
        let Some(slot) = self.slots.get_mut(idx as usize) else {
            return Err(Full);
        };
        slot.entry = Some((key, flow));
        self.index.insert(key, idx);
        Ok(idx)
    }

    /// The slot (and generation) the next `insert` will use, if any: lets
    /// a caller register the flow's socket under its final reference
    /// before `insert`.
    pub fn free_slot(&self) -> Option<FlowRef> {
        let index = *self.free.last()?;
        let generation = self.slots.get(index as usize)?.generation;
        Some(FlowRef { index, generation })
    }

    /// The reference of the flow in slot `idx`.
    pub fn flow_ref(&self, idx: u32) -> Option<FlowRef> {
        let s = self.slots.get(idx as usize)?;
        s.entry.as_ref()?;
        Some(FlowRef {
            index: idx,
            generation: s.generation,
        })
    }

    /// The flow in slot `idx`.
    pub fn get(&self, idx: u32) -> Option<&F> {
        self.slots
            .get(usize::try_from(idx).ok()?)?
            .entry
            .as_ref()
            .map(|(_, f)| f)
    }

    /// The flow in slot `idx`, writable.
    pub fn get_mut(&mut self, idx: u32) -> Option<&mut F> {
        self.slots
            .get_mut(usize::try_from(idx).ok()?)?
            .entry
            .as_mut()
            .map(|(_, f)| f)
    }

    /// The slot of the flow `r` names, if that flow is still there (not
    /// closed, its slot not reused since).
    pub fn resolve(&self, r: FlowRef) -> Option<u32> {
        let s = self.slots.get(r.index as usize)?;
        (s.generation == r.generation && s.entry.is_some()).then_some(r.index)
    }

    /// Take the flow out of slot `idx`.
    pub fn remove(&mut self, idx: u32) -> Option<F> {
        let slot = self.slots.get_mut(usize::try_from(idx).ok()?)?;
        let (k, f) = slot.entry.take()?;
        slot.generation = (slot.generation + 1) & GEN_MASK;
        self.index.remove(&k);
        self.free.push(idx);
        Some(f)
    }

    /// Keep the flows for which `keep` says so; the others are handed to
    /// `gone` and removed.
    pub fn retain(&mut self, mut keep: impl FnMut(&F) -> bool, mut gone: impl FnMut(F)) {
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.entry.as_ref().is_some_and(|(_, f)| !keep(f))
                && let Some((k, f)) = slot.entry.take()
            {
                slot.generation = (slot.generation + 1) & GEN_MASK;
                self.index.remove(&k);
                // `new` caps the capacity at u32::MAX slots.
                self.free.push(i as u32);
                gone(f);
            }
        }
    }

    /// Every flow.
    pub fn iter(&self) -> impl Iterator<Item = &F> {
        self.slots
            .iter()
            .filter_map(|s| s.entry.as_ref().map(|(_, f)| f))
    }

    /// Every flow, writable.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut F> {
        self.slots
            .iter_mut()
            .filter_map(|s| s.entry.as_mut().map(|(_, f)| f))
    }

    /// Number of flows.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when there are no flows.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

impl<K: Hash + Eq + Copy, F: SocketFlow> FlowTable<K, F> {
    /// Close flows idle for `timeout`; returns when the next one would be.
    pub fn expire(&mut self, ev: &EventLoop, now: Instant, timeout: Duration) -> Option<Instant> {
        self.retain(
            |f| f.last_activity() + timeout > now,
            |f| {
                let _ = ev.remove(f.socket());
            },
        );
        self.iter().map(|f| f.last_activity() + timeout).min()
    }

    /// Close every flow (the guest went away).
    pub fn close_all(&mut self, ev: &EventLoop) {
        self.retain(
            |_| false,
            |f| {
                let _ = ev.remove(f.socket());
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_lookup_remove() {
        let mut t: FlowTable<u16, &str> = FlowTable::new(2);
        let a = t.insert(1, "a").unwrap();
        let b = t.insert(2, "b").unwrap();
        assert_eq!(t.insert(3, "c"), Err(Full));
        assert_eq!(t.lookup(&2), Some(b));
        assert_eq!(t.get(a), Some(&"a"));
        assert_eq!(t.remove(a), Some("a"));
        assert_eq!(t.lookup(&1), None);
        assert_eq!(t.free_slot().map(|r| r.index), Some(a));
        assert_eq!(t.insert(3, "c"), Ok(a));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn stale_references_miss_a_reused_slot() {
        let mut t: FlowTable<u16, &str> = FlowTable::new(1);
        let r = t.free_slot().unwrap();
        let a = t.insert(1, "a").unwrap();
        assert_eq!(t.flow_ref(a), Some(r));
        assert_eq!(t.resolve(r), Some(a));
        t.remove(a);
        assert_eq!(t.resolve(r), None, "closed");
        let r2 = t.free_slot().unwrap();
        assert_eq!(r2.index, r.index);
        assert_ne!(r2.generation, r.generation);
        t.insert(2, "b").unwrap();
        assert_eq!(t.resolve(r), None, "slot reused by another flow");
        assert_eq!(t.resolve(r2), Some(a));
        t.retain(|_| false, |_| {});
        assert_eq!(t.resolve(r2), None);
        assert_eq!(t.free_slot().map(|r| r.index), Some(a));
    }

    #[test]
    fn retain_hands_back_removed_flows() {
        let mut t: FlowTable<u16, u32> = FlowTable::new(4);
        for k in 0..4 {
            t.insert(k, u32::from(k)).unwrap();
        }
        let mut gone = Vec::new();
        t.retain(|f| f % 2 == 0, |f| gone.push(f));
        assert_eq!(gone, vec![1, 3]);
        assert_eq!(t.len(), 2);
        assert_eq!(t.lookup(&1), None);
        assert!(t.lookup(&2).is_some());
    }

    #[test]
    fn bad_indices_are_none() {
        let mut t: FlowTable<u16, u32> = FlowTable::new(1);
        assert_eq!(t.get(7), None);
        assert_eq!(t.get_mut(u32::MAX), None);
        assert_eq!(t.remove(0), None);
    }
}
