//! mkdir: makes directories.
#![no_std]
#![no_main]

use xv6_user::{eprintln, sys, Args, BStr};

xv6_user::entry!(main);

fn main(args: Args) -> i32 {
    if args.len() < 2 {
        eprintln!("usage: mkdir dir...");
        return 1;
    }
    let mut status = 0;
    for dir in args.iter().skip(1) {
        if sys::mkdir(dir).is_err() {
            eprintln!("mkdir: {} failed to create", BStr(dir));
            status = 1;
        }
    }
    status
}
