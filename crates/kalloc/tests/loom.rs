//! loom model checks of `LockedFrameAllocator`'s own concurrent code: its spin lock (Acquire to
//! take, Release to give back) and the lock-free page-source hint. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p xv6-kalloc --release --test loom`.
//!
//! The allocator lives in a loom `UnsafeCell`, so an access not ordered after the previous
//! holder's (a lock taken with Relaxed instead of Acquire, or given back with Relaxed instead of
//! Release) is reported by loom as a causality violation.
#![cfg(loom)]

use kalloc::{FrameAllocator, LockedFrameAllocator, PhysAddr, FRAME_SIZE};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;

/// A locked allocator over `frames` frames of `ram`.
fn locked(ram: &mut [u64], frames: u64) -> LockedFrameAllocator {
    let a = FrameAllocator::with_direct_map(ram.as_mut_ptr().cast());
    let l = LockedFrameAllocator::from_allocator(a);
    // SAFETY: `ram` holds `frames` frames and outlives the allocator's use in the model.
    unsafe {
        l.lock()
            .add_range(PhysAddr::new(0), PhysAddr::new(frames * FRAME_SIZE as u64))
    }
    .unwrap();
    l
}

#[test]
fn two_threads_allocate_and_free() {
    loom::model(|| {
        let mut ram = vec![0u64; 17 * FRAME_SIZE / 8];
        let frames = Arc::new(locked(&mut ram, 17));
        let total = frames.lock().stats().free;
        let threads: Vec<_> = (0..2)
            .map(|t| {
                let frames = frames.clone();
                loom::thread::spawn(move || {
                    let f = frames.lock().allocate_contiguous(1 + t, 1).unwrap();
                    // SAFETY: frames this thread owns.
                    unsafe { frames.lock().free_contiguous(f, 1 + t) }.unwrap();
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
        drop(frames);
        drop(ram);
    });
}

/// The hint a heap reads without the lock: once a thread has seen (through its own
/// synchronisation) that a run was freed through the page source, the hint must not say less
/// than that run, while a thread allocating through the page source races with it.
#[test]
fn page_source_hint_never_misses_a_freed_run() {
    use kmalloc::PageSource;
    loom::model(|| {
        let mut ram = vec![0u64; 17 * FRAME_SIZE / 8];
        let frames = Arc::new(locked(&mut ram, 17)); // frames 1..17 after the metadata
        let mut src = &*frames;
        let run = src.alloc_pages(4, FRAME_SIZE).unwrap();
        let rest = src.alloc_pages(8, FRAME_SIZE).unwrap();
        assert!(src.pages_available_hint().is_some_and(|h| h < 4));
        let freed = Arc::new(AtomicBool::new(false));
        let (f2, freed2) = (frames.clone(), freed.clone());
        let run_addr = run.as_ptr() as usize;
        let t = loom::thread::spawn(move || {
            let mut src = &*f2;
            let run = core::ptr::NonNull::new(
                f2.lock().phys_to_virt(PhysAddr::new(0)).with_addr(run_addr),
            )
            .unwrap();
            // SAFETY: the run the main thread handed over, unused.
            assert!(unsafe { src.free_pages(run, 4) });
            freed2.store(true, Ordering::Release);
        });
        if freed.load(Ordering::Acquire) {
            let hint = src.pages_available_hint();
            assert!(hint.is_none_or(|h| h >= 4), "freed run missed: {hint:?}");
        }
        t.join().unwrap();
        // SAFETY: the other run, unused.
        assert!(unsafe { src.free_pages(rest, 8) });
        assert!(src.pages_available_hint().is_none_or(|h| h >= 8));
        frames.lock().check_invariants();
        drop(frames);
        drop(ram);
    });
}
