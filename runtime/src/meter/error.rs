//! What can go wrong when a meter is registered, and the name rules OAP imposes.

use std::fmt;

/// Why a meter could not be registered.
///
/// `Debug` prints the same message as `Display`, so `build().unwrap()` and `?` in `main` show a
/// sentence rather than a struct.
///
/// ```
/// let err = skytrace::meter::MeterRegistry::new().counter("2fast").build().unwrap_err();
/// assert!(err.to_string().contains("2fast"));
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MeterError {
    /// The meter name does not match `[a-zA-Z_][a-zA-Z0-9_]*`, or is longer than 255 bytes.
    InvalidName {
        /// The name given.
        name: String,
    },
    /// A label name does not match `[a-zA-Z_][a-zA-Z0-9_]*`, or is longer than 255 bytes.
    InvalidLabelName {
        /// The meter.
        name: String,
        /// The label name given.
        label: String,
    },
    /// A label name OAP adds itself (`service`, `instance`, `le`).
    ReservedLabel {
        /// The meter.
        name: String,
        /// The label name given.
        label: String,
    },
    /// The same label name given twice.
    DuplicateLabel {
        /// The meter.
        name: String,
        /// The label name given twice.
        label: String,
    },
    /// Histogram bucket bounds that OAP could not use.
    InvalidBuckets {
        /// The meter.
        name: String,
        /// What is wrong with them.
        reason: String,
    },
    /// The name and labels are already registered as a different meter.
    Conflict {
        /// The meter.
        name: String,
        /// What is registered.
        existing: String,
        /// What was asked for.
        requested: String,
    },
    /// The registry holds its maximum number of meters.
    TooManyMeters {
        /// The meter that was not registered.
        name: String,
        /// The maximum.
        limit: usize,
    },
}

impl fmt::Display for MeterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MeterError::InvalidName { name } => write!(
                f,
                "invalid meter name {name:?}: OAP's meter analyzer needs names matching \
                 [a-zA-Z_][a-zA-Z0-9_]*, of at most 255 bytes"
            ),
            MeterError::InvalidLabelName { name, label } => write!(
                f,
                "meter {name:?}: invalid label name {label:?}: label names must match \
                 [a-zA-Z_][a-zA-Z0-9_]*, of at most 255 bytes"
            ),
            MeterError::ReservedLabel { name, label } => write!(
                f,
                "meter {name:?}: label name {label:?} is reserved (OAP adds `service`, \
                 `instance` and, for histograms, `le` itself)"
            ),
            MeterError::DuplicateLabel { name, label } => {
                write!(f, "meter {name:?}: label {label:?} given twice")
            }
            MeterError::InvalidBuckets { name, reason } => {
                write!(f, "histogram {name:?}: {reason}")
            }
            MeterError::Conflict {
                name,
                existing,
                requested,
            } => write!(
                f,
                "meter {name:?} with these labels is already registered as {existing}, \
                 not {requested}"
            ),
            MeterError::TooManyMeters { name, limit } => write!(
                f,
                "meter {name:?} not registered: the registry already holds {limit} meters"
            ),
        }
    }
}

impl fmt::Debug for MeterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for MeterError {}

/// Whether `s` matches `[a-zA-Z_][a-zA-Z0-9_]*`, the identifiers OAP's meter analyzer (a Groovy
/// expression language) can name.
pub(crate) fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Longest meter or label name, in bytes.
pub(crate) const MAX_NAME_BYTES: usize = 255;

/// Labels OAP puts on every sample itself; a second one with the same name makes OAP reject
/// the whole report (it builds the label map with a builder that refuses duplicate keys).
const RESERVED_LABELS: &[&str] = &["service", "instance", "le"];

/// Checks a meter name and its labels, and returns the labels sorted by name: the order they
/// are sent in and the form two registrations are compared in.
pub(crate) fn validate(
    name: &str,
    mut labels: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, MeterError> {
    if !is_identifier(name) || name.len() > MAX_NAME_BYTES {
        return Err(MeterError::InvalidName {
            name: crate::say::quote(name, MAX_NAME_BYTES).into_owned(),
        });
    }
    for (label, value) in &mut labels {
        // As a tag value: a label is something to group by, not a payload, and a report of
        // hundreds of meters must stay within a message.
        let kept = crate::cap::value(value).len();
        value.truncate(kept);
        if !is_identifier(label) || label.len() > MAX_NAME_BYTES {
            return Err(MeterError::InvalidLabelName {
                name: name.into(),
                label: label.clone(),
            });
        }
        if RESERVED_LABELS.contains(&label.as_str()) {
            return Err(MeterError::ReservedLabel {
                name: name.into(),
                label: label.clone(),
            });
        }
    }
    labels.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(pair) = labels.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(MeterError::DuplicateLabel {
            name: name.into(),
            label: pair[0].0.clone(),
        });
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        for ok in ["a", "_", "A_1", "instance_rust_process_threads", "_x9"] {
            assert!(is_identifier(ok), "{ok}");
        }
        for bad in ["", "1a", "a-b", "a.b", "a b", "é", "a:b"] {
            assert!(!is_identifier(bad), "{bad}");
        }
    }

    #[test]
    fn labels_are_checked_and_sorted() {
        let l = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(
            validate("m", vec![l("b", "2"), l("a", "1")]).unwrap(),
            vec![l("a", "1"), l("b", "2")]
        );
        let err = validate("m", vec![l("a", "1"), l("a", "2")]).unwrap_err();
        assert_eq!(err.to_string(), "meter \"m\": label \"a\" given twice");
        let err = validate("m", vec![l("le", "1")]).unwrap_err();
        assert!(matches!(err, MeterError::ReservedLabel { .. }), "{err}");
        let err = validate("m", vec![l("service", "x")]).unwrap_err();
        assert!(matches!(err, MeterError::ReservedLabel { .. }), "{err}");
        let err = validate("m", vec![l("a-b", "1")]).unwrap_err();
        assert!(matches!(err, MeterError::InvalidLabelName { .. }), "{err}");
        let err = validate("m.x", vec![]).unwrap_err();
        assert_eq!(format!("{err:?}"), err.to_string());
        assert!(err.to_string().contains("[a-zA-Z_][a-zA-Z0-9_]*"));
        // Values are free text.
        assert!(validate("m", vec![l("path", "/a b/é")]).is_ok());
    }
}
