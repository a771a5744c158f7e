//! grep: prints the lines that match a pattern (xv6's `^ $ . *` subset; see `xv6_user::grep`).
#![no_std]
#![no_main]

use xv6_user::abi::fcntl::O_RDONLY;
use xv6_user::grep::{matches, Lines};
use xv6_user::io::{BufWriter, FdSink};
use xv6_user::{eprintln, sys, Args, BStr};

xv6_user::entry!(main);

type Out = BufWriter<FdSink, 1024>;

/// Prints the matching lines of `fd`; false on a read error.
fn grep(pattern: &[u8], fd: i32, out: &mut Out) -> bool {
    let mut buf = [0u8; 1024];
    let mut lines = Lines::new();
    let mut print = |line: &[u8]| {
        if matches(pattern, line) {
            out.write_bytes(line);
            out.write_bytes(b"\n");
        }
    };
    loop {
        match sys::read(fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => lines.feed(&buf[..n], &mut print),
            Err(_) => return false,
        }
    }
    lines.finish(&mut print);
    true
}

fn main(args: Args) -> i32 {
    let Some(pattern) = args.get(1) else {
        eprintln!("usage: grep pattern [file ...]");
        return 1;
    };
    let mut out = Out::new(FdSink(1));
    let mut status = 0;
    if args.len() == 2 && !grep(pattern, 0, &mut out) {
        eprintln!("grep: read error on standard input");
        status = 1;
    }
    for name in args.iter().skip(2) {
        match sys::open(name, O_RDONLY) {
            Ok(fd) => {
                if !grep(pattern, fd, &mut out) {
                    out.flush();
                    eprintln!("grep: read error on {}", BStr(name));
                    status = 1;
                }
                let _ = sys::close(fd);
            }
            Err(_) => {
                out.flush();
                eprintln!("grep: cannot open {}", BStr(name));
                status = 1;
            }
        }
    }
    out.flush();
    status
}
