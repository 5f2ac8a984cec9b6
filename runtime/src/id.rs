//! Globally unique trace and segment ids.
//!
//! The shape follows the Java agent, `{process}.{thread}.{millis * 10000 + seq}`, so ids look
//! familiar in SkyWalking's UI. OAP treats them as opaque strings; uniqueness is what matters:
//! the process part is 128 random bits, the thread part tells threads of one process apart and the
//! last part orders ids of one thread.
//!
//! An id is kept as text inline ([`Id`], 81 bytes), not on the heap: every request makes one,
//! and an allocation (and its free on the reporter's thread) cost more than writing the id.

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::time::{Stamp, now_millis};

static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// `{process}.{thread}.`: the part of this thread's ids that never changes.
    static PREFIX: Id = {
        let mut prefix = Id::default();
        prefix.push(process_uuid().as_bytes());
        prefix.push(b".");
        prefix.push_decimal(NEXT_THREAD.fetch_add(1, Ordering::Relaxed));
        prefix.push(b".");
        prefix
    };
    /// The last id this thread made, and its stamp: changed in place, copied out once (taken
    /// out of a `Cell` and put back, the 81 bytes were copied three times, and zeroed once).
    static LAST: RefCell<(u64, Id)> = const {
        RefCell::new((
            0,
            Id {
                bytes: [0; Id::CAPACITY],
                len: 0,
            },
        ))
    };
}

/// 64 random bits. std's `RandomState` is keyed from the OS (once per thread, then counted up
/// for each new one), which is all the randomness ids, event UUIDs and back-off jitter need; it
/// saves a dependency on a random-number crate.
pub(crate) fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_i64(now_millis());
    hasher.finish()
}

/// 32 hex digits drawn once per process (see [`random_u64`]).
pub(crate) fn process_uuid() -> &'static str {
    static UUID: OnceLock<String> = OnceLock::new();
    UUID.get_or_init(|| format!("{:016x}{:016x}", random_u64(), random_u64()))
}

/// A new id, unique across processes and threads.
///
/// Written by hand: `format!` took ~870 instructions and two allocations per id. Each id is the
/// thread's last one with the difference of their stamps added to its final digits (one more
/// in the same millisecond, about 10,000 a millisecond later), not written again whole.
pub(crate) fn new_id() -> Id {
    new_id_at(Stamp::now())
}

/// [`new_id`] for a moment the caller has read already (a segment's id is made with its first
/// span's start: one read of the clock, not two).
pub(crate) fn new_id_at(now: Stamp) -> Id {
    let now = now.to_millis().unsigned_abs() * 10_000;
    LAST.with(|last| {
        // Nothing else borrows it: the only borrow is here, and nothing here reaches back.
        let Ok(mut last) = last.try_borrow_mut() else {
            return fresh_id(now);
        };
        let (stamp, id) = &mut *last;
        // Strictly increasing per thread, so two ids of one thread never collide, even past
        // 10,000 ids in a millisecond or when the wall clock steps back. The last id's number
        // is `stamp`: the new one is it plus the difference, not written again whole.
        let next = now.max(*stamp + 1);
        if !id.add(next - *stamp) {
            *id = fresh_id(next);
        }
        *stamp = next;
        id.clone()
    })
}

/// This thread's prefix followed by `stamp`.
fn fresh_id(stamp: u64) -> Id {
    let mut id = PREFIX.with(Id::clone);
    id.push_decimal(stamp);
    id
}

/// See [`Id::RAW`].
#[cfg(feature = "profiling")]
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawId {
    pub(crate) size: usize,
    pub(crate) text: usize,
    pub(crate) len: usize,
    pub(crate) capacity: usize,
}

/// An id made here, as text. 32 hex digits, two dots and two `u64`s (20 digits each) fit in 74
/// bytes.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Id {
    bytes: [u8; Id::CAPACITY],
    len: u8,
}

impl Default for Id {
    fn default() -> Self {
        Id {
            bytes: [0; Id::CAPACITY],
            len: 0,
        }
    }
}

impl Id {
    const CAPACITY: usize = 80;

    /// How an id lies in memory, for a reader that copies its bytes without a reference to it
    /// (the profiler's signal handler, through the kernel): its size, where its text starts,
    /// where its length is, and the most text it holds.
    #[cfg(feature = "profiling")]
    pub(crate) const RAW: RawId = RawId {
        size: std::mem::size_of::<Id>(),
        text: std::mem::offset_of!(Id, bytes),
        len: std::mem::offset_of!(Id, len),
        capacity: Id::CAPACITY,
    };

    fn push(&mut self, part: &[u8]) {
        let len = usize::from(self.len);
        let end = (len + part.len()).min(Id::CAPACITY);
        self.bytes[len..end].copy_from_slice(&part[..end - len]);
        // `end` is at most CAPACITY (80), which fits.
        self.len = end as u8;
    }

