//! Chunks: the runs of pages the bounded heap takes from its [`PageSource`] (`morecore`) and
//! gives back when they are wholly free.
//!
//! ```text
//! chunk: [ Chunk record (24 B) | block | block | ... | block | sentinel (8 B) ]
//!                                ^ FIRST                        size 0, SENTINEL
//! ```
//!
//! The record links the chunk into the heap's list of chunks (doubly linked, newest first) so
//! that one can leave it in O(1); the sentinel ends the chunk so that no block merges past it.
//! A new chunk is one free block; blocks never span chunks.
//!
//! `morecore` grows the heap geometrically: it asks for at least as many pages as the heap
//! holds (a power of two, at most the growth limit, 8192 pages by default), so a heap of n pages
//! is O(log n) chunks and few chunk edges cut the free space. When the source refuses, it halves
//! the request down to what the allocation needs.
//!
//! A chunk whose blocks all merge into one free block goes back to the source at once, unless
//! it is the only wholly free chunk (the *spare*, kept so that a heap that grows and shrinks
//! around one chunk boundary does not call the source on every operation).
//! [`Heap::release_free_pages`] gives the spare back too; it and the checked free
//! ([`Heap::kmfree`], which must learn whether a pointer is in the heap at all) are the only
//! operations that walk the chunk list.

use crate::block::{self, Block, FIRST, FREE, HDR, SENTINEL};
use crate::heap::Heap;
use crate::{PageSource, PAGE_SIZE};
use core::ptr::{self, NonNull};

/// The record at the start of each chunk.
#[repr(C)]
pub(crate) struct Chunk {
    pub next: *mut Chunk,
    pub prev: *mut Chunk,
    pub pages: usize,
}

/// Bytes before a chunk's first block: the record, so that the first payload is 16-aligned.
pub(crate) const CHUNK_REC: usize = 24;
/// Bytes of a chunk that are no block's: the record and the sentinel.
pub(crate) const CHUNK_OVERHEAD: usize = CHUNK_REC + HDR;
const _: () = assert!(core::mem::size_of::<Chunk>() <= CHUNK_REC);
const _: () = assert!((CHUNK_REC + HDR) % block::UNIT == 0);

/// The most pages `morecore` takes for a request that needs fewer (32 MiB). Blocks never span
/// chunks, so each chunk edge leaves a piece too small for some large request: with chunks of
/// at most 1 MiB, talc's heap-efficiency benchmark (128 MiB, blocks up to 100 KB) ended
/// 0.3 % lower, with 16 MiB 0.02 % lower. A heap reaches this size only after holding as many
/// pages already.
pub(crate) const MAX_GROW_PAGES: usize = 8192;

/// The first block of chunk `c`.
#[inline]
pub(crate) fn first(c: *mut Chunk) -> Block {
    c.cast::<u8>().wrapping_add(CHUNK_REC).cast()
}

/// The sentinel of chunk `c`.
///
/// # Safety
/// `c` is a chunk of the heap.
#[inline]
pub(crate) unsafe fn sentinel(c: *mut Chunk) -> Block {
    // SAFETY: per the contract the record is valid.
    let pages = unsafe { (*c).pages };
    c.cast::<u8>().wrapping_add(pages * PAGE_SIZE - HDR).cast()
}

/// The chunk whose first block is `b`.
#[inline]
pub(crate) fn chunk_of_first(b: Block) -> *mut Chunk {
    b.cast::<u8>().wrapping_sub(CHUNK_REC).cast()
}

impl<S: PageSource> Heap<S> {
    /// Takes a new chunk able to hold a block of `need` bytes and returns its one free block,
    /// on no list. `None` if the source has no such run.
    ///
    /// The refusal the source's hint foretells is decided here, inline; the rest is out of line.
    /// (A full heap comes here on every failed request: it then pays for the hint, not for
    /// the frame of the whole function.)
    #[inline(always)]
    pub(crate) fn morecore(&mut self, need: usize) -> Option<Block> {
        let min = need.checked_add(CHUNK_OVERHEAD)?.div_ceil(PAGE_SIZE);
        let hint = self.source.pages_available_hint();
        if hint.is_some_and(|hint| hint < min) {
            return None;
        }
        self.morecore_pages(min, hint.unwrap_or(usize::MAX))
    }

    /// [`Heap::morecore`] once the source's hint (`hint`, or `usize::MAX` without one) allows
    /// at least `min` pages.
    #[inline(never)]
    fn morecore_pages(&mut self, min: usize, hint: usize) -> Option<Block> {
        let mut pages = min.max(self.grow).min(hint);
        let mut refused = false;
        let base = loop {
            if let Some(p) = self.source.alloc_pages(pages, PAGE_SIZE) {
                break p;
            }
            if pages == min {
                return None;
            }
            // Ask for less, and start from there next time.
            refused = true;
            pages = (pages / 2).max(min);
            self.grow = pages.next_power_of_two().min(self.max_grow) / 2;
            self.grow = self.grow.max(1);
        };
        let c: *mut Chunk = base.as_ptr().cast();
        // SAFETY: the source gave us `pages` pages at `c`, ours alone (PageSource contract).
        unsafe {
            c.write(Chunk {
                next: self.chunks,
                prev: ptr::null_mut(),
                pages,
            });
            if !self.chunks.is_null() {
                (*self.chunks).prev = c;
            }
            self.chunks = c;
            let s = sentinel(c);
            (*s).size = SENTINEL;
            let b = first(c);
            block::set_free(b, pages * PAGE_SIZE - CHUNK_OVERHEAD, FIRST);
        }
        self.pages += pages;
        self.nchunks += 1;
        // Geometric growth: the next chunk at least as big as the heap so far.
        if !refused && self.grow < self.max_grow {
            self.grow = self.pages.next_power_of_two().min(self.max_grow);
        }
        Some(first(c))
    }

