//! The memory primitives behind `memcpy`, `memmove`, `memset` and `memcmp` (exported under those
//! names by the run time with the `user` feature), written with string instructions in inline
//! assembly so that LLVM cannot turn them back into calls to themselves.

use core::arch::asm;

/// Copies `n` bytes from `src` to `dst` (which do not overlap).
///
/// # Safety
///
/// As C's `memcpy`: both ranges valid, not overlapping.
pub unsafe fn copy_forward(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges; `rep movsb` copies forwards (DF is clear per the
    // SysV ABI) and LLVM cannot turn it back into a call to memcpy.
    unsafe {
        asm!(
            "rep movsb",
            inout("rcx") n => _,
            inout("rdi") dst => _,
            inout("rsi") src => _,
            options(nostack, preserves_flags),
        );
    }
    dst
}

/// Copies `n` bytes from `src` to `dst`; the ranges may overlap.
///
/// # Safety
///
/// As C's `memmove`: both ranges valid.
pub unsafe fn copy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if n == 0 {
        return dst;
    }
    let (d, s) = (dst as usize, src as usize);
    if d <= s || d >= s.wrapping_add(n) {
        // SAFETY: copying forwards is right when dst is below src or past its end.
        unsafe { copy_forward(dst, src, n) };
    } else {
        // SAFETY: dst overlaps the end of src: copy backwards from the last byte, with DF set
        // only for the copy (the ABI requires it clear again afterwards).
        unsafe {
            asm!(
                "std",
                "rep movsb",
                "cld",
                inout("rcx") n => _,
                inout("rdi") dst.add(n - 1) => _,
                inout("rsi") src.add(n - 1) => _,
                options(nostack),
            );
        }
    }
    dst
}

/// Fills `n` bytes at `dst` with the byte `c`.
///
/// # Safety
///
/// As C's `memset`: the range is valid.
pub unsafe fn fill(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees the range; `rep stosb` stores forwards.
    unsafe {
        asm!(
            "rep stosb",
            inout("rcx") n => _,
            inout("rdi") dst => _,
            in("al") c as u8,
            options(nostack, preserves_flags),
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
