//! Tests of what only the bounded heap promises: pages back to the source, in-place resizing,
//! bounded work per operation whatever the fragmentation, and its checks after many operations.

use super::*;

/// A xorshift generator: deterministic tests.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A used block costs its payload rounded up to 16 bytes with one word (8 bytes) of header,
/// 32 bytes at least: every byte of a block but its header word is the caller's, and adjacent
/// blocks' payloads are 8 bytes apart at best. Each block is filled to its last byte.
#[test]
fn a_used_block_costs_one_word_of_header() {
    let mut h = Heap::new(HostSource::new(10));
    for (size, cost) in [
        (1, 32),
        (24, 32),
        (25, 48),
        (40, 48),
        (100, 112),
        (1000, 1008),
    ] {
        let before = h.stats().bytes_in_use;
        let a = h.allocate(layout(size, 8)).unwrap();
        let b = h.allocate(layout(size, 8)).unwrap();
        assert_eq!(h.stats().bytes_in_use - before, 2 * cost, "{size} bytes");
        assert_eq!(a.as_ptr() as usize % 16, 0);
        fill(a, size, 1);
        fill(b, size, 2);
        h.check_invariants();
        check(a, size, 1);
        free(&mut h, a, layout(size, 8));
        free(&mut h, b, layout(size, 8));
    }
    h.check_invariants();
}

#[test]
fn small_alloc_free_returns_everything() {
    let mut h = Heap::new(HostSource::new(1000));
    let a = h.allocate(layout(10, 1)).unwrap();
    let b = h.allocate(layout(100, 8)).unwrap();
    fill(a, 10, 1);
    fill(b, 100, 2);
    h.check_invariants();
    assert_eq!(h.stats().pages_held, 1);
    // SAFETY: live blocks with their layouts.
    unsafe {
        h.deallocate(a, layout(10, 1));
        h.deallocate(b, layout(100, 8));
    }
    h.check_invariants();
    assert_eq!(h.stats().bytes_in_use, 0);
    assert_eq!(
        h.stats().pages_held,
        1,
        "the one wholly free chunk is kept as the spare"
    );
    h.release_free_pages();
    h.check_invariants();
    assert_eq!(h.stats().pages_held, 0);
    assert_eq!(h.source().pages_out, 0);
}

#[test]
fn second_wholly_free_chunk_goes_back_at_once() {
    let mut h = Heap::new(HostSource::new(1000));
    h.set_growth_limit(1);
    let a = h.allocate(layout(3000, 16)).unwrap();
    let b = h.allocate(layout(3000, 16)).unwrap();
    assert_eq!(h.stats().pages_held, 2);
    // SAFETY: live blocks.
    unsafe { h.deallocate(a, layout(3000, 16)) };
    assert_eq!(
        h.stats().pages_held,
        2,
        "the first empty chunk is the spare"
    );
    // SAFETY: live blocks.
    unsafe { h.deallocate(b, layout(3000, 16)) };
    assert_eq!(h.stats().pages_held, 1, "the second goes back");
    h.check_invariants();
}

/// The spare is not cleared when an allocation cuts into it: the heap tells a spare that is no
/// longer wholly free from its header when another chunk empties, and keeps that chunk instead.
#[test]
fn a_chunk_empties_while_the_spare_is_cut_into() {
    let mut h = Heap::new(HostSource::new(1000));
    h.set_growth_limit(1);
    let l = layout(3000, 16);
    let a = h.allocate(l).unwrap();
    let b = h.allocate(l).unwrap();
    // SAFETY: live blocks with their layout, each freed once.
    unsafe {
        h.deallocate(a, l);
        assert_eq!(h.stats().pages_held, 2, "a's chunk is the spare");
        let c = h.allocate(l).unwrap();
        assert_eq!(c, a, "the spare's block serves the request");
        h.check_invariants();
        h.deallocate(b, l);
        assert_eq!(
            h.stats().pages_held,
            2,
            "b's chunk is kept: the spare is in use"
        );
        h.check_invariants();
        h.deallocate(c, l);
        assert_eq!(
            h.stats().pages_held,
            1,
            "one wholly free chunk kept, the other back"
        );
        h.check_invariants();
        let d = h.allocate(l).unwrap();
        assert_eq!(h.stats().pages_held, 1, "the kept chunk serves");
        h.deallocate(d, l);
    }
    assert_eq!(h.stats().pages_held, 1);
    h.release_free_pages();
    assert_eq!(h.source().pages_out, 0);
}

#[test]
fn growth_limit_of_one_takes_a_page_at_a_time() {
    let mut h = Heap::new(HostSource::new(1000));
    h.set_growth_limit(1);
    let blocks: Vec<_> = (0..200).map(|_| h.kmalloc(500).unwrap()).collect();
    let st = h.stats();
    assert_eq!(st.chunks, st.pages_held, "every chunk is one page");
    assert!(st.pages_held >= 200 * 500 / 4096);
    let big = h.allocate(layout(3 * 4096, 16)).unwrap();
    assert!(h.stats().pages_held > st.pages_held);
    h.check_invariants();
    for b in blocks {
        h.kmfree(b).unwrap();
    }
    // SAFETY: live block with its layout.
    unsafe { h.deallocate(big, layout(3 * 4096, 16)) };
    h.release_free_pages();
    assert_eq!(h.stats().pages_held, 0);
    assert_eq!(h.source().pages_out, 0);
}

