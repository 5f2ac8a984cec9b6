//! [`EncodedPairs`]: key/value pairs written as they travel when they are made: a span log's
//! fields ([`LogFields`]), and the tags the `tracing` bridge formats ([`EncodedTags`]).
//!
//! Such values are mostly formatted (`tracing` fields, an error's message): kept as pairs of
//! texts, each value was a `String` of its own, allocated on the service's thread and freed
//! after encoding; a `tracing` event paid for three or four of them. Here they are formatted
//! straight into one buffer, already in the protocol's form (one `KeyStringValuePair` field
//! after the other: a `Log`'s `data`, a `SpanObject`'s `tags`), which the encoder copies as it
//! is: one allocation for all of them, and nothing left to encode. Keys and values are cut to
//! [`crate::cap::value`] as they are written, as the encoder cut them before; the bytes are
//! those it wrote.
//!
//! A thread keeps a few emptied buffers of its finished segments (given back by
//! `spare_spans::recycle`) for the next pairs it formats: a request's span logs and tags then
//! cost no allocation at all. At most [`SPARES`] buffers of [`ROOM`] bytes stay allocated per
//! thread; a buffer that grew past its room is freed.

use std::cell::RefCell;
use std::fmt::{self, Write as _};

use crate::decimal;
use crate::protobuf::{LengthDelimitedFields, length_delimited_fields, put_pair_field};

/// A span log's fields: `Log.data`, field 2 of `Log`.
pub(crate) type LogFields = EncodedPairs<2>;
/// A span's tags: `SpanObject.tags`, field 12 of `SpanObject`.
pub(crate) type EncodedTags = EncodedPairs<12>;

/// A pair's key's (field 1) and value's (field 2) key bytes.
const KEY: u8 = 1 << 3 | 2;
const VALUE: u8 = 2 << 3 | 2;
/// A pair whose key and value together are shorter has every length in one byte (its own
/// length is theirs plus four header bytes, below 128): as `put_pair_field`'s quick rule.
const SHORT_PAIR: usize = 0x80 - 4;
/// The room a buffer gets at its first pair: a few short pairs (an event's level, message and
/// two fields; an HTTP request's method, URI and version).
const ROOM: usize = 128;
/// How many emptied buffers a thread keeps: a request's logs and its formatted tags (two events
/// and the request span's fields, with tower-http's `TraceLayer`), and one more.
const SPARES: usize = 4;

thread_local! {
    static SPARE: RefCell<Spares> = const {
        RefCell::new(Spares {
            len: 0,
            buffers: [const { Vec::new() }; SPARES],
        })
    };
}

/// A thread's emptied buffers, each of [`ROOM`] bytes: `buffers[..len]`.
pub(crate) struct Spares {
    len: usize,
    buffers: [Vec<u8>; SPARES],
}

/// An empty buffer of [`ROOM`] bytes: one of this thread's spares when it has one.
#[inline]
fn take_buffer() -> Vec<u8> {
    // `try_with`: pairs may be made while the thread's thread-locals are being destroyed.
    let spare = SPARE.try_with(|spares| {
        let mut spares = spares.try_borrow_mut().ok()?;
        let last = spares.len.checked_sub(1)?;
        spares.len = last;
        spares.buffers.get_mut(last).map(std::mem::take)
    });
    match spare {
        Ok(Some(buffer)) => buffer,
        _ => Vec::with_capacity(ROOM),
    }
}

/// How many emptied buffers this thread keeps now.
#[cfg(test)]
pub(crate) fn spares_kept() -> usize {
    SPARE.with(|spares| spares.borrow().len)
}

/// Calls `keep` with this thread's spares, to give them the buffers of a finished segment's
/// pairs ([`Spares::keep`]): one look-up for all of them. Not called while the thread's
/// thread-locals are being destroyed (the buffers are then freed with their pairs).
#[inline]
pub(crate) fn keep_spares(keep: impl FnOnce(&mut Spares)) {
    let _ = SPARE.try_with(|spares| {
        if let Ok(mut spares) = spares.try_borrow_mut() {
            keep(&mut spares);
        }
    });
}

impl Spares {
    /// Frees `pairs`, keeping their buffer, emptied, as a spare if it is of the usual room and
    /// there is a free place.
    #[inline]
    pub(crate) fn keep<const FIELD: u32>(&mut self, pairs: &mut EncodedPairs<FIELD>) {
        let len = self.len;
        if pairs.bytes.capacity() == ROOM
            && let Some(place) = self.buffers.get_mut(len)
        {
            *place = std::mem::take(&mut pairs.bytes);
            place.clear();
            self.len = len + 1;
        }
    }
}

