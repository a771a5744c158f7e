//! Waiting on a channel: xv6's `sleep` and `wakeup`, for every layer below the process table.
//!
//! A channel is any address that both sides agree on (usually the address of the thing waited
//! for). `sleep(chan, guard)` gives up the CPU until someone calls `wakeup(chan)`, releasing the
//! guard's lock while asleep: the caller checks its condition under that lock, and whoever makes
//! the condition true takes the same lock before calling `wakeup`, so no wakeup is lost between
//! the check and the sleep. Sleepers must check their condition again when they wake.
//!
//! The scheduler that does the work lives above this layer (`proc::proc`), so it is reached
//! through the [`Scheduler`] interface, which `proc` installs once at boot. The file system,
//! pipes, the console and the disk driver import this module, not the process table.

use crate::sync::spinlock::{RawSpinlock, SpinGuard};

/// What the layers below `proc` need from the scheduler.
pub trait Scheduler: Sync {
    /// Puts the running process to sleep on `chan`: releases `lk` (held on entry) only once the
    /// process is marked asleep, and holds it again on return.
    fn sleep(&self, chan: usize, lk: &RawSpinlock);
    /// Makes every process sleeping on `chan` runnable. May be called from interrupt handlers.
    fn wakeup(&self, chan: usize);
    /// Whether the running process has been killed (long waits give up then).
    fn killed(&self) -> bool;
    /// The running process's id (a sleep lock records its holder).
    fn pid(&self) -> i32;
    /// Gives up the CPU for one round (long kernel loops stay fair).
    fn yield_cpu(&self);
    /// Prints the process table (the console's ^P).
    fn dump(&self);
}

static SCHEDULER: spin::Once<&'static dyn Scheduler> = spin::Once::new();

/// Installs the scheduler (once, at boot, before any process runs).
pub fn install(s: &'static dyn Scheduler) {
    SCHEDULER.call_once(|| s);
}

fn scheduler() -> &'static dyn Scheduler {
    *SCHEDULER
        .get()
        .expect("sync::wait used before the scheduler was installed")
}

/// Sleeps on `chan` with the lock of `guard` released while asleep; returns the guard, its lock
/// held again.
pub fn sleep<'a, T>(chan: usize, guard: SpinGuard<'a, T>) -> SpinGuard<'a, T> {
    let lock = guard.lock_ref();
    // The scheduler releases and re-acquires the raw lock itself; the guard must not release it.
    core::mem::forget(guard);
    scheduler().sleep(chan, lock.raw());
    // SAFETY: `Scheduler::sleep` returns with the lock held again, by this CPU.
    unsafe { SpinGuard::from_held(lock) }
}

/// Wakes every process sleeping on `chan`.
pub fn wakeup(chan: usize) {
    scheduler().wakeup(chan);
}

/// Whether the running process has been killed.
pub fn killed() -> bool {
    scheduler().killed()
}

/// The running process's id.
pub fn pid() -> i32 {
    scheduler().pid()
}

/// Gives up the CPU for one round.
pub fn yield_cpu() {
    scheduler().yield_cpu();
}

/// Prints the process table.
pub fn dump() {
    scheduler().dump();
}
