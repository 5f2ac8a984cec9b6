//! In-process collector.
