//! The tracer: configuration turned into the state every segment shares, and the global one
//! that `#[entry_span]` and the integrations use.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use crate::config::{Config, ReporterKind};
use crate::context::{ActiveSegment, Handle, UnsampledContext, peek_current};
use crate::id::TraceId;
use crate::init_error::InitError;
use crate::propagation::{Correlation, Extractor, Sw8Extension, Sw8Header};
use crate::reporter::{ConsoleReporter, DiscardReporter, Reporter, ReporterStats};
use crate::sampler::Sampler;
use crate::segment::{RefKind, SegmentRef, SpanKind, SpanRecord, Text};
use crate::span::Span;

/// Header names, with the namespace prefix when one is set.
pub(crate) struct HeaderKeys {
    pub(crate) sw8: String,
    pub(crate) correlation: String,
    pub(crate) extension: String,
}

pub(crate) struct TracerInner {
    pub(crate) service: &'static str,
    pub(crate) instance: &'static str,
    pub(crate) span_limit: usize,
    ignore_suffix: SuffixSet,
    ignore_paths: Vec<String>,
    keep_tracing: bool,
    correlation_max_keys: usize,
    correlation_max_value_size: usize,
    sampler: Sampler,
    pub(crate) keys: HeaderKeys,
    pub(crate) reporter: Arc<dyn Reporter>,
}

/// A configured tracer: shared state for the segments it records and the reporter they go to.
/// Most services install one globally with [`init`]; tests and multi-tenant setups can hold
/// several and start traces on each with [`Tracer::entry_span`].
///
/// ```
/// use skytrace::{Config, DiscardReporter, Span, Tracer};
///
/// let tracer = Tracer::new(&Config::builder().build().unwrap(), DiscardReporter::new());
/// let entry = tracer.entry_span("GET:/users/{id}", &http::HeaderMap::new());
/// {
///     let _in = entry.enter();
///     let child = Span::local("load");
///     assert!(child.is_recording());
/// }
/// drop(entry);
/// assert_eq!(tracer.stats().sent, 1);
/// ```
#[derive(Clone)]
pub struct Tracer {
    inner: Arc<TracerInner>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("service", &self.inner.service)
            .field("instance", &self.inner.instance)
            .finish()
    }
}

impl Tracer {
    /// A tracer for `config` that reports to `reporter`.
    pub fn new(config: &Config, reporter: impl Reporter) -> Tracer {
        Self::with_reporter(config, Arc::new(reporter))
    }

    /// Like [`Tracer::new`], with a shared reporter.
    pub fn with_reporter(config: &Config, reporter: Arc<dyn Reporter>) -> Tracer {
        let key = |name: &str| {
            if config.namespace.is_empty() {
                name.to_owned()
            } else {
                format!("{}-{name}", config.namespace)
            }
        };
        Tracer {
            inner: Arc::new(TracerInner {
                service: crate::intern::intern(&config.service_name),
                instance: crate::intern::intern(&config.instance_name),
                span_limit: config.span_limit,
                ignore_suffix: SuffixSet::new(&config.ignore_suffix),
                ignore_paths: config.ignore_paths.clone(),
                keep_tracing: config.keep_tracing,
                correlation_max_keys: config.correlation_max_keys,
                correlation_max_value_size: config.correlation_max_value_size,
                sampler: Sampler::new(config.sample_per_3_secs),
                keys: HeaderKeys {
                    sw8: key("sw8"),
                    correlation: key("sw8-correlation"),
                    extension: key("sw8-x"),
                },
                reporter,
            }),
        }
    }

    /// An entry span on this tracer: see [`Span::entry`].
    pub fn entry_span(
        &self,
        operation_name: impl Into<std::borrow::Cow<'static, str>>,
        carrier: &(impl Extractor + ?Sized),
    ) -> Span {
        entry(Some(&self.inner), operation_name.into(), carrier)
    }

    /// [`Tracer::entry_span`], with `init` applied to the span's record as it is made.
    #[allow(dead_code)] // used by the integrations, which depend on the features
    pub(crate) fn entry_span_with(
        &self,
        operation_name: Text,
        carrier: &(impl Extractor + ?Sized),
        init: impl FnOnce(&mut SpanRecord),
    ) -> Span {
        entry_with(Some(&self.inner), operation_name, carrier, init)
    }

    /// The reporter segments go to.
    pub fn reporter(&self) -> &dyn Reporter {
        &*self.inner.reporter
    }

