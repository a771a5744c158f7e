//! cpuattack: tries, each in a child of its own, the CPU state ring 3 can set that a kernel's entry
//! path might trust (compatibility mode, RFLAGS bits, MXCSR and the x87 control word, segment
//! selectors, stack pointers, `int` of every vector, `sysenter`, privileged instructions). Each
//! child must be killed (status -1) or served and exit 0, as its case says; the machine must go on.
//! Prints `cpuattack: all ok` only if every case behaved (docs/KERNEL.md, "Entry state").
#![no_std]
#![no_main]

use core::arch::{asm, global_asm};
use xv6_user::abi::Sysno;
use xv6_user::{println, sys, Args};

xv6_user::entry!(main);

/// What the kernel must do with a case's child.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Kill it: wait reports -1.
    Killed,
    /// Serve it: it checks what it saw and exits 0.
    Exit0,
}

/// The status a child exits with when an instruction that must fault returned.
const SURVIVED: i32 = 99;

const GETPID: u64 = Sysno::Getpid as u64;
const WRITE: u64 = Sysno::Write as u64;
const READ: u64 = Sysno::Read as u64;

const FL_TF: u64 = 1 << 8;
const FL_DF: u64 = 1 << 10;
const FL_IOPL: u64 = 3 << 12;
const FL_NT: u64 = 1 << 14;
const FL_AC: u64 = 1 << 18;

/// xv6's system call vector (docs/ABI.md): the one gate ring 3 may use.
const T_SYSCALL: u8 = 64;

/// Selector of the GDT slot where a 32-bit user code segment would be (sysret's layout), RPL 3.
const SEL_COMPAT_CODE: u64 = 0x1b;

// `int N; ret` for every vector N, 8 bytes apart, so a child can call the one for its vector.
global_asm!(
    r#"
.section .text
.balign 16
.global cpuattack_int_table
cpuattack_int_table:
.set vec, 0
.rept 256
    .balign 8
    int $vec
    ret
    .set vec, vec + 1
.endr
"#,
    options(att_syntax)
);

extern "C" {
    static cpuattack_int_table: u8;
}

/// Executes `int n` (returns only if the kernel lets it through).
fn int_n(n: u8) -> i32 {
    // SAFETY: the table holds 256 stubs of 8 bytes; stub `n` executes `int $n` and returns.
    let stub = unsafe { core::ptr::addr_of!(cpuattack_int_table).add(8 * n as usize) };
    // SAFETY: calls the stub like a C function; `int` into the kernel preserves registers, and
    // the clobbers cover the C ABI's caller-saved ones anyway.
    unsafe { asm!("call *{}", in(reg) stub, clobber_abi("C"), options(att_syntax)) };
    SURVIVED
}

/// getpid through `syscall` with the RFLAGS bits `set` added just before it (cleared again after
/// it); returns (result, RFLAGS right after the call).
fn syscall_with_flags(set: u64) -> (i64, u64) {
    let r: i64;
    let f: u64;
    // SAFETY: sets flags only for the span of the asm (DF, AC, NT, TF are restored to clear
    // before Rust code runs again); `syscall` clobbers rcx and r11 only.
    unsafe {
        asm!(
            "pushfq",
            "orq {set}, (%rsp)",
            "popfq",
            "syscall",
            "pushfq",
            "popq {f}",
            "pushfq",
            "andq $~0x44500, (%rsp)",
            "popfq",
            set = in(reg) set,
            f = out(reg) f,
            inlateout("rax") GETPID => r,
            out("rcx") _,
            out("r11") _,
            options(att_syntax)
        )
    };
    (r, f)
}

/// As [`syscall_with_flags`] through the `int $64` gate.
fn int64_with_flags(set: u64) -> (i64, u64) {
    let r: i64;
    let f: u64;
    // SAFETY: as `syscall_with_flags`; `int $64` preserves every register but rax.
    unsafe {
        asm!(
            "pushfq",
            "orq {set}, (%rsp)",
            "popfq",
            "int $64",
            "pushfq",
            "popq {f}",
            "pushfq",
            "andq $~0x44500, (%rsp)",
            "popfq",
            set = in(reg) set,
            f = out(reg) f,
            inlateout("rax") GETPID => r,
            options(att_syntax)
        )
    };
    (r, f)
}

fn ok_if(cond: bool, what: &str) -> i32 {
    if cond {
        0
    } else {
        println!("cpuattack: {what}");
        1
    }
}

