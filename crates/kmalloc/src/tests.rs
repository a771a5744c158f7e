//! Tests of both heaps: a contract every [`RawHeap`] keeps (instantiated for the bounded and
//! the classic heap), then tests of what only one of them promises.

use crate::*;
use core::alloc::Layout;
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::vec::Vec;

/// A page source over the host allocator that counts what is out, refuses past a limit, and
/// checks that everything it gets back is a run it handed out.
pub(crate) struct HostSource {
    /// Runs out, by address: the pointer (kept for its provenance) and the pages.
    out: HashMap<usize, (NonNull<u8>, usize)>,
    pub pages_out: usize,
    pub limit: usize,
    pub accept_free: bool,
    /// Give the exact hint `limit - pages_out` from `pages_available_hint`.
    pub hint: bool,
    /// `alloc_pages` calls refused.
    pub refused: usize,
}

impl HostSource {
    pub fn new(limit: usize) -> Self {
        HostSource {
            out: HashMap::new(),
            pages_out: 0,
            limit,
            accept_free: true,
            hint: false,
            refused: 0,
        }
    }
}

// SAFETY: every run comes fresh from the host allocator and is freed only when given back.
unsafe impl PageSource for HostSource {
    fn alloc_pages(&mut self, pages: usize, align: usize) -> Option<NonNull<u8>> {
        assert!(pages >= 1 && align >= PAGE_SIZE && align.is_power_of_two());
        if self.pages_out + pages > self.limit {
            self.refused += 1;
            return None;
        }
        let layout = Layout::from_size_align(pages * PAGE_SIZE, align).unwrap();
        // SAFETY: non-zero size.
        let p = unsafe { std::alloc::alloc(layout) };
        let p = NonNull::new(p)?;
        // Garbage that looks like heap metadata, so the heap can rely neither on zeroed pages
        // nor on reading a header it did not write: every 16 bytes read as a header say "a free
        // block on the K&R list, 16 bytes long, linked to the next one, after a listed block".
        // SAFETY: freshly allocated, pages * PAGE_SIZE bytes, 16-aligned.
        unsafe {
            let w = p.as_ptr() as *mut usize;
            for i in 0..pages * PAGE_SIZE / 8 {
                let at = p.as_ptr() as usize + i * 8;
                *w.add(i) = if i % 2 == 0 { at + 16 } else { 16 | 4 };
            }
        }
        self.out.insert(p.as_ptr() as usize, (p, pages));
        self.pages_out += pages;
        Some(p)
    }

    unsafe fn free_pages(&mut self, ptr: NonNull<u8>, pages: usize) -> bool {
        if !self.accept_free {
            return false;
        }
        let got = self
            .out
            .remove(&(ptr.as_ptr() as usize))
            .expect("freed a run never handed out");
        assert_eq!(got.1, pages, "freed a different number of pages");
        assert_no_live_header(ptr, pages);
        self.pages_out -= pages;
        // SAFETY: allocated above with this layout.
        unsafe {
            std::alloc::dealloc(
                ptr.as_ptr(),
                Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).unwrap(),
            )
        };
        true
    }

    fn pages_available_hint(&self) -> Option<usize> {
        self.hint.then(|| self.limit - self.pages_out)
    }
}

// SAFETY: the source owns the runs it holds alone (the pointers are kept only for their
// provenance); moving it to another thread moves that ownership.
unsafe impl Send for HostSource {}

impl Drop for HostSource {
    fn drop(&mut self) {
        for &(p, pages) in self.out.values() {
            // SAFETY: still-out runs allocated in alloc_pages; alignment does not matter to dealloc on
            // the system allocator beyond matching, so use the page alignment it was made with.
            unsafe {
                std::alloc::dealloc(
                    p.as_ptr(),
                    Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).unwrap(),
                )
            };
        }
    }
}

/// Panics if pages a heap gives back hold a word that a free would take for a live block of
/// the bounded heap (see `block::live_header_in`).
fn assert_no_live_header(run: NonNull<u8>, pages: usize) {
    // SAFETY: the run is still allocated, page-aligned.
    if let Some(off) = unsafe { crate::block::live_header_in(run, pages * PAGE_SIZE) } {
        panic!("pages given back hold a used block's header at offset {off}");
    }
}

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

