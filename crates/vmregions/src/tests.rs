//! Tests of the region list against a shadow model.

use crate::tree;
use crate::*;
use alloc::vec::Vec;
use proptest::prelude::*;

fn anon(start: u64, len: u64) -> Region<u32> {
    Region {
        start,
        len,
        prot: Prot::READ | Prot::WRITE,
        sharing: Sharing::Private,
        backing: Backing::Anonymous,
    }
}

fn file(start: u64, len: u64, offset: u64) -> Region<u32> {
    Region {
        start,
        len,
        prot: Prot::READ,
        sharing: Sharing::Shared,
        backing: Backing::File { handle: 7, offset },
    }
}

fn spans(l: &RegionList<u32, impl Allocator + Clone>) -> Vec<(u64, u64)> {
    l.iter().map(|r| (r.start, r.end())).collect()
}

#[test]
fn insert_find_overlap() {
    let mut l = RegionList::new(10);
    l.insert(anon(0x1000, 0x1000)).unwrap();
    l.insert(anon(0x3000, 0x2000)).unwrap();
    l.insert(anon(0x2000, 0x1000)).unwrap(); // adjacent on both sides
    assert_eq!(l.insert(anon(0x2fff, 2)), Err(RegionError::Overlap));
    assert_eq!(l.insert(anon(0x0, 0x1001)), Err(RegionError::Overlap));
    assert_eq!(l.insert(anon(0x0, 0)), Err(RegionError::EmptyRange));
    assert_eq!(
        l.insert(anon(u64::MAX - 1, 5)),
        Err(RegionError::AddressOverflow)
    );
    // A file range that wraps would make the end of the mapping alias the file's start.
    assert_eq!(
        l.insert(file(0x8000, 0x2000, u64::MAX - 0xfff)),
        Err(RegionError::AddressOverflow)
    );
    assert_eq!(
        l.insert(file(0x8000, 0x1000, u64::MAX - 0xfff)),
        Err(RegionError::AddressOverflow),
        "offset + len is one past the end: not representable either"
    );
    l.insert(file(0x8000, 0x1000, u64::MAX - 0x1fff)).unwrap();
    assert_eq!(
        l.find(0x8fff).unwrap().file_offset(0x8fff),
        Some(u64::MAX - 0x1000)
    );
    l.remove_range(0x8000, 0x1000, |_| {}).unwrap();
    assert_eq!(
        spans(&l),
        [(0x1000, 0x2000), (0x2000, 0x3000), (0x3000, 0x5000)]
    );
    assert_eq!(l.find(0x2fff).unwrap().start, 0x2000);
    assert_eq!(l.find(0x4fff).unwrap().start, 0x3000);
    assert!(l.find(0x5000).is_none());
    assert!(l.find(0xfff).is_none());
    l.find_mut(0x1000).unwrap().prot = Prot::READ;
    assert_eq!(l.find(0x1000).unwrap().prot, Prot::READ);
    l.check_invariants();
}

#[test]
fn max_regions_enforced() {
    let mut l = RegionList::new(3);
    for i in 0..3 {
        l.insert(anon(i * 0x10000, 0x1000)).unwrap();
    }
    assert_eq!(
        l.insert(anon(0x100000, 0x1000)),
        Err(RegionError::TooManyRegions)
    );
    // Splitting would make 4: refused, nothing changed, callback not called.
    let before = spans(&l);
    let mut called = false;
    assert_eq!(
        l.remove_range(0x10400, 0x100, |_| called = true),
        Err(RegionError::TooManyRegions)
    );
    assert!(!called);
    assert_eq!(spans(&l), before);
    // Removing a head needs no new node.
    assert_eq!(l.remove_range(0x10000, 0x400, |_| {}), Ok(1));
    l.check_invariants();
}

