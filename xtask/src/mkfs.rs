//! mkfs: builds an xv6 file-system image. LEAD STUB: the mkfs helper replaces this whole file.
#![allow(dead_code)] // replaced by the real mkfs in the next commit
use std::path::{Path, PathBuf};
pub struct ImageSpec {
    pub size_blocks: u32,
    pub ninodes: u32,
    pub files: Vec<(String, PathBuf)>,
}
pub fn make_image(_out: &Path, _spec: &ImageSpec) -> Result<String, String> {
    Err("mkfs not written yet".into())
}