/// Far return into the 32-bit user code slot, then `syscall` (IA32_CSTAR's entry).
fn compat_syscall() -> i32 {
    // SAFETY: does not return to Rust unless the CPU accepted the far return, in which case the
    // `syscall` below runs in compatibility mode and the process must die there.
    unsafe {
        asm!(
            "pushq {sel}",
            "leaq 2f(%rip), %rax",
            "pushq %rax",
            "lretq",
            "2:",
            "syscall",
            "ud2",
            sel = in(reg) SEL_COMPAT_CODE,
            out("rax") _,
            out("rcx") _,
            out("r11") _,
            options(att_syntax)
        )
    };
    SURVIVED
}

/// `ljmp` (m16:32) into the 32-bit user code slot, then `syscall`.
fn compat_ljmp() -> i32 {
    let target: [u32; 2] = [0, SEL_COMPAT_CODE as u32];
    let mut target = target;
    // SAFETY: as `compat_syscall`; the far pointer is on our stack.
    unsafe {
        asm!(
            "leaq 2f(%rip), %rax",
            "movl %eax, (%rdi)",
            ".byte 0xff, 0x2f", // ljmpl *(%rdi)
            "2:",
            "syscall",
            "ud2",
            in("rdi") target.as_mut_ptr(),
            out("rax") _,
            out("rcx") _,
            out("r11") _,
            options(att_syntax)
        )
    };
    SURVIVED
}

/// `iretq` (same privilege) into the 32-bit user code slot.
fn compat_iretq() -> i32 {
    // SAFETY: builds an iretq frame on our stack; as `compat_syscall` otherwise.
    unsafe {
        asm!(
            "movq %rsp, %rax",
            "pushq $0x23",
            "pushq %rax",
            "pushfq",
            "pushq {sel}",
            "leaq 2f(%rip), %rax",
            "pushq %rax",
            "iretq",
            "2:",
            "syscall",
            "ud2",
            sel = in(reg) SEL_COMPAT_CODE,
            out("rax") _,
            out("rcx") _,
            out("r11") _,
            options(att_syntax)
        )
    };
    SURVIVED
}

/// `iretq` from ring 3 to the kernel's code segment.
fn iretq_to_ring0() -> i32 {
    // SAFETY: the CPU refuses a return to an inner privilege level; nothing returns.
    unsafe {
        asm!(
            "movq %rsp, %rax",
            "pushq $0x10",
            "pushq %rax",
            "pushfq",
            "pushq $0x08",
            "leaq 2f(%rip), %rax",
            "pushq %rax",
            "iretq",
            "2:",
            "ud2",
            out("rax") _,
            options(att_syntax)
        )
    };
    SURVIVED
}

fn nt_syscall() -> i32 {
    let (r, f) = syscall_with_flags(FL_NT);
    ok_if(
        r == i64::from(sys::getpid()) && f & FL_NT != 0,
        "NT + syscall: wrong result or NT lost",
    )
}

fn nt_int64() -> i32 {
    let (r, f) = int64_with_flags(FL_NT);
    ok_if(
        r == i64::from(sys::getpid()) && f & FL_NT != 0,
        "NT + int $64: wrong result or NT lost",
    )
}

fn tf_syscall() -> i32 {
    syscall_with_flags(FL_TF);
    SURVIVED
}

fn tf_int64() -> i32 {
    int64_with_flags(FL_TF);
    SURVIVED
}

fn iopl_popf() -> i32 {
    let f: u64;
    // SAFETY: popf in ring 3 silently keeps IOPL; only flags are touched.
    unsafe {
        asm!(
            "pushfq",
            "orq $0x3000, (%rsp)",
            "popfq",
            "pushfq",
            "popq {}",
            out(reg) f,
            options(att_syntax)
        )
    };
    ok_if(f & FL_IOPL == 0, "popf raised IOPL in ring 3")
}