#[test]
fn remove_head_tail_hole_span_and_nothing() {
    let mut l = RegionList::new(20);
    l.insert(file(0x10000, 0x10000, 0x5000)).unwrap();
    l.insert(anon(0x30000, 0x1000)).unwrap();
    l.insert(anon(0x32000, 0x1000)).unwrap();
    let mut got = Vec::new();
    // Hole in the middle: split, offsets adjusted.
    assert_eq!(l.remove_range(0x14000, 0x2000, |r| got.push(r)), Ok(1));
    assert_eq!(got[0].start, 0x14000);
    assert_eq!(
        got[0].backing,
        Backing::File {
            handle: 7,
            offset: 0x9000
        }
    );
    assert_eq!(
        l.find(0x16000).unwrap().backing,
        Backing::File {
            handle: 7,
            offset: 0xb000
        }
    );
    assert_eq!(
        spans(&l),
        [
            (0x10000, 0x14000),
            (0x16000, 0x20000),
            (0x30000, 0x31000),
            (0x32000, 0x33000)
        ]
    );
    // Head and tail.
    got.clear();
    assert_eq!(l.remove_range(0xf000, 0x2000, |r| got.push(r)), Ok(1));
    assert_eq!((got[0].start, got[0].len), (0x10000, 0x1000));
    assert_eq!(l.remove_range(0x1f000, 0x4000, |_| {}), Ok(1));
    assert_eq!(
        spans(&l),
        [
            (0x11000, 0x14000),
            (0x16000, 0x1f000),
            (0x30000, 0x31000),
            (0x32000, 0x33000)
        ]
    );
    // A span over several regions and the gaps between.
    got.clear();
    assert_eq!(l.remove_range(0x12000, 0x20800, |r| got.push(r)), Ok(4));
    assert_eq!(
        got.iter().map(|r| (r.start, r.end())).collect::<Vec<_>>(),
        [
            (0x12000, 0x14000),
            (0x16000, 0x1f000),
            (0x30000, 0x31000),
            (0x32000, 0x32800)
        ]
    );
    assert_eq!(spans(&l), [(0x11000, 0x12000), (0x32800, 0x33000)]);
    // Nothing there.
    assert_eq!(l.remove_range(0x50000, 0x1000, |_| panic!()), Ok(0));
    assert_eq!(
        l.remove_range(0x50000, 0, |_| panic!()),
        Err(RegionError::EmptyRange)
    );
    l.check_invariants();
}

#[test]
fn gaps_bottom_top_alignment_and_hints() {
    let mut l = RegionList::new(20);
    assert_eq!(
        l.find_gap(0x1000, 0x1000, 0x1000, 0x10000, None),
        Some(0x1000)
    );
    l.insert(anon(0x1000, 0x1000)).unwrap();
    l.insert(anon(0x3000, 0x1000)).unwrap();
    // The gap 0x2000..0x3000 fits one page; two pages go above.
    assert_eq!(
        l.find_gap(0x1000, 0x1000, 0x1000, 0x10000, None),
        Some(0x2000)
    );
    assert_eq!(
        l.find_gap(0x2000, 0x1000, 0x1000, 0x10000, None),
        Some(0x4000)
    );
    // Alignment skips a fitting but misaligned spot.
    assert_eq!(
        l.find_gap(0x1000, 0x4000, 0x1000, 0x10000, None),
        Some(0x4000)
    );
    assert_eq!(
        l.find_gap(0x1000, 0x8000, 0x1000, 0x10000, None),
        Some(0x8000)
    );
    // Bounds.
    assert_eq!(l.find_gap(0x1000, 0x1000, 0x0, 0x10000, None), Some(0x0));
    assert_eq!(
        l.find_gap(0x1000, 0x1000, 0x2800, 0x10000, None),
        Some(0x4000)
    );
    assert_eq!(l.find_gap(0xd000, 0x1000, 0x1000, 0x10000, None), None);
    assert_eq!(
        l.find_gap(0xc000, 0x1000, 0x1000, 0x10000, None),
        Some(0x4000)
    );
    // Hints: taken when free, ignored when not.
    assert_eq!(
        l.find_gap(0x1000, 0x1000, 0x1000, 0x10000, Some(0x9000)),
        Some(0x9000)
    );
    assert_eq!(
        l.find_gap(0x1000, 0x1000, 0x1000, 0x10000, Some(0x3000)),
        Some(0x2000)
    );
    assert_eq!(
        l.find_gap(0x1000, 0x1000, 0x1000, 0x10000, Some(0x9001)),
        Some(0x2000)
    );
    assert_eq!(l.find_gap(0, 0x1000, 0, 0x10000, None), None);
    // At the very top of the address space.
    assert_eq!(
        l.find_gap(0x1000, 0x1000, u64::MAX - 0x1fff, u64::MAX, None),
        Some(u64::MAX - 0x1fff)
    );
}

