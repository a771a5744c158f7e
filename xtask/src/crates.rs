//! Checks of the allocator crates beyond the host: no_std builds for 32- and 64-bit targets,
//! their host tests on a 32-bit target, and Miri with strict provenance.

use crate::util::{self, cargo, errln, fail, Result};
use std::path::Path;
use std::process::Command;

/// The crates built for every no_std target, with the cargo arguments each needs (kalloc with
/// its default `kmalloc` feature, so both crates and their link are built).
pub const NO_STD_CRATES_64: &[(&str, &[&str])] =
    &[("xv6-kalloc", &[]), ("vmregions", &[]), ("kmalloc", &[])];
/// The same crates for the 32-bit targets (built for riscv32, tested on i686).
pub const NO_STD_CRATES_32: &[(&str, &[&str])] =
    &[("xv6-kalloc", &[]), ("vmregions", &[]), ("kmalloc", &[])];

/// The no_std targets: (triple, 32-bit).
pub const NO_STD_TARGETS: &[(&str, bool)] = &[
    ("riscv32imac-unknown-none-elf", true),
    ("x86_64-unknown-none", false),
];

/// The 32-bit host target the crates' tests run on (needs 32-bit libc: gcc-multilib).
pub const TEST_TARGET_32: &str = "i686-unknown-linux-gnu";

/// The crates whose host tests run under Miri (strict provenance), all in one invocation.
pub const MIRI_CRATES: &[&str] = &["xv6-kalloc", "vmregions"];
const MIRI_SKIP_ALWAYS: &[&str] = &[];
/// Left out of the subset `cargo xtask test` runs (each takes minutes under Miri): the property
/// tests and the two-allocator replay.
const MIRI_SKIP_IN_SUBSET: &[&str] = &["shadow_model", "garbage_left_by_an_earlier_allocator"];
/// kmalloc runs in its own invocation: its subset is chosen by name (the double-free and
/// wild-pointer checks on every heap, realloc, the cache, the region source, kmalloc's limits,
/// chunk return), because its long randomized tests take ten minutes and more each under Miri.
/// 48 tests, about 4 minutes. `cargo xtask miri` runs all of them.
const MIRI_KMALLOC_SUBSET: &[&str] = &[
    "double_free",
    "absurd_layouts",
    "realloc_",
    "kmalloc_limits",
    "interior_pointer",
    "region_source",
    "a_used_block_costs",
    "cached_small",
    "deallocating_a_cached",
    "global_alloc",
    "locked_heap",
    "classic_free",
    "classic_realloc",
    "small_alloc_free",
    "kmfree_tells",
    "kmfree_of_any_pointer",
    "growth_limit",
    "page_hint",
    "declined_pages",
    "second_wholly_free",
    "the_cache_keeps",
    "the_cache_takes",
    "pages_given_back",
];
/// Left out of kmalloc's subset: the contract tests run on the classic heap twice, directly and
/// through `AnyHeap`; under Miri the long one runs once (17 s), the short ones (which cover
/// `AnyHeap`'s forwarding) both ways.
const MIRI_KMALLOC_SKIP_IN_SUBSET: &[&str] = &["tests::any_classic::realloc_keeps_contents"];

/// Makes sure rustup has `target` for the toolchain in use, adding it if not; says how when
/// rustup is absent.
pub fn ensure_target(target: &str) -> Result<()> {
    if !util::on_path("rustup") {
        // Without rustup the toolchain may still have it (a distribution's Rust with its std).
        let has = Command::new("rustc")
            .args(["--print", "target-libdir", "--target", target])
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .is_some_and(|d| {
                Path::new(d.trim())
                    .read_dir()
                    .is_ok_and(|mut e| e.next().is_some())
            });
        if has {
            return Ok(());
        }
        return Err(fail!(
            "the Rust target {target} is not installed and rustup is not available to add it. \
             Install rustup (https://rustup.rs) and run `rustup target add {target}`, or install \
             your distribution's Rust standard library for {target}"
        ));
    }
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(util::root())
        .output()
        .map_err(|e| fail!("cannot run rustup: {e}"))?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == target)
    {
        return Ok(());
    }
    errln!("the Rust target {target} is not installed; adding it (rustup target add {target})");
    util::run(
        Command::new("rustup")
            .args(["target", "add", target])
            .current_dir(util::root()),
    )
}

