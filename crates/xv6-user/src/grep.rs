//! grep's matcher and line splitting.
//!
//! The pattern language is xv6's (Kernighan and Pike's, *The Practice of Programming*, ch. 9):
//! `c` matches itself, `.` any byte, `c*` zero or more of `c` (or of anything for `.*`), `^` at the
//! start anchors to the beginning of the line and `$` at the end to its end. Everything else is
//! literal. The C version backtracks, which takes exponential time on patterns such as
//! `a*a*a*a*a*b` against a long run of `a`s; this one runs the pattern as a set of positions
//! advanced a byte at a time (Thompson's construction), in time proportional to the line's length
//! times the pattern's, and without recursion, so long lines cannot exhaust the small user stack.
//! The tests check it against a transcription of the backtracking rules.

use alloc::vec;
use alloc::vec::Vec;

/// One pattern element: a byte (`.` for any) and whether it is starred.
#[derive(Clone, Copy, Debug)]
struct Atom {
    byte: u8,
    star: bool,
}

impl Atom {
    fn fits(self, t: u8) -> bool {
        self.byte == b'.' || self.byte == t
    }
}

/// True if `re` matches somewhere in `text` (one line, without its newline).
pub fn matches(re: &[u8], text: &[u8]) -> bool {
    let (anchored, re) = match re {
        [b'^', rest @ ..] => (true, rest),
        _ => (false, re),
    };
    // `c*` binds first, so `$*` is a starred `$`; a `$` is the end anchor only as the last byte.
    let mut atoms = Vec::with_capacity(re.len());
    let mut at_end = false;
    let mut i = 0;
    while i < re.len() {
        if re.get(i + 1) == Some(&b'*') {
            atoms.push(Atom {
                byte: re[i],
                star: true,
            });
            i += 2;
        } else if re[i] == b'$' && i + 1 == re.len() {
            at_end = true;
            i += 1;
        } else {
            atoms.push(Atom {
                byte: re[i],
                star: false,
            });
            i += 1;
        }
    }
    let m = atoms.len();
    // Position k means "atoms[..k] have matched"; a starred atom may also match nothing.
    let close = |set: &mut [bool]| {
        for k in 0..m {
            if set[k] && atoms[k].star {
                set[k + 1] = true;
            }
        }
    };
    let mut cur = vec![false; m + 1];
    let mut next = vec![false; m + 1];
    cur[0] = true;
    close(&mut cur);
    for &t in text {
        if cur[m] && !at_end {
            return true;
        }
        next.fill(false);
        for k in 0..m {
            if cur[k] && atoms[k].fits(t) {
                // A starred atom stays to match more; a plain one moves on.
                next[if atoms[k].star { k } else { k + 1 }] = true;
            }
        }
        if !anchored {
            // A match may start at every byte.
            next[0] = true;
        }
        close(&mut next);
        core::mem::swap(&mut cur, &mut next);
        if anchored && !cur.contains(&true) {
            return false;
        }
    }
    cur[m]
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
    fn no_exponential_backtracking() {
        let text = vec![b'a'; 5000];
        assert!(!matches(b"a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", &text));
        assert!(matches(b"^a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*$", &text));
        assert!(!matches(b".*.*.*.*.*.*.*.*.*.*b$", &text));
    }

    /// xv6's backtracking rules, transcribed: the reference the matcher must agree with.
    fn reference(re: &[u8], text: &[u8]) -> bool {
        fn here(re: &[u8], text: &[u8]) -> bool {
            match re {
                [] => true,
                [c, b'*', rest @ ..] => {
                    let mut t = text;
                    loop {
                        if here(rest, t) {
                            return true;
                        }
                        match t.split_first() {
                            Some((x, r)) if x == c || *c == b'.' => t = r,
                            _ => return false,
                        }
                    }
                }
                [b'$'] => text.is_empty(),
                [c, rest @ ..] => match text.split_first() {
                    Some((x, r)) if *c == b'.' || c == x => here(rest, r),
                    _ => false,
                },
            }
        }
        if let [b'^', rest @ ..] = re {
            return here(rest, text);
        }
        (0..=text.len()).any(|i| here(re, &text[i..]))
    }

    /// Every string of up to `max` bytes over `alphabet`.
    fn all_strings(alphabet: &[u8], max: usize) -> std::vec::Vec<std::vec::Vec<u8>> {
        let mut all = vec![vec![]];
        let mut last = vec![vec![]];
        for _ in 0..max {
            last = last
                .iter()
                .flat_map(|s: &std::vec::Vec<u8>| {
                    alphabet.iter().map(move |&c| {
                        let mut longer = s.clone();
                        longer.push(c);
                        longer
                    })
                })
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    #[test]
    fn agrees_with_the_backtracking_rules() {
        // Every pattern of up to 5 bytes over a small alphabet, against every text of up to 4
        // bytes over a smaller one (with the pattern's specials as text bytes).
        let texts = all_strings(b"ab*$", 4);
        for p in &all_strings(b"ab.*^$", 5) {
            for t in &texts {
                assert_eq!(
                    matches(p, t),
                    reference(p, t),
                    "pattern {:?} text {:?}",
                    core::str::from_utf8(p).unwrap(),
                    core::str::from_utf8(t).unwrap()
                );
            }
        }
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
