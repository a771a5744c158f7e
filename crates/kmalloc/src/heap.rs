//! The bounded heap: allocation and free in O(1), over blocks with boundary tags
//! ([`block`]), a two-level segregated index with bitmaps (`index`)
//! and chunks from a [`PageSource`] (`chunks`); resizing is in
//! `realloc`, the invariant checker in `check`.
//!
//! # Allocation
//!
//! A request of at most 1016 bytes is first served from the small-block cache
//! (`cache`): freed blocks of its exact size kept aside, O(1). Otherwise:
//! A request of `n` bytes needs a block of `round_up(n + 8, 16)` (at least 32). The index gives
//! a free block: the head of the request's own class if it is big enough, else the head of the
//! smallest non-empty class above (every block there fits). The block is split: the request takes
//! its front, a remainder of at least 32 bytes becomes a free block in the index. If no class
//! has a fitting block, the cache is flushed into the index and the index asked again (so that
//! cached blocks never make the heap grow), and only then `morecore` adds a chunk. None of this
//! walks a list: a bitmap scan, a few header writes (and a flush, at most 63 x 32 frees).
//!
//! A request aligned above 16 (up to any power of two) looks for a block of `size + align + 32`
//! bytes the same way, then places the block at the first aligned payload at least 32 bytes in
//! (or at the start, if that is aligned) and frees the front remainder as its own block.
//!
//! # Free
//!
//! `deallocate` checks the block's tag (see [`block`]), then merges it with a free
//! block after it and one before it (found through the boundary tag), each taken out of its list
//! in O(1), and puts the result in the index. A block that then spans its chunk goes back to the
//! source (see `chunks`).
//!
//! # What the tag checks catch
//!
//! `deallocate`, `reallocate` and [`Heap::kmfree`] refuse every pointer whose header word is not
//! that of a used block at that address: a second free of any block (freed, cached, merged into
//! a neighbour or not) and pointers into the middle of blocks. The [`block`]
//! module lists exactly what is refused and what cannot be told from a live block (a second free
//! after a new block was handed out at the same address; a header word the program itself
//! stored in a payload; on 32-bit targets, any payload word that looks like a used header), and
//! the invariant that makes it so: a word that reads as a used header is only ever at the start
//! of a used block, even in pages the heap gives back.

use crate::block::{self, Block, FIRST, FREE, HDR, MAX_BLOCK, MIN_BLOCK, PREV_FREE, UNIT};
use crate::cache::Cache;
use crate::chunks::{self, Chunk, CHUNK_OVERHEAD, MAX_GROW_PAGES};
use crate::index::{self, Index};
use crate::{AllocError, FreeError, HeapStats, PageSource, PAGE_SIZE};
use core::alloc::Layout;
use core::ptr::{self, NonNull};

/// The bounded heap over a [`PageSource`]. See the crate documentation and the module's.
pub struct Heap<S: PageSource> {
    pub(crate) source: S,
    pub(crate) index: Index,
    /// The chunks held (doubly linked, newest first).
    pub(crate) chunks: *mut Chunk,
    /// The first block of the chunk kept as the one wholly free chunk, or null. Allocations
    /// do not clear it when they cut into that block (that would cost every allocation a
    /// compare): it is the spare only while its block is still free and spans the chunk, which
    /// [`Heap::chunk_emptied`] tells from the header when another chunk empties. It always names
    /// a chunk the heap holds.
    pub(crate) spare: Block,
    /// Freed small blocks waiting to be handed out again (see [`cache`](crate::cache)).
    pub(crate) cache: Cache,
    /// Bytes of used blocks, the cached ones included (the cache keeps no counter of its own;
    /// [`Heap::stats`] takes its bytes off).
    pub(crate) in_use: usize,
    pub(crate) pages: usize,
    pub(crate) nchunks: usize,
    /// Pages `morecore` asks for at least (grows geometrically up to `max_grow`).
    pub(crate) grow: usize,
    pub(crate) max_grow: usize,
    /// Blocks visited by searches: each list head or neighbour a request or free looks at.
    /// Tests read it to show that no operation walks.
    pub(crate) steps: usize,
}

