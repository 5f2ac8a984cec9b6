//! A meter's identity: its name and labels. A leaf, so the meter kinds and the registry both
//! use it without importing each other.

use skytrace_proto::v3;

/// A meter's name and its labels, sorted by label name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct MeterId {
    pub(crate) name: String,
    pub(crate) labels: Vec<(String, String)>,
}

impl MeterId {
    pub(crate) fn new(name: &str, labels: Vec<(String, String)>) -> MeterId {
        MeterId {
            name: name.to_owned(),
            labels,
        }
    }

    pub(crate) fn wire_labels(&self) -> Vec<v3::Label> {
        self.labels
            .iter()
            .map(|(name, value)| v3::Label {
                name: name.clone(),
                value: value.clone(),
            })
            .collect()
    }
}
