//! Traps: the interrupt descriptor table, the common entry and exit path, and the dispatcher.
//!
//! Every trap (exception, device interrupt, `int $64`, and `syscall`) builds the same
//! [`TrapFrame`] on the kernel stack: the general registers, the vector and error code, what the
//! CPU pushed, and the FPU/SSE state (`fxsave`), because the kernel's own Rust code uses SSE
//! registers. A trap from user mode swaps GS so `mycpu` works; the exit path swaps back.

use crate::arch;
use crate::cpu::{self, KCODE, UCODE, UDATA};
use core::arch::global_asm;

/// xv6's system call vector (`int $64`).
pub const T_SYSCALL: u64 = 64;
/// First vector of the hardware interrupts (IRQ 0).
pub const T_IRQ0: u64 = 32;
/// IRQ numbers.
pub const IRQ_TIMER: u64 = 0;
/// COM1.
pub const IRQ_COM1: u64 = 4;
/// Primary IDE.
pub const IRQ_IDE: u64 = 14;
/// Spurious LAPIC interrupts.
pub const T_SPURIOUS: u64 = 255;

/// What a trap saved. The layout is shared with the assembly below.
#[repr(C, align(16))]
#[derive(Clone, Copy)]
pub struct TrapFrame {
    /// `fxsave64` area.
    pub fx: [u8; 512],
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Trap number.
    pub vector: u64,
    /// The CPU's error code, or 0.
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

const _: () = assert!(core::mem::size_of::<TrapFrame>() == 512 + 22 * 8);

impl TrapFrame {
    /// Whether the trap came from user mode.
    pub fn is_user(&self) -> bool {
        self.cs & 3 == 3
    }

