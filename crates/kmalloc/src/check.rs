//! The bounded heap's invariant checker, for tests and fuzzing: walks every chunk and every
//! list (O(heap size)) and panics with a description on the first violation.
//!
//! It checks the invariants stated in [`block`](crate::block), [`index`](crate::index) and
//! [`chunks`](crate::chunks): blocks tile each chunk from its first block to its sentinel; flags
//! agree with the neighbours (`FIRST` only on the first block, `PREV_FREE` exactly after a free
//! block); no two free blocks are neighbours; free blocks have their footer and are on the list
//! of their class, and the lists hold nothing else; the bitmaps mark exactly the non-empty
//! classes; used blocks carry their tag; and the counters (bytes in use, pages, chunks, free
//! blocks) match what the walk finds.

use crate::block::{self, FIRST, FREE, MIN_BLOCK, PREV_FREE, SENTINEL, UNIT};
use crate::chunks;
use crate::heap::Heap;
use crate::index::{self, Index, FL, SL};
use crate::{PageSource, PAGE_SIZE};

impl<S: PageSource> Heap<S> {
    /// Walks every chunk and the free lists and checks the heap's invariants; panics with a
    /// description on the first violation. For tests and fuzzing: O(heap size).
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        let mut in_use = 0;
        let mut cached = 0;
        let mut free_blocks = 0;
        let mut pages = 0;
        let mut nchunks = 0;
        let mut spare_seen = self.spare.is_null();
        let mut c = self.chunks;
        let mut prev_chunk = core::ptr::null_mut();
        // SAFETY: chunk records and the blocks tiling them are the heap's; the walk follows
        // sizes that the checks have just validated.
        unsafe {
            while !c.is_null() {
                assert_eq!((*c).prev, prev_chunk, "broken chunk back link");
                assert!((*c).pages >= 1);
                pages += (*c).pages;
                nchunks += 1;
                let end = chunks::sentinel(c);
                assert_eq!(block::flags(end) & SENTINEL, SENTINEL, "sentinel lost");
                assert_eq!(block::size(end), 0, "sentinel has a size");
                let mut b = chunks::first(c);
                spare_seen |= b == self.spare;
                let mut prev_free = false;
                while b != end {
                    assert!(b < end, "block at {b:p} runs past its chunk");
                    let len = block::size(b);
                    let f = block::flags(b);
                    assert!(
                        len >= MIN_BLOCK && len % UNIT == 0,
                        "bad size {len} at {b:p}"
                    );
                    assert!(
                        f & SENTINEL == 0 || block::is_cached(b),
                        "sentinel flag inside a chunk at {b:p}"
                    );
                    assert_eq!(
                        f & FIRST != 0,
                        b == chunks::first(c),
                        "FIRST wrong at {b:p}"
                    );
                    assert_eq!(f & PREV_FREE != 0, prev_free, "PREV_FREE wrong at {b:p}");
                    if f & FREE != 0 {
                        assert!(!prev_free, "two free neighbours at {b:p}");
                        let foot = *block::footer(b, len);
                        assert_eq!(foot, len, "footer wrong at {b:p}");
                        assert!(self.on_its_list(b, len), "free block {b:p} not on its list");
                        free_blocks += 1;
                        prev_free = true;
                    } else if block::is_cached(b) {
                        cached += len;
                        prev_free = false;
                    } else {
                        assert!(block::is_used(b), "used block {b:p} lost its tag");
                        in_use += len;
                        prev_free = false;
                    }
                    b = block::offset(b, len);
                }
                assert_eq!(
                    block::flags(end) & PREV_FREE != 0,
                    prev_free,
                    "sentinel PREV_FREE"
                );
                prev_chunk = c;
                c = (*c).next;
            }
            // The lists: members are free, of their class, doubly linked, and counted once.
            let mut listed = 0;
            for fl in 0..FL {
                let mut any = false;
                for sl in 0..SL {
                    let mut h = self.index.head(fl, sl);
                    assert_eq!(
                        !h.is_null(),
                        self.index.bit(fl, sl),
                        "bitmap wrong at {fl},{sl}"
                    );
                    let mut prev = core::ptr::null_mut();
                    while !h.is_null() {
                        any = true;
                        assert!(block::flags(h) & FREE != 0, "used block {h:p} on a list");
                        assert_eq!(index::class_of(block::size(h)), (fl, sl), "wrong class");
                        assert_eq!(
                            index::recorded_class(h, block::size(h)),
                            (fl, sl),
                            "header of {h:p} records another class"
                        );
                        assert_eq!(Index::prev(h), prev, "broken list back link at {h:p}");
                        listed += 1;
                        assert!(listed <= free_blocks, "a list has a cycle or strays");
                        prev = h;
                        h = Index::next(h);
                    }
                }
                assert_eq!(
                    any,
                    self.index.fl_bit(fl),
                    "first-level bitmap wrong at {fl}"
                );
            }
            assert_eq!(listed, free_blocks, "free blocks not all listed");
        }
        assert!(spare_seen, "the spare is not the first block of a chunk");
        assert_eq!(self.index.count, free_blocks, "free block count");
        assert_eq!(
            in_use + cached,
            self.in_use,
            "bytes in use (cached ones included)"
        );
        // The cache: its lists hold exactly the blocks tagged cached, of their sizes.
        let mut listed_cached = 0;
        self.cache.for_each(|h, len| {
            // SAFETY: cache members are blocks of the heap.
            unsafe {
                assert!(block::is_cached(h), "cache member {h:p} not tagged cached");
                assert_eq!(block::size(h), len, "cache member {h:p} of the wrong size");
            }
            listed_cached += len;
        });
        assert_eq!(listed_cached, cached, "cached blocks not all in the cache");
        assert_eq!(cached, self.cache.bytes(), "cached bytes");
        assert_eq!(pages, self.pages, "pages held");
        assert_eq!(nchunks, self.nchunks, "chunks held");
        assert_eq!(
            self.stats().bytes_in_use + self.stats().bytes_free + self.stats().overhead_bytes,
            pages * PAGE_SIZE
        );
    }

    /// True if free block `b` of `len` bytes is linked into its class's list: its neighbours on
    /// the list (or the head) point back at it.
    ///
    /// # Safety
    /// `b` is a free block; list members are free blocks.
    unsafe fn on_its_list(&self, b: block::Block, len: usize) -> bool {
        let (fl, sl) = index::class_of(len);
        // SAFETY: per the contract.
        unsafe {
            let prev = Index::prev(b);
            let next = Index::next(b);
            let back = if prev.is_null() {
                self.index.head(fl, sl) == b
            } else {
                Index::next(prev) == b
            };
            back && (next.is_null() || Index::prev(next) == b)
        }
    }
}
