//! The bare-metal run time: program start, panic handler, and the functions the host target's
//! `compiler_builtins` expects from a libc.

use crate::Args;

/// Called by the `_start` that [`entry!`](crate::entry) defines: runs `main` and exits with its
/// status.
///
/// # Safety
///
/// `argc` and `argv` are what the kernel passed (docs/ABI.md): `argv` holds `argc` pointers to
/// zero-terminated strings on the user stack, followed by a null pointer.
pub unsafe fn start(argc: u64, argv: *const *const u8, main: fn(Args) -> i32) -> ! {
    // `argc` is an int: only its low 32 bits count.
    let argc = usize::try_from(argc as u32 as i32).unwrap_or(0);
    // SAFETY: the caller passes the kernel's argc/argv, which live as long as the program.
    let args = unsafe { Args::from_raw(argc, argv) };
    let status = main(args);
    crate::sys::exit(status)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    match info.location() {
        Some(l) => crate::eprintln!("panic: {} ({}:{})", info.message(), l.file(), l.line()),
        None => crate::eprintln!("panic: {}", info.message()),
    }
    crate::sys::exit(-1)
}

/// Referenced by the precompiled `core`; never called with `panic = "abort"`.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

/// C's `memcpy`.
///
/// # Safety
///
/// Both ranges valid for `n` bytes, not overlapping.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: same contract.
    unsafe { crate::mem::copy_forward(dst, src, n) };
    dst
}

/// C's `memmove`.
///
/// # Safety
///
/// Both ranges valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: same contract.
    unsafe { crate::mem::copy(dst, src, n) };
    dst
}

/// C's `memset`.
///
/// # Safety
///
/// The range is valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: same contract.
    unsafe { crate::mem::fill(dst, c as u8, n) };
    dst
}

/// C's `memcmp`.
///
/// # Safety
///
/// Both ranges valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract.
    unsafe { crate::mem::compare(a, b, n) }
}

/// C's `bcmp`: zero if equal.
///
/// # Safety
///
/// Both ranges valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract.
    unsafe { crate::mem::compare(a, b, n) }
}

/// C's `strlen`.
///
/// # Safety
///
/// `s` points at a zero-terminated string.
#[no_mangle]
pub unsafe extern "C" fn strlen(s: *const u8) -> usize {
    // SAFETY: same contract.
    unsafe { crate::mem::string_length(s) }
}
