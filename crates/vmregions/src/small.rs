//! The small layout of [`crate::RegionList`]: up to [`SMALL`] regions inline, no allocation.
//!
//! Invariant: `keys[..len]` are the regions' bounds in address order (so `keys[i].end <=
//! keys[i + 1].start`) with `keys[i].slot` the slot of `regions` holding region `i`; `used`
//! has exactly the bits of those slots, and every other slot is `None`. Searches read only the
//! keys; moving a region in the order moves its 24-byte key, never the region itself.

use crate::tree::fit;
use crate::Region;

/// Most regions the small layout holds.
pub(crate) const SMALL: usize = 16;

#[derive(Clone, Copy)]
struct Key {
    start: u64,
    end: u64,
    slot: u8,
}

pub(crate) struct Small<H> {
    len: usize,
    keys: [Key; SMALL],
    used: u32,
    regions: [Option<Region<H>>; SMALL],
}

impl<H: Clone> Clone for Small<H> {
    fn clone(&self) -> Self {
        Small {
            regions: self.regions.clone(),
            ..*self
        }
    }
}

impl<H> Small<H> {
    pub(crate) const fn new() -> Self {
        Small {
            len: 0,
            keys: [Key {
                start: 0,
                end: 0,
                slot: 0,
            }; SMALL],
            used: 0,
            regions: [const { None }; SMALL],
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Index of the first region ending after `addr` (`len` if none).
    #[inline]
    fn position(&self, addr: u64) -> usize {
        self.keys[..self.len].partition_point(|k| k.end <= addr)
    }

    #[inline]
    fn at(&self, i: usize) -> &Region<H> {
        self.regions[self.keys[i].slot as usize]
            .as_ref()
            .expect("slot of a live region")
    }

    pub(crate) fn overlaps(&self, start: u64, end: u64) -> bool {
        let i = self.position(start);
        i < self.len && self.keys[i].start < end
    }

    #[inline]
    pub(crate) fn find(&self, addr: u64) -> Option<&Region<H>> {
        let i = self.position(addr);
        (i < self.len && self.keys[i].start <= addr).then(|| self.at(i))
    }

    pub(crate) fn find_mut(&mut self, addr: u64) -> Option<&mut Region<H>> {
        let i = self.position(addr);
        if i < self.len && self.keys[i].start <= addr {
            self.regions[self.keys[i].slot as usize].as_mut()
        } else {
            None
        }
    }

    pub(crate) fn next_from(&self, addr: u64) -> Option<&Region<H>> {
        let i = self.position(addr);
        (i < self.len).then(|| self.at(i))
    }

    /// Inserts a region known not to overlap, with fewer than [`SMALL`] regions held.
    pub(crate) fn insert(&mut self, region: Region<H>) {
        let i = self.position(region.start);
        self.insert_at(i, region);
    }

    /// Inserts `region` (ending at `end`) unless it overlaps one held: one search for both.
    /// With fewer than [`SMALL`] regions held.
    #[inline]
    pub(crate) fn try_insert(&mut self, region: Region<H>, end: u64) -> Result<(), Region<H>> {
        let i = self.position(region.start);
        if i < self.len && self.keys[i].start < end {
            return Err(region);
        }
        self.insert_at(i, region);
        Ok(())
    }

    #[inline]
    fn insert_at(&mut self, i: usize, region: Region<H>) {
        assert!(self.len < SMALL, "small layout full");
        let n = self.len;
        self.keys.copy_within(i..n, i + 1);
        let s = (!self.used).trailing_zeros();
        self.used |= 1 << s;
        self.keys[i] = Key {
            start: region.start,
            end: region.end(),
            slot: s as u8,
        };
        self.regions[s as usize] = Some(region);
        self.len += 1;
    }

    fn remove_at(&mut self, i: usize) -> Region<H> {
        let s = self.keys[i].slot;
        let n = self.len;
        self.keys.copy_within(i + 1..n, i);
        self.len -= 1;
        self.used &= !(1 << s);
        self.regions[s as usize]
            .take()
            .expect("slot of a live region")
    }

    /// See [`crate::RegionList::find_gap`] (without the hint, checked by the caller).
    pub(crate) fn search_gap(&self, size: u64, align: u64, lower: u64, upper: u64) -> Option<u64> {
        let mut prev_end = 0;
        for i in 0..self.len {
            if self.keys[i].start > lower {
                if prev_end >= upper {
                    return None;
                }
                if let Some(s) = fit(prev_end, self.keys[i].start, size, align, lower, upper) {
                    return Some(s);
                }
            }
            prev_end = self.keys[i].end;
        }
        fit(prev_end, u64::MAX, size, align, lower, upper)
    }

    /// True if removing `[start, end)` splits one region in two.
    pub(crate) fn splits(&self, start: u64, end: u64) -> bool {
        let i = self.position(start);
        i < self.len && self.keys[i].start < start && self.keys[i].end > end
    }

    /// See [`crate::RegionList::remove_range`]; the caller made room for a split.
    pub(crate) fn remove_range(
        &mut self,
        start: u64,
        end: u64,
        on_removed: &mut impl FnMut(Region<H>),
    ) -> usize
    where
        H: Clone,
    {
        let mut removed = 0;
        let mut i = self.position(start);
        loop {
            if i >= self.len || self.keys[i].start >= end {
                break;
            }
            let r = self.remove_at(i);
            removed += 1;
            let (rs, re) = (r.start, r.end());
            if start <= rs && re <= end {
                // The whole region: handed over as it is, no copy. The next one, if any, is
                // now at `i` (and cannot start before `end` if this one reached it).
                on_removed(r);
                if re >= end {
                    break;
                }
                continue;
            }
            let (cut_from, cut_to) = (rs.max(start), re.min(end));
            if rs < cut_from {
                self.insert(r.slice(rs, cut_from));
            }
            if re > cut_to {
                self.insert(r.slice(cut_to, re));
            }
            on_removed(r.slice(cut_from, cut_to));
            i = self.position(start);
        }
        removed
    }

    /// Removes every region, in address order.
    pub(crate) fn drain(&mut self, mut each: impl FnMut(Region<H>)) {
        let n = self.len;
        self.len = 0;
        self.used = 0;
        for i in 0..n {
            let r = self.regions[self.keys[i].slot as usize]
                .take()
                .expect("slot of a live region");
            each(r);
        }
    }

    /// Region `i` in address order.
    pub(crate) fn get(&self, i: usize) -> Option<&Region<H>> {
        (i < self.len).then(|| self.at(i))
    }

    /// Checks the invariant in the module docs; panics on the first violation.
    pub(crate) fn check_invariants(&self) {
        assert!(
            self.len <= SMALL,
            "length {} past the small layout",
            self.len
        );
        let mut prev_end = 0;
        let mut used = 0u32;
        for i in 0..self.len {
            let r = self.at(i);
            assert_eq!(
                (r.start, r.end()),
                (self.keys[i].start, self.keys[i].end),
                "keys at {i}"
            );
            assert!(
                r.start >= prev_end,
                "regions overlap or out of order at {:#x}",
                r.start
            );
            assert!(r.len > 0);
            prev_end = r.end();
            assert_eq!(used & 1 << self.keys[i].slot, 0, "slot used twice");
            used |= 1 << self.keys[i].slot;
        }
        assert_eq!(used, self.used, "used slots");
        for (s, r) in self.regions.iter().enumerate() {
            assert_eq!(r.is_some(), used >> s & 1 == 1, "slot {s}");
        }
    }
}
