//! Processes (the first half of xv6's proc.c): the process table, creating the first process
//! and kernel threads, fork, exit, wait and kill. Switching, sleep/wakeup and the scheduler loop
//! are `sched.rs`; the trap handler for user mode is `syscall::trap`. The design is xv6's:
//!
//! - Each process has a lock (`Proc::lock`) protecting `state`, `chan`, `killed`, `xstate` and
//!   `pid`; `WAIT_LOCK` protects every `parent` field and orders wait/exit. The other fields belong
//!   to the process itself while it runs (or to whoever holds it in `Used` state).
//! - A process gives up its CPU only through `sched`, holding its own lock and no other; the
//!   scheduler releases it. Interrupts are off in the kernel except in the scheduler's idle wait.
//! - Each process slot has a fixed kernel stack, mapped with an unmapped guard page below it; the
//!   trap frame sits at its top.

use crate::arch;
use crate::arch::cpu::{mycpu, pop_off, push_off, Context};
use crate::arch::trap::TrapFrame;
use crate::fs::file::FileRef;
use crate::fs::fs::InodeRef;
use crate::mm::mem::{self, KernelFrames};
use crate::proc::sched::{sched, sleep_raw, wakeup};
use crate::proc::vm::MemState;
use crate::sync::spinlock::{RawSpinlock, Spinlock};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicI32, Ordering};
use xv6_abi::param::{NOFILE, NPROC};
use xv6_kernel::layout::PAGE;
use xv6_kernel::paging::{PageTable, Pte};

/// Pages in a kernel stack.
pub const KSTACK_PAGES: u64 = 8;
/// Where kernel stacks live: slot `i` at `KSTACK_BASE + i * (KSTACK_PAGES + 1) * PAGE`, after its
/// guard page.
const KSTACK_BASE: u64 = 0xffff_ff00_0000_0000;

/// A process's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Free slot.
    Unused,
    /// Being set up or torn down.
    Used,
    /// Waiting on `chan`.
    Sleeping,
    /// Ready to run.
    Runnable,
    /// On a CPU.
    Running,
    /// Exited, waiting for its parent.
    Zombie,
}

/// A process.
pub struct Proc {
    /// Protects state, chan, killed, xstate, pid.
    pub lock: RawSpinlock,
    /// Lifecycle state.
    pub state: State,
    /// What it sleeps on (an address), if sleeping.
    pub chan: usize,
    /// Killed: it exits when it next leaves the kernel.
    pub killed: bool,
    /// Exit status for the parent.
    pub xstate: i32,
    /// Process id.
    pub pid: i32,
    /// Parent (WAIT_LOCK).
    pub parent: *mut Proc,
    /// Top of this slot's kernel stack.
    pub kstack_top: u64,
    /// Saved registers for `swtch`.
    pub context: Context,
    /// The user's x87/SSE registers while the process is off the CPU (saved by `sched`, loaded
    /// by the scheduler before it switches to the process).
    pub fpu: arch::FpuState,
    /// User page table.
    pub pt: PageTable,
    /// Memory bookkeeping: heap break, mmap regions, kmalloc blocks.
    pub mm: MemState,
    /// Open files.
    pub ofile: [Option<FileRef>; NOFILE],
    /// Current directory.
    pub cwd: Option<InodeRef>,
    /// Program name, for debugging.
    pub name: [u8; 16],
    /// The first process: its first return to user space runs /init.
    pub is_init: bool,
    /// It has made an unknown system call and been reported for it (once per process).
    pub told_unknown_syscall: bool,
    /// A kernel thread (see [`spawn_kernel_thread`]): it never runs in user mode, never exits,
    /// and cannot be killed.
    pub kernel_thread: bool,
}

impl Proc {
    const fn new() -> Proc {
        Proc {
            lock: RawSpinlock::new("proc"),
            state: State::Unused,
            chan: 0,
            killed: false,
            xstate: 0,
            pid: 0,
            parent: core::ptr::null_mut(),
            kstack_top: 0,
            context: Context { rsp: 0 },
            fpu: arch::FpuState::INITIAL,
            pt: PageTable { root: 0 },
            mm: MemState::new(),
            ofile: [const { None }; NOFILE],
            cwd: None,
            name: [0; 16],
            is_init: false,
            told_unknown_syscall: false,
            kernel_thread: false,
        }
    }

