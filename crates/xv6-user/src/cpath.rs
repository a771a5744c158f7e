//! [`CPath`]: a path name copied into a zero-terminated buffer for a system call.

use xv6_abi::param::MAXPATH;

/// A path of fewer than [`MAXPATH`] bytes, zero-terminated, as `open`, `exec` and friends take it.
#[derive(Clone)]
pub struct CPath {
    buf: [u8; MAXPATH],
    len: usize,
}

impl CPath {
    /// Copies `path`; `None` if it contains a zero byte or is too long for the kernel
    /// (`MAXPATH` bytes with the terminating zero).
    pub fn new(path: &[u8]) -> Option<CPath> {
        if path.len() >= MAXPATH || path.contains(&0) {
            return None;
        }
        let mut buf = [0; MAXPATH];
        buf[..path.len()].copy_from_slice(path);
        Some(CPath {
            buf,
            len: path.len(),
        })
    }

    /// The path without its terminating zero.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The path with its terminating zero.
    pub fn as_bytes_with_nul(&self) -> &[u8] {
        &self.buf[..=self.len]
    }

    /// A pointer to the zero-terminated path, valid while `self` is.
    pub fn as_ptr(&self) -> *const u8 {
        self.buf.as_ptr()
    }
}

impl core::fmt::Debug for CPath {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(&crate::io::BStr(self.as_bytes()), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminated() {
        let p = CPath::new(b"/a/b").unwrap();
        assert_eq!(p.as_bytes(), b"/a/b");
        assert_eq!(p.as_bytes_with_nul(), b"/a/b\0");
        assert_eq!(std::format!("{p:?}"), "\"/a/b\"");
        assert_eq!(CPath::new(b"").unwrap().as_bytes_with_nul(), b"\0");
    }

    #[test]
    fn limits() {
        assert!(CPath::new(&[b'a'; MAXPATH - 1]).is_some());
        assert!(CPath::new(&[b'a'; MAXPATH]).is_none());
        assert!(CPath::new(b"a\0b").is_none());
    }
}
