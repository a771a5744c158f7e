//! Benchmarks the project's allocators against their peers, in one process, with the same arena,
//! seed and workload for each: `cargo xtask bench [--quick] [--rounds N] [--only WORKLOAD]`.
//!
//! Heaps: kmalloc (the bounded default) and its peers talc 5, rlsf, dlmalloc,
//! linked_list_allocator and buddy_system_allocator, all over the same arena; besides them, as
//! references only, kmalloc's classic K&R heap, the system allocator and a bump allocator.
//!
//! Workloads: the project's own (random actions at 200 and 30 000 bytes, a kernel-like trace, a
//! fill to the first failure), talc's published method ([`talc_method`]: random actions at five
//! max sizes, heap efficiency), cost versus fragmentation ([`fragmentation`]), and the frame
//! allocators and region lists against theirs.
//!
//! How it measures, so that the machine's noise hits every allocator alike ([`measure`]): each
//! workload runs for several rounds (7, `--rounds N`; 3 with `--quick`); within a round the
//! allocators take turns in an order rotated every round, each on a fresh heap over the same
//! arena after a 64 MiB write has evicted the caches. kmalloc's speed is compared with each peer
//! round by round (the two runs of a round are minutes apart at most, so drift in the machine's
//! load hits both), and the median of those ratios is reported with their least and greatest.
//! Runs are timed in the thread's CPU time ([`clock`]), so a run preempted by other jobs does
//! not count the time it was not running.
//!
//! Prints the tables and the goals of issue 11 as met or not, and writes into the output
//! directory (`target/bench` from xtask): `allocators.csv` (a row per workload and allocator),
//! `runs.csv` (every run), `ratios.csv` (kmalloc against each peer), `fragmentation.csv`, and
//! the charts `allocators.svg` and `fragmentation.svg`.

mod clock;
mod fragmentation;
mod frames;
mod heaps;
mod kmheap;
mod measure;
mod regions;
mod report;
mod talc_method;
mod workloads;

use measure::{Outcome, Series};
use std::path::PathBuf;

/// xorshift64*: a fixed-seed generator, so every allocator sees the same sequence.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// One result of the frame and region workloads (their modules report a best-of figure).
#[derive(Clone, Debug)]
pub struct Row {
    pub workload: String,
    pub allocator: String,
    pub ops_per_sec: f64,
    pub efficiency_pct: Option<f64>,
}

#[derive(Debug)]
pub struct Config {
    pub quick: bool,
    pub rounds: usize,
    pub only: Option<String>,
    pub out_dir: PathBuf,
}

/// The workloads `--only` chooses from (a prefix chooses every workload it starts: `talc`
/// is talc's whole method).
const WORKLOADS: [&str; 13] = [
    "random_actions_200",
    "random_actions_30000",
    "kernel_trace",
    "heap_efficiency",
    "talc_random_actions_200",
    "talc_random_actions_1000",
    "talc_random_actions_3000",
    "talc_random_actions_10000",
    "talc_random_actions_30000",
    "talc_heap_efficiency",
    "fragmentation",
    "frames",
    "regions",
];

const USAGE: &str = "alloc-bench [--quick] [--rounds N] [--only WORKLOAD] [--out-dir DIR]

  --quick          a CI-sized run: 3 rounds, shorter talc-method runs, fragmentation at 1 k
                   and 10 k fragments only
  --rounds N       rounds per workload (default 7, or 3 with --quick)
  --only WORKLOAD  run only the workloads whose name starts with WORKLOAD, one of:
                   random_actions_200 random_actions_30000 kernel_trace heap_efficiency
                   talc_random_actions_{200,1000,3000,10000,30000} talc_heap_efficiency
                   fragmentation frames regions (a prefix such as `talc` picks several)
  --out-dir DIR    where the CSV and SVG files go (default target/bench)";

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Config, String> {
    let mut quick = false;
    let mut rounds = None;
    let mut only = None;
    let mut out_dir = PathBuf::from("target/bench");
    let mut args = args.into_iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--rounds" => {
                let n = args.next().ok_or("--rounds needs a number")?;
                match n.parse::<usize>() {
                    Ok(n) if n > 0 => rounds = Some(n),
                    _ => return Err(format!("--rounds needs a positive number, not `{n}`")),
                }
            }
            "--only" => {
                let w = args.next().ok_or("--only needs a workload")?;
                if !WORKLOADS.iter().any(|n| n.starts_with(w.as_str())) {
                    return Err(format!(
                        "--only `{w}` names no workload; the workloads are: {}",
                        WORKLOADS.join(" ")
                    ));
                }
                only = Some(w);
            }
            "--out-dir" => {
                out_dir = PathBuf::from(args.next().ok_or("--out-dir needs a directory")?)
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    let rounds = rounds.unwrap_or(if quick { 3 } else { 7 });
    Ok(Config {
        quick,
        rounds,
        only,
        out_dir,
    })
}

