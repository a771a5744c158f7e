//! File-system system calls (xv6's sysfile.c): argument checking, descriptors, and the operations
//! that create and remove names, each in one log transaction.

use crate::arch::trap::TrapFrame;
use crate::fs::file::{self, FileRef, Kind};
use crate::fs::fs::{self, InodeRef};
use crate::fs::log;
use crate::proc::proc;
use crate::syscall::syscall::{arg, arg_int, arg_path, copy_in, copy_out};
use xv6_abi::fcntl::{O_CREATE, O_RDWR, O_TRUNC, O_WRONLY};
use xv6_abi::param::{MAXPATH, NOFILE};
use xv6_abi::stat::{T_DEVICE, T_DIR, T_FILE};

/// The inode for `path`, from the calling process's current directory.
fn namei(path: &[u8]) -> Option<InodeRef> {
    crate::fs::dir::namei(proc::myproc().cwd.as_ref(), path)
}

/// The parent directory of `path` (from the current directory) and its last element.
fn namei_parent(path: &[u8]) -> Option<(InodeRef, [u8; xv6_abi::DIRSIZ], usize)> {
    crate::fs::dir::namei_parent(proc::myproc().cwd.as_ref(), path)
}

/// The open file behind descriptor argument `n`.
fn arg_fd(tf: &TrapFrame, n: usize) -> Option<(usize, &'static FileRef)> {
    let fd = arg_int(tf, n);
    if fd < 0 || fd as usize >= NOFILE {
        return None;
    }
    let p = proc::myproc();
    p.ofile[fd as usize].as_ref().map(|f| {
        // SAFETY: the descriptor table belongs to the running process, which is us; the reference
        // is used only during this system call, while the entry stays installed.
        (fd as usize, unsafe { &*(f as *const FileRef) })
    })
}

/// Installs `f` in the lowest free descriptor; gives it back if there is none.
fn fd_alloc(f: FileRef) -> Result<i32, FileRef> {
    let p = proc::myproc();
    match p.ofile.iter().position(|s| s.is_none()) {
        Some(i) => {
            p.ofile[i] = Some(f);
            Ok(i as i32)
        }
        None => Err(f),
    }
}

/// `dup(fd)`.
pub fn dup(tf: &TrapFrame) -> i64 {
    let Some((_, f)) = arg_fd(tf, 0) else {
        return -1;
    };
    match fd_alloc(f.dup()) {
        Ok(fd) => fd as i64,
        Err(f) => {
            f.close();
            -1
        }
    }
}

/// `read(fd, buf, n)`.
pub fn read(tf: &TrapFrame) -> i64 {
    let Some((_, f)) = arg_fd(tf, 0) else {
        return -1;
    };
    let (buf, n) = (arg(tf, 1), arg_int(tf, 2));
    if n < 0 || !buffer_ok(buf, n, true) {
        return -1;
    }
    prefault(buf, n, true);
    f.read(n as usize, |at, bytes| {
        copy_out(buf.wrapping_add(at as u64), bytes).is_ok()
    }) as i64
}

/// Faults in the mapped pages of a user buffer before a transfer, so the copy inside the
/// transfer (which may hold an inode's lock and a log transaction) never has to read a file for a
/// first touch. Files are at most MAXFILE blocks, which bounds the work.
fn prefault(buf: u64, n: i32, write: bool) {
    let max = (xv6_abi::fs::MAXFILE * xv6_abi::fs::BSIZE) as u64 + 4096;
    let p = proc::myproc();
    p.mm.prefault(p.pt, buf, (n as u64).min(max), write);
}

/// Whether the whole user buffer may be accessed (written when `write`).
fn buffer_ok(buf: u64, n: i32, write: bool) -> bool {
    let p = proc::myproc();
    p.mm.range_ok(p.pt, buf, n as u64, write)
}

/// `write(fd, buf, n)`.
pub fn write(tf: &TrapFrame) -> i64 {
    let Some((_, f)) = arg_fd(tf, 0) else {
        return -1;
    };
    let (buf, n) = (arg(tf, 1), arg_int(tf, 2));
    if n < 0 || !buffer_ok(buf, n, false) {
        return -1;
    }
    prefault(buf, n, false);
    f.write(n as usize, |at, dst| {
        copy_in(dst, buf.wrapping_add(at as u64)).is_ok()
    }) as i64
}

