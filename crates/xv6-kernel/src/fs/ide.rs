//! HARDWARE ACCESS: the primary ATA (IDE) disk, by bus-master DMA when the PCI IDE controller
//! offers it (QEMU's PIIX3/PIIX4), else by programmed I/O with interrupts (xv6's ide.c).
//!
//! Requests queue up; the head of the queue is on the disk; the interrupt handler finishes it
//! (for a programmed-I/O read, copying the data in), wakes its owner and starts the next. A
//! request moves a run of up to [`MAX_RUN`] consecutive blocks in one disk command (by DMA; by
//! programmed I/O a request is one block): the log writes its blocks, installs them at home and
//! the buffer cache reads ahead in such runs.
//!
//! DMA: the controller's bus-master registers (PCI BAR4, primary channel at its base) take the
//! physical address of a table of region descriptors (PRD: 32-bit address, 16-bit byte count,
//! bit 63 ends the table); each request points one or two descriptors at each buffer's data and
//! issues READ DMA / WRITE DMA (LBA28). The disk's interrupt means the transfer is over.

use crate::arch::{dma_barrier, inb, insl, outb, outl, outsl};
use crate::fs::bio::Buf;
use crate::sync::spinlock::Spinlock;
use crate::sync::wait;
use alloc::collections::VecDeque;
use xv6_abi::fs::BSIZE;
use xv6_kernel::layout::v2p;
use xv6_kernel::prd;

const SECTOR: usize = 512;
const SECTORS_PER_BLOCK: usize = BSIZE / SECTOR;
const BSY: u8 = 0x80;
const DRDY: u8 = 0x40;
const DF: u8 = 0x20;
const ERR: u8 = 0x01;
const CMD_RDMUL: u8 = 0xc4;
const CMD_WRMUL: u8 = 0xc5;
const CMD_SETMUL: u8 = 0xc6;
const CMD_READ_DMA: u8 = 0xc8;
const CMD_WRITE_DMA: u8 = 0xca;

/// Bus-master registers of the primary channel, offsets from BAR4.
const BM_CMD: u16 = 0;
const BM_STATUS: u16 = 2;
const BM_PRDT: u16 = 4;
/// BM_CMD: start the transfer.
const BM_START: u8 = 0x01;
/// BM_CMD: the controller writes memory (a disk read).
const BM_TO_MEMORY: u8 = 0x08;
/// BM_STATUS: the controller failed to reach memory (written as 1 to clear).
const BM_ERROR: u8 = 0x02;
/// BM_STATUS: the disk raised its interrupt (written as 1 to clear).
const BM_INTR: u8 = 0x04;
/// BM_STATUS: the "drive 0/1 can DMA" bits, kept as they are when clearing the others.
const BM_CAPABLE: u8 = 0x60;

/// Most blocks one request moves (an LBA28 command moves at most 256 sectors).
pub const MAX_RUN: usize = 64;

/// The region descriptor table: one block needs two entries at most (split at a 64 KiB
/// boundary). Aligned to its size, so it never crosses a 64 KiB boundary itself.
#[repr(C, align(1024))]
struct Prdt([u64; 2 * MAX_RUN]);

/// A request: `n` buffers for the consecutive blocks from `blockno`, read or written together.
/// It lives on its owner's stack while the owner sleeps until `done`.
struct Req {
    blockno: u32,
    write: bool,
    n: usize,
    bufs: [*mut Buf; MAX_RUN],
    done: bool,
    error: bool,
}

struct Queue {
    q: VecDeque<*mut Req>,
    present: bool,
    /// Capacity in 1024-byte blocks (from IDENTIFY).
    blocks: u64,
    /// Bus-master I/O base of the primary channel; 0 when DMA is not used.
    bm: u16,
    /// The request at the head of the queue is a DMA transfer (else programmed I/O).
    head_dma: bool,
    /// The descriptor table the controller reads for the request on the disk.
    prdt: Prdt,
}

// SAFETY: the raw pointers name buffers whose sleeplock their owners hold while queued; the queue
// itself is only touched under its spinlock.
unsafe impl Send for Queue {}

