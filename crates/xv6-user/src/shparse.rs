//! The shell's parser: xv6 sh's grammar, into a command tree.
//!
//! ```text
//! line   := pipe { '&' } [ ';' line | line ]   (a command may follow '&' directly)
//! pipe   := exec [ '|' pipe ]
//! exec   := '(' line ')' redirs  |  redirs { word redirs }
//! redirs := { ('<' | '>' | '>>') word }
//! ```
//!
//! Words are runs of bytes other than white space (space, `\t`, `\r`, `\n`, `\v`) and the symbols
//! `< | > & ; ( )`. Beyond xv6, quotes group: `'...'` literally and `"..."` with `\"` and `\\`
//! escapes, so `echo "a | b"` prints `a | b`. A malformed line is rejected with a [`ParseError`]
//! instead of xv6's `panic`, and redirections of one command apply in the order written (the last
//! one for a descriptor wins).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use xv6_abi::fcntl::{O_CREATE, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY};

/// Most words one command may have: `exec` takes at most `MAXARG` arguments.
pub const MAX_WORDS: usize = xv6_abi::param::MAXARG;

/// Deepest nesting of parentheses accepted.
pub const MAX_NESTING: usize = 16;

/// A parsed command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cmd {
    /// A program and its arguments (`argv[0]` is the program). Empty only under redirections
    /// (`> file` alone creates the file).
    Exec(Vec<Vec<u8>>),
    /// Run `cmd` with descriptor `kind.fd()` opened on `file`.
    Redir {
        /// The command whose descriptor is redirected.
        cmd: Box<Cmd>,
        /// The file name.
        file: Vec<u8>,
        /// Which descriptor, and how the file is opened.
        kind: RedirKind,
    },
    /// `left | right`.
    Pipe(Box<Cmd>, Box<Cmd>),
    /// `left ; right`: one after the other.
    List(Box<Cmd>, Box<Cmd>),
    /// `cmd &`: in the background.
    Back(Box<Cmd>),
}

/// A kind of redirection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedirKind {
    /// `< file`: standard input from the file.
    In,
    /// `> file`: standard output to the file, truncated or created.
    Out,
    /// `>> file`: standard output to the end of the file, created if missing. xv6 has neither
    /// `O_APPEND` nor `lseek`, so the file is opened for reading and writing without truncation
    /// and the runner reads it through to its end before running the command (xv6's own sh
    /// writes over the start of the file instead).
    Append,
}

impl RedirKind {
    /// The descriptor redirected.
    pub fn fd(self) -> i32 {
        match self {
            RedirKind::In => 0,
            RedirKind::Out | RedirKind::Append => 1,
        }
    }

    /// The `open` flags.
    pub fn flags(self) -> i32 {
        match self {
            RedirKind::In => O_RDONLY,
            RedirKind::Out => O_WRONLY | O_CREATE | O_TRUNC,
            RedirKind::Append => O_RDWR | O_CREATE,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            RedirKind::In => "<",
            RedirKind::Out => ">",
            RedirKind::Append => ">>",
        }
    }
}

/// Why a line was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// A symbol where it cannot go (`;` at the start, a stray `)`, ...).
    Unexpected(&'static str),
    /// `<`, `>` or `>>` without a file name after it.
    MissingFile(&'static str),
    /// `|` without a command on one side.
    MissingCommand(&'static str),
    /// `(` without its `)`.
    MissingParen,
    /// `()` with nothing inside.
    EmptyParens,
    /// A word right after `( ... )`.
    WordAfterParen,
    /// More than [`MAX_WORDS`] words in one command.
    TooManyArgs,
    /// More than [`MAX_NESTING`] levels of parentheses.
    TooDeep,
    /// A quote without its closing quote.
    UnterminatedQuote,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Unexpected(s) => write!(f, "syntax error near `{s}`"),
            ParseError::MissingFile(s) => write!(f, "missing file name after `{s}`"),
            ParseError::MissingCommand(s) => write!(f, "missing command around `{s}`"),
            ParseError::MissingParen => f.write_str("syntax error: missing `)`"),
            ParseError::EmptyParens => f.write_str("syntax error: empty `()`"),
            ParseError::WordAfterParen => f.write_str("syntax error: word after `)`"),
            ParseError::TooManyArgs => write!(f, "too many arguments (at most {})", MAX_WORDS - 1),
            ParseError::TooDeep => {
                write!(f, "parentheses nested too deeply (at most {MAX_NESTING})")
            }
            ParseError::UnterminatedQuote => f.write_str("unterminated quote"),
        }
    }
}

/// A lexical token.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Word(Vec<u8>),
    Pipe,
    Amp,
    Semi,
    LParen,
    RParen,
    Redir(RedirKind),
}

