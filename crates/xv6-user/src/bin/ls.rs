//! ls: lists files and directories as xv6 does: `name type inode size`.
#![no_std]
#![no_main]

use xv6_user::abi::fcntl::O_RDONLY;
use xv6_user::abi::stat::T_DIR;
use xv6_user::io::{BufWriter, FdSink};
use xv6_user::ls::{parse_dirent, write_entry};
use xv6_user::{eprintln, path, sys, Args, BStr};

xv6_user::entry!(main);

type Out = BufWriter<FdSink, 1024>;

/// Lists `name`; false if anything went wrong (already reported).
fn ls(name: &[u8], out: &mut Out) -> bool {
    let fd = match sys::open(name, O_RDONLY) {
        Ok(fd) => fd,
        Err(_) => {
            out.flush();
            eprintln!("ls: cannot open {}", BStr(name));
            return false;
        }
    };
    let ok = list(fd, name, out);
    let _ = sys::close(fd);
    ok
}

fn list(fd: i32, name: &[u8], out: &mut Out) -> bool {
    let Ok(st) = sys::fstat(fd) else {
        out.flush();
        eprintln!("ls: cannot stat {}", BStr(name));
        return false;
    };
    if st.typ != T_DIR {
        let _ = write_entry(out, name, &st);
        return true;
    }
    let mut ok = true;
    let mut buf = [0u8; 512];
    let mut have = 0;
    loop {
        let n = match sys::read(fd, &mut buf[have..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(_) => {
                out.flush();
                eprintln!("ls: cannot read {}", BStr(name));
                return false;
            }
        };
        have += n;
        let whole = have - have % 16;
        for raw in buf[..whole].chunks_exact(16) {
            let de = parse_dirent(raw.try_into().expect("16 bytes"));
            if de.inum == 0 {
                continue;
            }
            let full = path::join(name, de.name_bytes());
            match sys::stat(&full) {
                Ok(st) => {
                    let _ = write_entry(out, &full, &st);
                }
                Err(_) => {
                    out.flush();
                    eprintln!("ls: cannot stat {}", BStr(&full));
                    ok = false;
                }
            }
        }
        buf.copy_within(whole..have, 0);
        have -= whole;
    }
    ok
}

fn main(args: Args) -> i32 {
    let mut out = Out::new(FdSink(1));
    let mut ok = true;
    if args.len() < 2 {
        ok = ls(b".", &mut out);
    }
    for name in args.iter().skip(1) {
        ok &= ls(name, &mut out);
    }
    out.flush();
    if ok {
        0
    } else {
        1
    }
}
