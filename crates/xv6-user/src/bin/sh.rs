//! sh: the shell. xv6's syntax (`|`, `<`, `>`, `>>`, `;`, `&`, parentheses; see
//! `xv6_user::shparse`) plus quotes, the builtins `cd` and `exit`, and:
//!
//! - `sh` reads commands from standard input, prompting with `$ ` when that is the console;
//! - `sh -c CMD` runs CMD (one or more lines) and exits with the status of the last command;
//! - `sh FILE` runs the commands in FILE.
//!
//! Errors print `sh: ...` and the shell goes on; at end of input it exits with the status of the
//! last command.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use xv6_user::abi::fcntl::{O_RDONLY, O_RDWR};
use xv6_user::abi::stat::T_DEVICE;
use xv6_user::shparse::{parse, Cmd, RedirKind};
use xv6_user::{eprint, eprintln, path, sys, Args, BStr};

xv6_user::entry!(main);

/// Status of a command that could not be run at all.
const NOT_RUN: i32 = 127;
/// Status after a syntax error.
const SYNTAX: i32 = 2;
/// Longest line accepted.
const MAX_LINE: usize = 4096;

fn main(args: Args) -> i32 {
    ensure_std_fds();
    let mut sh = Shell { status: 0 };
    match (args.get(1), args.get(2)) {
        (Some(b"-c"), Some(cmd)) => {
            for line in cmd.split(|&b| b == b'\n') {
                sh.run_line(line);
            }
            sh.status
        }
        (Some(b"-c"), None) => {
            eprintln!("sh: -c needs a command");
            SYNTAX
        }
        (Some(file), _) => match sys::open(file, O_RDONLY) {
            Ok(fd) => {
                let status = sh.run_input(fd, false);
                let _ = sys::close(fd);
                status
            }
            Err(_) => {
                eprintln!("sh: cannot open {}", BStr(file));
                NOT_RUN
            }
        },
        (None, _) => {
            let interactive = sys::fstat(0).is_ok_and(|st| st.typ == T_DEVICE);
            sh.run_input(0, interactive)
        }
    }
}

/// Makes sure descriptors 0, 1 and 2 are open (on the console), as xv6's sh does.
fn ensure_std_fds() {
    while let Ok(fd) = sys::open(b"console", O_RDWR) {
        if fd >= 3 {
            let _ = sys::close(fd);
            break;
        }
    }
}

/// Reads a line from `fd` a byte at a time (so that commands run afterwards find the rest of
/// their input unread). `None` at end of input; `Some(Err(()))` for an over-long line, which is
/// consumed.
fn read_line(fd: i32) -> Option<Result<Vec<u8>, ()>> {
    let mut line = Vec::new();
    let mut too_long = false;
    let mut c = [0u8; 1];
    loop {
        match sys::read(fd, &mut c) {
            Ok(1) => {
                if c[0] == b'\n' {
                    break;
                }
                if line.len() < MAX_LINE {
                    line.push(c[0]);
                } else {
                    too_long = true;
                }
            }
            _ if line.is_empty() && !too_long => return None,
            _ => break,
        }
    }
    Some(if too_long { Err(()) } else { Ok(line) })
}

struct Shell {
    /// Status of the last command.
    status: i32,
}

impl Shell {
    fn run_input(&mut self, fd: i32, interactive: bool) -> i32 {
        loop {
            if interactive {
                eprint!("$ ");
            }
            match read_line(fd) {
                None => return self.status,
                Some(Ok(line)) => self.run_line(&line),
                Some(Err(())) => {
                    eprintln!("sh: line too long (at most {MAX_LINE} bytes)");
                    self.status = SYNTAX;
                }
            }
        }
    }

    fn run_line(&mut self, line: &[u8]) {
        match parse(line) {
            Ok(Some(cmd)) => self.status = run_top(&cmd, self.status),
            Ok(None) => {}
            Err(e) => {
                eprintln!("sh: {e}");
                self.status = SYNTAX;
            }
        }
    }
}

/// Runs a command in the shell itself: a list one part after another (so `cd` works inside
/// `a; cd b; c`), a builtin directly, anything else in a child. Returns the exit status.
fn run_top(mut cmd: &Cmd, mut last: i32) -> i32 {
    loop {
        match cmd {
            Cmd::List(left, right) => {
                last = run_one(left, last);
                cmd = right;
            }
            _ => return run_one(cmd, last),
        }
    }
}

fn run_one(cmd: &Cmd, last: i32) -> i32 {
    if let Some(status) = cmd.simple_words().and_then(|w| builtin(w, last)) {
        return status;
    }
    match sys::fork() {
        Ok(0) => run(cmd),
        Ok(pid) => sys::wait_for(pid).unwrap_or(NOT_RUN),
        Err(_) => {
            eprintln!("sh: fork failed");
            NOT_RUN
        }
    }
}

