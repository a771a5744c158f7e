//! mkfs: builds an xv6 file-system image.
//!
//! The layout is the one MIT xv6's `mkfs` produces (see `xv6_abi::fs`), with a larger log (255
//! blocks) on images of 4096 blocks or more:
//!
//! ```text
//! [ boot | super | log header + log blocks | inodes (ninodes/IPB + 1) | bitmap (size/BPB + 1) | data ]
//! ```
//!
//! The root directory (inode 1) holds `.`, `..` and one entry per file; the files get inodes
//! 2, 3, ... in the order given, and data blocks are handed out in order from the first data
//! block (the root directory's blocks first). The image is built in memory and written in one
//! go to a temporary file that is then renamed, so a failure never leaves a half-written image.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use xv6_abi::fs::{
    encode_dirent, DiskInode, SuperBlock, BPB, BSIZE, DIRENT_SIZE, FSMAGIC, IPB, LOGBLOCKS,
    MAXFILE, NDIRECT, NINDIRECT, ROOTINO,
};
use xv6_abi::stat::{T_DIR, T_FILE};
use xv6_abi::{Dirent, DIRSIZ};

/// Largest image `mkfs` builds, in blocks (1 GiB): the image is built in memory.
pub const MAX_IMAGE_BLOCKS: u32 = 1 << 20;

/// What goes into an image.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    /// Size of the image in blocks of [`BSIZE`] bytes.
    pub size_blocks: u32,
    /// Number of inodes (inode numbers `1..ninodes` are usable; inode 0 is never used).
    pub ninodes: u32,
    /// `(name in the root directory, host file to copy)`.
    pub files: Vec<(String, PathBuf)>,
}

/// Builds the image described by `spec` at `out`. Returns a one-line summary such as
/// `8192 blocks, 23 files, 1234 data blocks used, 400 inodes (24 used)`.
pub fn make_image(out: &Path, spec: &ImageSpec) -> Result<String, String> {
    // Cheap checks first, so a bad name or a huge file is reported before anything is read.
    layout(spec.size_blocks, spec.ninodes)?;
    check_names(spec.files.iter().map(|(n, _)| n.as_str()))?;
    let mut contents = Vec::with_capacity(spec.files.len());
    for (name, path) in &spec.files {
        let len = std::fs::metadata(path)
            .map_err(|e| format!("cannot read `{name}` from {}: {e}", path.display()))?
            .len();
        check_file_size(name, len)?;
        let data = std::fs::read(path)
            .map_err(|e| format!("cannot read `{name}` from {}: {e}", path.display()))?;
        check_file_size(name, data.len() as u64)?;
        contents.push((name.clone(), data));
    }
    let img = build(spec.size_blocks, spec.ninodes, &contents)?;
    write_atomically(out, &img)?;
    let data_blocks_used: usize = blocks_for(root_dir_len(contents.len()))
        + contents
            .iter()
            .map(|(_, d)| blocks_for(d.len()))
            .sum::<usize>();
    Ok(format!(
        "{} blocks, {} files, {data_blocks_used} data blocks used, {} inodes ({} used)",
        spec.size_blocks,
        contents.len(),
        spec.ninodes,
        contents.len() + 1
    ))
}

