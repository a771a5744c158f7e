//! Region lists: vmregions against a BTreeMap keyed by start with a linear gap search.

use crate::{Rng, Row};
use std::collections::BTreeMap;
use std::time::Instant;
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

/// The obvious baseline: start -> (end), gap search by walking the map.
struct Map(BTreeMap<u64, u64>);

impl Regions for Map {
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
        let mut at = lower;
        for (&s, &e) in self.0.range(..) {
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
    fn remove(&mut self, start: u64, len: u64) {
        // Whole-region removal only in this workload.
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
    let start = Instant::now();
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
    let secs = start.elapsed().as_secs_f64();
    std::hint::black_box(found);
    ops as f64 / secs
}

pub fn run(rows: &mut Vec<Row>, reps: usize, quick: bool, seed: u64) {
    for n in [10u64, 1000, 100_000] {
        let ops = if quick { 20_000 } else { 100_000 };
        let mut best = [0f64; 2];
        for _ in 0..reps {
            let mut t = Tree(RegionList::new(200_000));
            best[0] = best[0].max(workload(&mut t, n, ops, seed));
            let mut m = Map(BTreeMap::new());
            // The linear gap search makes the baseline slow at 100 000 regions: fewer ops.
            let mops = if n >= 100_000 { ops / 20 } else { ops };
            best[1] = best[1].max(workload(&mut m, n, mops, seed));
        }
        let wl = format!("regions_{n}");
        rows.push(Row {
            workload: wl.clone(),
            allocator: "vmregions".into(),
            ops_per_sec: best[0],
            efficiency_pct: None,
        });
        rows.push(Row {
            workload: wl.clone(),
            allocator: "btreemap".into(),
            ops_per_sec: best[1],
            efficiency_pct: None,
        });
        eprintln!("  {wl}: done");
    }
}
