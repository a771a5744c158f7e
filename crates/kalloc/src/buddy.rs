//! The frame allocator: a binary buddy system whose free lists live in the free frames, with a
//! per-frame bitmap for catching bad frees.
//!
//! Each managed range keeps, in its own first frames, a bitmap with one bit per frame (1 =
//! allocated or reserved). Free blocks of 2^k frames, aligned to 2^k frame numbers, sit on
//! per-order doubly linked lists; the links and the block's order are written into the block's
//! first frame, reached through the direct map (`phys + phys_offset`). Freeing a block merges it
//! with its buddy while the buddy is a free block of the same order, within the same range.
//!
//! Why the buddy's order can be trusted: a block being freed is allocated, so if its buddy's first
//! frame is free, that frame is the head of a free block no larger than the buddy (a larger one
//! would contain the block being freed), and heads carry their order. This needs a frame's bit to
//! turn free only when the block holding it goes on a list: a run is freed one aligned block at a
//! time, each marked free just before it is listed. The node of any other frame is never read, so
//! what the frames held before (a caller's data, an earlier allocator's lists) cannot pass for a
//! free block.

use crate::addr::{Frame, PhysAddr};
use crate::FRAME_SIZE;

/// Largest block: 2^MAX_ORDER frames (1 GiB).
pub const MAX_ORDER: usize = 18;
const ORDERS: usize = MAX_ORDER + 1;
/// Most ranges one allocator can manage.
pub const MAX_RANGES: usize = 64;
const NONE: u64 = u64::MAX;
const NODE_MAGIC: u32 = 0x6b61_6c6c;

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
    /// First usable frame number (after the bitmap).
    start: u64,
    /// One past the last frame number.
    end: u64,
    /// First frame number of the range as given (the bitmap's).
    meta: u64,
}

#[repr(C)]
struct FreeNode {
    next: u64,
    prev: u64,
    order: u32,
    magic: u32,
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
pub struct FrameAllocator {
    phys_offset: usize,
    ranges: [Range; MAX_RANGES],
    nranges: usize,
    heads: [u64; ORDERS],
    free: u64,
    total: u64,
    metadata: u64,
    junk: Junk,
}

// SAFETY: the allocator owns the memory of its ranges (the `add_range` contract); moving it to
// another thread moves that ownership.
unsafe impl Send for FrameAllocator {}

impl core::fmt::Debug for FrameAllocator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FrameAllocator")
            .field("phys_offset", &format_args!("{:#x}", self.phys_offset))
            .field("ranges", &&self.ranges[..self.nranges])
            .field("free", &self.free)
            .field("total", &self.total)
            .finish()
    }
}

impl FrameAllocator {
    /// An allocator with no memory yet. Physical address `p` is reachable at virtual address
    /// `p + phys_offset` (a direct map; 0 for identity mapping).
    pub const fn new(phys_offset: usize) -> FrameAllocator {
        FrameAllocator {
            phys_offset,
            ranges: [Range {
                start: 0,
                end: 0,
                meta: 0,
            }; MAX_RANGES],
            nranges: 0,
            heads: [NONE; ORDERS],
            free: 0,
            total: 0,
            metadata: 0,
            junk: Junk {
                on_free: None,
                on_alloc: None,
            },
        }
    }

    /// Sets the junk fill; off by default.
    pub fn set_junk(&mut self, junk: Junk) {
        self.junk = junk;
    }

    /// The virtual address through which the allocator reaches `addr`.
    pub fn phys_to_virt(&self, addr: PhysAddr) -> *mut u8 {
        (addr.as_u64() as usize).wrapping_add(self.phys_offset) as *mut u8
    }

    /// The physical address of a direct-map pointer.
    pub fn virt_to_phys(&self, ptr: *const u8) -> PhysAddr {
        PhysAddr::new((ptr as usize).wrapping_sub(self.phys_offset) as u64)
    }