#[test]
fn clone_and_clear() {
    let mut l = RegionList::new(20);
    for i in 0..10 {
        l.insert(file(i * 0x3000, 0x1000, i)).unwrap();
    }
    let c = l.try_clone().unwrap();
    let mut n = 0;
    l.clear(|_| n += 1);
    assert_eq!(n, 10);
    assert!(l.is_empty());
    assert_eq!(c.len(), 10);
    c.check_invariants();
    l.check_invariants();
    l.insert(anon(0, 0x1000)).unwrap();
    assert_eq!(l.len(), 1);
}

#[derive(Debug, Clone)]
enum Op {
    Insert {
        page: u64,
        pages: u64,
    },
    Remove {
        page: u64,
        pages: u64,
    },
    Find {
        page: u64,
    },
    Gap {
        pages: u64,
        align_log: u8,
        lower: u64,
        hint: Option<u64>,
    },
    Clone,
    Clear,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u64..200, 1u64..8).prop_map(|(page, pages)| Op::Insert { page, pages }),
        2 => (0u64..200, 1u64..20).prop_map(|(page, pages)| Op::Remove { page, pages }),
        2 => (0u64..210).prop_map(|page| Op::Find { page }),
        2 => (1u64..10, 0u8..4, 0u64..200, proptest::option::of(0u64..200)).prop_map(|(pages, align_log, lower, hint)| Op::Gap { pages, align_log, lower, hint }),
        1 => Just(Op::Clone),
        1 => Just(Op::Clear),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Random operations against a shadow (a sorted vector of regions): same contents, same
    /// answers, invariants kept.
    #[test]
    fn shadow_model(ops in proptest::collection::vec(op(), 1..300)) {
        const P: u64 = 0x1000;
        let mut l: RegionList<u32> = RegionList::new(40);
        let mut shadow: Vec<Region<u32>> = Vec::new();
        for op in ops {
            match op {
                Op::Insert { page, pages } => {
                    let r = file(page * P, pages * P, page);
                    let overlap = shadow.iter().any(|s| s.start < r.end() && r.start < s.end());
                    let res = l.insert(r.clone());
                    if overlap {
                        prop_assert_eq!(res, Err(RegionError::Overlap));
                    } else if shadow.len() >= 40 {
                        prop_assert_eq!(res, Err(RegionError::TooManyRegions));
                    } else {
                        prop_assert_eq!(res, Ok(()));
                        shadow.push(r);
                        shadow.sort_by_key(|s| s.start);
                    }
                }
                Op::Remove { page, pages } => {
                    let (s, e) = (page * P, (page + pages) * P);
                    let mut next: Vec<Region<u32>> = Vec::new();
                    let mut removed: Vec<(u64, u64, Backing<u32>)> = Vec::new();
                    for r in &shadow {
                        if r.end() <= s || r.start >= e {
                            next.push(r.clone());
                            continue;
                        }
                        if r.start < s { next.push(r.slice(r.start, s)); }
                        if r.end() > e { next.push(r.slice(e, r.end())); }
                        let cut = r.slice(r.start.max(s), r.end().min(e));
                        removed.push((cut.start, cut.end(), cut.backing));
                    }
                    let mut got = Vec::new();
                    let res = l.remove_range(s, e - s, |r| got.push((r.start, r.end(), r.backing)));
                    if next.len() > 40 {
                        prop_assert_eq!(res, Err(RegionError::TooManyRegions));
                        prop_assert!(got.is_empty());
                    } else {
                        prop_assert_eq!(res, Ok(removed.len()));
                        prop_assert_eq!(got, removed);
                        next.sort_by_key(|r| r.start);
                        shadow = next;
                    }
                }
                Op::Find { page } => {
                    let a = page * P + 5;
                    let want = shadow.iter().find(|r| r.contains(a));
                    prop_assert_eq!(l.find(a), want);
                }
                Op::Gap { pages, align_log, lower, hint } => {
                    let (size, align, lower, upper) = (pages * P, P << align_log, lower * P, 220 * P);
                    let free = |s: u64| shadow.iter().all(|r| r.end() <= s || r.start >= s + size);
                    let ok = |s: u64| s % align == 0 && s >= lower && s + size <= upper && free(s);
                    let want = match hint.map(|h| h * P) {
                        Some(h) if ok(h) => Some(h),
                        _ => (0..upper / P).map(|p| p * P).find(|&s| ok(s)),
                    };
                    prop_assert_eq!(l.find_gap(size, align, lower, upper, hint.map(|h| h * P)), want);
                }
                Op::Clear => {
                    let mut got = Vec::new();
                    l.clear(|r| got.push(r));
                    prop_assert_eq!(&got, &shadow);
                    prop_assert!(l.is_empty() && l.is_small());
                    shadow.clear();
                }
                Op::Clone => {
                    let c = l.try_clone().unwrap();
                    c.check_invariants();
                    prop_assert_eq!(spans(&c), spans(&l));
                    l = c;
                }
            }
            l.check_invariants();
            let got: Vec<Region<u32>> = l.iter().cloned().collect();
            prop_assert_eq!(&got, &shadow);
        }
    }
}

