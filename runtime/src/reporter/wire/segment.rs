//! [`SegmentMessage`]: a [`Segment`] written as `SegmentObject`'s protobuf, field for field,
//! its strings cut to [`super::cap`]'s limits and its times converted with one [`Clock`].
//!
//! Written in one pass: each nested message (a span, a ref, a tag, a log) is written after one
//! byte kept for its length, which is filled in afterwards ([`put_nested`]). Working out every
//! span's length first, as prost does, was a third of the encoding's work.

use std::borrow::Cow;
use std::cell::RefCell;

use crate::cap;
use crate::protobuf::{
    put_bool, put_bytes, put_int, put_millis, put_nested, put_pair_field, put_str,
};
use crate::segment::{LogRecord, Segment, SegmentRef, SpanRecord};
use crate::time::Clock;

/// A finished segment, ready to be written (borrowed: a segment is 256 bytes, moved once less).
pub(crate) struct SegmentMessage<'a> {
    pub(super) segment: &'a Segment,
    /// Converts the spans' and logs' times.
    clock: Clock,
}

impl SegmentMessage<'_> {
    pub(super) fn new(segment: &Segment) -> SegmentMessage<'_> {
        // The first span usually ends last: its end is "now" enough to tell whether the clock's
        // correction is stale, without reading the clock again.
        let latest = segment.spans.first().map(|s| s.end.unwrap_or(s.start));
        let clock = latest.map_or_else(Clock::now, Clock::at);
        SegmentMessage { segment, clock }
    }

    /// A guess of the message's length, for the buffer's first capacity: the strings, and a
    /// little more than each field around them takes (a span's times and ids about 30 bytes,
    /// its enums and the nested messages' keys and lengths a few each). Too small is a
    /// reallocation, too large wasted room until the bytes are sent.
    pub(super) fn size_hint(&self) -> usize {
        let s = &self.segment;
        let spans: usize = s
            .spans
            .iter()
            .map(|span| {
                48 + span.operation.len()
                    + span.peer.len()
                    + span
                        .tags
                        .iter()
                        .map(|(k, v)| 6 + k.len() + v.len())
                        .sum::<usize>()
                    + span.encoded_tags.len()
                    + span
                        .logs
                        .iter()
                        .map(|log| 10 + log.fields.len())
                        .sum::<usize>()
            })
            .sum();
        16 + s.trace_id_bytes().len()
            + s.segment_id.as_bytes().len()
            + spans
            + s.refs.len() * 160
            + s.service.len()
            + s.instance.len()
    }
}

/// The refs span `index` carries: the first span holds them all.
fn refs_of(segment: &Segment, index: usize) -> &[SegmentRef] {
    if index == 0 { &segment.refs } else { &[] }
}

impl std::fmt::Debug for SegmentMessage<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.segment.fmt(f)
    }
}

impl SegmentMessage<'_> {
    /// Writes the message's fields (what `prost::Message::encode_raw` would).
    pub(super) fn write(&self, buf: &mut Vec<u8>) {
        let s = &self.segment;
        put_bytes(1, s.trace_id_bytes(), buf);
        put_bytes(2, s.segment_id.as_bytes(), buf);
        for (index, span) in s.spans.iter().enumerate() {
            put_nested(3, buf, |buf| {
                put_span(span, refs_of(s, index), self.clock, buf)
            });
        }
        put_service_fields(s.service, s.instance, buf);
        put_bool(6, s.size_limited, buf);
    }
}

thread_local! {
    /// The last service and instance this thread wrote (their texts' addresses and lengths), as
    /// their two fields' bytes: every segment of an agent has the same, so they are written once
    /// per thread, not field by field for every segment.
    static SERVICE_FIELDS: RefCell<ServiceFields> = const {
        RefCell::new(ServiceFields {
            of: [(0, 0); 2],
            bytes: Vec::new(),
        })
    };
}

struct ServiceFields {
    of: [(usize, usize); 2],
    bytes: Vec<u8>,
}

/// Fields 4 and 5: the service and its instance.
#[inline]
fn put_service_fields(service: &'static str, instance: &'static str, buf: &mut Vec<u8>) {
    let of = [
        (service.as_ptr() as usize, service.len()),
        (instance.as_ptr() as usize, instance.len()),
    ];
    let cached = SERVICE_FIELDS.try_with(|fields| {
        let Ok(mut fields) = fields.try_borrow_mut() else {
            return false;
        };
        if fields.of != of {
            fields.bytes.clear();
            put_str(4, service, &mut fields.bytes);
            put_str(5, instance, &mut fields.bytes);
            fields.of = of;
        }
        buf.extend_from_slice(&fields.bytes);
        true
    });
    if cached != Ok(true) {
        put_str(4, service, buf);
        put_str(5, instance, buf);
    }
}

/// How many tags of `&'static str`s a thread keeps written ([`put_static_tag`]).
const STATIC_TAGS: usize = 8;
/// The longest such tag kept, as written (key, value and their headers).
const STATIC_TAG_BYTES: usize = 64;

