//! forktest: forks until the process table is full, then checks that every child is waited for
//! exactly once.
#![no_std]
#![no_main]

use xv6_user::{eprintln, println, sys, Args};

xv6_user::entry!(main);

const N: usize = 1000;

fn main(_args: Args) -> i32 {
    println!("fork test");
    let mut n = 0;
    while n < N {
        match sys::fork() {
            Err(_) => break,
            Ok(0) => sys::exit(0),
            Ok(_) => n += 1,
        }
    }
    if n == N {
        eprintln!("fork claimed to work {N} times!");
        return 1;
    }
    for _ in 0..n {
        if sys::wait().is_err() {
            eprintln!("wait stopped early");
            return 1;
        }
    }
    if sys::wait().is_ok() {
        eprintln!("wait got too many");
        return 1;
    }
    println!("fork test OK ({n} children)");
    0
}
