//! sysfuzz [N] [seed]: random sequences of memory and I/O system calls with valid and hostile
//! arguments (docs/ABI.md).
//!
//! A deterministic xorshift generator (seed 1 by default) picks N calls (2000 by default) among
//! `mmap`, `munmap`, `msync`, `kmalloc`, `kmfree`, `sbrk`, `fork`, `read`, `write` and a few
//! others, with arguments that are valid or clearly invalid: kernel addresses, null, the guard
//! page, addresses at and across the top of user space, unaligned or absurd lengths, bad
//! descriptors. Every clearly invalid call must fail (-1, `MAP_FAILED`, or 0 for `kmalloc`), and
//! valid ones must behave; the program touches only memory the calls said is valid, and checks
//! that what it wrote there is still there.
//!
//! The calls run in a child process; afterwards it frees everything it holds, and the parent
//! checks that the kernel's free frames and kernel-heap use are back to the baseline. The program
//! never uses the user heap (it moves the break itself) and prints `sysfuzz: N calls, ok` on
//! success.
#![no_std]
#![no_main]

use core::fmt;
use core::ptr::{read_volatile, write_volatile};
use xv6_user::abi::fcntl::{O_CREATE, O_RDONLY, O_RDWR, O_TRUNC};
use xv6_user::abi::layout::{MMAP_BASE, MMAP_TOP, USER_STACK_BOTTOM, USER_TOP};
use xv6_user::mem_sys::{
    kmalloc, kmfree, meminfo, mmap, msync, munmap, MAP_ANONYMOUS, MAP_FAILED_U64, MAP_FIXED,
    MAP_PRIVATE, MAP_SHARED, MS_ASYNC, MS_SYNC, PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE,
};
use xv6_user::sys::{self, raw};
use xv6_user::{println, Args};

xv6_user::entry!(main);

const PG: u64 = 4096;
/// Pages at most in one of the fuzzer's mappings (a bit each in [`Ent::mask`]).
const MAXPAGES: u64 = 8;
/// Mappings the fuzzer holds at most.
const NENT: usize = 12;
/// kmalloc blocks the fuzzer holds at most.
const NKB: usize = 40;
/// Pages of the file that file mappings map.
const MAPFILE_PAGES: u64 = 4;
const MAPFILE: &[u8] = b"sfz_map";
const RWFILE: &[u8] = b"sfz_rw";
const KCAP: u64 = 64 * 1024;

/// Addresses no buffer may be at: a page-sized access at any of them touches nothing mapped.
const HOSTILE: [u64; 12] = [
    0,
    0x10,
    0xffff_8000_0000_0000,
    0xffff_8000_0010_0000,
    0xffff_c000_0000_0000,
    0xffff_ffff_8000_0000,
    0xffff_ffff_8010_0000,
    0xffff_ffff_ffff_f000,
    USER_TOP,
    0x0000_8000_0000_0000,  // not canonical
    USER_STACK_BOTTOM - PG, // the guard page
    MMAP_TOP - PG,          // the mmap area's last page: never used here
];

/// Addresses that are not user space at all (kernel half, not canonical, the top): `mmap` with
/// `MAP_FIXED`, `munmap` and `msync` must refuse them.
const KERNELISH: [u64; 8] = [
    0xffff_8000_0000_0000,
    0xffff_8000_0010_0000,
    0xffff_c000_0000_0000,
    0xffff_ffff_8000_0000,
    0xffff_ffff_8010_0000,
    0xffff_ffff_ffff_f000,
    USER_TOP,
    0x0000_8000_0000_0000,
];

/// xorshift64*.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    fn pct(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// One of the fuzzer's mappings.
#[derive(Clone, Copy, Debug)]
struct Ent {
    addr: u64,
    /// 0: the slot is free.
    pages: u64,
    /// Bit i: page i is still mapped.
    mask: u8,
    prot: i32,
    /// A file mapping (contents not tracked).
    file: bool,
    /// Anonymous pages: the byte expected at offset 0 of each page.
    exp: [u8; MAXPAGES as usize],
}

const NOENT: Ent = Ent {
    addr: 0,
    pages: 0,
    mask: 0,
    prot: 0,
    file: false,
    exp: [0; MAXPAGES as usize],
};

#[derive(Debug)]
struct Fuzz {
    rng: Rng,
    ents: [Ent; NENT],
    kb: [(u64, u64); NKB],
    nkb: usize,
    kbytes: u64,
    /// Blocks already freed (kmfree must refuse them).
    freed: [u64; 4],
    brk0: u64,
    brk: u64,
    marks: [(u64, u8); 16],
    rwfd: i32,
    mapfd: i32,
    rofd: i32,
    pipe: [i32; 2],
    pipe_n: u64,
    rep: Report,
}

/// What happened so far.
#[derive(Debug)]
struct Report {
    /// In a forked child of the fuzzer.
    child: bool,
    /// Calls made.
    calls: u64,
    /// Calls that did not do what the ABI says.
    bad: u64,
    /// Hostile calls made.
    hostile: u64,
}

fn rd(a: u64) -> u8 {
    // SAFETY: the fuzzer reads only pages that a call said are mapped readable.
    unsafe { read_volatile(a as *const u8) }
}