thread_local! {
    /// The last tags of `&'static str`s this thread wrote (key's and value's addresses and
    /// lengths, and the field's bytes), replaced in turn: `http.method: GET` and
    /// `http.status_code: 200` on every HTTP entry, a component's fixed tags on its spans.
    static STATIC_TAG_FIELDS: RefCell<StaticTags> = const {
        RefCell::new(StaticTags {
            of: [(0, 0, 0, 0); STATIC_TAGS],
            len: [0; STATIC_TAGS],
            bytes: [[0; STATIC_TAG_BYTES]; STATIC_TAGS],
            next: 0,
        })
    };
}

struct StaticTags {
    /// No `&str` starts at address 0: an unused slot matches no tag.
    of: [(usize, usize, usize, usize); STATIC_TAGS],
    len: [u8; STATIC_TAGS],
    bytes: [[u8; STATIC_TAG_BYTES]; STATIC_TAGS],
    /// The slot the next new tag takes.
    next: u8,
}

/// Field 12 holding a tag whose key and value are `&'static str`s: its bytes copied from the
/// thread's last ones when this tag was among them, written (and kept) otherwise. A `'static`
/// text never changes and its address is never reused, so its address and length are the
/// text. One copy instead of four (the headers, the key, the value's header and the value).
#[inline]
fn put_static_tag(key: &'static str, value: &'static str, buf: &mut Vec<u8>) {
    let of = (
        key.as_ptr() as usize,
        key.len(),
        value.as_ptr() as usize,
        value.len(),
    );
    let written = STATIC_TAG_FIELDS.try_with(|tags| {
        let Ok(mut tags) = tags.try_borrow_mut() else {
            return false;
        };
        if let Some(i) = tags.of.iter().position(|o| *o == of) {
            buf.extend_from_slice(&tags.bytes[i][..usize::from(tags.len[i])]);
            return true;
        }
        let start = buf.len();
        put_pair_field(12, key, value, buf);
        let field = &buf[start..];
        if field.len() <= STATIC_TAG_BYTES {
            let slot = usize::from(tags.next) % STATIC_TAGS;
            tags.next = ((slot + 1) % STATIC_TAGS) as u8;
            tags.of[slot] = of;
            // At most STATIC_TAG_BYTES (64): fits.
            tags.len[slot] = field.len() as u8;
            tags.bytes[slot][..field.len()].copy_from_slice(field);
        }
        true
    });
    if written != Ok(true) {
        // The thread's tags are being destroyed (or, never, borrowed): written plainly.
        put_pair_field(12, key, value, buf);
    }
}

fn put_span(span: &SpanRecord, refs: &[SegmentRef], clock: Clock, buf: &mut Vec<u8>) {
    put_int(1, i64::from(span.id), buf);
    if span.parent == -1 {
        // Every segment's first span: its ten-byte varint as a constant, not made a byte at a
        // time.
        buf.extend_from_slice(&NO_PARENT);
    } else {
        put_int(2, i64::from(span.parent), buf);
    }
    put_millis(3, clock.millis(span.start), buf);
    put_millis(4, clock.millis(span.end.unwrap_or(span.start)), buf);
    for r in refs {
        put_nested(5, buf, |buf| put_ref(r, buf));
    }
    put_str(6, cap::operation_name(&span.operation), buf);
    put_str(7, cap::peer(&span.peer), buf);
    put_int(8, i64::from(span.kind.to_proto() as i32), buf);
    put_int(9, i64::from(span.layer.to_proto() as i32), buf);
    put_int(10, i64::from(span.component), buf);
    put_bool(11, span.is_error, buf);
    for (k, v) in &span.tags {
        match (k, v) {
            (Cow::Borrowed(k), Cow::Borrowed(v)) => put_static_tag(k, v, buf),
            _ => put_pair_field(12, k, v, buf),
        }
    }
    buf.extend_from_slice(span.encoded_tags.as_bytes());
    for log in &span.logs {
        put_nested(13, buf, |buf| put_log(log, clock, buf));
    }
    put_bool(14, span.skip_analysis, buf);
}

/// Field 2 (`parentSpanId`) holding -1: its key, then -1 sign-extended to 64 bits as a varint.
const NO_PARENT: [u8; 11] = [
    2 << 3,
    0xFF,
    0xFF,
    0xFF,
    0xFF,
    0xFF,
    0xFF,
    0xFF,
    0xFF,
    0xFF,
    0x01,
];

fn put_ref(r: &SegmentRef, buf: &mut Vec<u8>) {
    put_int(1, i64::from(r.kind.to_proto() as i32), buf);
    put_str(2, &r.trace_id, buf);
    put_str(3, &r.parent_segment_id, buf);
    put_int(4, i64::from(r.parent_span_id), buf);
    put_str(5, &r.parent_service, buf);
    put_str(6, &r.parent_service_instance, buf);
    put_str(7, cap::operation_name(&r.parent_endpoint), buf);
    put_str(8, cap::peer(&r.network_address), buf);
}

fn put_log(log: &LogRecord, clock: Clock, buf: &mut Vec<u8>) {
    put_millis(1, clock.millis(log.time), buf);
    buf.extend_from_slice(log.fields.as_bytes());
}
