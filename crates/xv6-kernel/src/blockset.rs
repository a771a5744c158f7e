//! The kernel-heap blocks one process holds through `kmalloc`: block address -> size, with
//! lookup, insertion and removal in O(1) expected time whatever the process holds (up to its cap
//! of tiny blocks, tens of thousands), so `kmfree` costs the same for the first block and the
//! last. Linear probing in a power-of-two table at most half full; removal shifts the rest of a
//! probe run back (no tombstones). Growth is fallible: a process that cannot get room for its
//! bookkeeping gets an error, never a kernel panic.

use alloc::vec::Vec;

/// Block addresses (never 0) and their sizes.
#[derive(Debug, Default)]
pub struct BlockSet {
    /// (address, size); address 0 marks an empty slot. Empty, or a power of two long.
    slots: Vec<(u64, usize)>,
    len: usize,
}

impl BlockSet {
    /// No blocks, no memory held.
    pub const fn new() -> BlockSet {
        BlockSet {
            slots: Vec::new(),
            len: 0,
        }
    }

    /// How many blocks.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn home(&self, addr: u64) -> usize {
        // Fibonacci hashing: blocks are 16-byte aligned, so the low bits alone would cluster.
        let bits = self.slots.len().trailing_zeros();
        (addr.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - bits)) as usize
    }

    fn find(&self, addr: u64) -> Option<usize> {
        if self.slots.is_empty() || addr == 0 {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(addr);
        loop {
            match self.slots[i].0 {
                0 => return None,
                a if a == addr => return Some(i),
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Makes room for one more block; false (nothing changed) when memory for the table is out.
    pub fn reserve_one(&mut self) -> bool {
        if (self.len + 1) * 2 <= self.slots.len() {
            return true;
        }
        let cap = (self.slots.len() * 2).max(16);
        let mut new = Vec::new();
        if new.try_reserve_exact(cap).is_err() {
            return false;
        }
        new.resize(cap, (0, 0));
        let old = core::mem::replace(&mut self.slots, new);
        for (a, n) in old {
            if a != 0 {
                self.place(a, n);
            }
        }
        true
    }

    fn place(&mut self, addr: u64, size: usize) {
        let mask = self.slots.len() - 1;
        let mut i = self.home(addr);
        while self.slots[i].0 != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i] = (addr, size);
    }

    /// Records block `addr` (not 0, not present) of `size` bytes. The caller made room with
    /// [`BlockSet::reserve_one`] first.
    pub fn insert(&mut self, addr: u64, size: usize) {
        assert!(
            addr != 0 && (self.len + 1) * 2 <= self.slots.len(),
            "no room reserved"
        );
        debug_assert!(self.find(addr).is_none());
        self.place(addr, size);
        self.len += 1;
    }

    /// Removes block `addr`, returning its size; None if it is not here.
    pub fn remove(&mut self, addr: u64) -> Option<usize> {
        let mut hole = self.find(addr)?;
        let size = self.slots[hole].1;
        self.slots[hole] = (0, 0);
        self.len -= 1;
        // Move back every later entry of the probe run that may not stay past the hole.
        let mask = self.slots.len() - 1;
        let mut i = (hole + 1) & mask;
        while self.slots[i].0 != 0 {
            let home = self.home(self.slots[i].0);
            // Entry i may move to the hole if its home is not cyclically within (hole, i].
            let stays = if hole <= i {
                hole < home && home <= i
            } else {
                hole < home || home <= i
            };
            if !stays {
                self.slots[hole] = self.slots[i];
                self.slots[i] = (0, 0);
                hole = i;
            }
            i = (i + 1) & mask;
        }
        if self.len == 0 {
            // Give the table back, so heap use returns to where it was.
            self.slots = Vec::new();
        }
        Some(size)
    }

    /// Removes every block, calling `each(addr, size)` for it; the table's memory is given back.
    pub fn drain(&mut self, mut each: impl FnMut(u64, usize)) {
        for (a, n) in core::mem::take(&mut self.slots) {
            if a != 0 {
                each(a, n);
            }
        }
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn agrees_with_a_map_through_random_operations() {
        let mut s = BlockSet::new();
        let mut m = BTreeMap::new();
        let mut x = 1u64;
        for round in 0..200_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Few distinct addresses, so inserts, hits and misses all happen; 16-aligned.
            let addr = 0x1000 + ((x >> 40) % 3000) * 16;
            if (x >> 20).is_multiple_of(3) || m.contains_key(&addr) {
                assert_eq!(s.remove(addr), m.remove(&addr), "round {round}");
            } else {
                assert!(s.reserve_one());
                s.insert(addr, round as usize);
                m.insert(addr, round as usize);
            }
            assert_eq!(s.len(), m.len());
        }
        for (&a, &n) in &m {
            assert_eq!(s.find(a).map(|i| s.slots[i].1), Some(n));
        }
        let mut drained = BTreeMap::new();
        s.drain(|a, n| {
            drained.insert(a, n);
        });
        assert_eq!(drained, m);
        assert!(s.is_empty() && s.slots.is_empty());
        assert_eq!(s.remove(0x1000), None);
    }

    #[test]
    fn removing_everything_gives_the_table_back_and_probes_stay_short() {
        let mut s = BlockSet::new();
        let n = 65_536u64;
        for i in 0..n {
            assert!(s.reserve_one());
            s.insert(0xffff_8000_0000_0000 + i * 32, 1);
        }
        assert!(s.slots.len() <= 4 * n as usize);
        // No long runs: with the table at most half full, Fibonacci hashing of evenly spaced
        // addresses keeps every probe short.
        let longest = (0..n)
            .map(|i| {
                let a = 0xffff_8000_0000_0000 + i * 32;
                let home = s.home(a);
                let at = s.find(a).unwrap();
                (at + s.slots.len() - home) & (s.slots.len() - 1)
            })
            .max()
            .unwrap();
        assert!(longest < 64, "a probe run of {longest}");
        for i in 0..n {
            assert_eq!(s.remove(0xffff_8000_0000_0000 + i * 32), Some(1));
        }
        assert!(s.is_empty() && s.slots.is_empty());
        assert_eq!(s.remove(0), None);
    }
}
