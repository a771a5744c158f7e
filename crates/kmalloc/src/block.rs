//! Blocks of the bounded heap: the one-word header, its flags and tag, and the boundary tag
//! (footer) that lets a block find a free block before it in O(1).
//!
//! A chunk (see `chunks`) is tiled by blocks. A block starts 8 bytes before a
//! 16-byte boundary with its header word, and its payload follows at that boundary; sizes are
//! multiples of `UNIT` and include the header:
//!
//! ```text
//! used block: [ size|flags|tag ] payload ......................................
//! free block: [ size|flags     ] next free | prev free | ......... | footer = size
//! ```
//!
//! So a used block costs one word, as in dlmalloc: a request of `n` bytes takes
//! `round_up(n + 8, 16)` (at least `MIN_BLOCK`). The word before the header is the end of the
//! block before: its payload when that block is used, its footer when it is free.
//!
//! - `size|flags`: the size in bytes, with `FREE` (this block is free), `PREV_FREE` (the block
//!   just before it in memory is free, so the word before this header is that block's footer),
//!   `FIRST` (the block starts its chunk) and `HELD` (neither free nor in use: a chunk's
//!   sentinel, which has size 0, or a block in the small-block `cache`) in the low
//!   bits. A chunk ends with a sentinel, never free, so no block merges past its chunk.
//! - the tag (64-bit targets): the top 16 bits of a used or cached block's word hold bits of
//!   its own address (`tag_bits`), with the top bit set; a free block has its size class
//!   there instead (see `index`), never with `FREE` clear. A pointer whose
//!   header word does not carry the tag of its address is refused as a wild pointer.
//! - a free block's payload holds the links of its size-class list (see
//!   `index`) and its last word repeats its size (the footer). The flags
//!   and the footer make merging with both neighbours O(1): the next block is at `h + size`,
//!   the previous one at `h - footer` when `PREV_FREE` says it is free.
//!
//! # What the header check tells, exactly
//!
//! `deallocate` and `reallocate` take a pointer `p` as a used block when `p` is 16-aligned and
//! the word at `p - 8` reads as a used block's header: `FREE` and `HELD` clear and (64-bit) the
//! tag of `p - 8`. [`Heap::kmfree`](crate::Heap::kmfree) and `is_allocated` first find the
//! chunk holding `p - 8` (else [`NotInHeap`](crate::FreeError::NotInHeap), without reading),
//! and also want a size from `MIN_BLOCK` to the chunk's end.
//!
//! The heap keeps one invariant for this: **a word that reads as a used or cached header is
//! only ever at the start of a used or cached block.** Every block that stops being one has its
//! header word rewritten: a freed block's gets `FREE` (and its class); one merged into the free
//! block before it is wiped to 0; a cached one has `HELD`; and the first block of a chunk that
//! goes back to the source is wiped before the pages go (see `chunks`), so the pages carry no
//! such word to wherever the source hands them next. A stale header left inside a larger block
//! by a merge with the block before it is therefore 0, and one left by a merge with the block
//! after it says `FREE`.
//!
//! So, on every target, these are refused:
//! - any pointer not 16-aligned;
//! - a second free (or a `reallocate`) of a block that is free, cached, or merged into a free
//!   or used block since, as long as no block has been handed out *at the same address*;
//! - a pointer to a block whose memory is now inside another block (freed and merged, or
//!   absorbed by a growing `reallocate`);
//! - through `kmfree`, any pointer outside the heap's chunks, including into pages the heap gave
//!   back.
//!
//! And these cannot be told from a live block:
//! - a second free after a new block was handed out at the same address (it frees the new
//!   block);
//! - a pointer into a block's payload where the program itself stored, 8 bytes before it, a
//!   word that reads as a used header of that address (on 64-bit targets: flags `FREE` and
//!   `HELD` clear, the top bit set and the next 15 bits equal to address bits 4 to 18, and for
//!   `kmfree` a size that fits; arbitrary data matches with odds of about 2^-18 per word, the
//!   program's own copy of a header always). The same holds for such words left in pages
//!   by whoever had them before the page source handed them to the heap;
//! - `deallocate` and `reallocate` of a pointer into pages the heap gave back to the source:
//!   they read memory the heap no longer owns (`kmfree` does not);
//! - which of the two refusals a pointer into a block's payload gets: `kmfree` says
//!   [`DoubleFree`](crate::FreeError::DoubleFree) when the word before it reads as a cached
//!   header of its address, or as a free block's header whose size fits the chunk, whose footer
//!   repeats the size and whose back link (null with the block heading its class's list, or a
//!   header-aligned address in a chunk whose next link names it) agrees, all of which the
//!   program's data can imitate; otherwise [`NotABlockStart`](crate::FreeError::NotABlockStart).
//!   Either way it frees nothing, and it reads only words inside the heap's chunks, at a
//!   word's alignment;
//! - on 32-bit targets, which have no room for a tag: any pointer whose word before it has
//!   `FREE` and `HELD` clear and a size of at least `MIN_BLOCK` (for `kmfree`, one that fits in
//!   the chunk), for example into a payload holding such data. Inside blocks the heap's own
//!   words never qualify: a footer never sits at a header position (8 mod 16), and a list
//!   link that does has `HELD` set (it is a header's address) or is null. Outside blocks,
//!   `deallocate` of the pointer 8 bytes after a chunk record's page count may be taken
//!   (`kmfree` refuses it: it is before the chunk's first block).
//!
//! Invariants: two free blocks are never neighbours (they are merged); every free block is in
//! the index; `PREV_FREE` of a block is set exactly when the block before it is free.