/// write and read through a pipe with AC and DF set: the kernel's copies must still work, and the
/// flags must come back as the program left them.
fn ac_df_copy() -> i32 {
    let Ok([rfd, wfd]) = sys::pipe() else {
        return 2;
    };
    let msg = *b"the kernel copies forwards";
    let mut got = [0u8; 26];
    let (w, fw): (i64, u64);
    let (r, fr): (i64, u64);
    // SAFETY: write(wfd, msg, len) and read(rfd, got, len) with AC|DF set around each `syscall`;
    // DF and AC are cleared before Rust code runs again; the buffers are valid for len bytes.
    unsafe {
        asm!(
            "pushfq",
            "orq $0x40400, (%rsp)",
            "popfq",
            "syscall",
            "pushfq",
            "popq {f}",
            "cld",
            "pushfq",
            "andq $~0x40000, (%rsp)",
            "popfq",
            f = out(reg) fw,
            inlateout("rax") WRITE => w,
            in("rdi") wfd as u64,
            in("rsi") msg.as_ptr(),
            in("rdx") msg.len(),
            out("rcx") _,
            out("r11") _,
            options(att_syntax)
        );
        asm!(
            "pushfq",
            "orq $0x40400, (%rsp)",
            "popfq",
            "syscall",
            "pushfq",
            "popq {f}",
            "cld",
            "pushfq",
            "andq $~0x40000, (%rsp)",
            "popfq",
            f = out(reg) fr,
            inlateout("rax") READ => r,
            in("rdi") rfd as u64,
            in("rsi") got.as_mut_ptr(),
            in("rdx") got.len(),
            out("rcx") _,
            out("r11") _,
            options(att_syntax)
        );
    }
    let flags = FL_AC | FL_DF;
    ok_if(
        w == 26 && r == 26 && got == msg && fw & flags == flags && fr & flags == flags,
        "AC|DF + write/read: wrong data or flags",
    )
}

/// System calls whose kernel side formats numbers and copies structures, with MXCSR set to unmask
/// every SIMD exception, round towards zero, flush to zero and hold every sticky flag; the user's
/// MXCSR must come back unchanged.
fn mxcsr() -> i32 {
    const WEIRD: u32 = 0x8000 | 0x6000 | 0x3f;
    let mut before = WEIRD;
    let mut after = 0u32;
    // SAFETY: loads a valid MXCSR (no reserved bit set).
    unsafe { asm!("ldmxcsr ({})", in(reg) &mut before, options(att_syntax)) };
    let _ = sys::write(1, b"cpuattack: a write with MXCSR unmasked\n");
    let info = sys::meminfo();
    let _ = sys::uptime();
    let st = sys::fstat(1);
    let pid = sys::getpid();
    // SAFETY: stores MXCSR into a local, then loads the default back.
    unsafe {
        asm!(
            "stmxcsr ({a})",
            "ldmxcsr ({d})",
            a = in(reg) &mut after,
            d = in(reg) &0x1f80u32,
            options(att_syntax)
        )
    };
    ok_if(
        after == WEIRD && info.is_ok() && st.is_ok() && pid > 0,
        "MXCSR changed across system calls, or a call failed",
    )
}

/// What one side of the [`sse_switch`] ping-pong does: `rounds` times, system call `sys1` on
/// `fd1` then `sys2` on `fd2`, one byte at `buf` each.
#[repr(C)]
struct PingPong {
    sys1: u64,
    fd1: u64,
    sys2: u64,
    fd2: u64,
    buf: u64,
    rounds: u64,
    failed: u64,
}

/// Loads all 16 XMM registers from `pat`, runs the ping-pong in assembly (so no compiled code
/// can touch the registers in between), and returns the registers as they came back.
fn xmm_across_calls(pat: &[u8; 256], pp: &mut PingPong) -> [u8; 256] {
    let mut out = [0u8; 256];
    // SAFETY: reads 256 bytes at `pat` and writes 256 at `out`; the system calls read and write
    // one byte at `pp.buf`; every register the asm changes is declared.
    unsafe {
        asm!(
            "movdqu xmm0, [{pat}]", "movdqu xmm1, [{pat} + 16]", "movdqu xmm2, [{pat} + 32]",
            "movdqu xmm3, [{pat} + 48]", "movdqu xmm4, [{pat} + 64]", "movdqu xmm5, [{pat} + 80]",
            "movdqu xmm6, [{pat} + 96]", "movdqu xmm7, [{pat} + 112]",
            "movdqu xmm8, [{pat} + 128]", "movdqu xmm9, [{pat} + 144]",
            "movdqu xmm10, [{pat} + 160]", "movdqu xmm11, [{pat} + 176]",
            "movdqu xmm12, [{pat} + 192]", "movdqu xmm13, [{pat} + 208]",
            "movdqu xmm14, [{pat} + 224]", "movdqu xmm15, [{pat} + 240]",
            "2:",
            "mov rax, [r12]", "mov rdi, [r12 + 8]", "mov rsi, [r12 + 32]", "mov edx, 1",
            "syscall",
            "cmp rax, 1", "jne 3f",
            "mov rax, [r12 + 16]", "mov rdi, [r12 + 24]", "mov rsi, [r12 + 32]", "mov edx, 1",
            "syscall",
            "cmp rax, 1", "jne 3f",
            "dec qword ptr [r12 + 40]", "jnz 2b",
            "jmp 4f",
            "3:", "mov qword ptr [r12 + 48], 1",
            "4:",
            "movdqu [{out}], xmm0", "movdqu [{out} + 16], xmm1", "movdqu [{out} + 32], xmm2",
            "movdqu [{out} + 48], xmm3", "movdqu [{out} + 64], xmm4", "movdqu [{out} + 80], xmm5",
            "movdqu [{out} + 96], xmm6", "movdqu [{out} + 112], xmm7",
            "movdqu [{out} + 128], xmm8", "movdqu [{out} + 144], xmm9",
            "movdqu [{out} + 160], xmm10", "movdqu [{out} + 176], xmm11",
            "movdqu [{out} + 192], xmm12", "movdqu [{out} + 208], xmm13",
            "movdqu [{out} + 224], xmm14", "movdqu [{out} + 240], xmm15",
            pat = in(reg) pat.as_ptr(),
            out = in(reg) out.as_mut_ptr(),
            in("r12") pp as *mut PingPong,
            out("rax") _, out("rdi") _, out("rsi") _, out("rdx") _, out("rcx") _, out("r11") _,
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _, out("xmm4") _,
            out("xmm5") _, out("xmm6") _, out("xmm7") _, out("xmm8") _, out("xmm9") _,
            out("xmm10") _, out("xmm11") _, out("xmm12") _, out("xmm13") _, out("xmm14") _,
            out("xmm15") _,
        )
    };
    out
}

