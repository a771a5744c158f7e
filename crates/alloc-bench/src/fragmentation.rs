//! Cost versus fragmentation: the time of one free and of one allocation while the heap holds
//! 1 k, 10 k, 100 k or 1 M free fragments.
//!
//! Setup, per heap and level N: allocate N pairs of a *hole* (16 to 256 bytes, uniform) and a
//! 32-byte *pin*, then free the holes in random order. Every hole lies between two live pins, so
//! no two merge: the heap holds N free fragments, none big enough for the probes below.
//!
//! Measurement, in batches: allocate a shim of random size (16 B to 128 KiB, so that each batch
//! starts at another offset from the heap's chunk boundaries) and 3K probe blocks of 6000 bytes
//! (untimed; consecutive, so the middle one of each three has live neighbours); time the free of
//! the K middle ones, in random order; time K allocations of 6000 bytes; free everything the
//! batch allocated (untimed). A free with no free neighbour and a request no fragment can serve
//! are where a heap that keeps its free blocks on one list walks it. K is chosen from a first
//! small batch so a batch takes about 50 ms, at most 256 (so the probes stay small beside the
//! caches) and N / 8 (they should not outnumber the fragments). The figures are the median and
//! range over the batches (at least `--rounds`, up to five times as many within 3 s) of the time
//! per operation; the CSV has the mean too, which counts a rare long walk in full.
//!
//! Every point is measured with the arena at two placements ([`PLACEMENTS`]: 2 MiB-aligned and
//! 129 pages above), since a heap's layout can depend on its addresses; the tables and the chart
//! show, for each operation, the placement where it costs more.
//!
//! A heap whose setup passes 20 s at some level is skipped there and at every level above; the
//! output says so.

use crate::heaps::{self, Arena, BenchHeap};
use crate::measure::{round_order, Spread};
use crate::Rng;
use std::alloc::Layout;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

pub const PROBE: usize = 6000;
const PIN: usize = 32;
const HOLE_MAX: usize = 256;
const SETUP_LIMIT: Duration = Duration::from_secs(20);
/// Time spent measuring one heap at one level, beyond the first batch.
const MEASURE_BUDGET: Duration = Duration::from_secs(3);

/// The heaps measured: every arena heap that frees (not the system's, whose heap is shared with
/// the benchmark itself, nor bump).
pub const NAMES: [&str; 7] = [
    "kmalloc",
    "kmalloc_classic",
    "talc",
    "rlsf",
    "dlmalloc",
    "linked_list_allocator",
    "buddy_system_allocator",
];

pub fn levels(quick: bool) -> &'static [usize] {
    if quick {
        &[1_000, 10_000]
    } else {
        &[1_000, 10_000, 100_000, 1_000_000]
    }
}

/// One heap at one level and arena placement.
#[derive(Clone, Debug)]
pub struct Point {
    pub allocator: String,
    pub fragments: usize,
    /// The arena's offset from a 2 MiB boundary, in pages ([`Arena::place`]).
    pub offset_pages: usize,
    pub result: Result<Measured, String>,
}

/// The arena placements every heap is measured at: 2 MiB-aligned, and 129 pages above.
pub const PLACEMENTS: [usize; 2] = [0, 1];

/// A heap's figures at one level over the placements: for each operation, the spread of the
/// placement with the higher median (the heap's cost where it is worse). `None` if the point was
/// not run, `Err` if it was skipped.
pub fn worst(
    frag: &[Point],
    allocator: &str,
    n: usize,
) -> Option<Result<(Spread, Spread), String>> {
    let mut pts = frag
        .iter()
        .filter(|p| p.allocator == allocator && p.fragments == n)
        .peekable();
    pts.peek()?;
    let mut free: Option<Spread> = None;
    let mut alloc: Option<Spread> = None;
    for p in pts {
        let m = match &p.result {
            Ok(m) => m,
            Err(why) => return Some(Err(why.clone())),
        };
        let (f, a) = (m.free(), m.alloc());
        if free.is_none_or(|x| f.median > x.median) {
            free = Some(f);
        }
        if alloc.is_none_or(|x| a.median > x.median) {
            alloc = Some(a);
        }
    }
    Some(Ok((free?, alloc?)))
}

