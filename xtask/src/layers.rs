//! The kernel's layer check (`cargo xtask test`, step "kernel layers").
//!
//! The kernel binary (crates/xv6-kernel/src) is cut into layers, one folder each, lowest first:
//! [`LAYERS`]. A module may use its own layer and the layers below it, never one above: the check
//! reads every `crate::NAME` path (and the `println!`/`print!` macros, which are the console's)
//! outside comments and fails on an upward one. `main.rs` and `smp.rs` (boot) sit above all
//! layers. The library's modules (`lib.rs` and what it declares) are plain logic below every layer;
//! the binary reaches them as `xv6_kernel::...`, which the check does not restrict.

use crate::util::{self, errln, fail, Result};
use std::fmt;
use std::path::{Path, PathBuf};

/// The layers, lowest first. docs/KERNEL.md draws the same picture.
pub const LAYERS: [&str; 7] = ["arch", "sync", "dev", "mm", "fs", "proc", "syscall"];

/// Files at the top of src/ that belong to the binary's top (boot), above every layer.
const TOP_FILES: [&str; 2] = ["main.rs", "smp.rs"];

/// Layer index of the boot files.
const TOP: usize = LAYERS.len();

/// An import from a lower layer of a higher one.
#[derive(Debug, PartialEq, Eq)]
pub struct Violation {
    /// The importing file, relative to src/.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// The importing file's layer.
    pub from: String,
    /// The layer (or unknown module) it names.
    pub to: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if LAYERS.contains(&self.to.as_str()) || self.to == "boot" {
            write!(
                f,
                "{}:{}: layer `{}` uses layer `{}`, which is above it",
                self.file.display(),
                self.line,
                self.from,
                self.to
            )
        } else {
            write!(
                f,
                "{}:{}: `crate::{}` is not a layer (add the module to one: {})",
                self.file.display(),
                self.line,
                self.to,
                LAYERS.join(", ")
            )
        }
    }
}

/// What the check found: files and imports seen, and the upward ones.
#[derive(Debug, Default)]
pub struct Report {
    pub files: usize,
    pub imports: usize,
    pub violations: Vec<Violation>,
}

fn layer_name(i: usize) -> String {
    LAYERS
        .get(i)
        .map_or_else(|| "boot".to_string(), |s| s.to_string())
}

/// The layer a `crate::NAME` path points into, or None for a name that is no layer.
fn target_layer(name: &str) -> Option<usize> {
    match name {
        // Exported macros live at the crate root; both are the console's.
        "println" | "print" => LAYERS.iter().position(|&l| l == "dev"),
        _ => LAYERS.iter().position(|&l| l == name),
    }
}

/// The code of a line: without `//` comments (doc comments included) and string literals, so
/// that prose naming a module ("see crate::proc") does not count.
fn code_of(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    let mut in_str = false;
    while let Some(c) = chars.next() {
        if in_str {
            if c == '\\' {
                chars.next();
            } else if c == '"' {
                in_str = false;
            }
            continue;
        }
        if c == '"' {
            in_str = true;
            continue;
        }
        if c == '/' && chars.peek() == Some(&'/') {
            break;
        }
        out.push(c);
    }
    out
}

/// Every module named as `crate::NAME` (or `$crate::NAME`) in `code`, and a `println`/`print`
/// for each use of those macros.
fn names_used(code: &str) -> Vec<String> {
    let mut v = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            v.push(name);
        } else if after.starts_with('{') {
            v.push("{".to_string());
        }
        rest = after;
    }
    for m in ["println!", "print!"] {
        let mut r = code;
        while let Some(i) = r.find(m) {
            let before = r[..i].chars().next_back();
            // `crate::println!` was counted above as a path.
            if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                v.push(m.trim_end_matches('!').to_string());
            }
            r = &r[i + m.len()..];
        }
    }
    v
}

/// Checks one file's text, in layer `layer`.
fn check_text(file: &Path, layer: usize, text: &str, report: &mut Report) {
    report.files += 1;
    for (n, line) in text.lines().enumerate() {
        for name in names_used(&code_of(line)) {
            report.imports += 1;
            match target_layer(&name) {
                Some(t) if t <= layer => {}
                Some(t) => report.violations.push(Violation {
                    file: file.to_path_buf(),
                    line: n + 1,
                    from: layer_name(layer),
                    to: layer_name(t),
                }),
                None => report.violations.push(Violation {
                    file: file.to_path_buf(),
                    line: n + 1,
                    from: layer_name(layer),
                    to: name,
                }),
            }
        }
    }
}

