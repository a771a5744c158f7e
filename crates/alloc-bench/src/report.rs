//! The results: tables and the goals of issue 11 on stdout, CSV files and SVG charts.

use crate::fragmentation::{self, Point};
use crate::heaps::PEERS;
use crate::measure::{paired_ratio, Series, Spread};
use crate::Config;
use std::fmt::Write as _;

const SUBJECT: &str = "kmalloc";

fn workloads(series: &[Series]) -> Vec<String> {
    let mut w: Vec<String> = Vec::new();
    for s in series {
        if !w.contains(&s.workload) {
            w.push(s.workload.clone());
        }
    }
    w
}

fn of<'a>(series: &'a [Series], workload: &str) -> Vec<&'a Series> {
    series.iter().filter(|s| s.workload == workload).collect()
}

fn is_peer(name: &str) -> bool {
    PEERS.contains(&name)
}

/// The peer with the highest median speed on a workload.
fn fastest_peer<'a>(of_w: &[&'a Series]) -> Option<&'a Series> {
    of_w.iter()
        .filter(|s| is_peer(&s.allocator) && !s.ops.is_empty())
        .max_by(|a, b| median(&a.ops).total_cmp(&median(&b.ops)))
        .copied()
}

fn median(xs: &[f64]) -> f64 {
    Spread::of(xs).map_or(0.0, |s| s.median)
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len().max(1) as f64
}

/// `1.05 (0.98-1.12)`.
fn ratio_text(r: Spread) -> String {
    format!("{:.2} ({:.2}-{:.2})", r.median, r.min, r.max)
}