fn wr(a: u64, v: u8) {
    // SAFETY: the fuzzer writes only pages that a call said are mapped writable, and which are
    // its own (mappings, or the heap above the break it started with).
    unsafe { write_volatile(a as *mut u8, v) }
}

impl Report {
    fn violation(&mut self, what: fmt::Arguments<'_>) {
        self.bad += 1;
        if self.bad <= 20 {
            let who = if self.child { "child" } else { "parent" };
            println!("sysfuzz: FAILED ({who}, call {}): {what}", self.calls);
        }
    }

    /// Records a hostile call's result: it must be `want`.
    fn expect(&mut self, r: i64, want: i64, what: fmt::Arguments<'_>) {
        self.hostile += 1;
        if r != want {
            self.violation(format_args!("{what}: returned {r:#x}, expected {want}"));
        }
    }
}

impl Fuzz {
    fn hostile_addr(&mut self) -> u64 {
        self.rng.pick(&HOSTILE)
    }

    fn kernel_addr(&mut self) -> u64 {
        self.rng.pick(&KERNELISH)
    }

    // ---- mappings -----------------------------------------------------------------------

    fn free_slot(&self) -> Option<usize> {
        self.ents.iter().position(|e| e.pages == 0)
    }

    fn live_slot(&mut self) -> Option<usize> {
        let n = self.ents.iter().filter(|e| e.pages != 0).count() as u64;
        if n == 0 {
            return None;
        }
        let k = self.rng.below(n) as usize;
        self.ents
            .iter()
            .enumerate()
            .filter(|(_, e)| e.pages != 0)
            .nth(k)
            .map(|(i, _)| i)
    }

    /// Checks a successful mmap's result: page-aligned, in the mmap area, clear of the others.
    fn check_new_mapping(&mut self, a: u64, pages: u64, what: &str) -> bool {
        let end = a.wrapping_add(pages * PG);
        if a % PG != 0 || a < MMAP_BASE || end > MMAP_TOP || end < a {
            self.rep.violation(format_args!(
                "{what}: mmap returned {a:#x}, not a page in the mmap area"
            ));
            return false;
        }
        for i in 0..NENT {
            let e = self.ents[i];
            for p in 0..e.pages {
                let pa = e.addr + p * PG;
                if e.mask & (1 << p) != 0 && pa >= a && pa < end {
                    self.rep.violation(format_args!(
                        "{what}: mmap returned {a:#x}+{pages} pages, over a live mapping at {pa:#x}"
                    ));
                    return false;
                }
            }
        }
        true
    }

    fn op_mmap_anon(&mut self) {
        let Some(slot) = self.free_slot() else {
            return self.op_munmap();
        };
        let pages = self.rng.range(1, MAXPAGES);
        let prot = self.rng.pick(&[
            PROT_READ,
            PROT_READ | PROT_WRITE,
            PROT_READ | PROT_WRITE,
            PROT_NONE,
            PROT_READ | PROT_WRITE | PROT_EXEC,
        ]);
        // Hints: none, garbage (only a hint: the kernel must pick elsewhere), or a random page
        // of the mmap area.
        let hint = match self.rng.below(4) {
            0 | 1 => 0,
            2 => self.hostile_addr() + self.rng.below(PG),
            _ => MMAP_BASE + self.rng.below(1 << 20) * PG,
        };
        let len = pages * PG - self.rng.below(PG); // rounded up by the kernel
        self.rep.calls += 1;
        // SAFETY: no MAP_FIXED: the kernel takes only free ranges.
        let a = unsafe { mmap(hint, len, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) };
        if a == MAP_FAILED_U64 {
            return; // out of regions: allowed
        }
        self.record_mapping(slot, a, pages, prot, false, "anonymous mmap");
    }

    /// Checks a mapping mmap just made and keeps it in `slot` as wholly present, never written.
    fn record_mapping(
        &mut self,
        slot: usize,
        a: u64,
        pages: u64,
        prot: i32,
        file: bool,
        what: &str,
    ) {
        if !self.check_new_mapping(a, pages, what) {
            return;
        }
        self.ents[slot] = Ent {
            addr: a,
            pages,
            mask: ((1u32 << pages) - 1) as u8,
            prot,
            file,
            exp: [0; MAXPAGES as usize],
        };
    }

    fn op_mmap_file(&mut self) {
        let Some(slot) = self.free_slot() else {
            return self.op_munmap();
        };
        let off = self.rng.below(MAPFILE_PAGES);
        let pages = self.rng.range(1, MAPFILE_PAGES - off);
        let shared = self.rng.pct(60);
        let prot = self.rng.pick(&[PROT_READ, PROT_READ | PROT_WRITE]);
        let flags = if shared { MAP_SHARED } else { MAP_PRIVATE };
        self.rep.calls += 1;
        // SAFETY: no MAP_FIXED.
        let a = unsafe { mmap(0, pages * PG, prot, flags, self.mapfd, off * PG) };
        if a == MAP_FAILED_U64 {
            return;
        }
        self.record_mapping(slot, a, pages, prot, true, "file mmap");
    }

