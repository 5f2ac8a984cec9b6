//! The tracer: configuration turned into an agent (the state every segment shares), the
//! public [`Tracer`] handle to it, and [`init`], which installs one globally for
//! `#[entry_span]` and the integrations.

use std::sync::Arc;
use std::time::Duration;

use crate::agent::Agent;
use crate::config::{Config, ConfigError, ReporterKind};
use crate::context::EntryName;
use crate::init_error::InitError;
use crate::propagation::Extractor;
use crate::reporter::{ConsoleReporter, DiscardReporter, Reporter, ReporterStats};
use crate::segment::{SpanRecord, Text};
use crate::settings::TraceSettings;
use crate::span::Span;

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
    agent: Arc<Agent>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("service", &self.agent.service)
            .field("instance", &self.agent.instance)
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
        // Profiling tags its samples with the thread's segment: a function pointer stored once,
        // called only while a profiling task samples.
        #[cfg(feature = "profiling")]
        crate::context::signal_tag::install();
        Tracer {
            agent: Arc::new(Agent::new(config, reporter)),
        }
    }

    /// An entry span on this tracer: see [`Span::entry`].
    pub fn entry_span(
        &self,
        operation_name: impl Into<std::borrow::Cow<'static, str>>,
        carrier: &(impl Extractor + ?Sized),
    ) -> Span {
        self.entry_span_with(Text::from(operation_name.into()).into(), carrier, |_| {})
    }

    /// [`Tracer::entry_span`], with `init` applied to the span's record as it is made.
    pub(crate) fn entry_span_with(
        &self,
        name: EntryName<'_>,
        carrier: &(impl Extractor + ?Sized),
        init: impl FnOnce(&mut SpanRecord),
    ) -> Span {
        Span::from_started(crate::context::entry(
            Some(&self.agent),
            name,
            carrier,
            init,
        ))
    }

    /// The agent behind the tracer (for tests).
    #[cfg(test)]
    pub(crate) fn agent(&self) -> &Arc<Agent> {
        &self.agent
    }

    /// The reporter segments go to.
    pub fn reporter(&self) -> &dyn Reporter {
        &*self.agent.reporter
    }

    /// The reporter's counters.
    pub fn stats(&self) -> ReporterStats {
        self.agent.reporter.stats()
    }

    /// Whether the HTTP integrations leave requests for `path` untraced
    /// (`SW_AGENT_TRACE_IGNORE_PATH`).
    pub fn is_ignored_path(&self, path: &str) -> bool {
        self.agent.is_ignored_path(path)
    }

    /// The sampling, ignore and span-limit settings in force.
    pub fn settings(&self) -> TraceSettings {
        self.agent.settings.get()
    }

    /// Replaces the sampling, ignore and span-limit settings while the service runs: the next
    /// trace on every thread uses them (a segment keeps the span limit it started with). OAP's
    /// dynamic configuration goes through here.
    pub fn set_settings(&self, settings: TraceSettings) -> Result<(), ConfigError> {
        self.agent.settings.set(settings)
    }

    /// Applies OAP's dynamic configuration, as `reporter` fetches it
    /// (`SW_AGENT_COLLECTOR_GET_AGENT_DYNAMIC_CONFIG_INTERVAL`), to this tracer's settings, over
    /// the ones in force now. [`init`] does this for the tracer it installs; a tracer made with
    /// [`Tracer::with_reporter`] and a [`GrpcReporter`](crate::GrpcReporter) of its own asks
    /// here. The reporter holds the tracer weakly: it never keeps it alive.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use skytrace::{Config, GrpcReporter, Tracer};
    ///
    /// let config = Config::builder().service_name("users").build().unwrap();
    /// let reporter = Arc::new(GrpcReporter::start(&config).unwrap());
    /// let tracer = Tracer::with_reporter(&config, reporter.clone());
    /// tracer.follow_dynamic_config(&reporter);
    /// ```
    #[cfg(feature = "grpc")]
    pub fn follow_dynamic_config(&self, reporter: &crate::reporter::GrpcReporter) {
        reporter
            .commands()
            .set(crate::dynamic_config::handler(&self.agent));
    }

    /// Makes this the tracer of [`Span::entry`], `#[entry_span]` and the integrations. Returns
    /// the one it replaces.
    pub fn install_global(&self) -> Option<Tracer> {
        crate::global::install(Arc::clone(&self.agent)).map(|agent| Tracer { agent })
    }

    /// Stops recording (from now on every span of this tracer is a no-op, whatever
    /// `SW_AGENT_KEEP_TRACING` says: it could only be dropped), uninstalls the tracer if it is
    /// the global one, then delivers what is queued within `timeout` (blocking this thread up to
    /// that long) and returns the reporter's final counters. [`TracerGuard::shutdown`] is this
    /// for the tracer [`init`] installed.
    ///
    /// ```
    /// use std::time::Duration;
    /// use skytrace::{Config, DiscardReporter, Tracer};
    ///
    /// let tracer = Tracer::new(&Config::builder().build().unwrap(), DiscardReporter::new());
    /// drop(tracer.entry_span("job", &()));
    /// tracer.shutdown(Duration::from_secs(1));
    /// assert!(!tracer.entry_span("late", &()).is_recording());
    /// ```
    pub fn shutdown(&self, timeout: Duration) -> ReporterStats {
        crate::global::uninstall(&self.agent);
        self.agent.stop();
        self.agent.reporter.shutdown(timeout)
    }
}

