//! Where propagation headers are read from and written to.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

/// Reads propagation headers from an incoming request.
///
/// Implemented for `http::HeaderMap`, `http::Request<B>`, string maps and references to any of
/// them; implement it for your own message types to use them as an `#[entry_span]` carrier.
///
/// ```
/// use skytrace::Extractor;
///
/// struct Message { sw8: Option<String> }
///
/// impl Extractor for Message {
///     fn get(&self, key: &str) -> Option<&str> {
///         (key == "sw8").then_some(self.sw8.as_deref()).flatten()
///     }
/// }
/// # let m = Message { sw8: None };
/// # assert_eq!(m.get("sw8"), None);
/// ```
pub trait Extractor {
    /// The value of header `key` (lower-case), if present and text.
    fn get(&self, key: &str) -> Option<&str>;
}

/// Writes propagation headers onto an outgoing request.
///
/// ```
/// use std::collections::HashMap;
/// use skytrace::Injector;
///
/// let mut headers: HashMap<String, String> = HashMap::new();
/// headers.set("sw8", "1-...".to_string());
/// assert!(headers.contains_key("sw8"));
/// ```
pub trait Injector {
    /// Sets header `key` (lower-case) to `value`, replacing an earlier value.
    fn set(&mut self, key: &str, value: String);
}

impl<T: Extractor + ?Sized> Extractor for &T {
    fn get(&self, key: &str) -> Option<&str> {
        (**self).get(key)
    }
}

impl<T: Extractor + ?Sized> Extractor for &mut T {
    fn get(&self, key: &str) -> Option<&str> {
        (**self).get(key)
    }
}

impl<T: Injector + ?Sized> Injector for &mut T {
    fn set(&mut self, key: &str, value: String) {
        (**self).set(key, value);
    }
}

/// The propagation headers' own names, made once. A `HeaderMap` looked up by `&str` parses and
/// hashes the name on every call (a tenth of an entry span's work), and a name made from a
/// `&str` to insert a header is an allocation; these are neither. Any other name takes the
/// general path.
fn known_name(key: &str) -> Option<&'static http::HeaderName> {
    static SW8: http::HeaderName = http::HeaderName::from_static("sw8");
    static CORRELATION: http::HeaderName = http::HeaderName::from_static("sw8-correlation");
    static EXTENSION: http::HeaderName = http::HeaderName::from_static("sw8-x");
    match key {
        "sw8" => Some(&SW8),
        "sw8-correlation" => Some(&CORRELATION),
        "sw8-x" => Some(&EXTENSION),
        _ => None,
    }
}

impl Extractor for http::HeaderMap {
    fn get(&self, key: &str) -> Option<&str> {
        let value = match known_name(key) {
            Some(name) => http::HeaderMap::get(self, name),
            None => http::HeaderMap::get(self, key),
        };
        value.and_then(|v| v.to_str().ok())
    }
}

impl Injector for http::HeaderMap {
    fn set(&mut self, key: &str, value: String) {
        // Our own values are always valid header text; a name from a bad namespace is skipped.
        let Ok(value) = http::HeaderValue::try_from(value) else {
            return;
        };
        match known_name(key) {
            Some(name) => {
                self.insert(name.clone(), value);
            }
            None => {
                if let Ok(name) = http::HeaderName::from_bytes(key.as_bytes()) {
                    self.insert(name, value);
                }
            }
        }
    }
}

impl<B> Extractor for http::Request<B> {
    fn get(&self, key: &str) -> Option<&str> {
        Extractor::get(self.headers(), key)
    }
}

impl<B> Injector for http::Request<B> {
    fn set(&mut self, key: &str, value: String) {
        Injector::set(self.headers_mut(), key, value);
    }
}

impl<S: BuildHasher> Extractor for HashMap<String, String, S> {
    fn get(&self, key: &str) -> Option<&str> {
        HashMap::get(self, key).map(String::as_str)
    }
}

impl<S: BuildHasher> Injector for HashMap<String, String, S> {
    fn set(&mut self, key: &str, value: String) {
        self.insert(key.to_owned(), value);
    }
}

impl Extractor for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<&str> {
        BTreeMap::get(self, key).map(String::as_str)
    }
}

impl Injector for BTreeMap<String, String> {
    fn set(&mut self, key: &str, value: String) {
        self.insert(key.to_owned(), value);
    }
}

/// No carrier: always starts a new trace.
impl Extractor for () {
    fn get(&self, _key: &str) -> Option<&str> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::{Extractor, Injector};

    #[test]
    fn header_maps_carry_known_and_namespaced_names() {
        let mut headers = http::HeaderMap::new();
        for key in ["sw8", "sw8-correlation", "sw8-x", "tenant-a-sw8"] {
            Injector::set(&mut headers, key, format!("value of {key}"));
        }
        // A name from the wire is the same header as one of ours.
        headers.insert("SW8-X", http::HeaderValue::from_static("from the wire"));
        assert_eq!(Extractor::get(&headers, "sw8"), Some("value of sw8"));
        assert_eq!(
            Extractor::get(&headers, "sw8-correlation"),
            Some("value of sw8-correlation")
        );
        assert_eq!(Extractor::get(&headers, "sw8-x"), Some("from the wire"));
        assert_eq!(
            Extractor::get(&headers, "tenant-a-sw8"),
            Some("value of tenant-a-sw8")
        );
        assert_eq!(headers.len(), 4);
        // A name that is not a header name is skipped, not a panic.
        Injector::set(&mut headers, "bad name", "x".into());
        assert_eq!(Extractor::get(&headers, "bad name"), None);
        assert_eq!(headers.len(), 4);
    }
}
