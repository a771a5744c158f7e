//! `exec`: replaces a process's memory with a program from the file system (ELF64, checked by
//! `xv6_kernel::elf`), builds the argument vector on the new stack, and switches to it. The new
//! image is built completely in a fresh page table; only then is the old one dropped, so a failed
//! exec leaves the caller exactly as it was.

use crate::fs::fs;
use crate::fs::log;
use crate::mm::mem::KernelFrames;
use crate::proc::proc;
use crate::proc::vm::MemState;
use xv6_abi::layout::{USER_STACK_BOTTOM, USER_STACK_TOP};
use xv6_abi::param::MAXARG;
use xv6_kernel::elf::{self, Segment, MAX_PHDRS, PF_W, PF_X};
use xv6_kernel::layout::page_up;
use xv6_kernel::paging::{PageTable, Pte};
use xv6_kernel::uvm;

/// Most bytes of argument strings (with their NULs) an exec accepts.
pub const MAX_ARG_BYTES: usize = 4 * 4096;

/// Arguments gathered in kernel memory.
pub struct Args {
    buf: [u8; MAX_ARG_BYTES],
    len: usize,
    ends: [usize; MAXARG],
    n: usize,
}

impl Args {
    /// No arguments.
    pub fn new() -> Args {
        Args {
            buf: [0; MAX_ARG_BYTES],
            len: 0,
            ends: [0; MAXARG],
            n: 0,
        }
    }

    /// Appends one argument; false if there are too many or they are too long.
    pub fn push(&mut self, a: &[u8]) -> bool {
        if self.n == MAXARG || self.len + a.len() + 1 > MAX_ARG_BYTES {
            return false;
        }
        self.buf[self.len..self.len + a.len()].copy_from_slice(a);
        self.buf[self.len + a.len()] = 0;
        self.len += a.len() + 1;
        self.ends[self.n] = self.len;
        self.n += 1;
        true
    }

    /// Room for the next argument's bytes (for copying straight from user memory).
    pub fn spare(&mut self) -> &mut [u8] {
        let n = MAX_ARG_BYTES - self.len;
        &mut self.buf[self.len..self.len + n]
    }

    /// Commits `n` bytes written into `spare()` (without NUL) as the next argument.
    pub fn commit(&mut self, n: usize) -> bool {
        if self.n == MAXARG || self.len + n + 1 > MAX_ARG_BYTES {
            return false;
        }
        self.buf[self.len + n] = 0;
        self.len += n + 1;
        self.ends[self.n] = self.len;
        self.n += 1;
        true
    }

    fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.buf[start..self.ends[i]]
    }
}

/// Why `exec` failed. No heap is needed to report it (exec may fail because memory is out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecError {
    /// No such file.
    NotFound,
    /// A directory or device.
    NotAFile,
    /// Too short to hold an ELF header, or its program headers cut short.
    Truncated,
    /// The ELF checks refused it.
    Elf(elf::ElfError),
    /// No memory for the new image.
    OutOfMemory,
    /// The arguments do not fit (too many, too long, or the stack is full).
    ArgumentsTooBig,
}

impl core::fmt::Display for ExecError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ExecError::NotFound => write!(f, "not found"),
            ExecError::NotAFile => write!(f, "not a regular file"),
            ExecError::Truncated => write!(f, "not an executable (cut short)"),
            ExecError::Elf(e) => write!(f, "{e}"),
            ExecError::OutOfMemory => write!(f, "out of memory"),
            ExecError::ArgumentsTooBig => write!(f, "arguments do not fit"),
        }
    }
}

/// exec for the kernel itself (starting /init).
pub fn exec_kernel(path: &[u8], argv: &[&[u8]]) -> Result<(), ExecError> {
    let mut args = crate::mm::mem::try_box(Args::new()).ok_or(ExecError::OutOfMemory)?;
    for a in argv {
        if !args.push(a) {
            return Err(ExecError::ArgumentsTooBig);
        }
    }
    exec(path, &args)
}

/// Loads `path` with `args` into the calling process. On success the process returns to user
/// mode at the program's entry; on failure it is unchanged.
pub fn exec(path: &[u8], args: &Args) -> Result<(), ExecError> {
    log::begin_op();
    let r = load(path, args);
    log::end_op();
    let (pt, image_end, entry, sp, argv) = r?;
    let p = proc::myproc();
    let old = p.pt;
    let mut old_mm = core::mem::replace(&mut p.mm, MemState::new());
    p.pt = pt;
    p.mm.image_end = image_end;
    p.mm.brk = image_end;
    // SAFETY: switching to the new table of the running process; it maps the kernel like every
    // table does.
    unsafe { crate::arch::set_cr3(pt.root) };
    old_mm.release(old);
    old.destroy(&mut KernelFrames);
    let name = path.rsplit(|&c| c == b'/').next().unwrap_or(path);
    p.set_name(name);
    // SAFETY: the trap frame is on this process's kernel stack.
    let tf = unsafe { &mut *p.tf() };
    *tf = crate::arch::trap::TrapFrame::new_user(entry, sp);
    tf.rdi = args.n as u64;
    tf.rsi = argv;
    // The new program starts with a clean FPU/SSE state; this process's is in the registers.
    crate::arch::fxrstor(&crate::arch::FpuState::INITIAL);
    Ok(())
}

