//! usertests: tests the system calls, after xv6's `user/usertests.c`, adapted to this kernel's
//! x86_64 ABI (docs/ABI.md).
//!
//! `usertests` runs the default set; `usertests -a` adds the slow tests; `usertests NAME...` runs
//! the named tests; `-v` prints when each test starts and how long it took. Every test runs in its
//! own child process and passes if that child exits with status 0. Tests that make a process
//! fault make the kernel print a "killed" message, which is expected.
//!
//! Around the tests the `meminfo` system call shows whether the kernel leaked physical frames,
//! kernel heap or processes.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;
use core::arch::asm;
use core::hint::black_box;
use xv6_user::abi::fcntl::{O_CREATE, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY};
use xv6_user::abi::fs::{BSIZE, MAXFILE, MAXOPBLOCKS};
use xv6_user::abi::layout::{MMAP_BASE, USER_BASE, USER_STACK_BOTTOM, USER_STACK_PAGES, USER_TOP};
use xv6_user::abi::param::{MAXARG, MAXPATH, NOFILE, NPROC};
use xv6_user::abi::stat::{T_DIR, T_FILE};
use xv6_user::abi::{MemInfo, Stat, Sysno, PAGE_SIZE};
use xv6_user::sys::{self, raw};
use xv6_user::{println, Args, BStr};

xv6_user::entry!(main);

// ---------------------------------------------------------------------------------------------
// Constants and small helpers
// ---------------------------------------------------------------------------------------------

const PG: u64 = PAGE_SIZE as u64;
/// xv6's BUFSZ: a bit more than a transaction's worth of blocks.
const BUFSZ: usize = (MAXOPBLOCKS + 2) * BSIZE;
/// Where kernel addresses start.
const KERNBASE: u64 = 0xffff_8000_0000_0000;
/// What `sbrk` returns on failure.
const SBRK_ERR: u64 = u64::MAX;
/// Frames a test may leave behind in the kernel's caches (page-table pages, ...).
const SLACK_FRAMES: u64 = 8;
/// xv6's NINODE (the in-memory inode table).
const NINODE: usize = 50;

/// Prints `<test>: <message>` and ends the test's process with status 1.
macro_rules! fail {
    ($s:expr, $($arg:tt)*) => {{
        println!("{}: {}", $s, format_args!($($arg)*));
        sys::exit(1)
    }};
}

/// Addresses no system call may read from or write to: unmapped user addresses, the guard page,
/// ranges that run off the end of user space, non-canonical and kernel addresses.
fn bad_addrs() -> [u64; 14] {
    [
        0,
        0x1000,
        USER_BASE - PG,
        MMAP_BASE,
        USER_STACK_BOTTOM - PG,
        USER_STACK_BOTTOM - 8, // spans the guard page and the stack
        USER_TOP - 8,          // spans the end of user space
        USER_TOP,
        0x8000_0000_0000,
        0xeaeb_0b5b_0000_2f5e,
        KERNBASE,
        KERNBASE + 0x10_0000,
        0xffff_ffff_8000_0000,
        u64::MAX,
    ]
}

/// An address in this program's text (read-only, executable).
fn text_addr() -> u64 {
    black_box(main as fn(Args) -> i32 as usize as u64)
}

/// An address in this program's read-only data.
fn rodata_addr() -> u64 {
    static RO: [u8; 64] = [7; 64];
    black_box(RO.as_ptr() as u64)
}

/// Loads a byte from `addr` (which may fault: that is the point).
fn peek(addr: u64) -> u8 {
    let v: u8;
    // SAFETY: a plain load; the tests use it on addresses that must fault, in a child process
    // that is expected to die, or on memory they own.
    unsafe {
        asm!("mov {v}, byte ptr [{a}]", a = in(reg) addr, v = out(reg_byte) v,
             options(nostack, readonly, preserves_flags))
    };
    v
}

/// Stores a byte at `addr` (which may fault).
fn poke(addr: u64, v: u8) {
    // SAFETY: a plain store; used on addresses that must fault, in a child that is expected to
    // die, or on memory the test owns and nothing else uses.
    unsafe {
        asm!("mov byte ptr [{a}], {v}", a = in(reg) addr, v = in(reg_byte) v,
             options(nostack, preserves_flags))
    };
}

/// The stack pointer.
fn rsp() -> u64 {
    let sp: u64;
    // SAFETY: reads a register.
    unsafe { asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    sp
}

// C-like wrappers returning the raw result, so tests can check exactly for -1.

fn open(p: &[u8], flags: i32) -> i32 {
    sys::open(p, flags).unwrap_or(-1)
}
fn close(fd: i32) -> i32 {
    if sys::close(fd).is_ok() {
        0
    } else {
        -1
    }
}
fn read(fd: i32, b: &mut [u8]) -> i32 {
    // SAFETY: the kernel writes at most b.len() bytes into b.
    unsafe { raw::read(fd, b.as_mut_ptr(), b.len() as i32) }
}
fn write(fd: i32, b: &[u8]) -> i32 {
    // SAFETY: the kernel reads at most b.len() bytes from b.
    unsafe { raw::write(fd, b.as_ptr(), b.len() as i32) }
}
fn res(r: sys::Result<()>) -> i32 {
    if r.is_ok() {
        0
    } else {
        -1
    }
}
fn unlink(p: &[u8]) -> i32 {
    res(sys::unlink(p))
}
fn link(a: &[u8], b: &[u8]) -> i32 {
    res(sys::link(a, b))
}
fn mkdir(p: &[u8]) -> i32 {
    res(sys::mkdir(p))
}
fn chdir(p: &[u8]) -> i32 {
    res(sys::chdir(p))
}
fn fork() -> i32 {
    sys::fork().unwrap_or(-1)
}
/// `wait`: (pid, status), pid -1 when there is no child.
fn wait() -> (i32, i32) {
    sys::wait().unwrap_or((-1, 0))
}
fn sbrk(n: i32) -> u64 {
    // SAFETY: the tests move the break only above the heap the allocator uses, or shrink back
    // what they grew; the kernel checks the rest.
    unsafe { raw::sbrk(n) as u64 }
}
fn meminfo() -> MemInfo {
    sys::meminfo().unwrap_or_default()
}

// Raw calls with arbitrary addresses, for the bad-pointer tests.

fn r_read(fd: i32, a: u64, n: i32) -> i32 {
    // SAFETY: `a` is a deliberately bad (or scratch) address; the kernel must refuse it.
    unsafe { raw::read(fd, a as *mut u8, n) }
}
fn r_write(fd: i32, a: u64, n: i32) -> i32 {
    // SAFETY: the kernel only reads from `a`.
    unsafe { raw::write(fd, a as *const u8, n) }
}
fn r_open(a: u64, flags: i32) -> i32 {
    // SAFETY: the kernel only reads the path at `a`.
    unsafe { raw::open(a as *const u8, flags) }
}
fn r_unlink(a: u64) -> i32 {
    // SAFETY: the kernel only reads the path at `a`.
    unsafe { raw::unlink(a as *const u8) }
}
fn r_link(a: u64, b: u64) -> i32 {
    // SAFETY: the kernel only reads the paths.
    unsafe { raw::link(a as *const u8, b as *const u8) }
}
fn r_mkdir(a: u64) -> i32 {
    // SAFETY: the kernel only reads the path.
    unsafe { raw::mkdir(a as *const u8) }
}
fn r_chdir(a: u64) -> i32 {
    // SAFETY: the kernel only reads the path.
    unsafe { raw::chdir(a as *const u8) }
}
fn r_mknod(a: u64) -> i32 {
    // SAFETY: the kernel only reads the path.
    unsafe { raw::mknod(a as *const u8, 1, 1) }
}
fn r_exec(path: u64, argv: u64) -> i32 {
    // SAFETY: the kernel only reads the path and argv; on success the program is replaced,
    // which the callers detect (they run this in a child).
    unsafe { raw::exec(path as *const u8, argv as *const *const u8) }
}
fn r_fstat(fd: i32, a: u64) -> i32 {
    // SAFETY: `a` is deliberately bad or scratch memory of the test.
    unsafe { raw::fstat(fd, a as *mut Stat) }
}
fn r_pipe(a: u64) -> i32 {
    // SAFETY: `a` is deliberately bad or scratch memory of the test.
    unsafe { raw::pipe(a as *mut i32) }
}
fn r_wait(a: u64) -> i32 {
    // SAFETY: `a` is deliberately bad or scratch memory of the test.
    unsafe { raw::wait(a as *mut i32) }
}

/// A zero-terminated copy of `s`.
fn cstr(s: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s);
    v.push(0);
    v
}

/// exec with any number of arguments (the library's wrapper refuses MAXARG or more).
fn exec_any(path: &[u8], argv: &[&[u8]]) -> i32 {
    let p = cstr(path);
    let strings: Vec<Vec<u8>> = argv.iter().map(|a| cstr(a)).collect();
    let mut ptrs: Vec<*const u8> = strings.iter().map(|s| s.as_ptr()).collect();
    ptrs.push(core::ptr::null());
    r_exec(p.as_ptr() as u64, ptrs.as_ptr() as u64)
}

/// Forks or fails the test.
fn xfork(s: &str) -> i32 {
    let pid = fork();
    if pid < 0 {
        fail!(s, "fork failed");
    }
    pid
}

/// Waits for child `pid` (reaping others on the way) and returns its status.
fn wait_pid(s: &str, pid: i32) -> i32 {
    match sys::wait_for(pid) {
        Ok(st) => st,
        Err(_) => fail!(s, "wait for {pid} failed"),
    }
}

/// Runs `f` in a child that the kernel must kill (status -1).
fn expect_killed(s: &str, what: &str, f: impl FnOnce()) {
    let pid = xfork(s);
    if pid == 0 {
        f();
        println!("{s}: {what}: the process survived");
        sys::exit(1);
    }
    let st = wait_pid(s, pid);
    if st != -1 {
        fail!(s, "{what}: child exit status {st}, expected -1 (killed)");
    }
}

/// Runs `f` in a child that must exit with status 77; for tests in which an `exec` that wrongly
/// succeeded would otherwise look like a pass.
fn in_child(s: &str, f: impl FnOnce()) {
    let pid = xfork(s);
    if pid == 0 {
        f();
        sys::exit(77);
    }
    let st = wait_pid(s, pid);
    if st != 77 {
        fail!(s, "child exited with status {st}, expected 77");
    }
}

/// Reads the whole file `path`.
fn slurp(s: &str, path: &[u8]) -> Vec<u8> {
    let fd = open(path, O_RDONLY);
    if fd < 0 {
        fail!(s, "cannot open {}", BStr(path));
    }
    let mut out = Vec::new();
    let mut b = [0u8; 512];
    loop {
        let n = read(fd, &mut b);
        if n < 0 {
            fail!(s, "read {} failed", BStr(path));
        }
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[..n as usize]);
    }
    close(fd);
    out
}

/// Rounds the break up to a page boundary and returns it.
fn align_break(s: &str) -> u64 {
    let top = sbrk(0);
    if top % PG != 0 && sbrk((PG - top % PG) as i32) == SBRK_ERR {
        fail!(s, "sbrk to align failed");
    }
    let top = sbrk(0);
    if top % PG != 0 {
        fail!(s, "sbrk did not align: {top:#x}");
    }
    top
}

/// A two-character name.
fn name2(a: u8, b: u8) -> [u8; 2] {
    [a, b]
}

/// Total physical memory in bytes.
fn total_bytes() -> u64 {
    meminfo().total_frames * PG
}

// ---------------------------------------------------------------------------------------------
// Bad pointers
// ---------------------------------------------------------------------------------------------

/// Checks that a call returned -1; prints every case that did not, so one run shows them all.
fn want_err(s: &str, bad: &mut bool, r: i32, what: core::fmt::Arguments<'_>) {
    if r != -1 {
        println!("{s}: {what} returned {r}, not -1");
        *bad = true;
    }
}

/// Ridiculous pointers to system calls that read user memory.
fn copyin(s: &str) {
    let mut bad = false;
    for a in bad_addrs() {
        let fd = open(b"copyin1", O_CREATE | O_WRONLY);
        if fd < 0 {
            fail!(s, "open(copyin1) failed");
        }
        let n = r_write(fd, a, 8192);
        want_err(s, &mut bad, n, format_args!("write(file, {a:#x}, 8192)"));
        close(fd);
        unlink(b"copyin1");

        let n = r_write(1, a, 8192);
        want_err(s, &mut bad, n, format_args!("write(console, {a:#x}, 8192)"));

        let Ok([r, w]) = sys::pipe() else {
            fail!(s, "pipe() failed")
        };
        let n = r_write(w, a, 8192);
        want_err(s, &mut bad, n, format_args!("write(pipe, {a:#x}, 8192)"));
        close(r);
        close(w);
    }
    // A buffer whose first few kilobytes are valid and whose end is past the heap.
    let top = align_break(s);
    if sbrk(4 * PG as i32) == SBRK_ERR {
        fail!(s, "sbrk failed");
    }
    let end = top + 4 * PG;
    let a = end - 3000;
    let fd = open(b"copyin1", O_CREATE | O_WRONLY | O_TRUNC);
    let n = r_write(fd, a, 8192);
    want_err(
        s,
        &mut bad,
        n,
        format_args!("write(file, heap end - 3000, 8192)"),
    );
    close(fd);
    unlink(b"copyin1");
    let Ok([r, w]) = sys::pipe() else {
        fail!(s, "pipe() failed")
    };
    let n = r_write(w, end - 100, 200);
    want_err(
        s,
        &mut bad,
        n,
        format_args!("write(pipe, heap end - 100, 200)"),
    );
    close(r);
    close(w);
    if bad {
        sys::exit(1);
    }
}

/// Ridiculous pointers to system calls that write user memory, read-only memory included.
fn copyout(s: &str) {
    let mut bad = false;
    let mut addrs = bad_addrs().to_vec();
    addrs.push(text_addr());
    addrs.push(rodata_addr());
    for a in addrs {
        let fd = open(b"README", O_RDONLY);
        if fd < 0 {
            fail!(s, "open(README) failed");
        }
        let n = r_read(fd, a, 8192);
        want_err(s, &mut bad, n, format_args!("read(file, {a:#x}, 8192)"));
        close(fd);

        let Ok([r, w]) = sys::pipe() else {
            fail!(s, "pipe() failed")
        };
        // More bytes than the spanning address has room for.
        if write(w, b"xxxxxxxxxxxxxxxx") != 16 {
            fail!(s, "pipe write failed");
        }
        let n = r_read(r, a, 8192);
        want_err(s, &mut bad, n, format_args!("read(pipe, {a:#x}, 8192)"));
        close(r);
        close(w);
    }
    // A buffer whose first few kilobytes are valid and whose end is past the heap.
    let fd = open(b"copyout1", O_CREATE | O_RDWR | O_TRUNC);
    let data = vec![b'd'; 8192];
    if write(fd, &data) != 8192 {
        fail!(s, "write copyout1 failed");
    }
    close(fd);
    let top = align_break(s);
    if sbrk(4 * PG as i32) == SBRK_ERR {
        fail!(s, "sbrk failed");
    }
    let end = top + 4 * PG;
    let fd = open(b"copyout1", O_RDONLY);
    let n = r_read(fd, end - 3000, 8192);
    want_err(
        s,
        &mut bad,
        n,
        format_args!("read(file, heap end - 3000, 8192)"),
    );
    close(fd);
    unlink(b"copyout1");
    // The text must be unchanged.
    let before = peek(text_addr());
    let fd = open(b"README", O_RDONLY);
    let _ = r_read(fd, text_addr(), 1);
    close(fd);
    if peek(text_addr()) != before {
        fail!(s, "read() changed the program's text");
    }
    if bad {
        sys::exit(1);
    }
}

/// Ridiculous string pointers: every call that takes a path.
fn copyinstr1(s: &str) {
    // Strings that run off the end of user space: the last 8 bytes of the stack are not zero.
    for a in USER_TOP - 8..USER_TOP {
        poke(a, b'x');
    }
    let mut addrs = bad_addrs().to_vec();
    addrs.push(USER_TOP - 1);
    let good = cstr(b"copyinstr1");
    let readme = cstr(b"README");
    for a in addrs {
        let fd = r_open(a, O_CREATE | O_WRONLY);
        if fd != -1 {
            fail!(s, "open({a:#x}) returned {fd}, not -1");
        }
        let checks = [
            ("unlink", r_unlink(a)),
            ("mkdir", r_mkdir(a)),
            ("chdir", r_chdir(a)),
            ("mknod", r_mknod(a)),
            ("link(bad, good)", r_link(a, good.as_ptr() as u64)),
            ("link(README, bad)", r_link(readme.as_ptr() as u64, a)),
        ];
        for (what, r) in checks {
            if r != -1 {
                fail!(s, "{what} with {a:#x} returned {r}, not -1");
            }
        }
    }
    in_child(s, || {
        let args = [cstr(b"echo"), cstr(b"oops")];
        let argv = [args[0].as_ptr(), args[1].as_ptr(), core::ptr::null()];
        for a in bad_addrs() {
            let r = r_exec(a, argv.as_ptr() as u64);
            if r != -1 {
                fail!(s, "exec({a:#x}) returned {r}, not -1");
            }
        }
    });
    if open(b"copyinstr1", O_RDONLY) >= 0 {
        fail!(s, "a link named copyinstr1 appeared");
    }
}

