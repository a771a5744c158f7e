//! The on-disk file system format: xv6's current layout, byte for byte.
//!
//! ```text
//! [ boot block | superblock | log (header + blocks) | inode blocks | free bitmap | data blocks ]
//!   block 0      block 1      logstart ..             inodestart ..  bmapstart ..
//! ```
//! All integers are little-endian. The decoders here take byte slices and never panic on bad
//! input: they return [`LayoutError`] so that a malformed image gets a clear message at mount
//! (kernel) or in `fsck` (host).

/// Block size in bytes.
pub const BSIZE: usize = 1024;
/// Superblock magic number.
pub const FSMAGIC: u32 = 0x1020_3040;
/// Inode number of the root directory.
pub const ROOTINO: u32 = 1;
/// Direct block addresses per inode.
pub const NDIRECT: usize = 12;
/// Block addresses in the indirect block.
pub const NINDIRECT: usize = BSIZE / 4;
/// Largest file, in blocks.
pub const MAXFILE: usize = NDIRECT + NINDIRECT;
/// Size of an on-disk inode.
pub const DINODE_SIZE: usize = 64;
/// Inodes per block.
pub const IPB: u32 = (BSIZE / DINODE_SIZE) as u32;
/// Bitmap bits per block.
pub const BPB: u32 = (BSIZE * 8) as u32;
/// Most blocks one file-system operation may write (xv6's MAXOPBLOCKS).
pub const MAXOPBLOCKS: usize = 10;
/// Most data blocks a log holds: as many as the header block has room for after its count
/// (xv6's LOGBLOCKS is 30). This project's mkfs makes logs this size; the kernel takes any log of
/// at least MAXOPBLOCKS data blocks (the superblock's nlog says how many).
pub const LOGBLOCKS: usize = BSIZE / 4 - 1;
/// Size of a directory entry on disk.
pub const DIRENT_SIZE: usize = 16;

/// Why a piece of the image could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// The buffer is shorter than the structure.
    Short,
    /// The superblock's magic number is not [`FSMAGIC`].
    BadMagic(u32),
    /// The superblock's areas overlap, run past `size`, or are empty.
    BadGeometry(&'static str),
    /// The log header claims more blocks than the log holds.
    BadLogHeader,
}

impl core::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LayoutError::Short => write!(f, "structure truncated"),
            LayoutError::BadMagic(m) => {
                write!(
                    f,
                    "bad superblock magic {m:#x} (want {FSMAGIC:#x}): not an xv6 file system"
                )
            }
            LayoutError::BadGeometry(why) => write!(f, "bad superblock geometry: {why}"),
            LayoutError::BadLogHeader => {
                write!(f, "log header claims more blocks than the log holds")
            }
        }
    }
}

