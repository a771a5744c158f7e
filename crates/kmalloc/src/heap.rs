//! The heap: K&R's address-ordered circular free list, with size-class quick lists and a
//! size-binned index in front of it.
//!
//! # Memory layout
//!
//! The heap asks its [`PageSource`] for runs of pages ("chunks"). Each chunk is tiled by blocks
//! and ends with a [`Chunk`] record (32 bytes) linking it into the heap's list of chunks, which is
//! kept in address order. A block is a 16-byte [`Header`] followed by its payload:
//!
//! ```text
//! chunk: [ hdr payload | hdr payload ....... | hdr payload | Chunk ]
//!          ^ FIRST flag                        ^ LAST flag
//! ```
//!
//! Block sizes are multiples of 16 and include the header, so walking a chunk from its first block
//! by sizes reaches every block: that is how the checked free ([`Heap::kmfree`]) tells a real block
//! start from any other address. From a chunk's LAST block, its end is the chunk record, whose
//! `next` is the chunk above: so the blocks of the whole heap can be walked in address order. The
//! header's `link` word says what the block is:
//!
//! - free, in the K&R list: the address of the next free block (16-aligned, low bits 0); the
//!   payload's first word holds the previous free block (the list is doubly linked so that a block
//!   can leave it in O(1); K&R's list is singly linked). A listed block of 48 bytes or more is also
//!   on the bin of its size class, linked through its payload's second and third words;
//! - allocated: a tag computed from the block's own address, with low bits `0b0001`;
//! - free, in a quick list: a tag with low bits `0b0010`; the payload's first two words link the
//!   list;
//! - free, the top block (see *Allocation*): a tag with low bits `0b0100`.
//!
//! A wild pointer or a second free finds no valid "allocated" tag and is refused.
//!
//! A listed block's last word (its footer) holds its own address, and the block after it in its
//! chunk carries the flag `F_PREV` in its `size` word. So a block being freed knows, from its own
//! header, whether the block before it is on the list, and if so where it starts: that is its
//! predecessor in the list and the block it merges with, found without a search (K&R finds it by
//! walking the list). Allocated and quick blocks have no footer: the flag is about listed blocks
//! only, and listed blocks never have it themselves (two listed neighbours are always merged).
//!
//! # Chunks
//!
//! `morecore` grows the heap geometrically: it asks for at least as many pages as the heap already
//! holds (rounded down to a power of two, at most 1 MiB per chunk), so a heap of n pages is made
//! of O(log n) chunks. Blocks never span chunks, so few large chunks lose little to chunk edges.
//! When the source refuses a run, `morecore` halves the request down to what the allocation
//! needs, and starts from the smaller size next time.
//!
//! # Allocation
//!
//! Size classes: one per exact block size up to 4096 bytes (16-byte steps), then eight geometric
//! subclasses per power of two above that. Two sets of lists use them, each with a bitmap of
//! non-empty classes that finds the smallest class able to serve a request in a few word scans:
//!
//! - the quick lists hold freed small blocks, not yet coalesced (see *Free*);
//! - the bins index the K&R list: every listed block big enough to hold the bin links is also on
//!   the bin of its class. The bins turn K&R's next-fit walk into a good-fit lookup.
//!
//! The newest chunk's free tail is the *top block* (dlmalloc's "top chunk"): on no list, it is
//! carved from its start, in address order, by writing two headers. A block freed just below it
//! (or the listed block it merges with) joins it, and it goes into the K&R list like any freed
//! block when it cannot serve a request (the heap then grows by a new chunk, whose tail becomes
//! the new top block), or when its chunk is wholly free and can go back to the source. Each new
//! top block prefetches the line a page past its start (x86_64 only; a hint that never faults),
//! since carving in address order will reach it within a few requests.
//!
//! A request takes a quick block of its exact class if there is one, else a block from the start of
//! the top block if it is big enough; otherwise the smallest class that fits, among quick lists and
//! bins (one scan of both bitmaps, after trying the heads of the request's own class when it is
//! geometric): a quick block is split (the remainder goes back to the quick lists), a listed block
//! is carved from its tail (so it keeps its place in the list and usually its bin). If no class
//! above the request's own has a block, the request's own bin is searched. Serving from the top
//! block before the lists keeps new blocks in address order, next to each other, at the cost of two
//! header writes (in the benchmarks, small random sizes ran faster this way than with the lists
//! first, and the heap filled to a higher share before its first failure: see the crate's README);
//! freed blocks still serve every request before the heap grows. Requests with an alignment above
//! 16 look in the bins for a block big enough to hold any aligned placement, then fall back to
//! K&R's next-fit walk of the list from the roving pointer. When nothing fits, `morecore` adds a
//! chunk and the request is carved from it. It asks for no more pages than the source's
//! [`PageSource::pages_available_hint`] allows, and not at all when the hint is below what the
//! request needs (so an out-of-memory heap over a locked source fails without taking its lock).
//! When the source is out, the quick lists are flushed into the K&R list (coalescing), wholly free
//! chunks go back to the source, and the search runs again, so quick lists never cause a spurious
//! out-of-memory.
//!
//! # Free
//!
//! A small block (of an exact class, up to 4096 bytes) is freed lazily onto its quick list (O(1);
//! the lists are doubly linked so a neighbour can be taken out of one when `realloc` grows into
//! it). A larger block goes straight into the K&R list, and so does a small one while memory is
//! short (the source has refused a chunk since it last gave one, and less than an eighth of the
//! heap is free): failing allocations then need no flush. When the quick lists hold more than
//! `max(64 KiB, heap size / 2)`, or the heap would grow while they hold more than
//! `max(64 KiB, heap size / 4)`, or an allocation fails, they are flushed into the
//! address-ordered K&R list, coalescing with the block after, before, or both (within one chunk).
//! An insertion's place in the list is the block before it when that is listed (`F_PREV`);
//! otherwise it is found by stepping over the blocks after it in address order to the next listed
//! block (a few steps as a rule), or else by a K&R walk of the list. The flush goes:
//!
//! - as a batch sorted by address when they hold little (the quick lists are emptied into one
//!   list, merge-sorted in place): each block first absorbs the batch blocks that follow it in
//!   memory; the first finds its place by stepping over the blocks after it to the next listed
//!   block (a few steps as a rule) or else by a K&R walk of the list; each later one walks the
//!   list on from the previous insertion and steps over the blocks after it in turn, stopping at
//!   whichever finds the place first (so a batch costs at most about one pass over the part of
//!   the list it spans, and little more than a few steps per block where free blocks are dense);
//! - in one sweep over the chunks in address order when they hold much of the heap: each quick
//!   block goes in after the last listed block seen.
//!
//! A block freed just below the top block joins it instead (with the listed block before it, if
//! any). A block that grows to cover its whole chunk (the top block too) is given back to the
//! source at a flush, at an out-of-memory retry, or by [`Heap::release_free_pages`].
//!
//! `realloc` shrinks in place (the tail is freed if it is at least a quarter of the block or can
//! join a free block after it; like any freed block, onto a quick list if small, else straight
//! into the K&R list) and grows in place over the free blocks that follow when they
//! suffice.

use crate::{AllocError, FreeError, HeapStats, PageSource, PAGE_SIZE};
use core::alloc::Layout;
use core::ptr::{self, NonNull};

/// Size of a block header, and the heap's granule: every block size is a multiple of it.
pub(crate) const UNIT: usize = 16;
/// Smallest block: a header plus room for the quick-list links or the K&R back link.
const MIN_BLOCK: usize = 2 * UNIT;
/// Smallest listed block that is also binned: room for the back link and the two bin links.
const BIN_MIN: usize = 3 * UNIT;
/// Size of the record at the start of each chunk.
const CHUNK_HDR: usize = 32;
/// Flag in `Header::size`: the block is the first in its chunk.
const F_FIRST: usize = 1;
/// Flag in `Header::size`: the block is the last in its chunk.
const F_LAST: usize = 2;
/// Flag in `Header::size`: the block before this one in its chunk is on the K&R list (so its
/// last word holds its address, see [`set_footer`]).
const F_PREV: usize = 4;
/// Both ends: the block spans its chunk.
const SPAN: usize = F_FIRST | F_LAST;
const FLAGS: usize = F_FIRST | F_LAST | F_PREV;
/// Low bits of `Header::link` of an allocated block.
const TAG_ALLOC: usize = 0b0001;
/// Low bits of `Header::link` of a block in a quick list.
const TAG_QUICK: usize = 0b0010;
/// Tag of the top block (see [`Heap::alloc_top`]).
const TAG_TOP: usize = 0b0100;
const TAG_BITS: usize = 0b1111;
const TAG_MAGIC: usize = 0x6b6d_616c_6c6f_6321;

