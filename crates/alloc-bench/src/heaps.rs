//! The heap allocators under test, behind one trait, each set up on the same arena.

use core::alloc::Layout;
use core::ptr::NonNull;

/// What the workloads need from a heap.
pub trait BenchHeap {
    fn alloc(&mut self, l: Layout) -> Option<NonNull<u8>>;
    /// # Safety
    /// `p` is live with layout `l`.
    unsafe fn free(&mut self, p: NonNull<u8>, l: Layout);
    /// # Safety
    /// `p` is live with layout `l`.
    unsafe fn realloc(&mut self, p: NonNull<u8>, l: Layout, new: usize) -> Option<NonNull<u8>> {
        let nl = Layout::from_size_align(new, l.align()).ok()?;
        let q = self.alloc(nl)?;
        // SAFETY: both blocks live and distinct; copy the common prefix.
        unsafe {
            core::ptr::copy_nonoverlapping(p.as_ptr(), q.as_ptr(), l.size().min(new));
            self.free(p, l);
        }
        Some(q)
    }
}

/// The arena every allocator gets: one block of host memory, page-aligned at a chosen offset
/// from a 2 MiB boundary ([`Arena::place`]).
pub struct Arena {
    buf: Vec<u8>,
    pub size: usize,
    offset: usize,
}

impl Arena {
    const ALIGN: usize = 2 << 20;

    pub fn new(size: usize) -> Arena {
        // Filled (not zeroed) so every page is touched before timing.
        Arena {
            buf: vec![0x5au8; size + 2 * Self::ALIGN],
            size,
            offset: 0,
        }
    }

    /// Places the arena `Arena::offset_pages(k)` pages above a 2 MiB boundary. A heap whose page
    /// source hands out naturally aligned runs (kmalloc over kalloc's buddy frames) lays out its
    /// chunks by the arena's address, and its figures depended on it: with the arena wherever the
    /// host put the buffer, kmalloc's free at 100 k fragments took 60 ns in one run and 25-66 us
    /// in others. So the placement is chosen, not left to chance, and varied (by round in the
    /// timed workloads, two placements in the fragmentation one), the same for every heap.
    pub fn place(&mut self, k: usize) {
        self.offset = Self::offset_pages(k) * 4096;
    }

    /// Placement `k`'s offset in pages: 0 (2 MiB-aligned) for `k` = 0, then steps of 129 pages
    /// modulo 512 (2 MiB): a different offset for each of 512 placements.
    pub fn offset_pages(k: usize) -> usize {
        (k * 129) % 512
    }

    pub fn base(&mut self) -> *mut u8 {
        let p = self.buf.as_mut_ptr() as usize;
        (p.next_multiple_of(Self::ALIGN) + self.offset) as *mut u8
    }
}

pub const NAMES: [&str; 9] = [
    "kmalloc",
    "kmalloc_classic",
    "talc",
    "rlsf",
    "dlmalloc",
    "linked_list_allocator",
    "buddy_system_allocator",
    "system",
    "bump",
];
/// The peers the goal compares against.
pub const PEERS: [&str; 5] = [
    "talc",
    "rlsf",
    "dlmalloc",
    "linked_list_allocator",
    "buddy_system_allocator",
];

/// The address range heap `name` hands out blocks from, when built over `arena`: the arena's,
/// except for the system heap's.
pub fn bounds(name: &str, arena: &mut Arena) -> Option<(usize, usize)> {
    let base = arena.base() as usize;
    (name != "system").then_some((base, base + arena.size))
}

