//! The project's own heap workloads: random actions with sizes up to a bound, a fill to the first
//! failure (heap efficiency), and a kernel-like trace. Every block is marked at both ends when
//! allocated and checked when freed, so a heap that hands out overlapping blocks is caught.

use crate::heaps::BenchHeap;
use crate::Rng;
use std::alloc::Layout;
use std::ptr::NonNull;

struct Block {
    p: NonNull<u8>,
    l: Layout,
    tag: u8,
}

fn mark(b: &Block) {
    // SAFETY: a live block of at least one byte.
    unsafe {
        *b.p.as_ptr() = b.tag;
        *b.p.as_ptr().add(b.l.size() - 1) = b.tag;
    }
}

fn verify(b: &Block, who: &str) {
    // SAFETY: a live block.
    let (first, last) = unsafe { (*b.p.as_ptr(), *b.p.as_ptr().add(b.l.size() - 1)) };
    assert!(
        first == b.tag && last == b.tag,
        "{who}: a live block was overwritten: the allocator is broken"
    );
}

/// talc's random-actions shape: random allocate / free / reallocate with sizes up to `max`,
/// freeing a random block when an allocation fails. Returns ops/s.
pub fn random_actions(h: &mut dyn BenchHeap, who: &str, max: u64, ops: usize, seed: u64) -> f64 {
    let mut rng = Rng::new(seed);
    let mut live: Vec<Block> = Vec::with_capacity(4096);
    let start = crate::clock::cpu_time();
    for i in 0..ops {
        let tag = i as u8;
        match rng.next_u64() % 4 {
            0 | 1 => {
                let size = rng.range(1, max) as usize;
                let l = Layout::from_size_align(size, 8).unwrap();
                match h.alloc(l) {
                    Some(p) => {
                        let b = Block { p, l, tag };
                        mark(&b);
                        live.push(b);
                    }
                    None if !live.is_empty() => {
                        let b = live.swap_remove(rng.next_u64() as usize % live.len());
                        verify(&b, who);
                        // SAFETY: live block.
                        unsafe { h.free(b.p, b.l) };
                    }
                    None => {}
                }
            }
            2 if !live.is_empty() => {
                let b = live.swap_remove(rng.next_u64() as usize % live.len());
                verify(&b, who);
                // SAFETY: live block.
                unsafe { h.free(b.p, b.l) };
            }
            3 if !live.is_empty() => {
                let k = rng.next_u64() as usize % live.len();
                let size = rng.range(1, max) as usize;
                verify(&live[k], who);
                let b = &mut live[k];
                // SAFETY: live block.
                if let Some(p) = unsafe { h.realloc(b.p, b.l, size) } {
                    b.p = p;
                    b.l = Layout::from_size_align(size, 8).unwrap();
                    mark(b);
                }
            }
            _ => {}
        }
    }
    let secs = crate::clock::since(start);
    for b in live {
        verify(&b, who);
        // SAFETY: live block.
        unsafe { h.free(b.p, b.l) };
    }
    ops as f64 / secs
}

/// Fill the arena with random sizes (and random frees) until the first failure; returns the
/// share of the arena in live blocks at that moment, and ops/s.
pub fn heap_efficiency(h: &mut dyn BenchHeap, who: &str, arena: usize, seed: u64) -> (f64, f64) {
    let mut rng = Rng::new(seed);
    let mut live: Vec<Block> = Vec::new();
    let mut bytes = 0usize;
    let mut ops = 0usize;
    let start = crate::clock::cpu_time();
    let pct = loop {
        ops += 1;
        if rng.next_u64() % 10 < 8 || live.is_empty() {
            let size = rng.range(1, 2000) as usize;
            let l = Layout::from_size_align(size, 8).unwrap();
            match h.alloc(l) {
                Some(p) => {
                    let b = Block {
                        p,
                        l,
                        tag: ops as u8,
                    };
                    mark(&b);
                    bytes += size;
                    live.push(b);
                }
                None => break bytes as f64 * 100.0 / arena as f64,
            }
        } else {
            let b = live.swap_remove(rng.next_u64() as usize % live.len());
            verify(&b, who);
            bytes -= b.l.size();
            // SAFETY: live block.
            unsafe { h.free(b.p, b.l) };
        }
        if ops > 50_000_000 {
            break 100.0;
        }
    };
    let secs = crate::clock::since(start);
    for b in live {
        // SAFETY: live block.
        unsafe { h.free(b.p, b.l) };
    }
    (pct, ops as f64 / secs)
}

/// A kernel-like trace: bursts of small blocks of a few sizes (inodes, buffers, pipes, procs),
/// freed in mixed order.
pub fn kernel_trace(h: &mut dyn BenchHeap, who: &str, rounds: usize, seed: u64) -> f64 {
    const SIZES: [usize; 8] = [16, 32, 64, 128, 256, 512, 1024, 4096];
    const WEIGHTS: [u64; 8] = [20, 25, 20, 15, 8, 6, 4, 2];
    let total: u64 = WEIGHTS.iter().sum();
    let mut rng = Rng::new(seed);
    let mut live: Vec<Block> = Vec::new();
    let mut ops = 0usize;
    let start = crate::clock::cpu_time();
    for r in 0..rounds {
        let burst = rng.range(50, 300) as usize;
        for _ in 0..burst {
            let mut x = rng.next_u64() % total;
            let mut k = 0;
            while x >= WEIGHTS[k] {
                x -= WEIGHTS[k];
                k += 1;
            }
            let l = Layout::from_size_align(SIZES[k], 8).unwrap();
            if let Some(p) = h.alloc(l) {
                let b = Block { p, l, tag: r as u8 };
                mark(&b);
                live.push(b);
            }
            ops += 1;
        }
        let frees = live.len() * rng.range(40, 70) as usize / 100;
        for _ in 0..frees {
            let b = live.swap_remove(rng.next_u64() as usize % live.len());
            verify(&b, who);
            // SAFETY: live block.
            unsafe { h.free(b.p, b.l) };
            ops += 1;
        }
    }
    let secs = crate::clock::since(start);
    for b in live {
        // SAFETY: live block.
        unsafe { h.free(b.p, b.l) };
    }
    ops as f64 / secs
}
