//! [`RegionSource`]: a ready-made [`PageSource`] over one region of memory (a static array, a
//! `&'static mut [u8]` a boot loader handed over, or a test's buffer).

use crate::{PageSource, PAGE_SIZE};
use core::marker::PhantomData;
use core::ptr::NonNull;

/// Hands out the pages of one region from its start upwards, like `sbrk`: a run given back is
/// taken only when it is the topmost one out (otherwise the heap keeps it as free space).
///
/// [`RegionSource::new`] is a `const fn`, so a heap over a static array can be a
/// `#[global_allocator]` with no start-up code:
///
/// ```
/// use kmalloc::{Heap, LockedHeap, RegionSource};
/// static mut ARENA: [u8; 1 << 20] = [0; 1 << 20];
/// // SAFETY: ARENA is used only through this source, which the heap owns from here on.
/// static HEAP: LockedHeap<Heap<RegionSource<'static>>> =
///     LockedHeap::new(Heap::new(RegionSource::new(unsafe { &mut *&raw mut ARENA })));
/// # let l = core::alloc::Layout::from_size_align(100, 8).unwrap();
/// # use core::alloc::GlobalAlloc;
/// # // SAFETY: a non-zero size, freed with the same layout.
/// # unsafe { let p = HEAP.alloc(l); assert!(!p.is_null()); HEAP.dealloc(p, l) };
/// ```
#[derive(Debug)]
pub struct RegionSource<'a> {
    /// The region's first byte (any alignment), with the region's provenance. The first whole
    /// page is found when pages are asked for (`align_offset` is not a `const fn`).
    start: *mut u8,
    /// The region's length in bytes.
    len: usize,
    /// Pages handed out from the first whole page.
    next: usize,
    _region: PhantomData<&'a mut [u8]>,
}

// SAFETY: the source owns its region exclusively (it holds the `&mut` borrow); moving it to
// another thread moves that ownership.
unsafe impl Send for RegionSource<'_> {}

impl<'a> RegionSource<'a> {
    /// A source over the whole pages inside `region` (its ragged ends are not used).
    pub const fn new(region: &'a mut [u8]) -> Self {
        RegionSource {
            start: region.as_mut_ptr(),
            len: region.len(),
            next: 0,
            _region: PhantomData,
        }
    }

    /// The first whole page of the region (or its end, if it holds none) and the number of
    /// whole pages in it.
    fn pages(&self) -> (*mut u8, usize) {
        let skip = self.start.align_offset(PAGE_SIZE).min(self.len);
        // The pointer stays inside (or one past) the region.
        (self.start.wrapping_add(skip), (self.len - skip) / PAGE_SIZE)
    }

    /// Pages not handed out.
    pub fn pages_left(&self) -> usize {
        self.pages().1 - self.next
    }
}

// SAFETY: pages come from the region this source borrows mutably, each handed out once until it
// is given back (only the top run is taken back, lowering `next`); nothing calls into a heap.
unsafe impl PageSource for RegionSource<'_> {
    fn alloc_pages(&mut self, pages: usize, align: usize) -> Option<NonNull<u8>> {
        let (base, total) = self.pages();
        let at = base.wrapping_add(self.next * PAGE_SIZE);
        let pad = at.align_offset(align) / PAGE_SIZE;
        let end = self.next.checked_add(pad)?.checked_add(pages)?;
        if pages == 0 || end > total {
            return None;
        }
        let p = base.wrapping_add((self.next + pad) * PAGE_SIZE);
        self.next = end;
        NonNull::new(p)
    }

    /// Takes the run back only if it is the topmost one out (`ptr` a page start in the region
    /// and `pages` reaching up to the pages not handed out); declines anything else, changing
    /// nothing, including a run this source never handed out (a pointer outside the region or
    /// not at a page start, a page count that overflows). Reads no memory.
    unsafe fn free_pages(&mut self, ptr: NonNull<u8>, pages: usize) -> bool {
        let Some(off) = ptr.as_ptr().addr().checked_sub(self.pages().0.addr()) else {
            return false;
        };
        let first = off / PAGE_SIZE;
        if off % PAGE_SIZE == 0 && first.checked_add(pages) == Some(self.next) {
            self.next = first;
            return true;
        }
        false
    }

    fn pages_available_hint(&self) -> Option<usize> {
        Some(self.pages_left())
    }
}
