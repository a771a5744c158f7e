//! racetest: races between processes on different CPUs in the kernel's teardown paths.
//!
//! `racetest [ROUNDS]` runs ROUNDS rounds (default 30, about a minute on 4 CPUs under QEMU's
//! emulation) of:
//!
//! - **pipes**: a parent and a child each hold the last reference to one end of the same pipes and
//!   close them at the same moment (they meet at a spin barrier on a shared page first);
//! - **files**: four processes create, write, fsync, open, read and unlink the same three names,
//!   and empty the buffer cache (`dropcaches`) under each other, so that the last references to
//!   unlinked inodes are dropped by several processes at once and commits are forced while
//!   others' calls run; every byte read back must be one that was written;
//! - **processes**: two processes each fork children that exit at once, spin, sleep, kmalloc, or
//!   fork grandchildren and leave them to init, and kill them at random moments (while they run,
//!   sleep or exit), then wait for each exactly once;
//! - **shared memory**: anonymous and file MAP_SHARED mappings touched before and after a fork,
//!   then unmapped by the parent while the child unmaps them or exits, at the same moment.
//!
//! Everything runs in a child process; at the end the parent checks that the kernel's free frames,
//! kernel-heap bytes and process count are back where they started. The file system is left
//! clean for `fsck` (no orphan inodes). It prints `racetest: all ok` only if every check passed.
#![no_std]
#![no_main]

extern crate alloc;

use core::sync::atomic::{AtomicU32, Ordering};
use xv6_user::abi::fcntl::{O_CREATE, O_RDONLY, O_RDWR};
use xv6_user::check::{Msg, R};
use xv6_user::mem_sys::{
    kmalloc, meminfo, mmap, munmap, MemInfo, MAP_ANONYMOUS, MAP_FAILED_U64, MAP_SHARED, PROT_READ,
    PROT_WRITE,
};
use xv6_user::{println, sys, Args};

xv6_user::entry!(main);

macro_rules! fail {
    ($($t:tt)*) => { return Err(Msg::new(format_args!($($t)*))) };
}

macro_rules! ensure {
    ($c:expr, $($t:tt)*) => { if !$c { fail!($($t)*); } };
}

const DEFAULT_ROUNDS: i32 = 30;
const PG: u64 = 4096;
const RW: i32 = PROT_READ | PROT_WRITE;

// ---- randomness and the spin barrier ------------------------------------------------------

/// xorshift64: enough to vary timings and choices.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Busy-waits for about `n` iterations (to shift one side of a race by a little).
fn spin(n: u64) {
    for i in 0..n {
        core::hint::black_box(i);
        core::hint::spin_loop();
    }
}

/// The page shared by every process of the test (mapped before the first fork): words used as
/// spin barriers between a parent and its child.
#[derive(Clone, Copy)]
struct Sync(u64);

impl Sync {
    fn word(&self, i: u64) -> &'static AtomicU32 {
        // SAFETY: the page is mapped read-write, shared, for the whole run, and 4-byte aligned;
        // every process touches these words only atomically.
        unsafe { &*((self.0 + 4 * i) as *const AtomicU32) }
    }

    fn reset(&self) {
        for i in 0..8 {
            self.word(i).store(0, Ordering::SeqCst);
        }
    }

    /// Two-party barrier number `generation` (counting up from 1 after `reset`); `me` is 0 or 1.
    /// Both sides leave it within a few instructions of each other. False if the other side did
    /// not arrive within ~20 s (it died).
    fn meet(&self, me: u64, generation: u32) -> bool {
        self.word(me).store(generation, Ordering::SeqCst);
        let other = self.word(1 - me);
        let start = sys::uptime();
        let mut n = 0u32;
        while other.load(Ordering::SeqCst) < generation {
            core::hint::spin_loop();
            n = n.wrapping_add(1);
            if n % 4096 == 0 && sys::uptime() - start > 2000 {
                return false;
            }
        }
        true
    }
}