impl Config {
    fn runs(&self, workload: &str) -> bool {
        self.only.as_deref().is_none_or(|o| workload.starts_with(o))
    }
}

/// The project's own heap workloads.
fn own_workloads(cfg: &Config, out: &mut Vec<Series>, seed: u64) {
    let names = &heaps::NAMES[..];
    // Not K&R's classic heap in the two long random-action runs: its list walks made one run of
    // random_actions_200 take 30 s (6.6 k ops/s), so seven rounds would take minutes.
    let without_classic: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| *n != "kmalloc_classic")
        .collect();
    let arena = 32 << 20;
    let speed = |ops_per_sec| Outcome {
        ops_per_sec,
        efficiency_pct: None,
    };
    if cfg.runs("random_actions_200") {
        measure::rounds(
            out,
            "random_actions_200",
            &without_classic,
            arena,
            cfg.rounds,
            |h, w, _, _| speed(workloads::random_actions(h, w, 200, 200_000, seed)),
        );
    }
    if cfg.runs("random_actions_30000") {
        measure::rounds(
            out,
            "random_actions_30000",
            &without_classic,
            arena,
            cfg.rounds,
            |h, w, _, _| speed(workloads::random_actions(h, w, 30_000, 60_000, seed)),
        );
    }
    if cfg.runs("kernel_trace") {
        measure::rounds(
            out,
            "kernel_trace",
            names,
            arena,
            cfg.rounds,
            |h, w, _, _| speed(workloads::kernel_trace(h, w, 400, seed)),
        );
    }
    if cfg.runs("heap_efficiency") {
        // A smaller arena so the first-fit peers finish. A run is short (a few thousand
        // operations, well under a millisecond for most), so ten runs per round; the efficiency
        // is the same in every run (same seed, fresh heap).
        let arena = 4 << 20;
        let names: Vec<&str> = names.iter().copied().filter(|n| *n != "system").collect();
        measure::rounds(
            out,
            "heap_efficiency",
            &names,
            arena,
            10 * cfg.rounds,
            |h, w, _, _| {
                let (pct, ops) = workloads::heap_efficiency(h, w, arena, seed);
                Outcome {
                    ops_per_sec: ops,
                    efficiency_pct: Some(pct),
                }
            },
        );
    }
}

/// talc's published method (see [`talc_method`]).
fn talc_workloads(cfg: &Config, out: &mut Vec<Series>, seed: u64) {
    // Not bump: it never frees, and reallocations up to 3 x max exhaust any arena.
    let names: Vec<&str> = heaps::NAMES.into_iter().filter(|n| *n != "bump").collect();
    let actions = if cfg.quick { 20_000 } else { 200_000 };
    for max in talc_method::MAX_SIZES {
        let workload = format!("talc_random_actions_{max}");
        if !cfg.runs(&workload) {
            continue;
        }
        let arena = talc_method::ARENA;
        measure::rounds(
            out,
            &workload,
            &names,
            arena,
            cfg.rounds,
            |h, w, round, bounds| {
                talc_method::random_actions(h, w, max, actions, seed + round as u64, bounds)
            },
        );
    }
    if cfg.runs("talc_heap_efficiency") {
        let names: Vec<&str> = heaps::NAMES
            .into_iter()
            .filter(|n| *n != "system")
            .collect();
        let trials = talc_method::efficiency_trials(cfg.quick);
        let mut arena = heaps::Arena::new(talc_method::ARENA);
        let mut effs = vec![Vec::new(); names.len()];
        for round in 0..cfg.rounds {
            arena.place(round);
            for i in measure::round_order(names.len(), round) {
                for t in 0..trials {
                    let bounds = heaps::bounds(names[i], &mut arena);
                    let mut h = heaps::make(names[i], &mut arena);
                    let trial_seed = seed ^ ((round * trials + t) as u64 + 1) << 20;
                    effs[i].push(talc_method::heap_efficiency(
                        h.as_mut(),
                        names[i],
                        talc_method::ARENA,
                        trial_seed,
                        bounds,
                    ));
                }
            }
        }
        for (name, efficiency) in names.into_iter().zip(effs) {
            out.push(Series {
                workload: "talc_heap_efficiency".into(),
                allocator: name.into(),
                ops: Vec::new(),
                efficiency,
                compared: true,
            });
        }
        eprintln!("  talc_heap_efficiency: done");
    }
}

