//! xv6 for x86_64 in Rust: the parts of the kernel that can be tested on the host.
//!
//! The kernel binary (`src/main.rs`, built by `cargo xtask build` with the feature `kernel`) adds
//! the hardware access: boot code, interrupts, devices, context switches. Everything here is plain
//! logic over memory the caller provides, so `cargo test -p xv6-kernel` exercises it on the host.

#![no_std]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod acpi;
pub mod bcache;
pub mod blockset;
pub mod bootinfo;
pub mod elf;
pub mod layout;
pub mod paging;
pub mod prd;
pub mod uvm;