static QUEUE: Spinlock<Queue> = Spinlock::new(
    "ide",
    Queue {
        q: VecDeque::new(),
        present: false,
        blocks: 0,
        bm: 0,
        head_dma: false,
        prdt: Prdt([0; 2 * MAX_RUN]),
    },
);

/// Waits until the disk is not busy; false if it reports an error.
fn wait_ready(check: bool) -> bool {
    let mut n = 0u32;
    let mut r;
    loop {
        r = inb(0x1f7);
        if r & (BSY | DRDY) == DRDY || n > 10_000_000 {
            break;
        }
        n += 1;
    }
    !(check && r & (DF | ERR) != 0)
}

/// Finds the disk and routes its interrupt. Returns false if there is no disk 0.
pub fn init(gsi: u32, flags: u16, apic: u32) -> bool {
    crate::dev::irq::enable(crate::arch::trap::IRQ_IDE, gsi, flags, apic);
    outb(0x1f6, 0xe0); // drive 0, LBA
    let mut present = false;
    for _ in 0..1000 {
        if inb(0x1f7) != 0 {
            present = true;
            break;
        }
    }
    let mut blocks = 0;
    let mut dma_capable = false;
    if present {
        wait_ready(false);
        // IDENTIFY: words 60-61 hold the number of 28-bit-addressable sectors.
        outb(0x3f6, 0x02); // no interrupt for this one
        outb(0x1f7, 0xec);
        if wait_ready(true) {
            let mut id = [0u32; 128];
            insl(0x1f0, &mut id);
            blocks = id[30] as u64 / SECTORS_PER_BLOCK as u64;
            // Word 49 bit 8: the disk does DMA.
            dma_capable = (id[24] >> 16) & (1 << 8) != 0;
        }
        // Two sectors per interrupt: one block.
        outb(0x1f2, SECTORS_PER_BLOCK as u8);
        outb(0x1f7, CMD_SETMUL);
        wait_ready(false);
    }
    let bm = if present && dma_capable {
        find_bus_master()
    } else {
        None
    };
    let mut q = QUEUE.lock();
    q.present = present;
    q.blocks = blocks;
    if let Some(bm) = bm {
        // The table must sit below 4 GiB; it is in the kernel image, which is loaded low.
        match v2p(&q.prdt as *const Prdt as u64) {
            Some(pa) if pa + core::mem::size_of::<Prdt>() as u64 <= 1 << 32 => {
                q.bm = bm;
                outb(bm + BM_CMD, 0);
                outl(bm + BM_PRDT, pa as u32);
                // Tell the firmware-visible bits that drive 0 does DMA; clear stale status.
                outb(bm + BM_STATUS, 0x20 | BM_ERROR | BM_INTR);
            }
            _ => {}
        }
    }
    if present {
        if q.bm != 0 {
            crate::println!(
                "ide: disk 0 by bus-master DMA (registers at port {:#x})",
                q.bm
            );
        } else {
            crate::println!("ide: no bus-master IDE controller: disk 0 by programmed I/O");
        }
    }
    // Room for a request from every process at once, so queuing one never allocates.
    if q.q.try_reserve(xv6_abi::param::NPROC).is_err() {
        q.present = false;
    }
    present
}

/// The disk's size in blocks (0 if unknown).
pub fn capacity_blocks() -> u64 {
    QUEUE.lock().blocks
}

/// The bus-master base of a PCI IDE controller whose primary channel is in compatibility mode
/// (ports 0x1f0 and IRQ 14, the ones this driver uses), with bus mastering turned on.
fn find_bus_master() -> Option<u16> {
    let f = crate::dev::pci::find_class(0x01, 0x01)?; // mass storage, IDE
    let (_, _, progif) = f.class();
    // Bit 0: primary channel in native mode (elsewhere); bit 7: bus-master capable.
    if progif & 0x01 != 0 || progif & 0x80 == 0 {
        return None;
    }
    let bar4 = f.read(0x20);
    if bar4 & 1 == 0 {
        return None; // not an I/O space BAR
    }
    let base = (bar4 & 0xfffc) as u16;
    if base == 0 {
        return None; // not assigned by the firmware
    }
    f.enable(crate::dev::pci::CMD_IO | crate::dev::pci::CMD_BUS_MASTER);
    Some(base)
}

