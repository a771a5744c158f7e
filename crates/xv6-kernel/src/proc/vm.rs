//! A process's memory: the loaded program, the sbrk heap above it, the stack at the top of user
//! space, the mmap regions, and the kernel-heap blocks it holds through `kmalloc`.
//!
//! # mmap
//!
//! Regions live in a `vmregions::RegionList` (nodes on the kernel heap, at most NMMAP). Pages are
//! allocated on first touch by [`MemState::handle_fault`]: zeroed for anonymous memory, read from
//! the file otherwise. Private pages belong to their page table (fork copies them).
//!
//! A shared mapping is backed by a [`MapObj`]: a counted kernel object that owns the mapping's
//! frames (by page offset) and, for a file mapping, keeps the file open. Page tables map its
//! frames BORROWED; `fork` and region splits share the object, so every process that inherited a
//! shared mapping sees the same frames, whether they were touched before the fork or after. The
//! frames are freed with the object, when the last region referring to it goes. Dirty pages of a
//! shared file mapping are written back at `msync`, `munmap` and exit, never past the file's end.
//! Two processes that map the same file independently get separate objects (there is no page
//! cache); they see each other's writes after `msync`, at their next first touch.
//!
//! # The heap
//!
//! `sbrk` maps nothing: a heap page gets a zeroed frame when first touched (by the program, or by
//! the kernel copying into or out of it). Growth is still refused up front when free memory
//! cannot cover every untouched heap page of every process (see [`promise`]), so a program sees
//! sbrk fail as before rather than dying later, in all but a race with other allocations.
//!
//! Private pages (the program, heap, stack and private mappings) are shared copy-on-write by
//! `fork` (see `uvm`'s module docs); a write fault on one is resolved here before anything else.
//!
//! Everything that changes a page table here either completes or leaves the table as it was.

use crate::fs::file::FileRef;
use crate::fs::log;
use crate::mm::mem::KernelFrames;
pub use crate::proc::mapobj::MapObj;
use core::sync::atomic::{AtomicU64, Ordering};
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

/// A mapping.
pub type Mapping = Region<MapObj>;

/// Why a page fault in user space was not resolved (the process is killed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultError {
    /// No mapping there, or one that does not allow the access.
    Denied,
    /// No frame (or page-table page, or bookkeeping) for the page.
    OutOfMemory,
    /// The mapped file could not be read.
    FileRead,
}

impl core::fmt::Display for FaultError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            FaultError::Denied => "page fault",
            FaultError::OutOfMemory => "out of memory on a page fault",
            FaultError::FileRead => "cannot read the mapped file on a page fault",
        })
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
    pub kblocks: xv6_kernel::blockset::BlockSet,
    /// Bytes of `kblocks`.
    pub kbytes: usize,
    /// mmap regions (created at the first mmap).
    pub regions: Option<RegionList<MapObj>>,
    /// Heap pages below the break not mapped yet (zero-fill on demand); frames for them are
    /// promised in [`PROMISED`].
    pub heap_unmapped: u64,
}

/// Frames promised to heap pages not yet touched, over all processes (see [`promise`]).
static PROMISED: AtomicU64 = AtomicU64::new(0);

/// Frames promised to untouched heap pages now.
pub fn promised() -> u64 {
    PROMISED.load(Ordering::Relaxed)
}

/// Frames promised for `pages` untouched heap pages: the pages, and the page-table pages that
/// mapping them may need (one per 512 pages, plus the upper levels).
fn promise_for(pages: u64) -> u64 {
    if pages == 0 {
        0
    } else {
        pages + pages.div_ceil(512) + 3
    }
}

