//! HARDWARE ACCESS: interrupt controllers and the timer. The legacy 8259 PICs are masked; each
//! CPU's local APIC takes timer interrupts and sends IPIs; the I/O APIC routes device IRQs.
//!
//! Time: the clock is the TSC, calibrated once at boot against the PIT, so [`ticks`] (10 ms
//! each) is right whenever it is read, whichever CPU reads it and whatever the CPUs are doing.
//! The LAPIC timer of every CPU (calibrated against the PIT as well) interrupts every 10 ms;
//! the interrupt on any CPU wakes the sleepers when the clock has passed a tick, and makes a
//! process in user mode give up its CPU. No CPU is special: one that sits in the kernel with
//! interrupts off delays nobody's time, only its own interrupts.

use crate::arch::trap::{IRQ_TIMER, T_IRQ0, T_SPURIOUS};
use crate::arch::{inb, outb};
use crate::sync::spinlock::Spinlock;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use xv6_kernel::layout::p2v;

static LAPIC_BASE: AtomicU64 = AtomicU64::new(0);
static IOAPIC_BASE: AtomicU64 = AtomicU64::new(0);
/// LAPIC timer count for one tick.
static TICK_COUNT: AtomicU32 = AtomicU32::new(0);

/// The last tick some timer interrupt has seen (sleepers were woken for it), and the lock
/// `sleep` holds while it checks the clock, so that no wakeup falls between its check and its
/// sleep. Its address is the channel sleepers wait on.
pub static TICKS: Spinlock<u64> = Spinlock::new("time", 0);
/// TSC at boot (the clock's zero).
static TSC0: AtomicU64 = AtomicU64::new(0);
/// TSC counts per tick (10 ms); 0 until calibrated.
static TSC_PER_TICK: AtomicU64 = AtomicU64::new(0);

/// Ticks (10 ms) since the clock was calibrated at boot, from the TSC: QEMU's TSCs run in step on
/// every CPU, so any CPU may read it.
pub fn ticks() -> u64 {
    let per = TSC_PER_TICK.load(Ordering::Relaxed);
    if per == 0 {
        return 0;
    }
    crate::arch::rdtsc().saturating_sub(TSC0.load(Ordering::Relaxed)) / per
}

/// A timer interrupt (on any CPU): if the clock has passed a tick since the last one that woke
/// the sleepers, wake them.
pub fn clock_intr() {
    let now = ticks();
    let mut t = TICKS.lock();
    if now > *t {
        *t = now;
        crate::sync::wait::wakeup(&*t as *const u64 as usize);
    }
}

/// Lets this CPU take the interrupts waiting for it, then turns them off again. For the
/// scheduler, between two processes: a CPU that always finds a process to run must still take
/// its timer and device interrupts (xv6-riscv's scheduler opens the same window on each pass).
pub fn interrupt_window() {
    // SAFETY: called only where the kernel may take an interrupt: on the scheduler's stack, in
    // its own loop (compiled without a red zone), holding no lock. `sti` takes effect after the
    // next instruction, so the `nop` is the window.
    unsafe { core::arch::asm!("sti", "nop", "cli") };
}

const ID: u64 = 0x20;
const TPR: u64 = 0x80;
const EOI: u64 = 0xb0;
const SVR: u64 = 0xf0;
const ESR: u64 = 0x280;
const ICR_LO: u64 = 0x300;
const ICR_HI: u64 = 0x310;
const LVT_TIMER: u64 = 0x320;
const LVT_LINT0: u64 = 0x350;
const LVT_LINT1: u64 = 0x360;
const LVT_ERROR: u64 = 0x370;
const TIMER_INIT: u64 = 0x380;
const TIMER_CUR: u64 = 0x390;
const TIMER_DIV: u64 = 0x3e0;
const MASKED: u32 = 1 << 16;
const PERIODIC: u32 = 1 << 17;