// SAFETY: the raw pointers point into memory the heap owns exclusively (pages from its source);
// moving the heap to another thread moves that ownership with it. `S: Send` covers the source.
unsafe impl<S: PageSource + Send> Send for Heap<S> {}

impl<S: PageSource> core::fmt::Debug for Heap<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Heap")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// The block size serving `size` bytes of payload, or `None` if absurd.
#[inline(always)]
pub(crate) fn block_len(size: usize) -> Option<usize> {
    if size > MAX_BLOCK {
        return None;
    }
    Some(((size + HDR + UNIT - 1) & !(UNIT - 1)).max(MIN_BLOCK))
}

impl<S: PageSource> Heap<S> {
    /// An empty heap that will take pages from `source` as it needs them.
    pub const fn new(source: S) -> Self {
        Heap {
            source,
            index: Index::new(),
            chunks: ptr::null_mut(),
            spare: ptr::null_mut(),
            cache: Cache::new(),
            in_use: 0,
            pages: 0,
            nchunks: 0,
            grow: 1,
            max_grow: MAX_GROW_PAGES,
            steps: 0,
        }
    }

    /// Limits how many pages `morecore` takes at once for requests smaller than that (at least
    /// 1). The default grows the heap geometrically, up to 8192 pages (32 MiB) per chunk, which keeps
    /// chunk edges rare. A limit of 1 is xv6's `morecore`: a page at a time for small blocks,
    /// each page returned when it is wholly free (but for one spare), the most frugal with memory
    /// a kernel shares with user processes.
    pub fn set_growth_limit(&mut self, pages: usize) {
        self.max_grow = pages.clamp(1, MAX_GROW_PAGES);
        self.grow = self.grow.min(self.max_grow);
    }

    /// The page source.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The page source, mutably (for example to query or configure it). Taking pages from it
    /// directly is fine; giving it pages the heap holds is not (that needs `unsafe` anyway).
    pub fn source_mut(&mut self) -> &mut S {
        &mut self.source
    }

    /// Blocks the searches have looked at since the heap was made (list heads and neighbours):
    /// a bounded number per operation. Counted with the `stats` feature (and in the crate's
    /// tests); 0 otherwise.
    #[doc(hidden)]
    pub fn steps(&self) -> usize {
        self.steps
    }

    #[inline(always)]
    fn step(&mut self) {
        if cfg!(any(test, feature = "stats")) {
            self.steps += 1;
        }
    }

    /// Allocates a block for `layout`: any size, any power-of-two alignment.
    #[inline]
    pub fn allocate(&mut self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        let len = block_len(layout.size()).ok_or(AllocError)?;
        self.allocate_block(len, layout.align())
    }

    /// [`Heap::allocate`] with the block length known: a block of `len` bytes (from
    /// [`block_len`]) whose payload is aligned to `align` (a power of two). `reallocate` comes
    /// here directly, without building a `Layout` for the new size.
    #[inline(always)]
    pub(crate) fn allocate_block(
        &mut self,
        len: usize,
        align: usize,
    ) -> Result<NonNull<u8>, AllocError> {
        if align <= UNIT {
            // SAFETY: the cache holds blocks of this heap only.
            if let Some(h) = unsafe { self.cache.pop(len) } {
                // SAFETY: a used block again, of `len` bytes.
                return Ok(unsafe { NonNull::new_unchecked(block::payload(h)) });
            }
            if let Some(p) = self.allocate_indexed(len) {
                return Ok(p);
            }
            self.allocate_grown(len).ok_or(AllocError)
        } else {
            self.allocate_aligned(len, align)
        }
    }

    /// The common allocation: a block of `len` bytes split off the front of a free block of
    /// the index ([`Heap::take`] and [`Heap::use_block`] in one). When the remainder belongs to
    /// the class of the block it came from (a small block carved from a large one), it takes
    /// the block's place at the head of that list: no bitmap or count changes. `None` if the
    /// index has no fitting block (the caller then grows the heap).
    #[inline(always)]
    fn allocate_indexed(&mut self, len: usize) -> Option<NonNull<u8>> {
        let s = self.fit_slot(len)?;
        // SAFETY: `fit_slot` returned the slot of a non-empty list whose head fits `len`.
        Some(unsafe { self.carve_head(s, len) })
    }

