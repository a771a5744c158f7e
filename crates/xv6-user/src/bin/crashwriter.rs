//! crashwriter: file-system operations in a known order, for the crash test (`cargo xtask test`,
//! step "crash test").
//!
//! - `crashwriter write`: makes `/cw`, then runs operations 0, 1, 2, ... of [`TOTAL`] and prints
//!   `cw done N` after operation N has returned. Operation `4i` creates `/cw/c<i>` and writes its
//!   contents ([`content`], under 3 KiB: one transaction); `4i+1` links it as `/cw/k<i>`; `4i+2`
//!   unlinks `/cw/c<i-1>`; `4i+3` unlinks `/cw/k<i-2>` (freeing file `i-2`). After every
//!   [`SYNC_EVERY`]th operation it calls `fsync` and prints `cw synced N` when that returns: the
//!   operations up to N are then on the disk. The others are committed in groups by the kernel
//!   (when the log fills, or within a second), so a crash may lose the last few, but only from
//!   the end: the disk always holds a prefix of the operations.
//! - `crashwriter check N` (after the machine was killed and booted again, which replays the
//!   log; N is the last `cw synced` line the host saw): the files in `/cw` must be exactly those
//!   after operations 0..=M for some M >= N (the writer may have gone on and the kernel may have
//!   committed more), every one with its contents and
//!   link count; the operation after M may only be a create caught between its `open` and its
//!   `write` (an empty file). N = -1: no operation was seen. Prints `crashwriter: ok ...` or
//!   `crashwriter: FAILED: ...` (exit 1).
//! - `crashwriter big` / `crashwriter bigcheck N`: six files of 96 KiB written in 4 KiB writes
//!   and fsync'd one by one, so that commits and recoveries hold the whole log (255 blocks);
//!   the check wants the fsync'd files whole and any other only the written bytes, from the
//!   start.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::fmt;
use xv6_user::abi::fcntl::{O_CREATE, O_RDONLY, O_RDWR};
use xv6_user::abi::stat::{T_DIR, T_FILE};
use xv6_user::ls::parse_dirent;
use xv6_user::num::parse_i32;
use xv6_user::{println, sys, Args, BStr};

xv6_user::entry!(main);

/// Operations in a run.
const TOTAL: i32 = 160;

/// `fsync` after operations SYNC_EVERY-1, 2*SYNC_EVERY-1, ...
const SYNC_EVERY: i32 = 3;

/// The contents of file `i`: under 3 KiB, so its one `write` is one transaction.
fn content(i: i32) -> Vec<u8> {
    let n = 200 + (i as usize * 709) % 2800;
    (0..n)
        .map(|j| (i as usize * 31 + j * 7 + j / 251) as u8)
        .collect()
}

/// A path in /cw (formatting into a `String` would pull in unwinding code the user programs do
/// not link).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Name {
    buf: [u8; 20],
    len: usize,
}

impl Name {
    /// `/cw/` and a directory entry's name.
    fn from_entry(entry: &[u8]) -> Name {
        let mut n = Name {
            buf: [0; 20],
            len: 0,
        };
        for &c in b"/cw/".iter().chain(entry.iter().take(14)) {
            n.buf[n.len] = c;
            n.len += 1;
        }
        n
    }