/// A path exactly as long as the kernel's buffer, and exec arguments too big for the stack.
fn copyinstr2(s: &str) {
    let mut b = [b'x'; MAXPATH + 1];
    b[MAXPATH] = 0;
    let p = b.as_ptr() as u64;
    let r = r_unlink(p);
    if r != -1 {
        fail!(s, "unlink(MAXPATH x's) returned {r}, not -1");
    }
    let fd = r_open(p, O_CREATE | O_WRONLY);
    if fd != -1 {
        fail!(s, "open(MAXPATH x's) returned {fd}, not -1");
    }
    let r = r_link(p, p);
    if r != -1 {
        fail!(s, "link(MAXPATH x's) returned {r}, not -1");
    }
    let r = r_mkdir(p);
    if r != -1 {
        fail!(s, "mkdir(MAXPATH x's) returned {r}, not -1");
    }
    let args = [cstr(b"xx")];
    let argv = [args[0].as_ptr(), core::ptr::null()];
    let r = r_exec(p, argv.as_ptr() as u64);
    if r != -1 {
        fail!(s, "exec(MAXPATH x's) returned {r}, not -1");
    }
    // One byte shorter is a legal path name (of a file that does not exist).
    b[MAXPATH - 1] = 0;
    let p = black_box(b.as_ptr()) as u64;
    if r_unlink(p) != -1 || r_open(p, O_RDONLY) != -1 {
        fail!(s, "a 127-byte name of a missing file was found");
    }
    let fd = r_open(p, O_CREATE | O_RDWR);
    if fd < 0 {
        fail!(
            s,
            "could not create a file with a 127-byte path (14-byte name)"
        );
    }
    close(fd);
    if r_unlink(p) != 0 {
        fail!(s, "could not unlink the 127-byte path");
    }

    // Arguments larger than the whole 8-page stack: exec must fail and return.
    in_child(s, || {
        let big = vec![b'x'; 12 * 1024];
        let r = exec_any(b"echo", &[&big, &big, &big]);
        if r != -1 {
            fail!(s, "exec(echo, BIG) returned {r}, not -1");
        }
    });
}

/// A string argument that crosses the end of the last heap page.
fn copyinstr3(s: &str) {
    sbrk(8192);
    let top = align_break(s);
    let b = top - 1;
    poke(b, b'x');
    let checks = [
        ("unlink", r_unlink(b)),
        ("open", r_open(b, O_CREATE | O_WRONLY)),
        ("link", r_link(b, b)),
        ("mkdir", r_mkdir(b)),
        ("chdir", r_chdir(b)),
    ];
    for (what, r) in checks {
        if r != -1 {
            fail!(
                s,
                "{what}(string at the end of the heap) returned {r}, not -1"
            );
        }
    }
    in_child(s, || {
        let args = [cstr(b"xx")];
        let argv = [args[0].as_ptr(), core::ptr::null()];
        let r = r_exec(b, argv.as_ptr() as u64);
        if r != -1 {
            fail!(
                s,
                "exec(string at the end of the heap) returned {r}, not -1"
            );
        }
    });
}

/// The kernel must refuse memory the program gave back with sbrk.
fn rwsbrk(s: &str) {
    let a = sbrk(8192);
    if a == SBRK_ERR {
        fail!(s, "sbrk(rwsbrk) failed");
    }
    if sbrk(-8192) == SBRK_ERR {
        fail!(s, "sbrk(rwsbrk) shrink failed");
    }
    let fd = open(b"rwsbrk", O_CREATE | O_WRONLY);
    if fd < 0 {
        fail!(s, "open(rwsbrk) failed");
    }
    let n = r_write(fd, a + PG, 1024);
    if n != -1 {
        fail!(s, "write(fd, {:#x}, 1024) returned {n}, not -1", a + PG);
    }
    close(fd);
    unlink(b"rwsbrk");
    let fd = open(b"README", O_RDONLY);
    if fd < 0 {
        fail!(s, "open(README) failed");
    }
    let n = r_read(fd, a + PG, 10);
    if n != -1 {
        fail!(s, "read(fd, {:#x}, 10) returned {n}, not -1", a + PG);
    }
    close(fd);
}

/// Bad pointers and bad arguments to the calls the other copy tests do not cover: fstat, pipe,
/// wait, exec's argv, bad descriptors, negative lengths, kernel heap pointers, unknown calls.
fn badsyscalls(s: &str) {
    // USER_TOP - 8 spans the end of user space for a 24-byte stat, but not for 8 or 4 bytes;
    // USER_TOP - 4 spans it for two ints, USER_TOP - 2 for one.
    let mut addrs = bad_addrs().to_vec();
    addrs.push(text_addr());
    addrs.push(rodata_addr());
    let mut pipe_addrs: Vec<u64> = addrs
        .iter()
        .copied()
        .filter(|&a| a != USER_TOP - 8)
        .collect();
    // wait(0) is legal: no status wanted.
    let mut wait_addrs: Vec<u64> = pipe_addrs.iter().copied().filter(|&a| a != 0).collect();
    pipe_addrs.push(USER_TOP - 4);
    wait_addrs.push(USER_TOP - 2);

    let fd = open(b"README", O_RDONLY);
    if fd != 3 {
        fail!(s, "open(README) returned {fd}, expected 3");
    }
    for &a in &addrs {
        let r = r_fstat(fd, a);
        if r != -1 {
            fail!(s, "fstat(fd, {a:#x}) returned {r}, not -1");
        }
    }
    for &a in &pipe_addrs {
        let r = r_pipe(a);
        if r != -1 {
            fail!(s, "pipe({a:#x}) returned {r}, not -1");
        }
    }
    close(fd);
    // A failed pipe() must not leave descriptors behind.
    let fd = open(b"README", O_RDONLY);
    if fd != 3 {
        fail!(
            s,
            "after failed pipe() calls, open returned fd {fd}, expected 3 (leaked descriptors?)"
        );
    }
    close(fd);

    // wait with a bad status pointer fails; the child may stay a zombie to be reaped later.
    for &a in &wait_addrs {
        let pid = xfork(s);
        if pid == 0 {
            sys::exit(0);
        }
        let r = r_wait(a);
        if r != -1 {
            fail!(s, "wait({a:#x}) returned {r}, not -1");
        }
        let (p, _) = wait();
        if p != pid && p != -1 {
            fail!(s, "wait returned {p}, expected {pid} or -1");
        }
    }
    if wait().0 != -1 {
        fail!(s, "wait found an unexpected child");
    }

    // exec with bad argv pointers, bad argument strings, and argv running off user space.
    in_child(s, || {
        // The string at USER_TOP - 8 runs off the end of user space.
        for a in USER_TOP - 8..USER_TOP {
            poke(a, b'x');
        }
        let echo = cstr(b"echo");
        let ep = echo.as_ptr() as u64;
        for &a in &addrs {
            if a == text_addr() || a == rodata_addr() {
                continue; // readable memory: a legal (if odd) argv
            }
            let r = r_exec(ep, a);
            if r != -1 {
                fail!(s, "exec(echo, argv={a:#x}) returned {r}, not -1");
            }
            if a == 0 {
                continue; // a null argv[1] just ends the list
            }
            let argv = [ep as *const u8, a as *const u8, core::ptr::null()];
            let r = r_exec(ep, argv.as_ptr() as u64);
            if r != -1 {
                fail!(s, "exec(echo, [echo, {a:#x}]) returned {r}, not -1");
            }
        }
        // argv whose pointers run into the end of the heap without a terminating null.
        let top = align_break(s);
        if sbrk(PG as i32) == SBRK_ERR {
            fail!(s, "sbrk failed");
        }
        let end = top + PG;
        // SAFETY: the page [top, end) was just added to the heap and nothing else uses it.
        unsafe { *((end - 8) as *mut u64) = ep };
        let r = r_exec(ep, end - 8);
        if r != -1 {
            fail!(
                s,
                "exec(echo, argv at the end of the heap) returned {r}, not -1"
            );
        }
    });

    // Negative and absurd lengths, bad descriptors.
    let mut b = [0u8; 16];
    let fd = open(b"README", O_RDONLY);
    let bp = b.as_mut_ptr() as u64;
    for n in [-1, -4096, i32::MIN] {
        if r_read(fd, bp, n) != -1 {
            fail!(s, "read(fd, buf, {n}) did not return -1");
        }
        if r_write(1, bp, n) != -1 {
            fail!(s, "write(1, buf, {n}) did not return -1");
        }
    }
    close(fd);
    for bad in [-1, 3, NOFILE as i32, 100, i32::MAX, i32::MIN] {
        if read(bad, &mut b) != -1 || write(bad, b"x") != -1 {
            fail!(s, "read/write on bad descriptor {bad} did not fail");
        }
        if close(bad) != -1 || sys::dup(bad).is_ok() || sys::fstat(bad).is_ok() {
            fail!(s, "close/dup/fstat on bad descriptor {bad} did not fail");
        }
    }

    // A kernel heap pointer is a kernel address like any other.
    // SAFETY: kmalloc only allocates; the result is an opaque kernel address.
    let kp = unsafe { raw::kmalloc(64) } as u64;
    if kp == 0 {
        fail!(s, "kmalloc(64) failed");
    }
    if kp < KERNBASE {
        fail!(s, "kmalloc returned a user address {kp:#x}");
    }
    let fd = open(b"README", O_RDONLY);
    if r_read(fd, kp, 16) != -1 || r_write(1, kp, 16) != -1 || r_open(kp, O_RDONLY) != -1 {
        fail!(s, "read/write/open with a kmalloc pointer did not fail");
    }
    if r_fstat(fd, kp) != -1 || r_pipe(kp) != -1 {
        fail!(s, "fstat/pipe with a kmalloc pointer did not fail");
    }
    close(fd);
    // SAFETY: kp came from kmalloc above.
    if unsafe { raw::kmfree(kp as *mut u8) } != 0 {
        fail!(s, "kmfree failed");
    }
    // SAFETY: freeing twice must be refused, not crash.
    if unsafe { raw::kmfree(kp as *mut u8) } != -1 {
        fail!(s, "second kmfree succeeded");
    }

    // Unknown system call numbers.
    for no in [0u64, 99, 1000, u64::MAX] {
        // SAFETY: an unknown call does nothing but fail.
        let r = unsafe { sys::syscall(no, &[]) } as i64;
        if r != -1 {
            fail!(s, "system call {no} returned {r}, not -1");
        }
    }

    // An int argument is taken from the low 32 bits of its register.
    let fd = open(b"badsys-int", O_CREATE | O_RDWR);
    if fd < 0 {
        fail!(s, "create badsys-int failed");
    }
    let data = b"ok";
    // SAFETY: a write of 2 bytes from `data`; the upper bits of fd and n are garbage.
    let r = unsafe {
        sys::syscall(
            Sysno::Write as u64,
            &[
                0xdead_beef_0000_0000 | fd as u64,
                data.as_ptr() as u64,
                0x1234_5678_0000_0002,
            ],
        )
    } as i64;
    close(fd);
    unlink(b"badsys-int");
    if r != 2 {
        fail!(
            s,
            "write with garbage in the upper register bits returned {r}, not 2"
        );
    }
}

/// A wild pointer in exec and pipe (a regression test in xv6).
fn pgbug(s: &str) {
    let big: u64 = 0xeaeb_0b5b_0000_2f5e;
    in_child(s, || {
        let argv: [*const u8; 1] = [core::ptr::null()];
        let r = r_exec(big, argv.as_ptr() as u64);
        if r != -1 {
            fail!(s, "exec(wild) returned {r}");
        }
        let r = r_pipe(big);
        if r != -1 {
            fail!(s, "pipe(wild) returned {r}");
        }
    });
}

/// link() with every page address of the low address space as the new name.
fn validatetest(s: &str) {
    let mut p = 0u64;
    while p <= USER_BASE + 64 * PG {
        let nosuch = cstr(b"nosuchfile");
        if r_link(nosuch.as_ptr() as u64, p) != -1 {
            fail!(s, "link(nosuchfile, {p:#x}) should not succeed");
        }
        p += PG;
    }
}

/// read() with a negative length into the last heap byte.
fn argptest(s: &str) {
    let fd = open(b"init", O_RDONLY);
    if fd < 0 {
        fail!(s, "open failed");
    }
    let r = r_read(fd, sbrk(0) - 1, -1);
    if r != -1 {
        fail!(s, "read(fd, sbrk(0) - 1, -1) returned {r}, not -1");
    }
    close(fd);
}

/// A write of a buffer that runs into an unmapped page, then flushing the buffer cache: the
/// file must read the same before and after the flush.
fn partial_write(s: &str) {
    unlink(b"testfile");
    let fd = open(b"testfile", O_CREATE | O_RDWR);
    if fd < 0 {
        fail!(s, "cannot create testfile");
    }
    if write(fd, b"A") != 1 {
        fail!(s, "could not write A");
    }
    close(fd);
    let fd = open(b"testfile", O_RDWR);
    if fd < 0 {
        fail!(s, "cannot re-open testfile");
    }
    let p = align_break(s);
    poke(p - 1, b'X');
    let cc = r_write(fd, p - 1, 2);
    if cc != -1 {
        fail!(s, "write across the end of the heap returned {cc}, not -1");
    }
    close(fd);
    let read1 = |s: &str| -> u8 {
        let fd = open(b"testfile", O_RDONLY);
        if fd < 0 {
            fail!(s, "cannot re-open testfile");
        }
        let mut b = [0u8; 1];
        if read(fd, &mut b) != 1 {
            fail!(s, "cannot read testfile");
        }
        close(fd);
        b[0]
    };
    let b1 = read1(s);
    if b1 != b'A' && b1 != b'X' {
        fail!(s, "testfile holds {b1:#x}, expected A or X");
    }
    // Push testfile's block out of the buffer cache, so it is read from the disk.
    if sys::dropcaches().is_err() {
        fail!(s, "dropcaches failed");
    }
    let b2 = read1(s);
    if b2 != b1 {
        fail!(
            s,
            "testfile read {} before the cache flush and {} after",
            b1 as char,
            b2 as char
        );
    }
    unlink(b"testfile");
}

/// fsync takes any open descriptor and refuses bad ones; data fsync'd reads back.
fn fsynctest(s: &str) {
    for bad in [-1, NOFILE as i32, 1000, i32::MIN] {
        if sys::fsync(bad).is_ok() {
            fail!(s, "fsync({bad}) succeeded");
        }
    }
    unlink(b"fsyncf");
    let fd = open(b"fsyncf", O_CREATE | O_RDWR);
    if fd < 0 {
        fail!(s, "cannot create fsyncf");
    }
    let data = [0x5au8; 3000];
    if write(fd, &data) != 3000 {
        fail!(s, "cannot write fsyncf");
    }
    if sys::fsync(fd).is_err() {
        fail!(s, "fsync of a file failed");
    }
    close(fd);
    if sys::fsync(fd).is_ok() {
        fail!(s, "fsync of a closed descriptor succeeded");
    }
    let got = slurp(s, b"fsyncf");
    if got[..] != data[..] {
        fail!(
            s,
            "fsyncf reads back {} bytes, not what was written",
            got.len()
        );
    }
    let Ok([r, w]) = sys::pipe() else {
        fail!(s, "pipe failed");
    };
    if sys::fsync(r).is_err() || sys::fsync(w).is_err() {
        fail!(s, "fsync of a pipe failed");
    }
    close(r);
    close(w);
    unlink(b"fsyncf");
}

// ---------------------------------------------------------------------------------------------
// Memory: faults, sbrk, stack
// ---------------------------------------------------------------------------------------------

/// Reading kernel memory kills the process.
fn kernmem(s: &str) {
    let mut addrs = Vec::new();
    for k in 0..8 {
        addrs.push(KERNBASE + k * 0x4_0000);
    }
    for k in 0..4 {
        addrs.push(0xffff_ffff_8000_0000 + k * 0x10_0000);
    }
    addrs.push(u64::MAX - 7);
    for a in addrs {
        expect_killed(s, "reading kernel memory", || {
            let v = peek(a);
            println!("{s}: oops could read {a:#x} = {v:#x}");
        });
    }
}

/// Writing above user space (and to non-canonical addresses) kills the process.
fn maxvaplus(s: &str) {
    expect_killed(s, "write to USER_TOP", || poke(USER_TOP, 99));
    let mut a: u64 = 0x8000_0000_0000;
    while a != 0 {
        expect_killed(s, "write above user space", || poke(a, 99));
        a <<= 1;
    }
}

