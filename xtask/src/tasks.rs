//! The subcommands: what `cargo xtask build | fsck | qemu | run | test | fuzz | bench` do.

use crate::build;
use crate::qemu::{self, Machine};
use crate::util::{self, cargo, errln, fail, outln, Result};
use std::path::Path;
use std::time::{Duration, Instant};

/// The fuzz targets, one per allocator crate.
pub const FUZZ_TARGETS: [&str; 3] = ["kalloc", "kmalloc", "vmregions"];

/// Builds the kernel and every user program.
pub fn build_all() -> Result<()> {
    let k = build::kernel()?;
    errln!("kernel: {}", util::rel(&k));
    let files = build::image_files()?;
    errln!(
        "user programs: {}",
        files
            .iter()
            .map(|f| f.0.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    );
    Ok(())
}

/// `cargo xtask fsck IMAGE`.
pub fn fsck(image: &Path) -> Result<i32> {
    let report = crate::fsck::check_image(image).map_err(|e| fail!("{}: {e}", image.display()))?;
    outln!("{report}");
    Ok(if report.problems.is_empty() { 0 } else { 1 })
}

fn machine(
    cpus: u32,
    mem_mib: u32,
    append: Option<String>,
    gdb: bool,
    image_name: &str,
) -> Result<Machine> {
    qemu::ensure_installed()?;
    let kernel = build::kernel()?;
    let base = build::image()?;
    let image = build::fresh_copy(&base, image_name)?;
    Ok(Machine {
        kernel,
        image,
        cpus,
        mem_mib,
        append,
        gdb,
    })
}

/// The kernel command line for `line` on `heap`: the kernel reads a leading `heap=NAME` word
/// (only given when not the default, so plain runs keep their command lines).
fn with_heap(heap: &str, line: Option<String>) -> Option<String> {
    if heap == "bounded" {
        return line;
    }
    Some(match line {
        Some(l) => format!("heap={heap} {l}"),
        None => format!("heap={heap}"),
    })
}

/// `cargo xtask qemu`: the interactive system on this terminal.
pub fn qemu(cpus: u32, mem_mib: u32, gdb: bool, heap: &str) -> Result<i32> {
    let m = machine(cpus, mem_mib, with_heap(heap, None), gdb, "qemu-fs")?;
    errln!("booting xv6: {}", qemu::describe(&m));
    match m.interactive()? {
        Some(status) => {
            errln!("xv6 powered off with status {status}");
            Ok(status)
        }
        None => Ok(0),
    }
}

/// Refuses a command line the kernel cannot take (before building or booting anything).
fn check_command_line(line: &str) -> Result<()> {
    let max = xv6_abi::param::MAX_CMDLINE;
    if line.len() > max {
        return Err(fail!(
            "the command line is {} bytes; the kernel takes at most {max}: run it in parts",
            line.len()
        ));
    }
    if line.contains('\0') {
        return Err(fail!("the command line contains a NUL byte"));
    }
    Ok(())
}

/// `cargo xtask run -- CMD ARGS...`.
pub fn run(cpus: u32, mem_mib: u32, timeout: u64, heap: &str, command: &[String]) -> Result<i32> {
    let line = command.join(" ");
    if line.trim().is_empty() {
        return Err(fail!("nothing to run: give a command after `--`"));
    }
    let full = with_heap(heap, Some(line.clone())).unwrap_or_default();
    check_command_line(&full)?;
    let m = machine(cpus, mem_mib, Some(full), false, "run-fs")?;
    let r = m.run_captured(Duration::from_secs(timeout), false)?;
    if r.timed_out {
        return Err(fail!(
            "`{line}` did not finish within {timeout} s (QEMU killed)"
        ));
    }
    match r.status {
        Some(127) if r.output.contains("panic:") => Err(fail!("the kernel panicked")),
        Some(s) => Ok(s),
        None => Err(fail!(
            "the machine stopped without reporting a status (triple fault or reset?)"
        )),
    }
}

/// Boots a fresh image, runs `line`, and checks it passed: status 0, `expect` in the output, no
/// kernel panic, within `timeout`, and `fsck` clean on the image the run leaves. Returns the
/// console output for further checks. `quiet` keeps the console off the terminal (for runs that
/// print a lot on purpose); the lines that are not all dots are shown if the run fails.
fn boot_check(
    cpus: u32,
    line: &str,
    expect: &[&str],
    timeout: Duration,
    quiet: bool,
) -> Result<String> {
    let m = machine(
        cpus,
        256,
        Some(line.to_string()),
        false,
        &format!("test-{cpus}cpu-fs"),
    )?;
    let r = m.run_captured(timeout, quiet)?;
    errln!(
        "\n[{line} on {cpus} CPU(s): {:.1} s]",
        r.elapsed.as_secs_f64()
    );
    let verdict = check_run(&r, cpus, line, expect, timeout).and_then(|()| fsck_after(&m.image));
    if verdict.is_err() && quiet {
        for l in r
            .output
            .lines()
            .filter(|l| !l.trim().trim_matches('.').is_empty())
        {
            errln!("| {l}");
        }
    }
    verdict.map(|()| r.output)
}

/// Whether a captured run passed (see [`boot_check`]).
fn check_run(
    r: &qemu::Run,
    cpus: u32,
    line: &str,
    expect: &[&str],
    timeout: Duration,
) -> Result<()> {
    if r.timed_out {
        return Err(fail!(
            "`{line}` on {cpus} CPU(s) timed out after {} s",
            timeout.as_secs()
        ));
    }
    if r.output.contains("panic:") {
        return Err(fail!("kernel panic during `{line}` on {cpus} CPU(s)"));
    }
    if r.status != Some(0) {
        return Err(fail!(
            "`{line}` on {cpus} CPU(s) ended with status {:?}",
            r.status
        ));
    }
    for e in expect {
        if !r.output.contains(e) {
            return Err(fail!("`{line}` on {cpus} CPU(s) did not print `{e}`"));
        }
    }
    for bad in ["FAILED", "warning: "] {
        if r.output.contains(bad) {
            return Err(fail!("`{line}` on {cpus} CPU(s) printed `{bad}`"));
        }
    }
    Ok(())
}

/// Checks the image a run has left (after the kernel powered off cleanly, with no transaction
/// pending): any orphan inode, lost block or other inconsistency fails, with fsck's report.
fn fsck_after(image: &Path) -> Result<()> {
    let report = crate::fsck::check_image(image).map_err(|e| fail!("fsck: {e}"))?;
    if report.problems.is_empty() && report.notes.iter().all(|n| !n.contains("the log holds")) {
        errln!("fsck of the image the run left: clean");
        Ok(())
    } else {
        errln!("fsck of the image the run left:\n{report}");
        Err(fail!("fsck found problems in the image the run left"))
    }
}

/// clocktest on 1 and 2 CPUs: a 16 MiB console write neither stops the clock nor keeps its
/// writer from being killed, and 1000 unknown system calls in each of two processes are
/// reported at most once per process.
fn clock_and_console() -> Result<()> {
    for cpus in [1, 2] {
        let out = boot_check(
            cpus,
            "clocktest; clocktest unknown 1000",
            &["clocktest: ok", "clocktest: 1000 unknown system calls"],
            Duration::from_secs(180),
            true,
        )?;
        let said = out
            .lines()
            .filter(|l| l.contains(": unknown system call "))
            .count();
        if said > 2 {
            return Err(fail!(
                "2 processes making 1000 unknown system calls each got {said} console lines \
                 about it (at most one per process)"
            ));
        }
        errln!("clocktest on {cpus} CPU(s): ok; {said} line(s) about unknown calls");
    }
    Ok(())
}

/// The number in the last `cw done N` line crashwriter printed whole, or -1.
///
/// ```text
/// "cw done 3\r\ncw done 4\r\ncw do" -> 4
/// ```
fn last_done(output: &str) -> i32 {
    last_line_number(output, "cw done ")
}

/// The number in the last `cw synced N` line crashwriter printed whole (operations 0..=N are
/// on the disk), or -1.
fn last_synced(output: &str) -> i32 {
    last_line_number(output, "cw synced ")
}

/// The number after `prefix` in the last whole line that starts with it, or -1.
fn last_line_number(output: &str, prefix: &str) -> i32 {
    // Only whole lines: the kill may cut the last one short.
    let whole = output.rfind('\n').map_or("", |i| &output[..i]);
    whole
        .lines()
        .filter_map(|l| l.trim().strip_prefix(prefix)?.parse().ok())
        .next_back()
        .unwrap_or(-1)
}

/// When a crash-test round pulls the plug.
#[derive(Clone, Copy, Debug)]
enum KillAt {
    /// Once `cw done N` has been printed.
    Op(i32),
    /// This long after `cw start`.
    Millis(u64),
}

/// The crash test: crashwriter creates, writes, links and unlinks files in a known order,
/// printing a line after each operation returns and after each `fsync`; QEMU is killed (SIGKILL)
/// after a given line or at a random moment; the same image is booted again (the kernel replays
/// its log at mount) and `crashwriter check N` verifies that every operation up to the last
/// `fsync` seen is on the disk, whole, and that what follows is a prefix of the rest; fsck must find the image clean after
/// that run. `XV6_CRASH_SEED` repeats a run's random moments.
fn crash_test() -> Result<()> {
    qemu::ensure_installed()?;
    let kernel = build::kernel()?;
    let base = build::image()?;
    let seed = match std::env::var("XV6_CRASH_SEED") {
        Ok(v) => v
            .parse::<u64>()
            .map_err(|_| fail!("XV6_CRASH_SEED must be a number"))?,
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    };
    errln!("crash test: seed {seed} (XV6_CRASH_SEED={seed} repeats its random moments)");
    let mut rng = seed | 1;
    let mut random = move |below: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % below
    };
    let mut replays = 0;
    // Small operations in a known order: kills after given operations and at random moments.
    replays += crash_phase(
        &kernel,
        &base,
        seed,
        ("crashwriter write", "crashwriter check"),
        &[0, 41, 98, 150],
        5,
        &mut random,
    )?;
    // Big files: commits and recoveries of the whole log.
    replays += crash_phase(
        &kernel,
        &base,
        seed,
        ("crashwriter big", "crashwriter bigcheck"),
        &[],
        8,
        &mut random,
    )?;
    errln!("crash test: every round consistent; {replays} of them replayed a committed log");
    Ok(())
}

