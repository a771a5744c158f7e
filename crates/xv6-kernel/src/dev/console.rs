//! HARDWARE ACCESS: the console on the first serial port (COM1, a 16550 UART), the kernel's
//! `println!`, and the console device's line discipline (xv6's console.c).
//!
//! Output takes one of two ways, as in xv6-riscv's uart.c:
//! - Programs' output (the console device's `write`, [`write_user`]) goes into a transmit ring,
//!   and the UART takes what it can at once: a FIFO's worth (16 bytes) each time its transmitter
//!   is empty. When the UART is busy (the host is not reading), the writer sleeps; the transmit
//!   interrupt sends more and wakes it. The console device writes in bounded pieces, gives up
//!   the CPU between them and stops when its process is killed ([`console_write`]), so no write,
//!   however long, holds a CPU.
//! - The kernel's own messages (`println!`, the echo of typed input, the panic report) are written
//!   at once with interrupts off, polling the UART; what the ring still held goes first, so the
//!   order is kept. They work from any context, interrupt handlers and panics included.
//!
//! Input arrives by interrupt and goes through the line discipline at the end of this file
//! (editing, echo, ^D, ^P) to [`console_read`].

use crate::arch::{inb, outb};
use crate::sync::spinlock::Spinlock;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

const COM1: u16 = 0x3f8;
/// Interrupt enable register: bit 0 data received, bit 1 transmitter empty.
const IER: u16 = COM1 + 1;
const IER_RX: u8 = 0x01;
const IER_TX: u8 = 0x02;
/// Interrupt identification register (read).
const IIR: u16 = COM1 + 2;
/// Line status register: bit 0 data ready, bit 5 transmit holding register (and FIFO) empty.
const LSR: u16 = COM1 + 5;
const LSR_THRE: u8 = 0x20;
/// Modem status register.
const MSR: u16 = COM1 + 6;
/// Bytes the UART's transmit FIFO takes when it is empty.
const FIFO: usize = 16;
/// Bytes in the transmit ring.
const TX_BUF: usize = 2048;

/// Set once the kernel has panicked: other CPUs stop printing and spin.
pub static PANICKED: AtomicBool = AtomicBool::new(false);

/// The transmit ring: bytes `r..w` (counting for ever, indexed modulo [`TX_BUF`]) wait for the
/// UART. Its lock is also the lock of the UART's transmitter: every write to it holds this.
struct Tx {
    buf: [u8; TX_BUF],
    r: usize,
    w: usize,
    /// Whether the transmit interrupt is enabled (it is while the ring holds bytes).
    tx_intr: bool,
}

static TX: Spinlock<Tx> = Spinlock::new(
    "uart",
    Tx {
        buf: [0; TX_BUF],
        r: 0,
        w: 0,
        tx_intr: false,
    },
);

/// Where writers wait for room in the ring.
fn tx_chan() -> usize {
    &TX as *const _ as usize
}

/// Sends what the UART takes now: while bytes wait and its transmitter is empty, a FIFO's worth.
/// The transmit interrupt is on exactly while bytes are left. Returns whether it sent any.
fn uart_start(t: &mut Tx) -> bool {
    let before = t.r;
    while t.r != t.w && inb(LSR) & LSR_THRE != 0 {
        let n = (t.w - t.r).min(FIFO);
        for _ in 0..n {
            outb(COM1, t.buf[t.r % TX_BUF]);
            t.r += 1;
        }
    }
    let want = t.r != t.w;
    if want != t.tx_intr {
        t.tx_intr = want;
        outb(IER, if want { IER_RX | IER_TX } else { IER_RX });
    }
    t.r != before
}

/// Sends everything the ring holds, polling (for the kernel's own messages, which follow it).
fn drain_sync(t: &mut Tx) {
    while t.r != t.w {
        let c = t.buf[t.r % TX_BUF];
        t.r += 1;
        putc_raw(c);
    }
    uart_start(t);
}

/// Programs' console output: copies `b` into the transmit ring (`\n` as `\r\n`) and starts the
/// UART, sleeping while the ring is full. False, with part of `b` unsent, if the process was
/// killed while it waited.
pub fn write_user(b: &[u8]) -> bool {
    let mut t = TX.lock();
    for &c in b {
        let bytes: &[u8] = if c == b'\n' {
            b"\r\n"
        } else {
            core::slice::from_ref(&c)
        };
        for &c in bytes {
            while t.w - t.r == TX_BUF {
                if uart_start(&mut t) {
                    continue;
                }
                if crate::sync::wait::killed() {
                    return false;
                }
                t = crate::sync::wait::sleep(tx_chan(), t);
            }
            let w = t.w;
            t.buf[w % TX_BUF] = c;
            t.w += 1;
        }
    }
    uart_start(&mut t);
    true
}

/// The UART's interrupt: input for the console device, room in the transmitter for the ring.
/// Reads the interrupt identification until nothing is pending, so the (edge-triggered) line
/// goes low and the next event interrupts again.
pub fn uart_intr() {
    for _ in 0..16 {
        let iir = inb(IIR);
        if iir & 1 != 0 {
            break; // nothing pending
        }
        // Bits 3..1: 0 modem status, 1 transmitter empty, 2 data, 3 line status, 6 timeout.
        match (iir >> 1) & 0x7 {
            0 => {
                inb(MSR);
            }
            3 => {
                inb(LSR);
            }
            1 => {}
            _ => console_intr(),
        }
        // Transmitter empty (its indication was cleared by reading IIR), or anything else: send
        // what waits, and wake writers if that made room.
        let mut t = TX.lock();
        if uart_start(&mut t) {
            crate::sync::wait::wakeup(tx_chan());
        }
    }
}

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

