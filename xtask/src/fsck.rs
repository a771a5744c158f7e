//! fsck: checks an xv6 file-system image without changing it.
//!
//! It decodes the superblock, then checks the log header, every inode, the blocks the inodes
//! use, the free bitmap, the directory tree from the root, and the link counts. Every index
//! into the image is bounded: a corrupted image gives findings, never a panic.
//!
//! Link counts follow xv6 (`mkfs/mkfs.c`, `create()` and `sys_unlink()` in
//! `kernel/sysfile.c`): a new inode gets `nlink = 1` for the entry naming it; a new directory's
//! `.` is *not* counted ("avoid cyclic ref count") while its `..` adds one to the parent's
//! `nlink`; mkfs gives the root `nlink = 1`, which is its own `..`. So the rule checked here is:
//! `nlink` equals the number of directory entries that refer to the inode, `.` entries
//! excepted (the root's `..`, which refers to the root, counts).
use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::path::Path;
use xv6_abi::fs::{
    decode_dirent, DiskInode, LayoutError, LogHeader, SuperBlock, BPB, BSIZE, DIRENT_SIZE, IPB,
    MAXFILE, NDIRECT, NINDIRECT, ROOTINO,
};
use xv6_abi::stat::{T_DEVICE, T_DIR, T_FILE};

/// What `fsck` found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FsckReport {
    /// Inconsistencies, one sentence each; empty when the image is clean.
    pub problems: Vec<String>,
    /// Remarks that are not errors (a pending log transaction, holes in files, ...).
    pub notes: Vec<String>,
    /// Size of the file system in blocks (from the superblock).
    pub size: u32,
    /// Number of inodes (from the superblock).
    pub ninodes: u32,
    /// Blocks in the data area.
    pub data_blocks: u32,
    /// Data-area blocks some inode uses.
    pub data_blocks_used: u32,
    /// Directories (allocated inodes of type `T_DIR`).
    pub dirs: u32,
    /// Regular files.
    pub files: u32,
    /// Device inodes.
    pub devices: u32,
}

impl FsckReport {
    /// Allocated inodes of a valid type.
    pub fn inodes_used(&self) -> u32 {
        self.dirs + self.files + self.devices
    }
}

impl fmt::Display for FsckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "xv6 file system: {} blocks ({} data, {} used), {} inodes ({} used: {} directories, \
             {} files, {} devices)",
            self.size,
            self.data_blocks,
            self.data_blocks_used,
            self.ninodes,
            self.inodes_used(),
            self.dirs,
            self.files,
            self.devices
        )?;
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        if self.problems.is_empty() {
            write!(f, "clean")
        } else {
            write!(f, "{} problem(s):", self.problems.len())?;
            for p in &self.problems {
                write!(f, "\n  {p}")?;
            }
            Ok(())
        }
    }
}

/// Checks the image file at `p`. `Err` only when it cannot be read or is not an xv6 file
/// system at all (too short, bad magic, invalid superblock); inconsistencies are in the report.
pub fn check_image(p: &Path) -> Result<FsckReport, String> {
    let img = std::fs::read(p).map_err(|e| format!("cannot read the image: {e}"))?;
    check_bytes(&img)
}

/// Checks an image held in memory; see [`check_image`].
pub fn check_bytes(img: &[u8]) -> Result<FsckReport, String> {
    if img.len() < 2 * BSIZE {
        return Err(format!(
            "image is {} bytes: too short to hold a superblock (an xv6 image has at least 2 \
             blocks of {BSIZE} bytes)",
            img.len()
        ));
    }
    let sb = SuperBlock::decode(&img[BSIZE..2 * BSIZE]).map_err(|e| match e {
        LayoutError::BadGeometry(why) => format!("invalid superblock: {why}"),
        other => format!("invalid superblock: {other}"),
    })?;
    Ok(Checker::new(img, sb).run())
}

static ZERO_BLOCK: [u8; BSIZE] = [0; BSIZE];

/// Who uses a data block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Use {
    inum: u32,
    /// Index of the block in the file, or `None` for the indirect block itself.
    index: Option<usize>,
}

impl fmt::Display for Use {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(k) => write!(f, "inode {} (file block {k})", self.inum),
            None => write!(f, "inode {} (its indirect block)", self.inum),
        }
    }
}

struct Checker<'a> {
    img: &'a [u8],
    sb: SuperBlock,
    /// Blocks present in the image and inside the file system: `min(size, image blocks)`.
    limit: u32,
    data_start: u32,
    /// Inodes whose slot lies inside the image (`<= ninodes`).
    ninodes_seen: u32,
    inodes: Vec<DiskInode>,
    /// For each block below `limit`: the first inode block reference that claimed it.
    owner: Vec<Option<Use>>,
    /// For each directory inode: its valid block addresses, by file block index (0 when
    /// none or invalid); empty for other inodes.
    addrs: Vec<Vec<u32>>,
    /// For each inode: the first path found for it in the tree walk.
    paths: Vec<Option<String>>,
    /// Whether the root is a directory, so that the tree was walked.
    walked: bool,
    report: FsckReport,
}