/// Builds an image in memory: `size_blocks` blocks, `ninodes` inodes, and `files` as
/// `(name, contents)` in the root directory.
pub fn build(
    size_blocks: u32,
    ninodes: u32,
    files: &[(String, Vec<u8>)],
) -> Result<Vec<u8>, String> {
    let sb = layout(size_blocks, ninodes)?;
    check_names(files.iter().map(|(n, _)| n.as_str()))?;
    for (name, data) in files {
        check_file_size(name, data.len() as u64)?;
    }
    // Usable inode numbers are 1..ninodes; the root takes 1.
    let usable = ninodes - 1;
    if files.len() as u64 + 1 > u64::from(usable) {
        return Err(format!(
            "too many files: {} files and the root directory need {} inodes, but an image with \
             {ninodes} inodes has only {usable} usable (inode 0 is never used)",
            files.len(),
            files.len() + 1
        ));
    }
    if root_dir_len(files.len()) > MAXFILE * BSIZE {
        return Err(format!(
            "too many files: the root directory would be {} bytes, more than the largest xv6 \
             file ({} bytes)",
            root_dir_len(files.len()),
            MAXFILE * BSIZE
        ));
    }

    let mut b = Builder {
        img: vec![0u8; size_blocks as usize * BSIZE],
        sb,
        next_block: sb.data_start(),
    };
    let mut sbblock = [0u8; BSIZE];
    sb.encode(&mut sbblock);
    b.block_mut(1).copy_from_slice(&sbblock);
    // The log header (block logstart) stays zero: no pending transaction.

    // The root directory: `.`, `..` (the root is its own parent), then one entry per file.
    let mut dir = Vec::with_capacity(root_dir_len(files.len()));
    let mut push = |inum: u32, name: &[u8]| {
        let mut d = Dirent {
            inum: inum as u16,
            name: [0; DIRSIZ],
        };
        d.name[..name.len()].copy_from_slice(name);
        let mut raw = [0u8; DIRENT_SIZE];
        encode_dirent(&d, &mut raw);
        dir.extend_from_slice(&raw);
    };
    push(ROOTINO, b".");
    push(ROOTINO, b"..");
    for (i, (name, _)) in files.iter().enumerate() {
        push(ROOTINO + 1 + i as u32, name.as_bytes());
    }
    // nlink counts the directory entries naming the inode, "." excepted (see fsck.rs): the
    // root's own ".." is its one link; each file has its entry in the root.
    b.write_inode_data(ROOTINO, T_DIR, &dir, "the root directory")?;
    for (i, (name, data)) in files.iter().enumerate() {
        let shown = format!("file \"{}\"", name.escape_debug());
        b.write_inode_data(ROOTINO + 1 + i as u32, T_FILE, data, &shown)?;
    }

    // Mark the metadata and every allocated data block: blocks 0..next_block, contiguous.
    let bmap = sb.bmapstart as usize * BSIZE;
    for blk in 0..b.next_block as usize {
        b.img[bmap + blk / 8] |= 1 << (blk % 8);
    }
    Ok(b.img)
}

/// Bytes of a root directory holding `nfiles` files besides `.` and `..`.
fn root_dir_len(nfiles: usize) -> usize {
    (nfiles + 2) * DIRENT_SIZE
}

/// Data blocks a file of `len` bytes takes, its indirect block included.
fn blocks_for(len: usize) -> usize {
    let n = len.div_ceil(BSIZE);
    n + usize::from(n > NDIRECT)
}

/// Images of at least this many blocks get the largest log ([`LOGBLOCKS`] data blocks, so the
/// kernel's group commit gathers up to 255 blocks); smaller ones xv6's 30, as xv6's mkfs lays
/// them out.
pub const BIG_LOG_FROM_BLOCKS: u32 = 4096;

/// The log area (header and data blocks) for an image of `size_blocks` blocks.
fn log_blocks(size_blocks: u32) -> u32 {
    if size_blocks >= BIG_LOG_FROM_BLOCKS {
        LOGBLOCKS as u32 + 1
    } else {
        31
    }
}

/// The superblock `mkfs` writes for an image of `size_blocks` blocks and `ninodes` inodes, laid
/// out as xv6's mkfs does; an error if the numbers cannot make a usable file system.
pub fn layout(size_blocks: u32, ninodes: u32) -> Result<SuperBlock, String> {
    if size_blocks > MAX_IMAGE_BLOCKS {
        return Err(format!(
            "image of {size_blocks} blocks is too large (at most {MAX_IMAGE_BLOCKS} blocks)"
        ));
    }
    if ninodes < 2 {
        return Err(format!(
            "{ninodes} inodes is too few (inode 0 is unused and inode 1 is the root directory)"
        ));
    }
    if ninodes > u32::from(u16::MAX) + 1 {
        return Err(format!(
            "{ninodes} inodes is too many: directory entries hold 16-bit inode numbers (at most {})",
            u32::from(u16::MAX) + 1
        ));
    }
    let nlog = log_blocks(size_blocks);
    let ninodeblocks = ninodes / IPB + 1;
    let nbitmap = size_blocks / BPB + 1;
    let nmeta = 2 + nlog + ninodeblocks + nbitmap;
    if nmeta >= size_blocks {
        return Err(format!(
            "image of {size_blocks} blocks is too small: the boot block, superblock, log, \
             inodes and bitmap alone take {nmeta} blocks"
        ));
    }
    let sb = SuperBlock {
        magic: FSMAGIC,
        size: size_blocks,
        nblocks: size_blocks - nmeta,
        ninodes,
        nlog,
        logstart: 2,
        inodestart: 2 + nlog,
        bmapstart: 2 + nlog + ninodeblocks,
    };
    sb.validate()
        .map_err(|e| format!("internal error: mkfs made an invalid superblock: {e}"))?;
    Ok(sb)
}