#[derive(Clone, Debug)]
pub struct Measured {
    pub setup_secs: f64,
    /// Nanoseconds per free, per batch.
    pub free_ns: Vec<f64>,
    /// Nanoseconds per allocation, per batch.
    pub alloc_ns: Vec<f64>,
    /// Operations of each kind per batch (K).
    pub per_batch: usize,
}

impl Measured {
    pub fn free(&self) -> Spread {
        Spread::of(&self.free_ns).expect("at least one batch")
    }
    pub fn alloc(&self) -> Spread {
        Spread::of(&self.alloc_ns).expect("at least one batch")
    }
}

/// The arena for `fragments` pairs plus the probes: room for every hole and pin at up to
/// 64 bytes of overhead each (buddy_system_allocator rounds a 256-byte hole to 256 and a pin to
/// 32), and 64 MiB besides.
fn arena_size(fragments: usize) -> usize {
    fragments * (HOLE_MAX + PIN + 2 * 64) + (64 << 20)
}

struct Block {
    p: NonNull<u8>,
    l: Layout,
}

/// Allocates or panics: the arena is sized so that no heap here should run out.
fn must_alloc(h: &mut dyn BenchHeap, who: &str, l: Layout) -> Block {
    let p = h
        .alloc(l)
        .unwrap_or_else(|| panic!("{who}: out of memory in the fragmentation setup"));
    Block { p, l }
}

/// Builds the N fragments; returns the seconds it took, or `Err` once it passes [`SETUP_LIMIT`].
/// The pins stay allocated for the heap's life (the heap is dropped with them).
fn setup(h: &mut dyn BenchHeap, who: &str, n: usize, seed: u64) -> Result<f64, String> {
    let mut rng = Rng::new(seed);
    let start = Instant::now();
    let over = |done: usize, what: &str| -> Result<(), String> {
        if done.is_multiple_of(1024) && start.elapsed() > SETUP_LIMIT {
            Err(format!(
                "setup passed {} s ({what}: {done} of {n})",
                SETUP_LIMIT.as_secs()
            ))
        } else {
            Ok(())
        }
    };
    let pin = Layout::from_size_align(PIN, 8).unwrap();
    let mut holes = Vec::with_capacity(n);
    for i in 0..n {
        let s = rng.range(16, HOLE_MAX as u64) as usize;
        holes.push(must_alloc(h, who, Layout::from_size_align(s, 8).unwrap()));
        must_alloc(h, who, pin);
        over(i, "allocating")?;
    }
    // Freed in random order, as a program would.
    shuffle(&mut holes, &mut rng);
    for (i, b) in holes.into_iter().enumerate() {
        // SAFETY: a live block with its own layout.
        unsafe { h.free(b.p, b.l) };
        over(i, "freeing")?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Fisher-Yates.
fn shuffle<T>(v: &mut [T], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.next_u64() as usize % (i + 1));
    }
}

/// One batch of `k` frees and `k` allocations; returns ns per free and ns per allocation.
fn batch(h: &mut dyn BenchHeap, who: &str, k: usize, rng: &mut Rng) -> (f64, f64) {
    let l = Layout::from_size_align(PROBE, 8).unwrap();
    // A shim of random size first, so that batch by batch the probes start at a different offset
    // from the heap's chunk and page boundaries: the figures are a sample over placements.
    let shim = Layout::from_size_align(16 * rng.range(1, 8192) as usize, 8).unwrap();
    let shim = must_alloc(h, who, shim);
    let mut probes = Vec::with_capacity(2 * k);
    let mut middles = Vec::with_capacity(k);
    for i in 0..3 * k {
        let b = must_alloc(h, who, l);
        if i % 3 == 1 {
            middles.push(b);
        } else {
            probes.push(b);
        }
    }
    // In random order, as a program frees: neither always above nor always below the last.
    shuffle(&mut middles, rng);
    let t = Instant::now();
    for b in &middles {
        // SAFETY: a live probe, freed once (the middles are freed only here).
        unsafe { h.free(b.p, b.l) };
    }
    let free_ns = t.elapsed().as_nanos() as f64 / k as f64;
    let mut fresh = Vec::with_capacity(k);
    let t = Instant::now();
    for _ in 0..k {
        fresh.push(h.alloc(l));
    }
    let alloc_ns = t.elapsed().as_nanos() as f64 / k as f64;
    for p in fresh {
        let p = p.unwrap_or_else(|| panic!("{who}: a probe allocation failed"));
        // SAFETY: live, allocated above with layout `l`.
        unsafe { h.free(p, l) };
    }
    for b in probes.into_iter().chain([shim]) {
        // SAFETY: the outer probes and the shim, still live.
        unsafe { h.free(b.p, b.l) };
    }
    (free_ns, alloc_ns)
}