fn lapic_read(reg: u64) -> u32 {
    // SAFETY: the LAPIC page is mapped uncached in the direct map (mem::init); `reg` is a register
    // offset inside it.
    unsafe { core::ptr::read_volatile((LAPIC_BASE.load(Ordering::Relaxed) + reg) as *const u32) }
}

fn lapic_write(reg: u64, v: u32) {
    // SAFETY: as `lapic_read`; writes to LAPIC registers have only device effects.
    unsafe {
        core::ptr::write_volatile((LAPIC_BASE.load(Ordering::Relaxed) + reg) as *mut u32, v);
        core::ptr::read_volatile((LAPIC_BASE.load(Ordering::Relaxed) + ID) as *const u32);
    }
}

fn ioapic_write(reg: u32, v: u32) {
    let base = IOAPIC_BASE.load(Ordering::Relaxed);
    // SAFETY: the IOAPIC page is mapped uncached in the direct map; IOREGSEL at +0, IOWIN at +0x10.
    unsafe {
        core::ptr::write_volatile(base as *mut u32, reg);
        core::ptr::write_volatile((base + 0x10) as *mut u32, v);
    }
}

/// Records where the controllers are (from the MADT) and masks the 8259s.
pub fn init(lapic_pa: u64, ioapic_pa: u64) {
    LAPIC_BASE.store(p2v(lapic_pa), Ordering::Relaxed);
    IOAPIC_BASE.store(p2v(ioapic_pa), Ordering::Relaxed);
    // Mask both 8259 PICs: the APICs deliver every interrupt.
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
    // Every IOAPIC entry masked until a driver enables its IRQ.
    for i in 0..24 {
        ioapic_write(0x10 + 2 * i, MASKED | (T_IRQ0 as u32 + i));
        ioapic_write(0x10 + 2 * i + 1, 0);
    }
}

/// This CPU's LAPIC id.
pub fn lapic_id() -> u32 {
    lapic_read(ID) >> 24
}

/// Measures how many LAPIC timer counts make 10 ms, using PIT channel 2.
pub fn calibrate_timer() {
    lapic_write(TIMER_DIV, 0x3); // divide by 16
    lapic_write(LVT_TIMER, MASKED);
    // PIT channel 2, mode 0, 11932 counts of 1.193182 MHz = 10 ms; gate on, speaker off.
    let p = inb(0x61) & !0x02;
    outb(0x61, p & !0x01);
    outb(0x43, 0xb0);
    outb(0x42, (11932 & 0xff) as u8);
    outb(0x42, (11932 >> 8) as u8);
    outb(0x61, p | 0x01);
    lapic_write(TIMER_INIT, u32::MAX);
    let mut spins = 0u64;
    while inb(0x61) & 0x20 == 0 && spins < 100_000_000 {
        spins += 1;
    }
    let elapsed = u32::MAX - lapic_read(TIMER_CUR);
    lapic_write(TIMER_INIT, 0);
    TICK_COUNT.store(elapsed.max(1000), Ordering::Relaxed);
    calibrate_tsc();
}

/// PIT input clock (Hz).
const PIT_HZ: u64 = 1_193_182;
/// PIT counts in a tick (10 ms).
const PIT_PER_TICK: u64 = PIT_HZ / 100;

/// Reads PIT channel 2's current count (latched, so both bytes are of one moment).
fn pit2_count() -> u64 {
    outb(0x43, 0x80); // latch channel 2
    let lo = inb(0x42) as u64;
    let hi = inb(0x42) as u64;
    hi << 8 | lo
}