/// One phase of the crash test: a whole timed run of `writer`, then rounds killed after the
/// `cw done N` lines in `after_ops` and at `randoms` random moments inside the writer's run;
/// after each kill the same image boots with `checker N` (N: the last `cw synced` line seen)
/// and must be found consistent, and clean by fsck. Returns how many rounds replayed a log.
fn crash_phase(
    kernel: &Path,
    base: &Path,
    seed: u64,
    (writer, checker): (&str, &str),
    after_ops: &[i32],
    randoms: usize,
    random: &mut dyn FnMut(u64) -> u64,
) -> Result<usize> {
    let timeout = Duration::from_secs(120);
    // A machine running `writer` on a fresh copy of the image.
    let fresh = || -> Result<Machine> {
        Ok(Machine {
            kernel: kernel.to_path_buf(),
            image: build::fresh_copy(base, "crash-fs")?,
            cpus: 2,
            mem_mib: 256,
            append: Some(writer.into()),
            gdb: false,
        })
    };
    // A whole run first, timed from `cw start` to `cw finished`, so that the random moments
    // below fall inside the writer's run however fast the kernel (and this machine) is.
    let whole = {
        let m = fresh()?;
        let mut started: Option<Instant> = None;
        let mut took: Option<Duration> = None;
        let r = m.run_until(timeout, true, &mut |out| {
            let text = String::from_utf8_lossy(out);
            if started.is_none() && text.contains("cw start") {
                started = Some(Instant::now());
            }
            if took.is_none() && text.contains("cw finished") {
                took = started.map(|t| t.elapsed());
            }
            false
        })?;
        check_run(&r, 2, writer, &["cw finished"], timeout)?;
        took.ok_or_else(|| fail!("`{writer}` printed no `cw start` before `cw finished`"))?
    };
    let span = (whole.as_millis() as u64).max(1);
    errln!("crash test: a whole run of `{writer}` takes {span} ms");
    let mut plan: Vec<KillAt> = after_ops.iter().map(|&n| KillAt::Op(n)).collect();
    for _ in 0..randoms {
        plan.push(KillAt::Millis(random(span)));
    }
    let mut replays = 0;
    for (round, at) in plan.into_iter().enumerate() {
        let mut m = fresh()?;
        let mut started: Option<Instant> = None;
        let r = m.run_until(timeout, true, &mut |out| {
            let text = String::from_utf8_lossy(out);
            match at {
                KillAt::Op(n) => last_done(&text) >= n,
                KillAt::Millis(ms) => {
                    if started.is_none() && text.contains("cw start") {
                        started = Some(Instant::now());
                    }
                    started.is_some_and(|t| t.elapsed() >= Duration::from_millis(ms))
                }
            }
        })?;
        let seen = last_synced(&r.output);
        if r.killed {
            let done = last_done(&r.output);
            errln!("round {round}: killed ({at:?}) after `cw done {done}`, `cw synced {seen}`");
        } else if r.status == Some(0) && r.output.contains("cw finished") {
            errln!("round {round}: the writer finished before {at:?}; checking the whole run");
        } else {
            check_run(&r, 2, writer, &[], timeout)?;
        }
        let line = format!("{checker} {seen}");
        m.append = Some(line.clone());
        let r = m.run_captured(timeout, true)?;
        let verdict = check_run(&r, 2, &line, &["crashwriter: ok"], timeout)
            .and_then(|()| fsck_after(&m.image));
        for l in r
            .output
            .lines()
            .filter(|l| l.contains("crashwriter") || l.contains("fs: "))
        {
            errln!("  {}", l.trim());
        }
        verdict
            .map_err(|e| fail!("crash test `{writer}` round {round} ({at:?}, seed {seed}): {e}"))?;
        if r.output.contains("fs: recovering") {
            replays += 1;
        }
    }
    Ok(replays)
}

