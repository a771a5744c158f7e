//! HARDWARE ACCESS: interrupt controllers and the timer. The legacy 8259 PICs are masked; each
//! CPU's local APIC takes timer interrupts and sends IPIs; the I/O APIC routes device IRQs.
//!
//! The timer: the LAPIC timer of every CPU is calibrated once against the PIT (channel 2, polled)
//! to interrupt every 10 ms (`HZ` = 100). CPU 0's tick advances `ticks`.

use crate::arch::{inb, outb};
use crate::cpu::Spinlock;
use crate::trap::{IRQ_COM1, IRQ_IDE, IRQ_TIMER, T_IRQ0, T_SPURIOUS};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use xv6_kernel::layout::p2v;

static LAPIC_BASE: AtomicU64 = AtomicU64::new(0);
static IOAPIC_BASE: AtomicU64 = AtomicU64::new(0);
/// LAPIC timer count for one tick.
static TICK_COUNT: AtomicU32 = AtomicU32::new(0);

/// Timer ticks since boot, and the lock `sleep` uses on it.
pub static TICKS: Spinlock<u64> = Spinlock::new("time", 0);

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

/// Handles device interrupt `vector`; false if it is not one.
pub fn handle(vector: u64) -> bool {
    match vector {
        v if v == T_IRQ0 + IRQ_TIMER => {
            if crate::cpu::mycpu().id == 0 {
                let mut t = TICKS.lock();
                *t += 1;
                crate::proc::wakeup(&*t as *const u64 as usize);
            }
            eoi();
        }
        v if v == T_IRQ0 + IRQ_COM1 => {
            crate::file::console_intr();
            eoi();
        }
        v if v == T_IRQ0 + IRQ_IDE => {
            crate::ide::intr();
            eoi();
        }
        v if v == T_IRQ0 + 19 || v == T_IRQ0 + 7 || v == T_SPURIOUS => {
            // LAPIC error or spurious: nothing to do (spurious takes no EOI).
            if v != T_SPURIOUS {
                eoi();
            }
        }
        _ => return false,
    }
    true
}
