//! The process system calls (xv6's sysproc.c): fork, exit, wait, kill, getpid, sbrk, sleep,
//! uptime, and this project's poweroff.

use crate::arch::trap::TrapFrame;
use crate::proc::proc;
use crate::syscall::syscall::{arg, arg_int};

pub fn fork(_: &TrapFrame) -> i64 {
    proc::fork() as i64
}

pub fn exit(tf: &TrapFrame) -> i64 {
    proc::exit(arg_int(tf, 0))
}

pub fn wait(tf: &TrapFrame) -> i64 {
    proc::wait(arg(tf, 0)) as i64
}

pub fn kill(tf: &TrapFrame) -> i64 {
    proc::kill(arg_int(tf, 0)) as i64
}

pub fn getpid(_: &TrapFrame) -> i64 {
    proc::myproc().pid as i64
}

pub fn sbrk(tf: &TrapFrame) -> i64 {
    match proc::grow(arg_int(tf, 0) as i64) {
        Some(old) => old as i64,
        None => -1,
    }
}

pub fn sleep(tf: &TrapFrame) -> i64 {
    let n = arg_int(tf, 0).max(0) as u64;
    let t0 = crate::dev::irq::ticks();
    // The clock check happens under TICKS, which the timer interrupt takes to wake sleepers.
    let mut t = crate::dev::irq::TICKS.lock();
    while crate::dev::irq::ticks() - t0 < n {
        if proc::myproc().is_killed() {
            return -1;
        }
        let chan = &*t as *const u64 as usize;
        t = crate::proc::sched::sleep(chan, t);
    }
    0
}

pub fn uptime(_: &TrapFrame) -> i64 {
    crate::dev::irq::ticks() as i64
}

pub fn poweroff(tf: &TrapFrame) -> i64 {
    if proc::myproc().pid != 1 {
        return -1; // only init may stop the machine
    }
    // Let running file-system calls finish and commit, and start no more: the image is
    // left consistent with nothing in the log.
    crate::fs::log::shutdown();
    crate::println!();
    crate::arch::poweroff(arg_int(tf, 0))
}
