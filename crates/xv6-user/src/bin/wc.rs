//! wc: counts lines, words and bytes: `lines words bytes name`.
#![no_std]
#![no_main]

use xv6_user::abi::fcntl::O_RDONLY;
use xv6_user::wc::Counter;
use xv6_user::{eprintln, println, sys, Args, BStr};

xv6_user::entry!(main);

/// Counts `fd` and prints the line; false on a read error.
fn wc(fd: i32, name: &[u8]) -> bool {
    let mut buf = [0u8; 512];
    let mut c = Counter::new();
    loop {
        match sys::read(fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => c.feed(&buf[..n]),
            Err(_) => {
                eprintln!("wc: read error");
                return false;
            }
        }
    }
    let n = c.counts();
    println!("{} {} {} {}", n.lines, n.words, n.bytes, BStr(name));
    true
}

fn main(args: Args) -> i32 {
    if args.len() <= 1 {
        return if wc(0, b"") { 0 } else { 1 };
    }
    let mut status = 0;
    for name in args.iter().skip(1) {
        match sys::open(name, O_RDONLY) {
            Ok(fd) => {
                if !wc(fd, name) {
                    status = 1;
                }
                let _ = sys::close(fd);
            }
            Err(_) => {
                eprintln!("wc: cannot open {}", BStr(name));
                status = 1;
            }
        }
    }
    status
}
