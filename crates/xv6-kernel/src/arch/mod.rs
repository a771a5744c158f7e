//! Layer 1, arch. HARDWARE ACCESS: the x86_64 instructions the kernel needs, each in a small
//! wrapper (this file), the per-CPU records, GDT and TSS (`cpu`), and the trap frame, IDT and
//! entry/exit assembly (`trap`). Imports no other layer.
//!
//! Everything in this module touches the machine directly (ports, MSRs, control registers,
//! interrupt flag). The rest of the kernel calls these wrappers instead of writing `asm!` itself.

pub mod cpu;
pub mod rt;
pub mod trap;

use core::arch::asm;

/// Reads a byte from an I/O port.
pub fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: port input has no memory effects; the ports used are the devices this kernel drives.
    unsafe {
        asm!("in al, dx", out("al") v, in("dx") port, options(nomem, nostack, preserves_flags))
    };
    v
}

/// Writes a byte to an I/O port.
pub fn outb(port: u16, v: u8) {
    // SAFETY: port output has no effect on memory the compiler knows of; callers pass the ports of
    // the devices this kernel drives (serial, PIC, IDE, debug exit).
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags))
    };
}

/// Writes 32 bits to an I/O port.
pub fn outl(port: u16, v: u32) {
    // SAFETY: as `outb`.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack, preserves_flags))
    };
}

/// Reads 32 bits from an I/O port (PCI configuration data).
pub fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: as `inb`.
    unsafe {
        asm!("in eax, dx", out("eax") v, in("dx") port, options(nomem, nostack, preserves_flags))
    };
    v
}

/// A process's x87/SSE registers as `fxsave64` stores them. The kernel is built for a
/// soft-float target and never touches these registers, so a process's state stays in them
/// across its traps and system calls and is saved only when another process takes the CPU.
#[repr(C, align(16))]
#[derive(Clone, Copy)]
pub struct FpuState(pub [u8; 512]);

impl FpuState {
    /// The state a new program starts with: x87 control word 0x37f, MXCSR 0x1f80 (every
    /// exception masked, round to nearest), nothing pending.
    pub const INITIAL: FpuState = {
        let mut b = [0u8; 512];
        b[0] = 0x7f;
        b[1] = 0x03;
        b[24] = 0x80;
        b[25] = 0x1f;
        FpuState(b)
    };
}

/// Saves this CPU's x87/SSE registers into `s`.
pub fn fxsave(s: &mut FpuState) {
    // SAFETY: `fxsave64` writes exactly 512 bytes at a 16-byte-aligned address: `s` is both.
    unsafe { asm!("fxsave64 [{}]", in(reg) s.0.as_mut_ptr(), options(nostack, preserves_flags)) };
}

/// Loads this CPU's x87/SSE registers from `s`, which holds a state `fxsave` made (or
/// [`FpuState::INITIAL`]): its MXCSR has no reserved bit set, so `fxrstor64` cannot fault.
pub fn fxrstor(s: &FpuState) {
    // SAFETY: reads 512 bytes at a 16-byte-aligned address; changes only the FPU/SSE registers,
    // which no kernel code uses (soft-float target).
    unsafe {
        asm!("fxrstor64 [{}]", in(reg) s.0.as_ptr(), options(nostack, preserves_flags, readonly))
    };
}

/// Keeps the compiler from moving memory accesses across this point, for memory a device reads
/// or writes by DMA: the port writes above are `nomem`, so without it a store to a descriptor
/// could sink below the port write that starts the device. (x86 DMA is cache-coherent and port
/// I/O is ordered with stores, so the processor needs no fence instruction.)
pub fn dma_barrier() {
    // SAFETY: an empty asm block; without `nomem` the compiler assumes it reads and writes memory.
    unsafe { asm!("", options(nostack, preserves_flags)) };
}

/// Reads `dst.len()` 32-bit words from a port (IDE data).
pub fn insl(port: u16, dst: &mut [u32]) {
    // SAFETY: `rep insd` writes exactly `dst.len()` words to `dst`, which we borrow mutably.
    unsafe {
        asm!("rep insd", in("dx") port, inout("rdi") dst.as_mut_ptr() => _,
             inout("rcx") dst.len() => _, options(nostack, preserves_flags))
    };
}

