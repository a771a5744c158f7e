//! [`RegionSource`]: a ready-made [`PageSource`] over one region of memory (a static array, a
//! `&'static mut [u8]` a boot loader handed over, or a test's buffer).

use crate::{PageSource, PAGE_SIZE};
use core::marker::PhantomData;
use core::ptr::NonNull;

/// Hands out the pages of one region from its start upwards, like `sbrk`: a run given back is
/// taken only when it is the topmost one out (otherwise the heap keeps it as free space).
#[derive(Debug)]
pub struct RegionSource<'a> {
    /// The first page of the region (page-aligned), with the region's provenance.
    base: NonNull<u8>,
    /// Pages in the region, and pages handed out from its start.
    pages: usize,
    next: usize,
    _region: PhantomData<&'a mut [u8]>,
}

// SAFETY: the source owns its region exclusively (it holds the `&mut` borrow); moving it to
// another thread moves that ownership.
unsafe impl Send for RegionSource<'_> {}

impl<'a> RegionSource<'a> {
    /// A source over the whole pages inside `region` (its ragged ends are not used).
    pub fn new(region: &'a mut [u8]) -> Self {
        let start = region.as_mut_ptr();
        let skip = start.align_offset(PAGE_SIZE).min(region.len());
        let pages = (region.len() - skip) / PAGE_SIZE;
        RegionSource {
            // The pointer stays inside (or one past) the region.
            base: NonNull::new(start.wrapping_add(skip)).unwrap_or(NonNull::dangling()),
            pages,
            next: 0,
            _region: PhantomData,
        }
    }

    /// Pages not handed out.
    pub fn pages_left(&self) -> usize {
        self.pages - self.next
    }
}

// SAFETY: pages come from the region this source borrows mutably, each handed out once until it
// is given back (only the top run is taken back, lowering `next`); nothing calls into a heap.
unsafe impl PageSource for RegionSource<'_> {
    fn alloc_pages(&mut self, pages: usize, align: usize) -> Option<NonNull<u8>> {
        let at = self.base.as_ptr().wrapping_add(self.next * PAGE_SIZE);
        let pad = at.align_offset(align) / PAGE_SIZE;
        let end = self.next.checked_add(pad)?.checked_add(pages)?;
        if pages == 0 || end > self.pages {
            return None;
        }
        let p = self
            .base
            .as_ptr()
            .wrapping_add((self.next + pad) * PAGE_SIZE);
        self.next = end;
        NonNull::new(p)
    }

    unsafe fn free_pages(&mut self, ptr: NonNull<u8>, pages: usize) -> bool {
        let first = (ptr.as_ptr().addr() - self.base.as_ptr().addr()) / PAGE_SIZE;
        if first + pages == self.next {
            self.next = first;
            return true;
        }
        false
    }

    fn pages_available_hint(&self) -> Option<usize> {
        Some(self.pages - self.next)
    }
}
