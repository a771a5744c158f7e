//! What the boot loader tells the kernel: the PVH `hvm_start_info` block, with the physical memory
//! map and the command line, and the usable memory that follows from it.
//!
//! Parsing reads physical memory through a caller-supplied function, so the same code runs on the
//! host in tests (over a byte array) and in the kernel (over the direct map).

/// `hvm_start_info.magic`.
pub const PVH_MAGIC: u32 = 0x336e_c578;
/// Memory-map entry type of usable RAM (E820 type 1).
pub const E820_RAM: u32 = 1;
/// Most memory-map entries kept; more are reported as an error.
pub const MAX_REGIONS: usize = 64;
/// Longest command line kept (longer ones are an error, not silently cut).
pub const MAX_CMDLINE: usize = xv6_abi::param::MAX_CMDLINE;

/// A physical address range `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PhysRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

impl PhysRange {
    /// Bytes in the range.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
    /// Whether the range holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// Why the boot information could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootInfoError {
    /// The block does not start with the PVH magic number.
    BadMagic(u32),
    /// Version 0 has no memory map.
    NoMemoryMap,
    /// More memory-map entries than [`MAX_REGIONS`].
    TooManyRegions(u32),
    /// The command line is longer than [`MAX_CMDLINE`] or not terminated.
    CommandLineTooLong,
}

impl core::fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BootInfoError::BadMagic(m) => write!(
                f,
                "boot information has magic {m:#x}, not PVH's {PVH_MAGIC:#x}: boot with QEMU -kernel"
            ),
            BootInfoError::NoMemoryMap => {
                write!(f, "PVH boot information version 0 carries no memory map")
            }
            BootInfoError::TooManyRegions(n) => {
                write!(f, "memory map has {n} entries; at most {MAX_REGIONS} are supported")
            }
            BootInfoError::CommandLineTooLong => {
                write!(f, "kernel command line longer than {MAX_CMDLINE} bytes")
            }
        }
    }
}

/// The parsed boot information.
#[derive(Clone, Debug)]
pub struct BootInfo {
    /// RAM ranges from the memory map, sorted and merged.
    pub ram: [PhysRange; MAX_REGIONS],
    /// How many entries of `ram` are used.
    pub nram: usize,
    /// The command line bytes.
    pub cmdline: [u8; MAX_CMDLINE],
    /// Its length.
    pub cmdline_len: usize,
    /// Physical address of the ACPI RSDP, if given.
    pub rsdp: u64,
}

impl BootInfo {
    /// The RAM ranges.
    pub fn ram(&self) -> &[PhysRange] {
        &self.ram[..self.nram]
    }
    /// The command line (may be empty).
    pub fn cmdline(&self) -> &[u8] {
        &self.cmdline[..self.cmdline_len]
    }
    /// The value of a leading `heap=NAME` word of the command line (the kernel heap to run on),
    /// and the rest of the line, which goes to /init: `heap=classic usertests` gives
    /// `(Some(b"classic"), b"usertests")`; a line without it gives `(None, line)`.
    pub fn heap_option(&self) -> (Option<&[u8]>, &[u8]) {
        split_heap_option(self.cmdline())
    }
    /// Highest RAM address + 1.
    pub fn top_of_ram(&self) -> u64 {
        self.ram().iter().map(|r| r.end).max().unwrap_or(0)
    }
}

fn u32_at(read: &mut impl FnMut(u64, &mut [u8]), pa: u64) -> u32 {
    let mut b = [0u8; 4];
    read(pa, &mut b);
    u32::from_le_bytes(b)
}

fn u64_at(read: &mut impl FnMut(u64, &mut [u8]), pa: u64) -> u64 {
    let mut b = [0u8; 8];
    read(pa, &mut b);
    u64::from_le_bytes(b)
}