/// Writes `src.len()` 32-bit words to a port (IDE data).
pub fn outsl(port: u16, src: &[u32]) {
    // SAFETY: `rep outsd` only reads `src`.
    unsafe {
        asm!("rep outsd", in("dx") port, inout("rsi") src.as_ptr() => _,
             inout("rcx") src.len() => _, options(nostack, preserves_flags, readonly))
    };
}

/// Writes a model-specific register.
///
/// # Safety
/// The value must be valid for the register and keep the kernel's invariants (segment bases,
/// syscall entry, EFER bits).
pub unsafe fn wrmsr(msr: u32, v: u64) {
    // SAFETY: the caller guarantees the write is valid.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32, options(nostack, preserves_flags))
    };
}

/// Reads a model-specific register.
///
/// # Safety
/// `msr` must be a register this CPU has (reading an absent one raises #GP).
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller guarantees the register exists; reading it has no side effects.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    (hi as u64) << 32 | lo as u64
}

/// Exchanges the GS base with KERNEL_GS_BASE.
///
/// # Safety
/// Afterwards `mycpu` follows the other base: the caller must know it is this CPU's record (the
/// panic path uses it to repair GS).
pub unsafe fn swapgs() {
    // SAFETY: the caller guarantees the exchanged base is the one wanted.
    unsafe { asm!("swapgs", options(nomem, nostack, preserves_flags)) };
}

/// CR2: the address of the last page fault.
pub fn cr2() -> u64 {
    let v: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// CR3: the physical address of the current PML4.
pub fn cr3() -> u64 {
    let v: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Switches to the page tables at physical address `pml4`.
///
/// # Safety
/// The tables must map the kernel (code, stack, data) exactly as the current ones do.
pub unsafe fn set_cr3(pml4: u64) {
    // SAFETY: the caller guarantees the new tables keep the kernel mapped.
    unsafe { asm!("mov cr3, {}", in(reg) pml4, options(nostack, preserves_flags)) };
}

/// Flushes the TLB entry for `va`.
pub fn invlpg(va: u64) {
    // SAFETY: invalidating a TLB entry only makes the CPU re-read the page tables.
    unsafe { asm!("invlpg [{}]", in(reg) va, options(nostack, preserves_flags)) };
}

/// Whether interrupts are enabled (RFLAGS.IF).
pub fn interrupts_enabled() -> bool {
    let f: u64;
    // SAFETY: reading RFLAGS has no side effects.
    unsafe { asm!("pushfq; pop {}", out(reg) f, options(preserves_flags)) };
    f & (1 << 9) != 0
}

/// Disables interrupts.
pub fn cli() {
    // SAFETY: disabling interrupts cannot break memory safety.
    unsafe { asm!("cli", options(nomem, nostack)) };
}

/// Enables interrupts.
///
/// # Safety
/// Interrupt handlers must be ready (IDT loaded) and no spinlock may be held that a handler takes.
pub unsafe fn sti() {
    // SAFETY: the caller guarantees handlers are ready.
    unsafe { asm!("sti", options(nomem, nostack)) };
}

/// Enables interrupts, waits for one, and disables them again. The interrupt's handler runs in
/// between, so the compiler must assume every caller-saved register changed.
///
/// # Safety
/// As [`sti`].
pub unsafe fn wait_for_interrupt() {
    // SAFETY: the caller guarantees handlers are ready; the clobbers cover what a handler changes.
    unsafe { asm!("sti", "hlt", "cli", clobber_abi("C")) };
}

/// Stops this CPU for good.
pub fn halt_forever() -> ! {
    loop {
        cli();
        // SAFETY: `hlt` with interrupts off just stops the CPU.
        unsafe { asm!("hlt", options(nomem, nostack)) };
    }
}

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reading the TSC has no side effects.
    unsafe {
        asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    (hi as u64) << 32 | lo as u64
}

/// The current frame pointer (for backtraces).
pub fn frame_pointer() -> u64 {
    let v: u64;
    // SAFETY: reading rbp has no side effects.
    unsafe { asm!("mov {}, rbp", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Ends the QEMU run with `status` through the isa-debug-exit device (QEMU exits with
/// `(status << 1) | 1`); on a machine without that device, stops the CPU.
pub fn poweroff(status: i32) -> ! {
    outl(0xf4, status as u32);
    // Not under QEMU with the debug-exit device: try the ACPI shutdown port QEMU's PIIX uses.
    outl(0x604, 0x2000);
    halt_forever()
}
