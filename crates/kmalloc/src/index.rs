//! The free-block index of the bounded heap: TLSF's two-level segregated lists with bitmaps.
//!
//! Every free block (see [`block`](crate::block)) is on exactly one list, chosen by its size:
//!
//! - sizes below [`SMALL`] (512 bytes) have a list each, in steps of 16 (first level 0);
//! - above, the first level is the power of two (`fl = log2(size) - 8`) and the second level
//!   splits it into [`SL`] (32) equal ranges (the five bits below the top one), so blocks of
//!   one class differ by less than 1/32 of their size. (Measured with talc's heap-efficiency
//!   benchmark: 16 ranges ended 0.3 % lower; 64 ranges 0.1 % higher, but with an index of
//!   20 KiB that the heap, built by value, carries through the callers' stacks.)
//!
//! A bitmap of non-empty first levels and one of non-empty second levels per first level find
//! the smallest non-empty class above a given one in two `trailing_zeros`: a good fit without
//! walking any list. A request looks at the head of its own class first (any block there may
//! fit; only the head is tried), then at the smallest non-empty class above it, where every
//! block fits. Lists are doubly linked through the first two payload words of a free block
//! (`next`, `prev`), so any member leaves in O(1) when a neighbour merges with it.
//!
//! Invariant: bit `(fl, sl)` is set exactly when list `(fl, sl)` is non-empty; `fl_map` bit
//! `fl` exactly when some `sl` bit of `fl` is set; every member's size maps to its class.

use crate::block::{self, Block, HDR, UNIT};
use core::ptr;

/// Second-level classes per power of two (one bit each in a `u32`).
pub(crate) const SL_LOG: u32 = 5;
pub(crate) const SL: usize = 1 << SL_LOG;
/// Sizes below this have exact classes at first level 0.
pub(crate) const SMALL: usize = SL * UNIT;
const SMALL_LOG: u32 = SMALL.trailing_zeros();
/// First levels: 0 for the small sizes, then one per power of two from `SMALL` up to the
/// largest size the heap indexes or looks for: below `2 * MAX_BLOCK` (a block with the slack of
/// the largest alignment).
pub(crate) const FL: usize =
    (usize::BITS - (2 * block::MAX_BLOCK).leading_zeros() - SMALL_LOG + 1) as usize;
const _: () = assert!(FL <= 64);

/// The class `(fl, sl)` that holds blocks of `len` bytes.
#[inline(always)]
pub(crate) fn class_of(len: usize) -> (usize, usize) {
    debug_assert!(len < 2 * block::MAX_BLOCK);
    if len < SMALL {
        (0, len / UNIT)
    } else {
        let log = usize::BITS - 1 - len.leading_zeros();
        (
            (log - SMALL_LOG + 1) as usize,
            (len >> (log - SL_LOG)) & (SL - 1),
        )
    }
}

/// The free lists and their bitmaps.
pub(crate) struct Index {
    fl_map: u64,
    sl_map: [u32; FL],
    heads: [[Block; SL]; FL],
    /// Free blocks indexed.
    pub count: usize,
}

/// The word of a free block that holds its next list member: its payload's first word.
#[inline(always)]
fn next_slot(h: Block) -> *mut Block {
    block::payload(h).cast()
}

/// The word of a free block that holds its previous list member: 8 bytes after the next link.
#[inline(always)]
fn prev_slot(h: Block) -> *mut Block {
    block::payload(h).wrapping_add(8).cast()
}

// The links and the footer fit in the smallest block.
const _: () = assert!(HDR + 8 + core::mem::size_of::<usize>() <= block::MIN_BLOCK - 8);

impl Index {
    pub(crate) const fn new() -> Self {
        Index {
            fl_map: 0,
            sl_map: [0; FL],
            heads: [[ptr::null_mut(); SL]; FL],
            count: 0,
        }
    }

    /// The head of class `(fl, sl)` (null if empty).
    #[inline(always)]
    pub(crate) fn head(&self, fl: usize, sl: usize) -> Block {
        self.heads[fl][sl]
    }

