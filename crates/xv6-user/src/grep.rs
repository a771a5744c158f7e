//! grep's matcher and line splitting.
//!
//! The pattern language is xv6's (Kernighan and Pike's, *The Practice of Programming*, ch. 9):
//! `c` matches itself, `.` any byte, `c*` zero or more of `c` (or of anything for `.*`), `^` at the
//! start anchors to the beginning of the line and `$` at the end to its end. Everything else is
//! literal. Unlike the C version the matcher recurses only at `*`, so long lines cannot exhaust
//! the small user stack.

use alloc::vec::Vec;

/// True if `re` matches somewhere in `text` (one line, without its newline).
pub fn matches(re: &[u8], text: &[u8]) -> bool {
    if let [b'^', rest @ ..] = re {
        return match_here(rest, text);
    }
    let mut t = text;
    loop {
        if match_here(re, t) {
            return true;
        }
        match t.split_first() {
            Some((_, rest)) => t = rest,
            None => return false,
        }
    }
}

/// True if `re` matches at the beginning of `text`.
fn match_here(mut re: &[u8], mut text: &[u8]) -> bool {
    loop {
        match re {
            [] => return true,
            [c, b'*', rest @ ..] => return match_star(*c, rest, text),
            [b'$'] => return text.is_empty(),
            [c, rest @ ..] => match text.split_first() {
                Some((t, trest)) if *c == b'.' || c == t => {
                    re = rest;
                    text = trest;
                }
                _ => return false,
            },
        }
    }
}

/// True if `c*` followed by `re` matches at the beginning of `text`.
fn match_star(c: u8, re: &[u8], mut text: &[u8]) -> bool {
    loop {
        if match_here(re, text) {
            return true;
        }
        match text.split_first() {
            Some((t, rest)) if *t == c || c == b'.' => text = rest,
            _ => return false,
        }
    }
}

/// Splits a stream of chunks into lines.
#[derive(Debug, Default)]
pub struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// No partial line yet.
    pub fn new() -> Lines {
        Lines::default()
    }

    /// Feeds a chunk; calls `line` for each line it completes, without the newline.
    pub fn feed(&mut self, mut chunk: &[u8], mut line: impl FnMut(&[u8])) {
        while let Some(i) = chunk.iter().position(|&b| b == b'\n') {
            if self.partial.is_empty() {
                line(&chunk[..i]);
            } else {
                self.partial.extend_from_slice(&chunk[..i]);
                line(&self.partial);
                self.partial.clear();
            }
            chunk = &chunk[i + 1..];
        }
        self.partial.extend_from_slice(chunk);
    }

    /// At end of input: calls `line` for a last line that had no newline.
    pub fn finish(&mut self, mut line: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            line(&self.partial);
            self.partial.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    #[test]
    fn literals() {
        assert!(matches(b"abc", b"xxabcxx"));
        assert!(!matches(b"abd", b"xxabcxx"));
        assert!(matches(b"", b""));
        assert!(matches(b"", b"anything"));
        assert!(!matches(b"a", b""));
    }

    #[test]
    fn anchors() {
        assert!(matches(b"^ab", b"abc"));
        assert!(!matches(b"^bc", b"abc"));
        assert!(matches(b"bc$", b"abc"));
        assert!(!matches(b"ab$", b"abc"));
        assert!(matches(b"^abc$", b"abc"));
        assert!(!matches(b"^abc$", b"abcd"));
        assert!(matches(b"^$", b""));
        assert!(!matches(b"^$", b"x"));
        // `$` is literal except at the end; `^` except at the start.
        assert!(matches(b"a$b", b"a$b"));
        assert!(matches(b"a^", b"a^"));
    }

    #[test]
    fn dot_and_star() {
        assert!(matches(b"a.c", b"abc"));
        assert!(!matches(b"a.c", b"ac"));
        assert!(matches(b"ab*c", b"ac"));
        assert!(matches(b"ab*c", b"abbbbc"));
        assert!(!matches(b"ab*c", b"abxc"));
        assert!(matches(b"a.*c", b"a123c"));
        assert!(matches(b"^.*$", b"whatever"));
        assert!(matches(b"^a*$", b"aaaa"));
        assert!(!matches(b"^a*$", b"aaba"));
        assert!(matches(b"x*", b""));
        // A leading `*` is literal, as in the C version.
        assert!(matches(b"*a", b"*a"));
        assert!(!matches(b"*a", b"a"));
    }

    #[test]
    fn long_lines_do_not_recurse_deeply() {
        let text = vec![b'a'; 200_000];
        assert!(matches(b"^a*$", &text));
        assert!(!matches(b"b", &text));
        assert!(matches(b"a.a.a$", &text));
    }

    #[test]
    fn splits_lines_across_chunks() {
        let mut out: std::vec::Vec<std::vec::Vec<u8>> = vec![];
        let mut l = Lines::new();
        for chunk in [&b"one\ntw"[..], b"o\n", b"", b"\nthr", b"ee"] {
            l.feed(chunk, |line| out.push(line.to_vec()));
        }
        l.finish(|line| out.push(line.to_vec()));
        assert_eq!(out, [&b"one"[..], b"two", b"", b"three"]);
        let mut n = 0;
        l.finish(|_| n += 1);
        assert_eq!(n, 0);
    }
}