/// Two processes with different values in all 16 XMM registers pass a byte back and forth
/// through two pipes 300 times (every pass a system call and, on one CPU, a process switch; on
/// two, sleeps and wakeups): each must find its own values when it is done. The kernel keeps the
/// user's FPU/SSE registers across traps and saves them only at a switch, so this is the test
/// that the switch saves and loads the right process's state, and that no kernel code uses them.
fn sse_switch() -> i32 {
    let (Ok([r1, w1]), Ok([r2, w2])) = (sys::pipe(), sys::pipe()) else {
        return ok_if(false, "pipe failed");
    };
    let pattern = |seed: u8| -> [u8; 256] {
        core::array::from_fn(|i| (i as u8).wrapping_mul(seed).wrapping_add(seed) ^ 0x5a)
    };
    let mut byte = [0u8; 1];
    let child = match sys::fork() {
        Ok(0) => {
            let pat = pattern(13);
            let mut pp = PingPong {
                sys1: Sysno::Read as u64,
                fd1: r1 as u64,
                sys2: Sysno::Write as u64,
                fd2: w2 as u64,
                buf: byte.as_mut_ptr() as u64,
                rounds: 300,
                failed: 0,
            };
            let got = xmm_across_calls(&pat, &mut pp);
            sys::exit(ok_if(
                pp.failed == 0 && got == pat,
                "SSE registers: the child's came back changed",
            ));
        }
        Ok(pid) => pid,
        Err(_) => return ok_if(false, "fork failed"),
    };
    let pat = pattern(7);
    let mut pp = PingPong {
        sys1: Sysno::Write as u64,
        fd1: w1 as u64,
        sys2: Sysno::Read as u64,
        fd2: r2 as u64,
        buf: byte.as_mut_ptr() as u64,
        rounds: 300,
        failed: 0,
    };
    let got = xmm_across_calls(&pat, &mut pp);
    let child_ok = sys::wait_for(child) == Ok(0);
    ok_if(
        pp.failed == 0 && got == pat && child_ok,
        "SSE registers changed across system calls and process switches",
    )
}

/// As [`mxcsr`] for the x87 control word (all exceptions unmasked, single precision, round
/// towards zero) with a divide-by-zero exception left pending.
fn x87() -> i32 {
    const CW: u16 = 0x0c40;
    let cw_in = CW;
    let mut cw_out = 0u16;
    let mut sw_out = 0u16;
    // SAFETY: loads a control word and leaves an unmasked exception pending (fnstsw and fnclex do
    // not wait for it); the fninit at the end restores the default state before Rust runs on.
    unsafe {
        asm!(
            "fninit",
            "fldcw ({cw})",
            "fld1",
            "fldz",
            "fdivrp",           // 1 / 0 with ZE unmasked: pending, raised by the next waiting op
            cw = in(reg) &cw_in,
            options(att_syntax)
        )
    };
    let pid = sys::getpid();
    let _ = sys::write(1, b"cpuattack: a write with the x87 control word changed\n");
    let info = sys::meminfo();
    // SAFETY: non-waiting stores of the control and status words, then a reset.
    unsafe {
        asm!(
            "fnstcw ({c})",
            "fnstsw ({s})",
            "fninit",
            c = in(reg) &mut cw_out,
            s = in(reg) &mut sw_out,
            options(att_syntax)
        )
    };
    // Status word: ES (bit 7) and ZE (bit 2) must still be set.
    ok_if(
        cw_out & 0x0f3f == CW & 0x0f3f && sw_out & 0x84 == 0x84 && pid > 0 && info.is_ok(),
        "x87 control or status word changed across system calls",
    )
}