/// Builds allocator `name` over `arena` (reinitialised; the arena must outlive the heap).
pub fn make(name: &str, arena: &mut Arena) -> Box<dyn BenchHeap> {
    let base = arena.base();
    let size = arena.size;
    match name {
        "kmalloc" => crate::kmheap::make(base, size),
        "kmalloc_classic" => crate::kmheap::make_classic(base, size),
        "talc" => {
            let mut t = talc::base::Talc::new(talc::source::Manual);
            // SAFETY: the arena is ours for the heap's life.
            unsafe { t.claim(base, size) }.expect("claim");
            Box::new(Talc(t))
        }
        "rlsf" => {
            let mut t: Rlsf = rlsf::Tlsf::new();
            // SAFETY: the arena is ours for the heap's life.
            unsafe {
                t.insert_free_block_ptr(
                    NonNull::new(core::ptr::slice_from_raw_parts_mut(base, size)).unwrap(),
                )
            };
            Box::new(RlsfHeap(t))
        }
        "dlmalloc" => Box::new(Dl(dlmalloc::Dlmalloc::new_with_allocator(FixedArena {
            base: base as usize,
            size,
            given: core::cell::Cell::new(false),
        }))),
        "linked_list_allocator" => {
            // SAFETY: the arena is ours for the heap's life.
            Box::new(Lla(unsafe { linked_list_allocator::Heap::new(base, size) }))
        }
        "buddy_system_allocator" => {
            let mut h = buddy_system_allocator::Heap::<32>::new();
            // SAFETY: the arena is ours for the heap's life.
            unsafe { h.init(base as usize, size) };
            Box::new(Buddy(h))
        }
        "system" => Box::new(System),
        "bump" => Box::new(Bump {
            next: base as usize,
            end: base as usize + size,
        }),
        _ => unreachable!("unknown allocator {name}"),
    }
}

struct Talc(talc::base::Talc<talc::source::Manual, talc::DefaultBinning>);
impl BenchHeap for Talc {
    fn alloc(&mut self, l: Layout) -> Option<NonNull<u8>> {
        // SAFETY: non-zero sizes only in the workloads.
        unsafe { self.0.allocate(l) }
    }
    unsafe fn free(&mut self, p: NonNull<u8>, l: Layout) {
        // SAFETY: forwarded.
        unsafe { self.0.deallocate(p.as_ptr(), l) }
    }
    unsafe fn realloc(&mut self, p: NonNull<u8>, l: Layout, new: usize) -> Option<NonNull<u8>> {
        // As talc's own `GlobalAlloc::realloc` does: in place if it can, else allocate, copy,
        // free.
        // SAFETY: `p` is live with layout `l` (forwarded); `new` is non-zero.
        if unsafe { self.0.try_realloc_in_place(p.as_ptr(), l, new) } {
            return Some(p);
        }
        let nl = Layout::from_size_align(new, l.align()).ok()?;
        // SAFETY: non-zero size; on success both blocks are live and distinct.
        unsafe {
            let q = self.0.allocate(nl)?;
            core::ptr::copy_nonoverlapping(p.as_ptr(), q.as_ptr(), l.size().min(new));
            self.0.deallocate(p.as_ptr(), l);
            Some(q)
        }
    }
}

/// dlmalloc's system interface over the fixed arena: the whole arena on the first request, then
/// nothing (so dlmalloc works within the same bytes as every other heap, and never maps memory).
struct FixedArena {
    base: usize,
    size: usize,
    given: core::cell::Cell<bool>,
}

// SAFETY: `alloc` hands out the arena once, as one region the heap owns from then on, and nothing
// else; nothing is ever unmapped or remapped.
unsafe impl dlmalloc::Allocator for FixedArena {
    fn alloc(&self, _size: usize) -> (*mut u8, usize, u32) {
        if self.given.replace(true) {
            return (core::ptr::null_mut(), 0, 0);
        }
        // Flag bit 0 (EXTERN): the region is not the system's to merge, trim or free.
        (self.base as *mut u8, self.size, 1)
    }
    fn remap(&self, _ptr: *mut u8, _old: usize, _new: usize, _can_move: bool) -> *mut u8 {
        core::ptr::null_mut()
    }
    fn free_part(&self, _ptr: *mut u8, _old: usize, _new: usize) -> bool {
        false
    }
    fn free(&self, _ptr: *mut u8, _size: usize) -> bool {
        false
    }
    fn can_release_part(&self, _flags: u32) -> bool {
        false
    }
    fn allocates_zeros(&self) -> bool {
        false
    }
    fn page_size(&self) -> usize {
        4096
    }
}

