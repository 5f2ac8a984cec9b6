//! [`InitError`]: why [`crate::init`] failed.

use std::fmt;

use crate::config::ConfigError;

/// Why [`init`](crate::init) failed.
///
/// Its message starts with `skytrace: ` as every line the agent prints; a configuration error
/// reads exactly as [`ConfigError`] does from [`crate::Config::from_env`]. `Debug` prints the
/// same message as `Display`, so that `main() -> Result<(), Box<dyn Error>>` shows it as
/// written:
///
/// ```
/// let err = skytrace::InitError::Reporter(std::io::Error::other("no runtime"));
/// assert_eq!(format!("{err:?}"), "skytrace: the reporter could not start: no runtime");
/// assert_eq!(format!("{err:?}"), err.to_string());
/// ```
pub enum InitError {
    /// A configuration value is invalid.
    Config(ConfigError),
    /// The reporter could not start.
    Reporter(std::io::Error),
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Already `skytrace: invalid value for …`: the same words as from `Config::from_env`.
            InitError::Config(e) => fmt::Display::fmt(e, f),
            InitError::Reporter(e) => write!(f, "skytrace: the reporter could not start: {e}"),
        }
    }
}

impl fmt::Debug for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for InitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            InitError::Config(e) => Some(e),
            InitError::Reporter(e) => Some(e),
        }
    }
}

impl From<ConfigError> for InitError {
    fn from(e: ConfigError) -> Self {
        InitError::Config(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_the_message() {
        let config = ConfigError {
            variable: "SW_AGENT_SAMPLE".into(),
            value: "lots".into(),
            expected: "an integer >= -1".into(),
        };
        let err = InitError::from(config.clone());
        assert_eq!(
            format!("{err:?}"),
            r#"skytrace: invalid value for SW_AGENT_SAMPLE: "lots" (expected an integer >= -1)"#
        );
        assert_eq!(err.to_string(), config.to_string());
    }
}
