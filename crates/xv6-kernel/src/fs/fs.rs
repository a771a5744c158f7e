//! The file system's block and inode layers (the first half of xv6's fs.c): the superblock, block
//! allocation, the inode table and file contents. Directories and path names are `dir.rs`. The on-disk format is xv6's
//! (`xv6_abi::fs`). A disk whose superblock is not of that format is refused at mount, and block
//! numbers read from disk are checked before use, so a corrupt image gives errors, not a crash.

use crate::fs::bio;
use crate::fs::log::{self, log_write};
use crate::sync::sleeplock::Sleeplock;
use crate::sync::spinlock::Spinlock;
use core::cell::UnsafeCell;
use xv6_abi::fs::{DiskInode, SuperBlock, BPB, BSIZE, IPB, MAXFILE, NDIRECT, NINDIRECT};
use xv6_abi::stat::{T_DEVICE, T_DIR, T_FILE};
use xv6_abi::Stat;

/// Inodes kept in memory at once.
pub const NINODE: usize = 50;
/// The root device number reported by `fstat`.
pub const ROOTDEV: i32 = 1;

static SB: Spinlock<Option<SuperBlock>> = Spinlock::new("superblock", None);

/// The mounted superblock.
pub fn sb() -> SuperBlock {
    SB.lock().expect("file system not mounted")
}

/// Reads and checks the superblock, sets up the log (recovering it). Called by the first process.
/// A disk that is not an xv6 file system stops the machine with a message saying why.
pub fn init() {
    let sb = match read_super() {
        Ok(sb) => sb,
        Err(why) => {
            crate::println!("\nxv6: cannot mount the disk: {why}");
            crate::println!(
                "xv6: give QEMU an xv6 file-system image (cargo xtask image builds one)"
            );
            crate::arch::poweroff(crate::dev::panic::PANIC_STATUS - 1);
        }
    };
    *SB.lock() = Some(sb);
    if let Err(why) = log::init(sb.logstart, sb.nlog) {
        crate::println!("\nxv6: cannot mount the disk: {why}");
        crate::arch::poweroff(crate::dev::panic::PANIC_STATUS - 1);
    }
}

fn read_super() -> Result<SuperBlock, alloc::string::String> {
    use alloc::format;
    let b = bio::bread(1).ok_or("no disk, or block 1 cannot be read")?;
    let sb = SuperBlock::decode(&b[..]).map_err(|e| format!("{e}"))?;
    sb.validate().map_err(|e| format!("{e}"))?;
    let disk = crate::fs::ide::capacity_blocks();
    if disk != 0 && sb.size as u64 > disk {
        return Err(format!(
            "the superblock says the file system has {} blocks, but the disk holds only {disk}",
            sb.size
        ));
    }
    Ok(sb)
}

// ---- blocks ------------------------------------------------------------------------------

/// Blocks a sequential read reads beyond what it asked for.
pub const READ_AHEAD: usize = 32;

fn bzero(b: u32) -> Option<()> {
    // Not read first: every byte is overwritten.
    let mut buf = bio::overwrite(b);
    buf.fill(0);
    log_write(&buf);
    Some(())
}

/// Allocates a zeroed data block; None when the disk is full (or unreadable).
fn balloc() -> Option<u32> {
    let sb = sb();
    let data_start = sb.data_start();
    let mut base = 0;
    while base < sb.size {
        let mut bp = bio::bread(sb.bblock(base))?;
        for bi in 0..BPB {
            let b = base + bi;
            if b >= sb.size {
                break;
            }
            if b < data_start {
                continue;
            }
            let m = 1u8 << (bi % 8);
            let byte = (bi / 8) as usize;
            if bp[byte] & m == 0 {
                bp[byte] |= m;
                log_write(&bp);
                drop(bp);
                bzero(b)?;
                return Some(b);
            }
        }
        drop(bp);
        base += BPB;
    }
    crate::println!("balloc: out of blocks");
    None
}

