//! The reporter's thread says nothing through the application's `tracing` subscriber.
//!
//! tonic, hyper and h2 emit `tracing` events and spans as they work (thousands of TRACE lines a
//! minute while the reporter sends); on the reporter's thread they would reach whatever
//! subscriber the application installed — its log output, its own exporters — and cost the
//! application's subscriber their recording. The Java agent writes its own log to its own
//! file, never into the application's. Here the reporter's thread gets `tracing`'s no-op
//! dispatcher as its default, so its libraries' events go nowhere; the agent's own messages go
//! to standard error (`crate::say`).
//!
//! It is set only once a dispatcher exists somewhere (`has_been_set`): setting one earlier
//! would tell `tracing`, process-wide, that a subscriber exists, and turn off its fallback to
//! the `log` crate for an application that has no `tracing` subscriber at all.

use std::cell::RefCell;

use tracing_core::dispatcher::{self, DefaultGuard, Dispatch};

thread_local! {
    static QUIET: RefCell<Option<DefaultGuard>> = const { RefCell::new(None) };
}

/// Makes this thread's `tracing` events go nowhere, once the application has a dispatcher.
/// Cheap when done already (one thread-local read); call it before each piece of work.
#[inline]
pub(crate) fn keep_this_thread_quiet() {
    let _ = QUIET.try_with(|quiet| {
        if quiet.borrow().is_some() || !dispatcher::has_been_set() {
            return;
        }
        *quiet.borrow_mut() = Some(dispatcher::set_default(&Dispatch::none()));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_thread_dispatches_to_no_subscriber() {
        std::thread::spawn(|| {
            // Some dispatcher exists (this test's own, on another thread's scope would do).
            let _scope = dispatcher::set_default(&Dispatch::none());
            drop(_scope);
            keep_this_thread_quiet();
            assert!(QUIET.with(|q| q.borrow().is_some()));
            dispatcher::get_default(|d| assert!(d.is::<tracing_core::subscriber::NoSubscriber>()));
        })
        .join()
        .unwrap();
    }
}
