//! The classic heap: K&R's `malloc` and `free` (The C Programming Language, 8.7), as xv6's
//! `umalloc.c` has them, over a [`PageSource`]. For teaching, and as the baseline the bounded
//! [`Heap`](crate::Heap) is measured against.
//!
//! Every block starts with a one-unit (16-byte) [`Header`]: the block's size in units and, for a
//! free block, the next free block. The free blocks form one circular list in address order;
//! `freep`, the roving pointer, is where the last search ended, and the next starts there.
//! `malloc` takes the first block big enough (first fit) and carves the request from its tail;
//! `free` walks the list to the freed block's place and merges it with the blocks before and
//! after it when they touch. `morecore` asks the source for at least [`NALLOC`] units (a power of
//! two of pages) and frees them into the list. K&R never gives memory back; this heap does when asked
//! ([`RawHeap::release_free_pages`]: chunks that one free block spans).
//!
//! Beyond K&R, and small: an alignment above 16 is served from the tail of a free block too (the
//! piece after the aligned block stays free); each chunk starts with a one-unit record (its
//! pages and the next chunk) so that [`ClassicHeap::kmfree`] can walk a chunk's blocks and
//! blocks of two chunks never merge; a used block's link word holds a tag of its address, so a
//! double free or a wild pointer is caught before the list is touched.
//!
//! Every operation walks the list: O(free blocks). That is the point of comparison.

use crate::block::tag;
use crate::{AllocError, FreeError, HeapStats, PageSource, RawHeap, PAGE_SIZE};
use core::alloc::Layout;
use core::ptr::{self, NonNull};

/// A block header: one unit. Sizes are in units, header included.
#[repr(C, align(16))]
struct Header {
    ptr: *mut Header,
    size: usize,
}

const UNIT: usize = core::mem::size_of::<Header>();
const _: () = assert!(UNIT == 16);
/// The fewest units `morecore` asks for (xv6's `umalloc.c`: 4096, 64 KiB).
pub const NALLOC: usize = 4096;
/// The most pages `morecore` asks for when a request needs fewer (1 MiB).
pub const MAX_GROW: usize = 256;

/// K&R's heap over a [`PageSource`]. See the module documentation.
pub struct ClassicHeap<S: PageSource> {
    source: S,
    /// The roving pointer into the circular free list; null while the list is empty.
    freep: *mut Header,
    /// The chunk records: `ptr` links them, `size` is the chunk's pages.
    chunks: *mut Header,
    in_use: usize,
    pages: usize,
    nchunks: usize,
    steps: usize,
}

// SAFETY: the pointers point into pages the heap owns alone; `S: Send` covers the source.
unsafe impl<S: PageSource + Send> Send for ClassicHeap<S> {}

impl<S: PageSource> core::fmt::Debug for ClassicHeap<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ClassicHeap")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// `h` plus `n` units.
fn add(h: *mut Header, n: usize) -> *mut Header {
    h.wrapping_add(n)
}

impl<S: PageSource> ClassicHeap<S> {
    /// An empty heap over `source`.
    pub const fn new(source: S) -> Self {
        ClassicHeap {
            source,
            freep: ptr::null_mut(),
            chunks: ptr::null_mut(),
            in_use: 0,
            pages: 0,
            nchunks: 0,
            steps: 0,
        }
    }

    /// The page source.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// List blocks visited by the searches since the heap was made. Counted with the `stats`
    /// feature (and in the crate's tests); 0 otherwise.
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

    /// `malloc`: first fit from the roving pointer on.
    fn malloc(&mut self, nbytes: usize, align: usize) -> Option<NonNull<u8>> {
        let nunits = nbytes.max(1).checked_add(UNIT - 1)? / UNIT + 1;
        let extra = align / UNIT;
        if nunits > isize::MAX as usize / UNIT / 4 || extra > isize::MAX as usize / UNIT / 4 {
            return None;
        }
        if self.freep.is_null() {
            self.morecore(nunits + extra)?;
        }
        // SAFETY: the list's blocks are free blocks of the heap's chunks.
        unsafe {
            let mut prevp = self.freep;
            let mut p = (*prevp).ptr;
            loop {
                self.step();
                if let Some(q) = self.carve(prevp, p, nunits, align) {
                    (*q).size = nunits;
                    (*q).ptr = ptr::without_provenance_mut(tag(q.addr()));
                    self.in_use += nunits * UNIT;
                    return NonNull::new(add(q, 1).cast());
                }
                if p == self.freep {
                    // Wrapped around the list: no block fits.
                    self.morecore(nunits + extra)?;
                    p = self.freep;
                }
                prevp = p;
                p = (*p).ptr;
            }
        }
    }

