//! loom model checks of `LockedHeap` shared between threads: the real type (`lock_api::Mutex`
//! with the heap inside, and its `GlobalAlloc` glue), with a spin lock on loom's atomics as its
//! `R`. Every heap call also touches a counter in loom's `UnsafeCell`, so a lock that does not
//! order one holder's work before the next (an unlock weakened from Release, a lock from
//! Acquire, to Relaxed: try it) is reported as a causality violation. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p kmalloc --release --test loom`.
#![cfg(loom)]

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use kmalloc::{AllocError, FreeError, HeapStats, LockedHeap, PageSource, RawHeap, PAGE_SIZE};
use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;

/// A source over the host allocator that counts pages out.
struct Host {
    out: usize,
}

// SAFETY: fresh host allocations, each freed once.
unsafe impl PageSource for Host {
    fn alloc_pages(&mut self, pages: usize, align: usize) -> Option<NonNull<u8>> {
        self.out += pages;
        // SAFETY: non-zero size.
        NonNull::new(unsafe {
            std::alloc::alloc(Layout::from_size_align(pages * PAGE_SIZE, align).ok()?)
        })
    }
    unsafe fn free_pages(&mut self, ptr: NonNull<u8>, pages: usize) -> bool {
        self.out -= pages;
        // SAFETY: allocated above with this size; page alignment suffices for the system allocator's dealloc.
        unsafe {
            std::alloc::dealloc(
                ptr.as_ptr(),
                Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).unwrap(),
            )
        };
        true
    }
}

/// A spin lock on loom's atomics. loom's atomics are not `const`, so `INIT` has none and
/// [`LockedHeap::with_lock`] takes a lock made by [`Spin::new`].
struct Spin {
    held: Option<AtomicBool>,
}

impl Spin {
    fn new() -> Spin {
        Spin {
            held: Some(AtomicBool::new(false)),
        }
    }

    fn held(&self) -> &AtomicBool {
        self.held.as_ref().expect("a Spin made by Spin::new")
    }
}

// SAFETY: a compare-exchange from false to true lets one holder in at a time; Acquire on taking
// and Release on giving back order each holder's work after the previous one's.
unsafe impl lock_api::RawMutex for Spin {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Spin = Spin { held: None };
    type GuardMarker = lock_api::GuardSend;

    fn lock(&self) {
        while !self.try_lock() {
            loom::thread::yield_now();
        }
    }

    fn try_lock(&self) -> bool {
        self.held()
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    unsafe fn unlock(&self) {
        self.held().store(false, Ordering::Release);
    }
}

/// A heap whose every call also reads and writes a counter in loom's `UnsafeCell`: two calls
/// that the lock does not order are a data race loom reports.
struct Tracked<H> {
    heap: H,
    calls: UnsafeCell<usize>,
}

impl<H> Tracked<H> {
    fn touch(&self) {
        // SAFETY: the caller holds the heap's lock (every RawHeap call comes through it).
        self.calls.with_mut(|c| unsafe { *c += 1 });
    }
}

// SAFETY: `Tracked` owns its heap and counter; moving it moves both.
unsafe impl<H: Send> Send for Tracked<H> {}

impl<H: RawHeap> RawHeap for Tracked<H> {
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        self.touch();
        self.heap.allocate(layout)
    }
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        self.touch();
        // SAFETY: forwarded with the caller's promise.
        unsafe { self.heap.deallocate(ptr, layout) }
    }
    unsafe fn reallocate(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<NonNull<u8>, AllocError> {
        self.touch();
        // SAFETY: forwarded with the caller's promise.
        unsafe { self.heap.reallocate(ptr, old, new_size) }
    }
    fn kmfree(&mut self, ptr: NonNull<u8>) -> Result<(), FreeError> {
        self.touch();
        self.heap.kmfree(ptr)
    }
    fn stats(&self) -> HeapStats {
        self.touch();
        self.heap.stats()
    }
    fn release_free_pages(&mut self) -> usize {
        self.touch();
        self.heap.release_free_pages()
    }
    fn check(&self) {
        self.touch();
        self.heap.check()
    }
}

#[test]
fn two_threads_allocate_and_free() {
    // On a thread with a larger stack: the heap (its index and cache are some 27 KiB) built and
    // moved by value would not fit on the stack of loom's main coroutine (32 KiB).
    loom::model(|| {
        loom::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(two_threads_body)
            .unwrap()
            .join()
            .unwrap();
    });
}

fn two_threads_body() {
    let heap = Arc::new(LockedHeap::with_lock(
        Spin::new(),
        Tracked {
            heap: kmalloc::Heap::new(Host { out: 0 }),
            calls: UnsafeCell::new(0),
        },
    ));
    let threads: Vec<_> = (0..2u8)
        .map(|t| {
            let heap = heap.clone();
            loom::thread::spawn(move || {
                let l = Layout::from_size_align(40 + t as usize * 100, 8).unwrap();
                // SAFETY: GlobalAlloc per its contract.
                unsafe {
                    let p = heap.alloc(l);
                    assert!(!p.is_null());
                    p.write_bytes(t, l.size());
                    let q = heap.realloc(p, l, l.size() + 500);
                    assert!(!q.is_null());
                    for i in 0..l.size() {
                        assert_eq!(*q.add(i), t);
                    }
                    heap.dealloc(q, Layout::from_size_align(l.size() + 500, 8).unwrap());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut h = heap.lock();
    h.check();
    assert_eq!(h.stats().bytes_in_use, 0);
    h.release_free_pages();
    assert_eq!(h.heap.source().out, 0);
    // SAFETY: the lock is held; the threads are done.
    assert_eq!(h.calls.with(|c| unsafe { *c }), 2 * 3 + 3);
}
