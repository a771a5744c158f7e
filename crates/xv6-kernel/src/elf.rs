//! Checking an ELF64 executable against the ABI before `exec` loads it: static x86-64 `ET_EXEC`,
//! loadable segments page-aligned, inside the program area, not overlapping, sizes consistent,
//! the entry point in an executable segment. Anything else is refused with a reason.

use xv6_abi::layout::{HEAP_LIMIT, USER_BASE};

/// Size of the ELF header.
pub const EHDR_SIZE: usize = 64;
/// Size of a program header.
pub const PHDR_SIZE: usize = 56;
/// Most program headers accepted.
pub const MAX_PHDRS: usize = 16;
/// Segment permission bits.
pub const PF_X: u32 = 1;
/// Writable.
pub const PF_W: u32 = 2;
/// Readable.
pub const PF_R: u32 = 4;

/// A loadable segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// Where it goes (page-aligned).
    pub vaddr: u64,
    /// Bytes in memory.
    pub memsz: u64,
    /// Offset of its bytes in the file.
    pub offset: u64,
    /// Bytes taken from the file (the rest is zero).
    pub filesz: u64,
    /// `PF_*` bits.
    pub flags: u32,
}

/// The parts of the header `exec` needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Entry point.
    pub entry: u64,
    /// Program header table offset.
    pub phoff: u64,
    /// Number of program headers.
    pub phnum: usize,
}

/// Why an executable was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Not an ELF file, or not 64-bit little-endian x86-64 `ET_EXEC`.
    NotExecutable(&'static str),
    /// A program header breaks the ABI's rules.
    BadSegment(&'static str),
    /// No loadable segment holds the entry point with execute permission.
    BadEntry,
}

impl core::fmt::Display for ElfError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ElfError::NotExecutable(why) => write!(f, "not an xv6 executable: {why}"),
            ElfError::BadSegment(why) => write!(f, "bad program segment: {why}"),
            ElfError::BadEntry => write!(f, "entry point outside the executable segments"),
        }
    }
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or([0; 4]))
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]))
}

/// Checks the ELF header (the first 64 bytes of the file).
pub fn parse_header(b: &[u8]) -> Result<Header, ElfError> {
    if b.len() < EHDR_SIZE || &b[0..4] != b"\x7fELF" {
        return Err(ElfError::NotExecutable("no ELF magic"));
    }
    if b[4] != 2 || b[5] != 1 {
        return Err(ElfError::NotExecutable("not 64-bit little-endian"));
    }
    if u16_at(b, 16) != 2 {
        return Err(ElfError::NotExecutable("not ET_EXEC (static, non-PIE)"));
    }
    if u16_at(b, 18) != 62 {
        return Err(ElfError::NotExecutable("not x86-64"));
    }
    let phnum = u16_at(b, 56) as usize;
    if u16_at(b, 54) as usize != PHDR_SIZE || phnum == 0 || phnum > MAX_PHDRS {
        return Err(ElfError::NotExecutable("bad program header table"));
    }
    Ok(Header {
        entry: u64_at(b, 24),
        phoff: u64_at(b, 32),
        phnum,
    })
}

