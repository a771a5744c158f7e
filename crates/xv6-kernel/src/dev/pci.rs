//! HARDWARE ACCESS: PCI configuration space through the legacy ports 0xCF8 (address) and 0xCFC
//! (data), "configuration mechanism #1". Just enough to find a function by its class code and
//! read or set its registers.

use crate::arch::{inl, outl};
use crate::sync::spinlock::Spinlock;

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;

/// The address and data ports are one shared pair: a write to the address and the access to the
/// data that follows must not interleave with another CPU's.
static CONFIG: Spinlock<()> = Spinlock::new("pci", ());

/// A PCI function: bus, device (0-31), function (0-7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Function {
    pub bus: u8,
    pub dev: u8,
    pub func: u8,
}

impl Function {
    fn address(self, offset: u8) -> u32 {
        0x8000_0000
            | (self.bus as u32) << 16
            | (self.dev as u32 & 0x1f) << 11
            | (self.func as u32 & 0x7) << 8
            | (offset as u32 & 0xfc)
    }

    /// Reads the 32-bit configuration register at `offset` (rounded down to a multiple of 4).
    pub fn read(self, offset: u8) -> u32 {
        let _g = CONFIG.lock();
        outl(CONFIG_ADDRESS, self.address(offset));
        inl(CONFIG_DATA)
    }

    /// Writes the 32-bit configuration register at `offset` (rounded down to a multiple of 4).
    pub fn write(self, offset: u8, v: u32) {
        let _g = CONFIG.lock();
        outl(CONFIG_ADDRESS, self.address(offset));
        outl(CONFIG_DATA, v);
    }

    /// Class, subclass and programming interface (register 0x08, bits 31-8).
    pub fn class(self) -> (u8, u8, u8) {
        let r = self.read(0x08);
        ((r >> 24) as u8, (r >> 16) as u8, (r >> 8) as u8)
    }

    /// Sets bits in the command register (offset 0x04, low 16 bits), leaving the status half
    /// alone (its bits are cleared by writing ones, so it is written as zero).
    pub fn enable(self, bits: u16) {
        let cmd = self.read(0x04) & 0xffff;
        self.write(0x04, cmd | bits as u32);
    }
}

/// Command register: respond to I/O space accesses.
pub const CMD_IO: u16 = 1 << 0;
/// Command register: the function may master the bus (DMA).
pub const CMD_BUS_MASTER: u16 = 1 << 2;

/// The first function (in bus, device, function order) with this class and subclass.
pub fn find_class(class: u8, subclass: u8) -> Option<Function> {
    for bus in 0..=255u8 {
        for dev in 0..32u8 {
            let f0 = Function { bus, dev, func: 0 };
            if f0.read(0x00) & 0xffff == 0xffff {
                continue; // no device here
            }
            let multi = f0.read(0x0c) & (1 << 23) != 0;
            for func in 0..if multi { 8 } else { 1 } {
                let f = Function { bus, dev, func };
                if f.read(0x00) & 0xffff == 0xffff {
                    continue;
                }
                let (c, s, _) = f.class();
                if c == class && s == subclass {
                    return Some(f);
                }
            }
        }
    }
    None
}
