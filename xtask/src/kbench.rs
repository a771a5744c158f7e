//! `cargo xtask bench --kernel`: runs the kernel microbenchmark (`crates/xv6-user/c/kbench.c`)
//! in QEMU on 1 and 2 CPUs, under xv6 and (with `--linux`) under Linux built from the same
//! source, and writes a table, `target/bench/kernel.csv` and `target/bench/kernel.svg`.
//!
//! Every system boots in the same machine (`-machine pc -cpu qemu64,+nx -m 256`, `-smp
//! N,sockets=N,cores=1` so that systems reading the MP table see every CPU, one IDE disk), once
//! per round; the systems take turns within a round and the order rotates from round to round,
//! so that a change in the host's load falls on all of them alike. A boot that fails is retried
//! (three attempts in all). The TSC rate is measured on the host and given to kbench, so every
//! system is timed with the same ruler: under QEMU's TCG the guest's TSC is the host's.
//!
//! Per benchmark, CPU count and system: `median_ns` is the median of the rounds' medians;
//! `min_ns` and `max_ns` the least and greatest single iteration over all rounds. The ratio
//! xv6/linux is that of the medians, with the range of the per-round ratios.

mod linux;

use crate::build;
use crate::qemu;
use crate::util::{self, errln, fail, outln, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// What `cargo xtask bench --kernel` was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// Rounds: boots of each system on each CPU count.
    pub runs: u32,
    /// Benchmark names to run (all when empty).
    pub only: Vec<String>,
    /// Also run the same program under Linux.
    pub linux: bool,
    /// Also run xv6 with this other kernel ELF (an A/B comparison), as system `xv6-base`.
    pub baseline_kernel: Option<PathBuf>,
    /// Timed iterations per benchmark inside kbench (0: kbench's own counts).
    pub iters: u32,
}

/// The CPU counts every system runs on.
const CPUS: [u32; 2] = [1, 2];
/// Memory of every machine, MiB.
const MEM_MIB: u32 = 256;
/// Attempts per boot before giving up.
const ATTEMPTS: u32 = 3;
/// Longest a whole kbench run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(1500);

/// One system under test.
#[derive(Debug)]
enum System {
    Xv6 {
        label: &'static str,
        kernel: PathBuf,
        image: PathBuf,
    },
    Linux(linux::Linux),
}

impl System {
    fn label(&self) -> &'static str {
        match self {
            System::Xv6 { label, .. } => label,
            System::Linux(_) => "linux",
        }
    }
}

/// One benchmark's line from one run: median, min, max (ns).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub median: u64,
    pub min: u64,
    pub max: u64,
}

/// Parses kbench's output: `kbench NAME MEDIAN MIN MAX ITERS` lines, in order; an error unless
/// the run ended with `kbench done` and failed nothing.
pub fn parse_output(out: &str) -> Result<Vec<(String, Sample)>> {
    let mut v = Vec::new();
    let mut done = false;
    for line in out.lines() {
        let line = line.trim();
        if line.contains("kbench: FAILED") {
            return Err(fail!("{line}"));
        }
        let Some(rest) = line.strip_prefix("kbench ") else {
            continue;
        };
        if rest == "done" {
            done = true;
            continue;
        }
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() != 5 || f[0] == "system" {
            continue;
        }
        let num = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| fail!("bad kbench line `{line}`"))
        };
        v.push((
            f[0].to_string(),
            Sample {
                median: num(f[1])?,
                min: num(f[2])?,
                max: num(f[3])?,
            },
        ));
    }
    if !done {
        return Err(fail!("kbench did not finish (no `kbench done`)"));
    }
    Ok(v)
}

/// Every sample: (benchmark, cpus, system) → one per round, in round order.
type Results = BTreeMap<(String, u32, String), Vec<Sample>>;

