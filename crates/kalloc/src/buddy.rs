//! The frame allocator: a binary buddy system whose free blocks are recorded in per-order bitmaps
//! kept in each range's first frames, with small caches of single frames and of whole blocks in
//! front.
//!
//! Each managed range keeps, in its own first frames (the metadata), an allocation bitmap with
//! one bit per frame (1 = handed to a caller, or not a frame of the range) and, for each order
//! k, the index of [`crate::levels`]: one bit per 2^k-aligned block (by absolute frame number),
//! set exactly when a free block of order k heads there, with summary levels for find-first.
//! Nothing is ever stored in, or read from, a frame the allocator hands out: what a caller (or an
//! earlier allocator) left in the frames cannot mislead it.
//!
//! Invariants (checked by [`FrameAllocator::check_invariants`]):
//! - the free blocks of all orders, the cached frames and the cached blocks are disjoint and
//!   cover exactly the frames whose allocation bit is 0;
//! - a free block of order k < MAX_ORDER never has a free buddy of order k (they would have
//!   been merged); cached frames and blocks are outside the buddy system and do not merge until
//!   flushed;
//! - while `no_help_from` is known (see its field), no cached item lies in an all-free block of
//!   the order it names;
//! - `nonempty[k]` has bit i set exactly when range i has a free block of order k, and `orders`
//!   bit k exactly when `nonempty[k]` is not 0.
//!
//! Single frames (allocate, or a free of one frame) go through the cache of up to
//! [`CACHE_FRAMES`] frames: a refill takes [`CACHE_FRAMES`]/2 frames in as few blocks as it can, a
//! full cache gives half back. Cached frames have allocation bit 0, so a double free of one is
//! still refused, and `is_free` and the statistics count them as free.
//!
//! Runs of 2 to 64 frames (orders 1 to 6) have a cache per order of up to 8 whole blocks: a
//! freed run whose block is whole again (the common case: the run, with the tail its allocation
//! gave back still free) goes there instead of merging, and the next request of that order takes
//! the last one back instead of searching and splitting. Their frames, too, have allocation bit 0.
//!
//! A contiguous request that finds no block (in its block cache, the buddy system, or a larger
//! cached block it splits) flushes the caches (merging everything back) and tries again, but only
//! if that can help: the buddy system's blocks are merged, so an all-free aligned block of the
//! order exists only around a cached item, and each is checked. A refusal is remembered
//! (`no_help_from`) until a free makes such a block, so a run of refusals checks once.
//!
//! The fast paths serve frames of the largest range (the "fast range", whose bounds and bitmap
//! the allocator keeps at hand): no range lookup, and a cached frame of it is its bare number.
//! Frames of other ranges take the same cache through the general (out-of-line) paths.

use crate::addr::{Frame, PhysAddr};
use crate::levels::{layout, Index, HEADER_WORDS, ORDERS};
use crate::FRAME_SIZE;

/// Largest block: 2^MAX_ORDER frames (1 GiB).
pub const MAX_ORDER: usize = 18;
/// Most ranges one allocator can manage (one bit each in a 64-bit mask per order).
pub const MAX_RANGES: usize = 64;
/// Single frames kept free in front of the buddy system.
pub const CACHE_FRAMES: usize = 64;
/// How many frames a refill of the cache takes, and a flush of a full cache returns.
const BATCH: usize = CACHE_FRAMES / 2;
/// Orders 1..=BLOCK_ORDERS (runs of 2 to 64 frames) keep freed blocks in a cache of their own.
const BLOCK_ORDERS: usize = 6;
/// Blocks each of those caches holds.
const BLOCKS: usize = 8;

/// Why a range could not be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeError {
    /// `end` is not above `start`, or the range holds no whole frame.
    Empty,
    /// The range is too small to hold its own bitmap and a frame besides.
    TooSmall,
    /// It overlaps a range already managed.
    Overlap,
    /// [`MAX_RANGES`] ranges are managed already.
    TooManyRanges,
}

/// Why an allocation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// No free run large enough (at that alignment).
    OutOfMemory,
    /// A count of 0, a non-power-of-two alignment, or a run larger than the largest block.
    InvalidRequest,
}

/// Why a free was refused. Nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// A frame of the run is already free.
    DoubleFree,
    /// The address is not frame-aligned.
    Misaligned,
    /// A frame of the run is not managed by this allocator (or is its own bitmap).
    NotManaged,
    /// A count of 0.
    Empty,
}

impl core::fmt::Display for FreeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            FreeError::DoubleFree => "frame is already free",
            FreeError::Misaligned => "address is not frame-aligned",
            FreeError::NotManaged => "frame is not managed by this allocator",
            FreeError::Empty => "empty run",
        })
    }
}

/// Byte patterns written into frames to catch dangling references (xv6 writes 1 on free and 5 on
/// allocation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Junk {
    /// Fill freed frames with this byte.
    pub on_free: Option<u8>,
    /// Fill allocated frames with this byte.
    pub on_alloc: Option<u8>,
}

impl Junk {
    /// xv6's choice: 1 on free, 5 on allocation.
    pub const XV6: Junk = Junk {
        on_free: Some(1),
        on_alloc: Some(5),
    };
}

/// A snapshot of the allocator's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameStats {
    /// Frames managed (not counting the frames holding bitmaps).
    pub total: u64,
    /// Frames free.
    pub free: u64,
    /// Longest run of free frames within one range.
    pub largest_free_run: u64,
    /// Ranges managed.
    pub ranges: usize,
    /// Frames used by the allocator's own bitmaps.
    pub metadata_frames: u64,
}

#[derive(Clone, Copy, Debug)]
struct Range {
    /// First frame number of the range as given (its metadata's); bit 0 of the index's bitmaps.
    base: u64,
    /// `base` rounded down to a multiple of 64: bit 0 of the allocation bitmap, so that frame
    /// `f`'s bit is bit `f % 64` of its word (the bits of frames before `base` are 1, as for
    /// any frame not in the range).
    bits_from: u64,
    /// First usable frame number (after the metadata).
    start: u64,
    /// One past the last frame number.
    end: u64,
    /// The metadata, through the direct map.
    index: Index,
}

impl Range {
    /// An unused slot.
    const NONE: Range = Range {
        base: 0,
        bits_from: 0,
        start: 0,
        end: 0,
        index: Index {
            meta: core::ptr::null_mut(),
        },
    };

    /// The allocation bitmap's word holding frame `f`'s bit.
    #[inline]
    fn alloc_word(&self, f: u64) -> *mut u64 {
        // The allocation bitmap follows the header; `f` is in the range, so the word is too.
        self.index
            .meta
            .wrapping_add(HEADER_WORDS + ((f - self.bits_from) / 64) as usize)
    }

    /// Block index of the order-`k` block at frame `f` in the range's index.
    #[inline]
    fn idx(&self, f: u64, k: usize) -> u64 {
        (f >> k) - (self.base >> k)
    }
}

/// A cache entry: the frame number, with its range's index in the top bits (frame numbers have
/// at most 40 bits; range indices fit in 6), counted from the fast range (see
/// [`FrameAllocator::fast`]) so that a frame of the fast range is cached as its bare number.
const RANGE_SHIFT: u32 = 58;

