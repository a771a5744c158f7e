//! loom model checks of `LockedHeap` shared between threads. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p kmalloc --release --test loom`.
#![cfg(loom)]

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use kmalloc::{LockedHeap, PageSource, PAGE_SIZE};
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

#[test]
fn two_threads_allocate_and_free() {
    // On a thread with a larger stack: the heap (its index is some 10 KiB) built and moved by
    // value would not fit on the stack of loom's main coroutine (32 KiB).
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
    {
        let heap: Arc<LockedHeap<kmalloc::Heap<Host>>> =
            Arc::new(LockedHeap::new(kmalloc::Heap::new(Host { out: 0 })));
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
                        let q = heap.alloc(l);
                        assert!(!q.is_null());
                        q.write_bytes(t, l.size());
                        for i in 0..l.size() {
                            assert_eq!(*p.add(i), t);
                        }
                        heap.dealloc(p, l);
                        heap.dealloc(q, l);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut h = heap.lock();
        h.check_invariants();
        assert_eq!(h.stats().bytes_in_use, 0);
        h.release_free_pages();
        assert_eq!(h.source().out, 0);
    }
}