/// Frees a data block.
fn bfree(b: u32) {
    let sb = sb();
    if b < sb.data_start() || b >= sb.size {
        crate::println!("bfree: block {b} outside the data area (corrupt inode?)");
        return;
    }
    let Some(mut bp) = bio::bread(sb.bblock(b)) else {
        return;
    };
    let bi = b % BPB;
    let m = 1u8 << (bi % 8);
    if bp[(bi / 8) as usize] & m == 0 {
        crate::println!("bfree: block {b} already free (corrupt file system?)");
        return;
    }
    bp[(bi / 8) as usize] &= !m;
    log_write(&bp);
}

fn valid_data_block(b: u32) -> bool {
    let sb = sb();
    b >= sb.data_start() && b < sb.size
}

// ---- inodes ------------------------------------------------------------------------------

/// An in-memory inode. `refs`, `dev`, `inum` are under the table lock; the rest under `lock`.
pub struct Inode {
    lock: Sleeplock,
    data: UnsafeCell<InodeData>,
}

/// The fields behind an inode's sleeplock.
#[derive(Clone, Copy, Debug)]
pub struct InodeData {
    /// Inode number.
    pub inum: u32,
    /// Read from disk.
    pub valid: bool,
    /// The file block a sequential reader would read next (where the last read ended): a read
    /// starting there reads ahead.
    pub ra_next: u32,
    /// Copy of the disk inode.
    pub d: DiskInode,
}

struct Table {
    inodes: [Inode; NINODE],
}
// SAFETY: inode data is accessed under each inode's sleeplock, reference counts under REFS.
unsafe impl Sync for Table {}

static ITABLE: Table = Table {
    inodes: [const {
        Inode {
            lock: Sleeplock::new("inode"),
            data: UnsafeCell::new(InodeData {
                inum: 0,
                valid: false,
                ra_next: 0,
                d: DiskInode {
                    typ: 0,
                    major: 0,
                    minor: 0,
                    nlink: 0,
                    size: 0,
                    addrs: [0; NDIRECT + 1],
                },
            }),
        }
    }; NINODE],
};

/// Per slot: (inum, reference count).
static REFS: Spinlock<[(u32, u32); NINODE]> = Spinlock::new("itable", [(0, 0); NINODE]);

/// A counted reference to an in-memory inode (xv6's `struct inode *` from iget). Dropping it
/// without [`InodeRef::put`] is a leak; `put` may write to disk, so call it inside a transaction.
#[derive(Debug)]
pub struct InodeRef {
    idx: usize,
}

/// A locked inode: its fields are readable and writable; dropping it unlocks.
pub struct Locked<'a> {
    ip: &'a InodeRef,
}

/// Finds or allocates the table slot for `inum` and takes a reference. Does not read the disk.
pub(super) fn iget(inum: u32) -> Option<InodeRef> {
    let mut r = REFS.lock();
    if let Some(i) = r.iter().position(|e| e.1 > 0 && e.0 == inum) {
        r[i].1 += 1;
        return Some(InodeRef { idx: i });
    }
    let Some(i) = r.iter().position(|e| e.1 == 0) else {
        crate::println!("iget: no free inode slots");
        return None;
    };
    r[i] = (inum, 1);
    // SAFETY: the slot had no references, so no one holds or waits for its lock.
    unsafe {
        let d = &mut *ITABLE.inodes[i].data.get();
        d.inum = inum;
        d.valid = false;
        d.ra_next = 0;
    }
    Some(InodeRef { idx: i })
}