    /// The reporter's counters.
    pub fn stats(&self) -> ReporterStats {
        self.inner.reporter.stats()
    }

    /// Whether the HTTP integrations leave requests for `path` untraced
    /// (`SW_AGENT_TRACE_IGNORE_PATH`).
    pub fn is_ignored_path(&self, path: &str) -> bool {
        self.inner.is_ignored_path(path)
    }

    /// Makes this the tracer of [`Span::entry`], `#[entry_span]` and the integrations. Returns
    /// the one it replaces.
    pub fn install_global(&self) -> Option<Tracer> {
        let mut global = GLOBAL.write().unwrap_or_else(PoisonError::into_inner);
        let previous = global.replace(self.clone());
        GLOBAL_GENERATION.fetch_add(1, Ordering::Release);
        previous
    }
}

/// Shared by [`Span::entry`] (global tracer) and [`Tracer::entry_span`].
pub(crate) fn entry<E: Extractor + ?Sized>(
    tracer: Option<&Arc<TracerInner>>,
    operation_name: Text,
    carrier: &E,
) -> Span {
    entry_with(tracer, operation_name, carrier, |_| {})
}

/// [`entry`], with `init` applied to the span's record as it is made (only if it records): how
/// an integration sets layer, component and tags without taking the segment's lock afterwards.
pub(crate) fn entry_with<E: Extractor + ?Sized>(
    tracer: Option<&Arc<TracerInner>>,
    operation_name: Text,
    carrier: &E,
    init: impl FnOnce(&mut SpanRecord),
) -> Span {
    // Inside a trace, an entry is a local child: a handler under a tracing middleware must not
    // count the request twice.
    match peek_current(|cur| matches!(cur, Handle::Recording { .. })) {
        Some(true) => {
            let span = Span::local(operation_name);
            span.init_record(init);
            return span;
        }
        Some(false) => return Span::noop(),
        None => {}
    }
    match tracer {
        Some(tracer) => tracer.start_entry(operation_name, carrier, init),
        None => with_global(|tracer| tracer.start_entry(operation_name, carrier, init))
            .unwrap_or(Span::noop()),
    }
}

/// Whether the global tracer ignores requests for `path` (`SW_AGENT_TRACE_IGNORE_PATH`); `false`
/// when no tracer is installed.
///
/// ```
/// assert!(!skytrace::is_ignored_path("/health"));
/// ```
pub fn is_ignored_path(path: &str) -> bool {
    with_global(|t| t.is_ignored_path(path)).unwrap_or(false)
}

impl TracerInner {
    pub(crate) fn is_ignored_path(&self, path: &str) -> bool {
        self.ignore_paths
            .iter()
            .any(|pattern| crate::glob::path_matches(pattern, path))
    }

    fn start_entry<E: Extractor + ?Sized>(
        self: &Arc<Self>,
        operation_name: Text,
        carrier: &E,
        init: impl FnOnce(&mut SpanRecord),
    ) -> Span {
        let header = carrier
            .get(&self.keys.sw8)
            .and_then(|v| Sw8Header::decode(v).ok());
        let ignored = self.ignore_suffix.matches(&operation_name);
        let available = self.keep_tracing || self.reporter.is_available();
        let sampled = !ignored
            && available
            && (header.as_ref().is_some_and(|h| h.sampled) || self.sampler.try_sample());
        if !sampled {
            let context =
                UnsampledContext::new(Arc::clone(self), header.map(|h| h.trace_id), operation_name);
            return Span::from_handle(Handle::Unsampled {
                context: Arc::new(context),
                peer: None,
            });
        }
        // `sw8-correlation` and `sw8-x` belong to the caller's context: without a valid `sw8`
        // there is none (as in the official agents), and two header lookups are saved.
        let upstream = |key: &str| header.as_ref().and_then(|_| carrier.get(key));
        let correlation = match upstream(&self.keys.correlation) {
            Some(v) => Correlation::decode(
                v,
                self.correlation_max_keys,
                self.correlation_max_value_size,
            ),
            None => Correlation::new(self.correlation_max_keys, self.correlation_max_value_size),
        };
        let extension = upstream(&self.keys.extension)
            .map(Sw8Extension::decode)
            .unwrap_or_default();
        let (trace_id, refs) = match header {
            Some(h) => (
                Some(TraceId::new(&h.trace_id)),
                vec![SegmentRef {
                    kind: RefKind::CrossProcess,
                    trace_id: h.trace_id,
                    parent_segment_id: h.parent_segment_id,
                    parent_span_id: h.parent_span_id,
                    parent_service: h.parent_service,
                    parent_service_instance: h.parent_service_instance,
                    parent_endpoint: h.parent_endpoint,
                    network_address: h.target_address,
                }],
            ),
            None => (None, Vec::new()),
        };
        ActiveSegment::start(
            Arc::clone(self),
            trace_id,
            (SpanKind::Entry, operation_name),
            refs,
            correlation,
            extension.skip_analysis,
            init,
        )
    }
}

