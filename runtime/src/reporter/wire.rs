//! A [`Segment`] written straight to protobuf, field for field what `SegmentObject` encodes to.
//!
//! `Segment::into_proto` copies every name, tag and log into owned `String`s only for prost to
//! copy them again into the request body; on the reporter thread that copy was almost half of
//! the work per segment. [`SegmentMessage`] encodes the same bytes from the segment as it is.
//! Proto3 rules apply: fields holding their default value are left out.
//!
//! The gRPC reporter encodes a small segment on the thread that finished it and queues the bytes
//! ([`Queued`]): the segment's memory is then freed on the thread that allocated it. Freed on
//! the reporter's thread, every block went through glibc's slow path for memory of another
//! thread's arena (a third of that thread's time per segment), and the service's thread, whose
//! per-thread cache never got them back, allocated the next request's from the arena again.
//! A segment of more than [`INLINE_SPANS`] spans is queued whole and encoded on the reporter's
//! thread, so that what a request pays for encoding stays small (about 1,000 instructions a
//! span).
//!
//! Strings are cut to the limits of [`cap`] as they are written. Times are converted with one
//! [`Clock`] per segment. Nothing here needs the `grpc` feature: a transport that sends
//! `SegmentObject` bytes (gRPC, Kafka) takes them from here.

mod cap;

use std::cell::Cell;

use prost::Message;
use prost::bytes::{Buf, BufMut};
use prost::encoding::{DecodeContext, WireType, encoded_len_varint, key_len, skip_field};

use crate::segment::{LogRecord, Segment, SegmentRef, SpanRecord};
use crate::time::Clock;

/// A finished segment with what writing it needs worked out.
pub(crate) struct SegmentMessage {
    segment: Segment,
    /// Each span's start and end in milliseconds and its encoded length, worked out once: the
    /// message's length sizes the buffer, and a span's length is written before the span, so
    /// each would otherwise be computed twice (sizing was a sixth of the encoding's work).
    layout: Vec<SpanLayout>,
    /// The whole message's length.
    len: usize,
    /// Converts the logs' times (the spans' are in `layout`).
    clock: Clock,
}

#[derive(Clone, Copy)]
struct SpanLayout {
    times: (i64, i64),
    len: usize,
}

impl SegmentMessage {
    #[cfg(test)]
    fn new(segment: Segment) -> SegmentMessage {
        Self::with_layout(segment, Vec::new())
    }

    /// `layout` is scratch space (emptied here), so that a thread can reuse one.
    fn with_layout(segment: Segment, mut layout: Vec<SpanLayout>) -> SegmentMessage {
        layout.clear();
        // The first span usually ends last: its end is "now" enough to tell whether the clock's
        // correction is stale, without reading the clock again.
        let latest = segment.spans.first().map(|s| s.end.unwrap_or(s.start));
        let clock = latest.map_or_else(Clock::now, Clock::at);
        layout.extend(segment.spans.iter().enumerate().map(|(index, span)| {
            let times = (
                clock.millis(span.start),
                clock.millis(span.end.unwrap_or(span.start)),
            );
            let len = span_len(span, times, refs_of(&segment, index), clock);
            SpanLayout { times, len }
        }));
        let s = &segment;
        let len = str_len(1, s.trace_id())
            + str_len(2, s.segment_id.as_str())
            + layout.iter().map(|l| message_len(3, l.len)).sum::<usize>()
            + str_len(4, s.service)
            + str_len(5, s.instance)
            + bool_len(6, s.size_limited);
        SegmentMessage {
            segment,
            layout,
            len,
            clock,
        }
    }
}

/// The most spans a segment may have to be encoded on the thread that finished it: about
/// 32,000 instructions (~10 µs here) at most added to the request that ends it, which made 32
/// spans' worth of work. Most segments are smaller; the rare larger one is encoded later.
pub(crate) const INLINE_SPANS: usize = 32;

/// What the gRPC reporter queues.
pub(crate) enum Queued {
    /// A segment of up to [`INLINE_SPANS`] spans, encoded.
    Encoded(Vec<u8>),
    /// A larger one, to encode on the reporter's thread (boxed: a queue slot is the size of
    /// its largest variant).
    Whole(Box<Segment>),
}

/// What a `collect` stream sends: a segment's protobuf bytes.
pub(crate) struct Outgoing(Vec<u8>);

/// A segment whose message is over the transport's limit, even with its strings cut: dropped
/// alone rather than failing the batch it would travel in.
#[derive(Debug)]
pub(crate) struct TooLarge {
    /// The message's length, in bytes.
    pub(crate) len: usize,
    pub(crate) trace_id: String,
}