/// Pairs encoded as field `FIELD` of their message, one after the other; see the [module
/// documentation](self).
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct EncodedPairs<const FIELD: u32> {
    bytes: Vec<u8>,
}

impl<const FIELD: u32> EncodedPairs<FIELD> {
    /// Each pair's key byte: field `FIELD`, length-delimited.
    const PAIR: u8 = (FIELD as u8) << 3 | 2;

    /// Room for the usual pairs at the first one (grown a pair at a time, the buffer moved
    /// three or four times): a spare buffer of this thread's when it has one.
    #[inline]
    fn room(&mut self) {
        if self.bytes.capacity() == 0 {
            self.bytes = take_buffer();
        }
    }

    /// Appends `key` = `value`.
    pub(crate) fn push(&mut self, key: &str, value: &str) {
        self.room();
        put_pair_field(FIELD, key, value, &mut self.bytes);
    }

    /// Appends a pair encoded at compile time (see [`EncodedPairs::const_pair`]).
    #[inline]
    pub(crate) fn push_const(&mut self, pair: &ConstPair<FIELD>) {
        self.room();
        self.bytes.extend_from_slice(pair.as_bytes());
    }

    /// `key` = `value` encoded at compile time, for a pair pushed again and again (a log's
    /// `event`): both non-empty, together at most [`CONST_PAIR_MAX`] bytes (checked as it is
    /// compiled, made in a `const` as every one here is).
    pub(crate) const fn const_pair(key: &str, value: &str) -> ConstPair<FIELD> {
        let (key, value) = (key.as_bytes(), value.as_bytes());
        assert!(!key.is_empty() && !value.is_empty() && key.len() + value.len() <= CONST_PAIR_MAX);
        let mut bytes = [0; 4 + 2 + CONST_PAIR_MAX];
        bytes[0] = Self::PAIR;
        bytes[1] = (4 + key.len() + value.len()) as u8;
        bytes[2] = KEY;
        bytes[3] = key.len() as u8;
        let mut i = 0;
        while i < key.len() {
            bytes[4 + i] = key[i];
            i += 1;
        }
        let at = 4 + key.len();
        bytes[at] = VALUE;
        bytes[at + 1] = value.len() as u8;
        let mut i = 0;
        while i < value.len() {
            bytes[at + 2 + i] = value[i];
            i += 1;
        }
        ConstPair {
            bytes,
            len: (at + 2 + value.len()) as u8,
        }
    }

    /// Appends `key` = what `value` writes (a `Display` or `Debug`), formatted in place.
    pub(crate) fn push_fmt(&mut self, key: &str, value: fmt::Arguments<'_>) {
        self.room();
        let buf = &mut self.bytes;
        let start = buf.len();
        // The usual pair: a short key and value, each length a byte. The headers are written
        // with room for the lengths, the value formatted after them, the lengths filled in.
        if !key.is_empty() && key.len() < SHORT_PAIR {
            buf.extend_from_slice(&[Self::PAIR, 0, KEY, key.len() as u8]);
            buf.extend_from_slice(key.as_bytes());
            buf.extend_from_slice(&[VALUE, 0]);
            let value_at = buf.len();
            let _ = Sink(buf).write_fmt(value);
            let value_len = buf.len() - value_at;
            if value_len > 0 && key.len() + value_len < SHORT_PAIR {
                buf[value_at - 1] = value_len as u8;
                buf[start + 1] = (4 + key.len() + value_len) as u8;
                return;
            }
            // Long (or empty): written again by the general rule, from a copy.
            let text = buf.split_off(value_at);
            buf.truncate(start);
            self.push(key, std::str::from_utf8(&text).unwrap_or_default());
            return;
        }
        let mut text = String::new();
        let _ = text.write_fmt(value);
        self.push(key, &text);
    }

    /// Appends `key` = `value` in decimal, as `Display` writes it.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))] // for the `tracing` bridge
    pub(crate) fn push_i64(&mut self, key: &str, value: i64) {
        self.push_decimal(key, value < 0, value.unsigned_abs());
    }

    /// Appends `key` = `value` in decimal, as `Display` writes it.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))] // for the `tracing` bridge
    pub(crate) fn push_u64(&mut self, key: &str, value: u64) {
        self.push_decimal(key, false, value);
    }

