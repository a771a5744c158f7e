//! Four-level x86_64 page tables, over any source of page-table frames.
//!
//! The kernel walks and edits tables through [`TableFrames`], which says how to reach a table frame
//! by its physical address and where new ones come from. In the kernel that is the direct map and
//! `kalloc`; in tests it is a set of host pages, so every mapping rule here is tested on the host.

use bitflags::bitflags;

bitflags! {
    /// Bits of a page-table entry.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Pte: u64 {
        /// The entry is valid.
        const PRESENT = 1 << 0;
        /// Writes allowed.
        const WRITE = 1 << 1;
        /// User mode may access.
        const USER = 1 << 2;
        /// Write-through caching.
        const WRITE_THROUGH = 1 << 3;
        /// Caching disabled (device memory).
        const NO_CACHE = 1 << 4;
        /// Set by the CPU on access.
        const ACCESSED = 1 << 5;
        /// Set by the CPU on write.
        const DIRTY = 1 << 6;
        /// A 2 MiB or 1 GiB page (in a directory or PDPT entry).
        const HUGE = 1 << 7;
        /// Not flushed from the TLB on a CR3 switch.
        const GLOBAL = 1 << 8;
        /// Software: the frame is not owned by this mapping (device memory, shared pages); unmapping
        /// does not free it.
        const BORROWED = 1 << 9;
        /// Software: a private page shared with another address space since `fork` and mapped
        /// read-only in both; the first write copies it (or, for its last holder, makes it
        /// writable again). Only user leaves that were writable carry it.
        const COW = 1 << 10;
        /// Execution forbidden (needs EFER.NXE).
        const NO_EXECUTE = 1 << 63;
    }
}

/// The physical address bits of an entry.
pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Bytes mapped by one entry at each level: 4 KiB, 2 MiB, 1 GiB, 512 GiB.
pub const LEVEL_SIZE: [u64; 4] = [1 << 12, 1 << 21, 1 << 30, 1 << 39];

/// How page-table frames are obtained, freed and reached.
///
/// # Safety
/// `alloc` must return the physical address of a zeroed, 4 KiB-aligned frame used by nothing else;
/// `table(pa)` must return a pointer through which the 512 entries of the table frame at `pa`
/// can be read and written for as long as the frame is in a table.
pub unsafe trait TableFrames {
    /// A new zeroed frame, or `None` when memory is out.
    fn alloc(&mut self) -> Option<u64>;
    /// Gives back a frame from `alloc` (a table frame, or a page a mapping owned).
    ///
    /// # Safety
    /// Nothing may use the frame afterwards.
    unsafe fn free(&mut self, pa: u64);
    /// The entries of the table frame at `pa`.
    fn table(&self, pa: u64) -> *mut [u64; 512];
    /// One more mapping holds the page frame at `pa` (fork sharing a private page).
    fn share(&mut self, pa: u64);
    /// Whether more than one mapping holds the page frame at `pa`.
    fn is_shared(&self, pa: u64) -> bool;
    /// A mapping lets go of the page frame at `pa`: the frame is freed when that was its last
    /// holder. Every owned (not BORROWED) leaf frame is given back this way.
    ///
    /// # Safety
    /// The caller's mapping of the frame is gone (and flushed before the frame can be reused).
    unsafe fn release(&mut self, pa: u64);
}

/// Why a mapping could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// No frame for an intermediate table.
    OutOfMemory,
    /// The page is already mapped.
    AlreadyMapped,
    /// An address is not page-aligned or not canonical.
    BadAddress,
    /// A huge page is in the way.
    HugePage,
}

/// Index into the table at `level` (0 = page table, 3 = PML4) for `va`.
pub const fn index(va: u64, level: usize) -> usize {
    ((va >> (12 + 9 * level)) & 0x1ff) as usize
}

/// Whether `va` is canonical (bits 63..47 all equal).
pub const fn is_canonical(va: u64) -> bool {
    let top = va >> 47;
    top == 0 || top == 0x1_ffff
}

/// A page-table tree, named by the physical address of its PML4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageTable {
    /// Physical address of the PML4.
    pub root: u64,
}

impl PageTable {
    /// A new empty tree.
    pub fn new(f: &mut impl TableFrames) -> Option<PageTable> {
        Some(PageTable { root: f.alloc()? })
    }

