//! Physical memory and the kernel heap: `kalloc` owns every free frame, the kernel heap is `kmalloc`
//! over `kalloc` (and is the global allocator, so `alloc::{Box, Vec}` work), and the kernel's page
//! table maps the kernel image with the rights each section needs and all RAM at PHYS_OFFSET.
//!
//! The heap is `kmalloc`'s bounded heap unless the command line starts with `heap=classic`
//! (K&R's heap, for comparison; `heap=bounded` names the default): one kernel build runs on
//! either, chosen in [`init`] before anything is allocated.
//!
//! The frame allocator and heap locks are `spin` mutexes that do not disable interrupts. That is
//! sound here because the kernel runs with interrupts off everywhere except the scheduler's idle
//! wait, where it holds no lock, and interrupt handlers allocate nothing.

use crate::arch;
use core::sync::atomic::{AtomicU16, Ordering};
use kalloc::{Frame, LockedFrameAllocator, PhysAddr};
use kmalloc::{AnyHeap, HeapKind, LockedHeap, RawHeap};
use xv6_kernel::bootinfo::{self, BootInfo, PhysRange};
use xv6_kernel::layout::{p2v, v2p, KERNBASE, PHYS_OFFSET};
use xv6_kernel::paging::{PageTable, Pte, TableFrames};

/// Every free physical frame.
pub static FRAMES: LockedFrameAllocator = LockedFrameAllocator::new(PHYS_OFFSET as usize);

/// The kernel heap over frames from [`FRAMES`]: the bounded heap, or K&R's (see the module docs).
#[global_allocator]
pub static HEAP: LockedHeap<AnyHeap<&'static LockedFrameAllocator>> =
    LockedHeap::new(AnyHeap::new(HeapKind::Bounded, &FRAMES));

/// The kernel's page table; every process's table shares its upper half.
pub static mut KERNEL_PT: PageTable = PageTable { root: 0 };

/// Page-table frames from `kalloc`, reached through the direct map.
#[derive(Debug)]
pub struct KernelFrames;

// SAFETY: frames come zeroed from kalloc, which hands each out once; the direct map reaches them.
unsafe impl TableFrames for KernelFrames {
    fn alloc(&mut self) -> Option<u64> {
        let f = FRAMES.lock().allocate().ok()?;
        let pa = f.start().as_u64();
        // SAFETY: the frame is ours and mapped at p2v(pa) for 4096 bytes.
        unsafe { core::ptr::write_bytes(p2v(pa) as *mut u8, 0, 4096) };
        Some(pa)
    }
    unsafe fn free(&mut self, pa: u64) {
        let f = Frame::containing(PhysAddr::new(pa));
        // SAFETY: the caller guarantees nothing uses the frame.
        if let Err(e) = unsafe { FRAMES.lock().free(f) } {
            panic!("freeing frame {pa:#x}: {e}");
        }
    }
    fn table(&self, pa: u64) -> *mut [u64; 512] {
        p2v(pa) as *mut [u64; 512]
    }
    fn share(&mut self, pa: u64) {
        // Relaxed: the sharer is the forking process itself, which holds the frame throughout.
        let n = share_count(pa).fetch_add(1, Ordering::Relaxed);
        assert!(n < u16::MAX, "frame {pa:#x} shared too often");
    }
    fn is_shared(&self, pa: u64) -> bool {
        share_count(pa).load(Ordering::Acquire) != 0
    }
    unsafe fn release(&mut self, pa: u64) {
        // One holder less: decrement the extra holders, or, if there are none, this was the last
        // holder and the frame is freed. AcqRel orders every earlier use of the frame by the other
        // holders before the free.
        let last = share_count(pa)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_err();
        if last {
            // SAFETY: the caller's mapping is gone and no other holder is left.
            unsafe { self.free(pa) };
        }
    }
}

/// Extra holders of each RAM frame (copy-on-write pages after fork), by frame number: 0 means
/// one holder (or a free frame). Set once in [`init`] before other CPUs start, read-only (as a
/// slice; the counts are atomics) afterwards.
static mut SHARES: &[AtomicU16] = &[];

