//! A process's memory-mapped regions, kept ordered by address, for kernels.
//!
//! [`RegionList`] holds non-overlapping [`Region`]s (start, length, protection, sharing, and a
//! backing: anonymous memory or a file handle at an offset, generic over the handle type). It
//! answers what an `mmap`/`munmap`/page-fault path asks:
//!
//! - [`insert`](RegionList::insert) a region, refusing overlap;
//! - [`find`](RegionList::find) the region containing an address (page faults);
//! - [`find_gap`](RegionList::find_gap): the lowest free range of a size and alignment between
//!   bounds, taking a hint when that exact range is free (`mmap` without `MAP_FIXED`);
//! - [`remove_range`](RegionList::remove_range): unmap any range — whole regions, a head, a tail,
//!   or a hole that splits a region in two — handing each removed piece to a callback that frees
//!   its pages or writes it back;
//! - iterate in address order, [`try_clone`](RegionList::try_clone) for `fork`,
//!   [`clear`](RegionList::clear) for `exit` and `exec`.
//!
//! A maximum region count is enforced with [`RegionError::TooManyRegions`].
//!
//! # Design
//!
//! Up to 16 regions (most processes) sit inline in the list, sorted, with their bounds in two
//! small arrays that lookups scan: no allocation, no pointer chasing. Above that the list moves
//! to a B+ tree (and back when removals leave 8 or fewer): leaves of up to 16 regions with their
//! bounds in arrays that a branch-free search reads, internal nodes of up to 32 children, all in
//! two arenas (vectors indexed by `u32`) allocated from an allocator the caller supplies
//! ([`allocator_api2`]'s stable `Allocator` trait), so a kernel can put the nodes on its own
//! heap. A lookup among 100 000 regions reads 4 nodes instead of the 17 of a binary tree. Each
//! internal node records, for each child, its first start, last end and largest gap between
//! two of its regions (the augmentation Linux's VMA tree uses), so `find_gap` skips whole
//! subtrees that cannot fit the request; it also keeps its second largest gap, so that an
//! insert or a removal inside a leaf (which moves a few words: regions stay in their slot)
//! updates the gaps on its path in constant time per level. An insert where the last insert
//! or removal left off (`mmap` back where a `munmap` just was, or `mmap`s in a row) takes the
//! path that one recorded instead of descending, unless a node was split, merged or rebalanced
//! since. Lookup, insert and removal are
//! O(log n); gap search is O(log n) when alignment does not exceed the page granularity of the
//! regions.
//!
//! Every allocation (the tree's nodes, including the move from the inline layout to the tree)
//! happens before anything changes and uses `try_reserve`: running out of
//! memory is [`RegionError::OutOfMemory`] with the list untouched, never a panic. The crate
//! contains no `unsafe` code at all (`#![forbid(unsafe_code)]`), which is why it does not use
//! intrusive-collections: intrusive links need `unsafe` adapters.
//!
//! Addresses are `u64` at byte granularity; a kernel keeps them page-aligned.
//!
//! # Example: mmap and munmap in a kernel
//!
//! ```
//! use vmregions::{Backing, Prot, Region, RegionList, Sharing};
//!
//! const PAGE: u64 = 4096;
//! const MMAP_BASE: u64 = 0x1000_0000_0000;
//! const MMAP_TOP: u64 = 0x7000_0000_0000;
//!
//! // The file handle type is the kernel's own (a reference-counted open file); here a name.
//! let mut regions: RegionList<&str> = RegionList::new(64);
//!
//! // mmap(NULL, 3 pages, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)
//! let len = 3 * PAGE;
//! let at = regions.find_gap(len, PAGE, MMAP_BASE, MMAP_TOP, None).expect("address space");
//! regions
//!     .insert(Region { start: at, len, prot: Prot::READ | Prot::WRITE, sharing: Sharing::Private, backing: Backing::Anonymous })
//!     .unwrap();
//!
//! // mmap(hint, 2 pages, PROT_READ, MAP_SHARED, fd, 4096): the hint is free, so it is used.
//! let hint = MMAP_BASE + 100 * PAGE;
//! let at2 = regions.find_gap(2 * PAGE, PAGE, MMAP_BASE, MMAP_TOP, Some(hint)).unwrap();
//! assert_eq!(at2, hint);
//! let file = Backing::File { handle: "README", offset: PAGE };
//! regions.insert(Region { start: at2, len: 2 * PAGE, prot: Prot::READ, sharing: Sharing::Shared, backing: file }).unwrap();
//!
//! // A page fault at at + 4100 finds its region.
//! assert_eq!(regions.find(at + 4100).unwrap().start, at);
//!
//! // munmap(at + PAGE, PAGE): a hole in the middle splits the region in two.
//! let mut freed = Vec::new();
//! regions.remove_range(at + PAGE, PAGE, |piece| freed.push((piece.start, piece.len))).unwrap();
//! assert_eq!(freed, [(at + PAGE, PAGE)]); // the kernel frees this piece's pages
//! assert_eq!(regions.len(), 3);
//!
//! // fork copies the list; exit clears it, writing back shared file pieces.
//! let child = regions.try_clone().unwrap();
//! assert_eq!(child.len(), 3);
//! regions.clear(|_piece| {});
//! assert!(regions.is_empty());
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

