//! User address spaces on top of [`crate::paging`]: growing and shrinking, copying for `fork`, and
//! moving bytes between the kernel and user memory with every access checked against the page
//! tables (present, user-accessible, writable for writes). Nothing here trusts a user address.
//!
//! # Copy-on-write
//!
//! `fork` copies no page: [`copy_range`] maps each owned page into the child too and counts the
//! extra holder ([`TableFrames::share`]); a writable one becomes read-only with [`Pte::COW`] in
//! both tables. The first write to it faults (in user mode, or in [`copy_out`] for the kernel),
//! and [`break_cow`] gives the writer its own copy, or, when the writer is the last holder, makes
//! the page writable again in place. Unmapping an owned page [releases](TableFrames::release) it:
//! the frame goes back to the allocator with its last holder, so free-frame counts stay exact.

use crate::paging::{MapError, PageTable, Pte, TableFrames, ADDR_MASK};
use xv6_abi::layout::USER_TOP;

/// A user access that the page tables refuse: the first page that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Page-aligned user address.
    pub va: u64,
    /// Whether the access was a write.
    pub write: bool,
    /// Whether a page is mapped there at all (false: not present).
    pub present: bool,
}

const PAGE: u64 = 4096;

/// A copy of the kernel half of `kernel` (entries 256..512 of its PML4) in a new tree.
pub fn new_user_table(f: &mut impl TableFrames, kernel: PageTable) -> Option<PageTable> {
    let pt = PageTable::new(f)?;
    let (src, dst) = (f.table(kernel.root), f.table(pt.root));
    // SAFETY: both are live PML4 frames (TableFrames contract); they are distinct frames.
    unsafe { (&mut (*dst))[256..].copy_from_slice(&(&(*src))[256..]) };
    Some(pt)
}

/// Maps zeroed pages over `[lo, hi)` (page-aligned) with `flags | USER`. On failure, unmaps and
/// frees what it mapped and returns the error: nothing half-done is left.
pub fn alloc_range(
    pt: PageTable,
    f: &mut impl TableFrames,
    lo: u64,
    hi: u64,
    flags: Pte,
) -> Result<(), MapError> {
    if !lo.is_multiple_of(PAGE) || !hi.is_multiple_of(PAGE) || hi > USER_TOP {
        return Err(MapError::BadAddress);
    }
    let mut va = lo;
    while va < hi {
        let r = match f.alloc() {
            None => Err(MapError::OutOfMemory),
            Some(pa) => pt.map(f, va, pa, flags | Pte::USER).inspect_err(|_| {
                // SAFETY: the frame was never mapped.
                unsafe { f.free(pa) }
            }),
        };
        if let Err(e) = r {
            dealloc_range(pt, f, lo, va);
            return Err(e);
        }
        va += PAGE;
    }
    Ok(())
}

/// Unmaps every page in `[lo, hi)`, releasing the frames the mappings hold (not BORROWED ones:
/// a frame is freed with its last holder). Pages not mapped are skipped. Returns how many pages
/// were unmapped. The caller flushes the TLB.
pub fn dealloc_range(pt: PageTable, f: &mut impl TableFrames, lo: u64, hi: u64) -> u64 {
    let mut n = 0;
    let done: Result<(), core::convert::Infallible> = for_each_mapped(pt, f, lo, hi, |f, va, _| {
        if let Some(e) = pt.unmap(f, va) {
            n += 1;
            if e & Pte::BORROWED.bits() == 0 {
                // SAFETY: this mapping held the frame and is gone.
                unsafe { f.release(e & ADDR_MASK) };
            }
        }
        Ok(())
    });
    let Ok(()) = done;
    n
}

