//! [`AnyHeap`]: the bounded heap or the classic one, chosen at run time (a kernel reads its
//! command line at boot), behind one type so that one build runs on either.

use crate::{AllocError, ClassicHeap, FreeError, Heap, HeapStats, PageSource, RawHeap};
use core::alloc::Layout;
use core::ptr::NonNull;

/// Which heap an [`AnyHeap`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeapKind {
    /// The bounded heap, [`Heap`].
    Bounded,
    /// K&R's heap, [`ClassicHeap`].
    Classic,
}

impl HeapKind {
    /// The kind named `bounded` or `classic`.
    pub fn from_name(name: &[u8]) -> Option<HeapKind> {
        match name {
            b"bounded" => Some(HeapKind::Bounded),
            b"classic" => Some(HeapKind::Classic),
            _ => None,
        }
    }
}

/// Either heap; every call is forwarded to the one it is.
// The bounded heap's index is 7.6 KB, the classic heap's state 48 bytes: a heap lives in one
// static, and there is no allocator to box it with.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum AnyHeap<S: PageSource> {
    /// The bounded heap.
    Bounded(Heap<S>),
    /// K&R's heap.
    Classic(ClassicHeap<S>),
}

impl<S: PageSource> AnyHeap<S> {
    /// An empty heap of `kind` over `source`.
    pub const fn new(kind: HeapKind, source: S) -> Self {
        match kind {
            HeapKind::Bounded => AnyHeap::Bounded(Heap::new(source)),
            HeapKind::Classic => AnyHeap::Classic(ClassicHeap::new(source)),
        }
    }

    /// Which heap this is.
    pub fn kind(&self) -> HeapKind {
        match self {
            AnyHeap::Bounded(_) => HeapKind::Bounded,
            AnyHeap::Classic(_) => HeapKind::Classic,
        }
    }

    /// Becomes an empty heap of `kind` over the same source. Only while the heap holds no
    /// memory (before the first allocation): otherwise returns false and changes nothing.
    pub fn switch_to(&mut self, kind: HeapKind, source: S) -> bool {
        if self.stats().pages_held != 0 {
            return false;
        }
        *self = AnyHeap::new(kind, source);
        true
    }

    /// [`Heap::set_growth_limit`] for the bounded heap; the classic heap keeps its own growth
    /// (at least K&R's `NALLOC` units, as many pages as it holds, up to 256).
    pub fn set_growth_limit(&mut self, pages: usize) {
        if let AnyHeap::Bounded(h) = self {
            h.set_growth_limit(pages);
        }
    }
}

macro_rules! forward {
    ($self:ident, $h:ident => $e:expr) => {
        match $self {
            AnyHeap::Bounded($h) => $e,
            AnyHeap::Classic($h) => $e,
        }
    };
}

impl<S: PageSource> RawHeap for AnyHeap<S> {
    #[inline]
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        forward!(self, h => h.allocate(layout))
    }

    #[inline]
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller's promise, for the heap this is.
        forward!(self, h => unsafe { h.deallocate(ptr, layout) })
    }

    unsafe fn reallocate(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<NonNull<u8>, AllocError> {
        // SAFETY: the caller's promise, for the heap this is.
        forward!(self, h => unsafe { h.reallocate(ptr, old, new_size) })
    }

    fn kmalloc(&mut self, nbytes: usize) -> Option<NonNull<u8>> {
        forward!(self, h => h.kmalloc(nbytes))
    }

    fn kmfree(&mut self, ptr: NonNull<u8>) -> Result<(), FreeError> {
        forward!(self, h => h.kmfree(ptr))
    }

    fn stats(&self) -> HeapStats {
        forward!(self, h => h.stats())
    }

    fn release_free_pages(&mut self) -> usize {
        forward!(self, h => h.release_free_pages())
    }

    fn check(&self) {
        forward!(self, h => h.check())
    }
}