    /// The address of the level-0 entry for `va`, creating intermediate tables when `create`.
    /// Intermediate entries get `PRESENT | WRITE | USER` (the leaf decides the real rights).
    pub fn walk(
        &self,
        f: &mut impl TableFrames,
        va: u64,
        create: bool,
    ) -> Result<Option<*mut u64>, MapError> {
        self.walk_to(f, va, 0, create)
    }

    /// The address of the entry for `va` in its table at `leaf` (0: page table, 1: page
    /// directory), creating the tables above it when `create`. A huge page above `leaf` is an
    /// error.
    fn walk_to(
        &self,
        f: &mut impl TableFrames,
        va: u64,
        leaf: usize,
        create: bool,
    ) -> Result<Option<*mut u64>, MapError> {
        if !is_canonical(va) {
            return Err(MapError::BadAddress);
        }
        let mut table = self.root;
        for level in (leaf + 1..4).rev() {
            let t = f.table(table);
            let i = index(va, level);
            // SAFETY: `t` reaches a live table frame of this tree (TableFrames contract) and `i` < 512.
            let e = unsafe { (*t)[i] };
            if e & Pte::PRESENT.bits() != 0 {
                if e & Pte::HUGE.bits() != 0 {
                    return Err(MapError::HugePage);
                }
                table = e & ADDR_MASK;
            } else {
                if !create {
                    return Ok(None);
                }
                let new = f.alloc().ok_or(MapError::OutOfMemory)?;
                // SAFETY: as above; the new frame is zeroed and owned by this tree from now on.
                unsafe { (*t)[i] = new | (Pte::PRESENT | Pte::WRITE | Pte::USER).bits() };
                table = new;
            }
        }
        let t = f.table(table);
        // SAFETY: `t` is a live table at level `leaf`; index < 512.
        Ok(Some(unsafe { &mut (*t)[index(va, leaf)] as *mut u64 }))
    }

    /// Maps the 4 KiB page at `va` to `pa` with `flags` (PRESENT is added).
    pub fn map(
        &self,
        f: &mut impl TableFrames,
        va: u64,
        pa: u64,
        flags: Pte,
    ) -> Result<(), MapError> {
        if !va.is_multiple_of(4096) || !pa.is_multiple_of(4096) || pa & !ADDR_MASK != 0 {
            return Err(MapError::BadAddress);
        }
        let pte = self.walk(f, va, true)?.ok_or(MapError::OutOfMemory)?;
        // SAFETY: `walk` returned a pointer to an entry of a live table.
        unsafe {
            if *pte & Pte::PRESENT.bits() != 0 {
                return Err(MapError::AlreadyMapped);
            }
            *pte = pa | (flags | Pte::PRESENT).bits();
        }
        Ok(())
    }

    /// Maps `[va, va + len)` to `[pa, pa + len)` with 2 MiB pages where both are 2 MiB-aligned and
    /// 4 KiB pages elsewhere. Used for the direct map of physical memory.
    pub fn map_range(
        &self,
        f: &mut impl TableFrames,
        va: u64,
        pa: u64,
        len: u64,
        flags: Pte,
    ) -> Result<(), MapError> {
        let mut off = 0;
        while off < len {
            let (v, p) = (va + off, pa + off);
            if v % LEVEL_SIZE[1] == 0 && p % LEVEL_SIZE[1] == 0 && len - off >= LEVEL_SIZE[1] {
                self.map_huge(f, v, p, flags)?;
                off += LEVEL_SIZE[1];
            } else {
                self.map(f, v, p, flags)?;
                off += LEVEL_SIZE[0];
            }
        }
        Ok(())
    }

    fn map_huge(
        &self,
        f: &mut impl TableFrames,
        va: u64,
        pa: u64,
        flags: Pte,
    ) -> Result<(), MapError> {
        let pde = self.walk_to(f, va, 1, true)?.ok_or(MapError::OutOfMemory)?;
        // SAFETY: `walk_to` returned a pointer to an entry of a live page directory.
        unsafe {
            if *pde & Pte::PRESENT.bits() != 0 {
                return Err(MapError::AlreadyMapped);
            }
            *pde = pa | (flags | Pte::PRESENT | Pte::HUGE).bits();
        }
        Ok(())
    }

