//! [`InitError`]: why [`crate::init`] failed.

use std::fmt;

use crate::config::ConfigError;

/// Why [`init`](crate::init) failed.
///
/// `Debug` prints the same message as `Display`, so that `main() -> Result<(), Box<dyn Error>>`
/// shows it as written:
///
/// ```
/// let err = skytrace::InitError::Reporter(std::io::Error::other("no runtime"));
/// assert_eq!(format!("{err:?}"), "skytrace reporter: no runtime");
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
            InitError::Config(e) => write!(f, "skytrace configuration: {e}"),
            InitError::Reporter(e) => write!(f, "skytrace reporter: {e}"),
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
        let err = InitError::from(config);
        assert_eq!(
            format!("{err:?}"),
            r#"skytrace configuration: invalid value for SW_AGENT_SAMPLE: "lots" (expected an integer >= -1)"#
        );
    }
}