/// Whether the global tracer ignores requests for `path` (`SW_AGENT_TRACE_IGNORE_PATH`); `false`
/// when no tracer is installed.
///
/// ```
/// assert!(!skytrace::is_ignored_path("/health"));
/// ```
pub fn is_ignored_path(path: &str) -> bool {
    crate::global::with(|agent| agent.is_ignored_path(path)).unwrap_or(false)
}

/// Starts the reporter `config` selects and installs the global tracer. Keep the returned guard
/// alive for as long as the service runs: dropping it (or [`TracerGuard::shutdown`]) delivers
/// what is queued, within a deadline, and uninstalls the tracer.
///
/// With the gRPC reporter it also sends, unless switched off: the meters of
/// [`crate::meter::global`] every `SW_AGENT_METER_REPORTER_PERIOD`, with this tokio runtime's
/// (when called inside one) and the agent's health; and the log records of the `tracing` and
/// `log` bridges, through the queue it installs as `SW_AGENT_LOG_REPORTER_*` say (read from the
/// environment here; a bad value is an [`InitError::Config`]).
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let _tracing = skytrace::init(skytrace::Config::from_env()?)?;
/// // … run the service …
/// # Ok(()) }
/// ```
pub fn init(config: Config) -> Result<TracerGuard, InitError> {
    if !config.enabled {
        // Switched off (`SW_AGENT_ENABLE=false`): no reporter, no thread, no tracer installed.
        // Said once, so that "why is nothing in OAP?" has its answer in the service's output.
        eprintln!(
            "skytrace: the agent is off (SW_AGENT_ENABLE=false): nothing is traced or reported"
        );
        return Ok(TracerGuard { tracer: None });
    }
    // The gRPC reporter: to hand OAP's dynamic configuration to the tracer once it is made,
    // and, when it sends meters, to include the agent's health in them.
    #[cfg(feature = "grpc")]
    let mut grpc_reporter = None;
    let reporter: Arc<dyn Reporter> = match config.reporter {
        #[cfg(not(feature = "kafka"))]
        ReporterKind::Kafka => {
            return Err(InitError::Reporter(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "the Kafka reporter (SW_AGENT_REPORTER_TYPE=kafka) needs skytrace's `kafka` feature",
            )));
        }
        // The Kafka reporter is the gRPC reporter's signals over another transport.
        #[cfg(feature = "kafka")]
        ReporterKind::Grpc | ReporterKind::Kafka => start_reporter(&config, &mut grpc_reporter)?,
        #[cfg(all(feature = "grpc", not(feature = "kafka")))]
        ReporterKind::Grpc => start_reporter(&config, &mut grpc_reporter)?,
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
    #[cfg(feature = "grpc")]
    if let Some(grpc) = grpc_reporter {
        tracer.follow_dynamic_config(&grpc);
        if config.meters.active {
            report_health(&grpc, &tracer.agent);
            // The service's runtime, when `init` runs inside one.
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                crate::meter::global().register_tokio_runtime(&handle);
            }
        }
    }
    tracer.install_global();
    Ok(TracerGuard {
        tracer: Some(tracer),
    })
}

