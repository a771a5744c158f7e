//! Tests of the frame allocator against a shadow model, over host memory posing as RAM.

use crate::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::vec::Vec;

/// Host memory posing as physical RAM at `PHYS_BASE`, reached through a non-identity offset
/// (a direct-map pointer derived from the buffer's, so Miri's strict provenance holds).
pub(crate) struct Ram {
    _buf: Vec<u8>,
    pub map: *mut u8,
}

pub(crate) const PHYS_BASE: u64 = 0x10_0000;

impl Ram {
    pub fn new(frames: usize) -> Ram {
        let mut buf = std::vec![0u8; (frames + 1) * FRAME_SIZE];
        let p = buf.as_mut_ptr();
        let aligned = p.wrapping_add(p.align_offset(FRAME_SIZE));
        Ram {
            map: aligned.wrapping_sub(PHYS_BASE as usize),
            _buf: buf,
        }
    }

    pub fn phys(&self, frame_index: u64) -> PhysAddr {
        PhysAddr::new(PHYS_BASE + frame_index * FRAME_SIZE as u64)
    }

    pub fn allocator(&mut self, ranges: &[(u64, u64)]) -> FrameAllocator {
        let mut a = FrameAllocator::with_direct_map(self.map);
        for &(s, e) in ranges {
            // SAFETY: the ranges lie inside `buf`, which outlives the allocator in every test.
            unsafe { a.add_range(PhysAddr::new(PHYS_BASE + s), PhysAddr::new(PHYS_BASE + e)) }
                .unwrap();
        }
        a
    }
}

fn bytes(a: &FrameAllocator, f: Frame, n: usize) -> &'static mut [u8] {
    // SAFETY: tests only look at frames they own or that were just freed, inside the live Ram.
    unsafe { core::slice::from_raw_parts_mut(a.phys_to_virt(f.start()), n * FRAME_SIZE) }
}

/// The first aligned block of `size` frames (a power of two) that is managed and free in all its
/// frames, among the first `frames` frames of `ram`.
fn free_aligned_block(a: &FrameAllocator, ram: &Ram, frames: u64, size: u64) -> Option<Frame> {
    let first = Frame::containing(ram.phys(0)).number();
    (first.next_multiple_of(size)..first + frames)
        .step_by(size as usize)
        .map(|f| Frame::from_number(f).unwrap())
        .find(|&f| {
            (0..size).all(|i| {
                let g = Frame::from_number(f.number() + i).unwrap();
                a.contains(g) && a.is_free(g)
            })
        })
}

#[test]
fn ranges_with_holes_and_partial_edges() {
    let mut ram = Ram::new(300);
    // Range 1: [0x800, 100 frames + 0x800) -> partial first and last frames are skipped.
    let a = ram.allocator(&[(0x800, 100 * 4096 + 0x800), (120 * 4096, 300 * 4096)]);
    let st = a.stats();
    assert_eq!(st.ranges, 2);
    // 99 whole frames in the first range, 180 in the second, minus one bitmap frame each.
    assert_eq!(st.total, 98 + 179);
    assert_eq!(st.free, st.total);
    assert_eq!(st.metadata_frames, 2);
    assert_eq!(st.largest_free_run, 179);
    a.check_invariants();
    // Frames in the hole and the bitmaps are not managed.
    assert!(!a.contains(Frame::containing(ram.phys(110))));
    assert!(!a.contains(Frame::containing(ram.phys(1))), "bitmap frame");
    assert!(a.contains(Frame::containing(ram.phys(2))));
}

#[test]
fn overlap_and_tiny_ranges_refused() {
    let mut ram = Ram::new(64);
    let mut a = ram.allocator(&[(0, 32 * 4096)]);
    let p = |x: u64| PhysAddr::new(PHYS_BASE + x);
    // SAFETY: refused before anything is touched.
    unsafe {
        assert_eq!(
            a.add_range(p(16 * 4096), p(40 * 4096)),
            Err(RangeError::Overlap)
        );
        assert_eq!(
            a.add_range(p(40 * 4096), p(40 * 4096 + 100)),
            Err(RangeError::Empty)
        );
        assert_eq!(
            a.add_range(p(40 * 4096), p(41 * 4096)),
            Err(RangeError::TooSmall)
        );
    }
}

