//! [`LockedHeap`]: any [`RawHeap`] behind a spin lock, usable as `#[global_allocator]`.

use crate::RawHeap;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};

#[cfg(not(loom))]
use spin::{Mutex, MutexGuard};

#[cfg(loom)]
use loom::sync::{Mutex, MutexGuard};

/// A heap behind a spin lock, shareable between CPUs (or threads) and usable as the global
/// allocator. `H` is the bounded [`Heap`](crate::Heap), K&R's [`ClassicHeap`](crate::ClassicHeap)
/// or [`AnyHeap`](crate::AnyHeap). Under `--cfg loom` the lock is loom's, so the tests can
/// model-check it.
pub struct LockedHeap<H> {
    heap: Mutex<H>,
}

impl<H> core::fmt::Debug for LockedHeap<H> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LockedHeap").finish_non_exhaustive()
    }
}

impl<H> LockedHeap<H> {
    /// `heap` behind a lock.
    #[cfg(not(loom))]
    pub const fn new(heap: H) -> Self {
        LockedHeap {
            heap: Mutex::new(heap),
        }
    }

    /// `heap` behind a lock.
    #[cfg(loom)]
    pub fn new(heap: H) -> Self {
        LockedHeap {
            heap: Mutex::new(heap),
        }
    }

    /// Locks the heap for direct use (statistics, `kmalloc`, `kmfree`).
    ///
    /// A kernel must not take this lock in an interrupt handler that can interrupt a holder of it
    /// on the same CPU (it would spin forever): disable interrupts around heap use, as xv6's
    /// spinlocks do.
    pub fn lock(&self) -> MutexGuard<'_, H> {
        #[cfg(not(loom))]
        return self.heap.lock();
        #[cfg(loom)]
        return self.heap.lock().unwrap();
    }
}

// SAFETY: every method hands the request to the heap, whose blocks satisfy the layout's size and
// alignment and stay valid until freed (RawHeap's contract); the lock makes each call exclusive.
unsafe impl<H: RawHeap + Send> GlobalAlloc for LockedHeap<H> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.lock()
            .allocate(layout)
            .map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: GlobalAlloc's contract: `ptr` came from `alloc` with this layout.
            unsafe { self.lock().deallocate(p, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(p) = NonNull::new(ptr) else {
            return ptr::null_mut();
        };
        // SAFETY: GlobalAlloc's contract: `ptr` is live with `layout`.
        unsafe { self.lock().reallocate(p, layout, new_size) }
            .map_or(ptr::null_mut(), NonNull::as_ptr)
    }
}
