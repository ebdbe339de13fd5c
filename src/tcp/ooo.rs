//! A small store for guest segments that arrive past a gap.
//!
//! Theory of operation: guest data goes straight into the host socket, in
//! order, and is acknowledged only as far as the kernel took it. A
//! segment past a gap can't go in yet. Dropping it (and sending the
//! duplicate ACK that asks for the gap) looks harmless, but a sender
//! without SACK counts every duplicate ACK as a segment that arrived: when
//! it later finds out they didn't, Linux concludes the path reorders,
//! raises its reordering threshold until fast retransmit never triggers,
//! and then recovers every loss by a timeout that doubles each time. A
//! guest whose frames are merely swapped on the way ends up stalled.
//!
//! So a few such segments are copied here, the only guest data we ever
//! hold in user space, and handed to the socket as soon as the gap is
//! filled. The store is bounded: `SLOTS` segments in all, `PER_CONN` per
//! connection, each at most `SLOT_BYTES`; when it is full the segment is
//! dropped as before. Its arena is allocated once and zeroed lazily by the
//! kernel, so it costs no resident memory until reordering happens.

/// Segments held at once, over all connections.
pub const SLOTS: usize = 32;
/// Segments held for one connection.
pub const PER_CONN: usize = 8;
/// Largest segment held (the largest an IP packet carries).
pub const SLOT_BYTES: usize = 65536;

#[derive(Debug, Clone, Copy)]
struct Entry {
    conn: u64,
    seq: u32,
    len: usize,
    fin: bool,
}

/// Out-of-order guest segments, by connection (a key the caller picks).
pub struct OooStore {
    arena: Box<[u8]>,
    entries: [Option<Entry>; SLOTS],
    /// Bit `i` set while `entries[i]` holds a segment: every in-order
    /// guest segment asks whether its connection has any held, and
    /// nearly always none is, so that answer shouldn't cost a scan.
    used: u32,
}

// `used` has a bit for each slot.
const _: () = assert!(SLOTS <= u32::BITS as usize);

impl Default for OooStore {
    fn default() -> Self {
        OooStore {
            arena: vec![0u8; SLOTS * SLOT_BYTES].into_boxed_slice(),
            entries: [None; SLOTS],
            used: 0,
        }
    }
}

/// True if `a` comes after `b` in sequence space.
fn after(a: u32, b: u32) -> bool {
    super::seq::after(a, b)
}

impl OooStore {
    /// Whether anything of connection `conn` is held.
    pub fn holds(&self, conn: u64) -> bool {
        self.used != 0 && self.entries.iter().flatten().any(|e| e.conn == conn)
    }

