//! Open files (xv6's file.c) and the console device (xv6's console.c).
//!
//! A [`FileRef`] is a counted reference to an entry of the system-wide file table: `dup` and
//! `fork` share the entry (and its offset); the last `close` releases the pipe end or inode.

use crate::cpu::Spinlock;
use crate::fs::InodeRef;
use crate::log;
use crate::pipe::Pipe;
use crate::proc;
use core::cell::UnsafeCell;
use xv6_abi::param::NFILE;
use xv6_abi::Stat;

/// What an open file is.
pub enum Kind {
    /// A free table entry.
    None,
    /// One end of a pipe.
    Pipe(&'static Pipe),
    /// A file or directory, with the current offset.
    Inode(InodeRef),
    /// A device file (its major number).
    Device(InodeRef, i16),
}

/// A file-table entry. `kind` and the flags are set when the entry is allocated and cleared at
/// the last close; `off` is protected by the inode's lock.
pub struct File {
    kind: UnsafeCell<Kind>,
    readable: UnsafeCell<bool>,
    writable: UnsafeCell<bool>,
    off: UnsafeCell<u32>,
}

struct Table([File; NFILE]);
// SAFETY: entries are set up by their allocator before being shared and torn down by the last
// reference holder (counts in REFS); `off` is only touched with the inode's sleeplock held.
unsafe impl Sync for Table {}

static FILES: Table = Table(
    [const {
        File {
            kind: UnsafeCell::new(Kind::None),
            readable: UnsafeCell::new(false),
            writable: UnsafeCell::new(false),
            off: UnsafeCell::new(0),
        }
    }; NFILE],
);
static REFS: Spinlock<[u32; NFILE]> = Spinlock::new("ftable", [0; NFILE]);

/// A counted reference to an open file.
#[derive(Debug)]
pub struct FileRef {
    idx: usize,
}

/// Allocates a file-table entry for `kind`.
pub fn alloc(kind: Kind, readable: bool, writable: bool) -> Result<FileRef, Kind> {
    let mut r = REFS.lock();
    let Some(i) = r.iter().position(|&c| c == 0) else {
        return Err(kind);
    };
    r[i] = 1;
    drop(r);
    let f = &FILES.0[i];
    // SAFETY: the entry had no references; we are its only user until we hand out the FileRef.
    unsafe {
        *f.kind.get() = kind;
        *f.readable.get() = readable;
        *f.writable.get() = writable;
        *f.off.get() = 0;
    }
    Ok(FileRef { idx: i })
}

impl FileRef {
    fn file(&self) -> &'static File {
        &FILES.0[self.idx]
    }

    fn kind(&self) -> &Kind {
        // SAFETY: `kind` does not change while references exist.
        unsafe { &*self.file().kind.get() }
    }

    /// Whether the file was opened for reading / writing.
    pub fn readable(&self) -> bool {
        // SAFETY: fixed while references exist.
        unsafe { *self.file().readable.get() }
    }
    /// See [`FileRef::readable`].
    pub fn writable(&self) -> bool {
        // SAFETY: fixed while references exist.
        unsafe { *self.file().writable.get() }
    }

    /// Another reference to the same open file.
    pub fn dup(&self) -> FileRef {
        REFS.lock()[self.idx] += 1;
        FileRef { idx: self.idx }
    }

    /// The inode, for a file or device.
    pub fn inode(&self) -> Option<&InodeRef> {
        match self.kind() {
            Kind::Inode(ip) | Kind::Device(ip, _) => Some(ip),
            _ => None,
        }
    }

    /// Drops this reference; the last one releases the pipe end or the inode.
    pub fn close(self) {
        let idx = self.idx;
        core::mem::forget(self);
        let mut r = REFS.lock();
        if r[idx] == 0 {
            panic!("file close: no references");
        }
        r[idx] -= 1;
        if r[idx] > 0 {
            return;
        }
        let f = &FILES.0[idx];
        // SAFETY: the count is 0, so no one else refers to the entry; and since we still hold
        // REFS, `alloc` cannot hand it out again until its contents are taken. The decrement and
        // the take are one hold of REFS, so of two closers exactly one sees 0 (docs/KERNEL.md,
        // "Locking rules").
        let (kind, writable) = unsafe {
            (
                core::mem::replace(&mut *f.kind.get(), Kind::None),
                *f.writable.get(),
            )
        };
        drop(r);
        match kind {
            Kind::Pipe(p) => p.close(writable),
            Kind::Inode(ip) | Kind::Device(ip, _) => {
                log::begin_op();
                ip.put();
                log::end_op();
            }
            Kind::None => {}
        }
    }

    /// `fstat`.
    pub fn stat(&self) -> Option<Stat> {
        let ip = self.inode()?;
        let l = ip.lock();
        Some(l.stat())
    }

    /// Reads up to `n` bytes to `dst(offset, bytes)`; the count or -1.
    pub fn read(&self, n: usize, dst: impl FnMut(usize, &[u8]) -> bool) -> i32 {
        if !self.readable() {
            return -1;
        }
        match self.kind() {
            Kind::Pipe(p) => p.read(n, dst),
            Kind::Device(_, major) => match *major {
                xv6_abi::CONSOLE_MAJOR => console_read(n, dst),
                _ => -1,
            },
            Kind::Inode(ip) => {
                let l = ip.lock();
                // SAFETY: `off` is protected by the inode lock, held.
                let off = unsafe { &mut *self.file().off.get() };
                match l.read(*off, n.min(i32::MAX as usize) as u32, dst) {
                    Some(r) => {
                        *off += r;
                        r as i32
                    }
                    None => -1,
                }
            }
            Kind::None => -1,
        }
    }