#[test]
fn coalescing_in_every_order_keeps_invariants() {
    for order in [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ] {
        let mut h = Heap::new(HostSource::new(1000));
        let keep = h.allocate(layout(1500, 16)).unwrap();
        let blocks: Vec<_> = (0..3)
            .map(|_| h.allocate(layout(1200, 16)).unwrap())
            .collect();
        let guard = h.allocate(layout(100, 16)).unwrap();
        for &i in &order {
            // SAFETY: live block.
            unsafe { h.deallocate(blocks[i], layout(1200, 16)) };
            h.check_invariants();
        }
        let st = h.stats();
        assert_eq!(
            st.free_blocks, 2,
            "the three merged into one, the tail stays ({order:?})"
        );
        // SAFETY: live blocks.
        unsafe {
            h.deallocate(keep, layout(1500, 16));
            h.deallocate(guard, layout(100, 16));
        }
        h.release_free_pages();
        assert_eq!(h.source().pages_out, 0, "order {order:?}");
    }
}

#[test]
fn realloc_in_place() {
    let mut h = Heap::new(HostSource::new(1000));
    let p = h.allocate(layout(2000, 16)).unwrap();
    let _guard = h.allocate(layout(16, 16)).unwrap();
    fill(p, 2000, 3);
    // SAFETY: live block with this layout.
    let q = unsafe { h.reallocate(p, layout(2000, 16), 100) }.unwrap();
    assert_eq!(p, q, "shrinks in place");
    check(q, 100, 3);
    h.check_invariants();
    // SAFETY: live block.
    let r = unsafe { h.reallocate(q, layout(100, 16), 1900) }.unwrap();
    assert_eq!(q, r, "grows into the tail it freed");
    check(r, 100, 3);
    h.check_invariants();
    // SAFETY: live block.
    let s = unsafe { h.reallocate(r, layout(1900, 16), 20_000) }.unwrap();
    assert_ne!(s, r, "no room after it: moves");
    check(s, 100, 3);
    h.check_invariants();
}

/// Blocks `a` (50 000 bytes), guard, hole (a free block of 14 016), guard, in one chunk of `pages`
/// pages, the rest of which is one used block (`fill`) or free; `a` holds a pattern.
fn with_hole(h: &mut Heap<HostSource>, pages: usize, fill_rest: bool) -> NonNull<u8> {
    // One chunk: its whole block taken and freed (the chunk stays, as the spare).
    let all = h.allocate(layout(pages * PAGE_SIZE - 40, 16)).unwrap();
    free(h, all, layout(pages * PAGE_SIZE - 40, 16));
    let a = h.allocate(layout(50_000, 16)).unwrap();
    fill(a, 50_000, 7);
    let _g1 = h.allocate(layout(100, 16)).unwrap();
    let x = h.allocate(layout(14_000, 16)).unwrap();
    let _g2 = h.allocate(layout(100, 16)).unwrap();
    if fill_rest {
        let _rest = h.allocate(layout(33_900, 16)).unwrap();
    }
    free(h, x, layout(14_000, 16));
    assert_eq!(h.stats().pages_held, pages);
    a
}

/// When free space is scarce (free bytes under a quarter of those in use), a block shrinking to
/// at most half its size moves into a free block elsewhere that fits it closely, so that its
/// whole old place is free: a block almost as large as it was fits there again. A heap with
/// room shrinks in place.
#[test]
fn realloc_shrinking_in_a_dense_heap_moves_into_a_close_fit() {
    let mut h = Heap::new(HostSource::new(24));
    let a = with_hole(&mut h, 24, true);
    h.check_invariants();
    // SAFETY: a live block with this layout.
    let q = unsafe { h.reallocate(a, layout(50_000, 16), 13_000) }.unwrap();
    assert_ne!(q, a, "moved into the hole");
    check(q, 13_000, 7);
    h.check_invariants();
    let b = h
        .allocate(layout(49_000, 16))
        .expect("the old place is free whole");
    assert_eq!(b, a);
    h.check_invariants();

    let mut h = Heap::new(HostSource::new(96));
    let a = with_hole(&mut h, 96, false);
    // SAFETY: a live block with this layout.
    let q = unsafe { h.reallocate(a, layout(50_000, 16), 13_000) }.unwrap();
    assert_eq!(q, a, "room to spare: shrinks in place");
    check(q, 13_000, 7);
    h.check_invariants();
}

