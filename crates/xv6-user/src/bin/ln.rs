//! ln: gives a file a second name.
#![no_std]
#![no_main]

use xv6_user::{eprintln, sys, Args, BStr};

xv6_user::entry!(main);

fn main(args: Args) -> i32 {
    let (Some(old), Some(new), 3) = (args.get(1), args.get(2), args.len()) else {
        eprintln!("usage: ln old new");
        return 1;
    };
    match sys::link(old, new) {
        Ok(()) => 0,
        Err(_) => {
            eprintln!("ln: link {} {} failed", BStr(old), BStr(new));
            1
        }
    }
}
