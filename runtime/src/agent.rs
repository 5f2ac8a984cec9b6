//! [`Agent`]: what every segment of one configured tracer shares — the names it reports under,
//! the live settings, and the reporter. [`crate::Tracer`] is its public handle.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::config::Config;
use crate::reporter::Reporter;
use crate::settings::{LiveSettings, TraceSettings};

pub(crate) struct Agent {
    /// The reported service name (`name|namespace|cluster`), interned: every segment carries it.
    pub(crate) service: &'static str,
    pub(crate) instance: &'static str,
    pub(crate) settings: LiveSettings,
    /// Start traces even while the reporter says its backend is unreachable.
    keep_tracing: bool,
    pub(crate) correlation_max_keys: usize,
    pub(crate) correlation_max_value_size: usize,
    pub(crate) reporter: Arc<dyn Reporter>,
    /// Set by shutdown: nothing is recorded afterwards (it could only be dropped).
    stopped: AtomicBool,
    /// Segments started and finished, for the agent's health meters: one relaxed add each,
    /// per segment (not per span).
    pub(crate) segments_created: AtomicU64,
    pub(crate) segments_finished: AtomicU64,
}

impl Agent {
    pub(crate) fn new(config: &Config, reporter: Arc<dyn Reporter>) -> Agent {
        Agent {
            service: crate::intern::intern(config.service_name()),
            instance: crate::intern::intern(config.instance_name()),
            settings: LiveSettings::new(TraceSettings::from_config(config)),
            keep_tracing: config.keep_tracing,
            correlation_max_keys: config.correlation_max_keys,
            correlation_max_value_size: config.correlation_max_value_size,
            reporter,
            stopped: AtomicBool::new(false),
            segments_created: AtomicU64::new(0),
            segments_finished: AtomicU64::new(0),
        }
    }

    /// An agent that records and reports nothing, shared: what a finished segment kept for
    /// reuse points at instead of its own agent (see `ActiveSegment::recycle`), which a spare
    /// allocation must not keep alive.
    pub(crate) fn idle() -> &'static Arc<Agent> {
        static IDLE: OnceLock<Arc<Agent>> = OnceLock::new();
        IDLE.get_or_init(|| {
            Arc::new(Agent {
                service: "",
                instance: "",
                settings: LiveSettings::new(TraceSettings {
                    sample_per_3_secs: -1,
                    ignore_suffix: Vec::new(),
                    ignore_paths: Vec::new(),
                    span_limit: 0,
                    sql_parameters_max_length: 0,
                }),
                keep_tracing: false,
                correlation_max_keys: 0,
                correlation_max_value_size: 0,
                reporter: Arc::new(crate::reporter::DiscardReporter::new()),
                stopped: AtomicBool::new(true),
                segments_created: AtomicU64::new(0),
                segments_finished: AtomicU64::new(0),
            })
        })
    }

    /// Whether a new trace may be recorded now: not stopped, and a backend to send it to (or
    /// `keep_tracing`).
    #[inline]
    pub(crate) fn accepts_traces(&self) -> bool {
        !self.stopped.load(Ordering::Relaxed) && (self.keep_tracing || self.reporter.is_available())
    }

    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_ignored_path(&self, path: &str) -> bool {
        self.settings.with(|s| s.is_ignored_path(path))
    }
}