    /// Hands the frames wholly inside `[start, end)` to the allocator. Partial frames at the edges
    /// are skipped. The allocator keeps its bitmap for the range in the range's first frames.
    /// The initial frames are not junk-filled.
    ///
    /// # Safety
    /// The memory is RAM that nobody else uses, now or later (until the allocator hands it out),
    /// reachable and writable at `phys + phys_offset`.
    pub unsafe fn add_range(&mut self, start: PhysAddr, end: PhysAddr) -> Result<(), RangeError> {
        let first = start.align_up(FRAME_SIZE as u64).as_u64() / FRAME_SIZE as u64;
        let last = end.align_down(FRAME_SIZE as u64).as_u64() / FRAME_SIZE as u64;
        if last <= first {
            return Err(RangeError::Empty);
        }
        let frames = last - first;
        let words = frames.div_ceil(64);
        let meta = (words * 8).div_ceil(FRAME_SIZE as u64);
        if meta >= frames {
            return Err(RangeError::TooSmall);
        }
        if self.ranges[..self.nranges]
            .iter()
            .any(|r| r.meta < last && first < r.end)
        {
            return Err(RangeError::Overlap);
        }
        if self.nranges == MAX_RANGES {
            return Err(RangeError::TooManyRanges);
        }
        let r = Range {
            start: first + meta,
            end: last,
            meta: first,
        };
        let at = self.ranges[..self.nranges].partition_point(|x| x.meta < first);
        self.ranges.copy_within(at..self.nranges, at + 1);
        self.ranges[at] = r;
        self.nranges += 1;
        // Every bit 1 (allocated), including the tail bits past the range.
        let bitmap = self.bitmap(&r);
        // SAFETY: the bitmap frames are ours by the contract; `words` words fit in `meta` frames.
        unsafe { core::ptr::write_bytes(bitmap, 0xff, words as usize) };
        self.total += r.end - r.start;
        self.metadata += meta;
        let saved = self.junk.on_free.take();
        self.free_run_unchecked(r.start, r.end - r.start);
        self.junk.on_free = saved;
        Ok(())
    }

    fn bitmap(&self, r: &Range) -> *mut u64 {
        self.phys_to_virt(PhysAddr::new(r.meta * FRAME_SIZE as u64)) as *mut u64
    }

    fn range_of(&self, frame: u64) -> Option<Range> {
        let i = self.ranges[..self.nranges].partition_point(|r| r.end <= frame);
        let r = *self.ranges[..self.nranges].get(i)?;
        (frame >= r.start && frame < r.end).then_some(r)
    }

    fn bit(&self, r: &Range, frame: u64) -> bool {
        let idx = frame - r.start;
        // SAFETY: `frame` is in `r`, so its word is inside the range's bitmap.
        unsafe { *self.bitmap(r).add((idx / 64) as usize) >> (idx % 64) & 1 == 1 }
    }

    fn set_bits(&mut self, r: &Range, first: u64, count: u64, value: bool) {
        let bitmap = self.bitmap(r);
        for (word, mask) in bit_words(first - r.start, count) {
            // SAFETY: indices are inside the range, so the word is inside its bitmap.
            unsafe {
                let w = bitmap.add(word);
                *w = if value { *w | mask } else { *w & !mask };
            }
        }
    }

    /// True if the bits of `count` frames from `first` (in `r`) are all `value`: a word at a time.
    fn all_bits(&self, r: &Range, first: u64, count: u64, value: bool) -> bool {
        let bitmap = self.bitmap(r);
        bit_words(first - r.start, count).all(|(word, mask)| {
            // SAFETY: indices are inside the range, so the word is inside its bitmap.
            let w = unsafe { *bitmap.add(word) };
            (if value { !w } else { w }) & mask == 0
        })
    }

    fn node(&self, frame: u64) -> *mut FreeNode {
        self.phys_to_virt(PhysAddr::new(frame * FRAME_SIZE as u64)) as *mut FreeNode
    }

    fn push(&mut self, frame: u64, order: usize) {
        let n = self.node(frame);
        let head = self.heads[order];
        // SAFETY: `frame` heads a free block the allocator owns; so does `head` if any.
        unsafe {
            n.write(FreeNode {
                next: head,
                prev: NONE,
                order: order as u32,
                magic: NODE_MAGIC,
            });
            if head != NONE {
                (*self.node(head)).prev = frame;
            }
        }
        self.heads[order] = frame;
    }

    fn remove(&mut self, frame: u64, order: usize) {
        let n = self.node(frame);
        // SAFETY: `frame` heads a free block on list `order`; its neighbours too.
        unsafe {
            let (next, prev) = ((*n).next, (*n).prev);
            if prev == NONE {
                self.heads[order] = next;
            } else {
                (*self.node(prev)).next = next;
            }
            if next != NONE {
                (*self.node(next)).prev = prev;
            }
            (*n).magic = 0;
        }
    }