static GLOBAL: RwLock<Option<Tracer>> = RwLock::new(None);
/// Moves on (under `GLOBAL`'s write lock) whenever `GLOBAL` changes: a thread's copy of an
/// older generation is stale.
static GLOBAL_GENERATION: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's copy of the global tracer, with the generation it was read at. Reading
    /// `GLOBAL` itself on every request wrote to the lock's reader count and to the tracer's
    /// reference count: two cache lines shared by every thread of the service. A thread that
    /// stops tracing keeps its copy (the tracer's memory, not its reporter, which is shut down
    /// explicitly) until it exits.
    static GLOBAL_COPY: RefCell<(u64, Option<Arc<TracerInner>>)> = const { RefCell::new((0, None)) };
}

fn read_global() -> Option<Arc<TracerInner>> {
    GLOBAL
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .map(|t| Arc::clone(&t.inner))
}

/// Runs `f` with the global tracer; `None` when none is installed.
pub(crate) fn with_global<R>(f: impl FnOnce(&Arc<TracerInner>) -> R) -> Option<R> {
    let generation = GLOBAL_GENERATION.load(Ordering::Acquire);
    let mut f = Some(f);
    let fast = GLOBAL_COPY
        .try_with(|copy| {
            // Busy only if `f` (through a user's `Extractor`) got here again: take the slow way.
            let mut copy = copy.try_borrow_mut().ok()?;
            if copy.0 != generation {
                *copy = (generation, read_global());
            }
            let f = f.take()?;
            Some(copy.1.as_ref().map(f))
        })
        .ok()
        .flatten();
    match (fast, f) {
        (Some(result), _) => result,
        (None, Some(f)) => read_global().as_ref().map(f),
        (None, None) => None,
    }
}

/// Starts the reporter `config` selects and installs the global tracer. Keep the returned guard
/// alive for as long as the service runs: dropping it (or [`TracerGuard::shutdown`]) delivers
/// what is queued, within a deadline, and uninstalls the tracer.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let _tracing = skytrace::init(skytrace::Config::from_env()?)?;
/// // … run the service …
/// # Ok(()) }
/// ```
pub fn init(config: Config) -> Result<TracerGuard, InitError> {
    let reporter: Arc<dyn Reporter> = match config.reporter {
        #[cfg(feature = "grpc")]
        ReporterKind::Grpc => {
            Arc::new(crate::reporter::GrpcReporter::start(&config).map_err(InitError::Reporter)?)
        }
        #[cfg(not(feature = "grpc"))]
        ReporterKind::Grpc => {
            return Err(InitError::Reporter(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "the gRPC reporter needs skytrace's `grpc` feature",
            )));
        }
        ReporterKind::Console => Arc::new(ConsoleReporter::new()),
        ReporterKind::Discard => Arc::new(DiscardReporter::new()),
    };
    let tracer = Tracer::with_reporter(&config, reporter);
    tracer.install_global();
    Ok(TracerGuard {
        tracer: Some(tracer),
    })
}

/// Keeps the global tracer installed; see [`init`].
#[must_use = "dropping the guard shuts tracing down"]
#[derive(Debug)]
pub struct TracerGuard {
    tracer: Option<Tracer>,
}

/// How long dropping a [`TracerGuard`] waits for queued segments to be delivered.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

impl TracerGuard {
    /// The installed tracer.
    pub fn tracer(&self) -> Option<&Tracer> {
        self.tracer.as_ref()
    }

    /// The reporter's counters so far.
    pub fn stats(&self) -> ReporterStats {
        self.tracer.as_ref().map(Tracer::stats).unwrap_or_default()
    }

    /// Uninstalls the tracer, then delivers what is queued within `timeout` (blocking this
    /// thread up to that long) and returns the reporter's final counters.
    pub fn shutdown(mut self, timeout: Duration) -> ReporterStats {
        self.stop(timeout)
    }