/// Writes bytes to the console at once, polling the UART: the kernel's own output (the echo of
/// typed input). Whatever the transmit ring holds goes first.
pub fn write_bytes(b: &[u8]) {
    let mut t = TX.lock();
    drain_sync(&mut t);
    for &c in b {
        if c == b'\n' {
            putc_raw(b'\r');
        }
        putc_raw(c);
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    if PANICKED.load(Ordering::Relaxed) && !crate::dev::panic::this_cpu_panicked() {
        loop {
            core::hint::spin_loop();
        }
    }
    if crate::dev::panic::this_cpu_panicked() {
        // The panicking CPU may have held the lock: write without it.
        let _ = Uart.write_fmt(args);
        return;
    }
    let mut t = TX.lock();
    drain_sync(&mut t);
    let _ = Uart.write_fmt(args);
}

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::dev::console::_print(format_args!($($arg)*)) };
}

/// Prints a line to the console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::dev::console::_print(format_args!("{}\n", format_args!($($arg)*))) };
}

// ---- the console device: line discipline (xv6's console.c) -------------------------------------------------------------------------

const INPUT_BUF: usize = 128;

struct Input {
    buf: [u8; INPUT_BUF],
    /// Read index.
    r: usize,
    /// Write index (end of complete lines).
    w: usize,
    /// Edit index.
    e: usize,
}

static INPUT: Spinlock<Input> = Spinlock::new(
    "console",
    Input {
        buf: [0; INPUT_BUF],
        r: 0,
        w: 0,
        e: 0,
    },
);

fn input_chan() -> usize {
    &INPUT as *const _ as usize
}

const fn ctrl(c: u8) -> u8 {
    c - b'@'
}

fn echo(c: u8) {
    if c == 0x7f || c == ctrl(b'H') {
        write_bytes(b"\x08 \x08");
    } else {
        write_bytes(&[c]);
    }
}

/// The serial interrupt: line editing (backspace, Ctrl-U kills the line, Ctrl-D ends input,
/// Ctrl-P lists processes), echo, and waking readers at the end of a line.
pub fn console_intr() {
    let mut dump = false;
    let mut g = INPUT.lock();
    while let Some(mut c) = getc_raw() {
        if c == b'\r' {
            c = b'\n';
        }
        match c {
            x if x == ctrl(b'P') => dump = true,
            x if x == ctrl(b'U') => {
                while g.e != g.w && g.buf[(g.e - 1) % INPUT_BUF] != b'\n' {
                    g.e -= 1;
                    echo(0x7f);
                }
            }
            x if x == ctrl(b'H') || x == 0x7f => {
                if g.e != g.w {
                    g.e -= 1;
                    echo(0x7f);
                }
            }
            _ => {
                if c != 0 && g.e - g.r < INPUT_BUF {
                    let e = g.e;
                    g.buf[e % INPUT_BUF] = c;
                    g.e += 1;
                    if c != ctrl(b'D') {
                        echo(c);
                    }
                    if c == b'\n' || c == ctrl(b'D') || g.e - g.r == INPUT_BUF {
                        g.w = g.e;
                        crate::sync::wait::wakeup(input_chan());
                    }
                }
            }
        }
    }
    drop(g);
    if dump {
        crate::sync::wait::dump();
    }
}

/// Reads up to a line; Ctrl-D at the start of a line reads as end of file.
pub fn console_read(n: usize, mut dst: impl FnMut(usize, &[u8]) -> bool) -> i32 {
    let mut out = [0u8; INPUT_BUF];
    let mut got = 0usize;
    let mut g = INPUT.lock();
    while got < n.min(INPUT_BUF) {
        while g.r == g.w {
            if crate::sync::wait::killed() {
                return -1;
            }
            g = crate::sync::wait::sleep(input_chan(), g);
        }
        let c = g.buf[g.r % INPUT_BUF];
        g.r += 1;
        if c == ctrl(b'D') {
            if got > 0 {
                g.r -= 1; // keep it for next time: this read returns what came before
            }
            break;
        }
        out[got] = c;
        got += 1;
        if c == b'\n' {
            break;
        }
    }
    drop(g);
    if got > 0 && !dst(0, &out[..got]) {
        return -1;
    }
    got as i32
}

/// Writes in pieces of 256 bytes. Between pieces it stops if the process has been killed (the
/// count so far is returned), and gives up the CPU once a tick, as a timer interrupt in user mode
/// would: the kernel runs with interrupts off, so one long write must not keep the CPU.
pub fn console_write(n: usize, mut src: impl FnMut(usize, &mut [u8]) -> bool) -> i32 {
    let mut buf = [0u8; 256];
    let mut i = 0;
    let mut tick = crate::dev::irq::ticks();
    while i < n {
        let m = (n - i).min(buf.len());
        if !src(i, &mut buf[..m]) {
            return -1;
        }
        if !write_user(&buf[..m]) {
            break;
        }
        i += m;
        if crate::sync::wait::killed() {
            break;
        }
        if crate::dev::irq::ticks() != tick {
            crate::sync::wait::yield_cpu();
            tick = crate::dev::irq::ticks();
        }
    }
    i as i32
}