/// The descriptor table for `r` if the controller can reach every buffer, else None.
fn dma_table(r: &Req) -> Option<[u64; 2 * MAX_RUN]> {
    let mut t = [0u64; 2 * MAX_RUN];
    let mut k = 0;
    for &bp in &r.bufs[..r.n] {
        // SAFETY: queued buffers stay valid until their request finishes (owners sleep on it).
        let b = unsafe { &*bp };
        let e = prd::entries(v2p(b.data.as_ptr() as u64)?, BSIZE as u64)?;
        for d in e.into_iter().filter(|&d| d != 0) {
            t[k] = d & !prd::END_OF_TABLE;
            k += 1;
        }
    }
    t[k.checked_sub(1)?] |= prd::END_OF_TABLE;
    Some(t)
}

/// Starts request `r` on the disk: by DMA if the controller can reach its buffers, else (one
/// block) by programmed I/O. Queue lock held.
fn start(q: &mut Queue, r: &Req) {
    let sector = r.blockno as usize * SECTORS_PER_BLOCK;
    let table = if q.bm == 0 { None } else { dma_table(r) };
    let dma = table.is_some();
    if let Some(t) = table {
        q.prdt.0 = t;
    }
    q.head_dma = dma;
    wait_ready(false);
    if dma {
        let bm = q.bm;
        outb(bm + BM_CMD, 0);
        let st = inb(bm + BM_STATUS);
        outb(bm + BM_STATUS, (st & BM_CAPABLE) | BM_ERROR | BM_INTR);
        outb(bm + BM_CMD, if r.write { 0 } else { BM_TO_MEMORY });
    }
    outb(0x3f6, 0); // interrupts on
                    // r.n <= MAX_RUN, so at most 128 sectors (a count of 0 would mean 256).
    outb(0x1f2, (r.n * SECTORS_PER_BLOCK) as u8);
    outb(0x1f3, sector as u8);
    outb(0x1f4, (sector >> 8) as u8);
    outb(0x1f5, (sector >> 16) as u8);
    outb(0x1f6, 0xe0 | ((sector >> 24) & 0x0f) as u8);
    if dma {
        outb(0x1f7, if r.write { CMD_WRITE_DMA } else { CMD_READ_DMA });
        // The descriptors and (for a write) the data must be in memory before the controller
        // starts reading them.
        dma_barrier();
        let dir = if r.write { 0 } else { BM_TO_MEMORY };
        outb(q.bm + BM_CMD, dir | BM_START);
    } else if r.write {
        outb(0x1f7, CMD_WRMUL);
        // SAFETY: the buffer's owner holds its sleeplock and waits for us; data is 1024 bytes,
        // a multiple of 4, and u32-aligned (Buf is align(8)). A programmed-I/O request is one
        // block (`rw_run` sends runs only when DMA can take them).
        let words = unsafe {
            core::slice::from_raw_parts((*r.bufs[0]).data.as_ptr() as *const u32, BSIZE / 4)
        };
        outsl(0x1f0, words);
    } else {
        outb(0x1f7, CMD_RDMUL);
    }
}

/// The disk interrupt: finishes the request at the head of the queue.
pub fn intr() {
    let mut q = QUEUE.lock();
    let Some(&rp) = q.q.front() else { return };
    if q.head_dma {
        let bm = q.bm;
        let st = inb(bm + BM_STATUS);
        if st & BM_INTR == 0 {
            // The disk has not raised its interrupt (the controller latches it in this bit even
            // when the command failed): not the end of our transfer, so the request stays queued.
            return;
        }
        outb(bm + BM_CMD, 0);
        // Reading the disk's status acknowledges its interrupt.
        let disk = inb(0x1f7);
        outb(bm + BM_STATUS, (st & BM_CAPABLE) | BM_ERROR | BM_INTR);
        // The data the controller wrote must not be read from before this point.
        dma_barrier();
        if st & BM_ERROR != 0 || disk & (DF | ERR) != 0 {
            // SAFETY: the queued request's owner sleeps until we set `done`.
            unsafe { (*rp).error = true };
        }
        finish(&mut q);
        return;
    }
    // SAFETY: the queued request's owner sleeps until we set `done`; nothing else touches it
    // or its one buffer.
    let r = unsafe { &mut *rp };
    if !r.write {
        if wait_ready(true) {
            // SAFETY: as above; data is BSIZE bytes, u32-aligned.
            let words = unsafe {
                core::slice::from_raw_parts_mut(
                    (*r.bufs[0]).data.as_mut_ptr() as *mut u32,
                    BSIZE / 4,
                )
            };
            insl(0x1f0, words);
        } else {
            r.error = true;
        }
    }
    finish(&mut q);
}

