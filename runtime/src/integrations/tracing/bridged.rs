//! [`BridgedSpans`]: the SkyWalking span of each `tracing` span the layer records, by the
//! subscriber's span id.
//!
//! Kept in the registry's extensions, a span cost a box and an insert into the span's map of
//! extensions, and every enter, record and close a look-up in the registry's slab, a lock of
//! the span's extensions and a look-up in them (≈ 250 instructions an enter, three enters a
//! request under tower-http's `TraceLayer`). Kept here, by id, in a few shards behind locks of
//! their own, it is one lock and one look-up. Each layer has its own (a clone starts empty):
//! ids are one subscriber's, and two subscribers hand out the same ones.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tracing_core::span::Id;

use crate::span::Span;

/// Shards: threads working on different spans seldom wait for one another.
const SHARDS: usize = 8;

/// The spans of one layer; see the [module documentation](self).
pub(super) struct BridgedSpans {
    shards: [Mutex<HashMap<u64, Span, BuildHasherDefault<IdHasher>>>; SHARDS],
    /// How many spans are kept: while none is, entering and closing `tracing` spans costs one
    /// atomic load.
    live: AtomicUsize,
}

impl BridgedSpans {
    pub(super) fn new() -> BridgedSpans {
        BridgedSpans {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::default())),
            live: AtomicUsize::new(0),
        }
    }

    /// Whether no span is kept.
    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.live.load(Ordering::Relaxed) == 0
    }

    /// Keeps `span` for the `tracing` span `id`.
    pub(super) fn insert(&self, id: &Id, span: Span) {
        // Ids are unique among a subscriber's open spans: nothing is replaced, but what would be
        // is ended after the lock, as on close.
        let replaced = self.shard(id).insert(id.into_u64(), span);
        if replaced.is_none() {
            self.live.fetch_add(1, Ordering::Relaxed);
        }
        drop(replaced);
    }

    /// Calls `f` with the span kept for `id`, under its shard's lock: `f` runs our code only
    /// (entering, editing), never a user's nor the end of a span.
    #[inline]
    pub(super) fn with<R>(&self, id: &Id, f: impl FnOnce(&Span) -> R) -> Option<R> {
        self.shard(id).get(&id.into_u64()).map(f)
    }

    /// Takes out the span kept for `id` (to be ended after the lock: ending a segment's first
    /// span hands it to the reporter).
    pub(super) fn remove(&self, id: &Id) -> Option<Span> {
        let removed = self.shard(id).remove(&id.into_u64());
        if removed.is_some() {
            self.live.fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }

    fn shard(&self, id: &Id) -> MutexGuard<'_, HashMap<u64, Span, BuildHasherDefault<IdHasher>>> {
        // A registry's ids count up from the slot's index in their low bits.
        let shard = &self.shards[id.into_u64() as usize % SHARDS];
        // A panic under the lock leaves the map whole (an insert or a removal is all or
        // nothing): taken as it is.
        shard.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for BridgedSpans {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BridgedSpans")
            .field("live", &self.live.load(Ordering::Relaxed))
            .finish()
    }
}

/// Hashes a span id (a number a registry makes unique): one multiplication, not SipHash's
/// rounds against keys an attacker chooses.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.write_u64(self.0 ^ u64::from(*byte));
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: the high bits, which the map's tags take, mix all of `n`'s.
        self.0 = (n ^ (n >> 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_kept_by_id_and_counted() {
        let spans = BridgedSpans::new();
        assert!(spans.is_empty());
        let (one, nine) = (Id::from_u64(1), Id::from_u64(9));
        spans.insert(&one, Span::noop());
        spans.insert(&nine, Span::noop());
        assert!(!spans.is_empty());
        assert_eq!(spans.with(&one, Span::is_recording), Some(false));
        assert_eq!(spans.with(&Id::from_u64(17), Span::is_recording), None);
        assert!(spans.remove(&one).is_some());
        assert!(spans.remove(&one).is_none(), "removed once");
        assert!(!spans.is_empty());
        assert!(spans.remove(&nine).is_some());
        assert!(spans.is_empty());
    }

    #[test]
    fn ids_in_one_shard_stay_apart() {
        let spans = BridgedSpans::new();
        let ids: Vec<Id> = (1..200).map(|n| Id::from_u64(n * SHARDS as u64)).collect();
        for id in &ids {
            spans.insert(id, Span::noop());
        }
        for id in &ids {
            assert!(spans.remove(id).is_some(), "{id:?}");
        }
        assert!(spans.is_empty());
    }
}