/// `close(fd)`.
pub fn close(tf: &TrapFrame) -> i64 {
    let Some((fd, _)) = arg_fd(tf, 0) else {
        return -1;
    };
    if let Some(f) = proc::myproc().ofile[fd].take() {
        f.close();
    }
    0
}

/// `fsync(fd)`: returns once every file-system call that has returned, this descriptor's writes
/// among them, is committed to the disk. A pipe or device descriptor is accepted (nothing of it
/// is on the disk); a bad descriptor fails.
pub fn fsync(tf: &TrapFrame) -> i64 {
    if arg_fd(tf, 0).is_none() {
        return -1;
    }
    crate::fs::log::force();
    0
}

/// `dropcaches()`: commits the log, then empties the buffer cache of every block nobody is
/// using, so the next reads go to the disk (for benchmarks and tests that read cold). Returns
/// how many blocks were dropped.
pub fn dropcaches(_: &TrapFrame) -> i64 {
    crate::fs::log::force();
    crate::fs::bio::drop_unreferenced() as i64
}

/// `fstat(fd, st)`.
pub fn fstat(tf: &TrapFrame) -> i64 {
    let Some((_, f)) = arg_fd(tf, 0) else {
        return -1;
    };
    let Some(st) = f.stat() else { return -1 };
    let mut b = [0u8; 24];
    b[0..4].copy_from_slice(&st.dev.to_le_bytes());
    b[4..8].copy_from_slice(&st.ino.to_le_bytes());
    b[8..10].copy_from_slice(&st.typ.to_le_bytes());
    b[10..12].copy_from_slice(&st.nlink.to_le_bytes());
    b[16..24].copy_from_slice(&st.size.to_le_bytes());
    if copy_out(arg(tf, 1), &b).is_err() {
        return -1;
    }
    0
}

/// `link(old, new)`.
pub fn link(tf: &TrapFrame) -> i64 {
    let (mut old, mut new) = ([0u8; MAXPATH], [0u8; MAXPATH]);
    let (Some(on), Some(nn)) = (arg_path(tf, 0, &mut old), arg_path(tf, 1, &mut new)) else {
        return -1;
    };
    log::begin_op();
    let r = do_link(&old[..on], &new[..nn]);
    log::end_op();
    r
}

fn do_link(old: &[u8], new: &[u8]) -> i64 {
    let Some(ip) = namei(old) else {
        return -1;
    };
    {
        let l = ip.lock();
        if l.typ() == T_DIR || l.typ() == 0 {
            drop(l);
            ip.put();
            return -1;
        }
        if l.data().d.nlink == i16::MAX {
            drop(l);
            ip.put();
            return -1;
        }
        l.data().d.nlink += 1;
        l.update();
    }
    let ok = match namei_parent(new) {
        Some((dp, name, n)) => {
            let dl = dp.lock();
            let ok = dl.data().d.nlink >= 1 && dl.dir_link(&name[..n], ip.inum());
            drop(dl);
            dp.put();
            ok
        }
        None => false,
    };
    if !ok {
        let l = ip.lock();
        l.data().d.nlink -= 1;
        l.update();
        drop(l);
        ip.put();
        return -1;
    }
    ip.put();
    0
}

/// `unlink(path)`.
pub fn unlink(tf: &TrapFrame) -> i64 {
    let mut path = [0u8; MAXPATH];
    let Some(n) = arg_path(tf, 0, &mut path) else {
        return -1;
    };
    log::begin_op();
    let r = do_unlink(&path[..n]);
    log::end_op();
    r
}