/// talc's heap-efficiency pattern on a 4 MiB heap kept full (allocations of up to 4000 bytes,
/// frees, reallocations of up to 100 000 bytes; a failed allocation frees a block instead): in
/// the dense heap some shrinking reallocations move (9 here: a close fit for 12-50 KB is rare
/// among its ~100 free blocks), every block keeps its contents and the heap its invariants.
#[test]
fn reallocations_in_a_full_heap_keep_contents() {
    let mut h = Heap::new(HostSource::new(1024));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut live: std::vec::Vec<(NonNull<u8>, usize, u8)> = std::vec::Vec::new();
    let mut moved_shrinking = 0;
    let mut failed = 0;
    for i in 0..20_000u32 {
        let seed = i as u8;
        match rng.next() % 10 {
            0..=4 => {
                let n = (rng.next() % 4000) as usize + 1;
                if let Ok(p) = h.allocate(layout(n, 8)) {
                    fill(p, n, seed);
                    live.push((p, n, seed));
                } else if !live.is_empty() {
                    failed += 1;
                    let (p, n, s) = live.swap_remove(rng.next() as usize % live.len());
                    check(p, n, s);
                    free(&mut h, p, layout(n, 8));
                }
            }
            5 if !live.is_empty() => {
                let (p, n, s) = live.swap_remove(rng.next() as usize % live.len());
                check(p, n, s);
                free(&mut h, p, layout(n, 8));
            }
            _ if !live.is_empty() => {
                let k = rng.next() as usize % live.len();
                let (p, n, s) = live[k];
                let new = (rng.next() % 100_000) as usize + 1;
                // SAFETY: a live block with this layout (left as it was if this fails).
                if let Ok(q) = unsafe { h.reallocate(p, layout(n, 8), new) } {
                    check(q, n.min(new), s);
                    if new < n && q != p {
                        moved_shrinking += 1;
                    }
                    fill(q, new, seed);
                    live[k] = (q, new, seed);
                } else {
                    check(p, n, s);
                }
            }
            _ => {}
        }
        if i % 512 == 0 {
            h.check_invariants();
        }
    }
    h.check_invariants();
    assert!(failed > 100, "the heap stayed full");
    assert!(moved_shrinking > 0, "no shrinking block moved");
    for (p, n, s) in live {
        check(p, n, s);
        free(&mut h, p, layout(n, 8));
    }
    h.check_invariants();
    assert_eq!(h.stats().bytes_in_use, 0);
}

#[test]
fn kmfree_tells_double_free_from_interior() {
    let mut h = Heap::new(HostSource::new(100));
    // Blocks above the small-block cache's sizes, so that frees merge.
    let a = h.kmalloc(1100).unwrap();
    let b = h.kmalloc(1100).unwrap();
    let _c = h.kmalloc(1100).unwrap();
    assert_eq!(h.kmfree(b), Ok(()));
    assert_eq!(
        h.kmfree(b),
        Err(FreeError::DoubleFree),
        "b heads a free block"
    );
    assert_eq!(h.kmfree(a), Ok(()));
    // b merged into a's block: its header is gone, its tag wiped.
    assert_eq!(h.kmfree(b), Err(FreeError::NotABlockStart));
    assert!(!h.is_allocated(b));
    h.check_invariants();
}

/// (64-bit only: a 32-bit header word has no room for the tag, and the garbage the test source
/// leaves in the payload can look like a used block's word; see the `block` module docs.)
#[test]
#[cfg(all(feature = "tag-checks", target_pointer_width = "64"))]
#[should_panic(expected = "double free or invalid pointer")]
fn interior_pointer_panics() {
    let mut h = Heap::new(HostSource::new(100));
    let a = h.allocate(layout(500, 16)).unwrap();
    // SAFETY: deliberately broken: a pointer 64 bytes into a block (readable heap memory).
    unsafe { h.deallocate(NonNull::new_unchecked(a.as_ptr().add(64)), layout(400, 16)) };
}

#[test]
fn page_hint_saves_refused_calls() {
    for hint in [false, true] {
        let mut src = HostSource::new(6);
        src.hint = hint;
        let mut h = Heap::new(src);
        let mut live = Vec::new();
        let mut failures = 0;
        for i in 0..400 {
            match h.allocate(layout(200 + i * 37 % 3000, 8)) {
                Ok(p) => live.push((p, 200 + i * 37 % 3000)),
                Err(_) => failures += 1,
            }
            if i % 3 == 0 && !live.is_empty() {
                let (p, n) = live.swap_remove(i % live.len());
                // SAFETY: a live block.
                unsafe { h.deallocate(p, layout(n, 8)) };
            }
        }
        assert!(failures > 0);
        if hint {
            assert_eq!(h.source().refused, 0, "the hint is exact: no call fails");
        } else {
            assert!(h.source().refused > 0);
        }
        for (p, n) in live {
            // SAFETY: a live block.
            unsafe { h.deallocate(p, layout(n, 8)) };
        }
        h.check_invariants();
    }
}

