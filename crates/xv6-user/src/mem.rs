//! The memory primitives behind `memcpy`, `memmove`, `memset` and `memcmp` (exported under those
//! names by the run time with the `user` feature), in inline assembly so that LLVM cannot turn
//! them back into calls to themselves. Copies and fills move 64 bytes per loop iteration in eight
//! 8-byte moves, then 8-byte words, then bytes, as the kernel's (`xv6_kernel::string`, which says
//! why: under QEMU's TCG a `rep movsb` runs a byte per iteration, 11 times slower per page).

use core::arch::asm;

/// Copies `n` bytes from `src` to `dst` (which do not overlap, or `dst` is below `src`).
///
/// # Safety
///
/// As C's `memcpy`: both ranges valid; if they overlap, `dst <= src`.
pub unsafe fn copy_forward(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges; the loops touch exactly [dst, dst+n) and
    // [src, src+n), each store after the loads of every byte it can overwrite (forward order,
    // dst <= src).
    unsafe {
        asm!(
            "cmp {n}, 64",
            "jb 3f",
            "2:",
            "mov {a}, [{s}]",
            "mov {b}, [{s} + 8]",
            "mov [{d}], {a}",
            "mov [{d} + 8], {b}",
            "mov {a}, [{s} + 16]",
            "mov {b}, [{s} + 24]",
            "mov [{d} + 16], {a}",
            "mov [{d} + 24], {b}",
            "mov {a}, [{s} + 32]",
            "mov {b}, [{s} + 40]",
            "mov [{d} + 32], {a}",
            "mov [{d} + 40], {b}",
            "mov {a}, [{s} + 48]",
            "mov {b}, [{s} + 56]",
            "mov [{d} + 48], {a}",
            "mov [{d} + 56], {b}",
            "add {s}, 64",
            "add {d}, 64",
            "sub {n}, 64",
            "cmp {n}, 64",
            "jae 2b",
            "3:",
            "cmp {n}, 8",
            "jb 5f",
            "4:",
            "mov {a}, [{s}]",
            "mov [{d}], {a}",
            "add {s}, 8",
            "add {d}, 8",
            "sub {n}, 8",
            "cmp {n}, 8",
            "jae 4b",
            "5:",
            "test {n}, {n}",
            "jz 7f",
            "6:",
            "mov {a:l}, [{s}]",
            "mov [{d}], {a:l}",
            "inc {s}",
            "inc {d}",
            "dec {n}",
            "jnz 6b",
            "7:",
            d = inout(reg) dst => _,
            s = inout(reg) src => _,
            n = inout(reg) n => _,
            a = out(reg) _,
            b = out(reg) _,
            options(nostack),
        );
    }
    dst
}

/// Copies `n` bytes from `src` to `dst`, highest address first (overlapping, `dst` above `src`).
///
/// # Safety
///
/// Both ranges valid; if they overlap, `dst >= src`.
unsafe fn copy_backward(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: the caller guarantees both ranges; the pointers start one past the ends and the
    // loops touch exactly [dst, dst+n) and [src, src+n), each store after the loads of every byte
    // it can overwrite (backward order, dst >= src).
    unsafe {
        asm!(
            "cmp {n}, 64",
            "jb 3f",
            "2:",
            "sub {s}, 64",
            "sub {d}, 64",
            "mov {a}, [{s} + 56]",
            "mov {b}, [{s} + 48]",
            "mov [{d} + 56], {a}",
            "mov [{d} + 48], {b}",
            "mov {a}, [{s} + 40]",
            "mov {b}, [{s} + 32]",
            "mov [{d} + 40], {a}",
            "mov [{d} + 32], {b}",
            "mov {a}, [{s} + 24]",
            "mov {b}, [{s} + 16]",
            "mov [{d} + 24], {a}",
            "mov [{d} + 16], {b}",
            "mov {a}, [{s} + 8]",
            "mov {b}, [{s}]",
            "mov [{d} + 8], {a}",
            "mov [{d}], {b}",
            "sub {n}, 64",
            "cmp {n}, 64",
            "jae 2b",
            "3:",
            "cmp {n}, 8",
            "jb 5f",
            "4:",
            "sub {s}, 8",
            "sub {d}, 8",
            "mov {a}, [{s}]",
            "mov [{d}], {a}",
            "sub {n}, 8",
            "cmp {n}, 8",
            "jae 4b",
            "5:",
            "test {n}, {n}",
            "jz 7f",
            "6:",
            "dec {s}",
            "dec {d}",
            "mov {a:l}, [{s}]",
            "mov [{d}], {a:l}",
            "dec {n}",
            "jnz 6b",
            "7:",
            d = inout(reg) dst.wrapping_add(n) => _,
            s = inout(reg) src.wrapping_add(n) => _,
            n = inout(reg) n => _,
            a = out(reg) _,
            b = out(reg) _,
            options(nostack),
        );
    }
}