#[test]
fn exhaustion_and_recovery() {
    let mut ram = Ram::new(65);
    let mut a = ram.allocator(&[(0, 65 * 4096)]);
    let mut got = Vec::new();
    while let Ok(f) = a.allocate() {
        got.push(f);
    }
    assert_eq!(got.len(), 64);
    assert_eq!(a.allocate(), Err(AllocError::OutOfMemory));
    assert_eq!(a.stats().free, 0);
    assert_eq!(a.stats().largest_free_run, 0);
    for f in got.drain(..) {
        // SAFETY: frames we own.
        unsafe { a.free(f) }.unwrap();
    }
    a.check_invariants();
    assert_eq!(a.stats().largest_free_run, 64);
    // The usable frames start at frame 257 (frame 256 is the bitmap), so the largest aligned
    // buddy block is 32 frames at 288: freeing everything must have merged back up to it.
    assert!(
        a.allocate_contiguous(32, 32).is_ok(),
        "everything merged back"
    );
}

#[test]
fn contiguous_alignment_and_tail_return() {
    let mut ram = Ram::new(1100);
    let mut a = ram.allocator(&[(0, 1100 * 4096)]);
    for (count, align) in [(3, 1), (5, 8), (1, 256), (100, 1), (17, 32)] {
        let f = a.allocate_contiguous(count, align).unwrap();
        assert_eq!(f.number() % align as u64, 0);
        for i in 0..count as u64 {
            assert!(!a.is_free(f.offset(i)));
        }
        a.check_invariants();
        // SAFETY: frames we own.
        unsafe { a.free_contiguous(f, count) }.unwrap();
        a.check_invariants();
    }
    // 3 frames take a block of 4 and give the 4th back.
    let before = a.stats().free;
    let f = a.allocate_contiguous(3, 1).unwrap();
    assert_eq!(a.stats().free, before - 3);
    assert_eq!(a.free_frames(), before - 3, "the O(1) count agrees");
    // Free the middle frame alone, then the rest: sub-runs are fine.
    // SAFETY: frames we own.
    unsafe {
        a.free(f.offset(1)).unwrap();
        a.free(f).unwrap();
        a.free(f.offset(2)).unwrap();
    }
    a.check_invariants();
    assert_eq!(a.stats().free, before);
    assert_eq!(a.allocate_contiguous(0, 1), Err(AllocError::InvalidRequest));
    assert_eq!(a.allocate_contiguous(1, 3), Err(AllocError::InvalidRequest));
    assert_eq!(
        a.allocate_contiguous(1 << 20, 1),
        Err(AllocError::InvalidRequest)
    );
    assert_eq!(a.allocate_contiguous(2048, 1), Err(AllocError::OutOfMemory));
}

#[test]
fn bad_frees_are_reported_and_change_nothing() {
    let mut ram = Ram::new(40);
    let mut a = ram.allocator(&[(0, 32 * 4096)]);
    let f = a.allocate().unwrap();
    let g = a.allocate_contiguous(2, 1).unwrap();
    let st = a.stats();
    // SAFETY: all refused before touching memory, except the valid frees.
    unsafe {
        assert_eq!(
            a.free_addr(PhysAddr::new(f.start().as_u64() + 8)),
            Err(FreeError::Misaligned)
        );
        assert_eq!(
            a.free(Frame::containing(ram.phys(35))),
            Err(FreeError::NotManaged)
        );
        assert_eq!(
            a.free(Frame::containing(ram.phys(0))),
            Err(FreeError::NotManaged),
            "bitmap"
        );
        assert_eq!(a.free_contiguous(g, 0), Err(FreeError::Empty));
        assert_eq!(a.free_contiguous(g, 40), Err(FreeError::NotManaged));
        // Counts whose end overflows are past every range, not a wrap-around.
        assert_eq!(a.free_contiguous(g, usize::MAX), Err(FreeError::NotManaged));
        assert_eq!(
            a.free_contiguous(g, usize::MAX - g.number() as usize + 2),
            Err(FreeError::NotManaged)
        );
        assert_eq!(a.stats(), st);
        a.free(f).unwrap();
        assert_eq!(a.free(f), Err(FreeError::DoubleFree));
        // A run with one free frame in it is refused whole.
        assert_eq!(a.free_contiguous(f, 2), Err(FreeError::DoubleFree));
        assert!(!a.is_free(f.offset(1)) || f.offset(1) != g);
        a.free_contiguous(g, 2).unwrap();
        assert_eq!(a.free_contiguous(g, 2), Err(FreeError::DoubleFree));
    }
    a.check_invariants();
    assert_eq!(a.stats().free, a.stats().total);
}

