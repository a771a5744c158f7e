//! A physical page-frame allocator for kernels: xv6's `kalloc.c`, made reusable.
//!
//! - Frames come from one or more physical ranges, as a real memory map gives them (holes,
//!   reserved areas); addresses are typed ([`PhysAddr`], [`Frame`]).
//! - One frame, or `n` contiguous frames at a power-of-two alignment (DMA buffers, page-table
//!   pages, multi-page heap runs), in O(log n): a binary buddy system whose free blocks are
//!   recorded in per-order bitmaps with summary levels, kept with an allocation bitmap in the
//!   first frames of each range (about 3 bits per frame). Single frames go through a cache of
//!   [`CACHE_FRAMES`] frames in front of it, runs of 2 to 64 frames through a cache of whole
//!   blocks per order. The allocator has no heap of its own.
//! - Double frees, misaligned frees and frees of frames it does not manage are detected and
//!   reported as [`FreeError`], with nothing changed; the kernel decides whether to panic. Counts
//!   and alignments too large to serve are [`AllocError::InvalidRequest`], never a wrap-around.
//! - What a caller leaves in its frames cannot mislead it: the allocator never stores anything
//!   in, or reads anything from, a frame it manages (only its metadata frames).
//! - Optional junk fill on free and on allocation ([`Junk::XV6`] is xv6's 1 and 5) to catch
//!   dangling references.
//! - [`FrameStats`]: total, free, largest contiguous free run. [`LockedFrameAllocator`] for SMP,
//!   which with the `kmalloc` feature (on by default) is also a `kmalloc::PageSource`, so a
//!   `kmalloc` heap can live on it.
//!
//! The allocator reaches physical memory through a linear "direct map": physical address `p` is
//! at virtual address `p + phys_offset`.
//!
//! # Example: a kernel handing it the boot memory map
//!
//! ```
//! use kalloc::{FrameAllocator, Junk, PhysAddr};
//!
//! // Stand-in for RAM: "physical" address p is byte p of this buffer. A kernel instead writes
//! // `FrameAllocator::new(PHYS_OFFSET)` (where it maps all of physical memory) and takes the
//! // ranges from the firmware's memory map (e820, PVH start_info, multiboot) minus its image.
//! let mut ram = vec![0u64; (2 << 20) / 8];
//! let memory_map = [(0, 1 << 20), ((1 << 20) + 8192, 2 << 20)];
//!
//! let mut frames = FrameAllocator::with_direct_map(ram.as_mut_ptr().cast());
//! frames.set_junk(Junk::XV6);
//! for (start, end) in memory_map {
//!     // SAFETY: the ranges are memory nobody else uses (the buffer, which outlives `frames`).
//!     unsafe { frames.add_range(PhysAddr::new(start), PhysAddr::new(end)) }.unwrap();
//! }
//! let page = frames.allocate().unwrap();
//! let dma = frames.allocate_contiguous(16, 16).unwrap(); // 64 KiB, 64 KiB-aligned
//! assert_eq!(dma.start().as_u64() % (64 << 10), 0);
//! // SAFETY: nobody uses the frames any more.
//! unsafe {
//!     frames.free(page).unwrap();
//!     assert!(frames.free(page).is_err()); // a double free is reported, not obeyed
//!     frames.free_contiguous(dma, 16).unwrap();
//! }
//! assert_eq!(frames.stats().free, frames.stats().total);
//! ```
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

mod addr;
mod buddy;
mod levels;
mod locked;

pub use addr::{AddrError, Frame, PhysAddr, PHYS_ADDR_BITS};
pub use buddy::{
    AllocError, FrameAllocator, FrameStats, FreeError, Junk, RangeError, CACHE_FRAMES, MAX_ORDER,
    MAX_RANGES,
};
pub use locked::{FrameGuard, LockedFrameAllocator};

/// Size of a frame.
pub const FRAME_SIZE: usize = 4096;

#[cfg(test)]
mod tests;
