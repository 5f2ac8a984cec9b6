//! Protobuf's scalar and length-delimited fields, written into a `Vec`; length-delimited fields
//! read back out of an encoded message.
//! `int32`, `int64` and enums are varints of the value sign-extended to 64 bits; proto3 leaves a
//! field holding its default value out.

use prost::encoding::{WireType, decode_key, decode_varint, encoded_len_varint};

/// A field's key: its tag and wire type, as a varint.
#[inline]
pub(crate) fn put_key(tag: u32, wire_type: WireType, buf: &mut Vec<u8>) {
    put_varint(u64::from(tag << 3 | wire_type as u32), buf);
}

/// `value` as a varint. A byte at a time costs a store and a predicted capacity check (writing
/// into tonic's `BytesMut`, a slice at once was cheaper: its `put_u8` checked more).
#[inline]
pub(crate) fn put_varint(mut value: u64, buf: &mut Vec<u8>) {
    while value >= 0x80 {
        buf.push((value as u8 & 0x7F) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

pub(crate) fn put_int(tag: u32, value: i64, buf: &mut Vec<u8>) {
    if value != 0 {
        put_key(tag, WireType::Varint, buf);
        put_varint(value as u64, buf);
    }
}

/// A time field of `tag` (below 16: a one-byte key) holding milliseconds since the epoch.
/// Every time from 2011 to 2109 (2^35 to 2^42 ms) is a six-byte varint: written with its key in
/// one fixed-size copy, not a byte at a time; any other as [`put_int`] writes it. Always
/// inlined: a call saved and restored six registers around a dozen instructions.
#[inline(always)]
pub(crate) fn put_millis(tag: u32, millis: i64, buf: &mut Vec<u8>) {
    const SIX_BYTES: std::ops::Range<i64> = 1 << 35..1 << 42;
    if tag < 16 && SIX_BYTES.contains(&millis) {
        let v = millis as u64;
        let low = |shift: u32| ((v >> shift) as u8 & 0x7F) | 0x80;
        buf.extend_from_slice(&[
            (tag << 3) as u8,
            low(0),
            low(7),
            low(14),
            low(21),
            low(28),
            // Below 2^7, and not zero: the varint's last, minimal byte.
            (v >> 35) as u8,
        ]);
        return;
    }
    put_int(tag, millis, buf);
}

pub(crate) fn put_bool(tag: u32, value: bool, buf: &mut Vec<u8>) {
    if value {
        put_key(tag, WireType::Varint, buf);
        put_varint(1, buf);
    }
}

pub(crate) fn put_str(tag: u32, value: &str, buf: &mut Vec<u8>) {
    put_bytes(tag, value.as_bytes(), buf);
}

#[inline]
pub(crate) fn put_bytes(tag: u32, value: &[u8], buf: &mut Vec<u8>) {
    if !value.is_empty() {
        put_message_header(tag, value.len(), buf);
        buf.extend_from_slice(value);
    }
}

pub(crate) fn put_message_header(tag: u32, len: usize, buf: &mut Vec<u8>) {
    put_key(tag, WireType::LengthDelimited, buf);
    put_varint(len as u64, buf);
}

/// A length-delimited field whose contents `write` appends: the length is written after them,
/// in the byte kept for it before them, the contents moved along when it takes more (a
/// message of 128 bytes or more). One pass over what is written, instead of working out each
/// nested message's length before writing it; the bytes are the same (a minimal varint).
#[inline]
pub(crate) fn put_nested(tag: u32, buf: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    put_key(tag, WireType::LengthDelimited, buf);
    let at = buf.len();
    buf.push(0);
    write(buf);
    let len = buf.len() - at - 1;
    if len < 0x80 {
        buf[at] = len as u8;
        return;
    }
    let extra = encoded_len_varint(len as u64) - 1;
    buf.resize(buf.len() + extra, 0);
    buf.copy_within(at + 1..at + 1 + len, at + 1 + extra);
    let mut value = len as u64;
    for byte in &mut buf[at..=at + extra] {
        *byte = (value as u8 & 0x7F) | 0x80;
        value >>= 7;
    }
    buf[at + extra] &= 0x7F;
}

/// A `KeyStringValuePair` as field `tag` (a tag, a log's field).
pub(crate) fn put_pair_field(tag: u32, key: &str, value: &str, buf: &mut Vec<u8>) {
    // The usual pair, short, with both texts: its key, length and first field's header in one
    // copy of four bytes, and no length to fill in afterwards.
    if !key.is_empty() && !value.is_empty() && key.len() + value.len() < 0x80 - 4 {
        let len = 4 + key.len() + value.len();
        buf.extend_from_slice(&[(tag << 3 | 2) as u8, len as u8, 1 << 3 | 2, key.len() as u8]);
        buf.extend_from_slice(key.as_bytes());
        buf.extend_from_slice(&[2 << 3 | 2, value.len() as u8]);
        buf.extend_from_slice(value.as_bytes());
        return;
    }
    put_nested(tag, buf, |buf| put_pair(key, value, buf));
}

fn put_pair(key: &str, value: &str, buf: &mut Vec<u8>) {
    put_str(1, crate::cap::value(key), buf);
    put_str(2, crate::cap::value(value), buf);
}

/// The length-delimited fields of an encoded message, in order: each one's tag and contents.
/// Fields of other wire types are skipped; the walk ends at the first malformed byte.
pub(crate) fn length_delimited_fields(message: &[u8]) -> LengthDelimitedFields<'_> {
    LengthDelimitedFields { rest: message }
}

/// See [`length_delimited_fields`].
pub(crate) struct LengthDelimitedFields<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for LengthDelimitedFields<'a> {
    type Item = (u32, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let Ok((tag, wire_type)) = decode_key(&mut self.rest) else {
                self.rest = &[];
                return None;
            };
            let skip = match wire_type {
                WireType::LengthDelimited => {
                    let contents = decode_varint(&mut self.rest)
                        .ok()
                        .and_then(|len| usize::try_from(len).ok())
                        .and_then(|len| Some((self.rest.get(..len)?, len)));
                    let Some((contents, len)) = contents else {
                        self.rest = &[];
                        return None;
                    };
                    self.rest = &self.rest[len..];
                    return Some((tag, contents));
                }
                WireType::Varint => decode_varint(&mut self.rest).map(|_| 0).ok(),
                WireType::SixtyFourBit => Some(8),
                WireType::ThirtyTwoBit => Some(4),
                _ => None,
            };
            match skip.and_then(|n| self.rest.get(n..)) {
                Some(after) => self.rest = after,
                None => {
                    self.rest = &[];
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_the_varints_prost_writes() {
        let edges = [(1i64 << 35), (1 << 42)];
        let near = edges.iter().flat_map(|e| [e - 1, *e, e + 1]);
        let times = [0, 1, -1, 127, 128, 1_765_000_000_000, i64::MAX, i64::MIN];
        for millis in near.chain(times) {
            for tag in [1, 3, 4, 15, 16] {
                let mut ours = Vec::new();
                super::put_millis(tag, millis, &mut ours);
                let mut theirs = Vec::new();
                if millis != 0 {
                    prost::encoding::int64::encode(tag, &millis, &mut theirs);
                }
                assert_eq!(ours, theirs, "{tag}: {millis}");
            }
        }
    }

    #[test]
    fn length_delimited_fields_are_walked_past_the_others() {
        let mut message = Vec::new();
        super::put_int(1, -5, &mut message);
        super::put_str(2, "id", &mut message);
        prost::encoding::fixed64::encode(3, &7, &mut message);
        prost::encoding::fixed32::encode(4, &7, &mut message);
        super::put_nested(5, &mut message, |buf| super::put_str(1, "in", buf));
        let fields: Vec<_> = super::length_delimited_fields(&message).collect();
        assert_eq!(fields, [(2, &b"id"[..]), (5, &[10, 2, b'i', b'n'][..])]);
        // Cut short: the fields whole before the cut, then nothing.
        let cut: Vec<_> = super::length_delimited_fields(&message[..message.len() - 1]).collect();
        assert_eq!(cut, [(2, &b"id"[..])]);
        assert_eq!(super::length_delimited_fields(&[0xff]).count(), 0);
    }

    #[test]
    fn nested_messages_are_length_delimited_fields() {
        for len in [0, 1, 127, 128, 300, 16_383, 16_384, 70_000] {
            let contents: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut ours = vec![7];
            super::put_nested(12, &mut ours, |buf| buf.extend_from_slice(&contents));
            let mut theirs = vec![7];
            prost::encoding::bytes::encode(12, &contents, &mut theirs);
            assert_eq!(ours, theirs, "{len}");
        }
    }

    #[test]
    fn varints_are_prost_varints() {
        let values =
            (0..64).flat_map(|shift| [1u64 << shift, (1u64 << shift) - 1, (1u64 << shift) + 1]);
        for value in values.chain([0, 127, 128, 300, u64::MAX, i64::MIN as u64, -1i64 as u64]) {
            let mut ours = Vec::new();
            super::put_varint(value, &mut ours);
            let mut theirs = Vec::new();
            prost::encoding::encode_varint(value, &mut theirs);
            assert_eq!(ours, theirs, "{value}");
            assert_eq!(ours.len(), prost::encoding::encoded_len_varint(value));
        }
    }
}
