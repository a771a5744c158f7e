//! Frame allocators: kalloc against buddy_system_allocator's FrameAllocator and a bitmap.
//!
//! Runs are timed in the thread's CPU time, as the heap and region workloads are (see
//! [`crate::clock`]).

use crate::{Rng, Row};

/// What the frame workloads need.
trait Frames {
    fn alloc(&mut self, count: usize, align: usize) -> Option<usize>;
    fn free(&mut self, first: usize, count: usize);
}

const FRAMES: usize = 65536; // 256 MiB of "RAM" in frame numbers

struct Kalloc {
    a: kalloc::FrameAllocator,
}

impl Kalloc {
    /// A fresh allocator over `ram`, which must hold `(FRAMES + 1) * 4096` bytes. kalloc writes
    /// only its metadata frames (the first of the range), but the range must be memory it could
    /// reach. The caller fills `ram` once (so every page is present before timing: no
    /// first-touch faults) and reuses it for every run: a 256 MiB allocation and fill per run
    /// took 0.4 s, which put the runs of a round far apart in time, and in different phases of
    /// the machine's load. (The allocator rewrites its metadata in `add_range`.)
    fn new(ram: &mut [u8]) -> Kalloc {
        assert!(ram.len() >= (FRAMES + 1) * 4096);
        let base = (ram.as_mut_ptr() as usize).next_multiple_of(4096);
        let mut a = kalloc::FrameAllocator::new(base);
        // SAFETY: `ram` backs physical [0, FRAMES * 4096) through the offset; the allocator is
        // dropped before `ram` (`run_only` keeps both) and before the next one over it is made.
        unsafe {
            a.add_range(
                kalloc::PhysAddr::new(0),
                kalloc::PhysAddr::new((FRAMES * 4096) as u64),
            )
        }
        .unwrap();
        Kalloc { a }
    }
}

impl Frames for Kalloc {
    fn alloc(&mut self, count: usize, align: usize) -> Option<usize> {
        self.a
            .allocate_contiguous(count, align)
            .ok()
            .map(|f| f.number() as usize)
    }
    fn free(&mut self, first: usize, count: usize) {
        // SAFETY: a run this workload allocated and no longer uses.
        unsafe {
            self.a
                .free_contiguous(kalloc::Frame::from_number(first as u64).unwrap(), count)
        }
        .unwrap();
    }
}

struct BuddyFrames(buddy_system_allocator::FrameAllocator<32>);

impl Frames for BuddyFrames {
    fn alloc(&mut self, count: usize, align: usize) -> Option<usize> {
        if align <= 1 {
            self.0.alloc(count)
        } else {
            self.0
                .alloc_aligned(std::alloc::Layout::from_size_align(count, align).ok()?)
        }
    }
    fn free(&mut self, first: usize, count: usize) {
        self.0.dealloc(first, count)
    }
}

/// A plain bitmap: first fit with a search hint; the classic simple frame allocator.
struct Bitmap {
    used: Vec<u64>,
    hint: usize,
}

impl Bitmap {
    fn is_used(&self, f: usize) -> bool {
        self.used[f / 64] >> (f % 64) & 1 == 1
    }
    fn set(&mut self, f: usize, v: bool) {
        if v {
            self.used[f / 64] |= 1 << (f % 64);
        } else {
            self.used[f / 64] &= !(1 << (f % 64));
        }
    }
}

impl Frames for Bitmap {
    fn alloc(&mut self, count: usize, align: usize) -> Option<usize> {
        let align = align.max(1);
        for pass in 0..2 {
            let mut f = if pass == 0 {
                self.hint.next_multiple_of(align)
            } else {
                0
            };
            let end = if pass == 0 {
                FRAMES
            } else {
                self.hint.min(FRAMES)
            };
            while f + count <= end.max(count) && f + count <= FRAMES {
                if self.used[f / 64] == u64::MAX && f % 64 == 0 {
                    f += 64;
                    continue;
                }
                match (f..f + count).find(|&x| self.is_used(x)) {
                    None => {
                        for x in f..f + count {
                            self.set(x, true);
                        }
                        self.hint = f + count;
                        return Some(f);
                    }
                    Some(x) => f = (x + 1).next_multiple_of(align),
                }
            }
        }
        None
    }
    fn free(&mut self, first: usize, count: usize) {
        for x in first..first + count {
            self.set(x, false);
        }
    }
}

/// A fresh allocator; kalloc's runs over `ram` (see [`Kalloc::new`]).
fn make(name: &str, ram: &mut [u8]) -> Box<dyn Frames> {
    match name {
        "kalloc" => Box::new(Kalloc::new(ram)),
        "buddy_system_allocator" => {
            let mut f = buddy_system_allocator::FrameAllocator::<32>::new();
            f.add_frame(1, FRAMES); // same count as kalloc minus its bitmap frame
            Box::new(BuddyFrames(f))
        }
        "bitmap" => {
            let mut b = Bitmap {
                used: vec![0; FRAMES / 64],
                hint: 0,
            };
            b.set(0, true);
            Box::new(b)
        }
        _ => unreachable!(),
    }
}

