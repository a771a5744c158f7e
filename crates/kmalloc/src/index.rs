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

/// The slot (`fl * SL + sl`) of the class that holds blocks of `len` bytes: `len / UNIT` below
/// `SMALL`; above, with `m = log2(len)`, `(m - log2(SMALL)) * SL + (len >> (m - SL_LOG))`: the
/// first level's base plus the `SL_LOG + 1` bits from the top one, whose top bit adds the one
/// `SL` that the base is short of.
#[inline(always)]
pub(crate) fn slot_of(len: usize) -> usize {
    debug_assert!(len < 2 * block::MAX_BLOCK);
    if len < SMALL {
        return len / UNIT;
    }
    let m = usize::BITS - 1 - len.leading_zeros();
    (((m - SMALL_LOG) as usize) << SL_LOG) + (len >> (m - SL_LOG))
}

/// The class `(fl, sl)` that holds blocks of `len` bytes.
#[inline(always)]
pub(crate) fn class_of(len: usize) -> (usize, usize) {
    let s = slot_of(len);
    (s / SL, s % SL)
}

/// The free lists and their bitmaps.
pub(crate) struct Index {
    fl_map: u64,
    sl_map: [u32; FL],
    /// List heads, class `(fl, sl)` at `fl * SL + sl`.
    heads: [Block; FL * SL],
    /// Free blocks indexed.
    pub count: usize,
}

/// Where a free block's header word keeps its class's slot (`fl * SL + sl`) on 64-bit targets:
/// the top 16 bits, which a used block fills with its tag (see [`block`](crate::block)). Taking
/// a block off its list then needs no size-to-class arithmetic. 32-bit targets have no room
/// and compute the class from the size.
const SLOT_SHIFT: u32 = 48;
const STORE_SLOT: bool = usize::BITS == 64;
const _: () = assert!(FL * SL < 1 << 16);

/// The slot of class `(fl, sl)` in the heads.
#[inline(always)]
pub(crate) fn slot(fl: usize, sl: usize) -> usize {
    fl * SL + sl
}

/// The slot of the list that holds free block `h` of `len` bytes.
///
/// # Safety
/// `h` is an indexed free block of `len` bytes.
#[inline(always)]
unsafe fn slot_of_member(h: Block, len: usize) -> usize {
    if STORE_SLOT {
        // SAFETY: per the contract `h` is a free block whose header holds its slot.
        unsafe { (*h).size >> SLOT_SHIFT }
    } else {
        slot_of(len)
    }
}

