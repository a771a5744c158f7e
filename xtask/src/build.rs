//! Builds the kernel, the Rust user programs and the C user programs, and assembles the disk image.
//!
//! The kernel and user programs are `no_std` binaries built for the host target with its
//! precompiled `core`: this toolchain has no bare-metal target and no rust-src. Each gets its own
//! target directory because their RUSTFLAGS differ (code model, red zone) and must not mix with
//! the host build's.

use crate::util::{self, cargo, errln, fail, Result};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// User programs: a static, non-PIE executable for the host target, without libc.
const USER_FLAGS: &str = "-C relocation-model=static -C force-frame-pointers=yes \
     -C link-arg=-nostartfiles -C link-arg=-nostdlib -C link-arg=-static -C link-arg=-no-pie";

/// The kernel's target: soft-float and no red zone, so kernel code never touches the FPU/SSE
/// registers (user state stays in them across traps and is saved only at a process switch).
pub const KERNEL_TARGET: &str = "x86_64-unknown-none";

/// Kernel flags: a static executable linked in the top 2 GiB (the target's linker is rust-lld;
/// the linker script comes from the crate's build.rs).
const KERNEL_FLAGS: &str =
    "-C relocation-model=static -C force-frame-pointers=yes -C code-model=kernel";

/// What is built bare-metal: its package arguments, target directory and RUSTFLAGS.
#[derive(Clone, Copy)]
enum BareMetal {
    Kernel,
    User,
}

impl BareMetal {
    /// `cargo SUBCOMMAND` for this part, with its target directory, flags, features and target.
    fn cargo(self, subcommand: &str) -> Command {
        let (dir, flags, target, package): (&str, String, &str, &[&str]) = match self {
            BareMetal::Kernel => (
                "target/kernel",
                KERNEL_FLAGS.to_string(),
                KERNEL_TARGET,
                &[
                    "-p",
                    "xv6-kernel",
                    "--bin",
                    "xv6-kernel",
                    "--features",
                    "kernel",
                ],
            ),
            BareMetal::User => (
                "target/user",
                USER_FLAGS.to_string(),
                util::TARGET,
                &["-p", "xv6-user", "--bins", "--features", "user"],
            ),
        };
        let mut c = cargo();
        c.env("CARGO_TARGET_DIR", util::root().join(dir))
            .env("RUSTFLAGS", flags)
            .arg(subcommand)
            .args(package)
            .args(["--target", target, "--release"]);
        c
    }
}

/// Runs clippy (warnings denied) on the kernel binary and the user programs with the bare-metal
/// flags, which the host `cargo clippy --workspace` cannot see (they need features `kernel` and
/// `user`).
pub fn clippy_bare_metal() -> Result<()> {
    crate::crates::ensure_target(KERNEL_TARGET)?;
    for part in [BareMetal::Kernel, BareMetal::User] {
        util::run(part.cargo("clippy").args(["--", "-D", "warnings"]))?;
    }
    Ok(())
}

/// Builds the kernel and returns the path of its ELF file.
pub fn kernel() -> Result<PathBuf> {
    crate::crates::ensure_target(KERNEL_TARGET)?;
    let dir = util::root().join("target/kernel");
    let mut c = BareMetal::Kernel.cargo("build");
    util::run(&mut c)?;
    let elf = dir.join(KERNEL_TARGET).join("release/xv6-kernel");
    if !elf.is_file() {
        return Err(fail!("kernel build produced no {}", util::rel(&elf)));
    }
    Ok(elf)
}

/// Builds every Rust user program; returns (name, path) pairs.
pub fn user_programs() -> Result<Vec<(String, PathBuf)>> {
    let mut c = BareMetal::User.cargo("build");
    c.arg("--message-format=json-render-diagnostics");
    errln!("$ {}", util::show(&c));
    let mut child = c.stdout(Stdio::piped()).spawn()?;
    let mut bins = Vec::new();
    let out = child.stdout.take().expect("piped");
    for line in std::io::BufReader::new(out).lines() {
        let line = line?;
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let is_bin = msg["target"]["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "bin"));
        if let (true, Some(exe)) = (is_bin, msg["executable"].as_str()) {
            let name = msg["target"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            bins.push((name, PathBuf::from(exe)));
        }
    }
    let status = child.wait()?;
    if !status.success() {
        return Err(fail!("building the user programs failed ({status})"));
    }
    bins.sort();
    Ok(bins)
}

/// Builds the C programs in crates/xv6-user/c; returns (name, path) pairs.
pub fn c_programs() -> Result<Vec<(String, PathBuf)>> {
    if std::env::var_os("CC").is_none() {
        util::ensure_tool("gcc", "gcc")?;
    }
    let out = util::root().join("target/cprog");
    std::fs::create_dir_all(&out)?;
    let paths = crate::cprog::build_c_programs(&util::root(), &out).map_err(Error)?;
    Ok(paths
        .into_iter()
        .map(|p| {
            (
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                p,
            )
        })
        .collect())
}

use crate::util::Error;

/// Everything that goes into the image, by name in the root directory.
pub fn image_files() -> Result<Vec<(String, PathBuf)>> {
    let mut files = user_programs()?;
    files.extend(c_programs()?);
    files.push(("README".into(), util::root().join("README.md")));
    let mut seen = std::collections::BTreeSet::new();
    for (name, _) in &files {
        if !seen.insert(name.clone()) {
            return Err(fail!("two programs would be called `{name}` in the image"));
        }
    }
    Ok(files)
}

/// Builds target/fs.img from every user program and README.
pub fn image() -> Result<PathBuf> {
    let files = image_files()?;
    let out = util::root().join("target/fs.img");
    let spec = crate::mkfs::ImageSpec {
        size_blocks: IMAGE_BLOCKS,
        ninodes: IMAGE_INODES,
        files,
    };
    let summary = crate::mkfs::make_image(&out, &spec).map_err(|e| fail!("mkfs: {e}"))?;
    errln!("image {}: {summary}", util::rel(&out));
    Ok(out)
}

/// Image size in 1024-byte blocks: room for the programs and for usertests' big files.
pub const IMAGE_BLOCKS: u32 = 8192;
/// Inodes in the image.
pub const IMAGE_INODES: u32 = 400;

/// Copies the base image so a run never changes it. The copy's name carries this process's id, so
/// several runs at once never share a disk; it is removed when the run ends.
pub fn fresh_copy(base: &Path, name: &str) -> Result<PathBuf> {
    let copy = util::root()
        .join("target")
        .join(format!("{name}-{}.img", std::process::id()));
    std::fs::copy(base, &copy)
        .map_err(|e| fail!("copying {} to {}: {e}", base.display(), copy.display()))?;
    Ok(copy)
}
