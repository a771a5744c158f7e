//! talc's published benchmark method (its `benches/` crate, version 5), rewritten here so that
//! every heap runs it on the same arena and seed as the project's own workloads:
//!
//! - **random actions**: a live set held near 300 blocks; each action is, with probability 1/7,
//!   a reallocation of a random live block to a size uniform below 3 x `max`; otherwise an
//!   allocation when fewer than 300 blocks are live or with probability 3/7, else the free of a
//!   random live block. Sizes are biased small (a bound uniform in 16..`max`, then a size uniform
//!   in 4..bound) and alignments mixed ([`align`]). The score is successful operations per
//!   second, at `max` = 200, 1000, 3000, 10000 and 30000. talc counts operations done in 200 ms
//!   after a 2 ms warm-up; here a fixed sequence of actions is timed after a warm-up of a tenth
//!   of it on the same heap, so every heap gets exactly the same requests.
//! - **heap efficiency**: on a fresh 128 MiB arena, allocate (1/2), free (1/10) or reallocate
//!   (2/5, to a size uniform below 100 000) until the first allocation or reallocation fails, with
//!   sizes biased small below 10 000; report the live bytes then as a share of the arena. talc
//!   averages 300 such trials; here [`efficiency_trials`] per round, each trial with its own seed
//!   (the same for every heap).
//!
//! As in talc's harness, the timed loop does not touch the blocks (only reallocation copies), so
//! the heaps' own work is what is compared; every block is checked (aligned, inside the arena, no
//! two overlapping) after the timed part instead.

use crate::heaps::BenchHeap;
use crate::measure::Outcome;
use crate::Rng;
use std::alloc::Layout;
use std::ptr::NonNull;

/// The max sizes talc reports random actions at (its arena set).
pub const MAX_SIZES: [usize; 5] = [200, 1000, 3000, 10000, 30000];
/// talc's arena: 128 MiB.
pub const ARENA: usize = 128 << 20;
/// Live blocks the random actions hold (talc's arena-allocator setting).
const LIVE_TARGET: usize = 300;

/// A size biased towards small ones: a bound uniform in `16..max`, then a size uniform in
/// `4..bound` (both ends exclusive above, as talc draws them).
fn size(rng: &mut Rng, max: usize) -> usize {
    let bound = rng.range(16, max as u64 - 1);
    rng.range(4, bound - 1) as usize
}

/// An alignment of `8 << k`, with `k` half the trailing zeros of a random 16-bit word: 8 three
/// times in four, 16 in about a fifth, 32 and above in about 6 % (32: 4.7 %, 64: 1.2 %, then
/// fewer and fewer up to 2048).
fn align(rng: &mut Rng) -> usize {
    let w = rng.next_u64() as u16;
    8 << (w.trailing_zeros() / 2)
}

#[derive(Clone, Copy)]
struct Live {
    p: NonNull<u8>,
    l: Layout,
}

/// Aligned, inside `arena` (when given), and no two overlapping: else the heap is broken.
fn check(live: &mut [Live], arena: Option<(usize, usize)>, who: &str) {
    live.sort_by_key(|b| b.p.as_ptr() as usize);
    let mut end = 0usize;
    for b in live.iter() {
        let a = b.p.as_ptr() as usize;
        assert!(
            a.is_multiple_of(b.l.align()),
            "{who}: a block is misaligned"
        );
        assert!(a >= end, "{who}: two live blocks overlap");
        end = a + b.l.size();
        if let Some((lo, hi)) = arena {
            assert!(a >= lo && end <= hi, "{who}: a block is outside the arena");
        }
    }
}

/// One run of random actions at `max`: `actions` timed actions after `actions / 10` untimed ones
/// on the same heap. `arena` is `(start, end)` for heaps over the arena, `None` for the system's.
pub fn random_actions(
    h: &mut dyn BenchHeap,
    who: &str,
    max: usize,
    actions: usize,
    seed: u64,
    arena: Option<(usize, usize)>,
) -> Outcome {
    let mut rng = Rng::new(seed);
    let mut live: Vec<Live> = Vec::with_capacity(4 * LIVE_TARGET);
    let mut failures = 0usize;
    let step = |h: &mut dyn BenchHeap, rng: &mut Rng, live: &mut Vec<Live>| -> bool {
        let action = rng.next_u64() % 7;
        if action == 6 {
            if live.is_empty() {
                return false;
            }
            let k = rng.next_u64() as usize % live.len();
            let new = rng.range(1, 3 * max as u64 - 1) as usize;
            let b = live[k];
            // SAFETY: `b` is live with layout `b.l`; `new` is non-zero.
            match unsafe { h.realloc(b.p, b.l, new) } {
                Some(p) => {
                    live[k] = Live {
                        p,
                        l: Layout::from_size_align(new, b.l.align()).unwrap(),
                    };
                    true
                }
                None => false,
            }
        } else if action < 3 || live.len() < LIVE_TARGET {
            let l = Layout::from_size_align(size(rng, max), align(rng)).unwrap();
            match h.alloc(l) {
                Some(p) => {
                    live.push(Live { p, l });
                    true
                }
                None => false,
            }
        } else {
            let b = live.swap_remove(rng.next_u64() as usize % live.len());
            // SAFETY: `b` was live with layout `b.l`, and leaves the live set.
            unsafe { h.free(b.p, b.l) };
            true
        }
    };
    for _ in 0..actions / 10 {
        step(h, &mut rng, &mut live);
    }
    let mut done = 0usize;
    let start = crate::clock::cpu_time();
    for _ in 0..actions {
        if step(h, &mut rng, &mut live) {
            done += 1;
        } else {
            failures += 1;
        }
    }
    let secs = crate::clock::since(start);
    check(&mut live, arena, who);
    for b in live {
        // SAFETY: live block.
        unsafe { h.free(b.p, b.l) };
    }
    // A heap that runs out in talc's generous arena is not doing the same work as the others.
    assert!(
        failures <= actions / 100,
        "{who}: {failures} of {actions} random actions at max {max} failed"
    );
    Outcome {
        ops_per_sec: done as f64 / secs,
        efficiency_pct: None,
    }
}

