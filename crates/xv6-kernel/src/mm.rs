//! A process's memory: the loaded program, the sbrk heap above it, the stack at the top of user
//! space, the mmap regions (issue 4), and the kernel-heap blocks it holds through `kmalloc`.
//!
//! Everything that changes a page table here either completes or leaves the table as it was.

use crate::mem::KernelFrames;
use alloc::vec::Vec;
use xv6_abi::layout::{HEAP_LIMIT, USER_STACK_BOTTOM, USER_STACK_TOP};
use xv6_kernel::layout::page_up;
use xv6_kernel::paging::{PageTable, Pte};
use xv6_kernel::uvm;

/// Why a memory operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemError {
    /// No frames left.
    OutOfMemory,
    /// The request makes no sense (past the heap limit, below the program).
    Invalid,
}

/// A process's memory bookkeeping.
#[derive(Debug)]
pub struct MemState {
    /// End of the loaded program (page-aligned): the heap starts here.
    pub image_end: u64,
    /// The program break (`sbrk(0)`).
    pub brk: u64,
    /// Kernel-heap blocks this process holds through `kmalloc` (addresses and sizes).
    pub kblocks: Vec<(u64, usize)>,
    /// Bytes of `kblocks`.
    pub kbytes: usize,
}

impl MemState {
    /// Nothing mapped.
    pub const fn new() -> MemState {
        MemState {
            image_end: 0,
            brk: 0,
            kblocks: Vec::new(),
            kbytes: 0,
        }
    }

    /// Moves the break to `new`, mapping or unmapping heap pages. All or nothing.
    pub fn set_brk(&mut self, pt: PageTable, new: u64) -> Result<(), MemError> {
        if new < self.image_end || new > HEAP_LIMIT {
            return Err(MemError::Invalid);
        }
        let old_top = page_up(self.brk).ok_or(MemError::Invalid)?;
        let new_top = page_up(new).ok_or(MemError::Invalid)?;
        if new_top > old_top {
            uvm::alloc_range(
                pt,
                &mut KernelFrames,
                old_top,
                new_top,
                Pte::WRITE | Pte::NO_EXECUTE,
            )
            .map_err(|_| MemError::OutOfMemory)?;
        } else if new_top < old_top {
            uvm::dealloc_range(pt, &mut KernelFrames, new_top, old_top);
            flush_if_current(pt);
        }
        self.brk = new;
        Ok(())
    }

    /// Maps the user stack (zeroed, read-write, no-execute); the page below stays unmapped.
    pub fn map_stack(pt: PageTable) -> Result<(), MemError> {
        uvm::alloc_range(
            pt,
            &mut KernelFrames,
            USER_STACK_BOTTOM,
            USER_STACK_TOP,
            Pte::WRITE | Pte::NO_EXECUTE,
        )
        .map_err(|_| MemError::OutOfMemory)
    }

    /// Copies everything into a child's fresh table and state (for `fork`). All or nothing.
    pub fn fork_into(
        &self,
        pt: PageTable,
        child: &mut MemState,
        cpt: PageTable,
    ) -> Result<(), MemError> {
        uvm::copy_range(pt, cpt, &mut KernelFrames, 0, xv6_abi::layout::USER_TOP)
            .map_err(|_| MemError::OutOfMemory)?;
        child.image_end = self.image_end;
        child.brk = self.brk;
        Ok(())
    }

    /// Releases the process's kernel-heap blocks and user mappings (exit, exec's old image).
    pub fn release(&mut self, pt: PageTable) {
        crate::sysmem::free_all_kblocks(self);
        if pt.root != 0 {
            uvm::dealloc_range(pt, &mut KernelFrames, 0, xv6_abi::layout::USER_TOP);
            flush_if_current(pt);
        }
        self.brk = 0;
        self.image_end = 0;
    }

    /// A page fault at `addr`: true if it was a first touch of mapped memory and is now resolved.
    pub fn handle_fault(&mut self, _pt: PageTable, _addr: u64, _write: bool, _exec: bool) -> bool {
        false
    }
}

/// Reloads CR3 if `pt` is the running table (after unmapping).
pub fn flush_if_current(pt: PageTable) {
    if crate::arch::cr3() == pt.root {
        // SAFETY: reloading the current table only flushes the TLB.
        unsafe { crate::arch::set_cr3(pt.root) };
    }
}