/// Feeds the agent's health meters (`instance_rust_agent_*`) of the global registry from
/// `reporter` and `agent`'s segment counters. The registry lives for ever: it holds them
/// weakly, and reports nothing of them once they are gone.
#[cfg(feature = "grpc")]
fn report_health(reporter: &Arc<crate::reporter::GrpcReporter>, agent: &Arc<Agent>) {
    use std::sync::atomic::Ordering;

    let reporter = Arc::downgrade(reporter);
    let agent = Arc::downgrade(agent);
    crate::meter::global().register_agent_health(move || {
        let mut health = crate::meter::AgentHealth::default();
        if let Some(reporter) = reporter.upgrade() {
            let stats = reporter.stats();
            health.segments_sent = Some(stats.sent);
            health.segments_dropped = Some(stats.dropped);
            health.segments_failed = Some(stats.failed);
            health.segments_queued = Some(stats.queued);
            health.meter_reports_dropped = Some(reporter.meter_reports_dropped());
            if let Some(lost) = reporter.log_records_lost() {
                // Dropped by the queue (full) and lost on the way (a failed call).
                health.log_records_dropped = Some(crate::log_sink::stats().dropped + lost);
            }
        }
        if let Some(agent) = agent.upgrade() {
            health.segments_created = Some(agent.segments_created.load(Ordering::Relaxed));
            health.segments_finished = Some(agent.segments_finished.load(Ordering::Relaxed));
        }
        health
    });
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

    /// [`shutdown`](Self::shutdown) for async code: the same work, done on a thread of its own
    /// (started at once, so dropping the future does not cancel it), and a future that waits
    /// for it without blocking the runtime. Works on any executor, a current-thread runtime
    /// too: no worker is blocked, so a collector or anything else on the same runtime keeps
    /// running meanwhile. Resolves to the reporter's final counters (all zero if the thread
    /// could not be started; the guard then shuts down as it is dropped, on this thread).
    ///
    /// ```no_run
    /// # async fn serve() {}
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let agent = skytrace::init(skytrace::Config::from_env()?)?;
    /// serve().await; // e.g. axum::serve(..).with_graceful_shutdown(..)
    /// let stats = agent.shutdown_async(std::time::Duration::from_secs(5)).await;
    /// println!("segments sent: {}, dropped: {}", stats.sent, stats.dropped);
    /// # Ok(()) }
    /// ```
    pub fn shutdown_async(
        mut self,
        timeout: Duration,
    ) -> impl std::future::Future<Output = ReporterStats> + Send + 'static {
        let guard = TracerGuard {
            tracer: self.tracer.take(),
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let started = std::thread::Builder::new()
            .name("skytrace-shutdown".into())
            .spawn(move || {
                // The receiver may be gone (the future dropped): the shutdown is done anyway.
                let _ = tx.send(guard.shutdown(timeout));
            });
        let rx = started.ok().map(|_| rx);
        async move {
            match rx {
                // An error means the thread ended without an answer (it cannot, short of a panic).
                Some(rx) => rx.await.unwrap_or_default(),
                None => ReporterStats::default(),
            }
        }
    }

    fn stop(&mut self, timeout: Duration) -> ReporterStats {
        let Some(tracer) = self.tracer.take() else {
            return ReporterStats::default();
        };
        tracer.shutdown(timeout)
    }
}

impl Drop for TracerGuard {
    fn drop(&mut self) {
        self.stop(DEFAULT_SHUTDOWN_TIMEOUT);
    }
}

/// Starts the reporter of `config` (gRPC, or Kafka through the same signals) and keeps it in
/// `slot` for what `init` does with it afterwards.
#[cfg(feature = "grpc")]
fn start_reporter(
    config: &Config,
    slot: &mut Option<Arc<crate::reporter::GrpcReporter>>,
) -> Result<Arc<dyn Reporter>, InitError> {
    // The queue the `tracing` and `log` bridges fill, as `SW_AGENT_LOG_REPORTER_*` say.
    let logs = match &config.logs {
        Some(logs) => logs.clone(),
        None => crate::log_sink::LogSettings::from_env()?,
    };
    let options = crate::reporter::ReporterOptions {
        logs: crate::log_sink::install_for_reporter(&logs),
        ..Default::default()
    };
    let grpc = Arc::new(
        crate::reporter::GrpcReporter::start_with(config, options).map_err(InitError::Reporter)?,
    );
    *slot = Some(Arc::clone(&grpc));
    Ok(grpc)
}
