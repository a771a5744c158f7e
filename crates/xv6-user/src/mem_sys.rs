//! Wrappers for the memory system calls of docs/ABI.md: `kmalloc` (22), `kmfree` (23), `mmap`
//! (24), `munmap` (25), `msync` (26) and `meminfo` (27).
//!
//! They return what the kernel returns, unconverted, because the tests that use them check the
//! exact values: `kmalloc` 0 on failure, `mmap` [`MAP_FAILED`] on failure, the others -1.

use crate::sys::raw;
pub use xv6_abi::mman::*;
pub use xv6_abi::MemInfo;

/// `mmap`'s failure value as a `u64`: `(void *)-1`.
pub const MAP_FAILED_U64: u64 = u64::MAX;

/// `kmalloc(n)`: an opaque kernel address (which the program cannot dereference), or 0.
pub fn kmalloc(n: u64) -> u64 {
    // SAFETY: no user memory is read or written; the result is only a number to this program.
    unsafe { raw::kmalloc(n) as u64 }
}

/// `kmfree(p)`: 0 for a block this process holds, -1 for anything else (nothing changes).
pub fn kmfree(p: u64) -> i32 {
    // SAFETY: `p` is only compared with the kernel's own records of this process.
    unsafe { raw::kmfree(p as *mut u8) }
}

/// `mmap(addr, length, prot, flags, fd, offset)`: the mapping's address or [`MAP_FAILED_U64`].
///
/// # Safety
///
/// With `MAP_FIXED` the kernel replaces whatever is mapped at `addr`: the caller must not need
/// it (program, heap, stack or other live data).
pub unsafe fn mmap(addr: u64, length: u64, prot: i32, flags: i32, fd: i32, offset: u64) -> u64 {
    // SAFETY: the caller keeps the contract above.
    unsafe { raw::mmap(addr as *mut u8, length, prot, flags, fd, offset) as u64 }
}

/// `munmap(addr, length)`: 0 or -1.
///
/// # Safety
///
/// The range must hold nothing the program still uses (no references into it may be used
/// afterwards).
pub unsafe fn munmap(addr: u64, length: u64) -> i32 {
    // SAFETY: the caller keeps the contract above.
    unsafe { raw::munmap(addr as *mut u8, length) }
}

/// `msync(addr, length, flags)`: writes a shared file mapping's changes back; 0 or -1.
pub fn msync(addr: u64, length: u64, flags: i32) -> i32 {
    // SAFETY: msync only reads the mapping (through the kernel) and writes the file.
    unsafe { raw::msync(addr as *mut u8, length, flags) }
}

/// `meminfo`: the kernel's memory use, or `None` if the call failed.
pub fn meminfo() -> Option<MemInfo> {
    crate::sys::meminfo().ok()
}
