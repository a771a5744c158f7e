//! ls's formatting: xv6's `name type inode size` lines, the name padded to [`DIRSIZ`].

use core::fmt;
use xv6_abi::{Dirent, Stat, DIRSIZ};

/// Writes one line for a file: its last path component padded with spaces to `DIRSIZ`, then
/// type, inode number and size.
pub fn write_entry<W: fmt::Write>(w: &mut W, path: &[u8], st: &Stat) -> fmt::Result {
    let name = crate::path::basename(path);
    write!(w, "{}", crate::io::BStr(name))?;
    for _ in name.len()..DIRSIZ {
        w.write_char(' ')?;
    }
    writeln!(w, " {} {} {}", st.typ, st.ino, st.size)
}

/// Decodes a directory entry as `read` returns it from a directory (16 bytes, little-endian).
pub fn parse_dirent(raw: &[u8; 16]) -> Dirent {
    let mut name = [0; DIRSIZ];
    name.copy_from_slice(&raw[2..]);
    Dirent {
        inum: u16::from_le_bytes([raw[0], raw[1]]),
        name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;

    fn st(typ: i16, ino: u32, size: u64) -> Stat {
        Stat {
            dev: 1,
            ino,
            typ,
            nlink: 1,
            size,
        }
    }

    #[test]
    fn pads_names() {
        let mut s = String::new();
        write_entry(&mut s, b"./README", &st(2, 2, 2290)).unwrap();
        write_entry(&mut s, b".", &st(1, 1, 1024)).unwrap();
        write_entry(&mut s, b"dir/abcdefghijklmnop", &st(2, 7, 0)).unwrap();
        assert_eq!(
            s,
            "README         2 2 2290\n\
             .              1 1 1024\n\
             abcdefghijklmnop 2 7 0\n"
        );
    }

    #[test]
    fn dirents() {
        let mut raw = [0u8; 16];
        raw[0] = 0x34;
        raw[1] = 0x12;
        raw[2..5].copy_from_slice(b"cat");
        let d = parse_dirent(&raw);
        assert_eq!(d.inum, 0x1234);
        assert_eq!(d.name_bytes(), b"cat");
        let full = [b'x'; 16];
        assert_eq!(parse_dirent(&full).name_bytes().len(), DIRSIZ);
    }
}