/// The move from the inline layout to the tree at 17 regions and back at 8, through inserts,
/// a split of a full inline layout, removals, remove-all and clear, with the same answers in
/// both layouts.
#[test]
fn layouts_switch_both_ways_with_the_same_contents() {
    const P: u64 = 0x1000;
    let mut l: RegionList<u32> = RegionList::new(100);
    for i in 0..40u64 {
        l.insert(file(i * 4 * P, 2 * P, i)).unwrap();
        l.check_invariants();
        assert_eq!(l.is_small(), i < 16, "after {} regions", i + 1);
        assert_eq!(l.len() as u64, i + 1);
        for j in 0..=i {
            assert_eq!(l.find(j * 4 * P + 5).unwrap().start, j * 4 * P);
            assert!(l.find(j * 4 * P + 2 * P).is_none());
        }
        assert_eq!(l.find_gap(2 * P, P, 0, u64::MAX, None), Some(2 * P));
    }
    // Down to 9: still a tree; one more removal makes it small again.
    for i in (9..40u64).rev() {
        assert_eq!(l.remove_range(i * 4 * P, 2 * P, |_| {}), Ok(1));
        l.check_invariants();
        assert!(!l.is_small(), "tree at {i} regions");
    }
    assert_eq!(l.remove_range(8 * 4 * P, 2 * P, |_| {}), Ok(1));
    assert!(l.is_small());
    assert_eq!(
        spans(&l),
        (0..8)
            .map(|i| (i * 4 * P, i * 4 * P + 2 * P))
            .collect::<Vec<_>>()
    );
    // Fill the inline layout exactly, then split one region: the split needs a 17th.
    for i in 8..16u64 {
        l.insert(anon(i * 4 * P, 2 * P)).unwrap();
    }
    assert!(l.is_small() && l.len() == 16);
    let mut pieces = Vec::new();
    assert_eq!(
        l.remove_range(5 * 4 * P + 0x800, 0x400, |r| pieces.push((r.start, r.len))),
        Ok(1)
    );
    assert_eq!(pieces, [(5 * 4 * P + 0x800, 0x400)]);
    assert!(!l.is_small());
    assert_eq!(l.len(), 17);
    l.check_invariants();
    assert_eq!(
        l.find(5 * 4 * P + 0xc00)
            .unwrap()
            .file_offset(5 * 4 * P + 0xc00),
        Some(5 + 0xc00)
    );
    // Remove everything in one call: back to small and empty.
    let mut n = 0;
    assert_eq!(l.remove_range(0, u64::MAX / 2, |_| n += 1), Ok(17));
    assert_eq!(n, 17);
    assert!(l.is_empty() && l.is_small());
    l.check_invariants();
    // Clear from the tree, then from the inline layout, then reuse.
    for round in 0..if cfg!(miri) { 1 } else { 2 } {
        let count = if round == 0 { 30 } else { 5 };
        for i in 0..count {
            l.insert(anon(i * 2 * P, P)).unwrap();
        }
        let mut got = Vec::new();
        l.clear(|r| got.push(r.start));
        assert_eq!(got, (0..count).map(|i| i * 2 * P).collect::<Vec<_>>());
        assert!(l.is_empty() && l.is_small());
        l.check_invariants();
        l.clear(|_| panic!("nothing left to clear"));
        assert_eq!(l.len(), 0);
    }
    // The maximum holds in the inline layout too.
    let mut small: RegionList<u32> = RegionList::new(3);
    for i in 0..3 {
        small.insert(anon(i * 4 * P, 2 * P)).unwrap();
    }
    assert_eq!(
        small.insert(anon(100 * P, P)),
        Err(RegionError::TooManyRegions)
    );
    assert_eq!(
        small.remove_range(P / 2, P, |_| {}),
        Err(RegionError::TooManyRegions)
    );
}

