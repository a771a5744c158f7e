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
    /// A commit is wanted as soon as the running operations end (fsync, the flusher, shutdown):
    /// new operations wait, so the running ones drain.
    want_commit: bool,
    /// Commits finished since boot (`fsync` waits for this to pass its target).
    commits: u64,
    /// The tick at which the log last went from clean to holding uncommitted blocks.
    dirty_since: u64,
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
        want_commit: false,
        commits: 0,
        dirty_since: 0,
        n: 0,
        blocks: [0; LOGBLOCKS],
    },
);

/// How long finished operations may wait in the log before the flusher commits them: the most
/// a crash can lose of work nobody asked to be durable (with `fsync`).
pub const COMMIT_DELAY_TICKS: u64 = 100;

/// Waiting for a change of `committing`, `want_commit` or `outstanding`, or for a commit.
fn chan() -> usize {
    &LOG as *const _ as usize
}

/// The flusher waits here for the log to hold uncommitted blocks.
fn flusher_chan() -> usize {
    chan() + 1
}

/// Sets up the log from the superblock, recovers a committed transaction, and starts the
/// flusher. Called once, from the first process.
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
    recover()?;
    proc::spawn_kernel_thread(b"logflush", flusher);
    Ok(())
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

/// Starts a file-system operation: waits while the log is committing (or about to) or could
/// overflow; when it could overflow and nothing is running, commits the finished operations first.
pub fn begin_op() {
    let mut l = LOG.lock();
    loop {
        if l.committing || l.want_commit {
            l = proc::sleep(chan(), l);
        } else if l.n + (l.outstanding + 1) * MAXOPBLOCKS > l.capacity {
            if l.outstanding == 0 {
                l = commit_locked(l);
            } else {
                l = proc::sleep(chan(), l);
            }
        } else {
            l.outstanding += 1;
            break;
        }
    }
}

/// For power-off: commits what the log holds, waits until nothing runs, then keeps new
/// operations from starting (they wait for ever), so the disk holds only whole, installed
/// transactions.
pub fn shutdown() {
    let mut l = LOG.lock();
    loop {
        if l.committing {
            l = proc::sleep(chan(), l);
        } else if l.outstanding > 0 {
            l.want_commit = true;
            l = proc::sleep(chan(), l);
        } else if l.n > 0 {
            l = commit_locked(l);
        } else {
            break;
        }
    }
    l.committing = true;
}

/// Ends an operation. Its blocks stay in the log (and pinned in the cache) with those of the
/// operations before it: the group is committed when the last running operation ends and a
/// commit is wanted, or the log is nearly full; otherwise the flusher commits it within
/// [`COMMIT_DELAY_TICKS`].
pub fn end_op() {
    let mut l = LOG.lock();
    if l.committing {
        panic!("log: end_op while committing");
    }
    l.outstanding -= 1;
    if l.outstanding == 0 && (l.want_commit || l.n + MAXOPBLOCKS > l.capacity) {
        l = commit_locked(l);
    } else if l.n > 0 && l.dirty_since == 0 {
        l.dirty_since = crate::irq::ticks().max(1);
        drop(l);
        proc::wakeup(flusher_chan());
        proc::wakeup(chan());
        return;
    }
    drop(l);
    proc::wakeup(chan());
}

/// Commits the log with `l` held and no operation running; returns the guard re-acquired.
fn commit_locked(
    mut l: crate::cpu::SpinGuard<'static, Log>,
) -> crate::cpu::SpinGuard<'static, Log> {
    debug_assert!(l.outstanding == 0 && !l.committing);
    l.committing = true;
    drop(l);
    commit();
    let mut l = LOG.lock();
    l.committing = false;
    l.want_commit = false;
    l.dirty_since = 0;
    l.commits += 1;
    drop(l);
    proc::wakeup(chan());
    LOG.lock()
}

/// Makes every operation that has ended durable: returns after a commit that includes them
/// (`fsync`). A commit that is running now includes them (it began with no operation running).
pub fn force() {
    let mut l = LOG.lock();
    if l.n == 0 && !l.committing {
        return;
    }
    let target = l.commits + 1;
    while l.commits < target {
        if !l.committing && l.outstanding == 0 {
            l = commit_locked(l);
        } else {
            // The last running operation commits when it ends.
            l.want_commit |= !l.committing;
            l = proc::sleep(chan(), l);
        }
    }
}

/// The flusher (a kernel thread): commits finished operations [`COMMIT_DELAY_TICKS`] after the
/// log first held them, so work nobody `fsync`s still reaches the disk soon.
extern "C" fn flusher() -> ! {
    loop {
        let mut l = LOG.lock();
        while l.dirty_since == 0 || l.committing {
            l = proc::sleep(flusher_chan(), l);
        }
        let due = l.dirty_since + COMMIT_DELAY_TICKS;
        drop(l);
        sleep_until(due);
        force();
    }
}

/// Sleeps until the clock reaches tick `due`.
fn sleep_until(due: u64) {
    let mut t = crate::irq::TICKS.lock();
    while crate::irq::ticks() < due {
        let c = &*t as *const u64 as usize;
        t = proc::sleep(c, t);
    }
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