/// Takes the request at the head of the queue off it, marks it and its buffers done, wakes its
/// owner, and starts the next.
fn finish(q: &mut Queue) {
    let Some(rp) = q.q.pop_front() else { return };
    // SAFETY: the owner of the request just taken off the queue sleeps until we set `done`.
    let r = unsafe { &mut *rp };
    for &bp in &r.bufs[..r.n] {
        // SAFETY: as above: the owner holds each buffer's sleeplock and waits.
        let b = unsafe { &mut *bp };
        if !r.write {
            b.valid = !r.error;
        }
        b.dirty = false;
    }
    r.done = true;
    wait::wakeup(rp as usize);
    if let Some(&next) = q.q.front() {
        // SAFETY: queued requests stay valid until finished (owners sleep on them).
        start(q, unsafe { &*next });
    }
}

/// Queues request `r` and sleeps until it is done; false on a disk error.
fn submit(mut r: Req) -> bool {
    let mut q = QUEUE.lock();
    if !q.present {
        return false;
    }
    if r.blockno as u64 + r.n as u64 > (1u64 << 27) {
        return false; // past 28-bit LBA addressing
    }
    let rp = &mut r as *mut Req;
    q.q.push_back(rp);
    if q.q.len() == 1 {
        start(&mut q, &r);
    }
    // SAFETY: `done` is written by the interrupt handler under the queue lock, which we hold
    // whenever we read it here.
    while !unsafe { core::ptr::read_volatile(&(*rp).done) } {
        q = wait::sleep(rp as usize, q);
    }
    !r.error
}

/// Reads `b` from disk if it is not valid, or writes it if it is dirty. The caller holds its
/// sleeplock. Returns false on a disk error or when there is no disk.
pub fn rw(b: &mut Buf) -> bool {
    let mut bufs = [core::ptr::null_mut(); MAX_RUN];
    bufs[0] = b as *mut Buf;
    submit(Req {
        blockno: b.blockno,
        write: b.dirty,
        n: 1,
        bufs,
        done: false,
        error: false,
    })
}

/// Reads (`write` false) or writes the buffers of a run of consecutive blocks, the first
/// `bufs[0].blockno`, in as few disk commands as DMA allows (one per [`MAX_RUN`] blocks; one per
/// block by programmed I/O). The caller holds every buffer's sleeplock. Returns false on a disk
/// error (some blocks may have moved).
pub fn rw_run(bufs: &mut [&mut Buf], write: bool) -> bool {
    let dma = QUEUE.lock().bm != 0;
    let mut ok = true;
    for chunk in bufs.chunks_mut(MAX_RUN) {
        let Some(first) = chunk.first() else { continue };
        let blockno = first.blockno;
        let reachable = chunk.iter().all(|b| {
            v2p(b.data.as_ptr() as u64).is_some_and(|pa| prd::entries(pa, BSIZE as u64).is_some())
        });
        let mut ptrs = [core::ptr::null_mut(); MAX_RUN];
        for (k, b) in chunk.iter_mut().enumerate() {
            assert_eq!(
                b.blockno,
                blockno + k as u32,
                "ide: a run of blocks with a gap"
            );
            b.dirty = write;
            ptrs[k] = &mut **b as *mut Buf;
        }
        if dma && reachable {
            ok &= submit(Req {
                blockno,
                write,
                n: chunk.len(),
                bufs: ptrs,
                done: false,
                error: false,
            });
        } else {
            // Programmed I/O (or a buffer the controller cannot reach): a block at a time.
            for b in chunk.iter_mut() {
                ok &= rw(b);
            }
        }
    }
    ok
}