use core::ptr;

/// The heap's granule: every block size, and every payload address, is a multiple of it.
pub(crate) const UNIT: usize = 16;
/// Bytes of a header before the payload (one word, padded on 32-bit targets).
pub(crate) const HDR: usize = 8;
/// The smallest block: a header and the two free-list links plus the footer of a free block.
pub(crate) const MIN_BLOCK: usize = 2 * UNIT;

/// Flag: the block is free (and in the index).
pub(crate) const FREE: usize = 1;
/// Flag: the block before this one in memory is free; the word before this header is its size.
pub(crate) const PREV_FREE: usize = 2;
/// Flag: the block is the first of its chunk.
pub(crate) const FIRST: usize = 4;
/// Flag: neither free nor in use: a chunk's sentinel (size 0) or a cached block.
pub(crate) const HELD: usize = 8;
/// The sentinel that ends each chunk: size 0, [`HELD`].
pub(crate) const SENTINEL: usize = HELD;
const FLAGS: usize = FREE | PREV_FREE | FIRST | HELD;
/// The bits of the header word that hold the tag: the top 16 on 64-bit targets, none on 32-bit.
const TAG_MASK: usize = (0xffff_u64 << 48) as usize;
pub(crate) const SIZE_MASK: usize = !(FLAGS | TAG_MASK);

/// The largest block the heap makes: below the tag bits, and far from overflow in any arithmetic
/// on sizes.
pub(crate) const MAX_BLOCK: usize = if usize::BITS == 64 {
    1 << 46
} else {
    isize::MAX as usize / 4
};

const TAG_MAGIC: u64 = 0x6b6d_616c_6c6f_6321;

/// The tag a used block at `addr` carries in its top bits (0 on 32-bit targets): address bits 4
/// to 18 (those that tell apart the headers within 512 KiB), with the top bit set so that it
/// is never 0. A shift pair and a bit set: every allocation writes it and every free checks it.
#[inline(always)]
pub(crate) fn tag_bits(addr: usize) -> usize {
    ((addr as u64 >> 4) << 48 | 1 << 63) as usize
}

/// The tag the classic heap's used blocks keep in their link word: mixed from the address, with
/// low bits `0b0101` so that it never equals a 16-aligned link or null.
#[inline]
pub(crate) fn tag(addr: usize) -> usize {
    ((addr.rotate_left(23) ^ TAG_MAGIC as usize) & !0xf) | 0b0101
}

/// A block header: one word. Payload follows at `HDR` bytes.
#[repr(C)]
pub(crate) struct Header {
    pub size: usize,
}

const _: () = assert!(core::mem::size_of::<Header>() <= HDR);
// Sizes up to twice the largest block (a block with its alignment slack) stay below the tag.
const _: () = assert!((2 * MAX_BLOCK) & TAG_MASK == 0);

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
    unsafe { (*h).size & SIZE_MASK }
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

/// Gives used block `h` a new size, keeping its flags and tag.
///
/// # Safety
/// `h` is a used block of the heap and `len` a block size.
#[inline(always)]
pub(crate) unsafe fn set_size(h: Block, len: usize) {
    // SAFETY: per the contract.
    unsafe { (*h).size = ((*h).size & !SIZE_MASK) | len }
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

/// The footer slot of a block of `len` bytes at `h`: its last word.
#[inline(always)]
pub(crate) fn footer(h: Block, len: usize) -> *mut usize {
    offset(h, len).cast::<usize>().wrapping_sub(1)
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
        *footer(h, len) = len;
        (*offset(h, len)).size |= PREV_FREE;
    }
}