fn le32(b: &[u8], at: usize) -> Result<u32, LayoutError> {
    let s = b.get(at..at + 4).ok_or(LayoutError::Short)?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn le16(b: &[u8], at: usize) -> Result<u16, LayoutError> {
    let s = b.get(at..at + 2).ok_or(LayoutError::Short)?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

/// The superblock (block 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SuperBlock {
    /// Must be [`FSMAGIC`].
    pub magic: u32,
    /// Size of the file system image in blocks.
    pub size: u32,
    /// Number of data blocks.
    pub nblocks: u32,
    /// Number of inodes.
    pub ninodes: u32,
    /// Number of log blocks (header included).
    pub nlog: u32,
    /// First log block.
    pub logstart: u32,
    /// First inode block.
    pub inodestart: u32,
    /// First free-bitmap block.
    pub bmapstart: u32,
}

impl SuperBlock {
    /// Encoded size in bytes.
    pub const SIZE: usize = 32;

    /// Decodes and validates a superblock. Checks the magic number and that the areas are in
    /// order, non-empty, within `size`, and large enough for `ninodes` and the data blocks.
    pub fn decode(b: &[u8]) -> Result<SuperBlock, LayoutError> {
        let sb = SuperBlock {
            magic: le32(b, 0)?,
            size: le32(b, 4)?,
            nblocks: le32(b, 8)?,
            ninodes: le32(b, 12)?,
            nlog: le32(b, 16)?,
            logstart: le32(b, 20)?,
            inodestart: le32(b, 24)?,
            bmapstart: le32(b, 28)?,
        };
        if sb.magic != FSMAGIC {
            return Err(LayoutError::BadMagic(sb.magic));
        }
        sb.validate()?;
        Ok(sb)
    }

    /// Checks the geometry (not the magic).
    pub fn validate(&self) -> Result<(), LayoutError> {
        let g = LayoutError::BadGeometry;
        if self.nlog < 2 {
            return Err(g("log has fewer than 2 blocks"));
        }
        if self.logstart < 2 {
            return Err(g("log overlaps the boot block or superblock"));
        }
        let log_end = self
            .logstart
            .checked_add(self.nlog)
            .ok_or(g("log overflows"))?;
        if self.inodestart < log_end {
            return Err(g("inode area overlaps the log"));
        }
        if self.ninodes < 2 {
            return Err(g("fewer than 2 inodes"));
        }
        let inode_blocks = self.ninodes / IPB + 1;
        let inode_end = self
            .inodestart
            .checked_add(inode_blocks)
            .ok_or(g("inode area overflows"))?;
        if self.bmapstart < inode_end {
            return Err(g("bitmap overlaps the inode area"));
        }
        let bmap_blocks = self.size / BPB + 1;
        let data_start = self
            .bmapstart
            .checked_add(bmap_blocks)
            .ok_or(g("bitmap overflows"))?;
        if data_start > self.size {
            return Err(g("metadata runs past the end of the file system"));
        }
        if self.nblocks > self.size - data_start {
            return Err(g("nblocks larger than the space after the metadata"));
        }
        if self.nlog < 2 || self.nlog as usize > BSIZE / 4 {
            return Err(g(
                "log size outside 2..=BSIZE/4 blocks (one header block plus what it can describe)",
            ));
        }
        Ok(())
    }

    /// First data block.
    pub fn data_start(&self) -> u32 {
        self.bmapstart + self.size / BPB + 1
    }

    /// Encodes into the first [`SuperBlock::SIZE`] bytes of `b`.
    pub fn encode(&self, b: &mut [u8]) {
        let f = [
            self.magic,
            self.size,
            self.nblocks,
            self.ninodes,
            self.nlog,
            self.logstart,
            self.inodestart,
            self.bmapstart,
        ];
        for (i, v) in f.iter().enumerate() {
            put32(b, i * 4, *v);
        }
    }

    /// Block holding inode `inum` (xv6's `IBLOCK`).
    pub fn iblock(&self, inum: u32) -> u32 {
        inum / IPB + self.inodestart
    }

    /// Bitmap block holding the bit of block `b` (xv6's `BBLOCK`).
    pub fn bblock(&self, b: u32) -> u32 {
        b / BPB + self.bmapstart
    }
}

/// An on-disk inode (64 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskInode {
    /// File type (`T_DIR`, `T_FILE`, `T_DEVICE`), 0 when free.
    pub typ: i16,
    /// Major device number (`T_DEVICE` only).
    pub major: i16,
    /// Minor device number (`T_DEVICE` only).
    pub minor: i16,
    /// Number of directory entries that refer to this inode.
    pub nlink: i16,
    /// Size of the file in bytes.
    pub size: u32,
    /// Direct block addresses, then the indirect block's address.
    pub addrs: [u32; NDIRECT + 1],
}

impl DiskInode {
    /// Decodes inode `inum`'s slot from the block that holds it.
    pub fn decode_from_block(block: &[u8], inum: u32) -> Result<DiskInode, LayoutError> {
        let off = (inum % IPB) as usize * DINODE_SIZE;
        Self::decode(
            block
                .get(off..off + DINODE_SIZE)
                .ok_or(LayoutError::Short)?,
        )
    }

    /// Decodes 64 bytes.
    pub fn decode(b: &[u8]) -> Result<DiskInode, LayoutError> {
        let mut addrs = [0u32; NDIRECT + 1];
        for (i, a) in addrs.iter_mut().enumerate() {
            *a = le32(b, 12 + 4 * i)?;
        }
        Ok(DiskInode {
            typ: le16(b, 0)? as i16,
            major: le16(b, 2)? as i16,
            minor: le16(b, 4)? as i16,
            nlink: le16(b, 6)? as i16,
            size: le32(b, 8)?,
            addrs,
        })
    }

    /// Encodes into 64 bytes.
    pub fn encode(&self, b: &mut [u8]) {
        put16(b, 0, self.typ as u16);
        put16(b, 2, self.major as u16);
        put16(b, 4, self.minor as u16);
        put16(b, 6, self.nlink as u16);
        put32(b, 8, self.size);
        for (i, a) in self.addrs.iter().enumerate() {
            put32(b, 12 + 4 * i, *a);
        }
    }

    /// Encodes into inode `inum`'s slot of the block that holds it.
    pub fn encode_into_block(&self, block: &mut [u8], inum: u32) {
        let off = (inum % IPB) as usize * DINODE_SIZE;
        self.encode(&mut block[off..off + DINODE_SIZE]);
    }
}

/// Decodes a directory entry from 16 bytes.
pub fn decode_dirent(b: &[u8]) -> Result<crate::Dirent, LayoutError> {
    let s = b.get(..DIRENT_SIZE).ok_or(LayoutError::Short)?;
    let mut name = [0u8; crate::DIRSIZ];
    name.copy_from_slice(&s[2..16]);
    Ok(crate::Dirent {
        inum: le16(s, 0)?,
        name,
    })
}

