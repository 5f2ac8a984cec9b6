//! The web view: one page, compiled into the collector, showing what it received — a list of
//! recent traces, each trace as a waterfall across services with its spans' tags, logs and log
//! records, the instances, meters as small time series, and events — updated as data arrives.
//!
//! - `store.rs`: the bounded window the page can show, fed by the gRPC handlers.
//! - `api.rs`: the JSON documents the page reads.
//! - `json.rs`: the writer those documents are built with.
//! - `http.rs`: the HTTP server, the page's files (`collector/ui/`) and the long poll.

pub(crate) mod api;
mod http;
pub(crate) mod json;
pub(crate) mod store;

pub(crate) use http::serve;
pub(crate) use store::Store;

/// Segments (and log records) the web view keeps by default.
pub(crate) const DEFAULT_KEEP: usize = 10_000;