impl InodeRef {
    fn inode(&self) -> &'static Inode {
        &ITABLE.inodes[self.idx]
    }

    /// Another reference to the same inode (xv6's idup).
    pub fn dup(&self) -> InodeRef {
        REFS.lock()[self.idx].1 += 1;
        InodeRef { idx: self.idx }
    }

    /// The inode number.
    pub fn inum(&self) -> u32 {
        REFS.lock()[self.idx].0
    }

    /// Locks the inode, reading it from disk if needed. An inode that cannot be read, or whose
    /// type is not one xv6 knows, reads as type 0, on which every operation fails.
    pub fn lock(&self) -> Locked<'_> {
        let ino = self.inode();
        ino.lock.acquire();
        let l = Locked { ip: self };
        let d = l.data();
        if !d.valid {
            let sb = sb();
            let mut di = DiskInode::default();
            if d.inum < sb.ninodes {
                if let Some(b) = bio::bread(sb.iblock(d.inum)) {
                    di = DiskInode::decode_from_block(&b[..], d.inum).unwrap_or_default();
                }
            }
            if !matches!(di.typ, T_DIR | T_FILE | T_DEVICE) {
                di.typ = 0;
            }
            d.d = di;
            d.valid = true;
        }
        l
    }

    /// Drops the reference; the last reference to an inode with no links frees it on disk
    /// (truncating its blocks). Must be called inside a transaction.
    ///
    /// xv6's iput: "last reference" is decided, and the count dropped, under the table lock. With
    /// the check and the decrement in separate holds, two processes putting the last two
    /// references at once could each see the other's and both decrement to 0, and the unlinked
    /// inode would stay allocated on disk for good (an orphan).
    pub fn put(self) {
        let idx = self.idx;
        core::mem::forget(self);
        let mut r = REFS.lock();
        if r[idx].1 == 1 {
            // SAFETY: we hold the only reference and the table lock, so no one else can reach
            // the slot (iget would need the table lock; a Locked guard needs a reference): no
            // one holds its sleeplock, and its fields are ours to read.
            let d = unsafe { &*ITABLE.inodes[idx].data.get() };
            if d.valid && d.d.nlink == 0 && d.d.typ != 0 {
                // Free it on disk. The count stays 1 meanwhile, so this slot is not reused for
                // another inode; an `ialloc` that picks the freed inode number finds this slot
                // (and waits for the sleeplock), and reads the inode afresh since `valid` is
                // cleared before the lock is released.
                let ino = &ITABLE.inodes[idx];
                // Cannot sleep: no one else holds it (see above). Taken before the table lock
                // is released so that no one can slip in between.
                ino.lock.acquire();
                drop(r);
                let tmp = InodeRef { idx };
                let l = Locked { ip: &tmp };
                l.truncate();
                let d = l.data();
                d.d.typ = 0;
                l.update();
                d.valid = false;
                drop(l);
                core::mem::forget(tmp);
                r = REFS.lock();
            }
        }
        if r[idx].1 == 0 {
            panic!("iput: inode slot {idx} has no references");
        }
        r[idx].1 -= 1;
    }
}

impl Drop for InodeRef {
    fn drop(&mut self) {
        // Reaching here means a reference was lost without `put`. Count it down without freeing
        // (freeing needs a transaction); report it so the leak is visible.
        crate::println!("warning: inode reference dropped without put");
        REFS.lock()[self.idx].1 -= 1;
    }
}

/// Allocates a new inode of type `typ` on disk and returns it (unlocked). Each inode block is
/// read once and all its inodes looked at (xv6 reads the block again for every inode).
pub fn ialloc(typ: i16) -> Option<InodeRef> {
    let sb = sb();
    let mut inum = 1;
    while inum < sb.ninodes {
        let mut b = bio::bread(sb.iblock(inum))?;
        // The inodes of this block: up to the block's last, or the last inode.
        let last = ((inum / IPB + 1) * IPB).min(sb.ninodes);
        while inum < last {
            let di = DiskInode::decode_from_block(&b[..], inum).ok()?;
            if di.typ == 0 {
                let n = DiskInode {
                    typ,
                    ..DiskInode::default()
                };
                n.encode_into_block(&mut b[..], inum);
                log_write(&b);
                drop(b);
                return iget(inum);
            }
            inum += 1;
        }
    }
    crate::println!("ialloc: no free inodes");
    None
}

/// Looks up inode `inum` (for directory entries).
pub(super) fn iget_checked(inum: u32) -> Option<InodeRef> {
    if inum == 0 || inum >= sb().ninodes {
        return None;
    }
    iget(inum)
}

