//! Misuse is a compile error that points at the offending token.
//!
//! `ui/` holds the errors the macros report themselves: the same with and without the `enable`
//! feature, since the attribute and the item are checked in both modes. `ui-enabled/` holds the
//! ones rustc reports on the generated code (an `err` on a fn that does not return a `Result`,
//! a tag that is not `Display`, …), which exist only when the macros instrument.
//!
//! trybuild builds the cases with the features this test binary was built with. In a
//! `cargo test --workspace` run that is without `enable` (the proc macro gets it through
//! `skytrace/enable` in the host feature set, this test does not), so `ui-enabled/` runs with
//! `cargo test -p skytrace-macros --features enable`.
//!
//! Regenerate the `.stderr` files with `TRYBUILD=overwrite cargo test -p skytrace-macros
//! --features enable --test ui`, then read each one.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    if cfg!(feature = "enable") {
        t.compile_fail("tests/ui-enabled/*.rs");
    }
}