#[test]
fn declined_pages_stay_usable() {
    let mut src = HostSource::new(100);
    src.accept_free = false;
    let mut h = Heap::new(src);
    let p = h.allocate(layout(3000, 16)).unwrap();
    // SAFETY: live block.
    unsafe { h.deallocate(p, layout(3000, 16)) };
    h.release_free_pages();
    h.check_invariants();
    assert_eq!(h.stats().pages_held, 1);
    let q = h.allocate(layout(3000, 16)).unwrap();
    assert_eq!(h.stats().pages_held, 1, "reused the declined page");
    // SAFETY: live block.
    unsafe { h.deallocate(q, layout(3000, 16)) };
    h.check_invariants();
}

/// A million frees (and as many allocations and some reallocations) of random sizes and
/// alignments over a live set of about a thousand blocks: the heap stays consistent, contents
/// intact, and everything goes back at the end.
#[test]
#[cfg_attr(miri, ignore = "millions of operations: too slow under Miri")]
fn a_million_frees_stay_consistent() {
    let mut h = Heap::new(HostSource::new(100_000));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut live: Vec<(NonNull<u8>, Layout, u8)> = Vec::new();
    let mut frees = 0;
    while frees < 1_000_000 {
        let r = rng.next();
        if live.len() < 1000 && (r % 2 == 0 || live.is_empty()) {
            let size = match r % 16 {
                0 => (r >> 8) as usize % 40_000 + 1,
                1..=4 => (r >> 8) as usize % 2000 + 1,
                _ => (r >> 8) as usize % 200 + 1,
            };
            let align = 1 << ((r >> 40) % 8);
            let l = layout(size, align);
            let p = h.allocate(l).unwrap();
            assert_eq!(p.as_ptr() as usize % align, 0);
            // SAFETY: fresh block of `size` bytes.
            unsafe { *p.as_ptr() = r as u8 };
            live.push((p, l, r as u8));
        } else if r % 7 == 0 {
            let i = (r >> 16) as usize % live.len();
            let (p, l, seed) = live[i];
            let new = (r >> 24) as usize % 3000 + 1;
            // SAFETY: live block with its layout.
            let q = unsafe { h.reallocate(p, l, new) }.unwrap();
            // SAFETY: the first byte was kept.
            assert_eq!(unsafe { *q.as_ptr() }, seed);
            live[i] = (q, layout(new, l.align()), seed);
        } else {
            let (p, l, seed) = live.swap_remove((r >> 16) as usize % live.len());
            // SAFETY: live block.
            unsafe {
                assert_eq!(*p.as_ptr(), seed);
                h.deallocate(p, l);
            }
            frees += 1;
            if frees % 250_000 == 0 {
                h.check_invariants();
            }
        }
    }
    h.check_invariants();
    for (p, l, _) in live {
        // SAFETY: live block.
        unsafe { h.deallocate(p, l) };
    }
    h.release_free_pages();
    h.check_invariants();
    assert_eq!(h.source().pages_out, 0);
}

/// Builds a heap with `n` free fragments of 80 bytes (each between two used blocks), plus a
/// used 6000-byte block with used neighbours.
fn fragmented<H: RawHeap>(mut h: H, n: usize) -> (H, NonNull<u8>) {
    let l = layout(64, 16);
    let blocks: Vec<_> = (0..2 * n + 1).map(|_| h.allocate(l).unwrap()).collect();
    let big = h.allocate(layout(6000, 16)).unwrap();
    let _guard = h.allocate(l).unwrap();
    for b in blocks.iter().step_by(2) {
        free(&mut h, *b, l);
    }
    (h, big)
}

/// The blocks a free of the 6000-byte block and two allocations look at.
fn steps_of(h: &mut Heap<HostSource>, big: NonNull<u8>) -> usize {
    let before = h.steps();
    // SAFETY: live block with this layout.
    unsafe { h.deallocate(big, layout(6000, 16)) };
    let a = h.allocate(layout(6000, 16)).unwrap();
    let b = h.allocate(layout(200, 16)).unwrap();
    let steps = h.steps() - before;
    // SAFETY: live blocks.
    unsafe {
        h.deallocate(a, layout(6000, 16));
        h.deallocate(b, layout(200, 16));
    }
    steps
}

/// With 100 000 free fragments a free and an allocation look at no more blocks than with 1 000:
/// nothing walks the fragments. (The same measure on the classic heap grows with them: see the
/// next test, which shows the counter does see walks.)
#[test]
#[cfg_attr(miri, ignore = "millions of operations: too slow under Miri")]
fn fragmentation_does_not_slow_free_or_alloc() {
    let (mut small, big_s) = fragmented(Heap::new(HostSource::new(100_000)), 1_000);
    let (mut large, big_l) = fragmented(Heap::new(HostSource::new(100_000)), 100_000);
    // (The small-block cache keeps the first few freed fragments, outside the index.)
    assert!(large.stats().free_blocks >= 100_000 - crate::cache::DEPTH as usize);
    let s = steps_of(&mut small, big_s);
    let l = steps_of(&mut large, big_l);
    assert!(s <= 8, "a free and two allocations look at {s} blocks");
    assert_eq!(s, l, "1 000 fragments: {s} blocks looked at; 100 000: {l}");
    large.check_invariants();
}

