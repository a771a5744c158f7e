//! Physical region descriptors for IDE bus-master DMA (the driver is `ide.rs` in the binary).
//!
//! A descriptor is 8 bytes: bits 0-31 the region's physical address, bits 32-47 its byte count
//! (0 meaning 64 KiB), bit 63 "end of table". A region must start on an even address, lie below
//! 4 GiB and not cross a 64 KiB boundary.

/// Marks the last descriptor of a table.
pub const END_OF_TABLE: u64 = 1 << 63;

/// The descriptors for `len` bytes at physical address `pa`, at most two: a buffer shorter than
/// 64 KiB that straddles a 64 KiB boundary is split there. None if the controller cannot reach it
/// (odd address or length, empty, above 4 GiB) or it needs more than two regions.
pub fn entries(pa: u64, len: u64) -> Option<[u64; 2]> {
    if len == 0 || pa & 1 != 0 || len & 1 != 0 || pa.checked_add(len)? > 1 << 32 {
        return None;
    }
    let boundary = (pa | 0xffff) + 1;
    let first = len.min(boundary - pa);
    let rest = len - first;
    // Every region stays below 64 KiB, so a count of 0 (64 KiB) is never needed.
    if first >= 1 << 16 || rest >= 1 << 16 {
        return None;
    }
    Some(if rest == 0 {
        [pa | first << 32 | END_OF_TABLE, 0]
    } else {
        [pa | first << 32, boundary | rest << 32 | END_OF_TABLE]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_region_when_inside_64k() {
        assert_eq!(
            entries(0x12_3400, 1024),
            Some([0x12_3400 | 1024 << 32 | END_OF_TABLE, 0])
        );
        // Ending exactly at a boundary is still one region.
        assert_eq!(
            entries(0x2_fc00, 1024),
            Some([0x2_fc00 | 1024 << 32 | END_OF_TABLE, 0])
        );
    }

    #[test]
    fn split_at_64k_boundary() {
        let e = entries(0x1_ff00, 1024).unwrap();
        assert_eq!(e[0], 0x1_ff00 | 0x100 << 32);
        assert_eq!(e[1], 0x2_0000 | 0x300 << 32 | END_OF_TABLE);
    }

    #[test]
    fn unreachable_buffers_refused() {
        assert_eq!(entries(0x1001, 1024), None); // odd address
        assert_eq!(entries(0x1000, 0), None);
        assert_eq!(entries(0x1000, 1023), None);
        assert_eq!(entries(0xffff_fe00, 1024), None); // past 4 GiB
        assert_eq!(entries(0x1_0000_0000, 2), None);
        assert_eq!(entries(0x1_0000, 0x1_0000), None); // a full 64 KiB region
        assert_eq!(entries(0x1_8000, 0x1_8000 + 0x1_0000), None); // three regions
        assert!(entries(0xffff_fc00, 1024).is_some()); // ends exactly at 4 GiB
    }
}