    fn op_mmap_fixed(&mut self) {
        // Replaces pages of one of our anonymous mappings.
        let Some(i) = self.live_slot() else {
            return self.op_mmap_anon();
        };
        let e = self.ents[i];
        if e.file {
            return self.op_touch();
        }
        // Only live pages: a dead page's range may hold someone else's mapping now.
        let Some((first, n)) = self.live_run(&e) else {
            return;
        };
        self.rep.calls += 1;
        let at = e.addr + first * PG;
        // SAFETY: the range lies in our own mapping, which holds nothing else.
        let a = unsafe {
            mmap(
                at,
                n * PG,
                e.prot,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                -1,
                0,
            )
        };
        if a == MAP_FAILED_U64 {
            return; // out of regions
        }
        if a != at {
            self.rep
                .violation(format_args!("MAP_FIXED at {at:#x} returned {a:#x}"));
            return;
        }
        let e = &mut self.ents[i];
        for p in first..first + n {
            e.mask |= 1 << p;
            e.exp[p as usize] = 0;
        }
    }

    fn op_mmap_hostile(&mut self) {
        let kind = self.rng.below(9);
        let anon = MAP_PRIVATE | MAP_ANONYMOUS;
        let rw = PROT_READ | PROT_WRITE;
        let (addr, len, prot, flags, fd, off, what) = match kind {
            0 => (0, 0, rw, anon, -1, 0, "length 0"),
            1 => {
                let l = self.rng.pick(&[u64::MAX, u64::MAX - 100, 1 << 60, 1 << 47]);
                (0, l, rw, anon, -1, 0, "absurd length")
            }
            2 => {
                let k = self.kernel_addr();
                let a = self.rng.pick(&[k, 0, 0x10]);
                (
                    a,
                    PG,
                    rw,
                    anon | MAP_FIXED,
                    -1,
                    0,
                    "MAP_FIXED at a hostile address",
                )
            }
            3 => {
                let a = MMAP_BASE + self.rng.below(1 << 20) * PG + self.rng.range(1, PG - 1);
                (a, PG, rw, anon | MAP_FIXED, -1, 0, "unaligned MAP_FIXED")
            }
            4 => (
                USER_TOP - PG,
                2 * PG,
                rw,
                anon | MAP_FIXED,
                -1,
                0,
                "MAP_FIXED across the top",
            ),
            5 => {
                let f = self.rng.pick(&[0, MAP_SHARED | MAP_PRIVATE]);
                (0, PG, rw, f | MAP_ANONYMOUS, -1, 0, "bad sharing flags")
            }
            6 => {
                let fd = self
                    .rng
                    .pick(&[-1, 16, 99, 1000, 13, i32::MIN, self.pipe[0], 1]);
                (0, PG, PROT_READ, MAP_PRIVATE, fd, 0, "bad descriptor")
            }
            7 => {
                let off = self.rng.range(1, PG - 1) + self.rng.below(4) * PG;
                (
                    0,
                    PG,
                    PROT_READ,
                    MAP_SHARED,
                    self.mapfd,
                    off,
                    "unaligned offset",
                )
            }
            _ => (
                0,
                PG,
                rw,
                MAP_SHARED,
                self.rofd,
                0,
                "writable shared mapping of a read-only file",
            ),
        };
        self.rep.calls += 1;
        // SAFETY: every one of these must fail; none with MAP_FIXED covers this program.
        let r = unsafe { mmap(addr, len, prot, flags, fd, off) };
        if r != MAP_FAILED_U64 && flags & MAP_FIXED == 0 && r % PG == 0 && r >= MMAP_BASE {
            // SAFETY: what the kernel just mapped.
            unsafe { munmap(r, len) };
        }
        self.rep.expect(
            r as i64,
            -1,
            format_args!("mmap({addr:#x}, {len:#x}, {prot}, {flags:#x}, {fd}, {off:#x}) [{what}]"),
        );
    }

    /// A random run of live pages of `e`: (first page, count); 40% of the time a whole
    /// maximal run.
    fn live_run(&mut self, e: &Ent) -> Option<(u64, u64)> {
        let live = |p: u64| p < e.pages && e.mask & (1 << p) != 0;
        let nlive = (0..e.pages).filter(|&p| live(p)).count() as u64;
        if nlive == 0 {
            return None;
        }
        let k = self.rng.below(nlive) as usize;
        let mut first = (0..e.pages).filter(|&p| live(p)).nth(k)?;
        let whole = self.rng.pct(40);
        if whole {
            while first > 0 && live(first - 1) {
                first -= 1;
            }
        }
        let mut max = 1;
        while live(first + max) {
            max += 1;
        }
        let n = if whole { max } else { self.rng.range(1, max) };
        Some((first, n))
    }

    fn op_munmap(&mut self) {
        let Some(i) = self.live_slot() else {
            return;
        };
        let e = self.ents[i];
        // A run of live pages: all of them, or the head, the tail or a hole of a run. (Dead
        // pages are left alone: another mapping may have been placed there since.)
        let Some((first, n)) = self.live_run(&e) else {
            return;
        };
        let whole = e.mask == (((1u32 << n) - 1) << first) as u8;
        self.rep.calls += 1;
        // SAFETY: our own pages, not referred to afterwards (the mask forgets them).
        let r = unsafe { munmap(e.addr + first * PG, n * PG) };
        if r != 0 {
            // Splitting can run out of regions; nothing else may fail.
            if r != -1 || whole {
                self.rep.violation(format_args!(
                    "munmap({:#x}, {} pages) of a live mapping returned {r}",
                    e.addr + first * PG,
                    n
                ));
            }
            return;
        }
        let e = &mut self.ents[i];
        for p in first..first + n {
            e.mask &= !(1 << p);
        }
        if e.mask == 0 {
            *e = NOENT;
        }
    }