/// `cargo xtask test` step "no_std target builds": each allocator crate for each no_std target.
pub fn no_std_builds() -> Result<()> {
    for &(target, is_32) in NO_STD_TARGETS {
        ensure_target(target)?;
        let crates = if is_32 {
            NO_STD_CRATES_32
        } else {
            NO_STD_CRATES_64
        };
        for (krate, args) in crates {
            util::run(
                cargo()
                    .env("CARGO_TARGET_DIR", util::root().join("target/cross"))
                    .args(["build", "-p", krate, "--target", target])
                    .args(*args),
            )
            .map_err(|e| fail!("{krate} for {target}: {e}"))?;
        }
    }
    // The complete kernel-style example, linked for bare metal.
    util::run(
        cargo()
            .env("CARGO_TARGET_DIR", util::root().join("target/cross"))
            .args(["build", "-p", "xv6-kalloc", "--example", "kernel"])
            .args(["--target", "x86_64-unknown-none"]),
    )
}

/// Makes sure 32-bit libc is there for linking the i686 tests: apt-get as root, else the command.
fn ensure_32bit_libc() -> Result<()> {
    if Path::new("/usr/lib32/crt1.o").exists() {
        return Ok(());
    }
    if util::is_root() && util::on_path("apt-get") {
        errln!("32-bit libc is not installed; installing gcc-multilib with apt-get");
        util::run(Command::new("apt-get").args(["update", "-q"]))?;
        return util::run(
            Command::new("apt-get")
                .args(["install", "-y", "-q", "gcc-multilib"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        );
    }
    Err(fail!(
        "32-bit libc is not installed (needed to link tests for {TEST_TARGET_32}). Install it \
         with:\n    sudo apt-get update && sudo apt-get install -y gcc-multilib"
    ))
}

/// `cargo xtask test` step "32-bit host tests": kalloc's and vmregions' tests on i686.
pub fn tests_32bit() -> Result<()> {
    ensure_target(TEST_TARGET_32)?;
    ensure_32bit_libc()?;
    let mut c = cargo();
    c.env("CARGO_TARGET_DIR", util::root().join("target/cross"))
        .args(["test", "--target", TEST_TARGET_32]);
    for (krate, args) in NO_STD_CRATES_32 {
        c.args(["-p", krate]).args(*args);
    }
    util::run(&mut c)
}

/// Makes sure the nightly toolchain has Miri, adding the component if not.
fn ensure_miri() -> Result<()> {
    let ok = util::nightly_cargo()?
        .args(["miri", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Ok(());
    }
    errln!("Miri is not installed; adding it (rustup +nightly component add miri)");
    util::run(Command::new("rustup").args(["+nightly", "component", "add", "miri"]))
}

/// `cargo xtask miri` (every test) and the `cargo xtask test` step "miri (subset)": the crates'
/// host tests under Miri with `-Zmiri-strict-provenance`.
pub fn miri(full: bool) -> Result<()> {
    ensure_miri()?;
    let miri_cargo = || -> Result<Command> {
        let mut c = util::nightly_cargo()?;
        c.env("MIRIFLAGS", "-Zmiri-strict-provenance")
            .env("CARGO_TARGET_DIR", util::root().join("target/miri"))
            .args(["miri", "test"]);
        Ok(c)
    };
    let mut c = miri_cargo()?;
    for krate in MIRI_CRATES {
        c.args(["-p", krate]);
    }
    c.arg("--");
    let skips = MIRI_SKIP_ALWAYS
        .iter()
        .chain(if full { &[][..] } else { MIRI_SKIP_IN_SUBSET });
    for s in skips {
        c.args(["--skip", s]);
    }
    util::run(&mut c)?;
    let mut k = miri_cargo()?;
    k.args(["-p", "kmalloc", "--lib", "--"]);
    if !full {
        k.args(MIRI_KMALLOC_SUBSET);
        for s in MIRI_KMALLOC_SKIP_IN_SUBSET {
            k.args(["--skip", s]);
        }
    }
    util::run(&mut k)
}
