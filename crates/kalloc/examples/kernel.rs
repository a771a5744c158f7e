//! A minimal kernel-style user of kalloc, kmalloc and vmregions: frames from a memory map, the
//! kernel heap (`#[global_allocator]`) on those frames, and a process's mmap regions.
//!
//! Built for `x86_64-unknown-none` by `cargo xtask test` (`cargo build -p xv6-kalloc --example
//! kernel --target x86_64-unknown-none`), where it is a `no_std`, `no_main` binary with its own
//! entry point and panic handler; on the host the same code runs as an ordinary program
//! (`cargo run -p xv6-kalloc --example kernel`), on the system allocator.
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

use alloc::vec::Vec;
use kalloc::{LockedFrameAllocator, PhysAddr};
use kmalloc::LockedHeap;
use vmregions::{Backing, Prot, Region, RegionList, Sharing};

// ---- The adoption: these lines are all a kernel writes. ----
/// Where the kernel maps physical memory (identity here: "RAM" is a static array).
const PHYS_OFFSET: usize = 0;
static FRAMES: LockedFrameAllocator = LockedFrameAllocator::new(PHYS_OFFSET);
#[cfg_attr(target_os = "none", global_allocator)]
static HEAP: LockedHeap<kmalloc::Heap<&LockedFrameAllocator>> =
    LockedHeap::new(kmalloc::Heap::new(&FRAMES));

fn init_memory(memory_map: &[(u64, u64)]) {
    for &(start, end) in memory_map {
        // SAFETY: RAM nobody else uses, reachable at PHYS_OFFSET (the memory map's promise).
        let _ = unsafe {
            FRAMES
                .lock()
                .add_range(PhysAddr::new(start), PhysAddr::new(end))
        };
    }
}
// ---- End of the adoption. ----

/// Stand-in for the RAM a firmware memory map would describe.
#[repr(C, align(4096))]
struct Ram([u8; 1 << 20]);
static mut RAM: Ram = Ram([0; 1 << 20]);

/// What the kernel does after boot: take frames, use the heap, map regions for a process.
fn kernel_main() -> u32 {
    // The memory map: two ranges with a hole (here both inside RAM).
    let base = core::ptr::addr_of_mut!(RAM).expose_provenance() as u64;
    init_memory(&[
        (base, base + (512 << 10)),
        (base + (520 << 10), base + (1 << 20)),
    ]);

    let page = FRAMES.lock().allocate().expect("a frame");
    let mut heap_vec: Vec<u64> = Vec::new(); // kmalloc on the frames (on the host: std's heap)
    heap_vec.extend(0..1000);

    let mut regions: RegionList<u32> = RegionList::new(64); // one per process
    let at = regions
        .find_gap(3 << 12, 1 << 12, 0x1000_0000, 0x7000_0000, None)
        .expect("address space");
    regions
        .insert(Region {
            start: at,
            len: 3 << 12,
            prot: Prot::READ | Prot::WRITE,
            sharing: Sharing::Private,
            backing: Backing::Anonymous,
        })
        .expect("insert");
    let found = regions.find(at + 0x1234).is_some();
    regions.clear(|_| {});
    // SAFETY: nobody uses the frame any more.
    unsafe { FRAMES.lock().free(page) }.expect("free");
    let sum: u64 = heap_vec.iter().sum();
    u32::from(found && sum == 499_500)
}

#[cfg(not(target_os = "none"))]
fn main() {
    use std::alloc::{GlobalAlloc, Layout};
    assert_eq!(kernel_main(), 1);
    // On the host std keeps the system allocator; use the kernel heap directly once.
    let l = Layout::from_size_align(4000, 8).unwrap();
    // SAFETY: a non-zero layout, freed right after with the same layout.
    unsafe {
        let p = HEAP.alloc(l);
        assert!(!p.is_null());
        HEAP.dealloc(p, l);
    }
    println!("kernel example: frames, heap and regions work");
}

#[cfg(target_os = "none")]
#[no_mangle]
extern "C" fn _start() -> ! {
    let ok = kernel_main();
    loop {
        core::hint::black_box(ok);
        core::hint::spin_loop();
    }
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