/// Loads `sel` into DS, ES, FS and GS, makes a system call, checks the selectors and the result.
fn selectors(sel: u16) -> i32 {
    let r: i64;
    let (ds, gs): (u16, u16);
    // SAFETY: the selectors are restored to 0 (what the program runs with) before Rust runs on;
    // a selector the CPU refuses faults and the process is killed.
    unsafe {
        asm!(
            "movw {s:x}, %ds",
            "movw {s:x}, %es",
            "movw {s:x}, %fs",
            "movw {s:x}, %gs",
            "syscall",
            "movw %ds, {d:x}",
            "movw %gs, {g:x}",
            "xorl {s:e}, {s:e}",
            "movw {s:x}, %ds",
            "movw {s:x}, %es",
            "movw {s:x}, %fs",
            "movw {s:x}, %gs",
            s = inout(reg) u64::from(sel) => _,
            d = out(reg) ds,
            g = out(reg) gs,
            inlateout("rax") GETPID => r,
            out("rcx") _,
            out("r11") _,
            options(att_syntax)
        )
    };
    ok_if(
        r == i64::from(sys::getpid()) && ds == sel && gs == sel,
        "system call with odd data selectors failed or changed them",
    )
}

fn sel_null() -> i32 {
    selectors(0)
}

fn sel_user_data() -> i32 {
    selectors(0x23)
}

fn sel_user_code() -> i32 {
    // A readable code segment may be loaded into a data segment register.
    selectors(0x2b)
}

fn sel_kernel_data() -> i32 {
    selectors(0x10);
    SURVIVED
}

fn sel_tss() -> i32 {
    selectors(0x30);
    SURVIVED
}

fn ss_null() -> i32 {
    // SAFETY: a null SS in ring 3 faults; nothing returns.
    unsafe { asm!("xorl %eax, %eax", "movw %ax, %ss", out("rax") _, options(att_syntax)) };
    SURVIVED
}

/// getpid through `syscall` with rsp replaced by `sp` for the call (restored after).
fn syscall_with_rsp(sp: u64) -> i32 {
    let r: i64;
    // SAFETY: rsp is saved in r12 (which the kernel preserves) and restored before any stack use.
    unsafe {
        asm!(
            "movq %rsp, %r12",
            "movq {sp}, %rsp",
            "syscall",
            "movq %r12, %rsp",
            sp = in(reg) sp,
            inlateout("rax") GETPID => r,
            out("r12") _,
            out("rcx") _,
            out("r11") _,
            options(att_syntax)
        )
    };
    ok_if(
        r == i64::from(sys::getpid()),
        "system call with an odd rsp failed",
    )
}

fn rsp_noncanonical() -> i32 {
    syscall_with_rsp(0x8000_0000_0000)
}

fn rsp_kernel() -> i32 {
    syscall_with_rsp(0xffff_ffff_8010_0000)
}

fn push_noncanonical() -> i32 {
    // SAFETY: the push faults (#SS); nothing returns.
    unsafe {
        asm!(
            "movq {sp}, %rsp",
            "pushq $0",
            sp = in(reg) 0x8000_0000_0010u64,
            options(att_syntax)
        )
    };
    SURVIVED
}

fn jump_noncanonical() -> i32 {
    // SAFETY: the jump faults (#GP); nothing returns.
    unsafe { asm!("jmp *{}", in(reg) 0x8000_0000_0000u64, options(att_syntax)) };
    SURVIVED
}

/// Register values for [`regs_syscall`] and [`regs_int64`]: 12 in, 12 out.
const REG_PATTERN: [u64; 12] = [
    0x1111_2222_3333_4444,
    0x5555_6666_7777_8888,
    0x9999_aaaa_bbbb_cccc,
    0xdddd_eeee_ffff_0001,
    0x0123_4567_89ab_cdef,
    0xfedc_ba98_7654_3210,
    0x0f0f_0f0f_f0f0_f0f0,
    0x8000_0000_0000_0001,
    0x7fff_ffff_ffff_fffe,
    0x1357_9bdf_2468_ace0,
    0xa5a5_5a5a_c3c3_3c3c,
    0xffff_0000_ffff_0000,
];