    /// The trap frame at the top of the kernel stack.
    pub fn tf(&self) -> *mut TrapFrame {
        (self.kstack_top - core::mem::size_of::<TrapFrame>() as u64) as *mut TrapFrame
    }

    /// The name as text.
    pub fn name_str(&self) -> &str {
        let n = self.name.iter().position(|&c| c == 0).unwrap_or(16);
        core::str::from_utf8(&self.name[..n]).unwrap_or("?")
    }

    /// Whether the process has been killed (reads under its lock).
    pub fn is_killed(&self) -> bool {
        self.lock.acquire();
        let k = self.killed;
        self.lock.release();
        k
    }

    /// Sets the name from bytes.
    pub fn set_name(&mut self, s: &[u8]) {
        let n = s.len().min(15);
        self.name = [0; 16];
        self.name[..n].copy_from_slice(&s[..n]);
    }
}

struct Table([UnsafeCell<Proc>; NPROC]);
// SAFETY: access follows the locking rules in the module documentation.
unsafe impl Sync for Table {}
static PROCS: Table = Table([const { UnsafeCell::new(Proc::new()) }; NPROC]);

/// Protects every `parent` field; taken before any process lock.
static WAIT_LOCK: RawSpinlock = RawSpinlock::new("wait");
static NEXT_PID: AtomicI32 = AtomicI32::new(1);
static INIT_PROC: Spinlock<usize> = Spinlock::new("initproc", 0);

pub(super) fn slot(i: usize) -> *mut Proc {
    PROCS.0[i].get()
}

/// The process running on this CPU, or null.
pub fn myproc_ptr() -> *mut Proc {
    push_off();
    let p = mycpu().proc as *mut Proc;
    pop_off();
    p
}

/// The process running on this CPU. Panics in the scheduler, which has none.
pub fn myproc() -> &'static mut Proc {
    let p = myproc_ptr();
    assert!(!p.is_null(), "myproc: no process on this CPU");
    // SAFETY: a running process's private fields belong to the kernel thread running it, which is
    // the caller; fields under `lock` are only touched with it held.
    unsafe { &mut *p }
}

/// Maps every slot's kernel stack (with a guard page below) into the kernel's half of the address
/// space. Called once at boot, before any process exists.
pub fn init() {
    crate::sync::wait::install(&super::sched::PROC_SCHEDULER);
    let kpt = mem::kernel_pt();
    for i in 0..NPROC {
        let bottom = KSTACK_BASE + (i as u64 * (KSTACK_PAGES + 1) + 1) * PAGE;
        for pg in 0..KSTACK_PAGES {
            let pa = mem::alloc_frame().expect("no memory for kernel stacks");
            kpt.map(
                &mut KernelFrames,
                bottom + pg * PAGE,
                pa,
                Pte::WRITE | Pte::NO_EXECUTE,
            )
            .expect("mapping a kernel stack");
        }
        // SAFETY: boot, one CPU, no process exists yet.
        unsafe { (*slot(i)).kstack_top = bottom + KSTACK_PAGES * PAGE };
    }
}

/// Whether `va` is in the guard page of some kernel stack (for fault reports).
pub fn is_kstack_guard(va: u64) -> bool {
    if va < KSTACK_BASE {
        return false;
    }
    let off = (va - KSTACK_BASE) / PAGE;
    off.is_multiple_of(KSTACK_PAGES + 1) && off / (KSTACK_PAGES + 1) < NPROC as u64
}

// `swtch` (defined below) is called from sched.rs.
extern "C" {
    fn forkret_entry();
    fn kthread_entry();
}