/// Writes to forbidden addresses kill the process: null, the program's text and read-only data,
/// the guard page, kernel and non-canonical addresses.
fn nowrite(s: &str) {
    let addrs = [
        0,
        text_addr(),
        rodata_addr(),
        USER_STACK_BOTTOM - 8,
        USER_TOP,
        0x8000_0000_0000,
        KERNBASE,
        0xffff_ffff_8000_0000,
        u64::MAX - 7,
    ];
    for a in addrs {
        expect_killed(s, "forbidden write", || poke(a, 10));
    }
    // The parent's text is intact.
    if rodata_addr() != 0 && peek(rodata_addr()) != 7 {
        fail!(s, "read-only data changed");
    }
}

/// Null pointer dereferences (read and write) kill the process.
fn nullderef(s: &str) {
    expect_killed(s, "read of address 0", || {
        let v = peek(black_box(0));
        println!("{s}: read 0 = {v}");
    });
    expect_killed(s, "write to address 8", || poke(black_box(8), 1));
    expect_killed(s, "jump to address 0", || {
        let f: extern "C" fn() = {
            // SAFETY: deliberately a null function pointer, to make the CPU jump to 0 and the
            // kernel kill the process; never returns normally.
            unsafe { core::mem::transmute::<usize, extern "C" fn()>(black_box(0usize)) }
        };
        f();
    });
    expect_killed(s, "executing the heap", || {
        let p = align_break(s);
        if sbrk(PG as i32) == SBRK_ERR {
            sys::exit(1);
        }
        poke(p, 0xc3); // ret
                       // SAFETY: jumps into a non-executable heap page; the kernel must kill us.
        let f: extern "C" fn() = unsafe { core::mem::transmute::<u64, extern "C" fn()>(p) };
        f();
    });
}

/// Reading just below the stack (the guard page, and below it) kills the process.
fn stacktest(s: &str) {
    expect_killed(s, "read below the stack", || {
        let sp = rsp() - USER_STACK_PAGES * PG;
        let v = peek(sp);
        println!("{s}: read below stack {v}");
    });
    expect_killed(s, "read of the guard page", || {
        let v = peek(USER_STACK_BOTTOM - 1);
        println!("{s}: read guard page {v}");
    });
}

#[inline(never)]
fn recurse(n: u64) -> u64 {
    let mut a = [0u8; 256];
    a[(n % 256) as usize] = n as u8;
    black_box(&mut a);
    if black_box(n) == u64::MAX {
        return 0;
    }
    recurse(n + 1).wrapping_add(u64::from(black_box(a[3])))
}

/// Unbounded recursion runs into the guard page and kills the process; the parent survives.
fn stackoverflow(s: &str) {
    expect_killed(s, "unbounded recursion", || {
        let r = recurse(0);
        println!("{s}: recursion returned {r}");
    });
    // A deep but bounded recursion (well inside 8 pages) works.
    fn depth(n: u32) -> u32 {
        let mut a = [0u8; 64];
        black_box(&mut a);
        if n == 0 {
            0
        } else {
            depth(n - 1) + 1 + u32::from(black_box(a[0]))
        }
    }
    if depth(black_box(100)) != 100 {
        fail!(s, "bounded recursion gave the wrong answer");
    }
}

/// Does uninitialized data start out zero?
fn bsstest(s: &str) {
    static mut UNINIT: [u8; 10000] = [0; 10000];
    let p = black_box(core::ptr::addr_of!(UNINIT) as *const u8);
    for i in 0..10000 {
        // SAFETY: in bounds of UNINIT, which nothing writes.
        if unsafe { core::ptr::read_volatile(p.add(i)) } != 0 {
            fail!(s, "bss test failed");
        }
    }
}

/// sbrk: too much fails, byte-sized steps are contiguous, the break survives fork.
fn sbrkbasic(s: &str) {
    const TOOMUCH: i32 = 0x7fff_f000;
    if total_bytes() < TOOMUCH as u64 {
        let pid = xfork(s);
        if pid == 0 {
            let before = sbrk(0);
            let a = sbrk(TOOMUCH);
            if a == SBRK_ERR {
                if sbrk(0) != before {
                    println!("{s}: failed sbrk moved the break");
                    sys::exit(2);
                }
                sys::exit(0);
            }
            let mut b = a;
            while b < a + TOOMUCH as u64 {
                poke(b, 99);
                b += PG;
            }
            sys::exit(1);
        }
        match wait_pid(s, pid) {
            0 => {}
            1 => fail!(s, "too much memory allocated!"),
            st => fail!(s, "child exited with {st}"),
        }
    }

    let mut a = sbrk(0);
    for i in 0..5000 {
        let b = sbrk(1);
        if b != a {
            fail!(s, "sbrk test failed {i} {a:#x} {b:#x}");
        }
        poke(b, 1);
        a = b + 1;
    }
    let pid = xfork(s);
    let _ = sbrk(1);
    let c = sbrk(1);
    if c != a + 1 {
        fail!(s, "sbrk test failed post-fork");
    }
    if pid == 0 {
        sys::exit(0);
    }
    let st = wait_pid(s, pid);
    if st != 0 {
        sys::exit(st);
    }
}

/// Growing by tens of megabytes, giving a page back and taking it again (zeroed), shrinking.
fn sbrkmuch(s: &str) {
    const BIG: u64 = 64 * 1024 * 1024;
    let m0 = meminfo();
    let oldbrk = sbrk(0);
    let a = sbrk(0);
    let p = sbrk(BIG as i32);
    if p != a {
        fail!(s, "sbrk failed to grow by {BIG} bytes: {p:#x}");
    }
    let lastaddr = a + BIG - 1;
    poke(lastaddr, 99);
    poke(a, 98);
    if peek(a + BIG / 2) != 0 {
        fail!(s, "new heap memory is not zero");
    }

    let a = sbrk(0);
    let c = sbrk(-(PG as i32));
    if c == SBRK_ERR {
        fail!(s, "sbrk could not deallocate");
    }
    let c = sbrk(0);
    if c != a - PG {
        fail!(
            s,
            "sbrk deallocation produced wrong address, a {a:#x} c {c:#x}"
        );
    }
    let a = sbrk(0);
    let c = sbrk(PG as i32);
    if c != a || sbrk(0) != a + PG {
        fail!(s, "sbrk re-allocation failed, a {a:#x} c {c:#x}");
    }
    if peek(lastaddr) == 99 {
        fail!(s, "sbrk de-allocation didn't really deallocate");
    }
    let a = sbrk(0);
    let c = sbrk(-((sbrk(0) - oldbrk) as i32));
    if c != a {
        fail!(s, "sbrk downsize failed, a {a:#x} c {c:#x}");
    }
    let m1 = meminfo();
    // Page-table pages may stay until exit: one per 2 MiB, plus a few.
    let tables = BIG / (2 * 1024 * 1024) + 4;
    if m1.free_frames + tables < m0.free_frames {
        fail!(
            s,
            "shrinking did not free the frames: {} free before, {} after",
            m0.free_frames,
            m1.free_frames
        );
    }
}

/// Memory given back with sbrk is gone: touching it kills the process.
fn sbrkfree(s: &str) {
    expect_killed(s, "touching a page freed by sbrk", || {
        let a = align_break(s);
        if sbrk(2 * PG as i32) != a {
            sys::exit(2);
        }
        poke(a, 1);
        poke(a + PG, 2);
        if sbrk(-(PG as i32)) == SBRK_ERR {
            sys::exit(3);
        }
        if peek(a) != 1 {
            sys::exit(4);
        }
        peek(a + PG);
    });
    expect_killed(s, "writing a page freed by sbrk", || {
        let a = align_break(s);
        if sbrk(3 * PG as i32) != a {
            sys::exit(2);
        }
        poke(a + 2 * PG + 5, 1);
        if sbrk(-(3 * PG as i32)) == SBRK_ERR {
            sys::exit(3);
        }
        poke(a + 5, 1);
    });
}

/// A huge sbrk fails with -1 and changes nothing.
fn sbrkhuge(s: &str) {
    let m0 = meminfo();
    let pid = xfork(s);
    if pid == 0 {
        sbrkhuge_child(s);
        sys::exit(0);
    }
    let st = wait_pid(s, pid);
    if st != 0 {
        sys::exit(st);
    }
    let m1 = meminfo();
    if m1.free_frames + SLACK_FRAMES < m0.free_frames {
        fail!(
            s,
            "frames lost after exit: {} free before, {} after",
            m0.free_frames,
            m1.free_frames
        );
    }
}

fn sbrkhuge_child(s: &str) {
    let keep: Vec<u64> = (0..1000).collect();
    let before = sbrk(0);
    let m0 = meminfo();
    for n in [0x7fff_f000, i32::MAX, 0x4000_0000] {
        if (n as u64) < total_bytes() {
            continue;
        }
        let r = sbrk(n);
        if r != SBRK_ERR {
            fail!(s, "sbrk({n:#x}) returned {r:#x}, not -1");
        }
        if sbrk(0) != before {
            fail!(s, "failed sbrk({n:#x}) moved the break");
        }
    }
    // Shrinking below the program, or by more than the address, is absurd.
    for n in [i32::MIN, -((before + PG) as i32)] {
        let r = sbrk(n);
        if r != SBRK_ERR {
            fail!(s, "sbrk({n}) returned {r:#x}, not -1");
        }
        if sbrk(0) != before {
            fail!(s, "failed sbrk({n}) moved the break");
        }
    }
    // The failed growth may leave empty page-table pages until exit (one per 2 MiB), nothing
    // more.
    let m1 = meminfo();
    if m1.free_frames + m0.total_frames / 512 + SLACK_FRAMES < m0.free_frames {
        fail!(
            s,
            "failed sbrk kept frames: {} free before, {} after",
            m0.free_frames,
            m1.free_frames
        );
    }
    if keep.iter().enumerate().any(|(i, &v)| v != i as u64) {
        fail!(s, "heap contents changed");
    }
    let a = sbrk(PG as i32);
    if a != before {
        fail!(
            s,
            "sbrk(4096) after failures returned {a:#x}, expected {before:#x}"
        );
    }
    poke(a + 100, 1);
}

/// Grows the heap by `pages` pages, page-aligned; their address.
fn grow_pages(s: &str, pages: u64) -> u64 {
    let a = align_break(s);
    if sbrk((pages * PG) as i32) != a {
        fail!(s, "sbrk of {pages} pages failed");
    }
    a
}

/// The byte a process tagged `tag` keeps at offset `i` of page `p`.
fn cow_byte(tag: u8, p: u64, i: u64) -> u8 {
    tag ^ (p as u8).wrapping_mul(31) ^ (i as u8)
}

fn cow_fill(a: u64, pages: u64, tag: u8) {
    for p in 0..pages {
        for i in [0, 1, 2049, PG - 1] {
            poke(a + p * PG + i, cow_byte(tag, p, i));
        }
    }
}

fn cow_intact(a: u64, pages: u64, tag: u8) -> bool {
    (0..pages).all(|p| {
        [0, 1, 2049, PG - 1]
            .iter()
            .all(|&i| peek(a + p * PG + i) == cow_byte(tag, p, i))
    })
}

/// fork shares memory copy-on-write: a child of a process with a large heap costs a few frames
/// until it writes; what each side writes (by a store or by the kernel, through read) the other
/// never sees; and every frame comes back when the last holder lets go.
fn cowfork(s: &str) {
    const PAGES: u64 = 1024;
    let m0 = meminfo();
    let a = grow_pages(s, PAGES);
    cow_fill(a, PAGES, 0x5a);
    let Ok([r, w]) = sys::pipe() else {
        fail!(s, "pipe() failed")
    };
    let before = meminfo().free_frames;
    let pid = xfork(s);
    if pid == 0 {
        // Sharing: the fork took far fewer frames than the heap holds.
        let used = before.saturating_sub(meminfo().free_frames);
        if used > PAGES / 4 {
            println!("{s}: fork of a {PAGES}-page heap took {used} frames");
            sys::exit(2);
        }
        if !cow_intact(a, PAGES, 0x5a) {
            println!("{s}: the child does not see the parent's heap");
            sys::exit(3);
        }
        // Half the pages by stores, the other half by the kernel (read from a pipe).
        cow_fill(a, PAGES / 2, 0xc3);
        for p in PAGES / 2..PAGES {
            let b: [u8; 2] = [cow_byte(0xc3, p, 0), cow_byte(0xc3, p, 1)];
            if write(w, &b) != 2 || r_read(r, a + p * PG, 2) != 2 {
                println!("{s}: pipe transfer failed");
                sys::exit(4);
            }
            poke(a + p * PG + 2049, cow_byte(0xc3, p, 2049));
            poke(a + p * PG + PG - 1, cow_byte(0xc3, p, PG - 1));
        }
        if !cow_intact(a, PAGES, 0xc3) {
            println!("{s}: the child's own writes did not stick");
            sys::exit(5);
        }
        sys::exit(0);
    }
    if wait_pid(s, pid) != 0 {
        fail!(s, "child failed");
    }
    if !cow_intact(a, PAGES, 0x5a) {
        fail!(s, "the child's writes reached the parent");
    }
    // The parent is the last holder now: writes need no copy and lose nothing.
    let f0 = meminfo().free_frames;
    cow_fill(a, PAGES, 0x11);
    if !cow_intact(a, PAGES, 0x11) || meminfo().free_frames + SLACK_FRAMES < f0 {
        fail!(s, "the last holder's writes copied pages or lost data");
    }
    close(r);
    close(w);
    if sbrk(-((PAGES * PG) as i32)) == SBRK_ERR {
        fail!(s, "shrink failed");
    }
    let m1 = meminfo();
    if m1.free_frames + SLACK_FRAMES < m0.free_frames {
        fail!(
            s,
            "frames lost: {} free before, {} after",
            m0.free_frames,
            m1.free_frames
        );
    }
}

/// Four children and their parent write the same shared pages at once (on several CPUs), and
/// grandchildren fork from children mid-way: each sees only its own writes, and all memory comes
/// back.
fn cowrace(s: &str) {
    const PAGES: u64 = 64;
    let m0 = meminfo();
    let a = grow_pages(s, PAGES);
    cow_fill(a, PAGES, 1);
    let mut pids = [0i32; 4];
    for (k, pid) in pids.iter_mut().enumerate() {
        *pid = xfork(s);
        if *pid == 0 {
            let tag = 0x20 + k as u8;
            for round in 0..20u8 {
                cow_fill(a, PAGES, tag ^ round);
                if round == 10 {
                    let g = fork();
                    if g == 0 {
                        cow_fill(a, PAGES, 0x77);
                        sys::exit(if cow_intact(a, PAGES, 0x77) { 0 } else { 7 });
                    }
                    if g < 0 || wait_pid(s, g) != 0 {
                        sys::exit(8);
                    }
                }
                if !cow_intact(a, PAGES, tag ^ round) {
                    sys::exit(9);
                }
            }
            sys::exit(0);
        }
    }
    for round in 0..20u8 {
        cow_fill(a, PAGES, 0x40 ^ round);
        if !cow_intact(a, PAGES, 0x40 ^ round) {
            fail!(s, "the parent's writes were disturbed");
        }
    }
    for _ in pids {
        let (pid, st) = wait();
        if pid < 0 || st != 0 {
            fail!(s, "child {pid} saw others' writes (status {st})");
        }
    }
    if sbrk(-((PAGES * PG) as i32)) == SBRK_ERR {
        fail!(s, "shrink failed");
    }
    let m1 = meminfo();
    if m1.free_frames + SLACK_FRAMES < m0.free_frames {
        fail!(
            s,
            "frames lost: {} free before, {} after",
            m0.free_frames,
            m1.free_frames
        );
    }
}

/// A child that writes more shared memory than the machine has left is killed on the fault
/// that finds no frame (not the kernel, not the parent), and everything comes back.
fn cowoom(s: &str) {
    let m0 = meminfo();
    let pages = m0.free_frames * 6 / 10;
    let a = grow_pages(s, pages);
    let mut p = 0;
    while p < pages {
        poke(a + p * PG, 1);
        p += 1;
    }
    let pid = xfork(s);
    if pid == 0 {
        let mut p = 0;
        while p < pages {
            poke(a + p * PG, 2);
            p += 1;
        }
        println!("{s}: the child wrote {pages} pages with too little memory for them");
        sys::exit(1);
    }
    let st = wait_pid(s, pid);
    if st != -1 {
        fail!(s, "child status {st}, expected killed (-1)");
    }
    if (0..pages).any(|p| peek(a + p * PG) != 1) {
        fail!(s, "the parent's pages changed");
    }
    if sbrk(-((pages * PG) as i32)) == SBRK_ERR {
        fail!(s, "shrink failed");
    }
    // The shrunk heap may keep its empty page-table pages until exit (one per 2 MiB).
    let m1 = meminfo();
    if m1.free_frames + pages / 512 + 1 + SLACK_FRAMES < m0.free_frames {
        fail!(
            s,
            "frames lost: {} free before, {} after",
            m0.free_frames,
            m1.free_frames
        );
    }
}

