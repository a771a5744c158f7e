//! Random allocations, frees and reallocations on either heap over a [`RegionSource`], timed: a
//! quick look at the heaps' speed, and a target for `perf`.
//!
//! `cargo run --release -p kmalloc --example churn -- [bounded|classic] [MAX_SIZE] [OPS]`

use core::alloc::Layout;
use kmalloc::{AnyHeap, HeapKind, RawHeap, RegionSource};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let kind = HeapKind::from_name(args.first().map_or("bounded", |s| s).as_bytes())
        .expect("heap: bounded or classic");
    let max: usize = args.get(1).map_or(200, |s| s.parse().expect("max size"));
    let ops: usize = args.get(2).map_or(5_000_000, |s| s.parse().expect("ops"));
    let region: &'static mut [u8] = Box::leak(vec![0u8; 64 << 20].into_boxed_slice());
    let mut heap = AnyHeap::new(kind, RegionSource::new(region));
    let mut live: Vec<(core::ptr::NonNull<u8>, Layout)> = Vec::with_capacity(1 << 16);
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let start = Instant::now();
    for _ in 0..ops {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let size = 1 + (x >> 20) as usize % max;
        match x % 4 {
            0 | 1 => {
                let l = Layout::from_size_align(size, 8).unwrap();
                match heap.allocate(l) {
                    Ok(p) => live.push((p, l)),
                    Err(_) if !live.is_empty() => {
                        let (p, l) = live.swap_remove((x >> 8) as usize % live.len());
                        // SAFETY: a live block with its layout.
                        unsafe { heap.deallocate(p, l) };
                    }
                    Err(_) => {}
                }
            }
            2 if !live.is_empty() => {
                let (p, l) = live.swap_remove((x >> 8) as usize % live.len());
                // SAFETY: a live block with its layout.
                unsafe { heap.deallocate(p, l) };
            }
            3 if !live.is_empty() => {
                let i = (x >> 8) as usize % live.len();
                let (p, l) = live[i];
                // SAFETY: a live block with its layout.
                if let Ok(q) = unsafe { heap.reallocate(p, l, size) } {
                    live[i] = (q, Layout::from_size_align(size, 8).unwrap());
                }
            }
            _ => {}
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let st = heap.stats();
    println!(
        "{kind:?}, sizes 1..={max}: {:.2} M ops/s, {} live blocks, {} free blocks, {} pages",
        ops as f64 / secs / 1e6,
        live.len(),
        st.free_blocks,
        st.pages_held
    );
}