    /// The slot of a list whose head is a free block of at least `len` bytes: the request's own
    /// class if its head is big enough, else the smallest non-empty class above (every block
    /// there fits). `None` if the index has no such block.
    #[inline(always)]
    pub(crate) fn fit_slot(&mut self, len: usize) -> Option<usize> {
        let s = index::slot_of(len);
        // SAFETY: a slot from `slot_of`.
        let h = unsafe { self.index.head_at(s) };
        self.step();
        // SAFETY: a head of the index is a free block.
        if !h.is_null() && unsafe { block::size(h) } >= len {
            return Some(s);
        }
        self.step();
        self.index.above(s)
    }

    /// Makes a used block of the first `len` bytes of the head of the list at slot `s`, which
    /// leaves the index; the remainder, if it can be a block, is indexed. Returns the payload.
    ///
    /// # Safety
    /// The list at slot `s` is non-empty and its head has at least `len` bytes.
    #[inline(always)]
    pub(crate) unsafe fn carve_head(&mut self, s: usize, len: usize) -> NonNull<u8> {
        // SAFETY: `b` is the head of the non-empty list at `s`, a free block of at least `len`
        // bytes; it and the block after it are the heap's.
        unsafe {
            let b = self.index.head_at(s);
            let total = block::size(b);
            let keep = block::flags(b) & FIRST;
            let rest = total - len;
            let used = if rest >= MIN_BLOCK {
                let r = block::offset(b, len);
                // The block after `b` already says its predecessor is free.
                block::set_footer(r, rest);
                let rs = index::slot_of(rest);
                if rs == s {
                    self.index.replace_head(s, b, r, rest);
                } else {
                    self.index.swap_head(s, r, rest, rs);
                }
                len
            } else {
                self.index.pop(s);
                (*block::offset(b, total)).size &= !PREV_FREE;
                total
            };
            block::set_used(b, used, keep);
            self.in_use += used;
            NonNull::new_unchecked(block::payload(b))
        }
    }

    /// [`Heap::allocate`] when the index has no fitting block: the index again after the
    /// small-block cache is flushed into it (if it holds any block), else a new chunk. Out of
    /// line: a full heap fails here on every request.
    #[inline(never)]
    fn allocate_grown(&mut self, len: usize) -> Option<NonNull<u8>> {
        if !self.cache.is_empty() {
            self.flush_cache();
            if let Some(p) = self.allocate_indexed(len) {
                return Some(p);
            }
        }
        let b = self.morecore(len)?;
        // SAFETY: `b` is a free block of at least `len` bytes on no list.
        Some(unsafe { self.use_block(b, len) })
    }

    /// Before the heap grows: a free block of at least `len` bytes (on no list) that the
    /// small-block cache, freed into the index, makes; `None` if the cache is empty or its
    /// blocks merge into none that fits.
    fn flushed_take(&mut self, len: usize) -> Option<Block> {
        if self.cache.is_empty() {
            return None;
        }
        self.flush_cache();
        self.take(len)
    }

    /// A free block of at least `len` bytes on no list: from the index, else from the index
    /// again after the small-block cache has been freed into it, else a new chunk.
    #[inline(always)]
    fn take_or_grow(&mut self, len: usize) -> Option<Block> {
        if let Some(b) = self.take(len) {
            return Some(b);
        }
        if let Some(b) = self.flushed_take(len) {
            return Some(b);
        }
        self.morecore(len)
    }

    /// Frees every block of the small-block cache into the index. Rare (the index has no block
    /// for a request, or the heap gives pages back): kept out of line, off the allocation
    /// path.
    #[cold]
    #[inline(never)]
    pub(crate) fn flush_cache(&mut self) {
        // SAFETY: the cache's blocks are used blocks of this heap (tagged used again by
        // pop_any), each freed once.
        while let Some(h) = unsafe { self.cache.pop_any() } {
            // SAFETY: as above.
            unsafe { self.release(h) };
        }
    }