    /// Called with a free block `b` (on no list) that spans its chunk: gives the chunk back to
    /// the source unless it becomes the spare; a chunk the source declines is indexed. Its
    /// header word need not be written (indexing writes it).
    ///
    /// # Safety
    /// `b` is a free block spanning its chunk, on no list (footer and sentinel written).
    pub(crate) unsafe fn chunk_emptied(&mut self, b: Block, len: usize) {
        // SAFETY: the spare, if any, is the first block of a chunk the heap holds.
        if self.spare.is_null() || self.spare == b || !unsafe { self.spare_is_whole() } {
            self.spare = b;
            // SAFETY: per the contract.
            unsafe { self.index.insert(b, len, FIRST) };
            return;
        }
        // SAFETY: per the contract.
        if !unsafe { self.return_chunk(chunk_of_first(b)) } {
            // SAFETY: per the contract.
            unsafe { self.index.insert(b, len, FIRST) };
        }
    }

    /// True if the spare (not null) is still a free block spanning its chunk: no allocation
    /// has cut into it since it became the spare, or the chunk has emptied again since.
    ///
    /// # Safety
    /// `self.spare` is the first block of a chunk the heap holds.
    unsafe fn spare_is_whole(&self) -> bool {
        let b = self.spare;
        // SAFETY: per the contract `b` is a block header (the first block of a held chunk always
        // is one) and the chunk record before it is the heap's.
        unsafe {
            block::flags(b) & FREE != 0
                && block::size(b) + CHUNK_OVERHEAD == (*chunk_of_first(b)).pages * PAGE_SIZE
        }
    }

    /// Gives wholly free chunk `c` (its block on no list) back to the source; false if the
    /// source declines (the block's header word is then wiped, for the caller to rewrite).
    ///
    /// The pages leave with no word that reads as a used or cached block's header (see
    /// [`block`](crate::block)): the one block's header is wiped here, because when a chunk
    /// empties by the free of its first block (no neighbour before it to merge into), that
    /// header still says "used", with the tag of its address. A source that hands the pages out
    /// again unwiped (an `sbrk`-like [`RegionSource`](crate::RegionSource), a host allocator)
    /// would otherwise put that word inside a later block, where a checked free of a pointer
    /// 8 bytes after it took it for a live block.
    ///
    /// # Safety
    /// `c` is a chunk of the heap whose one block is free and on no list.
    pub(crate) unsafe fn return_chunk(&mut self, c: *mut Chunk) -> bool {
        // SAFETY: `c` and its list neighbours are records of the heap; its first block's
        // header is ours until the pages go back.
        unsafe {
            (*first(c)).size = 0;
            let (next, prev, pages) = ((*c).next, (*c).prev, (*c).pages);
            // SAFETY (free_pages): the run is exactly what the source handed out.
            if !self
                .source
                .free_pages(NonNull::new_unchecked(c.cast()), pages)
            {
                return false;
            }
            if prev.is_null() {
                self.chunks = next;
            } else {
                (*prev).next = next;
            }
            if !next.is_null() {
                (*next).prev = prev;
            }
            self.pages -= pages;
            self.nchunks -= 1;
        }
        true
    }

    /// Gives every wholly free chunk back to the source (the spare, and any the source declined
    /// before). Walks the chunk list. Returns the number of pages the heap holds afterwards.
    pub fn release_free_pages(&mut self) -> usize {
        // Cached small blocks keep their chunks: free them first.
        self.flush_cache();
        let mut c = self.chunks;
        while !c.is_null() {
            // SAFETY: `c` is a chunk record of the heap; its first block is a valid header.
            unsafe {
                let next = (*c).next;
                let b = first(c);
                if block::flags(b) & FREE != 0 && block::next_phys(b) == sentinel(c) {
                    let len = block::size(b);
                    self.index.remove(b, len);
                    if b == self.spare {
                        self.spare = ptr::null_mut();
                    }
                    if !self.return_chunk(c) {
                        self.index.insert(b, len, FIRST);
                    }
                }
                c = next;
            }
        }
        self.pages
    }

    /// The chunk whose blocks cover `addr`, by a walk of the chunk list.
    pub(crate) fn chunk_containing(&self, addr: usize) -> Option<*mut Chunk> {
        let mut c = self.chunks;
        while !c.is_null() {
            // SAFETY: chunk records of the heap.
            unsafe {
                if addr >= first(c).addr() && addr < sentinel(c).addr() {
                    return Some(c);
                }
                c = (*c).next;
            }
        }
        None
    }
}
