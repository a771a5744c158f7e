//! Pipes (xv6's pipe.c): an 8 KiB ring between a reading and a writing file (xv6 has 512
//! bytes; with 8 KiB a writer of 4 KiB blocks and its reader take turns a block or two at a time
//! instead of 512 bytes, each turn two wakeups and two context switches).

use crate::sync::spinlock::Spinlock;
use crate::sync::wait;
use alloc::boxed::Box;

const PIPESIZE: usize = 8192;
/// Bytes moved between user memory and the ring per lock hold: the copy goes through a buffer
/// on the kernel stack (user memory is copied with no lock held), so it stays well below the
/// stack's size.
const CHUNK: usize = 2048;

/// A pipe's shared state.
pub struct Pipe {
    inner: Spinlock<PipeData>,
}

struct PipeData {
    data: [u8; PIPESIZE],
    nread: usize,
    nwrite: usize,
    readopen: bool,
    writeopen: bool,
}

impl Pipe {
    /// A new pipe with both ends open, on the kernel heap.
    pub fn alloc() -> Option<&'static Pipe> {
        let p = crate::mm::mem::try_box(Pipe {
            inner: Spinlock::new(
                "pipe",
                PipeData {
                    data: [0; PIPESIZE],
                    nread: 0,
                    nwrite: 0,
                    readopen: true,
                    writeopen: true,
                },
            ),
        })?;
        Some(Box::leak(p))
    }

    fn read_chan(&self) -> usize {
        self as *const Pipe as usize
    }
    fn write_chan(&self) -> usize {
        self as *const Pipe as usize + 1
    }

    /// Closes one end; the closer of the second end frees the pipe. Marking this end closed and
    /// seeing whether the other is closed too happen in one hold of the lock (as xv6's
    /// pipeclose), so of two ends closed at once on two CPUs exactly one frees it: with two
    /// holds, both closers could see "both closed" and free it twice.
    pub fn close(&'static self, writable: bool) {
        // The channels are plain numbers: computed now, they stay usable after the free.
        let (read_chan, write_chan) = (self.read_chan(), self.write_chan());
        let mut g = self.inner.lock();
        if writable {
            g.writeopen = false;
        } else {
            g.readopen = false;
        }
        let gone = !g.readopen && !g.writeopen;
        drop(g);
        if gone {
            // SAFETY: both ends are closed, and this call is the one that saw it under the lock
            // (the other end's close saw its own end closed and this one still open), so no file
            // refers to the pipe and no one else will free it; no process sleeps on it either
            // (a sleeper holds a reference to an open end). It came from Box::leak in `alloc`.
            drop(unsafe { Box::from_raw(self as *const Pipe as *mut Pipe) });
        } else {
            // Wake the other end's sleepers: a reader sees end of file, a writer an error.
            wait::wakeup(if writable { read_chan } else { write_chan });
        }
    }

    /// Writes `n` bytes taken from `src(offset, buf)`, sleeping while full. Returns the count, or
    /// -1 if the reader is gone or the caller was killed before anything was written. User memory
    /// is copied with no lock held (a first touch of a file mapping may read the disk).
    pub fn write(&self, n: usize, mut src: impl FnMut(usize, &mut [u8]) -> bool) -> i32 {
        let mut i = 0;
        while i < n {
            let chunk = (n - i).min(CHUNK);
            let mut tmp = [0u8; CHUNK];
            if !src(i, &mut tmp[..chunk]) {
                return -1; // a bad buffer is an error, as for files
            }
            let mut k = 0;
            let mut g = self.inner.lock();
            while k < chunk {
                if !g.readopen || wait::killed() {
                    drop(g);
                    wait::wakeup(self.read_chan());
                    return if i + k > 0 { (i + k) as i32 } else { -1 };
                }
                if g.nwrite == g.nread + PIPESIZE {
                    wait::wakeup(self.read_chan());
                    g = wait::sleep(self.write_chan(), g);
                    continue;
                }
                let start = g.nwrite % PIPESIZE;
                let m = (g.nread + PIPESIZE - g.nwrite)
                    .min(PIPESIZE - start)
                    .min(chunk - k);
                g.data[start..start + m].copy_from_slice(&tmp[k..k + m]);
                g.nwrite += m;
                k += m;
            }
            drop(g);
            wait::wakeup(self.read_chan());
            i += chunk;
        }
        i as i32
    }

    /// Reads up to `n` bytes into `dst(offset, bytes)`, sleeping while empty and a writer exists.
    /// The bytes are taken under the lock and handed to `dst` after it is released.
    pub fn read(&self, n: usize, mut dst: impl FnMut(usize, &[u8]) -> bool) -> i32 {
        let mut g = self.inner.lock();
        while g.nread == g.nwrite && g.writeopen {
            if wait::killed() {
                return -1;
            }
            g = wait::sleep(self.read_chan(), g);
        }
        let mut tmp = [0u8; CHUNK];
        let mut i = 0;
        while i < n.min(CHUNK) && g.nread != g.nwrite {
            // The readable bytes up to the ring's end (the rest, if any, on the next pass).
            let start = g.nread % PIPESIZE;
            let m = (g.nwrite - g.nread)
                .min(PIPESIZE - start)
                .min(n.min(CHUNK) - i);
            tmp[i..i + m].copy_from_slice(&g.data[start..start + m]);
            g.nread += m;
            i += m;
        }
        drop(g);
        wait::wakeup(self.write_chan());
        if i > 0 && !dst(0, &tmp[..i]) {
            return -1;
        }
        i as i32
    }
}