fn do_unlink(path: &[u8]) -> i64 {
    let Some((dp, name, n)) = namei_parent(path) else {
        return -1;
    };
    let name = &name[..n];
    let dl = dp.lock();
    if name == b"." || name == b".." {
        drop(dl);
        dp.put();
        return -1;
    }
    let Some((ip, off)) = dl.dir_lookup(name) else {
        drop(dl);
        dp.put();
        return -1;
    };
    let il = ip.lock();
    if il.data().d.nlink < 1 {
        crate::println!(
            "unlink: inode {} has no links (corrupt file system?)",
            ip.inum()
        );
    }
    if il.typ() == T_DIR && !il.dir_is_empty() {
        drop(il);
        ip.put();
        drop(dl);
        dp.put();
        return -1;
    }
    if !dl.dir_clear(off) {
        drop(il);
        ip.put();
        drop(dl);
        dp.put();
        return -1;
    }
    if il.typ() == T_DIR {
        dl.data().d.nlink -= 1; // the child's ".."
        dl.update();
    }
    drop(dl);
    dp.put();
    il.data().d.nlink = il.data().d.nlink.saturating_sub(1);
    il.update();
    drop(il);
    ip.put();
    0
}

/// Creates `path` of type `typ` (or, for T_FILE, opens an existing file). Inside a transaction.
/// Returns the inode, referenced and unlocked.
fn create(path: &[u8], typ: i16, major: i16, minor: i16) -> Option<InodeRef> {
    let (dp, name, n) = namei_parent(path)?;
    let name = &name[..n];
    let dl = dp.lock();
    if let Some((ip, _)) = dl.dir_lookup(name) {
        drop(dl);
        dp.put();
        let l = ip.lock();
        if typ == T_FILE && (l.typ() == T_FILE || l.typ() == T_DEVICE) {
            drop(l);
            return Some(ip);
        }
        drop(l);
        ip.put();
        return None;
    }
    // A directory that has been removed (a process's deleted working directory) takes no new
    // entries: they would be unreachable.
    if dl.typ() != T_DIR || dl.data().d.nlink < 1 {
        drop(dl);
        dp.put();
        return None;
    }
    let Some(ip) = fs::ialloc(typ) else {
        drop(dl);
        dp.put();
        return None;
    };
    let inum = ip.inum();
    let il = ip.lock();
    {
        let d = il.data();
        d.d.major = major;
        d.d.minor = minor;
        d.d.nlink = 1;
    }
    il.update();
    let mut ok = true;
    if typ == T_DIR {
        // "." and ".." first; the parent gains a link for "..".
        ok = il.dir_link(b".", inum) && il.dir_link(b"..", dp.inum());
    }
    ok = ok && dl.dir_link(name, inum);
    if ok && typ == T_DIR {
        dl.data().d.nlink += 1;
        dl.update();
    }
    drop(dl);
    dp.put();
    if !ok {
        // Undo: the new inode goes away when its last reference is put with no links.
        il.data().d.nlink = 0;
        il.update();
        drop(il);
        ip.put();
        return None;
    }
    drop(il);
    Some(ip)
}

/// `open(path, flags)`.
pub fn open(tf: &TrapFrame) -> i64 {
    let mut path = [0u8; MAXPATH];
    let Some(n) = arg_path(tf, 0, &mut path) else {
        return -1;
    };
    let mode = arg_int(tf, 1);
    log::begin_op();
    let r = do_open(&path[..n], mode);
    log::end_op();
    r
}

fn do_open(path: &[u8], mode: i32) -> i64 {
    let ip = if mode & O_CREATE != 0 {
        match create(path, T_FILE, 0, 0) {
            Some(ip) => ip,
            None => return -1,
        }
    } else {
        match namei(path) {
            Some(ip) => ip,
            None => return -1,
        }
    };
    let l = ip.lock();
    let typ = l.typ();
    let writable = mode & O_WRONLY != 0 || mode & O_RDWR != 0;
    let readable = mode & O_WRONLY == 0;
    if typ == 0 || (typ == T_DIR && writable) {
        drop(l);
        ip.put();
        return -1;
    }
    let major = l.data().d.major;
    if typ == T_DEVICE && major != xv6_abi::CONSOLE_MAJOR {
        drop(l);
        ip.put();
        return -1;
    }
    if mode & O_TRUNC != 0 && typ == T_FILE {
        l.truncate();
    }
    drop(l);
    let kind = if typ == T_DEVICE {
        Kind::Device(ip, major)
    } else {
        Kind::Inode(ip)
    };
    let f = match file::alloc(kind, readable, writable) {
        Ok(f) => f,
        Err(Kind::Inode(ip)) | Err(Kind::Device(ip, _)) => {
            ip.put();
            return -1;
        }
        Err(_) => return -1,
    };
    match fd_alloc(f) {
        Ok(fd) => fd as i64,
        Err(f) => {
            // Still inside the transaction: release the inode here rather than in close().
            drop_file_in_op(f);
            -1
        }
    }
}

