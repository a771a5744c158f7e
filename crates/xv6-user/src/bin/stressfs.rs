//! stressfs: five processes write and read back files at once, to stress the file system's
//! locking and log.
#![no_std]
#![no_main]

use xv6_user::abi::fcntl::{O_CREATE, O_RDONLY, O_RDWR};
use xv6_user::{eprintln, println, sys, Args, BStr};

xv6_user::entry!(main);

const CHUNKS: usize = 20;

fn main(_args: Args) -> i32 {
    println!("stressfs starting");
    // Processes 0..=4: each parent stops forking, the last child has i = 4.
    let mut i = 0u8;
    while i < 4 {
        match sys::fork() {
            Ok(pid) if pid > 0 => break,
            Ok(_) => i += 1,
            Err(_) => {
                eprintln!("stressfs: fork failed");
                break;
            }
        }
    }
    println!("write {i}");
    let mut path = *b"stressfs0";
    path[8] += i;
    let status = run(&path);
    let _ = sys::wait();
    status
}

fn run(path: &[u8]) -> i32 {
    let data = [b'a'; 512];
    let Ok(fd) = sys::open(path, O_CREATE | O_RDWR) else {
        eprintln!("stressfs: cannot create {}", BStr(path));
        return 1;
    };
    for _ in 0..CHUNKS {
        if sys::write_all(fd, &data).is_err() {
            eprintln!("stressfs: write error on {}", BStr(path));
            return 1;
        }
    }
    let _ = sys::close(fd);
    println!("read");
    let Ok(fd) = sys::open(path, O_RDONLY) else {
        eprintln!("stressfs: cannot open {}", BStr(path));
        return 1;
    };
    let mut buf = [0u8; 512];
    for _ in 0..CHUNKS {
        match sys::read(fd, &mut buf) {
            Ok(n) if buf[..n].iter().all(|&b| b == b'a') => {}
            _ => {
                eprintln!("stressfs: read back wrong data from {}", BStr(path));
                return 1;
            }
        }
    }
    let _ = sys::close(fd);
    0
}
