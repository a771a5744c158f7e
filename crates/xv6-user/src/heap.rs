//! The user heap: the `kmalloc` crate's bounded heap fed by `sbrk`.
//!
//! [`SbrkSource`] is a [`PageSource`] over anything that moves a program break ([`Break`]); with
//! the `user` feature the library declares
//! `#[global_allocator] static HEAP: LockedHeap<Heap<SbrkSource<SysBreak>>>`, so `Box`, `Vec` and
//! `String` allocate from it. Pages come from growing the break (aligned as the heap asks, the
//! break first rounded up); pages go back only when they are the top of the break, since `sbrk` can
//! shrink the heap only there.

use core::ptr::NonNull;
use kmalloc::{PageSource, PAGE_SIZE};

/// Something that moves a program break, like the `sbrk` system call.
pub trait Break {
    /// Moves the break by `delta` bytes and returns the old break, or `None` (and no change) if
    /// that is impossible. `sbrk(0)` returns the current break.
    fn sbrk(&mut self, delta: isize) -> Option<usize>;
}

/// A [`PageSource`] that grows and shrinks a program break.
#[derive(Debug)]
pub struct SbrkSource<B: Break> {
    brk: B,
}

impl<B: Break> SbrkSource<B> {
    /// A source over `brk`.
    pub const fn new(brk: B) -> Self {
        SbrkSource { brk }
    }

    /// The underlying break.
    pub fn brk(&self) -> &B {
        &self.brk
    }
}

// SAFETY: the pages come from growing the break, so they are fresh memory of the program that
// nothing else uses (the program must not shrink the break below the heap's pages behind its
// back); `free_pages` gives pages back only when they end at the current break, and neither method
// allocates from the heap.
unsafe impl<B: Break> PageSource for SbrkSource<B> {
    fn alloc_pages(&mut self, pages: usize, align: usize) -> Option<NonNull<u8>> {
        if pages == 0 || !align.is_power_of_two() {
            return None;
        }
        let bytes = pages.checked_mul(PAGE_SIZE)?;
        let cur = self.brk.sbrk(0)?;
        let start = cur.checked_next_multiple_of(align.max(PAGE_SIZE))?;
        let end = start.checked_add(bytes)?;
        let delta = isize::try_from(end - cur).ok()?;
        let old = self.brk.sbrk(delta)?;
        if old != cur {
            // The break moved between the two calls (it cannot in a single-threaded program);
            // give the memory back rather than guess.
            self.brk.sbrk(-delta);
            return None;
        }
        NonNull::new(start as *mut u8)
    }

    unsafe fn free_pages(&mut self, ptr: NonNull<u8>, pages: usize) -> bool {
        let Some(bytes) = pages.checked_mul(PAGE_SIZE) else {
            return false;
        };
        let Ok(delta) = isize::try_from(bytes) else {
            return false;
        };
        match self.brk.sbrk(0) {
            Some(cur) if (ptr.as_ptr() as usize).checked_add(bytes) == Some(cur) => {
                self.brk.sbrk(-delta).is_some()
            }
            _ => false,
        }
    }
}

/// The `sbrk` system call as a [`Break`]. Moves larger than an `int` are split into steps.
#[cfg(feature = "user")]
#[derive(Clone, Copy, Debug, Default)]
pub struct SysBreak;

#[cfg(feature = "user")]
impl Break for SysBreak {
    fn sbrk(&mut self, delta: isize) -> Option<usize> {
        // The largest page-multiple step that fits in an int.
        const STEP: isize = (i32::MAX as isize) & !(PAGE_SIZE as isize - 1);
        let mut done: isize = 0;
        let mut old = None;
        loop {
            let step = (delta - done).clamp(-STEP, STEP);
            match crate::sys::sbrk(step as i32) {
                Ok(b) => {
                    old.get_or_insert(b);
                    done += step;
                }
                Err(_) => {
                    if done != 0 {
                        // Undo the steps taken; this cannot fail for a shrink back.
                        let _ = SysBreak.sbrk(-done);
                    }
                    return None;
                }
            }
            if done == delta {
                return old;
            }
        }
    }
}