fn workload(f: &mut dyn Frames, ops: usize, max_run: usize, seed: u64) -> f64 {
    let mut rng = Rng::new(seed);
    let mut live: Vec<(usize, usize)> = Vec::new();
    let start = crate::clock::cpu_time();
    for _ in 0..ops {
        if live.len() < 4096 && (!rng.next_u64().is_multiple_of(3) || live.is_empty()) {
            let count = if max_run == 1 {
                1
            } else {
                rng.range(1, max_run as u64) as usize
            };
            let align = if max_run == 1 {
                1
            } else {
                1 << rng.range(0, 4)
            };
            if let Some(s) = f.alloc(count, align) {
                assert_eq!(s % align, 0, "misaligned run");
                live.push((s, count));
            }
        } else {
            let (s, n) = live.swap_remove(rng.next_u64() as usize % live.len());
            f.free(s, n);
        }
    }
    let secs = crate::clock::since(start);
    for (s, n) in live {
        f.free(s, n);
    }
    ops as f64 / secs
}

/// Median of `v` (sorted in place).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `median (min–max)` of `v`.
pub fn spread(v: &[f64]) -> String {
    let mut s = v.to_vec();
    let m = median(&mut s);
    format!("{m:.2} ({:.2}–{:.2})", s[0], s[s.len() - 1])
}

/// Each allocator once per round, in an order rotated every round, over `reps` rounds, each on a
/// fresh allocator after the same cache eviction; the row
/// is the median. Prints each allocator's median (min–max) and kalloc's per-round ratio to
/// each peer, median (min–max).
pub fn run(rows: &mut Vec<Row>, reps: usize, seed: u64) {
    run_only(rows, reps, seed, "");
}

/// [`run`] for the workloads whose name contains `only`.
fn run_only(rows: &mut Vec<Row>, reps: usize, seed: u64, only: &str) {
    let names = ["kalloc", "buddy_system_allocator", "bitmap"];
    for (wl, ops, max_run) in [
        ("frames_single", 300_000, 1),
        ("frames_contiguous", 100_000, 64),
    ] {
        if !wl.contains(only) {
            continue;
        }
        // (For instruction counts: the difference of two op counts leaves out setup and the
        // final frees.)
        let ops = std::env::var("ALLOC_BENCH_OPS").map_or(ops, |o| o.parse().unwrap());
        let mut runs = vec![Vec::new(); names.len()];
        let mut scratch = crate::measure::eviction_buffer();
        let mut ram = vec![0x5au8; (FRAMES + 1) * 4096];
        for rep in 0..reps {
            for i in (0..names.len()).map(|i| (i + rep) % names.len()) {
                let mut f = make(names[i], &mut ram);
                // The same cold caches for each, whatever its setup touched (kalloc's fill of
                // 256 MiB would otherwise leave only it with cold caches and TLB).
                crate::measure::evict_caches(&mut scratch);
                runs[i].push(workload(f.as_mut(), ops, max_run, seed));
            }
        }
        for (i, n) in names.iter().enumerate() {
            let mut v = runs[i].clone();
            rows.push(Row {
                workload: wl.into(),
                allocator: (*n).into(),
                ops_per_sec: median(&mut v),
                efficiency_pct: None,
            });
            let mops: Vec<f64> = runs[i].iter().map(|x| x / 1e6).collect();
            eprintln!("  {wl}: {n}: {} Mops/s", spread(&mops));
        }
        for (i, n) in names.iter().enumerate().skip(1) {
            let ratios: Vec<f64> = runs[0].iter().zip(&runs[i]).map(|(k, p)| k / p).collect();
            eprintln!("  {wl}: kalloc / {n}: {}x", spread(&ratios));
        }
    }
}

#[cfg(test)]
mod tests {
    /// The frame workloads alone: `cargo test --release -p alloc-bench frames_only --
    /// --ignored --nocapture` (ALLOC_BENCH_REPS rounds, 9 by default; ALLOC_BENCH_ONLY=single
    /// or contiguous for one workload).
    #[test]
    #[ignore = "a benchmark, not a test"]
    fn frames_only() {
        let reps = std::env::var("ALLOC_BENCH_REPS").map_or(9, |r| r.parse().unwrap());
        let only = std::env::var("ALLOC_BENCH_ONLY").unwrap_or_default();
        super::run_only(&mut Vec::new(), reps, 0x5eed_1234_abcd, &only);
    }
}
