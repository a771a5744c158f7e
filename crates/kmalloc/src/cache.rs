//! A small-block cache in front of the index: freed blocks of up to 256 bytes wait, a few per
//! exact size, to be handed out again as they are, in O(1).
//!
//! Without it, a program that allocates and frees small blocks in turn makes every allocation
//! split the same large free block and every free merge it back, which takes that block out of
//! the index and puts it back in another class each time (on the host: 84-110 ns per
//! allocate/free pair beside K&R's 32-36 ns). A cached block stays a used block to its
//! neighbours (no `FREE` flag, so nothing merges with it), but its header has the `HELD` flag
//! (see [`block`](crate::block)), so a second free of it, a `reallocate` or a checked `kmfree` of
//! it are refused like any other double free. Its payload's first word links it to the next
//! cached block of its size.
//!
//! Bounds: [`DEPTH`] blocks per size, so at most 15 x 8 blocks (17 KiB); flushing the whole
//! cache (when the source has no memory left, or when the heap gives wholly free memory back)
//! is a bounded number of ordinary frees. Cached bytes count as free in the statistics.

use crate::block::{self, Block, HDR, MIN_BLOCK, UNIT};
use core::ptr;

/// The largest block length the cache keeps.
pub(crate) const MAX_LEN: usize = 256;
/// Sizes cached: every block length from [`MIN_BLOCK`] to [`MAX_LEN`] in steps of 16.
pub(crate) const CLASSES: usize = (MAX_LEN - MIN_BLOCK) / UNIT + 1;
/// Blocks kept per size.
pub(crate) const DEPTH: u8 = 8;

/// The cached blocks, by size.
pub(crate) struct Cache {
    heads: [Block; CLASSES],
    counts: [u8; CLASSES],
    /// Bytes of the cached blocks.
    pub(crate) bytes: usize,
}

#[inline(always)]
fn class(len: usize) -> usize {
    (len - MIN_BLOCK) / UNIT
}

/// The link to the next cached block, in the payload's first word.
#[inline(always)]
fn next_slot(h: Block) -> *mut Block {
    block::payload(h).cast()
}

impl Cache {
    pub(crate) const fn new() -> Cache {
        Cache {
            heads: [ptr::null_mut(); CLASSES],
            counts: [0; CLASSES],
            bytes: 0,
        }
    }

    /// A cached block of exactly `len` bytes (a block length: a multiple of 16 from 32), taken
    /// out of the cache and tagged used again; `None` if there is none.
    ///
    /// # Safety
    /// The cache holds only blocks of the heap that owns it.
    #[inline(always)]
    pub(crate) unsafe fn pop(&mut self, len: usize) -> Option<Block> {
        if len > MAX_LEN {
            return None;
        }
        let c = class(len);
        let h = self.heads[c];
        if h.is_null() {
            return None;
        }
        // SAFETY: `h` is a cached block: its header and payload are the heap's.
        unsafe {
            self.heads[c] = ptr::read(next_slot(h));
            block::set_held(h, false);
        }
        self.counts[c] -= 1;
        self.bytes -= len;
        Some(h)
    }

    /// Keeps used block `h` of `len` bytes if its size is cached and there is room; false (and
    /// nothing done) otherwise.
    ///
    /// # Safety
    /// `h` is a used block of `len` bytes of the heap that owns the cache.
    #[inline(always)]
    pub(crate) unsafe fn push(&mut self, h: Block, len: usize) -> bool {
        if len > MAX_LEN {
            return false;
        }
        let c = class(len);
        if self.counts[c] >= DEPTH {
            return false;
        }
        // SAFETY: `h` is a used block of at least MIN_BLOCK bytes: its payload holds a word.
        unsafe {
            ptr::write(next_slot(h), self.heads[c]);
            block::set_held(h, true);
        }
        self.heads[c] = h;
        self.counts[c] += 1;
        self.bytes += len;
        true
    }

    /// Takes every cached block out, tagged used again, calling `each` for it.
    ///
    /// # Safety
    /// As [`Cache::pop`].
    pub(crate) unsafe fn drain(&mut self, mut each: impl FnMut(Block)) {
        for c in 0..CLASSES {
            let len = MIN_BLOCK + c * UNIT;
            // SAFETY: per the contract.
            while let Some(h) = unsafe { self.pop(len) } {
                each(h);
            }
        }
    }

    /// The cached blocks of each size, for the invariant checker: (block, its length).
    pub(crate) fn for_each(&self, mut each: impl FnMut(Block, usize, u8)) {
        for c in 0..CLASSES {
            let mut h = self.heads[c];
            let mut n = 0u8;
            while !h.is_null() {
                n += 1;
                each(h, MIN_BLOCK + c * UNIT, self.counts[c]);
                assert!(n <= self.counts[c], "cache list {c} longer than its count");
                // SAFETY: members are cached blocks of the heap.
                h = unsafe { ptr::read(next_slot(h)) };
            }
            assert_eq!(n, self.counts[c], "cache count {c}");
        }
    }
}

const _: () = assert!(HDR + core::mem::size_of::<Block>() <= MIN_BLOCK);
