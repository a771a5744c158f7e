//! echo: prints its arguments separated by spaces, then a newline, in one write.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use xv6_user::{sys, Args};

xv6_user::entry!(main);

fn main(args: Args) -> i32 {
    let mut out = Vec::new();
    for (i, a) in args.iter().skip(1).enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(a);
    }
    out.push(b'\n');
    match sys::write_all(1, &out) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}
