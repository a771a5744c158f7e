//! Per-CPU state, spinlocks with xv6's interrupt push/pop discipline, and each CPU's GDT and TSS.
//!
//! Each CPU's GS base points at its [`Cpu`] record (the user's GS base is parked in
//! KERNEL_GS_BASE while the CPU runs the kernel; entry and exit code swap them), so [`mycpu`] is
//! one load and the `syscall` entry finds its kernel stack without touching a register.

use crate::arch;
use core::cell::UnsafeCell;
use core::sync::atomic::AtomicBool;
use xv6_abi::param::NCPU;
use xv6_kernel::layout::PAGE;

/// Segment selectors, fixed by the `syscall`/`sysret` MSR layout. Slot 0x18 is where `sysret`'s
/// layout puts a 32-bit user code segment; it is left empty (a null descriptor), so ring 3 cannot
/// enter compatibility mode at all: a far jump, far return or `iretq` to selector 0x1b raises #GP
/// in user mode and the process is killed. (`sysret` loads CS and SS from STAR without reading the
/// GDT, and this kernel returns with `iretq` anyway.)
pub const KCODE: u16 = 0x08;
/// Kernel data.
pub const KDATA: u16 = 0x10;
/// User data (RPL 3).
pub const UDATA: u16 = 0x20 | 3;
/// User 64-bit code (RPL 3).
pub const UCODE: u16 = 0x28 | 3;
const TSS_SEL: u16 = 0x30;

/// The 64-bit task-state segment: only the stack pointers matter.
#[repr(C, packed(4))]
#[derive(Default)]
pub struct Tss {
    _r0: u32,
    /// Stack for interrupts from user mode.
    pub rsp0: u64,
    _rsp1: u64,
    _rsp2: u64,
    _r1: u64,
    /// Interrupt stacks (IST1..7).
    pub ist: [u64; 7],
    _r2: u64,
    _r3: u16,
    iomap: u16,
}

/// Callee-saved registers of a kernel thread that is not running (see `swtch` in proc.rs).
#[repr(C)]
#[derive(Default, Debug, Clone, Copy)]
pub struct Context {
    /// Saved stack pointer; everything else is on that stack.
    pub rsp: u64,
}

/// One CPU's state. Field order up to `scratch` is used by assembly (`%gs:0`, `%gs:8`, `%gs:16`).
#[repr(C, align(64))]
pub struct Cpu {
    this: *const Cpu,
    /// Top of the running process's kernel stack (where `syscall` entry switches to).
    pub kstack_top: u64,
    /// Scratch: the user's rsp during `syscall` entry.
    pub scratch: u64,
    /// Index in [`CPUS`].
    pub id: usize,
    /// Local APIC id.
    pub apic_id: u32,
    /// Depth of push_off nesting.
    pub ncli: i32,
    /// Were interrupts enabled before the outermost push_off?
    pub intena: bool,
    /// The process running here (a `proc::proc::Proc`, which this layer does not know), or null.
    pub proc: *mut (),
    /// The scheduler's saved context.
    pub scheduler: Context,
    /// Whether the CPU finished starting.
    pub started: AtomicBool,
    gdt: [u64; 8],
    /// This CPU's TSS.
    pub tss: Tss,
}

/// Every CPU's record; the index is the order in which they started (0 = the boot CPU).
pub struct Cpus([UnsafeCell<Cpu>; NCPU]);

// SAFETY: each record is touched only by its own CPU with interrupts off (through `mycpu`), except
// the atomics and fields written before the CPU starts.
unsafe impl Sync for Cpus {}

/// The CPUs.
pub static CPUS: Cpus = Cpus([const { UnsafeCell::new(Cpu::new()) }; NCPU]);

impl Cpu {
    const fn new() -> Cpu {
        Cpu {
            this: core::ptr::null(),
            kstack_top: 0,
            scratch: 0,
            id: 0,
            apic_id: 0,
            ncli: 0,
            intena: false,
            proc: core::ptr::null_mut(),
            scheduler: Context { rsp: 0 },
            started: AtomicBool::new(false),
            gdt: [0; 8],
            tss: Tss {
                _r0: 0,
                rsp0: 0,
                _rsp1: 0,
                _rsp2: 0,
                _r1: 0,
                ist: [0; 7],
                _r2: 0,
                _r3: 0,
                iomap: 0,
            },
        }
    }
}