    /// A frame that enters user mode at `rip` with stack `rsp`, interrupts on.
    pub fn new_user(rip: u64, rsp: u64) -> TrapFrame {
        let mut tf = TrapFrame {
            fx: [0; 512],
            r15: 0,
            r14: 0,
            r13: 0,
            r12: 0,
            r11: 0,
            r10: 0,
            r9: 0,
            r8: 0,
            rbp: 0,
            rdi: 0,
            rsi: 0,
            rdx: 0,
            rcx: 0,
            rbx: 0,
            rax: 0,
            vector: 0,
            error: 0,
            rip,
            cs: UCODE as u64,
            rflags: 0x202,
            rsp,
            ss: UDATA as u64,
        };
        // A clean FPU state: default control word 0x37f, MXCSR 0x1f80 (all exceptions masked).
        tf.fx[0..2].copy_from_slice(&0x37fu16.to_le_bytes());
        tf.fx[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        tf.fx[28..32].copy_from_slice(&0xffffu32.to_le_bytes());
        tf
    }
}

global_asm!(
    include_str!(concat!(env!("OUT_DIR"), "/vectors.s")),
    r#"
.section .text
.global alltraps
alltraps:
    testb $3, 24(%rsp)          # cs of the interrupted code: from user mode?
    jz 1f
    swapgs
1:
alltraps_gs_ok:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    sub $512, %rsp
    fxsave64 (%rsp)
    cld
    mov %rsp, %rdi
    call trap
.global trapret
trapret:
    fxrstor64 (%rsp)
    add $512, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    add $16, %rsp               # vector and error code
    testb $3, 8(%rsp)           # returning to user mode?
    jz 2f
    swapgs
2:  iretq

# `syscall`: rcx = user rip, r11 = user rflags, interrupts masked by SFMASK. Build the same frame an
# interrupt would, on this process's kernel stack, and join the common path.
.global syscall_entry
syscall_entry:
    swapgs
    mov %rsp, %gs:16
    mov %gs:8, %rsp
    push $0x23                  # user ss
    push %gs:16                 # user rsp
    push %r11                   # rflags
    push $0x2b                  # user cs
    push %rcx                   # rip
    push $0                     # error code
    push $64                    # vector: T_SYSCALL
    jmp alltraps_gs_ok
"#,
    options(att_syntax)
);

extern "C" {
    static trap_vectors: [u64; 256];
    fn syscall_entry();
}

#[repr(C, align(16))]
struct Idt([u128; 256]);

static mut IDT: Idt = Idt([0; 256]);

fn gate(handler: u64, user: bool, ist: u8) -> u128 {
    let dpl: u128 = if user { 3 } else { 0 };
    let lo = (handler & 0xffff) as u128
        | (KCODE as u128) << 16
        | (ist as u128) << 32
        | (0x8e | dpl << 5) << 40 // present, interrupt gate (IF cleared on entry)
        | (((handler >> 16) & 0xffff) as u128) << 48;
    lo | ((handler >> 32) as u128) << 64
}

/// Fills the IDT (once, on the boot CPU).
pub fn init() {
    // SAFETY: runs once on the boot CPU before any other CPU starts or interrupts are enabled.
    unsafe {
        let idt = &mut *core::ptr::addr_of_mut!(IDT);
        for (v, slot) in idt.0.iter_mut().enumerate() {
            let ist = if v == 8 || v == 2 { 1 } else { 0 }; // double fault, NMI: own stack
            *slot = gate(trap_vectors[v], v as u64 == T_SYSCALL, ist);
        }
    }
}

/// Loads the IDT and the `syscall` MSRs on this CPU.
pub fn init_cpu() {
    #[repr(C, packed)]
    struct Dtr {
        limit: u16,
        base: u64,
    }
    let idtr = Dtr {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: core::ptr::addr_of!(IDT) as u64,
    };
    // SAFETY: the IDT is static and filled by `init`; the MSR values follow the GDT layout in
    // cpu.rs (STAR: kernel CS 0x08, sysret base 0x18) and point at our entry; SFMASK clears IF,
    // TF, DF and AC on entry.
    unsafe {
        core::arch::asm!("lidt [{}]", in(reg) &idtr, options(nostack));
        arch::wrmsr(0xc000_0081, (0x18u64 << 48) | ((KCODE as u64) << 32)); // STAR
        arch::wrmsr(0xc000_0082, syscall_entry as *const () as usize as u64); // LSTAR
        arch::wrmsr(0xc000_0084, 0x4_0700); // SFMASK: AC, DF, IF, TF
    }
}

const EXCEPTIONS: [&str; 22] = [
    "divide error",
    "debug",
    "NMI",
    "breakpoint",
    "overflow",
    "bound range exceeded",
    "invalid opcode",
    "device not available",
    "double fault",
    "coprocessor segment overrun",
    "invalid TSS",
    "segment not present",
    "stack-segment fault",
    "general protection fault",
    "page fault",
    "reserved",
    "x87 floating-point error",
    "alignment check",
    "machine check",
    "SIMD floating-point error",
    "virtualization",
    "control protection",
];

/// The name of trap `v`.
pub fn trap_name(v: u64) -> &'static str {
    match v {
        0..=21 => EXCEPTIONS[v as usize],
        T_SYSCALL => "system call",
        v if (T_IRQ0..T_IRQ0 + 24).contains(&v) => "interrupt",
        _ => "unknown trap",
    }
}

/// Prints a trap frame, for fault reports.
pub fn dump(tf: &TrapFrame) {
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
        arch::cr2()
    );
}

/// Called by `alltraps` with the frame it built.
#[no_mangle]
extern "C" fn trap(tf: &mut TrapFrame) {
    if tf.is_user() {
        crate::proc::user_trap(tf);
        return;
    }
    kernel_trap(tf);
}

/// A trap taken in kernel mode: a device interrupt (only possible in the scheduler's idle wait) or
/// a kernel bug.
fn kernel_trap(tf: &mut TrapFrame) {
    if crate::irq::handle(tf.vector) {
        return;
    }
    crate::panic::set_trap_frame(tf);
    panic!(
        "kernel {} (trap {}) at {:#x}{}",
        trap_name(tf.vector),
        tf.vector,
        tf.rip,
        if tf.vector == 14 && crate::proc::is_kstack_guard(arch::cr2()) {
            alloc::format!(", address {:#x}: kernel stack overflow", arch::cr2())
        } else if tf.vector == 14 {
            alloc::format!(", address {:#x}", arch::cr2())
        } else {
            alloc::string::String::new()
        }
    );
}

#[allow(dead_code)]
fn _selectors() -> u16 {
    cpu::KDATA
}