    fn op_munmap_hostile(&mut self) {
        let (addr, len, want, what) = match self.rng.below(5) {
            0 => (self.kernel_addr(), PG, -1, "hostile address"),
            1 => (
                MMAP_BASE + self.rng.range(1, PG - 1),
                PG,
                -1,
                "unaligned address",
            ),
            2 => (USER_TOP - PG, 2 * PG, -1, "across the top of user space"),
            3 => (MMAP_BASE, u64::MAX - PG, -1, "a length that wraps"),
            _ => {
                // A free part of the mmap area: not an error.
                (MMAP_TOP - 64 * PG, 16 * PG, 0, "an unmapped range")
            }
        };
        if want == 0
            && self
                .ents
                .iter()
                .any(|e| e.pages != 0 && e.addr + e.pages * PG > addr)
        {
            return; // not free after all
        }
        self.rep.calls += 1;
        // SAFETY: none of these ranges holds anything of this program.
        let r = unsafe { munmap(addr, len) };
        self.rep.expect(
            i64::from(r),
            want,
            format_args!("munmap({addr:#x}, {len:#x}) [{what}]"),
        );
    }

    fn op_touch(&mut self) {
        let Some(i) = self.live_slot() else {
            return self.op_mmap_anon();
        };
        let e = self.ents[i];
        let live: u64 = (0..e.pages).filter(|&p| e.mask & (1 << p) != 0).count() as u64;
        let k = self.rng.below(live) as usize;
        let Some(p) = (0..e.pages).filter(|&p| e.mask & (1 << p) != 0).nth(k) else {
            return;
        };
        let a = e.addr + p * PG;
        if e.prot & PROT_READ != 0 && !e.file {
            let got = rd(a);
            if got != e.exp[p as usize] {
                self.rep.violation(format_args!(
                    "page {a:#x} holds {got:#x}, expected {:#x}",
                    e.exp[p as usize]
                ));
            }
        } else if e.prot & PROT_READ != 0 {
            rd(a + self.rng.below(PG));
        }
        if e.prot & PROT_WRITE != 0 && self.rng.pct(70) {
            let v = self.rng.next() as u8;
            let off = if e.file { self.rng.below(PG) } else { 0 };
            wr(a + off, v);
            wr(a + PG - 1, v); // the rest of the page is ours too
            self.ents[i].exp[p as usize] = v;
        }
    }

    fn op_msync(&mut self) {
        if self.rng.pct(40) {
            let a = self.kernel_addr();
            self.rep.calls += 1;
            let r = msync(a, PG, MS_SYNC);
            self.rep.expect(
                i64::from(r),
                -1,
                format_args!("msync({a:#x}) [hostile address]"),
            );
            return;
        }
        let Some(i) = self.live_slot() else {
            return;
        };
        let e = self.ents[i];
        let Some(p) = (0..e.pages).find(|&p| e.mask & (1 << p) != 0) else {
            return;
        };
        self.rep.calls += 1;
        let flags = self.rng.pick(&[MS_SYNC, MS_ASYNC]);
        let r = msync(e.addr + p * PG, PG, flags);
        if e.file && r != 0 {
            self.rep.violation(format_args!(
                "msync of a live file page {:#x} returned {r}",
                e.addr + p * PG
            ));
        }
    }

    // ---- kmalloc ------------------------------------------------------------------------

    fn op_kmalloc(&mut self) {
        if self.rng.pct(25) {
            let n = self
                .rng
                .pick(&[0, 4097, 8192, 1 << 32, u64::MAX, 1 << 63, 0x1_0000_0001]);
            self.rep.calls += 1;
            let p = kmalloc(n);
            if p != 0 {
                kmfree(p);
            }
            self.rep
                .expect(p as i64, 0, format_args!("kmalloc({n:#x})"));
            return;
        }
        if self.nkb == NKB {
            return self.op_kmfree();
        }
        let n = if self.rng.pct(30) {
            self.rng.pick(&[1, 4096, 4095, 2048])
        } else {
            self.rng.range(1, 4096)
        };
        self.rep.calls += 1;
        let p = kmalloc(n);
        let fits = self.kbytes + n <= KCAP;
        if p == 0 {
            if fits {
                self.rep.violation(format_args!(
                    "kmalloc({n}) returned 0 while holding {} bytes",
                    self.kbytes
                ));
            }
            return;
        }
        if !fits {
            self.rep.violation(format_args!(
                "kmalloc({n}) beyond the cap ({} held) succeeded",
                self.kbytes
            ));
        }
        if p < 0xffff_8000_0000_0000 {
            self.rep.violation(format_args!(
                "kmalloc({n}) returned {p:#x}, not a kernel address"
            ));
        }
        self.kb[self.nkb] = (p, n);
        self.nkb += 1;
        self.kbytes += n;
    }