#[test]
fn absurd_requests_are_refused() {
    let mut ram = Ram::new(40);
    let mut a = ram.allocator(&[(0, 32 * 4096)]);
    let st = a.stats();
    for (count, align) in [
        (usize::MAX, 1),
        (usize::MAX / 2 + 2, 1),
        // (Far past the largest block on 32-bit and 64-bit targets alike.)
        (1 << (usize::BITS - 2), 1),
        (1, 1 << (usize::BITS - 2)),
        (1, usize::MAX / 2 + 1),
        (0, 1),
        (1, 3),
    ] {
        assert_eq!(
            a.allocate_contiguous(count, align),
            Err(AllocError::InvalidRequest),
            "{count} frames at {align}"
        );
    }
    assert_eq!(a.stats(), st);
    a.check_invariants();
}

#[test]
fn long_run_with_one_free_frame_across_bitmap_words_is_refused() {
    // A run of 100 frames spans two or three bitmap words; one frame freed anywhere in it makes
    // the whole run's free a double free, changing nothing.
    let mut ram = Ram::new(300);
    let mut a = ram.allocator(&[(0, 300 * FRAME_SIZE as u64)]);
    for hole in [0u64, 1, 63, 64, 65, 98, 99] {
        let run = a.allocate_contiguous(100, 1).unwrap();
        // SAFETY: the frames are ours and unused, here and below.
        unsafe {
            a.free(run.offset(hole)).unwrap();
            let st = a.stats();
            assert_eq!(
                a.free_contiguous(run, 100),
                Err(FreeError::DoubleFree),
                "hole at {hole}"
            );
            assert_eq!(a.stats(), st);
            if hole > 0 {
                a.free_contiguous(run, hole as usize).unwrap();
            }
            if hole < 99 {
                a.free_contiguous(run.offset(hole + 1), 99 - hole as usize)
                    .unwrap();
            }
        }
        a.check_invariants();
        assert_eq!(a.stats().free, a.stats().total);
    }
}

#[test]
fn junk_fill_on_free_and_alloc() {
    let mut ram = Ram::new(20);
    let mut a = ram.allocator(&[(0, 16 * 4096)]);
    a.set_junk(Junk::XV6);
    let f = a.allocate().unwrap();
    assert!(
        bytes(&a, f, 1).iter().all(|&b| b == 5),
        "filled with 5 on allocation"
    );
    bytes(&a, f, 1).fill(0x77);
    // SAFETY: our frame.
    unsafe { a.free(f) }.unwrap();
    // The first bytes hold the free-list node; the rest is junk.
    assert!(
        bytes(&a, f, 1)[64..].iter().all(|&b| b == 1),
        "filled with 1 on free"
    );
}

#[cfg(feature = "kmalloc")]
#[test]
fn page_source_feeds_a_kmalloc_heap() {
    let ram = Ram::new(200);
    let locked = LockedFrameAllocator::from_allocator(FrameAllocator::with_direct_map(ram.map));
    // SAFETY: memory nobody else uses, inside `ram`, which outlives the allocator.
    unsafe { locked.lock().add_range(ram.phys(0), ram.phys(200)) }.unwrap();
    let total = locked.lock().stats().free;
    let mut heap = kmalloc::Heap::new(&locked);
    let mut blocks = Vec::new();
    for i in 0..300 {
        let l = core::alloc::Layout::from_size_align(16 + i * 37 % 3000, 8).unwrap();
        blocks.push((heap.allocate(l).unwrap(), l));
    }
    let big = core::alloc::Layout::from_size_align(40_000, 4096).unwrap();
    let p = heap.allocate(big).unwrap();
    assert_eq!(p.as_ptr() as usize % 4096, 0);
    assert!(locked.lock().stats().free < total);
    for (b, l) in blocks {
        // SAFETY: live blocks.
        unsafe { heap.deallocate(b, l) };
    }
    // SAFETY: live block.
    unsafe { heap.deallocate(p, big) };
    heap.release_free_pages();
    assert_eq!(heap.stats().pages_held, 0);
    locked.lock().check_invariants();
    assert_eq!(locked.lock().stats().free, total, "every frame back");
}