/// Block sizes up to this have a class each (exact, in steps of [`UNIT`]).
const EXACT_MAX: usize = 4096;
const NEXACT: usize = EXACT_MAX / UNIT + 1;
/// Above [`EXACT_MAX`], classes are geometric: this many per power of two.
const SUBCLASSES: usize = 8;
/// Largest power of two with classes; bigger blocks share the last class.
const MAX_LOG: usize = 40;
const NCLASS: usize = NEXACT + (MAX_LOG - 12) * SUBCLASSES;
const NWORDS: usize = NCLASS.div_ceil(64);
const _: () = assert!(NCLASS < NWORDS * 64);
/// Quick lists may hold this many bytes, or half the heap if more, before they are flushed into
/// the K&R list (and no more than this or a quarter of the heap when the heap would grow).
const QUICK_MIN_CAP: usize = 64 * 1024;
/// The most pages `morecore` asks for beyond what a request needs (1 MiB).
const MAX_GROW_PAGES: usize = 256;
/// How far past the top block's start [`Heap::make_top`] prefetches: one page, so that the page
/// the next few carvings reach is in the TLB and cache by then (heap efficiency benchmark, cold
/// caches: 0.91 -> 1.00 of buddy_system_allocator's speed; 256 bytes ahead was slower, 2 and 8
/// KiB no better).
const TOP_PREFETCH: usize = PAGE_SIZE;
/// How many physical neighbours an insertion steps over looking for its place before it walks
/// the list instead.
const PHYS_STEPS: usize = 32;