fn fill(p: NonNull<u8>, len: usize, seed: u8) {
    // SAFETY: callers pass live blocks of at least `len` bytes.
    unsafe {
        for i in 0..len {
            *p.as_ptr().add(i) = seed.wrapping_add(i as u8);
        }
    }
}

fn check(p: NonNull<u8>, len: usize, seed: u8) {
    // SAFETY: as in fill.
    unsafe {
        for i in 0..len {
            assert_eq!(
                *p.as_ptr().add(i),
                seed.wrapping_add(i as u8),
                "block {p:?} byte {i} changed"
            );
        }
    }
}

/// Frees a block through the trait.
fn free<H: RawHeap>(h: &mut H, p: NonNull<u8>, l: Layout) {
    // SAFETY: callers pass live blocks with their layouts.
    unsafe { h.deallocate(p, l) }
}

/// Tests every heap passes: instantiated below for [`Heap`] and [`ClassicHeap`].
mod contract {
    use super::*;

    pub fn alloc_free_many_sizes<H: RawHeap>(mut h: H) {
        let mut live = Vec::new();
        for i in 0..600usize {
            let size = 1 + i * 97 % 5000;
            let p = h.allocate(layout(size, 8)).unwrap();
            fill(p, size, i as u8);
            live.push((p, size, i as u8));
            if i % 3 == 0 {
                let (p, size, seed) = live.swap_remove(i * 7 % live.len());
                check(p, size, seed);
                free(&mut h, p, layout(size, 8));
            }
        }
        h.check();
        let st = h.stats();
        assert!(st.bytes_in_use >= live.iter().map(|b| b.1).sum::<usize>());
        assert_eq!(
            st.bytes_in_use + st.bytes_free + st.overhead_bytes,
            st.pages_held * PAGE_SIZE
        );
        for (p, size, seed) in live {
            check(p, size, seed);
            free(&mut h, p, layout(size, 8));
        }
        h.check();
        assert_eq!(h.stats().bytes_in_use, 0);
    }

    /// Once everything is freed, `release_free_pages` gives every page back.
    pub fn pages_go_back<H: RawHeap>(mut h: H) {
        let mut live = Vec::new();
        for i in 0..300usize {
            let l = layout(1 + i * 131 % 9000, 1 << (i % 8));
            live.push((h.allocate(l).unwrap(), l));
        }
        assert!(h.stats().pages_held > 1);
        for (i, &(p, l)) in live.iter().enumerate() {
            if i % 2 == 0 {
                free(&mut h, p, l);
            }
        }
        h.release_free_pages();
        h.check();
        for (i, &(p, l)) in live.iter().enumerate() {
            if i % 2 == 1 {
                free(&mut h, p, l);
            }
        }
        assert_eq!(h.release_free_pages(), 0);
        h.check();
        assert_eq!(h.stats().pages_held, 0);
        assert_eq!(h.stats().chunks, 0);
    }

