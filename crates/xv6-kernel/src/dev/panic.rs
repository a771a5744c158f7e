//! Kernel panics: a readable report (message, location, CPU, the trap frame if a fault caused it,
//! and a backtrace of kernel frames by the frame-pointer chain), then every CPU stops.

use crate::arch;
use crate::arch::trap::TrapFrame;
use crate::dev::console::PANICKED;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// Status the machine powers off with after a kernel panic.
pub const PANIC_STATUS: i32 = 127;

/// CPU id + 1 of the CPU that panicked first.
static PANIC_CPU: AtomicUsize = AtomicUsize::new(0);
static TRAP_FRAME: AtomicPtr<TrapFrame> = AtomicPtr::new(core::ptr::null_mut());

/// Whether this CPU is the one that panicked.
pub fn this_cpu_panicked() -> bool {
    let p = PANIC_CPU.load(Ordering::Relaxed);
    p != 0 && p == crate::arch::cpu::mycpu().id + 1
}

/// Records the frame of the fault about to panic, for the report.
pub fn set_trap_frame(tf: &mut TrapFrame) {
    TRAP_FRAME.store(tf, Ordering::Relaxed);
}

/// Prints return addresses up the frame-pointer chain starting at `rbp` (kernel frames only).
pub fn backtrace(mut rbp: u64) {
    crate::println!(
        "backtrace (addr2line -e target/kernel/x86_64-unknown-none/release/xv6-kernel ADDR):"
    );
    for _ in 0..32 {
        if rbp < xv6_kernel::layout::PHYS_OFFSET || !rbp.is_multiple_of(8) {
            break;
        }
        // SAFETY: `rbp` is a kernel address, 8-aligned; frames of the kernel stack chain through
        // it (the kernel is built with frame pointers). A corrupt chain is caught by the range
        // checks above and below before it is followed far.
        let (next, ret) = unsafe { (*(rbp as *const u64), *((rbp + 8) as *const u64)) };
        if ret < xv6_kernel::layout::KERNBASE {
            break;
        }
        crate::println!("  {ret:#x}");
        if next <= rbp {
            break;
        }
        rbp = next;
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    arch::cli();
    // The fault may have come with the user's GS base (every path into the kernel should have
    // fixed it, but the report must not depend on that): `mycpu` below needs the kernel's.
    crate::arch::cpu::repair_gs_for_panic();
    let me = crate::arch::cpu::mycpu().id + 1;
    if PANIC_CPU
        .compare_exchange(0, me, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        // Another CPU panicked first (or this one panicked while reporting): stop quietly.
        arch::halt_forever();
    }
    PANICKED.store(true, Ordering::SeqCst);
    crate::println!("\npanic: {} (cpu {})", info.message(), me - 1);
    if let Some(l) = info.location() {
        crate::println!("  at {}:{}", l.file(), l.line());
    }
    let tf = TRAP_FRAME.load(Ordering::Relaxed);
    if tf.is_null() {
        backtrace(arch::frame_pointer());
    } else {
        // SAFETY: set just before this panic by the trap handler, on this CPU's stack, still live.
        let tf = unsafe { &*tf };
        dump_frame(tf);
        crate::println!("  {:#x}  (faulting instruction)", tf.rip);
        backtrace(tf.rbp);
    }
    arch::poweroff(PANIC_STATUS)
}

/// Prints a trap frame, for fault reports.
pub fn dump_frame(tf: &TrapFrame) {
    crate::println!(
        "  rip {:#018x}  rsp {:#018x}  rflags {:#x}  cs {:#x}  error {:#x}",
        tf.rip,
        tf.rsp,
        tf.rflags,
        tf.cs,
        tf.error
    );
    crate::println!(
        "  rax {:#018x}  rbx {:#018x}  rcx {:#018x}  rdx {:#018x}",
        tf.rax,
        tf.rbx,
        tf.rcx,
        tf.rdx
    );
    crate::println!(
        "  rsi {:#018x}  rdi {:#018x}  rbp {:#018x}  r8  {:#018x}",
        tf.rsi,
        tf.rdi,
        tf.rbp,
        tf.r8
    );
    crate::println!(
        "  r9  {:#018x}  r10 {:#018x}  r11 {:#018x}  r12 {:#018x}",
        tf.r9,
        tf.r10,
        tf.r11,
        tf.r12
    );
    crate::println!(
        "  r13 {:#018x}  r14 {:#018x}  r15 {:#018x}  cr2 {:#018x}",
        tf.r13,
        tf.r14,
        tf.r15,
        crate::arch::cr2()
    );
}
