//! Memory system calls: `kmalloc`/`kmfree` (the kernel heap exposed for teaching and testing),
//! `meminfo`, and `mmap`/`munmap`/`msync`.

use crate::mem::HEAP;
use crate::mm::MemState;
use crate::proc;
use crate::syscall::{arg, copy_out};
use crate::trap::TrapFrame;
use core::ptr::NonNull;
use xv6_abi::param::KMALLOC_CAP;

/// `kmalloc(n)`: a block of the kernel heap, or 0 for n outside 1..=4096, when the process holds
/// its cap, or when memory is out. The block is remembered so that `kmfree` can check it and
/// `exit` can free it.
pub fn kmalloc(tf: &TrapFrame) -> i64 {
    let n = arg(tf, 0);
    if n == 0 || n > 4096 {
        return 0;
    }
    let n = n as usize;
    let p = proc::myproc();
    if p.mm.kbytes + n > KMALLOC_CAP || p.mm.kblocks.try_reserve(1).is_err() {
        return 0;
    }
    let Some(b) = HEAP.lock().kmalloc(n) else {
        return 0;
    };
    p.mm.kblocks.push((b.as_ptr() as u64, n));
    p.mm.kbytes += n;
    b.as_ptr() as i64
}

/// `kmfree(p)`: 0 for a block this process got from `kmalloc` and has not freed; -1 for anything
/// else, with nothing changed.
pub fn kmfree(tf: &TrapFrame) -> i64 {
    let a = arg(tf, 0);
    let p = proc::myproc();
    let Some(i) = p.mm.kblocks.iter().position(|&(b, _)| b == a) else {
        return -1;
    };
    let (b, n) = p.mm.kblocks.swap_remove(i);
    p.mm.kbytes -= n;
    let ptr = NonNull::new(b as *mut u8).expect("kmalloc never returns null blocks");
    if let Err(e) = HEAP.lock().kmfree(ptr) {
        panic!("kmfree of a block the kernel handed out failed: {e}");
    }
    0
}

/// Frees every kernel-heap block a process still holds (at exit).
pub fn free_all_kblocks(mm: &mut MemState) {
    let mut h = HEAP.lock();
    for (b, _) in mm.kblocks.drain(..) {
        if let Some(ptr) = NonNull::new(b as *mut u8) {
            if let Err(e) = h.kmfree(ptr) {
                panic!("freeing a process's kmalloc block: {e}");
            }
        }
    }
    mm.kbytes = 0;
    drop(h);
    mm.kblocks = alloc::vec::Vec::new();
}

/// `meminfo(m)`.
pub fn meminfo(tf: &TrapFrame) -> i64 {
    // Wholly free heap chunks go back to the frame allocator first, so that the figures compare
    // between runs.
    HEAP.lock().release_free_pages();
    let (free, total, heap_used, heap_pages) = crate::mem::usage();
    let vals = [total, free, heap_used, heap_pages, proc::count()];
    let mut b = [0u8; 40];
    for (i, v) in vals.iter().enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    if copy_out(arg(tf, 0), &b).is_err() {
        return -1;
    }
    0
}

/// `mmap(addr, length, prot, flags, fd, offset)`.
pub fn mmap(_tf: &TrapFrame) -> i64 {
    -1
}

/// `munmap(addr, length)`.
pub fn munmap(_tf: &TrapFrame) -> i64 {
    -1
}

/// `msync(addr, length, flags)`.
pub fn msync(_tf: &TrapFrame) -> i64 {
    -1
}
