//! zombie: leaves a zombie child for init to reap (the parent exits before waiting).
#![no_std]
#![no_main]

use xv6_user::{sys, Args};

xv6_user::entry!(main);

fn main(_args: Args) -> i32 {
    if let Ok(pid) = sys::fork() {
        if pid > 0 {
            // Let the child exit first.
            let _ = sys::sleep(5);
        }
    }
    0
}
