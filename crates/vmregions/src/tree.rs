//! The B+ tree behind [`crate::RegionList`] above the small layout's size.
//!
//! Regions sit in leaves of up to [`LEAF_CAP`], sorted, with their bounds in two arrays that
//! searches read (the regions themselves are touched only to be returned). Internal nodes hold,
//! for each of up to [`INNER_CAP`] children, the child's index, its first start (the search
//! key), its last end, and the largest gap between two regions inside it. The gap between two
//! adjacent children is `first[i] - last_end[i - 1]`, so a node knows every gap below it without
//! looking at its neighbours, and `find_gap` skips subtrees whose gaps are all too small.
//! Leaves are linked in address order for iteration.
//!
//! Invariants (checked by [`Tree::check_invariants`]): all leaves are at depth `height`; every
//! node but the root and the last of each level holds at least half its capacity (the root
//! leaf may be empty, a root internal node has at least two children; the last nodes are
//! exempt because appending past the last region splits a full node unevenly, keeping a tree
//! filled in address order dense); each child's stored summary equals the summary of
//! its subtree; regions are in address order without overlap. Nodes live in two arenas (vectors
//! indexed by `u32`) from the caller's allocator, with intrusive free lists, and every node an
//! operation may need is reserved before anything changes.
//!
//! Compared with a tree of one region per node, a lookup among 100 000 regions reads 4 nodes
//! instead of 17, each a few adjacent cache lines. Leaves keep each region in a fixed slot and
//! internal nodes keep their second largest gap (see `Inner::set_span`), so that an insert or a removal
//! inside a leaf moves a few words and updates the gaps on its path in constant time per level.

use crate::{Backing, Region, RegionError};
use allocator_api2::alloc::{Allocator, Global};
use allocator_api2::vec::Vec;
use core::ops::ControlFlow;

const NIL: u32 = u32::MAX;

/// Most regions in a leaf.
pub(crate) const LEAF_CAP: usize = 16;
/// Fewest regions in a leaf other than the root.
const LEAF_MIN: usize = LEAF_CAP / 2;
/// Most children of an internal node.
const INNER_CAP: usize = 32;
/// Fewest children of an internal node other than the root.
const INNER_MIN: usize = INNER_CAP / 2;
/// Most internal levels. With at least 8 children per internal node below the root and 8
/// regions per leaf, `u32::MAX` regions need 11.
const MAX_DEPTH: usize = 16;

/// What a parent knows of a child's subtree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Summary {
    /// Start of the subtree's first region.
    first: u64,
    /// End of the subtree's last region.
    last_end: u64,
    /// Largest gap between two consecutive regions of the subtree (0 with one region).
    gap: u64,
}

/// A leaf: the regions stay in the slot they were put in; the order is kept by `order`, so an
/// insert or a removal moves the 16 bytes of bounds of each later region and shifts one word,
/// never a region.
#[repr(C, align(64))]
struct Leaf<H> {
    /// `starts[..len]`: the regions' starts, ascending; the rest `u64::MAX`.
    starts: [u64; LEAF_CAP],
    /// `ends[..len]`: the regions' ends.
    ends: [u64; LEAF_CAP],
    /// Where in `regions` each region is: 4 bits per region in address order, the first in the
    /// lowest bits (so that an insert or a removal shifts one word).
    order: u64,
    len: u32,
    /// The next leaf in address order (NIL after the last); while free, the next free leaf.
    next: u32,
    /// Bit `s` is set if `regions[s]` holds a region: exactly the slots of `slot[..len]`.
    used: u32,
    /// The regions, in no order; the slots not in `used` are `None`.
    regions: [Option<Region<H>>; LEAF_CAP],
}

impl<H: Clone> Clone for Leaf<H> {
    fn clone(&self) -> Self {
        Leaf {
            regions: self.regions.clone(),
            ..*self
        }
    }
}

/// An internal node: the search keys, the children, and what it knows of each child's gaps.
#[repr(C, align(64))]
#[derive(Clone)]
struct Inner {
    /// `first[..len]`: each child's first start (the search keys; `first[0]` is not compared);
    /// the rest `u64::MAX`.
    first: [u64; INNER_CAP],
    child: [u32; INNER_CAP],
    /// Each child's last end.
    last_end: [u64; INNER_CAP],
    /// Each child's largest inner gap.
    gap: [u64; INNER_CAP],
    /// `span[i]`: the largest of `gap[i]` and the gap between child `i - 1` and child `i`
    /// (`gap[0]` for `i` = 0); 0 past `len`. The node's largest gap is the largest of these.
    span: [u64; INNER_CAP],
    len: u32,
    /// While free, the next free internal node.
    next_free: u32,
    /// The node's own largest gap (its summary's `gap`), kept so that a change below can
    /// often update it without looking at every child.
    max_gap: u64,
    /// The second largest `span` (equal to `max_gap` if two are the largest), when known: lets
    /// the largest shrink without a look at every child, as when a region goes into the gap
    /// that a removal just made the largest.
    second: Option<u64>,
}

/// How many of the ascending `keys` are at most `addr`, by a branch-free binary search (unused
/// slots hold `u64::MAX`, so only `addr == u64::MAX` counts them: the caller clamps).
#[inline]
fn rank<const N: usize>(keys: &[u64; N], addr: u64) -> usize {
    // `N` is a power of two. The count is in `base..=base + 2 * half` before each step.
    let mut base = 0;
    let mut half = N / 2;
    while half > 0 {
        base += if keys[base + half - 1] <= addr {
            half
        } else {
            0
        };
        half /= 2;
    }
    base + (keys[base] <= addr) as usize
}

/// The mask of the 4-bit fields below field `i` of a word.
#[inline]
fn below(i: usize) -> u64 {
    if i >= 16 {
        u64::MAX
    } else {
        (1 << (4 * i)) - 1
    }
}

/// `x << bits`, 0 from 64 bits on.
#[inline]
fn shl(x: u64, bits: usize) -> u64 {
    x.checked_shl(bits as u32).unwrap_or(0)
}

/// `x >> bits`, 0 from 64 bits on.
#[inline]
fn shr(x: u64, bits: usize) -> u64 {
    x.checked_shr(bits as u32).unwrap_or(0)
}

/// The largest and the second largest of `v` (equal if the largest occurs twice).
#[inline]
fn top_two(v: &[u64]) -> (u64, u64) {
    let (mut first, mut second) = (0, 0);
    for &x in v {
        second = second.max(first.min(x));
        first = first.max(x);
    }
    (first, second)
}

/// Largest `starts[i] - ends[i - 1]`, 0 if fewer than two.
#[inline]
fn largest_gap(starts: &[u64], ends: &[u64]) -> u64 {
    // By the position of the largest (a scalar loop: for the dozen gaps of a leaf, cheaper than
    // the vector code the compiler makes of a plain maximum without 64-bit vector compares).
    let mut at = 0;
    let mut largest = 0;
    for i in 1..starts.len().min(ends.len() + 1) {
        let g = starts[i] - ends[i - 1];
        if g > largest {
            largest = g;
            at = i;
        }
    }
    if at == 0 {
        0
    } else {
        starts[at] - ends[at - 1]
    }
}

/// A node as parallel columns of entries, for the moves that split, merge and balance nodes.
trait Columns {
    fn len(&self) -> usize;
    /// Makes `k` vacant slots at `at`, moving the entries from `at` up by `k`.
    fn open(&mut self, at: usize, k: usize);
    /// Removes the `k` vacant slots at `at`, moving the entries after them down.
    fn close(&mut self, at: usize, k: usize);
    /// Moves `src`'s entries `s..s + k` into this node's vacant slots `d..d + k`, leaving
    /// theirs vacant.
    fn fill(&mut self, d: usize, src: &mut Self, s: usize, k: usize);
}

