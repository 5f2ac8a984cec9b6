//! Names kept for the life of the process: a service's and an instance's name go into every
//! segment, and a `&'static str` costs a segment nothing to carry (an `Arc<str>` shared by every
//! thread cost two atomic operations on one cache line per request, one of them on the
//! reporter's thread).

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

/// `name` as a `&'static str`. Each distinct name is stored once: memory grows with the number of
/// distinct names a process configures (a handful), not with how often tracers are made.
pub(crate) fn intern(name: &str) -> &'static str {
    static NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut names = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
    let names = names.get_or_insert_with(HashSet::new);
    if let Some(known) = names.get(name) {
        return known;
    }
    let stored: &'static str = Box::leak(name.into());
    names.insert(stored);
    stored
}

/// Most distinct endpoint names kept for the process ([`endpoint`]); past it, a name is made
/// for each request that uses it.
#[allow(dead_code)] // used by the HTTP server integrations only
const MAX_ENDPOINTS: usize = 1024;
/// Most bytes those names may take together.
#[allow(dead_code)] // used by the HTTP server integrations only
const MAX_ENDPOINT_BYTES: usize = 256 * 1024;
/// Endpoint names a thread remembers without asking the process-wide set.
#[allow(dead_code)] // used by the HTTP server integrations only
const RECENT: usize = 8;

thread_local! {
    // A cell per name, not one for the array: a look-up reads the names in place instead of
    // copying all eight out first (≈ 25 instructions a request).
    static RECENT_ENDPOINTS: [Cell<&'static str>; RECENT] =
        const { [const { Cell::new("") }; RECENT] };
    static NEXT_SLOT: Cell<usize> = const { Cell::new(0) };
}

/// `{method}:{route}`, an HTTP entry span's name, without an allocation for a name seen before.
///
/// A server's routes are few and fixed: the first request of each makes its name, later ones
/// find it among the thread's recent names (no lock) or in the process-wide set (one lock). A
/// process that names more than [`MAX_ENDPOINTS`] routes (or [`MAX_ENDPOINT_BYTES`]), say a
/// `tower` service naming its requests by raw path, keeps the first ones and makes the others'
/// names per request: what it keeps is bounded whatever the requests are.
#[allow(dead_code)] // used by the HTTP server integrations only
pub(crate) fn endpoint(method: &str, route: &str) -> Cow<'static, str> {
    let len = method.len() + 1 + route.len();
    let is_this = |name: &str| {
        name.len() == len
            && name.as_bytes()[method.len()] == b':'
            && name.starts_with(method)
            && name.ends_with(route)
    };
    let recent =
        RECENT_ENDPOINTS.try_with(|names| names.iter().map(Cell::get).find(|name| is_this(name)));
    if let Ok(Some(name)) = recent {
        return Cow::Borrowed(name);
    }
    let mut made = String::with_capacity(len);
    made.push_str(method);
    made.push(':');
    made.push_str(route);
    let Some(name) = keep_endpoint(made.as_str()) else {
        return Cow::Owned(made);
    };
    let _ = NEXT_SLOT.try_with(|next| {
        let slot = next.get() % RECENT;
        next.set(slot + 1);
        let _ = RECENT_ENDPOINTS.try_with(|names| names[slot].set(name));
    });
    Cow::Borrowed(name)
}

/// `name` from the process-wide set of endpoint names, added if there is room; `None` when
/// the set is full.
#[allow(dead_code)] // used by the HTTP server integrations only
fn keep_endpoint(name: &str) -> Option<&'static str> {
    static KEPT: Mutex<EndpointSet> = Mutex::new(EndpointSet::new());
    KEPT.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .keep(name)
}

/// Endpoint names kept for the process, at most [`MAX_ENDPOINTS`] and [`MAX_ENDPOINT_BYTES`].
#[allow(dead_code)] // used by the HTTP server integrations only
struct EndpointSet {
    names: Option<HashSet<&'static str>>,
    bytes: usize,
}

#[allow(dead_code)] // used by the HTTP server integrations only
impl EndpointSet {
    const fn new() -> EndpointSet {
        EndpointSet {
            names: None,
            bytes: 0,
        }
    }

    fn keep(&mut self, name: &str) -> Option<&'static str> {
        let names = self.names.get_or_insert_with(HashSet::new);
        if let Some(known) = names.get(name) {
            return Some(known);
        }
        if names.len() >= MAX_ENDPOINTS || self.bytes + name.len() > MAX_ENDPOINT_BYTES {
            return None;
        }
        let stored: &'static str = Box::leak(name.into());
        names.insert(stored);
        self.bytes += stored.len();
        Some(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::{EndpointSet, MAX_ENDPOINT_BYTES, MAX_ENDPOINTS, endpoint, intern};
    use std::borrow::Cow;

    #[test]
    fn an_endpoint_name_is_made_once_and_found_again() {
        let first = endpoint("GET", "/users/{id}");
        let again = endpoint("GET", "/users/{id}");
        assert_eq!(first, "GET:/users/{id}");
        let (Cow::Borrowed(a), Cow::Borrowed(b)) = (&first, &again) else {
            panic!("not kept: {first:?} {again:?}");
        };
        assert!(std::ptr::eq(*a, *b));
        // Names that differ only where the method ends and the route starts are not confused.
        assert_eq!(endpoint("GET", "/a"), "GET:/a");
        assert_eq!(endpoint("GET:", "a"), "GET::a");
        assert_eq!(endpoint("POST", "/users/{id}"), "POST:/users/{id}");
        // Another thread finds the name in the process-wide set.
        let there = std::thread::spawn(|| endpoint("GET", "/users/{id}"))
            .join()
            .unwrap();
        let Cow::Borrowed(c) = there else {
            panic!("made again on another thread")
        };
        assert!(std::ptr::eq(*a, c));
    }

    #[test]
    fn endpoint_names_past_the_limits_are_not_kept() {
        // More distinct names than are kept (a service naming requests by raw path): the set
        // stops growing, by count and by bytes, and names kept are still found.
        let mut set = EndpointSet::new();
        for i in 0..MAX_ENDPOINTS {
            assert!(set.keep(&format!("DELETE:/raw/{i}")).is_some());
        }
        assert_eq!(set.keep("DELETE:/raw/another"), None);
        assert_eq!(set.keep("DELETE:/raw/7"), Some("DELETE:/raw/7"));
        let mut set = EndpointSet::new();
        let long = "x".repeat(MAX_ENDPOINT_BYTES / 2);
        assert!(set.keep(&format!("a{long}")).is_some());
        assert_eq!(set.keep(&format!("bb{long}")), None);
        assert!(set.keep("GET:/short").is_some());
    }

    #[test]
    fn each_name_is_stored_once() {
        let a = intern("orders-svc");
        let b = intern(&String::from("orders-svc"));
        assert_eq!(a, "orders-svc");
        assert!(std::ptr::eq(a, b));
        assert!(!std::ptr::eq(a, intern("orders-svc-2")));
    }
}
