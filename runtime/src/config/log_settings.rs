//! The log reporter's settings (`SW_AGENT_LOG_REPORTER_*`) and log levels: what `init`
//! installs for the `tracing` and `log` bridges (`crate::log_sink` holds the queue). Here, among
//! the configuration, so that `Config` can carry them without importing the queue.

use std::str::FromStr;

use super::ConfigError;

/// A log level, from the least to the most severe (`Trace < Error`).
///
/// ```
/// use skytrace::logs::LogLevel;
///
/// assert_eq!("warning".parse::<LogLevel>(), Ok(LogLevel::Warn));
/// assert!(LogLevel::Error > LogLevel::Warn);
/// assert_eq!(LogLevel::Info.as_str(), "INFO");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Very verbose diagnostics.
    Trace,
    /// Diagnostics.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected, handled.
    Warn,
    /// A failure.
    Error,
}

impl LogLevel {
    /// The level as the `level` tag carries it: `TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR` (the
    /// names of `tracing`, `log` and logback).
    pub const fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "TRACE",
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
        }
    }
}

/// The error of parsing a [`LogLevel`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseLogLevelError;

impl std::fmt::Display for ParseLogLevelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("expected TRACE, DEBUG, INFO, WARN (WARNING) or ERROR (CRITICAL, FATAL)")
    }
}

impl std::error::Error for ParseLogLevelError {}

impl FromStr for LogLevel {
    type Err = ParseLogLevelError;

    /// Case-insensitive; Python's names (`WARNING`, `CRITICAL`) and Java's `FATAL` are accepted.
    fn from_str(s: &str) -> Result<LogLevel, ParseLogLevelError> {
        match s.trim().to_ascii_uppercase().as_str() {
            "TRACE" => Ok(LogLevel::Trace),
            "DEBUG" => Ok(LogLevel::Debug),
            "INFO" => Ok(LogLevel::Info),
            "WARN" | "WARNING" => Ok(LogLevel::Warn),
            "ERROR" | "CRITICAL" | "FATAL" => Ok(LogLevel::Error),
            _ => Err(ParseLogLevelError),
        }
    }
}

/// How logs are reported to OAP (`LogReportService/collect`).
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `SW_AGENT_LOG_REPORTER_ACTIVE` | `true` | report logs at all (the bridges still need installing) |
/// | `SW_AGENT_LOG_REPORTER_LEVEL` | `WARN` | the least severe level reported (as the Python agent) |
/// | `SW_AGENT_LOG_REPORTER_MAX_BUFFER_SIZE` | `10000` | records waiting for the reporter; more are dropped and counted |
/// | `SW_AGENT_LOG_REPORTER_MAX_MESSAGE_SIZE` | `32768` | bytes of a record's text; longer text is cut at a character boundary |
///
/// ```
/// use skytrace::logs::{LogLevel, LogSettings};
///
/// let vars = [("SW_AGENT_LOG_REPORTER_LEVEL", "info")];
/// let settings = LogSettings::default()
///     .env(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()))
///     .unwrap();
/// assert_eq!(settings.level, LogLevel::Info);
/// assert_eq!(settings.max_buffer_size, 10_000);
///
/// let bad = [("SW_AGENT_LOG_REPORTER_LEVEL", "loud")];
/// let err = LogSettings::default()
///     .env(|name| bad.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()))
///     .unwrap_err();
/// assert_eq!(err.variable, "SW_AGENT_LOG_REPORTER_LEVEL");
/// assert_eq!(err.value, "loud");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogSettings {
    /// `SW_AGENT_LOG_REPORTER_ACTIVE`.
    pub active: bool,
    /// `SW_AGENT_LOG_REPORTER_LEVEL`.
    pub level: LogLevel,
    /// `SW_AGENT_LOG_REPORTER_MAX_BUFFER_SIZE`.
    pub max_buffer_size: usize,
    /// `SW_AGENT_LOG_REPORTER_MAX_MESSAGE_SIZE`, in bytes.
    pub max_message_size: usize,
}