    /// Adds free block `h` of `len` bytes to its class.
    ///
    /// # Safety
    /// `h` is a free block of `len` bytes on no list.
    #[inline]
    pub(crate) unsafe fn insert(&mut self, h: Block, len: usize) {
        let (fl, sl) = class_of(len);
        let head = self.heads[fl][sl];
        // SAFETY: `h` is ours per the contract, `head` (if any) is a member.
        unsafe {
            *prev_slot(h) = ptr::null_mut();
            *next_slot(h) = head;
            if head.is_null() {
                // The list was empty: mark it.
                self.sl_map[fl] |= 1 << sl;
                self.fl_map |= 1 << fl;
            } else {
                *prev_slot(head) = h;
            }
        }
        self.heads[fl][sl] = h;
        self.count += 1;
    }

    /// Takes the head off the non-empty list `(fl, sl)` and returns it: [`Index::remove`]
    /// without finding the class or the member before.
    ///
    /// # Safety
    /// List `(fl, sl)` is non-empty.
    #[inline(always)]
    pub(crate) unsafe fn pop(&mut self, fl: usize, sl: usize) -> Block {
        let h = self.heads[fl][sl];
        // SAFETY: `h` is the head, a member; its successor (if any) is a member too.
        unsafe {
            let next = *next_slot(h);
            self.heads[fl][sl] = next;
            if next.is_null() {
                self.sl_map[fl] &= !(1 << sl);
                if self.sl_map[fl] == 0 {
                    self.fl_map &= !(1 << fl);
                }
            } else {
                *prev_slot(next) = ptr::null_mut();
            }
        }
        self.count -= 1;
        h
    }

    /// Takes member `h` of `len` bytes off its list.
    ///
    /// # Safety
    /// `h` is on the list of `len`'s class.
    #[inline]
    pub(crate) unsafe fn remove(&mut self, h: Block, len: usize) {
        let (fl, sl) = class_of(len);
        // SAFETY: `h` and its neighbours are members, whose link words are theirs.
        unsafe {
            let next = *next_slot(h);
            let prev = *prev_slot(h);
            if !next.is_null() {
                *prev_slot(next) = prev;
            }
            if prev.is_null() {
                self.heads[fl][sl] = next;
                if next.is_null() {
                    self.sl_map[fl] &= !(1 << sl);
                    if self.sl_map[fl] == 0 {
                        self.fl_map &= !(1 << fl);
                    }
                }
            } else {
                *next_slot(prev) = next;
            }
        }
        self.count -= 1;
    }

    /// The smallest non-empty class strictly above `(fl, sl)`: two bitmap scans.
    #[inline(always)]
    pub(crate) fn above(&self, fl: usize, sl: usize) -> Option<(usize, usize)> {
        let rest = if sl + 1 < SL {
            self.sl_map[fl] & (!0u32 << (sl + 1))
        } else {
            0
        };
        if rest != 0 {
            return Some((fl, rest.trailing_zeros() as usize));
        }
        let fls = if fl + 1 < 64 {
            self.fl_map & (!0u64 << (fl + 1))
        } else {
            0
        };
        if fls == 0 {
            return None;
        }
        let f = fls.trailing_zeros() as usize;
        Some((f, self.sl_map[f].trailing_zeros() as usize))
    }

    /// The highest non-empty class, if any.
    pub(crate) fn highest(&self) -> Option<(usize, usize)> {
        if self.fl_map == 0 {
            return None;
        }
        let f = 63 - self.fl_map.leading_zeros() as usize;
        Some((f, 31 - self.sl_map[f].leading_zeros() as usize))
    }

    /// True if the bitmaps say class `(fl, sl)` is non-empty (for the checker).
    pub(crate) fn bit(&self, fl: usize, sl: usize) -> bool {
        self.sl_map[fl] & (1 << sl) != 0 && self.fl_map & (1 << fl) != 0
    }

    /// True if first level `fl` is marked non-empty (for the checker).
    pub(crate) fn fl_bit(&self, fl: usize) -> bool {
        self.fl_map & (1 << fl) != 0
    }

    /// The member after `h` on its list.
    ///
    /// # Safety
    /// `h` is a member.
    pub(crate) unsafe fn next(h: Block) -> Block {
        // SAFETY: per the contract.
        unsafe { *next_slot(h) }
    }

    /// The member before `h` on its list (null for a head).
    ///
    /// # Safety
    /// `h` is a member.
    pub(crate) unsafe fn prev(h: Block) -> Block {
        // SAFETY: per the contract.
        unsafe { *prev_slot(h) }
    }
}
