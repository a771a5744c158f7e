//! [`LockedFrameAllocator`]: the allocator behind a spin lock of its own (Acquire to take,
//! Release to give back), and its `PageSource` face.

use crate::FrameAllocator;
#[cfg(feature = "kmalloc")]
use crate::FRAME_SIZE;
#[cfg(feature = "kmalloc")]
use core::ptr::NonNull;

#[cfg(not(loom))]
use core::cell::UnsafeCell;
#[cfg(not(loom))]
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

#[cfg(loom)]
use loom::cell::UnsafeCell;
#[cfg(loom)]
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// [`LockedFrameAllocator::largest`] when no bound is known.
const UNKNOWN: usize = usize::MAX;

/// A [`FrameAllocator`] behind a spin lock, for use from several CPUs.
///
/// With the `kmalloc` feature (on by default), `&LockedFrameAllocator` is a `kmalloc::PageSource`: a heap over it gets direct-map pointers
/// to contiguous frames. Its [`pages_available_hint`](kmalloc::PageSource::pages_available_hint)
/// reads, without the lock, the size of the largest free buddy block as the last page-source call
/// left it, so an out-of-memory heap fails without taking the lock.
pub struct LockedFrameAllocator {
    /// True while a [`FrameGuard`] exists. Taken with Acquire (a guard sees every change the
    /// previous holder made) and released with Release (it publishes its own).
    locked: AtomicBool,
    inner: UnsafeCell<FrameAllocator>,
    /// Frames in the largest free buddy block, or [`UNKNOWN`]. Written only under the lock: by
    /// the page-source methods, which store the exact value before unlocking, and by [`lock`],
    /// which stores [`UNKNOWN`] because its caller may change anything. So the value is always
    /// an upper bound on what `allocate_contiguous` can give: exact, or unknown.
    ///
    /// [`lock`]: LockedFrameAllocator::lock
    largest: AtomicUsize,
}

// SAFETY: the allocator inside is reached only through a `FrameGuard`, and the lock admits one
// at a time; the allocator itself may move between threads (it is `Send`).
unsafe impl Sync for LockedFrameAllocator {}

/// The locked allocator: dereferences to the [`FrameAllocator`]; unlocks when dropped.
pub struct FrameGuard<'a> {
    lock: &'a LockedFrameAllocator,
    /// loom's record of this access to the cell, ended before the unlock.
    #[cfg(loom)]
    access: Option<loom::cell::MutPtr<FrameAllocator>>,
}

impl core::fmt::Debug for FrameGuard<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FrameGuard").finish_non_exhaustive()
    }
}

impl core::ops::Deref for FrameGuard<'_> {
    type Target = FrameAllocator;
    fn deref(&self) -> &FrameAllocator {
        #[cfg(not(loom))]
        // SAFETY: this guard holds the lock, so nothing else reaches the allocator.
        return unsafe { &*self.lock.inner.get() };
        #[cfg(loom)]
        // SAFETY: as above; the access is live until the guard drops.
        return unsafe { &*self.access.as_ref().expect("live guard").deref() };
    }
}

impl core::ops::DerefMut for FrameGuard<'_> {
    fn deref_mut(&mut self) -> &mut FrameAllocator {
        #[cfg(not(loom))]
        // SAFETY: this guard holds the lock, so nothing else reaches the allocator.
        return unsafe { &mut *self.lock.inner.get() };
        #[cfg(loom)]
        // SAFETY: as above; the access is live until the guard drops.
        return unsafe { self.access.as_mut().expect("live guard").deref() };
    }
}

impl Drop for FrameGuard<'_> {
    fn drop(&mut self) {
        #[cfg(loom)]
        drop(self.access.take());
        self.lock.locked.store(false, Ordering::Release);
    }
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
            locked: AtomicBool::new(false),
            inner: UnsafeCell::new(FrameAllocator::new(phys_offset)),
            largest: AtomicUsize::new(UNKNOWN),
        }
    }

    /// An empty allocator; see [`FrameAllocator::new`].
    #[cfg(loom)]
    pub fn new(phys_offset: usize) -> Self {
        LockedFrameAllocator {
            locked: AtomicBool::new(false),
            inner: UnsafeCell::new(FrameAllocator::new(phys_offset)),
            largest: AtomicUsize::new(UNKNOWN),
        }
    }

    /// An allocator made otherwise (e.g. [`FrameAllocator::with_direct_map`]), behind the lock.
    #[cfg(not(loom))]
    pub const fn from_allocator(a: FrameAllocator) -> Self {
        LockedFrameAllocator {
            locked: AtomicBool::new(false),
            inner: UnsafeCell::new(a),
            largest: AtomicUsize::new(UNKNOWN),
        }
    }

    /// An allocator made otherwise (e.g. [`FrameAllocator::with_direct_map`]), behind the lock.
    #[cfg(loom)]
    pub fn from_allocator(a: FrameAllocator) -> Self {
        LockedFrameAllocator {
            locked: AtomicBool::new(false),
            inner: UnsafeCell::new(a),
            largest: AtomicUsize::new(UNKNOWN),
        }
    }

    /// Locks it. In a kernel, hold it with interrupts disabled.
    pub fn lock(&self) -> FrameGuard<'_> {
        let guard = self.lock_inner();
        // The caller may add or free frames: the page-source hint is unknown until the next
        // page-source call recomputes it (under the lock, so after this store).
        self.largest.store(UNKNOWN, Ordering::Relaxed);
        guard
    }

    fn lock_inner(&self) -> FrameGuard<'_> {
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            #[cfg(not(loom))]
            core::hint::spin_loop();
            #[cfg(loom)]
            loom::thread::yield_now();
        }
        FrameGuard {
            lock: self,
            #[cfg(loom)]
            access: Some(self.inner.get_mut()),
        }
    }

    /// The largest free block, taken under the lock without touching the hint.
    #[cfg(all(test, feature = "kmalloc"))]
    pub(crate) fn inner_largest_for_tests(&self) -> usize {
        self.lock_inner().largest_block()
    }

    /// Publishes the largest free block of `a` (the locked allocator) for the page-source hint.
    #[cfg(feature = "kmalloc")]
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
        // A pointer that is no direct-map address of a frame is declined like any foreign run
        // (`virt_to_phys` would panic on one outside the physical range).
        let frame = a
            .try_virt_to_phys(ptr.as_ptr())
            .and_then(|p| crate::Frame::from_start(p).ok());
        let Some(frame) = frame else {
            debug_assert!(
                false,
                "heap returned pages the frame allocator did not hand out: {:p} is no frame's direct-map address",
                ptr.as_ptr()
            );
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
