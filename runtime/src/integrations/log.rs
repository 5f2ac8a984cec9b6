//! The `log` bridge: [`SkyWalkingLogger`] wraps the application's own logger (env_logger,
//! simplelog, …), reports each record at or above `SW_AGENT_LOG_REPORTER_LEVEL` to OAP's log
//! view, linked to the trace it was written in (see [`crate::logs`]), and hands every record to
//! the wrapped logger as before.
//!
//! For the trace context in the wrapped logger's own lines, print [`crate::logs::sw_ctx`] in
//! its format (env_logger: `builder.format(|buf, r| writeln!(buf, "{} {}", sw_ctx(), r.args()))`).

use std::fmt::Write as _;

use crate::logs::{self, LogLevel, Origin};

/// A `log::Log` that reports records to SkyWalking and forwards them to `inner`.
///
/// ```
/// use skytrace::integrations::log::SkyWalkingLogger;
///
/// struct Stderr;
/// impl log::Log for Stderr {
///     fn enabled(&self, m: &log::Metadata<'_>) -> bool { m.level() <= log::Level::Info }
///     fn log(&self, r: &log::Record<'_>) {
///         if self.enabled(r.metadata()) {
///             eprintln!("{} {} {}", skytrace::logs::sw_ctx(), r.level(), r.args());
///         }
///     }
///     fn flush(&self) {}
/// }
///
/// SkyWalkingLogger::new(Stderr).init(log::LevelFilter::Info).unwrap();
/// log::warn!("disk almost full"); // printed by `Stderr`, and reported once a queue is installed
/// ```
#[derive(Debug)]
pub struct SkyWalkingLogger<L> {
    inner: L,
}

impl<L: ::log::Log + 'static> SkyWalkingLogger<L> {
    /// Wraps `inner`, which keeps receiving every record.
    pub fn new(inner: L) -> SkyWalkingLogger<L> {
        SkyWalkingLogger { inner }
    }

    /// The wrapped logger.
    pub fn inner(&self) -> &L {
        &self.inner
    }

    /// Installs the logger as the `log` crate's, and sets `log`'s maximum level to the higher of
    /// `max_level` (the wrapped logger's, e.g. env_logger's `filter()`) and
    /// `SW_AGENT_LOG_REPORTER_LEVEL`'s default (`WARN`): records below both are never made.
    pub fn init(self, max_level: ::log::LevelFilter) -> Result<(), ::log::SetLoggerError> {
        ::log::set_boxed_logger(Box::new(self))?;
        ::log::set_max_level(max_level.max(::log::LevelFilter::Warn));
        Ok(())
    }
}

impl<L: ::log::Log> ::log::Log for SkyWalkingLogger<L> {
    fn enabled(&self, metadata: &::log::Metadata<'_>) -> bool {
        self.inner.enabled(metadata)
            || crate::log_sink::threshold_allows(log_level(metadata.level()))
    }

    fn log(&self, record: &::log::Record<'_>) {
        logs::report(
            Origin {
                level: log_level(record.level()),
                logger: record.target(),
            },
            |text| {
                let _ = write!(text, "{}", record.args());
            },
        );
        self.inner.log(record);
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

fn log_level(level: ::log::Level) -> LogLevel {
    match level {
        ::log::Level::Error => LogLevel::Error,
        ::log::Level::Warn => LogLevel::Warn,
        ::log::Level::Info => LogLevel::Info,
        ::log::Level::Debug => LogLevel::Debug,
        ::log::Level::Trace => LogLevel::Trace,
    }
}