/// Encodes a directory entry into 16 bytes.
pub fn encode_dirent(d: &crate::Dirent, b: &mut [u8]) {
    put16(b, 0, d.inum);
    b[2..16].copy_from_slice(&d.name);
}

/// The log header (first log block): a count, then that many home block numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogHeader {
    /// Number of blocks in the committed transaction (0: nothing to replay).
    pub n: u32,
    /// Home locations of the logged blocks.
    pub block: [u32; LOGBLOCKS],
}

impl LogHeader {
    /// Decodes the header, refusing a count larger than `capacity` (the log's data blocks) or
    /// [`LOGBLOCKS`].
    pub fn decode(b: &[u8], capacity: usize) -> Result<LogHeader, LayoutError> {
        let n = le32(b, 0)?;
        if n as usize > capacity.min(LOGBLOCKS) {
            return Err(LayoutError::BadLogHeader);
        }
        let mut block = [0u32; LOGBLOCKS];
        for (i, v) in block.iter_mut().enumerate().take(n as usize) {
            *v = le32(b, 4 + 4 * i)?;
        }
        Ok(LogHeader { n, block })
    }

    /// Encodes the header.
    pub fn encode(&self, b: &mut [u8]) {
        put32(b, 0, self.n);
        for (i, v) in self.block.iter().enumerate() {
            put32(b, 4 + 4 * i, *v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SuperBlock {
        // This project's mkfs for FSSIZE 2000 (xv6's has nlog 31), ninodes 200.
        let nlog = LOGBLOCKS as u32 + 1;
        let ninodeblocks = 200 / IPB + 1;
        let nbitmap = 2000 / BPB + 1;
        let nmeta = 2 + nlog + ninodeblocks + nbitmap;
        SuperBlock {
            magic: FSMAGIC,
            size: 2000,
            nblocks: 2000 - nmeta,
            ninodes: 200,
            nlog,
            logstart: 2,
            inodestart: 2 + nlog,
            bmapstart: 2 + nlog + ninodeblocks,
        }
    }

    #[test]
    fn superblock_round_trip() {
        let sb = sample();
        let mut b = [0u8; BSIZE];
        sb.encode(&mut b);
        assert_eq!(SuperBlock::decode(&b), Ok(sb));
        assert_eq!(sb.data_start(), 2000 - sb.nblocks);
    }

    #[test]
    fn superblock_rejects_garbage() {
        let mut b = [0u8; BSIZE];
        assert_eq!(SuperBlock::decode(&b), Err(LayoutError::BadMagic(0)));
        assert_eq!(SuperBlock::decode(&b[..10]), Err(LayoutError::Short));
        let mut sb = sample();
        sb.inodestart = 3;
        sb.encode(&mut b);
        assert!(matches!(
            SuperBlock::decode(&b),
            Err(LayoutError::BadGeometry(_))
        ));
        let mut sb = sample();
        sb.nblocks = 5000;
        sb.encode(&mut b);
        assert!(matches!(
            SuperBlock::decode(&b),
            Err(LayoutError::BadGeometry(_))
        ));
        let mut sb = sample();
        sb.bmapstart = u32::MAX;
        sb.encode(&mut b);
        assert!(matches!(
            SuperBlock::decode(&b),
            Err(LayoutError::BadGeometry(_))
        ));
    }

    #[test]
    fn inode_round_trip() {
        let mut d = DiskInode {
            typ: 2,
            major: 0,
            minor: 0,
            nlink: 1,
            size: 5000,
            addrs: [0; 13],
        };
        d.addrs[0] = 77;
        d.addrs[12] = 99;
        let mut block = [0u8; BSIZE];
        d.encode_into_block(&mut block, 17);
        assert_eq!(DiskInode::decode_from_block(&block, 17), Ok(d));
        assert_eq!(DiskInode::decode_from_block(&block, 16).unwrap().typ, 0);
    }

    #[test]
    fn dirent_and_log_round_trip() {
        let mut d = crate::Dirent {
            inum: 3,
            name: [0; 14],
        };
        d.name[..6].copy_from_slice(b"README");
        let mut b = [0u8; 16];
        encode_dirent(&d, &mut b);
        assert_eq!(decode_dirent(&b).unwrap().name_bytes(), b"README");
        let mut h = LogHeader {
            n: 2,
            block: [0; LOGBLOCKS],
        };
        h.block[0] = 40;
        h.block[1] = 41;
        let mut blk = [0u8; BSIZE];
        h.encode(&mut blk);
        assert_eq!(LogHeader::decode(&blk, LOGBLOCKS), Ok(h));
        assert_eq!(LogHeader::decode(&blk, 1), Err(LayoutError::BadLogHeader));
    }
}