#[cfg(test)]
extern crate std;

mod list;
mod small;
mod tree;

pub use allocator_api2::alloc::{Allocator, Global};
pub use list::{Iter, RegionList};

bitflags::bitflags! {
    /// Access a region allows. The empty set is `PROT_NONE`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Prot: u32 {
        /// Readable.
        const READ = 1;
        /// Writable.
        const WRITE = 2;
        /// Executable.
        const EXEC = 4;
    }
}

/// Whether writes are shared with the backing file (and other mappers) or private to the mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sharing {
    /// `MAP_SHARED`.
    Shared,
    /// `MAP_PRIVATE`.
    Private,
}

/// What a region's contents come from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Backing<H> {
    /// Zero-filled memory.
    Anonymous,
    /// A file, from byte `offset` of it at the region's start.
    File {
        /// The kernel's handle on the open file.
        handle: H,
        /// Offset in the file of the region's first byte.
        offset: u64,
    },
}

/// One mapped region: `[start, start + len)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Region<H> {
    /// First address.
    pub start: u64,
    /// Length in bytes (not 0).
    pub len: u64,
    /// Allowed access.
    pub prot: Prot,
    /// Shared or private.
    pub sharing: Sharing,
    /// Contents.
    pub backing: Backing<H>,
}

impl<H> Region<H> {
    /// One past the last address.
    pub fn end(&self) -> u64 {
        self.start + self.len
    }

    /// True if `addr` is inside the region.
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.start && addr - self.start < self.len
    }

    /// The file offset of address `addr` in this region, if it is file-backed; `None` for an
    /// anonymous region, an `addr` outside the region, or an offset past `u64::MAX` (a region
    /// the list accepted has none).
    pub fn file_offset(&self, addr: u64) -> Option<u64> {
        match &self.backing {
            Backing::File { offset, .. } if self.contains(addr) => {
                offset.checked_add(addr - self.start)
            }
            _ => None,
        }
    }
}

impl<H: Clone> Region<H> {
    /// The part `[from, to)` of this region (which must lie inside it), with the file offset
    /// adjusted.
    pub fn slice(&self, from: u64, to: u64) -> Region<H> {
        debug_assert!(from >= self.start && to <= self.end() && from < to);
        let backing = match &self.backing {
            Backing::Anonymous => Backing::Anonymous,
            Backing::File { handle, offset } => Backing::File {
                handle: handle.clone(),
                offset: offset + (from - self.start),
            },
        };
        Region {
            start: from,
            len: to - from,
            prot: self.prot,
            sharing: self.sharing,
            backing,
        }
    }
}

/// Why an operation was refused. The list is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionError {
    /// The region overlaps one already in the list.
    Overlap,
    /// The operation would exceed the list's maximum region count.
    TooManyRegions,
    /// The allocator could not provide memory for a node.
    OutOfMemory,
    /// A length of 0.
    EmptyRange,
    /// `start + len` overflows, or for a file-backed region `offset + len`.
    AddressOverflow,
}

impl core::fmt::Display for RegionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            RegionError::Overlap => "region overlaps an existing one",
            RegionError::TooManyRegions => "too many regions",
            RegionError::OutOfMemory => "out of memory for region nodes",
            RegionError::EmptyRange => "empty range",
            RegionError::AddressOverflow => "range wraps around the address space or the file",
        })
    }
}

#[cfg(test)]
mod tests;