/// Waits for every child in `pids` (`sys::wait_for` would drop the others' statuses); their exit
/// statuses in the same order.
fn wait_all<const N: usize>(pids: &[i32; N]) -> Result<[i32; N], alloc::boxed::Box<Msg>> {
    let mut st = [0i32; N];
    let mut seen = [false; N];
    for _ in 0..N {
        let Ok((pid, s)) = sys::wait() else {
            fail!("wait failed with children left");
        };
        match pids.iter().position(|&p| p == pid) {
            Some(i) if !seen[i] => {
                seen[i] = true;
                st[i] = s;
            }
            Some(_) => fail!("wait returned pid {pid} twice"),
            None => fail!("wait returned pid {pid}, not a child"),
        }
    }
    Ok(st)
}

// ---- pipes ----------------------------------------------------------------------------------

/// Pipes raced per round: the descriptors allow 6 (3 are the console).
const NPIPE: usize = 6;

fn pipes(s: Sync, rng: &mut Rng) -> R {
    s.reset();
    let mut fds = [[0i32; 2]; NPIPE];
    for (i, f) in fds.iter_mut().enumerate() {
        match sys::pipe() {
            Ok(p) => *f = p,
            Err(_) => {
                for g in &fds[..i] {
                    let _ = sys::close(g[0]);
                    let _ = sys::close(g[1]);
                }
                fail!("pipe failed");
            }
        }
    }
    let delays: [u64; NPIPE] = core::array::from_fn(|_| rng.below(64));
    let pid = match sys::fork() {
        Ok(p) => p,
        Err(_) => fail!("fork failed"),
    };
    // The child keeps the write ends and the parent the read ends: each holds the last reference
    // to one end, and they close them together.
    let (me, keep) = if pid == 0 { (1, 1) } else { (0, 0) };
    for f in &fds {
        let _ = sys::close(f[1 - keep]);
    }
    let mut ok = true;
    for (i, f) in fds.iter().enumerate() {
        ok &= s.meet(me, i as u32 + 1);
        // Alternate which side is a little late, so both orders of the window are tried.
        if (i % 2 == 0) == (me == 0) {
            spin(delays[i]);
        }
        ok &= sys::close(f[keep]).is_ok();
    }
    if pid == 0 {
        sys::exit(if ok { 0 } else { 1 });
    }
    match sys::wait_for(pid) {
        Ok(0) => {}
        Ok(st) => fail!("the child closing pipe ends exited with {st}"),
        Err(_) => fail!("wait failed"),
    }
    ensure!(ok, "a close (or the barrier) failed in the parent");
    // Pipes still work after the storm.
    let p = match sys::pipe() {
        Ok(p) => p,
        Err(_) => fail!("pipe failed after the closes"),
    };
    let mut b = [0u8; 3];
    let good = sys::write(p[1], b"abc") == Ok(3) && sys::read(p[0], &mut b) == Ok(3);
    let _ = sys::close(p[0]);
    let _ = sys::close(p[1]);
    ensure!(good && &b == b"abc", "a new pipe does not carry bytes");
    Ok(())
}

// ---- files ----------------------------------------------------------------------------------

const NAMES: [&[u8]; 3] = [b"race0", b"race1", b"race2"];
const FILE_PROCS: u64 = 4;
const FILE_OPS: u64 = 24;

/// One of the four processes: random operations on the shared names. Failures that a race
/// explains (the name was just unlinked) are fine; anything else is not.
fn file_worker(seed: u64) -> i32 {
    let mut rng = Rng::new(seed);
    let mut buf = [0u8; 64];
    for _ in 0..FILE_OPS {
        let name = NAMES[rng.below(NAMES.len() as u64) as usize];
        match rng.below(5) {
            0 | 1 => {
                let Ok(fd) = sys::open(name, O_CREATE | O_RDWR) else {
                    println!("racetest: open O_CREATE failed");
                    return 1;
                };
                if sys::write(fd, &[b'x'; 64]) != Ok(64) {
                    println!("racetest: write to an open file failed");
                    return 1;
                }
                // A commit forced while the other workers' calls are running.
                if rng.below(3) == 0 && sys::fsync(fd).is_err() {
                    println!("racetest: fsync of an open file failed");
                    return 1;
                }
                spin(rng.below(2000));
                let _ = sys::close(fd);
            }
            2 => {
                let _ = sys::unlink(name);
            }
            3 => {
                if let Ok(fd) = sys::open(name, O_RDONLY) {
                    // Whatever is read (cached or read again after a drop) is what was written.
                    if let Ok(n) = sys::read(fd, &mut buf) {
                        if buf[..n].iter().any(|&c| c != b'x') {
                            println!("racetest: a file read back bytes nobody wrote");
                            return 1;
                        }
                    }
                    spin(rng.below(2000));
                    let _ = sys::close(fd);
                }
            }
            _ => {
                // The cache emptied under the other workers' reads and writes.
                if sys::dropcaches().is_err() {
                    println!("racetest: dropcaches failed");
                    return 1;
                }
            }
        }
    }
    0
}

