//! Misuse is a compile error that points at the offending token.
//!
//! `ui/` holds the errors the macros report themselves: the same with and without the `enable`
//! feature, since the attribute and the item are checked in both modes. `ui-enabled/` holds the
//! ones rustc reports on the generated code (an `err` on a fn that does not return a `Result`,
//! a tag that is not `Display`, …), which exist only when the macros instrument.
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