/// The TSC rate of this machine in kHz, measured over 200 ms against the monotonic clock.
fn host_tsc_khz() -> Option<u64> {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc only reads the time-stamp counter; every x86_64 CPU has it.
        let tsc = || unsafe { core::arch::x86_64::_rdtsc() };
        let (t0, c0) = (Instant::now(), tsc());
        std::thread::sleep(Duration::from_millis(200));
        let (t1, c1) = (t0.elapsed(), tsc());
        Some((c1 - c0) * 1000 / (t1.as_micros() as u64).max(1))
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// The QEMU options every system shares.
fn machine_args(c: &mut Command, cpus: u32, disk: &Path) {
    c.args(["-machine", "pc", "-cpu", "qemu64,+nx"])
        .args(["-smp", &format!("{cpus},sockets={cpus},cores=1")])
        .args(["-m", &MEM_MIB.to_string()])
        .arg("-drive")
        .arg(format!(
            "file={},format=raw,index=0,media=disk",
            disk.display()
        ))
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .args(["-no-reboot", "-display", "none"])
        .args(["-serial", "stdio", "-monitor", "none"]);
}

/// kbench's arguments.
fn kbench_args(opts: &Options, tsc_khz: Option<u64>) -> Vec<String> {
    let mut a = Vec::new();
    if let Some(k) = tsc_khz {
        a.extend(["-t".to_string(), k.to_string()]);
    }
    if opts.iters > 0 {
        a.extend(["-n".to_string(), opts.iters.to_string()]);
    }
    a.extend(opts.only.iter().cloned());
    a
}

/// Boots `sys` once on `cpus` CPUs and runs kbench; its results.
fn run_once(sys: &System, cpus: u32, args: &[String]) -> Result<Vec<(String, Sample)>> {
    let out_dir = util::root().join("target/bench");
    let mut c = Command::new(qemu::QEMU);
    let disk;
    match sys {
        System::Xv6 { kernel, image, .. } => {
            disk = build::fresh_copy(image, "kbench-fs")?;
            machine_args(&mut c, cpus, &disk);
            c.arg("-kernel").arg(kernel);
            c.arg("-append").arg(format!("kbench {}", args.join(" ")));
        }
        System::Linux(l) => {
            disk = l.fresh_disk(&out_dir)?;
            machine_args(&mut c, cpus, &disk);
            l.add_args(&mut c);
        }
    }
    let r = qemu::run_command(c, RUN_TIMEOUT, true, &mut |_| false);
    let _ = std::fs::remove_file(&disk);
    let r = r?;
    if r.timed_out {
        return Err(fail!("timed out after {} s", RUN_TIMEOUT.as_secs()));
    }
    if r.output.contains("panic:") || r.output.contains("Kernel panic") {
        return Err(fail!("kernel panic"));
    }
    let v = parse_output(&r.output).inspect_err(|_| {
        for l in r
            .output
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .iter()
            .rev()
        {
            errln!("| {l}");
        }
    })?;
    errln!(
        "[{} on {cpus} CPU(s): {} results in {:.0} s]",
        sys.label(),
        v.len(),
        r.elapsed.as_secs_f64()
    );
    Ok(v)
}

/// `cargo xtask bench --kernel`.
pub fn bench(opts: &Options) -> Result<()> {
    if opts.runs == 0 {
        return Err(fail!("--runs must be at least 1"));
    }
    qemu::ensure_installed()?;
    let out_dir = util::root().join("target/bench");
    std::fs::create_dir_all(&out_dir)?;
    let kernel = build::kernel()?;
    let image = build::image()?;
    let mut systems = vec![System::Xv6 {
        label: "xv6",
        kernel,
        image: image.clone(),
    }];
    if let Some(k) = &opts.baseline_kernel {
        if !k.is_file() {
            return Err(fail!("no kernel at {}", k.display()));
        }
        systems.push(System::Xv6 {
            label: "xv6-base",
            kernel: k.clone(),
            image,
        });
    }
    let tsc_khz = host_tsc_khz();
    let args = kbench_args(opts, tsc_khz);
    if opts.linux {
        systems.push(System::Linux(linux::Linux::prepare(&out_dir, &args)?));
    }
    errln!(
        "kernel benchmarks: {} round(s) of {} on {:?} CPU(s); host TSC {} kHz",
        opts.runs,
        systems
            .iter()
            .map(System::label)
            .collect::<Vec<_>>()
            .join(", "),
        CPUS,
        tsc_khz.map_or("unknown".into(), |k| k.to_string())
    );
    let mut results = Results::new();
    let start = Instant::now();
    for round in 0..opts.runs as usize {
        for &cpus in &CPUS {
            for i in 0..systems.len() {
                let sys = &systems[(i + round) % systems.len()];
                let mut attempt = 1;
                let v = loop {
                    match run_once(sys, cpus, &args) {
                        Ok(v) => break v,
                        Err(e) if attempt < ATTEMPTS => {
                            errln!(
                                "{} on {cpus} CPU(s), attempt {attempt}: {e}; trying again",
                                sys.label()
                            );
                            attempt += 1;
                        }
                        Err(e) => {
                            return Err(fail!(
                                "{} on {cpus} CPU(s) failed {ATTEMPTS} times: {e}",
                                sys.label()
                            ))
                        }
                    }
                };
                for (name, s) in v {
                    results
                        .entry((name, cpus, sys.label().to_string()))
                        .or_default()
                        .push(s);
                }
            }
        }
        errln!(
            "round {} of {} done ({:.0} s so far)",
            round + 1,
            opts.runs,
            start.elapsed().as_secs_f64()
        );
    }
    let labels: Vec<&str> = systems.iter().map(System::label).collect();
    let table = table(&results, &labels);
    outln!("{table}");
    std::fs::write(out_dir.join("kernel.txt"), &table)?;
    std::fs::write(out_dir.join("kernel.csv"), csv(&results))?;
    std::fs::write(out_dir.join("kernel.svg"), svg(&results, &labels))?;
    errln!(
        "wrote {}, {} and {}",
        util::rel(&out_dir.join("kernel.txt")),
        util::rel(&out_dir.join("kernel.csv")),
        util::rel(&out_dir.join("kernel.svg"))
    );
    Ok(())
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    let n = v.len();
    if n == 0 {
        0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

/// Median of the rounds' medians; least and greatest single iteration.
pub fn summary(s: &[Sample]) -> Sample {
    Sample {
        median: median(&mut s.iter().map(|s| s.median).collect::<Vec<_>>()),
        min: s.iter().map(|s| s.min).min().unwrap_or(0),
        max: s.iter().map(|s| s.max).max().unwrap_or(0),
    }
}

/// `ns` for people: ns, µs, ms or s with three significant digits.
pub fn human(ns: u64) -> String {
    let (v, unit) = match ns {
        0..=999 => return format!("{ns} ns"),
        1_000..=999_999 => (ns as f64 / 1e3, "µs"),
        1_000_000..=999_999_999 => (ns as f64 / 1e6, "ms"),
        _ => (ns as f64 / 1e9, "s"),
    };
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$} {unit}")
}

/// Benchmarks in the order kbench runs them (the order of first appearance is lost in the map).
const ORDER: &[&str] = &[
    "getpid",
    "fork_exit_wait",
    "fork_exec_wait",
    "pipe_pingpong",
    "pipe_bulk_4k",
    "write_1m_512",
    "write_1m_4k",
    "read_1m_cold",
    "unlink_1m",
    "smallfiles_200",
    "sbrk_4m_touch",
    "mmap_4m_touch",
    "kmalloc_kmfree",
];

/// The benchmark names present, in kbench's order (unknown ones last).
fn names(results: &Results) -> Vec<String> {
    let mut n: Vec<String> = results.keys().map(|k| k.0.clone()).collect();
    n.dedup();
    n.sort_by_key(|x| ORDER.iter().position(|o| o == x).unwrap_or(ORDER.len()));
    n
}

/// The ratio a/b of the summaries' medians and the least and greatest per-round ratio.
fn ratio(a: &[Sample], b: &[Sample]) -> Option<(f64, f64, f64)> {
    let (sa, sb) = (summary(a), summary(b));
    if sb.median == 0 || a.is_empty() || b.is_empty() {
        return None;
    }
    let per: Vec<f64> = a
        .iter()
        .zip(b)
        .filter(|(_, y)| y.median > 0)
        .map(|(x, y)| x.median as f64 / y.median as f64)
        .collect();
    let lo = per.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = per.iter().cloned().fold(0.0, f64::max);
    Some((sa.median as f64 / sb.median as f64, lo, hi))
}

/// The table: per benchmark and CPU count, each system's median [min–max]; then the ratio of
/// the first system to each other one.
pub fn table(results: &Results, labels: &[&str]) -> String {
    let mut s = String::new();
    let runs = results.values().map(Vec::len).max().unwrap_or(0);
    let _ = writeln!(
        s,
        "kernel benchmarks: median of {runs} run(s) [fastest–slowest iteration]; ratio: \
         median ratio [range of per-run ratios]"
    );
    let _ = write!(s, "{:<16} {:>4}", "benchmark", "CPUs");
    for l in labels {
        let _ = write!(s, "  {:<30}", l);
    }
    for l in &labels[1..] {
        let _ = write!(s, "  {:<20}", format!("{}/{l}", labels[0]));
    }
    s.push('\n');
    for name in names(results) {
        for cpus in CPUS {
            let get = |l: &str| results.get(&(name.clone(), cpus, l.to_string()));
            if labels.iter().all(|l| get(l).is_none()) {
                continue;
            }
            let _ = write!(s, "{name:<16} {cpus:>4}");
            for l in labels {
                let cell = match get(l) {
                    Some(v) => {
                        let m = summary(v);
                        format!("{} [{}–{}]", human(m.median), human(m.min), human(m.max))
                    }
                    None => "-".into(),
                };
                let _ = write!(s, "  {cell:<30}");
            }
            for l in &labels[1..] {
                let cell = match (get(labels[0]), get(l)) {
                    (Some(a), Some(b)) => match ratio(a, b) {
                        Some((r, lo, hi)) => format!("{r:.2} [{lo:.2}–{hi:.2}]"),
                        None => "-".into(),
                    },
                    _ => "-".into(),
                };
                let _ = write!(s, "  {cell:<20}");
            }
            s.push('\n');
        }
    }
    s
}

/// `benchmark,cpus,system,median_ns,min_ns,max_ns`.
pub fn csv(results: &Results) -> String {
    let mut s = String::from("benchmark,cpus,system,median_ns,min_ns,max_ns\n");
    for name in names(results) {
        for ((n, cpus, sys), v) in results {
            if *n == name {
                let m = summary(v);
                let _ = writeln!(s, "{n},{cpus},{sys},{},{},{}", m.median, m.min, m.max);
            }
        }
    }
    s
}

/// A horizontal bar chart on a log scale of time: one bar per benchmark, CPU count and system,
/// the bar to the median, a whisker from the fastest to the slowest iteration.
pub fn svg(results: &Results, labels: &[&str]) -> String {
    const COLOURS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
    let (left, width, row) = (230.0, 620.0, 14.0);
    let (lo_exp, hi_exp) = (2.0f64, 10.0f64); // 100 ns to 10 s
    let x = |ns: u64| {
        let e = (ns.max(1) as f64).log10().clamp(lo_exp, hi_exp);
        left + (e - lo_exp) / (hi_exp - lo_exp) * width
    };
    let names = names(results);
    let rows_per = CPUS.len() * labels.len();
    let height = 60.0 + names.len() as f64 * (rows_per as f64 * row + 10.0) + 30.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"11\">",
        w = left + width + 40.0
    );
    let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(
        s,
        "<text x=\"10\" y=\"18\" font-size=\"14\">Kernel microbenchmarks in QEMU (TCG): median \
         time per operation, log scale; whiskers: fastest to slowest iteration</text>"
    );
    for (i, l) in labels.iter().enumerate() {
        let _ = writeln!(
            s,
            "<rect x=\"{}\" y=\"28\" width=\"12\" height=\"10\" fill=\"{}\"/>\
             <text x=\"{}\" y=\"37\">{l}</text>",
            10.0 + i as f64 * 110.0,
            COLOURS[i % COLOURS.len()],
            26.0 + i as f64 * 110.0
        );
    }
    let top = 50.0;
    let bottom = height - 30.0;
    for e in lo_exp as u32..=hi_exp as u32 {
        let gx = x(10u64.pow(e));
        let _ = writeln!(
            s,
            "<line x1=\"{gx:.1}\" y1=\"{top}\" x2=\"{gx:.1}\" y2=\"{bottom}\" stroke=\"#ddd\"/>\
             <text x=\"{gx:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            bottom + 14.0,
            human(10u64.pow(e))
        );
    }
    let mut y = top + 4.0;
    for name in &names {
        for cpus in CPUS {
            for (i, l) in labels.iter().enumerate() {
                if let Some(v) = results.get(&(name.clone(), cpus, l.to_string())) {
                    let m = summary(v);
                    let _ = writeln!(
                        s,
                        "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{name} {cpus} CPU {l}</text>\
                         <rect x=\"{left}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"/>\
                         <line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"black\"/>\
                         <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\">{}</text>",
                        left - 6.0,
                        y + row - 4.0,
                        (x(m.median) - left).max(1.0),
                        row - 3.0,
                        COLOURS[i % COLOURS.len()],
                        x(m.min),
                        y + row / 2.0 - 1.5,
                        x(m.max),
                        y + row / 2.0 - 1.5,
                        x(m.max) + 4.0,
                        y + row - 4.0,
                        human(m.median)
                    );
                }
                y += row;
            }
        }
        y += 10.0;
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line() {
        use clap::Parser;
        let parse = |a: &[&str]| crate::Cli::try_parse_from(a);
        assert!(parse(&["xtask", "bench", "--quick"]).is_ok());
        assert!(
            parse(&["xtask", "bench", "--runs", "2"]).is_err(),
            "--runs needs --kernel"
        );
        let Ok(crate::Cli {
            command: crate::Cmd::Bench {
                kernel, runs, only, ..
            },
        }) = parse(&[
            "xtask",
            "bench",
            "--kernel",
            "--linux",
            "--only",
            "getpid,fork_exit_wait",
        ])
        else {
            panic!("bench --kernel parses");
        };
        assert!(kernel);
        assert_eq!(runs, 3);
        assert_eq!(only.as_deref(), Some("getpid,fork_exit_wait"));
    }

    const OUT: &str = "xv6 kernel is booting\r\nkbench system xv6 tsc_khz 2445403\r\n\
        kbench getpid 2479 2453 2574 3\r\nkbench fork_exit_wait 2902400 2657747 3067196 3\r\n\
        kbench done\r\n";

    #[test]
    fn parses_kbench_lines() {
        let v = parse_output(OUT).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].0, "getpid");
        assert_eq!(
            v[1].1,
            Sample {
                median: 2902400,
                min: 2657747,
                max: 3067196
            }
        );
        assert!(
            parse_output("kbench getpid 1 1 1 1\n").is_err(),
            "no done line"
        );
        assert!(parse_output("kbench: FAILED: write\nkbench done\n").is_err());
        assert!(parse_output("kbench getpid x 1 1 1\nkbench done\n").is_err());
    }

    fn s(median: u64, min: u64, max: u64) -> Sample {
        Sample { median, min, max }
    }

    #[test]
    fn summaries_and_ratios() {
        let a = [s(10, 5, 20), s(30, 9, 40), s(20, 2, 25)];
        assert_eq!(summary(&a), s(20, 2, 40));
        assert_eq!(summary(&a[..2]), s(20, 5, 40));
        let b = [s(10, 1, 1), s(10, 1, 1), s(5, 1, 1)];
        let (r, lo, hi) = ratio(&a, &b).unwrap();
        assert_eq!((r, lo, hi), (2.0, 1.0, 4.0));
    }

    #[test]
    fn human_units() {
        assert_eq!(human(999), "999 ns");
        assert_eq!(human(2_479), "2.48 µs");
        assert_eq!(human(127_605), "128 µs");
        assert_eq!(human(14_297_326), "14.3 ms");
        assert_eq!(human(2_254_023_564), "2.25 s");
    }

    #[test]
    fn table_csv_and_svg() {
        let mut r = Results::new();
        r.insert(
            ("pipe_bulk_4k".into(), 1, "xv6".into()),
            vec![s(40, 30, 50)],
        );
        r.insert(
            ("getpid".into(), 1, "xv6".into()),
            vec![s(2000, 1000, 3000)],
        );
        r.insert(("getpid".into(), 1, "linux".into()), vec![s(500, 400, 600)]);
        let c = csv(&r);
        assert_eq!(
            c,
            "benchmark,cpus,system,median_ns,min_ns,max_ns\n\
             getpid,1,linux,500,400,600\ngetpid,1,xv6,2000,1000,3000\n\
             pipe_bulk_4k,1,xv6,40,30,50\n"
        );
        let t = table(&r, &["xv6", "linux"]);
        let getpid = t.lines().find(|l| l.starts_with("getpid")).unwrap();
        assert!(getpid.contains("2.00 µs [1.00 µs–3.00 µs]"), "{t}");
        assert!(getpid.contains("4.00 [4.00–4.00]"), "{t}");
        let bulk = t.lines().find(|l| l.starts_with("pipe_bulk_4k")).unwrap();
        assert!(bulk.ends_with('-') || bulk.trim_end().ends_with('-'), "{t}");
        let g = svg(&r, &["xv6", "linux"]);
        assert!(g.starts_with("<svg") && g.ends_with("</svg>\n"));
        assert_eq!(g.matches("<rect").count(), 1 + 2 + 3, "{g}");
    }
}