thread_local! {
    /// [`SegmentMessage::layout`]'s space, reused by every segment this thread encodes.
    static LAYOUT: Cell<Vec<SpanLayout>> = const { Cell::new(Vec::new()) };
}

/// `segment`'s bytes; the segment is freed here. `layout` is scratch space, handed back.
fn encode(segment: Segment, layout: Vec<SpanLayout>) -> (Vec<u8>, Vec<SpanLayout>) {
    let message = SegmentMessage::with_layout(segment, layout);
    let mut bytes = Vec::with_capacity(message.len);
    message.write(&mut bytes);
    debug_assert_eq!(bytes.len(), message.len);
    (bytes, message.layout)
}

impl Queued {
    /// Encodes `segment` and frees it here, when it is small.
    pub(crate) fn new(segment: Segment) -> Queued {
        if segment.spans.len() > INLINE_SPANS {
            return Queued::Whole(Box::new(segment));
        }
        // `try_with`: a segment may end while the thread's thread-locals are being destroyed
        // (a span kept in one), after this one; a fresh `Vec` then does.
        let scratch = LAYOUT.try_with(Cell::take).unwrap_or_default();
        let (bytes, scratch) = encode(segment, scratch);
        let _ = LAYOUT.try_with(|layout| layout.set(scratch));
        Queued::Encoded(bytes)
    }

    /// Ready to send (on the reporter's thread).
    #[cfg(test)]
    pub(crate) fn into_outgoing(self) -> Outgoing {
        match self {
            Queued::Encoded(bytes) => Outgoing(bytes),
            Queued::Whole(segment) => Outgoing(encode(*segment, Vec::new()).0),
        }
    }

    /// Ready to send, unless its message is longer than `max` bytes (a segment still queued
    /// whole is not written out at all then).
    pub(crate) fn into_outgoing_within(self, max: usize) -> Result<Outgoing, TooLarge> {
        match self {
            Queued::Encoded(bytes) if bytes.len() > max => Err(TooLarge {
                len: bytes.len(),
                trace_id: trace_id_of(&bytes),
            }),
            Queued::Encoded(bytes) => Ok(Outgoing(bytes)),
            Queued::Whole(segment) => {
                let message = SegmentMessage::with_layout(*segment, Vec::new());
                if message.len > max {
                    return Err(TooLarge {
                        len: message.len,
                        trace_id: message.segment.trace_id().to_owned(),
                    });
                }
                let mut bytes = Vec::with_capacity(message.len);
                message.write(&mut bytes);
                Ok(Outgoing(bytes))
            }
        }
    }
}

/// The trace id of an encoded segment (its first field), for a message about it.
fn trace_id_of(bytes: &[u8]) -> String {
    fn read(mut buf: &[u8]) -> Option<String> {
        let (tag, _) = prost::encoding::decode_key(&mut buf).ok()?;
        if tag != 1 {
            return None;
        }
        let len = usize::try_from(prost::encoding::decode_varint(&mut buf).ok()?).ok()?;
        std::str::from_utf8(buf.get(..len)?).ok().map(str::to_owned)
    }
    read(bytes).unwrap_or_default()
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Outgoing({} bytes)", self.0.len())
    }
}

impl Message for Outgoing {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        // Only ever sent, never received.
        skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {}
}

/// The refs span `index` carries: the first span holds them all.
fn refs_of(segment: &Segment, index: usize) -> &[SegmentRef] {
    if index == 0 { &segment.refs } else { &[] }
}

impl std::fmt::Debug for SegmentMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.segment.fmt(f)
    }
}

impl SegmentMessage {
    /// Writes the message's fields (what `prost::Message::encode_raw` would).
    fn write(&self, buf: &mut Vec<u8>) {
        let s = &self.segment;
        put_str(1, s.trace_id(), buf);
        put_str(2, s.segment_id.as_str(), buf);
        for (index, (span, layout)) in s.spans.iter().zip(&self.layout).enumerate() {
            put_message_header(3, layout.len, buf);
            put_span(span, layout.times, refs_of(s, index), self.clock, buf);
        }
        put_str(4, s.service, buf);
        put_str(5, s.instance, buf);
        put_bool(6, s.size_limited, buf);
    }
}

