//! The buffer cache (xv6's bio.c): block buffers, each with a sleeplock; one cached copy per
//! disk block; the least recently used unreferenced buffer is recycled.
//!
//! Unlike xv6's fixed 30 buffers, the cache is sized from the machine's memory at boot
//! ([`init`]), and finding a block's buffer or a buffer to recycle is O(1) whatever its size
//! (the bookkeeping is `xv6_kernel::bcache::Index`, tested on the host). Runs of consecutive
//! blocks move in one disk request: [`write_run`] for the log, [`read_ahead`] for sequential
//! reads.

use crate::sync::sleeplock::Sleeplock;
use crate::sync::spinlock::Spinlock;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use xv6_abi::fs::{BSIZE, LOGBLOCKS};
use xv6_kernel::bcache::{Got, Index};

/// The fewest buffers the cache works with: a full log's pinned blocks, plus what a commit
/// and the running operations hold besides.
pub const MIN_BUFS: usize = LOGBLOCKS + 64;
/// The most buffers the cache takes, however large the machine (16 MiB of blocks).
pub const MAX_BUFS: usize = 16 * 1024;

/// A block buffer. `data` and the flags belong to whoever holds `lock`.
#[repr(C, align(8))]
pub struct Buf {
    /// The block's bytes.
    pub data: [u8; BSIZE],
    /// The data has been read from disk (or written whole by the holder).
    pub valid: bool,
    /// The data must be written to disk (set for the driver).
    pub dirty: bool,
    /// Block number.
    pub blockno: u32,
}

struct Slot {
    lock: Sleeplock,
    buf: UnsafeCell<Buf>,
}

/// The buffers, made once at boot and never freed.
struct Slots(spin::Once<&'static [Slot]>);
// SAFETY: a buffer's contents are reached only with its sleeplock held; the slice itself is
// written once (by `init`, before any file-system use) and only read after.
unsafe impl Sync for Slots {}

static SLOTS: Slots = Slots(spin::Once::new());

/// Which buffer holds which block, references, and the recycling order.
static META: Spinlock<Option<Index>> = Spinlock::new("bcache", None);

fn slots() -> &'static [Slot] {
    SLOTS.0.get().expect("bio: used before init")
}

/// Makes the cache: as many buffers as `bytes` of memory hold, between [`MIN_BUFS`] and
/// [`MAX_BUFS`], fewer if the kernel heap cannot give that much (never fewer than MIN_BUFS).
/// Returns the number of buffers, or None if not even MIN_BUFS could be had.
pub fn init(bytes: usize) -> Option<usize> {
    let mut n = (bytes / core::mem::size_of::<Slot>()).clamp(MIN_BUFS, MAX_BUFS);
    loop {
        let mut v: Vec<Slot> = Vec::new();
        if v.try_reserve_exact(n).is_ok() {
            if let Ok(index) = Index::new(n) {
                v.extend((0..n).map(|_| Slot {
                    lock: Sleeplock::new("buffer"),
                    buf: UnsafeCell::new(Buf {
                        data: [0; BSIZE],
                        valid: false,
                        dirty: false,
                        blockno: 0,
                    }),
                }));
                SLOTS.0.call_once(|| v.leak());
                *META.lock() = Some(index);
                return Some(n);
            }
        }
        if n == MIN_BUFS {
            return None;
        }
        n = (n / 2).max(MIN_BUFS);
    }
}

/// A locked buffer; dropping it releases it (xv6's brelse).
pub struct BufGuard {
    idx: usize,
}

fn meta_chan() -> usize {
    &META as *const _ as usize
}

/// Finds or recycles the buffer for `blockno`, takes a reference, and locks it. Whether the
/// buffer already held the block (its data may still be unread: see `valid`).
fn bget(blockno: u32) -> (BufGuard, bool) {
    let mut m = META.lock();
    let got = loop {
        if let Some(g) = m.as_mut().expect("bio: used before init").get(blockno) {
            break g;
        }
        // Every buffer is referenced (many processes in the file system at once, and the log's
        // pinned blocks): wait for one to be released instead of giving up.
        m = crate::sync::wait::sleep(meta_chan(), m);
    };
    if let Got::Miss(i) = got {
        reset(i, blockno);
    }
    drop(m);
    let idx = got.index();
    slots()[idx].lock.acquire();
    (BufGuard { idx }, matches!(got, Got::Hit(_)))
}

/// Makes buffer `i`, just recycled for `blockno`, hold nothing valid. Called under META, right
/// after the recycling: the buffer had no references, so nobody holds or waits for its lock,
/// and nobody can find it under its new number before META is released.
fn reset(i: usize, blockno: u32) {
    // SAFETY: as above, the buffer is ours alone until META is released.
    let b = unsafe { &mut *slots()[i].buf.get() };
    b.blockno = blockno;
    b.valid = false;
    b.dirty = false;
}

/// The locked buffer holding block `blockno`, read from disk if needed. `None` on a disk error.
pub fn bread(blockno: u32) -> Option<BufGuard> {
    let (g, _) = bget(blockno);
    let b = g.buf();
    if !b.valid && !crate::fs::ide::rw(b) {
        return None;
    }
    Some(g)
}

