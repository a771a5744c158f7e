//! xtask's output to a reader that has gone (`cargo xtask fsck IMG | head`): it must end quietly,
//! not panic. Rust ignores SIGPIPE, so every write to the closed pipe fails with EPIPE, and
//! `println!`/`eprintln!` panic on that.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use xv6_abi::fs::{SuperBlock, BSIZE, FSMAGIC};

/// A file-system image with a valid superblock and nothing else, so fsck has problems to print.
fn empty_image(name: &str) -> PathBuf {
    let sb = SuperBlock {
        magic: FSMAGIC,
        size: 64,
        nblocks: 40,
        ninodes: 16,
        nlog: 4,
        logstart: 2,
        inodestart: 6,
        bmapstart: 8,
    };
    sb.validate().expect("a valid geometry");
    let mut img = vec![0u8; 64 * BSIZE];
    sb.encode(&mut img[BSIZE..]);
    let p = std::env::temp_dir().join(format!("xtask-{name}-{}.img", std::process::id()));
    std::fs::write(&p, img).expect("writing the test image");
    p
}

/// Runs `xtask ARGS` with stdout (and, if `both`, stderr) on a pipe whose reader is closed.
fn run_into_closed_pipe(args: &[&str], both: bool) -> Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.args(args)
        .stdin(Stdio::null())
        .stdout(writer.try_clone().expect("dup"));
    if both {
        c.stderr(writer);
    } else {
        c.stderr(Stdio::piped());
    }
    let mut child = c.spawn().expect("starting xtask");
    let mut err = Vec::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_end(&mut err).expect("reading stderr");
    }
    let status = child.wait().expect("waiting for xtask");
    Output {
        status,
        stdout: Vec::new(),
        stderr: err,
    }
}

#[test]
fn fsck_into_a_closed_pipe_exits_quietly() {
    let img = empty_image("epipe");
    let out = run_into_closed_pipe(&["fsck", img.to_str().expect("utf-8 path")], false);
    let _ = std::fs::remove_file(&img);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "xtask panicked: {err}");
    assert_eq!(out.status.code(), Some(0), "status {:?}: {err}", out.status);
}

#[test]
fn errors_into_a_closed_pipe_do_not_panic() {
    // Not an image: fsck fails and says why on stderr, which is closed too.
    let p = std::env::temp_dir().join(format!("xtask-notimg-{}.img", std::process::id()));
    std::fs::write(&p, b"not an xv6 image").expect("writing the test file");
    let out = run_into_closed_pipe(&["fsck", p.to_str().expect("utf-8 path")], true);
    let _ = std::fs::remove_file(&p);
    assert_eq!(out.status.code(), Some(1), "status {:?}", out.status);
}
