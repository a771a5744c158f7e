//! The symbols the precompiled `core` and `compiler_builtins` expect from a C library.
//!
//! Written with `rep movsb` / `rep stosb` so that LLVM cannot recognise the loops and turn them back
//! into calls to these very functions.

use core::arch::asm;

/// C `memcpy`.
///
/// # Safety
/// As C's: `dst` and `src` valid for `n` bytes and not overlapping.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges are valid for `n` bytes.
    unsafe {
        asm!("rep movsb", inout("rdi") dst => _, inout("rsi") src => _, inout("rcx") n => _,
             options(nostack, preserves_flags))
    };
    dst
}

/// C `memmove`.
///
/// # Safety
/// As C's: both ranges valid for `n` bytes; they may overlap.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize).wrapping_add(n) {
        // SAFETY: a forward copy is correct when dst is below src or the ranges do not overlap.
        unsafe { memcpy(dst, src, n) }
    } else {
        // SAFETY: copy backwards (direction flag set, restored after) over the same valid ranges.
        unsafe {
            asm!("std", "rep movsb", "cld",
                 inout("rdi") dst.add(n - 1) => _, inout("rsi") src.add(n - 1) => _,
                 inout("rcx") n => _, options(nostack))
        };
        dst
    }
}

/// C `memset`.
///
/// # Safety
/// As C's: `dst` valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees `dst` is valid for `n` bytes.
    unsafe {
        asm!("rep stosb", inout("rdi") dst => _, inout("rcx") n => _, in("al") c as u8,
             options(nostack, preserves_flags))
    };
    dst
}

/// C `memcmp`.
///
/// # Safety
/// As C's: both valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: i < n and both are valid for n bytes.
        let (x, y) = unsafe {
            (
                core::ptr::read_volatile(a.add(i)),
                core::ptr::read_volatile(b.add(i)),
            )
        };
        if x != y {
            return x as i32 - y as i32;
        }
        i += 1;
    }
    0
}

/// C `bcmp` (zero when equal).
///
/// # Safety
/// As `memcmp`.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as memcmp.
    unsafe { memcmp(a, b, n) }
}

/// Never called: panics abort. The linker wants the symbol because `core` was built with unwinding.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

/// Never called: the precompiled `alloc` has landing pads that name it, but with panic=abort no
/// unwinding ever starts.
#[no_mangle]
pub extern "C" fn _Unwind_Resume() -> ! {
    crate::arch::halt_forever()
}
