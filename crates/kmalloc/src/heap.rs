//! The heap: K&R's address-ordered circular free list, with size-class quick lists in front.
//!
//! # Memory layout
//!
//! The heap asks its [`PageSource`] for runs of pages ("chunks"). Each chunk starts with a
//! [`Chunk`] record (32 bytes) linking it into the heap's list of chunks; the rest of the chunk is
//! tiled by blocks. A block is a 16-byte [`Header`] followed by its payload:
//!
//! ```text
//! chunk: [ Chunk | hdr payload | hdr payload ....... | hdr payload ]
//!                  ^ FIRST flag                         ^ LAST flag
//! ```
//!
//! Block sizes are multiples of 16 and include the header, so walking a chunk from its first block
//! by sizes reaches every block: that is how the checked free ([`Heap::kmfree`]) tells a real block
//! start from any other address. The header's `link` word says what the block is:
//!
//! - free, in the K&R list: the address of the next free block (16-aligned, low bits 0); the
//!   payload's first word holds the previous free block (the list is doubly linked so that a block
//!   can leave it in O(1); K&R's list is singly linked);
//! - allocated: a tag computed from the block's own address, with low bits `0b0001`;
//! - free, in a quick list: a tag with low bits `0b0010`; the payload's first word links the list.
//!
//! A wild pointer or a second free finds no valid "allocated" tag and is refused.
//!
//! # Allocation
//!
//! Freed blocks first go to segregated quick lists: one per exact block size up to 4096 bytes
//! (16-byte steps), then eight geometric subclasses per power of two above that. A bitmap of
//! non-empty classes finds the smallest class that can serve a request in a few word scans. A
//! request takes a block of its exact class if there is one, else splits a larger quick block
//! (the remainder goes back to its own class). Only when the quick lists cannot serve does K&R's
//! next-fit search run from the roving pointer, carving from the tail of the first free block that
//! fits (so that block keeps its place in the list). When nothing fits, `morecore` asks the source
//! for pages; when the source is out, the quick lists are flushed into the K&R list (coalescing)
//! and the search runs again, so quick lists never cause a spurious out-of-memory.
//!
//! # Free
//!
//! Freeing is lazy: a block goes to its quick list (O(1); the lists are doubly linked so a
//! neighbour can be taken out of one when `realloc` grows into it). When the quick lists hold more
//! than `max(64 KiB, heap size / 8)`, they are flushed in one batch: sorted by address (merge
//! sort), then inserted into the address-ordered K&R list in a single pass, coalescing with the
//! block after, before, or both (within one chunk). A block that grows to cover its whole chunk is
//! given back to the source then, at an out-of-memory retry, or by
//! [`Heap::release_free_pages`].

use crate::{AllocError, FreeError, HeapStats, PageSource, PAGE_SIZE};
use core::alloc::Layout;
use core::ptr::{self, NonNull};

/// Size of a block header, and the heap's granule: every block size is a multiple of it.
pub(crate) const UNIT: usize = 16;
/// Smallest block: a header plus room for the free-list back link.
const MIN_BLOCK: usize = 2 * UNIT;
/// Size of the record at the start of each chunk.
const CHUNK_HDR: usize = 32;
/// Flag in `Header::size`: the block is the first in its chunk.
const F_FIRST: usize = 1;
/// Flag in `Header::size`: the block is the last in its chunk.
const F_LAST: usize = 2;
const FLAGS: usize = F_FIRST | F_LAST;
/// Low bits of `Header::link` of an allocated block.
const TAG_ALLOC: usize = 0b0001;
/// Low bits of `Header::link` of a block in a quick list.
const TAG_QUICK: usize = 0b0010;
const TAG_BITS: usize = 0b1111;
const TAG_MAGIC: usize = 0x6b6d_616c_6c6f_6321;

/// Block sizes up to this have a quick list each (exact, in steps of [`UNIT`]).
const EXACT_MAX: usize = 4096;
const NEXACT: usize = EXACT_MAX / UNIT + 1;
/// Above [`EXACT_MAX`], classes are geometric: this many per power of two.
const SUBCLASSES: usize = 8;
/// Largest power of two with classes; bigger blocks share the last class.
const MAX_LOG: usize = 40;
const NCLASS: usize = NEXACT + (MAX_LOG - 12) * SUBCLASSES;
const NWORDS: usize = NCLASS.div_ceil(64);
/// Quick lists may hold this many bytes, or an eighth of the heap if more, before they are
/// flushed into the K&R list.
const QUICK_MIN_CAP: usize = 64 * 1024;

/// The quick-list class of a block of `len` bytes.
fn class_of(len: usize) -> usize {
    if len <= EXACT_MAX {
        len / UNIT
    } else {
        let p = (usize::BITS - 1 - len.leading_zeros()) as usize;
        if p >= MAX_LOG {
            NCLASS - 1
        } else {
            NEXACT + (p - 12) * SUBCLASSES + ((len >> (p - 3)) & (SUBCLASSES - 1))
        }
    }
}