    /// Two digits per division (a 17-digit stamp took ~280 instructions one digit at a time).
    fn push_decimal(&mut self, mut n: u64) {
        const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
            2021222324252627282930313233343536373839\
            4041424344454647484950515253545556575859\
            6061626364656667686970717273747576777879\
            8081828384858687888990919293949596979899";
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        while n >= 100 {
            let pair = (n % 100) as usize * 2;
            n /= 100;
            i -= 2;
            digits[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
        }
        if n >= 10 {
            let pair = n as usize * 2;
            i -= 2;
            digits[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
        } else {
            i -= 1;
            digits[i] = b'0' + n as u8;
        }
        self.push(&digits[i..]);
    }

    /// Adds `delta` to the decimal number the id ends with, in place, a digit at a time from
    /// the last: as many steps as `delta` has digits, and the carries. `false` when the sum
    /// needs more digits than the number has (`…999` + 1) or the id does not end with digits:
    /// the id is then to be written again.
    fn add(&mut self, mut delta: u64) -> bool {
        let mut i = usize::from(self.len);
        while delta > 0 {
            let Some(last) = i.checked_sub(1) else {
                return false;
            };
            i = last;
            let digit = self.bytes[i];
            if !digit.is_ascii_digit() {
                return false;
            }
            let sum = u64::from(digit - b'0') + delta % 10;
            delta = delta / 10 + sum / 10;
            // A single digit: `sum % 10` is below 10.
            self.bytes[i] = b'0' + (sum % 10) as u8;
        }
        true
    }

    /// The id's text as bytes, unchecked: what the encoder copies (it knows the length at once,
    /// and reads the bytes once, where `as_str` would check them first).
    #[inline]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    pub(crate) fn as_str(&self) -> &str {
        // Valid UTF-8 by construction: what was pushed is ASCII (ids made here: hex digits,
        // dots, decimal digits; a cut made by `push` at the buffer's end falls between ASCII
        // bytes) or one whole `&str` that fits (`TraceId::new` checks the length first). Checked
        // all the same: a few dozen bytes, read a few times per segment, are not worth `unsafe`
        // outside the context's one module.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl std::fmt::Debug for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The id of a trace: made here with its first segment, or received from the caller (`sw8`),
/// where any text goes; kept inline when it fits, like an [`Id`].
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum TraceId {
    Inline(Id),
    Shared(Arc<str>),
}

impl TraceId {
    pub(crate) fn new(text: &str) -> TraceId {
        if text.len() <= Id::CAPACITY {
            let mut id = Id::default();
            // Whole UTF-8 text: `as_str` stays valid (its ASCII-only note is about ids made here).
            id.push(text.as_bytes());
            TraceId::Inline(id)
        } else {
            TraceId::Shared(Arc::from(text))
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            TraceId::Inline(id) => id.as_str(),
            TraceId::Shared(text) => text,
        }
    }

    /// See [`Id::as_bytes`].
    #[inline]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            TraceId::Inline(id) => id.as_bytes(),
            TraceId::Shared(text) => text.as_bytes(),
        }
    }
}

impl std::fmt::Debug for TraceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_across_threads() {
        let handles: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..5_000).map(|_| new_id()).collect::<Vec<_>>()))
            .collect();
        let mut seen = HashSet::new();
        for h in handles {
            for id in h.join().unwrap() {
                assert!(seen.insert(id.to_string()), "duplicate id");
            }
        }
        assert_eq!(seen.len(), 20_000);
    }

    #[test]
    fn decimals_are_written_whole() {
        for n in [
            0,
            7,
            10,
            99,
            100,
            101,
            12_345,
            17_640_000_000_000_001,
            u64::MAX,
        ] {
            let mut id = Id::default();
            id.push_decimal(n);
            assert_eq!(id.as_str(), n.to_string());
        }
    }

    #[test]
    fn adding_matches_writing_again() {
        let stamps = [
            0u64,
            8,
            9,
            10,
            99,
            17_640_000_000_000_001,
            17_649_999_999_999_999,
            17_650_000_000_009_963,
            99_999_999_999_999_999,
        ];
        // One more id in the millisecond, the next millisecond, a second, an hour, a carry
        // through every digit.
        let deltas = [
            1u64,
            37,
            9_963,
            10_000,
            10_037,
            10_000_000,
            36_000_000_000,
            1 << 60,
        ];
        for n in stamps {
            for delta in deltas {
                let Some(sum) = n.checked_add(delta) else {
                    continue;
                };
                let mut id = Id::default();
                id.push(b"abc.");
                id.push_decimal(n);
                let mut expected = Id::default();
                expected.push(b"abc.");
                expected.push_decimal(sum);
                let added = id.add(delta);
                assert_eq!(
                    added,
                    sum.to_string().len() == n.to_string().len(),
                    "{n} + {delta}"
                );
                if added {
                    assert_eq!(id, expected, "{n} + {delta}");
                }
            }
        }
        let mut no_digits = Id::default();
        no_digits.push(b"abc.");
        assert!(!no_digits.add(1));
        let mut unchanged = no_digits.clone();
        assert!(unchanged.add(0) && unchanged == no_digits);
    }

    #[test]
    fn ids_of_one_thread_increase() {
        let ids: Vec<Id> = (0..25_000).map(|_| new_id()).collect();
        let stamp = |id: &Id| {
            id.as_str()
                .rsplit('.')
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        for pair in ids.windows(2) {
            assert!(
                stamp(&pair[1]) > stamp(&pair[0]),
                "{:?} {:?}",
                pair[0],
                pair[1]
            );
            let prefix = |id: &Id| id.as_str().rsplit_once('.').unwrap().0.to_owned();
            assert_eq!(prefix(&pair[0]), prefix(&pair[1]));
        }
    }

    #[test]
    fn id_has_three_parts() {
        let id = new_id();
        let id = id.as_str();
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'.'));
        assert_eq!(id.split('.').count(), 3);
        assert_eq!(id.split('.').next().unwrap().len(), 32);
    }

    #[test]
    fn trace_ids_from_callers_keep_their_text() {
        let short = "a1b2.7.17328000000000001";
        assert_eq!(TraceId::new(short).as_str(), short);
        assert!(matches!(TraceId::new(short), TraceId::Inline(_)));
        let long = "é".repeat(50);
        assert_eq!(TraceId::new(&long).as_str(), long);
        assert!(matches!(TraceId::new(&long), TraceId::Shared(_)));
        let exact = "x".repeat(80);
        assert_eq!(TraceId::new(&exact).as_str(), exact);
    }
}