    fn op_kmfree(&mut self) {
        if self.nkb == 0 || self.rng.pct(30) {
            let p = match self.rng.below(4) {
                0 => self.hostile_addr(),
                1 => self.rng.pick(&self.freed),
                2 if self.nkb > 0 => {
                    self.kb[self.rng.below(self.nkb as u64) as usize].0 + self.rng.range(1, 15)
                }
                _ => self.rng.next(),
            };
            if p == 0 && self.rng.pct(50) {
                return;
            }
            if self.kb[..self.nkb].iter().any(|b| b.0 == p) {
                return; // a random number that happens to be ours
            }
            self.rep.calls += 1;
            let r = kmfree(p);
            self.rep.expect(
                i64::from(r),
                -1,
                format_args!("kmfree({p:#x}) of no block of ours"),
            );
            return;
        }
        let i = self.rng.below(self.nkb as u64) as usize;
        let (p, n) = self.kb[i];
        self.rep.calls += 1;
        let r = kmfree(p);
        if r != 0 {
            self.rep.violation(format_args!(
                "kmfree({p:#x}) of a block we hold returned {r}"
            ));
        }
        self.nkb -= 1;
        self.kb[i] = self.kb[self.nkb];
        self.kbytes -= n;
        let k = self.rng.below(self.freed.len() as u64) as usize;
        self.freed[k] = p;
    }

    // ---- sbrk ---------------------------------------------------------------------------

    fn sbrk(&mut self, n: i32) -> i64 {
        self.rep.calls += 1;
        // SAFETY: the fuzzer owns the break (it does not use the user heap) and never shrinks
        // it below where it started.
        unsafe { raw::sbrk(n) as i64 }
    }

    fn op_sbrk(&mut self) {
        match self.rng.below(10) {
            0 => {
                // Absurd: far below the start, or more memory than the machine has.
                let n = self
                    .rng
                    .pick(&[i32::MIN, -0x4000_0000, 0x7fff_f000, 0x4000_0000]);
                if n < 0 && (self.brk - self.brk0) as i64 >= -i64::from(n) {
                    return;
                }
                let r = self.sbrk(n);
                if r != -1 {
                    // Undo whatever it did.
                    // SAFETY: as in `sbrk`.
                    unsafe { raw::sbrk(n.wrapping_neg()) };
                }
                self.rep.expect(r, -1, format_args!("sbrk({n:#x})"));
                let now = self.sbrk(0);
                if now as u64 != self.brk {
                    self.rep.violation(format_args!(
                        "the break moved from {:#x} to {now:#x} after a failed sbrk",
                        self.brk
                    ));
                    self.brk = now as u64;
                }
            }
            1..=5 => {
                let n = self.rng.range(1, 3 * PG) as i32;
                let r = self.sbrk(n);
                if r == -1 {
                    return;
                }
                if r as u64 != self.brk {
                    self.rep.violation(format_args!(
                        "sbrk({n}) returned {r:#x}, the break was {:#x}",
                        self.brk
                    ));
                }
                self.brk = r as u64 + n as u64;
                // The new memory is usable.
                let last = self.brk - 1;
                wr(last, 0x42);
                for m in self.marks.iter_mut() {
                    if m.0 == last {
                        *m = (0, 0);
                    }
                }
            }
            6..=8 => {
                let room = self.brk - self.brk0;
                if room == 0 {
                    return;
                }
                let n = self.rng.range(1, room.min(4 * PG)) as i32;
                let r = self.sbrk(-n);
                if r as u64 != self.brk {
                    self.rep.violation(format_args!(
                        "sbrk(-{n}) returned {r:#x}, the break was {:#x}",
                        self.brk
                    ));
                    self.brk = self.sbrk(0) as u64;
                    return;
                }
                self.brk -= n as u64;
                let brk = self.brk;
                for m in self.marks.iter_mut() {
                    if m.0 >= brk {
                        *m = (0, 0);
                    }
                }
            }
            _ => {
                // Marks in the heap keep their values.
                for k in 0..self.marks.len() {
                    let (a, v) = self.marks[k];
                    if a != 0 && rd(a) != v {
                        self.rep.violation(format_args!(
                            "heap byte {a:#x} changed from {v:#x} to {:#x}",
                            rd(a)
                        ));
                    }
                }
                if self.brk > self.brk0 {
                    let a = self.brk0 + self.rng.below(self.brk - self.brk0);
                    let v = self.rng.next() as u8;
                    wr(a, v);
                    let k = self.rng.below(self.marks.len() as u64) as usize;
                    for m in self.marks.iter_mut() {
                        if m.0 == a {
                            *m = (0, 0);
                        }
                    }
                    self.marks[k] = (a, v);
                }
            }
        }
    }

    // ---- read and write -----------------------------------------------------------------

    /// A buffer the calls may read from (`for_write`) or write into: our stack buffer, a live
    /// page of a mapping, or the heap; with its usable length.
    fn valid_buf(&mut self, stack: &mut [u8; 512], for_read_call: bool) -> (u64, u64) {
        if self.rng.pct(40) {
            if let Some(i) = self.live_slot() {
                let e = self.ents[i];
                let need = if for_read_call { PROT_WRITE } else { PROT_READ };
                if let Some(p) = (0..e.pages).find(|&p| e.mask & (1 << p) != 0) {
                    if e.prot & need != 0 {
                        // Offset 1..: offset 0 holds the tracked byte of anonymous pages.
                        return (e.addr + p * PG + 1, PG - 1);
                    }
                }
            }
        }
        if self.rng.pct(20) && self.brk - self.brk0 > 600 && for_read_call {
            // Heap memory: any marks in it are overwritten, so forget them.
            let a = self.brk0;
            for m in self.marks.iter_mut() {
                if m.0 >= a && m.0 < a + 512 {
                    *m = (0, 0);
                }
            }
            return (a, 512);
        }
        (stack.as_mut_ptr() as u64, 512)
    }

