//! Meters: the service's own metrics, its process and runtime, and the agent's health, sent to
//! OAP with `MeterReportService` once per period.
//!
//! ```
//! use skytrace::meter;
//!
//! # fn main() -> Result<(), skytrace::meter::MeterError> {
//! let orders = meter::counter("shop_orders_placed").label("region", "eu").build()?;
//! orders.inc();
//!
//! let latency = meter::histogram("shop_checkout_latency_ms", &[10.0, 50.0, 100.0, 500.0]).build()?;
//! latency.observe(42.0);
//!
//! let pool = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(4));
//! let idle = pool.clone();
//! meter::gauge("shop_db_idle_connections", move || {
//!     idle.load(std::sync::atomic::Ordering::Relaxed) as f64
//! })
//! .build()?;
//! # Ok(()) }
//! ```
//!
//! - [`Counter`]: a total; [`CounterMode::Rate`] reports the increase per period instead.
//! - [`Gauge`]: a function read once per period, outside every lock of skytrace.
//! - [`Histogram`]: counts per bucket, given by lower bounds, in the form OAP reads.
//! - Names and label names match `[a-zA-Z_][a-zA-Z0-9_]*` (OAP's meter analyzer needs it);
//!   a bad one is a [`MeterError`]. Registering the same name and labels again returns the same
//!   meter.
//! - Built in ([`names`]): process meters (`instance_rust_process_*`, in the global registry
//!   from the start), tokio runtime meters (`MeterRegistry::register_tokio_runtime`, with the
//!   `grpc` feature) and the agent's own health ([`MeterRegistry::register_agent_health`]).
//!
//! OAP turns meters into metrics only through a meter-analyzer file: the project ships
//! `oap/meter-analyzer-config/rust-runtime.yaml` for the built-in meters (see `docs/meters.md`).

mod agent;
mod builder;
mod counter;
mod error;
mod gauge;
mod histogram;
mod id;
pub mod names;
mod process;
mod registry;
#[cfg(test)]
mod tests;
#[cfg(feature = "grpc")]
mod tokio_runtime;

use std::sync::OnceLock;

pub use agent::AgentHealth;
pub use builder::{CounterBuilder, GaugeBuilder, HistogramBuilder};
pub use counter::{Counter, CounterMode};
pub use error::MeterError;
pub use gauge::Gauge;
pub use histogram::Histogram;
pub use registry::{DEFAULT_MAX_METERS, MeterRegistry};

static GLOBAL: OnceLock<MeterRegistry> = OnceLock::new();

/// The process-wide registry, whose meters the reporter sends. Made on first use, with the
/// process meters registered and, when first used inside a tokio runtime, that runtime's
/// meters too.
///
/// ```
/// let registry = skytrace::meter::global();
/// assert!(registry.counter("jobs_done").build().is_ok());
/// ```
pub fn global() -> &'static MeterRegistry {
    GLOBAL.get_or_init(|| {
        let registry = MeterRegistry::new();
        registry.register_process_meters();
        #[cfg(feature = "grpc")]
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            registry.register_tokio_runtime(&handle);
        }
        registry
    })
}

/// Starts registering a [`Counter`] in the [global] registry.
///
/// ```
/// let c = skytrace::meter::counter("emails_sent").label("kind", "welcome").build().unwrap();
/// c.inc();
/// ```
pub fn counter(name: impl Into<String>) -> CounterBuilder<'static> {
    global().counter(name)
}

/// Starts registering a [`Gauge`] in the [global] registry.
///
/// ```
/// skytrace::meter::gauge("cache_entries", || 12.0).build().unwrap();
/// ```
pub fn gauge(
    name: impl Into<String>,
    read: impl Fn() -> f64 + Send + Sync + 'static,
) -> GaugeBuilder<'static> {
    global().gauge(name, read)
}

/// Starts registering a [`Histogram`] in the [global] registry, with these bucket lower
/// bounds.
///
/// ```
/// let h = skytrace::meter::histogram("upload_size_kb", &[64.0, 1024.0]).build().unwrap();
/// h.observe(100.0);
/// ```
pub fn histogram(name: impl Into<String>, bounds: &[f64]) -> HistogramBuilder<'static> {
    global().histogram(name, bounds)
}