/// Calls `each(f, va, entry)` for every present 4 KiB leaf of `pt` in `[lo, hi)`, in address
/// order, and stops at the first error. The leaves are collected a batch at a time and `each`
/// runs between walks, so it may edit the tables (even `pt`'s, in or out of the range) and
/// sleep; a walk stops when its batch is full, so the whole range costs one walk in all.
pub fn for_each_mapped<F: TableFrames, E>(
    pt: PageTable,
    f: &mut F,
    lo: u64,
    hi: u64,
    mut each: impl FnMut(&mut F, u64, u64) -> Result<(), E>,
) -> Result<(), E> {
    let mut from = lo;
    loop {
        let batch = mapped_pages(pt, f, from, hi);
        for &(va, e) in batch.pages() {
            each(f, va, e)?;
        }
        if !batch.is_full() {
            return Ok(()); // the walk reached `hi`
        }
        from = batch.pages()[BATCH - 1].0 + PAGE;
    }
}

/// Leaves per batch: small, because a batch lives on the kernel stack and is filled per call.
const BATCH: usize = 16;

/// Up to [`BATCH`] present leaves in address order: `(va, entry)`.
#[derive(Debug)]
struct Batch {
    pages: [(u64, u64); BATCH],
    len: usize,
}

impl Batch {
    /// Whether the batch filled up (so the range may hold more leaves after it).
    fn is_full(&self) -> bool {
        self.len == self.pages.len()
    }

    /// The leaves found.
    fn pages(&self) -> &[(u64, u64)] {
        &self.pages[..self.len]
    }
}

/// The first (up to) [`BATCH`] present leaves of `pt` in `[lo, hi)`; the walk stops when it has
/// them.
fn mapped_pages(pt: PageTable, f: &mut impl TableFrames, lo: u64, hi: u64) -> Batch {
    let mut b = Batch {
        pages: [(0, 0); BATCH],
        len: 0,
    };
    pt.for_each_while(f, lo, hi, |va, e| {
        b.pages[b.len] = (va, e);
        b.len += 1;
        b.len < b.pages.len()
    });
    b
}

/// Copies the mappings of `[lo, hi)` from `src` into `dst` (for `fork`), copying no page: owned
/// pages are shared copy-on-write (writable ones become read-only with [`Pte::COW`] in both
/// tables; see the module docs); BORROWED pages (shared memory) are mapped again, still borrowed.
/// On failure `dst`'s range is cleaned up (`src` may keep COW marks, which only cost a fault).
/// The caller flushes `src`'s TLB: its pages may have lost their write right.
pub fn copy_range(
    src: PageTable,
    dst: PageTable,
    f: &mut impl TableFrames,
    lo: u64,
    hi: u64,
) -> Result<(), MapError> {
    let result = for_each_mapped(src, f, lo, hi, |f, va, e| {
        let mut flags = Pte::from_bits_truncate(e & !ADDR_MASK);
        let pa = e & ADDR_MASK;
        if e & Pte::BORROWED.bits() != 0 {
            return dst.map(f, va, pa, flags);
        }
        if flags.intersects(Pte::WRITE | Pte::COW) {
            flags = (flags - Pte::WRITE) | Pte::COW;
            src.protect(f, va, flags);
        }
        f.share(pa);
        dst.map(f, va, pa, flags).inspect_err(|_| {
            // SAFETY: the child never mapped it; the parent still holds it.
            unsafe { f.release(pa) }
        })
    });
    if result.is_err() {
        dealloc_range(dst, f, lo, hi);
    }
    result
}