impl Tok {
    fn symbol(&self) -> &'static str {
        match self {
            Tok::Word(_) => "word",
            Tok::Pipe => "|",
            Tok::Amp => "&",
            Tok::Semi => ";",
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::Redir(k) => k.symbol(),
        }
    }
}

/// xv6 sh's white space.
pub fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0b)
}

fn is_symbol(b: u8) -> bool {
    b"<|>&;()".contains(&b)
}

fn tokenize(line: &[u8]) -> Result<Vec<Tok>, ParseError> {
    let mut toks = Vec::new();
    let mut i = 0;
    while i < line.len() {
        let c = line[i];
        if is_space(c) {
            i += 1;
            continue;
        }
        let tok = match c {
            b'|' => Tok::Pipe,
            b'&' => Tok::Amp,
            b';' => Tok::Semi,
            b'(' => Tok::LParen,
            b')' => Tok::RParen,
            b'<' => Tok::Redir(RedirKind::In),
            b'>' if line.get(i + 1) == Some(&b'>') => {
                i += 1;
                Tok::Redir(RedirKind::Append)
            }
            b'>' => Tok::Redir(RedirKind::Out),
            _ => {
                let mut word = Vec::new();
                while i < line.len() && !is_space(line[i]) && !is_symbol(line[i]) {
                    match line[i] {
                        b'\'' => {
                            let rest = &line[i + 1..];
                            let end = rest
                                .iter()
                                .position(|&b| b == b'\'')
                                .ok_or(ParseError::UnterminatedQuote)?;
                            word.extend_from_slice(&rest[..end]);
                            i += end + 2;
                        }
                        b'"' => {
                            i += 1;
                            loop {
                                match line.get(i) {
                                    None => return Err(ParseError::UnterminatedQuote),
                                    Some(b'"') => break,
                                    Some(b'\\')
                                        if matches!(line.get(i + 1), Some(b'"' | b'\\')) =>
                                    {
                                        word.push(line[i + 1]);
                                        i += 2;
                                    }
                                    Some(&b) => {
                                        word.push(b);
                                        i += 1;
                                    }
                                }
                            }
                            i += 1;
                        }
                        b => {
                            word.push(b);
                            i += 1;
                        }
                    }
                }
                toks.push(Tok::Word(word));
                continue;
            }
        };
        toks.push(tok);
        i += 1;
    }
    Ok(toks)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    /// A command may start here.
    fn at_command_start(&self) -> bool {
        matches!(
            self.peek(),
            Some(Tok::Word(_) | Tok::LParen | Tok::Redir(_))
        )
    }

    /// `line`: pipes separated by `;` and `&`. `None` for an empty line.
    fn line(&mut self) -> Result<Option<Cmd>, ParseError> {
        let mut parts = Vec::new();
        loop {
            let Some(mut cmd) = self.pipe()? else {
                return match self.peek() {
                    Some(t @ (Tok::Semi | Tok::Amp)) => Err(ParseError::Unexpected(t.symbol())),
                    _ => Ok(fold_list(parts)),
                };
            };
            let mut backgrounded = false;
            while self.peek() == Some(&Tok::Amp) {
                self.next();
                cmd = Cmd::Back(Box::new(cmd));
                backgrounded = true;
            }
            parts.push(cmd);
            if self.peek() == Some(&Tok::Semi) {
                self.next();
            } else if !(backgrounded && self.at_command_start()) {
                return Ok(fold_list(parts));
            }
        }
    }

    /// `pipe`: execs separated by `|`.
    fn pipe(&mut self) -> Result<Option<Cmd>, ParseError> {
        let Some(first) = self.exec()? else {
            return match self.peek() {
                Some(Tok::Pipe) => Err(ParseError::MissingCommand("|")),
                _ => Ok(None),
            };
        };
        let mut stages = Vec::from([first]);
        while self.peek() == Some(&Tok::Pipe) {
            self.next();
            match self.exec()? {
                Some(c) => stages.push(c),
                None => return Err(ParseError::MissingCommand("|")),
            }
        }
        let mut cmd = stages.pop().expect("at least one stage");
        while let Some(left) = stages.pop() {
            cmd = Cmd::Pipe(Box::new(left), Box::new(cmd));
        }
        Ok(Some(cmd))
    }

    /// `exec`: a parenthesized line or a simple command, with redirections.
    fn exec(&mut self) -> Result<Option<Cmd>, ParseError> {
        let mut redirs = Vec::new();
        if self.peek() == Some(&Tok::LParen) {
            self.next();
            self.depth += 1;
            if self.depth > MAX_NESTING {
                return Err(ParseError::TooDeep);
            }
            let body = self.line()?;
            match self.next() {
                Some(Tok::RParen) => {}
                None => return Err(ParseError::MissingParen),
                Some(t) => return Err(ParseError::Unexpected(t.symbol())),
            }
            self.depth -= 1;
            let body = body.ok_or(ParseError::EmptyParens)?;
            self.redirs(&mut redirs)?;
            if matches!(self.peek(), Some(Tok::Word(_) | Tok::LParen)) {
                return Err(ParseError::WordAfterParen);
            }
            return Ok(Some(wrap(body, redirs)));
        }
        let mut argv = Vec::new();
        self.redirs(&mut redirs)?;
        while let Some(Tok::Word(_)) = self.peek() {
            let Some(Tok::Word(w)) = self.next() else {
                unreachable!()
            };
            if argv.len() + 1 >= MAX_WORDS {
                return Err(ParseError::TooManyArgs);
            }
            argv.push(w);
            self.redirs(&mut redirs)?;
        }
        if self.peek() == Some(&Tok::LParen) {
            return Err(ParseError::Unexpected("("));
        }
        if argv.is_empty() && redirs.is_empty() {
            return Ok(None);
        }
        Ok(Some(wrap(Cmd::Exec(argv), redirs)))
    }

    /// `redirs`: appends each redirection found.
    fn redirs(&mut self, out: &mut Vec<(RedirKind, Vec<u8>)>) -> Result<(), ParseError> {
        while let Some(&Tok::Redir(kind)) = self.peek() {
            self.next();
            match self.next() {
                Some(Tok::Word(file)) => out.push((kind, file)),
                _ => return Err(ParseError::MissingFile(kind.symbol())),
            }
        }
        Ok(())
    }
}