#[test]
#[cfg_attr(miri, ignore = "millions of operations: too slow under Miri")]
fn the_step_counter_sees_the_classic_heaps_walks() {
    let mut steps = Vec::new();
    for n in [100, 10_000] {
        let (mut h, big) = fragmented(ClassicHeap::new(HostSource::new(100_000)), n);
        let before = h.steps();
        free(&mut h, big, layout(6000, 16));
        // Larger than any free block: first fit looks at every one before `morecore`.
        let a = h.allocate(layout(2 << 20, 16)).unwrap();
        steps.push(h.steps() - before);
        free(&mut h, a, layout(2 << 20, 16));
    }
    assert!(steps[1] > 50 * steps[0].max(1), "classic steps {steps:?}");
}

/// A heap over a static array through [`RegionSource`]: pages from the bottom up, the top run
/// taken back, a run below it kept by the heap.
#[test]
fn region_source_over_a_static_array() {
    #[repr(C, align(4096))]
    struct Arena([u8; 64 * PAGE_SIZE]);
    static mut ARENA: Arena = Arena([0; 64 * PAGE_SIZE]);
    // SAFETY: this test is the only user of ARENA.
    let region: &'static mut [u8] = unsafe { &mut (*core::ptr::addr_of_mut!(ARENA)).0 };
    let mut h = Heap::new(RegionSource::new(region));
    h.set_growth_limit(4);
    let a = h.allocate(layout(3 * PAGE_SIZE, 16)).unwrap();
    let b = h.allocate(layout(20 * PAGE_SIZE, 4096)).unwrap();
    assert_eq!(b.as_ptr() as usize % 4096, 0);
    fill(a, 3 * PAGE_SIZE, 1);
    fill(b, 20 * PAGE_SIZE, 2);
    assert!(
        h.allocate(layout(60 * PAGE_SIZE, 16)).is_err(),
        "the region is 64 pages"
    );
    assert_eq!(h.source().pages_left(), 64 - h.stats().pages_held);
    check(a, 3 * PAGE_SIZE, 1);
    // SAFETY: live blocks with their layouts.
    unsafe {
        h.deallocate(a, layout(3 * PAGE_SIZE, 16));
        h.deallocate(b, layout(20 * PAGE_SIZE, 4096));
    }
    h.release_free_pages();
    h.check_invariants();
    assert_eq!(
        h.stats().pages_held,
        0,
        "runs go back top first, as the heap returns them"
    );
    assert_eq!(h.source().pages_left(), 64);
}

/// Pages the heap gives back carry no word that reads as a used block's header: a source that
/// hands them out again unwiped (here `RegionSource`, `sbrk`-like) puts them inside a later
/// block, where a checked free of a pointer 8 bytes after such a word would take it for a
/// live block. The chunk below empties by the free of its first block, whose header no merge
/// wipes. (The fuzz target found this with the host allocator recycling the pages.)
#[test]
fn pages_given_back_leave_no_used_header_behind() {
    #[repr(C, align(4096))]
    struct Arena([u8; 8 * PAGE_SIZE]);
    static mut ARENA: Arena = Arena([0; 8 * PAGE_SIZE]);
    // SAFETY: this test is the only user of ARENA.
    let region: &'static mut [u8] = unsafe { &mut (*core::ptr::addr_of_mut!(ARENA)).0 };
    let mut h = Heap::new(RegionSource::new(region));
    h.set_growth_limit(1);
    // Blocks above the cache's sizes, a chunk of one page each: `a` in page 0, `b` in page 1.
    let a = h.kmalloc(3000).unwrap();
    let b = h.kmalloc(3000).unwrap();
    assert_eq!(b.as_ptr() as usize - a.as_ptr() as usize, PAGE_SIZE);
    // `a`'s chunk becomes the spare; `b`'s, wholly free too, goes back at once; then the spare.
    assert_eq!(h.kmfree(a), Ok(()));
    assert_eq!(h.kmfree(b), Ok(()));
    assert_eq!(h.release_free_pages(), 0);
    // Both pages again, as one chunk: `b`'s old header lies inside the new block.
    let c = h.allocate(layout(6000, 16)).unwrap();
    assert_eq!(c, a, "the region hands out its pages from the bottom again");
    assert_eq!(h.kmfree(b), Err(FreeError::NotABlockStart));
    assert!(!h.is_allocated(b));
    h.check_invariants();
    // SAFETY: live block with its layout.
    unsafe { h.deallocate(c, layout(6000, 16)) };
    assert_eq!(h.release_free_pages(), 0);
}

