//! kmalloctest: the `kmalloc`/`kmfree` system calls (22, 23) and `meminfo` (27), docs/ABI.md.
//!
//! Each case prints `name: ok` or `name: FAILED: reason`; the program exits 0 only if all passed.
//! It checks sizes, hundreds of rounds, bogus, double and foreign frees, the 64 KiB per-process
//! cap, that a child exiting (or killed) while holding blocks leaks nothing, and finally that the
//! kernel's free frames and kernel-heap use are back where they started.
//!
//! The cases run in a child process, so that the parent can also check that exit gives back
//! everything. They use the user heap only to report a failure, so that the program's own
//! memory does not move the frame counts it compares.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;
use alloc::vec::Vec;
use xv6_user::mem_sys::{kmalloc, kmfree, meminfo, MemInfo};
use xv6_user::{println, sys, Args};

xv6_user::entry!(main);

use xv6_user::check::{Case, Msg, R};

macro_rules! fail {
    ($($t:tt)*) => { return Err(Msg::new(format_args!($($t)*))) };
}

macro_rules! ensure {
    ($c:expr, $($t:tt)*) => { if !$c { fail!($($t)*); } };
}

/// Kernel addresses that are certainly not kmalloc blocks of this process.
const KERNEL_ADDRS: [u64; 4] = [
    0xffff_8000_0000_0000,
    0xffff_8000_0010_0000,
    0xffff_ffff_8000_0000,
    0xffff_ffff_ffff_f000,
];

fn mi() -> Result<MemInfo, Box<Msg>> {
    match meminfo() {
        Some(m) => Ok(m),
        None => Err(Msg::new(format_args!("meminfo failed"))),
    }
}

/// Forks; the child runs `f` and exits with its result; returns the child's exit status.
fn in_child(f: fn() -> i32) -> Result<i32, Box<Msg>> {
    match sys::fork() {
        Err(_) => fail!("fork failed"),
        Ok(0) => sys::exit(f()),
        Ok(pid) => match sys::wait_for(pid) {
            Ok(st) => Ok(st),
            Err(_) => fail!("wait failed"),
        },
    }
}

fn rounds() -> R {
    for i in 0..500 {
        let p = kmalloc(2000);
        ensure!(p != 0, "round {i}: kmalloc(2000) returned 0");
        ensure!(
            p >= 0xffff_8000_0000_0000,
            "round {i}: kmalloc returned {p:#x}, not a kernel address"
        );
        let r = kmfree(p);
        ensure!(r == 0, "round {i}: kmfree({p:#x}) returned {r}");
    }
    Ok(())
}

fn sizes() -> R {
    for n in [1u64, 8, 100, 2048, 4095, 4096] {
        let p = kmalloc(n);
        ensure!(p != 0, "kmalloc({n}) returned 0");
        let r = kmfree(p);
        ensure!(r == 0, "kmfree of kmalloc({n}) returned {r}");
    }
    for n in [
        0u64,
        4097,
        8192,
        1 << 20,
        (1 << 32) + 1,
        u64::MAX,
        i64::MAX as u64,
    ] {
        let p = kmalloc(n);
        if p != 0 {
            kmfree(p);
            fail!("kmalloc({n:#x}) returned {p:#x}, expected 0");
        }
    }
    Ok(())
}

fn distinct_blocks() -> R {
    // Several live blocks are distinct and do not overlap.
    let mut b = [0u64; 8];
    let sizes = [1u64, 16, 17, 200, 1000, 2500, 4096, 64];
    for (i, &n) in sizes.iter().enumerate() {
        b[i] = kmalloc(n);
        ensure!(b[i] != 0, "kmalloc({n}) returned 0");
    }
    for i in 0..8 {
        for j in 0..8 {
            if i != j {
                let overlap = b[i] < b[j] + sizes[j] && b[j] < b[i] + sizes[i];
                ensure!(
                    !overlap,
                    "blocks {:#x}+{} and {:#x}+{} overlap",
                    b[i],
                    sizes[i],
                    b[j],
                    sizes[j]
                );
            }
        }
    }
    // Free in a different order than allocated.
    for i in [3usize, 0, 7, 1, 6, 2, 5, 4] {
        let r = kmfree(b[i]);
        ensure!(r == 0, "kmfree({:#x}) returned {r}", b[i]);
    }
    Ok(())
}

