//! The user-visible contract of the xv6 reference kernel, defined once for the kernel, the user
//! library, C programs and the host tools (mkfs, fsck).
//!
//! Everything here is plain data: numbers, flag values, `#[repr(C)]` structures and the on-disk
//! layout. It builds on the host, so the tools and the tests use the very definitions the kernel
//! uses. The contract follows MIT xv6's user API (RISC-V release) moved to x86_64; see
//! `docs/ABI.md` in the repository for the prose version.
#![no_std]
#![forbid(unsafe_code)]

pub mod fs;
pub mod layout;
pub mod syscall;

pub use syscall::Sysno;

/// Size of a page and of the unit of `mmap`, `munmap` and `sbrk` rounding.
pub const PAGE_SIZE: usize = 4096;

/// Limits shared by the kernel and user programs (at least xv6's).
pub mod param {
    /// Maximum number of processes.
    pub const NPROC: usize = 64;
    /// Maximum number of CPUs the kernel starts.
    pub const NCPU: usize = 8;
    /// Open files per process.
    pub const NOFILE: usize = 16;
    /// Open files in the whole system.
    pub const NFILE: usize = 100;
    /// Maximum number of `exec` arguments.
    pub const MAXARG: usize = 32;
    /// Maximum length of a path name, including the terminating zero.
    pub const MAXPATH: usize = 128;
    /// Maximum number of mmap regions one process may hold.
    pub const NMMAP: usize = 64;
    /// Kernel-heap bytes one process may hold at once through the `kmalloc` system call.
    pub const KMALLOC_CAP: usize = 64 * 1024;
    /// Timer ticks per second (a tick is 10 ms).
    pub const HZ: u64 = 100;
    /// Longest kernel command line (QEMU's `-append`, run by `init`), in bytes.
    pub const MAX_CMDLINE: usize = 512;
}

/// `open` flags.
pub mod fcntl {
    pub const O_RDONLY: i32 = 0x000;
    pub const O_WRONLY: i32 = 0x001;
    pub const O_RDWR: i32 = 0x002;
    pub const O_CREATE: i32 = 0x200;
    pub const O_TRUNC: i32 = 0x400;
}

/// `mmap` protection and flags, `msync` flags (values as on Linux).
pub mod mman {
    pub const PROT_NONE: i32 = 0;
    pub const PROT_READ: i32 = 1;
    pub const PROT_WRITE: i32 = 2;
    pub const PROT_EXEC: i32 = 4;
    pub const MAP_SHARED: i32 = 0x01;
    pub const MAP_PRIVATE: i32 = 0x02;
    pub const MAP_FIXED: i32 = 0x10;
    pub const MAP_ANONYMOUS: i32 = 0x20;
    pub const MS_ASYNC: i32 = 1;
    pub const MS_INVALIDATE: i32 = 2;
    pub const MS_SYNC: i32 = 4;
    /// What `mmap` returns on failure: `(void *)-1`.
    pub const MAP_FAILED: usize = usize::MAX;
}

/// File types in [`Stat::typ`] and in on-disk inodes.
pub mod stat {
    pub const T_DIR: i16 = 1;
    pub const T_FILE: i16 = 2;
    pub const T_DEVICE: i16 = 3;
}

/// Major device number of the console.
pub const CONSOLE_MAJOR: i16 = 1;

/// `struct stat` as gcc lays it out for x86_64 (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    /// File system's disk device.
    pub dev: i32,
    /// Inode number.
    pub ino: u32,
    /// `T_DIR`, `T_FILE` or `T_DEVICE`.
    pub typ: i16,
    /// Number of links to the file.
    pub nlink: i16,
    /// Size of the file in bytes.
    pub size: u64,
}

/// Maximum length of a directory entry's name.
pub const DIRSIZ: usize = 14;

/// `struct dirent` (16 bytes): also the on-disk directory entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dirent {
    /// Inode number; 0 marks a free entry.
    pub inum: u16,
    /// Name, zero-padded, not necessarily zero-terminated when 14 bytes long.
    pub name: [u8; DIRSIZ],
}

impl Dirent {
    /// The name up to its first zero byte.
    pub fn name_bytes(&self) -> &[u8] {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(DIRSIZ);
        &self.name[..end]
    }
}

/// What the `meminfo` system call (27) fills in: the kernel's memory use, so tests can prove that
/// nothing leaks.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemInfo {
    /// Physical frames managed by the kernel's frame allocator.
    pub total_frames: u64,
    /// Of those, frames free now.
    pub free_frames: u64,
    /// Bytes of the kernel heap (kmalloc) in use now.
    pub kheap_in_use: u64,
    /// Pages the kernel heap holds from the frame allocator.
    pub kheap_pages: u64,
    /// Processes in existence (any state but unused).
    pub nproc: u64,
}

const _: () = assert!(core::mem::size_of::<Stat>() == 24);
const _: () = assert!(core::mem::size_of::<Dirent>() == 16);
const _: () = assert!(core::mem::size_of::<MemInfo>() == 40);
