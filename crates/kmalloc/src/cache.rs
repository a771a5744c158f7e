//! A small-block cache in front of the index: freed blocks of up to 256 bytes wait, a few per
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
//! Bounds: [`DEPTH`] blocks per size, so at most 15 x 32 blocks (69 KiB; 32 rather than 8 took a
//! third of the instructions off the kernel-like trace, whose bursts free dozens of blocks of a
//! size at once); flushing the whole
//! cache (when the source has no memory left, or when the heap gives wholly free memory back)
//! is a bounded number of ordinary frees. Cached bytes count as free in the statistics.

use crate::block::{self, Block, MIN_BLOCK, UNIT};
use core::ptr;

/// The largest block length the cache keeps.
pub(crate) const MAX_LEN: usize = 256;
/// Sizes cached: every block length from [`MIN_BLOCK`] to [`MAX_LEN`] in steps of 16.
pub(crate) const CLASSES: usize = (MAX_LEN - MIN_BLOCK) / UNIT + 1;
/// Blocks kept per size (at most 255: counts are bytes).
pub(crate) const DEPTH: u8 = 32;

/// The cached blocks, by size.
pub(crate) struct Cache {
    /// Per size, its cached blocks in `blocks[c][..counts[c]]`.
    blocks: [[Block; DEPTH as usize]; CLASSES],
    counts: [u8; CLASSES],
    /// Bytes of the cached blocks.
    pub(crate) bytes: usize,
}

#[inline(always)]
fn class(len: usize) -> usize {
    (len - MIN_BLOCK) / UNIT
}

impl Cache {
    pub(crate) const fn new() -> Cache {
        Cache {
            blocks: [[ptr::null_mut(); DEPTH as usize]; CLASSES],
            counts: [0; CLASSES],
            bytes: 0,
        }
    }

    /// A cached block of exactly `len` bytes (a block length: a multiple of 16 from 32), taken
    /// out of the cache and marked used again; `None` if there is none.
    ///
    /// # Safety
    /// The cache holds only blocks of the heap that owns it.
    #[inline(always)]
    pub(crate) unsafe fn pop(&mut self, len: usize) -> Option<Block> {
        if len > MAX_LEN {
            return None;
        }
        let c = class(len);
        let n = self.counts[c];
        if n == 0 {
            return None;
        }
        let h = self.blocks[c][n as usize - 1];
        self.counts[c] = n - 1;
        self.bytes -= len;
        // SAFETY: `h` is a cached block of the heap.
        unsafe { block::set_held(h, false) };
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
        let n = self.counts[c];
        if n >= DEPTH {
            return false;
        }
        self.blocks[c][n as usize] = h;
        self.counts[c] = n + 1;
        self.bytes += len;
        // SAFETY: `h` is a used block of the heap.
        unsafe { block::set_held(h, true) };
        true
    }

    /// Takes every cached block out, marked used again, calling `each` for it.
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
    pub(crate) fn for_each(&self, mut each: impl FnMut(Block, usize)) {
        for c in 0..CLASSES {
            assert!(self.counts[c] <= DEPTH, "cache count {c} above its depth");
            for &h in &self.blocks[c][..self.counts[c] as usize] {
                each(h, MIN_BLOCK + c * UNIT);
            }
        }
    }
}