    fn stop(&mut self, timeout: Duration) -> ReporterStats {
        let Some(tracer) = self.tracer.take() else {
            return ReporterStats::default();
        };
        {
            let mut global = GLOBAL.write().unwrap_or_else(PoisonError::into_inner);
            if global
                .as_ref()
                .is_some_and(|g| Arc::ptr_eq(&g.inner, &tracer.inner))
            {
                *global = None;
                GLOBAL_GENERATION.fetch_add(1, Ordering::Release);
            }
        }
        tracer.inner.reporter.shutdown(timeout)
    }
}

impl Drop for TracerGuard {
    fn drop(&mut self) {
        self.stop(DEFAULT_SHUTDOWN_TIMEOUT);
    }
}

/// The endpoint suffixes whose traces are not sampled (`SW_AGENT_IGNORE_SUFFIX`).
struct SuffixSet {
    /// None of them empty; sorted by their last byte.
    suffixes: Vec<String>,
    /// For each byte, the suffixes (a range of `suffixes`) that end with it. Most endpoints end
    /// with no suffix's last byte, and REST endpoints often end in `s` as `.js` and `.css` do:
    /// one look here spares comparing the others (a dozen by default) on every new trace.
    ending_with: Box<[(u16, u16); 256]>,
}

impl SuffixSet {
    fn new(suffixes: &[String]) -> SuffixSet {
        let mut suffixes: Vec<String> = suffixes
            .iter()
            .filter(|s| !s.is_empty())
            // More could never be told apart by a `u16` range; nobody configures that many.
            .take(usize::from(u16::MAX))
            .cloned()
            .collect();
        suffixes.sort_by_key(|s| s.as_bytes().last().copied());
        let mut ending_with = Box::new([(0u16, 0u16); 256]);
        for (i, suffix) in (0u16..).zip(&suffixes) {
            if let Some(&last) = suffix.as_bytes().last() {
                let range = &mut ending_with[usize::from(last)];
                if range.0 == range.1 {
                    *range = (i, i);
                }
                range.1 = i + 1;
            }
        }
        SuffixSet {
            suffixes,
            ending_with,
        }
    }

    /// Whether `name` ends with one of the suffixes.
    fn matches(&self, name: &str) -> bool {
        let Some(&last) = name.as_bytes().last() else {
            return false;
        };
        let (start, end) = self.ending_with[usize::from(last)];
        self.suffixes
            .get(usize::from(start)..usize::from(end))
            .unwrap_or_default()
            .iter()
            .any(|suffix| name.ends_with(suffix.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::SuffixSet;

    #[test]
    fn suffixes_match_as_a_plain_search_would() {
        let list: Vec<String> = crate::config::DEFAULT_IGNORE_SUFFIX
            .split(',')
            .map(str::to_owned)
            .chain(["s".into(), "ss".into(), "é".into()])
            .collect();
        let set = SuffixSet::new(&list);
        let names = [
            "GET:/users",
            "GET:/app.js",
            "GET:/site.css",
            "GET:/favicon.ico",
            "GET:/hello",
            "GET:/a.jpeg",
            "GET:/a.jpg",
            "GET:/a.png",
            "GET:/x.mp4",
            "GET:/café",
            "GET:/users/{id}",
            "",
            "s",
            "GET:/a.html",
            "GET:/a.htm",
            "GET:/a.svg",
            "GET:/img",
        ];
        for name in names {
            let expected = list
                .iter()
                .any(|s| !s.is_empty() && name.ends_with(s.as_str()));
            assert_eq!(set.matches(name), expected, "{name:?}");
        }
    }

    #[test]
    fn suffixes_match_only_at_the_end() {
        let set = SuffixSet::new(&[".js".into(), ".css".into(), "o".into(), String::new()]);
        assert!(set.matches("GET:/static/app.js"));
        assert!(!set.matches("GET:/users"));
        assert!(!set.matches("GET:/app.jss"));
        assert!(set.matches("GET:/site.css"));
        assert!(set.matches("GET:/hello"));
        assert!(!set.matches("GET:/app.jsx"));
        assert!(!set.matches("GET:/s"));
        assert!(!set.matches(""));
        assert!(!SuffixSet::new(&[]).matches("GET:/x.js"));
        // Bytes past 127 (UTF-8) too.
        let set = SuffixSet::new(&["é".into()]);
        assert!(set.matches("GET:/café"));
        assert!(!set.matches("GET:/cafe"));
    }
}
