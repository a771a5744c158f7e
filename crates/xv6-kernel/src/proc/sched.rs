//! The scheduler (the second half of xv6's proc.c): giving up the CPU (`sched`, `yield_cpu`),
//! sleeping on and waking a channel through the wait buckets, each CPU's scheduler loop, and
//! the `sync::wait::Scheduler` that the lower layers sleep through. See `proc.rs` for the
//! locking rules.

use super::proc::{myproc, myproc_ptr, slot, Proc, State};
use crate::arch;
use crate::arch::cpu::mycpu;
use crate::mm::mem;
use crate::sync::spinlock::RawSpinlock;
use core::sync::atomic::{AtomicU64, Ordering};
use xv6_abi::param::NPROC;

extern "C" {
    fn swtch(old: *mut arch::cpu::Context, new: *const arch::cpu::Context);
}

/// Switches to the scheduler. The caller holds exactly its own process lock and has changed its
/// state.
pub(super) fn sched() {
    let p = myproc();
    let c = mycpu();
    if !p.lock.holding() {
        panic!("sched: process lock not held");
    }
    if c.ncli != 1 {
        panic!("sched: {} locks held", c.ncli);
    }
    if p.state == State::Running {
        panic!("sched: process still running");
    }
    if arch::interrupts_enabled() {
        panic!("sched: interrupts enabled");
    }
    let intena = c.intena;
    // The user's FPU/SSE registers go with the process; the next one loads its own.
    arch::fxsave(&mut p.fpu);
    // SAFETY: both contexts are valid: ours is saved here, the scheduler's was saved by its swtch.
    unsafe { swtch(&mut p.context, &mycpu().scheduler) };
    mycpu().intena = intena;
}

/// Gives up the CPU for one round.
pub fn yield_cpu() {
    let p = myproc();
    p.lock.acquire();
    p.state = State::Runnable;
    sched();
    p.lock.release();
}

/// Wait channels: which process slots may be sleeping on a channel that hashes to each bucket.
///
/// A sleeper sets its slot's bit in its channel's bucket while holding its own lock, before it
/// lets go of the condition's lock; `wakeup` visits only the slots whose bits are set in the
/// channel's bucket (instead of locking every slot) and, holding each one's lock, wakes it if it
/// sleeps on the channel. A bit whose slot no longer sleeps on a channel of that bucket (it was
/// woken, or killed awake) is cleared by the next `wakeup` that finds it, also under the slot's
/// lock, so a bit is only ever set or cleared under its slot's lock. No wakeup is lost: a waker
/// changes the condition under the condition's lock and then reads the bucket, and the sleeper's
/// bit was set before it released that lock (xv6's argument, with the bucket standing in for the
/// scan of the table).
static WAIT_BUCKETS: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];

const _: () = assert!(NPROC <= 64, "a bucket is one bit per process slot");

fn bucket(chan: usize) -> &'static AtomicU64 {
    // Fibonacci hashing of the channel (usually an address).
    let h = (chan as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58;
    &WAIT_BUCKETS[h as usize]
}

/// The slot number of process `p`.
fn slot_index(p: *const Proc) -> usize {
    (p as usize - slot(0) as usize) / core::mem::size_of::<core::cell::UnsafeCell<Proc>>()
}

/// Marks `p` (whose lock the caller holds) as sleeping on `chan`.
fn enter_sleep(p: &mut Proc, chan: usize) {
    bucket(chan).fetch_or(1 << slot_index(p), Ordering::AcqRel);
    p.chan = chan;
    p.state = State::Sleeping;
}

/// Sleeps on `chan`, releasing `lk` (held on entry) while asleep and holding it again on return.
pub fn sleep_raw(chan: usize, lk: &RawSpinlock) {
    let p = myproc();
    p.lock.acquire();
    enter_sleep(p, chan);
    lk.release();
    sched();
    p.chan = 0;
    p.lock.release();
    lk.acquire();
}