    /// The entry mapping the 4 KiB page at `va`, if present.
    pub fn lookup(&self, f: &mut impl TableFrames, va: u64) -> Option<u64> {
        let pte = self.walk(f, va, false).ok()??;
        // SAFETY: `walk` returned a pointer to an entry of a live table.
        let e = unsafe { *pte };
        (e & Pte::PRESENT.bits() != 0).then_some(e)
    }

    /// Removes the mapping of the page at `va`; returns the old entry, if there was one.
    /// The caller frees the frame (unless the entry is BORROWED) and flushes the TLB.
    pub fn unmap(&self, f: &mut impl TableFrames, va: u64) -> Option<u64> {
        let pte = self.walk(f, va, false).ok()??;
        // SAFETY: `walk` returned a pointer to an entry of a live table.
        unsafe {
            let e = *pte;
            if e & Pte::PRESENT.bits() == 0 {
                return None;
            }
            *pte = 0;
            Some(e)
        }
    }

    /// Changes the flags of the page at `va`, keeping its frame. Returns false if it is not mapped.
    pub fn protect(&self, f: &mut impl TableFrames, va: u64, flags: Pte) -> bool {
        let Ok(Some(pte)) = self.walk(f, va, false) else {
            return false;
        };
        // SAFETY: `walk` returned a pointer to an entry of a live table.
        unsafe {
            if *pte & Pte::PRESENT.bits() == 0 {
                return false;
            }
            *pte = (*pte & ADDR_MASK) | (flags | Pte::PRESENT).bits();
        }
        true
    }

    /// Points the present 4 KiB leaf at `va` to frame `pa` with `flags`, returning the old entry
    /// (None, and nothing changed, if no page is mapped there). The caller deals with the old frame
    /// and flushes the TLB.
    pub fn replace(&self, f: &mut impl TableFrames, va: u64, pa: u64, flags: Pte) -> Option<u64> {
        let pte = self.walk(f, va, false).ok()??;
        // SAFETY: `walk` returned a pointer to an entry of a live table.
        unsafe {
            let e = *pte;
            if e & Pte::PRESENT.bits() == 0 {
                return None;
            }
            *pte = (pa & ADDR_MASK) | (flags | Pte::PRESENT).bits();
            Some(e)
        }
    }

    /// Calls `each(va, entry)` for every present 4 KiB leaf in `[lo, hi)`, in address order
    /// (huge pages skipped).
    pub fn for_each(
        &self,
        f: &mut impl TableFrames,
        lo: u64,
        hi: u64,
        mut each: impl FnMut(u64, u64),
    ) {
        self.for_each_while(f, lo, hi, |va, e| {
            each(va, e);
            true
        });
    }

    /// As [`PageTable::for_each`], stopping as soon as `each` returns false.
    pub fn for_each_while(
        &self,
        f: &mut impl TableFrames,
        lo: u64,
        hi: u64,
        mut each: impl FnMut(u64, u64) -> bool,
    ) {
        self.visit(f, self.root, 3, 0, lo, hi, &mut each);
    }

    /// Returns false once `each` has asked to stop.
    #[allow(clippy::too_many_arguments)]
    fn visit(
        &self,
        f: &mut impl TableFrames,
        table: u64,
        level: usize,
        base: u64,
        lo: u64,
        hi: u64,
        each: &mut impl FnMut(u64, u64) -> bool,
    ) -> bool {
        let t = f.table(table);
        // The parent only descends into entries that overlap [lo, hi), so `lo` is below the end
        // of this table's span: start at its entry, and stop at the first entry past `hi`
        // (addresses only grow along a table, the jump to the upper half included).
        let first = if lo > base { index(lo, level) } else { 0 };
        for i in first..512 {
            let mut va = base + (i as u64) * LEVEL_SIZE[level];
            if level == 3 && i >= 256 {
                va |= 0xffff_0000_0000_0000;
            }
            if va >= hi {
                break;
            }
            // SAFETY: live table frame, i < 512.
            let e = unsafe { (*t)[i] };
            if e & Pte::PRESENT.bits() == 0 {
                continue;
            }
            let go_on = if level == 0 {
                each(va, e)
            } else if e & Pte::HUGE.bits() == 0 {
                self.visit(f, e & ADDR_MASK, level - 1, va, lo, hi, each)
            } else {
                true
            };
            if !go_on {
                return false;
            }
        }
        true
    }

