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

/// The arena every allocator gets: one aligned block of host memory.
pub struct Arena {
    buf: Vec<u8>,
    pub size: usize,
}

impl Arena {
    pub fn new(size: usize) -> Arena {
        // Filled (not zeroed) so every page is touched before timing.
        Arena {
            buf: vec![0x5au8; size + 4096],
            size,
        }
    }
    pub fn base(&mut self) -> *mut u8 {
        let p = self.buf.as_mut_ptr() as usize;
        p.next_multiple_of(4096) as *mut u8
    }
}

pub const NAMES: [&str; 7] = [
    "kmalloc",
    "talc",
    "rlsf",
    "linked_list_allocator",
    "buddy_system_allocator",
    "system",
    "bump",
];
/// The peers the goal compares against.
pub const PEERS: [&str; 4] = [
    "talc",
    "rlsf",
    "linked_list_allocator",
    "buddy_system_allocator",
];

/// Builds allocator `name` over `arena` (reinitialised; the arena must outlive the heap).
pub fn make(name: &str, arena: &mut Arena) -> Box<dyn BenchHeap> {
    let base = arena.base();
    let size = arena.size;
    match name {
        "kmalloc" => {
            let frames = Box::leak(Box::new(kalloc::LockedFrameAllocator::new(0)));
            // SAFETY: the arena is host memory used by nothing else while this heap lives.
            unsafe {
                frames.lock().add_range(
                    kalloc::PhysAddr::new(base as u64),
                    kalloc::PhysAddr::new((base as usize + size) as u64),
                )
            }
            .expect("arena range");
            Box::new(Kmalloc(kmalloc::Heap::new(&*frames)))
        }
        "talc" => {
            let mut t = talc::Talc::new(talc::ErrOnOom);
            // SAFETY: the arena is ours for the heap's life.
            unsafe { t.claim(talc::Span::from_base_size(base, size)) }.expect("claim");
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

struct Kmalloc(kmalloc::Heap<&'static kalloc::LockedFrameAllocator>);
impl BenchHeap for Kmalloc {
    fn alloc(&mut self, l: Layout) -> Option<NonNull<u8>> {
        self.0.allocate(l).ok()
    }
    unsafe fn free(&mut self, p: NonNull<u8>, l: Layout) {
        // SAFETY: forwarded.
        unsafe { self.0.deallocate(p, l) }
    }
    unsafe fn realloc(&mut self, p: NonNull<u8>, l: Layout, new: usize) -> Option<NonNull<u8>> {
        // SAFETY: forwarded.
        unsafe { self.0.reallocate(p, l, new) }.ok()
    }
}

struct Talc(talc::Talc<talc::ErrOnOom>);
impl BenchHeap for Talc {
    fn alloc(&mut self, l: Layout) -> Option<NonNull<u8>> {
        // SAFETY: non-zero sizes only in the workloads.
        unsafe { self.0.malloc(l) }.ok()
    }
    unsafe fn free(&mut self, p: NonNull<u8>, l: Layout) {
        // SAFETY: forwarded.
        unsafe { self.0.free(p, l) }
    }
    unsafe fn realloc(&mut self, p: NonNull<u8>, l: Layout, new: usize) -> Option<NonNull<u8>> {
        // SAFETY: forwarded; talc's grow copies, shrink is in place.
        unsafe {
            if new > l.size() {
                self.0.grow(p, l, new).ok()
            } else {
                self.0.shrink(p, l, new);
                Some(p)
            }
        }
    }
}

type Rlsf = rlsf::Tlsf<'static, u32, u32, 24, 32>;
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