/// Copies `n` bytes from `src` to `dst`; the ranges may overlap.
///
/// # Safety
///
/// As C's `memmove`: both ranges valid.
pub unsafe fn copy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    let (d, s) = (dst as usize, src as usize);
    if d <= s || d >= s.wrapping_add(n) {
        // SAFETY: copying forwards is right when dst is below src or past its end.
        unsafe { copy_forward(dst, src, n) };
    } else {
        // SAFETY: dst overlaps the end of src, so it is above src: copy from the end.
        unsafe { copy_backward(dst, src, n) };
    }
    dst
}

/// Fills `n` bytes at `dst` with the byte `c`.
///
/// # Safety
///
/// As C's `memset`: the range is valid.
pub unsafe fn fill(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    let word = u64::from(c as u8) * 0x0101_0101_0101_0101;
    // SAFETY: the caller guarantees the range; the loops store exactly [dst, dst+n).
    unsafe {
        asm!(
            "cmp {n}, 64",
            "jb 3f",
            "2:",
            "mov [{d}], {w}",
            "mov [{d} + 8], {w}",
            "mov [{d} + 16], {w}",
            "mov [{d} + 24], {w}",
            "mov [{d} + 32], {w}",
            "mov [{d} + 40], {w}",
            "mov [{d} + 48], {w}",
            "mov [{d} + 56], {w}",
            "add {d}, 64",
            "sub {n}, 64",
            "cmp {n}, 64",
            "jae 2b",
            "3:",
            "cmp {n}, 8",
            "jb 5f",
            "4:",
            "mov [{d}], {w}",
            "add {d}, 8",
            "sub {n}, 8",
            "cmp {n}, 8",
            "jae 4b",
            "5:",
            "test {n}, {n}",
            "jz 7f",
            "6:",
            "mov [{d}], {w:l}",
            "inc {d}",
            "dec {n}",
            "jnz 6b",
            "7:",
            d = inout(reg) dst => _,
            n = inout(reg) n => _,
            w = in(reg) word,
            options(nostack),
        );
    }
    dst
}

/// Compares `n` bytes: negative, zero or positive as the first differing byte of `a` is below,
/// equal to or above that of `b`.
///
/// # Safety
///
/// As C's `memcmp`: both ranges valid.
pub unsafe fn compare(a: *const u8, b: *const u8, n: usize) -> i32 {
    if n == 0 {
        return 0;
    }
    let (end_a, end_b): (*const u8, *const u8);
    let equal: u8;
    // SAFETY: the caller guarantees both ranges; `repe cmpsb` compares forwards and stops after
    // the first difference, leaving rsi/rdi one past it.
    unsafe {
        asm!(
            "repe cmpsb",
            "sete {eq}",
            eq = out(reg_byte) equal,
            inout("rcx") n => _,
            inout("rsi") a => end_a,
            inout("rdi") b => end_b,
            options(nostack, readonly),
        );
    }
    if equal != 0 {
        return 0;
    }
    // SAFETY: the compare stopped one past the differing bytes, which lie in both ranges.
    unsafe { i32::from(*end_a.sub(1)) - i32::from(*end_b.sub(1)) }
}