fn share_count(pa: u64) -> &'static AtomicU16 {
    // SAFETY: SHARES is written once at boot, before any page is shared (see its doc).
    let table = unsafe { SHARES };
    &table[(pa / 4096) as usize]
}

/// Allocates [`SHARES`] for every frame below `top`.
fn init_shares(top: u64) {
    let n = (top / 4096) as usize;
    let bytes = n * core::mem::size_of::<AtomicU16>();
    let frames = bytes.div_ceil(4096);
    let first = FRAMES
        .lock()
        .allocate_contiguous(frames, 1)
        .expect("no memory for the frame share counts");
    let p = p2v(first.start().as_u64()) as *mut AtomicU16;
    // SAFETY: `frames` contiguous frames are ours, mapped at p2v, enough for `n` counts; zero bytes
    // are valid AtomicU16s; single CPU at boot, nothing reads SHARES yet.
    unsafe {
        core::ptr::write_bytes(p as *mut u8, 0, frames * 4096);
        SHARES = core::slice::from_raw_parts(p, n);
    }
}

/// A zeroed frame; its physical address.
pub fn alloc_frame() -> Option<u64> {
    KernelFrames.alloc()
}

extern "C" {
    static _text_start: u8;
    static _text_end: u8;
    static _rodata_end: u8;
    static _end: u8;
}

fn sym(s: &u8) -> u64 {
    s as *const u8 as u64
}

/// Chooses the heap from the command line, hands RAM to the frame allocator, builds the kernel's
/// page table and switches to it.
pub fn init(bi: &BootInfo) {
    if let Some(name) = bi.heap_option().0 {
        match HeapKind::from_name(name) {
            Some(kind) => {
                assert!(
                    HEAP.lock().switch_to(kind, &FRAMES),
                    "the heap was used before the command line was read"
                );
                crate::println!("kmalloc: running on the {kind:?} heap");
            }
            None => crate::println!(
                "kmalloc: unknown heap `{}` (bounded or classic): keeping the bounded heap",
                core::str::from_utf8(name).unwrap_or("?")
            ),
        }
    }
    // SAFETY: linker-script symbols; only their addresses are used.
    let (text, etext, erodata, end) = unsafe {
        (
            sym(&_text_start),
            sym(&_text_end),
            sym(&_rodata_end),
            sym(&_end),
        )
    };
    let kernel = PhysRange {
        start: 0x10_0000,
        end: v2p(end).expect("kernel end in the image"),
    };
    // The boot page tables map only the first 4 GiB at PHYS_OFFSET: take that RAM first, build the
    // real direct map from it, then add the rest.
    const BOOT_MAPPED: u64 = 4 << 30;
    let mut high = [PhysRange::default(); bootinfo::MAX_REGIONS * 2];
    let mut nhigh = 0;
    bootinfo::usable(bi.ram(), &[kernel], |r| {
        let low_end = r.end.min(BOOT_MAPPED);
        if r.start < low_end {
            add_range(r.start, low_end);
        }
        if r.end > BOOT_MAPPED && nhigh < high.len() {
            high[nhigh] = PhysRange {
                start: r.start.max(BOOT_MAPPED),
                end: r.end,
            };
            nhigh += 1;
        }
    });

    let f = &mut KernelFrames;
    let pt = PageTable::new(f).expect("no memory for the kernel page table");
    let data = Pte::WRITE | Pte::NO_EXECUTE;
    // The direct map covers all of [0, 4 GiB) (firmware tables and device registers live in the
    // holes between RAM ranges; the PCI hole from 3 GiB is mapped uncached) and all RAM above.
    let top = bi.top_of_ram().max(BOOT_MAPPED).next_multiple_of(2 << 20);
    let mut pa = 0;
    while pa < top {
        let flags = if (3 << 30..BOOT_MAPPED).contains(&pa) {
            data | Pte::NO_CACHE
        } else {
            data
        };
        pt.map_range(f, p2v(pa), pa, 2 << 20, flags)
            .expect("mapping physical memory");
        pa += 2 << 20;
    }
    let mut va = text;
    while va < end {
        let flags = if va < etext {
            Pte::empty()
        } else if va < erodata {
            Pte::NO_EXECUTE
        } else {
            data
        };
        pt.map(f, va, va - KERNBASE, flags | Pte::BORROWED)
            .expect("mapping the kernel");
        va += 4096;
    }
    // SAFETY: single CPU at boot; the new table maps the kernel image, its stack (in .bss) and the
    // direct map exactly where the boot tables did.
    unsafe {
        KERNEL_PT = pt;
        arch::set_cr3(pt.root);
    }
    for r in &high[..nhigh] {
        add_range(r.start, r.end);
    }
    init_shares(bi.top_of_ram());
    // xv6's morecore: the bounded heap takes a page at a time for small blocks and gives each page
    // back when it is wholly free (but one spare), so memory flows back to user processes.
    HEAP.lock().set_growth_limit(1);
}