    pub fn kmalloc_limits_and_checked_free<H: RawHeap>(mut h: H, mut other: H) {
        assert!(h.kmalloc(0).is_none());
        assert!(h.kmalloc(4097).is_none());
        // A zero-size block is a real block: its pointer is inside the heap (found by the fuzz
        // target: the classic heap's zero-size block had no payload, its pointer at the chunk's
        // end).
        for _ in 0..2 {
            let z = h.allocate(layout(0, 1)).unwrap();
            assert_eq!(h.kmfree(z), Ok(()));
        }
        let one = h.kmalloc(1).unwrap();
        let page = h.kmalloc(4096).unwrap();
        fill(page, 4096, 5);
        assert_eq!(one.as_ptr() as usize % 16, 0);
        let mut local = [0u8; 64];
        assert_eq!(
            h.kmfree(NonNull::new(local.as_mut_ptr()).unwrap()),
            Err(FreeError::NotInHeap)
        );
        // SAFETY: still inside the block.
        let inside = unsafe { NonNull::new_unchecked(page.as_ptr().add(32)) };
        assert_eq!(h.kmfree(inside), Err(FreeError::NotABlockStart));
        // SAFETY: still inside the block.
        let odd = unsafe { NonNull::new_unchecked(page.as_ptr().add(3)) };
        assert_eq!(h.kmfree(odd), Err(FreeError::Misaligned));
        h.check();
        check(page, 4096, 5);
        let two = h.kmalloc(100).unwrap();
        assert_eq!(h.kmfree(one), Ok(()));
        assert!(h.kmfree(one).is_err(), "a second kmfree is refused");
        assert_eq!(h.kmfree(page), Ok(()));
        assert!(h.kmfree(page).is_err());
        h.check();
        let theirs = other.kmalloc(64).unwrap();
        assert_eq!(h.kmfree(theirs), Err(FreeError::NotInHeap));
        assert_eq!(other.kmfree(theirs), Ok(()));
        assert_eq!(h.kmfree(two), Ok(()));
        h.check();
    }

    pub fn alignments<H: RawHeap>(mut h: H) {
        let mut live = Vec::new();
        for round in 0..3 {
            for align_log in 4..=16 {
                let align = 1usize << align_log;
                for size in [1, 24, align / 2 + 5, 3000, align + 3] {
                    let l = layout(size, align);
                    let p = h.allocate(l).unwrap();
                    assert_eq!(p.as_ptr() as usize % align, 0, "align {align} size {size}");
                    fill(p, size, (align_log + round) as u8);
                    live.push((p, l, (align_log + round) as u8));
                }
            }
            h.check();
            // Free every other one, so later rounds reuse fragments.
            let mut i = 0;
            live.retain(|&(p, l, seed)| {
                i += 1;
                check(p, l.size(), seed);
                if i % 2 == 0 {
                    free(&mut h, p, l);
                    false
                } else {
                    true
                }
            });
            h.check();
        }
        for (p, l, seed) in live {
            check(p, l.size(), seed);
            free(&mut h, p, l);
        }
        h.check();
        assert_eq!(h.stats().bytes_in_use, 0);
    }

    pub fn realloc_keeps_contents<H: RawHeap>(mut h: H) {
        let mut p = h.allocate(layout(100, 16)).unwrap();
        fill(p, 100, 3);
        let mut size = 100;
        for new in [50, 3000, 20, 70_000, 5000, 16, 9000] {
            // SAFETY: live block with this layout.
            p = unsafe { h.reallocate(p, layout(size, 16), new) }.unwrap();
            check(p, size.min(new), 3);
            fill(p, new, 3);
            size = new;
            h.check();
        }
        let q = h.allocate(layout(40, 64)).unwrap();
        // SAFETY: live block; the alignment stays.
        let q2 = unsafe { h.reallocate(q, layout(40, 64), 10_000) }.unwrap();
        assert_eq!(q2.as_ptr() as usize % 64, 0);
        free(&mut h, q2, layout(10_000, 64));
        free(&mut h, p, layout(size, 16));
        h.check();
    }

    #[cfg(feature = "tag-checks")]
    /// A block over 4 KiB freed next to a free block before it merges into it; its second free
    /// must still be caught (issue 11's hole).
    pub fn double_free_after_merge_into_previous<H: RawHeap>(mut h: H) {
        warm(&mut h);
        let l = layout(6000, 16);
        let a = h.allocate(l).unwrap();
        let b = h.allocate(l).unwrap();
        let _c = h.allocate(l).unwrap();
        free(&mut h, a, l);
        free(&mut h, b, l); // merges into `a`'s free block
        h.check();
        free(&mut h, b, l); // must panic
    }

    #[cfg(feature = "tag-checks")]
    /// Grows the heap by one chunk big enough for the blocks of a test, so that they are
    /// neighbours in it (and their frees do not empty a chunk, whose pages could go back).
    fn warm<H: RawHeap>(h: &mut H) {
        let w = h.allocate(layout(100_000, 16)).unwrap();
        free(h, w, layout(100_000, 16));
    }

