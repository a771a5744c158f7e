//! Kernel heaps fed with pages through a [`PageSource`]: a bounded heap for real use and K&R's
//! classic one for teaching, behind one trait, [`RawHeap`].
//!
//! - [`Heap`], the default, keeps xv6's `kmalloc` contract (header-prefixed blocks, `morecore`
//!   asking a source for pages, coalescing on free, wholly free chunks back to the source) with
//!   every operation in O(1) time, whatever the heap holds: blocks carry boundary tags so a free
//!   merges with both neighbours without a search, and free blocks sit in TLSF's two-level
//!   segregated lists, where bitmaps find a good fit in two bit scans. Any power-of-two
//!   alignment, `realloc` in place when it can (a large block shrinking in a nearly full heap may
//!   move to a close-fitting hole instead), and a tag in each used block's header so that double frees
//!   and wild pointers are refused (the [`heap`] module says exactly what the tag cannot catch).
//! - [`ClassicHeap`] is the heap of K&R's `malloc` as xv6's `umalloc.c` has it: one
//!   address-ordered circular free list, a roving pointer, first fit. Small and readable, and a
//!   baseline: its operations walk the list.
//! - [`LockedHeap`] puts either behind a spin lock and implements
//!   [`GlobalAlloc`](core::alloc::GlobalAlloc); [`AnyHeap`] is either one, chosen at run time
//!   (a kernel picks from its command line).
//!
//! How the bounded heap's modules fit: [`block`] is the header and its boundary tags, `index`
//! the size classes and bitmaps that find free blocks, `chunks` the memory from the source,
//! [`heap`] allocation and free, `realloc` resizing, `check` the invariant checker used by the
//! tests and fuzz targets, `locked` the lock.
//!
//! The crate is `no_std`, needs no `alloc`, and knows nothing of any kernel: the memory comes from
//! whatever implements [`PageSource`] — a kernel's frame allocator, `sbrk` in a user program, or the
//! host's allocator in tests.
//!
//! # Adopting it as a kernel's global allocator
//!
//! Give the heap a page source and declare it. Over a static array, the ready-made
//! [`RegionSource`] does it in two lines (its constructor is a `const fn`):
//!
//! ```
//! use kmalloc::{Heap, LockedHeap, RegionSource};
//!
//! static mut ARENA: [u8; 256 * 1024] = [0; 256 * 1024];
//! // In the kernel this line is `#[global_allocator] static HEAP: ...`, after which
//! // `alloc::{Box, Vec}` work everywhere. `ClassicHeap::new` in place of `Heap::new` gives
//! // K&R's heap instead.
//! // SAFETY (of the `unsafe` block): ARENA is used only through this source, which the heap owns.
//! static HEAP: LockedHeap<Heap<RegionSource<'static>>> =
//!     LockedHeap::new(Heap::new(RegionSource::new(unsafe { &mut *&raw mut ARENA })));
//!
//! use core::alloc::{GlobalAlloc, Layout};
//! let layout = Layout::from_size_align(100, 8).unwrap();
//! // SAFETY: layout has a non-zero size; the block is freed with the same layout.
//! unsafe {
//!     let p = HEAP.alloc(layout);
//!     assert!(!p.is_null());
//!     p.write_bytes(0xab, 100);
//!     HEAP.dealloc(p, layout);
//! }
//! // The seed's teaching interface, with its limits checked:
//! let mut heap = HEAP.lock();
//! let block = heap.kmalloc(2000).expect("memory");
//! assert!(heap.kmalloc(4097).is_none());
//! assert_eq!(heap.kmfree(block), Ok(()));
//! assert!(heap.kmfree(block).is_err()); // a double free is refused
//! ```
//!
//! A kernel with a frame allocator gives the heap that instead: the `kalloc` crate's
//! `LockedFrameAllocator` implements [`PageSource`] (`static HEAP: LockedHeap<Heap<&'static
//! LockedFrameAllocator>> = LockedHeap::new(Heap::new(&FRAMES));`, its crate docs show the
//! whole kernel). A source of your own implements [`PageSource`]: `alloc_pages` takes `pages`
//! contiguous pages aligned to `align` and returns their address; `free_pages` gives them back
//! and returns true, or false to let the heap keep them.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