    /// Takes `nunits` units with an `align`-aligned payload from the tail of free block `p`
    /// (after `prevp` on the list), if they fit. With align 16 this is K&R's carve: the whole
    /// block on an exact fit, else its tail.
    ///
    /// # Safety
    /// `p` is on the list after `prevp`.
    unsafe fn carve(
        &mut self,
        prevp: *mut Header,
        p: *mut Header,
        nunits: usize,
        align: usize,
    ) -> Option<*mut Header> {
        // SAFETY: `p` is a free block; the carved block and the piece after it lie inside it.
        unsafe {
            let end = add(p, (*p).size).addr();
            let q_addr =
                (end.checked_sub((nunits - 1) * UNIT)? & !(align - 1)).checked_sub(UNIT)?;
            if q_addr < p.addr() {
                return None;
            }
            let q = add(p, (q_addr - p.addr()) / UNIT);
            let tail = (end - q_addr) / UNIT - nunits;
            let t = add(q, nunits);
            if q != p {
                (*p).size = (q_addr - p.addr()) / UNIT;
                if tail > 0 {
                    (*t).size = tail;
                    (*t).ptr = (*p).ptr;
                    (*p).ptr = t;
                }
                self.freep = prevp;
            } else if tail > 0 {
                // The aligned block starts the free block: the piece after it takes its place.
                (*t).size = tail;
                (*t).ptr = if (*p).ptr == p { t } else { (*p).ptr };
                if prevp == p {
                    self.freep = t;
                } else {
                    (*prevp).ptr = t;
                    self.freep = prevp;
                }
            } else if (*p).ptr == p {
                self.freep = ptr::null_mut(); // the list's only block
            } else {
                (*prevp).ptr = (*p).ptr;
                self.freep = prevp;
            }
            Some(q)
        }
    }

    /// `morecore`: asks the source for room for `nu` units and a chunk record, at least
    /// [`NALLOC`] units, and frees them into the list behind the record. Beyond K&R, two things
    /// that a page source needs: the pages come in a power of two (a buddy source such as kalloc
    /// hands out nothing else: K&R's 4096 units plus a record were 17 pages that held 32, and
    /// the heap filled half its arena), and, while the source gives them, as many as the heap
    /// holds, up to [`MAX_GROW`] (blocks never span chunks, so each chunk edge strands space).
    fn morecore(&mut self, nu: usize) -> Option<()> {
        let units = nu.checked_add(1)?.max(NALLOC);
        let need = units
            .checked_mul(UNIT)?
            .div_ceil(PAGE_SIZE)
            .checked_next_power_of_two()?;
        let want = need.max(self.pages.next_power_of_two().min(MAX_GROW));
        let (c, pages) = match self.source.alloc_pages(want, PAGE_SIZE) {
            Some(c) => (c, want),
            None if want > need => (self.source.alloc_pages(need, PAGE_SIZE)?, need),
            None => return None,
        };
        let c: *mut Header = c.as_ptr().cast();
        // SAFETY: `pages` fresh pages from the source, ours alone.
        unsafe {
            c.write(Header {
                ptr: self.chunks,
                size: pages,
            });
            self.chunks = c;
            self.pages += pages;
            self.nchunks += 1;
            let hp = add(c, 1);
            (*hp).size = pages * PAGE_SIZE / UNIT - 1;
            self.insert(hp);
        }
        Some(())
    }