/// Measures one heap that holds `n` fragments.
fn measure(h: &mut dyn BenchHeap, who: &str, n: usize, min_batches: usize, seed: u64) -> Measured {
    let mut rng = Rng::new(seed);
    // A first batch of 8 says how long an operation takes; K then makes a batch about 50 ms, but
    // K is at most 256 (the probes' 4.5 MiB should stay small beside the caches, or their misses
    // would swamp the heaps' own work) and at most N / 8.
    let (f, a) = batch(h, who, 8, &mut rng);
    let per_op = (f + a).max(1.0);
    let k = ((50e6 / per_op) as usize).clamp(8, (n / 8).clamp(8, 256));
    let mut free_ns = Vec::new();
    let mut alloc_ns = Vec::new();
    let start = Instant::now();
    while free_ns.len() < min_batches
        || (free_ns.len() < 5 * min_batches && start.elapsed() < MEASURE_BUDGET)
    {
        let (f, a) = batch(h, who, k, &mut rng);
        free_ns.push(f);
        alloc_ns.push(a);
        if free_ns.len() >= 3 && start.elapsed() > 4 * MEASURE_BUDGET {
            break;
        }
    }
    Measured {
        setup_secs: 0.0,
        free_ns,
        alloc_ns,
        per_batch: k,
    }
}

/// Runs every level for every heap (in rotated order per level) at each of [`PLACEMENTS`];
/// `rounds` sets the batches per point (at least `rounds`, up to five times as many within the
/// time budget).
pub fn run(quick: bool, rounds: usize, seed: u64) -> Vec<Point> {
    let levels = levels(quick);
    let mut arena = Arena::new(arena_size(*levels.last().unwrap()));
    let mut skipped: Vec<Option<String>> = vec![None; NAMES.len()];
    let mut points = Vec::new();
    for (li, &n) in levels.iter().enumerate() {
        for i in round_order(NAMES.len(), li) {
            let who = NAMES[i];
            for place in PLACEMENTS {
                arena.place(place);
                let offset_pages = Arena::offset_pages(place);
                if let Some(why) = &skipped[i] {
                    points.push(Point {
                        allocator: who.into(),
                        fragments: n,
                        offset_pages,
                        result: Err(why.clone()),
                    });
                    continue;
                }
                let mut h = heaps::make(who, &mut arena);
                let result = match setup(h.as_mut(), who, n, seed) {
                    Ok(secs) => {
                        let mut m = measure(h.as_mut(), who, n, rounds, seed ^ 0xba7c);
                        m.setup_secs = secs;
                        Ok(m)
                    }
                    Err(why) => {
                        skipped[i] = Some(format!("skipped: {why} at {n} fragments"));
                        Err(format!("skipped: {why}"))
                    }
                };
                eprintln!(
                    "  fragmentation {who} {n} (arena +{offset_pages} pages): {}",
                    describe(&result)
                );
                points.push(Point {
                    allocator: who.into(),
                    fragments: n,
                    offset_pages,
                    result,
                });
            }
        }
    }
    points
}

/// Every heap at `n` fragments, one small batch each: for the harness's own test.
#[cfg(test)]
pub fn smoke(n: usize, seed: u64) -> Vec<Measured> {
    let mut arena = Arena::new(arena_size(n));
    NAMES
        .iter()
        .map(|who| {
            let mut h = heaps::make(who, &mut arena);
            let secs = setup(h.as_mut(), who, n, seed).expect("setup within the limit");
            let mut rng = Rng::new(seed);
            let (f, a) = batch(h.as_mut(), who, 8, &mut rng);
            assert!(f > 0.0 && a > 0.0);
            Measured {
                setup_secs: secs,
                free_ns: vec![f],
                alloc_ns: vec![a],
                per_batch: 8,
            }
        })
        .collect()
}

fn describe(r: &Result<Measured, String>) -> String {
    match r {
        Ok(m) => format!(
            "free {:.0} ns, alloc {:.0} ns (setup {:.1} s)",
            m.free().median,
            m.alloc().median,
            m.setup_secs
        ),
        Err(why) => why.clone(),
    }
}