#[repr(C)]
struct Header {
    link: usize,
    size: usize,
}

#[repr(C)]
struct Chunk {
    next: *mut Chunk,
    prev: *mut Chunk,
    pages: usize,
    _reserved: usize,
}

const _: () = assert!(core::mem::size_of::<Header>() == UNIT);
const _: () = assert!(core::mem::size_of::<Chunk>() == CHUNK_HDR);

fn tag(addr: usize, kind: usize) -> usize {
    ((addr.rotate_left(23) ^ TAG_MAGIC) & !TAG_BITS) | kind
}

/// A K&R heap over a [`PageSource`]. See the crate documentation.
pub struct Heap<S: PageSource> {
    source: S,
    /// Roving pointer into the circular K&R free list; null when the list is empty.
    freep: *mut Header,
    /// The chunks held from the source (doubly linked, unordered).
    chunks: *mut Chunk,
    /// Quick lists: free blocks by class, singly linked through their payloads, not coalesced.
    quick: [*mut Header; NCLASS],
    /// Bit `c` set when quick list `c` is not empty.
    nonempty: [u64; NWORDS],
    quick_bytes: usize,
    in_use: usize,
    free: usize,
    pages: usize,
    nchunks: usize,
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

impl<S: PageSource> Heap<S> {
    /// An empty heap that will take pages from `source` as it needs them.
    pub const fn new(source: S) -> Self {
        Heap {
            source,
            freep: ptr::null_mut(),
            chunks: ptr::null_mut(),
            quick: [ptr::null_mut(); NCLASS],
            nonempty: [0; NWORDS],
            quick_bytes: 0,
            in_use: 0,
            free: 0,
            pages: 0,
            nchunks: 0,
        }
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

    /// Block size (header included) that serves `layout`'s size.
    fn block_len(size: usize) -> Option<usize> {
        let payload = size.max(1).checked_add(UNIT - 1)? & !(UNIT - 1);
        let len = payload.checked_add(UNIT)?;
        // Keep far from overflow in later arithmetic.
        if len > isize::MAX as usize / 2 {
            return None;
        }
        Some(len.max(MIN_BLOCK))
    }

    /// Allocates a block for `layout`: any size, any power-of-two alignment.
    pub fn allocate(&mut self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        let len = Self::block_len(layout.size()).ok_or(AllocError)?;
        let align = layout.align().max(UNIT);
        if align == UNIT {
            if let Some(p) = self.alloc_quick(len) {
                return Ok(p);
            }
        }
        if let Some(p) = self.search(len, align) {
            return Ok(p);
        }
        if self.morecore(len, align) {
            if let Some(p) = self.search(len, align) {
                return Ok(p);
            }
        }
        if self.quick_bytes > 0 {
            // Flushing may coalesce enough in place, or give whole chunks back to the source,
            // which can then serve a larger run.
            self.flush_quick();
            if let Some(p) = self.search(len, align) {
                return Ok(p);
            }
            if self.morecore(len, align) {
                if let Some(p) = self.search(len, align) {
                    return Ok(p);
                }
            }
        }
        Err(AllocError)
    }

    /// K&R's next-fit search from the roving pointer.
    fn search(&mut self, len: usize, align: usize) -> Option<NonNull<u8>> {
        if self.freep.is_null() {
            return None;
        }
        let start = self.freep;
        // SAFETY: every block on the K&R list is a free block the heap owns, linked both ways.
        unsafe {
            let mut b = (*start).link as *mut Header;
            loop {
                if let Some((s, blen)) = fit(b, len, align) {
                    return Some(self.carve(b, s, blen));
                }
                if b == start {
                    return None;
                }
                b = (*b).link as *mut Header;
            }
        }
    }

    /// Takes `[s, s + len)` out of free block `b` (see [`fit`]), leaving any lead and trail free.
    ///
    /// # Safety
    /// `b` is on the K&R list and `(s, len)` came from `fit(b, ..)`.
    unsafe fn carve(&mut self, b: *mut Header, s: usize, len: usize) -> NonNull<u8> {
        // SAFETY: per the contract, all addresses lie inside block `b`, which the heap owns.
        unsafe {
            let bsize = size_of_block(b);
            let bflags = (*b).size & FLAGS;
            let start = b as usize;
            let end = start + bsize;
            let lead = s - start;
            let trail = end - (s + len);
            let next = (*b).link as *mut Header;
            let prev = back(b);
            // The allocated block.
            let a = s as *mut Header;
            // What stays on the list in b's place: b shrunk (lead), and/or a new block (trail).
            if lead > 0 {
                (*b).size = lead | (bflags & F_FIRST);
            }
            if trail > 0 {
                let t = (s + len) as *mut Header;
                (*t).size = trail | (bflags & F_LAST);
                if lead > 0 {
                    // b -> t -> next
                    self.link_after(b, t);
                } else {
                    // t replaces b
                    self.replace(b, t, prev, next);
                }
            } else if lead == 0 {
                self.unlink(b, prev, next);
            }
            let mut aflags = 0;
            if lead == 0 {
                aflags |= bflags & F_FIRST;
            }
            if trail == 0 {
                aflags |= bflags & F_LAST;
            }
            (*a).size = len | aflags;
            (*a).link = tag(s, TAG_ALLOC);
            self.free -= len;
            self.in_use += len;
            NonNull::new_unchecked(payload(a))
        }
    }

    /// Inserts `t` right after `b` on the list.
    unsafe fn link_after(&mut self, b: *mut Header, t: *mut Header) {
        // SAFETY: caller passes list member `b` and a fresh free block `t` just above it.
        unsafe {
            let n = (*b).link as *mut Header;
            (*t).link = n as usize;
            set_back(t, b);
            (*b).link = t as usize;
            set_back(n, t);
        }
    }

    /// Puts `t` on the list in place of `b`.
    unsafe fn replace(
        &mut self,
        b: *mut Header,
        t: *mut Header,
        prev: *mut Header,
        next: *mut Header,
    ) {
        // SAFETY: `b` is a list member with neighbours `prev`/`next`; `t` a fresh free block.
        unsafe {
            if next == b {
                // b was alone.
                (*t).link = t as usize;
                set_back(t, t);
            } else {
                (*t).link = next as usize;
                set_back(t, prev);
                (*prev).link = t as usize;
                set_back(next, t);
            }
        }
        if self.freep == b {
            self.freep = t;
        }
    }

    /// Takes `b` off the list.
    unsafe fn unlink(&mut self, b: *mut Header, prev: *mut Header, next: *mut Header) {
        if next == b {
            self.freep = ptr::null_mut();
            return;
        }
        // SAFETY: `prev` and `next` are list members adjacent to `b`.
        unsafe {
            (*prev).link = next as usize;
            set_back(next, prev);
        }
        if self.freep == b {
            // K&R leaves the roving pointer just before the block it used.
            self.freep = prev;
        }
    }

    /// Asks the source for a chunk able to hold a block of `len` bytes at `align`; puts it on the
    /// free list. False if the source is out of memory.
    fn morecore(&mut self, len: usize, align: usize) -> bool {
        let extra = if align > UNIT { align } else { 0 };
        let Some(need) = (CHUNK_HDR + len).checked_add(extra) else {
            return false;
        };
        let pages = need.div_ceil(PAGE_SIZE).max(1);
        let Some(mem) = self.source.alloc_pages(pages, PAGE_SIZE) else {
            return false;
        };
        let c = mem.as_ptr() as *mut Chunk;
        let bytes = pages * PAGE_SIZE;
        // SAFETY: the source promises `pages` writable pages at `mem`, unique to us.
        unsafe {
            (*c).pages = pages;
            (*c).prev = ptr::null_mut();
            (*c).next = self.chunks;
            if !self.chunks.is_null() {
                (*self.chunks).prev = c;
            }
            self.chunks = c;
            let b = (c as usize + CHUNK_HDR) as *mut Header;
            (*b).size = (bytes - CHUNK_HDR) | F_FIRST | F_LAST;
            self.pages += pages;
            self.nchunks += 1;
            self.free += bytes - CHUNK_HDR;
            self.insert_free_keep(b, true, ptr::null_mut());
        }
        true
    }

    /// Frees a block onto its quick list; flushes the quick lists into the K&R list when they
    /// hold more than their cap.
    ///
    /// # Safety
    /// `h` is an allocated block of this heap.
    unsafe fn release(&mut self, h: *mut Header) {
        // SAFETY: per the contract.
        let len = unsafe { size_of_block(h) };
        self.in_use -= len;
        self.free += len;
        // SAFETY: `h` is now a free block of the heap, on no list.
        unsafe { self.push_quick(h) };
        if self.quick_bytes > QUICK_MIN_CAP.max(self.pages * PAGE_SIZE / 8) {
            self.flush_quick();
        }
    }

    /// Puts free block `h` (on no list, counted as free) on its quick list.
    ///
    /// # Safety
    /// `h` is a free block of this heap on no list.
    unsafe fn push_quick(&mut self, h: *mut Header) {
        // SAFETY: per the contract the block and its payload are ours.
        unsafe {
            let len = size_of_block(h);
            let c = class_of(len);
            (*h).link = tag(h as usize, TAG_QUICK);
            let head = self.quick[c];
            set_quick_links(h, head, ptr::null_mut());
            if !head.is_null() {
                set_quick_prev(head, h);
            }
            self.quick[c] = h;
            self.nonempty[c / 64] |= 1 << (c % 64);
            self.quick_bytes += len;
        }
    }

    /// Takes the head of quick list `c`.
    ///
    /// # Safety
    /// List `c` is not empty.
    unsafe fn pop_quick(&mut self, c: usize) -> *mut Header {
        let q = self.quick[c];
        // SAFETY: `q` heads list `c`.
        unsafe { self.remove_quick(q) };
        q
    }

    /// Takes block `q` off its quick list, wherever it is on it.
    ///
    /// # Safety
    /// `q` is on a quick list.
    unsafe fn remove_quick(&mut self, q: *mut Header) {
        // SAFETY: `q` and its list neighbours are quick-list members whose payloads hold the
        // links.
        unsafe {
            let len = size_of_block(q);
            let c = class_of(len);
            let (next, prev) = quick_links(q);
            if prev.is_null() {
                self.quick[c] = next;
            } else {
                set_quick_links(prev, next, quick_links(prev).1);
            }
            if !next.is_null() {
                set_quick_prev(next, prev);
            }
            if self.quick[c].is_null() {
                self.nonempty[c / 64] &= !(1 << (c % 64));
            }
            self.quick_bytes -= len;
        }
    }

    /// The first non-empty class at or above `c`.
    fn next_nonempty(&self, c: usize) -> Option<usize> {
        let mut w = c / 64;
        let mut bits = self.nonempty.get(w)? & (!0u64 << (c % 64));
        loop {
            if bits != 0 {
                return Some(w * 64 + bits.trailing_zeros() as usize);
            }
            w += 1;
            bits = *self.nonempty.get(w)?;
        }
    }

    /// Serves a 16-aligned block of `len` bytes from the quick lists: the exact class if it has
    /// a block, else the smallest larger block, split.
    fn alloc_quick(&mut self, len: usize) -> Option<NonNull<u8>> {
        let mut c = class_of(len);
        loop {
            c = self.next_nonempty(c)?;
            // SAFETY: class `c` is not empty; its blocks are free blocks of the heap.
            unsafe {
                if size_of_block(self.quick[c]) >= len {
                    let q = self.pop_quick(c);
                    self.free -= size_of_block(q);
                    self.in_use += size_of_block(q);
                    (*q).link = tag(q as usize, TAG_ALLOC);
                    let rest = size_of_block(q) - len;
                    if rest >= MIN_BLOCK {
                        // Split: the tail goes back to the quick lists.
                        let t = (q as usize + len) as *mut Header;
                        (*t).size = rest | ((*q).size & F_LAST);
                        (*q).size = len | ((*q).size & F_FIRST);
                        self.in_use -= rest;
                        self.free += rest;
                        self.push_quick(t);
                    }
                    return Some(NonNull::new_unchecked(payload(q)));
                }
            }
            // A geometric class whose head is too small: try the next class up.
            c += 1;
        }
    }

    /// K&R `free`: inserts `bp` in address order, coalescing with the blocks after and before it
    /// (within its chunk); unless `keep` is set, gives the chunk back to the source if it became
    /// wholly free.
    ///
    /// # Safety
    /// `bp` is a free block of this heap on no list (counted as free); `from` is null or a member
    /// of the K&R list.
    ///
    /// The search for `bp`'s place starts at `from` when not null: a caller inserting blocks in
    /// address order passes the previous result, making the whole batch one pass over the list.
    /// Returns the block `bp` ended up in (after coalescing).
    unsafe fn insert_free_keep(
        &mut self,
        bp: *mut Header,
        keep: bool,
        from: *mut Header,
    ) -> *mut Header {
        // SAFETY: all blocks reached are list members or `bp`, all owned by the heap.
        unsafe {
            if self.freep.is_null() {
                (*bp).link = bp as usize;
                set_back(bp, bp);
                self.freep = bp;
            } else {
                // Find p with p < bp < p.next, or the wrap-around point.
                let mut p = if from.is_null() { self.freep } else { from };
                loop {
                    let n = (*p).link as *mut Header;
                    if (p < bp && bp < n) || (p >= n && (bp > p || bp < n)) {
                        break;
                    }
                    p = n;
                }
                let n = (*p).link as *mut Header;
                self.link_after(p, bp);
                // Coalesce with the block after, then with the one before; in a one-block list
                // p is also the block after, and once absorbed it must not be touched again.
                let absorbed_p = self.merge(bp) && n == p;
                let r = if !absorbed_p && self.merge(p) { p } else { bp };
                self.freep = back(r);
                if !keep {
                    self.maybe_return_chunk(r);
                }
                return r;
            }
            if !keep {
                self.maybe_return_chunk(bp);
            }
            bp
        }
    }

    /// Merges `a` with the list block after it if they touch within one chunk. True if merged.
    unsafe fn merge(&mut self, a: *mut Header) -> bool {
        // SAFETY: `a` is a list member; its successor too.
        unsafe {
            let b = (*a).link as *mut Header;
            if b == a || (*a).size & F_LAST != 0 || a as usize + size_of_block(a) != b as usize {
                return false;
            }
            let n = (*b).link as *mut Header;
            (*a).size = (size_of_block(a) + size_of_block(b))
                | ((*a).size & F_FIRST)
                | ((*b).size & F_LAST);
            if n == a {
                (*a).link = a as usize;
                set_back(a, a);
            } else {
                (*a).link = n as usize;
                set_back(n, a);
            }
            if self.freep == b {
                self.freep = a;
            }
            true
        }
    }

    /// Gives `r`'s chunk back to the source if `r` covers all of it.
    unsafe fn maybe_return_chunk(&mut self, r: *mut Header) {
        // SAFETY: `r` is a list member; a block with both flags spans its chunk, whose record
        // sits just before it.
        unsafe {
            if (*r).size & FLAGS != FLAGS {
                return;
            }
            let c = (r as usize - CHUNK_HDR) as *mut Chunk;
            let pages = (*c).pages;
            let mem = NonNull::new_unchecked(c as *mut u8);
            let prev = back(r);
            let next = (*r).link as *mut Header;
            // Take it off the lists first: the source may overwrite the memory.
            self.unlink(r, prev, next);
            let cprev = (*c).prev;
            let cnext = (*c).next;
            if self.source.free_pages(mem, pages) {
                if cprev.is_null() {
                    self.chunks = cnext;
                } else {
                    (*cprev).next = cnext;
                }
                if !cnext.is_null() {
                    (*cnext).prev = cprev;
                }
                self.pages -= pages;
                self.nchunks -= 1;
                self.free -= pages * PAGE_SIZE - CHUNK_HDR;
            } else {
                // Declined: the chunk stays ours. Put the block back without merging (nothing
                // is adjacent within the chunk).
                if self.freep.is_null() {
                    (*r).link = r as usize;
                    set_back(r, r);
                    self.freep = r;
                } else {
                    let mut p = self.freep;
                    loop {
                        let n = (*p).link as *mut Header;
                        if (p < r && r < n) || (p >= n && (r > p || r < n)) {
                            break;
                        }
                        p = n;
                    }
                    self.link_after(p, r);
                }
            }
        }
    }

    /// Moves every quick-list block to the K&R list, coalescing, then gives wholly free chunks
    /// back to the source. The blocks are sorted by address first (a merge sort of the linked
    /// blocks, no memory needed) so that inserting them is a single pass over the list:
    /// O(q log q + n) for q quick blocks and n listed ones.
    fn flush_quick(&mut self) {
        // Gather every quick block into one list, linked through the payloads.
        let mut all: *mut Header = ptr::null_mut();
        for c in 0..NCLASS {
            let mut q = self.quick[c];
            self.quick[c] = ptr::null_mut();
            while !q.is_null() {
                // SAFETY: `q` is on a quick list; its payload links the next one.
                unsafe {
                    let next = *(payload(q) as *mut *mut Header);
                    *(payload(q) as *mut *mut Header) = all;
                    all = q;
                    q = next;
                }
            }
        }
        self.nonempty = [0; NWORDS];
        self.quick_bytes = 0;
        // SAFETY: `all` links quick blocks through their payloads.
        let mut q = unsafe { sort_by_address(all) };
        let mut hint: *mut Header = ptr::null_mut();
        while !q.is_null() {
            // SAFETY: `q` is a free block on no list now; its payload held the batch link, read
            // before the insertion overwrites it. `hint` is a list member (the last result).
            unsafe {
                let next = *(payload(q) as *mut *mut Header);
                hint = self.insert_free_keep(q, true, hint);
                q = next;
            }
        }
        self.return_free_chunks();
    }

    /// Gives back every chunk that is one free, listed block.
    fn return_free_chunks(&mut self) {
        let mut c = self.chunks;
        while !c.is_null() {
            // SAFETY: chunk records are valid while the chunk is held; `next` is read before the
            // chunk may be given back. A chunk's first block starts right after its record.
            unsafe {
                let next = (*c).next;
                let b = (c as usize + CHUNK_HDR) as *mut Header;
                if (*b).size & FLAGS == FLAGS && (*b).link & TAG_BITS == 0 {
                    self.maybe_return_chunk(b);
                }
                c = next;
            }
        }
    }

    /// Gives every wholly free chunk back to the source (flushing the quick lists first).
    /// Returns the number of pages the heap holds afterwards.
    pub fn release_free_pages(&mut self) -> usize {
        self.flush_quick();
        self.pages
    }

    /// Frees a block from [`Heap::allocate`] (or [`Heap::kmalloc`]).
    ///
    /// # Safety
    /// `ptr` came from this heap and was not freed since; `layout` is the one it was allocated
    /// with (only its size is used, for nothing but this check's documentation: the header holds
    /// the block's size).
    ///
    /// # Panics
    /// If the block's header does not carry the "allocated" tag: a double free, or a pointer the
    /// heap never handed out. Continuing would corrupt the heap.
    pub unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        let _ = layout;
        let h = header_of(ptr.as_ptr());
        // SAFETY: per the contract `ptr` is a payload of this heap, so its header is readable.
        unsafe {
            assert!(
                (*h).link == tag(h as usize, TAG_ALLOC),
                "kmalloc: double free or invalid pointer {:p}",
                ptr.as_ptr()
            );
            self.release(h);
        }
    }