/// Hints the CPU to fetch the cache line at `p` (and its page's translation). A hint only: it
/// never faults, even on an address that is not mapped, and does nothing on other targets.
#[inline(always)]
fn prefetch(p: *const u8) {
    // HARDWARE: x86_64's PREFETCHT0. The instruction reads no data into the program and raises
    // no exception for any address, so any pointer value is sound to pass.
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as above; SSE is part of the x86_64 baseline.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The class of a block of `len` bytes.
#[inline]
fn class_of(len: usize) -> usize {
    if len <= EXACT_MAX {
        len / UNIT
    } else {
        // With p = log2(len), `len >> (p - 3)` is 8 + the subclass (the three bits below the
        // top one): class NEXACT + (p - 12) * 8 + subclass, without the mask and multiply.
        let p = (usize::BITS - 1 - len.leading_zeros()) as usize;
        let c = (p << 3) + (len >> (p - 3)) + NEXACT - 12 * SUBCLASSES - SUBCLASSES;
        c.min(NCLASS - 1)
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

/// The first block of chunk `c` (at the start of its pages; the record is at their end).
///
/// # Safety
/// `c` is the record of a chunk the heap holds.
unsafe fn chunk_first(c: *mut Chunk) -> *mut Header {
    // SAFETY: per the contract the record is valid.
    unsafe { (c as usize + CHUNK_HDR - (*c).pages * PAGE_SIZE) as *mut Header }
}

/// Segregated lists of free blocks by class, doubly linked through payload words `OFF` (next)
/// and `OFF + 1` (previous), with a bitmap of the non-empty classes. A head's previous link is
/// not kept (a member is the head when `head[c]` says so): taking the head then writes nothing
/// into its successor, a block freed long ago whose cache line is likely cold.
struct Classes<const OFF: usize> {
    head: [*mut Header; NCLASS],
    map: [u64; NWORDS],
}

impl<const OFF: usize> Classes<OFF> {
    const fn new() -> Self {
        Classes {
            head: [ptr::null_mut(); NCLASS],
            map: [0; NWORDS],
        }
    }

    /// The link words of `h`.
    fn links(h: *mut Header) -> *mut *mut Header {
        (payload(h) as *mut *mut Header).wrapping_add(OFF)
    }

    /// (next, previous) of member `h`; the previous is meaningless if `h` is a head.
    ///
    /// # Safety
    /// `h` is on one of the lists.
    unsafe fn get(h: *mut Header) -> (*mut Header, *mut Header) {
        let w = Self::links(h);
        // SAFETY: a member's payload holds its links at words OFF and OFF + 1.
        unsafe { (*w, *w.add(1)) }
    }

    /// The next member after `h`.
    ///
    /// # Safety
    /// `h` is on one of the lists.
    unsafe fn next(h: *mut Header) -> *mut Header {
        // SAFETY: a member's payload holds its next link at word OFF.
        unsafe { *Self::links(h) }
    }

    /// Pushes `h` on list `c`.
    ///
    /// # Safety
    /// `h` is a free block on none of these lists whose payload words `OFF..OFF + 2` are ours.
    unsafe fn push(&mut self, h: *mut Header, c: usize) {
        let head = self.head[c];
        // SAFETY: per the contract, and `head` (if any) is a member.
        unsafe {
            *Self::links(h) = head;
            if !head.is_null() {
                *Self::links(head).add(1) = h;
            }
        }
        self.head[c] = h;
        self.map[c / 64] |= 1 << (c % 64);
    }

    /// Takes `h`, the head of list `c`, off it.
    ///
    /// # Safety
    /// `h` heads list `c`.
    #[inline]
    unsafe fn pop(&mut self, h: *mut Header, c: usize) {
        // SAFETY: `h` and its successor (if any) are members, whose payloads hold the links.
        unsafe {
            let next = *Self::links(h);
            self.head[c] = next;
            if next.is_null() {
                self.map[c / 64] &= !(1 << (c % 64));
            }
        }
    }

    /// Takes member `h` off list `c`.
    ///
    /// # Safety
    /// `h` is on list `c`.
    unsafe fn remove(&mut self, h: *mut Header, c: usize) {
        // SAFETY: `h` and its neighbours are members, whose payloads hold the links.
        unsafe {
            let (next, prev) = Self::get(h);
            if self.head[c] == h {
                self.head[c] = next;
                if next.is_null() {
                    self.map[c / 64] &= !(1 << (c % 64));
                }
            } else {
                *Self::links(prev) = next;
                if !next.is_null() {
                    *Self::links(next).add(1) = prev;
                }
            }
        }
    }

    /// The first non-empty class at or above `c`.
    fn next_nonempty(&self, c: usize) -> Option<usize> {
        let mut w = c / 64;
        let mut bits = self.map.get(w)? & (!0u64 << (c % 64));
        loop {
            if bits != 0 {
                return Some(w * 64 + bits.trailing_zeros() as usize);
            }
            w += 1;
            bits = *self.map.get(w)?;
        }
    }

    /// The smallest class whose head is at least `len` bytes: any block of a class above
    /// `class_of(len)` is big enough; in that class itself (when geometric) the head is checked.
    fn find(&self, len: usize) -> Option<usize> {
        let c = class_of(len);
        let f = self.next_nonempty(c)?;
        // SAFETY: the head of a non-empty class is a valid free block.
        if f == c && c >= NEXACT && unsafe { size_of_block(self.head[f]) } < len {
            return self.next_nonempty(f + 1);
        }
        Some(f)
    }
}

/// A K&R heap over a [`PageSource`]. See the crate documentation.
pub struct Heap<S: PageSource> {
    source: S,
    /// Roving pointer into the circular K&R free list; null when the list is empty.
    freep: *mut Header,
    /// The chunks held from the source (doubly linked, unordered).
    chunks: *mut Chunk,
    /// Quick lists: freed blocks by class, not coalesced, linked through payload words 0 and 1.
    quick: Classes<0>,
    /// Bins: the K&R-listed blocks of at least [`BIN_MIN`] bytes by class, linked through
    /// payload words 1 and 2 (word 0 is the K&R back link).
    bins: Classes<1>,
    quick_bytes: usize,
    /// `max(QUICK_MIN_CAP, heap size / 2)`: the quick lists are flushed when they hold more.
    quick_cap: usize,
    in_use: usize,
    pages: usize,
    nchunks: usize,
    /// Pages `morecore` asks for at least (a power of two).
    grow: usize,
    /// Most pages `morecore` asks for when a request needs fewer (see `set_growth_limit`).
    max_grow: usize,
    /// Set when an insertion made a block that spans its chunk: a chunk may be wholly free.
    spare_chunk: bool,
    /// Set when the source could not give the heap a chunk it needed; cleared when it gives one.
    /// While it is set and little of the heap is free, small blocks are freed straight into the
    /// K&R list (see [`Heap::frees_coalesce`]).
    short: bool,
    /// The top block, or null: the free tail of the newest chunk, on no list, served from its
    /// start by bumping (see [`Heap::alloc_top`]).
    top: *mut Header,
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
            quick: Classes::new(),
            bins: Classes::new(),
            quick_bytes: 0,
            quick_cap: QUICK_MIN_CAP,
            in_use: 0,
            pages: 0,
            nchunks: 0,
            grow: 1,
            max_grow: MAX_GROW_PAGES,
            spare_chunk: false,
            short: false,
            top: ptr::null_mut(),
        }
    }

    /// Limits how many pages `morecore` takes at once for requests smaller than that (at least
    /// 1). The default grows the heap geometrically, up to 256 pages per chunk, which keeps
    /// page-end fragments rare (the benchmark's heap efficiency). A limit of 1 is xv6's
    /// `morecore`: a page at a time for small blocks, each chunk returned as soon as it is free,
    /// the most frugal with memory a kernel shares with user processes.
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

    /// Block size (header included) that serves `layout`'s size.
    #[inline]
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
    #[inline]
    pub fn allocate(&mut self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        let len = Self::block_len(layout.size()).ok_or(AllocError)?;
        self.alloc_len(len, layout.align())
    }

    /// [`Heap::allocate`] for a block of `len` bytes (from `block_len`) at `align`.
    #[inline]
    fn alloc_len(&mut self, len: usize, align: usize) -> Result<NonNull<u8>, AllocError> {
        if align <= UNIT {
            let c = class_of(len);
            let q = self.quick.head[c];
            if c < NEXACT && !q.is_null() {
                // The fast path: a freed block of exactly this size.
                // SAFETY: `q` heads quick list `c`, whose blocks are all `len` bytes.
                unsafe {
                    self.quick.pop(q, c);
                    self.quick_bytes -= len;
                    self.in_use += len;
                    (*q).link = tag(q as usize, TAG_ALLOC);
                    return Ok(NonNull::new_unchecked(payload(q)));
                }
            }
            if let Some(p) = self.alloc_top(len) {
                return Ok(p);
            }
            if let Some(p) = self.alloc_fit(len, c) {
                return Ok(p);
            }
        }
        self.alloc_slow(len, align.max(UNIT))
    }

    /// Serves a 16-aligned block of `len` bytes from the smallest class that fits, among quick
    /// lists and bins (quick on a tie).
    fn alloc_fit(&mut self, len: usize, c: usize) -> Option<NonNull<u8>> {
        let mut from = c;
        if c >= NEXACT {
            // In a geometric class only the heads are tried (quick first); every block of a
            // class above fits.
            let q = self.quick.head[c];
            // SAFETY: the head of a non-empty list is a valid free block.
            if !q.is_null() && unsafe { size_of_block(q) } >= len {
                return Some(self.alloc_from_quick(c, len));
            }
            let b = self.bins.head[c];
            // SAFETY: as above.
            if !b.is_null() && unsafe { size_of_block(b) } >= len {
                return Some(self.alloc_binned(c, len));
            }
            from = c + 1;
        }
        // One scan over both bitmaps (`from` is at most NCLASS, which is in the last word).
        let mut w = from / 64;
        let mut bits = (self.quick.map[w] | self.bins.map[w]) & (!0u64 << (from % 64));
        while bits == 0 {
            w += 1;
            if w == NWORDS {
                return None;
            }
            bits = self.quick.map[w] | self.bins.map[w];
        }
        let f = w * 64 + bits.trailing_zeros() as usize;
        Some(if self.quick.map[w] >> (f % 64) & 1 != 0 {
            self.alloc_from_quick(f, len)
        } else {
            self.alloc_binned(f, len)
        })
    }

    /// Carves `len` bytes (16-aligned) from the head of bin `c`, which fits.
    fn alloc_binned(&mut self, c: usize, len: usize) -> NonNull<u8> {
        let b = self.bins.head[c];
        // SAFETY: `b` heads bin `c`: a listed free block of at least `len` bytes.
        unsafe {
            let bsize = size_of_block(b);
            let lead = bsize - len;
            // (A listed block has no F_PREV: listed neighbours are always merged.)
            let bflags = (*b).size & FLAGS;
            let a;
            if lead >= MIN_BLOCK {
                // The block's tail: the rest keeps the block's place in the list, and its bin
                // unless it drops to a smaller class.
                (*b).size = lead | (bflags & F_FIRST);
                self.rebin(b, Some(c), lead);
                // (After the bin links are read: in a 32-byte block the footer is one of them.)
                set_footer(b);
                a = (b as usize + lead) as *mut Header;
                (*a).size = len | (bflags & F_LAST) | F_PREV;
                self.in_use += len;
            } else {
                // The rest would be too small to be a block: all of it.
                self.bins.pop(b, c);
                let next = (*b).link as *mut Header;
                self.unlink(b, back(b), next);
                a = b;
                self.in_use += bsize;
            }
            // The block after `a` (b's old end) followed a listed block; now an allocated one.
            if bflags & F_LAST == 0 {
                set_prev_flag(b as usize + bsize, false);
            }
            (*a).link = tag(a as usize, TAG_ALLOC);
            NonNull::new_unchecked(payload(a))
        }
    }

    /// Serves a 16-aligned block of `len` bytes from the start of the top block, if it is big
    /// enough (see the module docs). The top block is the free tail of the newest chunk, kept
    /// off the lists and carved from its start, in address order, by writing two headers. It
    /// goes into the K&R list ([`Heap::retire_top`]) when it cannot serve a request.
    #[inline]
    fn alloc_top(&mut self, len: usize) -> Option<NonNull<u8>> {
        let t = self.top;
        if t.is_null() {
            return None;
        }
        // SAFETY: `t` is the top block: a free block of the heap on no list, its chunk's last.
        unsafe {
            let tsize = (*t).size;
            let tlen = tsize & !FLAGS;
            if tlen < len {
                return None;
            }
            self.in_use += self.take_top(t, tsize & (F_FIRST | F_PREV), tlen, len);
            (*t).link = tag(t as usize, TAG_ALLOC);
            Some(NonNull::new_unchecked(payload(t)))
        }
    }

    /// Makes `a` a block of `len` bytes with flags `keep`, where `a` is the top block or a block
    /// just below it, `total` bytes from the top block's end; the rest stays the top block, or
    /// goes to `a` if it could not be a block. Returns `a`'s size.
    ///
    /// # Safety
    /// As described, with `len <= total`.
    #[inline]
    unsafe fn take_top(&mut self, a: *mut Header, keep: usize, total: usize, len: usize) -> usize {
        // SAFETY: per the contract `a` and the bytes up to the top block's end are ours.
        unsafe {
            if total - len >= MIN_BLOCK {
                self.make_top((a as usize + len) as *mut Header, (total - len) | F_LAST);
                (*a).size = len | keep;
                len
            } else {
                self.top = ptr::null_mut();
                (*a).size = total | keep | F_LAST;
                total
            }
        }
    }

    /// Makes `t` the top block, with size word `size` (which has `F_LAST`).
    ///
    /// # Safety
    /// `t` is a free block of the heap on no list, the last of its chunk, of the size `size` says.
    #[inline]
    unsafe fn make_top(&mut self, t: *mut Header, size: usize) {
        // SAFETY: per the contract the header is ours to write.
        unsafe {
            (*t).size = size;
            (*t).link = tag(t as usize, TAG_TOP);
        }
        if size & !FLAGS > TOP_PREFETCH {
            // The top block is carved in address order: its next page will be needed soon.
            prefetch((t as *const u8).wrapping_add(TOP_PREFETCH));
        }
        self.top = t;
    }

    /// Puts the top block, if any, on the K&R list like any freed block (coalescing with a listed
    /// block before it).
    fn retire_top(&mut self) {
        let t = self.top;
        if t.is_null() {
            return;
        }
        self.top = ptr::null_mut();
        // SAFETY: `t` was the top block: a free block of the heap on no list.
        unsafe {
            self.insert_free(t);
        }
    }

    /// If free block `bp` (on no list) ends where the top block starts, the top block grows down
    /// over it, and over the listed block before it if there is one. True if it did.
    ///
    /// # Safety
    /// `bp` is a free block of the heap on no list.
    #[inline(always)]
    unsafe fn join_top(&mut self, bp: *mut Header) -> bool {
        let t = self.top;
        // SAFETY: `bp` is a free block of the heap.
        unsafe {
            let bsize = (*bp).size;
            if t.is_null() || bsize & F_LAST != 0 || bp as usize + (bsize & !FLAGS) != t as usize {
                return false;
            }
            self.grow_top_down(bp);
        }
        true
    }

    /// [`Heap::join_top`] once it is known that `bp` ends where the top block starts.
    ///
    /// # Safety
    /// `bp` is a free block of the heap on no list, just below the top block.
    #[cold]
    unsafe fn grow_top_down(&mut self, bp: *mut Header) {
        let t = self.top;
        // SAFETY: `bp` and `t` are free blocks of the heap; with `F_PREV` the block before `bp`
        // is listed.
        unsafe {
            let bsize = (*bp).size;
            let mut start = bp;
            let mut len = (bsize & !FLAGS) + size_of_block(t);
            let mut keep = bsize & (F_FIRST | F_PREV);
            if keep & F_PREV != 0 {
                let p = prev_listed(bp);
                self.bin_del(p);
                self.unlink(p, back(p), (*p).link as *mut Header);
                len += size_of_block(p);
                // (A listed block never has F_PREV.)
                keep = (*p).size & F_FIRST;
                start = p;
            }
            self.make_top(start, len | keep | F_LAST);
            self.spare_chunk |= keep & F_FIRST != 0;
        }
    }

    /// Takes the head of quick class `c` (at least `len` bytes) and splits off the rest.
    fn alloc_from_quick(&mut self, c: usize, len: usize) -> NonNull<u8> {
        let q = self.quick.head[c];
        // SAFETY: `q` heads quick list `c`; it is a free block of at least `len` bytes.
        unsafe {
            let qlen = size_of_block(q);
            self.quick.pop(q, c);
            self.quick_bytes -= qlen;
            self.in_use += qlen;
            (*q).link = tag(q as usize, TAG_ALLOC);
            let rest = qlen - len;
            if rest >= MIN_BLOCK {
                // Split: the tail goes back to the quick lists.
                let t = (q as usize + len) as *mut Header;
                (*t).size = rest | ((*q).size & F_LAST);
                (*q).size = len | ((*q).size & (F_FIRST | F_PREV));
                self.in_use -= rest;
                self.push_quick(t);
            }
            NonNull::new_unchecked(payload(q))
        }
    }

    /// A block for `len` bytes at `align` from the K&R list (bins first), without new pages.
    fn alloc_listed(&mut self, len: usize, align: usize) -> Option<NonNull<u8>> {
        if align <= UNIT {
            if let Some(c) = self.bins.find(len) {
                return Some(self.alloc_binned(c, len));
            }
            return self.alloc_in_class(len);
        }
        // Any block this big holds an aligned placement (see `fit`).
        if let Some(c) = self.bins.find(len + align + MIN_BLOCK) {
            let b = self.bins.head[c];
            // SAFETY: `b` is a listed free block.
            if let Some((s, l)) = unsafe { fit(b, len, align) } {
                // SAFETY: as above; `(s, l)` came from `fit`.
                return Some(unsafe { self.carve(b, s, l) });
            }
        }
        self.search(len, align)
    }

    /// A 16-aligned block of `len` bytes from a listed block of `len`'s own class (when it is
    /// geometric, its blocks differ in size: one behind a smaller head may fit).
    fn alloc_in_class(&mut self, len: usize) -> Option<NonNull<u8>> {
        let c = class_of(len);
        if c < NEXACT {
            return None;
        }
        let mut b = self.bins.head[c];
        while !b.is_null() {
            // SAFETY: `b` is on bin `c`: a listed free block.
            unsafe {
                if let Some((s, l)) = fit(b, len, UNIT) {
                    return Some(self.carve(b, s, l));
                }
                b = Classes::<1>::next(b);
            }
        }
        None
    }

    /// Everything but the quick fast paths: the K&R list, then more pages, then a flush of the
    /// quick lists and a last try.
    #[cold]
    fn alloc_slow(&mut self, len: usize, align: usize) -> Result<NonNull<u8>, AllocError> {
        // The top block could not serve this request: the lists get what is left of it.
        self.retire_top();
        if align > UNIT {
            if let Some(p) = self.alloc_listed(len, align) {
                return Ok(p);
            }
        }
        if self.quick_bytes > QUICK_MIN_CAP && self.quick_bytes > self.pages * (PAGE_SIZE / 4) {
            // Rather than grow the heap while much of it sits in quick lists, coalesce them.
            self.flush_quick();
            if let Some(p) = self.alloc_listed(len, align) {
                return Ok(p);
            }
        }
        if let Some(p) = self.alloc_new_chunk(len, align) {
            return Ok(p);
        }
        self.short = true;
        // Flushing may coalesce enough in place; giving whole chunks back to the source may let
        // it serve a larger run.
        let flushed = self.quick_bytes > 0;
        if !flushed && !self.spare_chunk {
            // Nothing to flush and no chunk that may be wholly free: only a fitting block behind
            // its class's head (which the fast path does not look past) may serve.
            if align > UNIT {
                return Err(AllocError);
            }
            return self.alloc_in_class(len).ok_or(AllocError);
        }
        let released = self.flush_quick();
        if let Some(p) = self.alloc_listed(len, align) {
            return Ok(p);
        }
        if released {
            if let Some(p) = self.alloc_new_chunk(len, align) {
                return Ok(p);
            }
        }
        Err(AllocError)
    }

    /// Adds a chunk and carves the block from it.
    fn alloc_new_chunk(&mut self, len: usize, align: usize) -> Option<NonNull<u8>> {
        if align <= UNIT {
            // The new chunk becomes the top block (`alloc_slow` retired the old one).
            self.morecore(len, align, true)?;
            return self.alloc_top(len);
        }
        let b = self.morecore(len, align, false)?;
        // SAFETY: `b` is the new chunk's listed free block.
        match unsafe { fit(b, len, align) } {
            // SAFETY: as above; `(s, l)` came from `fit`.
            Some((s, l)) => Some(unsafe { self.carve(b, s, l) }),
            None => self.search(len, align),
        }
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

    /// Puts listed block `b` on its bin if it is big enough to be binned.
    ///
    /// # Safety
    /// `b` is on the K&R list and on no bin.
    unsafe fn bin_add(&mut self, b: *mut Header) {
        // SAFETY: per the contract; a block of BIN_MIN bytes has room for the bin links.
        unsafe {
            let len = size_of_block(b);
            if len >= BIN_MIN {
                self.bins.push(b, class_of(len));
            }
        }
    }

    /// Moves listed block `b`, now `len` bytes, from the bin of class `old` (None: it was too small
    /// to be binned) to the bin its size calls for, if that is another.
    ///
    /// # Safety
    /// `b` is on the K&R list, and on bin `old` if that is not None.
    #[inline]
    unsafe fn rebin(&mut self, b: *mut Header, old: Option<usize>, len: usize) {
        let new = (len >= BIN_MIN).then(|| class_of(len));
        if old != new {
            // SAFETY: per the contract; a block of BIN_MIN bytes has room for the bin links.
            unsafe {
                if let Some(c) = old {
                    self.bins.remove(b, c);
                }
                if let Some(c) = new {
                    self.bins.push(b, c);
                }
            }
        }
    }

    /// Takes listed block `b` off its bin, if it is on one.
    ///
    /// # Safety
    /// `b` is on the K&R list, and binned as its size says.
    unsafe fn bin_del(&mut self, b: *mut Header) {
        // SAFETY: per the contract.
        unsafe {
            let len = size_of_block(b);
            if len >= BIN_MIN {
                self.bins.remove(b, class_of(len));
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
            // The common case: the tail of a block that stays in its bin.
            if trail == 0 && lead >= BIN_MIN && class_of(lead) == class_of(bsize) {
                (*b).size = lead | (bflags & F_FIRST);
                set_footer(b);
            } else {
                self.bin_del(b);
                let next = (*b).link as *mut Header;
                let prev = back(b);
                // What stays on the list in b's place: b shrunk (lead), and/or a new block (trail).
                if lead > 0 {
                    (*b).size = lead | (bflags & F_FIRST);
                    set_footer(b);
                }
                if trail > 0 {
                    // Listed, after the allocated block: no F_PREV; the block after it keeps its
                    // F_PREV.
                    let t = (s + len) as *mut Header;
                    (*t).size = trail | (bflags & F_LAST);
                    set_footer(t);
                    if lead > 0 {
                        // b -> t -> next
                        self.link_after(b, t);
                    } else {
                        // t replaces b
                        self.replace(b, t, prev, next);
                    }
                    self.bin_add(t);
                } else if lead == 0 {
                    self.unlink(b, prev, next);
                }
                if lead > 0 {
                    self.bin_add(b);
                }
            }
            // The allocated block.
            let a = s as *mut Header;
            let mut aflags = if lead == 0 {
                bflags & (F_FIRST | F_PREV)
            } else {
                F_PREV
            };
            if trail == 0 {
                aflags |= bflags & F_LAST;
            }
            (*a).size = len | aflags;
            if aflags & F_LAST == 0 && trail == 0 {
                // The block after `a` (b's old end) followed a listed block; now an allocated one.
                set_prev_flag(s + len, false);
            }
            (*a).link = tag(s, TAG_ALLOC);
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

    /// Asks the source for a chunk able to hold a block of `len` bytes at `align`, and puts it
    /// on the free list, or makes it the top block (`as_top`; the old one is retired). Returns
    /// its block; None if the source is out of memory.
    fn morecore(&mut self, len: usize, align: usize, as_top: bool) -> Option<*mut Header> {
        // A block of `len + align + MIN_BLOCK` bytes holds any aligned placement (see `fit`).
        let extra = if align > UNIT { align + MIN_BLOCK } else { 0 };
        let need = (CHUNK_HDR + len)
            .checked_add(extra)?
            .div_ceil(PAGE_SIZE)
            .max(1);
        let mut pages = need.max(self.grow);
        if let Some(avail) = self.source.pages_available_hint() {
            if avail < need {
                // The source cannot give the run: fail without asking it.
                return None;
            }
            pages = pages.min(avail);
        }
        let mem = loop {
            if let Some(mem) = self.source.alloc_pages(pages, PAGE_SIZE) {
                break mem;
            }
            if pages == need {
                return None;
            }
            // Refused: ask for less, and start there next time.
            self.grow = (self.grow / 2).max(1);
            pages = (pages / 2).max(need);
        };
        self.short = false;
        let bytes = pages * PAGE_SIZE;
        let b = mem.as_ptr() as *mut Header;
        let c = (mem.as_ptr() as usize + bytes - CHUNK_HDR) as *mut Chunk;
        // SAFETY: the source promises `pages` writable pages at `mem`, unique to us; the other
        // chunk records are valid.
        unsafe {
            (*c).pages = pages;
            // Keep the chunk list in address order.
            let mut prev: *mut Chunk = ptr::null_mut();
            let mut next = self.chunks;
            while !next.is_null() && next < c {
                prev = next;
                next = (*next).next;
            }
            (*c).prev = prev;
            (*c).next = next;
            if prev.is_null() {
                self.chunks = c;
            } else {
                (*prev).next = c;
            }
            if !next.is_null() {
                (*next).prev = c;
            }
            (*b).size = (bytes - CHUNK_HDR) | F_FIRST | F_LAST;
            self.pages += pages;
            self.quick_cap = QUICK_MIN_CAP.max(self.pages * (PAGE_SIZE / 2));
            self.nchunks += 1;
            // Grow geometrically: the next chunk is as big as the heap (within limits).
            let held = 1usize << (usize::BITS - 1 - self.pages.leading_zeros());
            self.grow = self.grow.max(held.min(self.max_grow));
            if as_top {
                self.retire_top();
                self.make_top(b, (*b).size);
                return Some(b);
            }
            Some(self.insert_free(b))
        }
    }

    /// Frees a block: a small one (of an exact class) onto its quick list, flushing the quick
    /// lists into the K&R list when they hold more than their cap; a larger one straight into
    /// the K&R list.
    ///
    /// # Safety
    /// `h` is an allocated block of this heap.
    #[inline]
    unsafe fn release(&mut self, h: *mut Header) {
        // SAFETY: per the contract.
        let len = unsafe { size_of_block(h) };
        self.in_use -= len;
        if len > EXACT_MAX || self.frees_coalesce() {
            // SAFETY: `h` is now a free block of the heap, on no list.
            unsafe { self.insert_free(h) };
            return;
        }
        // SAFETY: `h` is now a free block of the heap, on no list.
        unsafe { self.push_quick(h) };
        if self.quick_bytes > self.quick_cap {
            self.flush_quick();
        }
    }

    /// True while memory is short: the source has refused the heap a chunk since it last gave
    /// one, and less than an eighth of the heap is free. Small blocks are then freed straight
    /// into the K&R list, coalescing, instead of onto the quick lists: allocations are failing or
    /// about to, and each failure would otherwise first flush the quick lists (a failure then
    /// costs little more than TLSF's bitmap search), and coalesced space serves more requests.
    #[inline]
    fn frees_coalesce(&self) -> bool {
        self.short && self.free_bytes() < self.pages * (PAGE_SIZE / 8)
    }

    /// Puts free block `h` (on no list, counted as free) on its quick list.
    ///
    /// # Safety
    /// `h` is a free block of this heap on no list.
    #[inline]
    unsafe fn push_quick(&mut self, h: *mut Header) {
        // SAFETY: per the contract the block and its payload are ours.
        unsafe {
            let len = size_of_block(h);
            (*h).link = tag(h as usize, TAG_QUICK);
            self.quick.push(h, class_of(len));
            self.quick_bytes += len;
        }
    }

    /// Takes block `q` off its quick list, wherever it is on it.
    ///
    /// # Safety
    /// `q` is on a quick list.
    unsafe fn remove_quick(&mut self, q: *mut Header) {
        // SAFETY: per the contract.
        unsafe {
            let len = size_of_block(q);
            self.quick.remove(q, class_of(len));
            self.quick_bytes -= len;
        }
    }

    /// Where free block `bp` goes in the list (which is not empty): `(p, n)`, the list blocks
    /// before and after it in address order (`n` is `p`'s successor). When the block before
    /// `bp` in its chunk is listed (`F_PREV`), that is `p`, read from its footer. Otherwise `n`
    /// is found by stepping over up to [`PHYS_STEPS`] blocks after `bp` in address order (from
    /// a chunk's last block to the first block of the next chunk up, and from the highest chunk
    /// round to the lowest) to the next listed block; else by walking the list from the roving
    /// pointer in the right direction.
    ///
    /// # Safety
    /// `bp` is a free block of the heap, not listed.
    unsafe fn find_place(&self, bp: *mut Header) -> (*mut Header, *mut Header) {
        // SAFETY: only blocks of held chunks (followed through sizes, and from a LAST block to
        // the chunk record after it), footers of listed blocks and list members are read.
        unsafe {
            if let Some(place) = place_after_prev(bp) {
                return place;
            }
            let mut b = bp;
            for _ in 0..PHYS_STEPS {
                b = self.block_after(b);
                if (*b).link & TAG_BITS == 0 {
                    // The first listed block after `bp`: `bp` goes just before it.
                    return (back(b), b);
                }
            }
            let s = self.freep;
            if bp > s {
                let mut p = s;
                loop {
                    let n = (*p).link as *mut Header;
                    if n > bp || n <= p {
                        return (p, n);
                    }
                    p = n;
                }
            } else {
                let mut q = s;
                loop {
                    let b = back(q);
                    if b < bp || b >= q {
                        return (b, q);
                    }
                    q = b;
                }
            }
        }
    }

    /// The block after `b` in address order across chunks: the next in its chunk, or from a
    /// chunk's last block the first of the next chunk up, and from the highest chunk's last block
    /// the lowest chunk's first.
    ///
    /// # Safety
    /// `b` is a block of the heap.
    #[inline]
    unsafe fn block_after(&self, b: *mut Header) -> *mut Header {
        // SAFETY: a LAST block is followed by its chunk's record.
        unsafe {
            let next = b as usize + size_of_block(b);
            if (*b).size & F_LAST != 0 {
                let c = (*(next as *mut Chunk)).next;
                chunk_first(if c.is_null() { self.chunks } else { c })
            } else {
                next as *mut Header
            }
        }
    }

    /// [`Heap::find_place`] given list member `hint` below `bp`: unless `F_PREV` answers, walks
    /// the list up from `hint` and steps over the blocks after `bp` in turn, and stops at
    /// whichever finds the place first. In a batch sorted by address, the walks from each
    /// insertion to the next add up to one pass over the list, while the steps find the place
    /// quickly where free blocks are dense: this costs at most twice the cheaper of the two.
    ///
    /// # Safety
    /// `bp` is a free block of the heap, not listed; `hint` a list member below it.
    unsafe fn find_place_from(
        &self,
        bp: *mut Header,
        hint: *mut Header,
    ) -> (*mut Header, *mut Header) {
        // SAFETY: as in `find_place`.
        unsafe {
            if let Some(place) = place_after_prev(bp) {
                return place;
            }
            let mut p = hint;
            let mut b = bp;
            loop {
                let n = (*p).link as *mut Header;
                if n > bp || n <= p {
                    return (p, n);
                }
                p = n;
                b = self.block_after(b);
                if (*b).link & TAG_BITS == 0 {
                    return (back(b), b);
                }
            }
        }
    }

    /// K&R `free`: inserts `bp` in address order, coalescing with the blocks after and before it
    /// (within its chunk), and bins the result. Returns the block `bp` ended up in: a list member,
    /// or the top block if `bp` was just below it (it then grows down over `bp`, see
    /// [`Heap::join_top`]).
    ///
    /// # Safety
    /// `bp` is a free block of this heap on no list (counted as free).
    unsafe fn insert_free(&mut self, bp: *mut Header) -> *mut Header {
        // SAFETY: all blocks reached are `bp`, blocks after it in its chunk, or list members,
        // all owned by the heap.
        unsafe {
            if self.quick_bytes != 0 {
                self.absorb_quick(bp);
            }
            if self.join_top(bp) {
                return self.top;
            }
            if self.freep.is_null() {
                (*bp).link = bp as usize;
                set_back(bp, bp);
                self.freep = bp;
                self.bin_add(bp);
                set_footer(bp);
                mark_next(bp, true);
                self.spare_chunk |= (*bp).size & SPAN == SPAN;
                return bp;
            }
            let (p, n) = self.find_place(bp);
            self.insert_after(p, n, bp)
        }
    }

    /// Grows free block `bp` (on no list) over the quick blocks that follow it: they are free,
    /// just not yet coalesced.
    ///
    /// # Safety
    /// `bp` is a free block of the heap on no list.
    unsafe fn absorb_quick(&mut self, bp: *mut Header) {
        // SAFETY: `bp` and the blocks after it in its chunk are blocks of the heap.
        unsafe {
            // (`grow_over` changes `bp`'s flags through the pointer: a `loop`, not a `while`.)
            loop {
                if (*bp).size & F_LAST != 0 {
                    break;
                }
                let nb = (bp as usize + size_of_block(bp)) as *mut Header;
                if (*nb).link != tag(nb as usize, TAG_QUICK) {
                    break;
                }
                self.remove_quick(nb);
                grow_over(bp, nb);
            }
        }
    }

    /// Inserts free block `bp` (on no list) between list blocks `p` and `n`, its neighbours in
    /// address order, coalescing with the blocks after and before it, and bins the result.
    /// Returns the block `bp` ended up in. `p` is read only when `bp` merges with it (`F_PREV`):
    /// otherwise it is only written, so finding `n` suffices.
    ///
    /// # Safety
    /// `bp` is a free block of the heap on no list; `p` a list member with successor `n` and
    /// `p < bp < n` in the circular address order.
    #[inline(always)]
    unsafe fn insert_after(
        &mut self,
        p: *mut Header,
        n: *mut Header,
        bp: *mut Header,
    ) -> *mut Header {
        // SAFETY: `p`, `n` and `bp` are free blocks of the heap; `p` and `n` are list members
        // (binned as their sizes say); with `F_PREV`, `p` is the block just before `bp`.
        unsafe {
            let bsize = (*bp).size;
            let blen = bsize & !FLAGS;
            // (In a one-block list `p` is also `n`; it cannot touch both ends.)
            let join_next = bsize & F_LAST == 0 && bp as usize + blen == n as usize;
            let join_prev = bsize & F_PREV != 0;
            let r = if join_prev {
                // `p` grows over `bp`, and over `n` too if it touches it.
                let plen = size_of_block(p);
                debug_assert_eq!(p as usize + plen, bp as usize, "F_PREV without its block");
                let mut len = plen + blen;
                let mut last = bsize & F_LAST;
                if join_next {
                    let nlen = size_of_block(n);
                    if nlen >= BIN_MIN {
                        self.bins.remove(n, class_of(nlen));
                    }
                    len += nlen;
                    last = (*n).size & F_LAST;
                    let nn = (*n).link as *mut Header;
                    (*p).link = nn as usize;
                    set_back(nn, p);
                }
                (*p).size = len | ((*p).size & F_FIRST) | last;
                self.rebin(p, (plen >= BIN_MIN).then(|| class_of(plen)), len);
                p
            } else if join_next {
                // `bp` absorbs `n` and takes its place in the list.
                let nlen = size_of_block(n);
                if nlen >= BIN_MIN {
                    self.bins.remove(n, class_of(nlen));
                }
                let len = blen + nlen;
                (*bp).size = len | (bsize & F_FIRST) | ((*n).size & F_LAST);
                if n == p {
                    // `n` was alone.
                    (*bp).link = bp as usize;
                    set_back(bp, bp);
                } else {
                    let nn = (*n).link as *mut Header;
                    (*bp).link = nn as usize;
                    set_back(bp, p);
                    (*p).link = bp as usize;
                    set_back(nn, bp);
                }
                self.bins.push(bp, class_of(len));
                bp
            } else {
                // p -> bp -> n (in a one-block list, p == n).
                (*bp).link = n as usize;
                set_back(bp, p);
                (*p).link = bp as usize;
                set_back(n, bp);
                if blen >= BIN_MIN {
                    self.bins.push(bp, class_of(blen));
                }
                bp
            };
            set_footer(r);
            if !join_next {
                // `r` ends where `bp` did: the block after it now follows a listed block.
                mark_next(r, true);
            }
            self.freep = back(r);
            self.spare_chunk |= (*r).size & SPAN == SPAN;
            r
        }
    }

    /// Moves every quick block to the K&R list in one pass over the chunks in address order,
    /// inserting each after the last listed block seen (O(blocks of the heap), with sequential
    /// reads): cheaper than one search per block when the quick lists hold many blocks. Returns
    /// true if pages went back to the source.
    fn sweep_quick(&mut self) -> bool {
        let mut released = false;
        // The last listed block below the sweep's position.
        let mut last: *mut Header = ptr::null_mut();
        let mut c = self.chunks;
        while !c.is_null() {
            // SAFETY: chunk records and the blocks tiling each chunk are valid; `next` is read
            // before the chunk may be given back; `last` is a list member below `b`.
            unsafe {
                let next_chunk = (*c).next;
                let mut b = chunk_first(c);
                loop {
                    let link = (*b).link;
                    if link == tag(b as usize, TAG_QUICK) {
                        self.remove_quick(b);
                        if last.is_null() {
                            b = self.insert_free(b);
                        } else {
                            self.absorb_quick(b);
                            if self.join_top(b) {
                                b = self.top;
                            } else {
                                b = self.insert_after(last, (*last).link as *mut Header, b);
                            }
                        }
                        if b == self.top {
                            // It joined the top block, its chunk's last (and perhaps the
                            // listed block `last` with it).
                            last = ptr::null_mut();
                            break;
                        }
                        if (*b).size & SPAN == SPAN {
                            let p = back(b);
                            if self.maybe_return_chunk(b) {
                                released = true;
                                last = if p == b { ptr::null_mut() } else { p };
                                break;
                            }
                        }
                        last = b;
                    } else if link & TAG_BITS == 0 {
                        last = b;
                    }
                    if (*b).size & F_LAST != 0 {
                        break;
                    }
                    b = (b as usize + size_of_block(b)) as *mut Header;
                }
                c = next_chunk;
            }
            if self.quick_bytes == 0 {
                break;
            }
        }
        released
    }

    /// Gives `r`'s chunk back to the source if `r` covers all of it. True if it did.
    ///
    /// # Safety
    /// `r` is a list member.
    unsafe fn maybe_return_chunk(&mut self, r: *mut Header) -> bool {
        // SAFETY: `r` is a list member; a block with both flags spans its chunk, whose record
        // sits just after it.
        unsafe {
            if (*r).size & SPAN != SPAN {
                return false;
            }
            let c = (r as usize + size_of_block(r)) as *mut Chunk;
            let pages = (*c).pages;
            let mem = NonNull::new_unchecked(r as *mut u8);
            let prev = back(r);
            let next = (*r).link as *mut Header;
            // Take it off the lists first: the source may overwrite the memory.
            self.bin_del(r);
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
                self.quick_cap = QUICK_MIN_CAP.max(self.pages * (PAGE_SIZE / 2));
                self.nchunks -= 1;
                true
            } else {
                // Declined: the chunk stays ours. Put the block back (nothing is adjacent
                // within the chunk, so nothing merges).
                self.insert_free(r);
                false
            }
        }
    }

    /// Moves every quick-list block to the K&R list, coalescing, and gives chunks that became
    /// wholly free back to the source: as a batch sorted by address ([`Heap::insert_sorted`]),
    /// or, when the quick lists hold much of the heap, in one sweep over the chunks
    /// ([`Heap::sweep_quick`]). Returns true if pages went back to the source.
    fn flush_quick(&mut self) -> bool {
        if self.quick_bytes == 0 {
            return self.return_free_chunks();
        }
        if self.quick_bytes >= self.in_use / 16 {
            return self.sweep_quick() | self.return_free_chunks();
        }
        // SAFETY: `take_quick` empties the quick lists into a list of their blocks, which
        // `insert_sorted` then lists.
        let released = unsafe {
            let batch = sort_by_address(self.take_quick());
            self.insert_sorted(batch)
        };
        released | self.return_free_chunks()
    }

    /// Empties the quick lists into one list of their blocks, linked through payload word 0 and
    /// ending in null. The blocks keep their quick tag (so insertions step over the ones not yet
    /// listed) and stay counted as free.
    fn take_quick(&mut self) -> *mut Header {
        let mut all: *mut Header = ptr::null_mut();
        for w in 0..NWORDS {
            while self.quick.map[w] != 0 {
                let c = w * 64 + self.quick.map[w].trailing_zeros() as usize;
                self.quick.map[w] &= self.quick.map[w] - 1;
                let mut q = self.quick.head[c];
                self.quick.head[c] = ptr::null_mut();
                while !q.is_null() {
                    // SAFETY: `q` is a member of quick list `c`; its payload words are ours.
                    unsafe {
                        let next = Classes::<0>::next(q);
                        set_back(q, all);
                        all = q;
                        q = next;
                    }
                }
            }
        }
        self.quick_bytes = 0;
        all
    }

    /// Lists the blocks of `batch` (from [`Heap::take_quick`], sorted by address), each merged
    /// with the batch blocks that follow it in memory and then inserted in the K&R list. Sorted,
    /// each insertion finds its place by walking the list on from the previous one: the batch
    /// costs one pass over the part of the list it spans. True if pages went back to the source.
    ///
    /// # Safety
    /// `batch` is a null-terminated list through payload word 0 of quick-tagged free blocks on no
    /// list, in increasing address order, holding every quick-tagged block of the heap.
    unsafe fn insert_sorted(&mut self, batch: *mut Header) -> bool {
        let mut released = false;
        let mut hint: *mut Header = ptr::null_mut();
        let mut q = batch;
        // SAFETY: every batch block is a free block of the heap whose payload words are ours;
        // `hint` is null or a list member below `q` (the previous result, not given back).
        unsafe {
            while !q.is_null() {
                let mut next = back(q);
                // The quick blocks right after `q` in its chunk are the next ones in the batch.
                while (*q).size & F_LAST == 0 && next as usize == q as usize + size_of_block(q) {
                    let after = back(next);
                    grow_over(q, next);
                    next = after;
                }
                // (With the quick lists empty, `insert_free` absorbs nothing.)
                let r = if hint.is_null() {
                    self.insert_free(q)
                } else if self.join_top(q) {
                    self.top
                } else {
                    let (p, n) = self.find_place_from(q, hint);
                    self.insert_after(p, n, q)
                };
                if r == self.top {
                    // (The top block is on no list; the listed block it may have taken in
                    // could have been `hint`.)
                    hint = ptr::null_mut();
                } else if (*r).size & SPAN == SPAN && self.maybe_return_chunk(r) {
                    released = true;
                    hint = ptr::null_mut();
                } else {
                    hint = r;
                }
                q = next;
            }
        }
        released
    }

    /// Gives back every chunk that is one free, listed block (large blocks are freed straight
    /// into the list, so a chunk can become wholly free outside a flush). True if any went back.
    fn return_free_chunks(&mut self) -> bool {
        if !self.spare_chunk {
            return false;
        }
        self.spare_chunk = false;
        // SAFETY: the top block, if any, is a block of the heap.
        if !self.top.is_null() && unsafe { (*self.top).size } & SPAN == SPAN {
            // A wholly free chunk like any other: listed, then given back below.
            self.retire_top();
            self.spare_chunk = false;
        }
        let mut released = false;
        let mut c = self.chunks;
        while !c.is_null() {
            // SAFETY: chunk records are valid while the chunk is held; `next` is read before the
            // chunk may be given back.
            unsafe {
                let next = (*c).next;
                let b = chunk_first(c);
                if (*b).size & SPAN == SPAN && (*b).link & TAG_BITS == 0 {
                    released |= self.maybe_return_chunk(b);
                }
                c = next;
            }
        }
        released
    }

    /// Gives every wholly free chunk back to the source (flushing the quick lists first).
    /// Returns the number of pages the heap holds afterwards.
    pub fn release_free_pages(&mut self) -> usize {
        self.flush_quick();
        // Retry chunks the source declined before.
        self.spare_chunk = true;
        self.return_free_chunks();
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
    #[inline]
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
                // Shrink in place; a tail under a quarter of the block stays with it (a later
                // growth back is then free), unless it can join a free block after it.
                if cur - new_len >= cur / 4 || self.next_is_free(a) {
                    self.split_tail(a, new_len);
                }
                return Ok(ptr);
            }
            // Grow into the top block when it follows.
            let t = self.top;
            if (*a).size & F_LAST == 0 && a as usize + cur == t as usize {
                let total = cur + size_of_block(t);
                if total >= new_len {
                    let keep = (*a).size & (F_FIRST | F_PREV);
                    self.in_use += self.take_top(a, keep, total, new_len) - cur;
                    return Ok(ptr);
                }
            }
            // Grow into the free blocks that follow, if together they are enough.
            let mut total = cur;
            let mut last = a;
            while total < new_len && (*last).size & F_LAST == 0 {
                let nb = (last as usize + size_of_block(last)) as *mut Header;
                let link = (*nb).link;
                if link & TAG_BITS != 0 && link != tag(nb as usize, TAG_QUICK) {
                    break;
                }
                total += size_of_block(nb);
                last = nb;
            }
            if total >= new_len {
                let last_listed = (*last).link & TAG_BITS == 0;
                let mut nb = (a as usize + cur) as *mut Header;
                loop {
                    let nlen = size_of_block(nb);
                    if (*nb).link & TAG_BITS == 0 {
                        self.bin_del(nb);
                        let prev = back(nb);
                        let next = (*nb).link as *mut Header;
                        self.unlink(nb, prev, next);
                    } else {
                        self.remove_quick(nb);
                    }
                    self.in_use += nlen;
                    if nb == last {
                        break;
                    }
                    nb = (nb as usize + nlen) as *mut Header;
                }
                (*a).size = total | ((*a).size & (F_FIRST | F_PREV)) | ((*last).size & F_LAST);
                if last_listed {
                    // The block after it followed a listed block; now an allocated one.
                    mark_next(a, false);
                }
                self.split_tail(a, new_len);
                return Ok(ptr);
            }
            let new = self.alloc_len(new_len, old.align())?;
            ptr::copy_nonoverlapping(ptr.as_ptr(), new.as_ptr(), old.size().min(new_size));
            self.release(a);
            Ok(new)
        }
    }

    /// True if the block after `a` in its chunk is free (listed or quick).
    ///
    /// # Safety
    /// `a` is a block of the heap.
    unsafe fn next_is_free(&self, a: *mut Header) -> bool {
        // SAFETY: the block after a non-LAST block is a block of the heap.
        unsafe {
            if (*a).size & F_LAST != 0 {
                return false;
            }
            let nb = (a as usize + size_of_block(a)) as *mut Header;
            let link = (*nb).link;
            link & TAG_BITS == 0 || link == tag(nb as usize, TAG_QUICK) || nb == self.top
        }
    }

    /// Shrinks allocated block `a` to `len` bytes if the rest makes a block; frees the rest.
    unsafe fn split_tail(&mut self, a: *mut Header, len: usize) {
        // SAFETY: `a` is an allocated block of the heap of at least `len` bytes.
        unsafe {
            let asize = (*a).size;
            let cur = asize & !FLAGS;
            let tlen = cur - len;
            if tlen < MIN_BLOCK {
                return;
            }
            // (Sizes are kept in registers: the tail's header is on a line just written, which
            // reading back would stall on.)
            let t = (a as usize + len) as *mut Header;
            let tlast = asize & F_LAST;
            (*a).size = len | (asize & (F_FIRST | F_PREV));
            self.in_use -= tlen;
            if tlast == 0 {
                let nb = (t as usize + tlen) as *mut Header;
                if nb == self.top {
                    // The top block grows down over the tail (`a` is allocated: no F_PREV).
                    self.make_top(t, (tlen + size_of_block(nb)) | F_LAST);
                    return;
                }
                if (*nb).link & TAG_BITS == 0 {
                    // The tail joins the listed block after it, taking its place in the list.
                    let nsize = (*nb).size;
                    let jlen = tlen + (nsize & !FLAGS);
                    self.bin_del(nb);
                    let prev = back(nb);
                    let next = (*nb).link as *mut Header;
                    (*t).size = jlen | (nsize & F_LAST);
                    self.replace(nb, t, prev, next);
                    self.bins.push(t, class_of(jlen));
                    set_footer_len(t, jlen);
                    return;
                }
            }
            (*t).size = tlen | tlast;
            if tlen > EXACT_MAX || self.frees_coalesce() {
                // Freed like any large block: straight into the K&R list, coalescing.
                self.insert_free(t);
                return;
            }
            if tlast == 0 {
                // A quick block after it is absorbed.
                self.absorb_quick(t);
            }
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
                let start = chunk_first(c) as usize;
                let end = c as usize + CHUNK_HDR;
                if addr >= start && addr < end {
                    if addr % UNIT != 0 {
                        return Err(FreeError::Misaligned);
                    }
                    let mut b = start;
                    while b < c as usize {
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

    /// Bytes in free blocks (listed or quick): everything held that is neither in use nor a
    /// chunk record, so only `in_use` needs maintaining.
    fn free_bytes(&self) -> usize {
        self.pages * PAGE_SIZE - self.nchunks * CHUNK_HDR - self.in_use
    }

    /// Current statistics. Walks the free list and the quick lists (O(free blocks)).
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
        if !self.top.is_null() {
            // SAFETY: the top block is a free block of the heap.
            largest = largest.max(unsafe { size_of_block(self.top) } - UNIT);
        }
        let mut quick_blocks = 0;
        for &head in self.quick.head.iter() {
            let mut q = head;
            while !q.is_null() {
                quick_blocks += 1;
                // SAFETY: a quick-list member: a valid free block, its payload holding the links.
                unsafe {
                    largest = largest.max(size_of_block(q) - UNIT);
                    q = Classes::<0>::next(q);
                }
            }
        }
        HeapStats {
            bytes_in_use: self.in_use,
            bytes_free: self.free_bytes(),
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
        let mut seen_top = false;
        let mut in_use = 0;
        let mut free = 0;
        let mut pages = 0;
        let mut c = self.chunks;
        // SAFETY: as in `find_block`.
        unsafe {
            let mut last: *mut Chunk = ptr::null_mut();
            while !c.is_null() {
                assert!(last < c, "chunk list not address-ordered");
                assert_eq!((*c).prev, last, "broken chunk back link");
                last = c;
                pages += (*c).pages;
                let start = chunk_first(c) as usize;
                let end = c as usize;
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
                    } else if link == tag(b, TAG_TOP) {
                        assert_eq!(h, self.top, "top tag on a block that is not the top");
                        assert!(b + len == end, "top block not its chunk's last");
                        free += len;
                        seen_top = true;
                    } else {
                        panic!("block at {b:#x} has a corrupt tag {link:#x}");
                    }
                    assert!(
                        !(listed && prev_free_listed),
                        "two adjacent listed free blocks at {b:#x}"
                    );
                    assert_eq!(
                        (*h).size & F_PREV != 0,
                        prev_free_listed,
                        "F_PREV wrong at {b:#x}"
                    );
                    if listed {
                        assert_eq!(
                            *((b + len - 8) as *const usize),
                            b,
                            "listed block at {b:#x} without its footer"
                        );
                    }
                    prev_free_listed = listed;
                    b += len;
                }
                assert_eq!(b, end, "blocks overrun their chunk");
                c = (*c).next;
            }
        }
        let mut binnable = 0;
        if !self.freep.is_null() {
            let mut b = self.freep;
            let mut wraps = 0;
            // SAFETY: list members are free blocks of the heap.
            unsafe {
                loop {
                    let n = (*b).link as *mut Header;
                    assert_eq!(back(n), b, "broken back link");
                    if n <= b {
                        wraps += 1;
                    }
                    if size_of_block(b) >= BIN_MIN {
                        binnable += 1;
                    }
                    b = n;
                    if b == self.freep {
                        break;
                    }
                }
            }
            assert_eq!(wraps, 1, "free list not address-ordered");
        }
        let mut binned = 0;
        for (c, &head) in self.bins.head.iter().enumerate() {
            assert_eq!(
                self.bins.map[c / 64] >> (c % 64) & 1 == 1,
                !head.is_null(),
                "bin bit of class {c}"
            );
            let mut q = head;
            let mut prev: *mut Header = ptr::null_mut();
            while !q.is_null() {
                // SAFETY: bin members are listed free blocks of the heap.
                unsafe {
                    assert_eq!((*q).link & TAG_BITS, 0, "binned block not listed");
                    let len = size_of_block(q);
                    assert!(len >= BIN_MIN, "small block binned");
                    assert_eq!(class_of(len), c, "block in the wrong bin");
                    let (next, p) = Classes::<1>::get(q);
                    assert!(prev.is_null() || p == prev, "broken bin back link");
                    binned += 1;
                    prev = q;
                    q = next;
                }
            }
        }
        assert_eq!(binned, binnable, "listed blocks missing from the bins");
        let mut quick_bytes = 0;
        for (c, &head) in self.quick.head.iter().enumerate() {
            assert_eq!(
                self.quick.map[c / 64] >> (c % 64) & 1 == 1,
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
                    let (next, p) = Classes::<0>::get(q);
                    assert!(prev.is_null() || p == prev, "broken quick back link");
                    quick_bytes += size_of_block(q);
                    prev = q;
                    q = next;
                }
            }
        }
        assert_eq!(quick_bytes, self.quick_bytes, "quick bytes");
        assert_eq!(seen_top, !self.top.is_null(), "top block not in any chunk");
        assert_eq!(in_use, self.in_use, "bytes in use");
        assert_eq!(free, self.free_bytes(), "bytes free");
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

/// Sorts a null-terminated list of blocks linked through payload word 0 by address: a merge sort
/// that takes the blocks one at a time and carries them up a stack of sorted runs of 1, 2, 4, ...
/// blocks, like a binary counter (each block takes part in about log2(n) merges, with one
/// comparison each; no memory but the stack of run heads). Returns the new head.
///
/// # Safety
/// Every block on the list is a free block whose payload word 0 is ours.
unsafe fn sort_by_address(mut list: *mut Header) -> *mut Header {
    /// Runs of up to 2^RUNS blocks: far more blocks than any address space holds.
    const RUNS: usize = 48;
    // SAFETY: only payload words 0 of the list's blocks are read and written.
    unsafe {
        if list.is_null() || back(list).is_null() {
            return list;
        }
        // runs[i] is null or a sorted list of 2^i blocks.
        let mut runs = [ptr::null_mut::<Header>(); RUNS];
        let mut used = 0;
        while !list.is_null() {
            let mut carry = list;
            list = back(list);
            set_back(carry, ptr::null_mut());
            let mut i = 0;
            while i < used && !runs[i].is_null() {
                carry = merge_by_address(runs[i], carry);
                runs[i] = ptr::null_mut();
                i += 1;
            }
            runs[i] = carry;
            used = used.max(i + 1);
        }
        let mut sorted = ptr::null_mut();
        for &run in &runs[..used] {
            if !run.is_null() {
                sorted = merge_by_address(run, sorted);
            }
        }
        sorted
    }
}

/// Merges two lists sorted by address (null-terminated, linked through payload word 0).
///
/// # Safety
/// As for [`sort_by_address`], for both lists.
#[inline]
unsafe fn merge_by_address(mut a: *mut Header, mut b: *mut Header) -> *mut Header {
    let mut head = ptr::null_mut();
    // Where the next block's address goes: `head`, then each block's payload word 0.
    let mut link: *mut *mut Header = &mut head;
    // SAFETY: only payload words 0 of the lists' blocks (and `head`) are read and written.
    unsafe {
        while !a.is_null() && !b.is_null() {
            let next;
            if a < b {
                next = a;
                a = back(a);
            } else {
                next = b;
                b = back(b);
            }
            *link = next;
            link = payload(next) as *mut *mut Header;
        }
        *link = if a.is_null() { b } else { a };
    }
    head
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

/// Writes the footer of listed block `b`: its own address, in its last word (a listed block is at
/// least 32 bytes, so the footer is past its back link, and past its bin links when it has them).
///
/// # Safety
/// `b` is a listed free block with its final size.
#[inline]
unsafe fn set_footer(b: *mut Header) {
    // SAFETY: per the contract.
    unsafe { set_footer_len(b, size_of_block(b)) }
}

/// [`set_footer`] for block `b` of `len` bytes, without reading its header.
///
/// # Safety
/// `b` is a listed free block of `len` bytes.
#[inline]
unsafe fn set_footer_len(b: *mut Header, len: usize) {
    // SAFETY: per the contract the block's last word is ours.
    unsafe { *((b as usize + len - 8) as *mut usize) = b as usize }
}

/// The listed block just before `b` in its chunk, from its footer.
///
/// # Safety
/// `b` is a block of the heap with `F_PREV` set.
#[inline]
unsafe fn prev_listed(b: *mut Header) -> *mut Header {
    // SAFETY: `F_PREV` says the word before `b` is the footer of a listed block.
    unsafe { *((b as usize - 8) as *const *mut Header) }
}

/// `bp`'s place in the list when the block before it is listed (`F_PREV`): that block and its
/// successor. None otherwise.
///
/// # Safety
/// `bp` is a block of the heap.
#[inline]
unsafe fn place_after_prev(bp: *mut Header) -> Option<(*mut Header, *mut Header)> {
    // SAFETY: with `F_PREV`, `prev_listed` gives a list member, whose link is its successor.
    unsafe {
        if (*bp).size & F_PREV == 0 {
            return None;
        }
        let p = prev_listed(bp);
        Some((p, (*p).link as *mut Header))
    }
}

/// Grows free block `b` over the free block `nb` right after it in its chunk (sizes and flags
/// only; taking `nb` off any list is the caller's).
///
/// # Safety
/// `nb` is the block after `b` in its chunk, both free blocks of the heap.
#[inline]
unsafe fn grow_over(b: *mut Header, nb: *mut Header) {
    // SAFETY: per the contract both headers are valid.
    unsafe {
        (*b).size = (size_of_block(b) + size_of_block(nb))
            | ((*b).size & (F_FIRST | F_PREV))
            | ((*nb).size & F_LAST);
    }
}

/// Sets (`listed`) or clears `F_PREV` of the block after `b` in its chunk, if any.
///
/// # Safety
/// `b` is a block of the heap with its final size.
#[inline]
unsafe fn mark_next(b: *mut Header, listed: bool) {
    // SAFETY: the block after a block that is not its chunk's last is a block of the heap.
    unsafe {
        if (*b).size & F_LAST == 0 {
            set_prev_flag(b as usize + size_of_block(b), listed);
        }
    }
}

/// Sets (`listed`) or clears `F_PREV` of the block at `at` (for callers that know where the
/// next block is without reading a header they have just written).
///
/// # Safety
/// `at` is a block of the heap.
#[inline]
unsafe fn set_prev_flag(at: usize, listed: bool) {
    let n = at as *mut Header;
    // SAFETY: per the contract `n` is a block header.
    unsafe {
        if listed {
            (*n).size |= F_PREV;
        } else {
            (*n).size &= !F_PREV;
        }
    }
}

#[cfg(test)]
mod sort_tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    #[test]
    fn sort_by_address_sorts_every_length_and_order() {
        // Blocks of 32 bytes in one buffer, linked through payload word 0 in shuffled orders.
        let mut buf = std::vec![0u64; 4 * 64];
        let base = buf.as_mut_ptr() as usize;
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        for n in 0..64 {
            for _ in 0..8 {
                let mut idx: Vec<usize> = (0..n).collect();
                for i in (1..idx.len()).rev() {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    idx.swap(i, rng as usize % (i + 1));
                }
                let blocks: Vec<*mut Header> = idx
                    .iter()
                    .map(|&i| (base + i * 32) as *mut Header)
                    .collect();
                // SAFETY: every block lies in `buf`, 32 bytes each; word 0 of the payload is
                // the link.
                unsafe {
                    for w in blocks.windows(2) {
                        set_back(w[0], w[1]);
                    }
                    if let Some(&last) = blocks.last() {
                        set_back(last, ptr::null_mut());
                    }
                    let head = blocks.first().copied().unwrap_or(ptr::null_mut());
                    let mut out = Vec::new();
                    let mut b = sort_by_address(head);
                    while !b.is_null() {
                        out.push(b as usize);
                        b = back(b);
                    }
                    let want: Vec<usize> = (0..n).map(|i| base + i * 32).collect();
                    assert_eq!(out, want, "{n} blocks");
                }
            }
        }
    }
}