#[cfg(feature = "kmalloc")]
#[test]
fn page_source_hint_is_exact_or_unknown() {
    use kmalloc::PageSource;
    let ram = Ram::new(40);
    let locked = LockedFrameAllocator::from_allocator(FrameAllocator::with_direct_map(ram.map));
    // SAFETY: memory nobody else uses, inside `ram`, which outlives the allocator.
    unsafe { locked.lock().add_range(ram.phys(0), ram.phys(40)) }.unwrap();
    let mut src = &locked;
    assert_eq!(src.pages_available_hint(), None, "unknown after lock()");
    let mut runs = Vec::new();
    while let Some(p) = src.alloc_pages(3, FRAME_SIZE) {
        runs.push(p);
        let largest = locked.inner_largest_for_tests();
        assert_eq!(src.pages_available_hint(), Some(largest));
    }
    let hint = src.pages_available_hint().unwrap();
    assert!(hint < 3, "a refused run is beyond the hint");
    // SAFETY: a run handed out above, unused.
    assert!(unsafe { src.free_pages(runs.pop().unwrap(), 3) });
    assert!(
        src.pages_available_hint().unwrap() >= 3,
        "a freed run is seen at once"
    );
    drop(locked.lock());
    assert_eq!(src.pages_available_hint(), None);
    for p in runs {
        // SAFETY: runs handed out above, unused.
        assert!(unsafe { src.free_pages(p, 3) });
    }
    locked.lock().check_invariants();
}

/// A frame run freed in pieces whose later pieces hold forged free-list nodes (as a caller's data
/// may): the allocator must not take them for free blocks.
#[test]
fn forged_nodes_in_a_freed_run_are_not_trusted() {
    let mut ram = Ram::new(200);
    let mut a = ram.allocator(&[(0, 200 * 4096)]);
    let total = a.stats().total;
    let f = a.allocate_contiguous(16, 16).unwrap();
    let n = f.number();
    for i in 0..16u64 {
        // Each frame claims to head a block of the order its position allows, linked to the
        // run's first frame and to a frame nobody manages.
        let frame = Frame::from_number(n + i).unwrap();
        // SAFETY: a frame we own.
        unsafe { a.forge_node(frame, (i.trailing_zeros() as usize).min(3), n, 1 << 40) };
    }
    // Freed as blocks of 4, 2 and 1 frames: each block's buddy is the next block.
    // SAFETY: frames we own.
    unsafe { a.free_contiguous(f, 7) }.unwrap();
    a.check_invariants();
    assert_eq!(a.stats().free, total - 9);
    // SAFETY: frames we own.
    unsafe { a.free_contiguous(Frame::from_number(n + 7).unwrap(), 9) }.unwrap();
    a.check_invariants();
    assert_eq!(a.stats().free, total);
    let mut seen = std::collections::BTreeSet::new();
    while let Ok(f) = a.allocate() {
        assert!(
            seen.insert(f.number()),
            "frame {} handed out twice",
            f.number()
        );
    }
    assert_eq!(seen.len() as u64, total);
}

/// Runs a fixed mix of allocations and frees; returns every allocation's result. Leaves what it
/// allocated allocated, and its lists in the frames.
fn fixed_workload(a: &mut FrameAllocator) -> Vec<Option<u64>> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut live: Vec<(Frame, usize)> = Vec::new();
    let mut got = Vec::new();
    for _ in 0..3000 {
        if live.len() < 60 && (next() % 3 != 0 || live.is_empty()) {
            let count = 1 + (next() % 24) as usize;
            let r = a.allocate_contiguous(count, 1 << (next() % 4)).ok();
            got.push(r.map(|f| f.number()));
            if let Some(f) = r {
                live.push((f, count));
            }
        } else {
            let (f, count) = live.swap_remove((next() % live.len() as u64) as usize);
            // SAFETY: frames we own.
            unsafe { a.free_contiguous(f, count) }.unwrap();
        }
    }
    got
}

/// At boot, RAM holds whatever was there: here, the free lists of an earlier allocator over the
/// same memory. A new allocator must behave as it does on clean memory.
#[test]
fn garbage_left_by_an_earlier_allocator_is_ignored() {
    let mut clean = Ram::new(300);
    let mut a = clean.allocator(&[(0, 300 * 4096)]);
    let expected = fixed_workload(&mut a);
    a.check_invariants();

    let mut ram = Ram::new(300);
    {
        let mut first = ram.allocator(&[(0, 300 * 4096)]);
        fixed_workload(&mut first);
    }
    let mut second = ram.allocator(&[(0, 300 * 4096)]);
    assert_eq!(fixed_workload(&mut second), expected);
    second.check_invariants();
}