    #[cfg_attr(not(feature = "tracing"), allow(dead_code))] // for the `tracing` bridge
    fn push_decimal(&mut self, key: &str, negative: bool, magnitude: u64) {
        let mut digits = [0; decimal::MAX_LEN];
        let value = decimal::write(&mut digits, negative, magnitude);
        self.room();
        // Always the short pair but for a long key (digits are text already: not checked).
        if !key.is_empty() && key.len() + value.len() < SHORT_PAIR {
            let len = (4 + key.len() + value.len()) as u8;
            self.bytes
                .extend_from_slice(&[Self::PAIR, len, KEY, key.len() as u8]);
            self.bytes.extend_from_slice(key.as_bytes());
            self.bytes.extend_from_slice(&[VALUE, value.len() as u8]);
            self.bytes.extend_from_slice(value);
        } else {
            self.push(key, std::str::from_utf8(value).unwrap_or_default());
        }
    }

    /// Moves the pair pushed last, from byte `at` on (see [`EncodedPairs::len`]), to byte `to`,
    /// before the pairs pushed since: how a field that must come second gets there whenever it
    /// is recorded.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))] // for the `tracing` bridge
    pub(crate) fn move_back(&mut self, at: usize, to: usize) {
        // Where it is already (the only field, or the first after `to`).
        if at <= to {
            return;
        }
        let moved = self.bytes.len().saturating_sub(at);
        if let Some(tail) = self.bytes.get_mut(to..) {
            tail.rotate_right(moved);
        }
    }

    /// Appends `other`'s pairs (taken whole when there are none yet).
    pub(crate) fn append(&mut self, mut other: Self) {
        if self.bytes.capacity() == 0 {
            self.bytes = other.bytes;
        } else {
            self.bytes.append(&mut other.bytes);
        }
    }

    /// Whether there are no pairs.
    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// How many bytes the pairs take.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The pairs, encoded: what the encoder copies.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The pairs, read back (for `Segment::into_proto` and tests; the encoder copies the bytes).
    pub(crate) fn pairs(&self) -> Pairs<'_> {
        Pairs {
            fields: length_delimited_fields(&self.bytes),
        }
    }
}

/// The longest key and value of a [`ConstPair`] together (a short pair: every length a byte).
const CONST_PAIR_MAX: usize = 26;

/// A pair of [`EncodedPairs<FIELD>`] encoded at compile time ([`EncodedPairs::const_pair`]).
pub(crate) struct ConstPair<const FIELD: u32> {
    bytes: [u8; 4 + 2 + CONST_PAIR_MAX],
    len: u8,
}

impl<const FIELD: u32> ConstPair<FIELD> {
    fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }
}

/// `fmt::Write` into a byte buffer (what is written is UTF-8 text).
struct Sink<'a>(&'a mut Vec<u8>);

impl fmt::Write for Sink<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

impl<const FIELD: u32> fmt::Debug for EncodedPairs<FIELD> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.pairs()).finish()
    }
}

