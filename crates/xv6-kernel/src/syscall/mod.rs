//! Layer 7, syscall: the trap dispatcher (`trap`: system calls, device interrupts, faults), the
//! system call table and argument fetching (`syscall`), and the calls by family (`sysproc`,
//! `sysfile`, `sysmem`). The top layer: it may import all the others.

#[allow(clippy::module_inception)] // xv6's syscall.c, under its own name
pub mod syscall;
pub mod sysfile;
pub mod sysmem;
pub mod sysproc;
pub mod trap;
