//! [`SegmentMessage`]: a [`Segment`] written as `SegmentObject`'s protobuf, field for field,
//! its strings cut to [`super::cap`]'s limits and its times converted with one [`Clock`].

use super::scalar::{
    bool_len, bytes_len, int_len, message_len, put_bool, put_bytes, put_int, put_message_header,
    put_str, str_len,
};
use crate::cap;
use crate::segment::{LogRecord, Segment, SegmentRef, SpanRecord};
use crate::time::Clock;

/// A finished segment with what writing it needs worked out.
pub(crate) struct SegmentMessage {
    pub(super) segment: Segment,
    /// Each span's start and end in milliseconds and its encoded length, worked out once: the
    /// message's length sizes the buffer, and a span's length is written before the span, so
    /// each would otherwise be computed twice (sizing was a sixth of the encoding's work).
    pub(super) layout: Vec<SpanLayout>,
    /// The whole message's length.
    pub(super) len: usize,
    /// Converts the logs' times (the spans' are in `layout`).
    clock: Clock,
}

#[derive(Clone, Copy)]
pub(super) struct SpanLayout {
    times: (i64, i64),
    len: usize,
}

impl SegmentMessage {
    #[cfg(test)]
    pub(super) fn new(segment: Segment) -> SegmentMessage {
        Self::with_layout(segment, Vec::new())
    }

    /// `layout` is scratch space (emptied here), so that a thread can reuse one.
    pub(super) fn with_layout(segment: Segment, mut layout: Vec<SpanLayout>) -> SegmentMessage {
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
        // The ids as bytes: their lengths known at once, their text read once (in `write`).
        let len = bytes_len(1, s.trace_id_bytes())
            + bytes_len(2, s.segment_id.as_bytes())
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
    pub(super) fn write(&self, buf: &mut Vec<u8>) {
        let s = &self.segment;
        put_bytes(1, s.trace_id_bytes(), buf);
        put_bytes(2, s.segment_id.as_bytes(), buf);
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
