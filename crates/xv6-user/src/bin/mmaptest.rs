//! mmaptest: `mmap`, `munmap` and `msync` (system calls 24 to 26) as docs/ABI.md describes them.
//!
//! Each case runs in a child process of its own, so that a kernel bug that kills it fails only that
//! case; the parent checks after every case that the kernel's free frames and kernel-heap use are
//! back where they were, and once more at the end. A case prints `name: ok` or
//! `name: FAILED: reason`; the program exits 0 only if all passed.
//!
//! `mmaptest --exit` exits 0 at once: the "exec drops mappings" case execs it.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;
use core::ptr::{read_volatile, write_volatile};
use xv6_user::abi::fcntl::{O_CREATE, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY};
use xv6_user::abi::layout::{MMAP_BASE, MMAP_TOP, USER_TOP};
use xv6_user::mem_sys::{
    meminfo, mmap, msync, munmap, MemInfo, MAP_ANONYMOUS, MAP_FAILED_U64, MAP_FIXED, MAP_PRIVATE,
    MAP_SHARED, MS_ASYNC, MS_SYNC, PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE,
};
use xv6_user::{println, sys, Args};

xv6_user::entry!(main);

const PG: u64 = 4096;
const RW: i32 = PROT_READ | PROT_WRITE;
const ANON: i32 = MAP_PRIVATE | MAP_ANONYMOUS;

// ---------------------------------------------------------------------------------------------
// Reporting

use xv6_user::check::{Case, Msg, R};

macro_rules! fail {
    ($($t:tt)*) => { return Err(Msg::new(format_args!($($t)*))) };
}

macro_rules! ensure {
    ($c:expr, $($t:tt)*) => { if !$c { fail!($($t)*); } };
}

// ---------------------------------------------------------------------------------------------
// Memory helpers

/// Reads the byte at `a`.
fn rd(a: u64) -> u8 {
    // SAFETY: the cases pass addresses the ABI says are mapped and readable, or run in a child
    // that the kernel is meant to kill for the access.
    unsafe { read_volatile(a as *const u8) }
}

/// Writes the byte at `a`.
fn wr(a: u64, v: u8) {
    // SAFETY: as in `rd`; nothing but the mappings the cases made lives at these addresses.
    unsafe { write_volatile(a as *mut u8, v) }
}

/// A mapping, unmapped (the whole range; holes are no error) when dropped.
#[derive(Debug)]
struct Map {
    addr: u64,
    len: u64,
}

impl Map {
    /// Unmaps it now; returns what `munmap` returned.
    fn unmap(mut self) -> i32 {
        // SAFETY: the mapping is ours and nothing refers into it any more.
        let r = unsafe { munmap(self.addr, self.len) };
        self.len = 0;
        r
    }
    fn page(&self, i: u64) -> u64 {
        self.addr + i * PG
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        if self.len != 0 {
            // SAFETY: as in `unmap`.
            unsafe { munmap(self.addr, self.len) };
        }
    }
}

/// `mmap` without `MAP_FIXED`, expected to succeed.
fn map(hint: u64, len: u64, prot: i32, flags: i32, fd: i32, off: u64) -> Result<Map, Box<Msg>> {
    // SAFETY: without MAP_FIXED the kernel takes only free address ranges.
    let a = unsafe { mmap(hint, len, prot, flags & !MAP_FIXED, fd, off) };
    if a == MAP_FAILED_U64 {
        fail!("mmap({hint:#x}, {len:#x}, prot {prot}, flags {flags:#x}, fd {fd}, off {off:#x}) failed");
    }
    Ok(Map { addr: a, len })
}

/// An anonymous private mapping.
fn anon(len: u64, prot: i32) -> Result<Map, Box<Msg>> {
    map(0, len, prot, ANON, -1, 0)
}

/// `mmap` with `MAP_FIXED` at `addr`, which must lie in a mapping this case owns (or be free).
fn map_fixed(addr: u64, len: u64, prot: i32, flags: i32, fd: i32, off: u64) -> u64 {
    // SAFETY: the cases pass only ranges of their own mappings or free ones.
    unsafe { mmap(addr, len, prot, flags | MAP_FIXED, fd, off) }
}

/// Checks `len` bytes at `addr` against `f(offset)`.
fn check_mem(what: &str, addr: u64, len: u64, f: impl Fn(u64) -> u8) -> R {
    for i in 0..len {
        let (got, want) = (rd(addr + i), f(i));
        ensure!(
            got == want,
            "{what}: byte {i:#x} is {got:#x}, expected {want:#x}"
        );
    }
    Ok(())
}

fn mi() -> Result<MemInfo, Box<Msg>> {
    match meminfo() {
        Some(m) => Ok(m),
        None => fail!("meminfo failed"),
    }
}

// ---------------------------------------------------------------------------------------------
// Children

/// Runs `f` in a child and returns its exit status (-1 if the kernel killed it).
fn child<F: FnOnce() -> i32>(f: F) -> Result<i32, Box<Msg>> {
    match sys::fork() {
        Err(_) => fail!("fork failed"),
        Ok(0) => sys::exit(f()),
        Ok(pid) => match sys::wait_for(pid) {
            Ok(st) => Ok(st),
            Err(_) => fail!("wait failed"),
        },
    }
}

/// Runs `f` in a child that the kernel must kill.
fn expect_killed<F: FnOnce()>(what: &str, f: F) -> R {
    let st = child(|| {
        f();
        0
    })?;
    ensure!(
        st == -1,
        "{what}: the child exited with {st}, expected to be killed (-1)"
    );
    Ok(())
}

