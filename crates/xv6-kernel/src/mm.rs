//! A process's memory: the loaded program, the sbrk heap above it, the stack at the top of user
//! space, the mmap regions, and the kernel-heap blocks it holds through `kmalloc`.
//!
//! # mmap
//!
//! Regions live in a `vmregions::RegionList` (nodes on the kernel heap, at most NMMAP). Pages are
//! allocated on first touch by [`MemState::handle_fault`]: zeroed for anonymous memory, read from
//! the file otherwise. Private pages belong to their page table (fork copies them). Shared pages
//! are marked BORROWED in the page tables and counted in [`SHARED`]: fork maps the same frame in
//! the child, and the last unmapping frees it. Dirty shared file pages are written back to the
//! file at `msync`, `munmap` and exit, never past the file's end. Two processes that map the same
//! file independently each get their own copy (there is no page cache); they see each other's
//! writes after `msync`, at their next first touch.
//!
//! Everything that changes a page table here either completes or leaves the table as it was.

use crate::cpu::Spinlock;
use crate::file::FileRef;
use crate::log;
use crate::mem::KernelFrames;
use alloc::vec::Vec;
use vmregions::{Backing, Prot, Region, RegionList, Sharing};
use xv6_abi::layout::{HEAP_LIMIT, USER_STACK_BOTTOM, USER_STACK_TOP, USER_TOP};
use xv6_abi::param::NMMAP;
use xv6_kernel::layout::{p2v, page_up, PAGE};
use xv6_kernel::paging::{PageTable, Pte, TableFrames, ADDR_MASK};
use xv6_kernel::uvm;

/// Why a memory operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemError {
    /// No frames (or kernel heap) left.
    OutOfMemory,
    /// The request makes no sense (past the heap limit, below the program, overlapping).
    Invalid,
}

/// An open file kept by a mapping: cloning takes another reference, dropping closes one, so a
/// mapping keeps its file open after `close(fd)` and splitting a region shares it.
#[derive(Debug)]
pub struct MapFile(Option<FileRef>);

impl MapFile {
    /// Keeps `f` (a new reference) for a mapping.
    pub fn new(f: &FileRef) -> MapFile {
        MapFile(Some(f.dup()))
    }
    fn file(&self) -> &FileRef {
        self.0.as_ref().expect("MapFile holds a file until dropped")
    }
}

impl Clone for MapFile {
    fn clone(&self) -> MapFile {
        MapFile(self.0.as_ref().map(|f| f.dup()))
    }
}

impl Drop for MapFile {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f.close();
        }
    }
}

/// A mapping.
pub type Mapping = Region<MapFile>;

/// Reference counts of frames mapped by MAP_SHARED regions: (physical address, mappings).
static SHARED: Spinlock<Vec<(u64, u32)>> = Spinlock::new("shared frames", Vec::new());

fn shared_register(pa: u64) -> bool {
    let mut s = SHARED.lock();
    if s.try_reserve(1).is_err() {
        return false;
    }
    let i = s.partition_point(|e| e.0 < pa);
    s.insert(i, (pa, 1));
    true
}

fn shared_incref(pa: u64) {
    let mut s = SHARED.lock();
    let i = s.partition_point(|e| e.0 < pa);
    match s.get_mut(i) {
        Some(e) if e.0 == pa => e.1 += 1,
        _ => panic!("shared frame {pa:#x} not registered"),
    }
}

/// Drops one mapping of a shared frame; frees it with the last.
fn shared_decref(pa: u64) {
    let mut s = SHARED.lock();
    let i = s.partition_point(|e| e.0 < pa);
    let last = match s.get_mut(i) {
        Some(e) if e.0 == pa => {
            e.1 -= 1;
            e.1 == 0
        }
        _ => panic!("shared frame {pa:#x} not registered"),
    };
    if last {
        s.remove(i);
        if s.is_empty() {
            // Hand the table's memory back, so kernel heap use returns to its baseline.
            *s = Vec::new();
        }
        drop(s);
        // SAFETY: no page table maps the frame any more.
        unsafe { KernelFrames.free(pa) };
    }
}

/// A process's memory bookkeeping.
#[derive(Debug)]
pub struct MemState {
    /// End of the loaded program (page-aligned): the heap starts here.
    pub image_end: u64,
    /// The program break (`sbrk(0)`).
    pub brk: u64,
    /// Kernel-heap blocks this process holds through `kmalloc` (addresses and sizes).
    pub kblocks: Vec<(u64, usize)>,
    /// Bytes of `kblocks`.
    pub kbytes: usize,
    /// mmap regions (created at the first mmap).
    pub regions: Option<RegionList<MapFile>>,
}