/// The fast range's bounds and allocation bitmap, copied out of its [`Range`] so that the
/// single-frame fast paths reach them without a range lookup. Frames of other ranges take the
/// general paths.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
struct Fast {
    /// The range's `start`.
    start: u64,
    /// Frames from `start` (0 with no range: then no frame passes).
    frames: u64,
    /// Where word 0 of an allocation bitmap starting at frame 0 would be: frame `f` of the
    /// range has bit `f % 64` of word `words.wrapping_add(f / 64)` (the range's bitmap starts
    /// at a multiple of 64 frames, see [`Range::bits_from`]). Null with no range.
    words: *mut u64,
    /// The range's index in `ranges`.
    ri: usize,
}

/// For a run of at most 64 bits from bit `first`: the first word's index and the masks of the
/// run's bits in it and in the next word (0 if the run ends in the first). None for longer
/// runs (see [`bit_words`]).
#[inline]
fn short_run(first: u64, count: u64) -> Option<(usize, u64, u64)> {
    if count == 0 || count > 64 {
        return None;
    }
    let lo = first % 64;
    let end = lo + count; // at most 127
    let m0 = if end >= 64 {
        u64::MAX << lo
    } else {
        ((1u64 << count) - 1) << lo
    };
    let m1 = if end > 64 {
        (1u64 << (end - 64)) - 1
    } else {
        0
    };
    Some(((first / 64) as usize, m0, m1))
}

/// The bitmap words covering bits `first..first + count`, each with the mask of those bits in it.
fn bit_words(first: u64, count: u64) -> impl Iterator<Item = (usize, u64)> {
    let end = first + count;
    let mut idx = first;
    core::iter::from_fn(move || {
        if idx >= end {
            return None;
        }
        let lo = idx % 64;
        let n = (64 - lo).min(end - idx);
        let mask = if n == 64 {
            u64::MAX
        } else {
            ((1u64 << n) - 1) << lo
        };
        let word = (idx / 64) as usize;
        idx += n;
        Some((word, mask))
    })
}

/// A physical frame allocator. See the crate documentation.
///
/// (`repr(C)` and 64-aligned: the fields the single-frame fast paths read, `cached` to `fast`,
/// lead it and share one cache line; the top of the frame cache follows.)
#[repr(C, align(64))]
pub struct FrameAllocator {
    /// Frames in `cache`.
    cached: usize,
    /// The fast path of [`allocate`](Self::allocate) serves while `cached` is above this: 0, or
    /// [`CACHE_FRAMES`] (never) when allocations are junk-filled. One comparison for both
    /// conditions.
    fast_alloc_above: usize,
    /// The fast path of [`free`](Self::free) serves while `cached` is below this:
    /// [`CACHE_FRAMES`], or 0 (never) when frees are junk-filled.
    fast_free_below: usize,
    /// The largest range, whose frames the single-frame fast paths serve.
    fast: Fast,
    /// Single frames kept out of the buddy system, the most recently freed last, as cache
    /// entries (see [`RANGE_SHIFT`]).
    cache: [u64; CACHE_FRAMES],
    /// Physical address 0 through the direct map: `map.wrapping_add(p)` reaches `p`.
    map: *mut u8,
    /// True if `map` was made from a bare offset ([`FrameAllocator::new`]): addresses then take
    /// the provenance the kernel exposed for its direct map.
    exposed: bool,
    /// The ranges by address; those from `nranges` on are [`Range::NONE`].
    ranges: [Range; MAX_RANGES],
    nranges: usize,
    /// Per order, the ranges (by index) with a free block of that order.
    nonempty: [u64; ORDERS],
    /// The orders with a free block in some range.
    orders: u32,
    /// Per order 1..=[`BLOCK_ORDERS`] (at `order - 1`), freed whole blocks kept out of the
    /// buddy system, as cache entries (see [`RANGE_SHIFT`]); counted in `free`.
    blocks: [[u64; BLOCKS]; BLOCK_ORDERS],
    /// How many of each `blocks` row are in use.
    nblocks: [usize; BLOCK_ORDERS],
    /// Bit k set exactly when the block cache of order k is not empty.
    cached_orders: u32,
    /// `m`, or `usize::MAX` if unknown: flushing the caches is known not to make a free block
    /// of order `m` or above (see [`flush_would_help`](Self::flush_would_help)). It holds while
    /// for every cached item of order `j` (0 for a single frame) the aligned block of order
    /// `max(m, j + 1)` around it is not all free. Allocations only take frames, so they keep
    /// it; a free keeps it unless the blocks of that order around the freed run are now all
    /// free (see [`note_freed`](Self::note_freed)); a refill, which caches frames from the
    /// buddy system, forgets it. While it is known, single frames are freed on the slow path,
    /// which checks.
    no_help_from: usize,
    /// Free frames in the buddy system and the block caches (the frames of the single-frame
    /// cache are counted by `cached`, so its fast paths keep one counter, not two).
    free: u64,
    total: u64,
    metadata: u64,
    junk: Junk,
}

// SAFETY: the allocator owns the memory of its ranges (the `add_range` contract) and nothing
// else; moving it to another thread moves that ownership.
unsafe impl Send for FrameAllocator {}

impl core::fmt::Debug for FrameAllocator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FrameAllocator")
            .field("direct_map", &self.map)
            .field("ranges", &&self.ranges[..self.nranges])
            .field("free", &self.free_frames())
            .field("cached", &self.cached)
            .field("cached_blocks", &self.nblocks)
            .field("total", &self.total)
            .finish()
    }
}

impl FrameAllocator {
    /// An allocator with no memory yet. Physical address `p` is reachable at virtual address
    /// `p + phys_offset` (a direct map; 0 for identity mapping). Pointers into it are made with
    /// [`core::ptr::with_exposed_provenance_mut`]: the kernel's direct map is memory it set up
    /// itself. Where the memory comes with a pointer (a static array, a slice, a test's vector),
    /// [`with_direct_map`](Self::with_direct_map) keeps that pointer's provenance instead.
    pub const fn new(phys_offset: usize) -> FrameAllocator {
        FrameAllocator::make(core::ptr::without_provenance_mut(phys_offset), true)
    }

    /// An allocator whose "physical" address `p` is at `direct_map.wrapping_add(p)`: every
    /// pointer it makes is derived from `direct_map`, so it stays within that pointer's
    /// provenance (strict provenance; Miri checks it). For memory the caller holds a pointer to:
    /// `FrameAllocator::with_direct_map(region.as_mut_ptr().wrapping_sub(region_phys_start))`.
    pub const fn with_direct_map(direct_map: *mut u8) -> FrameAllocator {
        FrameAllocator::make(direct_map, false)
    }

    const fn make(map: *mut u8, exposed: bool) -> FrameAllocator {
        FrameAllocator {
            map,
            exposed,
            ranges: [Range::NONE; MAX_RANGES],
            nranges: 0,
            nonempty: [0; ORDERS],
            orders: 0,
            cache: [0; CACHE_FRAMES],
            cached: 0,
            fast: Fast {
                start: 0,
                frames: 0,
                words: core::ptr::null_mut(),
                ri: 0,
            },
            blocks: [[0; BLOCKS]; BLOCK_ORDERS],
            nblocks: [0; BLOCK_ORDERS],
            cached_orders: 0,
            no_help_from: usize::MAX,
            free: 0,
            total: 0,
            metadata: 0,
            junk: Junk {
                on_free: None,
                on_alloc: None,
            },
            fast_alloc_above: 0,
            fast_free_below: CACHE_FRAMES,
        }
    }