fn span_len(
    span: &SpanRecord,
    (start, end): (i64, i64),
    refs: &[SegmentRef],
    clock: Clock,
) -> usize {
    int_len(1, i64::from(span.id))
        + int_len(2, i64::from(span.parent))
        + int_len(3, start)
        + int_len(4, end)
        + refs
            .iter()
            .map(|r| message_len(5, ref_len(r)))
            .sum::<usize>()
        + str_len(6, cap::operation_name(&span.operation))
        + str_len(7, cap::peer(&span.peer))
        + int_len(8, i64::from(span.kind.to_proto() as i32))
        + int_len(9, i64::from(span.layer.to_proto() as i32))
        + int_len(10, i64::from(span.component))
        + bool_len(11, span.is_error)
        + span
            .tags
            .iter()
            .map(|(k, v)| message_len(12, pair_len(k, v)))
            .sum::<usize>()
        + span
            .logs
            .iter()
            .map(|l| message_len(13, log_len(l, clock)))
            .sum::<usize>()
        + bool_len(14, span.skip_analysis)
}

fn put_span(
    span: &SpanRecord,
    (start, end): (i64, i64),
    refs: &[SegmentRef],
    clock: Clock,
    buf: &mut Vec<u8>,
) {
    put_int(1, i64::from(span.id), buf);
    put_int(2, i64::from(span.parent), buf);
    put_int(3, start, buf);
    put_int(4, end, buf);
    for r in refs {
        put_message_header(5, ref_len(r), buf);
        put_ref(r, buf);
    }
    put_str(6, cap::operation_name(&span.operation), buf);
    put_str(7, cap::peer(&span.peer), buf);
    put_int(8, i64::from(span.kind.to_proto() as i32), buf);
    put_int(9, i64::from(span.layer.to_proto() as i32), buf);
    put_int(10, i64::from(span.component), buf);
    put_bool(11, span.is_error, buf);
    for (k, v) in &span.tags {
        put_message_header(12, pair_len(k, v), buf);
        put_pair(k, v, buf);
    }
    for log in &span.logs {
        put_message_header(13, log_len(log, clock), buf);
        put_log(log, clock, buf);
    }
    put_bool(14, span.skip_analysis, buf);
}

fn ref_len(r: &SegmentRef) -> usize {
    int_len(1, i64::from(r.kind.to_proto() as i32))
        + str_len(2, &r.trace_id)
        + str_len(3, &r.parent_segment_id)
        + int_len(4, i64::from(r.parent_span_id))
        + str_len(5, &r.parent_service)
        + str_len(6, &r.parent_service_instance)
        + str_len(7, cap::operation_name(&r.parent_endpoint))
        + str_len(8, cap::peer(&r.network_address))
}

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

fn pair_len(key: &str, value: &str) -> usize {
    str_len(1, cap::value(key)) + str_len(2, cap::value(value))
}

fn put_pair(key: &str, value: &str, buf: &mut Vec<u8>) {
    put_str(1, cap::value(key), buf);
    put_str(2, cap::value(value), buf);
}

fn log_len(log: &LogRecord, clock: Clock) -> usize {
    int_len(1, clock.millis(log.time))
        + log
            .fields
            .iter()
            .map(|(k, v)| message_len(2, pair_len(k, v)))
            .sum::<usize>()
}

fn put_log(log: &LogRecord, clock: Clock, buf: &mut Vec<u8>) {
    put_int(1, clock.millis(log.time), buf);
    for (k, v) in &log.fields {
        put_message_header(2, pair_len(k, v), buf);
        put_pair(k, v, buf);
    }
}

// Scalar fields. `int32`, `int64` and enums are varints of the value sign-extended to 64 bits.

/// A field's key: its tag and wire type, as a varint.
#[inline]
fn put_key(tag: u32, wire_type: WireType, buf: &mut Vec<u8>) {
    put_varint(u64::from(tag << 3 | wire_type as u32), buf);
}

