//! Integration tests of skytrace live in `tests/`.
