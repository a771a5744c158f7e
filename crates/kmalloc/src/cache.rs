//! A small-block cache in front of the index: freed blocks of up to 1 KiB wait, a few per
//! exact size, to be handed out again as they are, in O(1).
//!
//! Without it, a program that allocates and frees small blocks in turn makes every allocation
//! split the same large free block and every free merge it back, which takes that block out of
//! the index and puts it back in another class each time (on the host: 84-110 ns per
//! allocate/free pair beside K&R's 32-36 ns). A cached block stays a used block to its
//! neighbours (no `FREE` flag, so nothing merges with it), but its header has the `HELD` flag
//! (see [`block`](crate::block)), so a second free of it, a `reallocate` or a checked `kmfree` of
//! it are refused like any other double free. The cache keeps the blocks' addresses in arrays
//! of its own, one per size: taking a block out reads nothing from the block (whose memory is
//! likely cold), so a run of allocations is not a chain of dependent cache misses.
//!
//! Bounds: [`DEPTH`] blocks per size, so at most 63 x 32 blocks (1 MiB; 32 rather than 8 took a
//! third of the instructions off the kernel-like trace, whose bursts free dozens of blocks of a
//! size at once, and 16 a fifth more than 32; sizes up to 1024 rather than 512 bytes took 6-8 %
//! of the heap's instructions off talc's random actions at 1000 and 3000 bytes and the
//! kernel-like trace, up to 2048 took more but cost heap efficiency, and the arrays are 15.75
//! KiB of the heap's struct). The cache never makes the heap grow: before the heap asks its
//! source for pages it flushes the cache and looks in the index again, so cached blocks never
//! leave a request unserved that the merged memory could serve (and talc's heap-efficiency
//! figure is unchanged by the larger sizes). Flushing the whole cache (then, and when the heap
//! gives wholly free memory back) is a bounded number of ordinary frees. Cached bytes count as
//! free in the statistics: the heap's byte counter counts them as used (so a push or pop
//! updates no counter) and [`Heap::stats`](crate::Heap::stats) takes off [`Cache::bytes`], a
//! sum over the 63 sizes.

use crate::block::{self, Block, MIN_BLOCK, UNIT};
use core::ptr;

/// The largest block length the cache keeps.
pub(crate) const MAX_LEN: usize = 1024;
/// Sizes cached: every block length from [`MIN_BLOCK`] to [`MAX_LEN`] in steps of 16.
pub(crate) const CLASSES: usize = (MAX_LEN - MIN_BLOCK) / UNIT + 1;
/// Blocks kept per size (at most 255: counts are bytes).
pub(crate) const DEPTH: u8 = 32;

/// The counts array's length: [`CLASSES`] rounded up to whole 8-byte words, so that
/// [`Cache::is_empty`] and [`Cache::pop_any`] read it a word at a time (the padding stays 0).
const COUNT_BYTES: usize = CLASSES.next_multiple_of(8);

/// The cached blocks, by size.
pub(crate) struct Cache {
    /// Per size, its cached blocks in `blocks[c][..counts[c]]`.
    blocks: [[Block; DEPTH as usize]; CLASSES],
    /// Per size, how many are cached; the bytes past [`CLASSES`] are always 0.
    counts: [u8; COUNT_BYTES],
}

/// The cache's slot for blocks of `len` bytes (a block length of at most `MAX_LEN`).
#[inline(always)]
fn class(len: usize) -> usize {
    debug_assert!((MIN_BLOCK..=MAX_LEN).contains(&len));
    (len - MIN_BLOCK) / UNIT
}

impl Cache {
    pub(crate) const fn new() -> Cache {
        Cache {
            blocks: [[ptr::null_mut(); DEPTH as usize]; CLASSES],
            counts: [0; COUNT_BYTES],
        }
    }

    /// Counts word `i`, little-endian: the counts of sizes `8 * i..8 * i + 8`, that of size `c`
    /// in byte `c % 8` (bits `8 * (c % 8)..`).
    #[inline(always)]
    fn count_word(&self, i: usize) -> u64 {
        let mut w = [0; 8];
        w.copy_from_slice(&self.counts[8 * i..8 * i + 8]);
        u64::from_le_bytes(w)
    }

