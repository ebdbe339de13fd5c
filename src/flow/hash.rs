//! The flow table's hash index: (protocol, side, addresses) to a flow's
//! side, in one array of 4-byte buckets.
//!
//! Theory of operation: open addressing with linear probing. A bucket
//! holds a side index plus one (0 is empty), never a key: the key is read
//! back from the flow the side index names, so the index costs 4 bytes a
//! bucket however long addresses are. There are at least twice as many
//! buckets as sides can ever be live (two per flow), so a probe always
//! meets an empty bucket and stays short. Removal shifts the following
//! entries of the cluster back (no tombstones), so lookups don't degrade
//! as flows come and go.
//!
//! The guest chooses addresses and ports, so it could aim whole clusters
//! at one bucket if it could predict the hash: the table hashes with
//! SipHash under a key drawn at start-up (`RandomState`).
//!
//! The bucket array is allocated zeroed at start-up; large allocations
//! come straight from the kernel as zero pages, so only buckets that were
//! ever used take memory.

/// A hash index of side indices (`2 * slot + end`); the caller hashes.
pub(super) struct Index {
    /// Side index + 1, or 0 for an empty bucket.
    buckets: Box<[u32]>,
    mask: usize,
}

impl Index {
    /// An index for up to `sides` entries at once.
    pub(super) fn new(sides: usize) -> Self {
        let n = (sides.max(4) * 2).next_power_of_two();
        Index {
            buckets: vec![0u32; n].into_boxed_slice(),
            mask: n - 1,
        }
    }

    fn home(&self, h: u64) -> usize {
        // The mask keeps the bucket within the array, whatever the width.
        (h as usize) & self.mask
    }

    /// The side index with hash `h` for which `is` says yes.
    pub(super) fn find(&self, h: u64, mut is: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut i = self.home(h);
        for _ in 0..self.buckets.len() {
            let b = *self.buckets.get(i)?;
            if b == 0 {
                return None;
            }
            if is(b - 1) {
                return Some(b - 1);
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Add side index `sidx` under hash `h` (the caller made sure its key
    /// isn't there yet). False if the index is full, which sizing rules
    /// out.
    pub(super) fn insert(&mut self, h: u64, sidx: u32) -> bool {
        let mut i = self.home(h);
        for _ in 0..self.buckets.len() {
            let Some(b) = self.buckets.get_mut(i) else {
                return false;
            };
            if *b == 0 {
                *b = sidx + 1;
                return true;
            }
            i = (i + 1) & self.mask;
        }
        false
    }

    /// Take out side index `sidx`, stored under hash `h`; `hash_of` gives
    /// the hash of any other side index, to move entries of the same
    /// cluster back into the gap.
    pub(super) fn remove(&mut self, h: u64, sidx: u32, hash_of: impl Fn(u32) -> u64) {
        let mut i = self.home(h);
        let mut found = false;
        for _ in 0..self.buckets.len() {
            match self.buckets.get(i) {
                Some(&b) if b == sidx + 1 => {
                    found = true;
                    break;
                }
                Some(&b) if b != 0 => i = (i + 1) & self.mask,
                _ => return,
            }
        }
        if !found {
            return;
        }
        // Backward shift: an entry further along the cluster moves into the
        // gap unless its home bucket lies cyclically after the gap and at
        // or before where it sits (then the gap doesn't break its probe).
        let mut gap = i;
        let mut j = i;
        for _ in 0..self.buckets.len() {
            j = (j + 1) & self.mask;
            let b = self.buckets.get(j).copied().unwrap_or(0);
            if b == 0 {
                break;
            }
            let home = self.home(hash_of(b - 1));
            let stays = if gap <= j {
                gap < home && home <= j
            } else {
                gap < home || home <= j
            };
            if !stays {
                if let Some(g) = self.buckets.get_mut(gap) {
                    *g = b;
                }
                gap = j;
            }
        }
        if let Some(g) = self.buckets.get_mut(gap) {
            *g = 0;
        }
    }

    /// Empty every bucket.
    pub(super) fn clear(&mut self) {
        self.buckets.fill(0);
    }

    /// Bytes the bucket array takes when fully used.
    pub(super) fn bytes(&self) -> usize {
        self.buckets.len() * std::mem::size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy index whose keys are the side indices themselves, with a
    /// hash that puts everything in few buckets to force long clusters.
    fn crowded(keys: &[u32]) -> Index {
        let mut ix = Index::new(16);
        for &k in keys {
            assert!(ix.insert(u64::from(k % 3), k));
        }
        ix
    }

    #[test]
    fn removal_keeps_every_other_entry_reachable() {
        let keys: Vec<u32> = (0..16).collect();
        for gone in 0..16u32 {
            let mut ix = crowded(&keys);
            ix.remove(u64::from(gone % 3), gone, |s| u64::from(s % 3));
            for &k in &keys {
                let found = ix.find(u64::from(k % 3), |s| s == k);
                assert_eq!(found.is_some(), k != gone, "key {k} after removing {gone}");
            }
        }
    }

    #[test]
    fn wrapping_clusters() {
        let mut ix = Index::new(4);
        let last = ix.mask as u64;
        // Three entries homed at the last bucket wrap to the front.
        for k in 0..3 {
            assert!(ix.insert(last, k));
        }
        assert!(ix.insert(0, 9));
        ix.remove(last, 0, |s| if s == 9 { 0 } else { last });
        for k in [1, 2] {
            assert_eq!(ix.find(last, |s| s == k), Some(k));
        }
        assert_eq!(ix.find(0, |s| s == 9), Some(9));
        ix.clear();
        assert_eq!(ix.find(last, |_| true), None);
    }
}