/// Checks that `name` can be an entry of the root directory: 1 to [`DIRSIZ`] bytes, no `/`, no
/// NUL, and not `.` or `..`.
pub fn check_name(name: &str) -> Result<(), String> {
    let shown = name.escape_debug();
    if name.is_empty() {
        return Err("a file has an empty name".into());
    }
    if name.len() > DIRSIZ {
        return Err(format!(
            "file name \"{shown}\" is {} bytes; xv6 names are at most {DIRSIZ} bytes",
            name.len()
        ));
    }
    if name.contains('/') {
        return Err(format!("file name \"{shown}\" contains `/`"));
    }
    if name.contains('\0') {
        return Err(format!("file name \"{shown}\" contains a NUL byte"));
    }
    if name == "." || name == ".." {
        return Err(format!(
            "file name \"{shown}\" is reserved for the directory's own entries"
        ));
    }
    Ok(())
}

fn check_names<'a>(names: impl Iterator<Item = &'a str>) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for name in names {
        check_name(name)?;
        if !seen.insert(name) {
            return Err(format!(
                "two files are called \"{}\" in the root directory",
                name.escape_debug()
            ));
        }
    }
    Ok(())
}

fn check_file_size(name: &str, len: u64) -> Result<(), String> {
    let max = (MAXFILE * BSIZE) as u64;
    if len > max {
        return Err(format!(
            "file \"{}\" is {len} bytes; the largest xv6 file is {max} bytes ({MAXFILE} blocks)",
            name.escape_debug()
        ));
    }
    Ok(())
}

struct Builder {
    img: Vec<u8>,
    sb: SuperBlock,
    next_block: u32,
}

impl Builder {
    fn block_mut(&mut self, blk: u32) -> &mut [u8] {
        let at = blk as usize * BSIZE;
        &mut self.img[at..at + BSIZE]
    }

    /// Writes `data` into fresh data blocks (direct ones, then the indirect block and the
    /// blocks it lists, in the order xv6 allocates them) and writes inode `inum`.
    fn write_inode_data(
        &mut self,
        inum: u32,
        typ: i16,
        data: &[u8],
        what: &str,
    ) -> Result<(), String> {
        debug_assert!(data.len() <= MAXFILE * BSIZE);
        let need = blocks_for(data.len());
        let left = (self.sb.size - self.next_block) as usize;
        if need > left {
            return Err(format!(
                "image full: {what} needs {need} data blocks but only {left} of {} are left \
                 (make the image larger than {} blocks)",
                self.sb.nblocks, self.sb.size
            ));
        }
        let mut din = DiskInode {
            typ,
            nlink: 1,
            size: data.len() as u32,
            ..DiskInode::default()
        };
        let mut indirect = [0u8; BSIZE];
        for (k, chunk) in data.chunks(BSIZE).enumerate() {
            if k == NDIRECT {
                din.addrs[NDIRECT] = self.alloc();
            }
            let blk = self.alloc();
            self.block_mut(blk)[..chunk.len()].copy_from_slice(chunk);
            if k < NDIRECT {
                din.addrs[k] = blk;
            } else {
                let slot = k - NDIRECT;
                debug_assert!(slot < NINDIRECT);
                indirect[slot * 4..slot * 4 + 4].copy_from_slice(&blk.to_le_bytes());
            }
        }
        if din.addrs[NDIRECT] != 0 {
            let ind = din.addrs[NDIRECT];
            self.block_mut(ind).copy_from_slice(&indirect);
        }
        let iblock = self.sb.iblock(inum);
        din.encode_into_block(self.block_mut(iblock), inum);
        Ok(())
    }