fn bogus_frees() -> R {
    let local = 0u64;
    let user_stack = &local as *const u64 as u64;
    let user_text = bogus_frees as *const () as usize as u64;
    for a in [
        0u64,
        0x1234,
        0x40_0000,
        user_stack,
        user_text,
        0x7fff_ffff_f000,
        u64::MAX,
    ] {
        let r = kmfree(a);
        ensure!(r == -1, "kmfree({a:#x}) returned {r}, expected -1");
    }
    for a in KERNEL_ADDRS {
        let r = kmfree(a);
        ensure!(
            r == -1,
            "kmfree(kernel address {a:#x}) returned {r}, expected -1"
        );
    }
    // Addresses inside or next to a live block are not blocks; the block survives them.
    let p = kmalloc(256);
    ensure!(p != 0, "kmalloc(256) returned 0");
    for a in [p + 1, p + 8, p + 16, p - 16, p + 255, p + 4096, p - 4096] {
        let r = kmfree(a);
        if r != -1 {
            fail!("kmfree({a:#x}) near block {p:#x} returned {r}, expected -1");
        }
    }
    let r = kmfree(p);
    ensure!(r == 0, "kmfree({p:#x}) after bogus frees returned {r}");
    Ok(())
}

fn double_free() -> R {
    let p = kmalloc(100);
    ensure!(p != 0, "kmalloc(100) returned 0");
    let q = kmalloc(100);
    ensure!(q != 0, "second kmalloc(100) returned 0");
    ensure!(kmfree(p) == 0, "first kmfree failed");
    let r = kmfree(p);
    ensure!(r == -1, "second kmfree({p:#x}) returned {r}, expected -1");
    // The other block is untouched by the double free.
    let r = kmfree(q);
    ensure!(r == 0, "kmfree of the other block returned {r}");
    let r = kmfree(q);
    ensure!(r == -1, "double kmfree({q:#x}) returned {r}, expected -1");
    Ok(())
}

static mut FOREIGN: u64 = 0;

fn foreign_free() -> R {
    // A block the parent got, freed from a forked child: -1; the parent still owns it.
    let p = kmalloc(64);
    ensure!(p != 0, "kmalloc(64) returned 0");
    // SAFETY: single-threaded; the child gets a copy.
    unsafe { FOREIGN = p };
    let st = in_child(|| {
        // SAFETY: written before the fork, only read here.
        let p = unsafe { FOREIGN };
        if kmfree(p) != -1 {
            return 1;
        }
        // Nor may the child free it twice or by an offset.
        if kmfree(p) != -1 || kmfree(p + 1) != -1 {
            return 2;
        }
        0
    })?;
    if st != 0 {
        kmfree(p);
        fail!("the child's kmfree of the parent's block did not return -1 (child status {st})");
    }
    let r = kmfree(p);
    ensure!(
        r == 0,
        "parent's kmfree of its own block after the child's attempt returned {r}"
    );

    // The other way round: a live child's block, freed by the parent.
    let fds = match sys::pipe() {
        Ok(f) => f,
        Err(_) => fail!("pipe failed"),
    };
    let (rfd, wfd) = (fds[0], fds[1]);
    let go = match sys::pipe() {
        Ok(f) => f,
        Err(_) => fail!("pipe failed"),
    };
    let pid = match sys::fork() {
        Err(_) => fail!("fork failed"),
        Ok(0) => {
            let q = kmalloc(128);
            let _ = sys::write(wfd, &q.to_le_bytes());
            // Wait for the parent to try, then free it ourselves.
            let mut b = [0u8; 1];
            let _ = sys::read(go[0], &mut b);
            sys::exit(if q != 0 && kmfree(q) == 0 { 0 } else { 1 });
        }
        Ok(pid) => pid,
    };
    let mut b = [0u8; 8];
    let n = sys::read(rfd, &mut b).unwrap_or(0);
    let q = u64::from_le_bytes(b);
    let r = if n == 8 && q != 0 { kmfree(q) } else { -2 };
    let _ = sys::write(go[1], b"x");
    let st = sys::wait_for(pid).unwrap_or(-99);
    for fd in [rfd, wfd, go[0], go[1]] {
        let _ = sys::close(fd);
    }
    ensure!(n == 8 && q != 0, "the child's kmalloc failed");
    ensure!(
        r == -1,
        "parent's kmfree of a live child's block {q:#x} returned {r}, expected -1"
    );
    ensure!(
        st == 0,
        "the child could not free its own block afterwards (status {st})"
    );
    Ok(())
}

