//! Every call into kmalloc, in one place: its heaps over the benchmark's arena, behind
//! [`BenchHeap`]. Both implement kmalloc's `RawHeap`: `kmalloc` is the bounded default heap,
//! `kmalloc_classic` K&R's list heap (shown as a baseline, not compared against the goals).

use crate::heaps::BenchHeap;
use core::alloc::Layout;
use core::ptr::NonNull;
use kmalloc::RawHeap;

type Frames = &'static kalloc::LockedFrameAllocator;

/// kalloc's frame allocator owning exactly the arena `base..base + size`: the page source the
/// heap gets, as in the kernel.
fn frames(base: *mut u8, size: usize) -> Frames {
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
    frames
}

/// The bounded heap (kmalloc's default) over the arena.
pub fn make(base: *mut u8, size: usize) -> Box<dyn BenchHeap> {
    Box::new(Km(kmalloc::Heap::new(frames(base, size))))
}

/// K&R's classic heap over the arena.
pub fn make_classic(base: *mut u8, size: usize) -> Box<dyn BenchHeap> {
    Box::new(Km(kmalloc::ClassicHeap::new(frames(base, size))))
}

struct Km<H: RawHeap>(H);

impl<H: RawHeap> BenchHeap for Km<H> {
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