/// Moves the first `k` entries of `right` to the end of `left`.
fn shift_to_left<N: Columns>(left: &mut N, right: &mut N, k: usize) {
    let a = left.len();
    left.open(a, k);
    left.fill(a, right, 0, k);
    right.close(0, k);
}

/// Moves the last `k` entries of `left` to the front of `right`.
fn shift_to_right<N: Columns>(left: &mut N, right: &mut N, k: usize) {
    let a = left.len();
    right.open(0, k);
    right.fill(0, left, a - k, k);
    left.close(a - k, k);
}

impl<H> Columns for Leaf<H> {
    fn len(&self) -> usize {
        self.len as usize
    }

    fn open(&mut self, at: usize, k: usize) {
        let n = self.len();
        self.starts.copy_within(at..n, at + k);
        self.ends.copy_within(at..n, at + k);
        let low = self.order & below(at);
        self.order = low | shl(self.order & !below(at), 4 * k);
        self.len += k as u32;
    }

    fn close(&mut self, at: usize, k: usize) {
        let n = self.len();
        self.starts.copy_within(at + k..n, at);
        self.starts[n - k..n].fill(u64::MAX);
        self.ends.copy_within(at + k..n, at);
        let low = self.order & below(at);
        self.order = low | (shr(self.order, 4 * k) & !below(at));
        self.len -= k as u32;
    }

    fn fill(&mut self, d: usize, src: &mut Self, s: usize, k: usize) {
        self.starts[d..d + k].copy_from_slice(&src.starts[s..s + k]);
        self.ends[d..d + k].copy_from_slice(&src.ends[s..s + k]);
        for j in 0..k {
            let r = src.take(s + j);
            self.put(d + j, r);
        }
    }
}

impl Columns for Inner {
    fn len(&self) -> usize {
        self.len as usize
    }

    fn open(&mut self, at: usize, k: usize) {
        let n = self.len();
        self.first.copy_within(at..n, at + k);
        self.child.copy_within(at..n, at + k);
        self.last_end.copy_within(at..n, at + k);
        self.gap.copy_within(at..n, at + k);
        self.len += k as u32;
    }

    fn close(&mut self, at: usize, k: usize) {
        let n = self.len();
        self.first.copy_within(at + k..n, at);
        self.first[n - k..n].fill(u64::MAX);
        self.child.copy_within(at + k..n, at);
        self.last_end.copy_within(at + k..n, at);
        self.gap.copy_within(at + k..n, at);
        self.len -= k as u32;
    }

    fn fill(&mut self, d: usize, src: &mut Self, s: usize, k: usize) {
        self.first[d..d + k].copy_from_slice(&src.first[s..s + k]);
        self.child[d..d + k].copy_from_slice(&src.child[s..s + k]);
        self.last_end[d..d + k].copy_from_slice(&src.last_end[s..s + k]);
        self.gap[d..d + k].copy_from_slice(&src.gap[s..s + k]);
    }
}

impl<H> Leaf<H> {
    fn new() -> Self {
        Leaf {
            starts: [u64::MAX; LEAF_CAP],
            ends: [0; LEAF_CAP],
            order: 0,
            len: 0,
            next: NIL,
            used: 0,
            regions: [const { None }; LEAF_CAP],
        }
    }

    /// The slot of the region at position `p` (below [`LEAF_CAP`]).
    #[inline]
    fn slot(&self, p: usize) -> usize {
        (self.order >> (4 * p % 64)) as usize & 0xf
    }

    /// Takes the region at position `p` out of its slot, which becomes free; position `p` is
    /// then vacant (for `close` or `put`).
    #[inline]
    fn take(&mut self, p: usize) -> Region<H> {
        let s = self.slot(p);
        self.used &= !(1 << s);
        self.regions[s % LEAF_CAP].take().expect("live region")
    }

    /// Puts `r` in a free slot for the vacant position `p`.
    #[inline]
    fn put(&mut self, p: usize, r: Region<H>) {
        let s = (!self.used).trailing_zeros() as usize;
        self.used |= 1 << s;
        self.order = self.order & !(0xf << (4 * p)) | (s as u64) << (4 * p);
        self.regions[s % LEAF_CAP] = Some(r);
    }

    /// How many regions start at or before `addr`.
    #[inline]
    fn rank(&self, addr: u64) -> usize {
        rank(&self.starts, addr).min(self.len())
    }

    #[inline]
    fn region(&self, p: usize) -> &Region<H> {
        self.regions[self.slot(p)].as_ref().expect("live region")
    }

    #[inline]
    fn region_mut(&mut self, p: usize) -> &mut Region<H> {
        self.regions[self.slot(p)].as_mut().expect("live region")
    }

    /// Of a leaf holding at least one region.
    fn summary(&self) -> Summary {
        let n = self.len();
        Summary {
            first: self.starts[0],
            last_end: self.ends[n - 1],
            gap: largest_gap(&self.starts[..n], &self.ends[..n]),
        }
    }

    /// Puts `r` at `p`; the leaf is not full.
    #[inline]
    fn insert(&mut self, p: usize, r: Region<H>) {
        let n = self.len();
        // One place up, in one loop over both columns: cheaper than two calls to `memmove`
        // for the few bounds of a leaf.
        let mut j = n;
        while j > p && j < LEAF_CAP {
            self.starts[j] = self.starts[j - 1];
            self.ends[j] = self.ends[j - 1];
            j -= 1;
        }
        let low = self.order & below(p);
        self.order = low | shl(self.order & !below(p), 4);
        self.len += 1;
        self.starts[p] = r.start;
        self.ends[p] = r.end();
        self.put(p, r);
    }

    #[inline]
    fn remove(&mut self, p: usize) -> Region<H> {
        let r = self.take(p);
        let n = self.len();
        for j in p..n - 1 {
            self.starts[j] = self.starts[j + 1];
            self.ends[j] = self.ends[j + 1];
        }
        self.starts[n - 1] = u64::MAX;
        let low = self.order & below(p);
        self.order = low | (shr(self.order, 4) & !below(p));
        self.len -= 1;
        r
    }
}

impl Inner {
    fn new() -> Self {
        Inner {
            first: [u64::MAX; INNER_CAP],
            child: [NIL; INNER_CAP],
            last_end: [0; INNER_CAP],
            gap: [0; INNER_CAP],
            span: [0; INNER_CAP],
            len: 0,
            next_free: NIL,
            max_gap: 0,
            second: Some(0),
        }
    }

    /// Which child's subtree holds the last region starting at or before `addr` (0 if none).
    #[inline]
    fn rank(&self, addr: u64) -> usize {
        // `first[0]` counts always: the count is the child's index plus one.
        (rank(&self.first, addr).max(1) - 1).min(self.len() - 1)
    }

    /// Recomputes `span` and `max_gap` after children were added, removed or moved; returns
    /// the summary.
    fn refresh(&mut self) -> Summary {
        let n = self.len();
        for i in 0..INNER_CAP {
            self.span[i] = match i {
                0 => self.gap[0],
                i if i < n => self.gap[i].max(self.first[i] - self.last_end[i - 1]),
                _ => 0,
            };
        }
        self.rescan();
        self.cached()
    }

    /// Sets `max_gap` and `second` from the spans.
    #[inline]
    fn rescan(&mut self) {
        let (first, second) = top_two(&self.span);
        self.max_gap = first;
        self.second = Some(second);
    }

    /// The summary from the stored `max_gap`.
    #[inline]
    fn cached(&self) -> Summary {
        Summary {
            first: self.first[0],
            last_end: self.last_end[self.len() - 1],
            gap: self.max_gap,
        }
    }

