//! [`RegionList`]: the small inline layout up to [`SMALL`] regions, the tree above it.
//!
//! Most processes map a handful of regions, where a sorted inline array beats any tree; a few
//! map thousands. The list starts small, moves to the tree when an insert or a split would
//! exceed [`SMALL`] regions, and moves back when removals leave at most [`SMALL`] / 2 (the gap
//! between the two thresholds keeps a list that hovers around 16 from switching on every
//! call). Switching to the tree reserves every node first, so running out of memory changes
//! nothing.

use crate::small::{Small, SMALL};
use crate::tree::LEAF_CAP;
use crate::tree::{self, Tree};
use crate::{Backing, Region, RegionError};
use allocator_api2::alloc::{Allocator, Global};

// The tree starts as one leaf holding the small layout's regions.
const _: () = assert!(SMALL <= LEAF_CAP);

/// At most this many regions after a removal move the list back to the small layout.
const BACK_TO_SMALL: usize = SMALL / 2;

// The inline layout is the large variant on purpose: it is the point (no allocation, no
// indirection for the common few regions).
#[allow(clippy::large_enum_variant)]
enum Repr<H, A: Allocator + Clone> {
    Small(Small<H>),
    Tree(Tree<H, A>),
}

/// A process's regions, ordered by address. See the crate documentation.
pub struct RegionList<H, A: Allocator + Clone = Global> {
    repr: Repr<H, A>,
    alloc: A,
    max: usize,
}

impl<H: core::fmt::Debug + Clone, A: Allocator + Clone> core::fmt::Debug for RegionList<H, A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<H: Clone> RegionList<H, Global> {
    /// An empty list holding at most `max_regions`, with nodes from the global allocator.
    pub fn new(max_regions: usize) -> Self {
        Self::new_in(max_regions, Global)
    }
}

impl<H: Clone, A: Allocator + Clone> RegionList<H, A> {
    /// An empty list holding at most `max_regions` (at most `u32::MAX - 1`), with nodes from
    /// `alloc`. Allocates nothing until it holds more than 16 regions.
    pub fn new_in(max_regions: usize, alloc: A) -> Self {
        RegionList {
            repr: Repr::Small(Small::new()),
            alloc,
            max: max_regions.min(u32::MAX as usize - 1),
        }
    }

