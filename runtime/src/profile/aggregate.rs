//! Samples drained from the sampler, counted by stack and tag. Bounded: past
//! [`MAX_BYTES`] of distinct stacks, new ones are dropped and counted (a busy service repeats
//! its stacks; a profile needs their counts, not every sample).

use std::collections::HashMap;

use skytrace_sampler::Sample;

/// The most memory the distinct stacks of one profile may take.
pub(crate) const MAX_BYTES: usize = 16 << 20;

/// A stack, innermost frame first, and the thread's tag when it was sampled.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) struct Key {
    pub(crate) frames: Box<[u64]>,
    /// The segment id and span id the thread ran.
    pub(crate) tag: Option<(Box<str>, i32)>,
}

#[derive(Debug, Default)]
pub(crate) struct Aggregate {
    counts: HashMap<Key, u64>,
    bytes: usize,
    /// Samples counted.
    pub(crate) samples: u64,
    /// Samples dropped for the memory bound.
    pub(crate) dropped: u64,
}

impl Aggregate {
    pub(crate) fn add(&mut self, sample: &Sample) {
        let tag = sample.tag().and_then(|(text, span_id)| {
            std::str::from_utf8(text)
                .ok()
                .map(|text| (Box::<str>::from(text), span_id))
        });
        let key = Key {
            frames: sample.frames().into(),
            tag,
        };
        if let Some(count) = self.counts.get_mut(&key) {
            *count += 1;
            self.samples += 1;
            return;
        }
        let size = key.frames.len() * 8 + key.tag.as_ref().map_or(0, |(t, _)| t.len()) + 64;
        if self.bytes + size > MAX_BYTES {
            self.dropped += 1;
            return;
        }
        self.bytes += size;
        self.samples += 1;
        self.counts.insert(key, 1);
    }

    /// Each distinct stack and tag with its count.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Key, u64)> {
        self.counts.iter().map(|(k, &n)| (k, n))
    }

    #[cfg(test)]
    pub(crate) fn insert(&mut self, key: Key, count: u64) {
        self.samples += count;
        *self.counts.entry(key).or_default() += count;
    }
}