/// Wraps `cmd` in its redirections so that they apply in the order written: the runner applies
/// the outermost first, so the last one written is innermost and wins.
fn wrap(mut cmd: Cmd, redirs: Vec<(RedirKind, Vec<u8>)>) -> Cmd {
    for (kind, file) in redirs.into_iter().rev() {
        cmd = Cmd::Redir {
            cmd: Box::new(cmd),
            file,
            kind,
        };
    }
    cmd
}

/// `a ; b ; c` as `List(a, List(b, c))`.
fn fold_list(mut parts: Vec<Cmd>) -> Option<Cmd> {
    let mut cmd = parts.pop()?;
    while let Some(left) = parts.pop() {
        cmd = Cmd::List(Box::new(left), Box::new(cmd));
    }
    Some(cmd)
}

/// Parses one line. `Ok(None)` for a line with no command (empty or white space).
pub fn parse(line: &[u8]) -> Result<Option<Cmd>, ParseError> {
    let mut p = Parser {
        toks: tokenize(line)?,
        pos: 0,
        depth: 0,
    };
    let cmd = p.line()?;
    match p.peek() {
        None => Ok(cmd),
        Some(t) => Err(ParseError::Unexpected(t.symbol())),
    }
}

impl Cmd {
    /// For a plain command without redirections, its words.
    pub fn simple_words(&self) -> Option<&[Vec<u8>]> {
        match self {
            Cmd::Exec(argv) => Some(argv),
            _ => None,
        }
    }
}