#[derive(Debug, Clone)]
enum Op {
    One,
    Run { count: usize, align_log: u8 },
    Free { index: usize },
    FreePart { index: usize, offset: usize },
    BadFree { index: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::One),
        2 => (1usize..40, 0u8..6).prop_map(|(count, align_log)| Op::Run { count, align_log }),
        4 => any::<usize>().prop_map(|index| Op::Free { index }),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(index, offset)| Op::FreePart { index, offset }),
        1 => any::<usize>().prop_map(|index| Op::BadFree { index }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random allocations and frees against a shadow map of owned frames: nothing handed out
    /// twice, alignment kept, contents intact, counts consistent; at the end all frames free and
    /// allocatable again.
    #[test]
    fn shadow_model(ops in proptest::collection::vec(op(), 1..300)) {
        let mut ram = Ram::new(700);
        let mut a = ram.allocator(&[(0, 200 * 4096), (230 * 4096 + 100, 700 * 4096)]);
        let total = a.stats().total;
        // first frame number -> (count, fill byte)
        let mut owned: BTreeMap<u64, (usize, u8)> = BTreeMap::new();
        let mut seed = 0u8;
        for op in ops {
            seed = seed.wrapping_add(1);
            let keys: Vec<u64> = owned.keys().copied().collect();
            match op {
                Op::One | Op::Run { .. } => {
                    let (count, align) = match op {
                        Op::Run { count, align_log } => (count, 1usize << align_log),
                        _ => (1, 1),
                    };
                    match a.allocate_contiguous(count, align) {
                        Ok(f) => {
                            prop_assert_eq!(f.number() % align as u64, 0);
                            for (&s, &(n, _)) in &owned {
                                prop_assert!(f.number() + count as u64 <= s || s + n as u64 <= f.number());
                            }
                            bytes(&a, f, count).fill(seed);
                            owned.insert(f.number(), (count, seed));
                        }
                        Err(_) => {
                            // Refused only if no aligned block of the size it needs is free
                            // (caches hold nothing a merge could use).
                            let need = count.next_power_of_two().max(align) as u64;
                            prop_assert!(
                                free_aligned_block(&a, &ram, 700, need).is_none(),
                                "{count} frames at {align} refused with a free block of {need}"
                            );
                        }
                    }
                }
                Op::Free { index } if !keys.is_empty() => {
                    let s = keys[index % keys.len()];
                    let (n, fillb) = owned.remove(&s).unwrap();
                    let f = Frame::from_number(s).unwrap();
                    prop_assert!(bytes(&a, f, n).iter().all(|&b| b == fillb), "contents changed");
                    // SAFETY: frames we own.
                    let r = unsafe { a.free_contiguous(f, n) };
                    prop_assert_eq!(r, Ok(()));
                    // SAFETY: refused (double free) without touching memory.
                    let r = unsafe { a.free(f) };
                    prop_assert_eq!(r, Err(FreeError::DoubleFree));
                    if n > 1 {
                        // The whole run again (a cached block, likely): refused too.
                        // SAFETY: as above.
                        let r = unsafe { a.free_contiguous(f, n) };
                        prop_assert_eq!(r, Err(FreeError::DoubleFree));
                    }
                }
                Op::FreePart { index, offset } if !keys.is_empty() => {
                    let s = keys[index % keys.len()];
                    let (n, fillb) = owned.remove(&s).unwrap();
                    if n > 1 {
                        let k = 1 + offset % (n - 1);
                        // Free the head [s, s+k), keep the tail.
                        // SAFETY: frames we own.
                        let r = unsafe { a.free_contiguous(Frame::from_number(s).unwrap(), k) };
                        prop_assert_eq!(r, Ok(()));
                        owned.insert(s + k as u64, (n - k, fillb));
                    } else {
                        owned.insert(s, (n, fillb));
                    }
                }
                Op::BadFree { index } => {
                    // A frame nobody owns: free or unmanaged. Must be refused.
                    let f = Frame::containing(ram.phys((index % 720) as u64));
                    let owned_now = owned.iter().any(|(&s, &(n, _))| f.number() >= s && f.number() < s + n as u64);
                    if !owned_now {
                        // SAFETY: refused without touching memory (free or unmanaged frame).
                        let r = unsafe { a.free(f) };
                        prop_assert!(r.is_err());
                        // The same frame as the head of a run of 2: refused on the run path.
                        // SAFETY: as above (its first frame is free or unmanaged).
                        let r = unsafe { a.free_contiguous(f, 2) };
                        prop_assert!(r.is_err());
                    }
                }
                _ => {}
            }
            a.check_invariants();
            let live: u64 = owned.values().map(|&(n, _)| n as u64).sum();
            prop_assert_eq!(a.stats().free, total - live);
        }
        for (s, (n, _)) in std::mem::take(&mut owned) {
            // SAFETY: frames we own.
            let r = unsafe { a.free_contiguous(Frame::from_number(s).unwrap(), n) };
            prop_assert_eq!(r, Ok(()));
        }
        a.check_invariants();
        let st = a.stats();
        prop_assert_eq!(st.free, total);
        let mut n = 0;
        while a.allocate().is_ok() { n += 1; }
        prop_assert_eq!(n, total);
    }
}

