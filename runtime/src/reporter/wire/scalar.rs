//! Protobuf's scalar and length-delimited fields, written into a `Vec` sized beforehand.
//! `int32`, `int64` and enums are varints of the value sign-extended to 64 bits; proto3 leaves a
//! field holding its default value out.

use prost::encoding::{WireType, encoded_len_varint, key_len};

/// A field's key: its tag and wire type, as a varint.
#[inline]
pub(super) fn put_key(tag: u32, wire_type: WireType, buf: &mut Vec<u8>) {
    put_varint(u64::from(tag << 3 | wire_type as u32), buf);
}

/// `value` as a varint. Segments are encoded into a `Vec` sized to the message beforehand, so
/// a byte at a time costs a store and a predicted capacity check (writing into tonic's
/// `BytesMut`, a slice at once was cheaper: its `put_u8` checked more).
#[inline]
pub(super) fn put_varint(mut value: u64, buf: &mut Vec<u8>) {
    while value >= 0x80 {
        buf.push((value as u8 & 0x7F) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

pub(super) fn int_len(tag: u32, value: i64) -> usize {
    if value == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(value as u64)
    }
}

pub(super) fn put_int(tag: u32, value: i64, buf: &mut Vec<u8>) {
    if value != 0 {
        put_key(tag, WireType::Varint, buf);
        put_varint(value as u64, buf);
    }
}

pub(super) fn bool_len(tag: u32, value: bool) -> usize {
    if value { key_len(tag) + 1 } else { 0 }
}

pub(super) fn put_bool(tag: u32, value: bool, buf: &mut Vec<u8>) {
    if value {
        put_key(tag, WireType::Varint, buf);
        put_varint(1, buf);
    }
}

pub(super) fn str_len(tag: u32, value: &str) -> usize {
    bytes_len(tag, value.as_bytes())
}

pub(super) fn put_str(tag: u32, value: &str, buf: &mut Vec<u8>) {
    put_bytes(tag, value.as_bytes(), buf);
}

/// A `string` field given as bytes known to be UTF-8 (an id's text), or a `bytes` field.
#[inline]
pub(super) fn bytes_len(tag: u32, value: &[u8]) -> usize {
    if value.is_empty() {
        0
    } else {
        message_len(tag, value.len())
    }
}

#[inline]
pub(super) fn put_bytes(tag: u32, value: &[u8], buf: &mut Vec<u8>) {
    if !value.is_empty() {
        put_message_header(tag, value.len(), buf);
        buf.extend_from_slice(value);
    }
}

/// A length-delimited field of `len` bytes: key, length, bytes.
pub(super) fn message_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

pub(super) fn put_message_header(tag: u32, len: usize, buf: &mut Vec<u8>) {
    put_key(tag, WireType::LengthDelimited, buf);
    put_varint(len as u64, buf);
}

#[cfg(test)]
mod tests {
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