    fn alloc(&mut self) -> u32 {
        let b = self.next_block;
        self.next_block += 1;
        b
    }
}

fn write_atomically(out: &Path, img: &[u8]) -> Result<(), String> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let file_name = out
        .file_name()
        .ok_or_else(|| format!("{} is not a file name", out.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = out.with_file_name(tmp_name);
    let result = std::fs::write(&tmp, img)
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))
        .and_then(|()| {
            std::fs::rename(&tmp, out)
                .map_err(|e| format!("cannot rename {} to {}: {e}", tmp.display(), out.display()))
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use xv6_abi::fs::decode_dirent;

    /// Deterministic bytes for file contents.
    pub(crate) fn pattern(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn block(img: &[u8], b: u32) -> &[u8] {
        &img[b as usize * BSIZE..(b as usize + 1) * BSIZE]
    }

    fn inode(img: &[u8], inum: u32) -> DiskInode {
        let sb = SuperBlock::decode(block(img, 1)).unwrap();
        DiskInode::decode_from_block(block(img, sb.iblock(inum)), inum).unwrap()
    }

    /// A tiny independent reader: the bytes of inode `inum`, direct and indirect blocks.
    fn read_inode(img: &[u8], inum: u32) -> Vec<u8> {
        let din = inode(img, inum);
        let size = din.size as usize;
        let mut out = Vec::with_capacity(size);
        for k in 0..size.div_ceil(BSIZE) {
            let addr = if k < NDIRECT {
                din.addrs[k]
            } else {
                let ind = block(img, din.addrs[NDIRECT]);
                let s = (k - NDIRECT) * 4;
                u32::from_le_bytes(ind[s..s + 4].try_into().unwrap())
            };
            assert_ne!(addr, 0, "hole in inode {inum}");
            let n = (size - k * BSIZE).min(BSIZE);
            out.extend_from_slice(&block(img, addr)[..n]);
        }
        out
    }

    fn root_entries(img: &[u8]) -> Vec<(Vec<u8>, u32)> {
        read_inode(img, ROOTINO)
            .chunks(DIRENT_SIZE)
            .map(|c| {
                let d = decode_dirent(c).unwrap();
                (d.name_bytes().to_vec(), u32::from(d.inum))
            })
            .collect()
    }

    fn files(list: &[(&str, usize)]) -> Vec<(String, Vec<u8>)> {
        list.iter()
            .enumerate()
            .map(|(i, (n, len))| (n.to_string(), pattern(*len, i as u64 + 1)))
            .collect()
    }

    fn assert_clean(img: &[u8]) {
        let r = crate::fsck::check_bytes(img).unwrap();
        assert!(r.problems.is_empty(), "{r}");
        assert!(r.notes.is_empty(), "{r}");
    }

    #[test]
    fn layout_matches_xv6() {
        // xv6's mkfs with FSSIZE 2000 and NINODES 200.
        let sb = layout(2000, 200).unwrap();
        assert_eq!(
            (sb.nlog, sb.logstart, sb.inodestart, sb.bmapstart),
            (31, 2, 33, 46)
        );
        assert_eq!(sb.data_start(), 47);
        // Large images get the largest log the header can describe.
        let big = layout(8192, 400).unwrap();
        assert_eq!((big.nlog, big.inodestart), (LOGBLOCKS as u32 + 1, 2 + 256));
        assert_eq!(sb.nblocks, 2000 - 47);
        assert!(layout(40, 200).is_err());
        assert!(layout(2000, 1).is_err());
        assert!(layout(2000, 70_000).is_err());
    }

    #[test]
    fn round_trip_and_clean() {
        let list = [
            ("empty", 0),
            ("one", 1),
            ("block", BSIZE),
            ("indirect", NDIRECT * BSIZE + 1),
            ("biggest", MAXFILE * BSIZE),
            ("fourteen_bytes", 100),
        ];
        let fs = files(&list);
        let img = build(1000, 32, &fs).unwrap();
        assert_eq!(img.len(), 1000 * BSIZE);
        let ents = root_entries(&img);
        assert_eq!(ents.len(), fs.len() + 2);
        assert_eq!(ents[0], (b".".to_vec(), ROOTINO));
        assert_eq!(ents[1], (b"..".to_vec(), ROOTINO));
        for (name, data) in &fs {
            let inum = ents
                .iter()
                .find(|(n, _)| n == name.as_bytes())
                .map(|e| e.1)
                .unwrap();
            let din = inode(&img, inum);
            assert_eq!((din.typ, din.nlink), (T_FILE, 1));
            assert_eq!(&read_inode(&img, inum), data, "{name}");
        }
        assert_eq!(inode(&img, ROOTINO).typ, T_DIR);
        assert_clean(&img);
    }

    #[test]
    fn empty_image_is_clean() {
        let img = build(100, 16, &[]).unwrap();
        assert_clean(&img);
        assert_eq!(root_entries(&img).len(), 2);
    }

    #[test]
    fn refuses_bad_input() {
        let too_big = build(1000, 32, &files(&[("huge", MAXFILE * BSIZE + 1)])).unwrap_err();
        assert!(
            too_big.contains("\"huge\"") && too_big.contains("largest"),
            "{too_big}"
        );
        let dup = build(1000, 32, &files(&[("a", 1), ("b", 1), ("a", 2)])).unwrap_err();
        assert!(dup.contains("two files") && dup.contains("\"a\""), "{dup}");
        for bad in ["", ".", "..", "a/b", "a\0b", "fifteen_bytes__"] {
            let e = build(1000, 32, &files(&[(bad, 1)])).unwrap_err();
            assert!(e.contains("name"), "{bad:?}: {e}");
        }
        // 8 inodes: 0 unused, 1 root, so 6 files fit and 7 do not.
        let six: Vec<_> = (0..6).map(|i| (format!("f{i}"), 10)).collect();
        let six: Vec<_> = six.iter().map(|(n, l)| (n.as_str(), *l)).collect();
        assert_clean(&build(200, 8, &files(&six)).unwrap());
        let seven: Vec<_> = (0..7).map(|i| (format!("f{i}"), 10)).collect();
        let seven: Vec<_> = seven.iter().map(|(n, l)| (n.as_str(), *l)).collect();
        let e = build(200, 8, &files(&seven)).unwrap_err();
        assert!(e.contains("too many files"), "{e}");
        // Out of data blocks: names the file that did not fit.
        let e = build(100, 16, &files(&[("small", 10), ("large", 80 * BSIZE)])).unwrap_err();
        assert!(e.contains("image full") && e.contains("\"large\""), "{e}");
    }

    #[test]
    fn make_image_writes_whole_file() {
        let dir = std::env::temp_dir().join(format!("xv6-mkfs-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("hello.txt");
        std::fs::write(&src, b"hello, xv6\n").unwrap();
        let out = dir.join("out/fs.img");
        let spec = ImageSpec {
            size_blocks: 300,
            ninodes: 32,
            files: vec![("hello".into(), src.clone())],
        };
        let summary = make_image(&out, &spec).unwrap();
        assert_eq!(
            summary,
            "300 blocks, 1 files, 2 data blocks used, 32 inodes (2 used)"
        );
        let img = std::fs::read(&out).unwrap();
        assert_clean(&img);
        assert_eq!(root_entries(&img)[2], (b"hello".to_vec(), 2));
        assert_eq!(read_inode(&img, 2), b"hello, xv6\n");
        // A missing input is an error and leaves the old image alone, with no temp file.
        let bad = ImageSpec {
            files: vec![("gone".into(), dir.join("missing"))],
            ..spec
        };
        let e = make_image(&out, &bad).unwrap_err();
        assert!(e.contains("gone"), "{e}");
        assert_eq!(std::fs::read(&out).unwrap(), img);
        let names: Vec<_> = std::fs::read_dir(dir.join("out"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("fs.img")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