/// The record of CPU number `i` (for setup and for statistics).
pub fn cpu_ptr(i: usize) -> *mut Cpu {
    CPUS.0[i].get()
}

/// Sets up CPU `i`'s record, GDT, TSS and GS base; called once on each CPU as it starts.
///
/// # Safety
/// Called once per CPU, on that CPU, with interrupts off, before anything uses `mycpu`.
pub unsafe fn init_cpu(i: usize, apic_id: u32) {
    let c = cpu_ptr(i);
    // SAFETY: this CPU is the only user of its record now (caller's contract).
    let cpu = unsafe { &mut *c };
    cpu.this = c;
    cpu.id = i;
    cpu.apic_id = apic_id;
    cpu.tss.iomap = core::mem::size_of::<Tss>() as u16;
    let tss = &cpu.tss as *const Tss as u64;
    let limit = core::mem::size_of::<Tss>() as u64 - 1;
    cpu.gdt = [
        0,
        0x00af_9a00_0000_ffff, // 0x08 kernel code, 64-bit
        0x00cf_9200_0000_ffff, // 0x10 kernel data
        0,                     // 0x18 (sysret layout): no 32-bit user code segment
        0x00cf_f200_0000_ffff, // 0x20 user data
        0x00af_fa00_0000_ffff, // 0x28 user code, 64-bit
        // 0x30: 64-bit available TSS, two slots.
        (limit & 0xffff)
            | (tss & 0xff_ffff) << 16
            | 0x89 << 40
            | ((limit >> 16) & 0xf) << 48
            | ((tss >> 24) & 0xff) << 56,
        tss >> 32,
    ];
    #[repr(C, packed)]
    struct Dtr {
        limit: u16,
        base: u64,
    }
    let gdtr = Dtr {
        limit: (core::mem::size_of_val(&cpu.gdt) - 1) as u16,
        base: cpu.gdt.as_ptr() as u64,
    };
    // SAFETY: the GDT lives in a static record for ever; the selectors loaded below index it; the
    // far return reloads CS with the same kernel code segment.
    unsafe {
        core::arch::asm!(
            "lgdt [{gdtr}]",
            "mov ds, {d:x}", "mov es, {d:x}", "mov ss, {d:x}",
            "push {kcode}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "ltr {tss:x}",
            gdtr = in(reg) &gdtr,
            d = in(reg) KDATA as u64,
            kcode = in(reg) KCODE as u64,
            tss = in(reg) TSS_SEL as u64,
            tmp = out(reg) _,
        );
        // Kernel GS base -> this record; the user's (0 for now) waits in KERNEL_GS_BASE.
        arch::wrmsr(0xc000_0101, c as u64);
        arch::wrmsr(0xc000_0102, 0);
    }
}

/// This CPU's record. Interrupts must be off (the caller could otherwise move to another CPU).
pub fn mycpu() -> &'static mut Cpu {
    let p: *mut Cpu;
    // SAFETY: GS base points at this CPU's record from `init_cpu` on; `this` is its own address.
    unsafe {
        core::arch::asm!("mov {}, gs:0", out(reg) p, options(nostack, readonly, preserves_flags))
    };
    // SAFETY: the record is only touched by its own CPU, which is us, with interrupts off.
    unsafe { &mut *p }
}

/// Disables interrupts, counting nesting (xv6's push_off).
pub fn push_off() {
    let old = arch::interrupts_enabled();
    arch::cli();
    let c = mycpu();
    if c.ncli == 0 {
        c.intena = old;
    }
    c.ncli += 1;
}

/// Undoes one [`push_off`]; re-enables interrupts when the outermost one is undone and they were
/// enabled before it.
pub fn pop_off() {
    let c = mycpu();
    if arch::interrupts_enabled() {
        panic!("pop_off: interrupts enabled");
    }
    if c.ncli < 1 {
        panic!("pop_off: not pushed");
    }
    c.ncli -= 1;
    if c.ncli == 0 && c.intena {
        // SAFETY: interrupts were enabled when the outermost push_off ran, so handlers are ready.
        unsafe { arch::sti() };
    }
}

