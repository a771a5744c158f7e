//! Shared helpers: the workspace root, running commands, errors.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

/// An xtask failure: a message for the user.
#[derive(Debug)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(e: E) -> Self {
        Error(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Builds an [`Error`] from a format string.
macro_rules! fail {
    ($($t:tt)*) => { $crate::util::Error(format!($($t)*)) };
}
pub(crate) use fail;

/// Prints to stdout. Rust's `println!` panics when the reader has gone (`cargo xtask fsck IMG |
/// head`: Rust ignores SIGPIPE, so the write fails with EPIPE); here a closed stdout ends xtask
/// quietly with status 0, as the reader wanted no more. Other write errors are ignored.
macro_rules! outln {
    ($($t:tt)*) => { $crate::util::write_out(format_args!("{}\n", format_args!($($t)*))) };
}
pub(crate) use outln;

/// Prints to stderr (progress and errors). Never panics: a closed stderr only loses the message.
macro_rules! errln {
    ($($t:tt)*) => { $crate::util::write_err(format_args!("{}\n", format_args!($($t)*))) };
}
pub(crate) use errln;

/// See [`outln!`].
pub fn write_out(args: fmt::Arguments<'_>) {
    use std::io::Write;
    let mut so = std::io::stdout().lock();
    let r = so.write_fmt(args).and_then(|()| so.flush());
    if let Err(e) = r {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// See [`errln!`].
pub fn write_err(args: fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// The workspace root (the parent of xtask/).
pub fn root() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    dir.parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// The host target triple: the only one this toolchain has; kernel and user programs are built for
/// it too (see PLATFORM notes in docs/BUILDING.md).
pub const TARGET: &str = "x86_64-unknown-linux-gnu";

/// A `cargo` command with a clean environment: nothing of the outer cargo's build settings leaks in.
pub fn cargo() -> Command {
    clean(Command::new(
        std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
    ))
}

/// The nightly toolchain's `cargo`, through rustup (`$CARGO` is this toolchain's own binary,
/// which does not take `+nightly`), with the same clean environment; an error saying what to
/// install when rustup or the nightly toolchain is missing.
pub fn nightly_cargo() -> Result<Command> {
    let how = "install it with: rustup toolchain install nightly";
    if !on_path("rustup") {
        return Err(fail!("this needs rustup and its nightly toolchain; {how}"));
    }
    let has_nightly = Command::new("rustup")
        .args(["run", "nightly", "cargo", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_nightly {
        return Err(fail!("this needs the nightly toolchain; {how}"));
    }
    let mut c = Command::new("rustup");
    c.args(["run", "nightly", "cargo"]);
    Ok(clean(c))
}

/// Takes the outer cargo's build settings out of `c`'s environment and runs it at the root.
fn clean(mut c: Command) -> Command {
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTDOCFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
    ] {
        c.env_remove(var);
    }
    c.current_dir(root());
    c
}

/// Runs a command, echoing it, and fails unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = status(cmd)?;
    if status.success() {
        Ok(())
    } else {
        Err(fail!("`{}` failed ({status})", show(cmd)))
    }
}

/// Runs a command, echoing it, and returns its exit status.
pub fn status(cmd: &mut Command) -> Result<ExitStatus> {
    errln!("$ {}", show(cmd));
    cmd.status()
        .map_err(|e| fail!("cannot run `{}`: {e}", show(cmd)))
}

/// A command line as a shell would show it.
pub fn show(cmd: &Command) -> String {
    let mut s = String::new();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            if k == "RUSTFLAGS" || k == "CARGO_TARGET_DIR" {
                s.push_str(&format!(
                    "{}={:?} ",
                    k.to_string_lossy(),
                    v.to_string_lossy()
                ));
            }
        }
    }
    s.push_str(&cmd.get_program().to_string_lossy());
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.contains(' ') || a.is_empty() {
            s.push_str(&format!(" {a:?}"));
        } else {
            s.push(' ');
            s.push_str(&a);
        }
    }
    s
}

/// True if `program` is found on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

/// Makes sure `program` is on PATH: installs apt package `package` when running as root with
/// apt-get, otherwise says exactly what to run.
pub fn ensure_tool(program: &str, package: &str) -> Result<()> {
    if on_path(program) {
        return Ok(());
    }
    if is_root() && on_path("apt-get") {
        errln!("{program} is not installed; installing it with apt-get (package {package})");
        run(Command::new("apt-get").args(["update", "-q"]))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-q", package])
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
        if on_path(program) {
            return Ok(());
        }
        return Err(fail!(
            "apt-get installed {package} but {program} is still not on PATH"
        ));
    }
    Err(fail!(
        "{program} is not installed. Install it with:\n    sudo apt-get update && sudo apt-get install -y {package}\n(on other systems: the package that provides {program})"
    ))
}

/// True if this process runs as root.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Path relative to the workspace root, for messages.
pub fn rel(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}