fn add_range(start: u64, end: u64) {
    // SAFETY: the range is RAM from the firmware's map, minus low memory and the kernel image, so
    // nothing else owns it, and the direct map covers it.
    let r = unsafe {
        FRAMES
            .lock()
            .add_range(PhysAddr::new(start), PhysAddr::new(end))
    };
    if let Err(e) = r {
        crate::println!("kalloc: ignoring RAM {start:#x}..{end:#x}: {e:?}");
    }
}

/// The kernel page table (after `init`).
pub fn kernel_pt() -> PageTable {
    // SAFETY: written once in `init` before other CPUs start; read-only afterwards.
    unsafe { KERNEL_PT }
}

/// Frames free now, in O(1) (sbrk asks on every growth).
pub fn free_frames() -> u64 {
    FRAMES.lock().free_frames()
}

/// Free frames, total frames, heap bytes in use, heap pages held.
pub fn usage() -> (u64, u64, u64, u64) {
    let s = FRAMES.lock().stats();
    let h = HEAP.lock().stats();
    (s.free, s.total, h.bytes_in_use as u64, h.pages_held as u64)
}

/// `Box::new` that returns None instead of stopping the kernel when the heap is exhausted (every
/// allocation a user program can cause goes through here or `try_reserve`).
pub fn try_box<T>(v: T) -> Option<alloc::boxed::Box<T>> {
    let layout = core::alloc::Layout::new::<T>();
    if layout.size() == 0 {
        return Some(alloc::boxed::Box::new(v));
    }
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { alloc::alloc::alloc(layout) } as *mut T;
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` is a fresh allocation of T's layout from the global allocator, which Box uses.
    unsafe {
        p.write(v);
        Some(alloc::boxed::Box::from_raw(p))
    }
}

/// Reloads CR3 (after the kernel table lost a mapping).
pub fn flush_tlb() {
    // SAFETY: reloading the current table only flushes the TLB.
    unsafe { arch::set_cr3(arch::cr3()) };
}

/// Backs the kernel page at `va` (in a part of the kernel half this kernel reserves for stacks)
/// with a fresh frame, writable and not executable. For boot-time stacks: panics when memory or
/// page-table frames run out.
pub fn map_fresh_kernel_page(va: u64) {
    let pa = alloc_frame().expect("no memory for a kernel stack");
    kernel_pt()
        .map(
            &mut KernelFrames,
            va,
            pa,
            xv6_kernel::paging::Pte::WRITE | xv6_kernel::paging::Pte::NO_EXECUTE,
        )
        .expect("mapping a kernel stack page");
}

/// Frees a kernel-heap block that `kmalloc` (the system call) handed out with size `n`.
pub fn free_kmalloc_block(a: u64, n: usize) {
    let ptr = core::ptr::NonNull::new(a as *mut u8).expect("kmalloc never returns null blocks");
    let layout = core::alloc::Layout::from_size_align(n, 16).expect("a kmalloc size");
    // SAFETY: `a` came from `kmalloc(n)`, which is `allocate` with this layout, and its record
    // was just removed by the caller, so it is freed once.
    unsafe { HEAP.lock().deallocate(ptr, layout) };
}

/// A new user page table: empty lower half, the kernel's upper half.
pub fn new_user_table() -> Option<PageTable> {
    xv6_kernel::uvm::new_user_table(&mut KernelFrames, kernel_pt())
}