fn main() {
    let cfg = match parse_args(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("alloc-bench: {e}");
            std::process::exit(2);
        }
    };
    let seed = 0x5eed_1234_abcd;
    let mut series = Vec::new();
    eprintln!(
        "heap allocators (seed {seed:#x}, {} rounds{}):",
        cfg.rounds,
        if cfg.quick { ", quick" } else { "" }
    );
    own_workloads(&cfg, &mut series, seed);
    talc_workloads(&cfg, &mut series, seed);
    let frag = if cfg.runs("fragmentation") {
        eprintln!("cost versus fragmentation:");
        fragmentation::run(cfg.quick, cfg.rounds, seed)
    } else {
        Vec::new()
    };
    let mut rows = Vec::new();
    if cfg.runs("frames") {
        eprintln!("frame allocators:");
        frames::run(&mut rows, cfg.rounds, seed);
    }
    if cfg.runs("regions") {
        eprintln!("region lists:");
        regions::run(&mut rows, cfg.rounds, cfg.quick, seed);
    }
    series.extend(rows.into_iter().map(|r| Series {
        workload: r.workload,
        allocator: r.allocator,
        ops: vec![r.ops_per_sec],
        efficiency: r.efficiency_pct.into_iter().collect(),
        compared: false,
    }));
    if let Err(e) = report::write(&cfg, &series, &frag) {
        eprintln!("alloc-bench: cannot write results: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn rounds_default_by_mode_and_only_must_name_a_workload() {
        assert_eq!(parse_args(args("")).unwrap().rounds, 7);
        assert_eq!(parse_args(args("--quick")).unwrap().rounds, 3);
        assert_eq!(parse_args(args("--quick --rounds 5")).unwrap().rounds, 5);
        assert!(parse_args(args("--rounds 0")).is_err());
        assert!(parse_args(args("--only nothing")).is_err());
        let c = parse_args(args("--only talc")).unwrap();
        assert!(c.runs("talc_random_actions_200") && c.runs("talc_heap_efficiency"));
        assert!(!c.runs("random_actions_200") && !c.runs("fragmentation"));
        assert!(parse_args(args("")).unwrap().runs("regions"));
    }

    /// Every heap through a little of every heap workload, in a small arena: proves the harness
    /// and each heap's adapter work (a block handed out twice, misaligned or outside the arena
    /// panics in the workloads' checks).
    #[test]
    fn every_heap_runs_every_workload_briefly() {
        let mut arena = heaps::Arena::new(4 << 20);
        let seed = 42;
        for name in heaps::NAMES {
            let bounds = heaps::bounds(name, &mut arena);
            let mut fresh = || heaps::make(name, &mut arena);
            assert!(workloads::random_actions(fresh().as_mut(), name, 2000, 2000, seed) > 0.0);
            assert!(workloads::kernel_trace(fresh().as_mut(), name, 5, seed) > 0.0);
            if name != "bump" {
                let o =
                    talc_method::random_actions(fresh().as_mut(), name, 1000, 2000, seed, bounds);
                assert!(o.ops_per_sec > 0.0);
            }
            if name != "system" {
                let (pct, _) = workloads::heap_efficiency(fresh().as_mut(), name, 4 << 20, seed);
                assert!(pct > 40.0 && pct <= 100.0, "{name}: {pct}");
                let pct =
                    talc_method::heap_efficiency(fresh().as_mut(), name, 4 << 20, seed, bounds);
                assert!(pct > 30.0 && pct <= 100.0, "{name}: {pct}");
            }
        }
        let points = fragmentation::smoke(300, seed);
        assert_eq!(points.len(), fragmentation::NAMES.len());
    }
}