    /// Frees the table frames of the lower half (user space) and, for every present leaf that is
    /// not BORROWED, the frame it maps; then the lower half is empty. The upper half (the kernel's,
    /// shared by every tree) is left alone.
    pub fn free_user(&self, f: &mut impl TableFrames) {
        let t = f.table(self.root);
        for i in 0..256 {
            // SAFETY: live PML4, i < 512.
            let e = unsafe { (*t)[i] };
            if e & Pte::PRESENT.bits() != 0 {
                Self::free_level(f, e & ADDR_MASK, 2);
                // SAFETY: as above.
                unsafe { (*t)[i] = 0 };
            }
        }
    }

    fn free_level(f: &mut impl TableFrames, table: u64, level: usize) {
        let t = f.table(table);
        for i in 0..512 {
            // SAFETY: live table frame, i < 512.
            let e = unsafe { (*t)[i] };
            if e & Pte::PRESENT.bits() == 0 {
                continue;
            }
            if level == 0 {
                if e & Pte::BORROWED.bits() == 0 {
                    // SAFETY: the leaf held its frame, and the whole tree is being torn down.
                    unsafe { f.release(e & ADDR_MASK) };
                }
            } else if e & Pte::HUGE.bits() == 0 {
                Self::free_level(f, e & ADDR_MASK, level - 1);
            }
        }
        // SAFETY: the table frame is no longer referenced (its parent entry is cleared by the caller).
        unsafe { f.free(table) };
    }