    /// The summary computed from the children's.
    fn summary(&self) -> Summary {
        let n = self.len();
        let mut gap = self.gap[0];
        for ((&g, &f), &e) in self.gap[1..n]
            .iter()
            .zip(&self.first[1..n])
            .zip(&self.last_end[..n - 1])
        {
            gap = gap.max(g).max(f - e);
        }
        Summary {
            first: self.first[0],
            last_end: self.last_end[n - 1],
            gap,
        }
    }

    /// Sets `span[i]`, keeping `max_gap` and `second` (looking at every span only if the
    /// largest shrank below a second largest that is not known).
    #[inline(always)]
    fn set_span(&mut self, i: usize, span: u64) {
        let old_span = self.span[i];
        if old_span == span {
            return;
        }
        self.span[i] = span;
        let old = self.max_gap;
        if span >= old {
            // The largest grew (or another became the largest: the old one is second).
            if old_span < old {
                self.second = Some(old);
            }
            self.max_gap = span;
        } else if old_span == old {
            // The largest shrank: the second largest, or this one, is the largest now.
            match self.second {
                Some(second) if span >= second => self.max_gap = span,
                Some(second) => {
                    self.max_gap = second;
                    self.second = None;
                }
                None => self.rescan(),
            }
        } else if let Some(second) = self.second {
            // Neither was the largest: the second largest may have changed.
            if span >= second {
                self.second = Some(span);
            } else if old_span == second {
                self.second = None;
            }
        }
    }

    /// Stores child `i`'s new summary in a node otherwise unchanged, keeping the spans,
    /// `max_gap` and `second`.
    #[inline]
    fn update(&mut self, i: usize, s: Summary) {
        self.first[i] = s.first;
        self.last_end[i] = s.last_end;
        self.gap[i] = s.gap;
        let span = if i > 0 {
            s.gap.max(s.first - self.last_end[i - 1])
        } else {
            s.gap
        };
        self.set_span(i, span);
        if i + 1 < self.len() {
            let next = self.gap[i + 1].max(self.first[i + 1] - s.last_end);
            self.set_span(i + 1, next);
        }
    }

    fn stored(&self, i: usize) -> Summary {
        Summary {
            first: self.first[i],
            last_end: self.last_end[i],
            gap: self.gap[i],
        }
    }

    /// Stores child `i`'s summary and the spans it enters.
    fn set(&mut self, i: usize, s: Summary) {
        self.first[i] = s.first;
        self.last_end[i] = s.last_end;
        self.gap[i] = s.gap;
        // (Saturating: while children are being moved, a neighbour slot may hold an entry that
        // `refresh` is about to recompute.)
        self.span[i] = if i > 0 {
            s.gap.max(s.first.saturating_sub(self.last_end[i - 1]))
        } else {
            s.gap
        };
        if i + 1 < self.len() {
            self.span[i + 1] = self.gap[i + 1].max(self.first[i + 1].saturating_sub(s.last_end));
        }
    }

    /// Puts `child` with summary `s` at `i`; the node is not full.
    fn insert(&mut self, i: usize, child: u32, s: Summary) {
        self.open(i, 1);
        self.child[i] = child;
        self.set(i, s);
    }
}

/// Two distinct elements of `v`, mutably.
fn two<T>(v: &mut [T], i: u32, j: u32) -> (&mut T, &mut T) {
    let (i, j) = (i as usize, j as usize);
    assert_ne!(i, j, "two borrows of one node");
    if i < j {
        let (a, b) = v.split_at_mut(j);
        (&mut a[i], &mut b[0])
    } else {
        let (a, b) = v.split_at_mut(i);
        (&mut b[0], &mut a[j])
    }
}

/// The internal nodes a descent went through and the child taken in each, root first.
#[derive(Clone, Copy)]
struct Path {
    node: [u32; MAX_DEPTH],
    pos: [u8; MAX_DEPTH],
}

impl Path {
    fn new() -> Self {
        Path {
            node: [0; MAX_DEPTH],
            pos: [0; MAX_DEPTH],
        }
    }
}

/// Regions ordered by address in a B+ tree. See the module documentation.
pub(crate) struct Tree<H, A: Allocator + Clone = Global> {
    leaves: Vec<Leaf<H>, A>,
    inners: Vec<Inner, A>,
    free_leaf: u32,
    free_leaves: usize,
    free_inner: u32,
    free_inners: usize,
    /// A leaf if `height` is 0, else an internal node; NIL before the first insert.
    root: u32,
    /// Internal levels above the leaves.
    height: usize,
    len: usize,
    max: usize,
    /// Counts the changes that move children between nodes or free or allocate one (splits,
    /// merges, balancing, a new or an old root, `clear`): a recorded path is still the path to
    /// its leaf while this is unchanged.
    shape: u64,
    /// The path to `finger_leaf` as the last insert or whole-region removal left it, valid
    /// while `shape` is `finger_shape`: an insert where that leaf still holds the place (an
    /// `mmap` back where a `munmap` just was, or after the previous `mmap`) takes it instead of
    /// descending.
    finger: Path,
    finger_leaf: u32,
    finger_shape: u64,
}

impl<H: core::fmt::Debug + Clone, A: Allocator + Clone> core::fmt::Debug for Tree<H, A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<H: Clone, A: Allocator + Clone> Tree<H, A> {
    /// An empty list holding at most `max_regions` (at most `u32::MAX - 1`), with nodes from
    /// `alloc`. Allocates nothing until the first insert.
    pub(crate) fn new_in(max_regions: usize, alloc: A) -> Self {
        Tree {
            leaves: Vec::new_in(alloc.clone()),
            inners: Vec::new_in(alloc),
            free_leaf: NIL,
            free_leaves: 0,
            free_inner: NIL,
            free_inners: 0,
            root: NIL,
            height: 0,
            len: 0,
            max: max_regions.min(NIL as usize - 1),
            shape: 0,
            finger: Path::new(),
            finger_leaf: NIL,
            finger_shape: 0,
        }
    }

    /// A tree of the regions `fill` hands over (in address order, at most [`LEAF_CAP`]), with
    /// room reserved for one more insert; `OutOfMemory` before `fill` is called if the nodes
    /// cannot be had.
    pub(crate) fn with_regions(
        max_regions: usize,
        alloc: A,
        fill: impl FnOnce(&mut dyn FnMut(Region<H>)),
    ) -> Result<Self, RegionError> {
        let mut t = Tree::new_in(max_regions, alloc);
        // The root leaf, and a leaf and a new root for the first split.
        t.reserve_nodes(2, 1)?;
        let root = t.alloc_leaf();
        t.root = root;
        let (leaves, len) = (&mut t.leaves, &mut t.len);
        fill(&mut |r: Region<H>| {
            let leaf = &mut leaves[root as usize];
            let n = leaf.len();
            assert!(
                n < LEAF_CAP && (n == 0 || leaf.ends[n - 1] <= r.start),
                "regions in order, at most a leaf of them"
            );
            leaf.insert(n, r);
            *len += 1;
        });
        Ok(t)
    }