mod any;
pub mod block;
mod cache;
mod check;
mod chunks;
mod classic;
pub mod heap;
mod index;
mod locked;
mod realloc;
mod region;

pub use any::{AnyHeap, HeapKind};
pub use classic::ClassicHeap;
pub use heap::Heap;
pub use locked::HeapGuard;
pub use locked::LockedHeap;
pub use region::RegionSource;

use core::alloc::Layout;
use core::ptr::NonNull;

/// A heap: what [`LockedHeap`], a kernel, the benchmark and the fuzz targets need of one.
/// Implemented by the bounded [`Heap`], K&R's [`ClassicHeap`], and [`AnyHeap`].
pub trait RawHeap {
    /// A block for `layout` (any size, any power-of-two alignment), or an error when the source
    /// has no memory or the layout is absurd.
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<u8>, AllocError>;

    /// Frees a block.
    ///
    /// # Safety
    /// `ptr` came from this heap's `allocate` (or `reallocate`) with `layout` and was not freed
    /// since. An implementation may panic when it detects that this does not hold.
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout);

    /// Resizes a block to `new_size` bytes (same alignment), keeping its contents up to the
    /// smaller size; on error the block is unchanged.
    ///
    /// # Safety
    /// As [`RawHeap::deallocate`] for `ptr` and `old`.
    unsafe fn reallocate(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<NonNull<u8>, AllocError>;

    /// The seed's kernel interface: 1 to 4096 bytes, 16-byte aligned; `None` for other sizes or
    /// no memory.
    fn kmalloc(&mut self, nbytes: usize) -> Option<NonNull<u8>> {
        if nbytes == 0 || nbytes > KMALLOC_MAX {
            return None;
        }
        self.allocate(Layout::from_size_align(nbytes, 16).ok()?)
            .ok()
    }

    /// Checked free: frees `ptr` if it is the start of a live block, else says why not and
    /// changes nothing.
    fn kmfree(&mut self, ptr: NonNull<u8>) -> Result<(), FreeError>;

    /// Statistics.
    fn stats(&self) -> HeapStats;

    /// Gives wholly free memory back to the source where the heap can; returns the pages held.
    fn release_free_pages(&mut self) -> usize;

    /// Checks the heap's invariants, panicking on a violation (tests and fuzzing; O(heap)).
    fn check(&self);
}

/// The page size the heap works in.
pub const PAGE_SIZE: usize = 4096;

/// The largest request the seed's [`Heap::kmalloc`] interface accepts.
pub const KMALLOC_MAX: usize = PAGE_SIZE;

/// Where a heap gets its memory: page-aligned runs of whole pages.
///
/// # Safety
///
/// An implementation promises that:
/// - memory returned by [`alloc_pages`](PageSource::alloc_pages) is `pages * PAGE_SIZE` bytes,
///   readable and writable, aligned to `align`, used by nobody else, and stays valid until the
///   heap gives it back;
/// - after [`free_pages`](PageSource::free_pages) returns false, the memory still belongs to the
///   heap; after it returns true, it belongs to the source;
/// - no method ever calls back into the heap that owns the source (the heap is in the middle
///   of an operation, possibly holding its lock: re-entering it would deadlock or corrupt it). In
///   particular a source must not allocate from the global allocator if the heap is the global
///   allocator.
///
/// [`pages_available_hint`](PageSource::pages_available_hint) is outside this contract: it only
/// saves the heap calls that would fail, and a wrong hint cannot make the heap unsound (too low,
/// and the heap fails allocations the source could have fed; too high, and `alloc_pages` says no).
pub unsafe trait PageSource {
    /// `pages` (at least 1) contiguous pages whose start is aligned to `align` bytes (a power of
    /// two, at least [`PAGE_SIZE`]). `None` when out of memory.
    fn alloc_pages(&mut self, pages: usize, align: usize) -> Option<NonNull<u8>>;