/// `syscall` (getpid) keeps every register but rax, rcx and r11, whichever way the kernel
/// returns (`sysretq` or `iretq`): rbx, rdx, rsi, rdi, r8-r10 and r12-r15 must come back as
/// they went in.
fn regs_syscall() -> i32 {
    let mut b = [0u64; 24];
    b[..12].copy_from_slice(&REG_PATTERN);
    // SAFETY: reads b[0..12] and writes b[12..24] through rdi, which the call preserves (if it did
    // not, the stores would fault and the case would see a kill); rbx is saved on the stack.
    unsafe {
        asm!(
            "push rbx",
            "mov rbx, [rdi]", "mov rdx, [rdi + 8]", "mov rsi, [rdi + 16]", "mov r8, [rdi + 24]",
            "mov r9, [rdi + 32]", "mov r10, [rdi + 40]", "mov r12, [rdi + 48]",
            "mov r13, [rdi + 56]", "mov r14, [rdi + 64]", "mov r15, [rdi + 72]",
            "mov eax, 11",
            "syscall",
            "mov [rdi + 96], rbx", "mov [rdi + 104], rdx", "mov [rdi + 112], rsi",
            "mov [rdi + 120], r8", "mov [rdi + 128], r9", "mov [rdi + 136], r10",
            "mov [rdi + 144], r12", "mov [rdi + 152], r13", "mov [rdi + 160], r14",
            "mov [rdi + 168], r15", "mov [rdi + 176], rdi",
            "pop rbx",
            in("rdi") b.as_mut_ptr(),
            out("rax") _, out("rcx") _, out("rdx") _, out("rsi") _, out("r8") _, out("r9") _,
            out("r10") _, out("r11") _, out("r12") _, out("r13") _, out("r14") _, out("r15") _,
        )
    };
    let want: [u64; 11] = core::array::from_fn(|i| {
        if i < 10 {
            REG_PATTERN[i]
        } else {
            b.as_ptr() as u64
        }
    });
    ok_if(
        b[12..23] == want,
        "a register other than rax, rcx, r11 changed across syscall",
    )
}

/// `int $64` (getpid) keeps every register but rax, rcx and r11 included.
fn regs_int64() -> i32 {
    let mut b = [0u64; 24];
    b[..12].copy_from_slice(&REG_PATTERN);
    // SAFETY: as regs_syscall.
    unsafe {
        asm!(
            "push rbx",
            "mov rbx, [rdi]", "mov rdx, [rdi + 8]", "mov rsi, [rdi + 16]", "mov r8, [rdi + 24]",
            "mov r9, [rdi + 32]", "mov r10, [rdi + 40]", "mov r12, [rdi + 48]",
            "mov r13, [rdi + 56]", "mov r14, [rdi + 64]", "mov rcx, [rdi + 72]",
            "mov r11, [rdi + 80]",
            "mov eax, 11",
            "int 64",
            "mov [rdi + 96], rbx", "mov [rdi + 104], rdx", "mov [rdi + 112], rsi",
            "mov [rdi + 120], r8", "mov [rdi + 128], r9", "mov [rdi + 136], r10",
            "mov [rdi + 144], r12", "mov [rdi + 152], r13", "mov [rdi + 160], r14",
            "mov [rdi + 168], rcx", "mov [rdi + 176], r11",
            "pop rbx",
            in("rdi") b.as_mut_ptr(),
            out("rax") _, out("rcx") _, out("rdx") _, out("rsi") _, out("r8") _, out("r9") _,
            out("r10") _, out("r11") _, out("r12") _, out("r13") _, out("r14") _,
        )
    };
    ok_if(
        b[12..23] == REG_PATTERN[..11],
        "a register other than rax changed across int $64",
    )
}

/// A `syscall` as the last two bytes of the highest page a process can make executable (the
/// top of the mmap area): the kernel's `sysretq` exit returns to MMAP_TOP, which is unmapped, so
/// the process is killed there and the kernel goes on. (No user code can sit near the canonical
/// boundary, where a `syscall`'s return address would be non-canonical and `sysretq` would fault
/// in ring 0: the stack is the only thing above MMAP_TOP and it is not executable. The exit path
/// checks the address all the same.) In assembly, with no stack use after the mapping.
fn syscall_at_top() -> i32 {
    use xv6_user::abi::layout::MMAP_TOP;
    use xv6_user::abi::mman::{
        MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_EXEC, PROT_READ, PROT_WRITE,
    };
    // SAFETY: maps the top user page (replacing the stack; nothing after this uses it), writes
    // `syscall` at its last two bytes and jumps there; nothing returns.
    unsafe {
        asm!(
            "syscall",                      // mmap(MMAP_TOP - 4096, 4096, rwx, private|anon|fixed)
            "cmp rax, r12",
            "jne 2f",
            "mov word ptr [r12 + 4094], 0x050f", // syscall
            "mov eax, 11",                   // getpid
            "lea rcx, [r12 + 4094]",
            "jmp rcx",
            "2: mov eax, 2",                 // mmap failed: exit(3), which the case reports
            "mov edi, 3",
            "syscall",
            "ud2",
            in("rax") Sysno::Mmap as u64,
            in("rdi") MMAP_TOP - 4096,
            in("rsi") 4096u64,
            in("rdx") (PROT_READ | PROT_WRITE | PROT_EXEC) as u64,
            in("r10") (MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED) as u64,
            in("r8") -1i64 as u64,
            in("r9") 0u64,
            in("r12") MMAP_TOP - 4096,
            options(noreturn)
        )
    }
}