/// The locked buffer for block `blockno`, for a caller that overwrites all of it: not read from
/// disk. Its contents are unspecified until the caller has written every byte.
pub fn overwrite(blockno: u32) -> BufGuard {
    let (g, _) = bget(blockno);
    g.buf().valid = true;
    g
}

/// Whether block `blockno` is in the cache (read or being read).
pub fn cached(blockno: u32) -> bool {
    META.lock()
        .as_ref()
        .is_some_and(|m| m.lookup(blockno).is_some())
}

/// Writes the locked buffers `run`, which hold consecutive blocks, in as few disk requests as
/// the driver allows. False on a disk error.
pub fn write_run(run: &mut [BufGuard]) -> bool {
    let mut bufs: Vec<&mut Buf> = Vec::new();
    if bufs.try_reserve_exact(run.len()).is_err() {
        return run.iter_mut().all(|g| g.write());
    }
    bufs.extend(run.iter().map(|g| g.buf()));
    crate::fs::ide::rw_run(&mut bufs, true)
}

/// Reads into the cache those of `blocks` that are not cached, each run of consecutive block
/// numbers in one disk request, and returns without holding any of them. Best effort: blocks
/// are skipped when no buffer is free, and a failed read leaves them to be read again by
/// `bread`. Up to [`crate::fs::ide::MAX_RUN`] blocks a call.
pub fn read_ahead(blocks: &[u32]) {
    let mut run: [Option<BufGuard>; crate::fs::ide::MAX_RUN] =
        [const { None }; crate::fs::ide::MAX_RUN];
    let mut n = 0;
    for &blockno in blocks.iter().take(crate::fs::ide::MAX_RUN) {
        let follows = n > 0 && run[n - 1].as_ref().map(|g| g.buf().blockno + 1) == Some(blockno);
        if n > 0 && !follows {
            read_run(&mut run[..n]);
            n = 0;
        }
        let got = {
            let mut m = META.lock();
            let got = m.as_mut().and_then(|m| m.get_if_uncached(blockno));
            if let Some(i) = got {
                reset(i, blockno);
            }
            got
        };
        let Some(idx) = got else {
            // Cached already, or no buffer free: ends the run.
            if n > 0 {
                read_run(&mut run[..n]);
                n = 0;
            }
            continue;
        };
        // Nobody else holds a buffer that had no references, and whoever finds it now waits
        // for us: this cannot block.
        slots()[idx].lock.acquire();
        let g = BufGuard { idx };
        run[n] = Some(g);
        n += 1;
    }
    if n > 0 {
        read_run(&mut run[..n]);
    }
}

/// Reads a run of fresh buffers with one request, then releases them (into the cache if the
/// read worked, forgotten if not).
fn read_run(run: &mut [Option<BufGuard>]) {
    {
        let mut bufs: Vec<&mut Buf> = Vec::new();
        if bufs.try_reserve_exact(run.len()).is_ok() {
            bufs.extend(run.iter().flatten().map(|g| g.buf()));
            crate::fs::ide::rw_run(&mut bufs, false);
        }
    }
    for g in run.iter_mut() {
        if let Some(g) = g.take() {
            if !g.buf().valid {
                // Not read: nobody may find the stale contents under this block number.
                META.lock().as_mut().expect("bio").forget(g.idx);
            }
            drop(g);
        }
    }
}

/// Empties the cache of every block no one holds or the log has pinned (for benchmarks that
/// read cold). Returns how many blocks were dropped.
pub fn drop_unreferenced() -> usize {
    META.lock().as_mut().map_or(0, |m| m.forget_unreferenced())
}

impl BufGuard {
    // The guard stands for the buffer's sleeplock, which gives exclusive access.
    #[allow(clippy::mut_from_ref)]
    fn buf(&self) -> &mut Buf {
        // SAFETY: the guard proves we hold this buffer's sleeplock.
        unsafe { &mut *slots()[self.idx].buf.get() }
    }

    /// The block number.
    pub fn blockno(&self) -> u32 {
        self.buf().blockno
    }

    /// Writes the buffer to disk now. Returns false on a disk error.
    pub fn write(&mut self) -> bool {
        let b = self.buf();
        b.dirty = true;
        crate::fs::ide::rw(b)
    }

    /// Keeps the buffer in the cache (the log pins blocks until they are installed).
    pub fn pin(&self) {
        META.lock().as_mut().expect("bio").hold(self.idx);
    }
}

/// Drops a pin taken with [`BufGuard::pin`] on block `blockno`.
pub fn unpin(blockno: u32) {
    let mut m = META.lock();
    let Some(ix) = m.as_mut() else { return };
    let freed = match ix.lookup(blockno) {
        Some(i) if ix.refs(i) > 0 => ix.release(i),
        _ => false,
    };
    drop(m);
    if freed {
        crate::sync::wait::wakeup(meta_chan());
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
        slots()[self.idx].lock.release();
        let freed = META.lock().as_mut().expect("bio").release(self.idx);
        if freed {
            crate::sync::wait::wakeup(meta_chan());
        }
    }
}