    /// Number of regions.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    pub(crate) fn height(&self) -> usize {
        self.height
    }

    /// Leaves in use.
    #[cfg(test)]
    pub(crate) fn leaf_count(&self) -> usize {
        self.leaves.len() - self.free_leaves
    }

    // ---- node memory ----

    /// Makes sure `leaves` leaves and `inners` internal nodes can be had without allocating.
    fn reserve_nodes(&mut self, leaves: usize, inners: usize) -> Result<(), RegionError> {
        self.leaves
            .try_reserve(leaves.saturating_sub(self.free_leaves))
            .map_err(|_| RegionError::OutOfMemory)?;
        self.inners
            .try_reserve(inners.saturating_sub(self.free_inners))
            .map_err(|_| RegionError::OutOfMemory)
    }

    /// Room for one insert: a leaf split that splits every internal node up to a new root.
    fn reserve_insert(&mut self) -> Result<(), RegionError> {
        self.reserve_nodes(1, self.height + 1)
    }

    /// An empty leaf, from the free list or reserved capacity.
    fn alloc_leaf(&mut self) -> u32 {
        self.shape += 1;
        if self.free_leaf != NIL {
            let i = self.free_leaf;
            let leaf = &mut self.leaves[i as usize];
            self.free_leaf = leaf.next;
            self.free_leaves -= 1;
            leaf.next = NIL;
            debug_assert_eq!(leaf.len, 0);
            return i;
        }
        debug_assert!(self.leaves.len() < self.leaves.capacity(), "leaf reserved");
        self.leaves.push(Leaf::new());
        (self.leaves.len() - 1) as u32
    }

    fn alloc_inner(&mut self) -> u32 {
        self.shape += 1;
        if self.free_inner != NIL {
            let i = self.free_inner;
            let node = &mut self.inners[i as usize];
            self.free_inner = node.next_free;
            self.free_inners -= 1;
            node.len = 0;
            return i;
        }
        debug_assert!(self.inners.len() < self.inners.capacity(), "node reserved");
        self.inners.push(Inner::new());
        (self.inners.len() - 1) as u32
    }

    /// Frees an empty leaf.
    fn free_leaf(&mut self, i: u32) {
        self.shape += 1;
        let leaf = &mut self.leaves[i as usize];
        debug_assert_eq!(leaf.len, 0);
        leaf.next = self.free_leaf;
        self.free_leaf = i;
        self.free_leaves += 1;
    }

    fn free_inner(&mut self, i: u32) {
        self.shape += 1;
        let node = &mut self.inners[i as usize];
        node.len = 0;
        node.next_free = self.free_inner;
        self.free_inner = i;
        self.free_inners += 1;
    }

    // ---- searches ----

    /// Descends towards `addr`: the leaf that holds the last region starting at or before
    /// `addr` (the first leaf if there is none), the path to it, and the number of its regions
    /// starting at or before `addr`. None if there is no root yet.
    #[inline]
    fn locate(&self, addr: u64, path: &mut Path) -> Option<(u32, usize)> {
        if self.root == NIL {
            return None;
        }
        // No region starts at the last address (none is empty or wraps), so searching for the
        // one before it counts the same regions; below it the unused key slots (`u64::MAX`) never
        // count, so the counts need no clamp to the node's length (a load and a compare per
        // level).
        let key = addr.min(u64::MAX - 1);
        let mut t = self.root;
        for d in 0..self.height {
            let n = &self.inners[t as usize];
            // `first[0]` counts unless `key` is below every region.
            let i = rank(&n.first, key).saturating_sub(1) % INNER_CAP;
            path.node[d % MAX_DEPTH] = t;
            path.pos[d % MAX_DEPTH] = i as u8;
            t = n.child[i];
        }
        let p = rank(&self.leaves[t as usize].starts, key);
        Some((t, p))
    }

    /// Turns the path to a leaf into the path to the next leaf (there is one).
    fn path_to_next(&self, path: &mut Path) {
        let mut d = self.height;
        while d > 0 {
            d -= 1;
            let n = &self.inners[path.node[d] as usize];
            if (path.pos[d] as usize) + 1 < n.len() {
                path.pos[d] += 1;
                for e in d + 1..self.height {
                    let above = &self.inners[path.node[e - 1] as usize];
                    path.node[e] = above.child[path.pos[e - 1] as usize];
                    path.pos[e] = 0;
                }
                return;
            }
        }
        unreachable!("no next leaf");
    }

    /// The leaf at the end of `path`.
    fn leaf_at(&self, path: &Path) -> u32 {
        if self.height == 0 {
            return self.root;
        }
        let d = self.height - 1;
        self.inners[path.node[d] as usize].child[path.pos[d] as usize]
    }

    /// Records `path` to `leaf`, taken when the shape was `shape` (so that a change of shape
    /// since leaves it unused).
    #[inline]
    fn set_finger(&mut self, path: &Path, leaf: u32, shape: u64) {
        self.finger = *path;
        self.finger_leaf = leaf;
        self.finger_shape = shape;
    }

    /// As [`locate`](Self::locate), from the recorded path when its leaf still holds the last
    /// region starting at or before `addr` (`addr` below `u64::MAX`).
    #[inline]
    fn locate_near(&self, addr: u64, path: &mut Path) -> Option<(u32, usize)> {
        let f = self.finger_leaf;
        if f != NIL && self.finger_shape == self.shape {
            let l = &self.leaves[f as usize];
            // Every leaf but an empty root holds a region; the regions from this leaf's first
            // to the next leaf's first are where a descent to `addr` leads.
            if l.len > 0
                && l.starts[0] <= addr
                && (l.next == NIL || self.leaves[l.next as usize].starts[0] > addr)
            {
                *path = self.finger;
                let p = rank(&l.starts, addr);
                #[cfg(debug_assertions)]
                {
                    let mut descent = Path::new();
                    assert_eq!(self.locate(addr, &mut descent), Some((f, p)), "finger leaf");
                    assert!(
                        descent.node[..self.height] == path.node[..self.height]
                            && descent.pos[..self.height] == path.pos[..self.height],
                        "finger path"
                    );
                }
                return Some((f, p));
            }
        }
        self.locate(addr, path)
    }

    /// The region ending after `addr` with the smallest start (the one containing `addr`, or
    /// the next one): its leaf and index there, with the path to the leaf in `path`.
    #[inline(always)]
    fn first_ending_after(&self, addr: u64, path: &mut Path) -> Option<(u32, usize)> {
        let (leaf, p) = self.locate(addr, path)?;
        let l = &self.leaves[leaf as usize];
        if p > 0 && l.ends[p - 1] > addr {
            return Some((leaf, p - 1));
        }
        if p < l.len() {
            return Some((leaf, p));
        }
        // The first region of the next leaf.
        let next = self.leaves[leaf as usize].next;
        if next == NIL {
            return None;
        }
        let (leaf, p) = self.locate(self.leaves[next as usize].starts[0], path)?;
        Some((leaf, p - 1))
    }

    pub(crate) fn overlaps(&self, start: u64, end: u64) -> bool {
        self.first_ending_after(start, &mut Path::new())
            .is_some_and(|(leaf, p)| self.leaves[leaf as usize].starts[p] < end)
    }

    /// The root's summary; the tree is not empty.
    fn root_summary(&self) -> Summary {
        if self.height == 0 {
            self.leaves[self.root as usize].summary()
        } else {
            self.inners[self.root as usize].cached()
        }
    }

    // ---- changes ----

    /// Puts `r` at index `p` of `leaf` (reached by `path`), splitting full nodes up to the
    /// root, and brings the summaries up to date. Nodes reserved if `leaf` is full, `r` known to
    /// fit there.
    #[inline]
    fn insert_at(&mut self, path: &Path, leaf: u32, p: usize, r: Region<H>) {
        let l = &mut self.leaves[leaf as usize];
        let n = l.len();
        if !(n < LEAF_CAP && p > 0 && p < n) {
            return self.insert_at_edge(path, leaf, p, r);
        }
        // Inside a leaf with room: its bounds stay, and its largest gap changes only if the one
        // the region went into was the largest.
        l.insert(p, r);
        self.len += 1;
        if self.height > 0 {
            let d = self.height - 1;
            let old = self.inners[path.node[d] as usize].gap[path.pos[d] as usize];
            if l.starts[p + 1] - l.ends[p - 1] >= old {
                let gap = largest_gap(&l.starts[..=n], &l.ends[..=n]);
                self.gap_changed(path, gap);
            }
        }
    }

    /// [`insert_at`](Self::insert_at) at either end of a leaf, or into a full one.
    #[inline(never)]
    fn insert_at_edge(&mut self, path: &Path, leaf: u32, p: usize, r: Region<H>) {
        self.len += 1;
        if self.leaves[leaf as usize].len() < LEAF_CAP {
            let l = &mut self.leaves[leaf as usize];
            l.insert(p, r);
            // The gap the region went into, and the two it left.
            let n = l.len();
            let before = if p > 0 && p + 1 < n {
                l.starts[p + 1] - l.ends[p - 1]
            } else {
                0
            };
            let left = if p > 0 {
                l.starts[p] - l.ends[p - 1]
            } else {
                0
            };
            let right = if p + 1 < n {
                l.starts[p + 1] - l.ends[p]
            } else {
                0
            };
            let sum = self.leaf_changed(path, leaf, before, left.max(right));
            self.propagate(path, sum);
            return;
        }
        // A new node to insert right of the one changed at the current level.
        let mut split;
        let mut sum;
        {
            let right = self.alloc_leaf();
            let (l, rl) = two(&mut self.leaves, leaf, right);
            // Appending after the last region (as sequential mmaps do) leaves the full leaf
            // full: the tree stays dense and shallow.
            let keep = if p == LEAF_CAP && l.next == NIL {
                LEAF_CAP
            } else {
                LEAF_CAP / 2
            };
            shift_to_right(l, rl, LEAF_CAP - keep);
            rl.next = l.next;
            l.next = right;
            if p <= keep && keep < LEAF_CAP {
                l.insert(p, r);
            } else {
                rl.insert(p - keep, r);
            }
            split = Some((right, rl.summary()));
            sum = self.leaves[leaf as usize].summary();
        }
        for d in (0..self.height).rev() {
            if split.is_none() {
                match self.child_changed(path, d, sum) {
                    Some(s) => {
                        sum = s;
                        continue;
                    }
                    None => return,
                }
            }
            let rightmost = self.rightmost(path, d);
            let (node, pos) = (path.node[d], path.pos[d] as usize);
            let n = &mut self.inners[node as usize];
            n.set(pos, sum);
            if let Some((child, cs)) = split {
                if n.len() < INNER_CAP {
                    n.insert(pos + 1, child, cs);
                    split = None;
                } else {
                    let right = self.alloc_inner();
                    let (l, rn) = two(&mut self.inners, node, right);
                    let keep = if pos + 1 == INNER_CAP && rightmost {
                        INNER_CAP
                    } else {
                        INNER_CAP / 2
                    };
                    shift_to_right(l, rn, INNER_CAP - keep);
                    if pos < keep && keep < INNER_CAP {
                        l.insert(pos + 1, child, cs);
                    } else {
                        rn.insert(pos + 1 - keep, child, cs);
                    }
                    split = Some((right, rn.refresh()));
                }
            }
            sum = self.inners[node as usize].refresh();
        }
        if let Some((child, cs)) = split {
            // The root split: a new root above both halves.
            assert!(self.height + 1 < MAX_DEPTH, "tree too deep");
            let old = self.root;
            let root = self.alloc_inner();
            let n = &mut self.inners[root as usize];
            n.insert(0, old, sum);
            n.insert(1, child, cs);
            n.refresh();
            self.root = root;
            self.height += 1;
        }
    }

    /// The summary of `leaf` (reached by `path`, holding a region) after a change that replaced
    /// gaps of which the largest was `before` by gaps of which the largest is `after`: from
    /// the parent's record of its largest gap unless that gap shrank.
    #[inline]
    fn leaf_changed(&self, path: &Path, leaf: u32, before: u64, after: u64) -> Summary {
        let l = &self.leaves[leaf as usize];
        if self.height == 0 {
            return l.summary();
        }
        let d = self.height - 1;
        let old = self.inners[path.node[d] as usize].gap[path.pos[d] as usize];
        let gap = if after >= old {
            after
        } else if before < old {
            old
        } else {
            l.summary().gap
        };
        Summary {
            first: l.starts[0],
            last_end: l.ends[l.len() - 1],
            gap,
        }
    }

    /// True if the node at depth `d` of `path` is the last of its level.
    fn rightmost(&self, path: &Path, d: usize) -> bool {
        (0..d).all(|e| path.pos[e] as usize + 1 == self.inners[path.node[e] as usize].len())
    }

    /// The child that `path` takes at depth `d` now has summary `s` (its node otherwise
    /// unchanged): stores it and returns the node's new summary, or None if nothing changed
    /// (so nothing above changes either). The node's largest gap is recomputed only when the
    /// gap that was largest shrank.
    #[inline]
    fn child_changed(&mut self, path: &Path, d: usize, s: Summary) -> Option<Summary> {
        let (node, pos) = (path.node[d], path.pos[d] as usize);
        let n = &mut self.inners[node as usize];
        if n.stored(pos) == s {
            return None;
        }
        let before = n.cached();
        n.update(pos, s);
        let after = n.cached();
        (after != before).then_some(after)
    }

    /// The leaf at the end of `path` has a new largest gap `gap` between its regions, its first
    /// start and last end unchanged: stores it in each node on the way up while that node's
    /// largest gap changes.
    /// Inlined into its two callers, an insert (where gaps shrink) and a removal (where they
    /// grow), so that each has branches the processor predicts.
    #[inline(always)]
    fn gap_changed(&mut self, path: &Path, mut gap: u64) {
        for d in (0..self.height).rev() {
            let pos = path.pos[d] as usize % INNER_CAP;
            let n = &mut self.inners[path.node[d] as usize];
            if n.gap[pos] == gap {
                return;
            }
            n.gap[pos] = gap;
            // The gap from the previous child, 0 for the first (without a branch: whether a
            // child is the first of its node is not predictable).
            let before = n.first[pos].wrapping_sub(n.last_end[pos.saturating_sub(1)]);
            let span = gap.max(before * (pos > 0) as u64);
            let old = n.max_gap;
            n.set_span(pos, span);
            if n.max_gap == old {
                return;
            }
            gap = n.max_gap;
        }
    }

    /// Brings the summaries on `path` up to date after the bounds of a region in `leaf`
    /// changed (and no region was added or removed).
    fn bounds_changed(&mut self, path: &Path, leaf: u32) {
        let sum = self.leaves[leaf as usize].summary();
        self.propagate(path, sum);
    }

    /// The leaf at the end of `path` now has summary `sum` (no node gained or lost a child):
    /// brings the summaries on the path up to date, up to the first that stays the same.
    #[inline(never)]
    fn propagate(&mut self, path: &Path, mut sum: Summary) {
        for d in (0..self.height).rev() {
            match self.child_changed(path, d, sum) {
                Some(s) => sum = s,
                None => return,
            }
        }
    }

    /// Removes the region at index `p` of `leaf` (reached by `path`), merging or balancing
    /// nodes left under half full, and brings the summaries up to date.
    #[inline]
    fn remove_at(&mut self, path: &Path, leaf: u32, p: usize) -> Region<H> {
        let l = &mut self.leaves[leaf as usize];
        let n = l.len() - 1;
        if !(n >= LEAF_MIN && p > 0 && p < n) {
            return self.remove_at_edge(path, leaf, p);
        }
        // Inside a leaf that stays at least half full: its bounds stay, and its gaps only grew.
        let r = l.remove(p);
        self.len -= 1;
        if self.height > 0 {
            let merged = l.starts[p] - l.ends[p - 1];
            let d = self.height - 1;
            if merged > self.inners[path.node[d] as usize].gap[path.pos[d] as usize] {
                self.gap_changed(path, merged);
            }
        }
        r
    }

    /// [`remove_at`](Self::remove_at) at either end of a leaf, or from a leaf left under half
    /// full.
    #[inline(never)]
    fn remove_at_edge(&mut self, path: &Path, leaf: u32, p: usize) -> Region<H> {
        self.len -= 1;
        let r = self.leaves[leaf as usize].remove(p);
        let l = &self.leaves[leaf as usize];
        if l.len() >= LEAF_MIN || self.height == 0 {
            // The two gaps around the region, and the one they became.
            let n = l.len();
            if n > 0 {
                let left = if p > 0 { r.start - l.ends[p - 1] } else { 0 };
                let right = if p < n { l.starts[p] - r.end() } else { 0 };
                let merged = if p > 0 && p < n {
                    l.starts[p] - l.ends[p - 1]
                } else {
                    0
                };
                let sum = self.leaf_changed(path, leaf, left.max(right), merged);
                self.propagate(path, sum);
            }
            return r;
        }
        self.rebalance_up(path);
        r
    }

    /// After a removal left the leaf at the end of `path` under half full: merges or balances
    /// it and each node above left under half full, and brings the summaries up to date.
    #[inline(never)]
    fn rebalance_up(&mut self, path: &Path) {
        let mut under = true;
        let mut sum = None;
        for d in (0..self.height).rev() {
            let (node, pos) = (path.node[d], path.pos[d] as usize);
            match sum {
                Some(s) if !under => match self.child_changed(path, d, s) {
                    Some(ns) => sum = Some(ns),
                    None => return,
                },
                _ => {
                    self.rebalance(node, pos, d + 1 == self.height);
                    sum = Some(self.inners[node as usize].refresh());
                }
            }
            under = self.inners[node as usize].len() < INNER_MIN;
        }
        if self.height > 0 && self.inners[self.root as usize].len() == 1 {
            // A root with one child: the child becomes the root.
            let old = self.root;
            self.root = self.inners[old as usize].child[0];
            self.free_inner(old);
            self.height -= 1;
        }
    }

    /// Child `pos` of `parent` is under half full: merges it with a neighbour if both fit in
    /// one node with room to spare (so the next insert does not split them again), else moves
    /// entries from the neighbour so both are at least half full.
    fn rebalance(&mut self, parent: u32, pos: usize, leaves: bool) {
        self.shape += 1;
        let n = &self.inners[parent as usize];
        let (li, ri) = if pos + 1 < n.len() {
            (pos, pos + 1)
        } else {
            (pos - 1, pos)
        };
        let (l, r) = (n.child[li], n.child[ri]);
        let (ls, rs) = if leaves {
            let (a, b) = two(&mut self.leaves, l, r);
            let merged = balance_pair(a, b, LEAF_CAP);
            if merged {
                a.next = b.next;
            }
            (a.summary(), (!merged).then(|| b.summary()))
        } else {
            let (a, b) = two(&mut self.inners, l, r);
            let merged = balance_pair(a, b, INNER_CAP);
            (a.refresh(), (!merged).then(|| b.refresh()))
        };
        let n = &mut self.inners[parent as usize];
        n.set(li, ls);
        match rs {
            Some(rs) => n.set(ri, rs),
            None => {
                n.close(ri, 1);
                if leaves {
                    self.free_leaf(r);
                } else {
                    self.free_inner(r);
                }
            }
        }
    }

    /// Adds a region. Refuses an empty or wrapping range (of addresses, or of file offsets for a
    /// file-backed region), overlap with an existing region, more than the maximum count, or no
    /// memory for the node.
    #[inline]
    pub(crate) fn insert(&mut self, region: Region<H>) -> Result<(), RegionError> {
        if region.len == 0 {
            return Err(RegionError::EmptyRange);
        }
        let end = region
            .start
            .checked_add(region.len)
            .ok_or(RegionError::AddressOverflow)?;
        if let Backing::File { offset, .. } = &region.backing {
            // So that `file_offset` and `slice` never wrap (a wrapped offset would alias the
            // file's start).
            offset
                .checked_add(region.len)
                .ok_or(RegionError::AddressOverflow)?;
        }
        let mut path = Path::new();
        let Some((mut leaf, mut p)) = self.locate_near(region.start, &mut path) else {
            // No root yet.
            if self.len >= self.max {
                return Err(RegionError::TooManyRegions);
            }
            self.reserve_nodes(1, 0)?;
            self.root = self.alloc_leaf();
            self.len = 1;
            self.leaves[self.root as usize].insert(0, region);
            return Ok(());
        };
        let l = &self.leaves[leaf as usize];
        let next = if p < l.len() {
            Some(l.starts[p])
        } else if l.next != NIL {
            Some(self.leaves[l.next as usize].starts[0])
        } else {
            None
        };
        if (p > 0 && l.ends[p - 1] > region.start) || next.is_some_and(|s| s < end) {
            return Err(RegionError::Overlap);
        }
        if self.len >= self.max {
            return Err(RegionError::TooManyRegions);
        }
        if p == l.len() && l.next != NIL && l.len > self.leaves[l.next as usize].len {
            // Between this leaf and the next, which holds fewer regions: at the front of that
            // one. Otherwise a region unmapped from the front of a leaf and mapped again would
            // go to the end of the previous leaf: repeated, one leaf fills and splits while its
            // neighbour empties and merges.
            leaf = l.next;
            p = 0;
            self.path_to_next(&mut path);
            debug_assert_eq!(self.leaf_at(&path), leaf);
        }
        if self.leaves[leaf as usize].len() == LEAF_CAP {
            // Only a full leaf splits: nodes for it and every node above.
            self.reserve_insert()?;
        }
        let shape = self.shape;
        self.insert_at(&path, leaf, p, region);
        self.set_finger(&path, leaf, shape);
        Ok(())
    }

    /// The region containing `addr`.
    #[inline]
    pub(crate) fn find(&self, addr: u64) -> Option<&Region<H>> {
        // No region contains the last address (none ends past it). Below it the unused slots
        // (`u64::MAX`) never count, so the searches need no clamp to the node's length, whose
        // word would be one more cache line per node.
        if self.len == 0 || addr == u64::MAX {
            return None;
        }
        let mut t = self.root;
        for _ in 0..self.height {
            let n = &self.inners[t as usize];
            // `first[0]` counts unless `addr` is below every region.
            t = n.child[rank(&n.first, addr).saturating_sub(1) % INNER_CAP];
        }
        let l = &self.leaves[t as usize];
        let p = rank(&l.starts, addr);
        if p == 0 {
            return None;
        }
        let r = l.region((p - 1) % LEAF_CAP);
        (addr - r.start < r.len).then_some(r)
    }

    /// The region containing `addr`, to change its protection or backing. Its start and length
    /// must not be changed (they key the tree); use [`remove_range`](Self::remove_range) and
    /// [`insert`](Self::insert) for that.
    pub(crate) fn find_mut(&mut self, addr: u64) -> Option<&mut Region<H>> {
        let (leaf, p) = self.locate(addr, &mut Path::new())?;
        let l = &mut self.leaves[leaf as usize];
        if p > 0 && l.ends[p - 1] > addr {
            Some(l.region_mut(p - 1))
        } else {
            None
        }
    }

    /// The first region that ends after `addr` (the one containing it, or the next one).
    pub(crate) fn next_from(&self, addr: u64) -> Option<&Region<H>> {
        let (leaf, p) = self.first_ending_after(addr, &mut Path::new())?;
        Some(self.leaves[leaf as usize].region(p))
    }

    /// The lowest address `s`, a multiple of `align` (a power of two), with `lower <= s` and
    /// `s + size <= upper`, such that `[s, s + size)` touches no region. If `hint` is such an
    /// address, it is returned instead. None if there is none (or `size` is 0).
    pub(crate) fn find_gap(
        &self,
        size: u64,
        align: u64,
        lower: u64,
        upper: u64,
        hint: Option<u64>,
    ) -> Option<u64> {
        if size == 0 || !align.is_power_of_two() {
            return None;
        }
        if let Some(h) = hint {
            if h % align == 0
                && h >= lower
                && h.checked_add(size).is_some_and(|e| e <= upper)
                && !self.overlaps(h, h + size)
            {
                return Some(h);
            }
        }
        if self.len == 0 {
            return fit(0, u64::MAX, size, align, lower, upper);
        }
        let all = self.root_summary();
        // Below the first region, between regions, above the last.
        if let Some(s) = fit(0, all.first, size, align, lower, upper) {
            return Some(s);
        }
        let gaps = Gaps {
            size,
            align,
            lower,
            upper,
        };
        match self.search_gap(self.root, 0, &gaps) {
            ControlFlow::Break(found) => found,
            ControlFlow::Continue(()) => fit(all.last_end, u64::MAX, size, align, lower, upper),
        }
    }

    /// The lowest fit among the gaps between the regions of subtree `t` at depth `depth`:
    /// `Break(Some)` if found, `Break(None)` once gaps start at or above `upper`.
    fn search_gap(&self, t: u32, depth: usize, g: &Gaps) -> ControlFlow<Option<u64>> {
        if depth == self.height {
            let l = &self.leaves[t as usize];
            // Gaps ending at or below `lower` cannot hold the range.
            for j in l.rank(g.lower).max(1)..l.len() {
                if let f @ ControlFlow::Break(_) = g.try_gap(l.ends[j - 1], l.starts[j]) {
                    return f;
                }
            }
            return ControlFlow::Continue(());
        }
        let n = &self.inners[t as usize];
        let from = n.rank(g.lower);
        for i in from..n.len() {
            if i > from {
                // Between child i - 1 and child i.
                if let f @ ControlFlow::Break(_) = g.try_gap(n.last_end[i - 1], n.first[i]) {
                    return f;
                }
            }
            if n.gap[i] >= g.size {
                if n.first[i] >= g.upper {
                    return ControlFlow::Break(None);
                }
                if let f @ ControlFlow::Break(_) = self.search_gap(n.child[i], depth + 1, g) {
                    return f;
                }
            }
        }
        ControlFlow::Continue(())
    }

    /// Removes `[start, start + len)` from the map: whole regions, heads, tails and holes
    /// (splitting a region in two). Each removed piece, with its file offset adjusted, goes to
    /// `on_removed` in address order. Parts of the range with no region are not an error.
    /// Returns the number of pieces removed.
    ///
    /// Refused with nothing changed (and `on_removed` never called) if the split would exceed the
    /// maximum region count or memory for a node runs out.
    #[inline]
    pub(crate) fn remove_range(
        &mut self,
        start: u64,
        len: u64,
        mut on_removed: impl FnMut(Region<H>),
    ) -> Result<usize, RegionError> {
        if len == 0 {
            return Err(RegionError::EmptyRange);
        }
        let end = start.checked_add(len).ok_or(RegionError::AddressOverflow)?;
        let mut path = Path::new();
        let Some((leaf, p)) = self.first_ending_after(start, &mut path) else {
            return Ok(0);
        };
        let l = &self.leaves[leaf as usize];
        let (rs, re) = (l.starts[p], l.ends[p]);
        if rs >= end {
            return Ok(0);
        }
        if start <= rs && re <= end && self.next_start(leaf, p).is_none_or(|s| s >= end) {
            // One whole region (the usual munmap): handed over as it is.
            let shape = self.shape;
            on_removed(self.remove_at(&path, leaf, p));
            self.set_finger(&path, leaf, shape);
            return Ok(1);
        }
        self.remove_pieces(path, leaf, p, start, end, &mut on_removed)
    }

    /// The start of the region after region `p` of `leaf`.
    #[inline]
    fn next_start(&self, leaf: u32, p: usize) -> Option<u64> {
        let l = &self.leaves[leaf as usize];
        if p + 1 < l.len() {
            Some(l.starts[p + 1])
        } else if l.next != NIL {
            Some(self.leaves[l.next as usize].starts[0])
        } else {
            None
        }
    }

    /// [`remove_range`](Self::remove_range) from region `p` of `leaf` (reached by `path`), the
    /// first region ending after `start`, which starts before `end`.
    #[inline(never)]
    fn remove_pieces(
        &mut self,
        mut path: Path,
        mut leaf: u32,
        mut p: usize,
        start: u64,
        end: u64,
        on_removed: &mut impl FnMut(Region<H>),
    ) -> Result<usize, RegionError> {
        let mut removed = 0;
        loop {
            let l = &self.leaves[leaf as usize];
            let (rs, re) = (l.starts[p], l.ends[p]);
            if rs >= end {
                break;
            }
            // Where the region after this one starts: if at or past `end`, this is the last.
            let next_start = self.next_start(leaf, p);
            removed += 1;
            if rs < start && re > end {
                // A hole: the region keeps its head, its tail becomes a region of its own.
                if self.len >= self.max {
                    return Err(RegionError::TooManyRegions);
                }
                self.reserve_insert()?;
                let l = &mut self.leaves[leaf as usize];
                let head = l.region(p).slice(rs, start);
                let r = core::mem::replace(l.region_mut(p), head);
                l.ends[p] = start;
                self.insert_at(&path, leaf, p + 1, r.slice(end, re));
                on_removed(r.slice(start, end));
                break;
            }
            if rs < start || re > end {
                // A head or a tail stays, in place.
                let (keep_from, keep_to) = if rs < start { (rs, start) } else { (end, re) };
                let l = &mut self.leaves[leaf as usize];
                let kept = l.region(p).slice(keep_from, keep_to);
                let r = core::mem::replace(l.region_mut(p), kept);
                (l.starts[p], l.ends[p]) = (keep_from, keep_to);
                self.bounds_changed(&path, leaf);
                on_removed(r.slice(rs.max(start), re.min(end)));
            } else {
                // The whole region: handed over as it is.
                let r = self.remove_at(&path, leaf, p);
                on_removed(r);
            }
            if re >= end || next_start.is_none_or(|s| s >= end) {
                break;
            }
            match self.first_ending_after(start, &mut path) {
                Some(at) => (leaf, p) = at,
                None => break,
            }
        }
        Ok(removed)
    }

    /// Removes every region, handing each to `on_removed` in address order, and frees the
    /// nodes.
    pub(crate) fn clear(&mut self, mut on_removed: impl FnMut(Region<H>)) {
        let mut leaf = self.first_leaf();
        while leaf != NIL {
            let l = &mut self.leaves[leaf as usize];
            for p in 0..l.len() {
                on_removed(l.take(p));
            }
            l.len = 0;
            leaf = l.next;
        }
        self.leaves.clear();
        self.inners.clear();
        self.free_leaf = NIL;
        self.free_leaves = 0;
        self.free_inner = NIL;
        self.free_inners = 0;
        self.root = NIL;
        self.height = 0;
        self.len = 0;
        self.shape += 1;
        self.finger_leaf = NIL;
    }

    /// The leftmost leaf (NIL if there is no root).
    fn first_leaf(&self) -> u32 {
        let mut t = self.root;
        if t == NIL {
            return NIL;
        }
        for _ in 0..self.height {
            t = self.inners[t as usize].child[0];
        }
        t
    }

    /// The regions in address order.
    pub(crate) fn iter(&self) -> Iter<'_, H, A> {
        Iter {
            tree: self,
            leaf: self.first_leaf(),
            p: 0,
        }
    }

    /// A copy (for `fork`), with nodes from the same allocator; `OutOfMemory` if they cannot be
    /// had.
    pub(crate) fn try_clone(&self) -> Result<Self, RegionError> {
        let mut leaves = Vec::new_in(self.leaves.allocator().clone());
        leaves
            .try_reserve_exact(self.leaves.len())
            .map_err(|_| RegionError::OutOfMemory)?;
        let mut inners = Vec::new_in(self.inners.allocator().clone());
        inners
            .try_reserve_exact(self.inners.len())
            .map_err(|_| RegionError::OutOfMemory)?;
        leaves.extend(self.leaves.iter().cloned());
        inners.extend(self.inners.iter().cloned());
        Ok(Tree {
            leaves,
            inners,
            ..*self
        })
    }

    /// Checks the tree's invariants (see the module documentation), the leaf links, the count
    /// and the free lists; panics on the first violation. For tests and fuzzing: O(n).
    #[doc(hidden)]
    pub(crate) fn check_invariants(&self) {
        assert!(self.len <= self.max, "over the maximum");
        if self.finger_leaf != NIL && self.finger_shape == self.shape {
            // A recorded path still in use leads to its leaf.
            let mut t = self.root;
            for d in 0..self.height {
                assert_eq!(self.finger.node[d], t, "recorded path at depth {d}");
                let n = &self.inners[t as usize];
                let pos = self.finger.pos[d] as usize;
                assert!(pos < n.len(), "recorded position {pos} at depth {d}");
                t = n.child[pos];
            }
            assert_eq!(t, self.finger_leaf, "recorded leaf");
        }
        let mut free = 0;
        let mut f = self.free_leaf;
        while f != NIL {
            assert_eq!(
                self.leaves[f as usize].len, 0,
                "free leaf {f} holds regions"
            );
            f = self.leaves[f as usize].next;
            free += 1;
        }
        assert_eq!(free, self.free_leaves, "free leaf count");
        let mut free = 0;
        let mut f = self.free_inner;
        while f != NIL {
            f = self.inners[f as usize].next_free;
            free += 1;
        }
        assert_eq!(free, self.free_inners, "free node count");
        if self.root == NIL {
            assert_eq!(self.len, 0, "regions without a root");
            return;
        }
        let mut walk = Walk {
            prev_end: 0,
            count: 0,
            prev_leaf: NIL,
            leaves: 0,
            inners: 0,
        };
        self.check_node(self.root, 0, true, &mut walk);
        assert_eq!(walk.count, self.len, "count");
        if walk.prev_leaf != NIL {
            assert_eq!(self.leaves[walk.prev_leaf as usize].next, NIL, "last leaf");
        }
        assert_eq!(
            walk.leaves + self.free_leaves,
            self.leaves.len(),
            "leaves lost"
        );
        assert_eq!(
            walk.inners + self.free_inners,
            self.inners.len(),
            "nodes lost"
        );
    }

    /// Checks subtree `t` at `depth` and returns its summary (None for an empty root leaf).
    fn check_node(&self, t: u32, depth: usize, rightmost: bool, w: &mut Walk) -> Option<Summary> {
        let is_root = depth == 0;
        if depth == self.height {
            let l = &self.leaves[t as usize];
            let n = l.len();
            assert!(n <= LEAF_CAP, "leaf {t} over capacity");
            assert!(
                is_root || rightmost || n >= LEAF_MIN,
                "leaf {t} under half full: {n}"
            );
            if w.prev_leaf != NIL {
                assert_eq!(self.leaves[w.prev_leaf as usize].next, t, "leaf links");
            }
            w.prev_leaf = t;
            w.leaves += 1;
            let mut used = 0u32;
            for i in 0..n {
                let s = l.slot(i);
                assert_eq!(used & 1 << s, 0, "leaf {t} slot {s} used twice");
                used |= 1 << s;
            }
            assert_eq!(used, l.used, "leaf {t} used slots");
            for (s, r) in l.regions.iter().enumerate() {
                assert_eq!(r.is_some(), used >> s & 1 == 1, "leaf {t} slot {s}");
            }
            for i in 0..n {
                let r = l.region(i);
                assert!(r.len > 0);
                assert_eq!(
                    (r.start, r.end()),
                    (l.starts[i], l.ends[i]),
                    "cached bounds"
                );
                assert!(
                    r.start >= w.prev_end,
                    "regions overlap or out of order at {:#x}",
                    r.start
                );
                w.prev_end = r.end();
            }
            w.count += n;
            return (n > 0).then(|| l.summary());
        }
        let node = &self.inners[t as usize];
        let n = node.len();
        assert!(n <= INNER_CAP, "node {t} over capacity");
        assert!(
            if is_root {
                n >= 2
            } else {
                rightmost || n >= INNER_MIN
            },
            "node {t} under half full: {n}"
        );
        w.inners += 1;
        for i in 0..n {
            let s = self
                .check_node(node.child[i], depth + 1, rightmost && i + 1 == n, w)
                .expect("only the root leaf is empty");
            assert_eq!(node.stored(i), s, "summary of child {i} of node {t}");
        }
        let s = node.summary();
        assert_eq!(node.max_gap, s.gap, "largest gap of node {t}");
        if let Some(second) = node.second {
            assert_eq!(second, top_two(&node.span).1, "second gap of node {t}");
        }
        for i in 0..INNER_CAP {
            let want = match i {
                0 => node.gap[0],
                i if i < n => node.gap[i].max(node.first[i] - node.last_end[i - 1]),
                _ => 0,
            };
            assert_eq!(node.span[i], want, "span {i} of node {t}");
        }
        Some(s)
    }
}