    /// True if no block is cached: eight word reads. (A full heap asks this on every failed
    /// allocation, so it is not a loop over the 63 counts.)
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        (0..COUNT_BYTES / 8).fold(0, |any, i| any | self.count_word(i)) == 0
    }

    /// Bytes of the cached blocks: a sum over the sizes, O(1) (63 terms).
    pub(crate) fn bytes(&self) -> usize {
        (0..CLASSES)
            .map(|c| self.counts[c] as usize * (MIN_BLOCK + c * UNIT))
            .sum()
    }

    /// A cached block of exactly `len` bytes (a block length: a multiple of 16 from 32), taken
    /// out of the cache and marked used again; `None` if there is none.
    ///
    /// # Safety
    /// The cache holds only blocks of the heap that owns it; `len` is a block length (a
    /// multiple of 16, at least `MIN_BLOCK`).
    #[inline(always)]
    pub(crate) unsafe fn pop(&mut self, len: usize) -> Option<Block> {
        if len > MAX_LEN {
            return None;
        }
        let c = class(len);
        // SAFETY: `c < CLASSES` for a block length (at least MIN_BLOCK) up to MAX_LEN.
        let n = unsafe { *self.counts.get_unchecked(c) };
        if n == 0 {
            return None;
        }
        // SAFETY: `0 < n <= DEPTH`: push never counts past DEPTH.
        let h = unsafe { *self.blocks[c].get_unchecked(n as usize - 1) };
        self.counts[c] = n - 1;
        // SAFETY: `h` is a cached block of the heap.
        unsafe { block::clear_held(h) };
        Some(h)
    }

    /// Keeps used block `h`, whose header word is `w`, if its size is cached and there is room,
    /// and marks it cached with one store; false (and nothing done) otherwise.
    ///
    /// # Safety
    /// `h` is a used block of the heap that owns the cache, `w` its header word.
    #[inline(always)]
    pub(crate) unsafe fn push(&mut self, h: Block, w: usize) -> bool {
        let len = w & block::SIZE_MASK;
        if len > MAX_LEN {
            return false;
        }
        let c = class(len);
        // SAFETY: `c < CLASSES` for a block length (at least MIN_BLOCK) up to MAX_LEN.
        let n = unsafe { *self.counts.get_unchecked(c) };
        if n >= DEPTH {
            return false;
        }
        // SAFETY: `n < DEPTH`, checked just above.
        unsafe { *self.blocks[c].get_unchecked_mut(n as usize) = h };
        self.counts[c] = n + 1;
        // SAFETY: `h` is a used block of the heap, `w` its word.
        unsafe { (*h).size = w | block::HELD };
        true
    }

    /// Takes any one cached block out, marked used again; `None` when the cache is empty. (The
    /// flush calls it until `None`: at most 63 x 32 blocks.)
    ///
    /// # Safety
    /// As [`Cache::pop`].
    pub(crate) unsafe fn pop_any(&mut self) -> Option<Block> {
        let (i, w) = (0..COUNT_BYTES / 8)
            .map(|i| (i, self.count_word(i)))
            .find(|&(_, w)| w != 0)?;
        let c = 8 * i + w.trailing_zeros() as usize / 8;
        // SAFETY: per the contract.
        unsafe { self.pop(MIN_BLOCK + c * UNIT) }
    }

    /// The cached blocks of each size, for the invariant checker: (block, its length).
    pub(crate) fn for_each(&self, mut each: impl FnMut(Block, usize)) {
        assert!(
            self.counts[CLASSES..].iter().all(|&n| n == 0),
            "cache count padding not 0"
        );
        for c in 0..CLASSES {
            assert!(self.counts[c] <= DEPTH, "cache count {c} above its depth");
            for &h in &self.blocks[c][..self.counts[c] as usize] {
                each(h, MIN_BLOCK + c * UNIT);
            }
        }
    }
}