fn files(rng: &mut Rng) -> R {
    let mut pids = [0i32; FILE_PROCS as usize];
    for p in pids.iter_mut() {
        let seed = rng.next();
        match sys::fork() {
            Ok(0) => sys::exit(file_worker(seed)),
            Ok(pid) => *p = pid,
            Err(_) => fail!("fork failed"),
        }
    }
    let st = wait_all(&pids);
    for n in NAMES {
        let _ = sys::unlink(n);
    }
    let bad = st?.iter().filter(|&&s| s != 0).count();
    ensure!(bad == 0, "{bad} file workers failed");
    for n in NAMES {
        ensure!(
            sys::open(n, O_RDONLY).is_err(),
            "a name survived its unlink"
        );
    }
    Ok(())
}

// ---- processes ------------------------------------------------------------------------------

const KIDS: usize = 8;
const STATUS: i32 = 7;

/// What a child of the storm does before it exits with STATUS.
fn kid(how: u64, seed: u64) -> ! {
    let mut rng = Rng::new(seed);
    match how {
        0 => {}
        1 => spin(rng.below(20_000)),
        2 => {
            let _ = sys::sleep(rng.below(3) as i32);
        }
        3 => {
            // Blocks of the kernel heap it never frees: exit (or kill) must.
            for _ in 0..4 {
                kmalloc(64 + rng.below(1000));
            }
            spin(rng.below(5_000));
        }
        _ => {
            // A grandchild that outlives its parent or not: init reaps it.
            if let Ok(0) = sys::fork() {
                spin(rng.below(10_000));
                sys::exit(0);
            }
        }
    }
    sys::exit(STATUS)
}

fn storm(seed: u64) -> i32 {
    let mut rng = Rng::new(seed);
    let mut pids = [0i32; KIDS];
    let mut killed = [false; KIDS];
    for i in 0..KIDS {
        let (how, s) = (rng.below(5), rng.next());
        match sys::fork() {
            Ok(0) => kid(how, s),
            Ok(pid) => pids[i] = pid,
            Err(_) => {
                println!("racetest: fork failed in the storm");
                // Reap what there is, then report.
                while sys::wait().is_ok() {}
                return 1;
            }
        }
        if rng.below(2) == 0 {
            // Kill one of the children so far, now or after a moment: it may be running,
            // sleeping, exiting or already a zombie.
            spin(rng.below(3000));
            let k = rng.below(i as u64 + 1) as usize;
            if sys::kill(pids[k]).is_ok() {
                killed[k] = true;
            }
        }
    }
    let mut seen = [false; KIDS];
    for _ in 0..KIDS {
        let Ok((pid, st)) = sys::wait() else {
            println!("racetest: wait failed with children left");
            return 1;
        };
        let Some(i) = pids.iter().position(|&p| p == pid) else {
            println!("racetest: wait returned pid {pid}, not a child");
            return 1;
        };
        if seen[i] {
            println!("racetest: wait returned pid {pid} twice");
            return 1;
        }
        seen[i] = true;
        if st != STATUS && !(killed[i] && st == -1) {
            println!(
                "racetest: child {pid} exited with {st} (killed: {})",
                killed[i]
            );
            return 1;
        }
    }
    if sys::wait().is_ok() {
        println!("racetest: wait found a child after all were reaped");
        return 1;
    }
    for &pid in &pids {
        if sys::kill(pid).is_ok() {
            println!("racetest: kill of reaped pid {pid} succeeded");
            return 1;
        }
    }
    0
}

