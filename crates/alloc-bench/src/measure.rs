//! How the heap workloads are timed: rounds, the allocators interleaved in rotated order, a
//! fresh heap and cold caches for every run; and the statistics drawn from the rounds.

use crate::heaps::{self, Arena, BenchHeap};

/// What one run of a workload reports.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    pub ops_per_sec: f64,
    /// Share of the arena in live blocks at the first failure (heap-efficiency workloads).
    pub efficiency_pct: Option<f64>,
}

/// Every run of one allocator on one workload, in round order.
#[derive(Clone, Debug)]
pub struct Series {
    pub workload: String,
    pub allocator: String,
    /// Operations per second, one entry per run; run `i` of every allocator of a workload
    /// belongs to the same round, so two series' entries pair up round by round.
    pub ops: Vec<f64>,
    /// Heap efficiency per run (%), where the workload measures one.
    pub efficiency: Vec<f64>,
    /// Whether the ratios and goals use this series (the heap workloads), or it is shown only
    /// (the frame and region workloads, measured by their own modules as a best-of figure).
    pub compared: bool,
}

/// The median, least and greatest of some figures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// `None` for no figures. The median of an even count is the mean of the middle two.
    pub fn of(xs: &[f64]) -> Option<Spread> {
        if xs.is_empty() {
            return None;
        }
        let mut v = xs.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }
}

/// The ratio `a / b` round by round (both series of one workload), as a spread.
pub fn paired_ratio(a: &Series, b: &Series) -> Option<Spread> {
    let r: Vec<f64> = a
        .ops
        .iter()
        .zip(&b.ops)
        .filter(|(_, y)| **y > 0.0)
        .map(|(x, y)| x / y)
        .collect();
    Spread::of(&r)
}

/// Writes through a buffer larger than the last-level cache, so that every run starts from the
/// same cold caches instead of from what the previous allocator left (the bump allocator, for
/// one, sweeps the whole arena just before the next round's first run).
pub fn evict_caches(scratch: &mut [u8]) {
    for (i, b) in scratch.iter_mut().enumerate().step_by(64) {
        *b = b.wrapping_add(i as u8);
    }
    std::hint::black_box(&scratch);
}

/// A buffer for [`evict_caches`]: 64 MiB, twice the largest last-level cache of the machines the
/// benchmark runs on.
pub fn eviction_buffer() -> Vec<u8> {
    vec![1u8; 64 << 20]
}

/// The order of `n` allocators in round `round`: rotated each round, so that no allocator always
/// runs first (on caches the previous round's last allocator filled) or after the same one.
pub fn round_order(n: usize, round: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |i| (i + round) % n)
}

/// Runs `run` on every allocator of `names` for `rounds` rounds, each run on a fresh heap over an
/// arena of `arena_size` bytes after the caches were evicted, the allocators in rotated order.
/// Round `r` places the arena at [`Arena::place`]`(r)` for every allocator.
/// `run` gets the heap, its name, the round (for workloads that vary their seed by round) and the
/// range its blocks must lie in ([`heaps::bounds`]).
pub fn rounds(
    out: &mut Vec<Series>,
    workload: &str,
    names: &[&str],
    arena_size: usize,
    rounds: usize,
    mut run: impl FnMut(&mut dyn BenchHeap, &str, usize, Option<(usize, usize)>) -> Outcome,
) {
    let mut arena = Arena::new(arena_size);
    let mut scratch = eviction_buffer();
    let mut series: Vec<Series> = names
        .iter()
        .map(|n| Series {
            workload: workload.into(),
            allocator: (*n).into(),
            ops: Vec::with_capacity(rounds),
            efficiency: Vec::new(),
            compared: true,
        })
        .collect();
    for round in 0..rounds {
        arena.place(round);
        for i in round_order(names.len(), round) {
            evict_caches(&mut scratch);
            let bounds = heaps::bounds(names[i], &mut arena);
            let mut h = heaps::make(names[i], &mut arena);
            let o = run(h.as_mut(), names[i], round, bounds);
            drop(h);
            series[i].ops.push(o.ops_per_sec);
            if let Some(e) = o.efficiency_pct {
                series[i].efficiency.push(e);
            }
        }
    }
    out.extend(series);
    eprintln!("  {workload}: done");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_median_of_odd_and_even_counts() {
        let s = Spread::of(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (3.0, 1.0, 5.0));
        let s = Spread::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 4.0));
        assert_eq!(Spread::of(&[]), None);
    }

    #[test]
    fn ratios_pair_runs_of_the_same_round() {
        let mk = |ops: Vec<f64>| Series {
            workload: "w".into(),
            allocator: "a".into(),
            ops,
            efficiency: vec![],
            compared: true,
        };
        // Round by round 2, 1, 0.5; dividing medians (4 / 4) would say 1 as well, but the
        // spread shows the rounds disagree.
        let r = paired_ratio(&mk(vec![4.0, 4.0, 2.0]), &mk(vec![2.0, 4.0, 4.0])).unwrap();
        assert_eq!((r.median, r.min, r.max), (1.0, 0.5, 2.0));
    }

    #[test]
    fn every_allocator_leads_a_round_once() {
        let firsts: Vec<usize> = (0..4).map(|r| round_order(4, r).next().unwrap()).collect();
        assert_eq!(firsts, vec![0, 1, 2, 3]);
    }
}