/// The slot a free block's header word records (for the checker); that of `len` on 32-bit
/// targets.
///
/// # Safety
/// `h` is a free block of `len` bytes.
pub(crate) unsafe fn recorded_class(h: Block, len: usize) -> (usize, usize) {
    // SAFETY: per the contract.
    let s = unsafe { slot_of_member(h, len) };
    (s / SL, s % SL)
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
            heads: [ptr::null_mut(); FL * SL],
            count: 0,
        }
    }

    /// The head of class `(fl, sl)` (null if empty).
    #[inline(always)]
    pub(crate) fn head(&self, fl: usize, sl: usize) -> Block {
        self.heads[slot(fl, sl)]
    }

    /// The head of the class at slot `s` (null if empty).
    ///
    /// # Safety
    /// `s` is a slot from [`slot_of`] or [`Index::above`].
    #[inline(always)]
    pub(crate) unsafe fn head_at(&self, s: usize) -> Block {
        // SAFETY: per the contract `s < FL * SL`.
        unsafe { *self.heads.get_unchecked(s) }
    }

    /// Adds free block `h` of `len` bytes to its class, writing its header word: `len`, `FREE`,
    /// the flags `keep` (`FIRST`, `PREV_FREE`) and, on 64-bit targets, the class.
    ///
    /// # Safety
    /// `h` is a free block of `len` bytes on no list (its footer and its successor's
    /// `PREV_FREE` are the caller's to write).
    #[inline]
    pub(crate) unsafe fn insert(&mut self, h: Block, len: usize, keep: usize) {
        // SAFETY: per the contract, and `s` is `len`'s slot.
        unsafe { self.insert_at(h, len, keep, slot_of(len)) }
    }

    /// [`Index::insert`] with `len`'s slot already known.
    ///
    /// # Safety
    /// As [`Index::insert`], and `s == slot_of(len)`.
    #[inline(always)]
    pub(crate) unsafe fn insert_at(&mut self, h: Block, len: usize, keep: usize, s: usize) {
        // SAFETY: per the contract.
        unsafe { self.link_at(h, len, keep, s) };
        self.count += 1;
    }

    /// Takes the head off the non-empty list at slot `s` and puts free block `new` of `len`
    /// bytes, on no list, in its class at slot `rs`: [`Index::pop`] and [`Index::insert_at`]
    /// with the count left as it is. Returns the old head.
    ///
    /// # Safety
    /// As [`Index::pop`] for `s`, and as [`Index::insert_at`] for `new`, `len` and `rs`.
    #[inline(always)]
    pub(crate) unsafe fn swap_head(
        &mut self,
        s: usize,
        new: Block,
        len: usize,
        rs: usize,
    ) -> Block {
        // SAFETY: per the contract.
        unsafe {
            let h = self.unlink_head(s);
            self.link_at(new, len, 0, rs);
            h
        }
    }

    /// [`Index::insert_at`] but for the count.
    ///
    /// # Safety
    /// As [`Index::insert_at`].
    #[inline(always)]
    unsafe fn link_at(&mut self, h: Block, len: usize, keep: usize, s: usize) {
        debug_assert_eq!(slot_of(len), s);
        let (fl, sl) = (s / SL, s % SL);
        // SAFETY: `s < FL * SL`: `slot_of` maps every block size below `2 * MAX_BLOCK` into
        // the index.
        let head = unsafe { *self.heads.get_unchecked(s) };
        let class = if STORE_SLOT { s << SLOT_SHIFT } else { 0 };
        // SAFETY: `h` is ours per the contract, `head` (if any) is a member.
        unsafe {
            (*h).size = len | block::FREE | keep | class;
            *prev_slot(h) = ptr::null_mut();
            *next_slot(h) = head;
            if head.is_null() {
                // The list was empty: mark it.
                *self.sl_map.get_unchecked_mut(fl) |= 1 << sl;
                self.fl_map |= 1 << fl;
            } else {
                *prev_slot(head) = h;
            }
            *self.heads.get_unchecked_mut(s) = h;
        }
    }

    /// Takes the head off the non-empty list at slot `s` and returns it: [`Index::remove`]
    /// without finding the class or the member before.
    ///
    /// # Safety
    /// The list at slot `s` (from [`slot_of`] or [`Index::above`]) is non-empty.
    #[inline(always)]
    pub(crate) unsafe fn pop(&mut self, s: usize) -> Block {
        self.count -= 1;
        // SAFETY: per the contract.
        unsafe { self.unlink_head(s) }
    }

    /// [`Index::pop`] but for the count.
    ///
    /// # Safety
    /// As [`Index::pop`].
    #[inline(always)]
    unsafe fn unlink_head(&mut self, s: usize) -> Block {
        let (fl, sl) = (s / SL, s % SL);
        // SAFETY: `h` is the head, a member; its successor (if any) is a member too. The slot
        // is a valid one, so `s < FL * SL` and `fl < FL`.
        unsafe {
            let h = *self.heads.get_unchecked(s);
            let next = *next_slot(h);
            *self.heads.get_unchecked_mut(s) = next;
            if next.is_null() {
                let map = self.sl_map.get_unchecked_mut(fl);
                *map &= !(1 << sl);
                if *map == 0 {
                    self.fl_map &= !(1 << fl);
                }
            } else {
                *prev_slot(next) = ptr::null_mut();
            }
            h
        }
    }

    /// Puts free block `new` of `len` bytes, whose class is at slot `s`, in the place of `old`,
    /// the head of that list, which leaves it: a block split off the front of the head whose
    /// remainder stays in the class changes no bitmap and no count. Writes `new`'s header as
    /// [`Index::insert`] does.
    ///
    /// # Safety
    /// `old` is the head of the list at slot `s`; `new` is a free block of `len` bytes on no
    /// list and `slot_of(len) == s`.
    #[inline(always)]
    pub(crate) unsafe fn replace_head(&mut self, s: usize, old: Block, new: Block, len: usize) {
        debug_assert_eq!(slot_of(len), s);
        let class = if STORE_SLOT { s << SLOT_SHIFT } else { 0 };
        // SAFETY: `old` is a member, its successor too; `new` is ours per the contract.
        unsafe {
            let next = *next_slot(old);
            (*new).size = len | block::FREE | class;
            *prev_slot(new) = ptr::null_mut();
            *next_slot(new) = next;
            if !next.is_null() {
                *prev_slot(next) = new;
            }
            *self.heads.get_unchecked_mut(s) = new;
        }
    }

    /// Takes member `h` of `len` bytes off its list: the class is the one its header records
    /// (computed from `len` on 32-bit targets).
    ///
    /// # Safety
    /// `h` is an indexed free block of `len` bytes.
    #[inline]
    pub(crate) unsafe fn remove(&mut self, h: Block, len: usize) {
        // SAFETY: `h` and its neighbours are members, whose link words are theirs.
        unsafe {
            let s = slot_of_member(h, len);
            let next = *next_slot(h);
            let prev = *prev_slot(h);
            if !next.is_null() {
                *prev_slot(next) = prev;
            }
            if prev.is_null() {
                // SAFETY (index): a recorded slot is below FL * SL (insert wrote it).
                *self.heads.get_unchecked_mut(s) = next;
                if next.is_null() {
                    let (fl, sl) = (s / SL, s % SL);
                    *self.sl_map.get_unchecked_mut(fl) &= !(1 << sl);
                    if *self.sl_map.get_unchecked(fl) == 0 {
                        self.fl_map &= !(1 << fl);
                    }
                }
            } else {
                *next_slot(prev) = next;
            }
        }
        self.count -= 1;
    }

    /// The slot of the smallest non-empty class strictly above slot `s`: two bitmap scans.
    #[inline(always)]
    pub(crate) fn above(&self, s: usize) -> Option<usize> {
        let (fl, sl) = (s / SL, s % SL);
        // SAFETY: `fl < FL` for a valid slot.
        let map = unsafe { *self.sl_map.get_unchecked(fl) };
        // The classes after `sl` (none when `sl` is the last: the shift empties the mask).
        let rest = map & (!1u32 << sl);
        if rest != 0 {
            return Some(slot(fl, rest.trailing_zeros() as usize));
        }
        let fls = self.fl_map & (!1u64 << fl);
        if fls == 0 {
            return None;
        }
        let f = fls.trailing_zeros() as usize;
        // SAFETY: `fl_map` marks only first levels below FL.
        let map = unsafe { *self.sl_map.get_unchecked(f) };
        Some(slot(f, map.trailing_zeros() as usize))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The classes as the module docs define them, with a branch and a log.
    fn reference(len: usize) -> (usize, usize) {
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

    #[test]
    fn slot_of_matches_the_documented_classes() {
        let mut lens: std::vec::Vec<usize> = (1..=4096).map(|u| u * UNIT).collect();
        for log in SMALL_LOG..usize::BITS - (2 * block::MAX_BLOCK).leading_zeros() {
            for d in [0, 1, 15, 16, 17] {
                lens.push((1usize << log) + d * UNIT);
                lens.push((1usize << log) - d * UNIT);
                lens.push((2usize << log) - UNIT);
            }
        }
        for len in lens {
            let len = len.clamp(UNIT, 2 * block::MAX_BLOCK - UNIT);
            let (fl, sl) = reference(len);
            assert_eq!(class_of(len), (fl, sl), "{len} bytes");
            assert!(slot_of(len) < FL * SL, "{len} bytes");
        }
    }
}
