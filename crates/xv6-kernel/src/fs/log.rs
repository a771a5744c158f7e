//! The crash-safe log (xv6's log.c): every file-system system call is a transaction
//! (`begin_op` .. `end_op`); blocks it writes go first to the on-disk log, and only when the log's
//! header says "committed" are they installed at home. Recovery at mount replays a committed log.

use crate::fs::bio;
use crate::fs::ide::MAX_RUN;
use crate::sync::spinlock::Spinlock;
use crate::sync::wait;
use alloc::vec::Vec;
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

/// Sets up the log from the superblock and recovers a committed transaction. Called once, from
/// the first process, which then starts [`flusher`] as a kernel thread.
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

/// Copies committed blocks from the log to their homes, in order of home block number so that
/// neighbours go to the disk in one request. `recovering`: at mount, from the log blocks on the
/// disk; otherwise from the cache, where the logged blocks are pinned (and are unpinned here).
fn install(recovering: bool) {
    let (start, n, blocks) = {
        let l = LOG.lock();
        (l.start, l.n, l.blocks)
    };
    if recovering {
        // The log area in as few requests as possible.
        let mut i = 0;
        while i < n {
            let k = (n - i).min(MAX_RUN);
            let mut ahead = [0u32; MAX_RUN];
            for (j, a) in ahead.iter_mut().enumerate().take(k) {
                *a = start + 1 + (i + j) as u32;
            }
            bio::read_ahead(&ahead[..k]);
            i += k;
        }
    }
    // (home, slot in the log), by home.
    let mut order = [(0u32, 0u32); LOGBLOCKS];
    for (i, o) in order.iter_mut().enumerate().take(n) {
        *o = (blocks[i], i as u32);
    }
    order[..n].sort_unstable();
    let mut run: Vec<bio::BufGuard> = Vec::new();
    let _ = run.try_reserve_exact(MAX_RUN);
    for (k, &(home, slot)) in order[..n].iter().enumerate() {
        let to = if recovering {
            let from = bio::bread(start + 1 + slot).expect("log: cannot read a log block");
            let mut to = bio::overwrite(home);
            to.copy_from_slice(&from[..]);
            to
        } else {
            bio::bread(home).expect("log: cannot read a cached block")
        };
        if run.len() == run.capacity() {
            flush_home(&mut run, recovering);
        }
        run.push(to);
        let next_follows = order[..n].get(k + 1).is_some_and(|&(h, _)| h == home + 1);
        if !next_follows {
            flush_home(&mut run, recovering);
        }
    }
    flush_home(&mut run, recovering);
}

/// Writes a run of consecutive home blocks and releases them (and their pins).
fn flush_home(run: &mut Vec<bio::BufGuard>, recovering: bool) {
    if run.is_empty() {
        return;
    }
    if !bio::write_run(run) {
        panic!(
            "log: disk error installing blocks from {}",
            run[0].blockno()
        );
    }
    for g in run.drain(..) {
        let home = g.blockno();
        drop(g);
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
            l = wait::sleep(chan(), l);
        } else if l.n + (l.outstanding + 1) * MAXOPBLOCKS > l.capacity {
            if l.outstanding == 0 {
                l = commit_locked(l);
            } else {
                l = wait::sleep(chan(), l);
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
            l = wait::sleep(chan(), l);
        } else if l.outstanding > 0 {
            l.want_commit = true;
            l = wait::sleep(chan(), l);
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
        l.dirty_since = crate::dev::irq::ticks().max(1);
        drop(l);
        wait::wakeup(flusher_chan());
        wait::wakeup(chan());
        return;
    }
    drop(l);
    wait::wakeup(chan());
}

/// Commits the log with `l` held and no operation running; returns the guard re-acquired.
fn commit_locked(
    mut l: crate::sync::spinlock::SpinGuard<'static, Log>,
) -> crate::sync::spinlock::SpinGuard<'static, Log> {
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
    wait::wakeup(chan());
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
            l = wait::sleep(chan(), l);
        }
    }
}

/// The flusher (a kernel thread): commits finished operations [`COMMIT_DELAY_TICKS`] after the
/// log first held them, so work nobody `fsync`s still reaches the disk soon.
pub extern "C" fn flusher() -> ! {
    loop {
        let mut l = LOG.lock();
        while l.dirty_since == 0 || l.committing {
            l = wait::sleep(flusher_chan(), l);
        }
        let due = l.dirty_since + COMMIT_DELAY_TICKS;
        drop(l);
        sleep_until(due);
        force();
    }
}

/// Sleeps until the clock reaches tick `due`.
fn sleep_until(due: u64) {
    let mut t = crate::dev::irq::TICKS.lock();
    while crate::dev::irq::ticks() < due {
        let c = &*t as *const u64 as usize;
        t = wait::sleep(c, t);
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
    // The cached copies go to the log area, up to MAX_RUN blocks a request: the log blocks are
    // consecutive, and only the log uses them, so nobody else ever waits for their buffers.
    let mut run: Vec<bio::BufGuard> = Vec::new();
    let _ = run.try_reserve_exact(MAX_RUN);
    for (i, &home) in blocks.iter().enumerate().take(n) {
        let mut to = bio::overwrite(start + 1 + i as u32);
        let from = bio::bread(home).expect("log: cannot read a cached block");
        to.copy_from_slice(&from[..]);
        drop(from);
        if run.len() == run.capacity() {
            write_log_run(&mut run);
        }
        run.push(to);
    }
    write_log_run(&mut run);
    write_head(); // the commit point
    install(false);
    LOG.lock().n = 0;
    write_head();
}

fn write_log_run(run: &mut Vec<bio::BufGuard>) {
    if !run.is_empty() && !bio::write_run(run) {
        panic!("log: disk error writing the log");
    }
    run.clear();
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