/// What `check_node` has seen so far, in address order.
struct Walk {
    prev_end: u64,
    count: usize,
    prev_leaf: u32,
    leaves: usize,
    inners: usize,
}

/// A gap search's request.
struct Gaps {
    size: u64,
    align: u64,
    lower: u64,
    upper: u64,
}

impl Gaps {
    /// Tries the gap `[from, to)`: `Break(Some)` if the request fits, `Break(None)` if the gap
    /// starts at or above `upper` (so do all later ones).
    #[inline]
    fn try_gap(&self, from: u64, to: u64) -> ControlFlow<Option<u64>> {
        if from >= self.upper {
            return ControlFlow::Break(None);
        }
        if to - from >= self.size && to > self.lower {
            if let Some(s) = fit(from, to, self.size, self.align, self.lower, self.upper) {
                return ControlFlow::Break(Some(s));
            }
        }
        ControlFlow::Continue(())
    }
}

/// The lowest aligned `s` in gap `[from, to)` with `lower <= s`, `s + size <= min(to, upper)`.
pub(crate) fn fit(
    from: u64,
    to: u64,
    size: u64,
    align: u64,
    lower: u64,
    upper: u64,
) -> Option<u64> {
    let lo = from.max(lower);
    let s = lo.checked_add(align - 1)? & !(align - 1);
    let e = s.checked_add(size)?;
    (e <= to.min(upper)).then_some(s)
}