/// Operations per second in a short form: `12.3M`.
fn ops_text(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// One goal of issue 11: what it asks, whether it holds (`None`: not measured in this run), the
/// figures.
struct Goal {
    what: String,
    met: Option<bool>,
    figures: String,
}

/// Prints everything and writes the files into `cfg.out_dir`.
pub fn write(cfg: &Config, series: &[Series], frag: &[Point]) -> std::io::Result<()> {
    let dir = &cfg.out_dir;
    std::fs::create_dir_all(dir)?;
    let mut out = String::new();
    let mut goals: Vec<Goal> = Vec::new();
    let ws = workloads(series);

    // Speeds: every allocator, with its ratio to the fastest peer.
    if series.iter().any(|s| !s.ops.is_empty()) {
        let _ = writeln!(
            out,
            "\n{:<26} {:<23} {:>9} {:>19} {:>19}",
            "workload", "allocator", "ops/s", "min-max", "vs fastest peer"
        );
    }
    for w in &ws {
        let of_w = of(series, w);
        if of_w.iter().all(|s| s.ops.is_empty()) {
            continue;
        }
        let fastest = of_w.iter().find(|s| s.compared).and(fastest_peer(&of_w));
        for s in &of_w {
            let Some(sp) = Spread::of(&s.ops) else {
                continue;
            };
            let ratio = match fastest {
                Some(f) if s.allocator == SUBJECT || is_peer(&s.allocator) => {
                    paired_ratio(s, f).map(ratio_text).unwrap_or_default()
                }
                _ => String::new(),
            };
            let range = if s.ops.len() > 1 {
                format!("{}-{}", ops_text(sp.min), ops_text(sp.max))
            } else {
                "(best of rounds)".into()
            };
            let _ = writeln!(
                out,
                "{:<26} {:<23} {:>9} {:>19} {:>19}",
                w,
                s.allocator,
                ops_text(sp.median),
                range,
                ratio
            );
        }
        let _ = writeln!(out);
    }

    // kmalloc against each peer.
    let timed = |s: &&Series| s.allocator == SUBJECT && s.compared && !s.ops.is_empty();
    if series.iter().any(|s| timed(&s)) {
        let _ = write!(
            out,
            "kmalloc / peer, median of the per-round ratios (min-max); * the fastest peer\n{:<26}",
            "workload"
        );
        for p in PEERS {
            let _ = write!(out, " {:>22}", short(p));
        }
        let _ = writeln!(out);
    }
    let mut ratio_csv = String::from("workload,peer,fastest_peer,median,min,max\n");
    for w in &ws {
        let of_w = of(series, w);
        let Some(k) = of_w.iter().find(|s| timed(s)) else {
            continue;
        };
        let fastest = fastest_peer(&of_w).map(|f| f.allocator.clone());
        let _ = write!(out, "{w:<26}");
        for p in PEERS {
            let r = of_w
                .iter()
                .find(|s| s.allocator == p)
                .and_then(|s| paired_ratio(k, s));
            let star = fastest.as_deref() == Some(p);
            let cell = r
                .map(|r| format!("{}{}", ratio_text(r), if star { "*" } else { " " }))
                .unwrap_or_default();
            let _ = write!(out, " {cell:>22}");
            if let Some(r) = r {
                let _ = writeln!(
                    ratio_csv,
                    "{w},{p},{star},{:.4},{:.4},{:.4}",
                    r.median, r.min, r.max
                );
            }
        }
        let _ = writeln!(out);
        if let Some(f) = fastest {
            let fs = of_w.iter().find(|s| s.allocator == f).unwrap();
            if let Some(r) = paired_ratio(k, fs) {
                goals.push(Goal {
                    what: format!("{w}: kmalloc >= 1.0x the fastest peer"),
                    met: Some(r.median >= 1.0),
                    figures: format!("{} against {f}", ratio_text(r)),
                });
            }
        }
    }

    // Heap efficiency.
    let _ = writeln!(
        out,
        "\nheap efficiency (% of the arena live at the first failure)"
    );
    for (w, limit) in [("heap_efficiency", 97.0), ("talc_heap_efficiency", 97.5)] {
        let of_w = of(series, w);
        if of_w.is_empty() {
            continue;
        }
        let mut line = format!("{w:<22}");
        for s in &of_w {
            if let Some(sp) = Spread::of(&s.efficiency) {
                let _ = write!(line, " {} {:.1}", s.allocator, mean(&s.efficiency));
                if sp.max - sp.min >= 0.05 {
                    let _ = write!(line, " ({:.1}-{:.1})", sp.min, sp.max);
                }
                line.push(';');
            }
        }
        let _ = writeln!(out, "{line}");
        if let Some(k) = of_w.iter().find(|s| s.allocator == SUBJECT) {
            let e = mean(&k.efficiency);
            let how = if w == "talc_heap_efficiency" {
                format!("mean of {} trials", k.efficiency.len())
            } else {
                "the same in every run".into()
            };
            goals.push(Goal {
                what: format!("{w}: kmalloc >= {limit}%"),
                met: Some(e >= limit),
                figures: format!("{e:.2}% ({how})"),
            });
        }
    }

    // Cost versus fragmentation.
    if !frag.is_empty() {
        let _ = writeln!(
            out,
            "\ncost versus fragmentation: ns per free / per allocation of a {}-byte block, median (min-max) over batches,\nat the arena placement where each costs more",
            fragmentation::PROBE
        );
        let levels = frag_levels(frag);
        let _ = write!(out, "{:<23}", "allocator");
        for n in &levels {
            let _ = write!(out, " {:>34}", format!("{n} fragments"));
        }
        let _ = writeln!(out);
        for name in fragmentation::NAMES {
            let _ = write!(out, "{name:<23}");
            for n in &levels {
                let cell = match fragmentation::worst(frag, name, *n) {
                    Some(Ok((f, a))) => {
                        format!(
                            "{:.0} ({:.0}-{:.0}) / {:.0} ({:.0}-{:.0})",
                            f.median, f.min, f.max, a.median, a.min, a.max
                        )
                    }
                    Some(Err(_)) => "skipped".into(),
                    None => String::new(),
                };
                let _ = write!(out, " {cell:>34}");
            }
            let _ = writeln!(out);
        }
        for p in frag {
            if let (Err(why), 0) = (&p.result, p.offset_pages) {
                let _ = writeln!(out, "  {} at {}: {why}", p.allocator, p.fragments);
            }
        }
        // The goal: kmalloc's cost at every level up to 1 M within 2x of its cost at the first.
        let at = |n: usize| fragmentation::worst(frag, SUBJECT, n);
        if let Some(Some(Ok(base))) = levels.first().map(|n| at(*n)) {
            let mut met = true;
            let mut figures = Vec::new();
            for n in &levels[1..] {
                match at(*n) {
                    Some(Ok((f, a))) => {
                        let rf = f.median / base.0.median;
                        let ra = a.median / base.1.median;
                        met &= rf <= 2.0 && ra <= 2.0;
                        figures.push(format!(
                            "{}: free {rf:.2}x, alloc {ra:.2}x",
                            count_label(*n)
                        ));
                    }
                    _ => {
                        met = false;
                        figures.push(format!("{}: not measured", count_label(*n)));
                    }
                }
            }
            let full = levels.last().is_some_and(|n| *n >= 1_000_000);
            goals.push(Goal {
                what: format!(
                    "kmalloc's cost at every level up to 1M fragments within 2x of at {}",
                    count_label(levels[0])
                ),
                met: full.then_some(met),
                figures: format!(
                    "at {}: free {:.0} ns, alloc {:.0} ns; {}",
                    count_label(levels[0]),
                    base.0.median,
                    base.1.median,
                    figures.join("; ")
                ),
            });
        }
    }

    out.push('\n');
    let _ = writeln!(out, "goals of issue 11 ({} rounds):", cfg.rounds);
    for g in &goals {
        let verdict = match g.met {
            Some(true) => "MET",
            Some(false) => "NOT MET",
            None => "n/a (needs the full run)",
        };
        let _ = writeln!(out, "  {:<8} {}: {}", verdict, g.what, g.figures);
    }
    let _ = writeln!(
        out,
        "  (the fuzz goal is checked by `cargo xtask fuzz`, not here)"
    );
    print!("{out}");

    // Files.
    let mut csv = String::from(
        "workload,allocator,runs,ops_per_sec_median,ops_per_sec_min,ops_per_sec_max,\
         ratio_to_fastest_peer_median,ratio_min,ratio_max,efficiency_pct_mean,efficiency_pct_min,efficiency_pct_max\n",
    );
    let mut runs = String::from("workload,allocator,run,ops_per_sec,efficiency_pct\n");
    for w in &ws {
        let of_w = of(series, w);
        let fastest = fastest_peer(&of_w).filter(|_| of_w.iter().any(|s| s.compared));
        for s in &of_w {
            let sp = Spread::of(&s.ops);
            let r = fastest.and_then(|f| paired_ratio(s, f));
            let e = Spread::of(&s.efficiency);
            let f = |x: Option<f64>, p: usize| x.map(|x| format!("{x:.p$}")).unwrap_or_default();
            let _ = writeln!(
                csv,
                "{w},{},{},{},{},{},{},{},{},{},{},{}",
                s.allocator,
                s.ops.len().max(s.efficiency.len()),
                f(sp.map(|s| s.median), 0),
                f(sp.map(|s| s.min), 0),
                f(sp.map(|s| s.max), 0),
                f(r.map(|r| r.median), 4),
                f(r.map(|r| r.min), 4),
                f(r.map(|r| r.max), 4),
                f(e.map(|_| mean(&s.efficiency)), 3),
                f(e.map(|e| e.min), 3),
                f(e.map(|e| e.max), 3),
            );
            for i in 0..s.ops.len().max(s.efficiency.len()) {
                let _ = writeln!(
                    runs,
                    "{w},{},{i},{},{}",
                    s.allocator,
                    f(s.ops.get(i).copied(), 0),
                    f(s.efficiency.get(i).copied(), 3)
                );
            }
        }
    }
    let mut files = vec![
        ("allocators.csv", csv),
        ("runs.csv", runs),
        ("ratios.csv", ratio_csv),
        ("allocators.svg", bars_svg(series)),
    ];
    if !frag.is_empty() {
        files.push(("fragmentation.csv", frag_csv(frag)));
        files.push(("fragmentation.svg", frag_svg(frag)));
    }
    for (name, text) in &files {
        std::fs::write(dir.join(name), text)?;
    }
    let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
    println!("wrote {} in {}", names.join(", "), dir.display());
    Ok(())
}

fn short(name: &str) -> &str {
    match name {
        "linked_list_allocator" => "linked_list",
        "buddy_system_allocator" => "buddy_system",
        n => n,
    }
}

fn frag_levels(frag: &[Point]) -> Vec<usize> {
    let mut v: Vec<usize> = frag.iter().map(|p| p.fragments).collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn frag_csv(frag: &[Point]) -> String {
    let mut s = String::from(
        "allocator,fragments,arena_offset_pages,status,setup_s,batches,ops_per_batch,free_ns_median,free_ns_min,free_ns_max,\
         free_ns_mean,alloc_ns_median,alloc_ns_min,alloc_ns_max,alloc_ns_mean\n",
    );
    for p in frag {
        match &p.result {
            Ok(m) => {
                let (f, a) = (m.free(), m.alloc());
                let _ = writeln!(
                    s,
                    "{},{},{},measured,{:.3},{},{},{:.1},{:.1},{:.1},{:.1},{:.1},{:.1},{:.1},{:.1}",
                    p.allocator,
                    p.fragments,
                    p.offset_pages,
                    m.setup_secs,
                    m.free_ns.len(),
                    m.per_batch,
                    f.median,
                    f.min,
                    f.max,
                    mean(&m.free_ns),
                    a.median,
                    a.min,
                    a.max,
                    mean(&m.alloc_ns),
                );
            }
            Err(why) => {
                let _ = writeln!(
                    s,
                    "{},{},{},\"{}\",,,,,,,,,,,",
                    p.allocator,
                    p.fragments,
                    p.offset_pages,
                    why.replace('"', "'")
                );
            }
        }
    }
    s
}

const COLORS: [&str; 10] = [
    "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#7f7f7f", "#17becf",
    "#bcbd22", "#e377c2",
];

/// Two panels (free, allocation), ns per operation against free fragments, both axes
/// logarithmic, a line per allocator.
fn frag_svg(frag: &[Point]) -> String {
    let levels = frag_levels(frag);
    let values: Vec<f64> = frag
        .iter()
        .filter_map(|p| fragmentation::worst(frag, &p.allocator, p.fragments)?.ok())
        .flat_map(|(f, a)| [f.median, a.median])
        .filter(|v| *v > 0.0)
        .collect();
    let lo = values.iter().copied().fold(f64::MAX, f64::min).max(1.0);
    let hi = values.iter().copied().fold(1.0, f64::max);
    let (y_lo, y_hi) = (
        lo.log10().floor(),
        hi.log10().ceil().max(lo.log10().floor() + 1.0),
    );
    let (x_lo, x_hi) = (
        (*levels.first().unwrap_or(&1) as f64).log10(),
        (*levels.last().unwrap_or(&10) as f64).log10().max(1.0),
    );
    let (pw, ph, left, top, gap) = (360.0, 300.0, 70.0, 50.0, 90.0);
    let width = left + 2.0 * pw + gap + 230.0;
    let height = top + ph + 70.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="20" font-size="14">Cost of one operation on a {}-byte block against free fragments in the heap (median, worse arena placement; lower is better)</text>"#,
        fragmentation::PROBE
    );
    for (panel, title) in ["free", "allocation"].iter().enumerate() {
        let x0 = left + panel as f64 * (pw + gap);
        let px = |n: f64| x0 + (n.log10() - x_lo) / (x_hi - x_lo).max(1e-9) * pw;
        let py = |v: f64| top + ph - (v.max(1.0).log10() - y_lo) / (y_hi - y_lo) * ph;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" font-size="13" text-anchor="middle">{title}</text>"#,
            x0 + pw / 2.0,
            top - 10.0
        );
        let _ = writeln!(
            s,
            r##"<rect x="{x0}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##
        );
        let mut e = y_lo;
        while e <= y_hi + 1e-9 {
            let y = py(10f64.powf(e));
            let _ = writeln!(
                s,
                r##"<line x1="{x0}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#e4e4e4"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                x0 + pw,
                x0 - 5.0,
                y + 4.0,
                ns_label(10f64.powf(e))
            );
            e += 1.0;
        }
        for n in &levels {
            let x = px(*n as f64);
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{}" stroke="#e4e4e4"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
                top + ph,
                top + ph + 15.0,
                count_label(*n)
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">free fragments (log)</text>"#,
            x0 + pw / 2.0,
            top + ph + 35.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle" transform="rotate(-90 {} {})">ns per {title} (log)</text>"#,
            x0 - 50.0,
            top + ph / 2.0,
            x0 - 50.0,
            top + ph / 2.0
        );
        for (ci, name) in fragmentation::NAMES.iter().enumerate() {
            let pts: Vec<(f64, f64)> = levels
                .iter()
                .filter_map(|n| {
                    let (f, a) = fragmentation::worst(frag, name, *n)?.ok()?;
                    let v = if panel == 0 { f.median } else { a.median };
                    Some((px(*n as f64), py(v)))
                })
                .collect();
            let c = COLORS[ci % COLORS.len()];
            let path: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2"/>"#,
                path.join(" ")
            );
            for (x, y) in &pts {
                let _ = writeln!(s, r#"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="{c}"/>"#);
            }
        }
    }
    let lx = left + 2.0 * pw + gap + 20.0;
    for (ci, name) in fragmentation::NAMES.iter().enumerate() {
        let y = top + 18.0 * ci as f64;
        let skipped = frag
            .iter()
            .filter(|p| p.allocator == *name && p.result.is_err())
            .map(|p| p.fragments)
            .min();
        let note = skipped
            .map(|n| format!(" (skipped from {}: setup > 20 s)", count_label(n)))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="{y}" width="12" height="3" fill="{}"/><text x="{}" y="{}">{name}{note}</text>"#,
            COLORS[ci % COLORS.len()],
            lx + 17.0,
            y + 5.0
        );
    }
    s.push_str("</svg>\n");
    s
}

