//! fsck: checks an xv6 file-system image. LEAD STUB: the mkfs helper replaces this whole file.
use std::path::Path;
pub struct FsckReport {
    pub problems: Vec<String>,
}
impl std::fmt::Display for FsckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.problems)
    }
}
pub fn check_image(_p: &Path) -> Result<FsckReport, String> {
    Err("fsck not written yet".into())
}