impl fmt::Display for Cmd {
    /// Shows the tree in the shell's syntax, fully parenthesized.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cmd::Exec(argv) => {
                f.write_str("[")?;
                for (i, w) in argv.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{}", crate::io::BStr(w))?;
                }
                f.write_str("]")
            }
            Cmd::Redir { cmd, file, kind } => {
                write!(f, "{{{cmd} {} {}}}", kind.symbol(), crate::io::BStr(file))
            }
            Cmd::Pipe(l, r) => write!(f, "({l} | {r})"),
            Cmd::List(l, r) => write!(f, "({l} ; {r})"),
            Cmd::Back(c) => write!(f, "({c} &)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::{String, ToString};

    fn show(line: &str) -> String {
        match parse(line.as_bytes()) {
            Ok(Some(c)) => c.to_string(),
            Ok(None) => "<empty>".into(),
            Err(e) => std::format!("error: {e}"),
        }
    }

    #[test]
    fn simple() {
        assert_eq!(show("echo hello world"), "[echo hello world]");
        assert_eq!(show("  ls\t-l \n"), "[ls -l]");
        assert_eq!(show(""), "<empty>");
        assert_eq!(show("   \n"), "<empty>");
        assert_eq!(
            parse(b"cat README").unwrap().unwrap(),
            Cmd::Exec(std::vec![b"cat".to_vec(), b"README".to_vec()])
        );
    }

    #[test]
    fn pipes_and_lists() {
        assert_eq!(show("a|b|c"), "([a] | ([b] | [c]))");
        assert_eq!(show("a;b;c"), "([a] ; ([b] ; [c]))");
        assert_eq!(show("a | b ; c"), "(([a] | [b]) ; [c])");
        assert_eq!(show("a ;"), "[a]");
        assert_eq!(show("a&"), "([a] &)");
        assert_eq!(show("a & b"), "(([a] &) ; [b])");
        assert_eq!(show("a & ; b"), "(([a] &) ; [b])");
        assert_eq!(show("a | b &"), "(([a] | [b]) &)");
        assert_eq!(show("a&&"), "(([a] &) &)");
    }

    #[test]
    fn redirections() {
        assert_eq!(show("cat < in > out"), "{{[cat] > out} < in}");
        assert_eq!(show("echo hi >> log"), "{[echo hi] >> log}");
        assert_eq!(show(">f echo x"), "{[echo x] > f}");
        assert_eq!(show("> f"), "{[] > f}");
        assert_eq!(show("echo a>f b"), "{[echo a b] > f}");
        // The last redirection written is innermost, so it is applied last and wins.
        let c = parse(b"x > a > b").unwrap().unwrap();
        let Cmd::Redir { cmd, file, kind } = c else {
            panic!()
        };
        assert_eq!((file.as_slice(), kind), (&b"a"[..], RedirKind::Out));
        assert!(matches!(*cmd, Cmd::Redir { ref file, .. } if file == b"b"));
        assert_eq!(RedirKind::In.fd(), 0);
        assert_eq!(RedirKind::Append.fd(), 1);
        assert_eq!(RedirKind::Out.flags(), O_WRONLY | O_CREATE | O_TRUNC);
        assert_eq!(RedirKind::Append.flags() & O_TRUNC, 0);
    }

    #[test]
    fn blocks() {
        assert_eq!(show("(a; b) | c"), "(([a] ; [b]) | [c])");
        assert_eq!(show("(a; b) > out"), "{([a] ; [b]) > out}");
        assert_eq!(show("((a))"), "[a]");
        assert_eq!(show("(a &) ; b"), "(([a] &) ; [b])");
    }

    #[test]
    fn quotes() {
        assert_eq!(show("echo 'a | b'"), "[echo a | b]");
        assert_eq!(show("echo \"x\\\"y\" z"), "[echo x\"y z]");
        assert_eq!(show("echo a'b c'd"), "[echo ab cd]");
        assert_eq!(show("echo ''"), "[echo ]");
        assert_eq!(show("echo 'abc"), "error: unterminated quote");
        assert_eq!(show("echo \"abc"), "error: unterminated quote");
    }

    #[test]
    fn errors() {
        assert_eq!(show("; a"), "error: syntax error near `;`");
        assert_eq!(show("& a"), "error: syntax error near `&`");
        assert_eq!(show("a ;; b"), "error: syntax error near `;`");
        assert_eq!(show("a )"), "error: syntax error near `)`");
        assert_eq!(show("| a"), "error: missing command around `|`");
        assert_eq!(show("a |"), "error: missing command around `|`");
        assert_eq!(show("a | | b"), "error: missing command around `|`");
        assert_eq!(show("a >"), "error: missing file name after `>`");
        assert_eq!(show("a >> ;"), "error: missing file name after `>>`");
        assert_eq!(show("a < |"), "error: missing file name after `<`");
        assert_eq!(show("(a"), "error: syntax error: missing `)`");
        assert_eq!(show("()"), "error: syntax error: empty `()`");
        assert_eq!(show("(a) b"), "error: syntax error: word after `)`");
        assert_eq!(show("a (b)"), "error: syntax error near `(`");
        let deep = "(".repeat(MAX_NESTING + 1) + "a" + &")".repeat(MAX_NESTING + 1);
        assert!(show(&deep).starts_with("error: parentheses nested too deeply"));
        let ok = "(".repeat(MAX_NESTING) + "a" + &")".repeat(MAX_NESTING);
        assert_eq!(show(&ok), "[a]");
    }

    #[test]
    fn argument_limit() {
        let words = std::vec!["w"; MAX_WORDS - 1].join(" ");
        assert!(parse(words.as_bytes()).unwrap().is_some());
        let words = std::vec!["w"; MAX_WORDS].join(" ");
        assert_eq!(parse(words.as_bytes()), Err(ParseError::TooManyArgs));
    }

    #[test]
    fn long_lists_do_not_recurse_in_the_parser() {
        let line = "a;".repeat(2000);
        assert!(parse(line.as_bytes()).unwrap().is_some());
        let line = std::vec!["a"; 2000].join("|");
        assert!(parse(line.as_bytes()).unwrap().is_some());
    }

    #[test]
    fn simple_words() {
        let c = parse(b"cd /a").unwrap().unwrap();
        assert_eq!(c.simple_words().unwrap().len(), 2);
        assert!(parse(b"cd > x").unwrap().unwrap().simple_words().is_none());
    }
}