/// Runs `f` in a child that must survive and return 0.
fn expect_alive<F: FnOnce() -> i32>(what: &str, f: F) -> R {
    let st = child(f)?;
    ensure!(st == 0, "{what}: the child exited with {st}, expected 0");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Files

/// The test files' contents: byte `i` of the file made with `seed`.
fn pat(seed: u8, i: u64) -> u8 {
    ((i * 7 + (i >> 9) * 13) as u8).wrapping_add(seed.wrapping_mul(41)) | 1
}

fn open(name: &[u8], flags: i32) -> Result<i32, Box<Msg>> {
    match sys::open(name, flags) {
        Ok(fd) => Ok(fd),
        Err(_) => fail!("open {} failed", xv6_user::BStr(name)),
    }
}

/// Creates (or truncates) `name` with `len` bytes of `pat(seed, _)`.
fn make_file(name: &[u8], len: u64, seed: u8) -> R {
    let fd = open(name, O_CREATE | O_RDWR | O_TRUNC)?;
    let mut buf = [0u8; 512];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(512);
        for (i, b) in buf[..n as usize].iter_mut().enumerate() {
            *b = pat(seed, at + i as u64);
        }
        if sys::write_all(fd, &buf[..n as usize]).is_err() {
            let _ = sys::close(fd);
            fail!("writing {} failed", xv6_user::BStr(name));
        }
        at += n;
    }
    let _ = sys::close(fd);
    Ok(())
}