fn procs(rng: &mut Rng) -> R {
    let mut pids = [0i32; 2];
    for p in pids.iter_mut() {
        let seed = rng.next();
        match sys::fork() {
            Ok(0) => sys::exit(storm(seed)),
            Ok(pid) => *p = pid,
            Err(_) => fail!("fork failed"),
        }
    }
    for st in wait_all(&pids)? {
        ensure!(st == 0, "a storm ended with status {st}");
    }
    Ok(())
}

// ---- shared mappings ------------------------------------------------------------------------

const MAPFILE: &[u8] = b"racemap";
const MAP_PAGES: u64 = 4;

fn rd(a: u64) -> u8 {
    // SAFETY: `a` is inside a live shared mapping of this process.
    unsafe { core::ptr::read_volatile(a as *const u8) }
}

fn wr(a: u64, v: u8) {
    // SAFETY: as in `rd`, and the mapping is writable.
    unsafe { core::ptr::write_volatile(a as *mut u8, v) }
}

/// Maps MAP_PAGES pages shared: anonymous memory, or the test file (`fd`).
fn map(fd: Option<i32>) -> Option<u64> {
    let (flags, fd) = match fd {
        None => (MAP_SHARED | MAP_ANONYMOUS, -1),
        Some(fd) => (MAP_SHARED, fd),
    };
    // SAFETY: not MAP_FIXED: the kernel picks a free range.
    let a = unsafe { mmap(0, MAP_PAGES * PG, RW, flags, fd, 0) };
    (a != MAP_FAILED_U64).then_some(a)
}

fn shared(s: Sync, rng: &mut Rng, with_file: bool) -> R {
    s.reset();
    let fd = if with_file {
        let Ok(fd) = sys::open(MAPFILE, O_CREATE | O_RDWR) else {
            fail!("cannot create {}", "racemap");
        };
        let zeros = [0u8; 512];
        for _ in 0..(MAP_PAGES * PG / 512) {
            if sys::write(fd, &zeros) != Ok(512) {
                let _ = sys::close(fd);
                fail!("cannot fill racemap");
            }
        }
        Some(fd)
    } else {
        None
    };
    let a = map(fd);
    if let Some(fd) = fd {
        // The mapping keeps the file open; its last reference now goes with the mapping.
        let _ = sys::close(fd);
    }
    let Some(a) = a else { fail!("mmap failed") };
    wr(a, 1); // touched before the fork
    let (child_unmaps, delay) = (rng.below(2) == 0, rng.below(64));
    let pid = match sys::fork() {
        Ok(p) => p,
        Err(_) => {
            // SAFETY: our own mapping; nothing refers into it.
            unsafe { munmap(a, MAP_PAGES * PG) };
            fail!("fork failed");
        }
    };
    if pid == 0 {
        let mut ok = rd(a) == 1;
        wr(a + PG, 2); // touched after the fork, by the child
        wr(a + 3 * PG, 4);
        ok &= s.meet(1, 1);
        ok &= s.meet(1, 2);
        if child_unmaps {
            // SAFETY: as above.
            ok &= unsafe { munmap(a, MAP_PAGES * PG) } == 0;
        } else {
            spin(delay);
        }
        sys::exit(if ok { 0 } else { 1 });
    }
    let mut ok = s.meet(0, 1);
    // The child's writes are visible here, through the same frames.
    let seen = (rd(a + PG), rd(a + 3 * PG));
    wr(a + 2 * PG, 3);
    ok &= s.meet(0, 2);
    if !child_unmaps {
        spin(delay);
    }
    // SAFETY: as above.
    ok &= unsafe { munmap(a, MAP_PAGES * PG) } == 0;
    let st = sys::wait_for(pid);
    ensure!(
        seen == (2, 4),
        "the parent saw {seen:?} of the child's (2, 4)"
    );
    ensure!(ok, "munmap or the barrier failed in the parent");
    ensure!(st == Ok(0), "the sharing child failed ({st:?})");
    if with_file {
        // Both processes' writes reached the file at unmap / exit.
        let Ok(fd) = sys::open(MAPFILE, O_RDONLY) else {
            fail!("racemap vanished");
        };
        // The first byte of each page.
        let mut got = [0u8; MAP_PAGES as usize];
        let mut whole = [0u8; 512];
        for k in 0..(MAP_PAGES * PG / 512) {
            if sys::read(fd, &mut whole) != Ok(512) {
                let _ = sys::close(fd);
                fail!("short read of racemap");
            }
            if (k * 512) % PG == 0 {
                got[(k * 512 / PG) as usize] = whole[0];
            }
        }
        let _ = sys::close(fd);
        let _ = sys::unlink(MAPFILE);
        ensure!(
            got == [1, 2, 3, 4],
            "racemap holds {got:?}, not [1, 2, 3, 4]"
        );
    }
    Ok(())
}