/// Interrupt-stack-table slots (TSS.IST1..4): vectors that may arrive when the current stack
/// cannot be trusted get a stack of their own, per CPU, each with an unmapped guard page below.
pub const IST_DOUBLE_FAULT: u8 = 1;
/// NMI (may arrive anywhere, including the `syscall` entry before its stack switch).
pub const IST_NMI: u8 = 2;
/// Debug exception (a user's TF or `int1`; kept off the current stack as Linux does).
pub const IST_DEBUG: u8 = 3;
/// Machine check.
pub const IST_MACHINE_CHECK: u8 = 4;
const NIST: u64 = 4;
const IST_PAGES: u64 = 4;
/// Where the IST stacks live: CPU `c`'s slot `k` (0-based) is stack number `c * NIST + k`, each
/// `IST_PAGES` pages after a guard page. A PML4 slot of its own, below the kernel stacks.
const IST_BASE: u64 = 0xffff_fe00_0000_0000;

/// Sets up every CPU's IST stacks (all NCPU records, before any user page table copies the kernel
/// half) and points each record's TSS at them: `map_page(va)` must back the page at `va` with a
/// fresh writable frame (the memory layer does; this layer only says where). The page below each
/// stack stays unmapped, as its guard. Called once on the boot CPU, after the frame allocator is
/// up.
pub fn init_ist_stacks(mut map_page: impl FnMut(u64)) {
    for c in 0..NCPU {
        for k in 0..NIST {
            let n = c as u64 * NIST + k;
            let bottom = IST_BASE + (n * (IST_PAGES + 1) + 1) * PAGE;
            for pg in 0..IST_PAGES {
                map_page(bottom + pg * PAGE);
            }
            // SAFETY: boot CPU alone (the other CPUs start later and only then use their record);
            // the TSS is read by the CPU only when an IST vector arrives, after this store.
            unsafe { (*cpu_ptr(c)).tss.ist[k as usize] = bottom + IST_PAGES * PAGE };
        }
    }
}

/// Whether `va` is in the guard page below some CPU's IST stack (for fault reports).
pub fn is_ist_guard(va: u64) -> bool {
    if va < IST_BASE {
        return false;
    }
    let off = (va - IST_BASE) / PAGE;
    off.is_multiple_of(IST_PAGES + 1) && off / (IST_PAGES + 1) < NCPU as u64 * NIST
}

const MSR_GS_BASE: u32 = 0xc000_0101;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;

/// Whether `p` is the address of a started CPU record (its `this` field points at itself).
fn is_cpu_record(p: u64) -> bool {
    (0..NCPU).any(|i| {
        let c = cpu_ptr(i);
        // SAFETY: reading the `this` pointer of a static record; a torn read only makes the check
        // fail, and the panic path then falls back to record 0.
        c as u64 == p && unsafe { core::ptr::addr_of!((*c).this).read_volatile() } == c
    })
}

/// Makes GS point at a CPU record whatever state a fault left it in, so the panic path can use
/// `mycpu` (and the console's lock bookkeeping) without faulting. If the GS base is a user value
/// (a fault between `swapgs` and `iretq`, or in the `syscall` entry), the kernel's is in
/// KERNEL_GS_BASE and one `swapgs` brings it back; if neither holds a record, record 0 is used
/// (the report may then name the wrong CPU, but it is printed).
pub fn repair_gs_for_panic() {
    // SAFETY: both MSRs exist on every x86_64 CPU.
    let (gs, kgs) = unsafe { (arch::rdmsr(MSR_GS_BASE), arch::rdmsr(MSR_KERNEL_GS_BASE)) };
    if is_cpu_record(gs) {
        return;
    }
    if is_cpu_record(kgs) {
        // SAFETY: KERNEL_GS_BASE holds a CPU record, which becomes the GS base.
        unsafe { arch::swapgs() };
        return;
    }
    // SAFETY: record 0 is a static record; only the panicking CPU proceeds from here.
    unsafe { arch::wrmsr(MSR_GS_BASE, cpu_ptr(0) as u64) };
}
