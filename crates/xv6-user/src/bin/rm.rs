//! rm: removes directory entries.
#![no_std]
#![no_main]

use xv6_user::{eprintln, sys, Args, BStr};

xv6_user::entry!(main);

fn main(args: Args) -> i32 {
    if args.len() < 2 {
        eprintln!("usage: rm file...");
        return 1;
    }
    let mut status = 0;
    for f in args.iter().skip(1) {
        if sys::unlink(f).is_err() {
            eprintln!("rm: {} failed to delete", BStr(f));
            status = 1;
        }
    }
    status
}