// ---- the run --------------------------------------------------------------------------------

/// Runs every round; returns the number of failed checks.
fn run(rounds: i32) -> i32 {
    // SAFETY: not MAP_FIXED.
    let page = unsafe { mmap(0, PG, RW, MAP_SHARED | MAP_ANONYMOUS, -1, 0) };
    if page == MAP_FAILED_U64 {
        println!("racetest: mmap of the barrier page failed");
        return 1;
    }
    let s = Sync(page);
    let mut rng = Rng::new(sys::uptime() as u64 + 1);
    let mut failed = 0;
    for r in 0..rounds {
        let checks: [(&str, R); 5] = [
            ("pipes", pipes(s, &mut rng)),
            ("files", files(&mut rng)),
            ("processes", procs(&mut rng)),
            ("shared anonymous", shared(s, &mut rng, false)),
            ("shared file", shared(s, &mut rng, true)),
        ];
        for (name, res) in checks {
            if let Err(m) = res {
                println!("racetest: round {r}, {name}: FAILED: {}", m.as_str());
                failed += 1;
            }
        }
        if failed > 0 {
            break;
        }
        if (r + 1) % 10 == 0 {
            println!("racetest: {} rounds done", r + 1);
        }
    }
    // SAFETY: our own page; the children that used it are gone.
    unsafe { munmap(page, PG) };
    failed
}

fn leaks(a: &MemInfo, b: &MemInfo) -> bool {
    a.free_frames != b.free_frames || a.kheap_in_use != b.kheap_in_use || a.nproc != b.nproc
}

fn main(args: Args) -> i32 {
    let rounds = match args.get(1) {
        None => DEFAULT_ROUNDS,
        Some(a) => match xv6_user::num::parse_i32(a) {
            Some(n) if n > 0 => n,
            _ => {
                println!("usage: racetest [ROUNDS]");
                return 2;
            }
        },
    };
    println!("racetest: {rounds} rounds");
    let Some(start) = meminfo() else {
        println!("racetest: meminfo failed");
        return 1;
    };
    let mut failed = match sys::fork() {
        Ok(0) => sys::exit(run(rounds)),
        Ok(pid) => match sys::wait_for(pid) {
            Ok(st) if st >= 0 => st,
            Ok(st) => {
                println!("racetest: FAILED: the test process died (status {st})");
                1
            }
            Err(_) => {
                println!("racetest: FAILED: wait failed");
                1
            }
        },
        Err(_) => {
            println!("racetest: FAILED: fork failed");
            1
        }
    };
    // Grandchildren left to init may still be exiting: give them a few seconds.
    let t0 = sys::uptime();
    let mut end = meminfo();
    while end.is_some_and(|e| leaks(&start, &e)) && sys::uptime() - t0 < 500 {
        let _ = sys::sleep(10);
        end = meminfo();
    }
    match end {
        Some(e) if !leaks(&start, &e) => {}
        Some(e) => {
            println!(
                "racetest: memory back at the end: FAILED: free_frames {} -> {}, kheap_in_use {} -> {}, nproc {} -> {}",
                start.free_frames, e.free_frames, start.kheap_in_use, e.kheap_in_use, start.nproc, e.nproc
            );
            failed += 1;
        }
        None => {
            println!("racetest: FAILED: meminfo failed");
            failed += 1;
        }
    }
    if failed == 0 {
        println!("racetest: all ok");
        0
    } else {
        println!("racetest: {failed} FAILED");
        1
    }
}
