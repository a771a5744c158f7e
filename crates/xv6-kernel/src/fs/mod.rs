//! Layer 5, fs: the file system as xv6 stacks it, lowest first: the disk driver (`ide`), the
//! buffer cache (`bio`), the log (`log`), inodes and file contents (`fs`), directories and path names (`dir`), open files
//! (`file`), and pipes (`pipe`). Imports `arch`, `sync`, `dev` and `mm`.

pub mod bio;
pub mod dir;
pub mod file;
#[allow(clippy::module_inception)] // xv6's fs.c, under its own name
pub mod fs;
pub mod ide;
pub mod log;
pub mod pipe;
