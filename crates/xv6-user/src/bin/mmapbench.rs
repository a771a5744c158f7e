//! mmapbench [runs]: the cost of the memory system calls in TSC cycles, as seen from inside
//! QEMU.
//!
//! Each operation runs `runs` times (200 by default, at most 1000); the table shows the median
//! and the minimum. Operations: `mmap`+`munmap` of 1 and 64 untouched anonymous pages, the first
//! touch of a freshly mapped page (the page fault that allocates it) against a second touch,
//! `kmalloc`+`kmfree` through the system call, `sbrk` growth by 1 and 64 pages and the shrink
//! back, and `getpid` as the cost of a bare system call. Under QEMU without KVM the absolute
//! numbers mean little; the ratios are the point.
#![no_std]
#![no_main]

use core::arch::asm;
use core::ptr::{read_volatile, write_volatile};
use xv6_user::mem_sys::{
    kmalloc, kmfree, mmap, munmap, MAP_ANONYMOUS, MAP_FAILED_U64, MAP_PRIVATE,
};
use xv6_user::mem_sys::{PROT_READ, PROT_WRITE};
use xv6_user::{println, sys, Args};

xv6_user::entry!(main);

const PG: u64 = 4096;
const MAXRUNS: usize = 1000;

/// The time-stamp counter, after earlier instructions have completed.
#[inline(always)]
fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: `lfence; rdtsc` only reads the counter into edx:eax.
    unsafe {
        asm!("lfence", "rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Median and minimum of `xs` (sorted in place).
fn stats(xs: &mut [u64]) -> (u64, u64) {
    xs.sort_unstable();
    (xs[xs.len() / 2], xs[0])
}

/// One row: runs `f` `runs` times; `f` returns the cycles of the part it times, or `None` if
/// the operation failed (then the row says so).
fn row(name: &str, runs: usize, mut f: impl FnMut() -> Option<u64>) {
    let mut t = [0u64; MAXRUNS];
    for slot in t.iter_mut().take(runs) {
        match f() {
            Some(c) => *slot = c,
            None => {
                println!("{name:<34} {:>12} {:>12}", "failed", "-");
                return;
            }
        }
    }
    let (med, min) = stats(&mut t[..runs]);
    println!("{name:<34} {med:>12} {min:>12}");
}

fn anon(pages: u64) -> Option<u64> {
    // SAFETY: no MAP_FIXED: a fresh range the kernel picks.
    let a = unsafe {
        mmap(
            0,
            pages * PG,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    (a != MAP_FAILED_U64).then_some(a)
}

fn unmap(a: u64, pages: u64) -> Option<()> {
    // SAFETY: a mapping this program made and no longer uses.
    (unsafe { munmap(a, pages * PG) } == 0).then_some(())
}

fn map_unmap(pages: u64) -> Option<u64> {
    let t0 = rdtsc();
    let a = anon(pages)?;
    let ok = unmap(a, pages);
    let t1 = rdtsc();
    ok.map(|()| t1 - t0)
}

fn first_touch() -> Option<u64> {
    let a = anon(1)?;
    let t0 = rdtsc();
    // SAFETY: `a` is a fresh read-write page of ours.
    unsafe { write_volatile(a as *mut u8, 1) };
    let t1 = rdtsc();
    unmap(a, 1)?;
    Some(t1 - t0)
}

fn second_touch() -> Option<u64> {
    let a = anon(1)?;
    // SAFETY: as in `first_touch`.
    unsafe { write_volatile(a as *mut u8, 1) };
    let t0 = rdtsc();
    // SAFETY: as above; the page is present now.
    unsafe { write_volatile(a as *mut u8, 2) };
    let t1 = rdtsc();
    // SAFETY: as above.
    let ok = unsafe { read_volatile(a as *const u8) } == 2;
    unmap(a, 1)?;
    ok.then_some(t1 - t0)
}

fn kmalloc_kmfree(n: u64) -> Option<u64> {
    let t0 = rdtsc();
    let p = kmalloc(n);
    let r = if p != 0 { kmfree(p) } else { -1 };
    let t1 = rdtsc();
    (p != 0 && r == 0).then_some(t1 - t0)
}

/// `sbrk(+pages)` then `sbrk(-pages)`; returns the cycles of the part `which` names
/// (0: both, 1: the growth, 2: the shrink).
fn sbrk_cycle(pages: u64, which: u8) -> Option<u64> {
    let n = (pages * PG) as i32;
    let t0 = rdtsc();
    let grown = sys::sbrk(n).is_ok();
    let t1 = rdtsc();
    if !grown {
        return None;
    }
    // The program does not use the user heap, so the memory above the old break is ours to
    // give back at once.
    let shrunk = sys::sbrk(-n).is_ok();
    let t2 = rdtsc();
    if !shrunk {
        return None;
    }
    Some(match which {
        1 => t1 - t0,
        2 => t2 - t1,
        _ => t2 - t0,
    })
}

fn main(args: Args) -> i32 {
    let runs = match args.get(1) {
        None => 200,
        Some(s) => match xv6_user::num::parse_i32(s) {
            Some(n) if (1..=MAXRUNS as i32).contains(&n) => n as usize,
            _ => {
                println!("usage: mmapbench [runs (1..={MAXRUNS})]");
                return 2;
            }
        },
    };
    // Warm up: page tables for the mmap area and the heap exist before timing.
    let _ = map_unmap(64).and_then(|_| first_touch());
    let _ = sbrk_cycle(64, 0);
    println!("mmapbench: TSC cycles, {runs} runs each");
    println!("{:<34} {:>12} {:>12}", "operation", "median", "min");
    row("getpid (bare system call)", runs, || {
        let t0 = rdtsc();
        let _ = sys::getpid();
        Some(rdtsc() - t0)
    });
    row("mmap+munmap, 1 page", runs, || map_unmap(1));
    row("mmap+munmap, 64 pages", runs, || map_unmap(64));
    row("first touch (page fault)", runs, first_touch);
    row("second touch (no fault)", runs, second_touch);
    row("kmalloc+kmfree, 64 bytes", runs, || kmalloc_kmfree(64));
    row("kmalloc+kmfree, 4096 bytes", runs, || kmalloc_kmfree(4096));
    row("sbrk +1 page", runs, || sbrk_cycle(1, 1));
    row("sbrk -1 page", runs, || sbrk_cycle(1, 2));
    row("sbrk +1 page and back", runs, || sbrk_cycle(1, 0));
    row("sbrk +64 pages", runs, || sbrk_cycle(64, 1));
    row("sbrk -64 pages", runs, || sbrk_cycle(64, 2));
    row("sbrk +64 pages and back", runs, || sbrk_cycle(64, 0));
    0
}