/// Freed single frames wait in the cache: still free for `is_free` and the counts, still caught
/// on a double free, and merged back when a contiguous request needs them.
#[test]
fn cached_frames_are_free_checked_and_merged_on_demand() {
    let mut ram = Ram::new(200);
    let mut a = ram.allocator(&[(0, 200 * 4096)]);
    let total = a.stats().total;
    let frames: Vec<Frame> = (0..total).map(|_| a.allocate().unwrap()).collect();
    assert_eq!(a.allocate(), Err(AllocError::OutOfMemory));
    for &f in &frames[..CACHE_FRAMES] {
        // SAFETY: frames we own.
        unsafe { a.free(f) }.unwrap();
    }
    assert_eq!(a.cached_frames(), CACHE_FRAMES);
    a.check_invariants();
    for &f in &frames[..CACHE_FRAMES] {
        assert!(a.is_free(f));
        // SAFETY: refused without touching memory.
        assert_eq!(unsafe { a.free(f) }, Err(FreeError::DoubleFree));
        // SAFETY: as above.
        assert!(unsafe { a.free_contiguous(f, 2) }.is_err());
    }
    assert_eq!(a.stats().free, CACHE_FRAMES as u64);
    // Only cached frames are free: a 16-frame run needs them merged back.
    let run = a.allocate_contiguous(16, 16).unwrap();
    a.check_invariants();
    assert!(a.cached_frames() < CACHE_FRAMES);
    // SAFETY: frames we own.
    unsafe {
        a.free_contiguous(run, 16).unwrap();
        for &f in &frames[CACHE_FRAMES..] {
            a.free(f).unwrap();
        }
    }
    a.check_invariants();
    assert_eq!(a.stats().free, total);
}

/// Cache entries name their range by index; adding a range below the others moves every index.
#[test]
fn adding_a_lower_range_while_frames_are_cached() {
    let mut ram = Ram::new(300);
    let mut a = ram.allocator(&[(150 * 4096, 300 * 4096)]);
    let f = a.allocate().unwrap();
    let g = a.allocate().unwrap();
    // SAFETY: our frame.
    unsafe { a.free(f) }.unwrap();
    assert!(a.cached_frames() > 0);
    // SAFETY: memory inside `ram` nobody uses, below the first range.
    unsafe { a.add_range(ram.phys(0), ram.phys(100)) }.unwrap();
    a.check_invariants();
    let total = a.stats().total;
    // SAFETY: our frame.
    unsafe { a.free(g) }.unwrap();
    let mut seen = std::collections::BTreeSet::new();
    while let Ok(h) = a.allocate() {
        assert!(seen.insert(h), "frame handed out twice");
    }
    assert_eq!(seen.len() as u64, total);
    a.check_invariants();
}

/// An allocator over memory it holds a pointer to derives every pointer from it (strict
/// provenance; this is the test Miri runs it under).
#[test]
fn with_direct_map_over_a_buffer() {
    let mut buf = std::vec![0u64; 40 * FRAME_SIZE / 8];
    let base = buf.as_mut_ptr() as *mut u8;
    let offset = base.align_offset(FRAME_SIZE);
    let phys = 0x4000_0000u64;
    let mut a =
        FrameAllocator::with_direct_map(base.wrapping_add(offset).wrapping_sub(phys as usize));
    // SAFETY: frames of `buf`, which outlives the allocator's use.
    unsafe {
        a.add_range(
            PhysAddr::new(phys),
            PhysAddr::new(phys + 38 * FRAME_SIZE as u64),
        )
    }
    .unwrap();
    a.set_junk(Junk::XV6);
    let f = a.allocate().unwrap();
    assert_eq!(a.virt_to_phys(a.phys_to_virt(f.start())), f.start());
    let run = a.allocate_contiguous(5, 4).unwrap();
    // SAFETY: ours.
    unsafe {
        a.free(f).unwrap();
        a.free_contiguous(run, 5).unwrap();
    }
    a.check_invariants();
    assert_eq!(a.stats().free, a.stats().total);
    // `buf` outlives every use of `a`.
    drop(buf);
}

