//! The buffer cache's bookkeeping (the buffers and their sleep locks are in `bio.rs`, in the
//! binary): which buffer holds which disk block, how many references each buffer has, and which
//! unreferenced buffer was used least recently.
//!
//! Every operation is O(1) whatever the cache's size, which the kernel picks from the machine's
//! memory: a hash table of chains over buffer indices finds a block's buffer, and the unreferenced
//! buffers sit on a doubly linked list threaded through two arrays, least recently used first, so
//! recycling takes the list's head. (xv6's `bio.c` keeps one list of all buffers and walks it for
//! both.)
//!
//! A buffer is in one of three states: referenced (`refs > 0`, off the list), cached (holds a
//! block, unreferenced, on the list), or empty (holds nothing, on the list at its head, so that it
//! is recycled before any cached block).

use alloc::collections::TryReserveError;
use alloc::vec::Vec;

/// "No buffer" in the links, and "no block" in `block`.
const NONE: u32 = u32::MAX;

/// What [`Index::get`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Got {
    /// The block was cached in this buffer (its contents are the block's, if it was read).
    Hit(usize),
    /// This buffer was recycled for the block: its contents are stale and must be read or
    /// overwritten.
    Miss(usize),
}

impl Got {
    /// The buffer's index.
    pub fn index(self) -> usize {
        match self {
            Got::Hit(i) | Got::Miss(i) => i,
        }
    }
}

/// The bookkeeping of a cache of `len()` buffers.
#[derive(Debug)]
pub struct Index {
    /// Per buffer: the block it holds, or NONE.
    block: Vec<u32>,
    /// Per buffer: references (holders, waiters for its lock, and the log's pins).
    refs: Vec<u32>,
    /// Per buffer: the next buffer in its hash chain.
    chain: Vec<u32>,
    /// Per bucket: the first buffer of its chain. A power of two long.
    buckets: Vec<u32>,
    /// Per buffer on the list: the one used before it (towards the head) and after it.
    prev: Vec<u32>,
    next: Vec<u32>,
    /// The unreferenced list: head is recycled first.
    head: u32,
    tail: u32,
}

impl Index {
    /// `n` empty buffers (at least one, fewer than `u32::MAX`). Fails only when memory for the
    /// bookkeeping cannot be had.
    pub fn new(n: usize) -> Result<Index, TryReserveError> {
        assert!(n > 0 && n < NONE as usize, "a buffer cache of {n} buffers");
        let nb = n.next_power_of_two();
        let filled = |len: usize, v: u32| -> Result<Vec<u32>, TryReserveError> {
            let mut x = Vec::new();
            x.try_reserve_exact(len)?;
            x.resize(len, v);
            Ok(x)
        };
        let mut ix = Index {
            block: filled(n, NONE)?,
            refs: filled(n, 0)?,
            chain: filled(n, NONE)?,
            buckets: filled(nb, NONE)?,
            prev: filled(n, NONE)?,
            next: filled(n, NONE)?,
            head: NONE,
            tail: NONE,
        };
        for i in 0..n {
            ix.push_tail(i as u32);
        }
        Ok(ix)
    }

    /// How many buffers.
    pub fn len(&self) -> usize {
        self.block.len()
    }

    /// Always false: a cache has at least one buffer.
    pub fn is_empty(&self) -> bool {
        false
    }

    fn bucket(&self, blockno: u32) -> usize {
        // Fibonacci hashing: consecutive blocks land in different buckets.
        let h = blockno.wrapping_mul(0x9e37_79b9);
        (h >> (32 - self.buckets.len().trailing_zeros().max(1))) as usize & (self.buckets.len() - 1)
    }

    /// The buffer holding `blockno`, if any.
    pub fn lookup(&self, blockno: u32) -> Option<usize> {
        let mut i = self.buckets[self.bucket(blockno)];
        while i != NONE {
            if self.block[i as usize] == blockno {
                return Some(i as usize);
            }
            i = self.chain[i as usize];
        }
        None
    }

    /// Takes a reference to the buffer for `blockno`: the one holding it, or else the least
    /// recently used unreferenced buffer, recycled. None when every buffer is referenced.
    pub fn get(&mut self, blockno: u32) -> Option<Got> {
        assert!(blockno != NONE, "block number {blockno} is reserved");
        if let Some(i) = self.lookup(blockno) {
            self.hold_index(i);
            return Some(Got::Hit(i));
        }
        self.recycle(blockno).map(Got::Miss)
    }

    /// Takes a reference to a recycled buffer for `blockno` only if the block is not cached
    /// (read-ahead fills such buffers). None if it is cached or every buffer is referenced.
    pub fn get_if_uncached(&mut self, blockno: u32) -> Option<usize> {
        assert!(blockno != NONE, "block number {blockno} is reserved");
        if self.lookup(blockno).is_some() {
            return None;
        }
        self.recycle(blockno)
    }