/// The cap in one-byte blocks: 65 536 blocks held at once, freed in a scrambled order, each
/// refused a second time, a foreign address refused among them; the kernel's record of them must
/// cope (it used to be a list searched from the start on every kmfree). Runs in a child, whose
/// own list of 64 Ki addresses grows its heap; the child prints what failed.
fn tiny_blocks() -> R {
    let st = in_child(|| match tiny_blocks_here() {
        Ok(()) => 0,
        Err(m) => {
            println!("tiny blocks (child): {}", m.as_str());
            1
        }
    })?;
    ensure!(st == 0, "the child failed (status {st})");
    Ok(())
}

fn tiny_blocks_here() -> R {
    const N: usize = 64 * 1024;
    let mut b: Vec<u64> = Vec::new();
    ensure!(
        b.try_reserve_exact(N).is_ok(),
        "no memory for the test's own list"
    );
    while b.len() < N {
        let p = kmalloc(1);
        if p == 0 {
            break;
        }
        b.push(p);
    }
    let got = b.len();
    let over = kmalloc(1);
    // Scramble: a fixed odd stride over the indices visits each once.
    let mut bad = 0usize;
    for k in 0..got {
        let i = (k * 40_503) % got;
        if kmfree(b[i]) != 0 {
            bad += 1;
        }
        if k % 4096 == 0 && kmfree(b[i]) != -1 {
            bad += 1_000_000;
        }
    }
    let foreign = kmfree(b[0] + 16);
    if over != 0 {
        kmfree(over);
    }
    ensure!(
        got == N,
        "got {got} one-byte blocks before kmalloc returned 0, expected {N}"
    );
    ensure!(
        over == 0,
        "kmalloc(1) past {N} one-byte blocks returned {over:#x}"
    );
    ensure!(
        bad == 0,
        "kmfree of held blocks failed or a second kmfree succeeded ({bad})"
    );
    ensure!(
        foreign == -1,
        "kmfree of an address no block starts at returned {foreign}"
    );
    Ok(())
}

fn cap() -> R {
    let mut b = [0u64; 64];
    let mut n = 0;
    while n < b.len() {
        let p = kmalloc(4096);
        if p == 0 {
            break;
        }
        b[n] = p;
        n += 1;
    }
    let free_all = |b: &[u64]| b.iter().filter(|&&p| p != 0).all(|&p| kmfree(p) == 0);
    if n != 16 {
        free_all(&b[..n]);
        fail!("got {n} blocks of 4096 bytes before kmalloc returned 0, expected 16 (64 KiB)");
    }
    // At the cap even one byte is refused.
    let p = kmalloc(1);
    if p != 0 {
        kmfree(p);
        free_all(&b[..n]);
        fail!("kmalloc(1) at the cap returned {p:#x}");
    }
    // Free one: room for exactly one more page-sized block.
    if kmfree(b[5]) != 0 {
        fail!("kmfree at the cap failed");
    }
    b[5] = kmalloc(4096);
    if b[5] == 0 {
        free_all(&b[..n]);
        fail!("kmalloc(4096) after freeing one block at the cap returned 0 (not recovered)");
    }
    let p = kmalloc(4096);
    if p != 0 {
        kmfree(p);
        free_all(&b[..n]);
        fail!("kmalloc past the cap again returned {p:#x}");
    }
    ensure!(free_all(&b[..n]), "freeing the blocks at the cap failed");
    // After freeing all, the full cap is available again, in small blocks too: 65 blocks of
    // 1000 bytes fit in 64 KiB, the 66th does not.
    let mut n = 0;
    while n < b.len() {
        let p = kmalloc(1000);
        if p == 0 {
            break;
        }
        b[n] = p;
        n += 1;
    }
    let mut more = [0u64; 8];
    let mut m = 0;
    if n == b.len() {
        while m < more.len() {
            let p = kmalloc(1000);
            if p == 0 {
                break;
            }
            more[m] = p;
            m += 1;
        }
    }
    let ok = free_all(&b[..n]) & free_all(&more[..m]);
    ensure!(
        n + m == 65,
        "got {} blocks of 1000 bytes before the cap, expected 65",
        n + m
    );
    ensure!(ok, "freeing the 1000-byte blocks failed");
    Ok(())
}

