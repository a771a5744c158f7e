//! HARDWARE ACCESS: the primary ATA (IDE) disk, by programmed I/O with interrupts (xv6's ide.c).
//!
//! Requests queue up; the head of the queue is on the disk; the interrupt handler finishes it
//! (reading the data for a read), wakes its owner and starts the next.

use crate::arch::{inb, insl, outb, outsl};
use crate::bio::Buf;
use crate::cpu::Spinlock;
use crate::proc;
use alloc::collections::VecDeque;
use xv6_abi::fs::BSIZE;

const SECTOR: usize = 512;
const SECTORS_PER_BLOCK: usize = BSIZE / SECTOR;
const BSY: u8 = 0x80;
const DRDY: u8 = 0x40;
const DF: u8 = 0x20;
const ERR: u8 = 0x01;
const CMD_RDMUL: u8 = 0xc4;
const CMD_WRMUL: u8 = 0xc5;
const CMD_SETMUL: u8 = 0xc6;

struct Queue {
    q: VecDeque<*mut Buf>,
    present: bool,
    /// Capacity in 1024-byte blocks (from IDENTIFY).
    blocks: u64,
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
    crate::irq::enable(crate::trap::IRQ_IDE, gsi, flags, apic);
    outb(0x1f6, 0xe0); // drive 0, LBA
    let mut present = false;
    for _ in 0..1000 {
        if inb(0x1f7) != 0 {
            present = true;
            break;
        }
    }
    let mut blocks = 0;
    if present {
        wait_ready(false);
        // IDENTIFY: words 60-61 hold the number of 28-bit-addressable sectors.
        outb(0x3f6, 0x02); // no interrupt for this one
        outb(0x1f7, 0xec);
        if wait_ready(true) {
            let mut id = [0u32; 128];
            insl(0x1f0, &mut id);
            blocks = id[30] as u64 / SECTORS_PER_BLOCK as u64;
        }
        // Two sectors per interrupt: one block.
        outb(0x1f2, SECTORS_PER_BLOCK as u8);
        outb(0x1f7, CMD_SETMUL);
        wait_ready(false);
    }
    let mut q = QUEUE.lock();
    q.present = present;
    q.blocks = blocks;
    // Room for every buffer at once, so queuing a request never allocates.
    if q.q.try_reserve(crate::bio::NBUF).is_err() {
        q.present = false;
    }
    present
}

/// The disk's size in blocks (0 if unknown).
pub fn capacity_blocks() -> u64 {
    QUEUE.lock().blocks
}

/// Starts the request for `b` on the disk. Queue lock held.
fn start(b: &Buf) {
    let sector = b.blockno as usize * SECTORS_PER_BLOCK;
    wait_ready(false);
    outb(0x3f6, 0); // interrupts on
    outb(0x1f2, SECTORS_PER_BLOCK as u8);
    outb(0x1f3, sector as u8);
    outb(0x1f4, (sector >> 8) as u8);
    outb(0x1f5, (sector >> 16) as u8);
    outb(0x1f6, 0xe0 | ((sector >> 24) & 0x0f) as u8);
    if b.dirty {
        outb(0x1f7, CMD_WRMUL);
        // SAFETY: the buffer's owner holds its sleeplock and waits for us; data is 1024 bytes,
        // a multiple of 4, and u32-aligned (Buf is align(8)).
        let words =
            unsafe { core::slice::from_raw_parts(b.data.as_ptr() as *const u32, BSIZE / 4) };
        outsl(0x1f0, words);
    } else {
        outb(0x1f7, CMD_RDMUL);
    }
}

/// The disk interrupt: finishes the request at the head of the queue.
pub fn intr() {
    let mut q = QUEUE.lock();
    let Some(bp) = q.q.pop_front() else { return };
    // SAFETY: the queued buffer's owner sleeps until we clear `disk`; nothing else touches it.
    let b = unsafe { &mut *bp };
    if !b.dirty {
        if wait_ready(true) {
            // SAFETY: as above; data is BSIZE bytes, u32-aligned.
            let words = unsafe {
                core::slice::from_raw_parts_mut(b.data.as_mut_ptr() as *mut u32, BSIZE / 4)
            };
            insl(0x1f0, words);
        } else {
            b.error = true;
        }
    }
    b.valid = !b.error;
    b.dirty = false;
    b.disk = false;
    proc::wakeup(bp as usize);
    if let Some(&next) = q.q.front() {
        // SAFETY: queued buffers stay valid until finished (owners sleep on them).
        start(unsafe { &*next });
    }
}

/// Reads `b` from disk if it is not valid, or writes it if it is dirty. The caller holds its
/// sleeplock. Returns false on a disk error or when there is no disk.
pub fn rw(b: &mut Buf) -> bool {
    let mut q = QUEUE.lock();
    if !q.present {
        return false;
    }
    if b.blockno as u64 >= (1u64 << 27) {
        return false; // past 28-bit LBA addressing
    }
    b.error = false;
    b.disk = true;
    let bp = b as *mut Buf;
    q.q.push_back(bp);
    if q.q.len() == 1 {
        start(b);
    }
    // SAFETY: `disk` is written by the interrupt handler under the queue lock, which we hold
    // whenever we read it here.
    while unsafe { core::ptr::read_volatile(&(*bp).disk) } {
        q = proc::sleep(bp as usize, q);
    }
    !b.error
}
