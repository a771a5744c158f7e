//! [`LockedFrameAllocator`]: the allocator behind a spin lock, and its `PageSource` face.

use crate::{FrameAllocator, PhysAddr, FRAME_SIZE};
use core::ptr::NonNull;

#[cfg(not(loom))]
use core::sync::atomic::{AtomicUsize, Ordering};
#[cfg(not(loom))]
use spin::{Mutex, MutexGuard};

#[cfg(loom)]
use loom::sync::atomic::{AtomicUsize, Ordering};
#[cfg(loom)]
use loom::sync::{Mutex, MutexGuard};

/// [`LockedFrameAllocator::largest`] when no bound is known.
const UNKNOWN: usize = usize::MAX;

/// A [`FrameAllocator`] behind a spin lock, for use from several CPUs.
///
/// With the `kmalloc` feature (on by default), `&LockedFrameAllocator` is a `kmalloc::PageSource`: a heap over it gets direct-map pointers
/// to contiguous frames. Its [`pages_available_hint`](kmalloc::PageSource::pages_available_hint)
/// reads, without the lock, the size of the largest free buddy block as the last page-source call
/// left it, so an out-of-memory heap fails without taking the lock.
pub struct LockedFrameAllocator {
    inner: Mutex<FrameAllocator>,
    /// Frames in the largest free buddy block, or [`UNKNOWN`]. Written only under the lock: by
    /// the page-source methods, which store the exact value before unlocking, and by [`lock`],
    /// which stores [`UNKNOWN`] because its caller may change anything. So the value is always
    /// an upper bound on what `allocate_contiguous` can give: exact, or unknown.
    ///
    /// [`lock`]: LockedFrameAllocator::lock
    largest: AtomicUsize,
}

impl core::fmt::Debug for LockedFrameAllocator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LockedFrameAllocator")
            .finish_non_exhaustive()
    }
}

impl LockedFrameAllocator {
    /// An empty allocator; see [`FrameAllocator::new`].
    #[cfg(not(loom))]
    pub const fn new(phys_offset: usize) -> Self {
        LockedFrameAllocator {
            inner: Mutex::new(FrameAllocator::new(phys_offset)),
            largest: AtomicUsize::new(UNKNOWN),
        }
    }

    /// An empty allocator; see [`FrameAllocator::new`].
    #[cfg(loom)]
    pub fn new(phys_offset: usize) -> Self {
        LockedFrameAllocator {
            inner: Mutex::new(FrameAllocator::new(phys_offset)),
            largest: AtomicUsize::new(UNKNOWN),
        }
    }

    /// Locks it. In a kernel, hold it with interrupts disabled.
    pub fn lock(&self) -> MutexGuard<'_, FrameAllocator> {
        let guard = self.lock_inner();
        // The caller may add or free frames: the page-source hint is unknown until the next
        // page-source call recomputes it (under the lock, so after this store).
        self.largest.store(UNKNOWN, Ordering::Relaxed);
        guard
    }

    fn lock_inner(&self) -> MutexGuard<'_, FrameAllocator> {
        #[cfg(not(loom))]
        return self.inner.lock();
        #[cfg(loom)]
        return self.inner.lock().unwrap();
    }

    /// The largest free block, taken under the lock without touching the hint.
    #[cfg(test)]
    pub(crate) fn inner_largest_for_tests(&self) -> usize {
        self.lock_inner().largest_block()
    }

    /// Publishes the largest free block of `a` (the locked allocator) for the page-source hint.
    fn publish(&self, a: &FrameAllocator) {
        self.largest.store(a.largest_block(), Ordering::Relaxed);
    }
}

#[cfg(feature = "kmalloc")]
// SAFETY: frames come from the allocator, which hands each out once until it is freed; the
// pointers are their direct-map addresses, aligned as asked (alignment in frames = align / 4096,
// and the direct-map offset must itself be aligned at least that much — kernels map at a 1 GiB or
// larger boundary; debug-asserted). Neither method touches any heap.
unsafe impl kmalloc::PageSource for &LockedFrameAllocator {
    fn alloc_pages(&mut self, pages: usize, align: usize) -> Option<NonNull<u8>> {
        let mut a = self.lock_inner();
        // Straight from the buddy system, with the cache merged back first, so the published
        // hint is the exact largest block.
        a.flush_cache();
        let frame = a.allocate_uncached(pages, (align / FRAME_SIZE).max(1));
        self.publish(&a);
        let ptr = a.phys_to_virt(frame.ok()?.start());
        debug_assert_eq!(
            ptr as usize % align,
            0,
            "direct map offset not aligned enough"
        );
        NonNull::new(ptr)
    }

    unsafe fn free_pages(&mut self, ptr: NonNull<u8>, pages: usize) -> bool {
        let mut a = self.lock_inner();
        let phys: PhysAddr = a.virt_to_phys(ptr.as_ptr());
        let Ok(frame) = crate::Frame::from_start(phys) else {
            return false;
        };
        a.flush_cache();
        // SAFETY: the heap gives back only pages it got from us and no longer uses.
        let r = unsafe { a.free_uncached(frame, pages) };
        self.publish(&a);
        debug_assert!(
            r.is_ok(),
            "heap returned pages the frame allocator did not hand out: {r:?}"
        );
        r.is_ok()
    }

    /// The largest free buddy block as of the last page-source call, or `None` if the allocator
    /// was locked through [`LockedFrameAllocator::lock`] since. Every write happens under the
    /// lock and is exact or unknown when it is made, and a relaxed load returns the latest write
    /// that happens-before it or a later one: so a run freed before this call is never missed.
    fn pages_available_hint(&self) -> Option<usize> {
        match self.largest.load(Ordering::Relaxed) {
            UNKNOWN => None,
            n => Some(n),
        }
    }
}