    /// Sets the junk fill; off by default.
    pub fn set_junk(&mut self, junk: Junk) {
        self.junk = junk;
        self.fast_alloc_above = if junk.on_alloc.is_some() {
            CACHE_FRAMES
        } else {
            0
        };
        self.set_fast_free();
    }

    /// Sets `fast_free_below`: no fast frees with junk fill on free or a known `no_help_from`.
    fn set_fast_free(&mut self) {
        self.fast_free_below = if self.junk.on_free.is_some() || self.no_help_from != usize::MAX {
            0
        } else {
            CACHE_FRAMES
        };
    }

    /// Forgets `no_help_from`.
    #[inline]
    fn forget_no_help(&mut self) {
        if self.no_help_from != usize::MAX {
            self.no_help_from = usize::MAX;
            self.set_fast_free();
        }
    }

    /// After a free of `[first, first + count)` in `r` (its bits now 0), put in a cache as an
    /// item of order `cached` if `Some`: keeps `no_help_from` if it still holds, else forgets
    /// it. Blocks of the checked order `l` around the run that are now all free are the only
    /// way it can break: an item's block that became all free holds freed frames, so it holds
    /// (or lies in) such a block of order `l`.
    fn note_freed(&mut self, r: &Range, first: u64, count: u64, cached: Option<usize>) {
        let m = self.no_help_from;
        if m == usize::MAX {
            return;
        }
        let l = cached.map_or(m, |j| m.max(j + 1));
        // (Past 4 words a check costs more than it saves: forget.)
        if l > 8 {
            return self.forget_no_help();
        }
        let size = 1u64 << l;
        let lo = first & !(size - 1);
        let hi = (first + count - 1) & !(size - 1);
        // (Its first 64 frames first: most blocks fail there, in a word or two.)
        let all_free = |head: u64| {
            head >= r.start
                && head + size <= r.end
                && self.all_bits(r, head, size.min(64), false)
                && (size <= 64 || self.all_bits(r, head + 64, size - 64, false))
        };
        if hi - lo > size || all_free(lo) || (hi != lo && all_free(hi)) {
            self.forget_no_help();
        }
    }

    /// The virtual address through which the allocator reaches `addr`.
    pub fn phys_to_virt(&self, addr: PhysAddr) -> *mut u8 {
        if self.exposed {
            core::ptr::with_exposed_provenance_mut(
                self.map.addr().wrapping_add(addr.as_u64() as usize),
            )
        } else {
            self.map.wrapping_add(addr.as_u64() as usize)
        }
    }

    /// The physical address of a direct-map pointer.
    ///
    /// # Panics
    /// If `ptr` is below the direct map or maps past [`PHYS_ADDR_BITS`](crate::PHYS_ADDR_BITS)
    /// (no direct-map pointer is); [`try_virt_to_phys`](Self::try_virt_to_phys) says `None`.
    pub fn virt_to_phys(&self, ptr: *const u8) -> PhysAddr {
        self.try_virt_to_phys(ptr)
            .expect("virt_to_phys: not a direct-map address")
    }

    /// The physical address of `ptr` if it is a direct-map address (at or above the map's base,
    /// below [`PHYS_ADDR_BITS`](crate::PHYS_ADDR_BITS) of physical space), else `None`.
    pub fn try_virt_to_phys(&self, ptr: *const u8) -> Option<PhysAddr> {
        PhysAddr::try_new(ptr.addr().wrapping_sub(self.map.addr()) as u64).ok()
    }

    fn frame_ptr(&self, frame: u64) -> *mut u8 {
        self.phys_to_virt(PhysAddr::new(frame * FRAME_SIZE as u64))
    }

    /// Hands the frames wholly inside `[start, end)` to the allocator. Partial frames at the edges
    /// are skipped. The allocator keeps its bitmaps for the range in the range's first frames.
    /// The initial frames are not junk-filled.
    ///
    /// # Safety
    /// The memory is RAM that nobody else uses, now or later (until the allocator hands it out),
    /// reachable and writable through the direct map.
    pub unsafe fn add_range(&mut self, start: PhysAddr, end: PhysAddr) -> Result<(), RangeError> {
        let first = start.align_up(FRAME_SIZE as u64).as_u64() / FRAME_SIZE as u64;
        let last = end.align_down(FRAME_SIZE as u64).as_u64() / FRAME_SIZE as u64;
        if last <= first {
            return Err(RangeError::Empty);
        }
        let frames = last - first;
        let bits_from = first & !63;
        let alloc_words = (last - bits_from).div_ceil(64);
        let (header, level_words) = layout(first, last, HEADER_WORDS as u64 + alloc_words);
        let words = HEADER_WORDS as u64 + alloc_words + level_words;
        let meta = (words * 8).div_ceil(FRAME_SIZE as u64);
        if meta >= frames {
            return Err(RangeError::TooSmall);
        }
        if self.ranges[..self.nranges]
            .iter()
            .any(|r| r.base < last && first < r.end)
        {
            return Err(RangeError::Overlap);
        }
        if self.nranges == MAX_RANGES {
            return Err(RangeError::TooManyRanges);
        }
        // Cache entries name their range by index, and indices are about to move.
        self.flush_cache();
        let metap = self.frame_ptr(first) as *mut u64;
        // SAFETY: the metadata frames are ours by the contract; `words` words fit in `meta`
        // frames. The header first, then every allocation bit 1 (including the tail bits past
        // the range), then every level empty.
        unsafe {
            metap.copy_from_nonoverlapping(header.as_ptr(), HEADER_WORDS);
            core::ptr::write_bytes(metap.add(HEADER_WORDS), 0xff, alloc_words as usize);
            core::ptr::write_bytes(
                metap.add(HEADER_WORDS + alloc_words as usize),
                0,
                level_words as usize,
            );
        }
        let r = Range {
            base: first,
            bits_from,
            start: first + meta,
            end: last,
            index: Index { meta: metap },
        };
        let at = self.ranges[..self.nranges]
            .iter()
            .take_while(|x| x.base < first)
            .count();
        self.ranges.copy_within(at..self.nranges, at + 1);
        self.ranges[at] = r;
        self.nranges += 1;
        // Range indices from `at` on moved up by one: so do their bits.
        for mask in &mut self.nonempty {
            let low = *mask & ((1u64 << at) - 1);
            *mask = low | (*mask & !((1u64 << at) - 1)) << 1;
        }
        self.total += r.end - r.start;
        self.metadata += meta;
        // The largest range is the fast one (the cache is empty, so no entry names a range
        // relative to the old one). The first of equal ones, as `max_by_key` takes the last.
        let (ri, fr) = self.ranges[..self.nranges]
            .iter()
            .enumerate()
            .rev()
            .max_by_key(|(_, x)| x.end - x.start)
            .expect("a range was just added");
        self.fast = Fast {
            start: fr.start,
            frames: fr.end - fr.start,
            // (Before the bitmap, maybe outside the metadata: only ever offset back into it.)
            words: fr
                .index
                .meta
                .wrapping_add(HEADER_WORDS)
                .wrapping_sub((fr.bits_from / 64) as usize),
            ri,
        };
        self.forget_no_help();
        let saved = self.junk.on_free.take();
        self.free_run_unchecked(at, &r, r.start, r.end - r.start);
        self.junk.on_free = saved;
        Ok(())
    }