fn child_exit_leaks_nothing() -> R {
    let before = mi()?;
    let st = in_child(|| {
        // Hold the whole cap in assorted sizes, free a few, and exit holding the rest.
        let mut held = 0u64;
        let mut got = 0;
        for i in 0..200u64 {
            let p = kmalloc(1 + (i * 997) % 4096);
            if p == 0 {
                break;
            }
            got += 1;
            if i % 5 == 0 {
                if kmfree(p) != 0 {
                    return 2;
                }
            } else {
                held += 1;
            }
        }
        if got < 10 || held == 0 {
            return 1;
        }
        0
    })?;
    ensure!(st == 0, "the child's allocations failed (status {st})");
    let after = mi()?;
    ensure!(
        after.kheap_in_use == before.kheap_in_use,
        "kheap_in_use {} before the child, {} after it exited holding blocks",
        before.kheap_in_use,
        after.kheap_in_use
    );
    ensure!(
        after.free_frames == before.free_frames,
        "free_frames {} before the child, {} after it exited holding blocks",
        before.free_frames,
        after.free_frames
    );
    ensure!(
        after.nproc == before.nproc,
        "nproc {} before, {} after",
        before.nproc,
        after.nproc
    );
    Ok(())
}

fn killed_child_leaks_nothing() -> R {
    let before = mi()?;
    let st = in_child(|| {
        for _ in 0..16 {
            if kmalloc(4096) == 0 {
                return 1;
            }
        }
        // Fault on purpose: a write to the null page kills the process.
        // SAFETY: not safe at all: the kernel is meant to kill us here.
        unsafe { core::ptr::write_volatile(core::ptr::null_mut::<u64>(), 1) };
        0
    })?;
    ensure!(
        st == -1,
        "the child that faulted exited with {st}, expected -1"
    );
    let after = mi()?;
    ensure!(
        after.kheap_in_use == before.kheap_in_use && after.free_frames == before.free_frames,
        "before: kheap_in_use {} free_frames {}; after a killed child: {} {}",
        before.kheap_in_use,
        before.free_frames,
        after.kheap_in_use,
        after.free_frames
    );
    Ok(())
}

fn many_children() -> R {
    // Several children at once, each holding blocks, exiting in any order.
    let before = mi()?;
    let mut pids = [0i32; 8];
    for pid in pids.iter_mut() {
        match sys::fork() {
            Err(_) => fail!("fork failed"),
            Ok(0) => {
                let mut ok = true;
                for i in 0..40u64 {
                    let p = kmalloc(64 + i * 100);
                    if p == 0 {
                        break;
                    }
                    if i % 3 == 0 {
                        ok &= kmfree(p) == 0;
                    }
                }
                sys::exit(if ok { 0 } else { 1 });
            }
            Ok(p) => *pid = p,
        }
    }
    let mut bad = 0;
    for _ in 0..pids.len() {
        match sys::wait() {
            Ok((_, 0)) => {}
            Ok(_) => bad += 1,
            Err(_) => fail!("wait failed"),
        }
    }
    ensure!(bad == 0, "{bad} children failed");
    let after = mi()?;
    ensure!(
        after.kheap_in_use == before.kheap_in_use && after.free_frames == before.free_frames,
        "before: kheap_in_use {} free_frames {}; after 8 children: {} {}",
        before.kheap_in_use,
        before.free_frames,
        after.kheap_in_use,
        after.free_frames
    );
    Ok(())
}