/// xorshift64*: the large model test's fixed-seed generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The list against a `BTreeMap` keyed by start, with thousands of regions so that the tree
/// is four levels deep (three internal): inserts, removals of whole regions, heads, tails, holes and long spans
/// (merging nodes on several levels at once), lookups, gap searches and `next_from`, then
/// removal of nearly everything and growth again. Invariants are checked as it goes.
#[test]
fn btree_model_large() {
    use alloc::collections::BTreeMap;
    const P: u64 = 0x1000;
    // Miri runs a smaller tree (still three levels: 600 regions fill 38 leaves, more than an
    // internal node holds).
    let (n, ops, check_every) = if cfg!(miri) {
        (600, 150, 75)
    } else {
        (6000, 60_000, 997)
    };
    let space = n * 4; // pages
    let mut l: RegionList<u32> = RegionList::new(1 << 20);
    let mut m: BTreeMap<u64, Region<u32>> = BTreeMap::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut deepest = 0;
    // A region that ends at the very top of the address space.
    let top = anon(u64::MAX - 0x10_0000, 0x10_0000);
    l.insert(top.clone()).unwrap();
    m.insert(top.start, top);

    let covering = |m: &BTreeMap<u64, Region<u32>>, a: u64| {
        m.range(..=a)
            .next_back()
            .map(|(_, r)| r)
            .filter(|r| r.contains(a))
            .cloned()
    };
    let remove_model = |m: &mut BTreeMap<u64, Region<u32>>, s: u64, e: u64| {
        let mut cut = Vec::new();
        let first = m
            .range(..s)
            .next_back()
            .filter(|(_, r)| r.end() > s)
            .map(|(&k, _)| k);
        let keys: Vec<u64> = first
            .into_iter()
            .chain(m.range(s..e).map(|(&k, _)| k))
            .collect();
        for k in keys {
            let r = m.remove(&k).unwrap();
            if r.start < s {
                m.insert(r.start, r.slice(r.start, s));
            }
            if r.end() > e {
                m.insert(e, r.slice(e, r.end()));
            }
            let c = r.slice(r.start.max(s), r.end().min(e));
            cut.push((c.start, c.end(), c.backing));
        }
        cut
    };

    for round in 0..if cfg!(miri) { 1 } else { 2 } {
        // Every fourth page starts a region of one or two pages, in address order.
        for i in 0..n {
            let r = file(i * 4 * P, (1 + rng.below(2)) * P, i);
            if m.range(..r.end())
                .next_back()
                .is_none_or(|(_, o)| o.end() <= r.start)
            {
                l.insert(r.clone()).unwrap();
                m.insert(r.start, r);
            }
        }
        for step in 0..ops {
            let page = rng.below(space);
            let a = page * P + rng.below(P);
            match rng.below(16) {
                0..=3 => {
                    let r = file(page * P, (1 + rng.below(3)) * P, page);
                    let free = m
                        .range(..r.end())
                        .next_back()
                        .is_none_or(|(_, o)| o.end() <= r.start);
                    let res = l.insert(r.clone());
                    if free {
                        assert_eq!(res, Ok(()), "insert {:#x}", r.start);
                        m.insert(r.start, r);
                    } else {
                        assert_eq!(res, Err(RegionError::Overlap), "insert {:#x}", r.start);
                    }
                }
                4..=6 => {
                    // Mostly a page or two (heads, tails, holes, whole regions); sometimes a
                    // span over hundreds of regions.
                    let len = match rng.below(50) {
                        0 => rng.below(400 * P) + 1,
                        _ => rng.below(2 * P) + 1,
                    };
                    let want = remove_model(&mut m, a, a + len);
                    let mut got = Vec::new();
                    let res = l.remove_range(a, len, |r| got.push((r.start, r.end(), r.backing)));
                    assert_eq!(res, Ok(want.len()), "remove {a:#x}+{len:#x}");
                    assert_eq!(got, want, "pieces of {a:#x}+{len:#x}");
                }
                7..=10 => {
                    assert_eq!(l.find(a).cloned(), covering(&m, a), "find {a:#x}");
                    assert_eq!(l.find(u64::MAX), None);
                    assert_eq!(l.find(u64::MAX - 1).map(|r| r.end()), Some(u64::MAX));
                }
                11 => {
                    let want = m
                        .range(..=a)
                        .next_back()
                        .filter(|(_, r)| r.end() > a)
                        .or_else(|| m.range(a + 1..).next());
                    assert_eq!(l.next_from(a), want.map(|(_, r)| r), "next_from {a:#x}");
                }
                12 => {
                    if let Some(r) = l.find_mut(a) {
                        r.prot = Prot::EXEC;
                        m.range_mut(..=a).next_back().unwrap().1.prot = Prot::EXEC;
                    }
                }
                _ => {
                    let size = (1 + rng.below(4)) * P;
                    let align = P << rng.below(3);
                    let upper = if rng.below(4) == 0 {
                        (page + rng.below(64)) * P
                    } else {
                        u64::MAX / 2
                    };
                    // The lowest aligned start at or above `lower` whose range touches nothing:
                    // try each gap in order.
                    let mut want = None;
                    let mut from = m.range(..a).next_back().map_or(0, |(_, r)| r.end());
                    for r in m.range(a..).map(|(_, r)| r).map(Some).chain([None]) {
                        let to = r.map_or(u64::MAX, |r| r.start);
                        if let Some(s) = tree::fit(from, to, size, align, a, upper) {
                            want = Some(s);
                            break;
                        }
                        match r {
                            Some(r) => from = r.end(),
                            None => break,
                        }
                    }
                    assert_eq!(
                        l.find_gap(size, align, a, upper, None),
                        want,
                        "gap {size:#x} above {a:#x}"
                    );
                }
            }
            deepest = deepest.max(l.tree_height().unwrap_or(0));
            if step % check_every == 0 {
                l.check_invariants();
                assert!(l.iter().eq(m.values()), "contents after step {step}");
            }
        }
        l.check_invariants();
        assert!(l.iter().eq(m.values()), "contents after round {round}");
        assert_eq!(l.len(), m.len());
        // Remove all but a few, in ranges of random length: the tree shrinks level by level.
        while m.len() > 20 {
            let a = rng.below(space) * P;
            let len = rng.below(40 * P) + 1;
            let want = remove_model(&mut m, a, a + len);
            assert_eq!(l.remove_range(a, len, |_| {}), Ok(want.len()));
            if m.len() % if cfg!(miri) { 50 } else { 7 } == 0 {
                l.check_invariants();
            }
        }
        assert!(l.iter().eq(m.values()));
    }
    std::println!("deepest tree: {deepest} levels above the leaves");
    assert!(
        deepest >= if cfg!(miri) { 2 } else { 3 },
        "tree height {deepest}"
    );
    let c = l.try_clone().unwrap();
    c.check_invariants();
    assert!(c.iter().eq(m.values()));
}