core::arch::global_asm!(
    r#"
.section .text
# swtch(old: *mut Context, new: *const Context): save the callee-saved registers on this stack,
# store rsp in *old, load rsp from *new, restore its registers, return into it.
.global swtch
swtch:
    push %rbp
    push %rbx
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, (%rdi)
    mov (%rsi), %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    pop %rbp
    ret

# A new process's first `swtch` returns here with rsp at its trap frame.
.global forkret_entry
forkret_entry:
    call forkret
    jmp trapret

# A kernel thread's first `swtch` returns here with its function in r12 (see spawn_kernel_thread).
.global kthread_entry
kthread_entry:
    mov %r12, %rdi
    call kthread_start
    ud2
"#,
    options(att_syntax)
);

/// Finds an unused slot and sets it up to run `forkret` then return to user mode through its trap
/// frame. Returns it with its lock held, or None.
fn alloc_proc() -> Option<*mut Proc> {
    for i in 0..NPROC {
        let pp = slot(i);
        // SAFETY: `lock` is a lock; touching it needs no ownership.
        let p = unsafe { &mut *pp };
        p.lock.acquire();
        if p.state != State::Unused {
            p.lock.release();
            continue;
        }
        // The slot is ours: its lock is held and it is Unused.
        p.pid = NEXT_PID.fetch_add(1, Ordering::Relaxed);
        p.state = State::Used;
        p.killed = false;
        p.xstate = 0;
        p.is_init = false;
        p.told_unknown_syscall = false;
        p.kernel_thread = false;
        let Some(pt) = crate::mm::mem::new_user_table() else {
            p.state = State::Unused;
            p.lock.release();
            return None;
        };
        p.pt = pt;
        p.mm = MemState::new();
        // Stack: [trap frame][forkret_entry][6 callee-saved registers] <- context.rsp
        let tf = p.tf() as u64;
        let ret = tf - 8;
        // SAFETY: the kernel stack is mapped and belongs to this slot; nothing runs on it.
        unsafe { *(ret as *mut u64) = forkret_entry as *const () as usize as u64 };
        let rsp = ret - 6 * 8;
        for r in 0..6 {
            // SAFETY: as above.
            unsafe { *((rsp + r * 8) as *mut u64) = 0 };
        }
        p.context = Context { rsp };
        p.fpu = arch::FpuState::INITIAL;
        return Some(pp);
    }
    None
}

/// Frees what a slot holds (page table, memory state) and marks it unused. Lock held (and, from
/// `wait`, WAIT_LOCK): nothing here may sleep, so the memory state must already be empty (exit
/// emptied it: its shared-file write-back sleeps) or never filled (a failed fork); only the page
/// table's frames and the empty bookkeeping go here. See "Locking rules" in docs/KERNEL.md.
fn free_proc(p: &mut Proc) {
    p.mm.release(p.pt);
    if p.pt.root != 0 {
        p.pt.destroy(&mut KernelFrames);
    }
    p.pt = PageTable { root: 0 };
    p.pid = 0;
    p.parent = core::ptr::null_mut();
    p.name = [0; 16];
    p.chan = 0;
    p.killed = false;
    p.xstate = 0;
    p.state = State::Unused;
}

/// Creates the first process; its first trip to user space execs /init with `cmdline` as its one
/// argument (if not empty).
pub fn user_init() {
    let pp = alloc_proc().expect("userinit: no process slot");
    // SAFETY: alloc_proc returned the slot locked and Used: ours to set up.
    let p = unsafe { &mut *pp };
    p.set_name(b"init");
    p.is_init = true;
    // SAFETY: the trap frame is on the slot's kernel stack; it is replaced by exec before use.
    unsafe { *p.tf() = TrapFrame::new_user(0, 0) };
    *INIT_PROC.lock() = pp as usize;
    p.state = State::Runnable;
    p.lock.release();
}

/// The kernel command line, given to /init.
pub static CMDLINE: Spinlock<([u8; xv6_abi::param::MAX_CMDLINE], usize)> =
    Spinlock::new("cmdline", ([0; xv6_abi::param::MAX_CMDLINE], 0));

