//! Blocks of the bounded heap: the 16-byte header, its flags and tag, and the boundary tag
//! (footer) that lets a block find a free block before it in O(1).
//!
//! A chunk (see [`chunks`](crate::chunks)) is tiled by blocks. A block is a [`Header`] of two words
//! followed by its payload; sizes are multiples of [`UNIT`] and include the header:
//!
//! ```text
//! used block: [ size|flags | tag            ] payload ..................................
//! free block: [ size|flags | next free      ] prev free | ......... | footer = size
//! ```
//!
//! - `size|flags`: the size in bytes, with [`FREE`] (this block is free), [`PREV_FREE`] (the block
//!   just before it in memory is free, so the word before this header is that block's footer)
//!   and [`FIRST`] (the block starts its chunk) in the low bits. A chunk ends with a sentinel
//!   header of size 0 and flag [`SENTINEL`], never free, so no block merges past its chunk.
//! - second word: in a used block, [`tag`] of its own address — a value no free block holds
//!   there (a free block keeps a 16-aligned link, whose low bits are 0). `deallocate` and
//!   `reallocate` refuse a header without it: a second free, or a pointer the heap never
//!   handed out. A block that merges into the free block before it has its tag wiped, so a
//!   second free of it is caught as well.
//! - a free block's payload holds the links of its size-class list (see
//!   [`index`](crate::index)) and its last word repeats its size (the footer). The flags
//!   and the footer make merging with both neighbours O(1): the next block is at `h + size`,
//!   the previous one at `h - footer` when `PREV_FREE` says it is free.
//!
//! Invariants: two free blocks are never neighbours (they are merged); every free block is in
//! the index; `PREV_FREE` of a block is set exactly when the block before it is free.

use core::ptr;

/// The header's size and the heap's granule: every block size and payload address is a
/// multiple of it.
pub(crate) const UNIT: usize = 16;
/// Bytes of a header before the payload.
pub(crate) const HDR: usize = UNIT;
/// The smallest block: a header and the two free-list links plus the footer of a free block.
pub(crate) const MIN_BLOCK: usize = 2 * UNIT;

/// Flag: the block is free (and in the index).
pub(crate) const FREE: usize = 1;
/// Flag: the block before this one in memory is free; the word before this header is its size.
pub(crate) const PREV_FREE: usize = 2;
/// Flag: the block is the first of its chunk.
pub(crate) const FIRST: usize = 4;
/// Flag: the header ends its chunk (size 0, never free).
pub(crate) const SENTINEL: usize = 8;
const FLAGS: usize = FREE | PREV_FREE | FIRST | SENTINEL;

const TAG_MAGIC: u64 = 0x6b6d_616c_6c6f_6321;

/// The tag a used block at `addr` carries in its second word: mixed from the address, with
/// low bits `0b0101` so that it never equals a 16-aligned link or null.
#[inline]
pub(crate) fn tag(addr: usize) -> usize {
    ((addr.rotate_left(23) ^ TAG_MAGIC as usize) & !0xf) | 0b0101
}

/// A block header. Payload follows at `HDR` bytes.
#[repr(C)]
pub(crate) struct Header {
    pub size: usize,
    /// The tag (used) or the next free block of its class (free).
    pub link: usize,
}

const _: () = assert!(core::mem::size_of::<Header>() <= HDR);

/// Block pointer arithmetic and field access, all through raw pointers derived from the
/// chunk's pointer (so provenance is kept).
pub(crate) type Block = *mut Header;

/// The block `bytes` after `h` (may be negative through `wrapping_sub` callers).
#[inline(always)]
pub(crate) fn offset(h: Block, bytes: usize) -> Block {
    h.cast::<u8>().wrapping_add(bytes).cast()
}

/// The payload of `h`.
#[inline(always)]
pub(crate) fn payload(h: Block) -> *mut u8 {
    h.cast::<u8>().wrapping_add(HDR)
}

/// The header of the block whose payload is at `p`.
#[inline(always)]
pub(crate) fn header_of(p: *mut u8) -> Block {
    p.wrapping_sub(HDR).cast()
}

/// The size of `h` in bytes.
///
/// # Safety
/// `h` is a block header of the heap.
#[inline(always)]
pub(crate) unsafe fn size(h: Block) -> usize {
    // SAFETY: per the contract.
    unsafe { (*h).size & !FLAGS }
}

/// The flags of `h`.
///
/// # Safety
/// `h` is a block header of the heap.
#[inline(always)]
pub(crate) unsafe fn flags(h: Block) -> usize {
    // SAFETY: per the contract.
    unsafe { (*h).size & FLAGS }
}

/// The block after `h` in memory (the sentinel after the last block).
///
/// # Safety
/// `h` is a block header of the heap, not the sentinel.
#[inline(always)]
pub(crate) unsafe fn next_phys(h: Block) -> Block {
    // SAFETY: per the contract.
    offset(h, unsafe { size(h) })
}

/// The free block before `h` in memory, found through its footer.
///
/// # Safety
/// `h` is a block header whose `PREV_FREE` flag is set.
#[inline(always)]
pub(crate) unsafe fn prev_phys(h: Block) -> Block {
    // SAFETY: the footer of the free block before is the word before `h`.
    let len = unsafe { *h.cast::<usize>().wrapping_sub(1) };
    h.cast::<u8>().wrapping_sub(len).cast()
}

/// Makes `h` a free block of `len` bytes (flags `FREE` plus `keep` from its old flags), writes
/// its footer, and tells the next block.
///
/// # Safety
/// `h..h + len` is a block of the heap followed by a block header.
#[inline(always)]
pub(crate) unsafe fn set_free(h: Block, len: usize, keep: usize) {
    // SAFETY: per the contract the block and its successor's header are ours.
    unsafe {
        (*h).size = len | FREE | keep;
        *offset(h, len).cast::<usize>().wrapping_sub(1) = len;
        (*offset(h, len)).size |= PREV_FREE;
    }
}

/// [`set_free`] for a block whose successor already has `PREV_FREE` (the tail split off a free
/// block): writes only `h`'s header and footer, not the successor's line.
///
/// # Safety
/// As [`set_free`], and the block after `h + len` has `PREV_FREE` set.
#[inline(always)]
pub(crate) unsafe fn set_free_tail(h: Block, len: usize) {
    // SAFETY: per the contract.
    unsafe {
        (*h).size = len | FREE;
        *offset(h, len).cast::<usize>().wrapping_sub(1) = len;
    }
}

/// Makes `h` a used block of `len` bytes keeping `keep` of its flags, with its tag.
///
/// # Safety
/// `h..h + len` is a block of the heap.
#[inline(always)]
pub(crate) unsafe fn set_used(h: Block, len: usize, keep: usize) {
    // SAFETY: per the contract.
    unsafe {
        (*h).size = len | keep;
        (*h).link = tag(h.addr());
    }
}

/// True if `h` carries the tag of a used block.
///
/// # Safety
/// `h` is readable for a header.
#[inline(always)]
pub(crate) unsafe fn is_used(h: Block) -> bool {
    // SAFETY: per the contract.
    unsafe { ptr::read(ptr::addr_of!((*h).link)) == tag(h.addr()) }
}