    fn is_free_head(&self, r: &Range, frame: u64, order: usize) -> bool {
        if frame < r.start || frame + (1 << order) > r.end || self.bit(r, frame) {
            return false;
        }
        // SAFETY: a free frame of the range; see the module docs for why its node is meaningful.
        unsafe {
            let n = self.node(frame);
            (*n).magic == NODE_MAGIC && (*n).order as usize == order
        }
    }

    /// Frees `count` frames from `first`, known to be allocated and in one range: splits the run
    /// into aligned blocks and merges each with its buddies.
    fn free_run_unchecked(&mut self, first: u64, count: u64) {
        let r = self.range_of(first).expect("run in a managed range");
        if let Some(b) = self.junk.on_free {
            // SAFETY: the frames are the allocator's again (callers checked they were allocated).
            unsafe {
                core::ptr::write_bytes(
                    self.node(first) as *mut u8,
                    b,
                    (count as usize) * FRAME_SIZE,
                )
            };
        }
        self.free += count;
        let mut f = first;
        let end = first + count;
        while f < end {
            let mut order = (f.trailing_zeros() as usize).min(MAX_ORDER);
            while f + (1 << order) > end {
                order -= 1;
            }
            // One block at a time: the rest of the run stays marked allocated until its turn, so
            // a block's buddy that lies further on in the run is not taken for a free head (its
            // first frame holds whatever was written there, perhaps a forged or stale node).
            self.set_bits(&r, f, 1 << order, false);
            self.free_block(&r, f, order);
            f += 1 << order;
        }
    }

    fn free_block(&mut self, r: &Range, mut frame: u64, mut order: usize) {
        while order < MAX_ORDER {
            let buddy = frame ^ (1 << order);
            if !self.is_free_head(r, buddy, order) {
                break;
            }
            self.remove(buddy, order);
            frame = frame.min(buddy);
            order += 1;
        }
        self.push(frame, order);
    }

    /// Frames in the largest free buddy block (0 if none): [`allocate_contiguous`] of `count`
    /// frames at alignment `align_frames` succeeds exactly when
    /// `max(count.next_power_of_two(), align_frames)` is at most this. O(orders).
    ///
    /// [`allocate_contiguous`]: Self::allocate_contiguous
    pub(crate) fn largest_block(&self) -> usize {
        match self.heads.iter().rposition(|&h| h != NONE) {
            Some(order) => 1 << order,
            None => 0,
        }
    }

    /// Allocates one frame.
    pub fn allocate(&mut self) -> Result<Frame, AllocError> {
        self.allocate_contiguous(1, 1)
    }

    /// Allocates `count` contiguous frames whose first frame number is a multiple of
    /// `align_frames` (a power of two). O(log n): takes the smallest free buddy block of
    /// `max(count.next_power_of_two(), align_frames)` frames and returns its unused tail. A run is
    /// always found inside one such aligned block, so a free run that straddles block boundaries
    /// (see [`FrameStats::largest_free_run`]) may be longer than the largest run this can hand out.
    pub fn allocate_contiguous(
        &mut self,
        count: usize,
        align_frames: usize,
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
        let Some(mut k) = (order..ORDERS).find(|&k| self.heads[k] != NONE) else {
            return Err(AllocError::OutOfMemory);
        };
        let frame = self.heads[k];
        self.remove(frame, k);
        let r = self.range_of(frame).expect("free block in a managed range");
        // Split down to `order`, putting the upper halves back.
        while k > order {
            k -= 1;
            self.push(frame + (1 << k), k);
        }
        self.set_bits(&r, frame, 1 << order, true);
        self.free -= 1 << order;
        let count = count as u64;
        let block = 1u64 << order;
        if count < block {
            // Give back the tail: allocated bits set, so mark it free through the normal path.
            let saved = self.junk.on_free.take();
            self.free_run_unchecked(frame + count, block - count);
            self.junk.on_free = saved;
        }
        if let Some(b) = self.junk.on_alloc {
            // SAFETY: the frames were just allocated to the caller and are ours until returned.
            unsafe {
                core::ptr::write_bytes(self.node(frame) as *mut u8, b, count as usize * FRAME_SIZE)
            };
        }
        Ok(Frame::from_number(frame).expect("managed frame"))
    }

