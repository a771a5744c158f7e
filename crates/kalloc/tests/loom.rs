//! loom model check of `LockedFrameAllocator` used from two threads. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p xv6-kalloc --release --test loom`.
#![cfg(loom)]

use kalloc::{LockedFrameAllocator, PhysAddr, FRAME_SIZE};
use loom::sync::Arc;

#[test]
fn two_threads_allocate_and_free() {
    loom::model(|| {
        let mut ram = vec![0u8; 18 * FRAME_SIZE];
        let base = (ram.as_mut_ptr() as usize).next_multiple_of(FRAME_SIZE) as u64;
        let frames = Arc::new(LockedFrameAllocator::new(0));
        // SAFETY: `ram` outlives the allocator's use within this model iteration.
        unsafe {
            frames.lock().add_range(
                PhysAddr::new(base),
                PhysAddr::new(base + 17 * FRAME_SIZE as u64),
            )
        }
        .unwrap();
        let total = frames.lock().stats().free;
        let threads: Vec<_> = (0..2)
            .map(|t| {
                let frames = frames.clone();
                loom::thread::spawn(move || {
                    let f = frames.lock().allocate_contiguous(1 + t, 1).unwrap();
                    let g = frames.lock().allocate().unwrap();
                    assert_ne!(f, g);
                    // SAFETY: frames this thread owns.
                    unsafe {
                        frames.lock().free(g).unwrap();
                        frames.lock().free_contiguous(f, 1 + t).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let a = frames.lock();
        a.check_invariants();
        assert_eq!(a.stats().free, total);
        drop(a);
        drop(ram);
    });
}