    /// The cache entry of frame `f` of range `ri`.
    #[inline]
    fn pack(&self, frame: u64, ri: usize) -> u64 {
        frame | (((ri + MAX_RANGES - self.fast.ri) % MAX_RANGES) as u64) << RANGE_SHIFT
    }

    /// The frame and range index of a cache entry.
    #[inline]
    fn unpack(&self, entry: u64) -> (u64, usize) {
        (
            entry & ((1 << RANGE_SHIFT) - 1),
            ((entry >> RANGE_SHIFT) as usize + self.fast.ri) % MAX_RANGES,
        )
    }

    #[inline]
    fn range(&self, i: usize) -> Range {
        self.ranges[i]
    }

    /// The range holding `frame` (outside its metadata) and its index.
    #[inline]
    fn range_of(&self, frame: u64) -> Option<(usize, Range)> {
        let i = if self.nranges == 1 {
            // (Most machines: one range, no search and no bounds check.)
            0
        } else {
            let ranges = &self.ranges[..self.nranges];
            let i = ranges.partition_point(|r| r.end <= frame);
            if i == ranges.len() {
                return None;
            }
            i
        };
        let r = self.ranges[i % MAX_RANGES];
        (frame >= r.start && frame < r.end).then_some((i, r))
    }

    #[inline]
    fn bit(&self, r: &Range, frame: u64) -> bool {
        // SAFETY: `frame` is in `r`, so its word is inside the range's allocation bitmap.
        unsafe { *r.alloc_word(frame) >> (frame % 64) & 1 == 1 }
    }

    fn set_bits(&mut self, r: &Range, first: u64, count: u64, value: bool) {
        let bitmap = r.index.meta.wrapping_add(HEADER_WORDS);
        if let Some((word, m0, m1)) = short_run(first - r.bits_from, count) {
            // SAFETY: the frames are inside the range, so the words (the second only when the
            // run reaches into it) are inside its bitmap.
            unsafe {
                let w = bitmap.add(word);
                *w = if value { *w | m0 } else { *w & !m0 };
                if m1 != 0 {
                    let w = w.add(1);
                    *w = if value { *w | m1 } else { *w & !m1 };
                }
            }
            return;
        }
        for (word, mask) in bit_words(first - r.bits_from, count) {
            // SAFETY: the frames are inside the range, so the words are inside its bitmap.
            unsafe {
                let w = bitmap.add(word);
                *w = if value { *w | mask } else { *w & !mask };
            }
        }
    }

    /// True if the bits of `count` frames from `first` (in `r`) are all `value`: a word at a time.
    fn all_bits(&self, r: &Range, first: u64, count: u64, value: bool) -> bool {
        let bitmap = r.index.meta.wrapping_add(HEADER_WORDS);
        if let Some((word, m0, m1)) = short_run(first - r.bits_from, count) {
            // SAFETY: as in `set_bits`.
            let (w0, w1) = unsafe {
                let w = bitmap.add(word);
                (*w, if m1 != 0 { *w.add(1) } else { 0 })
            };
            let (w0, w1) = if value { (!w0, !w1) } else { (w0, w1) };
            return w0 & m0 == 0 && w1 & m1 == 0;
        }
        bit_words(first - r.bits_from, count).all(|(word, mask)| {
            // SAFETY: the frames are inside the range, so the words are inside its bitmap.
            let w = unsafe { *bitmap.add(word) };
            (if value { !w } else { w }) & mask == 0
        })
    }

    /// Records a free block of order `k` at `f` in range `ri`.
    #[inline]
    fn mark_free(&mut self, ri: usize, r: &Range, f: u64, k: usize) {
        // (A free block already in the word: the range and the order are marked nonempty.)
        if !r.index.set(k, r.idx(f, k)) {
            self.nonempty[k] |= 1 << ri;
            self.orders |= 1 << k;
        }
    }

    /// Takes the free block of order `k` at `f` in range `ri` out of the index.
    #[inline]
    fn unmark_free(&mut self, ri: usize, r: &Range, f: u64, k: usize) {
        if r.index.clear(k, r.idx(f, k)) {
            self.emptied(ri, k);
        }
    }

    /// Range `ri` has no free block of order `k` any more.
    #[inline]
    fn emptied(&mut self, ri: usize, k: usize) {
        self.nonempty[k] &= !(1 << ri);
        if self.nonempty[k] == 0 {
            self.orders &= !(1 << k);
        }
    }

    /// Frees `count` frames from `first`, known to be allocated and in one range, into the buddy
    /// system: clears their bits, splits the run into aligned blocks and merges each.
    fn free_run_unchecked(&mut self, ri: usize, r: &Range, first: u64, count: u64) {
        self.fill(first, count, self.junk.on_free);
        self.set_bits(r, first, count, false);
        self.free += count;
        self.release(ri, r, first, count, true);
    }

    /// The common case of a free, made cheap: `[first, first + count)` (allocated) is the head
    /// of the aligned block of `count.next_power_of_two()` frames it was allocated from (or that
    /// whole block), and that block's tail is still free as the blocks allocation left it. Then
    /// the tail blocks leave the index and the whole block is freed at once (into its block
    /// cache if `use_blocks` and there is room), instead of the run's blocks being freed one by
    /// one and merged with the tail pieces. Returns `None`, changing nothing, if the case does
    /// not apply, else `Some` of the block's order if it went into a block cache.
    fn free_head_of_block(
        &mut self,
        ri: usize,
        r: &Range,
        first: u64,
        count: u64,
        use_blocks: bool,
    ) -> Option<Option<usize>> {
        let order = count.next_power_of_two().trailing_zeros() as usize;
        let block = 1u64 << order;
        if first % block != 0 || first + block > r.end || order > MAX_ORDER {
            return None;
        }
        // The tail's maximal aligned blocks (see `release`): all must head free blocks of their
        // order. (A tail frame in the cache or allocated fails this.) As `first` is aligned to
        // the block, they are the set bits of the tail's length, smallest first.
        let tail = block - count;
        let blocks = move || {
            let (mut f, mut bits) = (first + count, tail);
            core::iter::from_fn(move || {
                (bits != 0).then(|| {
                    let k = bits.trailing_zeros() as usize;
                    let b = (f, k);
                    f += 1 << k;
                    bits &= bits - 1;
                    b
                })
            })
        };
        if !blocks().all(|(f, k)| r.index.test(k, r.idx(f, k))) {
            return None;
        }
        for (f, k) in blocks() {
            if r.index.clear(k, r.idx(f, k)) {
                self.emptied(ri, k);
            }
        }
        self.fill(first, count, self.junk.on_free);
        self.set_bits(r, first, count, false);
        self.free += count;
        if use_blocks && (1..=BLOCK_ORDERS).contains(&order) && self.nblocks[order - 1] < BLOCKS {
            // Kept whole for the next request of its order: no merge now, no split then.
            let entry = self.pack(first, ri);
            let n = &mut self.nblocks[order - 1];
            self.blocks[order - 1][*n % BLOCKS] = entry;
            *n += 1;
            self.cached_orders |= 1 << order;
            Some(Some(order))
        } else {
            self.free_block(ri, r, first, order);
            Some(None)
        }
    }