/// Makes sure `cargo fuzz` is available, installing it from crates.io if not.
fn ensure_cargo_fuzz() -> Result<()> {
    let ok = cargo()
        .args(["fuzz", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        return Ok(());
    }
    errln!("cargo-fuzz is not installed; installing it (cargo install cargo-fuzz)");
    util::run(cargo().args(["install", "cargo-fuzz", "--locked"]))
}

/// `cargo xtask fuzz [TARGET] [--seconds N] [--asan]`.
pub fn fuzz(target: Option<&str>, seconds: u64, asan: bool) -> Result<()> {
    let targets: Vec<&str> = match target {
        None => FUZZ_TARGETS.to_vec(),
        Some(t) if FUZZ_TARGETS.contains(&t) => vec![t],
        Some(t) => {
            return Err(fail!(
                "no fuzz target `{t}`; the targets are {}",
                FUZZ_TARGETS.join(", ")
            ))
        }
    };
    ensure_cargo_fuzz()?;
    for t in targets {
        let mut c = if asan {
            util::nightly_cargo()?
        } else {
            cargo()
        };
        c.args(["fuzz", "run", t]);
        if !asan {
            c.args(["-s", "none"]);
        }
        c.env("CARGO_TARGET_DIR", util::root().join("fuzz/target"));
        c.args(["--", &format!("-max_total_time={seconds}")]);
        util::run(&mut c).map_err(|e| fail!("fuzz target {t}: {e}"))?;
    }
    Ok(())
}

/// `cargo xtask bench [--quick] [--rounds N] [--only WORKLOAD]`.
pub fn bench(quick: bool, rounds: Option<usize>, only: Option<&str>) -> Result<()> {
    let out = util::root().join("target/bench");
    std::fs::create_dir_all(&out)?;
    let mut c = cargo();
    c.args(["run", "--release", "-p", "alloc-bench", "--"]);
    if quick {
        c.arg("--quick");
    }
    if let Some(n) = rounds {
        c.arg("--rounds").arg(n.to_string());
    }
    if let Some(w) = only {
        c.arg("--only").arg(w);
    }
    c.arg("--out-dir").arg(&out);
    util::run(&mut c)
}

type Step = (&'static str, Box<dyn FnOnce() -> Result<()>>);

/// `cargo xtask test`: every check, each reported, then `N passed, N failed`.
pub fn test(host_only: bool, fuzz_seconds: u64, only: Option<&str>) -> Result<i32> {
    let mut steps: Vec<Step> = vec![
        (
            "format",
            Box::new(|| {
                util::run(cargo().args(["fmt", "--all", "--", "--check"]))?;
                util::run(cargo().args([
                    "fmt",
                    "--manifest-path",
                    "fuzz/Cargo.toml",
                    "--",
                    "--check",
                ]))
            }),
        ),
        (
            "clippy",
            Box::new(|| {
                util::run(cargo().args([
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ]))?;
                util::run(cargo().args([
                    "clippy",
                    "--manifest-path",
                    "fuzz/Cargo.toml",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ]))
            }),
        ),
        (
            // The allocator crates' API docs as docs.rs would build them: a broken or private
            // link is an error, not a dead link on the published page.
            "docs of the allocator crates",
            Box::new(|| {
                util::run(cargo().env("RUSTDOCFLAGS", "-D warnings").args([
                    "doc",
                    "--no-deps",
                    "-p",
                    "kmalloc",
                    "-p",
                    "vmregions",
                    "-p",
                    "xv6-kalloc",
                ]))
            }),
        ),
        (
            "kernel layers (no upward import)",
            Box::new(crate::layers::check),
        ),
        (
            "host tests",
            Box::new(|| util::run(cargo().args(["test", "--workspace"]))),
        ),
        (
            "loom tests",
            Box::new(|| {
                util::run(
                    cargo()
                        .env("RUSTFLAGS", "--cfg loom")
                        .env("CARGO_TARGET_DIR", util::root().join("target/loom"))
                        .args([
                            "test",
                            "--release",
                            "-p",
                            "xv6-kalloc",
                            "-p",
                            "kmalloc",
                            "--test",
                            "loom",
                        ]),
                )
            }),
        ),
        (
            "fuzz smoke",
            Box::new(move || fuzz(None, fuzz_seconds, false)),
        ),
        (
            "no_std target builds",
            Box::new(crate::crates::no_std_builds),
        ),
        ("32-bit host tests", Box::new(crate::crates::tests_32bit)),
        ("miri (subset)", Box::new(|| crate::crates::miri(false))),
    ];
    if !host_only {
        steps.push((
            "clippy (kernel, user programs)",
            Box::new(build::clippy_bare_metal),
        ));
        steps.push(("build kernel and user programs", Box::new(build_all)));
        steps.push((
            "image and fsck",
            Box::new(|| {
                let img = build::image()?;
                let report = crate::fsck::check_image(&img).map_err(|e| fail!("{e}"))?;
                outln!("{report}");
                if report.problems.is_empty() {
                    Ok(())
                } else {
                    Err(fail!("fsck found problems in the fresh image"))
                }
            }),
        ));
        // The 2-CPU run adds usertests' slow set (big directories, disk full, out of inodes).
        for (cpus, line) in [(1, "usertests"), (2, "usertests -a")] {
            let name: &'static str = if cpus == 1 {
                "usertests on 1 CPU"
            } else {
                "usertests -a on 2 CPUs"
            };
            steps.push((
                name,
                Box::new(move || {
                    boot_check(
                        cpus,
                        line,
                        &["ALL TESTS PASSED"],
                        Duration::from_secs(900),
                        false,
                    )
                    .map(drop)
                }),
            ));
        }
        steps.push((
            "memory tests on 2 CPUs",
            Box::new(|| {
                boot_check(
                    2,
                    "kmalloctest; mmaptest; sysfuzz 2000 1; sysfuzz 2000 2; cpuattack",
                    &[
                        "kmalloctest: all ok",
                        "mmaptest: all ok",
                        "sysfuzz: 2000 calls, ok",
                        "cpuattack: all ok",
                    ],
                    Duration::from_secs(600),
                    false,
                )
                .map(drop)
            }),
        ));
        steps.push((
            "usertests and kmalloctest on the classic heap, 1 CPU",
            Box::new(|| {
                boot_check(
                    1,
                    "heap=classic usertests; kmalloctest",
                    &[
                        "kmalloc: running on the Classic heap",
                        "ALL TESTS PASSED",
                        "kmalloctest: all ok",
                    ],
                    Duration::from_secs(900),
                    false,
                )
                .map(drop)
            }),
        ));
        steps.push((
            "racetest on 4 CPUs",
            Box::new(|| {
                boot_check(
                    4,
                    "racetest",
                    &["racetest: all ok"],
                    Duration::from_secs(600),
                    false,
                )
                .map(drop)
            }),
        ));
        steps.push((
            "shell and programs",
            Box::new(|| {
                boot_check(
                    2,
                    "echo hi there | wc; cat README | grep xv6 > out; cat out | wc; forktest; hello a b; cmalloctest; stressfs; ls",
                    &["1 2 9", "fork test OK", "hello from C", "cmalloctest: ok", "stressfs starting", "README"],
                    Duration::from_secs(300),
                    false,
                )
                .map(drop)
            }),
        ));
        steps.push((
            "clock, console and unknown calls on 1 and 2 CPUs",
            Box::new(clock_and_console),
        ));
        steps.push(("crash test", Box::new(crash_test)));
    }
    if let Some(only) = only {
        steps.retain(|(name, _)| name.contains(only));
        if steps.is_empty() {
            return Err(fail!("no test step's name contains `{only}`"));
        }
    }
    let total = Instant::now();
    let mut results = Vec::new();
    for (name, step) in steps {
        errln!("\n==== {name} ====");
        let t = Instant::now();
        let r = step();
        let secs = t.elapsed().as_secs_f64();
        match &r {
            Ok(()) => errln!("==== {name}: ok ({secs:.0} s)"),
            Err(e) => errln!("==== {name}: FAILED ({secs:.0} s): {e}"),
        }
        results.push((name, r.is_ok(), secs));
    }
    outln!(
        "\nxtask test summary ({:.0} s):",
        total.elapsed().as_secs_f64()
    );
    for (name, ok, secs) in &results {
        outln!(
            "  {:<32} {} ({secs:.0} s)",
            name,
            if *ok { "ok" } else { "FAILED" }
        );
    }
    let passed = results.iter().filter(|r| r.1).count();
    let failed = results.len() - passed;
    outln!("{passed} passed, {failed} failed");
    Ok(if failed == 0 { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_whole_crashwriter_line_counts() {
        assert_eq!(last_done(""), -1);
        assert_eq!(last_done("cw start\r\ncw done 0"), -1);
        assert_eq!(last_done("cw start\r\ncw done 0\r\n"), 0);
        assert_eq!(last_done("cw done 3\r\ncw done 4\r\ncw done 5"), 4);
        assert_eq!(last_done("cw done 3\r\npid 4: x\r\ncw do"), 3);
        let out = "cw done 1\r\ncw done 2\r\ncw synced 2\r\ncw done 3\r\ncw synced 5";
        assert_eq!(last_synced(out), 2);
        assert_eq!(last_done(out), 3);
    }

    #[test]
    fn command_lines_the_kernel_cannot_take_are_refused() {
        let max = xv6_abi::param::MAX_CMDLINE;
        assert!(check_command_line(&"x".repeat(max)).is_ok());
        let e = check_command_line(&"x".repeat(max + 1)).unwrap_err();
        assert!(e.to_string().contains("513 bytes"), "{e}");
        assert!(check_command_line("echo a\0b").is_err());
    }
}
