//! Fuzz target: random heap actions against a shadow of live blocks, over a bounded page source.
#![no_main]

use arbitrary::Arbitrary;
use core::alloc::Layout;
use core::ptr::NonNull;
use kmalloc::{Heap, PageSource, PAGE_SIZE};
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;

/// Pages from the host allocator, at most `limit` out at once.
struct Source {
    out: HashMap<usize, usize>,
    pages: usize,
    limit: usize,
    accept: bool,
}

// SAFETY: fresh host allocations, each handed out once and freed once.
unsafe impl PageSource for Source {
    fn alloc_pages(&mut self, pages: usize, align: usize) -> Option<NonNull<u8>> {
        if self.pages + pages > self.limit {
            return None;
        }
        // SAFETY: non-zero size.
        let p = NonNull::new(unsafe {
            std::alloc::alloc(Layout::from_size_align(pages * PAGE_SIZE, align).ok()?)
        })?;
        self.out.insert(p.as_ptr() as usize, pages);
        self.pages += pages;
        Some(p)
    }

    unsafe fn free_pages(&mut self, ptr: NonNull<u8>, pages: usize) -> bool {
        if !self.accept {
            return false;
        }
        assert_eq!(
            self.out.remove(&(ptr.as_ptr() as usize)),
            Some(pages),
            "freed pages never handed out"
        );
        self.pages -= pages;
        // SAFETY: allocated above with this size.
        unsafe {
            std::alloc::dealloc(
                ptr.as_ptr(),
                Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).unwrap(),
            )
        };
        true
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        for (&p, &pages) in &self.out {
            // SAFETY: still-out runs from alloc_pages; the heap that used them is gone.
            unsafe {
                std::alloc::dealloc(
                    p as *mut u8,
                    Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).unwrap(),
                )
            };
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Action {
    Alloc { size: u16, align_log: u8 },
    Big { pages: u8 },
    Free { index: u8 },
    Realloc { index: u8, size: u16 },
    Kmalloc { size: u16 },
    Kmfree { index: u8 },
    FreeInterior { index: u8, offset: u16 },
    Release,
}

#[derive(Arbitrary, Debug)]
struct Input {
    accept_returns: bool,
    actions: Vec<Action>,
}

struct Live {
    ptr: NonNull<u8>,
    layout: Layout,
    seed: u8,
}

fn fill(b: &Live) {
    for i in 0..b.layout.size() {
        // SAFETY: live block of this size.
        unsafe { *b.ptr.as_ptr().add(i) = b.seed.wrapping_add(i as u8) };
    }
}

fn check(b: &Live) {
    for i in 0..b.layout.size() {
        // SAFETY: live block of this size.
        assert_eq!(
            unsafe { *b.ptr.as_ptr().add(i) },
            b.seed.wrapping_add(i as u8),
            "live block changed"
        );
    }
}

fuzz_target!(|input: Input| {
    let mut heap = Heap::new(Source {
        out: HashMap::new(),
        pages: 0,
        limit: 512,
        accept: input.accept_returns,
    });
    let mut live: Vec<Live> = Vec::new();
    let mut seed = 0u8;
    for action in input.actions.into_iter().take(2000) {
        seed = seed.wrapping_add(1);
        match action {
            Action::Alloc { size, align_log } => {
                let l = Layout::from_size_align(size as usize, 1 << (align_log % 13)).unwrap();
                if let Ok(p) = heap.allocate(l) {
                    assert_eq!(p.as_ptr() as usize % l.align(), 0);
                    let b = Live {
                        ptr: p,
                        layout: l,
                        seed,
                    };
                    fill(&b);
                    live.push(b);
                }
            }
            Action::Big { pages } => {
                let l = Layout::from_size_align(pages as usize * 1000 + 1, 16).unwrap();
                if let Ok(p) = heap.allocate(l) {
                    let b = Live {
                        ptr: p,
                        layout: l,
                        seed,
                    };
                    fill(&b);
                    live.push(b);
                }
            }
            Action::Kmalloc { size } => {
                let r = heap.kmalloc(size as usize);
                if size == 0 || size as usize > 4096 {
                    assert!(r.is_none());
                } else if let Some(p) = r {
                    let b = Live {
                        ptr: p,
                        layout: Layout::from_size_align(size as usize, 16).unwrap(),
                        seed,
                    };
                    fill(&b);
                    live.push(b);
                }
            }
            Action::Free { index } | Action::Kmfree { index } if !live.is_empty() => {
                let b = live.swap_remove(index as usize % live.len());
                check(&b);
                if matches!(action, Action::Kmfree { .. }) {
                    assert_eq!(heap.kmfree(b.ptr), Ok(()));
                    assert!(heap.kmfree(b.ptr).is_err(), "double free accepted");
                } else {
                    // SAFETY: live block with its layout.
                    unsafe { heap.deallocate(b.ptr, b.layout) };
                }
            }
            Action::Realloc { index, size } if !live.is_empty() => {
                let i = index as usize % live.len();
                check(&live[i]);
                let b = &mut live[i];
                // SAFETY: live block with its layout.
                if let Ok(p) = unsafe { heap.reallocate(b.ptr, b.layout, size as usize) } {
                    let kept = b.layout.size().min(size as usize);
                    for k in 0..kept {
                        // SAFETY: the new block holds at least `kept` bytes.
                        assert_eq!(
                            unsafe { *p.as_ptr().add(k) },
                            b.seed.wrapping_add(k as u8),
                            "realloc lost data"
                        );
                    }
                    b.ptr = p;
                    b.layout = Layout::from_size_align(size as usize, b.layout.align()).unwrap();
                    fill(b);
                }
            }
            Action::FreeInterior { index, offset } if !live.is_empty() => {
                let b = &live[index as usize % live.len()];
                let off = offset as usize;
                if off > 0 && off < b.layout.size() {
                    // SAFETY: inside the block.
                    let p = unsafe { NonNull::new_unchecked(b.ptr.as_ptr().add(off)) };
                    assert!(heap.kmfree(p).is_err(), "interior pointer accepted");
                }
            }
            Action::Release => {
                heap.release_free_pages();
            }
            _ => {}
        }
        heap.check_invariants();
        let st = heap.stats();
        assert_eq!(
            st.bytes_in_use + st.bytes_free + st.overhead_bytes,
            st.pages_held * PAGE_SIZE
        );
        assert_eq!(st.pages_held, heap.source().pages);
    }
    for b in live.drain(..) {
        check(&b);
        // SAFETY: live block with its layout.
        unsafe { heap.deallocate(b.ptr, b.layout) };
    }
    heap.release_free_pages();
    heap.check_invariants();
    if input.accept_returns {
        assert_eq!(heap.source().pages, 0, "pages not returned");
    } else {
        assert_eq!(heap.stats().bytes_in_use, 0);
    }
});
