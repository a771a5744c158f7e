//! The buffer cache (xv6's bio.c): a fixed set of block buffers, each with a sleeplock; one cached
//! copy per disk block; least recently used unreferenced buffers are recycled.

use crate::cpu::Spinlock;
use crate::sleeplock::Sleeplock;
use core::cell::UnsafeCell;
use xv6_abi::fs::BSIZE;

/// Buffers in the cache: room for a full log's pinned blocks (LOGBLOCKS) plus the blocks a
/// commit and the running operations read besides, so `bget` never finds every buffer taken.
pub const NBUF: usize = xv6_abi::fs::LOGBLOCKS + 34;

/// A block buffer. `data` and the flags belong to whoever holds `lock`.
#[repr(C, align(8))]
pub struct Buf {
    /// The block's bytes.
    pub data: [u8; BSIZE],
    /// The data has been read from disk.
    pub valid: bool,
    /// The data must be written to disk (set for the driver by `bwrite`).
    pub dirty: bool,
    /// The driver owns the buffer.
    pub disk: bool,
    /// The last disk operation failed.
    pub error: bool,
    /// Block number.
    pub blockno: u32,
}

struct Slot {
    lock: Sleeplock,
    buf: UnsafeCell<Buf>,
}

struct Meta {
    /// Per buffer: (block number or u32::MAX when empty, reference count, last-use stamp).
    entries: [(u32, u32, u64); NBUF],
    clock: u64,
}

struct Cache([Slot; NBUF]);
// SAFETY: a buffer's contents are reached only with its sleeplock held; Meta is under a spinlock.
unsafe impl Sync for Cache {}

static SLOTS: Cache = Cache(
    [const {
        Slot {
            lock: Sleeplock::new("buffer"),
            buf: UnsafeCell::new(Buf {
                data: [0; BSIZE],
                valid: false,
                dirty: false,
                disk: false,
                error: false,
                blockno: 0,
            }),
        }
    }; NBUF],
);

static META: Spinlock<Meta> = Spinlock::new(
    "bcache",
    Meta {
        entries: [(u32::MAX, 0, 0); NBUF],
        clock: 0,
    },
);

/// A locked buffer; dropping it releases it (xv6's brelse).
pub struct BufGuard {
    idx: usize,
}

/// Finds or recycles the buffer for `blockno`, takes a reference, and locks it.
fn bget(blockno: u32) -> BufGuard {
    let mut m = META.lock();
    let idx = loop {
        if let Some(i) = m.entries.iter().position(|e| e.0 == blockno) {
            m.entries[i].1 += 1;
            break i;
        }
        let victim = m
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.1 == 0)
            .min_by_key(|(_, e)| e.2)
            .map(|(i, _)| i);
        if let Some(victim) = victim {
            m.entries[victim] = (blockno, 1, 0);
            // SAFETY: the victim's reference count was 0, so nobody holds or waits for its lock;
            // it is ours to reset before anyone can find it under its new block number.
            unsafe {
                let b = &mut *SLOTS.0[victim].buf.get();
                b.blockno = blockno;
                b.valid = false;
                b.dirty = false;
            }
            break victim;
        }
        // Every buffer is referenced (many processes in the file system at once, and the log's
        // pinned blocks): wait for one to be released instead of giving up.
        m = crate::proc::sleep(meta_chan(), m);
    };
    drop(m);
    SLOTS.0[idx].lock.acquire();
    BufGuard { idx }
}

fn meta_chan() -> usize {
    &META as *const _ as usize
}

/// The locked buffer holding block `blockno`, read from disk if needed. `None` on a disk error.
pub fn bread(blockno: u32) -> Option<BufGuard> {
    let g = bget(blockno);
    // SAFETY: we hold the buffer's sleeplock.
    let b = unsafe { &mut *SLOTS.0[g.idx].buf.get() };
    if !b.valid && !crate::ide::rw(b) {
        return None;
    }
    Some(g)
}

impl BufGuard {
    // The guard stands for the buffer's sleeplock, which gives exclusive access.
    #[allow(clippy::mut_from_ref)]
    fn buf(&self) -> &mut Buf {
        // SAFETY: the guard proves we hold this buffer's sleeplock.
        unsafe { &mut *SLOTS.0[self.idx].buf.get() }
    }

    /// The block number.
    pub fn blockno(&self) -> u32 {
        self.buf().blockno
    }

    /// Writes the buffer to disk now. Returns false on a disk error.
    pub fn write(&mut self) -> bool {
        let b = self.buf();
        b.dirty = true;
        crate::ide::rw(b)
    }

    /// Keeps the buffer in the cache (the log pins blocks until they are installed).
    pub fn pin(&self) {
        META.lock().entries[self.idx].1 += 1;
    }
}

/// Drops a pin taken with [`BufGuard::pin`] on block `blockno`.
pub fn unpin(blockno: u32) {
    let mut m = META.lock();
    let mut freed = false;
    if let Some(e) = m.entries.iter_mut().find(|e| e.0 == blockno && e.1 > 0) {
        e.1 -= 1;
        freed = e.1 == 0;
    }
    drop(m);
    if freed {
        crate::proc::wakeup(meta_chan());
    }
}

impl core::ops::Deref for BufGuard {
    type Target = [u8; BSIZE];
    fn deref(&self) -> &[u8; BSIZE] {
        &self.buf().data
    }
}

impl core::ops::DerefMut for BufGuard {
    fn deref_mut(&mut self) -> &mut [u8; BSIZE] {
        &mut self.buf().data
    }
}

impl Drop for BufGuard {
    fn drop(&mut self) {
        SLOTS.0[self.idx].lock.release();
        let mut m = META.lock();
        m.clock += 1;
        let now = m.clock;
        let e = &mut m.entries[self.idx];
        e.1 -= 1;
        let freed = e.1 == 0;
        if freed {
            e.2 = now;
        }
        drop(m);
        if freed {
            crate::proc::wakeup(meta_chan());
        }
    }
}
