//! HARDWARE ACCESS: starting the application processors (INIT-SIPI-SIPI) through a real-mode
//! trampoline copied to physical page 0x8000, which climbs to long mode on the kernel's page table
//! and calls [`ap_main`] on a stack of its own.

use crate::arch::cpu;
use crate::dev::irq;
use crate::mm::mem::{self, KernelFrames};
use core::sync::atomic::Ordering;
use xv6_abi::param::NCPU;
use xv6_kernel::acpi::Madt;
use xv6_kernel::layout::p2v;
use xv6_kernel::paging::Pte;

const TRAMPOLINE: u64 = 0x8000;
const PARAMS: u64 = TRAMPOLINE + 0xf00;
const AP_STACK_PAGES: usize = 4;

core::arch::global_asm!(
    r#"
.section .rodata.ap_trampoline, "a"
.global ap_trampoline_start
.global ap_trampoline_end
.code16
ap_trampoline_start:
    cli
    cld
    xor %ax, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    lgdtl (ap_gdt_ptr - ap_trampoline_start + 0x8000)
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $0x08, $(ap_32 - ap_trampoline_start + 0x8000)
.code32
ap_32:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %cr4, %eax
    or $((1 << 5) | (1 << 9) | (1 << 10)), %eax
    mov %eax, %cr4
    mov (0x8f00), %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx
    rdmsr
    or $((1 << 0) | (1 << 8) | (1 << 11)), %eax
    wrmsr
    mov %cr0, %eax
    and $~(1 << 2), %eax
    or $((1 << 31) | (1 << 16) | (1 << 1)), %eax
    mov %eax, %cr0
    ljmpl $0x18, $(ap_64 - ap_trampoline_start + 0x8000)
.code64
ap_64:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov (0x8f08), %rsp
    mov (0x8f18), %rdi
    xor %ebp, %ebp
    mov (0x8f10), %rax
    call *%rax
1:  hlt
    jmp 1b
.balign 8
ap_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff            # 0x08: 32-bit code
    .quad 0x00cf92000000ffff            # 0x10: data
    .quad 0x00af9a000000ffff            # 0x18: 64-bit code
ap_gdt_ptr:
    .word ap_gdt_ptr - ap_gdt - 1
    .long ap_gdt - ap_trampoline_start + 0x8000
ap_trampoline_end:
.code64
"#,
    options(att_syntax)
);

extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
}

/// Starts every other enabled CPU in the MADT (up to NCPU); returns how many CPUs run.
pub fn start_others(madt: &Madt, boot_apic: u32) -> usize {
    if madt.cpus_ignored > 0 {
        crate::println!(
            "smp: {} CPUs beyond the first {NCPU} are left idle",
            madt.cpus_ignored
        );
    }
    let kpt = mem::kernel_pt();
    let f = &mut KernelFrames;
    // The trampoline runs at its physical address with paging on: map that page 1:1 for the
    // duration (borrowed: low memory is not the frame allocator's).
    if kpt
        .map(f, TRAMPOLINE, TRAMPOLINE, Pte::WRITE | Pte::BORROWED)
        .is_err()
    {
        crate::println!("smp: cannot map the trampoline; running on one CPU");
        return 1;
    }
    // SAFETY: the linker symbols delimit the trampoline's bytes in .rodata; physical page 0x8000
    // is conventional memory below 1 MiB that nothing else uses after boot information is read.
    unsafe {
        let start = &ap_trampoline_start as *const u8;
        let len = &ap_trampoline_end as *const u8 as usize - start as usize;
        core::ptr::copy_nonoverlapping(start, p2v(TRAMPOLINE) as *mut u8, len);
    }
    let mut n = 1;
    for &apic in &madt.cpus[..madt.ncpu] {
        if apic == boot_apic || n >= NCPU {
            continue;
        }
        let Ok(stack) = mem::FRAMES.lock().allocate_contiguous(AP_STACK_PAGES, 1) else {
            break;
        };
        let top = p2v(stack.start().as_u64()) + (AP_STACK_PAGES as u64) * 4096;
        let params = p2v(PARAMS) as *mut u64;
        // SAFETY: the parameter block is inside the trampoline page, mapped in the direct map; the
        // AP reads it only after the SIPI below.
        unsafe {
            params.write_volatile(kpt.root);
            params.add(1).write_volatile(top);
            params
                .add(2)
                .write_volatile(ap_main as *const () as usize as u64);
            params.add(3).write_volatile(n as u64);
        }
        // SAFETY: record `n` is not in use by any CPU yet; the AP initialises the rest itself.
        unsafe { (*cpu::cpu_ptr(n)).apic_id = apic };
        irq::start_ap(apic, (TRAMPOLINE >> 12) as u8);
        // Wait (bounded) for it to say it is up.
        let mut waited = 0u64;
        // SAFETY: `started` is an atomic in the record.
        while !unsafe { &*cpu::cpu_ptr(n) }.started.load(Ordering::SeqCst) && waited < 200_000 {
            irq::spin_us(10);
            waited += 1;
        }
        // SAFETY: as above.
        if unsafe { &*cpu::cpu_ptr(n) }.started.load(Ordering::SeqCst) {
            n += 1;
        } else {
            crate::println!("smp: CPU with APIC id {apic} did not start");
        }
    }
    // Take the 1:1 mapping away again (its tables are the kernel half's lower entries, which user
    // tables never copy).
    kpt.unmap(f, TRAMPOLINE);
    kpt.free_user(f);
    mem::flush_tlb();
    n
}

/// An application processor's Rust entry, on its own stack, interrupts off.
extern "C" fn ap_main(index: u64) -> ! {
    let i = index as usize;
    // SAFETY: record `i` belongs to this CPU from now on; interrupts are off.
    let apic = unsafe { (*cpu::cpu_ptr(i)).apic_id };
    // SAFETY: first thing on this CPU.
    unsafe { cpu::init_cpu(i, apic) };
    crate::arch::trap::init_cpu();
    irq::init_cpu();
    cpu::mycpu().started.store(true, Ordering::SeqCst);
    crate::proc::sched::scheduler()
}