/// Measures the TSC's rate against PIT channel 2 and starts the clock ([`ticks`]) at 0.
///
/// Each measurement reads the TSC and the PIT's own count at both ends of a ~45 ms window, so
/// the time this loop takes to notice the end does not matter (a calibration that waited for
/// the PIT's output to flip, as the LAPIC one does, counts that delay in: 68-73 Hz instead of 100
/// was seen under a loaded host). A host that deschedules QEMU between the two reads of one end
/// still skews one measurement; the median of three is taken.
fn calibrate_tsc() {
    let mut rates = [0u64; 3];
    for r in rates.iter_mut() {
        // Mode 0, full count (65536 counts, 55 ms); gate on, speaker off.
        let p = inb(0x61) & !0x02;
        outb(0x61, p & !0x01);
        outb(0x43, 0xb0);
        outb(0x42, 0xff);
        outb(0x42, 0xff);
        outb(0x61, p | 0x01);
        let c0 = pit2_count();
        let t0 = crate::arch::rdtsc();
        let mut c1 = c0;
        let mut t1 = t0;
        let mut spins = 0u64;
        // Until 4.5 ticks have passed (counts go down from 0xffff; mode 0 does not reload).
        while c0.saturating_sub(c1) < PIT_PER_TICK * 9 / 2 && spins < 100_000_000 {
            t1 = crate::arch::rdtsc();
            c1 = pit2_count();
            spins += 1;
        }
        let counts = c0.saturating_sub(c1).max(1);
        *r = (t1 - t0) * PIT_PER_TICK / counts;
    }
    rates.sort_unstable();
    TSC_PER_TICK.store(rates[1].max(1), Ordering::Relaxed);
    TSC0.store(crate::arch::rdtsc(), Ordering::Relaxed);
}

/// Sets up this CPU's LAPIC: enabled, periodic 10 ms timer, LINTs masked, no pending EOI.
pub fn init_cpu() {
    lapic_write(SVR, 0x100 | T_SPURIOUS as u32);
    lapic_write(TIMER_DIV, 0x3);
    lapic_write(LVT_TIMER, PERIODIC | (T_IRQ0 + IRQ_TIMER) as u32);
    lapic_write(TIMER_INIT, TICK_COUNT.load(Ordering::Relaxed));
    lapic_write(LVT_LINT0, MASKED);
    lapic_write(LVT_LINT1, MASKED);
    lapic_write(LVT_ERROR, T_IRQ0 as u32 + 19);
    lapic_write(ESR, 0);
    lapic_write(ESR, 0);
    lapic_write(EOI, 0);
    lapic_write(TPR, 0);
}

/// Acknowledges the interrupt being handled.
pub fn eoi() {
    lapic_write(EOI, 0);
}

/// Routes ISA IRQ `irq` (through GSI `gsi` with MADT `flags`) to the CPU with LAPIC id `apic`.
pub fn enable(irq: u64, gsi: u32, flags: u16, apic: u32) {
    let mut lo = (T_IRQ0 + irq) as u32;
    if flags & 0b11 == 0b11 {
        lo |= 1 << 13; // active low
    }
    if (flags >> 2) & 0b11 == 0b11 {
        lo |= 1 << 15; // level triggered
    }
    ioapic_write(0x10 + 2 * gsi, lo);
    ioapic_write(0x10 + 2 * gsi + 1, apic << 24);
}

/// Sends INIT then two STARTUP IPIs to start the CPU `apic` at physical page `vector << 12`.
pub fn start_ap(apic: u32, vector: u8) {
    let wait = || {
        let mut n = 0;
        while lapic_read(ICR_LO) & (1 << 12) != 0 && n < 1_000_000 {
            n += 1;
        }
    };
    lapic_write(ICR_HI, apic << 24);
    lapic_write(ICR_LO, 0x4500); // INIT, level assert
    wait();
    spin_us(10_000);
    for _ in 0..2 {
        lapic_write(ICR_HI, apic << 24);
        lapic_write(ICR_LO, 0x4600 | vector as u32); // STARTUP
        wait();
        spin_us(200);
    }
}

/// Busy-waits about `us` microseconds (by the LAPIC timer's calibrated rate).
pub fn spin_us(us: u64) {
    let t0 = crate::arch::rdtsc();
    // Without a calibrated TSC, an upper bound: 3 GHz.
    while crate::arch::rdtsc() - t0 < us * 3000 {
        core::hint::spin_loop();
    }
}