impl Locked<'_> {
    /// The inode's fields.
    // The guard stands for the sleeplock, which gives exclusive access: handing out `&mut` from
    // `&self` is this type's purpose (like RefCell's borrow_mut).
    #[allow(clippy::mut_from_ref)]
    pub fn data(&self) -> &mut InodeData {
        // SAFETY: this guard proves the inode's sleeplock is held by the caller's process.
        unsafe { &mut *self.ip.inode().data.get() }
    }

    /// File type (0: unusable).
    pub fn typ(&self) -> i16 {
        self.data().d.typ
    }

    /// Size in bytes.
    pub fn size(&self) -> u32 {
        self.data().d.size
    }

    /// Writes the in-memory copy to disk (through the log).
    pub fn update(&self) {
        let sb = sb();
        let d = self.data();
        if let Some(mut b) = bio::bread(sb.iblock(d.inum)) {
            d.d.encode_into_block(&mut b[..], d.inum);
            log_write(&b);
        }
    }

    /// The disk block holding byte `bn * BSIZE` of the file, allocating it if `alloc`.
    fn bmap(&self, bn: usize, alloc: bool) -> Option<u32> {
        let d = self.data();
        if bn < NDIRECT {
            let mut a = d.d.addrs[bn];
            if a == 0 {
                if !alloc {
                    return None;
                }
                a = balloc()?;
                d.d.addrs[bn] = a;
            }
            return valid_data_block(a).then_some(a);
        }
        let bn = bn - NDIRECT;
        if bn >= NINDIRECT {
            return None;
        }
        let mut ind = d.d.addrs[NDIRECT];
        if ind == 0 {
            if !alloc {
                return None;
            }
            ind = balloc()?;
            d.d.addrs[NDIRECT] = ind;
        }
        if !valid_data_block(ind) {
            return None;
        }
        let mut b = bio::bread(ind)?;
        let off = bn * 4;
        let mut a = u32::from_le_bytes(b[off..off + 4].try_into().ok()?);
        if a == 0 {
            if !alloc {
                return None;
            }
            a = balloc()?;
            b[off..off + 4].copy_from_slice(&a.to_le_bytes());
            log_write(&b);
        }
        valid_data_block(a).then_some(a)
    }

    /// Frees every block of the file and sets its size to 0.
    pub fn truncate(&self) {
        let d = self.data();
        for i in 0..NDIRECT {
            if d.d.addrs[i] != 0 {
                bfree(d.d.addrs[i]);
                d.d.addrs[i] = 0;
            }
        }
        let ind = d.d.addrs[NDIRECT];
        if ind != 0 {
            if valid_data_block(ind) {
                if let Some(b) = bio::bread(ind) {
                    for j in 0..NINDIRECT {
                        let a =
                            u32::from_le_bytes(b[j * 4..j * 4 + 4].try_into().unwrap_or([0; 4]));
                        if a != 0 {
                            bfree(a);
                        }
                    }
                }
            }
            bfree(ind);
            d.d.addrs[NDIRECT] = 0;
        }
        d.d.size = 0;
        self.update();
    }

    /// `fstat`'s view.
    pub fn stat(&self) -> Stat {
        let d = self.data();
        Stat {
            dev: ROOTDEV,
            ino: d.inum,
            typ: d.d.typ,
            nlink: d.d.nlink,
            size: d.d.size as u64,
        }
    }

    /// Reads up to `n` bytes at `off` into `dst(offset_in_request, bytes)`; returns the count, or
    /// None if `dst` refuses (a bad user address) or a block cannot be read.
    pub fn read(&self, off: u32, n: u32, mut dst: impl FnMut(usize, &[u8]) -> bool) -> Option<u32> {
        let size = self.size();
        if off > size || off.checked_add(n).is_none() || self.typ() == 0 {
            return if self.typ() == 0 { None } else { Some(0) };
        }
        let n = n.min(size - off);
        if n > 0 {
            self.read_ahead(off, n, size);
        }
        let mut tot = 0u32;
        while tot < n {
            let pos = off + tot;
            let b = bio::bread(self.bmap(pos as usize / BSIZE, false)?)?;
            let start = pos as usize % BSIZE;
            let m = ((n - tot) as usize).min(BSIZE - start);
            if !dst(tot as usize, &b[start..start + m]) {
                return None;
            }
            tot += m as u32;
        }
        Some(tot)
    }

    /// Before reading `n` (> 0) bytes at `off` of a file of `size` bytes: if the first block is
    /// not cached, reads the request's blocks, and when the read continues where the last one
    /// ended (or starts the file) [`READ_AHEAD`] blocks beyond, into the cache in as few disk
    /// requests as they allow.
    fn read_ahead(&self, off: u32, n: u32, size: u32) {
        let first = off as usize / BSIZE;
        let last = (off + n - 1) as usize / BSIZE;
        let d = self.data();
        let sequential = first == 0 || first == d.ra_next as usize;
        d.ra_next = (last + 1) as u32;
        let Some(b0) = self.bmap(first, false) else {
            return;
        };
        if bio::cached(b0) {
            return;
        }
        let end_of_file = (size as usize).div_ceil(BSIZE);
        let want = last + 1 + if sequential { READ_AHEAD } else { 0 };
        let upto = want.min(end_of_file).min(first + crate::fs::ide::MAX_RUN);
        let mut blocks = [0u32; crate::fs::ide::MAX_RUN];
        let mut k = 0;
        for bn in first..upto {
            // A hole (never written) ends the list: there is nothing on the disk to read.
            let Some(b) = self.bmap(bn, false) else { break };
            blocks[k] = b;
            k += 1;
        }
        bio::read_ahead(&blocks[..k]);
    }

    /// Writes `n` bytes at `off` taken from `src(offset_in_request, buffer)`; returns the count
    /// written (short if the disk fills), or None if `src` refuses or the write is impossible.
    pub fn write(
        &self,
        off: u32,
        n: u32,
        mut src: impl FnMut(usize, &mut [u8]) -> bool,
    ) -> Option<u32> {
        let size = self.size();
        let end = off.checked_add(n)?;
        if off > size || end as usize > MAXFILE * BSIZE || self.typ() == 0 {
            return None;
        }
        let mut tot = 0u32;
        let mut failed = false;
        while tot < n {
            let pos = off + tot;
            let start = pos as usize % BSIZE;
            let m = ((n - tot) as usize).min(BSIZE - start);
            // Take the bytes before touching the cached block, so a bad user address leaves the
            // block exactly as it was.
            let mut tmp = [0u8; BSIZE];
            if !src(tot as usize, &mut tmp[..m]) {
                failed = true;
                break;
            }
            let Some(bn) = self.bmap(pos as usize / BSIZE, true) else {
                break;
            };
            // A whole block is not read first: every byte is overwritten.
            let mut b = if m == BSIZE {
                bio::overwrite(bn)
            } else {
                let Some(b) = bio::bread(bn) else { break };
                b
            };
            b[start..start + m].copy_from_slice(&tmp[..m]);
            log_write(&b);
            tot += m as u32;
        }
        let d = self.data();
        if off + tot > d.d.size {
            d.d.size = off + tot;
        }
        // Written even if the size did not change: bmap may have added blocks.
        self.update();
        if failed && tot == 0 {
            None
        } else {
            Some(tot)
        }
    }

    /// Reads `buf.len()` bytes at `off` into a kernel buffer; the count read.
    pub fn read_kernel(&self, off: u32, buf: &mut [u8]) -> Option<u32> {
        self.read(off, buf.len() as u32, |at, bytes| {
            buf[at..at + bytes.len()].copy_from_slice(bytes);
            true
        })
    }

    /// Writes a kernel buffer at `off`.
    pub fn write_kernel(&self, off: u32, buf: &[u8]) -> Option<u32> {
        self.write(off, buf.len() as u32, |at, dst| {
            let n = dst.len();
            dst.copy_from_slice(&buf[at..at + n]);
            true
        })
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.ip.inode().lock.release();
    }
}