fn jump_kernel() -> i32 {
    // SAFETY: the fetch faults (#PF, supervisor page); nothing returns.
    unsafe { asm!("jmp *{}", in(reg) 0xffff_ffff_8010_0000u64, options(att_syntax)) };
    SURVIVED
}

/// Defines a case function that executes one instruction that must fault in ring 3.
macro_rules! faulting {
    ($name:ident, $($insn:literal),+) => {
        fn $name() -> i32 {
            // SAFETY: a privileged or invalid instruction: the CPU faults and the process dies.
            unsafe { asm!($($insn),+, out("rax") _, out("rcx") _, out("rdx") _, options(att_syntax)) };
            SURVIVED
        }
    };
}

faulting!(sysenter, "sysenter");
faulting!(int3, "int3");
faulting!(int1, ".byte 0xf1");
faulting!(into, ".byte 0xce");
faulting!(int80, "int $0x80");
faulting!(in_port, "movw $0x60, %dx", "inb %dx, %al");
faulting!(
    out_debug_exit,
    "movw $0xf4, %dx",
    "movl $0, %eax",
    "outl %eax, %dx"
);
faulting!(cli, "cli");
faulting!(sti, "sti");
faulting!(hlt, "hlt");
faulting!(rdmsr, "movl $0xc0000101, %ecx", "rdmsr");
faulting!(
    wrmsr,
    "movl $0xc0000101, %ecx",
    "xorl %eax, %eax",
    "xorl %edx, %edx",
    "wrmsr"
);
faulting!(mov_cr3, "movq %cr3, %rax");
faulting!(swapgs, "swapgs");
faulting!(wrgsbase, "xorl %eax, %eax", "wrgsbase %rax");
faulting!(lgdt, "subq $16, %rsp", "lgdt (%rsp)");
faulting!(sysret, "sysretq");

struct Case {
    name: &'static str,
    want: Want,
    run: fn() -> i32,
}

