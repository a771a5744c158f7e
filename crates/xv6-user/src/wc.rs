//! wc's counting, fed chunk by chunk.

/// Lines, words and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Newline characters.
    pub lines: usize,
    /// Maximal runs of non-white-space bytes.
    pub words: usize,
    /// Bytes.
    pub bytes: usize,
}

/// Counts [`Counts`] over a stream of chunks (a word may span two chunks).
#[derive(Clone, Copy, Debug, Default)]
pub struct Counter {
    counts: Counts,
    in_word: bool,
}

/// xv6 wc's white space: space, `\r`, `\t`, `\n`, `\v`.
pub fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\r' | b'\t' | b'\n' | 0x0b)
}

impl Counter {
    /// Nothing counted yet.
    pub fn new() -> Counter {
        Counter::default()
    }

    /// Counts a chunk.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.counts.bytes += chunk.len();
        for &b in chunk {
            if b == b'\n' {
                self.counts.lines += 1;
            }
            if is_space(b) {
                self.in_word = false;
            } else if !self.in_word {
                self.in_word = true;
                self.counts.words += 1;
            }
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(chunks: &[&[u8]]) -> Counts {
        let mut c = Counter::new();
        for ch in chunks {
            c.feed(ch);
        }
        c.counts()
    }

    #[test]
    fn counts() {
        let c = |l, w, b| Counts {
            lines: l,
            words: w,
            bytes: b,
        };
        assert_eq!(count(&[]), c(0, 0, 0));
        assert_eq!(count(&[b"hello world\n"]), c(1, 2, 12));
        assert_eq!(count(&[b"  a\tb\r\n\x0bc"]), c(1, 3, 9));
        assert_eq!(count(&[b"\n\n\n"]), c(3, 0, 3));
        assert_eq!(count(&[b"no newline"]), c(0, 2, 10));
        // A word split across chunks counts once.
        assert_eq!(count(&[b"hel", b"lo wor", b"ld"]), c(0, 2, 11));
    }
}
