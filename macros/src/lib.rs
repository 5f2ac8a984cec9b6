//! Attribute macros for skytrace. Use them through the `skytrace` crate.