/// Starts a kernel thread named `name` running `f`: a process slot that runs only kernel code
/// (the log's flusher). It shares the process table, sleeps and wakes like a process, and cannot
/// be killed or waited for. Panics if no slot is free (it is called at boot).
pub fn spawn_kernel_thread(name: &[u8], f: extern "C" fn() -> !) {
    let pp = alloc_proc().expect("no process slot for a kernel thread");
    // SAFETY: alloc_proc returned the slot locked and Used: ours to set up.
    let p = unsafe { &mut *pp };
    p.set_name(name);
    p.kernel_thread = true;
    // alloc_proc built [forkret_entry][r15 r14 r13 r12 rbx rbp] below the trap frame; point the
    // return at kthread_entry and put `f` in the r12 slot, which swtch pops before returning.
    let rsp = p.context.rsp;
    // SAFETY: the kernel stack is mapped and belongs to this slot; nothing runs on it yet.
    unsafe {
        *((rsp + 6 * 8) as *mut u64) = kthread_entry as *const () as usize as u64;
        *((rsp + 3 * 8) as *mut u64) = f as usize as u64;
    }
    // No parent (free_proc left it null): no process's `wait` counts it as a child.
    p.state = State::Runnable;
    p.lock.release();
}

/// A kernel thread's first code, still holding its lock from the scheduler.
#[no_mangle]
extern "C" fn kthread_start(f: extern "C" fn() -> !) -> ! {
    myproc().lock.release();
    f()
}

/// A new process's first code, still holding its lock from the scheduler.
#[no_mangle]
extern "C" fn forkret() {
    let p = myproc();
    p.lock.release();
    if p.is_init {
        p.is_init = false;
        crate::fs::fs::init();
        // The log's flusher commits finished transactions that nobody fsyncs.
        spawn_kernel_thread(b"logflush", crate::fs::log::flusher);
        p.cwd = Some(crate::fs::dir::namei(None, b"/").expect("no root directory"));
        let (buf, n) = *CMDLINE.lock();
        let cmd = &buf[..n];
        let args: [&[u8]; 2] = [b"init", cmd];
        let argv: &[&[u8]] = if n == 0 { &args[..1] } else { &args[..] };
        if let Err(e) = crate::proc::exec::exec_kernel(b"/init", argv) {
            crate::println!("\nxv6: cannot start /init: {e}");
            crate::println!(
                "xv6: the disk image has no usable /init (cargo xtask image builds one)"
            );
            crate::arch::poweroff(crate::dev::panic::PANIC_STATUS - 1);
        }
    }
    // Back in forkret_entry: return to user mode through the trap frame.
}

/// Grows (or with n < 0 shrinks) the heap; returns the old break, or None without any change.
pub fn grow(n: i64) -> Option<u64> {
    let p = myproc();
    let old = p.mm.brk;
    p.mm.set_brk(p.pt, old.checked_add_signed(n)?).ok()?;
    Some(old)
}

/// Creates a child that is a copy of the caller; returns its pid to the parent, or -1.
pub fn fork() -> i32 {
    let p = myproc();
    let Some(np) = alloc_proc() else { return -1 };
    // SAFETY: alloc_proc returned the slot locked and Used: ours to set up.
    let c = unsafe { &mut *np };
    if p.mm.fork_into(p.pt, &mut c.mm, c.pt).is_err() {
        free_proc(c);
        c.lock.release();
        return -1;
    }
    // SAFETY: both trap frames are on live kernel stacks; the child's is unused.
    unsafe {
        *c.tf() = *p.tf();
        (*c.tf()).rax = 0;
        // The parent's user FPU/SSE state is in this CPU's registers (the kernel never touches
        // them): the child starts with a copy.
        arch::fxsave(&mut c.fpu);
    }
    for (i, f) in p.ofile.iter().enumerate() {
        c.ofile[i] = f.as_ref().map(|f| f.dup());
    }
    c.cwd = p.cwd.as_ref().map(|i| i.dup());
    c.name = p.name;
    let pid = c.pid;
    c.lock.release();
    WAIT_LOCK.acquire();
    c.parent = p as *mut Proc;
    WAIT_LOCK.release();
    c.lock.acquire();
    c.state = State::Runnable;
    c.lock.release();
    pid
}

