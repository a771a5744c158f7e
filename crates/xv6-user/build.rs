//! Links the user programs with `user.ld` (only when they are built for real, with the `user`
//! feature; host tests and clippy never link them).

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=user.ld");
    if std::env::var_os("CARGO_FEATURE_USER").is_some() {
        let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
        let script = dir.join("user.ld");
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
    }
}