fn kernel_pointer_not_usable() -> R {
    // The returned address is the kernel's: touching it kills the process.
    let p = kmalloc(32);
    ensure!(p != 0, "kmalloc(32) returned 0");
    // SAFETY: written before the fork, only read in the child.
    unsafe { FOREIGN = p };
    let st = in_child(|| {
        // SAFETY: not safe: the kernel must kill us.
        let v = unsafe { core::ptr::read_volatile(FOREIGN as *const u64) };
        (v & 1) as i32 + 10
    })?;
    let r = kmfree(p);
    ensure!(
        st == -1,
        "reading a kmalloc block from user mode: child status {st}, expected -1"
    );
    ensure!(r == 0, "kmfree after the child returned {r}");
    Ok(())
}

/// Frames a live process may come to hold while the cases run without anything leaking: fork
/// shares its pages copy-on-write with its parent, so its first write to each page after the
/// fork takes a frame (and a first touch of a heap page does too). Checked exactly once the
/// process has exited.
const FIRST_WRITES: u64 = 8;

fn leak_msg(what: &str, a: &MemInfo, b: &MemInfo, slack: u64) -> Option<Box<Msg>> {
    if b.free_frames + slack >= a.free_frames
        && b.free_frames <= a.free_frames
        && a.kheap_in_use == b.kheap_in_use
    {
        return None;
    }
    Some(Msg::new(format_args!(
        "{what}: free_frames {} -> {}, kheap_in_use {} -> {}, kheap_pages {} -> {}",
        a.free_frames, b.free_frames, a.kheap_in_use, b.kheap_in_use, a.kheap_pages, b.kheap_pages
    )))
}

/// Runs every case in this process and returns the number that failed; ends by checking that
/// the kernel's figures are back where they were when it began.
fn run_cases() -> i32 {
    let Some(start) = meminfo() else {
        println!("meminfo: FAILED: meminfo failed");
        return 1;
    };
    let cases: [Case; 12] = [
        ("rounds", rounds),
        ("sizes", sizes),
        ("distinct blocks", distinct_blocks),
        ("bogus frees", bogus_frees),
        ("double free", double_free),
        ("foreign free", foreign_free),
        ("cap", cap),
        ("tiny blocks", tiny_blocks),
        ("child exit leaks nothing", child_exit_leaks_nothing),
        ("killed child leaks nothing", killed_child_leaks_nothing),
        ("many children", many_children),
        ("kernel pointer not usable", kernel_pointer_not_usable),
    ];
    let mut failed = 0;
    for (name, f) in cases {
        match f() {
            Ok(()) => println!("{name}: ok"),
            Err(m) => {
                println!("{name}: FAILED: {}", m.as_str());
                failed += 1;
            }
        }
    }
    match meminfo() {
        Some(end) => match leak_msg("after freeing everything", &start, &end, FIRST_WRITES) {
            None => println!("memory back after the cases: ok"),
            Some(m) => {
                println!("memory back after the cases: FAILED: {}", m.as_str());
                failed += 1;
            }
        },
        None => {
            println!("memory back after the cases: FAILED: meminfo failed");
            failed += 1;
        }
    }
    failed
}

fn main(_args: Args) -> i32 {
    // The cases run in a child, so that this process can also check that the child's exit
    // gives back whatever the kernel kept for it.
    let Some(start) = meminfo() else {
        println!("kmalloctest: meminfo failed");
        return 1;
    };
    let mut failed = match sys::fork() {
        Err(_) => {
            println!("kmalloctest: fork failed");
            return 1;
        }
        Ok(0) => sys::exit(run_cases()),
        Ok(pid) => match sys::wait_for(pid) {
            Ok(st) if st >= 0 => st,
            Ok(st) => {
                println!("kmalloctest: the test process died (status {st})");
                1
            }
            Err(_) => {
                println!("kmalloctest: wait failed");
                1
            }
        },
    };
    match meminfo() {
        Some(end) => match leak_msg("after the test process exited", &start, &end, 0) {
            None => println!("no leaks after exit: ok"),
            Some(m) => {
                println!("no leaks after exit: FAILED: {}", m.as_str());
                failed += 1;
            }
        },
        None => {
            println!("no leaks after exit: FAILED: meminfo failed");
            failed += 1;
        }
    }
    if failed == 0 {
        println!("kmalloctest: all ok");
        0
    } else {
        println!("kmalloctest: {failed} FAILED");
        1
    }
}
