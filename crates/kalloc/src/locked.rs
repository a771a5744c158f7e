//! [`LockedFrameAllocator`]: the allocator behind a spin lock, and its `PageSource` face.

use crate::{FrameAllocator, PhysAddr, FRAME_SIZE};
use core::ptr::NonNull;

#[cfg(not(loom))]
use spin::{Mutex, MutexGuard};

#[cfg(loom)]
use loom::sync::{Mutex, MutexGuard};

/// A [`FrameAllocator`] behind a spin lock, for use from several CPUs.
///
/// `&LockedFrameAllocator` is a [`kmalloc::PageSource`]: a heap over it gets direct-map pointers
/// to contiguous frames.
pub struct LockedFrameAllocator {
    inner: Mutex<FrameAllocator>,
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
        }
    }

    /// An empty allocator; see [`FrameAllocator::new`].
    #[cfg(loom)]
    pub fn new(phys_offset: usize) -> Self {
        LockedFrameAllocator {
            inner: Mutex::new(FrameAllocator::new(phys_offset)),
        }
    }

    /// Locks it. In a kernel, hold it with interrupts disabled.
    pub fn lock(&self) -> MutexGuard<'_, FrameAllocator> {
        #[cfg(not(loom))]
        return self.inner.lock();
        #[cfg(loom)]
        return self.inner.lock().unwrap();
    }
}

// SAFETY: frames come from the allocator, which hands each out once until it is freed; the
// pointers are their direct-map addresses, aligned as asked (alignment in frames = align / 4096,
// and the direct-map offset must itself be aligned at least that much — kernels map at a 1 GiB or
// larger boundary; debug-asserted). Neither method touches any heap.
unsafe impl kmalloc::PageSource for &LockedFrameAllocator {
    fn alloc_pages(&mut self, pages: usize, align: usize) -> Option<NonNull<u8>> {
        let mut a = self.lock();
        let frame = a
            .allocate_contiguous(pages, (align / FRAME_SIZE).max(1))
            .ok()?;
        let ptr = a.phys_to_virt(frame.start());
        debug_assert_eq!(
            ptr as usize % align,
            0,
            "direct map offset not aligned enough"
        );
        NonNull::new(ptr)
    }

    unsafe fn free_pages(&mut self, ptr: NonNull<u8>, pages: usize) -> bool {
        let mut a = self.lock();
        let phys: PhysAddr = a.virt_to_phys(ptr.as_ptr());
        let Ok(frame) = crate::Frame::from_start(phys) else {
            return false;
        };
        // SAFETY: the heap gives back only pages it got from us and no longer uses.
        let r = unsafe { a.free_contiguous(frame, pages) };
        debug_assert!(
            r.is_ok(),
            "heap returned pages the frame allocator did not hand out: {r:?}"
        );
        r.is_ok()
    }
}
