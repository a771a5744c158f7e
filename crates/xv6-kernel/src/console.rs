//! HARDWARE ACCESS: the console on the first serial port (COM1, a 16550 UART), and the kernel's
//! `println!`.
//!
//! Output goes straight to the UART (polling for room in the transmitter). Input arrives by
//! interrupt and is handed to the console device's line discipline in `file.rs`.

use crate::arch::{inb, outb};
use crate::cpu::Spinlock;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

const COM1: u16 = 0x3f8;

/// Set once the kernel has panicked: other CPUs stop printing and spin.
pub static PANICKED: AtomicBool = AtomicBool::new(false);

static WRITER: Spinlock<Uart> = Spinlock::new("uart", Uart);

/// The serial port.
pub struct Uart;

/// Sets the UART to 115200 baud, 8N1, FIFOs on, receive interrupts on.
pub fn init() {
    outb(COM1 + 1, 0x00); // interrupts off while configuring
    outb(COM1 + 3, 0x80); // DLAB: set the divisor
    outb(COM1, 0x01); // 115200 baud
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03); // 8 bits, no parity, one stop bit
    outb(COM1 + 2, 0xc7); // FIFO on, cleared, 14-byte threshold
    outb(COM1 + 4, 0x0b); // DTR, RTS, OUT2 (OUT2 gates the interrupt line)
    outb(COM1 + 1, 0x01); // interrupt when data arrives
}

/// Sends one byte, waiting for room.
pub fn putc_raw(c: u8) {
    let mut spins = 0u32;
    while inb(COM1 + 5) & 0x20 == 0 && spins < 1_000_000 {
        spins += 1;
        core::hint::spin_loop();
    }
    outb(COM1, c);
}

/// A byte from the UART, if one has arrived.
pub fn getc_raw() -> Option<u8> {
    if inb(COM1 + 5) & 0x01 != 0 {
        Some(inb(COM1))
    } else {
        None
    }
}

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                putc_raw(b'\r');
            }
            putc_raw(b);
        }
        Ok(())
    }
}

/// Writes bytes to the console (the console device's `write`).
pub fn write_bytes(b: &[u8]) {
    let _g = WRITER.lock();
    for &c in b {
        if c == b'\n' {
            putc_raw(b'\r');
        }
        putc_raw(c);
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    if PANICKED.load(Ordering::Relaxed) && !crate::panic::this_cpu_panicked() {
        loop {
            core::hint::spin_loop();
        }
    }
    if crate::panic::this_cpu_panicked() {
        // The panicking CPU may have held the lock: write without it.
        let _ = Uart.write_fmt(args);
        return;
    }
    let mut g = WRITER.lock();
    let _ = g.write_fmt(args);
}

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::_print(format_args!($($arg)*)) };
}

/// Prints a line to the console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::console::_print(format_args!("{}\n", format_args!($($arg)*))) };
}