    /// A block of `order` from its block cache (the most recently freed), if it has one.
    #[inline]
    fn pop_block(&mut self, order: usize) -> Option<(usize, Range, u64)> {
        if self.cached_orders >> order & 1 == 0 {
            return None;
        }
        // (A bit of `cached_orders` is an order in 1..=BLOCK_ORDERS.)
        let n = &mut self.nblocks[(order - 1) % BLOCK_ORDERS];
        *n -= 1;
        let at = *n % BLOCKS;
        if *n == 0 {
            self.cached_orders &= !(1 << order);
        }
        let (f, ri) = self.unpack(self.blocks[(order - 1) % BLOCK_ORDERS][at]);
        Some((ri, self.range(ri), f))
    }

    /// A cached block of an order above `order` (the smallest there is), split down to `order`
    /// with the upper halves put into the buddy system, or `None`.
    fn split_cached_block(&mut self, order: usize) -> Option<(usize, Range, u64)> {
        let above = self.cached_orders >> (order + 1);
        if above == 0 {
            return None;
        }
        let mut k = order + 1 + above.trailing_zeros() as usize;
        let (ri, r, frame) = self.pop_block(k)?;
        while k > order {
            k -= 1;
            // (The upper half's buddy is the lower half, taken: no merge to try.)
            self.mark_free(ri, &r, frame + (1 << k), k);
        }
        Some((ri, r, frame))
    }

    /// Whether flushing the caches could make a free buddy block of `order` frames. The buddy
    /// system's free blocks are merged, so after a failed search an all-free aligned block of
    /// `order` exists only around a cached frame or block: for orders up to [`BLOCK_ORDERS`]
    /// (a bitmap word or two) each cached item is checked; above, the answer is yes if anything
    /// is cached.
    fn flush_would_help(&self, order: usize) -> bool {
        if order > BLOCK_ORDERS {
            return self.any_cached();
        }
        let size = 1u64 << order;
        let around = |e: &u64| {
            let (f, ri) = self.unpack(*e);
            let r = &self.ranges[ri];
            let head = f & !(size - 1);
            head >= r.start && head + size <= r.end && self.all_bits(r, head, size, false)
        };
        self.cache[..self.cached].iter().any(around)
            || (1..order).any(|k| self.blocks[k - 1][..self.nblocks[k - 1]].iter().any(around))
    }

    /// True if a cache (single frames or blocks) holds anything.
    #[inline]
    fn any_cached(&self) -> bool {
        self.cached > 0 || self.cached_orders != 0
    }

    /// Puts the run `[first, first + count)`, whose allocation bits are already 0 and which is
    /// in no free block, into the buddy system as maximal aligned blocks, merging each with its
    /// free buddies if `merge`.
    #[inline]
    fn release(&mut self, ri: usize, r: &Range, first: u64, count: u64, merge: bool) {
        let mut f = first;
        let end = first + count;
        while f < end {
            let order = (f.trailing_zeros() as usize)
                .min(MAX_ORDER)
                .min((end - f).ilog2() as usize);
            if merge {
                self.free_block(ri, r, f, order);
            } else {
                self.mark_free(ri, r, f, order);
            }
            f += 1 << order;
        }
    }

    fn free_block(&mut self, ri: usize, r: &Range, mut frame: u64, mut order: usize) {
        while order < MAX_ORDER {
            let buddy = frame ^ (1 << order);
            if buddy < r.start
                || buddy + (1 << order) > r.end
                || !r.index.test(order, r.idx(buddy, order))
            {
                break;
            }
            self.unmark_free(ri, r, buddy, order);
            frame = frame.min(buddy);
            order += 1;
        }
        self.mark_free(ri, r, frame, order);
    }

    /// Takes a free block of exactly `order` frames out of the buddy system (splitting the
    /// lowest-addressed block of the smallest order that has one), or `None`.
    fn take_block(&mut self, order: usize) -> Option<(usize, Range, u64)> {
        let avail = self.orders >> order;
        if avail == 0 {
            return None;
        }
        let mut k = order + avail.trailing_zeros() as usize;
        let ri = self.nonempty[k].trailing_zeros() as usize;
        let r = self.range(ri);
        let idx = r.index.first(k).expect("nonempty order has a block");
        let frame = ((r.base >> k) + idx) << k;
        self.unmark_free(ri, &r, frame, k);
        // Split down to `order`, putting the upper halves back.
        while k > order {
            k -= 1;
            self.mark_free(ri, &r, frame + (1 << k), k);
        }
        Some((ri, r, frame))
    }

    /// Frames in the largest free buddy block (0 if none), not counting the cache: what
    /// [`allocate_contiguous`](Self::allocate_contiguous) can give without flushing it. O(1).
    #[cfg(feature = "kmalloc")]
    pub(crate) fn largest_block(&self) -> usize {
        match self.orders {
            0 => 0,
            o => 1 << (31 - o.leading_zeros()),
        }
    }

    /// Frames held in the single-frame cache.
    pub fn cached_frames(&self) -> usize {
        self.cached
    }

    /// Gives every cached frame and block back to the buddy system, where they merge with their
    /// free buddies. [`allocate_contiguous`](Self::allocate_contiguous) does this itself before
    /// it reports [`AllocError::OutOfMemory`].
    pub fn flush_cache(&mut self) {
        self.flush(self.cached);
        for k in 1..=BLOCK_ORDERS {
            while let Some((ri, r, f)) = self.pop_block(k) {
                self.free_block(ri, &r, f, k);
            }
        }
    }

    /// Gives the `n` oldest cached frames back to the buddy system.
    #[cold]
    #[inline(never)]
    fn flush(&mut self, n: usize) {
        for i in 0..n {
            let (f, ri) = self.unpack(self.cache[i]);
            let r = self.ranges[ri];
            self.free_block(ri, &r, f, 0);
        }
        self.cache.copy_within(n..self.cached, 0);
        self.cached -= n;
        self.free += n as u64;
    }

    /// Takes up to [`BATCH`] frames into the cache, in as few buddy blocks as possible.
    #[cold]
    #[inline(never)]
    fn refill(&mut self) {
        // (It caches frames from the buddy system, where `no_help_from` does not look.)
        self.forget_no_help();
        while self.cached < BATCH {
            let want = (BATCH - self.cached).ilog2() as usize;
            let smallest = self.orders.trailing_zeros() as usize;
            if smallest >= ORDERS {
                break;
            }
            let Some((ri, _, f)) = self.take_block(want.min(smallest)) else {
                break;
            };
            self.free -= 1 << want.min(smallest);
            // Highest first, so the lowest frame is handed out first.
            for i in (0..1u64 << want.min(smallest)).rev() {
                self.cache[self.cached] = self.pack(f + i, ri);
                self.cached += 1;
            }
        }
    }

