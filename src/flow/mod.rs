//! The flow table: fixed-capacity slots of per-protocol flow state, found
//! by key or by slot index (the index is what epoll hands back).
//!
//! Theory of operation: capacity is set at start-up and both the slots
//! and the key index are allocated then, so opening or finding a flow
//! never allocates and a guest can't grow the table. A full table refuses
//! new flows; the caller counts the drop. Removal goes through `retain`
//! or `remove`, which hand the flow back so its socket can leave epoll
//! before it is closed.

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

/// Fixed-capacity flows of type `F`, keyed by `K`.
pub struct FlowTable<K, F> {
    slots: Vec<Option<(K, F)>>,
    index: HashMap<K, u32>,
}

impl<K: Hash + Eq + Copy, F> FlowTable<K, F> {
    /// A table of at most `capacity` flows.
    pub fn new(capacity: usize) -> Self {
        FlowTable {
            slots: (0..capacity).map(|_| None).collect(),
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
        let i = self.slots.iter().position(Option::is_none).ok_or(Full)?;
        let idx = u32::try_from(i).map_err(|_| Full)?;
        self.slots[i] = Some((key, flow));
        self.index.insert(key, idx);
        Ok(idx)
    }

    /// The first free slot, if any: lets a caller register the flow's
    /// socket under its final index before `insert`.
    pub fn free_slot(&self) -> Option<u32> {
        let i = self.slots.iter().position(Option::is_none)?;
        u32::try_from(i).ok()
    }

    /// The flow in slot `idx`.
    pub fn get(&self, idx: u32) -> Option<&F> {
        self.slots
            .get(usize::try_from(idx).ok()?)?
            .as_ref()
            .map(|(_, f)| f)
    }

    /// The flow in slot `idx`, writable.
    pub fn get_mut(&mut self, idx: u32) -> Option<&mut F> {
        self.slots
            .get_mut(usize::try_from(idx).ok()?)?
            .as_mut()
            .map(|(_, f)| f)
    }

    /// Take the flow out of slot `idx`.
    pub fn remove(&mut self, idx: u32) -> Option<F> {
        let (k, f) = self.slots.get_mut(usize::try_from(idx).ok()?)?.take()?;
        self.index.remove(&k);
        Some(f)
    }

    /// Keep the flows for which `keep` says so; the others are handed to
    /// `gone` and removed.
    pub fn retain(&mut self, mut keep: impl FnMut(&F) -> bool, mut gone: impl FnMut(F)) {
        for slot in &mut self.slots {
            if slot.as_ref().is_some_and(|(_, f)| !keep(f))
                && let Some((k, f)) = slot.take()
            {
                self.index.remove(&k);
                gone(f);
            }
        }
    }

    /// Every flow.
    pub fn iter(&self) -> impl Iterator<Item = &F> {
        self.slots.iter().filter_map(|s| s.as_ref().map(|(_, f)| f))
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
        assert_eq!(t.free_slot(), Some(a));
        assert_eq!(t.insert(3, "c"), Ok(a));
        assert_eq!(t.len(), 2);
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
