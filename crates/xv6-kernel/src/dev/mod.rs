//! Layer 3, dev: the devices that are not disks: the console (UART and line discipline), the
//! interrupt controllers and the clock, PCI configuration space. HARDWARE ACCESS. Imports `arch`
//! and `sync`.

pub mod console;
pub mod irq;
pub mod panic;
pub mod pci;