fn pte_flags(prot: Prot) -> Pte {
    let mut f = Pte::USER;
    if prot.contains(Prot::WRITE) {
        f |= Pte::WRITE;
    }
    if !prot.contains(Prot::EXEC) {
        f |= Pte::NO_EXECUTE;
    }
    f
}

impl MemState {
    /// Nothing mapped.
    pub const fn new() -> MemState {
        MemState {
            image_end: 0,
            brk: 0,
            kblocks: Vec::new(),
            kbytes: 0,
            regions: None,
        }
    }

    /// Moves the break to `new`, mapping or unmapping heap pages. All or nothing.
    pub fn set_brk(&mut self, pt: PageTable, new: u64) -> Result<(), MemError> {
        if new < self.image_end || new > HEAP_LIMIT {
            return Err(MemError::Invalid);
        }
        let old_top = page_up(self.brk).ok_or(MemError::Invalid)?;
        let new_top = page_up(new).ok_or(MemError::Invalid)?;
        if new_top > old_top {
            uvm::alloc_range(
                pt,
                &mut KernelFrames,
                old_top,
                new_top,
                Pte::WRITE | Pte::NO_EXECUTE,
            )
            .map_err(|_| MemError::OutOfMemory)?;
        } else if new_top < old_top {
            uvm::dealloc_range(pt, &mut KernelFrames, new_top, old_top);
            flush_if_current(pt);
        }
        self.brk = new;
        Ok(())
    }

    /// Maps the user stack (zeroed, read-write, no-execute); the page below stays unmapped.
    pub fn map_stack(pt: PageTable) -> Result<(), MemError> {
        uvm::alloc_range(
            pt,
            &mut KernelFrames,
            USER_STACK_BOTTOM,
            USER_STACK_TOP,
            Pte::WRITE | Pte::NO_EXECUTE,
        )
        .map_err(|_| MemError::OutOfMemory)
    }

    /// Copies everything into a child's fresh table and state (for `fork`). All or nothing.
    pub fn fork_into(
        &self,
        pt: PageTable,
        child: &mut MemState,
        cpt: PageTable,
    ) -> Result<(), MemError> {
        let regions = match &self.regions {
            Some(r) => Some(r.try_clone().map_err(|_| MemError::OutOfMemory)?),
            None => None,
        };
        uvm::copy_range(pt, cpt, &mut KernelFrames, 0, USER_TOP)
            .map_err(|_| MemError::OutOfMemory)?;
        // The child maps the same shared frames: count its mappings.
        cpt.for_each(&mut KernelFrames, 0, USER_TOP, |_, e| {
            if e & Pte::BORROWED.bits() != 0 {
                shared_incref(e & ADDR_MASK);
            }
        });
        child.image_end = self.image_end;
        child.brk = self.brk;
        child.regions = regions;
        Ok(())
    }

    /// Releases the process's kernel-heap blocks, mappings (writing shared file pages back) and
    /// user memory (exit, and exec's old image).
    pub fn release(&mut self, pt: PageTable) {
        crate::sysmem::free_all_kblocks(self);
        if let Some(mut regions) = self.regions.take() {
            regions.clear(|r| unmap_region_pages(pt, &r));
        }
        if pt.root != 0 {
            uvm::dealloc_range(pt, &mut KernelFrames, 0, USER_TOP);
            flush_if_current(pt);
        }
        self.brk = 0;
        self.image_end = 0;
    }

    /// A page fault at `addr`: true if it was a first touch of mapped memory and is now resolved
    /// (false: the access is not allowed, or memory is out; the process is killed).
    pub fn handle_fault(&mut self, pt: PageTable, addr: u64, write: bool, exec: bool) -> bool {
        let Some(regions) = &self.regions else {
            return false;
        };
        let Some(r) = regions.find(addr) else {
            return false;
        };
        if r.prot.is_empty()
            || (write && !r.prot.contains(Prot::WRITE))
            || (exec && !r.prot.contains(Prot::EXEC))
        {
            return false;
        }
        let page = addr & !(PAGE - 1);
        let f = &mut KernelFrames;
        if pt.lookup(f, page).is_some() {
            return false; // present: a protection fault
        }
        let Some(pa) = f.alloc() else { return false };
        if let Backing::File { handle, .. } = &r.backing {
            let off = r.file_offset(page).unwrap_or(0);
            if !read_file_page(handle.file(), off, pa) {
                // SAFETY: the frame was never mapped.
                unsafe { f.free(pa) };
                return false;
            }
        }
        let mut flags = pte_flags(r.prot);
        if r.sharing == Sharing::Shared {
            if !shared_register(pa) {
                // SAFETY: never mapped.
                unsafe { f.free(pa) };
                return false;
            }
            flags |= Pte::BORROWED;
        }
        if pt.map(f, page, pa, flags).is_err() {
            if r.sharing == Sharing::Shared {
                shared_decref(pa);
            } else {
                // SAFETY: never mapped.
                unsafe { f.free(pa) };
            }
            return false;
        }
        true
    }