    #[cfg(feature = "tag-checks")]
    pub fn double_free_small<H: RawHeap>(mut h: H) {
        let l = layout(64, 8);
        let _keep = h.allocate(l).unwrap();
        let p = h.allocate(l).unwrap();
        let _next = h.allocate(l).unwrap();
        free(&mut h, p, l);
        free(&mut h, p, l);
    }

    #[cfg(feature = "tag-checks")]
    /// In a fresh heap: the first block freed merges into the free rest of its chunk.
    pub fn double_free_first_block<H: RawHeap>(mut h: H, realloc: bool) {
        let l = layout(100, 16);
        let a = h.allocate(l).unwrap();
        free(&mut h, a, l);
        h.check();
        if realloc {
            // SAFETY: deliberately broken: the panic is the test.
            let _ = unsafe { h.reallocate(a, l, 5000) };
        } else {
            free(&mut h, a, l);
        }
    }

    #[cfg(feature = "tag-checks")]
    pub fn realloc_after_free<H: RawHeap>(mut h: H) {
        warm(&mut h);
        let l = layout(5000, 16);
        let a = h.allocate(l).unwrap();
        let b = h.allocate(l).unwrap();
        let _c = h.allocate(l).unwrap();
        free(&mut h, a, l);
        free(&mut h, b, l);
        // SAFETY: deliberately broken: the panic is the test.
        let _ = unsafe { h.reallocate(b, l, 9000) };
    }

    pub fn out_of_memory_recovers<H: RawHeap>(mut h: H) {
        let mut live = Vec::new();
        while let Ok(p) = h.allocate(layout(1000, 8)) {
            live.push(p);
            assert!(live.len() < 1000);
        }
        assert!(h.allocate(layout(200 * PAGE_SIZE, 8)).is_err());
        assert!(!live.is_empty());
        h.check();
        for p in live.drain(..) {
            free(&mut h, p, layout(1000, 8));
        }
        let big = h.allocate(layout(10 * 1000, 8));
        assert!(big.is_ok(), "freed memory serves a larger request");
        h.check();
    }

    pub fn absurd_layouts_are_refused<H: RawHeap>(mut h: H) {
        let p = h.allocate(layout(100, 8)).unwrap();
        fill(p, 100, 3);
        for (size, align) in [
            (isize::MAX as usize, 1),
            (isize::MAX as usize - 4095, 4096),
            (1, 1 << (usize::BITS - 2)),
            (usize::MAX / 8, 16),
            (usize::MAX / 4, 1 << 20),
            (PAGE_SIZE, 1 << (usize::BITS - 4)),
        ] {
            if let Ok(l) = Layout::from_size_align(size, align) {
                assert!(h.allocate(l).is_err(), "{size} bytes at {align}");
            }
        }
        for new in [
            isize::MAX as usize,
            isize::MAX as usize - 100,
            usize::MAX / 8,
        ] {
            // SAFETY: a live block; a failed reallocation leaves it as it was.
            assert!(unsafe { h.reallocate(p, layout(100, 8), new) }.is_err());
        }
        check(p, 100, 3);
        h.check();
        free(&mut h, p, layout(100, 8));
    }

    pub fn global_alloc<H: RawHeap + Send>(h: H) {
        use core::alloc::GlobalAlloc;
        let heap: LockedHeap<H> = LockedHeap::new(h);
        let l = layout(24, 8);
        // SAFETY: GlobalAlloc used per its contract.
        unsafe {
            let p = heap.alloc(l);
            assert!(!p.is_null());
            let p = heap.realloc(p, l, 5000);
            assert!(!p.is_null());
            heap.dealloc(p, layout(5000, 8));
        }
        heap.lock().check();
        assert_eq!(heap.lock().stats().bytes_in_use, 0);
    }

    #[derive(Debug, Clone)]
    pub enum Op {
        Alloc { size: usize, align_log: u8 },
        Free { index: usize },
        Realloc { index: usize, size: usize },
        Kmalloc { size: usize },
        Kmfree { index: usize },
        BadFree { index: usize, offset: usize },
    }

