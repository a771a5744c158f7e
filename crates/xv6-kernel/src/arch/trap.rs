//! Traps: the interrupt descriptor table, the common entry and exit path, and the dispatcher.
//!
//! Every trap (exception, device interrupt, `int $64`, and `syscall`) builds the same
//! [`TrapFrame`] on the kernel stack: the general registers, the vector and error code, and what
//! the CPU pushed. The FPU/SSE registers are not saved here: the kernel is built for a soft-float
//! target and never touches them, so they keep the user's values until a process switch saves
//! them (`proc::sched`, `Proc::fpu`). A trap from user mode swaps GS so `mycpu` works; a trap from kernel mode reads the
//! GS base MSR to tell whether it interrupted the few instructions that run with the user's GS
//! (Linux's "paranoid" entry); the exit path swaps back in both cases. docs/KERNEL.md ("Entry
//! state") lists what each entry resets and why.

use crate::arch;
use crate::arch::cpu::{self, KCODE, UCODE, UDATA};
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
/// Pseudo-vector of a `syscall` from compatibility mode (the CSTAR entry; no IDT gate).
pub const T_SYSCALL32: u64 = 256;
/// Debug exception.
pub const T_DEBUG: u64 = 1;
/// Non-maskable interrupt.
pub const T_NMI: u64 = 2;
/// Double fault.
pub const T_DOUBLE_FAULT: u64 = 8;
/// Machine check.
pub const T_MACHINE_CHECK: u64 = 18;
/// RFLAGS.TF.
pub const FL_TF: u64 = 1 << 8;

/// What a trap saved. The layout is shared with the assembly below.
#[repr(C, align(16))]
#[derive(Clone, Copy)]
pub struct TrapFrame {
    /// 1 if a kernel-mode entry found the user's GS base and swapped it (the exit swaps back).
    pub gs_swapped: u64,
    /// 1 if the trap is a `syscall` instruction's (the exit may use `sysretq`, which clobbers
    /// rcx and r11 as `syscall` does); 0 for everything else, `int $64` included.
    pub by_syscall: u64,
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

const _: () = assert!(core::mem::size_of::<TrapFrame>() == 24 * 8);

impl TrapFrame {
    /// Whether the trap came from user mode.
    pub fn is_user(&self) -> bool {
        self.cs & 3 == 3
    }