    /// Writes `n` bytes from `src(offset, buf)`; the count or -1.
    pub fn write(&self, n: usize, mut src: impl FnMut(usize, &mut [u8]) -> bool) -> i32 {
        if !self.writable() {
            return -1;
        }
        match self.kind() {
            Kind::Pipe(p) => p.write(n, src),
            Kind::Device(_, major) => match *major {
                xv6_abi::CONSOLE_MAJOR => console_write(n, src),
                _ => -1,
            },
            Kind::Inode(ip) => {
                // A few blocks per transaction, so one write never overflows the log: an inode,
                // an indirect block, a bitmap block, and two blocks of slack for unaligned ends.
                let max = ((xv6_abi::fs::MAXOPBLOCKS - 1 - 1 - 2) / 2) * xv6_abi::fs::BSIZE;
                let mut i = 0usize;
                while i < n {
                    let m = (n - i).min(max);
                    log::begin_op();
                    let l = ip.lock();
                    // SAFETY: `off` is protected by the inode lock, held.
                    let off = unsafe { &mut *self.file().off.get() };
                    let r = l.write(*off, m as u32, |at, buf| src(i + at, buf));
                    if let Some(r) = r {
                        *off += r;
                    }
                    drop(l);
                    log::end_op();
                    match r {
                        Some(r) if r as usize == m => i += m,
                        Some(r) => {
                            i += r as usize;
                            break;
                        }
                        None => break,
                    }
                }
                // As xv6: a short write (bad buffer, disk full) is an error.
                if i == n {
                    n as i32
                } else {
                    -1
                }
            }
            Kind::None => -1,
        }
    }
}

impl Drop for FileRef {
    fn drop(&mut self) {
        crate::println!("warning: file reference dropped without close");
        REFS.lock()[self.idx] -= 1;
    }
}

// ---- the console -------------------------------------------------------------------------

const INPUT_BUF: usize = 128;

struct Input {
    buf: [u8; INPUT_BUF],
    /// Read index.
    r: usize,
    /// Write index (end of complete lines).
    w: usize,
    /// Edit index.
    e: usize,
}

static INPUT: Spinlock<Input> = Spinlock::new(
    "console",
    Input {
        buf: [0; INPUT_BUF],
        r: 0,
        w: 0,
        e: 0,
    },
);

fn input_chan() -> usize {
    &INPUT as *const _ as usize
}

const fn ctrl(c: u8) -> u8 {
    c - b'@'
}

fn echo(c: u8) {
    if c == 0x7f || c == ctrl(b'H') {
        crate::console::write_bytes(b"\x08 \x08");
    } else {
        crate::console::write_bytes(&[c]);
    }
}

/// The serial interrupt: line editing (backspace, Ctrl-U kills the line, Ctrl-D ends input,
/// Ctrl-P lists processes), echo, and waking readers at the end of a line.
pub fn console_intr() {
    let mut dump = false;
    let mut g = INPUT.lock();
    while let Some(mut c) = crate::console::getc_raw() {
        if c == b'\r' {
            c = b'\n';
        }
        match c {
            x if x == ctrl(b'P') => dump = true,
            x if x == ctrl(b'U') => {
                while g.e != g.w && g.buf[(g.e - 1) % INPUT_BUF] != b'\n' {
                    g.e -= 1;
                    echo(0x7f);
                }
            }
            x if x == ctrl(b'H') || x == 0x7f => {
                if g.e != g.w {
                    g.e -= 1;
                    echo(0x7f);
                }
            }
            _ => {
                if c != 0 && g.e - g.r < INPUT_BUF {
                    let e = g.e;
                    g.buf[e % INPUT_BUF] = c;
                    g.e += 1;
                    if c != ctrl(b'D') {
                        echo(c);
                    }
                    if c == b'\n' || c == ctrl(b'D') || g.e - g.r == INPUT_BUF {
                        g.w = g.e;
                        proc::wakeup(input_chan());
                    }
                }
            }
        }
    }
    drop(g);
    if dump {
        proc::dump();
    }
}

/// Reads up to a line; Ctrl-D at the start of a line reads as end of file.
fn console_read(n: usize, mut dst: impl FnMut(usize, &[u8]) -> bool) -> i32 {
    let mut out = [0u8; INPUT_BUF];
    let mut got = 0usize;
    let mut g = INPUT.lock();
    while got < n.min(INPUT_BUF) {
        while g.r == g.w {
            if proc::myproc().is_killed() {
                return -1;
            }
            g = proc::sleep(input_chan(), g);
        }
        let c = g.buf[g.r % INPUT_BUF];
        g.r += 1;
        if c == ctrl(b'D') {
            if got > 0 {
                g.r -= 1; // keep it for next time: this read returns what came before
            }
            break;
        }
        out[got] = c;
        got += 1;
        if c == b'\n' {
            break;
        }
    }
    drop(g);
    if got > 0 && !dst(0, &out[..got]) {
        return -1;
    }
    got as i32
}

/// Writes in pieces of 256 bytes. Between pieces it stops if the process has been killed (the
/// count so far is returned), and gives up the CPU once a tick, as a timer interrupt in user mode
/// would: the kernel runs with interrupts off, so one long write must not keep the CPU.
fn console_write(n: usize, mut src: impl FnMut(usize, &mut [u8]) -> bool) -> i32 {
    let mut buf = [0u8; 256];
    let mut i = 0;
    let mut tick = crate::irq::ticks();
    while i < n {
        let m = (n - i).min(buf.len());
        if !src(i, &mut buf[..m]) {
            return -1;
        }
        if !crate::console::write_user(&buf[..m]) {
            break;
        }
        i += m;
        if proc::myproc().is_killed() {
            break;
        }
        if crate::irq::ticks() != tick {
            proc::yield_cpu();
            tick = crate::irq::ticks();
        }
    }
    i as i32
}