/// Gives the caller's children to init. WAIT_LOCK held.
fn reparent(p: *mut Proc) {
    let init = *INIT_PROC.lock() as *mut Proc;
    for i in 0..NPROC {
        let pp = slot(i);
        // SAFETY: `parent` is protected by WAIT_LOCK, which we hold.
        unsafe {
            if (*pp).parent == p {
                (*pp).parent = init;
                wakeup(init as usize);
            }
        }
    }
}

/// Ends the calling process with `status`. Does not return.
pub fn exit(status: i32) -> ! {
    let p = myproc();
    let pp = p as *mut Proc;
    if pp as usize == *INIT_PROC.lock() {
        panic!("init exiting with status {status}");
    }
    for f in p.ofile.iter_mut() {
        if let Some(f) = f.take() {
            f.close();
        }
    }
    // Shared mappings are written back and every region and kmalloc block freed here, while the
    // process can still sleep for the disk.
    p.mm.release(p.pt);
    if let Some(cwd) = p.cwd.take() {
        crate::fs::log::begin_op();
        cwd.put();
        crate::fs::log::end_op();
    }
    WAIT_LOCK.acquire();
    reparent(pp);
    // SAFETY: parent is protected by WAIT_LOCK, held.
    let parent = unsafe { (*pp).parent };
    wakeup(parent as usize);
    p.lock.acquire();
    p.xstate = status;
    p.state = State::Zombie;
    WAIT_LOCK.release();
    sched();
    panic!("zombie exit");
}

/// Waits for a child to exit; stores its status at user address `addr` (if not 0) and returns its
/// pid, or -1 if the caller has no children (or the address is bad).
pub fn wait(addr: u64) -> i32 {
    let p = myproc();
    let pp = p as *mut Proc;
    // The status is stored with spinlocks held, where a first touch of an mmap page (which may
    // read a file and sleep) must not happen: fault the page in now, and store without faulting.
    if addr != 0 {
        p.mm.prefault(p.pt, addr, 4, true);
    }
    WAIT_LOCK.acquire();
    loop {
        let mut have_kids = false;
        for i in 0..NPROC {
            let cp = slot(i);
            // SAFETY: parent fields are protected by WAIT_LOCK, held.
            if unsafe { (*cp).parent } != pp {
                continue;
            }
            // SAFETY: the child's lock protects its state; we take it before looking.
            let c = unsafe { &mut *cp };
            c.lock.acquire();
            have_kids = true;
            if c.state == State::Zombie {
                let pid = c.pid;
                let status = c.xstate.to_le_bytes();
                if addr != 0
                    && xv6_kernel::uvm::copy_out(p.pt, &mut KernelFrames, addr, &status).is_err()
                {
                    c.lock.release();
                    WAIT_LOCK.release();
                    return -1;
                }
                free_proc(c);
                c.lock.release();
                WAIT_LOCK.release();
                return pid;
            }
            c.lock.release();
        }
        if !have_kids || p.is_killed() {
            WAIT_LOCK.release();
            return -1;
        }
        sleep_raw(pp as usize, &WAIT_LOCK);
    }
}

/// Marks process `pid` killed; it exits when it next returns to user space. -1 if there is none,
/// or if it is init.
pub fn kill(pid: i32) -> i32 {
    let init = *INIT_PROC.lock();
    for i in 0..NPROC {
        if slot(i) as usize == init {
            // init cannot be killed: it must not exit (it adopts orphans), and a user program
            // must not be able to stop the system this way.
            continue;
        }
        // SAFETY: fields read and written under the slot's lock.
        let p = unsafe { &mut *slot(i) };
        p.lock.acquire();
        if p.pid == pid && p.state != State::Unused && !p.kernel_thread {
            p.killed = true;
            if p.state == State::Sleeping {
                p.state = State::Runnable;
            }
            p.lock.release();
            return 0;
        }
        p.lock.release();
    }
    -1
}

/// How many processes exist (for meminfo).
pub fn count() -> u64 {
    let mut n = 0;
    for i in 0..NPROC {
        // SAFETY: state read under the slot's lock.
        let p = unsafe { &*slot(i) };
        p.lock.acquire();
        if p.state != State::Unused {
            n += 1;
        }
        p.lock.release();
    }
    n
}
