//! init: the first program. Opens the console as descriptors 0, 1 and 2, then either runs the
//! kernel's command line with `sh -c` and powers off with its status, or keeps an interactive
//! `sh` running (docs/ABI.md, "Booting with a command").
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use xv6_user::abi::fcntl::O_RDWR;
use xv6_user::abi::CONSOLE_MAJOR;
use xv6_user::{eprintln, println, sys, Args, BStr};

xv6_user::entry!(main);

/// Exit status of a child whose `exec` of the shell failed.
const EXEC_FAILED: i32 = 127;

fn open_console() -> bool {
    if sys::open(b"console", O_RDWR).is_err() {
        if sys::mknod(b"console", CONSOLE_MAJOR, 0).is_err() {
            return false;
        }
        if sys::open(b"console", O_RDWR).is_err() {
            return false;
        }
    }
    sys::dup(0).is_ok() && sys::dup(0).is_ok()
}

/// Starts `/sh` (or `sh` in the working directory) with `argv` and returns its pid.
fn spawn_sh(argv: &[&[u8]]) -> Option<i32> {
    match sys::fork() {
        Ok(0) => {
            sys::exec(b"/sh", argv);
            sys::exec(b"sh", argv);
            eprintln!("init: exec sh failed");
            sys::exit(EXEC_FAILED)
        }
        Ok(pid) => Some(pid),
        Err(_) => {
            eprintln!("init: fork failed");
            None
        }
    }
}

/// Waits for `pid`, reaping orphans on the way (init inherits them).
fn wait_for(pid: i32) -> Option<i32> {
    loop {
        match sys::wait() {
            Ok((p, status)) if p == pid => return Some(status),
            Ok(_) => {} // an orphan that exited
            Err(_) => {
                eprintln!("init: wait returned an error");
                return None;
            }
        }
    }
}

fn main(args: Args) -> i32 {
    if !open_console() {
        // Nowhere to report it; power off with a status that says so.
        sys::poweroff(1);
    }
    if args.len() > 1 {
        // The kernel's command line, as one argument (several are joined with spaces).
        let mut cmd = Vec::new();
        for (i, a) in args.iter().skip(1).enumerate() {
            if i > 0 {
                cmd.push(b' ');
            }
            cmd.extend_from_slice(a);
        }
        let status = match spawn_sh(&[b"sh", b"-c", &cmd]) {
            Some(pid) => wait_for(pid).unwrap_or(1),
            None => 1,
        };
        if status == EXEC_FAILED {
            eprintln!("init: could not run `{}`", BStr(&cmd));
        }
        sys::poweroff(status);
    }
    loop {
        println!("init: starting sh");
        let started = sys::uptime();
        let Some(pid) = spawn_sh(&[b"sh"]) else {
            let _ = sys::sleep(100);
            continue;
        };
        let status = wait_for(pid);
        // A shell that could not start, or that ends at once (end of input on the console), must
        // not make init spin: wait a second before the next one.
        if status.is_none_or(|s| s == EXEC_FAILED) || sys::uptime() - started < 10 {
            let _ = sys::sleep(100);
        }
    }
}
