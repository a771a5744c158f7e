//! System call dispatch, argument fetching, and the process and memory calls.
//!
//! The dispatcher is generated from `xv6_abi::with_syscalls!`, the same table the user stubs come
//! from: a call added there without a handler here does not compile. Every user pointer goes
//! through `copy_in`/`copy_out`, which check the page tables; every failure returns -1.

use crate::arch::trap::TrapFrame;
use crate::mm::mem::KernelFrames;
use crate::proc::exec::{self, Args};
use crate::proc::proc;
use xv6_abi::param::{MAXARG, MAXPATH};
use xv6_kernel::uvm::{self, Fault, StrError};

/// The `n`th argument register.
pub fn arg(tf: &TrapFrame, n: usize) -> u64 {
    match n {
        0 => tf.rdi,
        1 => tf.rsi,
        2 => tf.rdx,
        3 => tf.r10,
        4 => tf.r8,
        _ => tf.r9,
    }
}

/// An `int` argument: the low 32 bits, sign-extended (C leaves the upper half undefined).
pub fn arg_int(tf: &TrapFrame, n: usize) -> i32 {
    arg(tf, n) as u32 as i32
}

/// Retries a user access after letting the memory manager resolve a first touch.
fn with_faults<T>(mut op: impl FnMut() -> Result<T, Fault>) -> Result<T, Fault> {
    for _ in 0..64 {
        match op() {
            Ok(v) => return Ok(v),
            Err(f) => {
                let p = proc::myproc();
                if f.va >= xv6_abi::layout::USER_TOP
                    || p.mm.handle_fault(p.pt, f.va, f.write, false).is_err()
                {
                    return Err(f);
                }
            }
        }
    }
    Err(Fault {
        va: 0,
        write: false,
        present: false,
    })
}

/// Copies kernel bytes to the current process at `va`.
pub fn copy_out(va: u64, src: &[u8]) -> Result<(), Fault> {
    let pt = proc::myproc().pt;
    with_faults(|| uvm::copy_out(pt, &mut KernelFrames, va, src))
}

/// Copies bytes from the current process at `va`.
pub fn copy_in(dst: &mut [u8], va: u64) -> Result<(), Fault> {
    let pt = proc::myproc().pt;
    with_faults(|| uvm::copy_in(pt, &mut KernelFrames, dst, va))
}

/// A NUL-terminated user string into `dst`; its length.
pub fn copy_in_str(dst: &mut [u8], va: u64) -> Option<usize> {
    let pt = proc::myproc().pt;
    for _ in 0..64 {
        match uvm::copy_in_str(pt, &mut KernelFrames, dst, va) {
            Ok(n) => return Some(n),
            Err(StrError::TooLong) => return None,
            Err(StrError::Fault(f)) => {
                let p = proc::myproc();
                if p.mm.handle_fault(p.pt, f.va, false, false).is_err() {
                    return None;
                }
            }
        }
    }
    None
}

/// A path argument (at most MAXPATH - 1 bytes).
pub fn arg_path(tf: &TrapFrame, n: usize, buf: &mut [u8; MAXPATH]) -> Option<usize> {
    copy_in_str(buf, arg(tf, n))
}

macro_rules! dispatcher {
    ($( ($no:literal, $name:ident, $variant:ident, ($($a:ident : $t:ty),*) -> $r:ty) ),* $(,)?) => {
        /// Runs the system call whose number is in `rax`; the result for `rax`.
        pub fn dispatch(tf: &mut TrapFrame) -> i64 {
            match tf.rax {
                $($no => handlers::$name(tf),)*
                n => {
                    // Said once per process, so no program can flood the console with it.
                    let p = proc::myproc();
                    if !p.told_unknown_syscall {
                        p.told_unknown_syscall = true;
                        crate::println!(
                            "pid {} {}: unknown system call {} (reported once per process)",
                            p.pid,
                            p.name_str(),
                            n
                        );
                    }
                    -1
                }
            }
        }
    };
}
xv6_abi::with_syscalls!(dispatcher);

/// One function per system call, named as in the table.
mod handlers {
    pub use crate::syscall::sysfile::{
        chdir, close, dropcaches, dup, exec_call as exec, fstat, fsync, link, mkdir, mknod, open,
        pipe, read, unlink, write,
    };
    pub use crate::syscall::sysmem::{kmalloc, kmfree, meminfo, mmap, msync, munmap};
    pub use crate::syscall::sysproc::{
        exit, fork, getpid, kill, poweroff, sbrk, sleep, uptime, wait,
    };
}

/// Gathers `exec`'s argument vector from user memory: at most MAXARG strings.
pub fn fetch_args(uargv: u64, args: &mut Args) -> bool {
    for i in 0..=MAXARG {
        let mut p = [0u8; 8];
        if copy_in(&mut p, uargv.wrapping_add(i as u64 * 8)).is_err() {
            return false;
        }
        let a = u64::from_le_bytes(p);
        if a == 0 {
            return true;
        }
        if i == MAXARG {
            return false;
        }
        let spare = args.spare();
        let Some(n) = copy_in_str(spare, a) else {
            return false;
        };
        if !args.commit(n) {
            return false;
        }
    }
    false
}

#[allow(dead_code)]
fn _uses(_: exec::Args) {}