    /// K&R's `free`: puts block `bp` on the list in address order, merging with its neighbours.
    ///
    /// # Safety
    /// `bp` is a block of the heap on no list.
    unsafe fn insert(&mut self, bp: *mut Header) {
        // SAFETY: list members are free blocks of the heap.
        unsafe {
            if self.freep.is_null() {
                (*bp).ptr = bp;
                self.freep = bp;
                return;
            }
            let only = self.freep;
            if (*only).ptr == only {
                // One listed block (K&R always has its zero-size `base` on the list too, so
                // there the block `bp` merges up into is never also the one before it).
                if add(bp, (*bp).size) == only {
                    (*bp).size += (*only).size;
                    (*bp).ptr = bp;
                    self.freep = bp;
                } else if add(only, (*only).size) == bp {
                    (*bp).ptr = only; // no longer a used block's tag: a second free is caught
                    (*only).size += (*bp).size;
                } else {
                    assert!(
                        bp >= add(only, (*only).size) || add(bp, (*bp).size) <= only,
                        "kmalloc: double free in the classic heap"
                    );
                    (*bp).ptr = only;
                    (*only).ptr = bp;
                }
                return;
            }
            let mut p = self.freep;
            while !(bp > p && bp < (*p).ptr) {
                self.step();
                // At the end of the arena: bp goes at the start or the end.
                if p >= (*p).ptr && (bp > p || bp < (*p).ptr) {
                    break;
                }
                p = (*p).ptr;
            }
            // A block inside a free block, or one overlapping the next, is being freed again.
            assert!(
                bp != p && (bp < p || add(p, (*p).size) <= bp),
                "kmalloc: double free in the classic heap"
            );
            if add(bp, (*bp).size) == (*p).ptr {
                (*bp).size += (*(*p).ptr).size;
                (*bp).ptr = (*(*p).ptr).ptr;
            } else {
                (*bp).ptr = (*p).ptr;
            }
            if add(p, (*p).size) == bp {
                (*p).size += (*bp).size;
                (*p).ptr = (*bp).ptr;
            } else {
                (*p).ptr = bp;
            }
            self.freep = p;
        }
    }

    /// Takes listed block `b` off the list, walking it to `b`'s predecessor.
    ///
    /// # Safety
    /// `b` is on the list.
    unsafe fn unlist(&mut self, b: *mut Header) {
        // SAFETY: list members are free blocks of the heap.
        unsafe {
            if (*b).ptr == b {
                self.freep = ptr::null_mut();
                return;
            }
            let mut p = b;
            while (*p).ptr != b {
                p = (*p).ptr;
            }
            (*p).ptr = (*b).ptr;
            self.freep = p;
        }
    }

    /// The chunk record and header for payload `ptr`, walking the chunk's blocks.
    fn find(&self, ptr: NonNull<u8>) -> Result<*mut Header, FreeError> {
        let a = ptr.as_ptr().addr();
        let mut c = self.chunks;
        // SAFETY: chunk records and the blocks tiling each chunk are the heap's.
        unsafe {
            while !c.is_null() {
                let end = c.addr() + (*c).size * PAGE_SIZE;
                if a > c.addr() + UNIT && a < end {
                    if a % UNIT != 0 {
                        return Err(FreeError::Misaligned);
                    }
                    let mut b = add(c, 1);
                    while b.addr() < a - UNIT {
                        b = add(b, (*b).size);
                    }
                    return if b.addr() == a - UNIT {
                        Ok(b)
                    } else {
                        Err(FreeError::NotABlockStart)
                    };
                }
                c = (*c).ptr;
            }
        }
        Err(FreeError::NotInHeap)
    }
}

