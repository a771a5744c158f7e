//! The symbols the precompiled `core` and `compiler_builtins` expect from a C library. The copies
//! and fills are `xv6_mem`'s (host-tested there).

use xv6_mem as string;

/// C `memcpy`.
///
/// # Safety
/// As C's: `dst` and `src` valid for `n` bytes and not overlapping.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges and that they do not overlap.
    unsafe { string::copy_forward(dst, src, n) };
    dst
}

/// C `memmove`.
///
/// # Safety
/// As C's: both ranges valid for `n` bytes; they may overlap.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges.
    unsafe { string::copy(dst, src, n) };
    dst
}

/// C `memset`.
///
/// # Safety
/// As C's: `dst` valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees `dst` is valid for `n` bytes.
    unsafe { string::fill(dst, c as u8, n) };
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