    #[inline]
    fn fill(&self, first: u64, count: u64, byte: Option<u8>) {
        if let Some(b) = byte {
            self.fill_with(first, count, b);
        }
    }

    /// (Out of line: junk fill is a debugging aid, kept off the fast paths' registers.)
    #[cold]
    #[inline(never)]
    fn fill_with(&self, first: u64, count: u64, byte: u8) {
        // SAFETY: callers pass frames of a range that are the allocator's (being freed) or just
        // allocated to the caller: nobody else uses them.
        unsafe { core::ptr::write_bytes(self.frame_ptr(first), byte, count as usize * FRAME_SIZE) };
    }

    /// Allocates one frame.
    #[inline]
    pub fn allocate(&mut self) -> Result<Frame, AllocError> {
        let c = self.cached;
        if c <= self.fast_alloc_above {
            return self.allocate_slow().ok_or(AllocError::OutOfMemory);
        }
        // The fast path: no call, no fill, no range lookup. (`% CACHE_FRAMES` is free: `c - 1`
        // is below it.)
        let f = self.cache[(c - 1) % CACHE_FRAMES];
        if f >> RANGE_SHIFT != 0 {
            // A frame of another range than the fast one.
            return self.allocate_slow().ok_or(AllocError::OutOfMemory);
        }
        self.cached = c - 1;
        // SAFETY: a cached frame is a managed frame of its range, here the fast range, so its
        // bit is in that range's allocation bitmap, at word `f / 64` from `words`.
        unsafe { *self.fast.words.wrapping_add((f / 64) as usize) |= 1 << (f % 64) };
        Ok(Frame::from_managed(f))
    }

    /// [`allocate`](Self::allocate) when the cache is empty, its top frame is not of the fast
    /// range, or junk fill is on. (`None` is out of memory: an `Option` comes back in registers,
    /// a `Result` through memory.)
    #[cold]
    #[inline(never)]
    fn allocate_slow(&mut self) -> Option<Frame> {
        if self.cached == 0 {
            self.refill();
            if self.cached == 0 && self.any_cached() {
                // Only cached blocks are left: back into the buddy system with them.
                self.flush_cache();
                self.refill();
            }
            if self.cached == 0 {
                return None;
            }
        }
        self.cached -= 1;
        let (f, ri) = self.unpack(self.cache[self.cached]);
        let r = &self.ranges[ri];
        let (word, mask) = (r.alloc_word(f), 1 << (f % 64));
        // SAFETY: `alloc_bit` gives a word of a range's allocation bitmap.
        unsafe { *word |= mask };
        self.fill(f, 1, self.junk.on_alloc);
        Some(Frame::from_managed(f))
    }

    /// The range index of managed frame `f`, its allocation-bitmap word and its bit, or `None` if `f` is not
    /// managed.
    #[inline]
    fn alloc_bit(&self, f: u64) -> Option<(usize, *mut u64, u64)> {
        let (ri, r) = self.range_of(f)?;
        Some((ri, r.alloc_word(f), 1 << (f % 64)))
    }

    /// Allocates `count` contiguous frames whose first frame number is a multiple of
    /// `align_frames` (a power of two). O(log n): takes the smallest free buddy block of
    /// `max(count.next_power_of_two(), align_frames)` frames and returns its unused tail. A run is
    /// always found inside one such aligned block, so a free run that straddles block boundaries
    /// (see [`FrameStats::largest_free_run`]) may be longer than the largest run this can hand out.
    #[inline]
    pub fn allocate_contiguous(
        &mut self,
        count: usize,
        align_frames: usize,
    ) -> Result<Frame, AllocError> {
        if count == 1 && align_frames == 1 {
            return self.allocate();
        }
        self.allocate_run(count, align_frames, true)
    }

    /// [`allocate_contiguous`](Self::allocate_contiguous) straight from the buddy system, never
    /// through the caches (the page-source path, whose hint must stay exact).
    pub(crate) fn allocate_uncached(
        &mut self,
        count: usize,
        align_frames: usize,
    ) -> Result<Frame, AllocError> {
        self.allocate_run(count, align_frames, false)
    }

    /// A run, from the block cache of its order first if `use_blocks`.
    fn allocate_run(
        &mut self,
        count: usize,
        align_frames: usize,
        use_blocks: bool,
    ) -> Result<Frame, AllocError> {
        if count == 0 || !align_frames.is_power_of_two() {
            return Err(AllocError::InvalidRequest);
        }
        // (A count past the largest power of two is refused here, not wrapped to 0.)
        let need = count
            .checked_next_power_of_two()
            .ok_or(AllocError::InvalidRequest)?
            .max(align_frames);
        let order = need.trailing_zeros() as usize;
        if order > MAX_ORDER {
            return Err(AllocError::InvalidRequest);
        }
        // Out of memory at this order, known without a look: no block in the buddy system or a
        // cache, and flushing known not to help.
        if use_blocks
            && order >= self.no_help_from
            && (self.orders | self.cached_orders) >> order == 0
        {
            return Err(AllocError::OutOfMemory);
        }
        let popped = if use_blocks {
            self.pop_block(order)
        } else {
            None
        };
        let found = popped
            .or_else(|| self.take_block(order))
            .or_else(|| self.split_cached_block(order));
        let (ri, r, frame) = match found {
            Some(b) => b,
            // (The page-source path flushes first; a cache left anything only here.)
            None if !use_blocks && self.any_cached() => {
                self.flush_cache();
                self.take_block(order).ok_or(AllocError::OutOfMemory)?
            }
            None if use_blocks && order < self.no_help_from && self.flush_would_help(order) => {
                self.flush_cache();
                self.take_block(order).ok_or(AllocError::OutOfMemory)?
            }
            None => {
                if use_blocks && order < self.no_help_from {
                    // Every cached item is of a smaller order (an item of `order` or above
                    // would have been taken), and none lies in an all-free block of `order`,
                    // so none in one of a larger order either: `no_help_from` holds.
                    self.no_help_from = order;
                    self.set_fast_free();
                }
                return Err(AllocError::OutOfMemory);
            }
        };
        let count = count as u64;
        self.set_bits(&r, frame, count, true);
        self.free -= count;
        // Give back the tail (its bits are still 0). Without merging: its maximal aligned blocks
        // grow in order from left to right, so each is the right half of its buddy, which holds
        // allocated head frames or a smaller tail block, never a free block of its order. As
        // `frame` is aligned to the block, they are the set bits of the tail's length.
        let (mut f, mut bits) = (frame + count, (1u64 << order) - count);
        while bits != 0 {
            let k = bits.trailing_zeros() as usize;
            self.mark_free(ri, &r, f, k);
            f += 1 << k;
            bits &= bits - 1;
        }
        self.fill(frame, count, self.junk.on_alloc);
        Ok(Frame::from_managed(frame))
    }

