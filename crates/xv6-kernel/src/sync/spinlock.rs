//! Spin locks (xv6's spinlock.c): a lock that spins with interrupts off on this CPU while held,
//! so that an interrupt handler on the same CPU can never wait for it. `Spinlock<T>` owns its
//! data and hands it out through a guard; `RawSpinlock` is for the locks whose ownership passes
//! through a context switch (a process's own lock), which a guard cannot express.

use crate::arch::cpu::{mycpu, pop_off, push_off};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A spinlock without data, for the few places where ownership passes through a context switch
/// (a process's lock is taken by one kernel thread and released by the scheduler, or the other way
/// round), which a guard cannot express.
pub struct RawSpinlock {
    locked: AtomicBool,
    /// CPU id + 1 of the holder, 0 when free (for `holding`).
    owner: AtomicUsize,
    name: &'static str,
}

impl RawSpinlock {
    /// A new, unlocked lock.
    pub const fn new(name: &'static str) -> Self {
        RawSpinlock {
            locked: AtomicBool::new(false),
            owner: AtomicUsize::new(0),
            name,
        }
    }

    /// Acquires the lock, spinning, with interrupts off until the matching `release`.
    pub fn acquire(&self) {
        push_off();
        if self.holding() {
            panic!("acquire: lock `{}` already held by this CPU", self.name);
        }
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        self.owner.store(mycpu().id + 1, Ordering::Relaxed);
    }

    /// Releases the lock.
    pub fn release(&self) {
        if !self.holding() {
            panic!("release: lock `{}` not held", self.name);
        }
        self.owner.store(0, Ordering::Relaxed);
        self.locked.store(false, Ordering::Release);
        pop_off();
    }

    /// Whether this CPU holds the lock. Interrupts must be off.
    pub fn holding(&self) -> bool {
        self.locked.load(Ordering::Relaxed) && self.owner.load(Ordering::Relaxed) == mycpu().id + 1
    }
}

/// A spinlock that disables interrupts while held (xv6's `struct spinlock`), owning its data.
pub struct Spinlock<T> {
    raw: RawSpinlock,
    data: UnsafeCell<T>,
}

// SAFETY: the data is reached only through a guard, which exists on one CPU at a time.
unsafe impl<T: Send> Sync for Spinlock<T> {}
// SAFETY: moving the lock moves the data.
unsafe impl<T: Send> Send for Spinlock<T> {}

impl<T> Spinlock<T> {
    /// A new, unlocked lock.
    pub const fn new(name: &'static str, data: T) -> Self {
        Spinlock {
            raw: RawSpinlock::new(name),
            data: UnsafeCell::new(data),
        }
    }

    /// Acquires the lock, spinning; interrupts stay off until the guard is dropped.
    pub fn lock(&self) -> SpinGuard<'_, T> {
        self.raw.acquire();
        SpinGuard { lock: self }
    }

    /// The lock without its data (`sync::wait::sleep` hands it to the scheduler).
    pub fn raw(&self) -> &RawSpinlock {
        &self.raw
    }
}

/// Access to the data of a held [`Spinlock`].
pub struct SpinGuard<'a, T> {
    lock: &'a Spinlock<T>,
}

impl<'a, T> SpinGuard<'a, T> {
    /// The lock this guard holds.
    pub fn lock_ref(&self) -> &'a Spinlock<T> {
        self.lock
    }

    /// A guard for `lock`, which this CPU already holds without one (after a sleep gave it back).
    ///
    /// # Safety
    /// This CPU must hold `lock`'s raw lock, and no other guard for it may exist.
    pub unsafe fn from_held(lock: &'a Spinlock<T>) -> SpinGuard<'a, T> {
        SpinGuard { lock }
    }
}

impl<T> core::ops::Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves the lock is held by us.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> core::ops::DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves the lock is held by us, and `&mut self` makes this unique.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.raw.release();
    }
}
