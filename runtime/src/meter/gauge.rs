//! Gauges: a value the registry asks the service for once per period.

use std::fmt;
use std::sync::Arc;

use super::id::MeterId;

pub(crate) type ReadFn = dyn Fn() -> f64 + Send + Sync;

/// A value read from a function once per report period. Cloning is cheap.
///
/// The function runs on the meters' own thread (`skytrace-meters`), outside every lock of
/// skytrace, so it may take locks of its own; a slow one delays only the meters. A NaN or
/// infinite result skips that period's value; a function that panics is said once on standard
/// error and never read again.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// let queue_len = Arc::new(AtomicUsize::new(0));
/// let seen = Arc::clone(&queue_len);
/// let registry = skytrace::meter::MeterRegistry::new();
/// let gauge = registry
///     .gauge("jobs_waiting", move || seen.load(Ordering::Relaxed) as f64)
///     .label("queue", "email")
///     .build()
///     .unwrap();
/// assert_eq!(gauge.name(), "jobs_waiting");
/// ```
#[derive(Clone)]
pub struct Gauge {
    pub(crate) core: Arc<GaugeCore>,
}

pub(crate) struct GaugeCore {
    pub(crate) id: MeterId,
    pub(crate) read: Box<ReadFn>,
    /// Set once the function panicked: it is not read again.
    pub(crate) panicked: std::sync::atomic::AtomicBool,
}

impl Gauge {
    /// The meter's name.
    pub fn name(&self) -> &str {
        &self.core.id.name
    }
}

impl fmt::Debug for Gauge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gauge")
            .field("name", &self.core.id.name)
            .field("labels", &self.core.id.labels)
            .finish_non_exhaustive()
    }
}