    /// `/cw/<prefix><i>`.
    fn of(prefix: u8, i: i32) -> Name {
        let mut digits = [0u8; 10];
        let mut k = 0;
        let mut v = i.max(0) as u32;
        loop {
            digits[k] = b'0' + (v % 10) as u8;
            k += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        let mut e = [0u8; 11];
        e[0] = prefix;
        for j in 0..k {
            e[1 + j] = digits[k - 1 - j];
        }
        Name::from_entry(&e[..k + 1])
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", BStr(self.bytes()))
    }
}

/// Runs operation `n`; false if its system call failed.
fn op(n: i32) -> bool {
    let i = n / 4;
    match n % 4 {
        0 => {
            let Ok(fd) = sys::open(Name::of(b'c', i).bytes(), O_CREATE | O_RDWR) else {
                return false;
            };
            let data = content(i);
            let ok = sys::write(fd, &data) == Ok(data.len());
            sys::close(fd).is_ok() && ok
        }
        1 => sys::link(Name::of(b'c', i).bytes(), Name::of(b'k', i).bytes()).is_ok(),
        2 => i < 1 || sys::unlink(Name::of(b'c', i - 1).bytes()).is_ok(),
        _ => i < 2 || sys::unlink(Name::of(b'k', i - 2).bytes()).is_ok(),
    }
}

fn write() -> i32 {
    if sys::mkdir(b"/cw").is_err() {
        println!("crashwriter: FAILED: mkdir /cw");
        return 1;
    }
    let Ok(dir) = sys::open(b"/cw", O_RDONLY) else {
        println!("crashwriter: FAILED: open /cw");
        return 1;
    };
    println!("cw start");
    for n in 0..TOTAL {
        if !op(n) {
            println!("crashwriter: FAILED: operation {n}");
            return 1;
        }
        println!("cw done {n}");
        if n % SYNC_EVERY == SYNC_EVERY - 1 {
            if sys::fsync(dir).is_err() {
                println!("crashwriter: FAILED: fsync after operation {n}");
                return 1;
            }
            println!("cw synced {n}");
        }
    }
    println!("cw finished {TOTAL}");
    0
}

/// The files after operations 0..=m: (name, file number, link count).
fn expected(m: i32) -> Vec<(Name, i32, i16)> {
    let mut v = Vec::new();
    for i in 0..TOTAL / 4 {
        let done = |op: i32| op <= m;
        // Created by 4i, unlinked by 4(i+1)+2; linked by 4i+1, unlinked by 4(i+2)+3.
        let c = done(4 * i) && !done(4 * (i + 1) + 2);
        let k = done(4 * i + 1) && !done(4 * (i + 2) + 3);
        let links = i16::from(c) + i16::from(k);
        if c {
            v.push((Name::of(b'c', i), i, links));
        }
        if k {
            v.push((Name::of(b'k', i), i, links));
        }
    }
    v
}

/// A file found in /cw.
struct Found {
    name: Name,
    nlink: i16,
    data: Vec<u8>,
}

/// Why /cw could not be read.
enum ReadError {
    Open(Name),
    Stat(Name),
    NotFile(Name, i16),
    Short(Name, usize, u64),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Open(n) => write!(f, "cannot open {n}"),
            ReadError::Stat(n) => write!(f, "cannot stat {n}"),
            ReadError::NotFile(n, t) => write!(f, "{n} has type {t}"),
            ReadError::Short(n, got, size) => write!(f, "{n}: read {got} bytes of {size}"),
        }
    }
}

/// Reads every file in /cw.
fn found() -> Result<Vec<Found>, ReadError> {
    let cw = Name::from_entry(b"");
    let dir = sys::open(b"/cw", O_RDONLY).map_err(|_| ReadError::Open(cw))?;
    let mut names = Vec::new();
    let mut raw = [0u8; 16];
    while sys::read(dir, &mut raw) == Ok(16) {
        let d = parse_dirent(&raw);
        if d.inum == 0 {
            continue;
        }
        let n = d.name.iter().position(|&c| c == 0).unwrap_or(d.name.len());
        let e = &d.name[..n];
        if e != b"." && e != b".." {
            names.push(Name::from_entry(e));
        }
    }
    let _ = sys::close(dir);
    let mut out = Vec::new();
    for name in names {
        let fd = sys::open(name.bytes(), O_RDONLY).map_err(|_| ReadError::Open(name))?;
        let st = sys::fstat(fd).map_err(|_| ReadError::Stat(name))?;
        if st.typ != T_FILE {
            return Err(ReadError::NotFile(name, st.typ));
        }
        let mut data = alloc::vec![0u8; st.size as usize + 1];
        let mut got = 0;
        while let Ok(k) = sys::read(fd, &mut data[got..]) {
            if k == 0 {
                break;
            }
            got += k;
        }
        data.truncate(got);
        let _ = sys::close(fd);
        if got as u64 != st.size {
            return Err(ReadError::Short(name, got, st.size));
        }
        out.push(Found {
            name,
            nlink: st.nlink,
            data,
        });
    }
    Ok(out)
}

/// How the disk differs from an expected state.
enum Diff {
    Contents(Name, usize),
    Links(Name, i16, i16),
    Extra(Name),
    Missing(Name),
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Diff::Contents(n, len) => write!(f, "{n} has wrong contents ({len} bytes)"),
            Diff::Links(n, have, want) => write!(f, "{n} has {have} links, not {want}"),
            Diff::Extra(n) => write!(f, "{n} should not exist"),
            Diff::Missing(n) => write!(f, "{n} is missing"),
        }
    }
}

/// Whether `files` is the state after operations 0..=m, allowing the create of operation m+1
/// to be caught between its `open` and its `write` (an empty file). The first difference if not.
fn differs(files: &[Found], m: i32) -> Option<Diff> {
    let want = expected(m);
    let next = m + 1;
    let half_created = (next % 4 == 0 && next < TOTAL).then(|| Name::of(b'c', next / 4));
    for f in files {
        match want.iter().find(|w| w.0 == f.name) {
            Some((_, i, links)) => {
                if f.data != content(*i) {
                    return Some(Diff::Contents(f.name, f.data.len()));
                }
                if f.nlink != *links {
                    return Some(Diff::Links(f.name, f.nlink, *links));
                }
            }
            None if half_created == Some(f.name) && f.data.is_empty() && f.nlink == 1 => {}
            None => return Some(Diff::Extra(f.name)),
        }
    }
    for w in &want {
        if !files.iter().any(|f| f.name == w.0) {
            return Some(Diff::Missing(w.0));
        }
    }
    None
}