/// The single-frame fast paths serve the largest range; frames of the others go through the
/// same cache on the general paths. Three ranges, the largest in the middle: every frame of every
/// range is allocated, freed in an order that mixes the ranges in the cache (through refills and
/// flushes), refused when freed again (cached or not), and handed out again exactly once; frames
/// between the ranges and the ranges' metadata frames are refused throughout.
#[test]
fn frames_of_every_range_pass_through_the_cache() {
    let mut ram = Ram::new(400);
    let mut a = ram.allocator(&[
        (0, 60 * 4096),
        (70 * 4096, 330 * 4096),
        (340 * 4096, 400 * 4096),
    ]);
    let total = a.stats().total;
    let foreign: Vec<Frame> = [60u64, 65, 69, 330, 335, 339, 400, 401]
        .iter()
        .map(|&i| Frame::containing(ram.phys(i)))
        .chain(
            [0u64, 70, 340]
                .iter()
                .map(|&i| Frame::containing(ram.phys(i))),
        ) // metadata
        .collect();
    let refused = |a: &mut FrameAllocator| {
        for &f in &foreign {
            assert!(!a.is_free(f));
            // SAFETY: refused without touching memory (not managed).
            assert_eq!(unsafe { a.free(f) }, Err(FreeError::NotManaged));
        }
    };
    for round in 0..2 {
        let mut frames = Vec::new();
        while let Ok(f) = a.allocate() {
            frames.push(f);
        }
        assert_eq!(frames.len() as u64, total, "round {round}");
        let mut sorted = frames.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), frames.len(), "a frame handed out twice");
        refused(&mut a);
        // Interleave the ranges: by frame number modulo a prime, so consecutive frees come from
        // different ranges.
        frames.sort_by_key(|f| (f.number() * 7919) % 997);
        for (i, &f) in frames.iter().enumerate() {
            // SAFETY: our frame.
            assert_eq!(unsafe { a.free(f) }, Ok(()));
            // SAFETY: refused without touching memory (free, likely cached).
            assert_eq!(unsafe { a.free(f) }, Err(FreeError::DoubleFree));
            let back = frames[i / 2];
            // SAFETY: as above (freed before).
            assert_eq!(unsafe { a.free(back) }, Err(FreeError::DoubleFree));
            if i % 50 == 0 {
                a.check_invariants();
                refused(&mut a);
            }
        }
        a.check_invariants();
        assert_eq!(a.stats().free, total);
    }
    // Everything merged back: the largest range's whole blocks are there again.
    a.flush_cache();
    a.check_invariants();
    assert!(a.allocate_contiguous(128, 128).is_ok());
}

/// Freed runs of 2 to 64 frames wait whole in a cache per order: the next request of the order
/// gets the last one back (not the lowest free block), they are still free for `is_free` and the
/// counts, a double free of all or part of one is refused, and a request they could serve only
/// merged (or a single frame, when nothing else is left) merges them back.
#[test]
fn freed_blocks_are_cached_checked_and_merged_on_demand() {
    let mut ram = Ram::new(300);
    let mut a = ram.allocator(&[(0, 300 * 4096)]);
    let total = a.stats().total;
    for order in 1..=6u32 {
        let n = 1usize << order;
        let x = a.allocate_contiguous(n, n).unwrap();
        let y = a.allocate_contiguous(n, n).unwrap();
        let (low, high) = (x.min(y), x.max(y));
        // SAFETY: runs we own.
        unsafe {
            a.free_contiguous(low, n).unwrap();
            a.free_contiguous(high, n).unwrap();
        }
        a.check_invariants();
        for f in [low, high] {
            assert!(
                a.is_free(f) && a.is_free(Frame::from_number(f.number() + n as u64 - 1).unwrap())
            );
            // SAFETY: refused without touching memory (free, cached).
            unsafe {
                assert_eq!(a.free_contiguous(f, n), Err(FreeError::DoubleFree));
                assert_eq!(a.free(f), Err(FreeError::DoubleFree));
                let mid = Frame::from_number(f.number() + 1).unwrap();
                assert_eq!(a.free_contiguous(mid, n - 1), Err(FreeError::DoubleFree));
            }
        }
        assert_eq!(a.stats().free, total);
        // The last freed comes back first, whatever lies lower.
        assert_eq!(a.allocate_contiguous(n, n), Ok(high));
        // SAFETY: ours.
        unsafe { a.free_contiguous(high, n).unwrap() };
    }
    // Everything taken as pairs; then freeing them leaves only cached blocks free.
    let mut pairs = Vec::new();
    while let Ok(p) = a.allocate_contiguous(2, 2) {
        pairs.push(p);
    }
    let single = a.allocate().ok();
    // Eight pairs making an aligned block of 16, freed: cached, so a run of 16 needs them merged.
    let base = pairs
        .iter()
        .map(|p| p.number())
        .find(|&p| p % 16 == 0 && (1..8).all(|i| pairs.iter().any(|q| q.number() == p + 2 * i)))
        .unwrap();
    let group: Vec<Frame> = pairs
        .iter()
        .copied()
        .filter(|p| (base..base + 16).contains(&p.number()))
        .collect();
    let rest: Vec<Frame> = pairs
        .iter()
        .copied()
        .filter(|p| !(base..base + 16).contains(&p.number()))
        .collect();
    for &p in &group {
        // SAFETY: ours.
        unsafe { a.free_contiguous(p, 2).unwrap() };
    }
    a.check_invariants();
    let run = a
        .allocate_contiguous(16, 16)
        .expect("cached pairs merged for a larger run");
    assert_eq!(run.number(), base);
    a.check_invariants();
    // SAFETY: ours.
    unsafe { a.free_contiguous(run, 16).unwrap() };
    for &p in rest.iter().take(4) {
        // SAFETY: ours.
        unsafe { a.free_contiguous(p, 2).unwrap() };
    }
    // Only cached blocks (and what the 16 merged into) are free: single frames still come.
    let mut got = 0;
    while a.allocate().is_ok() {
        got += 1;
    }
    assert_eq!(got, 16 + 8);
    a.check_invariants();
    let _ = single;
}

