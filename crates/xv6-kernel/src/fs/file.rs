//! Open files (xv6's file.c). The console device they read and write is `dev::console`.
//!
//! A [`FileRef`] is a counted reference to an entry of the system-wide file table: `dup` and
//! `fork` share the entry (and its offset); the last `close` releases the pipe end or inode.

use crate::fs::fs::InodeRef;
use crate::fs::log;
use crate::fs::pipe::Pipe;
use crate::sync::spinlock::Spinlock;
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
                xv6_abi::CONSOLE_MAJOR => crate::dev::console::console_read(n, dst),
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
                xv6_abi::CONSOLE_MAJOR => crate::dev::console::console_write(n, src),
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