    /// Resizes a block, in place when it can: shrinking splits off the tail, growing absorbs a
    /// free block that follows; otherwise it allocates, copies and frees.
    ///
    /// # Safety
    /// As [`Heap::deallocate`] for `ptr` and `old`.
    pub unsafe fn reallocate(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<NonNull<u8>, AllocError> {
        let new_len = Self::block_len(new_size).ok_or(AllocError)?;
        let a = header_of(ptr.as_ptr());
        // SAFETY: `ptr` is a live block of this heap (contract); neighbours within its chunk are
        // blocks with valid headers.
        unsafe {
            assert!(
                (*a).link == tag(a as usize, TAG_ALLOC),
                "kmalloc: realloc of an invalid pointer"
            );
            let cur = size_of_block(a);
            if new_len <= cur {
                self.split_tail(a, new_len);
                return Ok(ptr);
            }
            if (*a).size & F_LAST == 0 {
                let nb = (a as usize + cur) as *mut Header;
                let is_free_listed = (*nb).link & TAG_BITS == 0;
                let is_quick = (*nb).link == tag(nb as usize, TAG_QUICK);
                let nlen = size_of_block(nb);
                if (is_free_listed || is_quick) && cur + nlen >= new_len {
                    if is_quick {
                        self.remove_quick(nb);
                    } else {
                        let prev = back(nb);
                        let next = (*nb).link as *mut Header;
                        self.unlink(nb, prev, next);
                    }
                    (*a).size = (cur + nlen) | ((*a).size & F_FIRST) | ((*nb).size & F_LAST);
                    self.free -= nlen;
                    self.in_use += nlen;
                    self.split_tail(a, new_len);
                    return Ok(ptr);
                }
            }
            let new = self.allocate(
                Layout::from_size_align(new_size, old.align()).map_err(|_| AllocError)?,
            )?;
            ptr::copy_nonoverlapping(ptr.as_ptr(), new.as_ptr(), old.size().min(new_size));
            self.release(a);
            Ok(new)
        }
    }

    /// Shrinks allocated block `a` to `len` bytes if the rest makes a block; frees the rest.
    unsafe fn split_tail(&mut self, a: *mut Header, len: usize) {
        // SAFETY: `a` is an allocated block of the heap of at least `len` bytes.
        unsafe {
            let cur = size_of_block(a);
            if cur - len < MIN_BLOCK {
                return;
            }
            let t = (a as usize + len) as *mut Header;
            (*t).size = (cur - len) | ((*a).size & F_LAST);
            (*a).size = len | ((*a).size & F_FIRST);
            self.in_use -= cur - len;
            self.free += cur - len;
            self.push_quick(t);
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
    /// returns why not, changing nothing. Costs a walk of the chunk list and of one chunk's blocks.
    pub fn kmfree(&mut self, ptr: NonNull<u8>) -> Result<(), FreeError> {
        let h = self.find_block(ptr.as_ptr() as usize)?;
        // SAFETY: `find_block` returned a real block header of this heap.
        unsafe {
            let link = (*h).link;
            if link == tag(h as usize, TAG_ALLOC) {
                self.release(h);
                Ok(())
            } else {
                Err(FreeError::DoubleFree)
            }
        }
    }

    /// True if `ptr` is the start of a block this heap has handed out and not taken back.
    pub fn is_allocated(&self, ptr: NonNull<u8>) -> bool {
        match self.find_block(ptr.as_ptr() as usize) {
            // SAFETY: a real block header of this heap.
            Ok(h) => unsafe { (*h).link == tag(h as usize, TAG_ALLOC) },
            Err(_) => false,
        }
    }

    /// The header of the block whose payload starts at `addr`, found by walking its chunk.
    fn find_block(&self, addr: usize) -> Result<*mut Header, FreeError> {
        let mut c = self.chunks;
        // SAFETY: chunk records and block headers within chunks are maintained by the heap;
        // only addresses inside a chunk's range are dereferenced.
        unsafe {
            while !c.is_null() {
                let start = c as usize;
                let end = start + (*c).pages * PAGE_SIZE;
                if addr >= start && addr < end {
                    if addr % UNIT != 0 {
                        return Err(FreeError::Misaligned);
                    }
                    let mut b = start + CHUNK_HDR;
                    while b < end {
                        let h = b as *mut Header;
                        if b + UNIT == addr {
                            return Ok(h);
                        }
                        if b + UNIT > addr {
                            break;
                        }
                        b += size_of_block(h);
                    }
                    return Err(FreeError::NotABlockStart);
                }
                c = (*c).next;
            }
        }
        Err(FreeError::NotInHeap)
    }

    /// Current statistics. `largest_free_block` walks the free list (O(free blocks)).
    pub fn stats(&self) -> HeapStats {
        let mut largest = 0;
        let mut free_blocks = 0;
        if !self.freep.is_null() {
            let mut b = self.freep;
            // SAFETY: list members are valid free blocks of the heap.
            unsafe {
                loop {
                    largest = largest.max(size_of_block(b) - UNIT);
                    free_blocks += 1;
                    b = (*b).link as *mut Header;
                    if b == self.freep {
                        break;
                    }
                }
            }
        }
        let mut quick_blocks = 0;
        for &head in self.quick.iter() {
            let mut q = head;
            while !q.is_null() {
                quick_blocks += 1;
                // SAFETY: a quick-list member: a valid free block.
                largest = largest.max(unsafe { size_of_block(q) } - UNIT);
                // SAFETY: quick-list members link through their payload's first word.
                q = unsafe { *(payload(q) as *mut *mut Header) };
            }
        }
        HeapStats {
            bytes_in_use: self.in_use,
            bytes_free: self.free,
            pages_held: self.pages,
            chunks: self.nchunks,
            largest_free_block: largest,
            free_blocks,
            quick_blocks,
            overhead_bytes: self.nchunks * CHUNK_HDR,
        }
    }

    /// Walks every chunk and the free lists and checks the heap's invariants; panics with a
    /// description on the first violation. For tests and fuzzing: O(heap size).
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        let mut in_use = 0;
        let mut free = 0;
        let mut pages = 0;
        let mut c = self.chunks;
        // SAFETY: as in `find_block`.
        unsafe {
            while !c.is_null() {
                pages += (*c).pages;
                let start = c as usize + CHUNK_HDR;
                let end = c as usize + (*c).pages * PAGE_SIZE;
                let mut b = start;
                let mut prev_free_listed = false;
                while b < end {
                    let h = b as *mut Header;
                    let len = size_of_block(h);
                    assert!(
                        len >= MIN_BLOCK && len % UNIT == 0,
                        "bad block size {len} at {b:#x}"
                    );
                    assert_eq!(
                        (*h).size & F_FIRST != 0,
                        b == start,
                        "FIRST flag wrong at {b:#x}"
                    );
                    assert_eq!(
                        (*h).size & F_LAST != 0,
                        b + len == end,
                        "LAST flag wrong at {b:#x}"
                    );
                    let link = (*h).link;
                    let listed = link & TAG_BITS == 0;
                    if link == tag(b, TAG_ALLOC) {
                        in_use += len;
                    } else if link == tag(b, TAG_QUICK) || listed {
                        free += len;
                    } else {
                        panic!("block at {b:#x} has a corrupt tag {link:#x}");
                    }
                    assert!(
                        !(listed && prev_free_listed),
                        "two adjacent listed free blocks at {b:#x}"
                    );
                    prev_free_listed = listed;
                    b += len;
                }
                assert_eq!(b, end, "blocks overrun their chunk");
                c = (*c).next;
            }
            if !self.freep.is_null() {
                let mut b = self.freep;
                let mut wraps = 0;
                loop {
                    let n = (*b).link as *mut Header;
                    assert_eq!(back(n), b, "broken back link");
                    if n <= b {
                        wraps += 1;
                    }
                    b = n;
                    if b == self.freep {
                        break;
                    }
                }
                assert_eq!(wraps, 1, "free list not address-ordered");
            }
        }
        let mut quick_bytes = 0;
        for (c, &head) in self.quick.iter().enumerate() {
            assert_eq!(
                self.nonempty[c / 64] >> (c % 64) & 1 == 1,
                !head.is_null(),
                "nonempty bit of class {c}"
            );
            let mut q = head;
            let mut prev: *mut Header = ptr::null_mut();
            while !q.is_null() {
                // SAFETY: quick-list members are free blocks of the heap.
                unsafe {
                    assert_eq!(
                        (*q).link,
                        tag(q as usize, TAG_QUICK),
                        "quick block without its tag"
                    );
                    assert_eq!(
                        class_of(size_of_block(q)),
                        c,
                        "quick block in the wrong class"
                    );
                    let (next, p) = quick_links(q);
                    assert_eq!(p, prev, "broken quick back link");
                    quick_bytes += size_of_block(q);
                    prev = q;
                    q = next;
                }
            }
        }
        assert_eq!(quick_bytes, self.quick_bytes, "quick bytes");
        assert_eq!(in_use, self.in_use, "bytes in use");
        assert_eq!(free, self.free, "bytes free");
        assert_eq!(pages, self.pages, "pages held");
        assert_eq!(
            in_use + free + self.nchunks * CHUNK_HDR,
            pages * PAGE_SIZE,
            "bytes accounted"
        );
    }
}

/// Where in free block `b` a block of `len` bytes with payload aligned to `align` fits, carved as
/// near the block's end as possible: `(start, len)`, with `len` grown to absorb a tail too small
/// to be a block. None if it does not fit.
///
/// # Safety
/// `b` is a valid free block.
unsafe fn fit(b: *mut Header, len: usize, align: usize) -> Option<(usize, usize)> {
    // SAFETY: per the contract.
    let bsize = unsafe { size_of_block(b) };
    if bsize < len {
        return None;
    }
    let start = b as usize;
    let end = start + bsize;
    let mut s;
    if align <= UNIT {
        s = end - len;
        if s - start < MIN_BLOCK {
            s = start;
        }
    } else {
        let q = (end - (len - UNIT)) & !(align - 1);
        if q < start + UNIT {
            return None;
        }
        s = q - UNIT;
        if s > start && s - start < MIN_BLOCK {
            if s < start + align {
                return None;
            }
            s -= align;
        }
        if s < start {
            return None;
        }
    }
    let mut len = len;
    let trail = end - (s + len);
    if trail > 0 && trail < MIN_BLOCK {
        len += trail;
    }
    Some((s, len))
}

fn payload(h: *mut Header) -> *mut u8 {
    (h as usize + UNIT) as *mut u8
}

fn header_of(p: *mut u8) -> *mut Header {
    (p as usize - UNIT) as *mut Header
}

/// # Safety
/// `h` is a valid block header.
unsafe fn size_of_block(h: *mut Header) -> usize {
    // SAFETY: per the contract.
    unsafe { (*h).size & !FLAGS }
}

/// The back link of a K&R-listed block (first word of its payload).
///
/// # Safety
/// `h` is on the K&R list.
unsafe fn back(h: *mut Header) -> *mut Header {
    // SAFETY: per the contract the payload holds the back link.
    unsafe { *(payload(h) as *mut *mut Header) }
}

/// # Safety
/// `h` is a free block (its payload is ours to use).
unsafe fn set_back(h: *mut Header, prev: *mut Header) {
    // SAFETY: per the contract.
    unsafe { *(payload(h) as *mut *mut Header) = prev }
}

/// Sorts a list of blocks linked through their payloads' first words by address (bottom-up
/// merge sort on the links; no memory needed). Returns the new head.
///
/// # Safety
/// Every block on the list is a free block of the heap whose payload holds the link.
unsafe fn sort_by_address(mut head: *mut Header) -> *mut Header {
    // SAFETY (whole function): only payload link words of blocks on the list are read/written.
    unsafe fn next(h: *mut Header) -> *mut Header {
        // SAFETY: per sort_by_address's contract.
        unsafe { *(payload(h) as *mut *mut Header) }
    }
    unsafe fn set_next(h: *mut Header, n: *mut Header) {
        // SAFETY: per sort_by_address's contract.
        unsafe { *(payload(h) as *mut *mut Header) = n }
    }
    let mut width = 1usize;
    loop {
        let mut merges = 0;
        let mut p = head;
        head = ptr::null_mut();
        let mut tail: *mut Header = ptr::null_mut();
        while !p.is_null() {
            merges += 1;
            // Split off run a (up to `width` blocks) and run b (the next `width`).
            let mut q = p;
            let mut asize = 0;
            while asize < width && !q.is_null() {
                asize += 1;
                // SAFETY: list member.
                q = unsafe { next(q) };
            }
            let mut bsize = width;
            while asize > 0 || (bsize > 0 && !q.is_null()) {
                let take_a = if asize == 0 {
                    false
                } else if bsize == 0 || q.is_null() {
                    true
                } else {
                    p < q
                };
                let e = if take_a {
                    let e = p;
                    // SAFETY: list member.
                    p = unsafe { next(p) };
                    asize -= 1;
                    e
                } else {
                    let e = q;
                    // SAFETY: list member.
                    q = unsafe { next(q) };
                    bsize -= 1;
                    e
                };
                if tail.is_null() {
                    head = e;
                } else {
                    // SAFETY: list member.
                    unsafe { set_next(tail, e) };
                }
                tail = e;
            }
            p = q;
        }
        if !tail.is_null() {
            // SAFETY: list member.
            unsafe { set_next(tail, ptr::null_mut()) };
        }
        if merges <= 1 {
            return head;
        }
        width *= 2;
    }
}

/// A quick-list block's links: (next, prev), in its payload's first two words.
///
/// # Safety
/// `h` is on a quick list.
unsafe fn quick_links(h: *mut Header) -> (*mut Header, *mut Header) {
    // SAFETY: a quick block's payload (at least 16 bytes) holds the two links.
    unsafe {
        let w = payload(h) as *mut *mut Header;
        (*w, *w.add(1))
    }
}

/// # Safety
/// `h` is a free block whose payload is ours (on or joining a quick list).
unsafe fn set_quick_links(h: *mut Header, next: *mut Header, prev: *mut Header) {
    // SAFETY: per the contract.
    unsafe {
        let w = payload(h) as *mut *mut Header;
        *w = next;
        *w.add(1) = prev;
    }
}

/// # Safety
/// `h` is on a quick list.
unsafe fn set_quick_prev(h: *mut Header, prev: *mut Header) {
    // SAFETY: per the contract.
    unsafe { *(payload(h) as *mut *mut Header).add(1) = prev }
}