/// Iterator over a [`Tree`] in address order.
pub(crate) struct Iter<'a, H, A: Allocator + Clone> {
    tree: &'a Tree<H, A>,
    leaf: u32,
    p: usize,
}

impl<H, A: Allocator + Clone> core::fmt::Debug for Iter<'_, H, A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Iter").finish_non_exhaustive()
    }
}

impl<'a, H: Clone, A: Allocator + Clone> Iterator for Iter<'a, H, A> {
    type Item = &'a Region<H>;

    fn next(&mut self) -> Option<&'a Region<H>> {
        while self.leaf != NIL {
            let l = &self.tree.leaves[self.leaf as usize];
            if self.p < l.len() {
                self.p += 1;
                return Some(l.region(self.p - 1));
            }
            self.leaf = l.next;
            self.p = 0;
        }
        None
    }
}

/// Moves entries between two adjacent nodes with capacity `cap`, one of them under half full:
/// all into `a` if they fit with room to spare (returns true), else evenly.
fn balance_pair<N: Columns>(a: &mut N, b: &mut N, cap: usize) -> bool {
    let (x, y) = (a.len(), b.len());
    if x + y < cap {
        shift_to_left(a, b, y);
        true
    } else {
        if x < y {
            shift_to_left(a, b, (y - x) / 2);
        } else {
            shift_to_right(a, b, (x - y) / 2);
        }
        false
    }
}