/// Checks the program headers (`phnum * 56` bytes) and returns the loadable segments, sorted.
pub fn parse_segments(
    h: &Header,
    ph: &[u8],
    out: &mut [Segment; MAX_PHDRS],
) -> Result<usize, ElfError> {
    if ph.len() < h.phnum * PHDR_SIZE {
        return Err(ElfError::NotExecutable("program headers cut short"));
    }
    let mut n = 0;
    for i in 0..h.phnum {
        let p = &ph[i * PHDR_SIZE..(i + 1) * PHDR_SIZE];
        match u32_at(p, 0) {
            1 => {}                                                             // PT_LOAD
            2 | 3 => return Err(ElfError::NotExecutable("dynamically linked")), // DYNAMIC, INTERP
            _ => continue,
        }
        let s = Segment {
            flags: u32_at(p, 4),
            offset: u64_at(p, 8),
            vaddr: u64_at(p, 16),
            filesz: u64_at(p, 32),
            memsz: u64_at(p, 40),
        };
        if s.memsz == 0 {
            continue;
        }
        if !s.vaddr.is_multiple_of(4096) {
            return Err(ElfError::BadSegment("address not page-aligned"));
        }
        if s.filesz > s.memsz {
            return Err(ElfError::BadSegment("file size larger than memory size"));
        }
        let end = s
            .vaddr
            .checked_add(s.memsz)
            .ok_or(ElfError::BadSegment("size overflows"))?;
        if s.vaddr < USER_BASE || end > HEAP_LIMIT {
            return Err(ElfError::BadSegment("outside the program area"));
        }
        if s.offset
            .checked_add(s.filesz)
            .is_none_or(|e| e > u32::MAX as u64)
        {
            return Err(ElfError::BadSegment("file range overflows"));
        }
        out[n] = s;
        n += 1;
    }
    if n == 0 {
        return Err(ElfError::NotExecutable("no loadable segment"));
    }
    out[..n].sort_unstable_by_key(|s| s.vaddr);
    for w in out[..n].windows(2) {
        let prev_end = (w[0].vaddr + w[0].memsz).div_ceil(4096) * 4096;
        if w[1].vaddr < prev_end {
            return Err(ElfError::BadSegment("segments overlap"));
        }
    }
    let entry_ok = out[..n]
        .iter()
        .any(|s| s.flags & PF_X != 0 && h.entry >= s.vaddr && h.entry < s.vaddr + s.memsz);
    if !entry_ok {
        return Err(ElfError::BadEntry);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn elf(segs: &[(u32, u32, u64, u64, u64, u64)], entry: u64) -> Vec<u8> {
        let mut b = std::vec![0u8; EHDR_SIZE + segs.len() * PHDR_SIZE];
        b[0..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[16..18].copy_from_slice(&2u16.to_le_bytes());
        b[18..20].copy_from_slice(&62u16.to_le_bytes());
        b[24..32].copy_from_slice(&entry.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&(segs.len() as u16).to_le_bytes());
        for (i, &(t, fl, off, va, fsz, msz)) in segs.iter().enumerate() {
            let p = &mut b[64 + i * 56..64 + (i + 1) * 56];
            p[0..4].copy_from_slice(&t.to_le_bytes());
            p[4..8].copy_from_slice(&fl.to_le_bytes());
            p[8..16].copy_from_slice(&off.to_le_bytes());
            p[16..24].copy_from_slice(&va.to_le_bytes());
            p[32..40].copy_from_slice(&fsz.to_le_bytes());
            p[40..48].copy_from_slice(&msz.to_le_bytes());
        }
        b
    }

    fn check(b: &[u8]) -> Result<usize, ElfError> {
        let h = parse_header(b)?;
        let mut out = [Segment::default(); MAX_PHDRS];
        parse_segments(&h, &b[64..], &mut out)
    }

    #[test]
    fn accepts_a_normal_program() {
        let b = elf(
            &[
                (1, PF_R | PF_X, 0x1000, 0x40_0000, 0x2000, 0x2000),
                (1, PF_R | PF_W, 0x3000, 0x40_2000, 0x100, 0x5000),
                (0x6474_e551, 6, 0, 0, 0, 0), // GNU_STACK: ignored
            ],
            0x40_0010,
        );
        assert_eq!(check(&b), Ok(2));
    }

    #[test]
    fn refuses_what_the_abi_forbids() {
        let text = (1, PF_R | PF_X, 0x1000, 0x40_0000, 0x100, 0x100);
        assert!(check(b"#!/bin/sh\n").is_err());
        let mut b = elf(&[text], 0x40_0000);
        b[16] = 3; // ET_DYN
        assert!(matches!(check(&b), Err(ElfError::NotExecutable(_))));
        let unaligned = (1, 5, 0, 0x40_0010, 0x10, 0x10);
        assert_eq!(
            check(&elf(&[unaligned], 0x40_0010)),
            Err(ElfError::BadSegment("address not page-aligned"))
        );
        let kernel = (1, 5, 0, 0xffff_8000_0000_0000, 0x10, 0x10);
        assert!(check(&elf(&[kernel], 0xffff_8000_0000_0000)).is_err());
        let wrap = (1, 5, 0, 0x40_0000, 0x10, u64::MAX - 0x1000);
        assert!(check(&elf(&[wrap], 0x40_0000)).is_err());
        let big_file = (1, 5, 0, 0x40_0000, 0x20, 0x10);
        assert!(check(&elf(&[big_file], 0x40_0000)).is_err());
        let overlap = (1, 6, 0, 0x40_0000, 0x10, 0x10);
        assert_eq!(
            check(&elf(&[text, overlap], 0x40_0000)),
            Err(ElfError::BadSegment("segments overlap"))
        );
        assert_eq!(check(&elf(&[text], 0x50_0000)), Err(ElfError::BadEntry));
        let data_only = (1, 6, 0, 0x40_0000, 0x10, 0x10);
        assert_eq!(
            check(&elf(&[data_only], 0x40_0000)),
            Err(ElfError::BadEntry)
        );
        let interp = (3, 4, 0, 0, 0, 0);
        assert!(check(&elf(&[interp, text], 0x40_0000)).is_err());
    }

    #[test]
    fn random_headers_never_panic() {
        let base = elf(&[(1, 5, 0x1000, 0x40_0000, 0x100, 0x100)], 0x40_0000);
        let mut x = 88172645463325252u64;
        for _ in 0..20000 {
            let mut b = base.clone();
            for _ in 0..3 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x as usize) % b.len();
                b[i] = (x >> 32) as u8;
            }
            let _ = check(&b);
        }
    }
}
