//! Fuzz target: random heap actions against a shadow of live blocks, over a bounded page source,
//! on either heap (the bounded one or K&R's classic one, as the input chooses). Double frees go
//! through every API (`deallocate` and `reallocate` must panic before changing anything,
//! `kmfree` must refuse), alignments reach 64 KiB, and heaps grow to thousands of pages.
#![no_main]

use arbitrary::Arbitrary;
use core::alloc::Layout;
use core::ptr::NonNull;
use kmalloc::{AnyHeap, HeapKind, PageSource, RawHeap, PAGE_SIZE};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

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
        // The host allocator hands these pages out again unwiped, possibly inside a later
        // chunk: no word in them may read as a live block's header.
        // SAFETY: the run is still allocated, page-aligned, `pages` pages long.
        let stale = unsafe { kmalloc::block::live_header_in(ptr, pages * PAGE_SIZE) };
        assert_eq!(stale, None, "pages given back hold a used block's header");
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
    Alloc {
        size: u16,
        align_log: u8,
    },
    Big {
        pages: u16,
        align_log: u8,
    },
    Free {
        index: u8,
    },
    Realloc {
        index: u8,
        size: u16,
    },
    Kmalloc {
        size: u16,
    },
    Kmfree {
        index: u8,
    },
    FreeInterior {
        index: u8,
        offset: u16,
    },
    /// Frees a block, then frees it again through `deallocate`, `reallocate` or `kmfree`.
    DoubleFree {
        index: u8,
        how: u8,
    },
    Release,
}

#[derive(Arbitrary, Debug)]
struct Input {
    classic: bool,
    accept_returns: bool,
    /// Pages the source gives at most: 64 to about 8 000.
    limit: u16,
    growth: u8,
    actions: Vec<Action>,
}

struct Live {
    ptr: NonNull<u8>,
    layout: Layout,
    seed: u8,
}

/// The bytes of a block the shadow checks: all of a small block, the first and last 256 of a
/// big one (filling megabytes per action would leave no time for anything else).
fn sampled(b: &Live) -> impl Iterator<Item = usize> {
    let n = b.layout.size();
    (0..n.min(256)).chain(n.saturating_sub(256).max(256)..n)
}

fn fill(b: &Live) {
    for i in sampled(b) {
        // SAFETY: live block of this size.
        unsafe { *b.ptr.as_ptr().add(i) = b.seed.wrapping_add(i as u8) };
    }
}

fn check(b: &Live) {
    for i in sampled(b) {
        // SAFETY: live block of this size.
        assert_eq!(
            unsafe { *b.ptr.as_ptr().add(i) },
            b.seed.wrapping_add(i as u8),
            "live block changed"
        );
    }
}

/// Runs `f`, which must panic (a detected double free), with the panic hook silenced.
fn must_panic(what: &str, f: impl FnOnce()) {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = catch_unwind(AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    assert!(r.is_err(), "{what} of a freed block was accepted");
}

fuzz_target!(|input: Input| {
    let kind = if input.classic {
        HeapKind::Classic
    } else {
        HeapKind::Bounded
    };
    let limit = 64 + input.limit as usize % 8000;
    let mut heap = AnyHeap::new(
        kind,
        Source {
            out: HashMap::new(),
            pages: 0,
            limit,
            accept: input.accept_returns,
        },
    );
    heap.set_growth_limit(input.growth as usize + 1);
    let mut live: Vec<Live> = Vec::new();
    let mut seed = 0u8;
    for action in input.actions.into_iter().take(2000) {
        seed = seed.wrapping_add(1);
        match action {
            Action::Alloc { size, align_log } => {
                let l = Layout::from_size_align(size as usize, 1 << (align_log % 17)).unwrap();
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
            Action::Big { pages, align_log } => {
                let size = (pages as usize % 4096) * PAGE_SIZE + pages as usize % 977 + 1;
                let l = Layout::from_size_align(size, 1 << (align_log % 17)).unwrap();
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
            Action::DoubleFree { index, how } if !live.is_empty() => {
                let b = live.swap_remove(index as usize % live.len());
                check(&b);
                let pages = heap.stats().pages_held;
                // SAFETY: live block with its layout.
                unsafe { heap.deallocate(b.ptr, b.layout) };
                // Only while the block's memory is still the heap's (no chunk went back):
                // reading memory the source took back would be the test's own bug.
                if heap.stats().pages_held == pages {
                    match how % 3 {
                        // SAFETY (both): deliberately broken calls that the heap must refuse
                        // by a panic before it changes anything.
                        0 => {
                            must_panic("deallocate", || unsafe { heap.deallocate(b.ptr, b.layout) })
                        }
                        1 => must_panic("reallocate", || {
                            let _ = unsafe { heap.reallocate(b.ptr, b.layout, 100) };
                        }),
                        _ => assert!(heap.kmfree(b.ptr).is_err(), "kmfree of a freed block"),
                    }
                }
            }
            Action::Realloc { index, size } if !live.is_empty() => {
                let i = index as usize % live.len();
                check(&live[i]);
                let b = &mut live[i];
                // SAFETY: live block with its layout.
                if let Ok(p) = unsafe { heap.reallocate(b.ptr, b.layout, size as usize) } {
                    assert_eq!(p.as_ptr() as usize % b.layout.align(), 0);
                    let kept = b.layout.size().min(size as usize).min(256);
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
        heap.check();
        let st = heap.stats();
        assert_eq!(
            st.bytes_in_use + st.bytes_free + st.overhead_bytes,
            st.pages_held * PAGE_SIZE
        );
        // No two live blocks overlap.
        let spans: BTreeMap<usize, usize> = live
            .iter()
            .map(|b| (b.ptr.as_ptr() as usize, b.layout.size()))
            .collect();
        let mut end = 0;
        for (&start, &len) in &spans {
            assert!(start >= end, "live blocks overlap");
            end = start + len;
        }
    }
    for b in live.drain(..) {
        check(&b);
        // SAFETY: live block with its layout.
        unsafe { heap.deallocate(b.ptr, b.layout) };
    }
    heap.release_free_pages();
    heap.check();
    assert_eq!(heap.stats().bytes_in_use, 0);
    if input.accept_returns && kind == HeapKind::Bounded {
        assert_eq!(heap.stats().pages_held, 0, "pages not returned");
    }
});