    fn new_pipe(&mut self) {
        let _ = sys::close(self.pipe[0]);
        let _ = sys::close(self.pipe[1]);
        self.pipe = sys::pipe().unwrap_or([-1, -1]);
        self.pipe_n = 0;
    }

    fn reopen_rw(&mut self) {
        let _ = sys::close(self.rwfd);
        self.rwfd = sys::open(RWFILE, O_CREATE | O_RDWR | O_TRUNC).unwrap_or(-1);
    }

    fn op_rw(&mut self) {
        let mut stack = [0u8; 512];
        let to_pipe = self.rng.pct(40);
        let is_read = self.rng.pct(50);
        let (buf, cap) = self.valid_buf(&mut stack, is_read);
        if to_pipe {
            if is_read {
                if self.pipe_n == 0 {
                    return;
                }
                let n = self.rng.range(1, cap.min(600));
                self.rep.calls += 1;
                // SAFETY: `buf` has `cap >= n` writable bytes.
                let r = i64::from(unsafe { raw::read(self.pipe[0], buf as *mut u8, n as i32) });
                if r < 1 || r as u64 > n.min(self.pipe_n) {
                    self.rep.violation(format_args!(
                        "read of {n} from a pipe holding {} returned {r}",
                        self.pipe_n
                    ));
                    return self.new_pipe();
                }
                self.pipe_n -= r as u64;
            } else {
                let room = 512 - self.pipe_n;
                if room == 0 {
                    return;
                }
                let n = self.rng.range(0, room.min(cap));
                self.rep.calls += 1;
                // SAFETY: the kernel reads `n <= cap` bytes of `buf`.
                let r = i64::from(unsafe { raw::write(self.pipe[1], buf as *const u8, n as i32) });
                if r != n as i64 {
                    self.rep.violation(format_args!(
                        "write of {n} to a pipe with room {room} returned {r}"
                    ));
                    return self.new_pipe();
                }
                self.pipe_n += n;
            }
            return;
        }
        if self.rng.pct(5) {
            self.reopen_rw();
        }
        let n = self.rng.range(0, cap);
        self.rep.calls += 1;
        // SAFETY: `buf` has `cap >= n` bytes, writable when reading.
        let r = i64::from(unsafe {
            if is_read {
                raw::read(self.rwfd, buf as *mut u8, n as i32)
            } else {
                raw::write(self.rwfd, buf as *const u8, n as i32)
            }
        });
        if r < 0 || r as u64 > n {
            let what = if is_read { "read" } else { "write" };
            self.rep
                .violation(format_args!("{what} of {n} bytes on a file returned {r}"));
        }
        if !is_read && self.rng.pct(10) {
            // Read back from the start now and then (reopen: offset 0).
            let _ = sys::close(self.rwfd);
            self.rwfd = sys::open(RWFILE, O_RDWR).unwrap_or(-1);
        }
    }

    fn op_rw_hostile(&mut self) {
        let is_read = self.rng.pct(50);
        let mut stack = [0u8; 64];
        let name = if is_read { "read" } else { "write" };
        let (fd, buf, n, what) = match self.rng.below(4) {
            0 => {
                let fd = self.rng.pick(&[-1, 16, 99, 1000, 14, i32::MIN, i32::MAX]);
                (fd, stack.as_mut_ptr() as u64, 10, "bad descriptor")
            }
            1 => {
                let n = self.rng.pick(&[-1, -4096, i32::MIN]);
                (-2, stack.as_mut_ptr() as u64, n, "negative length")
            }
            2 => {
                let a = self.hostile_addr();
                let n = self.rng.range(1, PG) as i32;
                (-2, a, n, "hostile buffer")
            }
            _ => {
                // Across the top of user space.
                let n = self.rng.range(17, 4096) as i32;
                (-2, USER_TOP - 16, n, "buffer across the top of user space")
            }
        };
        // Files only here; pipes below. Half the hostile reads find data at the file offset, so
        // that the kernel has something to copy (the others may be at the end of the file).
        let mut at_data = "";
        if is_read && fd == -2 && self.rng.pct(50) {
            let _ = sys::write(self.rwfd, &[0x5a; 64]);
            let _ = sys::close(self.rwfd);
            self.rwfd = sys::open(RWFILE, O_RDWR).unwrap_or(-1);
            at_data = ", data to read";
        }
        let fd = if fd == -2 { self.rwfd } else { fd };
        self.rep.calls += 1;
        // SAFETY: each call must fail without touching memory (the one across the top of user
        // space may at worst write the top 16 bytes of the stack, which hold only the program's
        // argument strings, already parsed).
        let r = i64::from(unsafe {
            if is_read {
                raw::read(fd, buf as *mut u8, n)
            } else {
                raw::write(fd, buf as *const u8, n)
            }
        });
        self.rep.expect(
            r,
            -1,
            format_args!("{name}({fd}, {buf:#x}, {n}) [{what}{at_data}]"),
        );
        // A pipe with a hostile buffer (the pipe is then replaced: how much moved is unknown).
        if self.rng.pct(30) {
            let a = self.hostile_addr();
            if is_read && self.pipe_n > 0 {
                self.rep.calls += 1;
                // SAFETY: must fail without touching memory.
                let r = i64::from(unsafe { raw::read(self.pipe[0], a as *mut u8, 100) });
                self.rep.expect(
                    r,
                    -1,
                    format_args!("read(pipe, {a:#x}, 100) [hostile buffer]"),
                );
                self.new_pipe();
            } else if !is_read && self.pipe_n <= 400 {
                self.rep.calls += 1;
                // SAFETY: must fail without reading memory.
                let r = i64::from(unsafe { raw::write(self.pipe[1], a as *const u8, 100) });
                self.rep.expect(
                    r,
                    -1,
                    format_args!("write(pipe, {a:#x}, 100) [hostile buffer]"),
                );
                self.new_pipe();
            }
        }
    }

