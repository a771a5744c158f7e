//! The trap dispatcher (xv6's trap.c, the part above the entry code): every trap that the
//! entry code in `arch::trap` saved lands in [`trap`], which sends system calls to the table,
//! device interrupts to their drivers, and faults to the process's memory (or kills it), and
//! panics on a kernel fault. The top of the kernel's layers, so it may call into all of them.

use crate::arch;
use crate::arch::trap::{self, TrapFrame};
use crate::dev::irq;
use crate::proc::proc::{exit, myproc};
use crate::proc::sched::yield_cpu;

/// Called by `alltraps` with the frame it built (GS already the kernel's).
#[no_mangle]
extern "C" fn trap(tf: &mut TrapFrame) {
    match tf.vector {
        // Nothing in this kernel sends NMIs (QEMU's monitor command `nmi` does): whichever mode
        // it interrupted, it is not that code's fault. Ignore it.
        trap::T_NMI => {}
        // Hardware trouble or a kernel bug, whatever the saved CS says (it is undefined for a
        // double fault).
        trap::T_DOUBLE_FAULT | trap::T_MACHINE_CHECK => kernel_trap(tf),
        // A debug trap in kernel mode: the kernel sets no breakpoints and never runs with TF, so
        // it can only be a step trap carried in from user mode. Clear TF and go on.
        trap::T_DEBUG if !tf.is_user() => tf.rflags &= !trap::FL_TF,
        _ if tf.is_user() => user_trap(tf),
        _ => kernel_trap(tf),
    }
}

/// A trap taken in kernel mode: a device interrupt (only possible in the scheduler's idle wait) or
/// a kernel bug.
fn kernel_trap(tf: &mut TrapFrame) {
    if tf.vector != trap::T_DOUBLE_FAULT
        && tf.vector != trap::T_MACHINE_CHECK
        && device_interrupt(tf.vector)
    {
        return;
    }
    if matches!(tf.vector, 11..=13) && trap::is_exit_iretq(tf.rip) {
        bad_user_return(tf);
    }
    crate::dev::panic::set_trap_frame(tf);
    panic!(
        "kernel {} (trap {}) at {:#x}{}",
        trap::trap_name(tf.vector),
        tf.vector,
        tf.rip,
        if matches!(tf.vector, 8 | 14) && crate::proc::proc::is_kstack_guard(arch::cr2()) {
            alloc::format!(", address {:#x}: kernel stack overflow", arch::cr2())
        } else if matches!(tf.vector, 8 | 14) && crate::arch::cpu::is_ist_guard(arch::cr2()) {
            alloc::format!(", address {:#x}: interrupt stack overflow", arch::cr2())
        } else if tf.vector == 14 {
            alloc::format!(", address {:#x}", arch::cr2())
        } else {
            alloc::string::String::new()
        }
    );
}

/// `iretq` to user mode faulted (#NP, #SS or #GP in kernel mode at `trapret_iretq`). The frame it
/// was popping is the process's own, so this is the process's fault, not the kernel's: kill it (as
/// Linux does for a bad IRET frame). Nothing in this kernel builds such a frame (user CS and SS are
/// constants, RIP comes from the CPU or from an ELF entry inside user space, NT never survives into
/// the kernel), so this is a second line of defence. Returns only if the frame was not a user's.
fn bad_user_return(tf: &TrapFrame) {
    // SAFETY: at `trapret_iretq` rsp points at the 5-word iretq frame on this kernel stack; the
    // fault frame was pushed below it, so it is still intact.
    let (rip, cs) = unsafe { (*(tf.rsp as *const u64), *((tf.rsp + 8) as *const u64)) };
    if cs & 3 != 3 || crate::proc::proc::myproc_ptr().is_null() {
        return;
    }
    let p = crate::proc::proc::myproc();
    crate::println!(
        "pid {} {}: {} returning to user mode at rip {:#x}: killed",
        p.pid,
        p.name_str(),
        trap::trap_name(tf.vector),
        rip
    );
    crate::proc::proc::exit(-1);
}

/// A trap from user mode: system calls, device interrupts, and faults (which kill the process
/// unless they are first touches of mapped memory).
fn user_trap(tf: &mut TrapFrame) {
    let p = myproc();
    let mut timer = false;
    match tf.vector {
        trap::T_SYSCALL => {
            if p.is_killed() {
                exit(-1);
            }
            tf.rax = crate::syscall::syscall::dispatch(tf) as u64;
        }
        v if v >= trap::T_IRQ0 => {
            timer = v == trap::T_IRQ0 + trap::IRQ_TIMER;
            if !device_interrupt(v) {
                crate::println!("pid {} {}: unexpected interrupt {v}", p.pid, p.name_str());
            }
        }
        14 => {
            let addr = arch::cr2();
            let write = tf.error & 2 != 0;
            let exec = tf.error & 16 != 0;
            if let Err(why) = p.mm.handle_fault(p.pt, addr, write, exec) {
                crate::println!(
                    "pid {} {}: {why} ({}) at {:#x}, rip {:#x}: killed",
                    p.pid,
                    p.name_str(),
                    if exec {
                        "execute"
                    } else if write {
                        "write"
                    } else {
                        "read"
                    },
                    addr,
                    tf.rip
                );
                p.lock.acquire();
                p.killed = true;
                p.lock.release();
            }
        }
        v => {
            crate::println!(
                "pid {} {}: {} (trap {v}, error {:#x}) at rip {:#x}: killed",
                p.pid,
                p.name_str(),
                crate::arch::trap::trap_name(v),
                tf.error,
                tf.rip
            );
            p.lock.acquire();
            p.killed = true;
            p.lock.release();
        }
    }
    if p.is_killed() {
        exit(-1);
    }
    if timer {
        yield_cpu();
    }
}

/// Handles device interrupt `vector`; false if it is not one.
pub fn device_interrupt(vector: u64) -> bool {
    match vector {
        v if v == trap::T_IRQ0 + trap::IRQ_TIMER => {
            irq::clock_intr();
            irq::eoi();
        }
        v if v == trap::T_IRQ0 + trap::IRQ_COM1 => {
            crate::dev::console::uart_intr();
            irq::eoi();
        }
        v if v == trap::T_IRQ0 + trap::IRQ_IDE => {
            crate::fs::ide::intr();
            irq::eoi();
        }
        v if v == trap::T_IRQ0 + 19 || v == trap::T_IRQ0 + 7 || v == trap::T_SPURIOUS => {
            // LAPIC error or spurious: nothing to do (spurious takes no EOI).
            if v != trap::T_SPURIOUS {
                irq::eoi();
            }
        }
        _ => return false,
    }
    true
}