/// Gives the user page at `va` its own writable frame if it is a copy-on-write page (see the
/// module docs): Ok(true) when it was one and is now writable, Ok(false) when it is not one (not
/// mapped, not a user page, or not COW), and an error when no frame is left for the copy (nothing
/// changed then). The caller flushes the page from the TLB.
pub fn break_cow(pt: PageTable, f: &mut impl TableFrames, va: u64) -> Result<bool, MapError> {
    let page = va & !(PAGE - 1);
    if va >= USER_TOP {
        return Ok(false);
    }
    let Some(e) = pt.lookup(f, page) else {
        return Ok(false);
    };
    if e & Pte::COW.bits() == 0 || e & Pte::USER.bits() == 0 || e & Pte::BORROWED.bits() != 0 {
        return Ok(false);
    }
    let old = e & ADDR_MASK;
    let flags = (Pte::from_bits_truncate(e & !ADDR_MASK) - Pte::COW - Pte::DIRTY) | Pte::WRITE;
    if !f.is_shared(old) {
        // The last holder: nobody else sees this frame any more (only a fork of this same address
        // space could share it again, and that cannot run while this one is faulting).
        pt.protect(f, page, flags);
        return Ok(true);
    }
    let new = f.alloc().ok_or(MapError::OutOfMemory)?;
    let (s, d) = (f.table(old), f.table(new));
    // SAFETY: both are live, distinct 4 KiB frames; the old one is held by this mapping.
    unsafe { *d = *s };
    pt.replace(f, page, new, flags);
    // SAFETY: this mapping no longer refers to the old frame.
    unsafe { f.release(old) };
    Ok(true)
}

/// The frame behind user page `va` for an access, checking USER (and WRITE for writes).
fn user_frame(pt: PageTable, f: &mut impl TableFrames, va: u64, write: bool) -> Result<u64, Fault> {
    let page = va & !(PAGE - 1);
    let fault = |present| Fault {
        va: page,
        write,
        present,
    };
    if va >= USER_TOP {
        return Err(fault(true));
    }
    let e = pt.lookup(f, page).ok_or(fault(false))?;
    if e & Pte::USER.bits() == 0 || (write && e & Pte::WRITE.bits() == 0) {
        return Err(fault(true));
    }
    Ok(e & ADDR_MASK)
}

/// Copies `src` to user address `va`.
pub fn copy_out(pt: PageTable, f: &mut impl TableFrames, va: u64, src: &[u8]) -> Result<(), Fault> {
    copy_out_rights(pt, f, va, src, true)
}

/// Copies `src` to user address `va` even if the pages are read-only for the user (the kernel
/// filling a program's text while loading it).
pub fn copy_out_loading(
    pt: PageTable,
    f: &mut impl TableFrames,
    va: u64,
    src: &[u8],
) -> Result<(), Fault> {
    copy_out_rights(pt, f, va, src, false)
}

fn copy_out_rights(
    pt: PageTable,
    f: &mut impl TableFrames,
    va: u64,
    src: &[u8],
    check_write: bool,
) -> Result<(), Fault> {
    let mut done = 0usize;
    while done < src.len() {
        let a = va.checked_add(done as u64).ok_or(Fault {
            va: !(PAGE - 1),
            write: true,
            present: false,
        })?;
        let pa = user_frame(pt, f, a, check_write)?;
        let off = (a % PAGE) as usize;
        let n = (PAGE as usize - off).min(src.len() - done);
        let frame = f.table(pa) as *mut u8;
        // SAFETY: `frame` is a live 4 KiB frame mapped writable for the user; off + n <= 4096.
        unsafe { core::ptr::copy_nonoverlapping(src[done..].as_ptr(), frame.add(off), n) };
        done += n;
    }
    Ok(())
}

/// Copies from user address `va` into `dst`.
pub fn copy_in(
    pt: PageTable,
    f: &mut impl TableFrames,
    dst: &mut [u8],
    va: u64,
) -> Result<(), Fault> {
    let mut done = 0usize;
    while done < dst.len() {
        let a = va.checked_add(done as u64).ok_or(Fault {
            va: !(PAGE - 1),
            write: false,
            present: false,
        })?;
        let pa = user_frame(pt, f, a, false)?;
        let off = (a % PAGE) as usize;
        let n = (PAGE as usize - off).min(dst.len() - done);
        let frame = f.table(pa) as *const u8;
        // SAFETY: `frame` is a live 4 KiB frame mapped for the user; off + n <= 4096.
        unsafe { core::ptr::copy_nonoverlapping(frame.add(off), dst[done..].as_mut_ptr(), n) };
        done += n;
    }
    Ok(())
}

/// Why a user string could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrError {
    /// A page refused the access.
    Fault(Fault),
    /// No NUL within the buffer.
    TooLong,
}

