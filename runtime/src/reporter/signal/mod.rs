//! What the worker sends, one module per signal: each owns its queue (or its schedule) and turns
//! what it holds into the transport's calls. Segments and instance management now; logs, meters
//! and configuration fetches come as modules beside these, each with a branch in the worker's
//! loop.

pub(crate) mod configuration;
pub(crate) mod logs;
pub(crate) mod management;
pub(crate) mod meters;
pub(crate) mod segments;