const CASES: &[Case] = &[
    Case {
        name: "lretq to 0x1b + syscall",
        want: Want::Killed,
        run: compat_syscall,
    },
    Case {
        name: "ljmp to 0x1b + syscall",
        want: Want::Killed,
        run: compat_ljmp,
    },
    Case {
        name: "iretq to 0x1b + syscall",
        want: Want::Killed,
        run: compat_iretq,
    },
    Case {
        name: "iretq to ring 0",
        want: Want::Killed,
        run: iretq_to_ring0,
    },
    Case {
        name: "NT + syscall",
        want: Want::Exit0,
        run: nt_syscall,
    },
    Case {
        name: "NT + int $64",
        want: Want::Exit0,
        run: nt_int64,
    },
    Case {
        name: "TF + syscall",
        want: Want::Killed,
        run: tf_syscall,
    },
    Case {
        name: "TF + int $64",
        want: Want::Killed,
        run: tf_int64,
    },
    Case {
        name: "popf IOPL",
        want: Want::Exit0,
        run: iopl_popf,
    },
    Case {
        name: "AC|DF + write/read",
        want: Want::Exit0,
        run: ac_df_copy,
    },
    Case {
        name: "MXCSR",
        want: Want::Exit0,
        run: mxcsr,
    },
    Case {
        name: "x87 control word",
        want: Want::Exit0,
        run: x87,
    },
    Case {
        name: "SSE registers across process switches",
        want: Want::Exit0,
        run: sse_switch,
    },
    Case {
        name: "null data selectors",
        want: Want::Exit0,
        run: sel_null,
    },
    Case {
        name: "user data selectors",
        want: Want::Exit0,
        run: sel_user_data,
    },
    Case {
        name: "user code selector in ds",
        want: Want::Exit0,
        run: sel_user_code,
    },
    Case {
        name: "kernel data selector",
        want: Want::Killed,
        run: sel_kernel_data,
    },
    Case {
        name: "TSS selector",
        want: Want::Killed,
        run: sel_tss,
    },
    Case {
        name: "null ss",
        want: Want::Killed,
        run: ss_null,
    },
    Case {
        name: "non-canonical rsp + syscall",
        want: Want::Exit0,
        run: rsp_noncanonical,
    },
    Case {
        name: "kernel rsp + syscall",
        want: Want::Exit0,
        run: rsp_kernel,
    },
    Case {
        name: "push on non-canonical rsp",
        want: Want::Killed,
        run: push_noncanonical,
    },
    Case {
        name: "registers across syscall",
        want: Want::Exit0,
        run: regs_syscall,
    },
    Case {
        name: "registers across int $64",
        want: Want::Exit0,
        run: regs_int64,
    },
    Case {
        name: "syscall returning to MMAP_TOP",
        want: Want::Killed,
        run: syscall_at_top,
    },
    Case {
        name: "jump to non-canonical",
        want: Want::Killed,
        run: jump_noncanonical,
    },
    Case {
        name: "jump to kernel",
        want: Want::Killed,
        run: jump_kernel,
    },
    Case {
        name: "sysenter",
        want: Want::Killed,
        run: sysenter,
    },
    Case {
        name: "int3",
        want: Want::Killed,
        run: int3,
    },
    Case {
        name: "int1 (icebp)",
        want: Want::Killed,
        run: int1,
    },
    Case {
        name: "into",
        want: Want::Killed,
        run: into,
    },
    Case {
        name: "int $0x80",
        want: Want::Killed,
        run: int80,
    },
    Case {
        name: "in",
        want: Want::Killed,
        run: in_port,
    },
    Case {
        name: "out to the debug-exit port",
        want: Want::Killed,
        run: out_debug_exit,
    },
    Case {
        name: "cli",
        want: Want::Killed,
        run: cli,
    },
    Case {
        name: "sti",
        want: Want::Killed,
        run: sti,
    },
    Case {
        name: "hlt",
        want: Want::Killed,
        run: hlt,
    },
    Case {
        name: "rdmsr",
        want: Want::Killed,
        run: rdmsr,
    },
    Case {
        name: "wrmsr",
        want: Want::Killed,
        run: wrmsr,
    },
    Case {
        name: "mov from cr3",
        want: Want::Killed,
        run: mov_cr3,
    },
    Case {
        name: "swapgs",
        want: Want::Killed,
        run: swapgs,
    },
    Case {
        name: "wrgsbase",
        want: Want::Killed,
        run: wrgsbase,
    },
    Case {
        name: "lgdt",
        want: Want::Killed,
        run: lgdt,
    },
    Case {
        name: "sysretq",
        want: Want::Killed,
        run: sysret,
    },
];

/// Runs `f` in a child; returns whether its fate was `want`.
fn attempt(name: core::fmt::Arguments<'_>, want: Want, f: &dyn Fn() -> i32) -> bool {
    let pid = match sys::fork() {
        Ok(0) => sys::exit(f()),
        Ok(pid) => pid,
        Err(e) => {
            println!("cpuattack: {name}: fork failed: {e}");
            return false;
        }
    };
    let status = match sys::wait_for(pid) {
        Ok(s) => s,
        Err(e) => {
            println!("cpuattack: {name}: wait failed: {e}");
            return false;
        }
    };
    let good = match want {
        Want::Killed => status == -1,
        Want::Exit0 => status == 0,
    };
    if !good {
        println!(
            "cpuattack: {name}: FAILED: child exited with {status}, wanted {}",
            if want == Want::Killed {
                "killed (-1)"
            } else {
                "0"
            }
        );
    }
    good
}

fn main(_args: Args) -> i32 {
    let mut failed = 0;
    let mut ran = 0;
    for c in CASES {
        ran += 1;
        if !attempt(format_args!("{}", c.name), c.want, &c.run) {
            failed += 1;
        }
    }
    // `int N` of every vector but the system call gate: #GP in user mode (gate DPL 0).
    for n in 0..=255u8 {
        if n == T_SYSCALL {
            continue;
        }
        ran += 1;
        if !attempt(format_args!("int ${n}"), Want::Killed, &|| int_n(n)) {
            failed += 1;
        }
    }
    if failed == 0 {
        println!("cpuattack: {ran} cases, all ok");
        println!("cpuattack: all ok");
        0
    } else {
        println!("cpuattack: {failed} of {ran} cases FAILED");
        1
    }
}