    /// Frees the whole tree: user half as [`PageTable::free_user`], then the PML4 itself.
    pub fn destroy(self, f: &mut impl TableFrames) {
        self.free_user(f);
        // SAFETY: the root is referenced by nothing once the tree is destroyed.
        unsafe { f.free(self.root) };
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::boxed::Box;
    use std::collections::BTreeMap;

    /// Host frames: physical address -> boxed page.
    #[derive(Default)]
    pub struct HostFrames {
        pub pages: BTreeMap<u64, Box<[u64; 512]>>,
        pub next: u64,
        pub limit: Option<usize>,
        /// Extra holders of shared page frames (absent: one holder).
        pub shares: BTreeMap<u64, usize>,
    }

    // SAFETY: every frame is a separate zeroed Box, reachable while in the map.
    unsafe impl TableFrames for HostFrames {
        fn alloc(&mut self) -> Option<u64> {
            if self.limit.is_some_and(|l| self.pages.len() >= l) {
                return None;
            }
            self.next += 4096;
            self.pages.insert(self.next, Box::new([0; 512]));
            Some(self.next)
        }
        unsafe fn free(&mut self, pa: u64) {
            assert!(!self.shares.contains_key(&pa), "freeing shared {pa:#x}");
            assert!(self.pages.remove(&pa).is_some(), "double free of {pa:#x}");
        }
        fn share(&mut self, pa: u64) {
            assert!(self.pages.contains_key(&pa), "sharing a free frame {pa:#x}");
            *self.shares.entry(pa).or_insert(0) += 1;
        }
        fn is_shared(&self, pa: u64) -> bool {
            self.shares.contains_key(&pa)
        }
        unsafe fn release(&mut self, pa: u64) {
            match self.shares.get_mut(&pa) {
                Some(1) => {
                    self.shares.remove(&pa);
                }
                Some(n) => *n -= 1,
                // SAFETY: the last holder let go.
                None => unsafe { self.free(pa) },
            }
        }
        fn table(&self, pa: u64) -> *mut [u64; 512] {
            let b = self.pages.get(&pa).expect("not a frame");
            &**b as *const [u64; 512] as *mut [u64; 512]
        }
    }

    #[test]
    fn map_lookup_unmap() {
        let mut f = HostFrames::default();
        let pt = PageTable::new(&mut f).unwrap();
        let page = f.alloc().unwrap();
        pt.map(&mut f, 0x40_0000, page, Pte::USER | Pte::WRITE)
            .unwrap();
        assert_eq!(
            pt.map(&mut f, 0x40_0000, page, Pte::USER),
            Err(MapError::AlreadyMapped)
        );
        let e = pt.lookup(&mut f, 0x40_0000).unwrap();
        assert_eq!(e & ADDR_MASK, page);
        assert!(pt.lookup(&mut f, 0x40_1000).is_none());
        assert!(pt.protect(&mut f, 0x40_0000, Pte::USER | Pte::NO_EXECUTE));
        let e = pt.lookup(&mut f, 0x40_0000).unwrap();
        assert_eq!(e & Pte::WRITE.bits(), 0);
        assert_ne!(e & Pte::NO_EXECUTE.bits(), 0);
        assert_eq!(
            pt.unmap(&mut f, 0x40_0000).map(|e| e & ADDR_MASK),
            Some(page)
        );
        assert_eq!(pt.unmap(&mut f, 0x40_0000), None);
        // SAFETY: the page is unmapped.
        unsafe { f.free(page) };
        pt.destroy(&mut f);
        assert!(f.pages.is_empty(), "every table frame freed");
    }

    #[test]
    fn bad_addresses_and_oom() {
        let mut f = HostFrames::default();
        let pt = PageTable::new(&mut f).unwrap();
        assert_eq!(
            pt.map(&mut f, 0x123, 0, Pte::empty()),
            Err(MapError::BadAddress)
        );
        assert_eq!(
            pt.map(&mut f, 0x0000_8000_0000_0000, 0, Pte::empty()),
            Err(MapError::BadAddress)
        );
        f.limit = Some(2);
        assert_eq!(
            pt.map(&mut f, 0x1000, 0x1000, Pte::empty()),
            Err(MapError::OutOfMemory)
        );
        f.limit = None;
        pt.destroy(&mut f);
        assert!(f.pages.is_empty());
    }

    #[test]
    fn for_each_and_teardown_frees_owned_frames_only() {
        let mut f = HostFrames::default();
        let pt = PageTable::new(&mut f).unwrap();
        let mut owned = 0;
        for i in 0..600u64 {
            let va = 0x40_0000 + i * 4096;
            if i % 2 == 0 {
                let p = f.alloc().unwrap();
                pt.map(&mut f, va, p, Pte::USER).unwrap();
                owned += 1;
            } else {
                pt.map(&mut f, va, 0xdead_0000, Pte::USER | Pte::BORROWED)
                    .unwrap();
            }
        }
        let mut n = 0;
        pt.for_each(&mut f, 0, 1 << 47, |va, _| {
            assert!(va >= 0x40_0000);
            n += 1;
        });
        assert_eq!(n, 600);
        let mut m = 0;
        pt.for_each(&mut f, 0x40_0000, 0x40_2000, |_, _| m += 1);
        assert_eq!(m, 2);
        assert!(owned > 0);
        pt.destroy(&mut f);
        assert!(f.pages.is_empty(), "owned frames and tables all freed");
    }

    #[test]
    fn huge_ranges() {
        let mut f = HostFrames::default();
        let pt = PageTable::new(&mut f).unwrap();
        let base = 0xffff_8000_0000_0000;
        pt.map_range(&mut f, base, 0, (4 << 20) + 8192, Pte::WRITE)
            .unwrap();
        assert_eq!(pt.walk(&mut f, base, false), Err(MapError::HugePage));
        let e = pt.lookup(&mut f, base + (4 << 20) + 4096).unwrap();
        assert_eq!(e & ADDR_MASK, (4 << 20) + 4096);
        // A walk that starts in the upper half sees the 4 KiB leaves there (huge pages skipped),
        // and one that asks to stop, stops.
        let mut seen = std::vec::Vec::new();
        pt.for_each(&mut f, base + (2 << 20), u64::MAX, |va, _| seen.push(va));
        assert_eq!(seen, [base + (4 << 20), base + (4 << 20) + 4096]);
        let mut n = 0;
        pt.for_each_while(&mut f, base, u64::MAX, |_, _| {
            n += 1;
            false
        });
        assert_eq!(n, 1);
        // The upper half is the kernel's: free_user leaves it.
        pt.free_user(&mut f);
        assert!(pt.lookup(&mut f, base + (4 << 20)).is_some());
    }
}
