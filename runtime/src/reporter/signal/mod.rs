//! What the worker sends, one module per signal: each owns its queue (or its schedule) and turns
//! what it holds into the transport's calls: segments, instance management, logs, meters,
//! configuration fetches and the instance's own events, each with a branch in the worker's loop.

pub(crate) mod configuration;
pub(crate) mod events;
pub(crate) mod logs;
pub(crate) mod management;
pub(crate) mod meters;
pub(crate) mod segments;
