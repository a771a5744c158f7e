//! xtask: builds, tests, benchmarks, fuzzes and runs the project. `cargo xtask --help`.

mod build;
mod cprog;
mod crates;
mod fsck;
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
    /// Benchmark the allocators against their peers; writes target/bench/allocators.{csv,svg}.
    Bench {
        /// A short run (about two minutes).
        #[arg(long)]
        quick: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Build => tasks::build_all().map(|_| 0),
        Cmd::Image => build::image().map(|_| 0),
        Cmd::Fsck { image } => tasks::fsck(&image),
        Cmd::Qemu { cpus, mem_mib, gdb } => tasks::qemu(cpus, mem_mib, gdb),
        Cmd::Run {
            cpus,
            mem_mib,
            timeout,
            command,
        } => tasks::run(cpus, mem_mib, timeout, &command),
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
        Cmd::Bench { quick } => tasks::bench(quick).map(|_| 0),
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