    pub fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1usize..600, 0u8..4).prop_map(|(size, align_log)| Op::Alloc { size, align_log }),
            1 => (1usize..20_000, 0u8..8).prop_map(|(size, align_log)| Op::Alloc { size, align_log }),
            4 => any::<usize>().prop_map(|index| Op::Free { index }),
            2 => (any::<usize>(), 1usize..9000).prop_map(|(index, size)| Op::Realloc { index, size }),
            2 => (0usize..4200).prop_map(|size| Op::Kmalloc { size }),
            1 => any::<usize>().prop_map(|index| Op::Kmfree { index }),
            1 => (any::<usize>(), 1usize..64).prop_map(|(index, offset)| Op::BadFree { index, offset }),
        ]
    }

    struct Live {
        ptr: NonNull<u8>,
        layout: Layout,
        seed: u8,
    }

    /// Random operations against a shadow of the live blocks: no overlap, alignment kept,
    /// contents intact, statistics consistent, invalid frees refused.
    pub fn shadow_model<H: RawHeap>(mut h: H, ops: Vec<Op>) -> Result<(), TestCaseError> {
        let mut live: Vec<Live> = Vec::new();
        let mut seed = 0u8;
        for op in ops {
            seed = seed.wrapping_add(1);
            match op {
                Op::Alloc { size, align_log } => {
                    let align = 1usize << (align_log * 2);
                    let l = layout(size, align);
                    let live_bytes: usize = live
                        .iter()
                        .map(|b| b.layout.size() + b.layout.align())
                        .sum();
                    match h.allocate(l) {
                        Ok(p) => {
                            prop_assert_eq!(p.as_ptr() as usize % align, 0);
                            fill(p, size, seed);
                            live.push(Live {
                                ptr: p,
                                layout: l,
                                seed,
                            });
                        }
                        Err(_) => prop_assert!(live_bytes > 4 << 20, "spurious out-of-memory"),
                    }
                }
                Op::Kmalloc { size } => {
                    let r = h.kmalloc(size);
                    if size == 0 || size > 4096 {
                        prop_assert!(r.is_none());
                    } else if let Some(p) = r {
                        fill(p, size, seed);
                        live.push(Live {
                            ptr: p,
                            layout: layout(size, 16),
                            seed,
                        });
                    }
                }
                Op::Free { index } | Op::Kmfree { index } if !live.is_empty() => {
                    let b = live.swap_remove(index % live.len());
                    check(b.ptr, b.layout.size(), b.seed);
                    if matches!(op, Op::Kmfree { .. }) {
                        prop_assert_eq!(h.kmfree(b.ptr), Ok(()));
                        prop_assert!(h.kmfree(b.ptr).is_err());
                    } else {
                        free(&mut h, b.ptr, b.layout);
                    }
                }
                Op::Realloc { index, size } if !live.is_empty() => {
                    let i = index % live.len();
                    let b = &mut live[i];
                    check(b.ptr, b.layout.size(), b.seed);
                    // SAFETY: live block with its layout.
                    if let Ok(p) = unsafe { h.reallocate(b.ptr, b.layout, size) } {
                        prop_assert_eq!(p.as_ptr() as usize % b.layout.align(), 0);
                        check(p, b.layout.size().min(size), b.seed);
                        b.ptr = p;
                        b.layout = layout(size, b.layout.align());
                        fill(p, size, b.seed);
                    }
                }
                Op::BadFree { index, offset } if !live.is_empty() => {
                    let b = &live[index % live.len()];
                    if offset < b.layout.size() {
                        // SAFETY: inside the block.
                        let inner = unsafe { NonNull::new_unchecked(b.ptr.as_ptr().add(offset)) };
                        prop_assert!(h.kmfree(inner).is_err());
                    }
                }
                _ => {}
            }
            h.check();
            let mut spans: BTreeMap<usize, usize> = BTreeMap::new();
            for b in &live {
                spans.insert(
                    b.ptr.as_ptr() as usize,
                    b.ptr.as_ptr() as usize + b.layout.size(),
                );
            }
            let mut last_end = 0;
            for (s, e) in spans {
                prop_assert!(s >= last_end, "overlap");
                last_end = e;
            }
            let st = h.stats();
            let requested: usize = live.iter().map(|b| b.layout.size()).sum();
            prop_assert!(st.bytes_in_use >= requested);
            prop_assert_eq!(
                st.bytes_in_use + st.bytes_free + st.overhead_bytes,
                st.pages_held * PAGE_SIZE
            );
        }
        for b in live.drain(..) {
            check(b.ptr, b.layout.size(), b.seed);
            free(&mut h, b.ptr, b.layout);
        }
        h.check();
        prop_assert_eq!(h.stats().bytes_in_use, 0);
        Ok(())
    }
}

