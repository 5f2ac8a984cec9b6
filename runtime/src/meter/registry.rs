//! The registry: every meter of a process, and the one function that turns them into a report.

use std::collections::HashMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use skytrace_proto::v3::{self, meter_data::Metric};

use super::counter::{Counter, CounterCore, CounterMode};
use super::error::{self, MeterError};
use super::gauge::{Gauge, GaugeCore, ReadFn};
use super::histogram::{Histogram, HistogramCore, bucket_bounds};
use super::id::MeterId;
use super::names;

/// The most meters one registry holds, as the Java agent's `meter.max_meter_size`: a label
/// with unbounded values (a user id, a URL with ids in it) must not grow memory for ever.
pub const DEFAULT_MAX_METERS: usize = 500;

#[derive(Clone)]
enum Meter {
    Counter(Arc<CounterCore>),
    Gauge(Arc<GaugeCore>),
    Histogram(Arc<HistogramCore>),
}

impl Meter {
    fn describe(&self) -> String {
        match self {
            Meter::Counter(c) => counter_kind(c.mode).into(),
            Meter::Gauge(_) => "a gauge".into(),
            Meter::Histogram(h) => format!("a histogram with bounds {:?}", h.bounds),
        }
    }
}

/// Which built-in group a [`Source`] is; registering a group again replaces it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SourceKind {
    Process,
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    Tokio,
    Agent,
}

