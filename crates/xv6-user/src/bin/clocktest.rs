//! clocktest: no process stops the clock, holds a CPU with a long console write, or floods the
//! console with unknown system calls.
//!
//! - `clocktest` (the test `cargo xtask test` runs): a child writes 16 MiB to the console in one
//!   `write` while the parent checks, against the TSC (which the kernel cannot stop), that
//!   `sleep(10)` returns within a second and that `uptime` keeps pace (within a quarter: the
//!   host may be loaded); then it kills the writer, which must be gone within a second, long
//!   before its write could have ended (a minute or more under QEMU).
//!   Prints `clocktest: ok`, or `clocktest: FAILED: ...` and exits 1.
//! - `clocktest big [MiB]`: writes 16 MiB (or MiB) to the console in one `write` and waits for
//!   it to finish; prints how long it took by the TSC and how far `uptime` moved meanwhile.
//! - `clocktest unknown N`: this process and a child each make N calls with unknown numbers;
//!   each must fail. The kernel may say so once per process: the runner counts the lines.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use xv6_user::num::parse_i32;
use xv6_user::sys::{self, raw};
use xv6_user::{println, Args};

xv6_user::entry!(main);

/// The CPU's time-stamp counter: QEMU runs it at the host's rate whatever the guest kernel does,
/// so it is a clock the kernel under test cannot stop.
fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: `rdtsc` only reads the counter (user mode may use it: CR4.TSD is clear).
    unsafe { core::arch::asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (hi as u64) << 32 | lo as u64
}

/// TSC counts per tick, measured against `uptime` over `n` ticks while nothing else runs.
fn tsc_per_tick(n: i32) -> u64 {
    let start = sys::uptime();
    while sys::uptime() == start {}
    let u0 = sys::uptime();
    let t0 = rdtsc();
    while sys::uptime() < u0 + n {}
    (rdtsc() - t0) / n as u64
}

/// A buffer of `n` bytes of dotted lines (nothing the test runner looks for).
fn lines(n: usize) -> Vec<u8> {
    let mut b = alloc::vec![b'.'; n];
    for (i, c) in b.iter_mut().enumerate() {
        if i % 64 == 63 {
            *c = b'\n';
        }
    }
    b
}

/// Forks a child that writes `buf` to the console in one call and exits 0 if it all went out.
fn writer(buf: &[u8]) -> i32 {
    match sys::fork() {
        Ok(0) => {
            // SAFETY: `buf` is valid for reads of its length.
            let n = unsafe { raw::write(1, buf.as_ptr(), buf.len() as i32) };
            sys::exit(if n == buf.len() as i32 { 0 } else { 2 })
        }
        Ok(pid) => pid,
        Err(_) => {
            println!("clocktest: FAILED: fork");
            sys::exit(1)
        }
    }
}

const MIB: usize = 1 << 20;

fn main(args: Args) -> i32 {
    match args.get(1) {
        None => test(),
        Some(b"big") => big(args.get(2).and_then(parse_i32).unwrap_or(16).max(1) as usize),
        Some(b"unknown") => unknown(args.get(2).and_then(parse_i32).unwrap_or(1000).max(0)),
        Some(_) => {
            println!("usage: clocktest [big [MiB] | unknown N]");
            1
        }
    }
}

/// Fails the test with a message.
macro_rules! fail {
    ($($t:tt)*) => {{
        println!("\nclocktest: FAILED: {}", format_args!($($t)*));
        return 1;
    }};
}

fn test() -> i32 {
    let per = tsc_per_tick(50);
    let buf = lines(16 * MIB);
    // From before the fork: the child may run first, and the whole write with it.
    let tsc_start = rdtsc();
    let up_start = sys::uptime();
    let pid = writer(&buf);
    // Let the writer get into its write.
    let _ = sys::sleep(5);
    for round in 0..5 {
        let t0 = rdtsc();
        let u0 = sys::uptime();
        if sys::sleep(10).is_err() {
            fail!("sleep(10) failed");
        }
        let real = (rdtsc() - t0) / per;
        let up = (sys::uptime() - u0) as u64;
        if !(9..=100).contains(&real) {
            fail!(
                "round {round}: sleep(10) took {real} ticks by the TSC while the console was busy"
            );
        }
        if up < 10 || up.abs_diff(real) > 3 + real / 4 {
            fail!("round {round}: uptime moved {up} ticks in {real} ticks by the TSC");
        }
    }
    let real = (rdtsc() - tsc_start) / per;
    let up = (sys::uptime() - up_start) as u64;
    if up.abs_diff(real) > 3 + real / 4 {
        fail!("uptime moved {up} ticks in {real} ticks by the TSC");
    }
    let t0 = rdtsc();
    if sys::kill(pid).is_err() {
        fail!("kill of the writer failed");
    }
    let status = sys::wait_for(pid).unwrap_or(0);
    let gone = (rdtsc() - t0) / per;
    if status != -1 {
        fail!("the writer was not killed: it exited with {status}, its write ended first");
    }
    if gone > 100 {
        fail!("the killed writer took {gone} ticks to exit");
    }
    println!(
        "\nclocktest: ok (uptime {up} ticks in {real} by the TSC; killed writer gone in {gone})"
    );
    0
}

fn big(mib: usize) -> i32 {
    let per = tsc_per_tick(100);
    let buf = lines(mib * MIB);
    let t0 = rdtsc();
    let u0 = sys::uptime();
    let pid = writer(&buf);
    let status = sys::wait_for(pid).unwrap_or(-1);
    let real = (rdtsc() - t0) / per;
    let up = (sys::uptime() - u0) as i64;
    println!(
        "\nclocktest: {mib} MiB console write: {}.{:02} s by the TSC, uptime moved {up} ticks \
         (drift {} ticks), writer status {status}",
        real / 100,
        real % 100,
        up - real as i64
    );
    i32::from(status != 0)
}

fn unknown(n: i32) -> i32 {
    let child = match sys::fork() {
        Ok(0) => sys::exit(calls(n)),
        Ok(pid) => pid,
        Err(_) => fail!("fork"),
    };
    let mine = calls(n);
    let theirs = sys::wait_for(child).unwrap_or(1);
    if mine != 0 || theirs != 0 {
        return 1;
    }
    println!("clocktest: {n} unknown system calls in each of 2 processes failed");
    0
}

/// Makes `n` calls with unknown numbers; 0 if each returned -1.
fn calls(n: i32) -> i32 {
    for i in 0..n as u64 {
        let no = if i % 2 == 0 { 1000 + i } else { u64::MAX - i };
        // SAFETY: an unknown call number; the kernel does nothing but fail it.
        let r = unsafe { sys::syscall(no, &[]) };
        if r as i64 != -1 {
            fail!("unknown system call {no} returned {}", r as i64);
        }
    }
    0
}
