//! Path names: joining and the last component.

use alloc::vec::Vec;

/// `dir` and `name` joined with one `/` (none added if `dir` is empty or already ends in `/`).
/// An absolute `name` stands alone.
pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() || name.first() == Some(&b'/') {
        return name.to_vec();
    }
    let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
    p.extend_from_slice(dir);
    if !dir.ends_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// The last component of `path`, ignoring trailing slashes: `a/b/` gives `b`, `/` gives `/`.
pub fn basename(path: &[u8]) -> &[u8] {
    let end = path.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
    if end == 0 {
        return if path.is_empty() { path } else { b"/" };
    }
    let trimmed = &path[..end];
    let start = trimmed
        .iter()
        .rposition(|&b| b == b'/')
        .map_or(0, |i| i + 1);
    &trimmed[start..]
}

/// True if `path` names something by a directory path (has a `/`) rather than a bare name.
pub fn has_slash(path: &[u8]) -> bool {
    path.contains(&b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins() {
        assert_eq!(join(b".", b"a"), b"./a");
        assert_eq!(join(b"/", b"a"), b"/a");
        assert_eq!(join(b"d/", b"a"), b"d/a");
        assert_eq!(join(b"", b"a"), b"a");
        assert_eq!(join(b"d", b"/abs"), b"/abs");
        assert_eq!(join(b"d", b""), b"d/");
    }

    #[test]
    fn basenames() {
        assert_eq!(basename(b"a/b/c"), b"c");
        assert_eq!(basename(b"c"), b"c");
        assert_eq!(basename(b"a/b/"), b"b");
        assert_eq!(basename(b"/"), b"/");
        assert_eq!(basename(b"//"), b"/");
        assert_eq!(basename(b""), b"");
        assert_eq!(basename(b"/x"), b"x");
        assert!(has_slash(b"./ls"));
        assert!(!has_slash(b"ls"));
    }
}
