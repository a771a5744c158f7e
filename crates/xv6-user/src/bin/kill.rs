//! kill: kills processes by pid.
#![no_std]
#![no_main]

use xv6_user::num::parse_i32;
use xv6_user::{eprintln, sys, Args, BStr};

xv6_user::entry!(main);

fn main(args: Args) -> i32 {
    if args.len() < 2 {
        eprintln!("usage: kill pid...");
        return 1;
    }
    let mut status = 0;
    for a in args.iter().skip(1) {
        match parse_i32(a) {
            Some(pid) if pid > 0 => {
                if sys::kill(pid).is_err() {
                    eprintln!("kill: cannot kill {pid}");
                    status = 1;
                }
            }
            _ => {
                eprintln!("kill: bad pid {}", BStr(a));
                status = 1;
            }
        }
    }
    status
}