    /// Number of regions.
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Small(s) => s.len(),
            Repr::Tree(t) => t.len(),
        }
    }

    /// True if there are no regions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The maximum number of regions.
    pub fn max_regions(&self) -> usize {
        self.max
    }

    /// True while the list uses its small inline layout (for tests).
    #[doc(hidden)]
    pub fn is_small(&self) -> bool {
        matches!(self.repr, Repr::Small(_))
    }

    /// Internal levels of the tree above its leaves; None in the small layout (for tests).
    #[cfg(test)]
    pub(crate) fn tree_height(&self) -> Option<usize> {
        match &self.repr {
            Repr::Small(_) => None,
            Repr::Tree(t) => Some(t.height()),
        }
    }

    /// Leaves of the tree in use; None in the small layout (for tests).
    #[cfg(test)]
    pub(crate) fn tree_leaves(&self) -> Option<usize> {
        match &self.repr {
            Repr::Small(_) => None,
            Repr::Tree(t) => Some(t.leaf_count()),
        }
    }

    /// Moves the regions of the small layout into a tree with room for one more; on
    /// `OutOfMemory` nothing changed.
    fn grow(&mut self) -> Result<(), RegionError> {
        let Repr::Small(small) = &mut self.repr else {
            return Ok(());
        };
        let t = Tree::with_regions(self.max, self.alloc.clone(), |push| small.drain(push))?;
        self.repr = Repr::Tree(t);
        Ok(())
    }

    /// Moves a tree of at most [`BACK_TO_SMALL`] regions back to the small layout.
    fn shrink(&mut self) {
        if let Repr::Tree(t) = &mut self.repr {
            if t.len() <= BACK_TO_SMALL {
                let mut small = Small::new();
                t.clear(|r| small.insert(r));
                self.repr = Repr::Small(small);
            }
        }
    }

    /// Adds a region. Refuses an empty or wrapping range (of addresses, or of file offsets for a
    /// file-backed region), overlap with an existing region, more than the maximum count, or no
    /// memory for the node.
    pub fn insert(&mut self, region: Region<H>) -> Result<(), RegionError> {
        let small = match &mut self.repr {
            Repr::Tree(t) => return t.insert(region),
            Repr::Small(s) => s,
        };
        if region.len == 0 {
            return Err(RegionError::EmptyRange);
        }
        let end = region
            .start
            .checked_add(region.len)
            .ok_or(RegionError::AddressOverflow)?;
        if let Backing::File { offset, .. } = &region.backing {
            offset
                .checked_add(region.len)
                .ok_or(RegionError::AddressOverflow)?;
        }
        if small.len() < SMALL.min(self.max) {
            return small
                .try_insert(region, end)
                .map_err(|_| RegionError::Overlap);
        }
        if small.overlaps(region.start, end) {
            return Err(RegionError::Overlap);
        }
        if small.len() >= self.max {
            return Err(RegionError::TooManyRegions);
        }
        self.grow()?;
        let Repr::Tree(t) = &mut self.repr else {
            unreachable!("grow made a tree")
        };
        t.insert(region)
    }

    /// The region containing `addr`.
    #[inline]
    pub fn find(&self, addr: u64) -> Option<&Region<H>> {
        match &self.repr {
            Repr::Small(s) => s.find(addr),
            Repr::Tree(t) => t.find(addr),
        }
    }

    /// The region containing `addr`, to change its protection or backing. Its start and length
    /// must not be changed (they key the list); use [`remove_range`](Self::remove_range) and
    /// [`insert`](Self::insert) for that.
    pub fn find_mut(&mut self, addr: u64) -> Option<&mut Region<H>> {
        match &mut self.repr {
            Repr::Small(s) => s.find_mut(addr),
            Repr::Tree(t) => t.find_mut(addr),
        }
    }

    /// The first region that ends after `addr` (the one containing it, or the next one).
    pub fn next_from(&self, addr: u64) -> Option<&Region<H>> {
        match &self.repr {
            Repr::Small(s) => s.next_from(addr),
            Repr::Tree(t) => t.next_from(addr),
        }
    }

    /// The lowest address `s`, a multiple of `align` (a power of two), with `lower <= s` and
    /// `s + size <= upper`, such that `[s, s + size)` touches no region. If `hint` is such an
    /// address, it is returned instead. None if there is none (or `size` is 0).
    pub fn find_gap(
        &self,
        size: u64,
        align: u64,
        lower: u64,
        upper: u64,
        hint: Option<u64>,
    ) -> Option<u64> {
        let small = match &self.repr {
            Repr::Tree(t) => return t.find_gap(size, align, lower, upper, hint),
            Repr::Small(s) => s,
        };
        if size == 0 || !align.is_power_of_two() {
            return None;
        }
        if let Some(h) = hint {
            if h % align == 0
                && h >= lower
                && h.checked_add(size).is_some_and(|e| e <= upper)
                && !small.overlaps(h, h + size)
            {
                return Some(h);
            }
        }
        small.search_gap(size, align, lower, upper)
    }

    /// Removes `[start, start + len)` from the list: whole regions, heads, tails and holes
    /// (splitting a region in two). Each removed piece, with its file offset adjusted, goes to
    /// `on_removed` in address order. Parts of the range with no region are not an error.
    /// Returns the number of pieces removed.
    ///
    /// Refused with nothing changed (and `on_removed` never called) if the split would exceed the
    /// maximum region count or memory for a node runs out.
    pub fn remove_range(
        &mut self,
        start: u64,
        len: u64,
        mut on_removed: impl FnMut(Region<H>),
    ) -> Result<usize, RegionError> {
        if len == 0 {
            return Err(RegionError::EmptyRange);
        }
        let end = start.checked_add(len).ok_or(RegionError::AddressOverflow)?;
        if let Repr::Small(s) = &mut self.repr {
            if !s.splits(start, end) {
                return Ok(s.remove_range(start, end, &mut on_removed));
            }
            if s.len() >= self.max {
                return Err(RegionError::TooManyRegions);
            }
            if s.len() < SMALL {
                return Ok(s.remove_range(start, end, &mut on_removed));
            }
            // A split of a full small layout: one more region than it holds.
            self.grow()?;
        }
        let Repr::Tree(t) = &mut self.repr else {
            unreachable!("small layouts returned above")
        };
        let removed = t.remove_range(start, len, on_removed)?;
        self.shrink();
        Ok(removed)
    }

    /// Removes every region, handing each to `on_removed` in address order. Frees the tree's
    /// memory, if it had any.
    pub fn clear(&mut self, on_removed: impl FnMut(Region<H>)) {
        match &mut self.repr {
            Repr::Small(s) => s.drain(on_removed),
            Repr::Tree(t) => {
                t.clear(on_removed);
                self.repr = Repr::Small(Small::new());
            }
        }
    }

    /// The regions in address order.
    pub fn iter(&self) -> Iter<'_, H, A> {
        match &self.repr {
            Repr::Small(s) => Iter {
                inner: IterInner::Small(s, 0),
            },
            Repr::Tree(t) => Iter {
                inner: IterInner::Tree(t.iter()),
            },
        }
    }

    /// A copy (for `fork`), with nodes from the same allocator; `OutOfMemory` if they cannot be
    /// had.
    pub fn try_clone(&self) -> Result<Self, RegionError> {
        let repr = match &self.repr {
            Repr::Small(s) => Repr::Small(s.clone()),
            Repr::Tree(t) => Repr::Tree(t.try_clone()?),
        };
        Ok(RegionList {
            repr,
            alloc: self.alloc.clone(),
            max: self.max,
        })
    }

    /// Checks the layout's invariants (order, no overlap, and for the tree node fill, depth and the
    /// augmented values), the count and the maximum; panics on the first violation. For tests
    /// and fuzzing: O(n).
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        match &self.repr {
            Repr::Small(s) => s.check_invariants(),
            Repr::Tree(t) => {
                t.check_invariants();
                assert!(t.len() > BACK_TO_SMALL, "a tree this small should be small");
            }
        }
        assert!(self.len() <= self.max, "over the maximum");
    }
}

/// Iterator over a [`RegionList`] in address order.
pub struct Iter<'a, H, A: Allocator + Clone> {
    inner: IterInner<'a, H, A>,
}

enum IterInner<'a, H, A: Allocator + Clone> {
    Small(&'a Small<H>, usize),
    Tree(tree::Iter<'a, H, A>),
}

impl<H, A: Allocator + Clone> core::fmt::Debug for Iter<'_, H, A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Iter").finish_non_exhaustive()
    }
}

impl<'a, H: Clone, A: Allocator + Clone> Iterator for Iter<'a, H, A> {
    type Item = &'a Region<H>;

    fn next(&mut self) -> Option<&'a Region<H>> {
        match &mut self.inner {
            IterInner::Small(s, i) => {
                let r = s.get(*i)?;
                *i += 1;
                Some(r)
            }
            IterInner::Tree(t) => t.next(),
        }
    }
}

impl<'a, H: Clone, A: Allocator + Clone> IntoIterator for &'a RegionList<H, A> {
    type Item = &'a Region<H>;
    type IntoIter = Iter<'a, H, A>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}