/// A burst of frees of one small size (as a kernel frees a batch of inodes or buffers): the first
/// 32 wait in the cache, unmerged, to be handed out again; the rest are freed into the index.
#[test]
fn the_cache_keeps_a_burst_of_one_size() {
    let mut h = Heap::new(HostSource::new(100));
    let l = layout(64, 8);
    // Every other block is freed: its neighbours are used, so none merges.
    let v: Vec<_> = (0..80).map(|_| h.allocate(l).unwrap()).collect();
    let before = h.stats().free_blocks;
    for p in v.iter().step_by(2) {
        free(&mut h, *p, l);
    }
    assert_eq!(
        h.stats().free_blocks - before,
        40 - 32,
        "blocks past the cache"
    );
    h.check_invariants();
    // Handed out again from the cache, the last block it took first (the 32nd freed).
    assert_eq!(h.allocate(l).unwrap(), v[2 * 31]);
    h.check_invariants();
}

#[test]
fn cached_small_blocks_are_reused_and_still_refused_twice() {
    let mut h = Heap::new(HostSource::new(400));
    let keep = h.kmalloc(528).unwrap();
    let a = h.kmalloc(64).unwrap();
    let in_use = h.stats().bytes_in_use;
    assert_eq!(h.kmfree(a), Ok(()));
    assert!(
        h.stats().bytes_in_use < in_use,
        "a cached block is not in use"
    );
    assert_eq!(
        h.kmfree(a),
        Err(FreeError::DoubleFree),
        "a cached block freed again"
    );
    assert!(!h.is_allocated(a));
    h.check_invariants();
    // The same size comes back from the cache, the same block.
    let b = h.kmalloc(60).unwrap();
    assert_eq!(a, b);
    assert!(h.is_allocated(b));
    h.check_invariants();
    // Fill the caches of many sizes (every 7 bytes; under Miri, which runs this 1500 times
    // slower, every 37: still sizes across the whole cache) and more; all of it merges back
    // when flushed.
    let mut v = std::vec::Vec::new();
    for size in (1..=600).step_by(if cfg!(miri) { 37 } else { 7 }) {
        for _ in 0..crate::cache::DEPTH as usize + 4 {
            v.push((h.kmalloc(size).unwrap(), size));
        }
    }
    for (p, _) in v.drain(..) {
        assert_eq!(h.kmfree(p), Ok(()));
    }
    h.check_invariants();
    assert_eq!(h.kmfree(b), Ok(()));
    assert_eq!(h.kmfree(keep), Ok(()));
    h.check_invariants();
    h.release_free_pages();
    assert_eq!(h.stats().pages_held, 0, "the cache kept a chunk");
    assert_eq!(h.stats().bytes_in_use, 0);
    h.check_invariants();
}

#[test]
#[cfg(feature = "tag-checks")]
#[should_panic(expected = "double free")]
fn deallocating_a_cached_block_twice_panics() {
    let mut h = Heap::new(HostSource::new(10));
    let l = layout(48, 16);
    let p = h.allocate(l).unwrap();
    // SAFETY: p is live.
    unsafe { h.deallocate(p, l) };
    // SAFETY: not safe: the heap must refuse it.
    unsafe { h.deallocate(p, l) };
}

#[test]
fn out_of_memory_flushes_the_cache() {
    // A source of 2 pages: fill it with small blocks, free them all (into the cache, pinning
    // the chunk), then ask for a block only the merged memory can hold.
    let mut h = Heap::new(HostSource::new(2));
    let mut v = std::vec::Vec::new();
    while let Some(p) = h.kmalloc(48) {
        v.push(p);
    }
    for p in v.drain(..) {
        assert_eq!(h.kmfree(p), Ok(()));
    }
    let big = h.kmalloc(4000);
    assert!(
        big.is_some(),
        "the cached blocks were not given back when memory ran out"
    );
    h.check_invariants();
}

/// Blocks of up to 1024 bytes (requests of up to 1016) wait in the cache; larger ones are indexed.
#[test]
fn the_cache_takes_blocks_of_up_to_1024_bytes() {
    let mut h = Heap::new(HostSource::new(10));
    let a = h.kmalloc(1016).unwrap();
    let b = h.kmalloc(1017).unwrap();
    let _guard = h.kmalloc(16).unwrap();
    let before = h.stats().free_blocks;
    assert_eq!(h.kmfree(a), Ok(()));
    assert_eq!(
        h.stats().free_blocks,
        before,
        "a 1024-byte block waits in the cache"
    );
    assert_eq!(h.kmfree(b), Ok(()));
    assert_eq!(
        h.stats().free_blocks,
        before + 1,
        "a 1040-byte block is indexed"
    );
    assert_eq!(h.kmalloc(1016), Some(a), "handed out again from the cache");
    h.check_invariants();
}

