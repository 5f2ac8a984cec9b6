//! Copies the README's quick start (the first `rust` block under `## Quick start`) into
//! `OUT_DIR/quickstart.rs`, so that this crate compiles exactly what the README shows.

use std::path::Path;

fn main() {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    println!("cargo::rerun-if-changed={}", readme.display());
    let text = std::fs::read_to_string(&readme)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", readme.display()));
    let section = text
        .split_once("\n## Quick start\n")
        .map(|(_, rest)| rest)
        .expect("the README has a `## Quick start` section");
    let code = section
        .split_once("```rust")
        .and_then(|(_, rest)| rest.split_once('\n'))
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .map(|(code, _)| code)
        .expect("the quick start has a ```rust block");
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("quickstart.rs");
    std::fs::write(&out, code).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}
