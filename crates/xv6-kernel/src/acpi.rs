//! Finds the CPUs and I/O APICs in the ACPI MADT ("APIC" table), starting from the RSDP the PVH
//! boot information gives. Reads physical memory through a caller-supplied function, so it is
//! tested on the host over byte arrays; every length is bounds-checked and every checksum verified,
//! and bad tables give an error, never a wild read loop.

/// What the MADT says.
#[derive(Clone, Debug, Default)]
pub struct Madt {
    /// Local APIC physical address.
    pub lapic_addr: u64,
    /// APIC ids of enabled CPUs, in table order (the boot CPU is usually first).
    pub cpus: [u32; 8],
    /// How many of `cpus` are used.
    pub ncpu: usize,
    /// CPUs listed beyond the kernel's limit of 8.
    pub cpus_ignored: usize,
    /// First I/O APIC: physical address and first GSI.
    pub ioapic: Option<(u64, u32)>,
    /// ISA IRQ -> GSI overrides (index: IRQ 0..16), with polarity/trigger flags.
    pub irq_override: [Option<(u32, u16)>; 16],
}

/// Why the tables could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// No RSDP signature at the given address.
    NoRsdp,
    /// A table's checksum is wrong.
    Checksum(&'static str),
    /// No MADT in the RSDT/XSDT.
    NoMadt,
    /// A length field is impossible.
    BadLength(&'static str),
}

fn sum(read: &mut impl FnMut(u64, &mut [u8]), pa: u64, len: u64) -> u8 {
    let mut s = 0u8;
    let mut buf = [0u8; 64];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(64) as usize;
        read(pa + off, &mut buf[..n]);
        for b in &buf[..n] {
            s = s.wrapping_add(*b);
        }
        off += n as u64;
    }
    s
}

fn rd<const N: usize>(read: &mut impl FnMut(u64, &mut [u8]), pa: u64) -> [u8; N] {
    let mut b = [0u8; N];
    read(pa, &mut b);
    b
}

/// Largest table accepted (a MADT for 8 CPUs is a few hundred bytes).
const MAX_TABLE: u32 = 64 * 1024;

/// Parses the MADT reachable from the RSDP at `rsdp`.
pub fn parse_madt(rsdp: u64, mut read: impl FnMut(u64, &mut [u8])) -> Result<Madt, AcpiError> {
    let r = &mut read;
    if &rd::<8>(r, rsdp) != b"RSD PTR " {
        return Err(AcpiError::NoRsdp);
    }
    if sum(r, rsdp, 20) != 0 {
        return Err(AcpiError::Checksum("RSDP"));
    }
    let rev = rd::<1>(r, rsdp + 15)[0];
    let (root, entry) = if rev >= 2 {
        (u64::from_le_bytes(rd::<8>(r, rsdp + 24)), 8u64)
    } else {
        (u32::from_le_bytes(rd::<4>(r, rsdp + 16)) as u64, 4u64)
    };
    let rlen = table_len(r, root, "RSDT")?;
    let mut madt = None;
    let mut off = 36;
    while off + entry <= rlen as u64 {
        let t = if entry == 8 {
            u64::from_le_bytes(rd::<8>(r, root + off))
        } else {
            u32::from_le_bytes(rd::<4>(r, root + off)) as u64
        };
        if &rd::<4>(r, t) == b"APIC" {
            madt = Some(t);
            break;
        }
        off += entry;
    }
    let t = madt.ok_or(AcpiError::NoMadt)?;
    let len = table_len(r, t, "MADT")? as u64;
    let mut m = Madt {
        lapic_addr: u32::from_le_bytes(rd::<4>(r, t + 36)) as u64,
        ..Madt::default()
    };
    let mut off = 44;
    while off + 2 <= len {
        let [typ, elen] = rd::<2>(r, t + off);
        if elen < 2 || off + elen as u64 > len {
            return Err(AcpiError::BadLength("MADT entry"));
        }
        let e = t + off;
        match (typ, elen) {
            (0, 8..) => {
                let apic_id = rd::<1>(r, e + 3)[0] as u32;
                let flags = u32::from_le_bytes(rd::<4>(r, e + 4));
                if flags & 1 != 0 {
                    if m.ncpu < m.cpus.len() {
                        m.cpus[m.ncpu] = apic_id;
                        m.ncpu += 1;
                    } else {
                        m.cpus_ignored += 1;
                    }
                }
            }
            (1, 12..) if m.ioapic.is_none() => {
                let addr = u32::from_le_bytes(rd::<4>(r, e + 4)) as u64;
                let gsi = u32::from_le_bytes(rd::<4>(r, e + 8));
                m.ioapic = Some((addr, gsi));
            }
            (2, 10..) => {
                let irq = rd::<1>(r, e + 3)[0] as usize;
                let gsi = u32::from_le_bytes(rd::<4>(r, e + 4));
                let flags = u16::from_le_bytes(rd::<2>(r, e + 8));
                if irq < 16 {
                    m.irq_override[irq] = Some((gsi, flags));
                }
            }
            (5, 12..) => m.lapic_addr = u64::from_le_bytes(rd::<8>(r, e + 4)),
            _ => {}
        }
        off += elen as u64;
    }
    Ok(m)
}