/// Copies a NUL-terminated string from user address `va` into `dst`; returns its length (without
/// the NUL).
pub fn copy_in_str(
    pt: PageTable,
    f: &mut impl TableFrames,
    dst: &mut [u8],
    va: u64,
) -> Result<usize, StrError> {
    let mut done = 0usize;
    while done < dst.len() {
        let a = va.checked_add(done as u64).ok_or(StrError::TooLong)?;
        let pa = user_frame(pt, f, a, false).map_err(StrError::Fault)?;
        let off = (a % PAGE) as usize;
        let n = (PAGE as usize - off).min(dst.len() - done);
        let frame = f.table(pa) as *const u8;
        for i in 0..n {
            // SAFETY: `frame` is a live 4 KiB frame; off + i < 4096.
            let c = unsafe { *frame.add(off + i) };
            if c == 0 {
                return Ok(done + i);
            }
            dst[done + i] = c;
        }
        done += n;
    }
    Err(StrError::TooLong)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paging::tests::HostFrames;

    fn setup() -> (HostFrames, PageTable) {
        let mut f = HostFrames::default();
        let k = PageTable::new(&mut f).unwrap();
        let pt = new_user_table(&mut f, k).unwrap();
        (f, pt)
    }

    #[test]
    fn grow_copy_and_shrink() {
        let (mut f, pt) = setup();
        let base = 0x40_0000;
        alloc_range(pt, &mut f, base, base + 3 * PAGE, Pte::WRITE).unwrap();
        let msg = b"hello across a page boundary";
        copy_out(pt, &mut f, base + PAGE - 5, msg).unwrap();
        let mut back = [0u8; 28];
        copy_in(pt, &mut f, &mut back, base + PAGE - 5).unwrap();
        assert_eq!(&back, msg);
        copy_out(pt, &mut f, base + 2 * PAGE, b"str\0").unwrap();
        let mut s = [0u8; 16];
        assert_eq!(copy_in_str(pt, &mut f, &mut s, base + 2 * PAGE), Ok(3));
        let before = f.pages.len();
        dealloc_range(pt, &mut f, base + PAGE, base + 3 * PAGE);
        assert_eq!(f.pages.len(), before - 2);
        assert!(copy_in(pt, &mut f, &mut back, base + PAGE).is_err());
    }

    #[test]
    fn checks_rights_and_bounds() {
        let (mut f, pt) = setup();
        let base = 0x40_0000;
        alloc_range(pt, &mut f, base, base + PAGE, Pte::empty()).unwrap();
        let e = copy_out(pt, &mut f, base, b"x").unwrap_err();
        assert!(e.write && e.present);
        assert!(copy_in(pt, &mut f, &mut [0u8; 1], base + PAGE).is_err());
        assert!(copy_in(pt, &mut f, &mut [0u8; 8], u64::MAX - 3).is_err());
        assert!(copy_in(pt, &mut f, &mut [0u8; 8], 0xffff_8000_0000_0000).is_err());
        let mut s = [0u8; 4];
        copy_out(pt, &mut f, base, b"").ok();
        assert_eq!(
            alloc_range(pt, &mut f, USER_TOP, USER_TOP + PAGE, Pte::empty()),
            Err(MapError::BadAddress)
        );
        // A string without NUL within the buffer.
        let e = copy_in_str(pt, &mut f, &mut s, base);
        assert_eq!(e, Ok(0));
    }

    #[test]
    fn out_of_memory_leaves_nothing() {
        let (mut f, pt) = setup();
        let before = f.pages.len();
        f.limit = Some(before + 10);
        assert_eq!(
            alloc_range(pt, &mut f, 0x40_0000, 0x40_0000 + 100 * PAGE, Pte::WRITE),
            Err(MapError::OutOfMemory)
        );
        f.limit = None;
        let mut n = 0;
        pt.for_each(&mut f, 0, USER_TOP, |_, _| n += 1);
        assert_eq!(n, 0);
        // Intermediate tables may remain; user pages do not.
        pt.free_user(&mut f);
        assert_eq!(f.pages.len(), before);
    }

    #[test]
    fn copy_and_dealloc_span_many_batches() {
        let (mut f, pt) = setup();
        let base = 0x40_0000;
        let n = 300;
        alloc_range(pt, &mut f, base, base + n * PAGE, Pte::WRITE).unwrap();
        for i in 0..n {
            copy_out(pt, &mut f, base + i * PAGE + 7, &i.to_le_bytes()).unwrap();
        }
        let k = PageTable::new(&mut f).unwrap();
        let child = new_user_table(&mut f, k).unwrap();
        copy_range(pt, child, &mut f, 0, USER_TOP).unwrap();
        for i in 0..n {
            let mut b = [0u8; 8];
            copy_in(child, &mut f, &mut b, base + i * PAGE + 7).unwrap();
            assert_eq!(u64::from_le_bytes(b), i);
        }
        let before = f.pages.len();
        assert_eq!(dealloc_range(child, &mut f, 0, USER_TOP), n);
        assert_eq!(f.pages.len(), before, "the parent still holds every page");
        assert!(f.shares.is_empty());
        assert_eq!(dealloc_range(pt, &mut f, 0, USER_TOP), n);
        assert_eq!(
            f.pages.len(),
            before - n as usize,
            "every page freed with its last holder"
        );
        let mut left = 0;
        child.for_each(&mut f, 0, USER_TOP, |_, _| left += 1);
        assert_eq!(left, 0);
    }

    #[test]
    fn fork_shares_pages_until_the_first_write() {
        let (mut f, pt) = setup();
        let base = 0x40_0000;
        alloc_range(pt, &mut f, base, base + 3 * PAGE, Pte::WRITE).unwrap();
        alloc_range(pt, &mut f, base + 4 * PAGE, base + 5 * PAGE, Pte::empty()).unwrap();
        copy_out(pt, &mut f, base, b"parent").unwrap();
        let k = PageTable::new(&mut f).unwrap();
        let child = new_user_table(&mut f, k).unwrap();
        let before = f.pages.len();
        copy_range(pt, child, &mut f, 0, USER_TOP).unwrap();
        let tables = f.pages.len() - before;
        assert!(tables <= 3, "fork copied pages: {tables} new frames");
        for t in [pt, child] {
            let e = t.lookup(&mut f, base).unwrap();
            assert_eq!(e & Pte::WRITE.bits(), 0, "shared page still writable");
            assert_ne!(e & Pte::COW.bits(), 0);
            let ro = t.lookup(&mut f, base + 4 * PAGE).unwrap();
            assert_eq!(
                ro & Pte::COW.bits(),
                0,
                "a read-only page never becomes writable"
            );
        }
        // A write needs break_cow first; the copy is the writer's alone.
        let e = copy_out(child, &mut f, base, b"child!").unwrap_err();
        assert!(e.present && e.write);
        assert_eq!(break_cow(child, &mut f, base), Ok(true));
        copy_out(child, &mut f, base, b"child!").unwrap();
        let mut b = [0u8; 6];
        copy_in(pt, &mut f, &mut b, base).unwrap();
        assert_eq!(&b, b"parent");
        copy_in(child, &mut f, &mut b, base).unwrap();
        assert_eq!(&b, b"child!");
        // The parent is now the page's last holder: made writable in place, no new frame.
        let pa = pt.lookup(&mut f, base).unwrap() & ADDR_MASK;
        let n = f.pages.len();
        assert_eq!(break_cow(pt, &mut f, base), Ok(true));
        assert_eq!(f.pages.len(), n);
        assert_eq!(pt.lookup(&mut f, base).unwrap() & ADDR_MASK, pa);
        copy_out(pt, &mut f, base, b"again!").unwrap();
        assert_eq!(break_cow(pt, &mut f, base), Ok(false), "not COW any more");
        assert_eq!(break_cow(pt, &mut f, base + 4 * PAGE), Ok(false));
        assert_eq!(break_cow(pt, &mut f, base + 9 * PAGE), Ok(false));
        // The read-only page cannot be written even after break_cow is asked.
        assert!(copy_out(child, &mut f, base + 4 * PAGE, b"x").is_err());
        // Out of frames: the copy fails and nothing changes.
        let pa1 = child.lookup(&mut f, base + PAGE).unwrap() & ADDR_MASK;
        f.limit = Some(f.pages.len());
        assert_eq!(
            break_cow(child, &mut f, base + PAGE),
            Err(MapError::OutOfMemory)
        );
        f.limit = None;
        assert_eq!(child.lookup(&mut f, base + PAGE).unwrap() & ADDR_MASK, pa1);
        // Both exit: every frame comes back exactly once (HostFrames panics on a double free).
        let mut data = std::vec::Vec::new();
        for t in [pt, child] {
            t.for_each(&mut f, 0, USER_TOP, |_, e| data.push(e & ADDR_MASK));
        }
        child.free_user(&mut f);
        assert!(f.shares.is_empty());
        pt.free_user(&mut f);
        assert!(data.iter().all(|pa| !f.pages.contains_key(pa)));
    }

    #[test]
    fn a_fork_of_a_fork_shares_three_ways() {
        let (mut f, pt) = setup();
        let base = 0x40_0000;
        alloc_range(pt, &mut f, base, base + PAGE, Pte::WRITE).unwrap();
        copy_out(pt, &mut f, base, b"A").unwrap();
        let start = f.pages.len();
        let mut kids = std::vec::Vec::new();
        let mut from = pt;
        for _ in 0..2 {
            let k = PageTable::new(&mut f).unwrap();
            let c = new_user_table(&mut f, k).unwrap();
            copy_range(from, c, &mut f, 0, USER_TOP).unwrap();
            kids.push((k, c));
            from = c;
        }
        let pa = pt.lookup(&mut f, base).unwrap() & ADDR_MASK;
        assert_eq!(f.shares.get(&pa), Some(&2));
        // The middle one writes: it copies; the other two still share.
        assert_eq!(break_cow(kids[0].1, &mut f, base), Ok(true));
        assert_eq!(f.shares.get(&pa), Some(&1));
        kids[1].1.free_user(&mut f);
        assert!(f.shares.is_empty());
        assert!(f.pages.contains_key(&pa), "the parent still holds it");
        kids[0].1.free_user(&mut f);
        pt.free_user(&mut f);
        assert!(!f.pages.contains_key(&pa));
        for (k, c) in kids {
            // SAFETY: both roots are unused now.
            unsafe {
                f.free(c.root);
                f.free(k.root);
            }
        }
        assert!(f.pages.len() < start);
    }

    #[test]
    fn fork_copy_is_deep_for_owned_and_shallow_for_borrowed() {
        let (mut f, pt) = setup();
        let base = 0x40_0000;
        alloc_range(pt, &mut f, base, base + 2 * PAGE, Pte::WRITE).unwrap();
        pt.map(&mut f, base + 8 * PAGE, 0xabc000, Pte::USER | Pte::BORROWED)
            .unwrap();
        copy_out(pt, &mut f, base, b"parent").unwrap();
        let k = PageTable::new(&mut f).unwrap();
        let child = new_user_table(&mut f, k).unwrap();
        copy_range(pt, child, &mut f, 0, USER_TOP).unwrap();
        assert_eq!(break_cow(child, &mut f, base), Ok(true));
        copy_out(child, &mut f, base, b"child!").unwrap();
        let mut b = [0u8; 6];
        copy_in(pt, &mut f, &mut b, base).unwrap();
        assert_eq!(&b, b"parent");
        let e = child.lookup(&mut f, base + 8 * PAGE).unwrap();
        assert_eq!(e & ADDR_MASK, 0xabc000);
        child.free_user(&mut f);
        pt.free_user(&mut f);
    }
}
