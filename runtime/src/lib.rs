//! skytrace