/// The lowest fit of `size` at `align` in `[lower, upper)` among the gaps of the model (start
/// -> end), as [`RegionList::find_gap`] without a hint defines it.
fn model_gap(
    m: &alloc::collections::BTreeMap<u64, u64>,
    size: u64,
    align: u64,
    lower: u64,
    upper: u64,
) -> Option<u64> {
    let mut from = m.range(..lower).next_back().map_or(0, |(_, &e)| e);
    for (&s, &e) in m.range(lower..) {
        if let Some(at) = tree::fit(from, s, size, align, lower, upper) {
            return Some(at);
        }
        from = e;
    }
    tree::fit(from, u64::MAX, size, align, lower, upper)
}

/// The tree's fast paths against a `BTreeMap`, through every size threshold: the inline layout
/// and back (16 and 8 regions), a leaf (16), an internal node (32 children), and three levels,
/// growing to several thousand regions and shrinking to empty twice. Most changes are the
/// ones the fast paths take: a region taken out of the middle of a leaf and put back with
/// another length (which makes and then fills the largest gap of every node on its path, as
/// munmap then mmap at one place does), inserts into gaps, removal of whole regions; with
/// heads, tails and holes, lookups, and a gap search of a random size, alignment and bound
/// after every change (so a stale largest or second largest gap anywhere is seen).
#[test]
#[cfg_attr(
    miri,
    ignore = "tens of minutes under Miri, even at a tenth of the size; vmregions has no unsafe \
              code, and btree_model_large runs a three-level tree under Miri"
)]
fn fast_paths_against_a_model_through_every_size() {
    use alloc::collections::BTreeMap;
    const P: u64 = 0x1000;
    let check_every = 211;
    let mut l: RegionList<u32> = RegionList::new(1 << 20);
    let mut m: BTreeMap<u64, u64> = BTreeMap::new();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut deepest = 0;
    let mut step = 0u64;
    // Each phase moves the count towards its target: 40 (over the inline layout and a leaf),
    // 0, 700 (over an internal node), 5, 14000 (three levels), 0.
    for target in [40usize, 0, 700, 5, 14000, 0] {
        let space = (target.max(40) * 6) as u64; // pages: room for gaps of every size
                                                 // Towards the target, then 150 changes at about that size.
        let mut at_target = 0;
        while at_target < 150 || m.len() != target {
            if m.len() == target {
                at_target += 1;
            }
            step += 1;
            assert!(step < 200_000, "phase towards {target} does not end");
            let growing = m.len() < target;
            let page = rng.below(space);
            let insert_below = if growing { 8 } else { 4 };
            match rng.below(10) {
                // Churn: a region out of the middle and back in, with a new length.
                0..=2 if !m.is_empty() => {
                    let k = m.range(page * P..).next().or_else(|| m.iter().next());
                    let (&s, &e) = k.unwrap();
                    assert_eq!(l.remove_range(s, e - s, |_| {}), Ok(1));
                    m.remove(&s);
                    let next = m.range(s..).next().map_or(u64::MAX, |(&n, _)| n);
                    let len = (1 + rng.below(3)) * P;
                    if s + len <= next {
                        l.insert(anon(s, len)).unwrap();
                        m.insert(s, s + len);
                    } else {
                        l.insert(anon(s, e - s)).unwrap();
                        m.insert(s, e);
                    }
                }
                // Insert (more often while growing).
                x if x < insert_below => {
                    let (s, len) = (page * P, (1 + rng.below(3)) * P);
                    let free = m.range(..s + len).next_back().is_none_or(|(_, &e)| e <= s);
                    let res = l.insert(anon(s, len));
                    if free {
                        assert_eq!(res, Ok(()), "insert {s:#x} step {step}");
                        m.insert(s, s + len);
                    } else {
                        assert_eq!(res, Err(RegionError::Overlap), "insert {s:#x}");
                    }
                }
                // Remove: a whole region, or any range (heads, tails, holes, spans).
                _ => {
                    let (s, len) = match m.range(page * P..).next() {
                        Some((&s, &e)) if rng.below(2) == 0 => (s, e - s),
                        _ => (page * P + rng.below(P), rng.below(6 * P) + 1),
                    };
                    let end = s + len;
                    let mut want = 0;
                    let first = m.range(..s).next_back().filter(|(_, &e)| e > s);
                    let keys: Vec<u64> = first
                        .map(|(&k, _)| k)
                        .into_iter()
                        .chain(m.range(s..end).map(|(&k, _)| k))
                        .collect();
                    for k in keys {
                        let e = m.remove(&k).unwrap();
                        if k < s {
                            m.insert(k, s);
                        }
                        if e > end {
                            m.insert(end, e);
                        }
                        want += 1;
                    }
                    assert_eq!(
                        l.remove_range(s, len, |_| {}),
                        Ok(want),
                        "remove {s:#x}+{len:#x}"
                    );
                }
            }
            // A gap search after every change.
            let size = (1 + rng.below(8)) * P;
            let align = P << rng.below(3);
            let lower = rng.below(space) * P;
            let upper = if rng.below(4) == 0 {
                lower + rng.below(64) * P
            } else {
                u64::MAX / 2
            };
            assert_eq!(
                l.find_gap(size, align, lower, upper, None),
                model_gap(&m, size, align, lower, upper),
                "gap {size:#x} at {align:#x} in {lower:#x}..{upper:#x}, step {step}"
            );
            let a = rng.below(space) * P + rng.below(P);
            let want = m.range(..=a).next_back().filter(|(_, &e)| e > a);
            assert_eq!(
                l.find(a).map(|r| (r.start, r.end())),
                want.map(|(&s, &e)| (s, e)),
                "find {a:#x}"
            );
            deepest = deepest.max(l.tree_height().unwrap_or(0));
            if m.len() < 40 || step % check_every == 0 {
                l.check_invariants();
                assert!(
                    l.iter()
                        .map(|r| (r.start, r.end()))
                        .eq(m.iter().map(|(&s, &e)| (s, e))),
                    "contents at step {step}"
                );
            }
        }
        assert_eq!(l.len(), m.len(), "count after the phase towards {target}");
        l.check_invariants();
    }
    assert!(l.is_empty() && l.is_small());
    assert!(deepest >= 3, "tree height {deepest}");
}