/// sbrk maps nothing until a page is touched, by the program or by the kernel on its behalf:
/// system calls read from and write into untouched heap pages (a path spanning touched and
/// untouched pages too), a child of a fork sees zeroes there, the heap never executes, and many
/// rounds of growth, partial touching and shrinking leave every frame where it was.
fn lazysbrk(s: &str) {
    const PAGES: u64 = 64;
    let m0 = meminfo();
    let a = grow_pages(s, PAGES);
    // The kernel writes into untouched pages (read from a pipe; copy_out).
    let Ok([r, w]) = sys::pipe() else {
        fail!(s, "pipe() failed")
    };
    // 300 bytes across the boundary of two untouched pages.
    let msg = [0xabu8; 300];
    let at = a + PG - 150;
    if write(w, &msg) != msg.len() as i32 || r_read(r, at, msg.len() as i32) != msg.len() as i32 {
        fail!(s, "read into untouched heap pages failed");
    }
    if (0..msg.len() as u64).any(|i| peek(at + i) != 0xab)
        || peek(a) != 0
        || peek(a + 2 * PG - 1) != 0
    {
        fail!(s, "read into untouched heap pages went wrong");
    }
    // ... and reads from untouched pages (write to a pipe; copy_in): zeroes.
    if r_write(w, a + 10 * PG, 100) != 100 {
        fail!(s, "write from an untouched heap page failed");
    }
    let mut back = [1u8; 100];
    if read(r, &mut back) != 100 || back.iter().any(|&b| b != 0) {
        fail!(s, "an untouched heap page did not read as zeroes");
    }
    // A path that starts in a touched page and ends in an untouched one.
    let path = a + 12 * PG - 3;
    for (i, &c) in b"lz".iter().enumerate() {
        poke(path + i as u64, c);
    }
    poke(path + 2, b'!');
    let fd = r_open(path, O_CREATE | O_RDWR);
    if fd < 0 {
        fail!(s, "open of a path ending in an untouched page failed");
    }
    close(fd);
    if unlink(b"lz!") != 0 {
        fail!(s, "the path was not read right");
    }
    close(r);
    close(w);
    // A child sees zeroes in pages nobody touched, and its touches are its own.
    let pid = xfork(s);
    if pid == 0 {
        if peek(a + 20 * PG) != 0 || peek(at) != 0xab {
            sys::exit(2);
        }
        poke(a + 20 * PG, 7);
        sys::exit(0);
    }
    if wait_pid(s, pid) != 0 {
        fail!(s, "the child saw wrong heap contents");
    }
    if peek(a + 20 * PG) != 0 {
        fail!(s, "the child's touch reached the parent");
    }
    // The heap never executes, touched or not.
    expect_killed(s, "jumping into an untouched heap page", || {
        // SAFETY: not safe: the kernel must kill us.
        let f: extern "C" fn() = unsafe { core::mem::transmute((a + 30 * PG) as usize) };
        f();
    });
    if sbrk(-((PAGES * PG) as i32)) == SBRK_ERR {
        fail!(s, "shrink failed");
    }
    // Many rounds of grow, touch some (a page read, a page written), shrink: memory that comes
    // back below the break is always zero, and nothing is lost.
    let mut seed = 12345u64;
    for round in 0..300u64 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let n = 1 + (seed >> 33) % 40;
        let a = grow_pages(s, n);
        for p in 0..n {
            match (seed >> (p % 60)) & 3 {
                0 => poke(a + p * PG + round % PG, 0x5a),
                1 if peek(a + p * PG + round % PG) != 0 => {
                    fail!(s, "round {round}: a page below the break kept old data")
                }
                _ => {}
            }
        }
        if sbrk(-((n * PG) as i32)) == SBRK_ERR {
            fail!(s, "shrink failed");
        }
    }
    // Page-table pages may stay until exit (one per 2 MiB of heap touched).
    let m1 = meminfo();
    if m1.free_frames + 4 + SLACK_FRAMES < m0.free_frames {
        fail!(
            s,
            "frames lost: {} free before, {} after",
            m0.free_frames,
            m1.free_frames
        );
    }
}

/// When the system runs out of memory, the failed sbrk calls give back what they took.
fn sbrkfail(s: &str) {
    let big = (total_bytes() / 4).min(0x7fff_f000) as i32;
    let m0 = meminfo();
    let Ok([r, w]) = sys::pipe() else {
        fail!(s, "pipe() failed")
    };
    let mut pids = [0i32; 10];
    let mut failed = false;
    for p in pids.iter_mut() {
        *p = fork();
        if *p == 0 {
            let msg: &[u8] = if sbrk(big) == SBRK_ERR { b"0" } else { b"1" };
            write(w, msg);
            loop {
                let _ = sys::sleep(1000);
            }
        }
        if *p > 0 {
            let mut c = [0u8; 1];
            if read(r, &mut c) != 1 {
                fail!(s, "read from pipe failed");
            }
            if c[0] == b'0' {
                failed = true;
            }
        }
    }
    if !failed {
        fail!(s, "no allocation failed, with 10 x a quarter of memory");
    }
    // If the failed allocations freed what they took, there is memory left.
    let c = sbrk(PG as i32);
    for &p in &pids {
        if p > 0 {
            let _ = sys::kill(p);
        }
    }
    for _ in pids.iter().filter(|&&p| p > 0) {
        let (p, st) = wait();
        if p < 0 || st != -1 {
            fail!(s, "wait gave pid {p} status {st}, expected a killed child");
        }
    }
    if c == SBRK_ERR {
        fail!(s, "failed sbrk leaked memory");
    }
    close(r);
    close(w);
    let pid = xfork(s);
    if pid == 0 {
        let a = sbrk(0x7fff_f000);
        if a == SBRK_ERR {
            sys::exit(0);
        }
        println!("{s}: allocate a lot of memory succeeded");
        sys::exit(1);
    }
    if wait_pid(s, pid) != 0 {
        sys::exit(1);
    }
    let m1 = meminfo();
    if m1.free_frames + SLACK_FRAMES < m0.free_frames {
        fail!(
            s,
            "frames lost: {} free before, {} after",
            m0.free_frames,
            m1.free_frames
        );
    }
}

/// Allocate all of memory, free it, and allocate again.
fn mem(s: &str) {
    let pid = xfork(s);
    if pid == 0 {
        const STEP: i32 = 1 << 20;
        let start = sbrk(0);
        let mut n: u64 = 0;
        while sbrk(STEP) != SBRK_ERR {
            poke(start + n * STEP as u64, 1);
            n += 1;
        }
        if n < 4 {
            println!("{s}: only {n} MiB could be allocated");
            sys::exit(1);
        }
        // Pages one at a time up to the very end.
        while sbrk(PG as i32) != SBRK_ERR {}
        let top = sbrk(0);
        let total = top - start;
        let mut left = total;
        while left > 0 {
            let step = left.min(1 << 30);
            if sbrk(-(step as i32)) == SBRK_ERR {
                println!("{s}: shrink failed");
                sys::exit(1);
            }
            left -= step;
        }
        if sbrk(0) != start {
            println!("{s}: break did not come back");
            sys::exit(1);
        }
        let v: Vec<u8> = vec![5; 20 * 1024];
        if v.iter().any(|&b| b != 5) {
            sys::exit(1);
        }
        let a = sbrk(20 * 1024);
        if a == SBRK_ERR {
            println!("{s}: couldn't allocate mem?!!");
            sys::exit(1);
        }
        sys::exit(0);
    }
    let st = wait_pid(s, pid);
    if st != 0 {
        sys::exit(st);
    }
}

/// sbrk'd memory as system call arguments.
fn sbrkarg(s: &str) {
    let a = sbrk(PG as i32);
    let fd = open(b"sbrk", O_CREATE | O_WRONLY);
    unlink(b"sbrk");
    if fd < 0 {
        fail!(s, "open sbrk failed");
    }
    let n = r_write(fd, a, PG as i32);
    if n != PG as i32 {
        fail!(s, "write sbrk failed: {n}");
    }
    close(fd);
    let a = sbrk(PG as i32);
    if r_pipe(a) != 0 {
        fail!(s, "pipe() failed");
    }
    // SAFETY: the pipe call filled two ints at a, which is our heap.
    let (rfd, wfd) = unsafe { (*(a as *const i32), *((a + 4) as *const i32)) };
    if write(wfd, b"hi") != 2 {
        fail!(s, "write to the pipe failed");
    }
    let mut b = [0u8; 2];
    if read(rfd, &mut b) != 2 || &b != b"hi" {
        fail!(s, "pipe in sbrk memory does not work");
    }
}

/// Odd breaks: below the program (refused), in the middle of a page, shrinking by a few bytes.
fn sbrkbugs(s: &str) {
    for case in 0..2 {
        let pid = xfork(s);
        if pid == 0 {
            let sz = sbrk(0);
            let n = if case == 0 { sz } else { sz - 3500 };
            let r = sbrk(-(n as i32));
            if r == SBRK_ERR && sbrk(0) != sz {
                println!("{s}: failed sbrk moved the break");
                sys::exit(2);
            }
            // If the kernel allowed it, returning here faults (status -1).
            sys::exit(0);
        }
        let st = wait_pid(s, pid);
        if st != 0 && st != -1 {
            fail!(s, "child {case} exited with {st}");
        }
    }
    let pid = xfork(s);
    if pid == 0 {
        let base = align_break(s);
        let want = base + 10 * PG + 2048;
        if sbrk((want - base) as i32) == SBRK_ERR || sbrk(0) != want {
            println!("{s}: could not set the break mid-page");
            sys::exit(1);
        }
        poke(want - 1, 1);
        if sbrk(-10) == SBRK_ERR || sbrk(0) != want - 10 {
            println!("{s}: sbrk(-10) failed");
            sys::exit(1);
        }
        // The page holding the new break is still there.
        poke(want - 11, 2);
        if peek(want - 1) != 1 {
            println!("{s}: data lost after sbrk(-10)");
            sys::exit(1);
        }
        sys::exit(0);
    }
    if wait_pid(s, pid) != 0 {
        sys::exit(1);
    }
}

/// Grow past a page boundary, shrink back below it: the last page is still usable by the kernel.
fn sbrklast(s: &str) {
    align_break(s);
    sbrk(PG as i32);
    sbrk(10);
    sbrk(-20);
    let top = sbrk(0);
    let p = top - 64;
    poke(p, b'x');
    poke(p + 1, 0);
    let fd = r_open(p, O_RDWR | O_CREATE);
    if fd < 0 {
        fail!(s, "open(path in the last heap page) failed");
    }
    if r_write(fd, p, 1) != 1 {
        fail!(s, "write from the last heap page failed");
    }
    close(fd);
    let fd = r_open(p, O_RDWR);
    poke(p, 0);
    if r_read(fd, p, 1) != 1 {
        fail!(s, "read into the last heap page failed");
    }
    close(fd);
    if peek(p) != b'x' {
        fail!(s, "read back the wrong byte");
    }
    unlink(b"x");
}

/// sbrk(0x80000004) is a negative int: a huge shrink that must fail. And int arguments come from
/// the low 32 bits of the register.
fn sbrk8000(s: &str) {
    let before = sbrk(0);
    let r = sbrk(0x8000_0004u32 as i32);
    if r != SBRK_ERR {
        fail!(s, "sbrk(0x80000004) returned {r:#x}, not -1");
    }
    let top = sbrk(0);
    if top != before {
        fail!(s, "the break moved");
    }
    let v = peek(top - 1);
    poke(top - 1, v.wrapping_add(1));
    // SAFETY: sbrk(4096) with garbage in the upper half of rdi: grows the heap by one page.
    let old = unsafe { sys::syscall(Sysno::Sbrk as u64, &[0xdead_beef_0000_1000]) };
    if old != top || sbrk(0) != top + 0x1000 {
        fail!(
            s,
            "sbrk with upper register bits set: old {old:#x}, now {:#x}",
            sbrk(0)
        );
    }
}

/// exec with a bad argument pointer, many times: must fail each time and leak nothing.
fn badarg(s: &str) {
    let m0 = meminfo();
    in_child(s, || {
        let echo = cstr(b"echo");
        for i in 0..500 {
            let argv: [u64; 2] = [0xffff_ffff, 0];
            let r = r_exec(echo.as_ptr() as u64, argv.as_ptr() as u64);
            if r != -1 {
                fail!(s, "exec {i} returned {r}");
            }
        }
    });
    let m1 = meminfo();
    if m1.free_frames + SLACK_FRAMES < m0.free_frames || m1.kheap_in_use > m0.kheap_in_use {
        fail!(
            s,
            "failed execs leaked: frames {} -> {}, kernel heap {} -> {}",
            m0.free_frames,
            m1.free_frames,
            m0.kheap_in_use,
            m1.kheap_in_use
        );
    }
}

