//! What the worker sends, one module per signal: each owns its queue (or its schedule) and its
//! health, and runs as a task of its own on the reporter's thread, turning what it holds into
//! the transport's calls: segments, instance management, logs, meters (read on a thread of
//! their own, cut to fit in `meter_reports`), configuration fetches and the instance's own
//! events.

pub(crate) mod configuration;
pub(crate) mod events;
pub(crate) mod logs;
pub(crate) mod management;
pub(crate) mod meter_reports;
pub(crate) mod meters;
#[cfg(feature = "profiling")]
pub(crate) mod profiling;
pub(crate) mod segments;