    /// Set `used` again from the slots, after any change to them.
    fn recount(&mut self) {
        self.used = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.is_some())
            .fold(0, |m, (i, _)| m | 1 << i);
    }

    /// Keep a copy of a segment of connection `conn` starting at `seq`.
    /// False when there is no room (or it is already held).
    pub fn insert(&mut self, conn: u64, seq: u32, data: &[u8], fin: bool) -> bool {
        if data.len() > SLOT_BYTES {
            return false;
        }
        let mut held = 0;
        let mut free = None;
        for (i, e) in self.entries.iter().enumerate() {
            match e {
                Some(e) if e.conn == conn => {
                    if e.seq == seq && e.len >= data.len() {
                        return false;
                    }
                    held += 1;
                }
                Some(_) => {}
                None => {
                    free.get_or_insert(i);
                }
            }
        }
        let Some(i) = free.filter(|_| held < PER_CONN) else {
            return false;
        };
        let Some(dst) = self
            .arena
            .get_mut(i * SLOT_BYTES..i * SLOT_BYTES + data.len())
        else {
            return false;
        };
        dst.copy_from_slice(data);
        self.entries[i] = Some(Entry {
            conn,
            seq,
            len: data.len(),
            fin,
        });
        self.used |= 1 << i;
        true
    }

    /// A held segment of `conn` that `rcv_nxt` has reached: its slot,
    /// sequence number, data and FIN. Segments now entirely old are
    /// forgotten on the way.
    pub fn next(&mut self, conn: u64, rcv_nxt: u32) -> Option<(usize, u32, &[u8], bool)> {
        if self.used == 0 {
            return None;
        }
        let mut found = None;
        for (i, slot) in self.entries.iter_mut().enumerate() {
            let Some(e) = slot.filter(|e| e.conn == conn) else {
                continue;
            };
            if after(e.seq, rcv_nxt) {
                continue;
            }
            // `len` is at most SLOT_BYTES, which fits in u32.
            let end = e.seq.wrapping_add(e.len as u32);
            if after(end, rcv_nxt) || (e.fin && end == rcv_nxt) {
                found = Some((i, e));
                break;
            }
            *slot = None;
        }
        self.recount();
        let (i, e) = found?;
        let data = self.arena.get(i * SLOT_BYTES..i * SLOT_BYTES + e.len)?;
        Some((i, e.seq, data, e.fin))
    }

    /// Forget the segment in `slot` (taken).
    pub fn release(&mut self, slot: usize) {
        if let Some(e) = self.entries.get_mut(slot) {
            *e = None;
        }
        self.recount();
    }

    /// Forget everything held for `conn` (it closed).
    pub fn forget(&mut self, conn: u64) {
        for e in &mut self.entries {
            if e.is_some_and(|e| e.conn == conn) {
                *e = None;
            }
        }
        self.recount();
    }

    /// Forget everything (the guest went away).
    pub fn clear(&mut self) {
        self.entries = [None; SLOTS];
        self.used = 0;
    }

    /// Segments held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.iter().flatten().count()
    }

    /// True when nothing is held.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_follows_every_way_a_segment_goes() {
        let mut s = OooStore::default();
        assert!(!s.holds(1));
        assert!(s.insert(1, 100, b"abc", false));
        assert!(s.insert(1, 200, b"def", false));
        assert!(s.insert(2, 100, b"xyz", false));
        assert!(s.holds(1) && s.holds(2) && !s.holds(3));
        let in_step = |s: &OooStore| s.used.count_ones() as usize == s.len();
        assert!(in_step(&s));
        // Taken once the gap is filled.
        let (slot, ..) = s.next(1, 100).unwrap();
        s.release(slot);
        assert!(s.holds(1) && in_step(&s));
        // Entirely old by now: dropped on the way.
        assert!(s.next(1, 300).is_none());
        assert!(!s.holds(1) && s.holds(2));
        assert_eq!(s.len(), 1);
        assert!(in_step(&s));
        s.forget(2);
        assert!(!s.holds(2) && s.is_empty() && s.used == 0);
        assert!(s.insert(3, 1, b"q", true));
        s.clear();
        assert!(!s.holds(3) && s.is_empty() && s.used == 0);
        assert!(s.next(3, 1).is_none());
    }

    #[test]
    fn held_segments_come_back_once_the_gap_is_filled() {
        let mut s = OooStore::default();
        assert!(s.insert(1, 200, b"cc", false));
        assert!(s.insert(1, 100, b"bb", true));
        assert!(!s.insert(1, 100, b"bb", true), "already held");
        assert!(s.insert(2, 100, b"xx", false));
        assert!(s.next(1, 50).is_none(), "gap still open");
        let (slot, seq, data, fin) = s.next(1, 101).unwrap();
        assert_eq!((seq, data, fin), (100, &b"bb"[..], true));
        s.release(slot);
        // Entirely old by now: dropped while looking.
        assert!(s.next(1, 300).is_none());
        assert_eq!(s.len(), 1);
        s.forget(2);
        assert!(s.is_empty());
    }

    #[test]
    fn bounded_per_connection_and_in_all() {
        let mut s = OooStore::default();
        for i in 0..PER_CONN as u32 {
            assert!(s.insert(7, 1000 * (i + 1), b"d", false));
        }
        assert!(!s.insert(7, 99_999, b"d", false), "per connection");
        let mut conn = 100;
        while s.len() < SLOTS {
            assert!(s.insert(conn, 1, b"d", false));
            conn += 1;
        }
        assert!(!s.insert(conn, 1, b"d", false), "in all");
        assert!(!s.insert(conn + 1, 1, &vec![0; SLOT_BYTES + 1], false));
    }
}
