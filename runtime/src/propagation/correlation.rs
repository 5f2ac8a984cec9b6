//! The `sw8-correlation` header: user baggage that travels with the trace.

use super::sw8::decode_field;

/// Key/value baggage carried across tasks and processes, within the protocol's limits
/// (by default at most 3 keys, values of at most 128 bytes).
///
/// ```
/// use skytrace::Correlation;
///
/// let mut c = Correlation::new(3, 128);
/// assert!(c.put("tenant", "acme"));
/// let header = c.encode();
/// let back = Correlation::decode(&header, 3, 128);
/// assert_eq!(back.get("tenant"), Some("acme"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Correlation {
    entries: Vec<(String, String)>,
    max_keys: usize,
    max_value_len: usize,
}

impl Correlation {
    /// An empty set with the given limits.
    pub fn new(max_keys: usize, max_value_len: usize) -> Self {
        Correlation {
            entries: Vec::new(),
            max_keys,
            max_value_len,
        }
    }

    /// Reads a header value. Malformed entries and entries beyond the limits are dropped.
    pub fn decode(value: &str, max_keys: usize, max_value_len: usize) -> Self {
        let mut out = Correlation::new(max_keys, max_value_len);
        // A header far beyond what the limits allow is not worth parsing.
        if value.len() > 16 * 1024 {
            return out;
        }
        for pair in value.split(',') {
            let Some((k, v)) = pair.split_once(':') else {
                continue;
            };
            if let (Some(k), Some(v)) = (decode_field(k), decode_field(v)) {
                out.put(k, v);
            }
        }
        out
    }

    /// The header value: `base64(key):base64(value)` pairs joined by `,`.
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        for (i, (k, v)) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            super::base64::encode_into(k.as_bytes(), &mut out);
            out.push(b':');
            super::base64::encode_into(v.as_bytes(), &mut out);
        }
        // Base64, commas and colons only.
        String::from_utf8(out).unwrap_or_default()
    }

    /// Sets `key`; a later write overrides. Returns `false` (and keeps nothing) when the key is
    /// empty, the value too long, or a new key would exceed the key limit.
    ///
    /// An empty value removes `key`, as go2sky does (an empty value cannot be sent): then the
    /// result says whether the key was there.
    ///
    /// ```
    /// use skytrace::Correlation;
    ///
    /// let mut c = Correlation::new(3, 128);
    /// assert!(c.put("tenant", "acme"));
    /// assert!(c.put("tenant", ""));
    /// assert_eq!(c.get("tenant"), None);
    /// assert!(!c.put("tenant", ""), "nothing left to remove");
    /// ```
    pub fn put(&mut self, key: impl Into<String>, value: impl Into<String>) -> bool {
        let (key, value) = (key.into(), value.into());
        if value.is_empty() {
            let before = self.entries.len();
            self.entries.retain(|(k, _)| *k != key);
            return self.entries.len() != before;
        }
        if key.is_empty() || value.len() > self.max_value_len {
            return false;
        }
        if let Some(slot) = self.entries.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = value;
            return true;
        }
        if self.entries.len() >= self.max_keys {
            return false;
        }
        self.entries.push((key, value));
        true
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether there is nothing to propagate.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    use super::*;

    #[test]
    fn limits_apply_on_put_and_decode() {
        let mut c = Correlation::new(3, 4);
        assert!(c.put("a", "1"));
        assert!(c.put("b", "2"));
        assert!(c.put("c", "3"));
        assert!(!c.put("d", "4"), "fourth key dropped");
        assert!(!c.put("a", "toolong"), "value over limit dropped");
        assert!(c.put("a", "9"), "later write overrides");
        assert_eq!(c.get("a"), Some("9"));
        let back = Correlation::decode(&c.encode(), 2, 4);
        assert_eq!(back.iter().count(), 2);
    }

    #[test]
    fn an_empty_value_removes_the_key() {
        let mut c = Correlation::new(2, 8);
        assert!(c.put("a", "1"));
        assert!(c.put("b", "2"));
        assert!(c.put("a", ""));
        assert_eq!(c.iter().collect::<Vec<_>>(), vec![("b", "2")]);
        assert!(!c.put("a", ""));
        assert!(c.put("c", "3"), "the removed key's place is free again");
        assert!(!c.put("", ""));
        let back = Correlation::decode(&c.encode(), 2, 8);
        assert_eq!(back, c);
    }

    #[test]
    fn malformed_entries_are_skipped() {
        let good = format!("{}:{}", STANDARD.encode("k"), STANDARD.encode("v"));
        let value = format!("garbage,{good},:,%%%:%%%,YQ==");
        let c = Correlation::decode(&value, 3, 128);
        assert_eq!(c.iter().collect::<Vec<_>>(), vec![("k", "v")]);
        assert!(Correlation::decode("", 3, 128).is_empty());
    }
}
