//! Examples of skytrace live in `examples/`.
