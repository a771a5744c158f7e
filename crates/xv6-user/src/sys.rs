//! System calls: [`raw`] stubs generated from the ABI crate's table, and thin safe wrappers.
//!
//! Convention (docs/ABI.md): number in `rax`, arguments in `rdi, rsi, rdx, r10, r8, r9`,
//! `syscall`, result in `rax`; `rcx` and `r11` are clobbered. Every call returns -1 on failure.

use crate::cpath::CPath;
use alloc::vec::Vec;
use core::arch::asm;
use core::fmt;
use xv6_abi::{MemInfo, Stat};

/// A value that travels in a register.
pub trait Reg: Sized {
    /// The register's contents for this argument.
    fn to_reg(self) -> u64;
    /// The value a register holds as a result.
    fn from_reg(r: u64) -> Self;
}

impl Reg for i32 {
    fn to_reg(self) -> u64 {
        i64::from(self) as u64
    }
    fn from_reg(r: u64) -> i32 {
        r as i32
    }
}

impl Reg for i16 {
    fn to_reg(self) -> u64 {
        i64::from(self) as u64
    }
    fn from_reg(r: u64) -> i16 {
        r as i16
    }
}

impl Reg for u64 {
    fn to_reg(self) -> u64 {
        self
    }
    fn from_reg(r: u64) -> u64 {
        r
    }
}

impl<T> Reg for *mut T {
    fn to_reg(self) -> u64 {
        self as u64
    }
    fn from_reg(r: u64) -> *mut T {
        r as *mut T
    }
}

impl<T> Reg for *const T {
    fn to_reg(self) -> u64 {
        self as u64
    }
    fn from_reg(r: u64) -> *const T {
        r as *const T
    }
}

/// Executes system call `no` with up to six arguments (missing ones are zero).
///
/// # Safety
///
/// The arguments must be what call `no` expects; pointers must be valid for what the kernel
/// reads or writes through them.
#[inline(always)]
pub unsafe fn syscall(no: u64, args: &[u64]) -> u64 {
    let a = |i: usize| args.get(i).copied().unwrap_or(0);
    let ret: u64;
    // SAFETY: the `syscall` instruction with the ABI's registers; the kernel preserves every
    // register but rax, rcx and r11, and touches memory only as the call's contract says (the
    // caller's responsibility).
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") no => ret,
            in("rdi") a(0),
            in("rsi") a(1),
            in("rdx") a(2),
            in("r10") a(3),
            in("r8") a(4),
            in("r9") a(5),
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// Raw system call stubs, one per entry of [`xv6_abi::with_syscalls!`], with the C signatures.
pub mod raw {
    macro_rules! define_stubs {
        ($( ($no:literal, $name:ident, $variant:ident, ($($arg:ident : $ty:ty),*) -> $ret:ty) ),* $(,)?) => {
            $(
                #[doc = concat!("System call ", stringify!($no), ": `", stringify!($name), "(",
                    stringify!($($arg: $ty),*), ") -> ", stringify!($ret), "`.")]
                ///
                /// # Safety
                ///
                /// Pointer arguments must be valid for what the kernel reads or writes through
                /// them (docs/ABI.md), and the call must not break the program's own memory
                /// (`sbrk` below the heap, `munmap` of live data, `exec`/`exit` end the program).
                #[inline]
                #[allow(clippy::too_many_arguments)]
                pub unsafe fn $name($($arg: $ty),*) -> $ret {
                    let args: &[u64] = &[$(super::Reg::to_reg($arg)),*];
                    // SAFETY: the caller keeps the call's contract.
                    let r = unsafe { super::syscall(xv6_abi::Sysno::$variant as u64, args) };
                    <$ret as super::Reg>::from_reg(r)
                }
            )*
        };
    }

    xv6_abi::with_syscalls!(define_stubs);
}

/// A system call failed (it returned -1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysError;

impl fmt::Display for SysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("system call failed")
    }
}

/// The result of a wrapper.
pub type Result<T> = core::result::Result<T, SysError>;

fn check(r: i32) -> Result<i32> {
    if r < 0 {
        Err(SysError)
    } else {
        Ok(r)
    }
}

fn path(p: &[u8]) -> Result<CPath> {
    CPath::new(p).ok_or(SysError)
}

