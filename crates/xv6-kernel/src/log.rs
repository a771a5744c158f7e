//! The crash-safe log (xv6's log.c): every file-system system call is a transaction
//! (`begin_op` .. `end_op`); blocks it writes go first to the on-disk log, and only when the log's
//! header says "committed" are they installed at home. Recovery at mount replays a committed log.

use crate::bio;
use crate::cpu::Spinlock;
use crate::proc;
use xv6_abi::fs::{LogHeader, LOGBLOCKS, MAXOPBLOCKS};

struct Log {
    start: u32,
    /// Blocks the log can hold (header excluded).
    capacity: usize,
    /// Operations executing.
    outstanding: usize,
    committing: bool,
    n: usize,
    blocks: [u32; LOGBLOCKS],
}

static LOG: Spinlock<Log> = Spinlock::new(
    "log",
    Log {
        start: 0,
        capacity: 0,
        outstanding: 0,
        committing: false,
        n: 0,
        blocks: [0; LOGBLOCKS],
    },
);

fn chan() -> usize {
    &LOG as *const _ as usize
}

/// Sets up the log from the superblock and recovers a committed transaction.
pub fn init(logstart: u32, nlog: u32) -> Result<(), &'static str> {
    let capacity = (nlog as usize).saturating_sub(1).min(LOGBLOCKS);
    if capacity < MAXOPBLOCKS {
        return Err("the log is smaller than one transaction");
    }
    {
        let mut l = LOG.lock();
        l.start = logstart;
        l.capacity = capacity;
    }
    recover()
}

fn read_head() -> Result<(), &'static str> {
    let start = LOG.lock().start;
    let b = bio::bread(start).ok_or("cannot read the log header")?;
    let cap = LOG.lock().capacity;
    let h = LogHeader::decode(&b[..], cap).map_err(|_| "the log header is corrupt")?;
    drop(b);
    let mut l = LOG.lock();
    l.n = h.n as usize;
    l.blocks = h.block;
    Ok(())
}

fn write_head() {
    let (start, n, blocks) = {
        let l = LOG.lock();
        (l.start, l.n, l.blocks)
    };
    let mut b = bio::bread(start).expect("log: cannot read the header block");
    let h = LogHeader {
        n: n as u32,
        block: blocks,
    };
    h.encode(&mut b[..]);
    if !b.write() {
        panic!("log: disk error writing the header");
    }
}

/// Copies committed blocks from the log to their homes.
fn install(recovering: bool) {
    let (start, n, blocks) = {
        let l = LOG.lock();
        (l.start, l.n, l.blocks)
    };
    for (i, &home) in blocks.iter().enumerate().take(n) {
        let from = bio::bread(start + 1 + i as u32).expect("log: cannot read a log block");
        let mut to = bio::bread(home).expect("log: cannot read a home block");
        to.copy_from_slice(&from[..]);
        if !to.write() {
            panic!("log: disk error installing block {home}");
        }
        if !recovering {
            bio::unpin(home);
        }
    }
}

fn recover() -> Result<(), &'static str> {
    read_head()?;
    let n = LOG.lock().n;
    if n > 0 {
        crate::println!("fs: recovering {n} logged blocks");
    }
    install(true);
    LOG.lock().n = 0;
    write_head();
    Ok(())
}

/// Starts a file-system operation: waits while the log is committing or could overflow.
pub fn begin_op() {
    let mut l = LOG.lock();
    loop {
        if l.committing || l.n + (l.outstanding + 1) * MAXOPBLOCKS > l.capacity {
            l = proc::sleep(chan(), l);
        } else {
            l.outstanding += 1;
            break;
        }
    }
}

/// For power-off: waits until no operation is running or committing, then keeps new ones from
/// starting (they wait for ever), so the disk holds only whole, installed transactions.
pub fn shutdown() {
    let mut l = LOG.lock();
    while l.outstanding > 0 || l.committing {
        l = proc::sleep(chan(), l);
    }
    l.committing = true;
}

/// Ends an operation; the last one out commits.
pub fn end_op() {
    let mut l = LOG.lock();
    l.outstanding -= 1;
    if l.committing {
        panic!("log: end_op while committing");
    }
    let commit_now = l.outstanding == 0;
    if commit_now {
        l.committing = true;
    }
    drop(l);
    if commit_now {
        commit();
        LOG.lock().committing = false;
    }
    proc::wakeup(chan());
}

fn commit() {
    let (start, n, blocks) = {
        let l = LOG.lock();
        (l.start, l.n, l.blocks)
    };
    if n == 0 {
        return;
    }
    for (i, &home) in blocks.iter().enumerate().take(n) {
        let mut to = bio::bread(start + 1 + i as u32).expect("log: cannot read a log block");
        let from = bio::bread(home).expect("log: cannot read a cached block");
        to.copy_from_slice(&from[..]);
        drop(from);
        if !to.write() {
            panic!("log: disk error writing the log");
        }
    }
    write_head(); // the commit point
    install(false);
    LOG.lock().n = 0;
    write_head();
}

/// Records that the operation modified `b` (instead of writing it): it is logged at commit and
/// stays cached until then.
pub fn log_write(b: &bio::BufGuard) {
    let mut l = LOG.lock();
    let blockno = b.blockno();
    if l.outstanding < 1 {
        panic!("log_write outside of a transaction");
    }
    let n = l.n;
    if l.blocks[..n].contains(&blockno) {
        return; // absorbed
    }
    if n >= l.capacity {
        panic!("log: transaction too big");
    }
    l.blocks[n] = blockno;
    l.n += 1;
    // Pinned in the same hold that records it (as xv6's log_write), so that no commit can come
    // between recording the block and pinning it (lock order: log, then bcache).
    b.pin();
    drop(l);
}
