//! The AVL tree behind [`crate::RegionList`] above the small layout's size, in an arena,
//! augmented with subtree gaps.

use crate::{Backing, Region, RegionError};
use allocator_api2::alloc::{Allocator, Global};
use allocator_api2::vec::Vec;

const NIL: u32 = u32::MAX;

struct Node<H> {
    /// The region; `None` while the slot is on the free-slot list.
    region: Option<Region<H>>,
    start: u64,
    end: u64,
    left: u32,
    right: u32,
    height: u8,
    /// Free bytes between the previous region's end (or 0) and this region's start.
    gap: u64,
    /// Largest `gap` in this subtree.
    max_gap: u64,
    /// Largest `start` in this subtree.
    max_start: u64,
}

impl<H: Clone> Clone for Node<H> {
    fn clone(&self) -> Self {
        Node {
            region: self.region.clone(),
            ..*self
        }
    }
}

impl<H> Node<H> {
    fn region(&self) -> &Region<H> {
        self.region.as_ref().expect("live node")
    }
}

/// Regions ordered by address in an AVL tree. See the crate documentation.
pub(crate) struct Tree<H, A: Allocator + Clone = Global> {
    nodes: Vec<Node<H>, A>,
    free_slots: Vec<u32, A>,
    root: u32,
    len: usize,
    max: usize,
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
            nodes: Vec::new_in(alloc.clone()),
            free_slots: Vec::new_in(alloc),
            root: NIL,
            len: 0,
            max: max_regions.min(NIL as usize - 1),
        }
    }

    /// Number of regions.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    // ---- node helpers ----

    fn n(&self, i: u32) -> &Node<H> {
        &self.nodes[i as usize]
    }

    fn nm(&mut self, i: u32) -> &mut Node<H> {
        &mut self.nodes[i as usize]
    }

    fn height(&self, i: u32) -> u8 {
        if i == NIL {
            0
        } else {
            self.n(i).height
        }
    }

    fn update(&mut self, i: u32) {
        let (l, r) = (self.n(i).left, self.n(i).right);
        let h = self.height(l).max(self.height(r)) + 1;
        let mut g = self.n(i).gap;
        let mut ms = self.n(i).start;
        if l != NIL {
            g = g.max(self.n(l).max_gap);
        }
        if r != NIL {
            g = g.max(self.n(r).max_gap);
            ms = self.n(r).max_start;
        }
        let node = self.nm(i);
        node.height = h;
        node.max_gap = g;
        node.max_start = ms;
    }

    fn rotate_right(&mut self, i: u32) -> u32 {
        let l = self.n(i).left;
        self.nm(i).left = self.n(l).right;
        self.nm(l).right = i;
        self.update(i);
        self.update(l);
        l
    }

    fn rotate_left(&mut self, i: u32) -> u32 {
        let r = self.n(i).right;
        self.nm(i).right = self.n(r).left;
        self.nm(r).left = i;
        self.update(i);
        self.update(r);
        r
    }

    fn balance(&mut self, i: u32) -> u32 {
        self.update(i);
        let (l, r) = (self.n(i).left, self.n(i).right);
        let bf = self.height(l) as i32 - self.height(r) as i32;
        if bf > 1 {
            if self.height(self.n(l).left) < self.height(self.n(l).right) {
                let nl = self.rotate_left(l);
                self.nm(i).left = nl;
            }
            return self.rotate_right(i);
        }
        if bf < -1 {
            if self.height(self.n(r).right) < self.height(self.n(r).left) {
                let nr = self.rotate_right(r);
                self.nm(i).right = nr;
            }
            return self.rotate_left(i);
        }
        i
    }

    fn insert_at(&mut self, t: u32, new: u32) -> u32 {
        if t == NIL {
            return new;
        }
        if self.n(new).start < self.n(t).start {
            let l = self.insert_at(self.n(t).left, new);
            self.nm(t).left = l;
        } else {
            let r = self.insert_at(self.n(t).right, new);
            self.nm(t).right = r;
        }
        self.balance(t)
    }

    /// Removes the minimum of subtree `t`: (new subtree root, removed node).
    fn remove_min(&mut self, t: u32) -> (u32, u32) {
        let l = self.n(t).left;
        if l == NIL {
            return (self.n(t).right, t);
        }
        let (nl, min) = self.remove_min(l);
        self.nm(t).left = nl;
        (self.balance(t), min)
    }

    /// Removes the node with `start` from subtree `t`: (new root, removed node or NIL).
    fn remove_at(&mut self, t: u32, start: u64) -> (u32, u32) {
        if t == NIL {
            return (NIL, NIL);
        }
        let s = self.n(t).start;
        if start < s {
            let (nl, gone) = self.remove_at(self.n(t).left, start);
            self.nm(t).left = nl;
            (self.balance(t), gone)
        } else if start > s {
            let (nr, gone) = self.remove_at(self.n(t).right, start);
            self.nm(t).right = nr;
            (self.balance(t), gone)
        } else {
            let (l, r) = (self.n(t).left, self.n(t).right);
            if r == NIL {
                return (l, t);
            }
            let (nr, min) = self.remove_min(r);
            self.nm(min).left = l;
            self.nm(min).right = nr;
            (self.balance(min), t)
        }
    }

    /// Sets the gap of the node with `start` and re-augments its path.
    fn set_gap_at(&mut self, t: u32, start: u64, gap: u64) {
        if t == NIL {
            return;
        }
        let s = self.n(t).start;
        if start < s {
            self.set_gap_at(self.n(t).left, start, gap);
        } else if start > s {
            self.set_gap_at(self.n(t).right, start, gap);
        } else {
            self.nm(t).gap = gap;
        }
        self.update(t);
    }

    /// The node whose region ends after `addr` with the smallest start (the first region at or
    /// after `addr`, or containing it).
    fn first_ending_after(&self, addr: u64) -> u32 {
        let mut t = self.root;
        let mut best = NIL;
        while t != NIL {
            let n = self.n(t);
            if n.end > addr {
                best = t;
                t = n.left;
            } else {
                t = n.right;
            }
        }
        best
    }

    /// The node with the largest start below `addr`.
    fn last_starting_before(&self, addr: u64) -> u32 {
        let mut t = self.root;
        let mut best = NIL;
        while t != NIL {
            let n = self.n(t);
            if n.start < addr {
                best = t;
                t = n.right;
            } else {
                t = n.left;
            }
        }
        best
    }

    fn prev_end(&self, start: u64) -> u64 {
        match self.last_starting_before(start) {
            NIL => 0,
            p => self.n(p).end,
        }
    }

    /// Makes sure `extra` more nodes can be created without allocating.
    pub(crate) fn reserve(&mut self, extra: usize) -> Result<(), RegionError> {
        let have_free = self.free_slots.len();
        let need_new = extra.saturating_sub(have_free);
        self.nodes
            .try_reserve(need_new)
            .map_err(|_| RegionError::OutOfMemory)?;
        // Every node may one day be freed: keep room to list all slots as free.
        let slots = self.nodes.len() + need_new;
        self.free_slots
            .try_reserve(slots.saturating_sub(self.free_slots.len()))
            .map_err(|_| RegionError::OutOfMemory)?;
        Ok(())
    }

    /// Adds a region whose place is known to be free; capacity already reserved.
    pub(crate) fn link(&mut self, r: Region<H>) {
        let (start, end) = (r.start, r.end());
        let gap = start - self.prev_end(start);
        let node = Node {
            region: Some(r),
            start,
            end,
            left: NIL,
            right: NIL,
            height: 1,
            gap,
            max_gap: gap,
            max_start: start,
        };
        let i = match self.free_slots.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        self.root = self.insert_at(self.root, i);
        self.len += 1;
        let next = self.first_ending_after(end);
        if next != NIL {
            let ns = self.n(next).start;
            self.set_gap_at(self.root, ns, ns - end);
        }
    }

    /// Removes the region starting at `start` (which exists) and returns it.
    fn unlink(&mut self, start: u64) -> Region<H> {
        let (root, gone) = self.remove_at(self.root, start);
        debug_assert_ne!(gone, NIL);
        self.root = root;
        self.len -= 1;
        let region = self.nm(gone).region.take().expect("live node");
        self.free_slots.push(gone);
        let next = self.first_ending_after(region.end());
        if next != NIL {
            let ns = self.n(next).start;
            let gap = ns - self.prev_end(ns);
            self.set_gap_at(self.root, ns, gap);
        }
        region
    }

    pub(crate) fn overlaps(&self, start: u64, end: u64) -> bool {
        let n = self.first_ending_after(start);
        n != NIL && self.n(n).start < end
    }

    /// Adds a region. Refuses an empty or wrapping range (of addresses, or of file offsets for a
    /// file-backed region), overlap with an existing region, more than the maximum count, or no
    /// memory for the node.
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
        if self.overlaps(region.start, end) {
            return Err(RegionError::Overlap);
        }
        if self.len >= self.max {
            return Err(RegionError::TooManyRegions);
        }
        self.reserve(1)?;
        self.link(region);
        Ok(())
    }

    /// The region containing `addr`.
    pub(crate) fn find(&self, addr: u64) -> Option<&Region<H>> {
        let n = self.first_ending_after(addr);
        if n != NIL && self.n(n).start <= addr {
            Some(self.n(n).region())
        } else {
            None
        }
    }

    /// The region containing `addr`, to change its protection or backing. Its start and length
    /// must not be changed (they key the tree); use [`remove_range`](Self::remove_range) and
    /// [`insert`](Self::insert) for that.
    pub(crate) fn find_mut(&mut self, addr: u64) -> Option<&mut Region<H>> {
        let n = self.first_ending_after(addr);
        if n != NIL && self.n(n).start <= addr {
            self.nm(n).region.as_mut()
        } else {
            None
        }
    }

    /// The first region that ends after `addr` (the one containing it, or the next one).
    pub(crate) fn next_from(&self, addr: u64) -> Option<&Region<H>> {
        match self.first_ending_after(addr) {
            NIL => None,
            n => Some(self.n(n).region()),
        }
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
        if let Some(s) = self.search_gap(self.root, size, align, lower, upper) {
            return Some(s);
        }
        // After the last region.
        let last_end = match self.last_starting_before(u64::MAX) {
            NIL => 0,
            n => self.n(n).end,
        };
        fit(last_end, u64::MAX, size, align, lower, upper)
    }

    fn search_gap(&self, t: u32, size: u64, align: u64, lower: u64, upper: u64) -> Option<u64> {
        if t == NIL {
            return None;
        }
        let n = self.n(t);
        // No gap here is big enough, or every gap here ends at or below `lower`.
        if n.max_gap < size || n.max_start <= lower {
            return None;
        }
        if let Some(s) = self.search_gap(n.left, size, align, lower, upper) {
            return Some(s);
        }
        let gap_start = n.start - n.gap;
        if gap_start >= upper {
            return None;
        }
        if let Some(s) = fit(gap_start, n.start, size, align, lower, upper) {
            return Some(s);
        }
        self.search_gap(n.right, size, align, lower, upper)
    }

    /// Removes `[start, start + len)` from the map: whole regions, heads, tails and holes
    /// (splitting a region in two). Each removed piece, with its file offset adjusted, goes to
    /// `on_removed` in address order. Parts of the range with no region are not an error.
    /// Returns the number of pieces removed.
    ///
    /// Refused with nothing changed (and `on_removed` never called) if the split would exceed the
    /// maximum region count or memory for a node runs out.
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
        // Only a single region reaching past both ends of the range splits in two.
        let first = self.first_ending_after(start);
        if first == NIL || self.n(first).start >= end {
            return Ok(0);
        }
        let f = self.n(first);
        let splits = f.start < start && f.end > end;
        if splits {
            if self.len >= self.max {
                return Err(RegionError::TooManyRegions);
            }
            self.reserve(1)?;
        }
        let mut removed = 0;
        loop {
            let n = self.first_ending_after(start);
            if n == NIL || self.n(n).start >= end {
                break;
            }
            let r = self.unlink(self.n(n).start);
            let (rs, re) = (r.start, r.end());
            let (cut_from, cut_to) = (rs.max(start), re.min(end));
            if rs < cut_from {
                self.link(r.slice(rs, cut_from));
            }
            if re > cut_to {
                self.link(r.slice(cut_to, re));
            }
            on_removed(r.slice(cut_from, cut_to));
            removed += 1;
        }
        Ok(removed)
    }

    /// Removes every region, handing each to `on_removed` in address order.
    pub(crate) fn clear(&mut self, mut on_removed: impl FnMut(Region<H>)) {
        while self.root != NIL {
            let first = self.first_ending_after(0);
            let r = self.unlink(self.n(first).start);
            on_removed(r);
        }
        self.nodes.clear();
        self.free_slots.clear();
    }

    /// The regions in address order.
    pub(crate) fn iter(&self) -> Iter<'_, H, A> {
        Iter {
            list: self,
            next: self.first_ending_after(0),
        }
    }

    /// A copy (for `fork`), with nodes from the same allocator; `OutOfMemory` if they cannot be
    /// had.
    pub(crate) fn try_clone(&self) -> Result<Self, RegionError> {
        let alloc = self.nodes.allocator().clone();
        let mut nodes = Vec::new_in(alloc.clone());
        nodes
            .try_reserve(self.nodes.len())
            .map_err(|_| RegionError::OutOfMemory)?;
        let mut free_slots = Vec::new_in(alloc);
        free_slots
            .try_reserve(self.free_slots.capacity())
            .map_err(|_| RegionError::OutOfMemory)?;
        for n in self.nodes.iter() {
            nodes.push(n.clone());
        }
        free_slots.extend(self.free_slots.iter().copied());
        Ok(Tree {
            nodes,
            free_slots,
            root: self.root,
            len: self.len,
            max: self.max,
        })
    }

    /// Checks the tree's invariants (order, no overlap, AVL balance, augmented values, count);
    /// panics on the first violation. For tests and fuzzing: O(n).
    #[doc(hidden)]
    pub(crate) fn check_invariants(&self) {
        let mut prev_end = 0u64;
        let mut count = 0usize;
        self.check_node(self.root, &mut prev_end, &mut count);
        assert_eq!(count, self.len, "count");
        assert!(self.len <= self.max, "over the maximum");
    }

    /// Returns (height, max_gap, max_start) of subtree `t`, checking it.
    fn check_node(&self, t: u32, prev_end: &mut u64, count: &mut usize) -> (u8, u64, u64) {
        if t == NIL {
            return (0, 0, 0);
        }
        let n = self.n(t);
        let (lh, lg, _) = self.check_node(n.left, prev_end, count);
        let r = n.region();
        assert_eq!((r.start, r.end()), (n.start, n.end), "cached bounds");
        assert!(
            n.start >= *prev_end,
            "regions overlap or out of order at {:#x}",
            n.start
        );
        assert_eq!(n.gap, n.start - *prev_end, "gap at {:#x}", n.start);
        *prev_end = n.end;
        *count += 1;
        let (rh, rg, rms) = self.check_node(n.right, prev_end, count);
        assert!(
            (lh as i32 - rh as i32).abs() <= 1,
            "unbalanced at {:#x}",
            n.start
        );
        assert_eq!(n.height, lh.max(rh) + 1, "height at {:#x}", n.start);
        assert_eq!(
            n.max_gap,
            n.gap.max(lg).max(rg),
            "max_gap at {:#x}",
            n.start
        );
        let ms = if n.right == NIL { n.start } else { rms };
        assert_eq!(n.max_start, ms, "max_start at {:#x}", n.start);
        (n.height, n.max_gap, n.max_start)
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

/// Iterator over a [`RegionList`] in address order.
pub(crate) struct Iter<'a, H, A: Allocator + Clone> {
    list: &'a Tree<H, A>,
    next: u32,
}

impl<H, A: Allocator + Clone> core::fmt::Debug for Iter<'_, H, A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Iter").finish_non_exhaustive()
    }
}

impl<'a, H: Clone, A: Allocator + Clone> Iterator for Iter<'a, H, A> {
    type Item = &'a Region<H>;

    fn next(&mut self) -> Option<&'a Region<H>> {
        if self.next == NIL {
            return None;
        }
        let n = self.list.n(self.next);
        let item = n.region();
        self.next = self.list.first_ending_after(n.end);
        Some(item)
    }
}