/// Moves a process's untouched heap pages from `old` to `new`, changing what is promised. A
/// growth is refused (nothing changes) unless the free frames cover every promise, this one
/// included: sbrk fails up front when memory is out, as it did when it mapped everything at
/// once. The promise is a check, not a hold: kernel allocations (the kernel heap, page tables,
/// copy-on-write copies, mmap pages) are not refused for it, so a heap page touched when memory
/// has run out anyway kills its process ("out of memory on a page fault"), like an mmap page.
fn promise(old: u64, new: u64) -> Result<(), MemError> {
    let (was, will) = (promise_for(old), promise_for(new));
    if will <= was {
        PROMISED.fetch_sub(was - will, Ordering::Relaxed);
        return Ok(());
    }
    let more = will - was;
    let free = crate::mm::mem::free_frames();
    PROMISED
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
            p.checked_add(more).filter(|&total| total <= free)
        })
        .map(drop)
        .map_err(|_| MemError::OutOfMemory)
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
            kblocks: xv6_kernel::blockset::BlockSet::new(),
            kbytes: 0,
            regions: None,
            heap_unmapped: 0,
        }
    }

    /// Whether `page` is a heap page (below the break; mapped or not).
    fn in_heap(&self, page: u64) -> bool {
        page >= self.image_end && page_up(self.brk).is_some_and(|top| page < top)
    }

    /// Moves the break to `new`. Growing maps nothing (pages are zero-filled when first touched,
    /// see [`MemState::handle_fault`]) but is refused when free memory cannot cover it (see
    /// [`promise`]); shrinking unmaps and releases what was touched. All or nothing.
    pub fn set_brk(&mut self, pt: PageTable, new: u64) -> Result<(), MemError> {
        if new < self.image_end || new > HEAP_LIMIT {
            return Err(MemError::Invalid);
        }
        let old_top = page_up(self.brk).ok_or(MemError::Invalid)?;
        let new_top = page_up(new).ok_or(MemError::Invalid)?;
        if new_top > old_top {
            let more = (new_top - old_top) / PAGE;
            promise(self.heap_unmapped, self.heap_unmapped + more)?;
            self.heap_unmapped += more;
        } else if new_top < old_top {
            let gone = (old_top - new_top) / PAGE;
            let touched = uvm::dealloc_range(pt, &mut KernelFrames, new_top, old_top);
            flush_range_if_current(pt, new_top, old_top);
            let untouched = gone - touched;
            let left = self.heap_unmapped - untouched;
            let _ = promise(self.heap_unmapped, left);
            self.heap_unmapped = left;
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
        // The child's untouched heap pages need their own promise.
        promise(0, self.heap_unmapped)?;
        let regions = match &self.regions {
            Some(r) => match r.try_clone() {
                Ok(r) => Some(r),
                Err(_) => {
                    let _ = promise(self.heap_unmapped, 0);
                    return Err(MemError::OutOfMemory);
                }
            },
            None => None,
        };
        let copied = uvm::copy_range(pt, cpt, &mut KernelFrames, 0, USER_TOP);
        // The parent's writable pages became copy-on-write: its TLB may still let it write them.
        flush_if_current(pt);
        if copied.is_err() {
            let _ = promise(self.heap_unmapped, 0);
            return Err(MemError::OutOfMemory);
        }
        // Shared frames are mapped BORROWED and belong to their MapObj, which the cloned regions
        // share: copying the entries is all the child needs.
        child.image_end = self.image_end;
        child.brk = self.brk;
        child.heap_unmapped = self.heap_unmapped;
        child.regions = regions;
        Ok(())
    }

    /// Releases the process's kernel-heap blocks, mappings (writing shared file pages back) and
    /// user memory (exit, and exec's old image).
    pub fn release(&mut self, pt: PageTable) {
        // Every kernel-heap block the process still holds from `kmalloc`.
        self.kblocks.drain(crate::mm::mem::free_kmalloc_block);
        self.kbytes = 0;
        if let Some(mut regions) = self.regions.take() {
            regions.clear(|r| unmap_region_pages(pt, &r));
        }
        if pt.root != 0 {
            uvm::dealloc_range(pt, &mut KernelFrames, 0, USER_TOP);
            flush_if_current(pt);
        }
        let _ = promise(self.heap_unmapped, 0);
        self.heap_unmapped = 0;
        self.brk = 0;
        self.image_end = 0;
    }

    /// A page fault at `addr`: Ok if it was a first touch of mapped memory and is now resolved;
    /// otherwise why not (the process is then killed).
    pub fn handle_fault(
        &mut self,
        pt: PageTable,
        addr: u64,
        write: bool,
        exec: bool,
    ) -> Result<(), FaultError> {
        use FaultError::{Denied, FileRead, OutOfMemory};
        if write {
            // A write to a page shared since fork (private memory of any kind): copy it.
            match uvm::break_cow(pt, &mut KernelFrames, addr) {
                Ok(true) => {
                    let page = addr & !(PAGE - 1);
                    flush_range_if_current(pt, page, page + PAGE);
                    return Ok(());
                }
                Ok(false) => {}
                Err(_) => return Err(OutOfMemory),
            }
        }
        let page = addr & !(PAGE - 1);
        if self.in_heap(page) {
            // First touch of a heap page: a zeroed frame (never executable).
            if exec || pt.lookup(&mut KernelFrames, page).is_some() {
                return Err(Denied);
            }
            let f = &mut KernelFrames;
            let Some(pa) = f.alloc() else {
                return Err(OutOfMemory);
            };
            if pt
                .map(f, page, pa, Pte::USER | Pte::WRITE | Pte::NO_EXECUTE)
                .is_err()
            {
                // SAFETY: never mapped.
                unsafe { f.free(pa) };
                return Err(OutOfMemory);
            }
            let _ = promise(self.heap_unmapped, self.heap_unmapped - 1);
            self.heap_unmapped -= 1;
            return Ok(());
        }
        let Some(regions) = &self.regions else {
            return Err(Denied);
        };
        let Some(r) = regions.find(addr) else {
            return Err(Denied);
        };
        if r.prot.is_empty()
            || (write && !r.prot.contains(Prot::WRITE))
            || (exec && !r.prot.contains(Prot::EXEC))
        {
            return Err(Denied);
        }
        let f = &mut KernelFrames;
        if pt.lookup(f, page).is_some() {
            return Err(Denied); // present: a protection fault
        }
        let Some(pa) = f.alloc() else {
            return Err(OutOfMemory);
        };
        let obj = match &r.backing {
            Backing::File { handle, .. } => Some(handle),
            Backing::Anonymous => None,
        };
        let off = r.file_offset(page).unwrap_or(0);
        if r.sharing == Sharing::Shared {
            // Shared mappings always have an object (see `sysmem::mmap`).
            let Some(obj) = obj else {
                // SAFETY: never mapped.
                unsafe { f.free(pa) };
                return Err(Denied);
            };
            let pgno = off / PAGE;
            let pa = match obj.lookup(pgno) {
                Some(existing) => {
                    // SAFETY: never mapped.
                    unsafe { f.free(pa) };
                    existing
                }
                None => {
                    if let Some(file) = obj.file() {
                        if !read_file_page(file, off, pa) {
                            // SAFETY: never mapped.
                            unsafe { f.free(pa) };
                            return Err(FileRead);
                        }
                    }
                    obj.insert(pgno, pa).ok_or(OutOfMemory)?
                }
            };
            return pt
                .map(f, page, pa, pte_flags(r.prot) | Pte::BORROWED)
                .map_err(|_| OutOfMemory);
        }
        if let Some(file) = obj.and_then(|o| o.file()) {
            if !read_file_page(file, off, pa) {
                // SAFETY: the frame was never mapped.
                unsafe { f.free(pa) };
                return Err(FileRead);
            }
        }
        if pt.map(f, page, pa, pte_flags(r.prot)).is_err() {
            // SAFETY: never mapped.
            unsafe { f.free(pa) };
            return Err(OutOfMemory);
        }
        Ok(())
    }

    /// Makes sure every mapped page of `[addr, addr + len)` is present (and, for a write, has
    /// its own frame if it was shared copy-on-write), so that a later copy under a lock never has
    /// to read a file or allocate. Stops quietly at the first page that cannot be.
    pub fn prefault(&mut self, pt: PageTable, addr: u64, len: u64, write: bool) {
        if len == 0 {
            return;
        }
        let Some(end) = addr.checked_add(len) else {
            return;
        };
        let mut page = addr & !(PAGE - 1);
        while page < end.min(USER_TOP) {
            let needed = match pt.lookup(&mut KernelFrames, page) {
                None => self.regions.is_some() || self.in_heap(page),
                Some(e) => write && e & Pte::COW.bits() != 0,
            };
            if needed && self.handle_fault(pt, page, write, false).is_err() {
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
                Some(e) => {
                    e & Pte::USER.bits() != 0 && (!write || e & (Pte::WRITE | Pte::COW).bits() != 0)
                }
                None if self.in_heap(page) => true,
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
        backing: Backing<MapObj>,
    ) -> Result<u64, MemError> {
        use xv6_abi::layout::{MMAP_BASE, MMAP_TOP};
        let len = page_up(len).ok_or(MemError::Invalid)?;
        if len == 0 || len > MMAP_TOP - MMAP_BASE {
            return Err(MemError::Invalid);
        }
        // A file range that wraps is refused here, before MAP_FIXED removes anything (the region
        // list would refuse it too, but only after).
        if let Backing::File { offset, .. } = &backing {
            offset.checked_add(len).ok_or(MemError::Invalid)?;
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
    let Some(file) = handle.file() else {
        return;
    };
    if r.sharing != Sharing::Shared || !file.writable() {
        return;
    }
    let Some(ip) = file.inode() else {
        return;
    };
    // Only mapped pages can be dirty: walk those (a large, mostly untouched mapping costs
    // nothing); `for_each_mapped` runs the writes below, which sleep, between walks.
    let done: Result<(), core::convert::Infallible> =
        uvm::for_each_mapped(pt, &mut KernelFrames, from, to, |f, page, e| {
            if e & Pte::DIRTY.bits() == 0 {
                return Ok(());
            }
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
            Ok(())
        });
    let Ok(()) = done;
}

/// Unmaps the pages of a region being removed: writes shared file pages back, frees private
/// pages, leaves shared frames to their object.
fn unmap_region_pages(pt: PageTable, r: &Mapping) {
    writeback(pt, r, r.start, r.end(), false);
    // Private pages belonged to this mapping alone and are freed; shared frames are mapped
    // BORROWED (they belong to the region's MapObj and go with it), so they are only unmapped.
    uvm::dealloc_range(pt, &mut KernelFrames, r.start, r.end());
}

/// Flushes `[lo, hi)` from the TLB if `pt` is the running table: page by page for a few pages,
/// by reloading CR3 for more.
pub fn flush_range_if_current(pt: PageTable, lo: u64, hi: u64) {
    if crate::arch::cr3() != pt.root {
        return;
    }
    if (hi - lo) / PAGE <= 32 {
        let mut va = lo;
        while va < hi {
            crate::arch::invlpg(va);
            va += PAGE;
        }
    } else {
        flush_if_current(pt);
    }
}

/// Reloads CR3 if `pt` is the running table (after unmapping).
pub fn flush_if_current(pt: PageTable) {
    if crate::arch::cr3() == pt.root {
        // SAFETY: reloading the current table only flushes the TLB.
        unsafe { crate::arch::set_cr3(pt.root) };
    }
}
