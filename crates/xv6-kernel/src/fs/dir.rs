//! Directories and path names (the second half of xv6's fs.c): a directory is a file of
//! 16-byte entries (`xv6_abi::Dirent`), scanned a block at a time; `namei` walks a path from the
//! root or a given current directory, locking one directory at a time.

use crate::fs::fs::{iget, iget_checked, InodeRef, Locked};
use xv6_abi::fs::{decode_dirent, encode_dirent, BSIZE, DIRENT_SIZE, ROOTINO};
use xv6_abi::stat::T_DIR;
use xv6_abi::{Dirent, DIRSIZ};

impl Locked<'_> {
    /// Calls `each(offset, entry)` for the directory's entries from byte `from` on, a block
    /// read at a time, until it returns `Break`. Ok(Some(v)) if it broke with `v`, Ok(None) at
    /// the end; Err(offset) at an entry that cannot be read or decoded.
    fn scan_dir<T>(
        &self,
        from: u32,
        mut each: impl FnMut(u32, &Dirent) -> core::ops::ControlFlow<T>,
    ) -> Result<Option<T>, u32> {
        let size = self.size();
        let mut off = from;
        let mut block = [0u8; BSIZE];
        while off + DIRENT_SIZE as u32 <= size {
            // The whole entries from `off` to the end of its block (or of the directory).
            let block_end = (off / BSIZE as u32 + 1) * BSIZE as u32;
            let end = block_end.min(size - (size - off) % DIRENT_SIZE as u32);
            let n = (end - off) as usize;
            if self.read_kernel(off, &mut block[..n]) != Some(n as u32) {
                return Err(off);
            }
            for (i, raw) in block[..n].chunks_exact(DIRENT_SIZE).enumerate() {
                let at = off + (i * DIRENT_SIZE) as u32;
                let de = decode_dirent(raw).map_err(|_| at)?;
                if let core::ops::ControlFlow::Break(v) = each(at, &de) {
                    return Ok(Some(v));
                }
            }
            off = end;
        }
        Ok(None)
    }

    /// Looks `name` up in this directory: the inode and the entry's byte offset.
    pub fn dir_lookup(&self, name: &[u8]) -> Option<(InodeRef, u32)> {
        use core::ops::ControlFlow::{Break, Continue};
        if self.typ() != T_DIR {
            return None;
        }
        let found = self.scan_dir(0, |off, de| {
            if de.inum != 0 && names_equal(de.name_bytes(), name) {
                Break((de.inum, off))
            } else {
                Continue(())
            }
        });
        let (inum, off) = found.ok()??;
        Some((iget_checked(inum as u32)?, off))
    }

    /// Adds entry `name` -> `inum`; false if the name exists or the directory cannot grow.
    pub fn dir_link(&self, name: &[u8], inum: u32) -> bool {
        if let Some((ip, _)) = self.dir_lookup(name) {
            ip.put();
            return false;
        }
        use core::ops::ControlFlow::{Break, Continue};
        // The first free entry, or the end of the directory.
        let free = self.scan_dir(0, |off, de| {
            if de.inum == 0 {
                Break(off)
            } else {
                Continue(())
            }
        });
        let off = match free {
            Ok(Some(off)) => off,
            Ok(None) => self.size() - self.size() % DIRENT_SIZE as u32,
            Err(_) => return false,
        };
        let mut de = Dirent {
            inum: inum as u16,
            name: [0; DIRSIZ],
        };
        let n = name.len().min(DIRSIZ);
        de.name[..n].copy_from_slice(&name[..n]);
        let mut b = [0u8; DIRENT_SIZE];
        encode_dirent(&de, &mut b);
        self.write_kernel(off, &b) == Some(DIRENT_SIZE as u32)
    }

    /// Clears the entry at `off`.
    pub fn dir_clear(&self, off: u32) -> bool {
        self.write_kernel(off, &[0u8; DIRENT_SIZE]) == Some(DIRENT_SIZE as u32)
    }

    /// Whether the directory holds only `.` and `..`.
    pub fn dir_is_empty(&self) -> bool {
        use core::ops::ControlFlow::{Break, Continue};
        let used = self.scan_dir(2 * DIRENT_SIZE as u32, |_, de| {
            if de.inum == 0 {
                Continue(())
            } else {
                Break(())
            }
        });
        matches!(used, Ok(None))
    }
}

fn names_equal(a: &[u8], b: &[u8]) -> bool {
    let b = &b[..b.len().min(DIRSIZ)];
    a == b
}

/// Splits the next element off `path`: (element, rest), skipping slashes; None at the end.
pub fn skip_elem(path: &[u8]) -> Option<(&[u8], &[u8])> {
    let p = path.iter().position(|&c| c != b'/')?;
    let path = &path[p..];
    let e = path.iter().position(|&c| c == b'/').unwrap_or(path.len());
    let rest = &path[e..];
    let r = rest.iter().position(|&c| c != b'/').unwrap_or(rest.len());
    Some((&path[..e], &rest[r..]))
}

fn namex(
    cwd: Option<&InodeRef>,
    path: &[u8],
    parent: bool,
) -> Option<(InodeRef, [u8; DIRSIZ], usize)> {
    let mut ip = if path.first() == Some(&b'/') {
        iget(ROOTINO)?
    } else {
        cwd?.dup()
    };
    let mut rest = path;
    let mut last = ([0u8; DIRSIZ], 0usize);
    while let Some((elem, r)) = skip_elem(rest) {
        let n = elem.len().min(DIRSIZ);
        last.0 = [0; DIRSIZ];
        last.0[..n].copy_from_slice(&elem[..n]);
        last.1 = n;
        let l = ip.lock();
        if l.typ() != T_DIR {
            drop(l);
            ip.put();
            return None;
        }
        if parent && r.is_empty() {
            drop(l);
            return Some((ip, last.0, last.1));
        }
        let next = l.dir_lookup(elem);
        drop(l);
        let Some((next, _)) = next else {
            ip.put();
            return None;
        };
        ip.put();
        ip = next;
        rest = r;
    }
    if parent {
        ip.put();
        return None;
    }
    Some((ip, last.0, last.1))
}

/// The inode for `path`, from `cwd` unless it starts with `/` (a relative path without a `cwd`
/// fails). Must be called inside a transaction (it may drop references).
pub fn namei(cwd: Option<&InodeRef>, path: &[u8]) -> Option<InodeRef> {
    namex(cwd, path, false).map(|r| r.0)
}

/// The parent directory of `path` and the last element's name.
pub fn namei_parent(
    cwd: Option<&InodeRef>,
    path: &[u8],
) -> Option<(InodeRef, [u8; DIRSIZ], usize)> {
    namex(cwd, path, true)
}

#[allow(dead_code)]
const _: () = assert!(BSIZE.is_multiple_of(DIRENT_SIZE));