    fn recycle(&mut self, blockno: u32) -> Option<usize> {
        let i = self.head;
        if i == NONE {
            return None;
        }
        self.unlink_lru(i);
        if self.block[i as usize] != NONE {
            self.unhash(i);
        }
        self.block[i as usize] = blockno;
        let b = self.bucket(blockno);
        self.chain[i as usize] = self.buckets[b];
        self.buckets[b] = i;
        self.refs[i as usize] = 1;
        Some(i as usize)
    }

    /// One more reference to buffer `i`, which may be unreferenced (taken off the list).
    fn hold_index(&mut self, i: usize) {
        if self.refs[i] == 0 {
            self.unlink_lru(i as u32);
        }
        self.refs[i] += 1;
    }

    /// One more reference to buffer `i`, which must already be referenced (the log pins a
    /// buffer its caller holds).
    pub fn hold(&mut self, i: usize) {
        assert!(self.refs[i] > 0, "hold of unreferenced buffer {i}");
        self.refs[i] += 1;
    }

    /// Drops a reference to buffer `i`; true when it was the last (the buffer becomes the most
    /// recently used unreferenced one).
    pub fn release(&mut self, i: usize) -> bool {
        assert!(self.refs[i] > 0, "release of unreferenced buffer {i}");
        self.refs[i] -= 1;
        if self.refs[i] > 0 {
            return false;
        }
        if self.block[i] == NONE {
            self.push_head(i as u32);
        } else {
            self.push_tail(i as u32);
        }
        true
    }

    /// References to buffer `i`.
    pub fn refs(&self, i: usize) -> u32 {
        self.refs[i]
    }

    /// The block buffer `i` holds.
    pub fn block(&self, i: usize) -> Option<u32> {
        let b = self.block[i];
        (b != NONE).then_some(b)
    }

    /// Makes referenced buffer `i` hold no block (its read failed: nobody may find its stale
    /// contents under the block's number). It is recycled first once released.
    pub fn forget(&mut self, i: usize) {
        assert!(self.refs[i] > 0, "forget of unreferenced buffer {i}");
        if self.block[i] != NONE {
            self.unhash(i as u32);
            self.block[i] = NONE;
        }
    }

    /// Makes every unreferenced buffer hold no block; returns how many held one. Referenced
    /// ones (in use, or pinned by the log) keep theirs.
    pub fn forget_unreferenced(&mut self) -> usize {
        let mut n = 0;
        let mut i = self.head;
        while i != NONE {
            let next = self.next[i as usize];
            if self.block[i as usize] != NONE {
                self.unhash(i);
                self.block[i as usize] = NONE;
                self.unlink_lru(i);
                self.push_head(i);
                n += 1;
            }
            i = next;
        }
        n
    }

    fn unhash(&mut self, i: u32) {
        let b = self.bucket(self.block[i as usize]);
        let mut at = self.buckets[b];
        if at == i {
            self.buckets[b] = self.chain[i as usize];
        } else {
            while self.chain[at as usize] != i {
                at = self.chain[at as usize];
                assert!(at != NONE, "buffer {i} not in its hash chain");
            }
            self.chain[at as usize] = self.chain[i as usize];
        }
        self.chain[i as usize] = NONE;
    }

    fn unlink_lru(&mut self, i: u32) {
        let (p, n) = (self.prev[i as usize], self.next[i as usize]);
        if p == NONE {
            self.head = n;
        } else {
            self.next[p as usize] = n;
        }
        if n == NONE {
            self.tail = p;
        } else {
            self.prev[n as usize] = p;
        }
        self.prev[i as usize] = NONE;
        self.next[i as usize] = NONE;
    }

    fn push_tail(&mut self, i: u32) {
        self.prev[i as usize] = self.tail;
        self.next[i as usize] = NONE;
        if self.tail == NONE {
            self.head = i;
        } else {
            self.next[self.tail as usize] = i;
        }
        self.tail = i;
    }

    fn push_head(&mut self, i: u32) {
        self.next[i as usize] = self.head;
        self.prev[i as usize] = NONE;
        if self.head == NONE {
            self.tail = i;
        } else {
            self.prev[self.head as usize] = i;
        }
        self.head = i;
    }