/// After a refused request the allocator remembers that its caches cannot help that order; a
/// free that makes a cached block's neighbourhood all free must make it forget, or the next
/// request would be refused with a free block there.
#[test]
fn a_free_next_to_a_cached_block_undoes_a_refusal() {
    let mut ram = Ram::new(80);
    let mut a = ram.allocator(&[(0, 80 * 4096)]);
    let mut pairs = Vec::new();
    while let Ok(p) = a.allocate_contiguous(2, 2) {
        pairs.push(p);
    }
    // Two buddy pairs A (lower) and B: free A (cached); a run of 4 is refused (B is taken).
    let i = pairs
        .iter()
        .position(|p| p.number() % 4 == 0 && pairs.iter().any(|q| q.number() == p.number() + 2))
        .unwrap();
    let pa = pairs[i];
    let pb = Frame::from_number(pa.number() + 2).unwrap();
    // SAFETY: ours.
    unsafe { a.free_contiguous(pa, 2).unwrap() };
    assert_eq!(a.allocate_contiguous(4, 4), Err(AllocError::OutOfMemory));
    a.check_invariants();
    // Freeing B makes A+B a free block of 4.
    // SAFETY: ours.
    unsafe { a.free_contiguous(pb, 2).unwrap() };
    a.check_invariants();
    assert_eq!(a.allocate_contiguous(4, 4), Ok(pa));
}

/// The page-source face's `free_pages` of a pointer that is not a direct-map address (below the
/// direct map, or one that maps past the physical address range) declines without a panic of its
/// own: it used to convert the address with `PhysAddr::new`, which panics in every build. In
/// release builds it returns false; debug builds stop at the assertion that names a heap giving
/// back what it was not given.
#[cfg(feature = "kmalloc")]
#[test]
#[cfg_attr(
    debug_assertions,
    should_panic(expected = "heap returned pages the frame allocator did not hand out")
)]
fn page_source_declines_a_pointer_outside_the_direct_map() {
    use kmalloc::PageSource;
    let ram = Ram::new(40);
    let locked = LockedFrameAllocator::from_allocator(FrameAllocator::with_direct_map(ram.map));
    // SAFETY: memory nobody else uses, inside `ram`, which outlives the allocator.
    unsafe { locked.lock().add_range(ram.phys(0), ram.phys(40)) }.unwrap();
    let mut src = &locked;
    let p = src.alloc_pages(1, FRAME_SIZE).unwrap();
    let before = locked.lock().stats();
    let below = core::ptr::NonNull::new(ram.map.wrapping_sub(FRAME_SIZE)).unwrap();
    // SAFETY: not a run the source handed out; it is refused before any memory is touched.
    assert!(!unsafe { src.free_pages(below, 1) });
    assert_eq!(locked.lock().stats(), before);
    // SAFETY: the run handed out above, unused.
    assert!(unsafe { src.free_pages(p, 1) });
}