/// Instantiates the contract for one heap type; `$new` makes a heap from a `HostSource`.
macro_rules! contract_tests {
    ($name:ident, $new:path) => {
        mod $name {
            use super::contract::{self, op};
            use super::*;

            fn heap(limit: usize) -> impl RawHeap + Send {
                $new(HostSource::new(limit))
            }

            #[test]
            fn alloc_free_many_sizes() {
                contract::alloc_free_many_sizes(heap(10_000));
            }
            #[test]
            fn pages_go_back() {
                contract::pages_go_back(heap(10_000));
            }
            #[test]
            fn kmalloc_limits_and_checked_free() {
                contract::kmalloc_limits_and_checked_free(heap(1000), heap(100));
            }
            #[test]
            #[cfg_attr(miri, ignore = "hundreds of MiB of pages: too slow under Miri")]
            fn alignments_16_to_64k() {
                contract::alignments(heap(100_000));
            }
            #[test]
            fn realloc_keeps_contents() {
                contract::realloc_keeps_contents(heap(1000));
            }
            #[test]
            #[cfg(feature = "tag-checks")]
            #[should_panic(expected = "double free")]
            fn double_free_after_merge_into_previous() {
                contract::double_free_after_merge_into_previous(heap(1000));
            }
            #[test]
            #[cfg(feature = "tag-checks")]
            #[should_panic(expected = "double free")]
            fn double_free_small() {
                contract::double_free_small(heap(1000));
            }
            #[test]
            #[cfg(feature = "tag-checks")]
            #[should_panic(expected = "double free")]
            fn double_free_first_block() {
                contract::double_free_first_block(heap(1000), false);
            }
            #[test]
            #[cfg(feature = "tag-checks")]
            #[should_panic(expected = "realloc of a freed")]
            fn realloc_of_freed_first_block() {
                contract::double_free_first_block(heap(1000), true);
            }
            #[test]
            #[cfg(feature = "tag-checks")]
            #[should_panic(expected = "realloc of a freed")]
            fn realloc_after_free() {
                contract::realloc_after_free(heap(1000));
            }
            #[test]
            fn out_of_memory_recovers() {
                contract::out_of_memory_recovers(heap(40));
            }
            #[test]
            fn absurd_layouts_are_refused() {
                contract::absurd_layouts_are_refused(heap(64));
            }
            #[test]
            fn global_alloc() {
                contract::global_alloc(heap(1000));
            }
            proptest! {
                // Miri runs a few cases (each op is checked by the O(heap) checker).
                #![proptest_config(ProptestConfig {
                    cases: if cfg!(miri) { 2 } else { 48 },
                    failure_persistence: if cfg!(miri) { None } else { ProptestConfig::default().failure_persistence },
                    ..ProptestConfig::default()
                })]
                #[test]
                fn shadow_model(ops in proptest::collection::vec(op(), 1..400)) {
                    let mut src = HostSource::new(4000);
                    src.hint = ops.len() % 2 == 0;
                    contract::shadow_model($new(src), ops)?;
                }
            }
        }
    };
}

contract_tests!(bounded, Heap::new);
contract_tests!(classic, ClassicHeap::new);
contract_tests!(any_classic, any_classic);

