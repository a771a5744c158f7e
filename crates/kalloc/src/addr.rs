//! Typed physical addresses and frames.

use crate::FRAME_SIZE;

/// Physical addresses on x86_64 have at most 52 bits.
pub const PHYS_ADDR_BITS: u32 = 52;

/// A physical address (at most [`PHYS_ADDR_BITS`] bits).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct PhysAddr(u64);

/// An address or frame that cannot be represented.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AddrError {
    /// More than [`PHYS_ADDR_BITS`] bits.
    TooLarge(u64),
    /// Not a multiple of [`FRAME_SIZE`].
    Misaligned(u64),
}

impl core::fmt::Display for AddrError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AddrError::TooLarge(a) => write!(f, "{a:#x} is not a valid physical address"),
            AddrError::Misaligned(a) => write!(f, "{a:#x} is not frame-aligned"),
        }
    }
}

impl PhysAddr {
    /// A physical address.
    ///
    /// # Panics
    /// If `addr` has more than [`PHYS_ADDR_BITS`] bits; see [`PhysAddr::try_new`].
    pub const fn new(addr: u64) -> PhysAddr {
        match PhysAddr::try_new(addr) {
            Ok(a) => a,
            Err(_) => panic!("physical address out of range"),
        }
    }

    /// A physical address, or an error if `addr` is out of range.
    pub const fn try_new(addr: u64) -> Result<PhysAddr, AddrError> {
        if addr >> PHYS_ADDR_BITS != 0 {
            Err(AddrError::TooLarge(addr))
        } else {
            Ok(PhysAddr(addr))
        }
    }

    /// A physical address without the range check.
    ///
    /// # Safety
    /// `addr` has at most [`PHYS_ADDR_BITS`] bits.
    pub const unsafe fn new_unchecked(addr: u64) -> PhysAddr {
        PhysAddr(addr)
    }

    /// The address as a number.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Rounds down to a multiple of `align` (a power of two).
    pub const fn align_down(self, align: u64) -> PhysAddr {
        PhysAddr(self.0 & !(align - 1))
    }

    /// Rounds up to a multiple of `align` (a power of two), saturating at the top of the range.
    pub const fn align_up(self, align: u64) -> PhysAddr {
        let max = (1u64 << PHYS_ADDR_BITS) - align;
        if self.0 > max {
            PhysAddr(max)
        } else {
            PhysAddr((self.0 + align - 1) & !(align - 1))
        }
    }

    /// True if a multiple of `align` (a power of two).
    pub const fn is_aligned(self, align: u64) -> bool {
        self.0 & (align - 1) == 0
    }
}

/// A 4 KiB physical page frame.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Frame {
    number: u64,
}

impl Frame {
    /// The frame starting at `start`, which must be frame-aligned.
    pub const fn from_start(start: PhysAddr) -> Result<Frame, AddrError> {
        if start.0 % FRAME_SIZE as u64 != 0 {
            Err(AddrError::Misaligned(start.0))
        } else {
            Ok(Frame {
                number: start.0 / FRAME_SIZE as u64,
            })
        }
    }

    /// The frame that contains `addr`.
    pub const fn containing(addr: PhysAddr) -> Frame {
        Frame {
            number: addr.0 / FRAME_SIZE as u64,
        }
    }

    /// The frame with this frame number.
    pub const fn from_number(number: u64) -> Result<Frame, AddrError> {
        if number >> (PHYS_ADDR_BITS - 12) != 0 {
            Err(AddrError::TooLarge(number))
        } else {
            Ok(Frame { number })
        }
    }

    /// The frame with this frame number, which is known to be in range (a managed frame).
    #[inline]
    pub(crate) const fn from_managed(number: u64) -> Frame {
        debug_assert!(number >> (PHYS_ADDR_BITS - 12) == 0);
        Frame { number }
    }

    /// Its first byte's address.
    pub const fn start(self) -> PhysAddr {
        PhysAddr(self.number * FRAME_SIZE as u64)
    }

    /// Its frame number (address / 4096).
    pub const fn number(self) -> u64 {
        self.number
    }

    /// The frame `n` frames further on.
    ///
    /// # Panics
    /// If that leaves the physical address range.
    pub fn offset(self, n: u64) -> Frame {
        self.number
            .checked_add(n)
            .and_then(|m| Frame::from_number(m).ok())
            .expect("frame number out of range")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            PhysAddr::try_new(1 << 52),
            Err(AddrError::TooLarge(1 << 52))
        );
        let a = PhysAddr::new(0x1234);
        assert_eq!(a.align_down(4096).as_u64(), 0x1000);
        assert_eq!(a.align_up(4096).as_u64(), 0x2000);
        assert!(!a.is_aligned(4096));
        assert_eq!(Frame::from_start(a), Err(AddrError::Misaligned(0x1234)));
        assert_eq!(Frame::containing(a).start().as_u64(), 0x1000);
        assert_eq!(Frame::containing(a).offset(2).number(), 3);
    }

    #[test]
    #[should_panic(expected = "frame number out of range")]
    fn offset_that_would_wrap_panics() {
        // Not a wrap-around to frame 0.
        Frame::from_number(1).unwrap().offset(u64::MAX);
    }
}
