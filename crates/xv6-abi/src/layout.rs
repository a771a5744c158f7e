//! Where things are in a user address space. The kernel enforces these; user programs and the
//! user linker script rely on them.
//!
//! ```text
//! 0x0000_7fff_ffff_f000  USER_TOP (exclusive)
//!                        stack (USER_STACK_PAGES pages, grows down), top = USER_STACK_TOP
//!                        guard page (never mapped)
//!                        ... unused ...
//! 0x0000_7000_0000_0000  MMAP_TOP
//!                        mmap area
//! 0x0000_1000_0000_0000  MMAP_BASE = HEAP_LIMIT
//!                        sbrk heap (grows up from the end of the loaded image)
//!                        program image (text, rodata, data, bss)
//! 0x0000_0000_0040_0000  USER_BASE: where user programs are linked
//! 0                      unmapped (null pointers fault)
//! ```

/// Lowest address a program may be loaded at; the user linker script starts here.
pub const USER_BASE: u64 = 0x40_0000;
/// The sbrk heap may not grow past here.
pub const HEAP_LIMIT: u64 = MMAP_BASE;
/// Start of the range where `mmap` places mappings.
pub const MMAP_BASE: u64 = 0x0000_1000_0000_0000;
/// End (exclusive) of the mmap range.
pub const MMAP_TOP: u64 = 0x0000_7000_0000_0000;
/// End (exclusive) of user space.
pub const USER_TOP: u64 = 0x0000_7fff_ffff_f000;
/// Pages of user stack.
pub const USER_STACK_PAGES: u64 = 8;
/// Initial stack pointer region end: the stack occupies
/// `[USER_STACK_TOP - USER_STACK_PAGES * 4096, USER_STACK_TOP)`.
pub const USER_STACK_TOP: u64 = USER_TOP;
/// Lowest stack address; the page below it is the guard page.
pub const USER_STACK_BOTTOM: u64 = USER_STACK_TOP - USER_STACK_PAGES * 4096;

/// True if `[addr, addr + len)` lies wholly in user space (and does not wrap).
pub fn is_user_range(addr: u64, len: u64) -> bool {
    match addr.checked_add(len) {
        Some(end) => end <= USER_TOP,
        None => false,
    }
}

// The areas of a user address space must not overlap: checked when the crate compiles.
const _: () = {
    assert!(USER_BASE < HEAP_LIMIT);
    assert!(HEAP_LIMIT <= MMAP_BASE);
    assert!(MMAP_BASE < MMAP_TOP);
    assert!(MMAP_TOP < USER_STACK_BOTTOM - 4096);
    assert!(USER_STACK_TOP <= USER_TOP);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_range() {
        assert!(is_user_range(0, 10));
        assert!(is_user_range(USER_TOP - 1, 1));
        assert!(!is_user_range(USER_TOP, 1));
        assert!(!is_user_range(u64::MAX, 2));
    }
}
