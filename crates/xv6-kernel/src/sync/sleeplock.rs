//! Sleep locks: held across disk I/O, so a waiter sleeps instead of spinning (xv6's sleeplock.c).

use crate::sync::spinlock::Spinlock;
use crate::sync::wait;

/// A lock whose waiters sleep.
pub struct Sleeplock {
    /// (locked, holder pid).
    inner: Spinlock<(bool, i32)>,
}

impl Sleeplock {
    /// A new, unlocked lock.
    pub const fn new(name: &'static str) -> Sleeplock {
        Sleeplock {
            inner: Spinlock::new(name, (false, 0)),
        }
    }

    fn chan(&self) -> usize {
        self as *const Sleeplock as usize
    }

    /// Acquires the lock, sleeping while another process holds it.
    pub fn acquire(&self) {
        let mut g = self.inner.lock();
        while g.0 {
            g = wait::sleep(self.chan(), g);
        }
        *g = (true, wait::pid());
    }

    /// Releases the lock and wakes its waiters.
    pub fn release(&self) {
        let mut g = self.inner.lock();
        *g = (false, 0);
        drop(g);
        wait::wakeup(self.chan());
    }
}