fn len_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// `fork`: the child's pid in the parent, 0 in the child.
pub fn fork() -> Result<i32> {
    // SAFETY: no arguments; the child is a copy of this program.
    check(unsafe { raw::fork() })
}

/// `exit`: ends the program with `status`.
pub fn exit(status: i32) -> ! {
    // SAFETY: ends the program; nothing runs afterwards.
    unsafe { raw::exit(status) };
    // The kernel never returns from exit; if it did, stop here.
    loop {
        core::hint::spin_loop();
    }
}

/// `wait`: waits for a child to exit; returns its pid and exit status.
pub fn wait() -> Result<(i32, i32)> {
    let mut status = 0i32;
    // SAFETY: `status` is a valid i32 for the kernel to write.
    let pid = check(unsafe { raw::wait(&mut status) })?;
    Ok((pid, status))
}

/// Waits until child `pid` exits and returns its status, reaping other children on the way.
pub fn wait_for(pid: i32) -> Result<i32> {
    loop {
        let (p, status) = wait()?;
        if p == pid {
            return Ok(status);
        }
    }
}

/// `pipe`: `[read end, write end]`.
pub fn pipe() -> Result<[i32; 2]> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors.
    check(unsafe { raw::pipe(fds.as_mut_ptr()) })?;
    Ok(fds)
}

/// `read`: bytes read, 0 at end of file.
pub fn read(fd: i32, buf: &mut [u8]) -> Result<usize> {
    // SAFETY: the kernel writes at most `n <= buf.len()` bytes into `buf`.
    let n = check(unsafe { raw::read(fd, buf.as_mut_ptr(), len_i32(buf.len())) })?;
    Ok(n as usize)
}

/// `write`: bytes written.
pub fn write(fd: i32, buf: &[u8]) -> Result<usize> {
    // SAFETY: the kernel reads at most `n <= buf.len()` bytes from `buf`.
    let n = check(unsafe { raw::write(fd, buf.as_ptr(), len_i32(buf.len())) })?;
    Ok(n as usize)
}

/// Writes all of `buf`, retrying short writes; fails if a write fails or writes nothing.
pub fn write_all(fd: i32, mut buf: &[u8]) -> Result<()> {
    while !buf.is_empty() {
        match write(fd, buf)? {
            0 => return Err(SysError),
            n => buf = &buf[n.min(buf.len())..],
        }
    }
    Ok(())
}

/// `kill`: marks process `pid` killed.
pub fn kill(pid: i32) -> Result<()> {
    // SAFETY: no pointers.
    check(unsafe { raw::kill(pid) }).map(drop)
}

/// `exec`: replaces the program with `path`, giving it `argv`. Returns only on failure (also
/// when the path is too long, has a zero byte, or there are more than `MAXARG - 1` arguments).
pub fn exec(path_name: &[u8], argv: &[&[u8]]) -> SysError {
    let Ok(p) = path(path_name) else {
        return SysError;
    };
    if argv.len() >= xv6_abi::param::MAXARG {
        return SysError;
    }
    let strings: Vec<Vec<u8>> = argv
        .iter()
        .map(|a| {
            let mut s = Vec::with_capacity(a.len() + 1);
            s.extend_from_slice(a);
            s.push(0);
            s
        })
        .collect();
    let mut ptrs: Vec<*const u8> = strings.iter().map(|s| s.as_ptr()).collect();
    ptrs.push(core::ptr::null());
    // SAFETY: `p` and every string are zero-terminated, `ptrs` ends with null, and all live
    // across the call.
    unsafe { raw::exec(p.as_ptr(), ptrs.as_ptr()) };
    SysError
}

/// `fstat`.
pub fn fstat(fd: i32) -> Result<Stat> {
    let mut st = Stat::default();
    // SAFETY: `st` is a valid `struct stat` for the kernel to fill in.
    check(unsafe { raw::fstat(fd, &mut st) })?;
    Ok(st)
}

/// Like xv6's `stat`: opens `path` read-only, `fstat`s it and closes it.
pub fn stat(path_name: &[u8]) -> Result<Stat> {
    let fd = open(path_name, xv6_abi::fcntl::O_RDONLY)?;
    let st = fstat(fd);
    let _ = close(fd);
    st
}

/// `chdir`.
pub fn chdir(path_name: &[u8]) -> Result<()> {
    let p = path(path_name)?;
    // SAFETY: `p` is zero-terminated.
    check(unsafe { raw::chdir(p.as_ptr()) }).map(drop)
}