/// The builtins; `None` if `argv` is not one.
fn builtin(argv: &[Vec<u8>], last: i32) -> Option<i32> {
    match argv.first()?.as_slice() {
        b"cd" => Some(match argv {
            [_] => cd(b"/"),
            [_, dir] => cd(dir),
            _ => {
                eprintln!("sh: cd: too many arguments");
                1
            }
        }),
        b"exit" => match argv {
            [_] => sys::exit(last),
            [_, n] => match xv6_user::num::parse_i32(n) {
                Some(n) => sys::exit(n),
                None => {
                    eprintln!("sh: exit: bad status {}", BStr(n));
                    Some(1)
                }
            },
            _ => {
                eprintln!("sh: exit: too many arguments");
                Some(1)
            }
        },
        _ => None,
    }
}

fn cd(dir: &[u8]) -> i32 {
    match sys::chdir(dir) {
        Ok(()) => 0,
        Err(_) => {
            eprintln!("sh: cannot cd {}", BStr(dir));
            1
        }
    }
}

/// Runs `cmd` in this (child) process and exits with its status.
fn run(cmd: &Cmd) -> ! {
    match cmd {
        Cmd::Exec(argv) => {
            let Some(prog) = argv.first() else {
                // Only redirections: they were done.
                sys::exit(0)
            };
            let words: Vec<&[u8]> = argv.iter().map(Vec::as_slice).collect();
            sys::exec(prog, &words);
            if !path::has_slash(prog) {
                // Programs live in the root directory: find them from anywhere.
                sys::exec(&path::join(b"/", prog), &words);
            }
            eprintln!("sh: exec {} failed", BStr(prog));
            sys::exit(NOT_RUN)
        }
        Cmd::Redir { cmd, file, kind } => {
            let fd = kind.fd();
            let _ = sys::close(fd);
            match sys::open(file, kind.flags()) {
                Ok(got) if got == fd => {}
                Ok(got) => {
                    // A lower descriptor was free: move the file to where it belongs.
                    let _ = sys::close(fd);
                    if sys::dup(got) != Ok(fd) {
                        eprintln!("sh: cannot redirect descriptor {fd}");
                        sys::exit(1);
                    }
                    let _ = sys::close(got);
                }
                Err(_) => {
                    eprintln!("sh: cannot open {}", BStr(file));
                    sys::exit(1)
                }
            }
            if *kind == RedirKind::Append && !seek_to_end(fd) {
                eprintln!("sh: cannot append to {}", BStr(file));
                sys::exit(1)
            }
            run(cmd)
        }
        Cmd::Pipe(left, right) => {
            let Ok([r, w]) = sys::pipe() else {
                eprintln!("sh: pipe failed");
                sys::exit(NOT_RUN)
            };
            let lpid = spawn_with(left, 1, w, [r, w]);
            let rpid = spawn_with(right, 0, r, [r, w]);
            let _ = sys::close(r);
            let _ = sys::close(w);
            let mut status = NOT_RUN;
            for _ in 0..2 {
                match sys::wait() {
                    Ok((pid, s)) if Some(pid) == rpid => status = s,
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            if lpid.is_none() {
                status = NOT_RUN;
            }
            sys::exit(status)
        }
        Cmd::List(left, right) => {
            match sys::fork() {
                Ok(0) => run(left),
                Ok(pid) => {
                    let _ = sys::wait_for(pid);
                }
                Err(_) => eprintln!("sh: fork failed"),
            }
            run(right)
        }
        Cmd::Back(cmd) => {
            // The child runs it; this process exits at once, so the job becomes init's.
            match sys::fork() {
                Ok(0) => run(cmd),
                Ok(_) => sys::exit(0),
                Err(_) => {
                    eprintln!("sh: fork failed");
                    sys::exit(NOT_RUN)
                }
            }
        }
    }
}

/// Forks a child that runs `cmd` with descriptor `target` on `end` (the pipe's descriptors
/// `fds` closed). Returns its pid.
fn spawn_with(cmd: &Cmd, target: i32, end: i32, fds: [i32; 2]) -> Option<i32> {
    match sys::fork() {
        Ok(0) => {
            let _ = sys::close(target);
            if sys::dup(end) != Ok(target) {
                eprintln!("sh: cannot set up pipe");
                sys::exit(NOT_RUN);
            }
            let _ = sys::close(fds[0]);
            let _ = sys::close(fds[1]);
            run(cmd)
        }
        Ok(pid) => Some(pid),
        Err(_) => {
            eprintln!("sh: fork failed");
            None
        }
    }
}

/// Moves `fd`'s offset to the end of its file by reading it through (xv6 has no `lseek`).
fn seek_to_end(fd: i32) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match sys::read(fd, &mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
}