    /// Frees one frame.
    ///
    /// # Safety
    /// Nobody uses the frame any more (the allocator may write into it).
    #[inline]
    pub unsafe fn free(&mut self, frame: Frame) -> Result<(), FreeError> {
        let f = frame.number();
        let c = self.cached;
        if c >= self.fast_free_below || f.wrapping_sub(self.fast.start) >= self.fast.frames {
            // SAFETY: forwarded.
            return unsafe { self.free_slow(frame) };
        }
        // The fast path, for a frame of the fast range: no call, no fill, no range lookup.
        let word = self.fast.words.wrapping_add((f / 64) as usize);
        let mask = 1 << (f % 64);
        // SAFETY: `f` is a frame of the fast range (checked above), so its bit is in that
        // range's allocation bitmap, at word `f / 64` from `words`.
        let w = unsafe { *word };
        if w & mask == 0 {
            return Err(FreeError::DoubleFree);
        }
        // SAFETY: as above.
        unsafe { *word = w & !mask };
        // (A frame of the fast range is cached as its bare number.)
        self.cache[c % CACHE_FRAMES] = f;
        self.cached = c + 1;
        Ok(())
    }

    /// [`free`](Self::free) when the cache is full, the frame is not of the fast range (or not
    /// managed), or junk fill is on.
    ///
    /// # Safety
    /// As for `free`.
    #[cold]
    #[inline(never)]
    unsafe fn free_slow(&mut self, frame: Frame) -> Result<(), FreeError> {
        let f = frame.number();
        let (ri, word, mask) = self.alloc_bit(f).ok_or(FreeError::NotManaged)?;
        // SAFETY: `alloc_bit` gives a word of a range's allocation bitmap.
        if unsafe { *word } & mask == 0 {
            return Err(FreeError::DoubleFree);
        }
        if self.cached == CACHE_FRAMES {
            // (The flush changes only the index, never an allocation bit.)
            self.flush(BATCH);
        }
        self.fill(f, 1, self.junk.on_free);
        // SAFETY: as above.
        unsafe { *word &= !mask };
        self.cache[self.cached] = self.pack(f, ri);
        self.cached += 1;
        let r = self.ranges[ri];
        self.note_freed(&r, f, 1, Some(0));
        Ok(())
    }

    /// Frees `count` frames from `first`: a run from [`allocate_contiguous`](Self::allocate_contiguous),
    /// part of one, or any run of allocated frames in one range. Refuses, changing nothing, if any
    /// frame is free already or not managed.
    ///
    /// # Safety
    /// Nobody uses the frames any more.
    #[inline]
    pub unsafe fn free_contiguous(&mut self, first: Frame, count: usize) -> Result<(), FreeError> {
        if count == 1 {
            // SAFETY: forwarded.
            return unsafe { self.free(first) };
        }
        // SAFETY: forwarded.
        unsafe { self.free_run(first, count, true) }
    }

    /// [`free_contiguous`](Self::free_contiguous) straight into the buddy system.
    ///
    /// # Safety
    /// As for `free_contiguous`.
    pub(crate) unsafe fn free_uncached(
        &mut self,
        first: Frame,
        count: usize,
    ) -> Result<(), FreeError> {
        // SAFETY: forwarded.
        unsafe { self.free_run(first, count, false) }
    }

    /// Frees a run; a whole block of a cached order goes to its block cache if `use_blocks`.
    ///
    /// # Safety
    /// As for `free_contiguous`.
    unsafe fn free_run(
        &mut self,
        first: Frame,
        count: usize,
        use_blocks: bool,
    ) -> Result<(), FreeError> {
        if count == 0 {
            return Err(FreeError::Empty);
        }
        let f = first.number();
        let count = count as u64;
        let (ri, r) = self.range_of(f).ok_or(FreeError::NotManaged)?;
        // (`f < r.end`, so this cannot overflow where `f + count` could.)
        if count > r.end - f {
            return Err(FreeError::NotManaged);
        }
        if !self.all_bits(&r, f, count, true) {
            return Err(FreeError::DoubleFree);
        }
        let cached = match self.free_head_of_block(ri, &r, f, count, use_blocks) {
            Some(cached) => cached,
            None => {
                self.free_run_unchecked(ri, &r, f, count);
                None
            }
        };
        self.note_freed(&r, f, count, cached);
        Ok(())
    }

    /// Frees the frame at physical address `addr`, which must be frame-aligned.
    ///
    /// # Safety
    /// Nobody uses the frame any more.
    pub unsafe fn free_addr(&mut self, addr: PhysAddr) -> Result<(), FreeError> {
        let frame = Frame::from_start(addr).map_err(|_| FreeError::Misaligned)?;
        // SAFETY: forwarded.
        unsafe { self.free(frame) }
    }

    /// True if `frame` is one the allocator hands out (not one of its bitmaps).
    pub fn contains(&self, frame: Frame) -> bool {
        self.range_of(frame.number()).is_some()
    }

    /// True if `frame` is managed and free (in the buddy system or the cache).
    pub fn is_free(&self, frame: Frame) -> bool {
        self.range_of(frame.number())
            .is_some_and(|(_, r)| !self.bit(&r, frame.number()))
    }

    /// Frames free now, in O(1) (the same figure as `stats().free`; [`stats`](Self::stats)
    /// also measures the largest free run, which walks the bitmaps).
    pub fn free_frames(&self) -> u64 {
        self.free + self.cached as u64
    }

    /// Statistics. `largest_free_run` scans the bitmaps: O(frames / 64).
    pub fn stats(&self) -> FrameStats {
        let mut largest = 0;
        for r in self.ranges[..self.nranges].iter() {
            let mut run = 0u64;
            let mut f = r.start;
            while f < r.end {
                // SAFETY: `f` is in the range, so its word is inside its bitmap.
                let word = unsafe { *r.alloc_word(f) };
                if f % 64 == 0 && word == 0 && f + 64 <= r.end {
                    run += 64;
                    f += 64;
                    largest = largest.max(run);
                    continue;
                }
                if !self.bit(r, f) {
                    run += 1;
                    largest = largest.max(run);
                } else {
                    run = 0;
                }
                f += 1;
            }
        }
        FrameStats {
            total: self.total,
            free: self.free_frames(),
            largest_free_run: largest,
            ranges: self.nranges,
            metadata_frames: self.metadata,
        }
    }

    /// Writes into `frame` bytes that look like a free-list node claiming it heads a free block
    /// of `order` linked to `next` and `prev`: what a caller's data (or an allocator keeping its
    /// lists in frames) may leave there. The allocator never reads frames; tests and fuzzing use
    /// this to show that.
    ///
    /// # Safety
    /// `frame` is allocated to the caller (its first 24 bytes are overwritten).
    #[doc(hidden)]
    pub unsafe fn forge_node(&self, frame: Frame, order: usize, next: u64, prev: u64) {
        let node = [next, prev, order as u64 | 0x6b61_6c6c << 32];
        // SAFETY: per the contract the frame's memory is the caller's to write; frames are
        // 4096-aligned, so aligned for u64.
        unsafe { (self.frame_ptr(frame.number()) as *mut [u64; 3]).write(node) };
    }