fn check(seen: i32) -> i32 {
    let cw = sys::stat(b"/cw");
    let Ok(st) = cw else {
        // mkdir /cw had not returned: nothing may have been seen.
        if seen < 0 {
            println!("crashwriter: ok: nothing was done");
            return 0;
        }
        println!("crashwriter: FAILED: /cw is missing after operation {seen} was seen");
        return 1;
    };
    if st.typ != T_DIR {
        println!("crashwriter: FAILED: /cw is not a directory");
        return 1;
    }
    let files = match found() {
        Ok(f) => f,
        Err(e) => {
            println!("crashwriter: FAILED: {e}");
            return 1;
        }
    };
    for m in seen.max(-1)..TOTAL {
        if differs(&files, m).is_none() {
            println!(
                "crashwriter: ok: the disk holds operations 0..={m} ({seen} seen before the \
                 kill), {} files",
                files.len()
            );
            return 0;
        }
    }
    match differs(&files, seen) {
        Some(why) => println!(
            "crashwriter: FAILED: no state after operation {seen} or later matches the disk; \
             against {seen}: {why}"
        ),
        None => println!("crashwriter: FAILED: inconsistent check"),
    }
    1
}

// ---- big files: commits of the whole log ------------------------------------------------

/// Files `big` writes, and the bytes of each (so that a commit holds up to the log's 255 blocks,
/// and recovery replays that many).
const BIG_FILES: i32 = 6;
const BIG_SIZE: usize = 96 * 1024;

/// Byte `j` of big file `k`.
fn big_byte(k: i32, j: usize) -> u8 {
    (j / 7 + j / 1031 + k as usize * 37) as u8 ^ 0x5c
}

/// `/big<k>`.
fn big_name(k: i32) -> [u8; 6] {
    [b'/', b'b', b'i', b'g', b'0' + k as u8, 0]
}

/// `crashwriter big`: writes `/big0`.. in 4 KiB writes (each two transactions), fsyncs each
/// file and prints `big synced K`. Without fsync between the writes, the log fills and commits
/// in large groups.
fn big() -> i32 {
    println!("cw start");
    let mut buf = [0u8; 4096];
    for k in 0..BIG_FILES {
        let name = big_name(k);
        let Ok(fd) = sys::open(&name[..5], O_CREATE | O_RDWR) else {
            println!("crashwriter: FAILED: create big{k}");
            return 1;
        };
        for off in (0..BIG_SIZE).step_by(buf.len()) {
            for (j, b) in buf.iter_mut().enumerate() {
                *b = big_byte(k, off + j);
            }
            if sys::write(fd, &buf) != Ok(buf.len()) {
                println!("crashwriter: FAILED: write big{k}");
                return 1;
            }
        }
        if sys::fsync(fd).is_err() {
            println!("crashwriter: FAILED: fsync big{k}");
            return 1;
        }
        let _ = sys::close(fd);
        println!("cw synced {k}");
    }
    println!("cw finished {BIG_FILES}");
    0
}

/// `crashwriter bigcheck N`: big0..=N are whole; every later file that exists holds only the
/// bytes that were written, from the start (a prefix of it: transactions commit whole and in
/// order, so no block of garbage or of another file may show).
fn bigcheck(seen: i32) -> i32 {
    let mut buf = alloc::vec![0u8; BIG_SIZE + 1];
    for k in 0..BIG_FILES {
        let name = big_name(k);
        let Ok(fd) = sys::open(&name[..5], O_RDONLY) else {
            if k <= seen {
                println!("crashwriter: FAILED: big{k} is missing though its fsync returned");
                return 1;
            }
            continue;
        };
        let mut got = 0;
        while let Ok(n) = sys::read(fd, &mut buf[got..]) {
            if n == 0 {
                break;
            }
            got += n;
        }
        let _ = sys::close(fd);
        if k <= seen && got != BIG_SIZE {
            println!(
                "crashwriter: FAILED: big{k} has {got} bytes, not {BIG_SIZE}, after its fsync"
            );
            return 1;
        }
        if got > BIG_SIZE {
            println!("crashwriter: FAILED: big{k} has {got} bytes");
            return 1;
        }
        if let Some(j) = (0..got).find(|&j| buf[j] != big_byte(k, j)) {
            println!("crashwriter: FAILED: big{k} byte {j} of {got} is not what was written");
            return 1;
        }
    }
    println!("crashwriter: ok: big files whole up to {seen}, the rest prefixes");
    0
}

fn main(args: Args) -> i32 {
    match (args.get(1), args.get(2).and_then(parse_i32)) {
        (Some(b"write"), _) => write(),
        (Some(b"check"), Some(n)) => check(n),
        (Some(b"big"), _) => big(),
        (Some(b"bigcheck"), Some(n)) => bigcheck(n),
        _ => {
            println!(
                "usage: crashwriter write | crashwriter check N | crashwriter big | \
                 crashwriter bigcheck N"
            );
            1
        }
    }
}
