//! Region lists: vmregions against a BTreeMap keyed by start with a linear gap search (holding
//! the same regions, and as first written holding only their bounds).

use crate::{Rng, Row};
use std::collections::BTreeMap;
use vmregions::{Backing, Prot, Region, RegionList, Sharing};

const P: u64 = 4096;

trait Regions {
    fn insert(&mut self, start: u64, len: u64) -> bool;
    fn find(&self, addr: u64) -> Option<u64>;
    fn find_gap(&self, size: u64, lower: u64, upper: u64) -> Option<u64>;
    fn remove(&mut self, start: u64, len: u64);
}

struct Tree(RegionList<u32>);

impl Regions for Tree {
    fn insert(&mut self, start: u64, len: u64) -> bool {
        self.0
            .insert(Region {
                start,
                len,
                prot: Prot::READ,
                sharing: Sharing::Private,
                backing: Backing::Anonymous,
            })
            .is_ok()
    }
    fn find(&self, addr: u64) -> Option<u64> {
        self.0.find(addr).map(|r| r.start)
    }
    fn find_gap(&self, size: u64, lower: u64, upper: u64) -> Option<u64> {
        self.0.find_gap(size, P, lower, upper, None)
    }
    fn remove(&mut self, start: u64, len: u64) {
        self.0.remove_range(start, len, |_| {}).unwrap();
    }
}

/// The obvious baseline: a `BTreeMap` keyed by start holding the same `Region` vmregions holds
/// (a kernel keeps each region's protection and backing with its bounds), gap search by walking
/// the map from the region at or below `lower`. It keeps no gap summaries, so its gap search is
/// linear in the regions it passes, and its `remove` takes the exact start of a whole region
/// (the only removal in these workloads) where vmregions' `remove_range` handles any range.
struct Map(BTreeMap<u64, Region<u32>>);

/// The baseline as it was first written, kept for comparison: 16 bytes per region (start and
/// end, without the region's attributes), same searches.
struct Bounds(BTreeMap<u64, u64>);

/// The gap search both maps share: from the last region starting at or below `lower` (it may
/// reach past `lower`), in address order until a gap of `size` from a page boundary opens.
fn walk_gaps<'a>(
    from_lower: impl Iterator<Item = (u64, u64)> + 'a,
    size: u64,
    lower: u64,
    upper: u64,
) -> Option<u64> {
    let mut at = (lower + P - 1) & !(P - 1);
    for (s, e) in from_lower {
        if e <= at {
            continue;
        }
        if s >= at + size {
            break;
        }
        at = e;
    }
    (at + size <= upper).then_some(at)
}

impl Regions for Map {
    fn insert(&mut self, start: u64, len: u64) -> bool {
        let end = start + len;
        if let Some((_, r)) = self.0.range(..end).next_back() {
            if r.end() > start {
                return false;
            }
        }
        self.0.insert(
            start,
            Region {
                start,
                len,
                prot: Prot::READ,
                sharing: Sharing::Private,
                backing: Backing::Anonymous,
            },
        );
        true
    }
    fn find(&self, addr: u64) -> Option<u64> {
        let (&s, r) = self.0.range(..=addr).next_back()?;
        (addr - s < r.len).then_some(s)
    }
    fn find_gap(&self, size: u64, lower: u64, upper: u64) -> Option<u64> {
        let from = self.0.range(..=lower).next_back().map_or(0, |(&s, _)| s);
        walk_gaps(
            self.0.range(from..).map(|(&s, r)| (s, r.end())),
            size,
            lower,
            upper,
        )
    }
    fn remove(&mut self, start: u64, len: u64) {
        // Whole-region removal only in these workloads.
        let _ = len;
        self.0.remove(&start);
    }
}

impl Regions for Bounds {
    fn insert(&mut self, start: u64, len: u64) -> bool {
        let end = start + len;
        if let Some((_, &e)) = self.0.range(..end).next_back() {
            if e > start {
                return false;
            }
        }
        self.0.insert(start, end);
        true
    }
    fn find(&self, addr: u64) -> Option<u64> {
        let (&s, &e) = self.0.range(..=addr).next_back()?;
        (addr < e).then_some(s)
    }
    fn find_gap(&self, size: u64, lower: u64, upper: u64) -> Option<u64> {
        let from = self.0.range(..=lower).next_back().map_or(0, |(&s, _)| s);
        walk_gaps(
            self.0.range(from..).map(|(&s, &e)| (s, e)),
            size,
            lower,
            upper,
        )
    }
    fn remove(&mut self, start: u64, len: u64) {
        let _ = len;
        self.0.remove(&start);
    }
}

