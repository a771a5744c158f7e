//! Every call into kmalloc, in one place: the heap over the benchmark's arena, behind
//! [`BenchHeap`].

use crate::heaps::BenchHeap;
use core::alloc::Layout;
use core::ptr::NonNull;

/// kmalloc over the arena `base..base + size`: its pages come from a kalloc frame allocator
/// that owns exactly that range.
pub fn make(base: *mut u8, size: usize) -> Box<dyn BenchHeap> {
    // Leaked: a few hundred bytes per heap built, and the heap borrows it for `'static`.
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