/// One heap-efficiency trial on a fresh heap over an arena of `arena_size` bytes (see the module
/// docs): the share of the arena in live blocks at the first failure, in %.
pub fn heap_efficiency(
    h: &mut dyn BenchHeap,
    who: &str,
    arena_size: usize,
    seed: u64,
    arena: Option<(usize, usize)>,
) -> f64 {
    const MAX: usize = 10_000;
    const REALLOC_MAX: u64 = 10 * MAX as u64;
    let mut rng = Rng::new(seed);
    let mut live: Vec<Live> = Vec::new();
    loop {
        match rng.next_u64() % 10 {
            0..=4 => {
                let l = Layout::from_size_align(size(&mut rng, MAX), align(&mut rng)).unwrap();
                match h.alloc(l) {
                    Some(p) => live.push(Live { p, l }),
                    None => break,
                }
            }
            5 => {
                if !live.is_empty() {
                    let b = live.swap_remove(rng.next_u64() as usize % live.len());
                    // SAFETY: `b` was live with layout `b.l`.
                    unsafe { h.free(b.p, b.l) };
                }
            }
            _ => {
                if !live.is_empty() {
                    let k = rng.next_u64() as usize % live.len();
                    let new = rng.range(1, REALLOC_MAX - 1) as usize;
                    let b = live[k];
                    // SAFETY: `b` is live with layout `b.l`; `new` is non-zero.
                    match unsafe { h.realloc(b.p, b.l, new) } {
                        Some(p) => {
                            live[k] = Live {
                                p,
                                l: Layout::from_size_align(new, b.l.align()).unwrap(),
                            }
                        }
                        None => break,
                    }
                }
            }
        }
    }
    let used: usize = live.iter().map(|b| b.l.size()).sum();
    check(&mut live, arena, who);
    for b in live {
        // SAFETY: live block.
        unsafe { h.free(b.p, b.l) };
    }
    used as f64 * 100.0 / arena_size as f64
}

/// Heap-efficiency trials per round: each fills 128 MiB, so a few per round, and the rounds make
/// the total (talc's 300 is more than a shared 2-core machine can spend on one figure).
pub fn efficiency_trials(quick: bool) -> usize {
    if quick {
        2
    } else {
        6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_alignments_follow_talcs_distributions() {
        let mut rng = Rng::new(7);
        let n = 200_000;
        let mut above_16 = 0;
        let mut at_8 = 0;
        let mut small = 0;
        for _ in 0..n {
            let s = size(&mut rng, 1000);
            assert!((4..999).contains(&s));
            if s < 250 {
                small += 1;
            }
            let a = align(&mut rng);
            assert!(a.is_power_of_two() && (8..=2048).contains(&a));
            if a > 16 {
                above_16 += 1;
            }
            if a == 8 {
                at_8 += 1;
            }
        }
        // Biased small: a uniform draw would put a quarter below 250; this puts 59 % there
        // (a quarter of the bounds are below 250, and 246 / (bound - 4) of the rest's sizes).
        let small = small as f64 / n as f64;
        assert!((0.56..0.62).contains(&small), "{small}");
        let above_16 = above_16 as f64 / n as f64;
        assert!((0.055..0.07).contains(&above_16), "{above_16}");
        let at_8 = at_8 as f64 / n as f64;
        assert!((0.73..0.77).contains(&at_8), "{at_8}");
    }

    #[test]
    #[should_panic(expected = "overlap")]
    fn check_catches_overlapping_blocks() {
        let mut buf = [0u64; 8];
        let p = NonNull::new(buf.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: 8 bytes into a 64-byte buffer.
        let q = NonNull::new(unsafe { p.as_ptr().add(8) }).unwrap();
        let l = Layout::from_size_align(16, 8).unwrap();
        check(&mut [Live { p, l }, Live { p: q, l }], None, "test");
    }
}
