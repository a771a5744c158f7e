//! xtask: builds, tests, benchmarks, fuzzes and runs the project. `cargo xtask --help`.

mod build;
mod cprog;
mod crates;
mod fsck;
mod kbench;
mod layers;
mod mkfs;
mod qemu;
mod tasks;
mod util;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use util::errln;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, run and test the xv6 allocator project",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the kernel and the user programs (Rust and C).
    Build,
    /// Build target/fs.img: every user program plus README.
    Image,
    /// Check an xv6 file-system image and say what is wrong with it.
    Fsck {
        /// The image file.
        image: PathBuf,
    },
    /// Boot xv6 on this terminal (leave with Ctrl-a x).
    Qemu {
        /// Number of CPUs (1 to 8).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=8))]
        cpus: u32,
        /// Memory in MiB.
        #[arg(long = "mem", default_value_t = 256, value_parser = clap::value_parser!(u32).range(16..=65536))]
        mem_mib: u32,
        /// Wait for gdb on localhost:1234 before starting.
        #[arg(long)]
        gdb: bool,
        /// The kernel heap: `bounded` (kmalloc's default) or `classic` (K&R's).
        #[arg(long, default_value = "bounded", value_parser = ["bounded", "classic"])]
        heap: String,
    },
    /// Boot, run one command line in the shell, print its output, power off, and exit with its status.
    Run {
        /// Number of CPUs (1 to 8).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=8))]
        cpus: u32,
        /// Memory in MiB.
        #[arg(long = "mem", default_value_t = 256, value_parser = clap::value_parser!(u32).range(16..=65536))]
        mem_mib: u32,
        /// Give up (and fail) after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// The kernel heap: `bounded` (kmalloc's default) or `classic` (K&R's).
        #[arg(long, default_value = "bounded", value_parser = ["bounded", "classic"])]
        heap: String,
        /// The command line, e.g. `-- usertests` or `-- "echo hi | wc"`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Run every test: host tests, lints, fuzz smoke, and usertests under QEMU on 1 and 2 CPUs.
    Test {
        /// Skip the QEMU boots (host checks only).
        #[arg(long)]
        host_only: bool,
        /// Seconds each fuzz target runs in the smoke test.
        #[arg(long, default_value_t = 10)]
        fuzz_seconds: u64,
        /// Run only the steps whose name contains this text (e.g. `--only fsck`).
        #[arg(long)]
        only: Option<String>,
    },
    /// Run the cargo-fuzz targets (all, or the one named).
    Fuzz {
        /// kalloc, kmalloc or vmregions; all three if omitted.
        target: Option<String>,
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Use nightly and AddressSanitizer (`cargo +nightly fuzz run`) instead of stable without one.
        #[arg(long)]
        asan: bool,
    },
    /// Run kalloc's and vmregions' host tests under Miri with strict provenance (all of them;
    /// `cargo xtask test` runs a subset). Installs Miri for nightly if it is missing.
    Miri,
    /// Benchmark the allocators against their peers (CSV and SVG files in target/bench), or with
    /// --kernel the kernel beside Linux.
    Bench {
        /// A short, CI-sized run.
        #[arg(long)]
        quick: bool,
        /// Benchmark the kernel instead: kbench in QEMU on 1 and 2 CPUs; writes
        /// target/bench/kernel.{txt,csv,svg}.
        #[arg(long)]
        kernel: bool,
        /// With --kernel: run the same benchmark under Linux (Debian's kernel, busybox, ext2) too.
        #[arg(long, requires = "kernel")]
        linux: bool,
        /// With --kernel: rounds (boots of each system on each CPU count).
        #[arg(long, default_value_t = 3, requires = "kernel")]
        runs: u32,
        /// With --kernel: timed iterations per benchmark (default: kbench's own counts).
        #[arg(long, default_value_t = 0, requires = "kernel", value_parser = clap::value_parser!(u32).range(0..=64))]
        iters: u32,
        /// With --kernel: also run xv6 with this kernel ELF, as system `xv6-base` (an A/B test).
        #[arg(long, requires = "kernel")]
        baseline_kernel: Option<PathBuf>,
        /// Allocators: rounds per workload (default 7, or 3 with --quick).
        #[arg(long, conflicts_with = "kernel")]
        rounds: Option<usize>,
        /// Allocators: only the workloads whose name starts with this (a name that fits none lists
        /// them). With --kernel: only these benchmarks (comma-separated kbench names, e.g.
        /// getpid,fork_exit_wait).
        #[arg(long)]
        only: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Build => tasks::build_all().map(|_| 0),
        Cmd::Image => build::image().map(|_| 0),
        Cmd::Fsck { image } => tasks::fsck(&image),
        Cmd::Qemu {
            cpus,
            mem_mib,
            gdb,
            heap,
        } => tasks::qemu(cpus, mem_mib, gdb, &heap),
        Cmd::Run {
            cpus,
            mem_mib,
            timeout,
            heap,
            command,
        } => tasks::run(cpus, mem_mib, timeout, &heap, &command),
        Cmd::Test {
            host_only,
            fuzz_seconds,
            only,
        } => tasks::test(host_only, fuzz_seconds, only.as_deref()),
        Cmd::Fuzz {
            target,
            seconds,
            asan,
        } => tasks::fuzz(target.as_deref(), seconds, asan).map(|_| 0),
        Cmd::Bench {
            kernel: true,
            linux,
            runs,
            only,
            iters,
            baseline_kernel,
            ..
        } => kbench::bench(&kbench::Options {
            runs,
            only: only
                .map(|o| o.split(',').map(str::to_string).collect())
                .unwrap_or_default(),
            linux,
            baseline_kernel,
            iters,
        })
        .map(|_| 0),
        Cmd::Bench {
            quick,
            rounds,
            only,
            ..
        } => tasks::bench(quick, rounds, only.as_deref()).map(|_| 0),
        Cmd::Miri => crates::miri(true).map(|_| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            errln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