fn table_len(
    r: &mut impl FnMut(u64, &mut [u8]),
    pa: u64,
    what: &'static str,
) -> Result<u32, AcpiError> {
    let len = u32::from_le_bytes(rd::<4>(r, pa + 4));
    if !(36..=MAX_TABLE).contains(&len) {
        return Err(AcpiError::BadLength(what));
    }
    if sum(r, pa, len as u64) != 0 {
        return Err(AcpiError::Checksum(what));
    }
    Ok(len)
}

impl Madt {
    /// The GSI and flags for ISA IRQ `irq` (identity unless overridden).
    pub fn gsi_for_irq(&self, irq: u8) -> (u32, u16) {
        self.irq_override
            .get(irq as usize)
            .copied()
            .flatten()
            .unwrap_or((irq as u32, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    fn fix(mem: &mut [u8], at: usize, len: usize, cks: usize) {
        mem[at + cks] = 0;
        let s: u8 = mem[at..at + len]
            .iter()
            .fold(0u8, |a, b| a.wrapping_add(*b));
        mem[at + cks] = 0u8.wrapping_sub(s);
    }

    fn tables(cpus: &[(u8, u32)]) -> Vec<u8> {
        let mut m = vec![0u8; 4096];
        // RSDP at 0 (revision 0), RSDT at 0x100, MADT at 0x200.
        m[0..8].copy_from_slice(b"RSD PTR ");
        m[16..20].copy_from_slice(&0x100u32.to_le_bytes());
        fix(&mut m, 0, 20, 8);
        m[0x100..0x104].copy_from_slice(b"RSDT");
        m[0x104..0x108].copy_from_slice(&40u32.to_le_bytes());
        m[0x124..0x128].copy_from_slice(&0x200u32.to_le_bytes());
        fix(&mut m, 0x100, 40, 9);
        let mut e = Vec::new();
        for &(id, flags) in cpus {
            e.extend_from_slice(&[0, 8, id, id]);
            e.extend_from_slice(&flags.to_le_bytes());
        }
        e.extend_from_slice(&[1, 12, 0, 0]);
        e.extend_from_slice(&0xfec0_0000u32.to_le_bytes());
        e.extend_from_slice(&0u32.to_le_bytes());
        e.extend_from_slice(&[2, 10, 0, 0]);
        e.extend_from_slice(&2u32.to_le_bytes());
        e.extend_from_slice(&0u16.to_le_bytes());
        let len = 44 + e.len();
        m[0x200..0x204].copy_from_slice(b"APIC");
        m[0x204..0x208].copy_from_slice(&(len as u32).to_le_bytes());
        m[0x224..0x228].copy_from_slice(&0xfee0_0000u32.to_le_bytes());
        m[0x22c..0x22c + e.len()].copy_from_slice(&e);
        fix(&mut m, 0x200, len, 9);
        m
    }

    fn reader(m: &[u8]) -> impl FnMut(u64, &mut [u8]) + '_ {
        |a, b| {
            let a = a as usize;
            if a + b.len() <= m.len() {
                b.copy_from_slice(&m[a..a + b.len()]);
            } else {
                b.fill(0xff);
            }
        }
    }

    #[test]
    fn finds_cpus_ioapic_and_overrides() {
        let m = tables(&[(0, 1), (1, 1), (2, 0), (3, 1)]);
        let madt = parse_madt(0, reader(&m)).unwrap();
        assert_eq!(&madt.cpus[..madt.ncpu], &[0, 1, 3]);
        assert_eq!(madt.lapic_addr, 0xfee0_0000);
        assert_eq!(madt.ioapic, Some((0xfec0_0000, 0)));
        assert_eq!(madt.gsi_for_irq(0), (2, 0));
        assert_eq!(madt.gsi_for_irq(4), (4, 0));
    }

    #[test]
    fn more_than_eight_cpus_are_counted_not_kept() {
        let cpus: Vec<(u8, u32)> = (0..10).map(|i| (i, 1)).collect();
        let m = tables(&cpus);
        let madt = parse_madt(0, reader(&m)).unwrap();
        assert_eq!(madt.ncpu, 8);
        assert_eq!(madt.cpus_ignored, 2);
    }

    #[test]
    fn bad_tables_are_errors() {
        let m = tables(&[(0, 1)]);
        let mut bad = m.clone();
        bad[0x230] ^= 1;
        assert_eq!(
            parse_madt(0, reader(&bad)).unwrap_err(),
            AcpiError::Checksum("MADT")
        );
        let mut bad = m.clone();
        bad[0] = b'X';
        assert_eq!(parse_madt(0, reader(&bad)).unwrap_err(), AcpiError::NoRsdp);
        // Random corruption never panics or loops.
        let mut x = 0x1234_5678u64;
        for _ in 0..3000 {
            let mut bad = m.clone();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x % 0x300) as usize;
                bad[i] = (x >> 20) as u8;
            }
            let _ = parse_madt(0, reader(&bad));
        }
    }
}