/// exec when memory is (almost) exhausted: must fail or succeed cleanly and leak nothing.
fn execout(s: &str) {
    let m0 = meminfo();
    for avail in [0, 1, 2, 4, 8, 16, 32] {
        let pid = xfork(s);
        if pid == 0 {
            while sbrk(1 << 20) != SBRK_ERR {}
            loop {
                let a = sbrk(PG as i32);
                if a == SBRK_ERR {
                    break;
                }
                poke(a + PG - 1, 1);
            }
            for _ in 0..avail {
                sbrk(-(PG as i32));
            }
            // echo may run out of memory and panic: keep its messages off the console.
            close(1);
            close(2);
            let _ = exec_any(b"echo", &[b"echo", b"x"]);
            sys::exit(0);
        }
        let (p, _st) = wait();
        if p != pid {
            fail!(s, "wait returned {p}, expected {pid}");
        }
    }
    let m1 = meminfo();
    if m1.free_frames + SLACK_FRAMES < m0.free_frames || m1.kheap_in_use > m0.kheap_in_use {
        fail!(
            s,
            "exec out of memory leaked: frames {} -> {}, kernel heap {} -> {}",
            m0.free_frames,
            m1.free_frames,
            m0.kheap_in_use,
            m1.kheap_in_use
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// A spinning child killed by its parent exits with -1.
fn killstatus(s: &str) {
    for _ in 0..20 {
        let pid = xfork(s);
        if pid == 0 {
            loop {
                sys::getpid();
            }
        }
        let _ = sys::sleep(1);
        if sys::kill(pid).is_err() {
            fail!(s, "kill failed");
        }
        let st = wait_pid(s, pid);
        if st != -1 {
            fail!(s, "status should be -1, is {st}");
        }
    }
}

/// kill of pids that do not exist, or of init, fails and harms nobody (killing init used to
/// panic the kernel: init must never exit).
fn killzero(s: &str) {
    for pid in [0, -1, i32::MIN, 1_000_000, 1] {
        if sys::kill(pid).is_ok() {
            fail!(s, "kill({pid}) succeeded");
        }
    }
    let pid = xfork(s);
    if pid == 0 {
        sys::exit(7);
    }
    let (p, st) = wait();
    if p != pid {
        fail!(s, "wait wrong pid");
    }
    if st != 7 {
        fail!(s, "child exited with status {st}, expected 7");
    }
    // The pid of a reaped child is gone.
    if sys::kill(pid).is_ok() {
        fail!(s, "kill of a reaped child succeeded");
    }
}

/// Three CPU-bound children are preempted so the parent runs, and can kill them.
fn preempt(s: &str) {
    let pid1 = xfork(s);
    if pid1 == 0 {
        loop {
            core::hint::spin_loop();
        }
    }
    let pid2 = xfork(s);
    if pid2 == 0 {
        loop {
            core::hint::spin_loop();
        }
    }
    let Ok([r, w]) = sys::pipe() else {
        fail!(s, "pipe failed")
    };
    let pid3 = xfork(s);
    if pid3 == 0 {
        close(r);
        if write(w, b"x") != 1 {
            println!("{s}: preempt write error");
        }
        close(w);
        loop {
            core::hint::spin_loop();
        }
    }
    close(w);
    let mut b = [0u8; 16];
    if read(r, &mut b) != 1 {
        fail!(s, "preempt read error");
    }
    close(r);
    for p in [pid1, pid2, pid3] {
        if sys::kill(p).is_err() {
            fail!(s, "kill {p} failed");
        }
    }
    for _ in 0..3 {
        let (p, st) = wait();
        if p < 0 || st != -1 {
            fail!(s, "wait got pid {p} status {st}, expected a killed child");
        }
    }
}

/// Many fork/exit/wait rounds: the right pid and the right status every time.
fn exitwait(s: &str) {
    for i in 0..100 {
        let pid = xfork(s);
        if pid == 0 {
            sys::exit(i);
        }
        let (p, st) = wait();
        if p != pid {
            fail!(s, "wait wrong pid");
        }
        if st != i {
            fail!(s, "wait wrong exit status {st}, expected {i}");
        }
    }
}

/// Exit statuses come back whole, negative ones included; wait without children fails.
fn exitstatus(s: &str) {
    for want in [0, 1, 7, 255, 256, 1000, -2, -100, i32::MAX, i32::MIN] {
        let pid = xfork(s);
        if pid == 0 {
            sys::exit(want);
        }
        let st = wait_pid(s, pid);
        if st != want {
            fail!(s, "exit({want}) gave status {st}");
        }
    }
    // wait(0): no status wanted.
    let pid = xfork(s);
    if pid == 0 {
        sys::exit(3);
    }
    let r = r_wait(0);
    if r != pid {
        fail!(s, "wait(NULL) returned {r}, expected {pid}");
    }
    if wait().0 != -1 {
        fail!(s, "wait without children did not fail");
    }
    // Several children: each pid exactly once.
    let mut pids = [0i32; 5];
    for (i, p) in pids.iter_mut().enumerate() {
        *p = xfork(s);
        if *p == 0 {
            sys::exit(10 + i as i32);
        }
    }
    for _ in 0..5 {
        let (p, st) = wait();
        let Some(i) = pids.iter().position(|&q| q == p) else {
            fail!(s, "wait returned unknown pid {p}")
        };
        if st != 10 + i as i32 {
            fail!(s, "child {i} status {st}");
        }
        pids[i] = 0;
    }
    if wait().0 != -1 {
        fail!(s, "wait found too many children");
    }
}

/// Parents exit while their children are still alive: reparenting to init.
fn reparent(s: &str) {
    let master = sys::getpid();
    for _ in 0..100 {
        let pid = xfork(s);
        if pid != 0 {
            if wait().0 != pid {
                fail!(s, "wait wrong pid");
            }
        } else {
            if fork() < 0 {
                let _ = sys::kill(master);
                sys::exit(1);
            }
            sys::exit(0);
        }
    }
}

/// Two children exiting at the same time.
fn twochildren(s: &str) {
    for _ in 0..200 {
        let pid1 = xfork(s);
        if pid1 == 0 {
            sys::exit(0);
        }
        let pid2 = xfork(s);
        if pid2 == 0 {
            sys::exit(0);
        }
        let (a, _) = wait();
        let (b, _) = wait();
        if !((a == pid1 && b == pid2) || (a == pid2 && b == pid1)) {
            fail!(s, "wait returned {a} and {b}, expected {pid1} and {pid2}");
        }
    }
}

/// Concurrent forks.
fn forkfork(s: &str) {
    const N: usize = 2;
    for _ in 0..N {
        let pid = xfork(s);
        if pid == 0 {
            for _ in 0..100 {
                let p = fork();
                if p < 0 {
                    sys::exit(1);
                }
                if p == 0 {
                    sys::exit(0);
                }
                wait();
            }
            sys::exit(0);
        }
    }
    for _ in 0..N {
        let (_, st) = wait();
        if st != 0 {
            fail!(s, "fork in child failed");
        }
    }
}

/// Waits (up to `secs` seconds) until at most `n` processes exist.
fn settle_nproc(n: u64, secs: i32) -> bool {
    for _ in 0..secs * 10 {
        if meminfo().nproc <= n {
            return true;
        }
        let _ = sys::sleep(10);
    }
    meminfo().nproc <= n
}

/// A fork bomb that stops itself: fill the process table, then everyone exits.
fn forkforkfork(s: &str) {
    unlink(b"stopforking");
    let n0 = meminfo().nproc;
    let pid = xfork(s);
    if pid == 0 {
        loop {
            let fd = open(b"stopforking", O_RDONLY);
            if fd >= 0 {
                sys::exit(0);
            }
            if fork() < 0 {
                close(open(b"stopforking", O_CREATE | O_RDWR));
            }
        }
    }
    let _ = sys::sleep(100);
    close(open(b"stopforking", O_CREATE | O_RDWR));
    wait();
    let ok = settle_nproc(n0, 20);
    unlink(b"stopforking");
    if !ok {
        fail!(
            s,
            "{} processes still exist, expected {n0}",
            meminfo().nproc
        );
    }
}

/// Reparenting while init waits (a regression test in xv6).
fn reparent2(s: &str) {
    for _ in 0..200 {
        let pid1 = xfork(s);
        if pid1 == 0 {
            fork();
            fork();
            sys::exit(0);
        }
        wait();
    }
}

/// Fork until it fails (the process table is full), then wait for every child.
fn forktest(s: &str) {
    const N: usize = 1000;
    let mut n = 0;
    while n < N {
        let pid = fork();
        if pid < 0 {
            break;
        }
        if pid == 0 {
            sys::exit(0);
        }
        n += 1;
    }
    if n == 0 {
        fail!(s, "no fork at all!");
    }
    if n == N || n >= NPROC {
        fail!(s, "fork claimed to work {n} times!");
    }
    for _ in 0..n {
        if wait().0 < 0 {
            fail!(s, "wait stopped early");
        }
    }
    if wait().0 != -1 {
        fail!(s, "wait got too many");
    }
    // The table has room again.
    let pid = xfork(s);
    if pid == 0 {
        sys::exit(0);
    }
    wait();
}

/// uptime advances and sleep sleeps about as long as asked.
fn uptimesleep(s: &str) {
    let t0 = sys::uptime();
    if t0 < 0 {
        fail!(s, "uptime returned {t0}");
    }
    if sys::sleep(0).is_err() {
        fail!(s, "sleep(0) failed");
    }
    if sys::sleep(10).is_err() {
        fail!(s, "sleep(10) failed");
    }
    let t1 = sys::uptime();
    if t1 - t0 < 10 {
        fail!(s, "sleep(10) returned after {} ticks", t1 - t0);
    }
    if t1 - t0 > 500 {
        fail!(s, "sleep(10) took {} ticks", t1 - t0);
    }
    // Busy time passes too.
    let t2 = sys::uptime();
    while sys::uptime() < t2 + 3 {
        sys::getpid();
    }
}

/// kill wakes a sleeping process.
fn killsleep(s: &str) {
    let pid = xfork(s);
    if pid == 0 {
        let _ = sys::sleep(1_000_000);
        sys::exit(0);
    }
    let _ = sys::sleep(5);
    let t0 = sys::uptime();
    if sys::kill(pid).is_err() {
        fail!(s, "kill failed");
    }
    let st = wait_pid(s, pid);
    let dt = sys::uptime() - t0;
    if st != -1 {
        fail!(s, "sleeping child exited with {st}, expected -1");
    }
    if dt > 300 {
        fail!(s, "killed sleeper took {dt} ticks to exit");
    }
}

// ---------------------------------------------------------------------------------------------
// Pipes
// ---------------------------------------------------------------------------------------------

/// A child writes numbered bytes, the parent reads them in growing chunks and checks them.
/// 1 MiB through a pipe in writes and reads of random sizes (1 byte to 20 000, so every way of
/// wrapping the ring and every partial read happens), each byte checked against its position.
fn pipewrap(s: &str) {
    const TOTAL: usize = 1 << 20;
    let Ok([r, w]) = sys::pipe() else {
        fail!(s, "pipe() failed")
    };
    let mut buf = vec![0u8; 20_000];
    let next = |x: &mut u64| {
        *x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        1 + (*x >> 33) as usize % 20_000
    };
    let pid = xfork(s);
    if pid == 0 {
        close(r);
        let (mut sent, mut x) = (0usize, 7u64);
        while sent < TOTAL {
            let n = next(&mut x).min(TOTAL - sent);
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = ((sent + i) % 251) as u8;
            }
            if write(w, &buf[..n]) != n as i32 {
                println!("{s}: write of {n} failed");
                sys::exit(1);
            }
            sent += n;
        }
        sys::exit(0);
    }
    close(w);
    let (mut got, mut x) = (0usize, 99u64);
    loop {
        let n = next(&mut x);
        let k = read(r, &mut buf[..n]);
        if k < 0 {
            fail!(s, "read failed");
        }
        if k == 0 {
            break;
        }
        for (i, &b) in buf[..k as usize].iter().enumerate() {
            if b != ((got + i) % 251) as u8 {
                fail!(s, "byte {} is {b}", got + i);
            }
        }
        got += k as usize;
    }
    close(r);
    if got != TOTAL {
        fail!(s, "read {got} bytes of {TOTAL}");
    }
    if wait_pid(s, pid) != 0 {
        fail!(s, "writer failed");
    }
}

fn pipe1(s: &str) {
    const N: usize = 5;
    const SZ: usize = 1033;
    let Ok([r, w]) = sys::pipe() else {
        fail!(s, "pipe() failed")
    };
    let mut buf = vec![0u8; BUFSZ];
    let mut seq: u32 = 0;
    let pid = xfork(s);
    if pid == 0 {
        close(r);
        for _ in 0..N {
            for b in buf.iter_mut().take(SZ) {
                *b = seq as u8;
                seq += 1;
            }
            if write(w, &buf[..SZ]) != SZ as i32 {
                fail!(s, "pipe1 oops 1");
            }
        }
        sys::exit(0);
    }
    close(w);
    let mut total = 0;
    let mut cc = 1;
    loop {
        let n = read(r, &mut buf[..cc]);
        if n <= 0 {
            if n < 0 {
                fail!(s, "pipe read failed");
            }
            break;
        }
        for &b in &buf[..n as usize] {
            if b != seq as u8 {
                fail!(s, "pipe1 oops 2");
            }
            seq += 1;
        }
        total += n as usize;
        cc = (cc * 2).min(BUFSZ);
    }
    if total != N * SZ {
        fail!(s, "pipe1 oops 3 total {total}");
    }
    close(r);
    let st = wait_pid(s, pid);
    if st != 0 {
        sys::exit(st);
    }
}

/// Children blocked in a pipe read or write can be killed; a write with no reader fails.
fn pipekill(s: &str) {
    // Blocked reading an empty pipe.
    let Ok([r, w]) = sys::pipe() else {
        fail!(s, "pipe() failed")
    };
    let pid = xfork(s);
    if pid == 0 {
        let mut b = [0u8; 8];
        let n = read(r, &mut b);
        println!("{s}: read returned {n}");
        sys::exit(0);
    }
    let _ = sys::sleep(5);
    let _ = sys::kill(pid);
    if wait_pid(s, pid) != -1 {
        fail!(s, "reader was not killed");
    }
    // The pipe still works.
    if write(w, b"abc") != 3 {
        fail!(s, "write after the reader died failed");
    }
    let mut b = [0u8; 3];
    if read(r, &mut b) != 3 || &b != b"abc" {
        fail!(s, "pipe lost data");
    }

    // Blocked writing a full pipe.
    let pid = xfork(s);
    if pid == 0 {
        let big = [b'z'; 1024];
        loop {
            if write(w, &big) < 0 {
                sys::exit(2);
            }
        }
    }
    let _ = sys::sleep(5);
    let _ = sys::kill(pid);
    if wait_pid(s, pid) != -1 {
        fail!(s, "writer was not killed");
    }
    close(r);
    // No reader: write fails (instead of blocking).
    let n = write(w, b"x");
    if n != -1 {
        fail!(s, "write to a pipe without readers returned {n}");
    }
    close(w);

    // A reader sees end of file when the writer dies.
    let Ok([r, w]) = sys::pipe() else {
        fail!(s, "pipe() failed")
    };
    let pid = xfork(s);
    if pid == 0 {
        close(r);
        write(w, b"hello");
        loop {
            core::hint::spin_loop();
        }
    }
    close(w);
    let mut b = [0u8; 5];
    if read(r, &mut b) != 5 {
        fail!(s, "read from the child failed");
    }
    let _ = sys::kill(pid);
    if wait_pid(s, pid) != -1 {
        fail!(s, "spinning writer was not killed");
    }
    if read(r, &mut b) != 0 {
        fail!(s, "no end of file after the writer died");
    }
    close(r);
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

/// O_TRUNC through one descriptor, seen by the others.
fn truncate1(s: &str) {
    let mut buf = [0u8; 32];
    unlink(b"truncfile");
    let fd1 = open(b"truncfile", O_CREATE | O_WRONLY | O_TRUNC);
    if write(fd1, b"abcd") != 4 {
        fail!(s, "write failed");
    }
    close(fd1);
    let fd2 = open(b"truncfile", O_RDONLY);
    let n = read(fd2, &mut buf);
    if n != 4 {
        fail!(s, "read {n} bytes, wanted 4");
    }
    let fd1 = open(b"truncfile", O_WRONLY | O_TRUNC);
    let fd3 = open(b"truncfile", O_RDONLY);
    let n = read(fd3, &mut buf);
    if n != 0 {
        fail!(s, "read {n} bytes, wanted 0");
    }
    let n = read(fd2, &mut buf);
    if n != 0 {
        fail!(s, "read {n} bytes, wanted 0");
    }
    if write(fd1, b"abcdef") != 6 {
        fail!(s, "write abcdef failed");
    }
    let n = read(fd3, &mut buf);
    if n != 6 {
        fail!(s, "read {n} bytes, wanted 6");
    }
    let n = read(fd2, &mut buf);
    if n != 2 {
        fail!(s, "read {n} bytes, wanted 2");
    }
    if &buf[..2] != b"ef" {
        fail!(s, "read the wrong bytes");
    }
    if sys::fstat(fd1).map(|st| st.size) != Ok(6) {
        fail!(s, "fstat size is not 6");
    }
    unlink(b"truncfile");
    close(fd1);
    close(fd2);
    close(fd3);
}

/// A write at an offset beyond the end of a file truncated by someone else fails cleanly.
fn truncate2(s: &str) {
    unlink(b"truncfile");
    let fd1 = open(b"truncfile", O_CREATE | O_TRUNC | O_WRONLY);
    if write(fd1, b"abcd") != 4 {
        fail!(s, "write failed");
    }
    let fd2 = open(b"truncfile", O_TRUNC | O_WRONLY);
    let n = write(fd1, b"x");
    if n != -1 {
        fail!(s, "write returned {n}, expected -1");
    }
    unlink(b"truncfile");
    close(fd1);
    close(fd2);
}

/// Truncation racing with writes and reads in another process.
fn truncate3(s: &str) {
    close(open(b"truncfile", O_CREATE | O_TRUNC | O_WRONLY));
    let pid = xfork(s);
    if pid == 0 {
        for _ in 0..50 {
            let mut b = [0u8; 32];
            let fd = open(b"truncfile", O_WRONLY);
            if fd < 0 {
                fail!(s, "open failed");
            }
            let n = write(fd, b"1234567890");
            if n != 10 {
                fail!(s, "write got {n}, expected 10");
            }
            close(fd);
            let fd = open(b"truncfile", O_RDONLY);
            let n = read(fd, &mut b);
            if !(0..=10).contains(&n) {
                fail!(s, "read got {n}");
            }
            close(fd);
        }
        sys::exit(0);
    }
    for _ in 0..75 {
        let fd = open(b"truncfile", O_CREATE | O_WRONLY | O_TRUNC);
        if fd < 0 {
            fail!(s, "open failed");
        }
        let n = write(fd, b"xxx");
        if n != 3 {
            fail!(s, "write got {n}, expected 3");
        }
        close(fd);
    }
    let st = wait_pid(s, pid);
    unlink(b"truncfile");
    sys::exit(st);
}

/// chdir into a directory, unlink it from there.
fn iputtest(s: &str) {
    if mkdir(b"iputdir") < 0 {
        fail!(s, "mkdir failed");
    }
    if chdir(b"iputdir") < 0 {
        fail!(s, "chdir iputdir failed");
    }
    if unlink(b"../iputdir") < 0 {
        fail!(s, "unlink ../iputdir failed");
    }
    if chdir(b"/") < 0 {
        fail!(s, "chdir / failed");
    }
    if open(b"iputdir", O_RDONLY) >= 0 {
        fail!(s, "iputdir still exists");
    }
}

/// exit() with a cwd that has been unlinked.
fn exitiputtest(s: &str) {
    let pid = xfork(s);
    if pid == 0 {
        if mkdir(b"iputdir") < 0 {
            fail!(s, "mkdir failed");
        }
        if chdir(b"iputdir") < 0 {
            fail!(s, "child chdir failed");
        }
        if unlink(b"../iputdir") < 0 {
            fail!(s, "unlink ../iputdir failed");
        }
        sys::exit(0);
    }
    let st = wait_pid(s, pid);
    if st != 0 {
        sys::exit(st);
    }
    if open(b"iputdir", O_RDONLY) >= 0 {
        fail!(s, "iputdir still exists");
    }
}

/// Opening a directory for writing fails while it is being unlinked.
fn openiputtest(s: &str) {
    if mkdir(b"oidir") < 0 {
        fail!(s, "mkdir oidir failed");
    }
    let pid = xfork(s);
    if pid == 0 {
        let fd = open(b"oidir", O_RDWR);
        if fd >= 0 {
            fail!(s, "open directory for write succeeded");
        }
        sys::exit(0);
    }
    let _ = sys::sleep(1);
    if unlink(b"oidir") != 0 {
        fail!(s, "unlink failed");
    }
    let st = wait_pid(s, pid);
    sys::exit(st);
}

/// open of existing and missing files.
fn opentest(s: &str) {
    let fd = open(b"echo", O_RDONLY);
    if fd < 0 {
        fail!(s, "open echo failed!");
    }
    match sys::fstat(fd) {
        Ok(st) if st.typ == T_FILE && st.size > 0 && st.nlink == 1 => {}
        Ok(st) => fail!(s, "fstat(echo) gave {st:?}"),
        Err(_) => fail!(s, "fstat(echo) failed"),
    }
    close(fd);
    if open(b"doesnotexist", O_RDONLY) >= 0 {
        fail!(s, "open doesnotexist succeeded!");
    }
    // Read-only and write-only descriptors refuse the other direction.
    let fd = open(b"README", O_RDONLY);
    if write(fd, b"x") != -1 {
        fail!(s, "write to a read-only descriptor succeeded");
    }
    close(fd);
    let fd = open(b"opentest", O_CREATE | O_WRONLY);
    let mut b = [0u8; 4];
    if fd < 0 || read(fd, &mut b) != -1 {
        fail!(s, "read from a write-only descriptor did not fail");
    }
    close(fd);
    // O_CREATE of an existing file opens it (and does not truncate it).
    let fd = open(b"opentest", O_WRONLY);
    write(fd, b"data");
    close(fd);
    let fd = open(b"opentest", O_CREATE | O_RDWR);
    if fd < 0 || read(fd, &mut b) != 4 || &b != b"data" {
        fail!(s, "O_CREATE of an existing file lost its data");
    }
    close(fd);
    unlink(b"opentest");
}

/// Small writes, read back.
fn writetest(s: &str) {
    const N: usize = 100;
    const SZ: usize = 10;
    let fd = open(b"small", O_CREATE | O_RDWR);
    if fd < 0 {
        fail!(s, "error: creat small failed!");
    }
    for i in 0..N {
        if write(fd, b"aaaaaaaaaa") != SZ as i32 {
            fail!(s, "error: write aa {i} new file failed");
        }
        if write(fd, b"bbbbbbbbbb") != SZ as i32 {
            fail!(s, "error: write bb {i} new file failed");
        }
    }
    close(fd);
    let fd = open(b"small", O_RDONLY);
    if fd < 0 {
        fail!(s, "error: open small failed!");
    }
    let mut buf = vec![0u8; BUFSZ];
    let n = read(fd, &mut buf[..N * SZ * 2]);
    if n != (N * SZ * 2) as i32 {
        fail!(s, "read failed");
    }
    for (i, chunk) in buf[..N * SZ * 2].chunks(SZ).enumerate() {
        let want = if i % 2 == 0 { b'a' } else { b'b' };
        if chunk.iter().any(|&c| c != want) {
            fail!(s, "wrong data in chunk {i}");
        }
    }
    close(fd);
    if unlink(b"small") < 0 {
        fail!(s, "unlink small failed");
    }
}

/// A file of the maximum size (MAXFILE blocks); one more block fails.
fn writebig(s: &str) {
    let fd = open(b"big", O_CREATE | O_RDWR);
    if fd < 0 {
        fail!(s, "error: creat big failed!");
    }
    let mut buf = vec![0u8; BSIZE];
    for i in 0..MAXFILE {
        buf[..4].copy_from_slice(&(i as u32).to_le_bytes());
        buf[BSIZE - 1] = i as u8;
        if write(fd, &buf) != BSIZE as i32 {
            fail!(s, "error: write big file failed i={i}");
        }
    }
    let n = write(fd, &buf);
    if n != -1 {
        fail!(s, "write past the maximum file size returned {n}, not -1");
    }
    let n = write(fd, b"x");
    if n != -1 {
        fail!(
            s,
            "1-byte write past the maximum file size returned {n}, not -1"
        );
    }
    match sys::fstat(fd) {
        Ok(st) if st.size == (MAXFILE * BSIZE) as u64 => {}
        Ok(st) => fail!(
            s,
            "size {} after writing, expected {}",
            st.size,
            MAXFILE * BSIZE
        ),
        Err(_) => fail!(s, "fstat failed"),
    }
    close(fd);
    let fd = open(b"big", O_RDONLY);
    if fd < 0 {
        fail!(s, "error: open big failed!");
    }
    let mut n = 0;
    loop {
        let i = read(fd, &mut buf);
        if i == 0 {
            if n != MAXFILE {
                fail!(s, "read only {n} blocks from big");
            }
            break;
        } else if i != BSIZE as i32 {
            fail!(s, "read failed {i}");
        }
        let v = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if v != n as u32 || buf[BSIZE - 1] != n as u8 {
            fail!(s, "read content of block {n} is {v}");
        }
        n += 1;
    }
    close(fd);
    if unlink(b"big") < 0 {
        fail!(s, "unlink big failed");
    }
}

/// Many creates, then unlinks.
fn createtest(s: &str) {
    const N: u8 = 52;
    for i in 0..N {
        let fd = open(&name2(b'a', b'0' + i), O_CREATE | O_RDWR);
        if fd < 0 {
            fail!(s, "create {} failed", BStr(&name2(b'a', b'0' + i)));
        }
        close(fd);
    }
    for i in 0..N {
        if unlink(&name2(b'a', b'0' + i)) != 0 {
            fail!(s, "unlink {} failed", BStr(&name2(b'a', b'0' + i)));
        }
    }
    for i in 0..N {
        if open(&name2(b'a', b'0' + i), O_RDONLY) >= 0 {
            fail!(s, "unlinked file still exists");
        }
    }
}

/// The open file limit per process: NOFILE descriptors, the lowest free one first; dup.
fn openmany(s: &str) {
    let mut fds = Vec::new();
    loop {
        let fd = open(b"README", O_RDONLY);
        if fd < 0 {
            break;
        }
        if fd != 3 + fds.len() as i32 {
            fail!(s, "open returned fd {fd}, expected {}", 3 + fds.len());
        }
        fds.push(fd);
        if fds.len() > 100 {
            fail!(s, "no limit on open files");
        }
    }
    if fds.len() != NOFILE - 3 {
        fail!(s, "could open {} files, expected {}", fds.len(), NOFILE - 3);
    }
    if sys::dup(0).is_ok() || sys::pipe().is_ok() {
        fail!(s, "dup/pipe with a full descriptor table succeeded");
    }
    close(5);
    close(9);
    if sys::dup(1) != Ok(5) {
        fail!(s, "dup did not return the lowest free descriptor");
    }
    if open(b"README", O_RDONLY) != 9 {
        fail!(s, "open did not return the lowest free descriptor");
    }
    for fd in 3..NOFILE as i32 {
        if close(fd) != 0 {
            fail!(s, "close {fd} failed");
        }
    }
    // Descriptors share the offset after dup.
    let fd = open(b"README", O_RDONLY);
    let fd2 = sys::dup(fd).unwrap_or(-1);
    let mut a = [0u8; 10];
    let mut b = [0u8; 10];
    if read(fd, &mut a) != 10 || read(fd2, &mut b) != 10 || a == b {
        fail!(s, "dup'd descriptors do not share the offset");
    }
    let all = slurp(s, b"README");
    if all[..10] != a || all[10..20] != b {
        fail!(s, "read the wrong data");
    }
}

/// mkdir, chdir into it, .., unlink.
fn dirtest(s: &str) {
    if mkdir(b"dir0") < 0 {
        fail!(s, "mkdir failed");
    }
    if mkdir(b"dir0") == 0 {
        fail!(s, "second mkdir dir0 succeeded");
    }
    if chdir(b"dir0") < 0 {
        fail!(s, "chdir dir0 failed");
    }
    match sys::stat(b".") {
        Ok(st) if st.typ == T_DIR => {}
        _ => fail!(s, "stat . is not a directory"),
    }
    if chdir(b"..") < 0 {
        fail!(s, "chdir .. failed");
    }
    if unlink(b"dir0") < 0 {
        fail!(s, "unlink dir0 failed");
    }
    if chdir(b"dir0") == 0 {
        fail!(s, "chdir to removed dir0 succeeded");
    }
}

/// exec echo with its output in a file.
fn exectest(s: &str) {
    unlink(b"echo-ok");
    let pid = xfork(s);
    if pid == 0 {
        let errfd = sys::dup(1).unwrap_or(-1);
        if errfd < 0 {
            fail!(s, "dup failed");
        }
        close(1);
        let fd = open(b"echo-ok", O_CREATE | O_WRONLY);
        if fd < 0 {
            xv6_user::fprintln!(errfd, "{s}: create failed");
            sys::exit(1);
        }
        if fd != 1 {
            xv6_user::fprintln!(errfd, "{s}: wrong fd");
            sys::exit(1);
        }
        let _ = sys::exec(b"echo", &[b"echo", b"OK"]);
        xv6_user::fprintln!(errfd, "{s}: exec echo failed");
        sys::exit(1);
    }
    let st = wait_pid(s, pid);
    if st != 0 {
        fail!(s, "nonzero wait status {st}");
    }
    let out = slurp(s, b"echo-ok");
    unlink(b"echo-ok");
    if out != b"OK\n" {
        fail!(s, "wrong output {:?}", BStr(&out));
    }
}

/// Runs `echo` with `argv` (any number of arguments) with its output in a file; the output, or
/// None if exec failed.
fn echo_capture(s: &str, argv: &[&[u8]]) -> Option<Vec<u8>> {
    unlink(b"execargs-out");
    let pid = xfork(s);
    if pid == 0 {
        close(1);
        let fd = open(b"execargs-out", O_CREATE | O_WRONLY | O_TRUNC);
        if fd != 1 {
            sys::exit(78);
        }
        let _ = exec_any(b"echo", argv);
        sys::exit(77);
    }
    let st = wait_pid(s, pid);
    match st {
        77 => None,
        0 => {
            let out = slurp(s, b"execargs-out");
            unlink(b"execargs-out");
            Some(out)
        }
        _ => fail!(s, "echo exited with {st}"),
    }
}

/// exec with up to MAXARG arguments, and large ones; MAXARG + 1 fails.
fn execargs(s: &str) {
    let mut store: Vec<Vec<u8>> = Vec::new();
    store.push(b"echo".to_vec());
    for i in 1..MAXARG + 1 {
        let mut a = Vec::new();
        a.extend_from_slice(b"arg");
        a.push(b'0' + (i / 10) as u8);
        a.push(b'0' + (i % 10) as u8);
        store.push(a);
    }
    for n in [1, 2, MAXARG - 1, MAXARG] {
        let argv: Vec<&[u8]> = store[..n].iter().map(|v| v.as_slice()).collect();
        let Some(out) = echo_capture(s, &argv) else {
            fail!(s, "exec with {n} arguments failed")
        };
        let mut want = argv[1..].join(&b' ');
        want.push(b'\n');
        if out != want {
            fail!(s, "echo with {n} arguments printed {:?}", BStr(&out));
        }
    }
    let argv: Vec<&[u8]> = store[..MAXARG + 1].iter().map(|v| v.as_slice()).collect();
    if echo_capture(s, &argv).is_some() {
        fail!(s, "exec with {} arguments succeeded", MAXARG + 1);
    }
    // Large arguments that still fit.
    let big = vec![b'y'; 1000];
    let argv: [&[u8]; 9] = [b"echo", &big, &big, &big, &big, &big, &big, &big, &big];
    let Some(out) = echo_capture(s, &argv) else {
        fail!(s, "exec with 8 x 1000-byte arguments failed")
    };
    if out.len() != 8 * 1001 || out.iter().filter(|&&c| c == b'y').count() != 8000 {
        fail!(s, "echo of large arguments printed {} bytes", out.len());
    }
    // Empty arguments, and none at all (argv = [null]).
    let Some(out) = echo_capture(s, &[b"echo", b"", b"z"]) else {
        fail!(s, "exec with an empty argument failed")
    };
    if out != b" z\n" {
        fail!(s, "echo '' z printed {:?}", BStr(&out));
    }
    if echo_capture(s, &[]).is_none() {
        fail!(s, "exec with argc 0 failed");
    }
}

/// exec of things that are not programs fails, and the caller carries on intact.
fn execbad(s: &str) {
    // A file that starts like an ELF file but is not one, and a truncated program.
    let fd = open(b"badelf", O_CREATE | O_RDWR | O_TRUNC);
    let mut hdr = [0u8; 64];
    hdr[..4].copy_from_slice(b"\x7fELF");
    write(fd, &hdr);
    close(fd);
    let echo = slurp(s, b"echo");
    let fd = open(b"halfecho", O_CREATE | O_RDWR | O_TRUNC);
    write(fd, &echo[..200.min(echo.len())]);
    close(fd);
    let fd = open(b"headecho", O_CREATE | O_RDWR | O_TRUNC);
    write(fd, &echo[..(echo.len() / 2).min(4096)]);
    close(fd);

    static MARK: [u64; 4] = [1, 2, 3, 4];
    let heap: Vec<u32> = (0..500).collect();
    in_child(s, || {
        for path in [
            &b"nonexistent"[..],
            b"README",
            b"/",
            b".",
            b"",
            b"console",
            b"badelf",
            b"halfecho",
            b"headecho",
        ] {
            let r = exec_any(path, &[b"x"]);
            if r != -1 {
                fail!(s, "exec({}) returned {r}", BStr(path));
            }
            if black_box(&MARK)[3] != 4 || heap.iter().enumerate().any(|(i, &v)| v != i as u32) {
                fail!(s, "memory changed after a failed exec");
            }
        }
        // Too many arguments.
        let many: Vec<&[u8]> = (0..MAXARG + 1).map(|_| &b"a"[..]).collect();
        let r = exec_any(b"echo", &many);
        if r != -1 {
            fail!(s, "exec with {} args returned {r}", MAXARG + 1);
        }
        let many: Vec<&[u8]> = (0..200).map(|_| &b"a"[..]).collect();
        if exec_any(b"echo", &many) != -1 {
            fail!(s, "exec with 200 args did not fail");
        }
    });
    unlink(b"badelf");
    unlink(b"halfecho");
    unlink(b"headecho");
}

/// Arguments larger than the stack: exec fails and returns.
fn bigargtest(s: &str) {
    unlink(b"bigarg-ok");
    let pid = xfork(s);
    if pid == 0 {
        let big = vec![b' '; 1200];
        let argv: Vec<&[u8]> = (0..MAXARG - 1).map(|_| big.as_slice()).collect();
        let _ = exec_any(b"echo", &argv);
        let fd = open(b"bigarg-ok", O_CREATE);
        close(fd);
        sys::exit(0);
    }
    let st = wait_pid(s, pid);
    if st != 0 {
        sys::exit(st);
    }
    let fd = open(b"bigarg-ok", O_RDONLY);
    if fd < 0 {
        fail!(s, "bigarg test failed!");
    }
    close(fd);
    unlink(b"bigarg-ok");
}

/// Two processes write through one descriptor: the offset is shared.
fn sharedfd(s: &str) {
    const N: usize = 300;
    const SZ: usize = 10;
    unlink(b"sharedfd");
    let fd = open(b"sharedfd", O_CREATE | O_RDWR);
    if fd < 0 {
        fail!(s, "cannot open sharedfd for writing");
    }
    let pid = xfork(s);
    let b = [if pid == 0 { b'c' } else { b'p' }; SZ];
    for _ in 0..N {
        if write(fd, &b) != SZ as i32 {
            fail!(s, "write sharedfd failed");
        }
    }
    if pid == 0 {
        sys::exit(0);
    }
    let st = wait_pid(s, pid);
    if st != 0 {
        sys::exit(st);
    }
    close(fd);
    let data = slurp(s, b"sharedfd");
    let nc = data.iter().filter(|&&c| c == b'c').count();
    let np = data.iter().filter(|&&c| c == b'p').count();
    unlink(b"sharedfd");
    if nc != N * SZ || np != N * SZ || data.len() != 2 * N * SZ {
        fail!(s, "nc/np test fails: {nc} {np} of {}", data.len());
    }
}

/// Four processes write four files at once.
fn fourfiles(s: &str) {
    const N: usize = 12;
    const NCHILD: u8 = 4;
    const SZ: usize = 500;
    for pi in 0..NCHILD {
        let fname = name2(b'f', b'0' + pi);
        unlink(&fname);
        let pid = xfork(s);
        if pid == 0 {
            let fd = open(&fname, O_CREATE | O_RDWR);
            if fd < 0 {
                fail!(s, "create failed");
            }
            let b = [b'0' + pi; SZ];
            for _ in 0..N {
                let n = write(fd, &b);
                if n != SZ as i32 {
                    fail!(s, "write failed {n}");
                }
            }
            sys::exit(0);
        }
    }
    for _ in 0..NCHILD {
        let (_, st) = wait();
        if st != 0 {
            sys::exit(st);
        }
    }
    for i in 0..NCHILD {
        let fname = name2(b'f', b'0' + i);
        let data = slurp(s, &fname);
        if data.iter().any(|&c| c != b'0' + i) {
            fail!(s, "wrong char");
        }
        if data.len() != N * SZ {
            fail!(s, "wrong length {}", data.len());
        }
        unlink(&fname);
    }
}

/// Four processes create and delete files in the same directory.
fn createdelete(s: &str) {
    const N: u8 = 20;
    const NCHILD: u8 = 4;
    for pi in 0..NCHILD {
        let pid = xfork(s);
        if pid == 0 {
            for i in 0..N {
                let fd = open(&name2(b'p' + pi, b'0' + i), O_CREATE | O_RDWR);
                if fd < 0 {
                    fail!(s, "create failed");
                }
                close(fd);
                if i > 0 && i % 2 == 0 && unlink(&name2(b'p' + pi, b'0' + i / 2)) < 0 {
                    fail!(s, "unlink failed");
                }
            }
            sys::exit(0);
        }
    }
    for _ in 0..NCHILD {
        let (_, st) = wait();
        if st != 0 {
            sys::exit(1);
        }
    }
    for i in 0..N {
        for pi in 0..NCHILD {
            let name = name2(b'p' + pi, b'0' + i);
            let fd = open(&name, O_RDONLY);
            if (i == 0 || i >= N / 2) && fd < 0 {
                fail!(s, "oops createdelete {} didn't exist", BStr(&name));
            } else if (1..N / 2).contains(&i) && fd >= 0 {
                fail!(s, "oops createdelete {} did exist", BStr(&name));
            }
            if fd >= 0 {
                close(fd);
            }
        }
    }
    for i in 0..N {
        for pi in 0..NCHILD {
            unlink(&name2(b'p' + pi, b'0' + i));
        }
    }
}

/// An unlinked file stays readable and writable through an open descriptor.
fn unlinkread(s: &str) {
    let fd = open(b"unlinkread", O_CREATE | O_RDWR);
    if fd < 0 {
        fail!(s, "create unlinkread failed");
    }
    write(fd, b"hello");
    close(fd);
    let fd = open(b"unlinkread", O_RDWR);
    if fd < 0 {
        fail!(s, "open unlinkread failed");
    }
    if unlink(b"unlinkread") != 0 {
        fail!(s, "unlink unlinkread failed");
    }
    let fd1 = open(b"unlinkread", O_CREATE | O_RDWR);
    write(fd1, b"yyy");
    close(fd1);
    let mut buf = [0u8; 64];
    if read(fd, &mut buf) != 5 {
        fail!(s, "unlinkread read failed");
    }
    if &buf[..5] != b"hello" {
        fail!(s, "unlinkread wrong data");
    }
    if write(fd, &buf[..10]) != 10 {
        fail!(s, "unlinkread write failed");
    }
    match sys::fstat(fd) {
        Ok(st) if st.nlink == 0 && st.size == 15 => {}
        Ok(st) => fail!(s, "unlinked file: nlink {} size {}", st.nlink, st.size),
        Err(_) => fail!(s, "fstat failed"),
    }
    close(fd);
    if slurp(s, b"unlinkread") != b"yyy" {
        fail!(s, "the new file has the wrong data");
    }
    unlink(b"unlinkread");
}

/// link and unlink; links to directories and to missing files fail.
fn linktest(s: &str) {
    unlink(b"lf1");
    unlink(b"lf2");
    let fd = open(b"lf1", O_CREATE | O_RDWR);
    if fd < 0 {
        fail!(s, "create lf1 failed");
    }
    if write(fd, b"hello") != 5 {
        fail!(s, "write lf1 failed");
    }
    close(fd);
    if link(b"lf1", b"lf2") < 0 {
        fail!(s, "link lf1 lf2 failed");
    }
    match sys::stat(b"lf1") {
        Ok(st) if st.nlink == 2 => {}
        _ => fail!(s, "nlink of lf1 is not 2"),
    }
    if sys::stat(b"lf1").map(|st| st.ino) != sys::stat(b"lf2").map(|st| st.ino) {
        fail!(s, "lf1 and lf2 are different inodes");
    }
    unlink(b"lf1");
    if open(b"lf1", O_RDONLY) >= 0 {
        fail!(s, "unlinked lf1 but it is still there!");
    }
    if slurp(s, b"lf2") != b"hello" {
        fail!(s, "read lf2 failed");
    }
    if link(b"lf2", b"lf2") >= 0 {
        fail!(s, "link lf2 lf2 succeeded! oops");
    }
    unlink(b"lf2");
    if link(b"lf2", b"lf1") >= 0 {
        fail!(s, "link non-existent succeeded! oops");
    }
    if link(b".", b"lf1") >= 0 {
        fail!(s, "link . lf1 succeeded! oops");
    }
    if mkdir(b"lfdir") != 0 {
        fail!(s, "mkdir lfdir failed");
    }
    if link(b"lfdir", b"lf1") >= 0 {
        fail!(s, "link to a directory succeeded");
    }
    if link(b"README", b"lfdir/readme") != 0 {
        fail!(s, "link README lfdir/readme failed");
    }
    if unlink(b"lfdir") == 0 {
        fail!(s, "unlink of a non-empty directory succeeded");
    }
    if unlink(b"lfdir/readme") != 0 || unlink(b"lfdir") != 0 {
        fail!(s, "cleanup failed");
    }
    if open(b"lf1", O_RDONLY) >= 0 {
        fail!(s, "lf1 appeared");
    }
}

/// Concurrent create/link/unlink of the same names.
fn concreate(s: &str) {
    const N: u8 = 40;
    for i in 0..N {
        let file = name2(b'C', b'0' + i);
        unlink(&file);
        let pid = xfork(s);
        if (pid != 0 && i % 3 == 1) || (pid == 0 && i % 5 == 1) {
            link(b"C0", &file);
        } else {
            let fd = open(&file, O_CREATE | O_RDWR);
            if fd < 0 {
                fail!(s, "concreate create {} failed", BStr(&file));
            }
            close(fd);
        }
        if pid == 0 {
            sys::exit(0);
        }
        let (_, st) = wait();
        if st != 0 {
            sys::exit(1);
        }
    }
    let mut fa = [false; N as usize];
    let fd = open(b".", O_RDONLY);
    let mut n = 0;
    let mut de = [0u8; 16];
    while read(fd, &mut de) > 0 {
        let inum = u16::from_le_bytes([de[0], de[1]]);
        if inum == 0 {
            continue;
        }
        let name = &de[2..];
        if name[0] == b'C' && name[2] == 0 {
            let i = name[1].wrapping_sub(b'0') as usize;
            if i >= fa.len() {
                fail!(s, "concreate weird file {}", BStr(&name[..2]));
            }
            if fa[i] {
                fail!(s, "concreate duplicate file {}", BStr(&name[..2]));
            }
            fa[i] = true;
            n += 1;
        }
    }
    close(fd);
    if n != N {
        fail!(s, "concreate not enough files in directory listing: {n}");
    }
    for i in 0..N {
        let file = name2(b'C', b'0' + i);
        let pid = xfork(s);
        if (i % 3 == 0 && pid == 0) || (i % 3 == 1 && pid != 0) {
            for _ in 0..6 {
                close(open(&file, O_RDONLY));
            }
        } else {
            for _ in 0..6 {
                unlink(&file);
            }
        }
        if pid == 0 {
            sys::exit(0);
        }
        wait();
    }
    for i in 0..N {
        unlink(&name2(b'C', b'0' + i));
    }
    for i in 0..N {
        if open(&name2(b'C', b'0' + i), O_RDONLY) >= 0 {
            fail!(s, "C{} survived", i);
        }
    }
}

/// Another concurrent link/unlink/create test, to look for deadlocks.
fn linkunlink(s: &str) {
    unlink(b"x");
    let pid = xfork(s);
    let mut x: u32 = if pid != 0 { 1 } else { 97 };
    for _ in 0..100 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        match x % 3 {
            0 => {
                close(open(b"x", O_RDWR | O_CREATE));
            }
            1 => {
                link(b"cat", b"x");
            }
            _ => {
                unlink(b"x");
            }
        }
    }
    if pid == 0 {
        sys::exit(0);
    }
    wait();
    unlink(b"x");
    // cat must be intact.
    match sys::stat(b"cat") {
        Ok(st) if st.nlink == 1 && st.size > 0 => {}
        _ => fail!(s, "cat damaged"),
    }
}

/// Nested directories, relative paths, and everything that must fail on them.
fn subdir(s: &str) {
    unlink(b"ff");
    if mkdir(b"dd") != 0 {
        fail!(s, "mkdir dd failed");
    }
    let fd = open(b"dd/ff", O_CREATE | O_RDWR);
    if fd < 0 {
        fail!(s, "create dd/ff failed");
    }
    write(fd, b"ff");
    close(fd);
    if unlink(b"dd") >= 0 {
        fail!(s, "unlink dd (non-empty dir) succeeded!");
    }
    if mkdir(b"/dd/dd") != 0 {
        fail!(s, "subdir mkdir dd/dd failed");
    }
    let fd = open(b"dd/dd/ff", O_CREATE | O_RDWR);
    if fd < 0 {
        fail!(s, "create dd/dd/ff failed");
    }
    write(fd, b"FF");
    close(fd);
    let data = slurp(s, b"dd/dd/../ff");
    if data != b"ff" {
        fail!(s, "dd/dd/../ff wrong content");
    }
    if link(b"dd/dd/ff", b"dd/dd/ffff") != 0 {
        fail!(s, "link dd/dd/ff dd/dd/ffff failed");
    }
    if unlink(b"dd/dd/ff") != 0 {
        fail!(s, "unlink dd/dd/ff failed");
    }
    if open(b"dd/dd/ff", O_RDONLY) >= 0 {
        fail!(s, "open (unlinked) dd/dd/ff succeeded");
    }
    if chdir(b"dd") != 0 {
        fail!(s, "chdir dd failed");
    }
    if chdir(b"dd/../../dd") != 0 {
        fail!(s, "chdir dd/../../dd failed");
    }
    if chdir(b"dd/../../../dd") != 0 {
        fail!(s, "chdir dd/../../../dd failed");
    }
    if chdir(b"./..") != 0 {
        fail!(s, "chdir ./.. failed");
    }
    if slurp(s, b"dd/dd/ffff").len() != 2 {
        fail!(s, "read dd/dd/ffff wrong len");
    }
    if open(b"dd/dd/ff", O_RDONLY) >= 0 {
        fail!(s, "open (unlinked) dd/dd/ff succeeded!");
    }
    let must_fail: [(&str, i32); 16] = [
        ("create dd/ff/ff", open(b"dd/ff/ff", O_CREATE | O_RDWR)),
        ("create dd/xx/ff", open(b"dd/xx/ff", O_CREATE | O_RDWR)),
        ("create dd", open(b"dd", O_CREATE)),
        ("open dd rdwr", open(b"dd", O_RDWR)),
        ("open dd wronly", open(b"dd", O_WRONLY)),
        ("link dd/ff/ff dd/dd/xx", link(b"dd/ff/ff", b"dd/dd/xx")),
        ("link dd/xx/ff dd/dd/xx", link(b"dd/xx/ff", b"dd/dd/xx")),
        ("link dd/ff dd/dd/ffff", link(b"dd/ff", b"dd/dd/ffff")),
        ("mkdir dd/ff/ff", mkdir(b"dd/ff/ff")),
        ("mkdir dd/xx/ff", mkdir(b"dd/xx/ff")),
        ("mkdir dd/dd/ffff", mkdir(b"dd/dd/ffff")),
        ("unlink dd/xx/ff", unlink(b"dd/xx/ff")),
        ("unlink dd/ff/ff", unlink(b"dd/ff/ff")),
        ("chdir dd/ff", chdir(b"dd/ff")),
        ("chdir dd/xx", chdir(b"dd/xx")),
        ("link dd dd/dd/dlink", link(b"dd", b"dd/dd/dlink")),
    ];
    for (what, r) in must_fail {
        if r >= 0 {
            fail!(s, "{what} succeeded!");
        }
    }
    if unlink(b"dd/dd/ffff") != 0 {
        fail!(s, "unlink dd/dd/ffff failed");
    }
    if unlink(b"dd/ff") != 0 {
        fail!(s, "unlink dd/ff failed");
    }
    if unlink(b"dd") == 0 {
        fail!(s, "unlink non-empty dd succeeded!");
    }
    if unlink(b"dd/dd") < 0 {
        fail!(s, "unlink dd/dd failed");
    }
    if unlink(b"dd") < 0 {
        fail!(s, "unlink dd failed");
    }
}

/// Writes larger than the log, in one call each; the data reads back.
fn bigwrite(s: &str) {
    let mut buf = vec![0u8; BUFSZ];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    unlink(b"bigwrite");
    let mut sz = 499;
    while sz < BUFSZ {
        let fd = open(b"bigwrite", O_CREATE | O_RDWR);
        if fd < 0 {
            fail!(s, "cannot create bigwrite");
        }
        for _ in 0..2 {
            let cc = write(fd, &buf[..sz]);
            if cc != sz as i32 {
                fail!(s, "write({sz}) ret {cc}");
            }
        }
        close(fd);
        unlink(b"bigwrite");
        sz += 471 * 3;
    }
    // One write of 100 KiB, several times the log.
    const HUGE: usize = 100 * 1024;
    let data: Vec<u8> = (0..HUGE).map(|i| (i * 7 % 253) as u8).collect();
    let fd = open(b"bigwrite", O_CREATE | O_RDWR);
    let cc = write(fd, &data);
    if cc != HUGE as i32 {
        fail!(s, "write({HUGE}) ret {cc}");
    }
    close(fd);
    let back = slurp(s, b"bigwrite");
    if back != data {
        fail!(s, "100 KiB write read back wrong ({} bytes)", back.len());
    }
    // And one read of it all at once.
    let fd = open(b"bigwrite", O_RDONLY);
    let mut all = vec![0u8; HUGE + 10];
    let n = read(fd, &mut all);
    if n != HUGE as i32 || all[..HUGE] != data[..] {
        fail!(s, "single read returned {n}");
    }
    close(fd);
    unlink(b"bigwrite");
}

/// A file written and read in odd-sized pieces.
fn bigfile(s: &str) {
    const N: usize = 20;
    const SZ: usize = 600;
    unlink(b"bigfile.dat");
    let fd = open(b"bigfile.dat", O_CREATE | O_RDWR);
    if fd < 0 {
        fail!(s, "cannot create bigfile");
    }
    for i in 0..N {
        let b = [i as u8; SZ];
        if write(fd, &b) != SZ as i32 {
            fail!(s, "write bigfile failed");
        }
    }
    close(fd);
    let fd = open(b"bigfile.dat", O_RDONLY);
    if fd < 0 {
        fail!(s, "cannot open bigfile");
    }
    let mut total = 0;
    let mut b = [0u8; SZ / 2];
    let mut i = 0;
    loop {
        let cc = read(fd, &mut b);
        if cc < 0 {
            fail!(s, "read bigfile failed");
        }
        if cc == 0 {
            break;
        }
        if cc != (SZ / 2) as i32 {
            fail!(s, "short read bigfile");
        }
        if b[0] != (i / 2) as u8 || b[SZ / 2 - 1] != (i / 2) as u8 {
            fail!(s, "read bigfile wrong data");
        }
        total += cc as usize;
        i += 1;
    }
    close(fd);
    if total != N * SZ {
        fail!(s, "read bigfile wrong total");
    }
    unlink(b"bigfile.dat");
}

/// Names of DIRSIZ (14) characters, and longer ones truncated to 14.
fn fourteen(s: &str) {
    if mkdir(b"12345678901234") != 0 {
        fail!(s, "mkdir 12345678901234 failed");
    }
    if mkdir(b"12345678901234/123456789012345") != 0 {
        fail!(s, "mkdir 12345678901234/123456789012345 failed");
    }
    let fd = open(b"123456789012345/123456789012345/123456789012345", O_CREATE);
    if fd < 0 {
        fail!(
            s,
            "create 123456789012345/123456789012345/123456789012345 failed"
        );
    }
    close(fd);
    let fd = open(b"12345678901234/12345678901234/12345678901234", O_RDONLY);
    if fd < 0 {
        fail!(
            s,
            "open 12345678901234/12345678901234/12345678901234 failed"
        );
    }
    close(fd);
    if mkdir(b"12345678901234/12345678901234") == 0 {
        fail!(s, "mkdir 12345678901234/12345678901234 succeeded!");
    }
    if mkdir(b"123456789012345/12345678901234") == 0 {
        fail!(s, "mkdir 12345678901234/123456789012345 succeeded!");
    }
    unlink(b"123456789012345/12345678901234");
    unlink(b"12345678901234/12345678901234");
    unlink(b"12345678901234/12345678901234/12345678901234");
    unlink(b"123456789012345/123456789012345/123456789012345");
    unlink(b"12345678901234/123456789012345");
    if unlink(b"12345678901234") != 0 {
        fail!(s, "cleanup of 12345678901234 failed");
    }
}

/// . and .. cannot be unlinked.
fn rmdot(s: &str) {
    if mkdir(b"dots") != 0 {
        fail!(s, "mkdir dots failed");
    }
    if chdir(b"dots") != 0 {
        fail!(s, "chdir dots failed");
    }
    if unlink(b".") == 0 {
        fail!(s, "rm . worked!");
    }
    if unlink(b"..") == 0 {
        fail!(s, "rm .. worked!");
    }
    if chdir(b"/") != 0 {
        fail!(s, "chdir / failed");
    }
    if unlink(b"dots/.") == 0 {
        fail!(s, "unlink dots/. worked!");
    }
    if unlink(b"dots/..") == 0 {
        fail!(s, "unlink dots/.. worked!");
    }
    if unlink(b"dots") != 0 {
        fail!(s, "unlink dots failed!");
    }
}

/// A plain file used as a directory.
fn dirfile(s: &str) {
    let fd = open(b"dirfile", O_CREATE);
    if fd < 0 {
        fail!(s, "create dirfile failed");
    }
    close(fd);
    if chdir(b"dirfile") == 0 {
        fail!(s, "chdir dirfile succeeded!");
    }
    if open(b"dirfile/xx", O_RDONLY) >= 0 {
        fail!(s, "open dirfile/xx succeeded!");
    }
    if open(b"dirfile/xx", O_CREATE) >= 0 {
        fail!(s, "create dirfile/xx succeeded!");
    }
    if mkdir(b"dirfile/xx") == 0 {
        fail!(s, "mkdir dirfile/xx succeeded!");
    }
    if unlink(b"dirfile/xx") == 0 {
        fail!(s, "unlink dirfile/xx succeeded!");
    }
    if link(b"README", b"dirfile/xx") == 0 {
        fail!(s, "link to dirfile/xx succeeded!");
    }
    if unlink(b"dirfile") != 0 {
        fail!(s, "unlink dirfile failed!");
    }
    if open(b".", O_RDWR) >= 0 {
        fail!(s, "open . for writing succeeded!");
    }
    if open(b".", O_WRONLY) >= 0 {
        fail!(s, "open . write-only succeeded!");
    }
    let fd = open(b".", O_RDONLY);
    if fd < 0 {
        fail!(s, "open . failed");
    }
    if write(fd, b"x") > 0 {
        fail!(s, "write . succeeded!");
    }
    close(fd);
}

/// More nested directories than the inode table has slots, and empty names.
fn iref(s: &str) {
    for _ in 0..NINODE + 1 {
        if mkdir(b"irefd") != 0 {
            fail!(s, "mkdir irefd failed");
        }
        if chdir(b"irefd") != 0 {
            fail!(s, "chdir irefd failed");
        }
        if mkdir(b"") == 0 {
            fail!(s, "mkdir of an empty name succeeded");
        }
        if link(b"README", b"") == 0 {
            fail!(s, "link to an empty name succeeded");
        }
        let fd = open(b"", O_CREATE);
        if fd >= 0 {
            close(fd);
        }
        let fd = open(b"xx", O_CREATE);
        if fd < 0 {
            fail!(s, "create xx failed");
        }
        close(fd);
        if unlink(b"xx") != 0 {
            fail!(s, "unlink xx failed");
        }
    }
    for _ in 0..NINODE + 1 {
        if chdir(b"..") != 0 || unlink(b"irefd") != 0 {
            fail!(s, "cleanup failed");
        }
    }
    if chdir(b"/") != 0 || open(b"irefd", O_RDONLY) >= 0 {
        fail!(s, "irefd survived");
    }
}

/// Unlinking the directories above the cwd: paths through .. fail, and nothing crashes.
fn unlinkcwd(s: &str) {
    if mkdir(b"/a") < 0 {
        fail!(s, "mkdir /a failed");
    }
    if mkdir(b"/a/b") < 0 {
        fail!(s, "mkdir /a/b failed");
    }
    if chdir(b"/a/b") < 0 {
        fail!(s, "chdir failed");
    }
    if unlink(b"/a/b") < 0 {
        fail!(s, "unlink /a/b failed");
    }
    if unlink(b"/a") < 0 {
        fail!(s, "unlink /a failed");
    }
    let fd = open(b"../", O_RDONLY);
    if fd >= 0 {
        close(fd);
    }
    let fd = open(b"../c", O_CREATE);
    if fd >= 0 {
        fail!(s, "created ../c in a deleted directory");
    }
    if chdir(b"/") != 0 {
        fail!(s, "chdir / failed");
    }
    if open(b"/a", O_RDONLY) >= 0 {
        fail!(s, "/a still exists");
    }
}

// ---------------------------------------------------------------------------------------------
// Slow tests
// ---------------------------------------------------------------------------------------------

/// A directory with hundreds of entries.
fn bigdir(s: &str) {
    const N: usize = 500;
    unlink(b"bd");
    let fd = open(b"bd", O_CREATE);
    if fd < 0 {
        fail!(s, "bigdir create failed");
    }
    close(fd);
    if mkdir(b"bigdir") != 0 || chdir(b"bigdir") != 0 {
        fail!(s, "mkdir bigdir failed");
    }
    let name = |i: usize| [b'x', b'0' + (i / 64) as u8, b'0' + (i % 64) as u8];
    for i in 0..N {
        if link(b"../bd", &name(i)) != 0 {
            fail!(s, "bigdir i={i} link(bd, {}) failed", BStr(&name(i)));
        }
    }
    match sys::stat(b".") {
        Ok(st) if st.size >= (N * 16) as u64 => {}
        _ => fail!(s, "directory too small"),
    }
    if sys::stat(b"../bd").map(|st| st.nlink) != Ok(N as i16 + 1) {
        fail!(s, "wrong link count on bd");
    }
    unlink(b"../bd");
    for i in 0..N {
        if unlink(&name(i)) != 0 {
            fail!(s, "bigdir unlink failed");
        }
    }
    if chdir(b"..") != 0 || unlink(b"bigdir") != 0 {
        fail!(s, "bigdir cleanup failed");
    }
}

/// Concurrent writes of a whole buffer.
fn manywrites(s: &str) {
    const NCHILDREN: u8 = 4;
    const HOWMANY: usize = 10;
    for ci in 0..NCHILDREN {
        let pid = xfork(s);
        if pid == 0 {
            let name = name2(b'b', b'a' + ci);
            unlink(&name);
            let buf = vec![ci; BUFSZ];
            for _ in 0..HOWMANY {
                for _ in 0..ci + 1 {
                    let fd = open(&name, O_CREATE | O_RDWR);
                    if fd < 0 {
                        fail!(s, "cannot create {}", BStr(&name));
                    }
                    let cc = write(fd, &buf);
                    if cc != BUFSZ as i32 {
                        fail!(s, "write({BUFSZ}) ret {cc}");
                    }
                    close(fd);
                }
                unlink(&name);
            }
            sys::exit(0);
        }
    }
    for _ in 0..NCHILDREN {
        let (_, st) = wait();
        if st != 0 {
            sys::exit(st);
        }
    }
}

/// A write from a bad buffer must not leave an allocated block behind.
fn badwrite(s: &str) {
    unlink(b"junk");
    for i in 0..300 {
        let fd = open(b"junk", O_CREATE | O_WRONLY);
        if fd < 0 {
            fail!(s, "open junk failed");
        }
        let r = r_write(fd, 0xff_ffff_ffff, 1);
        if r != -1 {
            fail!(s, "write from a bad buffer returned {r} (iteration {i})");
        }
        close(fd);
        unlink(b"junk");
    }
    let fd = open(b"junk", O_CREATE | O_WRONLY);
    if fd < 0 {
        fail!(s, "open junk failed");
    }
    if write(fd, b"x") != 1 {
        fail!(s, "write failed");
    }
    close(fd);
    unlink(b"junk");
}

/// Fills the disk; the file system keeps working and recovers all of it.
fn diskfull(s: &str) {
    let big_name = |fi: u8| [b'b', b'i', b'g', b'0' + fi];
    let zz_name = |i: u8| [b'z', b'z', b'0' + i / 32, b'0' + i % 32];
    let mut done = false;
    let mut blocks = 0;
    let mut fi = 0u8;
    let buf = vec![b'd'; BSIZE * 4];
    while !done && b'0' + fi < 0o177 {
        let name = big_name(fi);
        unlink(&name);
        let fd = open(&name, O_CREATE | O_RDWR | O_TRUNC);
        if fd < 0 {
            println!("{s}: could not create file {}", BStr(&name));
            break;
        }
        let mut i = 0;
        while i < MAXFILE {
            let n = write(fd, &buf);
            if n != buf.len() as i32 {
                if n > 0 {
                    blocks += n as usize / BSIZE;
                }
                done = true;
                break;
            }
            blocks += 4;
            i += 4;
        }
        close(fd);
        fi += 1;
    }
    if !done {
        fail!(s, "the disk did not fill up");
    }
    // With no free blocks, creating directory entries fails somewhere, cleanly.
    for i in 0..128u8 {
        let name = zz_name(i);
        unlink(&name);
        let fd = open(&name, O_CREATE | O_RDWR | O_TRUNC);
        if fd < 0 {
            break;
        }
        close(fd);
    }
    if mkdir(b"diskfulldir") == 0 {
        println!("{s}: mkdir(diskfulldir) unexpectedly succeeded!");
    }
    unlink(b"diskfulldir");
    for i in 0..128u8 {
        unlink(&zz_name(i));
    }
    for i in 0..fi {
        unlink(&big_name(i));
    }
    // All blocks came back: the same amount fits again (within the directory's growth).
    let fd = open(b"big0", O_CREATE | O_RDWR | O_TRUNC);
    if fd < 0 {
        fail!(s, "create after diskfull failed");
    }
    for _ in 0..MAXFILE / 4 {
        if write(fd, &buf) != buf.len() as i32 {
            fail!(s, "write after diskfull failed");
        }
    }
    close(fd);
    unlink(b"big0");
    if blocks < 1000 {
        fail!(s, "only {blocks} blocks fit on the disk");
    }
}

/// Runs out of inodes; everything comes back.
fn outofinodes(s: &str) {
    let zz_name = |i: usize| [b'z', b'z', b'0' + (i / 32) as u8, b'0' + (i % 32) as u8];
    const NZZ: usize = 32 * 32;
    let mut made = 0;
    for i in 0..NZZ {
        let name = zz_name(i);
        unlink(&name);
        let fd = open(&name, O_CREATE | O_RDWR | O_TRUNC);
        if fd < 0 {
            break;
        }
        made += 1;
        close(fd);
    }
    for i in 0..NZZ {
        unlink(&zz_name(i));
    }
    if made == NZZ {
        fail!(s, "created {NZZ} files without running out of inodes");
    }
    let fd = open(b"zzafter", O_CREATE | O_RDWR);
    if fd < 0 {
        fail!(s, "create after running out of inodes failed");
    }
    close(fd);
    unlink(b"zzafter");
    // The same number of inodes is available again.
    let mut again = 0;
    for i in 0..made {
        let fd = open(&zz_name(i), O_CREATE | O_RDWR);
        if fd < 0 {
            break;
        }
        again += 1;
        close(fd);
    }
    for i in 0..made {
        unlink(&zz_name(i));
    }
    if again != made {
        fail!(s, "first {made} inodes, then only {again}");
    }
}

// ---------------------------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------------------------

type TestFn = fn(&str);

macro_rules! table {
    ($($f:ident $(= $name:literal)?),* $(,)?) => {
        &[$((table!(@name $f $($name)?), $f as TestFn)),*]
    };
    (@name $f:ident $name:literal) => { $name };
    (@name $f:ident) => { stringify!($f) };
}

/// The default set.
static QUICK: &[(&str, TestFn)] = table![
    copyin,
    copyout,
    copyinstr1,
    copyinstr2,
    copyinstr3,
    rwsbrk,
    badsyscalls,
    fsynctest = "fsync",
    truncate1,
    truncate2,
    truncate3,
    openiputtest = "openiput",
    exitiputtest = "exitiput",
    iputtest = "iput",
    opentest,
    writetest,
    writebig,
    createtest,
    openmany,
    dirtest,
    exectest,
    execargs,
    execbad,
    pipe1,
    pipewrap,
    pipekill,
    killstatus,
    killzero,
    killsleep,
    preempt,
    exitwait,
    exitstatus,
    reparent,
    twochildren,
    forkfork,
    forkforkfork,
    reparent2,
    mem,
    sharedfd,
    fourfiles,
    createdelete,
    unlinkread,
    linktest,
    concreate,
    linkunlink,
    subdir,
    bigwrite,
    bigfile,
    fourteen,
    rmdot,
    dirfile,
    iref,
    forktest,
    sbrkbasic,
    sbrkmuch,
    sbrkfree,
    sbrkhuge,
    cowfork,
    cowrace,
    cowoom,
    lazysbrk,
    kernmem,
    maxvaplus = "MAXVAplus",
    sbrkfail,
    sbrkarg,
    validatetest,
    bsstest,
    bigargtest,
    argptest,
    stacktest,
    stackoverflow,
    nowrite,
    nullderef,
    pgbug,
    sbrkbugs,
    sbrklast,
    sbrk8000,
    badarg,
    partial_write,
    unlinkcwd,
    uptimesleep,
    manywrites,
    badwrite,
];

/// Run with `-a` or by name.
static SLOW: &[(&str, TestFn)] = table![bigdir, execout, diskfull, outofinodes];

/// Runs one test in a child process; true if it passed.
fn run(name: &str, f: TestFn, verbose: bool) -> bool {
    if verbose {
        println!("test {name}: starting");
    }
    let t0 = sys::uptime();
    let pid = fork();
    if pid < 0 {
        println!("runtest: fork error");
        sys::exit(1);
    }
    if pid == 0 {
        f(name);
        sys::exit(0);
    }
    let st = sys::wait_for(pid).unwrap_or(-999);
    let ok = st == 0;
    let verdict = if ok { "OK" } else { "FAILED" };
    if verbose {
        let dt = sys::uptime() - t0;
        println!("test {name}: {verdict} ({}.{:02} s)", dt / 100, dt % 100);
    } else {
        println!("test {name}: {verdict}");
    }
    if !ok && st != 1 {
        println!("  (exit status {st})");
    }
    ok
}

fn print_meminfo(what: &str, m: &MemInfo) {
    println!(
        "{what}: {} of {} frames free, kernel heap {} bytes in use ({} pages), {} processes",
        m.free_frames, m.total_frames, m.kheap_in_use, m.kheap_pages, m.nproc
    );
}

fn main(args: Args) -> i32 {
    let mut verbose = false;
    let mut with_slow = false;
    let mut names: [&[u8]; 32] = [b""; 32];
    let mut nnames = 0;
    for a in args.iter().skip(1) {
        match a {
            b"-v" => verbose = true,
            b"-a" => with_slow = true,
            b"-q" => with_slow = false,
            _ if a.starts_with(b"-") || nnames == names.len() => {
                println!("usage: usertests [-v] [-a] [-q] [testname...]");
                return 1;
            }
            _ => {
                names[nnames] = a;
                nnames += 1;
            }
        }
    }
    let names = &names[..nnames];

    println!("usertests starting");
    let Ok(m0) = sys::meminfo() else {
        println!("meminfo failed");
        return 1;
    };
    print_meminfo("memory at start", &m0);
    let t0 = sys::uptime();

    let mut ntests = 0;
    let mut nfailed = 0;
    for (set, enabled) in [(QUICK, true), (SLOW, with_slow)] {
        for &(name, f) in set {
            let wanted = if names.is_empty() {
                enabled
            } else {
                names.contains(&name.as_bytes())
            };
            if !wanted {
                continue;
            }
            ntests += 1;
            if !run(name, f, verbose) {
                nfailed += 1;
            }
        }
    }
    if ntests == 0 {
        println!("NO TESTS EXECUTED");
        return 1;
    }

    // Orphans of the tests are init's to reap; give it a moment.
    settle_nproc(m0.nproc, 10);
    let mut m1 = meminfo();
    for _ in 0..20 {
        if m1.kheap_in_use == m0.kheap_in_use && m1.free_frames + SLACK_FRAMES >= m0.free_frames {
            break;
        }
        let _ = sys::sleep(10);
        m1 = meminfo();
    }
    print_meminfo("memory at end", &m1);
    let dt = sys::uptime() - t0;
    println!("{ntests} tests in {}.{:02} s", dt / 100, dt % 100);
    let mut ok = nfailed == 0;
    if m1.free_frames.abs_diff(m0.free_frames) > SLACK_FRAMES {
        println!(
            "FAILED -- free frames {} at start, {} at end (tolerance {SLACK_FRAMES})",
            m0.free_frames, m1.free_frames
        );
        ok = false;
    }
    if m1.kheap_in_use != m0.kheap_in_use {
        println!(
            "FAILED -- kernel heap in use {} bytes at start, {} at end",
            m0.kheap_in_use, m1.kheap_in_use
        );
        ok = false;
    }
    if m1.nproc != m0.nproc {
        println!(
            "FAILED -- {} processes at start, {} at end",
            m0.nproc, m1.nproc
        );
        ok = false;
    }
    if ok {
        println!("ALL TESTS PASSED");
        0
    } else {
        if nfailed > 0 {
            println!("{nfailed} of {ntests} tests failed");
        }
        println!("SOME TESTS FAILED");
        1
    }
}