/// A region unmapped from either end of a leaf and mapped again at the same place goes back to
/// a leaf with room (the one it left), so that repeating it splits and merges no leaf: the
/// tree keeps its leaves. (Put at the end of the previous leaf, a region taken from the front
/// of a leaf fills that leaf until it splits, while its own leaf empties until it merges.)
#[test]
fn remap_at_a_leaf_boundary_keeps_the_leaves() {
    const P: u64 = 0x1000;
    let mut l: RegionList<u32> = RegionList::new(1 << 20);
    // Filled in address order: full leaves.
    let n = 1000;
    for i in 0..n {
        l.insert(anon(i * 4 * P, P)).unwrap();
    }
    let leaves = l.tree_leaves().unwrap();
    assert_eq!(l.tree_height(), Some(2));
    // The first and the last region of each leaf, out and back in, many times over.
    let edges: Vec<u64> = (0..n)
        .filter(|i| i % 16 == 0 || i % 16 == 15)
        .map(|i| i * 4 * P)
        .collect();
    // (Two rounds under Miri: with the next test, 25 s there.)
    for round in 0..if cfg!(miri) { 2 } else { 20 } {
        for &s in &edges {
            assert_eq!(l.remove_range(s, 2 * P, |_| {}), Ok(1));
            l.insert(anon(s, (1 + round % 2) * P)).unwrap();
            assert_eq!(
                l.tree_leaves(),
                Some(leaves),
                "leaves after {s:#x} in round {round}"
            );
        }
        l.check_invariants();
    }
    assert_eq!(l.len(), n as usize);
}

