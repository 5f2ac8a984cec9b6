//! # skytrace
//!
//! A SkyWalking agent for Rust. Annotate functions, add one layer, set the same `SW_AGENT_*`
//! variables the Java, Go and Python agents read, and Rust services appear in the same traces.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Reads SW_AGENT_NAME, SW_AGENT_COLLECTOR_BACKEND_SERVICES, SW_AGENT_SAMPLE, …
//! let _guard = skytrace::init(skytrace::Config::from_env()?)?;
//!
//! let request = skytrace::Span::root_entry("nightly-job");
//! let _in = request.enter();
//! {
//!     let step = skytrace::Span::local("load");
//!     let _in = step.enter();
//!     // … work …
//! }
//! # Ok(()) }
//! ```
//!
//! - [`Span`]: entry, local and exit spans; [`Instrument::in_span`] for futures;
//!   [`LocalSpan`] for synchronous work (what `#[trace]` makes on a plain `fn`).
//! - [`inject`], [`Extractor`], [`Injector`], [`Sw8Header`]: propagation (`sw8`,
//!   `sw8-correlation`, `sw8-x`).
//! - [`spawn`] / [`Instrument::in_current_trace`]: a task that carries the current trace;
//!   [`snapshot`] / [`ContextSnapshot::continue_span`]: continue a trace by hand elsewhere.
//! - [`Config`], [`init`], [`Tracer`]: configuration and the reporter ([`ConsoleReporter`],
//!   [`DiscardReporter`], or the gRPC reporter to OAP with the `grpc` feature).
#![cfg_attr(
    feature = "grpc",
    doc = "- [`GrpcReporter`]: the gRPC reporter to OAP (feature `grpc`, on by default)."
)]
#![warn(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

// Lets the runtime's own tests use the attributes, whose expansions name `::skytrace::…`.
extern crate self as skytrace;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
mod agent;
mod boundary;
mod cap;
pub mod component;
mod config;
mod context;
#[cfg_attr(not(any(feature = "grpc", feature = "tracing")), allow(dead_code))]
mod decimal;
#[cfg(feature = "grpc")]
mod dynamic_config;
mod edit;
mod encoded_pairs;
mod glob;
mod global;
mod host;
mod id;
mod init_error;
mod instrument;
#[cfg(any(
    feature = "axum",
    feature = "axum-0-7",
    feature = "tonic",
    feature = "tower",
    feature = "reqwest",
    feature = "reqwest-0-12",
    feature = "actix-web",
    feature = "sqlx-postgres",
    feature = "sqlx-mysql",
    feature = "redis",
    feature = "redis-0-32",
    feature = "lapin",
    feature = "async-nats",
    feature = "rumqttc",
    feature = "rskafka",
    feature = "rdkafka",
    feature = "tracing",
    feature = "log",
    feature = "tokio-postgres",
    feature = "diesel"
))]
pub mod integrations;
mod intern;
mod local_span;
mod log_sink;
pub mod logs;
pub mod meter;
#[cfg(feature = "grpc")]
#[allow(dead_code)] // called by the keep-alive (being wired)
mod process_hook;
#[cfg(feature = "profiling")]
#[allow(dead_code)] // run by the profiling signals of the reporter (being wired)
mod profile;
mod propagation;
mod protobuf;
mod reporter;
mod sampler;
mod say;
mod segment;
mod settings;
mod snapshot;
mod span;
mod span_future;
mod spare_spans;
mod suffix;
mod task;
mod time;
mod tracer;

pub use config::{Config, ConfigBuilder, ConfigError, DEFAULT_IGNORE_SUFFIX, ReporterKind};
pub use init_error::InitError;
pub use instrument::{InSpan, Instrument};
pub use local_span::LocalSpan;
pub use propagation::{
    Correlation, Extractor, Injector, SW8, SW8_CORRELATION, SW8_MAX_LEN, SW8_X, Sw8Error,
    Sw8Extension, Sw8Header,
};
#[cfg(feature = "grpc")]
pub use reporter::GrpcReporter;
pub use reporter::{ConsoleReporter, DiscardReporter, Reporter, ReporterStats};
pub use segment::{Segment, SpanKind, SpanLayer};
pub use settings::TraceSettings;
pub use snapshot::{
    ContextSnapshot, current_trace_id, get_correlation, inject, put_correlation, snapshot,
};
pub use span::{Entered, EnteredSpan, Span};
pub use task::{InCurrentTrace, spawn};
pub use tracer::{DEFAULT_SHUTDOWN_TIMEOUT, Tracer, TracerGuard, init, is_ignored_path};

pub use skytrace_macros::{entry_span, exit_span, trace};

// The README's quick start compiles as a doctest, so it cannot drift from the API.
#[cfg(all(doctest, feature = "enable", feature = "axum", feature = "reqwest"))]
#[doc = include_str!("../../README.md")]
struct ReadmeQuickStart;

/// The protocol types, for custom reporters.
pub use skytrace_proto as proto;
