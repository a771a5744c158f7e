//! Resizing a block of the bounded heap, in place when it can.
//!
//! Shrinking splits off the tail as a free block (merged with a free block after it) when the
//! tail can be a block. Growing takes the free block after it when that is enough, splitting off
//! what is left. Otherwise the block moves: allocate, copy, free (into the small-block cache when
//! it takes the old block, as any free). Each case is a fixed number
//! of header reads and writes; only the copy grows with the size.

use crate::block::{self, FREE, MIN_BLOCK, PREV_FREE, UNIT};
use crate::heap::{block_len, Heap};
use crate::{AllocError, PageSource};
use core::alloc::Layout;
use core::ptr::NonNull;

impl<S: PageSource> Heap<S> {
    /// Resizes a block, in place when it can: shrinking splits off the tail, growing absorbs a
    /// free block that follows; otherwise it allocates, copies and frees. On error the block is
    /// left as it was.
    ///
    /// # Safety
    /// As [`Heap::deallocate`] for `ptr` and `old`.
    ///
    /// # Panics
    /// As [`Heap::deallocate`], if `ptr` is not a used block.
    pub unsafe fn reallocate(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<NonNull<u8>, AllocError> {
        let h = block::header_of(ptr.as_ptr());
        // SAFETY: per the contract `ptr` is a used block of this heap (checked by its tag); its
        // successor in memory is a block or the sentinel of its chunk, and never the spare when
        // free (the spare spans its chunk), so it leaves the index without `unlist`.
        unsafe {
            if cfg!(feature = "tag-checks") {
                assert!(
                    ptr.as_ptr().addr() % UNIT == 0 && block::is_used(h),
                    "kmalloc: realloc of a freed or invalid pointer {:p}",
                    ptr.as_ptr()
                );
            }
            let new = block_len(new_size).ok_or(AllocError)?;
            let cur = block::size(h);
            let next = block::offset(h, cur);
            if new == cur {
                return Ok(ptr);
            }
            if new < cur {
                let mut tail = cur - new;
                if block::flags(next) & FREE != 0 {
                    let n = block::size(next);
                    self.index.remove(next, n);
                    tail += n;
                    // The block after `next` already says its predecessor is free.
                } else if tail < MIN_BLOCK {
                    return Ok(ptr);
                } else {
                    (*next).size |= PREV_FREE;
                }
                let t = block::offset(h, new);
                block::set_footer(t, tail);
                self.index.insert(t, tail, 0);
                block::set_size(h, new);
                self.in_use -= cur - new;
                return Ok(ptr);
            }
            if block::flags(next) & FREE != 0 {
                let n = block::size(next);
                if cur + n >= new {
                    self.index.remove(next, n);
                    let total = cur + n;
                    let used = if total - new >= MIN_BLOCK {
                        let rest = block::offset(h, new);
                        // The block after `next` already says its predecessor is free.
                        block::set_footer(rest, total - new);
                        self.index.insert(rest, total - new, 0);
                        new
                    } else {
                        (*block::offset(h, total)).size &= !PREV_FREE;
                        total
                    };
                    block::set_size(h, used);
                    self.in_use += used - cur;
                    return Ok(ptr);
                }
            }
            let p = self.allocate_block(new, old.align())?;
            core::ptr::copy_nonoverlapping(ptr.as_ptr(), p.as_ptr(), old.size().min(new_size));
            self.free_used(h);
            Ok(p)
        }
    }
}
