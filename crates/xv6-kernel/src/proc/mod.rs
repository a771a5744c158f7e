//! Layer 6, proc: processes (`proc`) and their scheduler (`sched`), address spaces with their mmap
//! regions (`vm`), and `exec`. Imports every layer below; installs itself as the scheduler
//! that `sync::wait` calls.

pub mod exec;
pub mod mapobj;
#[allow(clippy::module_inception)] // xv6's proc.c, under its own name
pub mod proc;
pub mod sched;
pub mod vm;