/// Cached blocks never make the heap grow: a request that only their merged memory can serve
/// flushes the cache before the heap asks its source, even one with pages to spare.
#[test]
fn the_cache_never_makes_the_heap_grow() {
    let mut h = Heap::new(HostSource::new(100));
    h.set_growth_limit(1);
    // A chunk of one page: 30 blocks of 112 bytes (3360 of its 4064), all freed into the cache.
    let v: std::vec::Vec<_> = (0..30).map(|_| h.kmalloc(100).unwrap()).collect();
    assert_eq!(h.stats().pages_held, 1);
    for p in v {
        assert_eq!(h.kmfree(p), Ok(()));
    }
    assert!(h.stats().largest_free_block < 3000);
    // Only the page's memory merged back into one block holds this.
    let big = h.kmalloc(3000).unwrap();
    assert_eq!(
        h.stats().pages_held,
        1,
        "the heap grew while its cached blocks could serve the request"
    );
    assert_eq!(h.kmfree(big), Ok(()));
    h.check_invariants();
}

/// A `RegionSource` built in a static initializer (its `new` is a `const fn`) over a region
/// that starts 100 bytes into a page: it finds the region's first whole page when asked, hands
/// out only whole pages inside the region, and a heap over it in a static works.
#[test]
fn region_source_built_in_a_static_uses_only_whole_pages() {
    #[repr(C, align(4096))]
    struct Arena([u8; 8 * PAGE_SIZE]);
    static mut ARENA: Arena = Arena([0; 8 * PAGE_SIZE]);
    // SAFETY: this static is the only user of ARENA; the region is its bytes from 100 on.
    static HEAP: crate::LockedHeap<Heap<RegionSource<'static>>> =
        crate::LockedHeap::new(Heap::new(RegionSource::new(unsafe {
            let a: &'static mut Arena = &mut *core::ptr::addr_of_mut!(ARENA);
            a.0.split_at_mut(100).1
        })));
    let base = core::ptr::addr_of!(ARENA) as usize;
    // Pages 1..8 of the arena are the whole pages of the region.
    assert_eq!(HEAP.lock().source().pages_left(), 7);
    let l = Layout::from_size_align(3000, 8).unwrap();
    let mut got = std::vec::Vec::new();
    // SAFETY: a non-zero size; every block is freed below with the same layout.
    while let Some(p) = NonNull::new(unsafe { core::alloc::GlobalAlloc::alloc(&HEAP, l) }) {
        let a = p.as_ptr() as usize;
        assert!(a >= base + PAGE_SIZE && a + 3000 <= base + 8 * PAGE_SIZE);
        got.push(p);
    }
    assert!(
        got.len() >= 6,
        "only {} blocks of 3000 bytes in 7 pages",
        got.len()
    );
    for p in got {
        // SAFETY: allocated above with `l`, freed once.
        unsafe { core::alloc::GlobalAlloc::dealloc(&HEAP, p.as_ptr(), l) };
    }
    HEAP.lock().check_invariants();
}

/// kmfree of a pointer into a used block whose payload looks like a free block's header, footer
/// and list links, with a back link that is not header-aligned: the check must not follow that
/// link (an unaligned read, or one past the chunk's end near its last block) and must still
/// refuse the pointer. The bytes at the misaligned link's "next" word name the fake header, so
/// following the link would wrongly call the pointer a double free.
#[test]
fn kmfree_tells_a_fake_free_header_with_a_misaligned_link() {
    let mut h = Heap::new(HostSource::new(100));
    let p = h.kmalloc(256).unwrap();
    let in_use = h.stats().bytes_in_use;
    let base = p.as_ptr();
    // The fake block: header at payload + 24 (the header of a block whose payload is at
    // payload + 32), 64 bytes long, free; its footer; its list links; a misaligned back link
    // at payload + 41 whose "next" word (payload + 49) names the fake header.
    let fake_header = base.wrapping_add(24);
    // SAFETY: all inside the 256-byte payload.
    unsafe {
        (fake_header as *mut usize).write_unaligned(64 | crate::block::FREE);
        (base.wrapping_add(24 + 64 - 8) as *mut usize).write_unaligned(64);
        (base.wrapping_add(32) as *mut usize).write_unaligned(0);
        (base.wrapping_add(40) as *mut usize).write_unaligned(base.addr() + 41);
        (base.wrapping_add(49) as *mut usize).write_unaligned(fake_header.addr());
    }
    let wild = NonNull::new(base.wrapping_add(32)).unwrap();
    assert_eq!(h.kmfree(wild), Err(FreeError::NotABlockStart));
    assert!(!h.is_allocated(wild));
    assert_eq!(h.stats().bytes_in_use, in_use, "nothing freed");
    assert_eq!(h.kmfree(p), Ok(()));
    h.check_invariants();
}