    fn op_misc_hostile(&mut self) {
        let a = self.hostile_addr();
        self.rep.calls += 1;
        match self.rng.below(5) {
            0 => {
                // SAFETY: must fail without writing.
                let r = unsafe { raw::meminfo(a as *mut xv6_user::abi::MemInfo) };
                self.rep
                    .expect(i64::from(r), -1, format_args!("meminfo({a:#x})"));
            }
            1 => {
                // SAFETY: must fail without writing.
                let r = unsafe { raw::fstat(self.rwfd, a as *mut xv6_user::abi::Stat) };
                self.rep
                    .expect(i64::from(r), -1, format_args!("fstat(fd, {a:#x})"));
            }
            2 => {
                // SAFETY: must fail without writing (and without leaking the pipe).
                let r = unsafe { raw::pipe(a as *mut i32) };
                self.rep
                    .expect(i64::from(r), -1, format_args!("pipe({a:#x})"));
            }
            3 => {
                // SAFETY: no children now: fails at once.
                let r = unsafe { raw::wait(a as *mut i32) };
                self.rep.expect(
                    i64::from(r),
                    -1,
                    format_args!("wait({a:#x}) without children"),
                );
            }
            _ => {
                let m = self.rng.pick(&[MMAP_BASE, 0x1234]);
                let r = msync(m, PG, MS_SYNC | MS_ASYNC);
                let _ = r; // an unmapped range: -1 in this kernel, unspecified by the ABI
            }
        }
    }

    // ---- fork ---------------------------------------------------------------------------

    fn op_fork(&mut self) {
        if self.rep.child {
            return self.op_touch();
        }
        self.rep.calls += 1;
        match sys::fork() {
            Err(_) => {}
            Ok(0) => {
                self.rep.child = true;
                self.rep.bad = 0;
                // The parent's blocks are not ours.
                if self.nkb > 0 {
                    let p = self.kb[0].0;
                    let r = kmfree(p);
                    self.rep.expect(
                        i64::from(r),
                        -1,
                        format_args!("kmfree({p:#x}) of the parent's block"),
                    );
                }
                self.nkb = 0;
                self.kbytes = 0;
                // Our own pipe, so the parent's count stays right.
                let _ = sys::close(self.pipe[0]);
                let _ = sys::close(self.pipe[1]);
                self.pipe = sys::pipe().unwrap_or([-1, -1]);
                self.pipe_n = 0;
                // Everything inherited must read as the parent left it.
                for i in 0..NENT {
                    let e = self.ents[i];
                    for p in 0..e.pages {
                        if e.mask & (1 << p) != 0 && !e.file && e.prot & PROT_READ != 0 {
                            let got = rd(e.addr + p * PG);
                            if got != e.exp[p as usize] {
                                self.rep.violation(format_args!(
                                    "the child reads {got:#x} at {:#x}, the parent wrote {:#x}",
                                    e.addr + p * PG,
                                    e.exp[p as usize]
                                ));
                            }
                        }
                    }
                }
                let n = self.rng.range(5, 20);
                for _ in 0..n {
                    self.step();
                }
                sys::exit(self.rep.bad.min(100) as i32);
            }
            Ok(pid) => {
                let st = sys::wait_for(pid).unwrap_or(-99);
                if st != 0 {
                    self.rep.violation(format_args!("a child exited with {st}"));
                }
                // The child moved the shared file offset.
                self.reopen_rw();
            }
        }
    }

    fn step(&mut self) {
        match self.rng.below(100) {
            0..=9 => self.op_mmap_anon(),
            10..=14 => self.op_mmap_file(),
            15..=17 => self.op_mmap_fixed(),
            18..=24 => self.op_mmap_hostile(),
            25..=32 => self.op_munmap(),
            33..=36 => self.op_munmap_hostile(),
            37..=48 => self.op_touch(),
            49..=52 => self.op_msync(),
            53..=60 => self.op_kmalloc(),
            61..=66 => self.op_kmfree(),
            67..=74 => self.op_sbrk(),
            75..=76 => self.op_fork(),
            77..=88 => self.op_rw(),
            89..=95 => self.op_rw_hostile(),
            _ => self.op_misc_hostile(),
        }
    }

