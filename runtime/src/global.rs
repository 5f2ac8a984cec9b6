//! The global agent: the one [`crate::init`] installs and `Span::entry`, `#[entry_span]` and the
//! integrations use.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crate::agent::Agent;

static GLOBAL: RwLock<Option<Arc<Agent>>> = RwLock::new(None);
/// Moves on (under `GLOBAL`'s write lock) whenever `GLOBAL` changes: a thread's copy of an
/// older generation is stale.
static GENERATION: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's copy of the global agent, with the generation it was read at. Reading
    /// `GLOBAL` itself on every request wrote to the lock's reader count and to the agent's
    /// reference count: two cache lines shared by every thread of the service. A thread that
    /// stops tracing keeps its copy (the agent's memory, not its reporter, which is shut down
    /// explicitly) until it exits.
    static COPY: RefCell<(u64, Option<Arc<Agent>>)> = const { RefCell::new((0, None)) };
}

fn read() -> Option<Arc<Agent>> {
    GLOBAL
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .map(Arc::clone)
}

/// Makes `agent` the global one; returns the one it replaces.
pub(crate) fn install(agent: Arc<Agent>) -> Option<Arc<Agent>> {
    let mut global = GLOBAL.write().unwrap_or_else(PoisonError::into_inner);
    let previous = global.replace(agent);
    GENERATION.fetch_add(1, Ordering::Release);
    previous
}

/// Uninstalls `agent` if it is the global one.
pub(crate) fn uninstall(agent: &Arc<Agent>) {
    let previous = {
        let mut global = GLOBAL.write().unwrap_or_else(PoisonError::into_inner);
        if !global.as_ref().is_some_and(|g| Arc::ptr_eq(g, agent)) {
            return;
        }
        GENERATION.fetch_add(1, Ordering::Release);
        global.take()
    };
    // Dropped outside the lock: the last reference may drop a user's reporter.
    drop(previous);
}

/// Runs `f` with the global agent; `None` when none is installed. `f` must run no user code:
/// while it runs, this thread's copy is borrowed (a nested call would take the slow way, which
/// is correct but slower).
pub(crate) fn with<R>(f: impl FnOnce(&Arc<Agent>) -> R) -> Option<R> {
    let generation = GENERATION.load(Ordering::Acquire);
    let mut f = Some(f);
    let mut result = None;
    let _ = COPY.try_with(|copy| {
        let Ok(mut copy) = copy.try_borrow_mut() else {
            return;
        };
        if copy.0 != generation {
            let stale = std::mem::replace(&mut *copy, (generation, read()));
            drop(stale);
        }
        if let Some(f) = f.take() {
            result = Some(copy.1.as_ref().map(f));
        }
    });
    match (result, f) {
        (Some(result), _) => result,
        (None, Some(f)) => read().as_ref().map(f),
        (None, None) => None,
    }
}