fn any_classic(s: HostSource) -> AnyHeap<HostSource> {
    AnyHeap::new(HeapKind::Classic, s)
}

mod bounded_only;

/// The classic heap with one listed block, just above the block being freed: the freed block
/// absorbs it (found by the fuzz target: the list kept the absorbed block).
#[test]
fn classic_free_below_its_only_listed_block() {
    let mut h = ClassicHeap::new(HostSource::new(100));
    // The first chunk: 16 pages (NALLOC units, the chunk record among them), blocks from its
    // second unit. A page-aligned block of 256 units at the top leaves one unit after it; the
    // rest below is then taken exactly.
    let a = h.allocate(layout(4080, 4096)).unwrap();
    assert_eq!(h.stats().pages_held, 16);
    let below = h.allocate(layout(3837 * 16, 16)).unwrap();
    assert_eq!(h.stats().free_blocks, 1, "only the unit above `a` is free");
    free(&mut h, a, layout(4080, 4096));
    h.check();
    assert_eq!(h.stats().free_blocks, 1);
    free(&mut h, below, layout(3837 * 16, 16));
    h.check();
    assert_eq!(h.stats().largest_free_block, 16 * 4096 - 32);
    // A larger request takes a power of two of pages too (a buddy source would keep the rest).
    let big = h.allocate(layout(70_000, 16)).unwrap();
    assert_eq!(h.stats().pages_held, 16 + 32);
    free(&mut h, big, layout(70_000, 16));
    h.check();
}

/// `LockedHeap` takes any `lock_api` lock: here one that counts how often it is taken.
#[test]
fn locked_heap_with_another_lock() {
    use core::alloc::GlobalAlloc;
    use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    static TAKEN: AtomicUsize = AtomicUsize::new(0);
    struct Counting(AtomicBool);
    // SAFETY: a test-and-set lock: `lock` returns only after it set the flag from false, so one
    // holder at a time; `unlock` clears it.
    unsafe impl lock_api::RawMutex for Counting {
        #[allow(clippy::declare_interior_mutable_const)] // lock_api's pattern for INIT
        const INIT: Self = Counting(AtomicBool::new(false));
        type GuardMarker = lock_api::GuardSend;
        fn lock(&self) {
            while !self.try_lock() {
                core::hint::spin_loop();
            }
        }
        fn try_lock(&self) -> bool {
            let got = self
                .0
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok();
            if got {
                TAKEN.fetch_add(1, Ordering::Relaxed);
            }
            got
        }
        unsafe fn unlock(&self) {
            self.0.store(false, Ordering::Release);
        }
    }

    let heap: LockedHeap<ClassicHeap<HostSource>, Counting> =
        LockedHeap::new(ClassicHeap::new(HostSource::new(100)));
    let l = layout(100, 8);
    // SAFETY: GlobalAlloc used per its contract.
    unsafe {
        let p = heap.alloc(l);
        assert!(!p.is_null());
        heap.dealloc(p, l);
    }
    assert_eq!(TAKEN.load(Ordering::Relaxed), 2);
    assert_eq!(heap.lock().stats().bytes_in_use, 0);
}

/// The classic heap's realloc to a smaller size keeps the block and frees the tail it no longer
/// needs (it kept all of it once, so shrunken blocks held their old size).
#[test]
fn classic_realloc_shrinks_in_place() {
    let mut h = ClassicHeap::new(HostSource::new(100));
    let a = h.allocate(layout(10_000, 16)).unwrap();
    let before = h.stats().bytes_in_use;
    // SAFETY: `a` is live with this layout.
    let b = unsafe { h.reallocate(a, layout(10_000, 16), 100) }.unwrap();
    assert_eq!(a, b, "shrinking keeps the block");
    assert_eq!(
        h.stats().bytes_in_use,
        128,
        "100 bytes and a header: 8 units"
    );
    assert!(before > 10_000);
    h.check();
    free(&mut h, b, layout(100, 16));
    h.check();
    assert_eq!(h.stats().bytes_in_use, 0);
}
