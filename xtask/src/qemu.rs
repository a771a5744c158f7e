//! Runs the kernel under QEMU: interactively on the terminal, or as a captured, timed run whose
//! verdict comes back through the isa-debug-exit device.

use crate::util::{self, errln, fail, Result};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";

/// Makes sure QEMU is installed: installs it with apt-get when running as root, otherwise says
/// exactly what to run.
pub fn ensure_installed() -> Result<()> {
    util::ensure_tool(QEMU, "qemu-system-x86")
}

/// How to start the machine. Its disk is a private copy, removed when the machine is dropped.
#[derive(Debug)]
pub struct Machine {
    pub kernel: PathBuf,
    pub image: PathBuf,
    pub cpus: u32,
    pub mem_mib: u32,
    /// Text for the kernel command line: init runs it with `sh -c` and powers off.
    pub append: Option<String>,
    pub gdb: bool,
}

impl Machine {
    fn command(&self, interactive: bool) -> Command {
        let mut c = Command::new(QEMU);
        c.args(["-machine", "pc", "-cpu", "qemu64,+nx"])
            .args([
                "-smp",
                &self.cpus.to_string(),
                "-m",
                &self.mem_mib.to_string(),
            ])
            .arg("-kernel")
            .arg(&self.kernel)
            .arg("-drive")
            .arg(format!(
                "file={},format=raw,index=0,media=disk",
                self.image.display()
            ))
            .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
            .args(["-no-reboot", "-display", "none"]);
        if interactive {
            c.args(["-serial", "mon:stdio"]);
        } else {
            c.args(["-serial", "stdio", "-monitor", "none"]);
        }
        if let Some(a) = &self.append {
            c.arg("-append").arg(a);
        }
        if self.gdb {
            c.args(["-s", "-S"]);
        }
        c
    }

    /// Runs QEMU on this terminal until the user leaves it (Ctrl-a x) or the system powers off.
    pub fn interactive(&self) -> Result<Option<i32>> {
        let mut c = self.command(true);
        errln!("$ {}", util::show(&c));
        if self.gdb {
            errln!(
                "waiting for gdb: gdb {} -ex 'target remote :1234'",
                self.kernel.display()
            );
        }
        errln!("(leave QEMU with Ctrl-a x)");
        let status = c.status().map_err(|e| fail!("cannot start {QEMU}: {e}"))?;
        Ok(decode_exit(status.code()))
    }

    /// Boots, runs until power-off or `timeout`, copying the console to our stdout as it comes
    /// (unless `quiet`). Returns the whole console output and the status the system reported.
    pub fn run_captured(&self, timeout: Duration, quiet: bool) -> Result<Run> {
        self.run_until(timeout, quiet, &mut |_| false)
    }

    /// As [`Machine::run_captured`], but kills QEMU (SIGKILL: a power cut, nothing flushed or
    /// shut down) as soon as `stop` returns true for the console output so far, which it is
    /// shown every few milliseconds. The image is kept (until the machine is dropped), so it can
    /// be booted again.
    pub fn run_until(
        &self,
        timeout: Duration,
        quiet: bool,
        stop: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<Run> {
        run_command(self.command(false), timeout, quiet, stop)
    }
}

/// Runs a QEMU command line as [`Machine::run_until`] does (console captured, and copied to our
/// stdout unless `quiet`; killed when `stop` says so or after `timeout`), for machines that
/// [`Machine`] does not describe (another kernel, an initramfs).
pub fn run_command(
    mut c: Command,
    timeout: Duration,
    quiet: bool,
    stop: &mut dyn FnMut(&[u8]) -> bool,
) -> Result<Run> {
    {
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        errln!("$ {}", util::show(&c));
        let child = c.spawn().map_err(|e| fail!("cannot start {QEMU}: {e}"))?;
        let mut guard = KillOnDrop(child);
        let output = Arc::new(Mutex::new(Vec::<u8>::new()));
        let mut readers = Vec::new();
        for (pipe, echo) in [
            (
                guard
                    .0
                    .stdout
                    .take()
                    .map(|p| Box::new(p) as Box<dyn Read + Send>),
                !quiet,
            ),
            (
                guard
                    .0
                    .stderr
                    .take()
                    .map(|p| Box::new(p) as Box<dyn Read + Send>),
                true,
            ),
        ] {
            let Some(mut pipe) = pipe else { continue };
            let out = Arc::clone(&output);
            readers.push(std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    out.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend_from_slice(&buf[..n]);
                    if echo {
                        let mut so = std::io::stdout().lock();
                        let _ = so.write_all(&buf[..n]);
                        let _ = so.flush();
                    }
                }
            }));
        }
        let start = Instant::now();
        let code = loop {
            if let Some(st) = guard.0.try_wait()? {
                break st.code();
            }
            if stop(&output.lock().unwrap_or_else(|e| e.into_inner())) {
                let _ = guard.0.kill();
                let _ = guard.0.wait();
                for r in readers {
                    let _ = r.join();
                }
                let text =
                    String::from_utf8_lossy(&output.lock().unwrap_or_else(|e| e.into_inner()))
                        .into_owned();
                return Ok(Run {
                    output: text,
                    status: None,
                    timed_out: false,
                    killed: true,
                    elapsed: start.elapsed(),
                });
            }
            if start.elapsed() > timeout {
                let _ = guard.0.kill();
                let _ = guard.0.wait();
                for r in readers {
                    let _ = r.join();
                }
                let text =
                    String::from_utf8_lossy(&output.lock().unwrap_or_else(|e| e.into_inner()))
                        .into_owned();
                return Ok(Run {
                    output: text,
                    status: None,
                    timed_out: true,
                    killed: false,
                    elapsed: start.elapsed(),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        for r in readers {
            let _ = r.join();
        }
        let text =
            String::from_utf8_lossy(&output.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
        Ok(Run {
            output: text,
            status: decode_exit(code),
            timed_out: false,
            killed: false,
            elapsed: start.elapsed(),
        })
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.image);
    }
}

/// The outcome of a captured run.
#[derive(Debug)]
pub struct Run {
    pub output: String,
    /// The status passed to `poweroff`, if the system reported one.
    pub status: Option<i32>,
    pub timed_out: bool,
    /// Killed by [`Machine::run_until`]'s `stop`.
    pub killed: bool,
    pub elapsed: Duration,
}

/// QEMU's isa-debug-exit makes QEMU exit with `(value << 1) | 1`; anything else (0: powered off
/// or reset without a status; a signal) reports no status.
pub fn decode_exit(code: Option<i32>) -> Option<i32> {
    match code {
        Some(c) if c & 1 == 1 => Some(c >> 1),
        _ => None,
    }
}

/// Kills QEMU when the runner is dropped (on error, timeout or a panic), so no stray machine is left.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The default image and kernel paths, for messages.
pub fn describe(m: &Machine) -> String {
    format!(
        "{} CPU(s), {} MiB, kernel {}, disk {}",
        m.cpus,
        m.mem_mib,
        util::rel(&m.kernel),
        util::rel(Path::new(&m.image))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(decode_exit(Some(1)), Some(0));
        assert_eq!(decode_exit(Some(3)), Some(1));
        assert_eq!(decode_exit(Some(255)), Some(127));
        assert_eq!(decode_exit(Some(0)), None);
        assert_eq!(decode_exit(None), None);
    }
}