/// The default of `SW_AGENT_LOG_REPORTER_MAX_MESSAGE_SIZE`: far below every collector's gRPC
/// message limit (4 MB for tonic and grpc-go), so that a batch of records always fits.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 32 * 1024;

impl Default for LogSettings {
    fn default() -> LogSettings {
        LogSettings {
            active: true,
            level: LogLevel::Warn,
            max_buffer_size: 10_000,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

impl LogSettings {
    /// The defaults, changed by the `SW_AGENT_LOG_REPORTER_*` variables of the environment.
    pub fn from_env() -> Result<LogSettings, ConfigError> {
        LogSettings::default().env(|name| std::env::var(name).ok())
    }

    /// Applies every `SW_AGENT_LOG_REPORTER_*` variable that `lookup` knows; an error names the
    /// variable and the value.
    pub fn env(mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &str| lookup(name).map(|v| v.trim().to_owned());
        if let Some(v) = var("SW_AGENT_LOG_REPORTER_ACTIVE") {
            self.active = super::check::boolean("SW_AGENT_LOG_REPORTER_ACTIVE", &v)?;
        }
        if let Some(v) = var("SW_AGENT_LOG_REPORTER_LEVEL") {
            self.level = v.parse().map_err(|_| {
                invalid(
                    "SW_AGENT_LOG_REPORTER_LEVEL",
                    v.clone(),
                    "TRACE, DEBUG, INFO, WARN (or WARNING) or ERROR (or CRITICAL, FATAL)",
                )
            })?;
        }
        if let Some(v) = var("SW_AGENT_LOG_REPORTER_MAX_BUFFER_SIZE") {
            self.max_buffer_size =
                bounded("SW_AGENT_LOG_REPORTER_MAX_BUFFER_SIZE", v, BUFFER_SIZE_MAX)?;
        }
        if let Some(v) = var("SW_AGENT_LOG_REPORTER_MAX_MESSAGE_SIZE") {
            self.max_message_size = bounded(
                "SW_AGENT_LOG_REPORTER_MAX_MESSAGE_SIZE",
                v,
                MESSAGE_SIZE_MAX,
            )?;
        }
        Ok(self)
    }
}

impl LogSettings {
    /// Checks settings made in code, as the variables are checked; the error names `origin`.
    pub(crate) fn check(&self, origin: &str) -> Result<(), ConfigError> {
        for (what, value, max) in [
            ("max_buffer_size", self.max_buffer_size, BUFFER_SIZE_MAX),
            ("max_message_size", self.max_message_size, MESSAGE_SIZE_MAX),
        ] {
            if !(1..=max).contains(&value) {
                return Err(invalid(
                    &format!("{origin}.{what}"),
                    value.to_string(),
                    &format!("a whole number from 1 to {max}"),
                ));
            }
        }
        Ok(())
    }
}

fn invalid(variable: &str, value: String, expected: &str) -> ConfigError {
    ConfigError {
        variable: variable.to_owned(),
        value,
        expected: expected.to_owned(),
    }
}

/// Most records waiting for the reporter (`SW_AGENT_LOG_REPORTER_MAX_BUFFER_SIZE`), as the
/// segments' queue: a million records is already far more memory than an agent should hold.
pub(crate) const BUFFER_SIZE_MAX: usize = 1 << 20;
/// Most bytes of one record's text (`SW_AGENT_LOG_REPORTER_MAX_MESSAGE_SIZE`): a record must
/// fit a gRPC message (4 MiB for tonic and grpc-go) with room for its tags.
pub(crate) const MESSAGE_SIZE_MAX: usize = 1 << 20;

/// A whole number from 1 to `max`.
fn bounded(variable: &str, value: String, max: usize) -> Result<usize, ConfigError> {
    match value.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(invalid(
            variable,
            value,
            &format!("a whole number from 1 to {max}"),
        )),
    }
}