/// The parts of [`set_free`] outside `h`'s header: its footer, and `PREV_FREE` in the next
/// block. The index's [`insert`](crate::index::Index::insert) writes the header (with the
/// block's class).
///
/// # Safety
/// As [`set_free`].
#[inline(always)]
pub(crate) unsafe fn set_free_edges(h: Block, len: usize) {
    // SAFETY: per the contract the block and its successor's header are ours.
    unsafe {
        *footer(h, len) = len;
        (*offset(h, len)).size |= PREV_FREE;
    }
}

/// Writes the footer of a free block of `len` bytes at `h`: [`set_free_edges`] for a block
/// whose successor already has `PREV_FREE` (the tail split off a free block).
///
/// # Safety
/// As [`set_free`], and the block after `h + len` has `PREV_FREE` set.
#[inline(always)]
pub(crate) unsafe fn set_footer(h: Block, len: usize) {
    // SAFETY: per the contract.
    unsafe { *footer(h, len) = len };
}

/// Makes `h` a used block of `len` bytes keeping `keep` of its flags, with its tag.
///
/// # Safety
/// `h..h + len` is a block of the heap.
#[inline(always)]
pub(crate) unsafe fn set_used(h: Block, len: usize, keep: usize) {
    // SAFETY: per the contract.
    unsafe { (*h).size = len | keep | tag_bits(h.addr()) };
}

/// True if `h`'s word is that of a used block: neither `FREE` nor `HELD`, and (64-bit) the tag
/// of its address; on 32-bit targets, which have no tag, a size of at least [`MIN_BLOCK`].
///
/// # Safety
/// `h` is readable for a header.
#[inline(always)]
pub(crate) unsafe fn is_used(h: Block) -> bool {
    // SAFETY: per the contract.
    let w = unsafe { ptr::read(ptr::addr_of!((*h).size)) };
    looks_like(w, h, 0)
}

/// True if `h`'s word is that of a block in the small-block cache: [`is_used`] but with
/// `HELD`.
///
/// # Safety
/// `h` is readable for a header.
#[inline(always)]
pub(crate) unsafe fn is_cached(h: Block) -> bool {
    // SAFETY: per the contract.
    let w = unsafe { ptr::read(ptr::addr_of!((*h).size)) };
    looks_like(w, h, HELD)
}

/// True if header word `w` of `h` has `FREE` clear, `HELD` as `held` says, and the tag of
/// `h` (64-bit: one xor and one masked test; the tag's top bit refuses a wiped word), or on
/// 32-bit targets a size of at least [`MIN_BLOCK`].
#[inline(always)]
fn looks_like(w: usize, h: Block, held: usize) -> bool {
    if usize::BITS == 64 {
        (w ^ (tag_bits(h.addr()) | held)) & (FREE | HELD | TAG_MASK) == 0
    } else {
        w & (FREE | HELD) == held && w & SIZE_MASK >= MIN_BLOCK
    }
}

/// Marks cached block `h` as used again. (A block becomes cached in
/// [`Cache::push`](crate::cache::Cache::push), which stores its whole header word.)
///
/// # Safety
/// `h` is a cached block of the heap.
#[inline(always)]
pub(crate) unsafe fn clear_held(h: Block) {
    // SAFETY: per the contract.
    unsafe { (*h).size &= !HELD };
}

/// The offset of the first word in `len` bytes at `run` (a 16-aligned run of pages, say one a
/// heap gave back to its source) that reads as a used or cached block's header of its address
/// with a size that fits in the run, or `None`. For page sources and tests: pages given back
/// never hold one (see the module docs). Always `None` on 32-bit targets, whose header has no
/// tag to tell such a word from data.
///
/// # Safety
/// `run` is valid for reads of `len` bytes and 16-aligned.
pub unsafe fn live_header_in(run: core::ptr::NonNull<u8>, len: usize) -> Option<usize> {
    if usize::BITS != 64 {
        return None;
    }
    (HDR..len).step_by(UNIT).find(|&off| {
        let h: Block = run.as_ptr().wrapping_add(off).cast();
        // SAFETY: `h` lies within the run, readable per the contract.
        unsafe { (is_used(h) || is_cached(h)) && (MIN_BLOCK..=len - off).contains(&size(h)) }
    })
}