/// `dup`: a new descriptor (the lowest free one) for the same file.
pub fn dup(fd: i32) -> Result<i32> {
    // SAFETY: no pointers.
    check(unsafe { raw::dup(fd) })
}

/// `getpid`.
pub fn getpid() -> i32 {
    // SAFETY: no arguments.
    unsafe { raw::getpid() }
}

/// `sbrk`: moves the break by `n` bytes; returns the old break. Shrinking below memory still in
/// use is the caller's problem: the heap ([`crate::heap`]) lives above the initial break.
pub fn sbrk(n: i32) -> Result<usize> {
    // SAFETY: growing only adds memory; a shrink is checked by the kernel, and what it removes
    // is the caller's responsibility (documented above).
    let p = unsafe { raw::sbrk(n) };
    if p as usize == usize::MAX {
        Err(SysError)
    } else {
        Ok(p as usize)
    }
}

/// `sleep` for `ticks` timer ticks (10 ms each).
pub fn sleep(ticks: i32) -> Result<()> {
    // SAFETY: no pointers.
    check(unsafe { raw::sleep(ticks) }).map(drop)
}

/// `uptime`: ticks since boot.
pub fn uptime() -> i32 {
    // SAFETY: no arguments.
    unsafe { raw::uptime() }
}

/// `open`: a descriptor for `path` (flags from [`xv6_abi::fcntl`]).
pub fn open(path_name: &[u8], flags: i32) -> Result<i32> {
    let p = path(path_name)?;
    // SAFETY: `p` is zero-terminated.
    check(unsafe { raw::open(p.as_ptr(), flags) })
}

/// `mknod`: a device file.
pub fn mknod(path_name: &[u8], major: i16, minor: i16) -> Result<()> {
    let p = path(path_name)?;
    // SAFETY: `p` is zero-terminated.
    check(unsafe { raw::mknod(p.as_ptr(), major, minor) }).map(drop)
}

/// `unlink`.
pub fn unlink(path_name: &[u8]) -> Result<()> {
    let p = path(path_name)?;
    // SAFETY: `p` is zero-terminated.
    check(unsafe { raw::unlink(p.as_ptr()) }).map(drop)
}

/// `link`: `new` becomes another name for `old`.
pub fn link(old: &[u8], new: &[u8]) -> Result<()> {
    let (o, n) = (path(old)?, path(new)?);
    // SAFETY: both are zero-terminated.
    check(unsafe { raw::link(o.as_ptr(), n.as_ptr()) }).map(drop)
}

/// `mkdir`.
pub fn mkdir(path_name: &[u8]) -> Result<()> {
    let p = path(path_name)?;
    // SAFETY: `p` is zero-terminated.
    check(unsafe { raw::mkdir(p.as_ptr()) }).map(drop)
}

/// `close`.
pub fn close(fd: i32) -> Result<()> {
    // SAFETY: no pointers.
    check(unsafe { raw::close(fd) }).map(drop)
}

/// `fsync` (29): returns once every file-system call that has returned (this descriptor's writes
/// among them) is on the disk. Without it, the kernel commits finished calls within a second.
pub fn fsync(fd: i32) -> Result<()> {
    // SAFETY: no pointers.
    check(unsafe { raw::fsync(fd) }).map(drop)
}

/// `dropcaches` (30): commits the log and empties the kernel's buffer cache of every block not
/// in use, so the next reads go to the disk. Returns how many blocks were dropped.
pub fn dropcaches() -> Result<usize> {
    // SAFETY: no pointers.
    check(unsafe { raw::dropcaches() }).map(|n| n as usize)
}

/// `meminfo` (27): the kernel's memory use.
pub fn meminfo() -> Result<MemInfo> {
    let mut m = MemInfo::default();
    // SAFETY: `m` is a valid `struct meminfo` for the kernel to fill in.
    check(unsafe { raw::meminfo(&mut m) })?;
    Ok(m)
}

/// `poweroff` (28): stops the machine; under QEMU, QEMU exits with `(status << 1) | 1`.
pub fn poweroff(status: i32) -> ! {
    // SAFETY: no pointers.
    unsafe { raw::poweroff(status) };
    // If the kernel refused, end at least this program.
    exit(status)
}