/// An insert takes the path the previous insert or removal recorded only while no node was
/// added, freed or rebalanced since: here a hole punched in a full leaf splits it, moving the
/// leaves after it one place on in their parent, between a removal and the insert that puts
/// the region back (with a stale path, the insert would update another child's summary).
#[test]
fn an_insert_after_a_split_elsewhere_descends_again() {
    const P: u64 = 0x1000;
    let mut l: RegionList<u32> = RegionList::new(1 << 20);
    // Full leaves of regions of 3 pages every 4.
    for i in 0..1000 {
        l.insert(anon(i * 4 * P, 3 * P)).unwrap();
    }
    assert_eq!(l.tree_height(), Some(2));
    let leaves = l.tree_leaves().unwrap();
    // 63 leaves: 32 under the root's first child, 31 under its second. Region 5 of the leaf
    // at place 10 of the second out, a hole in region 5 of the leaf at place 3 of the second
    // (which splits that leaf and no internal node), the first region back in.
    let s = ((32 + 10) * 16 + 5) * 4 * P;
    assert_eq!(l.remove_range(s, 3 * P, |_| {}), Ok(1));
    let hole = ((32 + 3) * 16 + 5) * 4 * P + P;
    assert_eq!(l.remove_range(hole, P, |_| {}), Ok(1));
    assert_eq!(l.tree_leaves(), Some(leaves + 1), "the hole split a leaf");
    l.insert(anon(s, 3 * P)).unwrap();
    l.check_invariants();
    assert_eq!(l.len(), 1001);
    assert_eq!(l.find(s + P).map(|r| r.start), Some(s));
    // Every gap between regions is one page: the first of two pages is above the last.
    assert_eq!(
        l.find_gap(2 * P, P, 0, u64::MAX, None),
        Some(1000 * 4 * P - P)
    );
}

/// `Region::file_offset` of an address outside the region is `None`: below its start the
/// subtraction overflowed (a panic in debug builds, a wrapped offset in release), and past its
/// end an offset beyond the region's part of the file came back.
#[test]
fn file_offset_outside_the_region_is_none() {
    let r = file(0x8000, 0x2000, 0x1000);
    assert_eq!(r.file_offset(0x8000), Some(0x1000));
    assert_eq!(r.file_offset(0x9fff), Some(0x2fff));
    for addr in [0, 0x7fff, 0xa000, u64::MAX] {
        assert_eq!(r.file_offset(addr), None, "{addr:#x}");
    }
    assert_eq!(anon(0x8000, 0x2000).file_offset(0x8000), None);
    // A hand-built region the list would refuse: the offset does not wrap to a small one.
    assert_eq!(file(0x8000, 0x2000, u64::MAX).file_offset(0x8001), None);
}
