//! The xv6 kernel binary: boot, then hand over to the scheduler.
//!
//! Built only by xtask (`cargo xtask build`), for `x86_64-unknown-none` (see docs/BUILDING.md).
//! The kernel is cut into layers, one folder each, that import only downward (docs/KERNEL.md has
//! the picture and a reading order; `cargo xtask test` checks it). Hardware access lives in the
//! modules marked HARDWARE ACCESS (arch/, dev/console.rs, dev/irq.rs, dev/pci.rs, fs/ide.rs,
//! smp.rs, and the assembly in arch/trap.rs, proc/proc.rs and arch/boot.s); the logic that can be
//! tested on the host is in the `xv6_kernel` library (src/lib.rs: boot information, ACPI tables,
//! page tables, user memory copies, ELF checks, DMA descriptors, the buffer-cache index).

#![no_std]
#![no_main]

extern crate alloc;

// The layers, lowest first: a module may import only from layers before it (see docs/KERNEL.md;
// `cargo xtask test` checks it). main.rs and smp.rs sit above them all.
mod arch;
mod dev;
mod fs;
mod mm;
mod proc;
mod sync;
mod syscall;

mod smp;

use core::sync::atomic::Ordering;
use xv6_kernel::bootinfo;
use xv6_kernel::layout::p2v;

core::arch::global_asm!(include_str!("arch/boot.s"), options(att_syntax));

/// Reads physical memory through the direct map (boot information, ACPI tables).
fn read_phys(pa: u64, buf: &mut [u8]) {
    // SAFETY: the boot tables and later the kernel's map all RAM and firmware areas below 4 GiB at
    // p2v; callers read firmware-provided structures there.
    unsafe { core::ptr::copy_nonoverlapping(p2v(pa) as *const u8, buf.as_mut_ptr(), buf.len()) };
}

/// The boot CPU's Rust entry, from `start64` in boot.s, on the boot stack with interrupts off.
#[no_mangle]
extern "C" fn kmain(start_info: u64) -> ! {
    // SAFETY: first thing on the boot CPU, interrupts off, nothing else running.
    unsafe { arch::cpu::init_cpu(0, 0) };
    dev::console::init();
    println!();
    let bi = match bootinfo::parse(start_info, read_phys) {
        Ok(b) => b,
        // A command too long to run is the user's mistake, not the kernel's: say so and stop
        // as a failed command would.
        Err(e @ bootinfo::BootInfoError::CommandLineTooLong) => {
            println!("xv6: {e}: nothing run, powering off");
            arch::poweroff(1)
        }
        Err(e) => panic!("boot: {e}"),
    };
    mm::mem::init(&bi);
    arch::cpu::init_ist_stacks(mm::mem::map_fresh_kernel_page);
    arch::trap::init();
    arch::trap::init_cpu();
    let madt = match xv6_kernel::acpi::parse_madt(bi.rsdp, read_phys) {
        Ok(m) => m,
        Err(e) => panic!("ACPI: {e:?}: cannot find the CPUs and interrupt controllers"),
    };
    let (ioapic, _) = madt.ioapic.unwrap_or((0xfec0_0000, 0));
    dev::irq::init(madt.lapic_addr, ioapic);
    dev::irq::calibrate_timer();
    dev::irq::init_cpu();
    let boot_apic = dev::irq::lapic_id();
    // SAFETY: still the boot CPU alone; fix up its LAPIC id.
    unsafe { (*arch::cpu::cpu_ptr(0)).apic_id = boot_apic };
    let (gsi, fl) = madt.gsi_for_irq(arch::trap::IRQ_COM1 as u8);
    dev::irq::enable(arch::trap::IRQ_COM1, gsi, fl, boot_apic);
    let (gsi, fl) = madt.gsi_for_irq(arch::trap::IRQ_IDE as u8);
    if !fs::ide::init(gsi, fl, boot_apic) {
        println!("xv6: no disk found: give QEMU a file-system image as its first drive");
    }
    // The buffer cache takes a 32nd of memory (bounded both ways; see bio::init).
    let nbuf = {
        let (_, total, _, _) = mm::mem::usage();
        fs::bio::init((total as usize).saturating_mul(xv6_kernel::layout::PAGE as usize) / 32)
            .expect("not enough memory for the buffer cache")
    };
    proc::proc::init();
    {
        let mut c = proc::proc::CMDLINE.lock();
        let line = bi.heap_option().1;
        let n = line.len().min(c.0.len());
        c.0[..n].copy_from_slice(&line[..n]);
        c.1 = n;
    }
    proc::proc::user_init();
    let (free, total, _, _) = mm::mem::usage();
    let ncpu = smp::start_others(&madt, boot_apic);
    println!(
        "xv6 kernel is booting: {} CPU(s), {} MiB RAM, {} of {} frames free, {} disk buffers",
        ncpu,
        bi.top_of_ram() >> 20,
        free,
        total,
        nbuf
    );
    arch::cpu::mycpu().started.store(true, Ordering::SeqCst);
    proc::sched::scheduler()
}