/// A group of built-in meters read together (one `/proc` read, one call of the reporter's
/// statistics), each a single value without labels.
pub(crate) trait Source: Send + Sync {
    /// Pushes `(name, value)` pairs; names come from [`names`].
    fn collect(&self, out: &mut Vec<(&'static str, f64)>);
}

/// Every meter of a process (or of a test), and the built-in groups.
///
/// Cloning is cheap and every clone is the same registry. The [`global`](super::global) one is
/// what the reporter sends; make your own for tests.
///
/// ```
/// use skytrace::meter::MeterRegistry;
///
/// let registry = MeterRegistry::new();
/// let a = registry.counter("requests").label("route", "/users").build().unwrap();
/// let b = registry.counter("requests").label("route", "/users").build().unwrap();
/// a.inc();
/// assert_eq!(b.get(), 1.0); // the same meter
/// assert!(registry.gauge("requests", || 0.0).label("route", "/users").build().is_err());
/// ```
#[derive(Clone)]
pub struct MeterRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    max_meters: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    index: HashMap<MeterId, usize>,
    meters: Vec<Meter>,
    sources: Vec<(SourceKind, Arc<dyn Source>)>,
}

impl Default for MeterRegistry {
    fn default() -> Self {
        MeterRegistry::new()
    }
}

impl fmt::Debug for MeterRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("MeterRegistry")
            .field("meters", &state.meters.len())
            .field(
                "sources",
                &state.sources.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl MeterRegistry {
    /// An empty registry holding at most [`DEFAULT_MAX_METERS`] meters.
    pub fn new() -> MeterRegistry {
        MeterRegistry::with_max_meters(DEFAULT_MAX_METERS)
    }

    /// An empty registry holding at most `max_meters` meters.
    ///
    /// ```
    /// let registry = skytrace::meter::MeterRegistry::with_max_meters(1);
    /// registry.counter("a").build().unwrap();
    /// assert!(registry.counter("b").build().is_err());
    /// ```
    pub fn with_max_meters(max_meters: usize) -> MeterRegistry {
        MeterRegistry {
            inner: Arc::new(Inner {
                max_meters,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// How many meters are registered (the built-in groups not counted).
    pub fn len(&self) -> usize {
        self.lock().meters.len()
    }

    /// Whether no meter is registered (the built-in groups not counted).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Only registry bookkeeping runs under this lock (no user code), so a poisoned lock
        // still guards consistent data.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Finds the meter registered under `id`, or inserts the one `make` builds.
    /// `same` says whether an existing meter is the one asked for.
    fn register(
        &self,
        id: MeterId,
        requested: &dyn Fn() -> String,
        same: impl Fn(&Meter) -> bool,
        make: impl FnOnce(MeterId) -> Meter,
    ) -> Result<Meter, MeterError> {
        if names::ALL.contains(&id.name.as_str()) {
            return Err(MeterError::Conflict {
                name: id.name,
                existing: "a built-in meter of skytrace".into(),
                requested: requested(),
            });
        }
        let mut state = self.lock();
        if let Some(&i) = state.index.get(&id) {
            let existing = &state.meters[i];
            return if same(existing) {
                Ok(existing.clone())
            } else {
                Err(MeterError::Conflict {
                    existing: existing.describe(),
                    requested: requested(),
                    name: id.name,
                })
            };
        }
        if state.meters.len() >= self.inner.max_meters {
            return Err(MeterError::TooManyMeters {
                name: id.name,
                limit: self.inner.max_meters,
            });
        }
        let meter = make(id.clone());
        let i = state.meters.len();
        state.meters.push(meter.clone());
        state.index.insert(id, i);
        Ok(meter)
    }

    pub(crate) fn register_counter(
        &self,
        name: &str,
        labels: Vec<(String, String)>,
        mode: CounterMode,
    ) -> Result<Counter, MeterError> {
        let id = MeterId::new(name, error::validate(name, labels)?);
        let meter = self.register(
            id,
            &|| counter_kind(mode).into(),
            |m| matches!(m, Meter::Counter(c) if c.mode == mode),
            |id| Meter::Counter(Arc::new(CounterCore::new(id, mode))),
        )?;
        match meter {
            Meter::Counter(core) => Ok(Counter { core }),
            _ => unreachable!("`same` admits only counters"),
        }
    }

    pub(crate) fn register_gauge(
        &self,
        name: &str,
        labels: Vec<(String, String)>,
        read: Box<ReadFn>,
    ) -> Result<Gauge, MeterError> {
        let id = MeterId::new(name, error::validate(name, labels)?);
        let meter = self.register(
            id,
            &|| "a gauge".into(),
            |m| matches!(m, Meter::Gauge(_)),
            |id| {
                Meter::Gauge(Arc::new(GaugeCore {
                    id,
                    read,
                    panicked: std::sync::atomic::AtomicBool::new(false),
                }))
            },
        )?;
        match meter {
            Meter::Gauge(core) => Ok(Gauge { core }),
            _ => unreachable!("`same` admits only gauges"),
        }
    }

    pub(crate) fn register_histogram(
        &self,
        name: &str,
        labels: Vec<(String, String)>,
        bounds: &[f64],
    ) -> Result<Histogram, MeterError> {
        let id = MeterId::new(name, error::validate(name, labels)?);
        let bounds = bucket_bounds(name, bounds)?;
        let meter = self.register(
            id,
            &|| format!("a histogram with bounds {bounds:?}"),
            |m| matches!(m, Meter::Histogram(h) if h.bounds == bounds),
            |id| Meter::Histogram(Arc::new(HistogramCore::new(id, bounds.clone()))),
        )?;
        match meter {
            Meter::Histogram(core) => Ok(Histogram { core }),
            _ => unreachable!("`same` admits only histograms"),
        }
    }

    /// Adds a built-in group, replacing the one of the same kind.
    pub(crate) fn set_source(&self, kind: SourceKind, source: Arc<dyn Source>) {
        let mut state = self.lock();
        state.sources.retain(|(k, _)| *k != kind);
        state.sources.push((kind, source));
    }

    pub(crate) fn has_source(&self, kind: SourceKind) -> bool {
        self.lock().sources.iter().any(|(k, _)| *k == kind)
    }

    /// One period's report: every meter's value now, in registration order, then the built-in
    /// groups. Service, instance and timestamp go on the first element only, as the protocol
    /// asks. Rate-mode counters move their baseline, so call this once per period, then send
    /// the result with `MeterReportService.collectBatch` (skip it when it is empty).
    ///
    /// Gauge functions and the built-in groups run here, on the caller's thread, outside the
    /// registry's lock; a panic in one skips its value.
    #[allow(dead_code)] // called by the reporter's meter loop
    pub(crate) fn collect(
        &self,
        service: &str,
        instance: &str,
        timestamp_ms: i64,
    ) -> v3::MeterDataCollection {
        let (meters, sources) = {
            let state = self.lock();
            (state.meters.clone(), state.sources.clone())
        };
        let mut out = Vec::with_capacity(meters.len() + 16);
        for meter in &meters {
            if let Some(metric) = read(meter) {
                out.push(v3::MeterData {
                    metric: Some(metric),
                    ..Default::default()
                });
            }
        }
        let mut values = Vec::new();
        for (_, source) in &sources {
            // A panic inside a group (the reporter's statistics closure) loses only its values.
            let _ = catch_unwind(AssertUnwindSafe(|| source.collect(&mut values)));
        }
        for (name, value) in values {
            if value.is_finite() {
                out.push(single((*name).to_owned(), Vec::new(), value));
            }
        }
        if let Some(first) = out.first_mut() {
            first.service = service.to_owned();
            first.service_instance = instance.to_owned();
            first.timestamp = timestamp_ms;
        }
        v3::MeterDataCollection { meter_data: out }
    }
}

fn counter_kind(mode: CounterMode) -> &'static str {
    match mode {
        CounterMode::Total => "a counter",
        CounterMode::Rate => "a counter in rate mode",
    }
}

fn single(name: String, labels: Vec<v3::Label>, value: f64) -> v3::MeterData {
    v3::MeterData {
        metric: Some(Metric::SingleValue(v3::MeterSingleValue {
            name,
            labels,
            value,
        })),
        ..Default::default()
    }
}

/// One meter's value now, or `None` when there is nothing sensible to send.
fn read(meter: &Meter) -> Option<Metric> {
    match meter {
        Meter::Counter(c) => {
            let value = c.take_report();
            Some(Metric::SingleValue(v3::MeterSingleValue {
                name: c.id.name.clone(),
                labels: c.id.wire_labels(),
                value,
            }))
        }
        Meter::Gauge(g) => {
            if g.panicked.load(std::sync::atomic::Ordering::Relaxed) {
                return None;
            }
            let Ok(value) = catch_unwind(AssertUnwindSafe(|| (g.read)())) else {
                // Said once (with the panic's own message above it), not every period.
                g.panicked.store(true, std::sync::atomic::Ordering::Relaxed);
                crate::say::say(&format!(
                    "skytrace: the gauge `{}` panicked when read; it is no longer read or \
                     reported",
                    g.id.name
                ));
                return None;
            };
            value.is_finite().then(|| {
                Metric::SingleValue(v3::MeterSingleValue {
                    name: g.id.name.clone(),
                    labels: g.id.wire_labels(),
                    value,
                })
            })
        }
        Meter::Histogram(h) => Some(Metric::Histogram(v3::MeterHistogram {
            name: h.id.name.clone(),
            labels: h.id.wire_labels(),
            values: h
                .snapshot()
                .into_iter()
                .map(|(bucket, count)| v3::MeterBucketValue {
                    bucket,
                    count: i64::try_from(count).unwrap_or(i64::MAX),
                    is_negative_infinity: false,
                })
                .collect(),
        })),
    }
}