/// Parses the `hvm_start_info` at physical address `pa`; `read(addr, buf)` fills `buf` from
/// physical memory at `addr`.
pub fn parse(pa: u64, mut read: impl FnMut(u64, &mut [u8])) -> Result<BootInfo, BootInfoError> {
    let magic = u32_at(&mut read, pa);
    if magic != PVH_MAGIC {
        return Err(BootInfoError::BadMagic(magic));
    }
    let version = u32_at(&mut read, pa + 4);
    let cmdline_pa = u64_at(&mut read, pa + 24);
    let rsdp = u64_at(&mut read, pa + 32);
    if version < 1 {
        return Err(BootInfoError::NoMemoryMap);
    }
    let map_pa = u64_at(&mut read, pa + 40);
    let entries = u32_at(&mut read, pa + 48);
    if entries as usize > MAX_REGIONS {
        return Err(BootInfoError::TooManyRegions(entries));
    }
    let mut ram = [PhysRange::default(); MAX_REGIONS];
    let mut nram = 0;
    for i in 0..entries as u64 {
        let e = map_pa + i * 24;
        let addr = u64_at(&mut read, e);
        let size = u64_at(&mut read, e + 8);
        let typ = u32_at(&mut read, e + 16);
        if typ == E820_RAM && size > 0 {
            ram[nram] = PhysRange {
                start: addr,
                end: addr.saturating_add(size),
            };
            nram += 1;
        }
    }
    let nram = sort_and_merge(&mut ram[..nram]);
    let mut cmdline = [0u8; MAX_CMDLINE];
    let mut cmdline_len = 0;
    if cmdline_pa != 0 {
        loop {
            let mut b = [0u8];
            read(cmdline_pa + cmdline_len as u64, &mut b);
            if b[0] == 0 {
                break;
            }
            if cmdline_len == MAX_CMDLINE {
                return Err(BootInfoError::CommandLineTooLong);
            }
            cmdline[cmdline_len] = b[0];
            cmdline_len += 1;
        }
    }
    Ok(BootInfo {
        ram,
        nram,
        cmdline,
        cmdline_len,
        rsdp,
    })
}

/// See [`BootInfo::heap_option`].
pub fn split_heap_option(line: &[u8]) -> (Option<&[u8]>, &[u8]) {
    let Some(rest) = line.strip_prefix(b"heap=") else {
        return (None, line);
    };
    let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    let after = &rest[end..];
    let skip = after.iter().take_while(|&&b| b == b' ').count();
    (Some(&rest[..end]), &after[skip..])
}

/// Sorts ranges by start and merges overlapping or touching ones; returns how many remain at the
/// front of `r`.
pub fn sort_and_merge(r: &mut [PhysRange]) -> usize {
    r.sort_unstable_by_key(|x| x.start);
    let mut n = 0;
    for i in 0..r.len() {
        let cur = r[i];
        if cur.is_empty() {
            continue;
        }
        if n > 0 && cur.start <= r[n - 1].end {
            r[n - 1].end = r[n - 1].end.max(cur.end);
        } else {
            r[n] = cur;
            n += 1;
        }
    }
    n
}