/// The program's heap: `malloc` and `free` for Rust's `alloc`.
#[cfg(feature = "user")]
#[global_allocator]
pub static HEAP: kmalloc::LockedHeap<kmalloc::Heap<SbrkSource<SysBreak>>> =
    kmalloc::LockedHeap::new(kmalloc::Heap::new(SbrkSource::new(SysBreak)));

#[cfg(test)]
mod tests {
    use super::*;
    use core::alloc::Layout;
    use kmalloc::Heap;
    use std::vec::Vec;

    /// A break over a host arena, with a limit.
    struct FakeBreak {
        base: usize,
        cur: usize,
        limit: usize,
        calls: usize,
        _arena: Vec<u8>,
    }

    impl FakeBreak {
        fn new(size: usize, misalign: usize) -> FakeBreak {
            let arena = std::vec![0u8; size + 2 * PAGE_SIZE];
            let base = (arena.as_ptr() as usize).next_multiple_of(PAGE_SIZE) + misalign;
            FakeBreak {
                base,
                cur: base,
                limit: base + size,
                calls: 0,
                _arena: arena,
            }
        }
    }

    impl Break for FakeBreak {
        fn sbrk(&mut self, delta: isize) -> Option<usize> {
            self.calls += 1;
            let new = self.cur.checked_add_signed(delta)?;
            if new < self.base || new > self.limit {
                return None;
            }
            Some(core::mem::replace(&mut self.cur, new))
        }
    }

    #[test]
    fn grows_aligned_and_shrinks_from_top() {
        let mut src = SbrkSource::new(FakeBreak::new(64 * PAGE_SIZE, 100));
        let base = src.brk().base;
        let a = src.alloc_pages(2, PAGE_SIZE).unwrap().as_ptr() as usize;
        assert_eq!(a % PAGE_SIZE, 0);
        assert!(a >= base);
        assert_eq!(src.brk().cur, a + 2 * PAGE_SIZE);
        let b = src.alloc_pages(1, 4 * PAGE_SIZE).unwrap().as_ptr() as usize;
        assert_eq!(b % (4 * PAGE_SIZE), 0);
        assert_eq!(src.brk().cur, b + PAGE_SIZE);
        // Not at the top: refused.
        // SAFETY: a..a+2 pages came from this source.
        assert!(!unsafe { src.free_pages(NonNull::new(a as *mut u8).unwrap(), 2) });
        // At the top: the break shrinks.
        // SAFETY: b's page came from this source and is the top of the break.
        assert!(unsafe { src.free_pages(NonNull::new(b as *mut u8).unwrap(), 1) });
        assert_eq!(src.brk().cur, b);
        // Out of memory.
        assert!(src.alloc_pages(1000, PAGE_SIZE).is_none());
        assert!(src.alloc_pages(0, PAGE_SIZE).is_none());
        assert!(src.alloc_pages(1, 3000).is_none());
        assert!(src.alloc_pages(usize::MAX / 2, PAGE_SIZE).is_none());
    }

    #[test]
    fn heap_over_sbrk_gives_memory_back() {
        let mut heap = Heap::new(SbrkSource::new(FakeBreak::new(256 * PAGE_SIZE, 0)));
        let start = heap.source().brk().cur;
        let mut blocks = Vec::new();
        for i in 1..200usize {
            let layout = Layout::from_size_align(i * 37 % 3000 + 1, 8).unwrap();
            let p = heap.allocate(layout).unwrap();
            // SAFETY: the block is `layout.size()` bytes and ours.
            unsafe { p.as_ptr().write_bytes(i as u8, layout.size()) };
            blocks.push((p, layout, i as u8));
        }
        let big = Layout::from_size_align(5 * PAGE_SIZE, 64).unwrap();
        let pb = heap.allocate(big).unwrap();
        for (p, layout, v) in blocks.drain(..) {
            // SAFETY: allocated above with this layout, freed once.
            unsafe {
                assert_eq!(*p.as_ptr(), v);
                heap.deallocate(p, layout);
            }
        }
        // SAFETY: allocated above with this layout.
        unsafe { heap.deallocate(pb, big) };
        heap.release_free_pages();
        heap.check_invariants();
        assert!(heap.source().brk().cur >= start);
        assert!(heap.source().brk().calls > 0);
        // Everything is free again; the top chunks went back to the break.
        assert_eq!(heap.stats().bytes_in_use, 0);
    }
}
