//! Names kept for the life of the process: a service's and an instance's name go into every
//! segment, and a `&'static str` costs a segment nothing to carry (an `Arc<str>` shared by every
//! thread cost two atomic operations on one cache line per request, one of them on the
//! reporter's thread).

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

#[cfg(test)]
mod tests {
    use super::intern;

    #[test]
    fn each_name_is_stored_once() {
        let a = intern("orders-svc");
        let b = intern(&String::from("orders-svc"));
        assert_eq!(a, "orders-svc");
        assert!(std::ptr::eq(a, b));
        assert!(!std::ptr::eq(a, intern("orders-svc-2")));
    }
}