    /// Checks every structure against the others (tests).
    #[cfg(test)]
    fn check(&self) {
        use std::collections::HashSet;
        let mut on_list = HashSet::new();
        let mut i = self.head;
        let mut prev = NONE;
        while i != NONE {
            assert_eq!(self.prev[i as usize], prev);
            assert_eq!(
                self.refs[i as usize], 0,
                "referenced buffer {i} on the list"
            );
            assert!(on_list.insert(i));
            prev = i;
            i = self.next[i as usize];
        }
        assert_eq!(self.tail, prev);
        for i in 0..self.len() {
            assert_eq!(self.refs[i] == 0, on_list.contains(&(i as u32)));
            if let Some(b) = self.block(i) {
                assert_eq!(
                    self.lookup(b),
                    Some(i),
                    "buffer {i} not found for block {b}"
                );
            }
        }
        let mut chained = 0;
        for &h in &self.buckets {
            let mut i = h;
            while i != NONE {
                chained += 1;
                i = self.chain[i as usize];
            }
        }
        assert_eq!(
            chained,
            (0..self.len()).filter(|&i| self.block(i).is_some()).count()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn hit_after_miss_and_lru_order() {
        let mut ix = Index::new(3).unwrap();
        let a = ix.get(10).unwrap();
        assert!(matches!(a, Got::Miss(_)));
        assert_eq!(ix.get(10), Some(Got::Hit(a.index())));
        assert!(!ix.release(a.index()));
        assert!(ix.release(a.index()));
        let b = ix.get(20).unwrap().index();
        let c = ix.get(30).unwrap().index();
        ix.release(b);
        ix.release(c);
        ix.check();
        // Empty buffers are gone; the least recently released (10) is recycled first.
        let d = ix.get(40).unwrap();
        assert_eq!(d, Got::Miss(a.index()));
        assert_eq!(ix.lookup(10), None);
        assert_eq!(ix.lookup(20), Some(b));
        ix.check();
    }

    #[test]
    fn none_when_all_referenced_and_pins_count() {
        let mut ix = Index::new(2).unwrap();
        let a = ix.get(1).unwrap().index();
        let b = ix.get(2).unwrap().index();
        assert_eq!(ix.get(3), None);
        assert_eq!(ix.get_if_uncached(3), None);
        ix.hold(a); // a pin
        ix.release(a);
        assert_eq!(ix.get(3), None, "a pinned buffer is not recycled");
        ix.release(b);
        assert_eq!(ix.get(3), Some(Got::Miss(b)));
        ix.check();
    }

    #[test]
    fn uncached_only_and_forget() {
        let mut ix = Index::new(4).unwrap();
        let a = ix.get(7).unwrap().index();
        assert_eq!(ix.get_if_uncached(7), None);
        let r = ix.get_if_uncached(8).unwrap();
        ix.forget(r);
        ix.release(r);
        assert_eq!(ix.lookup(8), None);
        ix.release(a);
        ix.check();
        assert_eq!(ix.forget_unreferenced(), 1);
        assert_eq!(ix.lookup(7), None);
        ix.check();
    }

    #[test]
    #[should_panic(expected = "release of unreferenced")]
    fn double_release_panics() {
        let mut ix = Index::new(2).unwrap();
        let a = ix.get(1).unwrap().index();
        ix.release(a);
        ix.release(a);
    }

    /// Random operations against a model: which block each buffer holds, refs, LRU order.
    #[test]
    fn model() {
        let mut seed = 0x1234_5678_9abc_def1u64;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for n in [1usize, 2, 5, 64] {
            let mut ix = Index::new(n).unwrap();
            let mut held: Vec<usize> = Vec::new();
            // Model: block -> (buffer, stamp of last release) for cached blocks.
            let mut stamp = 0u64;
            let mut last_release: HashMap<usize, u64> = (0..n).map(|i| (i, 0)).collect();
            for step in 0..20_000 {
                match rnd(5) {
                    0..=1 => {
                        let blk = rnd(3 * n as u64 + 2) as u32;
                        let before = ix.lookup(blk);
                        // An empty unreferenced buffer is recycled first, else the least
                        // recently released cached one.
                        let free: Vec<usize> = (0..n).filter(|&i| ix.refs(i) == 0).collect();
                        let empties: Vec<usize> = free
                            .iter()
                            .copied()
                            .filter(|&i| ix.block(i).is_none())
                            .collect();
                        let lru = free.iter().copied().min_by_key(|i| last_release[i]);
                        match ix.get(blk) {
                            Some(Got::Hit(i)) => {
                                assert_eq!(Some(i), before);
                                held.push(i);
                            }
                            Some(Got::Miss(i)) => {
                                assert_eq!(before, None);
                                if empties.is_empty() {
                                    assert_eq!(Some(i), lru, "step {step}");
                                } else {
                                    assert!(empties.contains(&i), "step {step}");
                                }
                                held.push(i);
                            }
                            None => assert!(before.is_none() && free.is_empty()),
                        }
                    }
                    2..=3 if !held.is_empty() => {
                        let k = rnd(held.len() as u64) as usize;
                        let i = held.swap_remove(k);
                        if ix.release(i) {
                            stamp += 1;
                            last_release.insert(i, stamp);
                        }
                    }
                    _ => {
                        if rnd(50) == 0 {
                            ix.forget_unreferenced();
                        }
                    }
                }
                if step % 97 == 0 {
                    ix.check();
                }
            }
            ix.check();
        }
    }
}
