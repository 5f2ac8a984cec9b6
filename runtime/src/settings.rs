//! The settings that may change while the service runs: sampling, ignore rules, the span
//! limit, and whether SQL parameters are recorded. OAP's dynamic configuration replaces them; so can an operator, through
//! [`crate::Tracer::set_settings`].
//!
//! A replacement takes effect on the next trace on every thread: each entry reads the settings
//! once, and a segment keeps the span limit it started with. Reading must stay cheap on the
//! per-request path, and a lock or a reference count shared by every thread writes to a cache
//! line that every core then fights over; so each thread keeps its own copy, refreshed when a
//! generation counter says the settings were replaced. A read is one thread-local access and
//! one atomic load.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crate::config::{Config, ConfigError, check};
use crate::glob::PathPattern;
use crate::sampler::Sampler;
use crate::suffix::SuffixSet;

/// Sampling, ignore rules, the span limit and SQL parameter recording of a [`crate::Tracer`],
/// as they are now.
///
/// ```
/// use skytrace::{Config, DiscardReporter, Tracer};
///
/// let tracer = Tracer::new(&Config::builder().build().unwrap(), DiscardReporter::new());
/// let mut settings = tracer.settings();
/// settings.ignore_paths = vec!["/health".into()];
/// tracer.set_settings(settings).unwrap();
/// assert!(tracer.is_ignored_path("/health"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TraceSettings {
    /// New traces started per 3 seconds; `-1` or `0` samples every trace
    /// (`SW_AGENT_SAMPLE`, OAP's `agent.sample_n_per_3_secs`).
    pub sample_per_3_secs: i32,
    /// Entry operations ending with one of these start no trace (`SW_AGENT_IGNORE_SUFFIX`,
    /// `agent.ignore_suffix`).
    pub ignore_suffix: Vec<String>,
    /// Request paths the HTTP integrations leave untraced (`SW_AGENT_TRACE_IGNORE_PATH`,
    /// `agent.trace.ignore_path`).
    pub ignore_paths: Vec<String>,
    /// Spans recorded per segment (`SW_AGENT_SPAN_LIMIT`, `agent.span_limit_per_segment`).
    pub span_limit: usize,
    /// Bytes of bound SQL parameters kept in `db.sql.parameters`; 0 records none
    /// (`SW_AGENT_SQL_PARAMETERS_MAX_LENGTH`). Read when a query is built, so it can be
    /// switched on for a while to see the values of slow or failing queries.
    pub sql_parameters_max_length: usize,
}

impl TraceSettings {
    /// The settings `config` starts with.
    pub fn from_config(config: &Config) -> TraceSettings {
        TraceSettings {
            sample_per_3_secs: config.sample_per_3_secs,
            ignore_suffix: config.ignore_suffix.clone(),
            ignore_paths: config.ignore_paths.clone(),
            span_limit: config.span_limit,
            sql_parameters_max_length: config.sql_parameters_max_length,
        }
    }

    /// The same checks as the configuration's; an error names the setting.
    fn validate(&self) -> Result<(), ConfigError> {
        check::sample("sample_per_3_secs", self.sample_per_3_secs)?;
        check::span_limit("span_limit", self.span_limit)?;
        check::list("ignore_suffix", &self.ignore_suffix.join(","))?;
        check::list("ignore_paths", &self.ignore_paths.join(","))?;
        check::sql_parameters("sql_parameters_max_length", self.sql_parameters_max_length)?;
        Ok(())
    }
}

/// [`TraceSettings`] made ready for the hot path.
pub(crate) struct Compiled {
    pub(crate) source: TraceSettings,
    pub(crate) sampler: Sampler,
    pub(crate) ignore_suffix: SuffixSet,
    ignore_paths: Vec<PathPattern>,
    pub(crate) span_limit: u32,
}

impl Compiled {
    fn new(source: TraceSettings) -> Compiled {
        Compiled {
            sampler: Sampler::new(source.sample_per_3_secs),
            ignore_suffix: SuffixSet::new(&source.ignore_suffix),
            ignore_paths: source
                .ignore_paths
                .iter()
                .map(|p| PathPattern::new(p))
                .collect(),
            // Checked by `validate` on every way in; clamped all the same, as the hot path
            // relies on it.
            span_limit: u32::try_from(source.span_limit.clamp(1, check::MAX_SPAN_LIMIT))
                .unwrap_or(1),
            source,
        }
    }

    pub(crate) fn is_ignored_path(&self, path: &str) -> bool {
        self.ignore_paths
            .iter()
            .any(|pattern| pattern.matches(path))
    }
}

/// Settings that can be replaced while they are read on every thread.
pub(crate) struct LiveSettings {
    /// Tells this holder's copies from another's in a thread's cache (addresses can be reused).
    id: u64,
    /// Moves on (under `current`'s write lock) whenever `current` is replaced.
    generation: AtomicU64,
    current: RwLock<Arc<Compiled>>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A thread's copy of the last settings it read: which holder, which generation.
struct Cached {
    id: u64,
    generation: u64,
    settings: Option<Arc<Compiled>>,
}

thread_local! {
    static CACHED: RefCell<Cached> = const {
        RefCell::new(Cached { id: 0, generation: 0, settings: None })
    };
}

impl LiveSettings {
    /// Settings from a built [`Config`], whose values were checked then.
    pub(crate) fn new(settings: TraceSettings) -> LiveSettings {
        LiveSettings {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            generation: AtomicU64::new(1),
            current: RwLock::new(Arc::new(Compiled::new(settings))),
        }
    }

    /// The settings now in force.
    pub(crate) fn get(&self) -> TraceSettings {
        self.read().source.clone()
    }

    /// Replaces the settings; the next trace on every thread uses them.
    pub(crate) fn set(&self, settings: TraceSettings) -> Result<(), ConfigError> {
        settings.validate()?;
        let compiled = Arc::new(Compiled::new(settings));
        let previous = {
            let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
            let previous = std::mem::replace(&mut *current, compiled);
            self.generation.fetch_add(1, Ordering::Release);
            previous
        };
        drop(previous);
        Ok(())
    }

    fn read(&self) -> Arc<Compiled> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Runs `f` with the settings in force, from this thread's copy when it is current.
    /// (`R: Default` only gives the compiler a value for a path that cannot be taken: `f` is
    /// always run, on the thread's copy or on a fresh read.)
    #[inline]
    pub(crate) fn with<R: Default>(&self, f: impl FnOnce(&Compiled) -> R) -> R {
        let generation = self.generation.load(Ordering::Acquire);
        let mut f = Some(f);
        let mut result = None;
        let _ = CACHED.try_with(|cached| {
            // Busy only if `f` got here again: take the slow way then.
            let Ok(mut cached) = cached.try_borrow_mut() else {
                return;
            };
            if cached.id != self.id || cached.generation != generation {
                let stale = std::mem::replace(
                    &mut *cached,
                    Cached {
                        id: self.id,
                        generation,
                        settings: Some(self.read()),
                    },
                );
                drop(stale);
            }
            if let (Some(settings), Some(f)) = (cached.settings.as_ref(), f.take()) {
                result = Some(f(settings));
            }
        });
        if let Some(f) = f {
            result = Some(f(&self.read()));
        }
        result.unwrap_or_default()
    }
}
