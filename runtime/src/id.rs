//! Globally unique trace and segment ids.
//!
//! The shape follows the Java agent, `{process}.{thread}.{millis * 10000 + seq}`, so ids look
//! familiar in SkyWalking's UI. OAP treats them as opaque strings; uniqueness is what matters:
//! the process part is 128 random bits, the thread part tells threads of one process apart and the
//! last part orders ids of one thread.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::time::now_millis;

static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// `{process}.{thread}.`: the part of this thread's ids that never changes.
    static PREFIX: IdBuf = {
        let mut prefix = IdBuf::default();
        prefix.push(process_uuid().as_bytes());
        prefix.push(b".");
        prefix.push_decimal(NEXT_THREAD.fetch_add(1, Ordering::Relaxed));
        prefix.push(b".");
        prefix
    };
    static LAST_STAMP: Cell<u64> = const { Cell::new(0) };
}

/// 32 hex digits drawn once per process. std's `RandomState` is seeded from the OS, which is all
/// the randomness an id needs; it saves a dependency on a random-number crate.
pub(crate) fn process_uuid() -> &'static str {
    static UUID: OnceLock<String> = OnceLock::new();
    UUID.get_or_init(|| {
        let mut out = String::with_capacity(32);
        for salt in 0..2u64 {
            let mut hasher = RandomState::new().build_hasher();
            hasher.write_u64(salt);
            hasher.write_u32(std::process::id());
            hasher.write_i64(now_millis());
            let _ = write!(out, "{:016x}", hasher.finish());
        }
        out
    })
}

/// A new id, unique across processes and threads.
///
/// Built by hand in a stack buffer: `format!` took ~870 instructions and two allocations per id
/// (and a trace has at least two ids); this is one allocation, the `Arc` itself.
pub(crate) fn new_id() -> Arc<str> {
    // Strictly increasing per thread, so two ids of one thread never collide, even past 10,000
    // ids in a millisecond or when the wall clock steps back.
    let stamp = LAST_STAMP.with(|last| {
        let stamp = (now_millis().unsigned_abs() * 10_000).max(last.get() + 1);
        last.set(stamp);
        stamp
    });
    let mut buf = PREFIX.with(IdBuf::clone);
    buf.push_decimal(stamp);
    Arc::from(buf.as_str())
}

/// 32 hex digits, two dots and two `u64`s (20 digits each) fit in 74 bytes.
#[derive(Clone)]
struct IdBuf {
    bytes: [u8; 80],
    len: usize,
}

impl Default for IdBuf {
    fn default() -> Self {
        IdBuf {
            bytes: [0; 80],
            len: 0,
        }
    }
}

impl IdBuf {
    fn push(&mut self, part: &[u8]) {
        let end = (self.len + part.len()).min(self.bytes.len());
        let take = end - self.len;
        self.bytes[self.len..end].copy_from_slice(&part[..take]);
        self.len = end;
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

    fn as_str(&self) -> &str {
        let bytes = &self.bytes[..self.len];
        debug_assert!(bytes.is_ascii());
        // SAFETY: only ASCII was pushed (hex digits, dots, decimal digits), and a cut made by
        // `push` at the buffer's end falls between ASCII bytes: valid UTF-8. (Checking it
        // again cost a sixth of making an id.)
        unsafe { std::str::from_utf8_unchecked(bytes) }
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
                let id = id.to_string();
                assert!(seen.insert(id), "duplicate id");
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
            let mut buf = IdBuf::default();
            buf.push_decimal(n);
            assert_eq!(buf.as_str(), n.to_string());
        }
    }

    #[test]
    fn id_has_three_parts() {
        let id = new_id();
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'.'));
        assert_eq!(id.split('.').count(), 3);
        assert_eq!(id.split('.').next().unwrap().len(), 32);
    }
}
