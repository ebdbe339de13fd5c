//! The flow table's timers: one binary heap of (deadline, flow) holding
//! every flow's next deadline, with lazy deletion.
//!
//! Theory of operation: a flow has at most one armed deadline, which its
//! slot remembers. Scheduling pushes an entry only when the new deadline
//! is earlier than the armed one; a later deadline just waits for the
//! armed entry to come up, when the flow's protocol finds nothing due and
//! schedules again. An entry whose flow is gone (generation) or whose
//! deadline is no longer the armed one is skipped when it comes up. So
//! moving a deadline later costs nothing (TCP's idle timer moves with
//! every segment), nothing is ever searched, and a round with nothing due
//! costs one look at the top of the heap.
//!
//! Stale entries pile up while flows move their deadlines earlier (a
//! retransmission timer under a two-hour idle timer). When the heap has
//! no room left for another entry, they are swept out in one pass that
//! keeps only armed entries, at most one per flow, so the heap never
//! outgrows what was reserved at start-up: twice the table's capacity.

use super::FlowRef;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// A deadline of the flow in a slot, at the generation it had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Entry {
    /// When.
    pub at: Instant,
    /// The flow.
    pub flow: FlowRef,
}

/// Earliest deadline first.
pub(super) struct Heap {
    heap: BinaryHeap<Reverse<Entry>>,
}

impl Heap {
    /// A heap for the timers of up to `flows` flows.
    pub(super) fn new(flows: usize) -> Self {
        Heap {
            heap: BinaryHeap::with_capacity(flows * 2 + 16),
        }
    }

    /// Add an entry; when the heap is full, first keep only the entries
    /// `armed` says are.
    pub(super) fn push(&mut self, e: Entry, armed: impl Fn(&Entry) -> bool) {
        if self.heap.len() == self.heap.capacity() {
            self.heap.retain(|Reverse(e)| armed(e));
        }
        self.heap.push(Reverse(e));
    }

    /// The earliest entry.
    pub(super) fn peek(&self) -> Option<Entry> {
        self.heap.peek().map(|Reverse(e)| *e)
    }

    /// Take the earliest entry out.
    pub(super) fn pop(&mut self) -> Option<Entry> {
        self.heap.pop().map(|Reverse(e)| e)
    }

    /// Number of entries, armed or stale.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Drop every entry.
    pub(super) fn clear(&mut self) {
        self.heap.clear();
    }
}
