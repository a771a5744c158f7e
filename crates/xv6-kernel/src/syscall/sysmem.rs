//! Memory system calls: `kmalloc`/`kmfree` (the kernel heap exposed for teaching and testing),
//! `meminfo`, and `mmap`/`munmap`/`msync`.

use crate::arch::trap::TrapFrame;
use crate::mm::mem::HEAP;
use crate::proc::proc;
use crate::proc::vm::MapObj;
use crate::syscall::syscall::{arg, arg_int, copy_out};
use kmalloc::RawHeap;
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
    if p.mm.kbytes + n > KMALLOC_CAP || !p.mm.kblocks.reserve_one() {
        return 0;
    }
    let Some(b) = HEAP.lock().kmalloc(n) else {
        return 0;
    };
    p.mm.kblocks.insert(b.as_ptr() as u64, n);
    p.mm.kbytes += n;
    b.as_ptr() as i64
}

/// `kmfree(p)`: 0 for a block this process got from `kmalloc` and has not freed; -1 for anything
/// else, with nothing changed.
pub fn kmfree(tf: &TrapFrame) -> i64 {
    let a = arg(tf, 0);
    let p = proc::myproc();
    // The process's own record says whether `a` is one of its blocks, in O(1); only then is
    // the heap asked to free it (also O(1): the heap's checked `kmfree` would first search its
    // chunks for an arbitrary address, which this record makes unnecessary).
    let Some(n) = p.mm.kblocks.remove(a) else {
        return -1;
    };
    p.mm.kbytes -= n;
    crate::mm::mem::free_kmalloc_block(a, n);
    0
}

/// `meminfo(m)`.
pub fn meminfo(tf: &TrapFrame) -> i64 {
    // Wholly free heap chunks go back to the frame allocator first, so that the figures compare
    // between runs.
    HEAP.lock().release_free_pages();
    let (free, total, heap_used, heap_pages) = crate::mm::mem::usage();
    // Frames promised to heap pages that sbrk granted and nobody touched yet are not counted as
    // free: they are spoken for, and this way touching them leaves the figure unchanged.
    let free = free.saturating_sub(crate::proc::vm::promised());
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
pub fn mmap(tf: &TrapFrame) -> i64 {
    use vmregions::{Backing, Prot, Sharing};
    use xv6_abi::mman::*;
    let (addr, len) = (arg(tf, 0), arg(tf, 1));
    let (prot, flags, fd, off) = (arg_int(tf, 2), arg_int(tf, 3), arg_int(tf, 4), arg(tf, 5));
    const FAIL: i64 = -1;
    if prot & !(PROT_READ | PROT_WRITE | PROT_EXEC) != 0
        || flags & !(MAP_SHARED | MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS) != 0
    {
        return FAIL;
    }
    let sharing = match (flags & MAP_SHARED != 0, flags & MAP_PRIVATE != 0) {
        (true, false) => Sharing::Shared,
        (false, true) => Sharing::Private,
        _ => return FAIL,
    };
    let prot = Prot::from_bits_truncate(prot as u32);
    let p = proc::myproc();
    let backing = if flags & MAP_ANONYMOUS != 0 {
        if sharing == Sharing::Shared {
            // Shared anonymous memory needs an object to hold its frames for every sharer.
            match MapObj::new(None) {
                Some(obj) => Backing::File {
                    handle: obj,
                    offset: 0,
                },
                None => return FAIL,
            }
        } else {
            Backing::Anonymous
        }
    } else {
        if off % 4096 != 0 || fd < 0 || fd as usize >= xv6_abi::param::NOFILE {
            return FAIL;
        }
        let Some(f) = p.ofile[fd as usize].as_ref() else {
            return FAIL;
        };
        let is_file = f
            .inode()
            .is_some_and(|ip| ip.lock().typ() == xv6_abi::stat::T_FILE);
        if !is_file || !f.readable() {
            return FAIL;
        }
        if sharing == Sharing::Shared && prot.contains(Prot::WRITE) && !f.writable() {
            return FAIL;
        }
        match MapObj::new(Some(f)) {
            Some(obj) => Backing::File {
                handle: obj,
                offset: off,
            },
            None => return FAIL,
        }
    };
    match p.mm.mmap(
        p.pt,
        addr,
        len,
        prot,
        sharing,
        flags & MAP_FIXED != 0,
        backing,
    ) {
        Ok(a) => a as i64,
        Err(_) => FAIL,
    }
}

/// `munmap(addr, length)`.
pub fn munmap(tf: &TrapFrame) -> i64 {
    let p = proc::myproc();
    match p.mm.munmap(p.pt, arg(tf, 0), arg(tf, 1)) {
        Ok(()) => 0,
        Err(_) => -1,
    }
}

/// `msync(addr, length, flags)`.
pub fn msync(tf: &TrapFrame) -> i64 {
    use xv6_abi::mman::{MS_ASYNC, MS_INVALIDATE, MS_SYNC};
    if arg_int(tf, 2) & !(MS_ASYNC | MS_INVALIDATE | MS_SYNC) != 0 {
        return -1;
    }
    let flags = arg_int(tf, 2);
    let p = proc::myproc();
    match p.mm.msync(p.pt, arg(tf, 0), arg(tf, 1)) {
        Ok(()) => {
            // MS_SYNC waits until the written-back pages are on the disk, as on Linux; the
            // others leave them to the log's next group commit.
            if flags & MS_SYNC != 0 {
                crate::fs::log::force();
            }
            0
        }
        Err(_) => -1,
    }
}
