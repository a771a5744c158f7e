//! cat: copies files (or standard input) to standard output.
#![no_std]
#![no_main]

use xv6_user::abi::fcntl::O_RDONLY;
use xv6_user::{eprintln, sys, Args, BStr};

xv6_user::entry!(main);

/// Why copying stopped.
enum Failure {
    Read,
    Write,
}

fn cat(fd: i32) -> Result<(), Failure> {
    let mut buf = [0u8; 512];
    loop {
        match sys::read(fd, &mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => sys::write_all(1, &buf[..n]).map_err(|_| Failure::Write)?,
            Err(_) => return Err(Failure::Read),
        }
    }
}

fn report(r: Result<(), Failure>, name: &[u8]) -> i32 {
    match r {
        Ok(()) => 0,
        Err(Failure::Read) => {
            eprintln!("cat: read error on {}", BStr(name));
            1
        }
        Err(Failure::Write) => {
            eprintln!("cat: write error");
            sys::exit(1)
        }
    }
}

fn main(args: Args) -> i32 {
    if args.len() <= 1 {
        return report(cat(0), b"standard input");
    }
    let mut status = 0;
    for name in args.iter().skip(1) {
        match sys::open(name, O_RDONLY) {
            Ok(fd) => {
                status |= report(cat(fd), name);
                let _ = sys::close(fd);
            }
            Err(_) => {
                eprintln!("cat: cannot open {}", BStr(name));
                status = 1;
            }
        }
    }
    status
}
