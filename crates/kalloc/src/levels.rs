//! The free-block index of one range: for each buddy order, a bitmap with one bit per aligned
//! block of that order (1 = a free block heads there), plus summary levels above it (bit `i` of a
//! level is 1 exactly when word `i` of the level below is not zero), so the first free block of
//! an order is found in one word read per level.
//!
//! Everything lives in the range's metadata frames, as 64-bit words from a base pointer:
//!
//! ```text
//! [header: for each order, LEVELS and then (offset, words) of each level] [alloc bitmap] [levels…]
//! ```
//!
//! Invariant: every summary bit is exactly "the word below is not zero"; the top level (the last
//! one, 1 word unless the range is huge) is scanned linearly.

/// Orders the index covers (0..=MAX_ORDER).
pub(crate) const ORDERS: usize = crate::MAX_ORDER + 1;
/// Levels per order at most: 4 levels hold 2^24 blocks under one top word (64 GiB of frames);
/// a larger range has more than one top word, scanned in turn.
pub(crate) const LEVELS: usize = 4;
/// Header words per order: the level count, then an (offset, words) pair per level.
const PER_ORDER: usize = 1 + 2 * LEVELS;
/// Words of the header.
pub(crate) const HEADER_WORDS: usize = ORDERS * PER_ORDER;

/// The header of a range whose blocks are numbered from frame `base` to `end` (exclusive) and
/// whose levels start at word `first_word`: returns the header and the words used in all.
pub(crate) fn layout(base: u64, end: u64, first_word: u64) -> ([u64; HEADER_WORDS], u64) {
    let mut header = [0u64; HEADER_WORDS];
    let mut at = first_word;
    for k in 0..ORDERS {
        let blocks = ((end - 1) >> k) - (base >> k) + 1;
        let mut words = blocks.div_ceil(64);
        let h = &mut header[k * PER_ORDER..(k + 1) * PER_ORDER];
        let mut levels = 0;
        while levels < LEVELS {
            h[1 + 2 * levels] = at;
            h[2 + 2 * levels] = words;
            at += words;
            levels += 1;
            if words == 1 {
                break;
            }
            words = words.div_ceil(64);
        }
        h[0] = levels as u64;
    }
    (header, at - first_word)
}

/// A view of one range's index through its metadata pointer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Index {
    pub meta: *mut u64,
}

impl Index {
    /// Reads header word `i`.
    #[inline]
    fn header(self, i: usize) -> u64 {
        // SAFETY: the header is the first HEADER_WORDS words of the metadata (`Index` is made only
        // over a range's metadata, written by `layout` in `add_range`).
        unsafe { *self.meta.add(i) }
    }

    #[inline]
    fn levels(self, order: usize) -> usize {
        self.header(order * PER_ORDER) as usize
    }

    /// Pointer to word `i` of `level` of `order`.
    #[inline]
    fn word(self, order: usize, level: usize, i: u64) -> *mut u64 {
        let off = self.header(order * PER_ORDER + 1 + 2 * level);
        debug_assert!(i < self.header(order * PER_ORDER + 2 + 2 * level));
        // (`wrapping_add`: computing the address is safe; callers dereference it under their own
        // SAFETY argument: the word is inside the level, so inside the metadata.)
        self.meta.wrapping_add((off + i) as usize)
    }

    /// True if block `idx` of `order` is free.
    #[inline]
    pub fn test(self, order: usize, idx: u64) -> bool {
        // SAFETY: block indices passed in are below the order's block count, so the word is in
        // level 0 of the order, inside the metadata.
        unsafe { *self.word(order, 0, idx / 64) >> (idx % 64) & 1 == 1 }
    }

    /// Marks block `idx` of `order` free. Returns true if its level-0 word already had a free
    /// block (so the order had one before), which callers use to skip their own bookkeeping.
    #[inline]
    pub fn set(self, order: usize, idx: u64) -> bool {
        // Level 0 first, without reading the level count: most sets end here.
        let p = self.word(order, 0, idx / 64);
        // SAFETY: `idx` is a block index of the order, so its word is in level 0, inside the
        // metadata.
        let was = unsafe { *p };
        // SAFETY: as above.
        unsafe { *p = was | 1 << (idx % 64) };
        if was != 0 {
            return true;
        }
        let mut i = idx / 64;
        for level in 1..self.levels(order) {
            let p = self.word(order, level, i / 64);
            // SAFETY: `i` indexes a bit of this level (a word index of the level below), so the
            // word is inside the metadata.
            let was = unsafe { *p };
            // SAFETY: as above.
            unsafe { *p = was | 1 << (i % 64) };
            if was != 0 {
                break;
            }
            i /= 64;
        }
        false
    }

    /// Marks block `idx` of `order` not free; returns true if the order now has no free block.
    #[inline]
    pub fn clear(self, order: usize, idx: u64) -> bool {
        // Level 0 first, without reading the level count: most clears end here.
        let p = self.word(order, 0, idx / 64);
        // SAFETY: as in `set`.
        let now = unsafe { *p } & !(1 << (idx % 64));
        // SAFETY: as above.
        unsafe { *p = now };
        if now != 0 {
            return false;
        }
        let levels = self.levels(order);
        let mut i = idx / 64;
        for level in 1..levels {
            let p = self.word(order, level, i / 64);
            // SAFETY: as in `set`.
            let now = unsafe { *p } & !(1 << (i % 64));
            // SAFETY: as in `set`.
            unsafe { *p = now };
            if now != 0 {
                return false;
            }
            i /= 64;
        }
        // The top word just emptied: the order is empty unless another top word is not.
        self.first_top(order, levels - 1).is_none()
    }

    /// Index of the first non-zero word of the top level, and that word.
    #[inline]
    fn first_top(self, order: usize, top: usize) -> Option<(u64, u64)> {
        let words = self.header(order * PER_ORDER + 2 + 2 * top);
        (0..words).find_map(|i| {
            // SAFETY: `i` is below the top level's word count.
            let w = unsafe { *self.word(order, top, i) };
            (w != 0).then_some((i, w))
        })
    }

    /// The first free block of `order`, if any: one word per level.
    #[inline]
    pub fn first(self, order: usize) -> Option<u64> {
        let levels = self.levels(order);
        let (i, w) = self.first_top(order, levels - 1)?;
        let mut idx = i * 64 + w.trailing_zeros() as u64;
        for level in (0..levels - 1).rev() {
            // SAFETY: `idx` is a set bit of the level above, so a word of this level.
            let w = unsafe { *self.word(order, level, idx) };
            debug_assert_ne!(w, 0, "summary bit over an empty word");
            idx = idx * 64 + w.trailing_zeros() as u64;
        }
        Some(idx)
    }

    /// Checks the summary invariant of every order; panics on the first violation. O(words).
    pub fn check(self) {
        for order in 0..ORDERS {
            let levels = self.levels(order);
            for level in 1..levels {
                let words = self.header(order * PER_ORDER + 2 + 2 * level);
                let below = self.header(order * PER_ORDER + 2 + 2 * (level - 1));
                for i in 0..below {
                    // SAFETY: indices below the levels' word counts.
                    let (w, s) = unsafe {
                        (
                            *self.word(order, level - 1, i),
                            *self.word(order, level, i / 64),
                        )
                    };
                    assert!(i / 64 < words);
                    assert_eq!(
                        w != 0,
                        s >> (i % 64) & 1 == 1,
                        "order {order} level {level}: summary bit {i} wrong"
                    );
                }
            }
        }
    }
}