    /// Takes back `pages` pages at `ptr`: a page-aligned run lying wholly inside runs this source
    /// handed out and that are not yet given back (it may be part of a larger run). Returns false
    /// if the source declines (for example an `sbrk` source that can only shrink from the top of
    /// its break); the heap then keeps the memory as free space.
    ///
    /// # Safety
    ///
    /// The run is as described, and if this returns true the caller never touches it again.
    unsafe fn free_pages(&mut self, ptr: NonNull<u8>, pages: usize) -> bool;

    /// A cheap upper bound on the pages one [`alloc_pages`](PageSource::alloc_pages) call could
    /// return now (with page alignment), or `None` (the default) if the source knows none.
    ///
    /// The heap never asks for more pages than this, and when an allocation needs more it fails
    /// without calling `alloc_pages`: so an out-of-memory heap fails fast, without taking a locked
    /// source's lock. The bound must hold: if a call for `n` pages could succeed, the hint is at
    /// least `n` (a source shared between CPUs may return a value that was exact at some moment
    /// during the call; a change another CPU makes concurrently may be missed, as if the call had
    /// come first, but one that happens-before the call may not). It need not be tight: a hint of
    /// `n` does not promise that `n` pages will be given.
    fn pages_available_hint(&self) -> Option<usize> {
        None
    }
}

// A mutable reference to a source is a source, so a heap can borrow one.
// SAFETY: forwards to `S`, which upholds the contract.
unsafe impl<S: PageSource + ?Sized> PageSource for &mut S {
    fn alloc_pages(&mut self, pages: usize, align: usize) -> Option<NonNull<u8>> {
        (**self).alloc_pages(pages, align)
    }

    unsafe fn free_pages(&mut self, ptr: NonNull<u8>, pages: usize) -> bool {
        // SAFETY: the caller upholds the contract for `S`.
        unsafe { (**self).free_pages(ptr, pages) }
    }

    fn pages_available_hint(&self) -> Option<usize> {
        (**self).pages_available_hint()
    }
}

/// An allocation failed: no memory, or an impossible size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocError;

impl core::fmt::Display for AllocError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("out of memory")
    }
}

/// Why [`Heap::kmfree`] refused a pointer. Nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// The pointer is not inside any page the heap holds.
    NotInHeap,
    /// The pointer is inside the heap but not aligned to its 16-byte blocks.
    Misaligned,
    /// The pointer is inside the heap but not at the start of a block.
    NotABlockStart,
    /// The block is already free.
    DoubleFree,
}

impl core::fmt::Display for FreeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            FreeError::NotInHeap => "pointer is not in the heap",
            FreeError::Misaligned => "pointer is not aligned to a heap block",
            FreeError::NotABlockStart => "pointer is not the start of a block",
            FreeError::DoubleFree => "block is already free",
        })
    }
}

/// A snapshot of a heap's use of memory.
///
/// `bytes_in_use + bytes_free + overhead_bytes == pages_held * PAGE_SIZE` always holds. Block
/// sizes include their header and rounding, so `bytes_in_use` is at least the sum of the
/// requested sizes of live blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes in allocated blocks (headers included).
    pub bytes_in_use: usize,
    /// Bytes in free blocks.
    pub bytes_free: usize,
    /// Pages held from the source.
    pub pages_held: usize,
    /// Runs of pages (chunks) held from the source.
    pub chunks: usize,
    /// A request this large is served without asking the source for more (see each heap's
    /// `stats`).
    pub largest_free_block: usize,
    /// Free blocks.
    pub free_blocks: usize,
    /// Bytes of chunk records and sentinels.
    pub overhead_bytes: usize,
}

#[cfg(test)]
mod tests;