    /// Frees used block `h`: into the small-block cache if it takes it, else merged and indexed.
    ///
    /// # Safety
    /// `h` is a used block of the heap.
    #[inline(always)]
    pub(crate) unsafe fn free_used(&mut self, h: Block) {
        // SAFETY: per the contract (the header word is read once, for the cache and the merge).
        unsafe {
            let w = (*h).size;
            if !self.cache.push(h, w) {
                self.release_word(h, w);
            }
        }
    }

    /// A free block of at least `len` bytes taken off the index, or `None`.
    #[inline(always)]
    pub(crate) fn take(&mut self, len: usize) -> Option<Block> {
        let s = self.fit_slot(len)?;
        // SAFETY: the list at `s` is non-empty.
        let h = unsafe { self.index.pop(s) };
        Some(h)
    }

    /// Makes the first `len` bytes of free block `b` (on no list) a used block, indexing the
    /// rest if it can be a block; returns its payload.
    ///
    /// # Safety
    /// `b` is a free block of at least `len` bytes, on no list.
    #[inline(always)]
    pub(crate) unsafe fn use_block(&mut self, b: Block, len: usize) -> NonNull<u8> {
        // SAFETY: `b` and the block after it are the heap's.
        unsafe {
            let total = block::size(b);
            let keep = block::flags(b) & (FIRST | PREV_FREE);
            let used = if total - len >= MIN_BLOCK {
                let rest = block::offset(b, len);
                // The block after `b` already says its predecessor is free.
                block::set_footer(rest, total - len);
                self.index.insert(rest, total - len, 0);
                len
            } else {
                (*block::offset(b, total)).size &= !PREV_FREE;
                total
            };
            block::set_used(b, used, keep);
            self.in_use += used;
            NonNull::new_unchecked(block::payload(b))
        }
    }

    /// [`Heap::allocate`] for an alignment above 16.
    fn allocate_aligned(&mut self, len: usize, align: usize) -> Result<NonNull<u8>, AllocError> {
        if align > MAX_BLOCK / 2 {
            return Err(AllocError);
        }
        let need = len + align + MIN_BLOCK;
        let b = self.take_or_grow(need).ok_or(AllocError)?;
        // SAFETY: `b` is a free block of at least `need` bytes on no list; the aligned block
        // and the front remainder lie inside it.
        unsafe {
            let payload = block::payload(b).addr();
            if payload % align == 0 {
                return Ok(self.use_block(b, len));
            }
            let total = block::size(b);
            let at = (payload + MIN_BLOCK).next_multiple_of(align) - HDR;
            let front = at - b.addr();
            let h = block::offset(b, front);
            // `h` starts as a free block after the front remainder, which is freed.
            (*h).size = (total - front) | FREE;
            let keep = block::flags(b) & FIRST;
            block::set_free_edges(b, front);
            self.index.insert(b, front, keep);
            Ok(self.use_block(h, len))
        }
    }