fn workload(r: &mut dyn Regions, n: u64, ops: usize, seed: u64) -> f64 {
    let mut rng = Rng::new(seed);
    // Regions of 1-2 pages every 4 pages.
    for i in 0..n {
        assert!(r.insert(i * 4 * P, rng.range(1, 2) * P));
    }
    let top = n * 4 * P;
    let start = crate::clock::cpu_time();
    let mut found = 0u64;
    for _ in 0..ops {
        match rng.next_u64() % 10 {
            0..=4 => found += r.find(rng.range(0, top) & !(P - 1)).is_some() as u64,
            5 | 6 => found += r.find_gap(3 * P, rng.range(0, top), u64::MAX / 2).is_some() as u64,
            _ => {
                let i = rng.range(0, n - 1);
                let s = i * 4 * P;
                if r.find(s).is_some() {
                    r.remove(s, P * 2);
                    assert!(r.insert(s, P * rng.range(1, 2)));
                }
            }
        }
    }
    let secs = crate::clock::since(start);
    std::hint::black_box(found);
    ops as f64 / secs
}

/// Lookups only: `find` at random page addresses (half hit a region).
fn lookups(r: &mut dyn Regions, n: u64, ops: usize, seed: u64) -> f64 {
    let mut rng = Rng::new(seed);
    fill(r, n, &mut rng);
    let top = n * 4 * P;
    let start = crate::clock::cpu_time();
    let mut found = 0u64;
    for _ in 0..ops {
        found += r.find(rng.range(0, top) & !(P - 1)).is_some() as u64;
    }
    let secs = crate::clock::since(start);
    std::hint::black_box(found);
    ops as f64 / secs
}

/// Removes and inserts only: a random region out, and back in with a new length (each op is
/// one remove and one insert).
fn removes_inserts(r: &mut dyn Regions, n: u64, ops: usize, seed: u64) -> f64 {
    let mut rng = Rng::new(seed);
    fill(r, n, &mut rng);
    let start = crate::clock::cpu_time();
    for _ in 0..ops {
        let s = rng.range(0, n - 1) * 4 * P;
        r.remove(s, P * 2);
        assert!(r.insert(s, P * rng.range(1, 2)));
    }
    let secs = crate::clock::since(start);
    ops as f64 / secs
}

/// Regions of 1-2 pages every 4 pages.
fn fill(r: &mut dyn Regions, n: u64, rng: &mut Rng) {
    for i in 0..n {
        assert!(r.insert(i * 4 * P, rng.range(1, 2) * P));
    }
}

type Workload = fn(&mut dyn Regions, u64, usize, u64) -> f64;

/// vmregions and the two BTreeMaps in turn (order rotated by round) for `reps` rounds; the row
/// is the median; prints vmregions' median (min–max) and its per-round ratio to each.
pub fn run(rows: &mut Vec<Row>, reps: usize, quick: bool, seed: u64) {
    run_only(rows, reps, quick, seed, "");
}

fn run_only(rows: &mut Vec<Row>, reps: usize, quick: bool, seed: u64, only: &str) {
    let kinds: [(&str, Workload); 3] = [
        ("", workload),
        ("_lookup", lookups),
        ("_insert_remove", removes_inserts),
    ];
    for n in [10u64, 1000, 100_000] {
        for (suffix, wl) in kinds {
            let name = format!("regions_{n}{suffix}");
            if !name.contains(only) {
                continue;
            }
            let ops = if quick { 20_000 } else { 100_000 };
            const WHO: [&str; 3] = ["vmregions", "btreemap", "btreemap_bounds"];
            let mut runs = [Vec::new(), Vec::new(), Vec::new()];
            for rep in 0..reps {
                for k in 0..WHO.len() {
                    let i = (rep + k) % WHO.len();
                    runs[i].push(match i {
                        0 => wl(&mut Tree(RegionList::new(200_000)), n, ops, seed),
                        1 => wl(&mut Map(BTreeMap::new()), n, ops, seed),
                        _ => wl(&mut Bounds(BTreeMap::new()), n, ops, seed),
                    });
                }
            }
            for (i, who) in WHO.into_iter().enumerate() {
                let mut v = runs[i].clone();
                rows.push(Row {
                    workload: name.clone(),
                    allocator: who.into(),
                    ops_per_sec: crate::frames::median(&mut v),
                    efficiency_pct: None,
                });
            }
            let mops: Vec<f64> = runs[0].iter().map(|x| x / 1e6).collect();
            let ratio = |peer: usize| -> Vec<f64> {
                runs[0]
                    .iter()
                    .zip(&runs[peer])
                    .map(|(a, b)| a / b)
                    .collect()
            };
            eprintln!(
                "  {name}: vmregions {} Mops/s, vmregions / btreemap {}x, / btreemap_bounds {}x",
                crate::frames::spread(&mops),
                crate::frames::spread(&ratio(1)),
                crate::frames::spread(&ratio(2))
            );
        }
    }
}

#[cfg(test)]
mod tests {
    /// The region workloads alone: `cargo test --release -p alloc-bench regions_only --
    /// --ignored --nocapture` (ALLOC_BENCH_REPS rounds, 9 by default; ALLOC_BENCH_ONLY selects
    /// workloads by name, e.g. `regions_10_`).
    #[test]
    #[ignore = "a benchmark, not a test"]
    fn regions_only() {
        let reps = std::env::var("ALLOC_BENCH_REPS").map_or(9, |r| r.parse().unwrap());
        let only = std::env::var("ALLOC_BENCH_ONLY").unwrap_or_default();
        super::run_only(&mut Vec::new(), reps, false, 0x5eed_1234_abcd, &only);
    }
}
