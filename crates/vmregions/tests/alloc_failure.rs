//! Node allocation failing: the list reports OutOfMemory and stays unchanged. (An integration
//! test because the test allocator needs `unsafe`, which the crate itself forbids.)

use allocator_api2::alloc::{Allocator, Global};
use core::alloc::Layout;
use core::cell::Cell;
use core::ptr::NonNull;
use vmregions::*;

fn anon(start: u64, len: u64) -> Region<u32> {
    Region {
        start,
        len,
        prot: Prot::READ | Prot::WRITE,
        sharing: Sharing::Private,
        backing: Backing::Anonymous,
    }
}

fn spans(l: &RegionList<u32, impl Allocator + Clone>) -> Vec<(u64, u64)> {
    l.iter().map(|r| (r.start, r.end())).collect()
}

/// An allocator that fails after a number of successful allocations.
#[derive(Clone)]
struct Failing<'a> {
    left: &'a Cell<usize>,
}

// SAFETY: forwards to the global allocator, or fails.
unsafe impl Allocator for Failing<'_> {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        if self.left.get() == 0 {
            return Err(allocator_api2::alloc::AllocError);
        }
        self.left.set(self.left.get() - 1);
        Global.allocate(layout)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded from a block Global gave us.
        unsafe { Global.deallocate(ptr, layout) }
    }
}

#[test]
fn allocator_failure_is_out_of_memory_with_nothing_changed() {
    let left = Cell::new(2);
    let mut l = RegionList::new_in(1000, Failing { left: &left });
    l.insert(anon(0, 0x1000)).unwrap(); // two allocations: nodes and free-slot list
    let mut i = 1;
    let err = loop {
        match l.insert(anon(i * 0x2000, 0x1000)) {
            Ok(()) => i += 1,
            Err(e) => break e,
        }
        assert!(i < 1000);
    };
    assert_eq!(err, RegionError::OutOfMemory);
    let before = spans(&l);
    l.check_invariants();
    let r = l.remove_range(0x400, 0x100, |_| panic!("called on failure"));
    if r.is_err() {
        assert_eq!(r, Err(RegionError::OutOfMemory));
        assert_eq!(spans(&l), before);
    }
    assert!(matches!(l.try_clone(), Err(RegionError::OutOfMemory)));
    l.check_invariants();
}
