//! Layer 4, mm: physical frames (the kalloc crate), the kernel heap (the kmalloc crate), the
//! kernel's page table and the stacks mapped in it. Page-table and user-copy logic is in the
//! library (`xv6_kernel::paging`, `xv6_kernel::uvm`); a process's address space, with its mmap
//! regions (which may be backed by files), is `proc::vm`, above the file system.

pub mod mem;