/// Reads `name` with `read()` and checks it is `len` bytes of `f(offset)`.
fn check_file(what: &str, name: &[u8], len: u64, f: impl Fn(u64) -> u8) -> R {
    let fd = open(name, O_RDONLY)?;
    let mut buf = [0u8; 512];
    let mut at = 0u64;
    let r = loop {
        let n = match sys::read(fd, &mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(_) => break Err(Msg::new(format_args!("{what}: read failed"))),
        };
        if let Some(i) = (0..n).find(|&i| buf[i] != f(at + i as u64)) {
            let off = at + i as u64;
            break Err(Msg::new(format_args!(
                "{what}: file byte {off:#x} is {:#x}, expected {:#x}",
                buf[i],
                f(off)
            )));
        }
        at += n as u64;
    };
    let _ = sys::close(fd);
    r?;
    ensure!(at == len, "{what}: the file has {at} bytes, expected {len}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The cases

fn anon_zeroed() -> R {
    let m = anon(3 * PG, RW)?;
    ensure!(m.addr % PG == 0, "address {:#x} not page-aligned", m.addr);
    check_mem("fresh anonymous memory", m.addr, 3 * PG, |_| 0)?;
    let r = anon(2 * PG, PROT_READ)?;
    check_mem("fresh read-only anonymous memory", r.addr, 2 * PG, |_| 0)?;
    // A second mapping after the first was dirtied and dropped is zeroed too.
    for i in 0..3 * PG {
        wr(m.addr + i, 0xa5);
    }
    ensure!(m.unmap() == 0, "munmap failed");
    let m = anon(3 * PG, RW)?;
    check_mem("anonymous memory after reuse", m.addr, 3 * PG, |_| 0)
}

fn string_roundtrip() -> R {
    let m = anon(2 * PG, RW)?;
    let s = b"hello, mmap: a string copied in and read back";
    for at in [0, 100, PG - 10, 2 * PG - s.len() as u64] {
        for (i, &b) in s.iter().enumerate() {
            wr(m.addr + at + i as u64, b);
        }
        check_mem("string", m.addr + at, s.len() as u64, |i| s[i as usize])?;
    }
    Ok(())
}

fn map_modify_unmap_rounds() -> R {
    for round in 0..100u64 {
        let pages = 1 + round % 4;
        let m = anon(pages * PG, RW)?;
        for p in 0..pages {
            ensure!(rd(m.page(p)) == 0, "round {round}: page {p} not zeroed");
            wr(m.page(p), (round + p) as u8 | 1);
            wr(m.page(p) + PG - 1, (round * 3 + p) as u8 | 1);
        }
        for p in 0..pages {
            let ok = rd(m.page(p)) == (round + p) as u8 | 1
                && rd(m.page(p) + PG - 1) == (round * 3 + p) as u8 | 1;
            ensure!(ok, "round {round}: page {p} does not read back");
        }
        let r = m.unmap();
        ensure!(r == 0, "round {round}: munmap returned {r}");
    }
    Ok(())
}

fn page_aligned() -> R {
    let mut prev = Map { addr: 0, len: 0 };
    for len in [1, 100, PG - 1, PG, PG + 1, 3 * PG + 1, 5 * PG] {
        let m = anon(len, RW)?;
        ensure!(
            m.addr % PG == 0,
            "mmap of {len} bytes returned {:#x}",
            m.addr
        );
        ensure!(
            m.addr >= MMAP_BASE && m.addr + len <= MMAP_TOP,
            "mmap of {len} bytes returned {:#x}, outside the mmap area",
            m.addr
        );
        let overlap = prev.len != 0 && m.addr < prev.addr + prev.len && prev.addr < m.addr + len;
        ensure!(
            !overlap,
            "mappings {:#x}+{} and {:#x}+{} overlap",
            prev.addr,
            prev.len,
            m.addr,
            len
        );
        // The length is rounded up to whole pages: the last byte of the last page is usable.
        let last = m.addr + len.next_multiple_of(PG) - 1;
        expect_alive("writing the rounded-up tail", || {
            wr(last, 7);
            i32::from(rd(last) != 7)
        })?;
        prev = m;
    }
    Ok(())
}

fn hint_honoured() -> R {
    let hint = MMAP_BASE + 0x2345_6000_0000;
    let m = map(hint, 2 * PG, RW, ANON, -1, 0)?;
    ensure!(
        m.addr == hint,
        "hint {hint:#x} free, but mmap returned {:#x}",
        m.addr
    );
    wr(m.addr + PG + 5, 9);
    // The same hint again: taken, so the kernel picks another, non-overlapping range.
    let n = map(hint, 2 * PG, RW, ANON, -1, 0)?;
    ensure!(
        n.addr % PG == 0 && (n.addr + 2 * PG <= hint || n.addr >= hint + 2 * PG),
        "hint {hint:#x} already mapped, but mmap returned {:#x}",
        n.addr
    );
    ensure!(rd(m.addr + PG + 5) == 9, "the first mapping changed");
    // A hint in the kernel's half is only a hint: the kernel picks a range in the mmap area.
    let k = map(0xffff_8000_0000_0000, PG, RW, ANON, -1, 0)?;
    ensure!(
        k.addr >= MMAP_BASE && k.addr < MMAP_TOP,
        "kernel-address hint: mmap returned {:#x}",
        k.addr
    );
    // MAP_FIXED at a free address returns exactly that address.
    let fixed = MMAP_BASE + 0x3456_0000_0000;
    let f = map_fixed(fixed, PG, RW, ANON, -1, 0);
    ensure!(f == fixed, "MAP_FIXED at free {fixed:#x} returned {f:#x}");
    let f = Map { addr: f, len: PG };
    wr(f.addr, 1);
    // MAP_FIXED over the middle of a mapping replaces that page only.
    let m3 = anon(3 * PG, RW)?;
    for i in 0..3 {
        wr(m3.page(i) + 1, 0xaa);
    }
    let r = map_fixed(m3.page(1), PG, RW, ANON, -1, 0);
    ensure!(r == m3.page(1), "MAP_FIXED over a mapping returned {r:#x}");
    ensure!(rd(m3.page(1) + 1) == 0, "the replaced page is not zeroed");
    ensure!(
        rd(m3.page(0) + 1) == 0xaa && rd(m3.page(2) + 1) == 0xaa,
        "the neighbours of the replaced page changed"
    );
    Ok(())
}

fn multi_page() -> R {
    for pages in [2u64, 3] {
        let m = anon(pages * PG, RW)?;
        for p in 0..pages {
            for off in [0, 1, PG / 2, PG - 1] {
                wr(m.page(p) + off, (p * 16 + off) as u8 ^ 0x5a);
            }
        }
        for p in 0..pages {
            for off in [0, 1, PG / 2, PG - 1] {
                let (got, want) = (rd(m.page(p) + off), (p * 16 + off) as u8 ^ 0x5a);
                ensure!(
                    got == want,
                    "{pages}-page mapping: page {p} offset {off}: {got:#x}, expected {want:#x}"
                );
            }
        }
        // The pages are distinct memory.
        wr(m.page(0), 1);
        ensure!(rd(m.page(pages - 1)) != 1, "pages alias each other");
    }
    Ok(())
}

fn protection() -> R {
    let ro = anon(PG, PROT_READ)?;
    let a = ro.addr;
    expect_alive("reading PROT_READ memory", || i32::from(rd(a + 8) != 0))?;
    expect_killed("writing PROT_READ memory", || wr(a + 8, 1))?;
    let none = anon(PG, PROT_NONE)?;
    let n = none.addr;
    expect_killed("reading PROT_NONE memory", || {
        rd(n);
    })?;
    expect_killed("writing PROT_NONE memory", || wr(n, 1))?;
    // Executing memory without PROT_EXEC kills; with it, the code runs.
    let code: [u8; 6] = [0xb8, 42, 0, 0, 0, 0xc3]; // mov eax, 42; ret
    let data = anon(PG, RW)?;
    for (i, &b) in code.iter().enumerate() {
        wr(data.addr + i as u64, b);
    }
    let d = data.addr;
    expect_killed("executing memory without PROT_EXEC", || {
        // SAFETY: not safe: the kernel must kill the process at the call.
        let f: extern "C" fn() -> i32 = unsafe { core::mem::transmute(d as usize) };
        f();
    })?;
    let x = anon(PG, RW | PROT_EXEC)?;
    for (i, &b) in code.iter().enumerate() {
        wr(x.addr + i as u64, b);
    }
    let xa = x.addr;
    expect_alive("executing PROT_EXEC memory", || {
        // SAFETY: the page holds `mov eax, 42; ret` and is mapped executable.
        let f: extern "C" fn() -> i32 = unsafe { core::mem::transmute(xa as usize) };
        i32::from(f() != 42)
    })?;
    // The parent is unaffected by its children's faults.
    ensure!(rd(a + 8) == 0, "PROT_READ memory changed");
    Ok(())
}

const F1: &[u8] = b"mt_file1";
const F2: &[u8] = b"mt_file2";

fn file_after_close() -> R {
    let len = 2 * PG + 100;
    make_file(F1, len, 1)?;
    for flags in [MAP_PRIVATE, MAP_SHARED] {
        let fd = open(F1, O_RDONLY)?;
        let m = map(0, len, PROT_READ, flags, fd, 0);
        let _ = sys::close(fd);
        let m = m?;
        check_mem("file mapping after close", m.addr, len, |i| pat(1, i))?;
        check_mem(
            "past the end of the file",
            m.addr + len,
            3 * PG - len,
            |_| 0,
        )?;
    }
    // Even after the file's name is gone.
    let fd = open(F1, O_RDONLY)?;
    let m = map(0, len, PROT_READ, MAP_PRIVATE, fd, 0);
    let _ = sys::close(fd);
    let m = m?;
    ensure!(sys::unlink(F1).is_ok(), "unlink failed");
    check_mem("file mapping after close and unlink", m.addr, len, |i| {
        pat(1, i)
    })
}

fn msync_reaches_file() -> R {
    let len = 2 * PG + 100;
    make_file(F1, len, 2)?;
    let fd = open(F1, O_RDWR)?;
    let m = map(0, len, RW, MAP_SHARED, fd, 0);
    let _ = sys::close(fd);
    let m = m?;
    check_mem("shared file mapping", m.addr, len, |i| pat(2, i))?;
    let edits1 = [(10u64, b'X'), (PG + 20, b'Y'), (2 * PG + 50, b'Z')];
    for &(o, v) in &edits1 {
        wr(m.addr + o, v);
    }
    // Past the end of the file, in its last page: never written back (the size stays).
    wr(m.addr + len + 7, b'P');
    let r = msync(m.addr, len, MS_SYNC);
    ensure!(r == 0, "msync(MS_SYNC) returned {r}");
    let after1 = |i: u64| edits1.iter().find(|e| e.0 == i).map_or(pat(2, i), |e| e.1);
    check_file("after msync", F1, len, after1)?;
    // A whole page past the end: it reads as zero, and writing it changes nothing either.
    let fd = open(F1, O_RDWR)?;
    let far = map(0, PG, RW, MAP_SHARED, fd, 8 * PG);
    let _ = sys::close(fd);
    let far = far?;
    check_mem("a mapping past the end of the file", far.addr, PG, |_| 0)?;
    wr(far.addr + 1, b'F');
    let r = far.unmap();
    ensure!(r == 0, "munmap of the mapping past the end returned {r}");
    check_file("after writing past the end", F1, len, after1)?;
    wr(m.addr + 11, b'W');
    let r = msync(m.addr, PG, MS_ASYNC);
    ensure!(r == 0, "msync(MS_ASYNC) of the first page returned {r}");
    check_file("after msync(MS_ASYNC)", F1, len, |i| {
        if i == 11 {
            b'W'
        } else {
            after1(i)
        }
    })?;
    // munmap writes the rest back too.
    wr(m.addr + PG + 30, b'V');
    let r = m.unmap();
    ensure!(r == 0, "munmap returned {r}");
    check_file("after munmap", F1, len, |i| match i {
        11 => b'W',
        x if x == PG + 30 => b'V',
        _ => after1(i),
    })?;
    // And exit writes back what a process never synced.
    let fd = open(F1, O_RDWR)?;
    let st = child(|| {
        // SAFETY: a fresh range the kernel picks.
        let a = unsafe { mmap(0, PG, RW, MAP_SHARED, fd, 0) };
        if a == MAP_FAILED_U64 {
            return 1;
        }
        wr(a + 3, b'E');
        0
    });
    let _ = sys::close(fd);
    ensure!(st? == 0, "the child's mmap failed");
    check_file(
        "after a child exited with a dirty shared mapping",
        F1,
        len,
        |i| match i {
            3 => b'E',
            11 => b'W',
            x if x == PG + 30 => b'V',
            _ => after1(i),
        },
    )?;
    let _ = sys::unlink(F1);
    Ok(())
}

fn page_offset() -> R {
    let len = 4 * PG;
    make_file(F1, len, 3)?;
    let fd = open(F1, O_RDWR)?;
    let a = map(0, PG, PROT_READ, MAP_PRIVATE, fd, PG);
    let b = map(0, 2 * PG, PROT_READ, MAP_SHARED, fd, 2 * PG);
    let c = map(0, PG, RW, MAP_SHARED, fd, 3 * PG);
    let _ = sys::close(fd);
    let (a, b, c) = (a?, b?, c?);
    check_mem("mapping at offset 4096", a.addr, PG, |i| pat(3, PG + i))?;
    check_mem("mapping at offset 8192", b.addr, 2 * PG, |i| {
        pat(3, 2 * PG + i)
    })?;
    wr(c.addr + 5, b'Q');
    ensure!(msync(c.addr, PG, MS_SYNC) == 0, "msync failed");
    check_file("write through a mapping at offset 12288", F1, len, |i| {
        if i == 3 * PG + 5 {
            b'Q'
        } else {
            pat(3, i)
        }
    })?;
    ensure!(
        rd(b.addr + PG + 5) == b'Q' || rd(b.addr + PG + 5) == pat(3, 3 * PG + 5),
        "garbage"
    );
    let _ = sys::unlink(F1);
    Ok(())
}

fn private_stays_private() -> R {
    let len = 2 * PG;
    make_file(F1, len, 4)?;
    let fd = open(F1, O_RDWR)?;
    let m = map(0, len, RW, MAP_PRIVATE, fd, 0);
    let _ = sys::close(fd);
    let m = m?;
    check_mem("private file mapping", m.addr, len, |i| pat(4, i))?;
    for i in 0..PG {
        wr(m.addr + i, 0x55);
    }
    check_mem("private writes", m.addr, len, |i| {
        if i < PG {
            0x55
        } else {
            pat(4, i)
        }
    })?;
    let _ = msync(m.addr, len, MS_SYNC); // nothing to write back: any result will do
    check_file("after writes to a private mapping", F1, len, |i| pat(4, i))?;
    let a = m.addr;
    expect_alive("a child writing the private mapping", || {
        wr(a + PG + 1, 0x66);
        0
    })?;
    ensure!(
        rd(a + PG + 1) == pat(4, PG + 1),
        "the child's private write reached the parent"
    );
    ensure!(m.unmap() == 0, "munmap failed");
    check_file("after munmap of a private mapping", F1, len, |i| pat(4, i))?;
    let _ = sys::unlink(F1);
    Ok(())
}

fn shared_writable_needs_writable_file() -> R {
    make_file(F1, PG, 5)?;
    let fd = open(F1, O_RDONLY)?;
    // SAFETY: no MAP_FIXED.
    let r = unsafe { mmap(0, PG, RW, MAP_SHARED, fd, 0) };
    let ok_ro = map(0, PG, PROT_READ, MAP_SHARED, fd, 0);
    let ok_priv = map(0, PG, RW, MAP_PRIVATE, fd, 0);
    let _ = sys::close(fd);
    if r != MAP_FAILED_U64 {
        // SAFETY: the mapping just made.
        unsafe { munmap(r, PG) };
        fail!("a writable MAP_SHARED mapping of a file opened O_RDONLY returned {r:#x}");
    }
    let (ro, pv) = (ok_ro?, ok_priv?);
    check_mem("read-only shared mapping", ro.addr, PG, |i| pat(5, i))?;
    wr(pv.addr, 1);
    let ra = ro.addr;
    expect_killed("writing a read-only shared file mapping", || wr(ra, 1))?;
    check_file("file opened read-only", F1, PG, |i| pat(5, i))?;
    // A write-only descriptor cannot be read into a mapping.
    let fd = open(F1, O_WRONLY)?;
    // SAFETY: no MAP_FIXED.
    let r = unsafe { mmap(0, PG, PROT_READ, MAP_SHARED, fd, 0) };
    let _ = sys::close(fd);
    if r != MAP_FAILED_U64 {
        // SAFETY: the mapping just made.
        unsafe { munmap(r, PG) };
        fail!("a mapping of a file opened O_WRONLY returned {r:#x}");
    }
    let _ = sys::unlink(F1);
    Ok(())
}

fn two_files() -> R {
    let (la, lb) = (PG + 10, 2 * PG);
    make_file(F1, la, 6)?;
    make_file(F2, lb, 7)?;
    let fa = open(F1, O_RDWR)?;
    let fb = open(F2, O_RDWR)?;
    let a = map(0, la, RW, MAP_SHARED, fa, 0);
    let b = map(0, lb, RW, MAP_SHARED, fb, 0);
    let _ = sys::close(fa);
    let _ = sys::close(fb);
    let (a, b) = (a?, b?);
    check_mem("first file", a.addr, la, |i| pat(6, i))?;
    check_mem("second file", b.addr, lb, |i| pat(7, i))?;
    wr(a.addr + 3, b'A');
    wr(b.addr + PG + 3, b'B');
    ensure!(msync(a.addr, la, MS_SYNC) == 0, "msync of the first failed");
    ensure!(
        msync(b.addr, lb, MS_SYNC) == 0,
        "msync of the second failed"
    );
    check_file(
        "first file",
        F1,
        la,
        |i| if i == 3 { b'A' } else { pat(6, i) },
    )?;
    check_file("second file", F2, lb, |i| {
        if i == PG + 3 {
            b'B'
        } else {
            pat(7, i)
        }
    })?;
    let _ = sys::unlink(F1);
    let _ = sys::unlink(F2);
    Ok(())
}

fn fork_private() -> R {
    let m = anon(2 * PG, RW)?;
    for i in (0..2 * PG).step_by(64) {
        wr(m.addr + i, (i / 64) as u8 | 0x80);
    }
    let a = m.addr;
    expect_alive(
        "the child sees the parent's data and changes its copy",
        || {
            for i in (0..2 * PG).step_by(64) {
                if rd(a + i) != (i / 64) as u8 | 0x80 {
                    return 1;
                }
            }
            for i in (0..2 * PG).step_by(64) {
                wr(a + i, 0x11);
            }
            i32::from(rd(a + 64) != 0x11)
        },
    )?;
    for i in (0..2 * PG).step_by(64) {
        ensure!(
            rd(a + i) == (i / 64) as u8 | 0x80,
            "the child's private change reached the parent at {i:#x}"
        );
    }
    // A page the parent never touched before the fork is zero in the child, and stays the
    // child's own.
    let z = anon(PG, RW)?;
    let za = z.addr;
    expect_alive("untouched page in the child", || {
        let ok = rd(za) == 0;
        wr(za, 3);
        i32::from(!ok)
    })?;
    ensure!(
        rd(za) == 0,
        "the child's write to an untouched page reached the parent"
    );
    Ok(())
}

fn fork_shared_file() -> R {
    let len = PG;
    make_file(F1, len, 8)?;
    let fd = open(F1, O_RDWR)?;
    let m = map(0, len, RW, MAP_SHARED, fd, 0);
    let _ = sys::close(fd);
    let m = m?;
    wr(m.addr + 1, b'p'); // the parent's change, not synced yet
    let a = m.addr;
    expect_alive("the child sees the parent's shared data and writes", || {
        if rd(a + 1) != b'p' || rd(a + 2) != pat(8, 2) {
            return 1;
        }
        wr(a + 100, b'c');
        0
    })?;
    let expect = |i: u64| match i {
        1 => b'p',
        100 => b'c',
        _ => pat(8, i),
    };
    // The child's exit wrote the shared page back, with both changes (it is the same page, or
    // the child's copy had the parent's change).
    check_file("after the child exited", F1, len, expect)?;
    ensure!(m.unmap() == 0, "munmap failed");
    check_file("after the parent's munmap (lost update?)", F1, len, expect)?;
    let _ = sys::unlink(F1);
    Ok(())
}

fn munmap_then_access() -> R {
    let m = anon(2 * PG, RW)?;
    wr(m.addr, 1);
    wr(m.addr + PG, 2);
    let a = m.addr;
    ensure!(m.unmap() == 0, "munmap failed");
    expect_killed("reading after munmap", || {
        rd(a);
    })?;
    expect_killed("writing after munmap (page never touched again)", || {
        wr(a + PG, 1)
    })?;
    // Unmapping what is no longer mapped is no error.
    // SAFETY: nothing lives there any more.
    let r = unsafe { munmap(a, 2 * PG) };
    ensure!(r == 0, "munmap of an unmapped range returned {r}");
    Ok(())
}

/// Fills page `i` of `m` (first and last byte) with `i + 1`.
fn fill_pages(m: &Map, pages: u64) {
    for i in 0..pages {
        wr(m.page(i), i as u8 + 1);
        wr(m.page(i) + PG - 1, i as u8 + 1);
    }
}

/// Pages in `live` read back `i + 1`; pages in `dead` kill on access.
fn check_pages(what: &str, m: &Map, live: &[u64], dead: &[u64]) -> R {
    for &i in live {
        let p = m.page(i);
        ensure!(
            rd(p) == i as u8 + 1 && rd(p + PG - 1) == i as u8 + 1,
            "{what}: remaining page {i} lost its data"
        );
        wr(p + 1, 0x77); // still writable
    }
    for &i in dead {
        let p = m.page(i);
        expect_killed(what, || {
            rd(p + 8);
        })?;
    }
    Ok(())
}

fn munmap_parts() -> R {
    let m = anon(6 * PG, RW)?;
    fill_pages(&m, 6);
    // SAFETY: pages of our own mapping that are not used afterwards.
    let r = unsafe { munmap(m.page(0), PG) };
    ensure!(r == 0, "munmap of the head returned {r}");
    check_pages("after munmap of the head", &m, &[1, 2, 3, 4, 5], &[0])?;
    // SAFETY: as above.
    let r = unsafe { munmap(m.page(5), PG) };
    ensure!(r == 0, "munmap of the tail returned {r}");
    check_pages("after munmap of the tail", &m, &[1, 2, 3, 4], &[0, 5])?;
    // SAFETY: as above.
    let r = unsafe { munmap(m.page(3), PG) };
    ensure!(r == 0, "munmap of a middle page returned {r}");
    check_pages("after munmap of a hole", &m, &[1, 2, 4], &[0, 3, 5])?;
    // A multi-page hole, then refilling it with MAP_FIXED.
    let n = anon(8 * PG, RW)?;
    fill_pages(&n, 8);
    // SAFETY: as above.
    let r = unsafe { munmap(n.page(2), 4 * PG) };
    ensure!(r == 0, "munmap of a 4-page hole returned {r}");
    check_pages(
        "after munmap of a 4-page hole",
        &n,
        &[0, 1, 6, 7],
        &[2, 3, 4, 5],
    )?;
    let r = map_fixed(n.page(3), PG, RW, ANON, -1, 0);
    ensure!(r == n.page(3), "MAP_FIXED into the hole returned {r:#x}");
    ensure!(
        rd(n.page(3) + PG - 1) == 0,
        "the page mapped into the hole is not zeroed"
    );
    check_pages(
        "after filling part of the hole",
        &n,
        &[0, 1, 6, 7],
        &[2, 4, 5],
    )?;
    // The whole original range, holes and all.
    let a = m.addr;
    ensure!(m.unmap() == 0, "munmap of a range with holes failed");
    expect_killed("after munmap of everything", || {
        rd(a + 2 * PG);
    })?;
    ensure!(n.unmap() == 0, "munmap of the second range failed");
    Ok(())
}

fn munmap_parts_of_file() -> R {
    let len = 4 * PG;
    make_file(F1, len, 9)?;
    let fd = open(F1, O_RDWR)?;
    let m = map(0, len, RW, MAP_SHARED, fd, 0);
    let _ = sys::close(fd);
    let m = m?;
    // SAFETY: pages of our own mapping that are not used afterwards.
    let r = unsafe { munmap(m.page(1), PG) };
    ensure!(r == 0, "munmap of a middle page returned {r}");
    // SAFETY: as above.
    let r = unsafe { munmap(m.page(0), PG) };
    ensure!(r == 0, "munmap of the head returned {r}");
    check_mem("page 2 after the split", m.page(2), PG, |i| {
        pat(9, 2 * PG + i)
    })?;
    check_mem("page 3 after the split", m.page(3), PG, |i| {
        pat(9, 3 * PG + i)
    })?;
    wr(m.page(2) + 7, b'S');
    wr(m.page(3) + 9, b'T');
    let r = msync(m.page(2), 2 * PG, MS_SYNC);
    ensure!(r == 0, "msync of the remaining part returned {r}");
    check_file(
        "writes through the rest of a split mapping",
        F1,
        len,
        |i| match i {
            x if x == 2 * PG + 7 => b'S',
            x if x == 3 * PG + 9 => b'T',
            _ => pat(9, i),
        },
    )?;
    let p1 = m.page(1);
    expect_killed("the unmapped page of a file mapping", || {
        rd(p1);
    })?;
    drop(m);
    let _ = sys::unlink(F1);
    Ok(())
}

fn bad_arguments() -> R {
    make_file(F1, PG, 10)?;
    let fd = open(F1, O_RDWR)?;
    let dir = open(b".", O_RDONLY)?;
    let pipe = match sys::pipe() {
        Ok(p) => p,
        Err(_) => fail!("pipe failed"),
    };
    let kern = 0xffff_8000_0000_0000u64;
    let cases: [(&str, u64, u64, i32, i32, i32, u64); 21] = [
        ("length 0", 0, 0, RW, ANON, -1, 0),
        (
            "length 0 with MAP_FIXED",
            MMAP_BASE,
            0,
            RW,
            ANON | MAP_FIXED,
            -1,
            0,
        ),
        (
            "unaligned MAP_FIXED",
            MMAP_BASE + 0x123,
            PG,
            RW,
            ANON | MAP_FIXED,
            -1,
            0,
        ),
        (
            "MAP_FIXED at a kernel address",
            kern,
            PG,
            RW,
            ANON | MAP_FIXED,
            -1,
            0,
        ),
        (
            "MAP_FIXED at the kernel image",
            0xffff_ffff_8000_0000,
            PG,
            RW,
            ANON | MAP_FIXED,
            -1,
            0,
        ),
        (
            "MAP_FIXED across the top of user space",
            USER_TOP - PG,
            2 * PG,
            RW,
            ANON | MAP_FIXED,
            -1,
            0,
        ),
        (
            "MAP_SHARED and MAP_PRIVATE",
            0,
            PG,
            RW,
            MAP_SHARED | MAP_PRIVATE | MAP_ANONYMOUS,
            -1,
            0,
        ),
        (
            "neither MAP_SHARED nor MAP_PRIVATE",
            0,
            PG,
            RW,
            MAP_ANONYMOUS,
            -1,
            0,
        ),
        ("neither, file", 0, PG, RW, 0, fd, 0),
        ("fd -1", 0, PG, PROT_READ, MAP_PRIVATE, -1, 0),
        ("fd 99", 0, PG, PROT_READ, MAP_PRIVATE, 99, 0),
        ("closed fd 15", 0, PG, PROT_READ, MAP_PRIVATE, 15, 0),
        ("a directory", 0, PG, PROT_READ, MAP_PRIVATE, dir, 0),
        ("a pipe", 0, PG, PROT_READ, MAP_PRIVATE, pipe[0], 0),
        ("the console", 0, PG, PROT_READ, MAP_PRIVATE, 1, 0),
        ("unaligned offset", 0, PG, PROT_READ, MAP_PRIVATE, fd, 100),
        ("offset 4095", 0, PG, PROT_READ, MAP_SHARED, fd, PG - 1),
        (
            "a file offset range that wraps",
            0,
            2 * PG,
            RW,
            MAP_SHARED,
            fd,
            u64::MAX - (PG - 1),
        ),
        ("huge length", 0, 1 << 60, RW, ANON, -1, 0),
        ("length -1", 0, u64::MAX, RW, ANON, -1, 0),
        (
            "length that overflows when rounded",
            0,
            u64::MAX - 100,
            RW,
            ANON,
            -1,
            0,
        ),
    ];
    let mut bad = None;
    for (what, addr, len, prot, flags, f, off) in cases {
        // SAFETY: every one of these must fail; if one does not, it is unmapped at once (none
        // with MAP_FIXED lies over this program's memory).
        let r = unsafe { mmap(addr, len, prot, flags, f, off) };
        if r != MAP_FAILED_U64 {
            // SAFETY: the mapping just made.
            unsafe { munmap(r, len) };
            bad = Some((what, r));
            break;
        }
    }
    // A refused MAP_FIXED leaves what was mapped there as it was.
    let keep = anon(PG, RW)?;
    wr(keep.addr + 5, 0x5a);
    // SAFETY: fixed over our own mapping `keep`, and must fail (the file range wraps).
    let r = unsafe {
        mmap(
            keep.addr,
            PG,
            RW,
            MAP_SHARED | MAP_FIXED,
            fd,
            u64::MAX - (PG - 1),
        )
    };
    let _ = sys::close(fd);
    let _ = sys::close(dir);
    let _ = sys::close(pipe[0]);
    let _ = sys::close(pipe[1]);
    if let Some((what, r)) = bad {
        fail!("mmap with {what} returned {r:#x}, expected MAP_FAILED");
    }
    ensure!(
        r == MAP_FAILED_U64,
        "MAP_FIXED with a wrapping file range returned {r:#x}"
    );
    ensure!(
        rd(keep.addr + 5) == 0x5a,
        "a refused MAP_FIXED changed the mapping under it"
    );
    drop(keep);
    // munmap and msync with bad ranges.
    let m = anon(PG, RW)?;
    for (what, addr, len) in [
        ("an unaligned address", m.addr + 1, PG),
        ("a kernel address", kern, PG),
        ("the kernel image", 0xffff_ffff_8000_0000, PG),
        (
            "a range across the top of user space",
            USER_TOP - PG,
            2 * PG,
        ),
        ("a range that wraps", m.addr, u64::MAX - PG),
    ] {
        // SAFETY: must fail; nothing of ours is in these ranges but `m`, which is unused.
        let r = unsafe { munmap(addr, len) };
        ensure!(
            r == -1,
            "munmap of {what} ({addr:#x}, {len:#x}) returned {r}"
        );
    }
    for (what, addr, len) in [
        ("an unaligned address", m.addr + 1, PG),
        ("a kernel address", kern, PG),
        (
            "a range across the top of user space",
            USER_TOP - PG,
            2 * PG,
        ),
    ] {
        let r = msync(addr, len, MS_SYNC);
        ensure!(
            r == -1,
            "msync of {what} ({addr:#x}, {len:#x}) returned {r}"
        );
    }
    wr(m.addr, 1); // still mapped after all that
    let _ = sys::unlink(F1);
    Ok(())
}

fn lazy_allocation() -> R {
    // Warm up: the page-table pages for this range exist afterwards.
    let warm = anon(64 * PG, RW)?;
    let at = warm.addr;
    for i in 0..64 {
        wr(warm.page(i), 1);
    }
    ensure!(warm.unmap() == 0, "munmap failed");
    let before = mi()?;
    let r = map_fixed(at, 64 * PG, RW, ANON, -1, 0);
    ensure!(r == at, "MAP_FIXED at the warm-up range returned {r:#x}");
    let m = Map {
        addr: at,
        len: 64 * PG,
    };
    let mapped = mi()?;
    let used = before.free_frames as i64 - mapped.free_frames as i64;
    ensure!(used <= 1, "mmap of 64 untouched pages took {used} frames");
    for i in 0..64 {
        wr(m.page(i) + i, 2);
    }
    let touched = mi()?;
    let used = before.free_frames as i64 - touched.free_frames as i64;
    ensure!(
        (64..=66).contains(&used),
        "touching 64 pages took {used} frames"
    );
    ensure!(m.unmap() == 0, "munmap failed");
    let after = mi()?;
    ensure!(
        after.free_frames == before.free_frames && after.kheap_in_use == before.kheap_in_use,
        "munmap did not give everything back: free_frames {} -> {}, kheap_in_use {} -> {}",
        before.free_frames,
        after.free_frames,
        before.kheap_in_use,
        after.kheap_in_use
    );
    // A gigabyte costs nothing until touched.
    let big = anon(1 << 30, RW)?;
    wr(big.addr + (1 << 29), 1);
    let bigmi = mi()?;
    let used = after.free_frames as i64 - bigmi.free_frames as i64;
    ensure!(
        used <= 8,
        "a 1 GiB mapping with one page touched took {used} frames"
    );
    Ok(())
}

fn exec_drops_mappings() -> R {
    make_file(F1, 2 * PG, 11)?;
    let st = child(|| {
        let Ok(fd) = sys::open(F1, O_RDWR) else {
            return 2;
        };
        // SAFETY: fresh ranges the kernel picks.
        let (a, b) = unsafe {
            (
                mmap(0, 8 * PG, RW, ANON, -1, 0),
                mmap(0, 2 * PG, RW, MAP_SHARED, fd, 0),
            )
        };
        let _ = sys::close(fd);
        if a == MAP_FAILED_U64 || b == MAP_FAILED_U64 {
            return 3;
        }
        for i in 0..8 {
            wr(a + i * PG, 1);
        }
        wr(b + 1, b'x');
        sys::exec(b"mmaptest", &[b"mmaptest", b"--exit"]);
        4
    })?;
    ensure!(st == 0, "the child exited with {st}");
    // exec dropped the shared mapping, which wrote its change back.
    check_file("after exec", F1, 2 * PG, |i| {
        if i == 1 {
            b'x'
        } else {
            pat(11, i)
        }
    })?;
    let _ = sys::unlink(F1);
    Ok(())
}

fn many_mappings() -> R {
    // Up to the per-process limit of regions, each of a page, then all unmapped.
    let mut addrs = [0u64; 80];
    let mut n = 0;
    while n < addrs.len() {
        // Alternate protections so that neighbouring mappings cannot be merged into one.
        let prot = if n % 2 == 0 { RW } else { PROT_READ };
        // SAFETY: no MAP_FIXED.
        let a = unsafe { mmap(0, PG, prot, ANON, -1, 0) };
        if a == MAP_FAILED_U64 {
            break;
        }
        addrs[n] = a;
        n += 1;
    }
    let mut ok = true;
    for &a in &addrs[..n] {
        // SAFETY: our own mappings.
        ok &= unsafe { munmap(a, PG) } == 0;
    }
    ensure!(ok, "munmap of one of {n} mappings failed");
    ensure!(
        (32..80).contains(&n),
        "{n} one-page mappings succeeded; expected the limit (64 regions) to stop it"
    );
    // After unmapping them all, mapping works again.
    let m = anon(PG, RW)?;
    wr(m.addr, 1);
    Ok(())
}

/// Several processes at once (on as many CPUs as there are) map, fault in, check, fork with a
/// shared anonymous mapping, and unmap, so the kernel's shared-frame table, region lists and page
/// tables are exercised concurrently.
fn concurrent_processes() -> R {
    const KIDS: usize = 4;
    const ROUNDS: u64 = 60;
    let shared = map(
        0,
        PG,
        PROT_READ | PROT_WRITE,
        MAP_SHARED | MAP_ANONYMOUS,
        -1,
        0,
    )?;
    let counters = shared.addr;
    let mut pids = [0i32; KIDS];
    for (k, slot) in pids.iter_mut().enumerate() {
        match sys::fork() {
            Err(_) => fail!("fork failed"),
            Ok(0) => {
                let mut bad = 0;
                for r in 0..ROUNDS {
                    let pages = 1 + (r + k as u64) % 5;
                    let Ok(m) = anon(pages * PG, PROT_READ | PROT_WRITE) else {
                        sys::exit(2);
                    };
                    for i in 0..pages {
                        wr(m.page(i) + (r % 4000), (k as u8) ^ (i as u8) ^ 0x5a);
                    }
                    for i in 0..pages {
                        if rd(m.page(i) + (r % 4000)) != (k as u8) ^ (i as u8) ^ 0x5a {
                            bad += 1;
                        }
                    }
                    if m.unmap() != 0 {
                        bad += 1;
                    }
                    // Each child owns one byte of the shared page: it counts its rounds there.
                    wr(counters + k as u64, rd(counters + k as u64).wrapping_add(1));
                }
                sys::exit(if bad == 0 { 0 } else { 3 });
            }
            Ok(pid) => *slot = pid,
        }
    }
    for _ in 0..KIDS {
        match sys::wait() {
            Ok((pid, st)) if pids.contains(&pid) => {
                ensure!(st == 0, "child {pid} exited with {st}");
            }
            Ok((pid, _)) => fail!("wait returned {pid}, not one of the children {pids:?}"),
            Err(_) => fail!("wait failed with children still running"),
        }
    }
    for k in 0..KIDS as u64 {
        let n = rd(counters + k);
        ensure!(
            n as u64 == ROUNDS,
            "child {k} counted {n} rounds in the shared page, expected {ROUNDS}"
        );
    }
    Ok(())
}

const CASES: [Case; 23] = [
    ("anonymous memory is zeroed", anon_zeroed),
    ("string round trip", string_roundtrip),
    ("100 rounds of map/modify/unmap", map_modify_unmap_rounds),
    ("page-aligned results", page_aligned),
    ("hint honoured, MAP_FIXED", hint_honoured),
    ("two- and three-page mappings", multi_page),
    ("protection", protection),
    ("file mapping after close", file_after_close),
    ("msync reaches the file", msync_reaches_file),
    ("mapping at a page offset", page_offset),
    ("MAP_PRIVATE stays private", private_stays_private),
    (
        "shared writable needs a writable file",
        shared_writable_needs_writable_file,
    ),
    ("two files at once", two_files),
    ("fork: private mappings", fork_private),
    ("fork: shared file mapping", fork_shared_file),
    ("access after munmap", munmap_then_access),
    ("munmap of head, tail, holes", munmap_parts),
    ("munmap of parts of a file mapping", munmap_parts_of_file),
    ("bad arguments", bad_arguments),
    ("lazy allocation, munmap frees", lazy_allocation),
    ("exec drops mappings", exec_drops_mappings),
    ("many mappings", many_mappings),
    ("concurrent processes", concurrent_processes),
];

fn leak(a: &MemInfo, b: &MemInfo) -> bool {
    a.free_frames != b.free_frames || a.kheap_in_use != b.kheap_in_use
}

fn main(args: Args) -> i32 {
    if args.get(1) == Some(b"--exit") {
        return 0;
    }
    let Some(start) = meminfo() else {
        println!("mmaptest: meminfo failed");
        return 1;
    };
    let mut failed = 0;
    for (name, f) in CASES {
        let Some(before) = meminfo() else {
            println!("{name}: FAILED: meminfo failed");
            failed += 1;
            continue;
        };
        let st = match sys::fork() {
            Err(_) => {
                println!("{name}: FAILED: fork failed");
                failed += 1;
                continue;
            }
            Ok(0) => match f() {
                Ok(()) => sys::exit(0),
                Err(m) => {
                    println!("{name}: FAILED: {}", m.as_str());
                    sys::exit(1);
                }
            },
            Ok(pid) => sys::wait_for(pid).unwrap_or(-99),
        };
        match st {
            0 => {}
            1 => {
                failed += 1;
                continue;
            }
            st => {
                println!("{name}: FAILED: the test process died (status {st})");
                failed += 1;
                continue;
            }
        }
        match meminfo() {
            Some(after) if leak(&before, &after) => {
                println!(
                    "{name}: FAILED: leaked: free_frames {} -> {}, kheap_in_use {} -> {}",
                    before.free_frames, after.free_frames, before.kheap_in_use, after.kheap_in_use
                );
                failed += 1;
            }
            Some(_) => println!("{name}: ok"),
            None => {
                println!("{name}: FAILED: meminfo failed");
                failed += 1;
            }
        }
    }
    let _ = sys::unlink(F1);
    let _ = sys::unlink(F2);
    match meminfo() {
        Some(end) if !leak(&start, &end) => println!("memory back at the end: ok"),
        Some(end) => {
            println!(
                "memory back at the end: FAILED: free_frames {} -> {}, kheap_in_use {} -> {}",
                start.free_frames, end.free_frames, start.kheap_in_use, end.kheap_in_use
            );
            failed += 1;
        }
        None => {
            println!("memory back at the end: FAILED: meminfo failed");
            failed += 1;
        }
    }
    if failed == 0 {
        println!("mmaptest: all ok");
        0
    } else {
        println!("mmaptest: {failed} FAILED");
        1
    }
}