/// `RegionSource::free_pages` of a run it did not hand out declines and changes nothing,
/// whatever the pointer: below the region (the offset underflowed: a panic in debug builds),
/// inside a page rather than at its start (it was rounded down and taken back), or a page count
/// whose end overflows (a panic in debug builds).
#[test]
fn region_source_declines_runs_it_did_not_hand_out() {
    let mut buf = std::vec![0u8; 9 * PAGE_SIZE];
    let mut s = RegionSource::new(&mut buf);
    let p = s.alloc_pages(2, PAGE_SIZE).unwrap();
    let left = s.pages_left();
    let at = |off: isize| NonNull::new(p.as_ptr().wrapping_offset(off)).unwrap();
    let page = PAGE_SIZE as isize;
    for (ptr, pages) in [
        (at(-page), 3),
        (at(-16), 1),
        (at(100), 2),
        (at(page + 8), 1),
        (at(page), usize::MAX),
        (at(0), 0),
        (at(9 * page), 1),
    ] {
        // SAFETY: none of these is a run the source handed out; `RegionSource::free_pages`
        // reads no memory and (as its docs say) declines such a run.
        let taken = unsafe { s.free_pages(ptr, pages) };
        assert!(!taken, "{ptr:p}, {pages} pages");
        assert_eq!(s.pages_left(), left);
    }
    // SAFETY: the run handed out above, unused.
    assert!(unsafe { s.free_pages(p, 2) });
    assert_eq!(s.pages_left(), left + 2);
}

/// Checked frees of every 16-aligned pointer in a heap's chunk and around it, with a live
/// block's payload holding, 8 bytes before each such pointer, a fake free header: a size from
/// the smallest block to one that reaches the chunk's sentinel or past it, a footer where it
/// lands inside the payload, and list links aimed at the chunk's edges, misaligned addresses,
/// other fakes, a real free block and null. None is taken for a live block, nothing changes,
/// and (under Miri) no read leaves the chunk or is misaligned. 64-bit only: on 32-bit targets
/// the header has no room for the tag, and the docs (block.rs, README) say that a payload word
/// that looks like a used header is taken for one there, as this test's words can.
#[test]
#[cfg(target_pointer_width = "64")]
fn kmfree_of_any_pointer_with_fake_free_headers_changes_nothing() {
    let mut h = Heap::new(HostSource::new(100));
    h.set_growth_limit(1);
    let a = h.kmalloc(600).unwrap();
    let b = h.kmalloc(2000).unwrap();
    let c = h.kmalloc(300).unwrap();
    let d = h.kmalloc(100).unwrap();
    // SAFETY: `c` is live, freed once: a real free block between `b` and `d`.
    unsafe { h.deallocate(c, layout(300, 16)) };
    let live = [a.as_ptr().addr(), b.as_ptr().addr(), d.as_ptr().addr()];
    let chunk = a.as_ptr().addr() & !(PAGE_SIZE - 1);
    assert_eq!(b.as_ptr().addr() & !(PAGE_SIZE - 1), chunk, "one chunk");
    let sentinel = chunk + PAGE_SIZE - 8;
    let base = b.as_ptr();
    let before = h.stats();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng as usize % n
    };
    // (Under Miri, one round and every fourth offset: 30 s.)
    let (rounds, step) = if cfg!(miri) { (1, 64) } else { (20, 16) };
    for _ in 0..rounds {
        for off in (0..2000 - 8).step_by(step) {
            // The fake header at payload offset `off + 8`, i.e. for the pointer at `off + 16`.
            let q = off + 8;
            let hdr = base.addr() + q;
            let sizes = [
                32,
                48,
                64,
                2000 - q,
                sentinel - hdr,
                sentinel - hdr + 16,
                1 << 20,
            ];
            let size = sizes[next(sizes.len())];
            let targets = [
                0,
                chunk + 24 - 8,
                sentinel - 16,
                sentinel - 8,
                sentinel,
                sentinel + 1,
                hdr + 1,
                hdr - 16,
                base.addr() + next(2000),
                c.as_ptr().addr() - 8,
                usize::MAX - 7,
            ];
            let words = [
                (q, size | crate::block::FREE),
                (q + 8, targets[next(targets.len())]),
                (q + 16, targets[next(targets.len())]),
                (q + size.min(4096) - 8, size),
                (next(2000 - 8), hdr),
            ];
            for (at, w) in words {
                if at + 8 <= 2000 {
                    // SAFETY: inside `b`'s 2000-byte payload.
                    unsafe { (base.wrapping_add(at) as *mut usize).write_unaligned(w) };
                }
            }
            for p in (chunk.wrapping_sub(64)..chunk + PAGE_SIZE + 64).step_by(16) {
                let ptr = NonNull::new(base.wrapping_add(p.wrapping_sub(base.addr()))).unwrap();
                let live_block = live.contains(&p);
                assert_eq!(h.is_allocated(ptr), live_block, "{p:#x}");
                if !live_block {
                    assert!(h.kmfree(ptr).is_err(), "{p:#x}");
                }
            }
            assert_eq!(h.stats(), before);
        }
        // SAFETY: inside `b`'s payload.
        unsafe { base.write_bytes(0, 2000) };
    }
    h.check_invariants();
    for p in [a, b, d] {
        assert_eq!(h.kmfree(p), Ok(()));
    }
    h.check_invariants();
}
