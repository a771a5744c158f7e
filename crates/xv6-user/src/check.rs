//! What the test programs (kmalloctest, mmaptest) share: a failure message that formats without
//! growing the heap it may be testing, and the result and case types.

use alloc::boxed::Box;
use core::fmt::{self, Write};

/// A failure message, formatted into a fixed buffer (boxed: only failing cases allocate).
#[derive(Debug)]
pub struct Msg {
    buf: [u8; 240],
    len: usize,
}

impl Msg {
    /// Formats `args`, cut at 240 bytes.
    pub fn new(args: fmt::Arguments<'_>) -> Box<Msg> {
        let mut m = Box::new(Msg {
            buf: [0; 240],
            len: 0,
        });
        let _ = m.write_fmt(args);
        m
    }

    /// The text (cut at a character boundary if it was cut).
    pub fn as_str(&self) -> &str {
        match core::str::from_utf8(&self.buf[..self.len]) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&self.buf[..e.valid_up_to()]).unwrap_or(""),
        }
    }
}

impl Write for Msg {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
        Ok(())
    }
}

/// A test case's outcome.
pub type R = Result<(), Box<Msg>>;

/// A test case: its name and its function.
pub type Case = (&'static str, fn() -> R);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_cuts() {
        assert_eq!(Msg::new(format_args!("x = {}", 5)).as_str(), "x = 5");
        let long = "é".repeat(200);
        let m = Msg::new(format_args!("{long}"));
        assert_eq!(m.as_str().len(), 240);
    }
}