/// [`sleep_raw`] for a [`Spinlock`] guard: the guard comes back re-acquired.
pub fn sleep<'a, T>(
    chan: usize,
    guard: crate::sync::spinlock::SpinGuard<'a, T>,
) -> crate::sync::spinlock::SpinGuard<'a, T> {
    let lock = guard.lock_ref();
    let p = myproc();
    p.lock.acquire();
    enter_sleep(p, chan);
    drop(guard);
    sched();
    p.chan = 0;
    p.lock.release();
    lock.lock()
}

/// Wakes every process sleeping on `chan`, visiting only the slots its wait bucket names (see
/// [`WAIT_BUCKETS`]). Must be called without any process lock held.
pub fn wakeup(chan: usize) {
    let me = myproc_ptr();
    let b = bucket(chan);
    let mut mask = b.load(Ordering::Acquire);
    while mask != 0 {
        let i = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        let pp = slot(i);
        if pp == me {
            continue;
        }
        // SAFETY: state and chan read and written under the slot's lock.
        let p = unsafe { &mut *pp };
        p.lock.acquire();
        let sleeping = p.state == State::Sleeping;
        if sleeping && p.chan == chan {
            p.state = State::Runnable;
            b.fetch_and(!(1 << i), Ordering::AcqRel);
        } else if !(sleeping && core::ptr::eq(bucket(p.chan), b)) {
            // Stale: woken otherwise (kill) or gone; its next sleep sets the bit again.
            b.fetch_and(!(1 << i), Ordering::AcqRel);
        }
        p.lock.release();
    }
}

/// Each CPU's scheduler loop: runs runnable processes round-robin; waits for an interrupt when
/// there are none.
pub fn scheduler() -> ! {
    let c = mycpu();
    c.proc = core::ptr::null_mut();
    let mut next = 0usize;
    loop {
        // Take the interrupts that are waiting, even when there is always a process to run (one
        // that gives up the CPU in the kernel, like a long console write, never goes through
        // user mode, where interrupts are on).
        crate::dev::irq::interrupt_window();
        let mut found = false;
        for k in 0..NPROC {
            let i = (next + k) % NPROC;
            // SAFETY: state read and written under the slot's lock.
            let p = unsafe { &mut *slot(i) };
            p.lock.acquire();
            if p.state == State::Runnable {
                p.state = State::Running;
                let c = mycpu();
                c.proc = p as *mut Proc as *mut ();
                c.kstack_top = p.kstack_top;
                c.tss.rsp0 = p.kstack_top;
                // SAFETY: the process's table maps the kernel half like every other.
                unsafe { arch::set_cr3(p.pt.root) };
                arch::fxrstor(&p.fpu);
                // SAFETY: the process's context was saved by sched or built by alloc_proc.
                unsafe { swtch(&mut c.scheduler, &p.context) };
                // SAFETY: the kernel table maps the kernel; the process may be freed now.
                unsafe { arch::set_cr3(mem::kernel_pt().root) };
                mycpu().proc = core::ptr::null_mut();
                found = true;
                next = i + 1;
            }
            p.lock.release();
            if found {
                break;
            }
        }
        if !found {
            // SAFETY: the IDT is loaded; no lock is held here.
            unsafe { arch::wait_for_interrupt() };
        }
    }
}

/// The process table as the scheduler that `sync::wait` calls (installed by [`init`]).
pub(super) struct ProcScheduler;

pub(super) static PROC_SCHEDULER: ProcScheduler = ProcScheduler;

impl crate::sync::wait::Scheduler for ProcScheduler {
    fn sleep(&self, chan: usize, lk: &RawSpinlock) {
        sleep_raw(chan, lk);
    }
    fn wakeup(&self, chan: usize) {
        wakeup(chan);
    }
    fn killed(&self) -> bool {
        myproc().is_killed()
    }
    fn pid(&self) -> i32 {
        myproc().pid
    }
    fn yield_cpu(&self) {
        yield_cpu();
    }
    fn dump(&self) {
        dump();
    }
}

/// Prints the process list (Ctrl-P on the console).
pub fn dump() {
    crate::println!();
    for i in 0..NPROC {
        // SAFETY: a debugging aid: reads racy fields without locks, like xv6's procdump.
        let p = unsafe { &*slot(i) };
        if p.state == State::Unused {
            continue;
        }
        crate::println!("{} {:?} {}", p.pid, p.state, p.name_str());
    }
}