/// Closes a file while a transaction is already open (close() would begin its own).
fn drop_file_in_op(f: FileRef) {
    log::end_op();
    f.close();
    log::begin_op();
}

/// `mkdir(path)`.
pub fn mkdir(tf: &TrapFrame) -> i64 {
    let mut path = [0u8; MAXPATH];
    let Some(n) = arg_path(tf, 0, &mut path) else {
        return -1;
    };
    log::begin_op();
    let r = match create(&path[..n], T_DIR, 0, 0) {
        Some(ip) => {
            ip.put();
            0
        }
        None => -1,
    };
    log::end_op();
    r
}

/// `mknod(path, major, minor)`.
pub fn mknod(tf: &TrapFrame) -> i64 {
    let mut path = [0u8; MAXPATH];
    let Some(n) = arg_path(tf, 0, &mut path) else {
        return -1;
    };
    let (major, minor) = (arg_int(tf, 1) as i16, arg_int(tf, 2) as i16);
    log::begin_op();
    let r = match create(&path[..n], T_DEVICE, major, minor) {
        Some(ip) => {
            ip.put();
            0
        }
        None => -1,
    };
    log::end_op();
    r
}

/// `chdir(path)`.
pub fn chdir(tf: &TrapFrame) -> i64 {
    let mut path = [0u8; MAXPATH];
    let Some(n) = arg_path(tf, 0, &mut path) else {
        return -1;
    };
    log::begin_op();
    let Some(ip) = namei(&path[..n]) else {
        log::end_op();
        return -1;
    };
    let is_dir = ip.lock().typ() == T_DIR;
    if !is_dir {
        ip.put();
        log::end_op();
        return -1;
    }
    let p = proc::myproc();
    if let Some(old) = p.cwd.replace(ip) {
        old.put();
    }
    log::end_op();
    0
}

/// `exec(path, argv)`.
pub fn exec_call(tf: &TrapFrame) -> i64 {
    let mut path = [0u8; MAXPATH];
    let Some(n) = arg_path(tf, 0, &mut path) else {
        return -1;
    };
    let Some(mut args) = crate::mm::mem::try_box(crate::proc::exec::Args::new()) else {
        return -1;
    };
    if !crate::syscall::syscall::fetch_args(arg(tf, 1), &mut args) {
        return -1;
    }
    match crate::proc::exec::exec(&path[..n], &args) {
        // exec rewrote the trap frame; rax must keep argc's register file as set (rdi/rsi), and
        // the return value lands in rax: 0.
        Ok(()) => 0,
        Err(_) => -1,
    }
}

/// `pipe(fds)`.
pub fn pipe(tf: &TrapFrame) -> i64 {
    let fdarray = arg(tf, 0);
    let Some(pi) = crate::fs::pipe::Pipe::alloc() else {
        return -1;
    };
    let rf = match file::alloc(Kind::Pipe(pi), true, false) {
        Ok(f) => f,
        Err(_) => {
            pi.close(false);
            pi.close(true);
            return -1;
        }
    };
    let wf = match file::alloc(Kind::Pipe(pi), false, true) {
        Ok(f) => f,
        Err(_) => {
            rf.close();
            pi.close(true);
            return -1;
        }
    };
    let fd0 = match fd_alloc(rf) {
        Ok(fd) => fd,
        Err(rf) => {
            rf.close();
            wf.close();
            return -1;
        }
    };
    let fd1 = match fd_alloc(wf) {
        Ok(fd) => fd,
        Err(wf) => {
            if let Some(rf) = proc::myproc().ofile[fd0 as usize].take() {
                rf.close();
            }
            wf.close();
            return -1;
        }
    };
    let mut b = [0u8; 8];
    b[0..4].copy_from_slice(&fd0.to_le_bytes());
    b[4..8].copy_from_slice(&fd1.to_le_bytes());
    if copy_out(fdarray, &b).is_err() {
        let p = proc::myproc();
        for fd in [fd0, fd1] {
            if let Some(f) = p.ofile[fd as usize].take() {
                f.close();
            }
        }
        return -1;
    }
    0
}