    /// Gives back everything: mappings, blocks, heap, descriptors.
    fn cleanup(&mut self) {
        for i in 0..NENT {
            let e = self.ents[i];
            for p in 0..e.pages {
                if e.mask & (1 << p) == 0 {
                    continue;
                }
                // SAFETY: our own page, not used afterwards.
                let r = unsafe { munmap(e.addr + p * PG, PG) };
                if r != 0 {
                    let a = e.addr + p * PG;
                    self.rep
                        .violation(format_args!("final munmap({a:#x}) returned {r}"));
                }
            }
            self.ents[i] = NOENT;
        }
        for k in 0..self.nkb {
            let p = self.kb[k].0;
            let r = kmfree(p);
            if r != 0 {
                self.rep
                    .violation(format_args!("final kmfree({p:#x}) returned {r}"));
            }
        }
        self.nkb = 0;
        self.kbytes = 0;
        let grown = (self.brk - self.brk0) as i64;
        if grown > 0 {
            let r = self.sbrk(-(grown as i32));
            if r as u64 != self.brk {
                self.rep
                    .violation(format_args!("final sbrk(-{grown}) returned {r:#x}"));
            }
            self.brk = self.brk0;
        }
        for fd in [self.rwfd, self.mapfd, self.rofd, self.pipe[0], self.pipe[1]] {
            let _ = sys::close(fd);
        }
    }
}

fn arg_num(args: &Args, i: usize, default: u64) -> Option<u64> {
    match args.get(i) {
        None => Some(default),
        Some(s) => xv6_user::num::parse_i32(s).and_then(|v| u64::try_from(v).ok()),
    }
}

/// The fuzzing process: returns the number of violations.
fn fuzz(n: u64, seed: u64) -> u64 {
    // The file that file mappings map: known content, never truncated.
    let Ok(fd) = sys::open(MAPFILE, O_CREATE | O_RDWR | O_TRUNC) else {
        println!("sysfuzz: cannot create {}", xv6_user::BStr(MAPFILE));
        return 1;
    };
    let mut page = [0u8; 512];
    for (i, b) in page.iter_mut().enumerate() {
        *b = i as u8;
    }
    for _ in 0..MAPFILE_PAGES * PG / 512 {
        if sys::write_all(fd, &page).is_err() {
            println!("sysfuzz: cannot write {}", xv6_user::BStr(MAPFILE));
            return 1;
        }
    }
    let brk0 = sys::sbrk(0).unwrap_or(0) as u64;
    let mut f = Fuzz {
        rng: Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1),
        ents: [NOENT; NENT],
        kb: [(0, 0); NKB],
        nkb: 0,
        kbytes: 0,
        freed: [0x1000; 4],
        brk0,
        brk: brk0,
        marks: [(0, 0); 16],
        rwfd: sys::open(RWFILE, O_CREATE | O_RDWR | O_TRUNC).unwrap_or(-1),
        mapfd: fd,
        rofd: sys::open(MAPFILE, O_RDONLY).unwrap_or(-1),
        pipe: sys::pipe().unwrap_or([-1, -1]),
        pipe_n: 0,
        rep: Report {
            child: false,
            calls: 0,
            bad: 0,
            hostile: 0,
        },
    };
    if f.rwfd < 0 || f.rofd < 0 || f.pipe[0] < 0 {
        println!("sysfuzz: cannot open the test files or a pipe");
        return 1;
    }
    while f.rep.calls < n {
        f.step();
    }
    f.cleanup();
    let _ = sys::unlink(RWFILE);
    let _ = sys::unlink(MAPFILE);
    // (A step may make two calls, so the child can pass `n` by one.)
    println!(
        "sysfuzz: child made {} calls for {n} asked, {} of them hostile",
        f.rep.calls, f.rep.hostile
    );
    f.rep.bad
}

fn main(args: Args) -> i32 {
    let (Some(n), Some(seed)) = (arg_num(&args, 1, 2000), arg_num(&args, 2, 1)) else {
        println!("usage: sysfuzz [N] [seed]");
        return 2;
    };
    let Some(start) = meminfo() else {
        println!("sysfuzz: meminfo failed");
        return 1;
    };
    let bad = match sys::fork() {
        Err(_) => {
            println!("sysfuzz: fork failed");
            return 1;
        }
        Ok(0) => sys::exit(fuzz(n, seed).min(100) as i32),
        Ok(pid) => match sys::wait_for(pid) {
            Ok(st) if st >= 0 => st,
            Ok(st) => {
                println!("sysfuzz: FAILED: the fuzzing process died (status {st})");
                1
            }
            Err(_) => 1,
        },
    };
    let mut ok = bad == 0;
    match meminfo() {
        Some(end)
            if end.free_frames == start.free_frames
                && end.kheap_in_use == start.kheap_in_use
                && end.nproc == start.nproc => {}
        Some(end) => {
            println!(
                "sysfuzz: FAILED: memory not back: free_frames {} -> {}, kheap_in_use {} -> {}, nproc {} -> {}",
                start.free_frames,
                end.free_frames,
                start.kheap_in_use,
                end.kheap_in_use,
                start.nproc,
                end.nproc
            );
            ok = false;
        }
        None => {
            println!("sysfuzz: FAILED: meminfo failed");
            ok = false;
        }
    }
    if ok {
        println!("sysfuzz: {n} calls, ok");
        0
    } else {
        println!("sysfuzz: {n} calls, FAILED");
        1
    }
}