    /// Makes sure every mapped page of `[addr, addr + len)` is present, so that a later copy
    /// under a lock never has to read a file. Stops quietly at the first page that cannot be.
    pub fn prefault(&mut self, pt: PageTable, addr: u64, len: u64, write: bool) {
        if self.regions.is_none() || len == 0 {
            return;
        }
        let Some(end) = addr.checked_add(len) else {
            return;
        };
        let mut page = addr & !(PAGE - 1);
        while page < end.min(USER_TOP) {
            if pt.lookup(&mut KernelFrames, page).is_none()
                && !self.handle_fault(pt, page, write, false)
            {
                return;
            }
            page += PAGE;
        }
    }

    /// Whether every page of `[addr, addr + len)` is user memory the process may access this way:
    /// mapped with the right permissions, or inside an mmap region that allows it (to be faulted
    /// in). System calls check their buffers with this first, so a bad buffer fails with -1 even
    /// when no byte would have been copied.
    pub fn range_ok(&self, pt: PageTable, addr: u64, len: u64, write: bool) -> bool {
        if len == 0 {
            return true;
        }
        let Some(end) = addr.checked_add(len) else {
            return false;
        };
        if end > USER_TOP {
            return false;
        }
        let mut page = addr & !(PAGE - 1);
        while page < end {
            let ok = match pt.lookup(&mut KernelFrames, page) {
                Some(e) => e & Pte::USER.bits() != 0 && (!write || e & Pte::WRITE.bits() != 0),
                None => self
                    .regions
                    .as_ref()
                    .and_then(|r| r.find(page))
                    .is_some_and(|r| {
                        r.prot.contains(Prot::READ) && (!write || r.prot.contains(Prot::WRITE))
                    }),
            };
            if !ok {
                return false;
            }
            page += PAGE;
        }
        true
    }

    /// `mmap`: returns the address.
    #[allow(clippy::too_many_arguments)]
    pub fn mmap(
        &mut self,
        pt: PageTable,
        hint: u64,
        len: u64,
        prot: Prot,
        sharing: Sharing,
        fixed: bool,
        backing: Backing<MapFile>,
    ) -> Result<u64, MemError> {
        use xv6_abi::layout::{MMAP_BASE, MMAP_TOP};
        let len = page_up(len).ok_or(MemError::Invalid)?;
        if len == 0 || len > MMAP_TOP - MMAP_BASE {
            return Err(MemError::Invalid);
        }
        if self.regions.is_none() {
            self.regions = Some(RegionList::new(NMMAP));
        }
        let regions = self.regions.as_mut().expect("just created");
        let start = if fixed {
            if !hint.is_multiple_of(PAGE)
                || hint < MMAP_BASE
                || hint.checked_add(len).is_none_or(|e| e > MMAP_TOP)
            {
                return Err(MemError::Invalid);
            }
            // Replace what is there; refuse up front if the new region cannot fit the count.
            if regions.len() + 2 > regions.max_regions() {
                return Err(MemError::OutOfMemory);
            }
            regions
                .remove_range(hint, len, |r| unmap_region_pages(pt, &r))
                .map_err(|_| MemError::OutOfMemory)?;
            flush_if_current(pt);
            hint
        } else {
            let h = (hint.is_multiple_of(PAGE) && hint != 0).then_some(hint);
            regions
                .find_gap(len, PAGE, MMAP_BASE, MMAP_TOP, h)
                .ok_or(MemError::OutOfMemory)?
        };
        regions
            .insert(Region {
                start,
                len,
                prot,
                sharing,
                backing,
            })
            .map_err(|e| match e {
                vmregions::RegionError::Overlap => MemError::Invalid,
                _ => MemError::OutOfMemory,
            })?;
        Ok(start)
    }

    /// `munmap` of `[addr, addr + len)`.
    pub fn munmap(&mut self, pt: PageTable, addr: u64, len: u64) -> Result<(), MemError> {
        let len = page_up(len).ok_or(MemError::Invalid)?;
        if !addr.is_multiple_of(PAGE)
            || len == 0
            || addr.checked_add(len).is_none_or(|e| e > USER_TOP)
        {
            return Err(MemError::Invalid);
        }
        let Some(regions) = self.regions.as_mut() else {
            return Ok(());
        };
        regions
            .remove_range(addr, len, |r| unmap_region_pages(pt, &r))
            .map_err(|_| MemError::OutOfMemory)?;
        if regions.is_empty() {
            // Give the list's nodes back to the kernel heap as well.
            self.regions = None;
        }
        flush_if_current(pt);
        Ok(())
    }