/// The pairs of [`EncodedPairs`], in order.
pub(crate) struct Pairs<'a> {
    fields: LengthDelimitedFields<'a>,
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let (_, pair) = self.fields.next()?;
        let (mut key, mut value) = ("", "");
        for (tag, text) in length_delimited_fields(pair) {
            let text = std::str::from_utf8(text).unwrap_or_default();
            match tag {
                1 => key = text,
                _ => value = text,
            }
        }
        Some((key, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes the encoder wrote for these pairs before they were encoded at the log.
    fn pairs_encoded(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut buf = Vec::new();
        for (key, value) in pairs {
            put_pair_field(2, key, value, &mut buf);
        }
        buf
    }

    #[test]
    fn formatted_values_are_the_bytes_of_their_texts() {
        let long = "é".repeat(1500);
        let texts = [
            "",
            "a",
            "GET",
            &"x".repeat(120),
            &"y".repeat(127),
            &"z".repeat(300),
            &long,
        ];
        for key in ["", "k", "message", &"q".repeat(130)] {
            for value in texts {
                let mut fields = LogFields::default();
                fields.push_fmt(key, format_args!("{value}"));
                assert_eq!(
                    fields.as_bytes(),
                    pairs_encoded(&[(key, value)]),
                    "{key}: {value}"
                );
                let mut pushed = LogFields::default();
                pushed.push(key, value);
                assert_eq!(pushed, fields);
            }
        }
    }

    #[test]
    fn integers_are_written_as_display_writes_them() {
        let long_key = "k".repeat(120);
        for key in ["n", "", &long_key] {
            for value in [0, 7, -7, 200, i64::MIN, i64::MAX] {
                let mut fields = LogFields::default();
                fields.push_i64(key, value);
                assert_eq!(
                    fields.as_bytes(),
                    pairs_encoded(&[(key, &value.to_string())])
                );
            }
            for value in [0, 9, 10, u64::MAX] {
                let mut fields = LogFields::default();
                fields.push_u64(key, value);
                assert_eq!(
                    fields.as_bytes(),
                    pairs_encoded(&[(key, &value.to_string())])
                );
            }
        }
    }

    #[test]
    fn long_values_are_cut_on_a_character_boundary() {
        let mut fields = LogFields::default();
        fields.push_fmt("k", format_args!("a{}", "€".repeat(1000)));
        let (_, value) = fields.pairs().next().unwrap();
        // 1 + 682 × 3 = 2,047 bytes: the next character would pass 2,048.
        assert_eq!(value.len(), 2047);
        assert!(value.starts_with("a€"));
    }

    #[test]
    fn pairs_read_back_in_order_and_one_can_move_to_second() {
        let mut fields = LogFields::default();
        fields.push("event", "debug");
        let second = fields.len();
        fields.push_fmt("latency", format_args!("{} ms", 3));
        fields.push("status", "200");
        let at = fields.len();
        fields.push_fmt("message", format_args!("{:?}", "done"));
        fields.move_back(at, second);
        let pairs: Vec<_> = fields.pairs().collect();
        assert_eq!(
            pairs,
            [
                ("event", "debug"),
                ("message", "\"done\""),
                ("latency", "3 ms"),
                ("status", "200")
            ]
        );
        assert_eq!(
            fields.as_bytes(),
            pairs_encoded(&[
                ("event", "debug"),
                ("message", "\"done\""),
                ("latency", "3 ms"),
                ("status", "200")
            ])
        );
    }

    #[test]
    fn pairs_encoded_at_compile_time_are_the_bytes_pushed() {
        const TAG: ConstPair<12> = EncodedTags::const_pair("k", "v");
        const LONGEST: ConstPair<2> = LogFields::const_pair("event", "twenty-one characters");
        for (key, value) in [("event", "warn"), ("event", "error")] {
            let mut pushed = LogFields::default();
            pushed.push(key, value);
            let mut fields = LogFields::default();
            fields.push_const(&LogFields::const_pair(key, value));
            assert_eq!(fields, pushed);
        }
        let mut tags = EncodedTags::default();
        tags.push_const(&TAG);
        assert_eq!(tags.pairs().collect::<Vec<_>>(), [("k", "v")]);
        let mut pushed = EncodedTags::default();
        pushed.push("k", "v");
        assert_eq!(tags, pushed);
        let mut fields = LogFields::default();
        fields.push_const(&LONGEST);
        assert_eq!(
            fields.as_bytes(),
            pairs_encoded(&[("event", "twenty-one characters")])
        );
    }

    #[test]
    fn a_thread_keeps_a_few_emptied_buffers_for_its_next_pairs() {
        std::thread::spawn(|| {
            let mut made: Vec<LogFields> = (0..SPARES + 1)
                .map(|n| {
                    let mut fields = LogFields::default();
                    fields.push_u64("n", n as u64);
                    fields
                })
                .collect();
            let at: Vec<*const u8> = made.iter().map(|f| f.as_bytes().as_ptr()).collect();
            keep_spares(|spares| {
                for fields in &mut made {
                    spares.keep(fields);
                }
            });
            assert!(made[..SPARES].iter().all(LogFields::is_empty));
            assert_eq!(spares_kept(), SPARES);
            drop(made);
            // The first `SPARES` came back, the last first; the one more was freed.
            let mut again: Vec<*const u8> = (0..SPARES)
                .map(|_| {
                    let mut fields = LogFields::default();
                    fields.push("k", "v");
                    assert_eq!(fields.pairs().collect::<Vec<_>>(), [("k", "v")]);
                    fields.as_bytes().as_ptr()
                })
                .collect();
            again.reverse();
            assert_eq!(again, at[..SPARES]);
            // A buffer that grew past its room is not kept.
            let mut long = LogFields::default();
            long.push("k", &"v".repeat(ROOM));
            keep_spares(|spares| spares.keep(&mut long));
            assert_eq!(spares_kept(), 0, "a grown buffer was kept");
        })
        .join()
        .unwrap();
    }
}