    /// A frame that enters user mode at `rip` with stack `rsp`, interrupts on.
    pub fn new_user(rip: u64, rsp: u64) -> TrapFrame {
        TrapFrame {
            gs_swapped: 0,
            by_syscall: 0,
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
        }
    }
}

global_asm!(
    include_str!(concat!(env!("OUT_DIR"), "/vectors.s")),
    r#"
.macro PUSH_GPRS
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
.endm

.section .text
# Every vector's stub jumps here with [vector, error code, rip, cs, rflags, rsp, ss] on the stack.
.global alltraps
alltraps:
    cmpq $8, 0(%rsp)            # double fault: the saved CS is undefined, decide GS by the MSR
    je alltraps_paranoid
    testb $3, 24(%rsp)          # cs of the interrupted code: from user mode?
    jz alltraps_paranoid
    # From user mode: GS is the user's. An IST vector (NMI, debug, machine check) arrived on this
    # CPU's IST stack, which the process must not keep (it may sleep or move to another CPU): move
    # the 7 words to the top of the process's kernel stack, where every other trap puts them.
    swapgs
    mov %rax, %gs:16            # scratch (the syscall entry's slot; free outside it)
    mov %gs:8, %rax
    sub $56, %rax
    cmp %rax, %rsp
    je 1f
    .irp off,48,40,32,24,16,8,0
    pushq \off(%rsp)
    popq \off(%rax)
    .endr
    mov %rax, %rsp
1:  mov %gs:16, %rax
    PUSH_GPRS
    push $0                     # by_syscall: no
    push $0                     # gs_swapped: the exit path swaps because cs is the user's
    jmp alltraps_save

# From kernel mode (or a double fault): GS may still be the user's, if the trap hit the few
# instructions of the syscall entry before its swapgs, or the exit path between its swapgs and
# iretq (an NMI, a machine check, a fault of iretq itself). As Linux's paranoid_entry: the GS base
# MSR tells. A user GS base is never a kernel (negative) address: ring 3 can only load base 0
# through a selector (CR4.FSGSBASE is off, so no wrgsbase).
alltraps_paranoid:
    PUSH_GPRS
    push $0                     # by_syscall: no
    push $0                     # gs_swapped
    mov $0xc0000101, %ecx       # IA32_GS_BASE
    rdmsr
    test %edx, %edx
    js alltraps_save
    swapgs
    movq $1, (%rsp)
alltraps_save:
    cld
    mov %rsp, %rdi
    call trap
.global trapret
trapret:
    testb $3, 160(%rsp)         # returning to user mode?
    jz 3f
    # To user mode after a `syscall`: `sysretq` when it is safe, which is when the return rip is
    # a canonical lower-half address (sysretq with a non-canonical rcx faults in ring 0, on the
    # user's stack) and TF is clear (a single step after sysretq is left to iretq's exact
    # semantics). Anything else returns through iretq.
    testb $1, 8(%rsp)
    jz 1f
    mov 152(%rsp), %rcx         # rip
    shr $47, %rcx
    jnz 1f
    testw $0x100, 168(%rsp)     # rflags.TF
    jnz 1f
    jmp sysret_exit
3:  testb $1, (%rsp)            # to kernel mode: did the entry swap GS?
    jz 2f
1:  swapgs
2:  add $16, %rsp               # gs_swapped, by_syscall
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
.global trapret_iretq
trapret_iretq:
    iretq

# The fast way back from a `syscall` (trapret decided it is safe): rip into rcx, rflags into r11,
# the user's rsp, then sysretq (which loads CS 0x2b and SS 0x23 from STAR). rflags is the one
# the CPU saved at `syscall` (IOPL cleared all the same). Interrupts stay off until sysretq; an
# NMI or machine check after the swapgs arrives on its IST stack and finds GS by the MSR.
sysret_exit:
    add $16, %rsp               # gs_swapped, by_syscall
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    add $8, %rsp                # r11: rflags instead
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    add $8, %rsp                # rcx: rip instead
    pop %rbx
    pop %rax
    add $16, %rsp               # vector and error code
    mov 0(%rsp), %rcx           # rip
    mov 16(%rsp), %r11          # rflags
    and $~0x3000, %r11          # IOPL 0
    or $0x202, %r11             # IF on, bit 1
    mov 24(%rsp), %rsp          # the user's stack
    swapgs
    sysretq

# `syscall` from 64-bit mode: rcx = user rip, r11 = user rflags, and SFMASK has cleared IF, TF, DF,
# IOPL, NT and AC. Build the same frame an interrupt would, on this process's kernel stack, and
# join the common path. (An NMI, debug trap or machine check before the stack switch arrives on its
# own IST stack and finds GS by the MSR.)
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
    PUSH_GPRS
    push $1                     # by_syscall
    push $0                     # gs_swapped
    jmp alltraps_save

# `syscall` from compatibility mode (IA32_CSTAR). Ring 3 cannot reach compatibility mode (the GDT
# has no 32-bit user code segment), so this is a second line: the same frame with cs 0x1b and the
# pseudo-vector T_SYSCALL32, which kills the process (this kernel has no 32-bit system calls).
.global syscall32_entry
syscall32_entry:
    swapgs
    mov %rsp, %gs:16
    mov %gs:8, %rsp
    push $0x23
    push %gs:16
    push %r11
    push $0x1b                  # 32-bit user cs
    push %rcx
    push $0
    push $256                   # T_SYSCALL32
    PUSH_GPRS
    push $0
    push $0
    jmp alltraps_save
"#,
    options(att_syntax)
);

extern "C" {
    static trap_vectors: [u64; 256];
    fn syscall_entry();
    fn syscall32_entry();
    fn trapret_iretq();
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

/// Fills the IDT (once, on the boot CPU, after `cpu::init_ist_stacks`).
pub fn init() {
    // SAFETY: runs once on the boot CPU before any other CPU starts or interrupts are enabled.
    unsafe {
        let idt = &mut *core::ptr::addr_of_mut!(IDT);
        for (v, slot) in idt.0.iter_mut().enumerate() {
            // Vectors that can arrive on a stack the kernel cannot trust get their own.
            let ist = match v as u64 {
                T_DOUBLE_FAULT => cpu::IST_DOUBLE_FAULT,
                T_NMI => cpu::IST_NMI,
                T_DEBUG => cpu::IST_DEBUG,
                T_MACHINE_CHECK => cpu::IST_MACHINE_CHECK,
                _ => 0,
            };
            // Only the system call gate may be used by `int` from ring 3 (DPL 3); `int N` of any
            // other vector, `int3` and `int $0x80` included, raises #GP in user mode.
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
    // cpu.rs (STAR: kernel CS 0x08, sysret base 0x18) and point at our entries; SFMASK clears on
    // entry every flag the kernel must not run with (docs/KERNEL.md, "Entry state").
    unsafe {
        core::arch::asm!("lidt [{}]", in(reg) &idtr, options(nostack));
        arch::wrmsr(0xc000_0081, (0x18u64 << 48) | ((KCODE as u64) << 32)); // STAR
        arch::wrmsr(0xc000_0082, syscall_entry as *const () as usize as u64); // LSTAR
        arch::wrmsr(0xc000_0083, syscall32_entry as *const () as usize as u64); // CSTAR
        arch::wrmsr(0xc000_0084, SFMASK);
        // SYSENTER_CS = 0 makes `sysenter` raise #GP (Intel; AMD has no sysenter in long mode:
        // #UD): the process is killed. Set explicitly rather than trusting the firmware.
        arch::wrmsr(0x174, 0);
        arch::wrmsr(0x175, 0);
        arch::wrmsr(0x176, 0);
    }
}

/// RFLAGS bits `syscall` clears: TF (no single-step in the kernel), IF (interrupts off in the
/// kernel), DF (string instructions count up), IOPL (cannot be set in ring 3 anyway), NT (a later
/// `iretq` with NT set raises #GP), AC (harmless without SMAP; cleared as Linux does).
const SFMASK: u64 = 0x100 | 0x200 | 0x400 | 0x3000 | 0x4000 | 0x4_0000;

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
        T_SYSCALL32 => "32-bit system call",
        v if (T_IRQ0..T_IRQ0 + 24).contains(&v) => "interrupt",
        _ => "unknown trap",
    }
}

/// Whether `rip` is the `iretq` of the exit path (a fault there is a bad user frame).
pub fn is_exit_iretq(rip: u64) -> bool {
    rip == trapret_iretq as *const () as usize as u64
}

#[allow(dead_code)]
fn _selectors() -> u16 {
    cpu::KDATA
}
