//! [`LockedHeap`]: any [`RawHeap`] behind a lock, usable as `#[global_allocator]`.

use crate::RawHeap;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};

/// A heap behind a lock, shareable between CPUs (or threads) and usable as the global allocator.
/// `H` is the bounded [`Heap`](crate::Heap), K&R's [`ClassicHeap`](crate::ClassicHeap) or
/// [`AnyHeap`](crate::AnyHeap); `R` is the lock, any [`lock_api::RawMutex`] (a spin lock by
/// default). The loom tests model-check this type with a lock built on loom's atomics.
pub struct LockedHeap<H, R = spin::Mutex<()>> {
    heap: lock_api::Mutex<R, H>,
}

/// The guard [`LockedHeap::lock`] returns.
pub type HeapGuard<'a, H, R> = lock_api::MutexGuard<'a, R, H>;

impl<H, R> core::fmt::Debug for LockedHeap<H, R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LockedHeap").finish_non_exhaustive()
    }
}

impl<H, R: lock_api::RawMutex> LockedHeap<H, R> {
    /// `heap` behind a lock.
    pub const fn new(heap: H) -> Self {
        LockedHeap {
            heap: lock_api::Mutex::const_new(R::INIT, heap),
        }
    }

    /// `heap` behind `lock`, a lock value made at run time (one that needs more than
    /// `R::INIT`, such as a lock that records its CPU, or the loom tests' lock).
    pub const fn with_lock(lock: R, heap: H) -> Self {
        LockedHeap {
            heap: lock_api::Mutex::from_raw(lock, heap),
        }
    }

    /// Locks the heap for direct use (statistics, `kmalloc`, `kmfree`).
    ///
    /// A kernel must not take this lock in an interrupt handler that can interrupt a holder of it
    /// on the same CPU (it would spin forever): disable interrupts around heap use, as xv6's
    /// spinlocks do.
    pub fn lock(&self) -> HeapGuard<'_, H, R> {
        self.heap.lock()
    }
}

// SAFETY: every method hands the request to the heap, whose blocks satisfy the layout's size and
// alignment and stay valid until freed (RawHeap's contract); the lock makes each call exclusive.
unsafe impl<H: RawHeap + Send, R: lock_api::RawMutex + Sync> GlobalAlloc for LockedHeap<H, R> {
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
