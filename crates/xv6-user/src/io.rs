//! Formatted output: a buffer that `core::fmt` writes into and that flushes to a [`Sink`] when
//! full, so one `println!` is (usually) one `write` system call; and [`BStr`], which displays
//! bytes as text.

use core::fmt;

/// Where a [`BufWriter`] sends its bytes.
pub trait Sink {
    /// Writes all of `bytes` (or as much as possible: output errors are not reported).
    fn write_all(&mut self, bytes: &[u8]);
}

impl Sink for alloc::vec::Vec<u8> {
    fn write_all(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Collects formatted text in `N` bytes and sends it to the sink when the buffer fills and when
/// [`flush`](BufWriter::flush) is called.
#[derive(Debug)]
pub struct BufWriter<S: Sink, const N: usize> {
    sink: S,
    buf: [u8; N],
    len: usize,
}

impl<S: Sink, const N: usize> BufWriter<S, N> {
    /// An empty buffer in front of `sink`.
    pub fn new(sink: S) -> Self {
        BufWriter {
            sink,
            buf: [0; N],
            len: 0,
        }
    }

    /// Appends raw bytes.
    pub fn write_bytes(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.len == N {
                self.flush();
            }
            let n = bytes.len().min(N - self.len);
            if n == N && self.len == 0 {
                // A whole buffer's worth: skip the copy.
                self.sink.write_all(&bytes[..n]);
            } else {
                self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
                self.len += n;
            }
            bytes = &bytes[n..];
        }
    }

    /// Sends what is buffered to the sink.
    pub fn flush(&mut self) {
        if self.len > 0 {
            self.sink.write_all(&self.buf[..self.len]);
            self.len = 0;
        }
    }

    /// Flushes and returns the sink.
    pub fn into_inner(mut self) -> S {
        self.flush();
        // Move the sink out without running Drop twice: BufWriter has no Drop impl.
        self.sink
    }
}

impl<S: Sink, const N: usize> fmt::Write for BufWriter<S, N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}

/// Formats `args` through an `N`-byte buffer into `sink`.
pub fn write_fmt_to<S: Sink, const N: usize>(sink: S, args: fmt::Arguments<'_>) -> S {
    let mut w = BufWriter::<S, N>::new(sink);
    // Writing to the buffer never fails; a Display impl that returns an error just stops early.
    let _ = fmt::Write::write_fmt(&mut w, args);
    w.into_inner()
}

/// Displays bytes as text, replacing invalid UTF-8 with U+FFFD. `{:?}` quotes and escapes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BStr<'a>(pub &'a [u8]);

impl fmt::Display for BStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.width().is_some() {
            // Padding needs the whole string: only for valid text (names in ls are).
            if let Ok(s) = core::str::from_utf8(self.0) {
                return fmt::Display::fmt(s, f);
            }
        }
        for chunk in self.0.utf8_chunks() {
            f.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                f.write_str("\u{fffd}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for BStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                fmt::Display::fmt(&c.escape_debug(), f)?;
            }
            if !chunk.invalid().is_empty() {
                f.write_str("\u{fffd}")?;
            }
        }
        f.write_str("\"")
    }
}

/// The sink for descriptor `fd`: `write` until everything is written or a write fails.
#[cfg(feature = "user")]
#[derive(Clone, Copy, Debug)]
pub struct FdSink(pub i32);

#[cfg(feature = "user")]
impl Sink for FdSink {
    fn write_all(&mut self, bytes: &[u8]) {
        let _ = crate::sys::write_all(self.0, bytes);
    }
}

/// What the printing macros call: formats `args` and writes them to `fd`.
#[cfg(feature = "user")]
#[doc(hidden)]
pub fn _print(fd: i32, args: fmt::Arguments<'_>) {
    write_fmt_to::<FdSink, 512>(FdSink(fd), args);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;
    use std::vec::Vec;

    /// Records every write separately.
    #[derive(Default)]
    struct Calls(Vec<Vec<u8>>);
    impl Sink for Calls {
        fn write_all(&mut self, bytes: &[u8]) {
            self.0.push(bytes.to_vec());
        }
    }

    #[test]
    fn one_write_per_small_print() {
        let c = write_fmt_to::<Calls, 64>(Calls::default(), format_args!("a {} b {}\n", 1, "x"));
        assert_eq!(c.0, [b"a 1 b x\n".to_vec()]);
        let c = write_fmt_to::<Calls, 64>(Calls::default(), format_args!(""));
        assert!(c.0.is_empty());
    }

    #[test]
    fn long_output_is_split_at_buffer_size() {
        let long = "x".repeat(150);
        let c = write_fmt_to::<Calls, 64>(Calls::default(), format_args!("{long}!"));
        let lens: Vec<usize> = c.0.iter().map(Vec::len).collect();
        assert_eq!(lens, [64, 64, 23]);
        let all: Vec<u8> = c.0.concat();
        assert_eq!(all, format!("{long}!").into_bytes());
    }

    #[test]
    fn big_write_bypasses_buffer() {
        let mut w = BufWriter::<Calls, 4>::new(Calls::default());
        w.write_bytes(b"ab");
        w.write_bytes(b"cdefghijk");
        let c = w.into_inner();
        assert_eq!(c.0.concat(), b"abcdefghijk");
        assert!(c.0.iter().all(|w| w.len() <= 4));
    }

    #[test]
    fn bstr() {
        assert_eq!(format!("{}", BStr(b"abc")), "abc");
        assert_eq!(format!("{}", BStr(b"a\xffb")), "a\u{fffd}b");
        assert_eq!(format!("{:5}|", BStr(b"ab")), "ab   |");
        assert_eq!(format!("{:?}", BStr(b"a\"\n")), "\"a\\\"\\n\"");
        let v = write_fmt_to::<Vec<u8>, 8>(Vec::new(), format_args!("{}", BStr(b"hello world")));
        assert_eq!(v, b"hello world");
    }
}
