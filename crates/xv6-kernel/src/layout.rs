//! Where things are in the kernel's virtual address space.
//!
//! ```text
//! 0xffff_ffff_8000_0000  KERNBASE: the kernel image (linked at KERNBASE + its physical address)
//! 0xffff_8000_0000_0000  PHYS_OFFSET: every physical byte, mapped at PHYS_OFFSET + address
//! 0x0000_7fff_ffff_f000  top of user space (see xv6_abi::layout)
//! ```

/// Where the kernel image is linked: physical address `p` is at `KERNBASE + p`.
pub const KERNBASE: u64 = 0xffff_ffff_8000_0000;
/// The direct map: physical address `p` is at `PHYS_OFFSET + p`.
pub const PHYS_OFFSET: u64 = 0xffff_8000_0000_0000;
/// Physical memory below this is left alone (BIOS data, the application processors' trampoline).
pub const LOW_MEMORY: u64 = 0x10_0000;
/// Size of a page.
pub const PAGE: u64 = 4096;

/// The kernel virtual address of physical address `pa` in the direct map.
pub const fn p2v(pa: u64) -> u64 {
    pa + PHYS_OFFSET
}

/// The physical address behind a direct-map or kernel-image virtual address, if it is one.
pub const fn v2p(va: u64) -> Option<u64> {
    if va >= KERNBASE {
        Some(va - KERNBASE)
    } else if va >= PHYS_OFFSET {
        Some(va - PHYS_OFFSET)
    } else {
        None
    }
}

/// Rounds `x` down to a multiple of `PAGE`.
pub const fn page_down(x: u64) -> u64 {
    x & !(PAGE - 1)
}

/// Rounds `x` up to a multiple of `PAGE`, or `None` on overflow.
pub const fn page_up(x: u64) -> Option<u64> {
    match x.checked_add(PAGE - 1) {
        Some(y) => Some(y & !(PAGE - 1)),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(v2p(p2v(0x1234)), Some(0x1234));
        assert_eq!(v2p(KERNBASE + 0x10_0000), Some(0x10_0000));
        assert_eq!(v2p(0x40_0000), None);
        assert_eq!(page_up(1), Some(4096));
        assert_eq!(page_up(u64::MAX), None);
        assert_eq!(page_down(4097), 4096);
    }
}