    /// `msync` of `[addr, addr + len)`: writes dirty shared file pages back. Fails if part of the
    /// range is not mapped.
    pub fn msync(&mut self, pt: PageTable, addr: u64, len: u64) -> Result<(), MemError> {
        let len = page_up(len).ok_or(MemError::Invalid)?;
        let end = addr.checked_add(len).ok_or(MemError::Invalid)?;
        if !addr.is_multiple_of(PAGE) || len == 0 || end > USER_TOP {
            return Err(MemError::Invalid);
        }
        let Some(regions) = self.regions.as_ref() else {
            return Err(MemError::Invalid);
        };
        // Covered without holes?
        let mut at = addr;
        while at < end {
            match regions.find(at) {
                Some(r) => at = r.end(),
                None => return Err(MemError::Invalid),
            }
        }
        let mut at = addr;
        while at < end {
            let r = regions.find(at).expect("checked above");
            let to = r.end().min(end);
            writeback(pt, r, at, to, true);
            at = to;
        }
        flush_if_current(pt);
        Ok(())
    }
}

/// Reads the file page at `off` into frame `pa` (zero past the end of the file).
fn read_file_page(f: &FileRef, off: u64, pa: u64) -> bool {
    let Some(ip) = f.inode() else { return false };
    let Ok(off) = u32::try_from(off) else {
        return true;
    };
    // SAFETY: the frame is ours (just allocated, not mapped) and 4 KiB at p2v(pa).
    let frame = unsafe { core::slice::from_raw_parts_mut(p2v(pa) as *mut u8, PAGE as usize) };
    let l = ip.lock();
    l.read_kernel(off, frame).is_some()
}

/// Writes the dirty pages of shared file region `r` within `[from, to)` back to its file (not
/// past the file's end); with `clean`, clears their dirty bits.
fn writeback(pt: PageTable, r: &Mapping, from: u64, to: u64, clean: bool) {
    let Backing::File { handle, .. } = &r.backing else {
        return;
    };
    if r.sharing != Sharing::Shared || !handle.file().writable() {
        return;
    }
    let Some(ip) = handle.file().inode() else {
        return;
    };
    let f = &mut KernelFrames;
    let mut page = from;
    while page < to {
        let dirty = pt.lookup(f, page).filter(|e| e & Pte::DIRTY.bits() != 0);
        if let Some(e) = dirty {
            let pa = e & ADDR_MASK;
            let off = r.file_offset(page).unwrap_or(0);
            // One block per transaction keeps each well inside the log.
            let mut done = 0u64;
            while done < PAGE {
                log::begin_op();
                let l = ip.lock();
                let size = l.size() as u64;
                let pos = off + done;
                let n = if pos >= size {
                    0
                } else {
                    (size - pos).min(1024).min(PAGE - done)
                };
                if n > 0 {
                    // SAFETY: the frame is mapped by this region; we read PAGE bytes of it.
                    let bytes = unsafe {
                        core::slice::from_raw_parts((p2v(pa) + done) as *const u8, n as usize)
                    };
                    l.write_kernel(pos as u32, bytes);
                }
                drop(l);
                log::end_op();
                if n < 1024 {
                    break;
                }
                done += n;
            }
            if clean {
                pt.protect(
                    f,
                    page,
                    Pte::from_bits_truncate(
                        e & !ADDR_MASK & !Pte::DIRTY.bits() & !Pte::PRESENT.bits(),
                    ),
                );
            }
        }
        page += PAGE;
    }
}

/// Unmaps the pages of a region being removed: writes shared file pages back, frees private
/// pages, drops a reference to shared ones.
fn unmap_region_pages(pt: PageTable, r: &Mapping) {
    writeback(pt, r, r.start, r.end(), false);
    let f = &mut KernelFrames;
    let mut page = r.start;
    while page < r.end() {
        if let Some(e) = pt.unmap(f, page) {
            let pa = e & ADDR_MASK;
            if e & Pte::BORROWED.bits() != 0 {
                shared_decref(pa);
            } else {
                // SAFETY: a private page belonged to this mapping alone.
                unsafe { f.free(pa) };
            }
        }
        page += PAGE;
    }
}

/// Reloads CR3 if `pt` is the running table (after unmapping).
pub fn flush_if_current(pt: PageTable) {
    if crate::arch::cr3() == pt.root {
        // SAFETY: reloading the current table only flushes the TLB.
        unsafe { crate::arch::set_cr3(pt.root) };
    }
}