/// The length of the zero-terminated string at `s`, without the zero.
///
/// # Safety
///
/// As C's `strlen`: `s` points at a zero-terminated string.
pub unsafe fn string_length(s: *const u8) -> usize {
    let left: usize;
    // SAFETY: the caller guarantees a terminating zero, where `repne scasb` stops; it starts with
    // rcx = usize::MAX and counts down once per byte scanned, the zero included.
    unsafe {
        asm!(
            "repne scasb",
            inout("rcx") usize::MAX => left,
            inout("rdi") s => _,
            in("al") 0u8,
            options(nostack, readonly),
        );
    }
    !left - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_and_fills() {
        let src: [u8; 10] = core::array::from_fn(|i| i as u8);
        let mut dst = [0u8; 10];
        // SAFETY: both arrays hold 10 bytes.
        unsafe { copy_forward(dst.as_mut_ptr(), src.as_ptr(), 10) };
        assert_eq!(dst, src);
        // SAFETY: 4 bytes from offset 3 are inside `dst`.
        unsafe { fill(dst.as_mut_ptr().add(3), 0x1ff, 4) };
        assert_eq!(dst, [0, 1, 2, 0xff, 0xff, 0xff, 0xff, 7, 8, 9]);
        // SAFETY: zero bytes.
        unsafe { fill(dst.as_mut_ptr(), 0, 0) };
        assert_eq!(dst[0], 0);
    }

    #[test]
    fn moves_overlapping() {
        let mut buf: [u8; 10] = core::array::from_fn(|i| i as u8);
        let p = buf.as_mut_ptr();
        // SAFETY: ranges [0, 8) and [2, 10) are inside `buf`.
        unsafe { copy(p.add(2), p, 8) };
        assert_eq!(buf, [0, 1, 0, 1, 2, 3, 4, 5, 6, 7]);
        let mut buf: [u8; 10] = core::array::from_fn(|i| i as u8);
        let p = buf.as_mut_ptr();
        // SAFETY: ranges [2, 10) and [0, 8) are inside `buf`.
        unsafe { copy(p, p.add(2), 8) };
        assert_eq!(buf, [2, 3, 4, 5, 6, 7, 8, 9, 8, 9]);
        // SAFETY: zero bytes.
        unsafe { copy(p, p.add(1), 0) };
        // The direction flag is clear again: a forward copy still works.
        let mut d = [0u8; 3];
        // SAFETY: 3 bytes each.
        unsafe { copy_forward(d.as_mut_ptr(), [7u8, 8, 9].as_ptr(), 3) };
        assert_eq!(d, [7, 8, 9]);
    }

    /// Every alignment and length to 64 and some large ones, against byte-at-a-time reference
    /// copies (through a temporary for overlapping moves) and fills.
    #[test]
    fn every_alignment_and_length() {
        let pattern = |len: usize, seed: u8| -> std::vec::Vec<u8> {
            (0..len)
                .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
                .collect()
        };
        for n in (0..=64).chain([65, 127, 128, 129, 4095, 4096, 4101]) {
            for a in 0..8 {
                for b in 0..8 {
                    let src = pattern(n + 16, 7);
                    let mut dst = pattern(n + 16, 99);
                    let mut want = dst.clone();
                    want[b..b + n].copy_from_slice(&src[a..a + n]);
                    // SAFETY: both hold n + 16 bytes; offsets below 8.
                    unsafe { copy_forward(dst.as_mut_ptr().add(b), src.as_ptr().add(a), n) };
                    assert_eq!(dst, want, "copy_forward n={n} +{a} +{b}");
                    // Overlapping, both ways: within one buffer at distance |a - b| + 8 * n%3.
                    let dist = a.abs_diff(b) + 8 * (n % 3);
                    for (s, d) in [(a, a + dist), (a + dist, a)] {
                        let orig = pattern(n + 48, 3);
                        let mut want = orig.clone();
                        want[d..d + n].copy_from_slice(&orig[s..s + n]);
                        let mut buf = orig.clone();
                        let p = buf.as_mut_ptr();
                        // SAFETY: s + n and d + n are at most n + 7 + 23 < n + 48.
                        unsafe { copy(p.add(d), p.add(s), n) };
                        assert_eq!(buf, want, "copy n={n} src={s} dst={d}");
                    }
                }
                let mut buf = pattern(n + 16, 1);
                let mut want = buf.clone();
                want[a..a + n].fill(0xa5);
                // SAFETY: n bytes from offset a < 8 are inside n + 16.
                unsafe { fill(buf.as_mut_ptr().add(a), 0x3a5, n) };
                assert_eq!(buf, want, "fill n={n} +{a}");
            }
        }
    }

    #[test]
    fn string_lengths() {
        // SAFETY: zero-terminated literals.
        unsafe {
            assert_eq!(string_length(c"".as_ptr().cast()), 0);
            let two = [b'h', b'e', b'l', b'l', b'o', 0, b'w', 0];
            assert_eq!(string_length(two.as_ptr()), 5);
        }
    }

    #[test]
    fn compares() {
        let cmp = |a: &[u8], b: &[u8]| {
            assert_eq!(a.len(), b.len());
            // SAFETY: both slices hold `len` bytes.
            unsafe { compare(a.as_ptr(), b.as_ptr(), a.len()) }
        };
        assert_eq!(cmp(b"abc", b"abc"), 0);
        assert_eq!(cmp(b"", b""), 0);
        assert!(cmp(b"abd", b"abc") > 0);
        assert!(cmp(b"abb", b"abc") < 0);
        assert!(cmp(b"\x01bc", b"\xffbc") < 0);
        assert!(cmp(b"\xffbc", b"\x01bc") > 0);
        assert_eq!(cmp(b"x", b"y"), -1);
    }
}
