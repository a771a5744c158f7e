//! The xv6 user library: what a user program needs beyond `core` and `alloc`, and the pure logic
//! of the programs in `src/bin`.
//!
//! With the `user` feature (the real build, see `xtask/src/build.rs`) the library supplies the
//! bare-metal run time:
//!
//! - [`entry!`], which defines `_start` and calls the program's `main(Args) -> i32` with the
//!   arguments the kernel passes in `rdi`/`rsi` (docs/ABI.md), then `exit`s with its result;
//! - [`sys`]: one raw stub per system call, generated from [`xv6_abi::with_syscalls!`], and thin
//!   safe wrappers over them;
//! - [`print!`], [`println!`], [`eprint!`], [`eprintln!`], [`fprint!`] and [`fprintln!`], each
//!   formatting into a buffer and writing it with as few `write` calls as it can;
//! - a panic handler printing `panic: <message>` on descriptor 2 and exiting with -1;
//! - the global allocator: the `kmalloc` crate's bounded heap over `sbrk` ([`heap`]), so that
//!   `alloc::{vec, string, boxed}` work;
//! - `memcpy`, `memmove`, `memset`, `memcmp`, `bcmp` and `rust_eh_personality`, which the host
//!   target's `compiler_builtins` leaves to a libc.
//!
//! Without the feature only the pure parts build (argument iteration, formatting buffers, path
//! handling, the shell parser, grep's matcher, wc's counter, ls's formatting, the sbrk page source),
//! and they are unit-tested on the host.
#![no_std]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod args;
pub mod check;
pub mod cpath;
pub mod grep;
pub mod heap;
pub mod io;
pub mod ls;
pub use xv6_mem as mem;
pub mod num;
pub mod path;
pub mod shparse;
pub mod wc;

#[cfg(feature = "user")]
pub mod mem_sys;
#[cfg(feature = "user")]
pub mod rt;
#[cfg(feature = "user")]
pub mod sys;

pub use args::Args;
pub use io::BStr;
pub use xv6_abi as abi;

/// Defines the program's entry point `_start`, which calls `$main` (a `fn(Args) -> i32`) with the
/// program's arguments and exits with the status it returns.
///
/// ```ignore
/// #![no_std]
/// #![no_main]
/// use xv6_user::{println, Args};
/// xv6_user::entry!(main);
/// fn main(args: Args) -> i32 {
///     println!("{} arguments", args.len());
///     0
/// }
/// ```
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        /// Called only by `_start`, with the kernel's `argc` and `argv` (docs/ABI.md).
        #[no_mangle]
        unsafe extern "C" fn __xv6_user_entry(argc: u64, argv: *const *const u8) -> ! {
            let main: fn($crate::Args) -> i32 = $main;
            // SAFETY: `_start` below jumps here straight from the kernel, which passes `argc`
            // and `argv` as docs/ABI.md describes.
            unsafe { $crate::rt::start(argc, argv, main) }
        }

        // The kernel enters with rsp + 8 16-byte aligned, as at a function's entry, so `_start`
        // only ends the frame-pointer chain and jumps.
        ::core::arch::global_asm!(
            ".pushsection .text.start, \"ax\", @progbits",
            ".globl _start",
            ".type _start, @function",
            "_start:",
            "xor ebp, ebp",
            "jmp {entry}",
            ".size _start, . - _start",
            ".popsection",
            entry = sym __xv6_user_entry,
        );
    };
}

/// Prints to standard output (descriptor 1), formatting into a buffer first.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::io::_print(1, ::core::format_args!($($arg)*)) };
}

/// Prints a line to standard output (descriptor 1).
#[macro_export]
macro_rules! println {
    () => { $crate::io::_print(1, ::core::format_args!("\n")) };
    ($($arg:tt)*) => {
        $crate::io::_print(1, ::core::format_args!("{}\n", ::core::format_args!($($arg)*)))
    };
}

/// Prints to standard error (descriptor 2).
#[macro_export]
macro_rules! eprint {
    ($($arg:tt)*) => { $crate::io::_print(2, ::core::format_args!($($arg)*)) };
}

/// Prints a line to standard error (descriptor 2).
#[macro_export]
macro_rules! eprintln {
    () => { $crate::io::_print(2, ::core::format_args!("\n")) };
    ($($arg:tt)*) => {
        $crate::io::_print(2, ::core::format_args!("{}\n", ::core::format_args!($($arg)*)))
    };
}

/// Prints to descriptor `$fd`: `fprint!(fd, "...", args)`.
#[macro_export]
macro_rules! fprint {
    ($fd:expr, $($arg:tt)*) => { $crate::io::_print($fd, ::core::format_args!($($arg)*)) };
}

/// Prints a line to descriptor `$fd`.
#[macro_export]
macro_rules! fprintln {
    ($fd:expr) => { $crate::io::_print($fd, ::core::format_args!("\n")) };
    ($fd:expr, $($arg:tt)*) => {
        $crate::io::_print($fd, ::core::format_args!("{}\n", ::core::format_args!($($arg)*)))
    };
}
