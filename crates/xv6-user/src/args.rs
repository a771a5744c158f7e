//! [`Args`]: the program's arguments as the kernel passed them (`argc`, `argv`).

use core::fmt;

/// The program's arguments: `argc` pointers to zero-terminated strings, which live as long as the
/// program (they are on its stack, below everything it pushes).
#[derive(Clone, Copy)]
pub struct Args {
    argc: usize,
    argv: *const *const u8,
}

impl Args {
    /// Wraps `argc` and `argv`. A null `argv` means no arguments.
    ///
    /// # Safety
    ///
    /// `argv` is null or points at `argc` pointers to zero-terminated strings that are never
    /// changed or freed afterwards.
    pub unsafe fn from_raw(argc: usize, argv: *const *const u8) -> Args {
        let argc = if argv.is_null() { 0 } else { argc };
        Args { argc, argv }
    }

    /// No arguments at all (not even a program name).
    pub const fn empty() -> Args {
        Args {
            argc: 0,
            argv: core::ptr::null(),
        }
    }

    /// The number of arguments, the program's name included.
    pub fn len(&self) -> usize {
        self.argc
    }

    /// True if there are no arguments, not even a program name.
    pub fn is_empty(&self) -> bool {
        self.argc == 0
    }

    /// Argument `i` (0 is the program's name), without its terminating zero.
    pub fn get(&self, i: usize) -> Option<&'static [u8]> {
        if i >= self.argc {
            return None;
        }
        // SAFETY: `from_raw`'s contract: argv[i] for i < argc is a zero-terminated string that
        // lives for the rest of the program.
        unsafe {
            let p = *self.argv.add(i);
            if p.is_null() {
                return None;
            }
            Some(core::slice::from_raw_parts(p, crate::mem::string_length(p)))
        }
    }

    /// Argument `i` as text, if it is valid UTF-8.
    pub fn get_str(&self, i: usize) -> Option<&'static str> {
        self.get(i).and_then(|a| core::str::from_utf8(a).ok())
    }

    /// The program's name, or `"?"` when there is none.
    pub fn program(&self) -> &'static [u8] {
        self.get(0).unwrap_or(b"?")
    }

    /// Iterates over all arguments, the program's name first.
    pub fn iter(&self) -> ArgsIter {
        ArgsIter {
            args: *self,
            next: 0,
        }
    }
}

impl fmt::Debug for Args {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(crate::io::BStr))
            .finish()
    }
}

impl IntoIterator for Args {
    type Item = &'static [u8];
    type IntoIter = ArgsIter;
    fn into_iter(self) -> ArgsIter {
        self.iter()
    }
}

/// Iterator over [`Args`].
#[derive(Clone, Debug)]
pub struct ArgsIter {
    args: Args,
    next: usize,
}

impl Iterator for ArgsIter {
    type Item = &'static [u8];

    fn next(&mut self) -> Option<&'static [u8]> {
        let a = self.args.get(self.next)?;
        self.next += 1;
        Some(a)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.args.len().saturating_sub(self.next);
        (n, Some(n))
    }
}

impl ExactSizeIterator for ArgsIter {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    static A0: &[u8] = b"echo\0";
    static A1: &[u8] = b"hello\0";
    static A2: &[u8] = b"\xffworld\0";

    fn argv() -> &'static [*const u8] {
        let v: Vec<*const u8> = std::vec![A0.as_ptr(), A1.as_ptr(), A2.as_ptr(), core::ptr::null()];
        v.leak()
    }

    #[test]
    fn iterates() {
        let v = argv();
        // SAFETY: three static zero-terminated strings.
        let args = unsafe { Args::from_raw(3, v.as_ptr()) };
        assert_eq!(args.len(), 3);
        let all: Vec<&[u8]> = args.iter().collect();
        assert_eq!(all, [&b"echo"[..], b"hello", b"\xffworld"]);
        assert_eq!(args.get_str(1), Some("hello"));
        assert_eq!(args.get_str(2), None);
        assert_eq!(args.get(3), None);
        assert_eq!(args.program(), b"echo");
        assert_eq!(args.iter().len(), 3);
        assert_eq!(
            std::format!("{args:?}"),
            "[\"echo\", \"hello\", \"\u{fffd}world\"]"
        );
    }

    #[test]
    fn null_argv_is_empty() {
        // SAFETY: a null argv is allowed.
        let args = unsafe { Args::from_raw(5, core::ptr::null()) };
        assert!(args.is_empty());
        assert_eq!(args.iter().count(), 0);
        assert_eq!(args.program(), b"?");
        assert!(Args::empty().is_empty());
    }
}