    /// Frees one frame.
    ///
    /// # Safety
    /// Nobody uses the frame any more (the allocator will write into it).
    pub unsafe fn free(&mut self, frame: Frame) -> Result<(), FreeError> {
        // SAFETY: forwarded.
        unsafe { self.free_contiguous(frame, 1) }
    }

    /// Frees `count` frames from `first`: a run from [`allocate_contiguous`](Self::allocate_contiguous),
    /// part of one, or any run of allocated frames in one range. Refuses, changing nothing, if any
    /// frame is free already or not managed.
    ///
    /// # Safety
    /// Nobody uses the frames any more.
    pub unsafe fn free_contiguous(&mut self, first: Frame, count: usize) -> Result<(), FreeError> {
        if count == 0 {
            return Err(FreeError::Empty);
        }
        let f = first.number();
        let count = count as u64;
        let r = self.range_of(f).ok_or(FreeError::NotManaged)?;
        // (`f < r.end`, so this cannot overflow where `f + count` could.)
        if count > r.end - f {
            return Err(FreeError::NotManaged);
        }
        if !self.all_bits(&r, f, count, true) {
            return Err(FreeError::DoubleFree);
        }
        self.free_run_unchecked(f, count);
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

    /// True if `frame` is managed and free.
    pub fn is_free(&self, frame: Frame) -> bool {
        self.range_of(frame.number())
            .is_some_and(|r| !self.bit(&r, frame.number()))
    }

    /// Statistics. `largest_free_run` scans the bitmaps: O(frames / 64).
    pub fn stats(&self) -> FrameStats {
        let mut largest = 0;
        for r in &self.ranges[..self.nranges] {
            let mut run = 0u64;
            let mut f = r.start;
            while f < r.end {
                let idx = f - r.start;
                // SAFETY: index inside the range's bitmap.
                let word = unsafe { *self.bitmap(r).add((idx / 64) as usize) };
                if idx % 64 == 0 && word == 0 && f + 64 <= r.end {
                    run += 64;
                    f += 64;
                    largest = largest.max(run);
                    continue;
                }
                if word >> (idx % 64) & 1 == 0 {
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
            free: self.free,
            largest_free_run: largest,
            ranges: self.nranges,
            metadata_frames: self.metadata,
        }
    }

    /// Writes into `frame` a node that claims it heads a free block of `order` with links `next`
    /// and `prev`: what a caller's data (or an earlier allocator's lists) may look like. For tests
    /// and fuzzing, which check that such data is never trusted.
    ///
    /// # Safety
    /// `frame` is allocated to the caller (its first 24 bytes are overwritten).
    #[doc(hidden)]
    pub unsafe fn forge_node(&self, frame: Frame, order: usize, next: u64, prev: u64) {
        // SAFETY: per the contract the frame's memory is the caller's to write.
        unsafe {
            self.node(frame.number()).write(FreeNode {
                next,
                prev,
                order: order as u32,
                magic: NODE_MAGIC,
            })
        };
    }

    /// Checks the free lists against the bitmaps; panics on the first inconsistency. For tests and
    /// fuzzing: O(frames).
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        let mut listed = 0u64;
        for order in 0..ORDERS {
            let mut f = self.heads[order];
            let mut prev = NONE;
            while f != NONE {
                let r = self.range_of(f).expect("listed block in a range");
                assert_eq!(
                    f % (1 << order),
                    0,
                    "block {f} misaligned for order {order}"
                );
                assert!(
                    f + (1 << order) <= r.end,
                    "block {f} order {order} overruns its range"
                );
                assert!(
                    self.all_bits(&r, f, 1 << order, false),
                    "listed block {f} has allocated frames"
                );
                // SAFETY: a listed free block's node.
                let n = unsafe { &*self.node(f) };
                assert_eq!(n.magic, NODE_MAGIC);
                assert_eq!(n.order as usize, order);
                assert_eq!(n.prev, prev);
                listed += 1 << order;
                assert!(
                    listed <= self.free,
                    "free lists longer than the free count (a cycle?)"
                );
                prev = f;
                f = n.next;
            }
        }
        assert_eq!(listed, self.free, "free count");
        let mut zero_bits = 0;
        for r in &self.ranges[..self.nranges] {
            zero_bits += (r.start..r.end).filter(|&f| !self.bit(r, f)).count() as u64;
        }
        assert_eq!(zero_bits, self.free, "bitmap free count");
    }
}