impl<S: PageSource> RawHeap for ClassicHeap<S> {
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        self.malloc(layout.size(), layout.align().max(UNIT))
            .ok_or(AllocError)
    }

    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, _layout: Layout) {
        let bp: *mut Header = ptr.as_ptr().cast::<Header>().wrapping_sub(1);
        // SAFETY: per the contract `ptr` is a block of this heap, so its header is readable.
        unsafe {
            if cfg!(feature = "tag-checks") {
                assert!(
                    ptr.as_ptr().addr() % UNIT == 0 && (*bp).ptr.addr() == tag(bp.addr()),
                    "kmalloc: double free or invalid pointer {:p}",
                    ptr.as_ptr()
                );
            }
            self.in_use -= (*bp).size * UNIT;
            self.insert(bp);
        }
    }

    unsafe fn reallocate(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<NonNull<u8>, AllocError> {
        let bp: *mut Header = ptr.as_ptr().cast::<Header>().wrapping_sub(1);
        // SAFETY: per the contract `ptr` is a live block of this heap.
        unsafe {
            if cfg!(feature = "tag-checks") {
                assert!(
                    (*bp).ptr.addr() == tag(bp.addr()),
                    "kmalloc: realloc of a freed or invalid pointer"
                );
            }
            let nunits = new_size.max(1).div_ceil(UNIT) + 1;
            if nunits <= (*bp).size {
                // It fits (K&R has no realloc): the block stays, and a tail it no longer needs
                // is freed like any block.
                let tail = (*bp).size - nunits;
                if tail > 0 {
                    (*bp).size = nunits;
                    let t = add(bp, nunits);
                    (*t).size = tail;
                    self.in_use -= tail * UNIT;
                    self.insert(t);
                }
                return Ok(ptr);
            }
            let layout = Layout::from_size_align(new_size, old.align()).map_err(|_| AllocError)?;
            let p = self.allocate(layout)?;
            ptr::copy_nonoverlapping(ptr.as_ptr(), p.as_ptr(), old.size().min(new_size));
            self.deallocate(ptr, old);
            Ok(p)
        }
    }

    /// Exact (but for the kind of error: a pointer into a chunk's record or its first block's
    /// header is `NotInHeap`): finds the pointer's chunk by a walk of the chunk list and its
    /// block by a walk of that chunk's blocks from the first (O(blocks in the chunk), reading
    /// only real headers), then frees it with K&R's walk of the free list.
    fn kmfree(&mut self, ptr: NonNull<u8>) -> Result<(), FreeError> {
        let bp = self.find(ptr)?;
        // SAFETY: `bp` is a block header of the heap.
        unsafe {
            if (*bp).ptr.addr() != tag(bp.addr()) {
                return Err(FreeError::DoubleFree);
            }
            self.deallocate(ptr, Layout::new::<u8>());
        }
        Ok(())
    }

    /// Walks the free list: O(free blocks).
    fn stats(&self) -> HeapStats {
        let (mut free_blocks, mut largest) = (0, 0);
        let mut p = self.freep;
        // SAFETY: list members are free blocks.
        unsafe {
            while !p.is_null() {
                free_blocks += 1;
                largest = largest.max(((*p).size - 1) * UNIT);
                p = (*p).ptr;
                if p == self.freep {
                    break;
                }
            }
        }
        let overhead = self.nchunks * UNIT;
        HeapStats {
            bytes_in_use: self.in_use,
            bytes_free: self.pages * PAGE_SIZE - overhead - self.in_use,
            pages_held: self.pages,
            chunks: self.nchunks,
            largest_free_block: largest,
            free_blocks,
            overhead_bytes: overhead,
        }
    }

    /// Beyond K&R, which keeps all it took: gives back each chunk that one free block spans
    /// (a kernel's frames flow back to its processes). Walks the chunks and the list.
    fn release_free_pages(&mut self) -> usize {
        let mut prevc: *mut Header = ptr::null_mut();
        let mut c = self.chunks;
        // SAFETY: chunk records, their first blocks and the list are the heap's; a chunk goes
        // back only once no block of it is used or listed.
        unsafe {
            while !c.is_null() {
                let next = (*c).ptr;
                let (b, pages) = (add(c, 1), (*c).size);
                let whole =
                    (*b).ptr.addr() != tag(b.addr()) && (*b).size == pages * PAGE_SIZE / UNIT - 1;
                if whole {
                    self.unlist(b);
                    if self
                        .source
                        .free_pages(NonNull::new_unchecked(c.cast()), pages)
                    {
                        if prevc.is_null() {
                            self.chunks = next;
                        } else {
                            (*prevc).ptr = next;
                        }
                        self.pages -= pages;
                        self.nchunks -= 1;
                        c = next;
                        continue;
                    }
                    self.insert(b);
                }
                prevc = c;
                c = next;
            }
        }
        self.pages
    }

    fn check(&self) {
        let (mut used, mut free, mut pages) = (0, 0, 0);
        let mut c = self.chunks;
        // SAFETY: chunk records, the blocks tiling them and the list are the heap's.
        unsafe {
            while !c.is_null() {
                pages += (*c).size;
                let end = add(c, (*c).size * PAGE_SIZE / UNIT);
                let mut b = add(c, 1);
                while b < end {
                    assert!((*b).size >= 1, "empty block at {b:p}");
                    if (*b).ptr.addr() == tag(b.addr()) {
                        used += (*b).size * UNIT;
                    } else {
                        free += 1;
                    }
                    b = add(b, (*b).size);
                }
                assert_eq!(b, end, "blocks overrun their chunk");
                c = (*c).ptr;
            }
            let mut listed = 0;
            let mut wraps = 0;
            let mut p = self.freep;
            while !p.is_null() {
                listed += 1;
                assert!(listed <= free, "free list longer than the free blocks");
                let next = (*p).ptr;
                assert!(add(p, (*p).size) != next, "unmerged neighbours at {p:p}");
                if next <= p {
                    wraps += 1;
                }
                p = next;
                if p == self.freep {
                    break;
                }
            }
            assert!(listed == 0 || wraps == 1, "free list not in address order");
            assert_eq!(listed, free, "free blocks not all listed");
        }
        assert_eq!(used, self.in_use, "bytes in use");
        assert_eq!(pages, self.pages, "pages held");
    }
}