fn type_name(t: i16) -> &'static str {
    match t {
        T_DIR => "directory",
        T_FILE => "file",
        T_DEVICE => "device",
        _ => "invalid",
    }
}

fn valid_type(t: i16) -> bool {
    matches!(t, T_DIR | T_FILE | T_DEVICE)
}

/// `5, 7-9, 12` for a sorted list of block numbers.
fn ranges(v: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let start = v[i];
        let mut end = start;
        while i + 1 < v.len() && v[i + 1] == end.wrapping_add(1) {
            end = v[i + 1];
            i += 1;
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(", ")
}

fn shown(name: &[u8]) -> String {
    name.escape_ascii().to_string()
}

fn join(dir: &str, name: &[u8]) -> String {
    if dir == "/" {
        format!("/{}", shown(name))
    } else {
        format!("{dir}/{}", shown(name))
    }
}

impl<'a> Checker<'a> {
    fn new(img: &'a [u8], sb: SuperBlock) -> Checker<'a> {
        let img_blocks = u32::try_from(img.len() / BSIZE).unwrap_or(u32::MAX);
        let limit = sb.size.min(img_blocks);
        let ninodes_seen = if img_blocks <= sb.inodestart {
            0
        } else {
            let in_image = u64::from(img_blocks - sb.inodestart) * u64::from(IPB);
            u64::from(sb.ninodes).min(in_image) as u32
        };
        let data_start = sb.data_start();
        Checker {
            img,
            sb,
            limit,
            data_start,
            ninodes_seen,
            inodes: Vec::new(),
            owner: vec![None; limit as usize],
            addrs: Vec::new(),
            paths: Vec::new(),
            walked: false,
            report: FsckReport {
                size: sb.size,
                ninodes: sb.ninodes,
                data_blocks: sb.size - data_start,
                ..FsckReport::default()
            },
        }
    }

    fn problem(&mut self, s: String) {
        self.report.problems.push(s);
    }

    fn note(&mut self, s: String) {
        self.report.notes.push(s);
    }

    /// Block `b`, or zeros when it lies past the end of the image.
    fn block(&self, b: u32) -> &'a [u8] {
        let start = b as usize * BSIZE;
        self.img
            .get(start..start.saturating_add(BSIZE))
            .unwrap_or(&ZERO_BLOCK)
    }

    fn run(mut self) -> FsckReport {
        self.check_length();
        self.check_log();
        self.load_inodes();
        self.check_inodes();
        self.check_bitmap();
        let refs = self.walk_tree();
        self.check_links(&refs);
        self.report.data_blocks_used = self.owner[self.data_start.min(self.limit) as usize..]
            .iter()
            .filter(|o| o.is_some())
            .count() as u32;
        self.report
    }

    fn check_length(&mut self) {
        let want = u64::from(self.sb.size) * BSIZE as u64;
        let have = self.img.len() as u64;
        if have < want {
            self.problem(format!(
                "image is truncated: {have} bytes, but the superblock says {} blocks ({want} \
                 bytes); blocks {}.. are missing and read as zeros",
                self.sb.size,
                have / BSIZE as u64
            ));
        } else if have > want {
            self.note(format!(
                "image is {have} bytes, longer than the file system ({want} bytes); the rest \
                 is ignored"
            ));
        }
        let expect_nblocks = self.sb.size - self.data_start;
        if self.sb.nblocks != expect_nblocks {
            self.note(format!(
                "superblock says nblocks {} but the data area holds {expect_nblocks} blocks",
                self.sb.nblocks
            ));
        }
    }

    fn check_log(&mut self) {
        let capacity = self.sb.nlog as usize - 1;
        match LogHeader::decode(self.block(self.sb.logstart), capacity) {
            Err(_) => {
                let n = u32::from_le_bytes(
                    self.block(self.sb.logstart)[..4]
                        .try_into()
                        .unwrap_or([0; 4]),
                );
                self.problem(format!(
                    "log header (block {}) claims {n} logged blocks but the log holds at most {}",
                    self.sb.logstart,
                    capacity.min(xv6_abi::fs::LOGBLOCKS)
                ));
            }
            Ok(h) if h.n == 0 => {}
            Ok(h) => {
                let homes = &h.block[..h.n as usize];
                let mut sorted = homes.to_vec();
                sorted.sort_unstable();
                self.note(format!(
                    "the log holds a committed transaction of {} blocks (home blocks {}); the \
                     kernel replays it at the next mount, and the checks here describe the \
                     image before that",
                    h.n,
                    ranges(&sorted)
                ));
                for (i, &home) in homes.iter().enumerate() {
                    if home < self.sb.inodestart || home >= self.sb.size {
                        self.problem(format!(
                            "log header entry {i} names block {home}, outside the inode, bitmap \
                             and data areas ({}..{})",
                            self.sb.inodestart, self.sb.size
                        ));
                    }
                }
            }
        }
    }

    fn load_inodes(&mut self) {
        if self.ninodes_seen < self.sb.ninodes {
            let first = self.ninodes_seen;
            self.problem(format!(
                "inodes {first}..{} lie past the end of the image and were not checked",
                self.sb.ninodes
            ));
        }
        let mut inodes = Vec::with_capacity(self.ninodes_seen as usize);
        for inum in 0..self.ninodes_seen {
            let blk = self.block(self.sb.iblock(inum));
            inodes.push(DiskInode::decode_from_block(blk, inum).unwrap_or_default());
        }
        self.inodes = inodes;
    }

    /// Where `addr` may not be used as a data block, or `None` when it may.
    fn bad_addr(&self, addr: u32) -> Option<String> {
        if addr >= self.sb.size {
            Some(format!(
                "past the end of the file system ({} blocks)",
                self.sb.size
            ))
        } else if addr < self.data_start {
            Some(format!(
                "outside the data area ({}..{}), in the metadata",
                self.data_start, self.sb.size
            ))
        } else if addr >= self.limit {
            Some("past the end of the truncated image".into())
        } else {
            None
        }
    }

    /// Records that `u` uses block `addr` (already known to be below `limit`).
    fn claim(&mut self, addr: u32, u: Use) {
        match self.owner[addr as usize] {
            None => self.owner[addr as usize] = Some(u),
            Some(prev) => {
                let how = if prev.inum == u.inum {
                    format!("twice by inode {}: as {prev} and as {u}", u.inum)
                } else {
                    format!("by {prev} and by {u}")
                };
                self.problem(format!("block {addr} is used twice, {how}"));
            }
        }
    }

    fn check_inodes(&mut self) {
        self.addrs = vec![Vec::new(); self.inodes.len()];
        for inum in 0..self.inodes.len() as u32 {
            let din = self.inodes[inum as usize];
            if din.typ == 0 {
                continue;
            }
            if inum == 0 {
                self.problem(format!(
                    "inode 0 is in use (type {}); xv6 never allocates inode 0",
                    din.typ
                ));
                continue;
            }
            if !valid_type(din.typ) {
                self.problem(format!(
                    "inode {inum} has invalid type {} (valid: 0 free, 1 directory, 2 file, 3 \
                     device)",
                    din.typ
                ));
                continue;
            }
            match din.typ {
                T_DIR => self.report.dirs += 1,
                T_FILE => self.report.files += 1,
                _ => self.report.devices += 1,
            }
            self.check_inode_blocks(inum, &din);
        }
    }

    fn check_inode_blocks(&mut self, inum: u32, din: &DiskInode) {
        let max = (MAXFILE * BSIZE) as u64;
        let size = u64::from(din.size);
        if size > max {
            self.problem(format!(
                "inode {inum} has size {size} bytes, more than the largest xv6 file ({max} bytes)"
            ));
        }
        let needed = (size.div_ceil(BSIZE as u64) as usize).min(MAXFILE);
        let mut addrs = vec![0u32; MAXFILE];
        let mut past_size: Vec<usize> = Vec::new();
        // Block `k` of the file is at address `a` (valid): the inode uses it.
        let mut take = |fsck: &mut Self, k: usize, a: u32| {
            fsck.claim(
                a,
                Use {
                    inum,
                    index: Some(k),
                },
            );
            addrs[k] = a;
            if k >= needed {
                past_size.push(k);
            }
        };

        for (k, &a) in din.addrs[..NDIRECT].iter().enumerate() {
            if a == 0 {
                continue;
            }
            if let Some(why) = self.bad_addr(a) {
                self.problem(format!(
                    "inode {inum}: direct block {k} has address {a}, {why}"
                ));
                continue;
            }
            take(self, k, a);
        }

        let ind = din.addrs[NDIRECT];
        if ind != 0 {
            if let Some(why) = self.bad_addr(ind) {
                self.problem(format!(
                    "inode {inum}: indirect block address {ind} is {why}; the blocks it would \
                     list were not checked"
                ));
            } else {
                self.claim(ind, Use { inum, index: None });
                if needed <= NDIRECT {
                    self.problem(format!(
                        "inode {inum} has an indirect block ({ind}) but its size {size} bytes \
                         needs only {needed} blocks"
                    ));
                }
                let blk = self.block(ind);
                for j in 0..NINDIRECT {
                    let raw = blk.get(j * 4..j * 4 + 4).unwrap_or(&[0; 4]);
                    let a = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
                    if a == 0 {
                        continue;
                    }
                    let k = NDIRECT + j;
                    if let Some(why) = self.bad_addr(a) {
                        self.problem(format!(
                            "inode {inum}: block {k} (entry {j} of indirect block {ind}) has \
                             address {a}, {why}"
                        ));
                        continue;
                    }
                    take(self, k, a);
                }
            }
        }

        if !past_size.is_empty() {
            self.problem(format!(
                "inode {inum} references blocks past its size ({size} bytes, {needed} blocks): \
                 file block(s) {}",
                ranges(&past_size.iter().map(|&k| k as u32).collect::<Vec<_>>())
            ));
        }
        // Holes: block slots within the size whose address is zero (an invalid address is
        // reported above, not counted as a hole; so are slots of an invalid indirect block).
        let ind_ok = ind != 0 && self.bad_addr(ind).is_none();
        let ind_blk = if ind_ok {
            self.block(ind)
        } else {
            &ZERO_BLOCK[..]
        };
        let holes: Vec<u32> = (0..needed)
            .filter(|&k| {
                if k < NDIRECT {
                    din.addrs[k] == 0
                } else if ind == 0 {
                    true
                } else {
                    let j = (k - NDIRECT) * 4;
                    ind_ok && ind_blk.get(j..j + 4) == Some(&[0u8; 4][..])
                }
            })
            .map(|k| k as u32)
            .collect();
        if !holes.is_empty() {
            self.note(format!(
                "inode {inum} has no block for file block(s) {} within its size {size} bytes \
                 (holes; xv6 allocates them on first access)",
                ranges(&holes)
            ));
        }
        if din.typ == T_DIR {
            // Only directories are read later (the tree walk).
            self.addrs[inum as usize] = addrs;
        }
    }

    fn bitmap_bit(&self, b: u32) -> bool {
        let blk = self.block(self.sb.bblock(b));
        let bit = (b % BPB) as usize;
        blk.get(bit / 8)
            .is_some_and(|byte| byte & (1 << (bit % 8)) != 0)
    }

    fn check_bitmap(&mut self) {
        let mut meta_free = Vec::new();
        let mut leaked = Vec::new();
        for b in 0..self.limit {
            let marked = self.bitmap_bit(b);
            if b < self.data_start {
                if !marked {
                    meta_free.push(b);
                }
            } else if let Some(u) = self.owner[b as usize] {
                if !marked {
                    self.problem(format!(
                        "block {b} is used by {u} but marked free in the bitmap"
                    ));
                }
            } else if marked {
                leaked.push(b);
            }
        }
        if !meta_free.is_empty() {
            self.problem(format!(
                "metadata block(s) {} (boot, superblock, log, inodes or bitmap) are marked free \
                 in the bitmap",
                ranges(&meta_free)
            ));
        }
        if !leaked.is_empty() {
            self.problem(format!(
                "{} leaked block(s): marked in use in the bitmap but used by no inode: {}",
                leaked.len(),
                ranges(&leaked)
            ));
        }
        // Bits past the end of the file system in the last bitmap block: ignored by xv6.
        let last_bmap_block = self.sb.bmapstart + self.sb.size / BPB;
        if last_bmap_block < self.limit {
            let first = self.sb.size - self.sb.size % BPB;
            let extra: Vec<u32> = (self.sb.size % BPB..BPB)
                .filter_map(|off| first.checked_add(off))
                .filter(|&b| self.bitmap_bit(b))
                .collect();
            if !extra.is_empty() {
                self.note(format!(
                    "the bitmap marks block(s) {} past the end of the file system",
                    ranges(&extra)
                ));
            }
        }
    }

    /// The bytes of directory `inum` (valid blocks only; missing ones read as zeros).
    fn dir_bytes(&self, inum: u32) -> Vec<u8> {
        let din = &self.inodes[inum as usize];
        let size = (din.size as usize).min(MAXFILE * BSIZE);
        let mut out = Vec::with_capacity(size);
        for (k, &a) in self.addrs[inum as usize].iter().enumerate() {
            if out.len() >= size {
                break;
            }
            let n = (size - k * BSIZE).min(BSIZE);
            let blk = if a == 0 {
                &ZERO_BLOCK[..]
            } else {
                self.block(a)
            };
            out.extend_from_slice(&blk[..n]);
        }
        out
    }

    /// Walks the tree from the root; returns, per inode, the number of entries referring to it
    /// (`.` entries excepted), and checks every directory on the way.
    fn walk_tree(&mut self) -> Vec<u32> {
        let n = self.inodes.len();
        let mut refs = vec![0u32; n];
        if (ROOTINO as usize) >= n {
            self.problem("the root inode lies past the end of the image".into());
            return refs;
        }
        let root = self.inodes[ROOTINO as usize];
        if root.typ != T_DIR {
            self.problem(format!(
                "root inode {ROOTINO} is not a directory (type {} {})",
                root.typ,
                type_name(root.typ)
            ));
            return refs;
        }
        self.walked = true;
        let mut seen_at: Vec<Option<String>> = vec![None; n];
        seen_at[ROOTINO as usize] = Some("/".into());
        let mut queue = VecDeque::from([(ROOTINO, ROOTINO, String::from("/"))]);
        while let Some((dir, parent, path)) = queue.pop_front() {
            let size = self.inodes[dir as usize].size;
            let partial = size as usize % DIRENT_SIZE;
            if partial != 0 {
                self.problem(format!(
                    "directory {path} (inode {dir}) has size {size}, not a multiple of \
                     {DIRENT_SIZE}"
                ));
            }
            let bytes = self.dir_bytes(dir);
            let mut names = HashSet::new();
            let (mut dot, mut dotdot) = (false, false);
            for (i, raw) in bytes.chunks_exact(DIRENT_SIZE).enumerate() {
                let Ok(de) = decode_dirent(raw) else { continue };
                if de.inum == 0 {
                    continue;
                }
                let target = u32::from(de.inum);
                let name = de.name_bytes();
                let at = format!("directory {path} (inode {dir}), entry {i}");
                if name.is_empty() {
                    self.problem(format!("{at} has an empty name (inode {target})"));
                    continue;
                }
                if name.contains(&b'/') {
                    self.problem(format!(
                        "{at} has name \"{}\" containing `/` (inode {target})",
                        shown(name)
                    ));
                }
                if !names.insert(name.to_vec()) {
                    self.problem(format!(
                        "directory {path} (inode {dir}) has two entries named \"{}\"",
                        shown(name)
                    ));
                }
                if name == b"." {
                    dot = true;
                    if target != dir {
                        self.problem(format!(
                            "{} refers to inode {target}, not to the directory itself (inode \
                             {dir})",
                            join(&path, b".")
                        ));
                    }
                    continue;
                }
                let full = join(&path, name);
                if target >= self.sb.ninodes {
                    self.problem(format!(
                        "{full} refers to inode {target}, but the file system has only {} inodes",
                        self.sb.ninodes
                    ));
                    continue;
                }
                if target as usize >= n {
                    self.problem(format!(
                        "{full} refers to inode {target}, which lies past the end of the image"
                    ));
                    continue;
                }
                let t = self.inodes[target as usize].typ;
                if name == b".." {
                    dotdot = true;
                    if target != parent {
                        self.problem(format!(
                            "{full} refers to inode {target}, but the parent directory is inode \
                             {parent}"
                        ));
                    }
                }
                if t == 0 {
                    self.problem(format!(
                        "{full} refers to free inode {target} (dangling directory entry)"
                    ));
                    continue;
                }
                refs[target as usize] += 1;
                if name == b".." || t != T_DIR {
                    seen_at[target as usize].get_or_insert(full);
                    continue;
                }
                match &seen_at[target as usize] {
                    Some(first) => {
                        let first = first.clone();
                        self.problem(format!(
                            "directory inode {target} is linked twice, as {first} and as {full} \
                             (a directory has exactly one parent)"
                        ));
                    }
                    None => {
                        seen_at[target as usize] = Some(full.clone());
                        queue.push_back((target, dir, full));
                    }
                }
            }
            if !dot {
                self.problem(format!("directory {path} (inode {dir}) has no \".\" entry"));
            }
            if !dotdot {
                self.problem(format!(
                    "directory {path} (inode {dir}) has no \"..\" entry"
                ));
            }
        }
        self.paths = seen_at;
        refs
    }

    fn check_links(&mut self, refs: &[u32]) {
        let mut found = Vec::new();
        for ((inum, din), &r) in self.inodes.iter().enumerate().zip(refs).skip(1) {
            if !valid_type(din.typ) || (inum == ROOTINO as usize && !self.walked) {
                // An invalid type, or a root that is not a directory: already reported.
                continue;
            }
            if r == 0 && inum != ROOTINO as usize {
                found.push(format!(
                    "inode {inum} ({}, {} bytes, nlink {}) is allocated but no directory entry \
                     reachable from the root refers to it (orphan)",
                    type_name(din.typ),
                    din.size,
                    din.nlink
                ));
            } else if i64::from(din.nlink) != i64::from(r) {
                let path = self.paths.get(inum).cloned().flatten().unwrap_or_default();
                found.push(format!(
                    "inode {inum} ({path}) has nlink {} but {r} directory entries refer to it \
                     (\".\" entries not counted)",
                    din.nlink
                ));
            }
        }
        self.report.problems.extend(found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mkfs::tests::pattern;
    use xv6_abi::fs::encode_dirent;
    use xv6_abi::Dirent;

    fn sample() -> Vec<u8> {
        let files: Vec<(String, Vec<u8>)> = [
            ("a", 3000usize),
            ("b", 10),
            ("big", NDIRECT * BSIZE + 5000),
            ("empty", 0),
        ]
        .iter()
        .enumerate()
        .map(|(i, (n, l))| (n.to_string(), pattern(*l, i as u64 + 7)))
        .collect();
        crate::mkfs::build(400, 48, &files).unwrap()
    }

    fn sb(img: &[u8]) -> SuperBlock {
        SuperBlock::decode(&img[BSIZE..2 * BSIZE]).unwrap()
    }

    fn blk(img: &mut [u8], b: u32) -> &mut [u8] {
        &mut img[b as usize * BSIZE..(b as usize + 1) * BSIZE]
    }

    fn get(img: &[u8], inum: u32) -> DiskInode {
        let ib = sb(img).iblock(inum) as usize;
        DiskInode::decode_from_block(&img[ib * BSIZE..(ib + 1) * BSIZE], inum).unwrap()
    }

    fn put(img: &mut [u8], inum: u32, d: &DiskInode) {
        let ib = sb(img).iblock(inum);
        d.encode_into_block(blk(img, ib), inum);
    }

    fn set_bit(img: &mut [u8], b: u32, on: bool) {
        let s = sb(img);
        let bb = s.bblock(b);
        let byte = &mut blk(img, bb)[(b % BPB) as usize / 8];
        if on {
            *byte |= 1 << (b % 8);
        } else {
            *byte &= !(1 << (b % 8));
        }
    }

    /// Inode number of root entry `name`.
    fn lookup(img: &[u8], name: &str) -> u32 {
        let root = get(img, ROOTINO);
        let b = root.addrs[0] as usize;
        img[b * BSIZE..(b + 1) * BSIZE]
            .chunks(DIRENT_SIZE)
            .map(|c| decode_dirent(c).unwrap())
            .find(|d| d.inum != 0 && d.name_bytes() == name.as_bytes())
            .map(|d| u32::from(d.inum))
            .unwrap()
    }

    /// Appends an entry to the root directory (its first block has room).
    fn add_root_entry(img: &mut [u8], inum: u32, name: &str) {
        let mut root = get(img, ROOTINO);
        let off = root.size as usize;
        assert!(off + DIRENT_SIZE <= BSIZE);
        let mut d = Dirent {
            inum: inum as u16,
            name: [0; 14],
        };
        d.name[..name.len()].copy_from_slice(name.as_bytes());
        let b = root.addrs[0];
        encode_dirent(&d, &mut blk(img, b)[off..off + DIRENT_SIZE]);
        root.size += DIRENT_SIZE as u32;
        put(img, ROOTINO, &root);
    }

    fn free_data_block(img: &[u8]) -> u32 {
        let r = check_bytes(img).unwrap();
        sb(img).data_start() + r.data_blocks_used + 5
    }

    /// Makes directory `name` in the root as xv6's `mkdir` does; returns its inode number.
    fn mkdir(img: &mut [u8], name: &str, inum: u32) -> u32 {
        let b = free_data_block(img);
        let d = DiskInode {
            typ: T_DIR,
            nlink: 1,
            size: 2 * DIRENT_SIZE as u32,
            addrs: {
                let mut a = [0; NDIRECT + 1];
                a[0] = b;
                a
            },
            ..DiskInode::default()
        };
        put(img, inum, &d);
        for (i, (n, target)) in [(".", inum), ("..", ROOTINO)].iter().enumerate() {
            let mut de = Dirent {
                inum: *target as u16,
                name: [0; 14],
            };
            de.name[..n.len()].copy_from_slice(n.as_bytes());
            encode_dirent(&de, &mut blk(img, b)[i * 16..i * 16 + 16]);
        }
        set_bit(img, b, true);
        add_root_entry(img, inum, name);
        let mut root = get(img, ROOTINO);
        root.nlink += 1; // the new directory's ".."
        put(img, ROOTINO, &root);
        inum
    }

    fn problems(img: &[u8]) -> Vec<String> {
        check_bytes(img).unwrap().problems
    }

    #[track_caller]
    fn assert_found(img: &[u8], words: &[&str]) {
        let ps = problems(img);
        assert!(
            ps.iter().any(|p| words.iter().all(|w| p.contains(w))),
            "no problem mentions {words:?}: {ps:#?}"
        );
    }

    #[test]
    fn clean_image_report() {
        let img = sample();
        let r = check_bytes(&img).unwrap();
        assert!(r.problems.is_empty() && r.notes.is_empty(), "{r}");
        assert_eq!((r.dirs, r.files, r.devices, r.inodes_used()), (1, 4, 0, 5));
        // root 1 + a 3 + b 1 + big 17 + indirect 1.
        assert_eq!(r.data_blocks_used, 23);
        let text = r.to_string();
        assert!(text.starts_with("xv6 file system: 400 blocks"), "{text}");
        assert!(text.ends_with("clean"), "{text}");
    }

    #[test]
    fn subdirectories_made_like_xv6_are_clean() {
        let mut img = sample();
        let d = mkdir(&mut img, "dir", 20);
        mkdir(&mut img, "dir2", 21);
        let r = check_bytes(&img).unwrap();
        assert!(r.problems.is_empty(), "{r}");
        assert_eq!(get(&img, ROOTINO).nlink, 3);
        // A wrong ".." in the subdirectory.
        let b = get(&img, d).addrs[0];
        blk(&mut img, b)[16] = 2;
        assert_found(&img, &["/dir/..", "inode 2", "parent directory is inode 1"]);
    }

    #[test]
    fn not_an_image() {
        assert!(check_bytes(&[0u8; 100]).unwrap_err().contains("too short"));
        let mut img = sample();
        img[BSIZE] ^= 1;
        let e = check_bytes(&img).unwrap_err();
        assert!(e.contains("magic"), "{e}");
        let mut img = sample();
        let mut s = sb(&img);
        s.inodestart = 3;
        s.encode(blk(&mut img, 1));
        let e = check_bytes(&img).unwrap_err();
        assert!(
            e.contains("invalid superblock") && e.contains("overlaps"),
            "{e}"
        );
        let dir = std::env::temp_dir().join("xv6-fsck-test-missing.img");
        assert!(check_image(&dir).unwrap_err().contains("cannot read"));
    }

    #[test]
    fn truncated_image() {
        let img = sample();
        assert_found(&img[..img.len() / 2], &["truncated", "400 blocks"]);
        // Cut inside the inode area: the rest of the inodes are reported, not read.
        let s = sb(&img);
        let cut = (s.inodestart as usize + 1) * BSIZE + 100;
        assert_found(&img[..cut], &["past the end of the image"]);
    }

    #[test]
    fn block_used_twice() {
        let mut img = sample();
        let (a, b) = (lookup(&img, "a"), lookup(&img, "b"));
        let shared = get(&img, a).addrs[1];
        let mut ib = get(&img, b);
        ib.addrs[0] = shared;
        put(&mut img, b, &ib);
        assert_found(
            &img,
            &[
                &format!("block {shared} is used twice"),
                &format!("inode {a}"),
                &format!("inode {b}"),
            ],
        );
        // The block b no longer uses is leaked.
        assert_found(&img, &["leaked"]);
        // Twice within one inode.
        let mut img = sample();
        let mut ia = get(&img, a);
        ia.addrs[2] = ia.addrs[0];
        put(&mut img, a, &ia);
        assert_found(&img, &["used twice", &format!("twice by inode {a}")]);
    }

    #[test]
    fn bitmap_errors() {
        let mut img = sample();
        let big = lookup(&img, "big");
        let used = get(&img, big).addrs[NDIRECT];
        set_bit(&mut img, used, false);
        assert_found(
            &img,
            &[
                &format!("block {used} is used by inode {big} (its indirect block)"),
                "marked free",
            ],
        );
        let mut img = sample();
        let free = free_data_block(&img);
        set_bit(&mut img, free, true);
        assert_found(&img, &["1 leaked block", &free.to_string()]);
        let mut img = sample();
        set_bit(&mut img, 3, false);
        assert_found(&img, &["metadata block(s) 3 ", "marked free"]);
    }

    #[test]
    fn directory_errors() {
        let mut img = sample();
        add_root_entry(&mut img, 30, "ghost");
        assert_found(&img, &["/ghost", "free inode 30", "dangling"]);
        let mut img = sample();
        add_root_entry(&mut img, 4000, "far");
        assert_found(&img, &["/far", "inode 4000", "only 48 inodes"]);
        let mut img = sample();
        let b = lookup(&img, "b");
        add_root_entry(&mut img, b, "a");
        assert_found(&img, &["two entries named \"a\""]);
        let mut img = sample();
        let mut root = get(&img, ROOTINO);
        root.size += 3;
        put(&mut img, ROOTINO, &root);
        assert_found(&img, &["directory / (inode 1)", "not a multiple of 16"]);
        // No "." in the root.
        let mut img = sample();
        let b = get(&img, ROOTINO).addrs[0];
        blk(&mut img, b)[2] = b'x';
        assert_found(&img, &["no \".\" entry"]);
        // Root not a directory.
        let mut img = sample();
        let mut root = get(&img, ROOTINO);
        root.typ = T_FILE;
        put(&mut img, ROOTINO, &root);
        assert_found(&img, &["root inode 1 is not a directory"]);
    }

    #[test]
    fn link_count_errors() {
        let mut img = sample();
        let a = lookup(&img, "a");
        let mut ia = get(&img, a);
        ia.nlink = 2;
        put(&mut img, a, &ia);
        assert_found(
            &img,
            &[&format!("inode {a} (/a) has nlink 2 but 1 directory")],
        );
        // A second name for "a" makes nlink 2 right.
        add_root_entry(&mut img, a, "a2");
        assert!(problems(&img).is_empty(), "{:?}", problems(&img));
        // Orphan: the entry for "b" removed.
        let mut img = sample();
        let b = lookup(&img, "b");
        let rb = get(&img, ROOTINO).addrs[0];
        let at = (0..BSIZE / 16)
            .find(|i| {
                decode_dirent(&img[rb as usize * BSIZE + i * 16..])
                    .unwrap()
                    .name_bytes()
                    == b"b"
            })
            .unwrap();
        blk(&mut img, rb)[at * 16..at * 16 + 2].copy_from_slice(&[0, 0]);
        assert_found(
            &img,
            &[&format!("inode {b} (file, 10 bytes, nlink 1)"), "orphan"],
        );
    }

    #[test]
    fn inode_errors() {
        let mut img = sample();
        let b = lookup(&img, "b");
        let mut ib = get(&img, b);
        ib.typ = 7;
        put(&mut img, b, &ib);
        assert_found(&img, &[&format!("inode {b} has invalid type 7")]);

        let mut img = sample();
        let size = sb(&img).size;
        let mut ib = get(&img, b);
        ib.addrs[0] = size + 5;
        put(&mut img, b, &ib);
        assert_found(
            &img,
            &[
                &format!("inode {b}: direct block 0 has address {}", size + 5),
                "past the end",
            ],
        );
        ib.addrs[0] = 3;
        put(&mut img, b, &ib);
        assert_found(&img, &["address 3", "outside the data area"]);

        let mut img = sample();
        let big = lookup(&img, "big");
        let mut ig = get(&img, big);
        ig.size = 100;
        put(&mut img, big, &ig);
        assert_found(
            &img,
            &[
                &format!("inode {big} references blocks past its size"),
                "1-16",
            ],
        );
        assert_found(&img, &[&format!("inode {big} has an indirect block")]);
        ig.size = (MAXFILE * BSIZE + 1) as u32;
        put(&mut img, big, &ig);
        assert_found(&img, &["more than the largest xv6 file"]);
        let r = check_bytes(&img).unwrap();
        assert!(r.notes.iter().any(|n| n.contains("holes")), "{r}");

        let mut img = sample();
        let mut i0 = get(&img, 0);
        i0.typ = T_FILE;
        put(&mut img, 0, &i0);
        assert_found(&img, &["inode 0 is in use"]);
    }

    #[test]
    fn log_header() {
        let mut img = sample();
        let s = sb(&img);
        let h = blk(&mut img, s.logstart);
        h[..4].copy_from_slice(&1u32.to_le_bytes());
        h[4..8].copy_from_slice(&s.data_start().to_le_bytes());
        let r = check_bytes(&img).unwrap();
        assert!(r.problems.is_empty(), "{r}");
        assert!(r
            .notes
            .iter()
            .any(|n| n.contains("committed transaction of 1 blocks")));
        let h = blk(&mut img, s.logstart);
        h[4..8].copy_from_slice(&0u32.to_le_bytes());
        assert_found(&img, &["log header entry 0 names block 0"]);
        let h = blk(&mut img, s.logstart);
        h[..4].copy_from_slice(&100u32.to_le_bytes());
        assert_found(&img, &["log header", "claims 100"]);
    }

    #[test]
    fn huge_superblock_numbers_on_a_small_image() {
        let base = sample();
        for (size, ninodes) in [(u32::MAX, 48), (4_000_000, 48), (u32::MAX, 2_000_000)] {
            let mut img = base.clone();
            let mut s = sb(&img);
            s.size = size;
            s.ninodes = ninodes;
            s.bmapstart = s.inodestart + ninodes / IPB + 1;
            s.nblocks = 0;
            s.encode(blk(&mut img, 1));
            let r = check_bytes(&img).unwrap();
            assert!(r.problems.iter().any(|p| p.contains("truncated")), "{r}");
        }
    }

    #[test]
    fn random_corruption_never_panics() {
        let base = sample();
        let s = sb(&base);
        let meta_end = (s.data_start() as usize + 30) * BSIZE;
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut found = 0;
        for _ in 0..2000 {
            let mut img = base.clone();
            let flips = 1 + next() % 8;
            for _ in 0..flips {
                // Mostly the superblock, inodes, bitmap and the first data blocks.
                let at = match next() % 4 {
                    0 => BSIZE + (next() % 32) as usize,
                    1 | 2 => (next() as usize) % meta_end,
                    _ => (next() as usize) % img.len(),
                };
                img[at] ^= 1 << (next() % 8);
            }
            if next() % 16 == 0 {
                let len = (next() as usize) % img.len();
                img.truncate(len);
            }
            match check_bytes(&img) {
                Ok(r) => {
                    let _ = r.to_string();
                    found += usize::from(!r.problems.is_empty());
                }
                Err(e) => assert!(!e.is_empty()),
            }
        }
        assert!(found > 100, "{found}");
    }
}