struct Dl(dlmalloc::Dlmalloc<FixedArena>);
impl BenchHeap for Dl {
    fn alloc(&mut self, l: Layout) -> Option<NonNull<u8>> {
        // SAFETY: non-zero sizes, power-of-two alignments.
        NonNull::new(unsafe { self.0.malloc(l.size(), l.align()) })
    }
    unsafe fn free(&mut self, p: NonNull<u8>, l: Layout) {
        // SAFETY: forwarded.
        unsafe { self.0.free(p.as_ptr(), l.size(), l.align()) }
    }
    unsafe fn realloc(&mut self, p: NonNull<u8>, l: Layout, new: usize) -> Option<NonNull<u8>> {
        // SAFETY: forwarded.
        NonNull::new(unsafe { self.0.realloc(p.as_ptr(), l.size(), l.align(), new) })
    }
}

/// rlsf at its best configuration: SLLEN 64 (64 second-level lists per power of two, the most
/// its bitmaps allow; talc 5's benchmark uses it too) and FLLEN 28 (blocks up to 16 << 28 = 4 GiB,
/// above every arena here). Measured in talc's heap efficiency (5 rounds of 6 trials): 97.3 %,
/// against 97.1 % with SLLEN 32; usize bitmaps with FLLEN 52 (talc's choice) gave the same 97.3 %;
/// the speeds of the three were within this machine's noise of each other.
type Rlsf = rlsf::Tlsf<'static, u32, u64, 28, 64>;
struct RlsfHeap(Rlsf);
impl BenchHeap for RlsfHeap {
    fn alloc(&mut self, l: Layout) -> Option<NonNull<u8>> {
        self.0.allocate(l)
    }
    unsafe fn free(&mut self, p: NonNull<u8>, l: Layout) {
        // SAFETY: forwarded.
        unsafe { self.0.deallocate(p, l.align()) }
    }
    unsafe fn realloc(&mut self, p: NonNull<u8>, l: Layout, new: usize) -> Option<NonNull<u8>> {
        // SAFETY: forwarded.
        unsafe {
            self.0
                .reallocate(p, Layout::from_size_align(new, l.align()).ok()?)
        }
    }
}

struct Lla(linked_list_allocator::Heap);
impl BenchHeap for Lla {
    fn alloc(&mut self, l: Layout) -> Option<NonNull<u8>> {
        self.0.allocate_first_fit(l).ok()
    }
    unsafe fn free(&mut self, p: NonNull<u8>, l: Layout) {
        // SAFETY: forwarded.
        unsafe { self.0.deallocate(p, l) }
    }
}

struct Buddy(buddy_system_allocator::Heap<32>);
impl BenchHeap for Buddy {
    fn alloc(&mut self, l: Layout) -> Option<NonNull<u8>> {
        self.0.alloc(l).ok()
    }
    unsafe fn free(&mut self, p: NonNull<u8>, l: Layout) {
        self.0.dealloc(p, l)
    }
}

struct System;
impl BenchHeap for System {
    fn alloc(&mut self, l: Layout) -> Option<NonNull<u8>> {
        // SAFETY: non-zero sizes only.
        NonNull::new(unsafe { std::alloc::alloc(l) })
    }
    unsafe fn free(&mut self, p: NonNull<u8>, l: Layout) {
        // SAFETY: forwarded.
        unsafe { std::alloc::dealloc(p.as_ptr(), l) }
    }
    unsafe fn realloc(&mut self, p: NonNull<u8>, l: Layout, new: usize) -> Option<NonNull<u8>> {
        // SAFETY: forwarded.
        NonNull::new(unsafe { std::alloc::realloc(p.as_ptr(), l, new) })
    }
}

/// The floor: never reuses memory.
struct Bump {
    next: usize,
    end: usize,
}
impl BenchHeap for Bump {
    fn alloc(&mut self, l: Layout) -> Option<NonNull<u8>> {
        let s = self.next.next_multiple_of(l.align());
        let e = s.checked_add(l.size())?;
        if e > self.end {
            return None;
        }
        self.next = e;
        NonNull::new(s as *mut u8)
    }
    unsafe fn free(&mut self, _p: NonNull<u8>, _l: Layout) {}
}