fn ns_label(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.0} ms", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0} µs", v / 1e3)
    } else {
        format!("{v:.0} ns")
    }
}

fn count_label(n: usize) -> String {
    if n >= 1_000_000 {
        format!("{}M", n / 1_000_000)
    } else if n >= 1000 {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// Grouped bars per workload (median speeds), each normalised to the fastest allocator of that
/// workload.
fn bars_svg(series: &[Series]) -> String {
    let ws: Vec<String> = workloads(series)
        .into_iter()
        .filter(|w| of(series, w).iter().any(|s| !s.ops.is_empty()))
        .collect();
    let mut names: Vec<String> = Vec::new();
    for r in series {
        if !names.contains(&r.allocator) {
            names.push(r.allocator.clone());
        }
    }
    let group_w = 110.0;
    let (left, top, plot_h) = (60.0, 40.0, 300.0);
    let width = left + group_w * ws.len() as f64 + 220.0;
    let height = top + plot_h + 150.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="20" font-size="14">Allocator throughput (median of rounds), relative to the fastest in each workload (higher is better)</text>"#
    );
    for i in 0..=4 {
        let y = top + plot_h - plot_h * i as f64 / 4.0;
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/>"##,
            left + group_w * ws.len() as f64
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}%</text>"#,
            left - 5.0,
            y + 4.0,
            i * 25
        );
    }
    for (wi, w) in ws.iter().enumerate() {
        let of_w: Vec<&Series> = of(series, w)
            .into_iter()
            .filter(|s| !s.ops.is_empty())
            .collect();
        let best = of_w
            .iter()
            .map(|r| median(&r.ops))
            .fold(0.0, f64::max)
            .max(1e-9);
        let bar_w = (group_w - 20.0) / of_w.len() as f64;
        for (k, r) in of_w.iter().enumerate() {
            let m = median(&r.ops);
            let h = plot_h * m / best;
            let x = left + group_w * wi as f64 + 10.0 + bar_w * k as f64;
            let ci = names.iter().position(|n| n == &r.allocator).unwrap_or(0) % COLORS.len();
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{}"><title>{} {}: {:.0} ops/s</title></rect>"#,
                top + plot_h - h,
                bar_w - 1.0,
                COLORS[ci],
                w,
                r.allocator,
                m
            );
        }
        let cx = left + group_w * wi as f64 + group_w / 2.0;
        let _ = writeln!(
            s,
            r#"<text x="{cx}" y="{}" text-anchor="end" transform="rotate(-35 {cx} {})">{w}</text>"#,
            top + plot_h + 15.0,
            top + plot_h + 15.0
        );
    }
    let lx = left + group_w * ws.len() as f64 + 20.0;
    for (i, n) in names.iter().enumerate() {
        let y = top + 15.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="{y}" width="10" height="10" fill="{}"/>"#,
            COLORS[i % COLORS.len()]
        );
        let _ = writeln!(s, r#"<text x="{}" y="{}">{n}</text>"#, lx + 15.0, y + 9.0);
    }
    s.push_str("</svg>\n");
    s
}
