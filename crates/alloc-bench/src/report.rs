//! The results: a table on stdout, a CSV file and an SVG chart.

use crate::heaps::PEERS;
use crate::Row;
use std::fmt::Write as _;
use std::path::Path;

fn workloads(rows: &[Row]) -> Vec<String> {
    let mut w: Vec<String> = Vec::new();
    for r in rows {
        if !w.contains(&r.workload) {
            w.push(r.workload.clone());
        }
    }
    w
}

/// Prints the table and the goal's verdict; writes allocators.csv and allocators.svg.
pub fn write(rows: &[Row], dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut table = String::new();
    let _ = writeln!(
        table,
        "{:<22} {:<24} {:>14} {:>8} {:>12}",
        "workload", "allocator", "ops/s", "eff %", "vs best peer"
    );
    let mut goal_met = true;
    let mut verdicts = Vec::new();
    for w in workloads(rows) {
        let of_w: Vec<&Row> = rows.iter().filter(|r| r.workload == w).collect();
        let best_peer = of_w
            .iter()
            .filter(|r| PEERS.contains(&r.allocator.as_str()))
            .map(|r| r.ops_per_sec)
            .fold(0.0, f64::max);
        for r in &of_w {
            let ratio = if best_peer > 0.0 && PEERS.contains(&r.allocator.as_str())
                || r.allocator == "kmalloc"
            {
                format!("{:.2}x", r.ops_per_sec / best_peer)
            } else {
                String::new()
            };
            let eff = r
                .efficiency_pct
                .map(|e| format!("{e:.1}"))
                .unwrap_or_default();
            let _ = writeln!(
                table,
                "{:<22} {:<24} {:>14.0} {:>8} {:>12}",
                w, r.allocator, r.ops_per_sec, eff, ratio
            );
        }
        if let Some(k) = of_w.iter().find(|r| r.allocator == "kmalloc") {
            let fast = k.ops_per_sec >= best_peer;
            let eff_ok = k.efficiency_pct.is_none_or(|e| e >= 95.0);
            goal_met &= fast && eff_ok;
            verdicts.push(format!(
                "{w}: kmalloc {:.2}x the fastest peer{}",
                k.ops_per_sec / best_peer,
                k.efficiency_pct
                    .map(|e| format!(", efficiency {e:.1}%"))
                    .unwrap_or_default()
            ));
        }
        let _ = writeln!(table);
    }
    print!("{table}");
    for v in &verdicts {
        println!("{v}");
    }
    println!(
        "goal (kmalloc at least as fast as the fastest peer on every heap workload, efficiency >= 95%): {}",
        if goal_met { "MET" } else { "NOT MET" }
    );

    let mut csv = String::from("workload,allocator,ops_per_sec,efficiency_pct\n");
    for r in rows {
        let eff = r
            .efficiency_pct
            .map(|e| format!("{e:.2}"))
            .unwrap_or_default();
        let _ = writeln!(
            csv,
            "{},{},{:.0},{}",
            r.workload, r.allocator, r.ops_per_sec, eff
        );
    }
    std::fs::write(dir.join("allocators.csv"), csv)?;
    std::fs::write(dir.join("allocators.svg"), svg(rows))?;
    println!(
        "wrote {} and {}",
        dir.join("allocators.csv").display(),
        dir.join("allocators.svg").display()
    );
    Ok(())
}

const COLORS: [&str; 10] = [
    "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#7f7f7f", "#17becf",
    "#bcbd22", "#e377c2",
];

/// Grouped bars per workload, each normalised to the fastest allocator of that workload.
fn svg(rows: &[Row]) -> String {
    let ws = workloads(rows);
    let mut names: Vec<String> = Vec::new();
    for r in rows {
        if !names.contains(&r.allocator) {
            names.push(r.allocator.clone());
        }
    }
    let group_w = 110.0;
    let (left, top, plot_h) = (60.0, 40.0, 300.0);
    let width = left + group_w * ws.len() as f64 + 220.0;
    let height = top + plot_h + 120.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="20" font-size="14">Allocator throughput, relative to the fastest in each workload (higher is better)</text>"#
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
        let of_w: Vec<&Row> = rows.iter().filter(|r| &r.workload == w).collect();
        let best = of_w
            .iter()
            .map(|r| r.ops_per_sec)
            .fold(0.0, f64::max)
            .max(1e-9);
        let bar_w = (group_w - 20.0) / of_w.len() as f64;
        for (k, r) in of_w.iter().enumerate() {
            let h = plot_h * r.ops_per_sec / best;
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
                r.ops_per_sec
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