/// `value` as a varint. Segments are encoded into a `Vec` sized to the message beforehand, so
/// a byte at a time costs a store and a predicted capacity check (writing into tonic's
/// `BytesMut`, a slice at once was cheaper: its `put_u8` checked more).
#[inline]
fn put_varint(mut value: u64, buf: &mut Vec<u8>) {
    while value >= 0x80 {
        buf.push((value as u8 & 0x7F) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

fn int_len(tag: u32, value: i64) -> usize {
    if value == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(value as u64)
    }
}

fn put_int(tag: u32, value: i64, buf: &mut Vec<u8>) {
    if value != 0 {
        put_key(tag, WireType::Varint, buf);
        put_varint(value as u64, buf);
    }
}

fn bool_len(tag: u32, value: bool) -> usize {
    if value { key_len(tag) + 1 } else { 0 }
}

fn put_bool(tag: u32, value: bool, buf: &mut Vec<u8>) {
    if value {
        put_key(tag, WireType::Varint, buf);
        put_varint(1, buf);
    }
}

fn str_len(tag: u32, value: &str) -> usize {
    if value.is_empty() {
        0
    } else {
        message_len(tag, value.len())
    }
}

fn put_str(tag: u32, value: &str, buf: &mut Vec<u8>) {
    if !value.is_empty() {
        put_message_header(tag, value.len(), buf);
        buf.extend_from_slice(value.as_bytes());
    }
}

/// A length-delimited field of `len` bytes: key, length, bytes.
fn message_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn put_message_header(tag: u32, len: usize, buf: &mut Vec<u8>) {
    put_key(tag, WireType::LengthDelimited, buf);
    put_varint(len as u64, buf);
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use prost::Message as _;
    use skytrace_proto::v3;

    use super::{INLINE_SPANS, Queued, SegmentMessage};
    use crate::{Config, Reporter, Segment, Span, SpanLayer, Tracer};

    #[derive(Default)]
    struct Keep(Mutex<Vec<Segment>>);

    impl Reporter for Keep {
        fn report(&self, segment: Segment) {
            self.0.lock().unwrap().push(segment);
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

    #[test]
    fn encodes_exactly_what_segment_object_encodes() {
        let keep = Arc::new(Keep::default());
        let config = Config::builder()
            .service_name("svc-ü")
            .instance_name("i-1")
            .build()
            .unwrap();
        let tracer = Tracer::with_reporter(&config, keep.clone());
        let mut carrier = HashMap::new();
        carrier.insert(
            "sw8".to_string(),
            "1-MQ==-NQ==-3-bWVzaA==-aW5zdGFuY2U=-L2FwaS92MS9oZWFsdGg=-ZXhhbXBsZS5jb206ODA4MA=="
                .to_string(),
        );
        let entry = tracer.entry_span("GET:/ü/{id}", &carrier);
        entry.set_layer(SpanLayer::Http);
        entry.set_component(49);
        entry.add_tag("http.method", "GET");
        {
            let _in = entry.enter();
            let local = Span::local("work");
            local.log([("event", "x"), ("k", "v")]);
            local.record_error(&"boom");
            local.set_skip_analysis();
            let _in = local.enter();
            let exit = Span::exit("call", "db:5432");
            exit.set_layer(SpanLayer::Database);
            let _in = exit.enter();
            let snapshot = crate::snapshot().unwrap();
            drop(snapshot.continue_span("worker"));
        }
        drop(entry);
        let segments = std::mem::take(&mut *keep.0.lock().unwrap());
        assert_eq!(segments.len(), 2);
        for segment in segments {
            let message = SegmentMessage::new(segment);
            let mut ours = Vec::new();
            message.write(&mut ours);
            assert_eq!(ours.len(), message.len);
            let expected = message.segment.into_proto();
            assert_eq!(
                v3::SegmentObject::decode(ours.as_slice()).unwrap(),
                expected
            );
            assert_eq!(ours, expected.encode_to_vec(), "byte for byte");
        }
    }

    #[test]
    fn queued_segments_are_the_same_bytes() {
        let keep = Arc::new(Keep::default());
        let config = Config::builder().service_name("svc").build().unwrap();
        let tracer = Tracer::with_reporter(&config, keep.clone());
        // Sizes up and down, and either side of the inline limit: the layout scratch space is
        // reused between segments.
        let sizes = [1, 40, 3, INLINE_SPANS, INLINE_SPANS + 1, 1];
        for spans in sizes {
            let entry = tracer.entry_span("GET:/x", &());
            {
                let _in = entry.enter();
                for i in 1..spans {
                    Span::local("step").add_tag("i", i.to_string());
                }
            }
            drop(entry);
        }
        let segments = std::mem::take(&mut *keep.0.lock().unwrap());
        assert_eq!(segments.len(), sizes.len());
        for segment in segments {
            let spans = segment.span_count();
            let message = SegmentMessage::new(segment);
            let mut direct = Vec::new();
            message.write(&mut direct);
            let queued = Queued::new(message.segment);
            assert_eq!(matches!(queued, Queued::Encoded(_)), spans <= INLINE_SPANS);
            let outgoing = queued.into_outgoing();
            assert_eq!(outgoing.encode_to_vec(), direct);
            assert_eq!(outgoing.encoded_len(), direct.len());
            let decoded = v3::SegmentObject::decode(direct.as_slice()).unwrap();
            assert_eq!(decoded.spans.len(), spans);
        }
    }
}
