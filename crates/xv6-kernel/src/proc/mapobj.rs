//! The object behind a shared mapping (see `vm.rs`, "mmap"): a counted kernel object that owns
//! the mapping's frames by page offset and, for a file mapping, keeps the file open.

use crate::fs::file::FileRef;
use crate::mm::mem::KernelFrames;
use crate::sync::spinlock::Spinlock;
use alloc::vec::Vec;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};
use xv6_kernel::paging::TableFrames;

struct ObjInner {
    refs: AtomicUsize,
    /// The file, for a file mapping (kept open while the object lives).
    file: Option<FileRef>,
    /// Frames of a shared mapping, by page number (file offset / PAGE), sorted.
    pages: Spinlock<Vec<(u64, u64)>>,
}

/// What a mapping's regions refer to: a counted object holding the file (if any) and, for a
/// shared mapping, its frames. Cloning takes a reference; dropping the last one frees the frames
/// and closes the file, so a mapping keeps its file open after `close(fd)`, and splitting or
/// forking a region shares everything.
pub struct MapObj(NonNull<ObjInner>);

// SAFETY: the object is reached only through counted references; its mutable parts are behind a
// spinlock (pages) or fixed at creation (file).
unsafe impl Send for MapObj {}

impl core::fmt::Debug for MapObj {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MapObj").finish_non_exhaustive()
    }
}

impl MapObj {
    /// A new object for a mapping of `file` (None: anonymous memory); None when the kernel heap
    /// is out.
    pub fn new(file: Option<&FileRef>) -> Option<MapObj> {
        let b = crate::mm::mem::try_box(ObjInner {
            refs: AtomicUsize::new(1),
            file: None,
            pages: Spinlock::new("mapping pages", Vec::new()),
        })?;
        let mut b = b;
        b.file = file.map(|f| f.dup());
        Some(MapObj(NonNull::from(alloc::boxed::Box::leak(b))))
    }

    fn inner(&self) -> &ObjInner {
        // SAFETY: the object lives while a reference (this one) exists.
        unsafe { self.0.as_ref() }
    }

    pub(super) fn file(&self) -> Option<&FileRef> {
        self.inner().file.as_ref()
    }

    pub(super) fn lookup(&self, pgno: u64) -> Option<u64> {
        let p = self.inner().pages.lock();
        let i = p.partition_point(|e| e.0 < pgno);
        p.get(i).filter(|e| e.0 == pgno).map(|e| e.1)
    }

    /// Records frame `pa` for page `pgno`. If another process got there first, frees `pa` and
    /// returns that frame instead. None (with `pa` freed) when the kernel heap is out.
    pub(super) fn insert(&self, pgno: u64, pa: u64) -> Option<u64> {
        let mut p = self.inner().pages.lock();
        let i = p.partition_point(|e| e.0 < pgno);
        let theirs = p.get(i).filter(|e| e.0 == pgno).map(|e| e.1);
        if theirs.is_none() && p.try_reserve(1).is_ok() {
            p.insert(i, (pgno, pa));
            return Some(pa);
        }
        drop(p);
        // SAFETY: `pa` was never mapped.
        unsafe { KernelFrames.free(pa) };
        theirs
    }
}

impl Clone for MapObj {
    fn clone(&self) -> MapObj {
        self.inner().refs.fetch_add(1, Ordering::Relaxed);
        MapObj(self.0)
    }
}

impl Drop for MapObj {
    fn drop(&mut self) {
        if self.inner().refs.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        // SAFETY: that was the last reference; the object came from Box::leak in `new`, and no
        // page table maps its frames any more (regions unmap their pages before dropping their
        // references).
        let inner = unsafe { alloc::boxed::Box::from_raw(self.0.as_ptr()) };
        let ObjInner { file, pages, .. } = *inner;
        let frames = core::mem::take(&mut *pages.lock());
        for (_, pa) in frames {
            // SAFETY: see above: the frame belonged to this object alone.
            unsafe { KernelFrames.free(pa) };
        }
        if let Some(f) = file {
            f.close();
        }
    }
}