type Loaded = (PageTable, u64, u64, u64, u64);

fn load(path: &[u8], args: &Args) -> Result<Loaded, ExecError> {
    let ip = crate::fs::dir::namei(crate::proc::proc::myproc().cwd.as_ref(), path)
        .ok_or(ExecError::NotFound)?;
    let l = ip.lock();
    let r = (|| {
        if l.typ() != xv6_abi::stat::T_FILE {
            return Err(ExecError::NotAFile);
        }
        let mut hb = [0u8; elf::EHDR_SIZE];
        if l.read_kernel(0, &mut hb) != Some(hb.len() as u32) {
            return Err(ExecError::Truncated);
        }
        let h = elf::parse_header(&hb).map_err(ExecError::Elf)?;
        let mut ph = [0u8; elf::PHDR_SIZE * MAX_PHDRS];
        let phlen = h.phnum * elf::PHDR_SIZE;
        let phoff = u32::try_from(h.phoff).map_err(|_| ExecError::Truncated)?;
        if l.read_kernel(phoff, &mut ph[..phlen]) != Some(phlen as u32) {
            return Err(ExecError::Truncated);
        }
        let mut segs = [Segment::default(); MAX_PHDRS];
        let n = elf::parse_segments(&h, &ph[..phlen], &mut segs).map_err(ExecError::Elf)?;
        let pt = crate::mm::mem::new_user_table().ok_or(ExecError::OutOfMemory)?;
        match build(&l, pt, &segs[..n], args) {
            Ok((image_end, sp, argv)) => Ok((pt, image_end, h.entry, sp, argv)),
            Err(e) => {
                pt.destroy(&mut KernelFrames);
                Err(e)
            }
        }
    })();
    drop(l);
    ip.put();
    r
}

fn build(
    l: &fs::Locked<'_>,
    pt: PageTable,
    segs: &[Segment],
    args: &Args,
) -> Result<(u64, u64, u64), ExecError> {
    let f = &mut KernelFrames;
    let mut image_end = 0;
    for s in segs {
        let end = page_up(s.vaddr + s.memsz)
            .ok_or(ExecError::Elf(elf::ElfError::BadSegment("size overflows")))?;
        let mut flags = Pte::empty();
        if s.flags & PF_W != 0 {
            flags |= Pte::WRITE;
        }
        if s.flags & PF_X == 0 {
            flags |= Pte::NO_EXECUTE;
        }
        uvm::alloc_range(pt, f, s.vaddr, end, flags).map_err(|_| ExecError::OutOfMemory)?;
        // Copy the file bytes a block at a time.
        let mut buf = [0u8; 1024];
        let mut done = 0u64;
        while done < s.filesz {
            let m = (s.filesz - done).min(buf.len() as u64) as usize;
            let got = l.read_kernel((s.offset + done) as u32, &mut buf[..m]);
            if got != Some(m as u32) {
                return Err(ExecError::Truncated);
            }
            uvm::copy_out_loading(pt, f, s.vaddr + done, &buf[..m])
                .map_err(|_| ExecError::OutOfMemory)?;
            done += m as u64;
        }
        image_end = image_end.max(end);
    }
    MemState::map_stack(pt).map_err(|_| ExecError::OutOfMemory)?;
    // Strings at the top, then argv (8-byte pointers, null-terminated), then the fake return
    // address so that rsp + 8 is 16-byte aligned.
    let mut sp = USER_STACK_TOP;
    let mut ptrs = [0u64; MAXARG + 1];
    for (i, slot) in ptrs.iter_mut().enumerate().take(args.n) {
        let a = args.get(i);
        sp -= a.len() as u64;
        sp &= !15;
        uvm::copy_out(pt, f, sp, a).map_err(|_| ExecError::ArgumentsTooBig)?;
        *slot = sp;
    }
    let table = (args.n + 1) * 8;
    sp -= table as u64;
    sp &= !15;
    let argv = sp;
    let mut bytes = [0u8; (MAXARG + 1) * 8];
    for (i, p) in ptrs.iter().take(args.n + 1).enumerate() {
        bytes[i * 8..i * 8 + 8].copy_from_slice(&p.to_le_bytes());
    }
    uvm::copy_out(pt, f, sp, &bytes[..table]).map_err(|_| ExecError::ArgumentsTooBig)?;
    sp -= 8;
    uvm::copy_out(pt, f, sp, &u64::MAX.to_le_bytes()).map_err(|_| ExecError::ArgumentsTooBig)?;
    if sp < USER_STACK_BOTTOM {
        return Err(ExecError::ArgumentsTooBig);
    }
    Ok((image_end, sp, argv))
}