/// The RAM the frame allocator may own: `ram` minus everything below [`crate::layout::LOW_MEMORY`]
/// and minus each range of `reserved`, shrunk inward to whole pages. Calls `out` for each piece.
pub fn usable(ram: &[PhysRange], reserved: &[PhysRange], mut out: impl FnMut(PhysRange)) {
    use crate::layout::{page_down, page_up, LOW_MEMORY};
    for r in ram {
        // Cut `r` by every reserved range: walk the pieces left to right.
        let mut start = r.start.max(LOW_MEMORY);
        let end = r.end;
        while start < end {
            // The first reserved range that overlaps [start, end).
            let cut = reserved
                .iter()
                .filter(|x| x.start < end && x.end > start)
                .min_by_key(|x| x.start);
            let piece_end = match cut {
                Some(c) => c.start.max(start),
                None => end,
            };
            if let (Some(s), e) = (page_up(start), page_down(piece_end)) {
                if s < e {
                    out(PhysRange { start: s, end: e });
                }
            }
            match cut {
                Some(c) => start = c.end.max(start),
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    struct Mem(Vec<u8>);
    impl Mem {
        fn put32(&mut self, a: usize, v: u32) {
            self.0[a..a + 4].copy_from_slice(&v.to_le_bytes());
        }
        fn put64(&mut self, a: usize, v: u64) {
            self.0[a..a + 8].copy_from_slice(&v.to_le_bytes());
        }
        fn reader(&self) -> impl FnMut(u64, &mut [u8]) + '_ {
            |a, b| {
                let a = a as usize;
                b.copy_from_slice(&self.0[a..a + b.len()]);
            }
        }
    }

    fn image(entries: &[(u64, u64, u32)], cmd: &[u8]) -> Mem {
        let mut m = Mem(vec![0; 8192]);
        m.put32(0, PVH_MAGIC);
        m.put32(4, 1);
        m.put64(24, 0x1000);
        m.put64(40, 0x800);
        m.put32(48, entries.len() as u32);
        for (i, &(a, s, t)) in entries.iter().enumerate() {
            m.put64(0x800 + i * 24, a);
            m.put64(0x800 + i * 24 + 8, s);
            m.put32(0x800 + i * 24 + 16, t);
        }
        m.0[0x1000..0x1000 + cmd.len()].copy_from_slice(cmd);
        m
    }

    #[test]
    fn parses_qemu_like_map() {
        let m = image(
            &[
                (0, 0x9fc00, 1),
                (0x9fc00, 0x400, 2),
                (0xf0000, 0x10000, 2),
                (0x10_0000, 0x7ee_0000, 1),
                (0xfffc_0000, 0x4_0000, 2),
            ],
            b"usertests\0",
        );
        let bi = parse(0, m.reader()).unwrap();
        assert_eq!(bi.ram().len(), 2);
        assert_eq!(bi.top_of_ram(), 0x7fe_0000);
        assert_eq!(bi.cmdline(), b"usertests");
    }

    #[test]
    fn rejects_bad_magic_and_v0() {
        let mut m = image(&[], b"\0");
        m.put32(0, 0x1bad_b002);
        assert_eq!(
            parse(0, m.reader()).unwrap_err(),
            BootInfoError::BadMagic(0x1bad_b002)
        );
        let mut m = image(&[], b"\0");
        m.put32(4, 0);
        assert_eq!(
            parse(0, m.reader()).unwrap_err(),
            BootInfoError::NoMemoryMap
        );
        let mut m = image(&[], b"\0");
        m.put32(48, 1000);
        assert!(matches!(
            parse(0, m.reader()),
            Err(BootInfoError::TooManyRegions(1000))
        ));
    }

    #[test]
    fn heap_option_is_split_off_the_command_line() {
        assert_eq!(
            split_heap_option(b"heap=classic usertests -a"),
            (Some(&b"classic"[..]), &b"usertests -a"[..])
        );
        assert_eq!(
            split_heap_option(b"heap=bounded"),
            (Some(&b"bounded"[..]), &b""[..])
        );
        assert_eq!(split_heap_option(b"usertests"), (None, &b"usertests"[..]));
        assert_eq!(
            split_heap_option(b"echo heap=x"),
            (None, &b"echo heap=x"[..])
        );
        assert_eq!(split_heap_option(b""), (None, &b""[..]));
    }

    #[test]
    fn overlong_command_line_is_an_error() {
        let mut cmd = vec![b'x'; MAX_CMDLINE + 1];
        cmd.push(0);
        let m = image(&[(0x10_0000, 0x10_0000, 1)], &cmd);
        assert_eq!(
            parse(0, m.reader()).unwrap_err(),
            BootInfoError::CommandLineTooLong
        );
    }

    #[test]
    fn merging() {
        let mut r = [
            PhysRange { start: 10, end: 20 },
            PhysRange { start: 0, end: 5 },
            PhysRange { start: 5, end: 12 },
            PhysRange { start: 30, end: 30 },
        ];
        let n = sort_and_merge(&mut r);
        assert_eq!(&r[..n], &[PhysRange { start: 0, end: 20 }]);
    }

    #[test]
    fn usable_cuts_low_memory_kernel_and_partial_pages() {
        let ram = [
            PhysRange {
                start: 0,
                end: 0x9fc00,
            },
            PhysRange {
                start: 0x10_0000,
                end: 0x800_0000 + 0x123,
            },
        ];
        let kernel = [PhysRange {
            start: 0x10_0000,
            end: 0x20_0800,
        }];
        let mut got = Vec::new();
        usable(&ram, &kernel, |r| got.push(r));
        assert_eq!(
            got,
            vec![PhysRange {
                start: 0x20_1000,
                end: 0x800_0000
            }]
        );
        // A hole in the middle splits a range.
        let hole = [PhysRange {
            start: 0x300_0000,
            end: 0x300_1000,
        }];
        let mut got = Vec::new();
        usable(&ram, &hole, |r| got.push(r));
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].end, 0x300_0000);
        assert_eq!(got[1].start, 0x300_1000);
    }
}
