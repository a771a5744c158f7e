//! free: shows the kernel's memory use (the `meminfo` system call).
#![no_std]
#![no_main]

use xv6_user::{eprintln, println, sys, Args};

xv6_user::entry!(main);

fn main(args: Args) -> i32 {
    if args.len() > 1 {
        eprintln!("usage: free");
        return 1;
    }
    let Ok(m) = sys::meminfo() else {
        eprintln!("free: meminfo failed");
        return 1;
    };
    let used = m.total_frames.saturating_sub(m.free_frames);
    println!("{:>12} {:>10} {:>10} {:>10}", "", "total", "used", "free");
    println!(
        "{:>12} {:>10} {:>10} {:>10}",
        "frames:", m.total_frames, used, m.free_frames
    );
    println!(
        "{:>12} {:>10} {:>10} {:>10}",
        "KiB:",
        m.total_frames * 4,
        used * 4,
        m.free_frames * 4
    );
    println!(
        "kernel heap: {} bytes in use, {} pages held",
        m.kheap_in_use, m.kheap_pages
    );
    println!("processes: {}", m.nproc);
    0
}