    /// Frees a block from [`Heap::allocate`] (or [`Heap::kmalloc`]).
    ///
    /// # Safety
    /// `ptr` came from this heap and was not freed since; `layout` is the one it was allocated
    /// with (the header holds the block's size, so only the contract uses it).
    ///
    /// # Panics
    /// If the block's header does not carry the tag of a used block: a double free, or a pointer
    /// the heap never handed out (see the module docs for what the tag cannot catch). Continuing
    /// would corrupt the heap.
    #[inline]
    pub unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        let _ = layout;
        let h = block::header_of(ptr.as_ptr());
        // SAFETY: per the contract `ptr` is a payload of this heap, so its header is readable
        // (a misaligned pointer is refused before any read).
        unsafe {
            if cfg!(feature = "tag-checks") {
                assert!(
                    ptr.as_ptr().addr() % UNIT == 0 && block::is_used(h),
                    "kmalloc: double free or invalid pointer {:p}",
                    ptr.as_ptr()
                );
            }
            self.free_used(h);
        }
    }

    /// Frees used block `h`: merges it with free neighbours and indexes the result (or gives
    /// its chunk back).
    ///
    /// # Safety
    /// `h` is a used block of the heap.
    #[inline]
    pub(crate) unsafe fn release(&mut self, h: Block) {
        // SAFETY: per the contract.
        unsafe { self.release_word(h, (*h).size) }
    }

    /// [`Heap::release`] with `h`'s header word `w` already read.
    ///
    /// # Safety
    /// `h` is a used block of the heap and `w` its header word.
    #[inline]
    unsafe fn release_word(&mut self, h: Block, w: usize) {
        // SAFETY: `h` is a used block; its neighbours are blocks (or the sentinel) of its chunk.
        unsafe {
            let len = w & block::SIZE_MASK;
            self.in_use -= len;
            let mut start = h;
            let mut total = len;
            let mut keep = w & FIRST;
            let next = block::offset(h, len);
            self.step();
            // A free neighbour leaves the index directly. (It may be the block the `spare`
            // field names, cut into since: the field is checked, not trusted, when a chunk
            // empties; a spare still whole spans its chunk and has no neighbours.)
            if block::flags(next) & FREE != 0 {
                let n = block::size(next);
                self.index.remove(next, n);
                total += n;
                // The block after `next` already says its predecessor is free: its header
                // (maybe a cold line far away) is not touched.
            } else {
                (*next).size |= PREV_FREE;
            }
            if w & PREV_FREE != 0 {
                let prev = block::prev_phys(h);
                self.step();
                let p = block::size(prev);
                self.index.remove(prev, p);
                // The merged block's header is now payload of `prev`: wipe it so that a second
                // free of it is caught.
                (*h).size = 0;
                start = prev;
                total += p;
                keep = block::flags(prev) & FIRST;
            }
            block::set_footer(start, total);
            if keep & FIRST != 0
                && total + CHUNK_OVERHEAD == (*chunks::chunk_of_first(start)).pages * PAGE_SIZE
            {
                self.chunk_emptied(start, total);
            } else {
                self.index.insert(start, total, keep);
            }
        }
    }

    /// The seed's kernel interface: a block of 1 to 4096 bytes, 16-byte aligned. Any other size,
    /// or no memory, gives `None` (never a panic).
    pub fn kmalloc(&mut self, nbytes: usize) -> Option<NonNull<u8>> {
        if nbytes == 0 || nbytes > PAGE_SIZE {
            return None;
        }
        self.allocate(Layout::from_size_align(nbytes, UNIT).ok()?)
            .ok()
    }

    /// Checked free: frees `ptr` if it is the start of a live block of this heap, and otherwise
    /// returns why not, changing nothing. Finds the chunk by a walk of the chunk list (O(chunks),
    /// O(log heap) with the default growth), then trusts the block's tag (see the module docs
    /// for what the tag cannot tell).
    pub fn kmfree(&mut self, ptr: NonNull<u8>) -> Result<(), FreeError> {
        let h = self.find_used(ptr)?;
        // SAFETY: `find_used` returned a used block of this heap.
        unsafe { self.free_used(h) };
        Ok(())
    }

    /// True if `ptr` is the start of a block this heap has handed out and not taken back.
    pub fn is_allocated(&self, ptr: NonNull<u8>) -> bool {
        self.find_used(ptr).is_ok()
    }

    /// The used block whose payload is `ptr`, or why there is none.
    fn find_used(&self, ptr: NonNull<u8>) -> Result<Block, FreeError> {
        let addr = ptr.as_ptr().addr();
        let c = self
            .chunk_containing(addr.wrapping_sub(HDR))
            .ok_or(FreeError::NotInHeap)?;
        if addr % UNIT != 0 {
            return Err(FreeError::Misaligned);
        }
        // The header: inside the chunk's blocks, derived from the chunk's pointer.
        let h: Block = chunks::first(c)
            .cast::<u8>()
            .wrapping_add(addr - HDR - chunks::first(c).addr())
            .cast();
        // SAFETY: `h` lies within the chunk's blocks, memory the heap holds; any word there
        // are readable.
        unsafe {
            if block::is_used(h) {
                let end = chunks::sentinel(c).addr();
                let len = block::size(h);
                if len >= MIN_BLOCK && len <= end - h.addr() {
                    return Ok(h);
                }
                return Err(FreeError::NotABlockStart);
            }
            if block::is_cached(h) || self.is_free_block(h, c) {
                Err(FreeError::DoubleFree)
            } else {
                Err(FreeError::NotABlockStart)
            }
        }
    }

    /// True if `h` (inside chunk `c`'s blocks) is the header of an indexed free block: its
    /// flags, footer and list links agree.
    ///
    /// # Safety
    /// `h` lies within chunk `c`'s blocks.
    unsafe fn is_free_block(&self, h: Block, c: *mut Chunk) -> bool {
        // SAFETY: every word read lies within a chunk's blocks (bounds checked before the
        // read): `h`'s header, footer and links, and the next link of a header-aligned `prev`
        // below the sentinel (a header-aligned address below the sentinel is at least 16 bytes
        // below it, so its next link is below the sentinel too).
        unsafe {
            if block::flags(h) & FREE == 0 {
                return false;
            }
            let len = block::size(h);
            if len < MIN_BLOCK || len % UNIT != 0 || len > chunks::sentinel(c).addr() - h.addr() {
                return false;
            }
            if *block::footer(h, len) != len {
                return false;
            }
            let prev = Index::prev(h);
            if prev.is_null() {
                let (fl, sl) = index::class_of(len);
                return self.index.head(fl, sl) == h;
            }
            // `h` may be a word inside a used block's payload that only looks like a free
            // header (kmfree of a wild pointer), so `prev` may be any value: follow it only if
            // it is where a header can be, a header's alignment inside a chunk's blocks, whose
            // link words then lie inside the chunk too. Read it through the chunk's pointer.
            if prev.addr().wrapping_add(HDR) % UNIT != 0 {
                return false;
            }
            let Some(pc) = self.chunk_containing(prev.addr()) else {
                return false;
            };
            let p: Block = chunks::first(pc)
                .cast::<u8>()
                .wrapping_add(prev.addr() - chunks::first(pc).addr())
                .cast();
            Index::next(p) == h
        }
    }

    /// Bytes in free blocks: everything held that is neither in use nor chunk overhead.
    fn free_bytes(&self) -> usize {
        self.pages * PAGE_SIZE - self.nchunks * CHUNK_OVERHEAD - self.bytes_in_use()
    }

    /// Bytes of used blocks, not counting those waiting in the cache.
    fn bytes_in_use(&self) -> usize {
        self.in_use - self.cache.bytes()
    }

    /// Current statistics, in O(1). `largest_free_block` is the payload of the head of the
    /// highest non-empty class: a request of that size is served without asking the source, and
    /// no free block is more than 1/32 larger.
    pub fn stats(&self) -> HeapStats {
        let largest = match self.index.highest() {
            // SAFETY: the head of a non-empty class is a free block.
            Some((fl, sl)) => unsafe { block::size(self.index.head(fl, sl)) - HDR },
            None => 0,
        };
        HeapStats {
            bytes_in_use: self.bytes_in_use(),
            bytes_free: self.free_bytes(),
            pages_held: self.pages,
            chunks: self.nchunks,
            largest_free_block: largest,
            free_blocks: self.index.count,
            overhead_bytes: self.nchunks * CHUNK_OVERHEAD,
        }
    }
}

impl<S: PageSource> crate::RawHeap for Heap<S> {
    #[inline]
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        Heap::allocate(self, layout)
    }

    #[inline]
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller's promise.
        unsafe { Heap::deallocate(self, ptr, layout) }
    }

    #[inline]
    unsafe fn reallocate(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<NonNull<u8>, AllocError> {
        // SAFETY: the caller's promise.
        unsafe { Heap::reallocate(self, ptr, old, new_size) }
    }

    fn kmalloc(&mut self, nbytes: usize) -> Option<NonNull<u8>> {
        Heap::kmalloc(self, nbytes)
    }

    fn kmfree(&mut self, ptr: NonNull<u8>) -> Result<(), FreeError> {
        Heap::kmfree(self, ptr)
    }

    fn stats(&self) -> HeapStats {
        Heap::stats(self)
    }

    fn release_free_pages(&mut self) -> usize {
        Heap::release_free_pages(self)
    }

    fn check(&self) {
        self.check_invariants()
    }
}