/// The modules `lib.rs` declares (`pub mod NAME;`): the library, not a layer.
fn library_modules(src: &Path) -> Result<Vec<String>> {
    let lib = std::fs::read_to_string(src.join("lib.rs"))
        .map_err(|e| fail!("cannot read {}: {e}", src.join("lib.rs").display()))?;
    Ok(lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|r| r.trim_end_matches(';').trim().to_string())
        .collect())
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| fail!("cannot list {}: {e}", dir.display()))?;
    for e in entries {
        let p = e
            .map_err(|e| fail!("cannot list {}: {e}", dir.display()))?
            .path();
        if p.is_dir() {
            rs_files(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    Ok(())
}

/// Checks the kernel sources under `src`.
pub fn check_tree(src: &Path) -> Result<Report> {
    let lib = library_modules(src)?;
    let mut files = Vec::new();
    rs_files(src, &mut files)?;
    files.sort();
    let mut report = Report::default();
    for f in files {
        let rel = f.strip_prefix(src).unwrap_or(&f).to_path_buf();
        let mut comps = rel.components();
        let first = comps
            .next()
            .map(|c| c.as_os_str().to_string_lossy().to_string())
            .unwrap_or_default();
        let layer = if comps.next().is_some() {
            match LAYERS.iter().position(|&l| l == first) {
                Some(i) => i,
                None => {
                    return Err(fail!(
                        "crates/xv6-kernel/src/{}: the folder `{first}` is not a layer ({})",
                        rel.display(),
                        LAYERS.join(", ")
                    ))
                }
            }
        } else if TOP_FILES.contains(&first.as_str()) {
            TOP
        } else if first == "lib.rs" || lib.iter().any(|m| format!("{m}.rs") == first) {
            continue; // the host-tested library
        } else {
            return Err(fail!(
                "crates/xv6-kernel/src/{first}: a file outside the layers (move it into one of {}, \
                 or declare it in lib.rs)",
                LAYERS.join(", ")
            ));
        };
        let text =
            std::fs::read_to_string(&f).map_err(|e| fail!("cannot read {}: {e}", f.display()))?;
        check_text(&rel, layer, &text, &mut report);
    }
    Ok(report)
}

/// The test step: fails with every upward import listed.
pub fn check() -> Result<()> {
    let src = util::root().join("crates/xv6-kernel/src");
    let r = check_tree(&src)?;
    if !r.violations.is_empty() {
        let list: Vec<String> = r.violations.iter().map(|v| format!("  {v}")).collect();
        return Err(fail!(
            "the kernel's layers are crossed upward ({} imports; lowest layer first: {}):\n{}",
            r.violations.len(),
            LAYERS.join(" < "),
            list.join("\n")
        ));
    }
    errln!(
        "kernel layers: {} files, {} imports, all downward ({} < boot)",
        r.files,
        r.imports,
        LAYERS.join(" < ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(layer: &str, text: &str) -> Vec<Violation> {
        let i = LAYERS.iter().position(|&l| l == layer).unwrap_or(TOP);
        let mut r = Report::default();
        check_text(Path::new("x.rs"), i, text, &mut r);
        r.violations
    }

    #[test]
    fn downward_and_same_layer_imports_pass() {
        assert!(check(
            "fs",
            "use crate::sync::wait;\nuse crate::fs::bio;\ncrate::println!(\"x\");"
        )
        .is_empty());
        assert!(check("boot", "use crate::syscall::trap;").is_empty());
    }

    #[test]
    fn upward_imports_fail_with_file_and_line() {
        let v = check(
            "fs",
            "use crate::sync::wait;\n    crate::proc::proc::myproc();\n",
        );
        assert_eq!(
            v,
            vec![Violation {
                file: PathBuf::from("x.rs"),
                line: 2,
                from: "fs".into(),
                to: "proc".into()
            }]
        );
        assert!(v[0]
            .to_string()
            .contains("x.rs:2: layer `fs` uses layer `proc`"));
        // The console's macros are the dev layer's, bare or by path.
        assert_eq!(check("sync", "    println!(\"a\");").len(), 1);
        assert_eq!(check("arch", "crate::print!(\"a\");").len(), 1);
        // A macro-made path counts too.
        assert_eq!(check("arch", "$crate::dev::console::_print(x)").len(), 1);
    }

    #[test]
    fn comments_and_strings_do_not_count() {
        assert!(check(
            "arch",
            "// see crate::proc::proc\n/// uses crate::fs\nlet s = \"crate::syscall\";"
        )
        .is_empty());
        assert!(check("arch", "let a = 1; // crate::proc").is_empty());
    }

    #[test]
    fn unknown_modules_and_group_imports_are_reported() {
        let v = check("proc", "use crate::helpers::x;");
        assert_eq!(v.len(), 1);
        assert!(v[0].to_string().contains("`crate::helpers` is not a layer"));
        assert_eq!(check("proc", "use crate::{fs, sync};").len(), 1);
    }

    #[test]
    fn the_real_kernel_has_no_upward_import() {
        let src = util::root().join("crates/xv6-kernel/src");
        let r = check_tree(&src).unwrap();
        assert!(r.violations.is_empty(), "{:#?}", r.violations);
        assert!(r.files > 20 && r.imports > 100, "{r:?}");
    }
}