    /// Checks the index, the cache and the counts against the allocation bitmaps; panics on the
    /// first inconsistency. For tests and fuzzing: O(frames).
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        let mut listed = 0u64;
        let mut orders = 0u32;
        for (ri, r) in self.ranges[..self.nranges].iter().enumerate() {
            r.index.check();
            // Free blocks, in address order, must not overlap; collect coverage by counting.
            for k in 0..ORDERS {
                let blocks = ((r.end - 1) >> k) - (r.base >> k) + 1;
                let mut any = false;
                for idx in 0..blocks {
                    if !r.index.test(k, idx) {
                        continue;
                    }
                    any = true;
                    let f = ((r.base >> k) + idx) << k;
                    assert!(
                        f >= r.start && f + (1 << k) <= r.end,
                        "block {f} order {k} outside its range"
                    );
                    assert!(
                        self.all_bits(r, f, 1 << k, false),
                        "free block {f} order {k} has allocated frames"
                    );
                    if k < MAX_ORDER {
                        let b = f ^ (1 << k);
                        assert!(
                            !(b >= r.start
                                && b + (1 << k) <= r.end
                                && r.index.test(k, r.idx(b, k))),
                            "free buddies {f} and {b} of order {k} not merged"
                        );
                    }
                    // No smaller free block inside this one.
                    for j in 0..k {
                        for g in (f..f + (1 << k)).step_by(1 << j) {
                            assert!(
                                !r.index.test(j, r.idx(g, j)),
                                "block {g} order {j} inside block {f} order {k}"
                            );
                        }
                    }
                    listed += 1 << k;
                }
                assert_eq!(
                    any,
                    self.nonempty[k] >> ri & 1 == 1,
                    "range mask of order {k}"
                );
                if any {
                    orders |= 1 << k;
                }
            }
        }
        assert_eq!(orders, self.orders, "order mask");
        for (i, &e) in self.cache[..self.cached].iter().enumerate() {
            let (f, ri) = self.unpack(e);
            let (rj, r) = self.range_of(f).expect("cached frame managed");
            assert_eq!(ri, rj, "cached frame {f} with a wrong range index");
            assert!(!self.bit(&r, f), "cached frame {f} marked allocated");
            assert!(!self.cache[..i].contains(&e), "frame {f} cached twice");
            for k in 0..ORDERS {
                let head = f & !((1 << k) - 1);
                assert!(
                    head < r.start || head + (1 << k) > r.end || !r.index.test(k, r.idx(head, k)),
                    "cached frame {f} inside free block {head} order {k}"
                );
            }
        }
        listed += self.cached as u64;
        for k in 1..=BLOCK_ORDERS {
            let n = self.nblocks[k - 1];
            assert!(n <= BLOCKS, "block cache of order {k} overfull");
            assert_eq!(
                self.cached_orders >> k & 1 == 1,
                n > 0,
                "cached_orders bit {k}"
            );
            for (i, &e) in self.blocks[k - 1][..n].iter().enumerate() {
                let (f, ri) = self.unpack(e);
                let (rj, r) = self.range_of(f).expect("cached block managed");
                assert_eq!(ri, rj, "cached block {f} with a wrong range index");
                assert!(
                    f % (1 << k) == 0 && f + (1 << k) <= r.end,
                    "cached block {f} order {k} misaligned or past its range"
                );
                assert!(
                    self.all_bits(&r, f, 1 << k, false),
                    "cached block {f} order {k} has allocated frames"
                );
                // Disjoint from the index's free blocks of every order, ...
                for j in 0..ORDERS {
                    let heads = if j >= k {
                        f & !((1 << j) - 1)..(f & !((1 << j) - 1)) + 1
                    } else {
                        f..f + (1 << k)
                    };
                    for g in heads.step_by(1 << j) {
                        assert!(
                            g < r.start || g + (1 << j) > r.end || !r.index.test(j, r.idx(g, j)),
                            "cached block {f} order {k} overlaps free block {g} order {j}"
                        );
                    }
                }
                // ... from the cached frames, and from the other cached blocks.
                for &c in &self.cache[..self.cached] {
                    let (g, _) = self.unpack(c);
                    assert!(
                        g < f || g >= f + (1 << k),
                        "cached frame {g} in cached block {f}"
                    );
                }
                for j in k..=BLOCK_ORDERS {
                    let upto = if j == k { i } else { self.nblocks[j - 1] };
                    for &c in &self.blocks[j - 1][..upto] {
                        let (g, _) = self.unpack(c);
                        assert!(
                            g + (1 << j) <= f || f + (1 << k) <= g,
                            "cached blocks {f} order {k} and {g} order {j} overlap"
                        );
                    }
                }
                listed += 1 << k;
            }
        }
        assert_eq!(listed, self.free_frames(), "free count");
        // `no_help_from`: no cached item lies in an all-free block of the order it names.
        let m = self.no_help_from;
        if m != usize::MAX {
            assert_eq!(
                self.fast_free_below, 0,
                "fast frees while no_help_from is known"
            );
            let items = self.cache[..self.cached].iter().map(|&e| (e, 0)).chain(
                (1..=BLOCK_ORDERS).flat_map(|k| {
                    self.blocks[k - 1][..self.nblocks[k - 1]]
                        .iter()
                        .map(move |&e| (e, k))
                }),
            );
            for (e, j) in items {
                let (f, ri) = self.unpack(e);
                let r = self.ranges[ri];
                let l = m.max(j + 1);
                if l > ORDERS {
                    continue;
                }
                let head = f & !((1u64 << l) - 1);
                assert!(
                    !(head >= r.start
                        && head + (1 << l) <= r.end
                        && self.all_bits(&r, head, 1 << l, false)),
                    "no_help_from {m}, but cached item {f} (order {j}) \
                     lies in all-free block {head} order {l}"
                );
            }
        }
        let mut zero_bits = 0;
        for r in self.ranges[..self.nranges].iter() {
            zero_bits += (r.start..r.end).filter(|&f| !self.bit(r, f)).count() as u64;
        }
        assert_eq!(zero_bits, self.free_frames(), "bitmap free count");
    }
}

#[cfg(test)]
mod short_run_tests {
    use super::{bit_words, short_run};

    /// `short_run` names exactly the words and bits `bit_words` does, for every offset and
    /// length up to a word.
    #[test]
    fn short_runs_match_the_general_walk() {
        for first in 0..130u64 {
            for count in 1..=64u64 {
                let (word, m0, m1) = short_run(first, count).unwrap();
                let mut want: std::vec::Vec<(usize, u64)> = bit_words(first, count).collect();
                want.resize(2, (word + 1, 0));
                assert_eq!([(word, m0), (word + 1, m1)], want[..], "{first} {count}");
            }
        }
        assert_eq!(short_run(5, 0), None);
        assert_eq!(short_run(5, 65), None);
    }
}

#[cfg(test)]
mod layout_tests {
    use super::{Fast, FrameAllocator};
    use core::mem::{align_of, offset_of, size_of};

    /// What the single-frame fast paths read lies in the allocator's first cache line, and the
    /// allocator starts a line: an allocation or a free of a frame touches that line, a slot of
    /// the cache and a bitmap word, however cold the allocator has gone.
    #[test]
    fn fast_path_state_shares_one_cache_line() {
        assert_eq!(align_of::<FrameAllocator>(), 64);
        for end in [
            offset_of!(FrameAllocator, cached) + size_of::<usize>(),
            offset_of!(FrameAllocator, fast_alloc_above) + size_of::<usize>(),
            offset_of!(FrameAllocator, fast_free_below) + size_of::<usize>(),
            offset_of!(FrameAllocator, fast) + size_of::<Fast>(),
        ] {
            assert!(end <= 64, "fast-path field ends at byte {end}");
        }
    }
}
