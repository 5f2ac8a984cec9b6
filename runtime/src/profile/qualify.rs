//! Which segments a trace-profiling task keeps: those whose entry span is the task's endpoint
//! and that ran at least its `MinDurationThreshold`. Learnt from the finished segments on their
//! way to OAP (their encoded bytes, or the `Segment` itself), off the span paths: what a sample
//! carries is only the segment id the thread ran.

use std::collections::HashMap;

use prost::Message as _;

use crate::segment::{Segment, SpanKind};

/// The most segments one task keeps (a task lasts up to 15 minutes).
const MAX_SEGMENTS: usize = 100_000;

/// What a kept segment's samples are labelled with besides its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Kept {
    pub(crate) trace_id: String,
}

#[derive(Debug)]
pub(crate) struct Qualifier {
    endpoint: String,
    min_duration_ms: i64,
    kept: HashMap<String, Kept>,
}

impl Qualifier {
    pub(crate) fn new(endpoint: impl Into<String>, min_duration_ms: i64) -> Self {
        Qualifier {
            endpoint: endpoint.into(),
            min_duration_ms,
            kept: HashMap::new(),
        }
    }

    /// A finished segment, before it is encoded.
    #[allow(dead_code)] // for reporters that hand over `Segment`s
    pub(crate) fn observe(&mut self, segment: &Segment) {
        let Some(first) = segment.spans.iter().find(|s| s.id == 0) else {
            return;
        };
        let (start, end) = (
            first.start.to_millis(),
            first.end.unwrap_or(first.start).to_millis(),
        );
        self.consider(
            first.kind == SpanKind::Entry && first.operation == self.endpoint.as_str(),
            end - start,
            segment.segment_id(),
            segment.trace_id(),
        );
    }

    /// A finished segment as the gRPC reporter sends it: the bytes of a `SegmentObject`.
    /// Only the fields needed are decoded (the rest is skipped).
    pub(crate) fn observe_encoded(&mut self, bytes: &[u8]) {
        let Ok(segment) = SegmentSkim::decode(bytes) else {
            return;
        };
        let Some(first) = segment.spans.iter().find(|s| s.parent_span_id == -1) else {
            return;
        };
        self.consider(
            first.span_type == ENTRY && first.operation_name == self.endpoint,
            first.end_time - first.start_time,
            &segment.trace_segment_id,
            &segment.trace_id,
        );
    }

    fn consider(&mut self, endpoint: bool, duration_ms: i64, segment_id: &str, trace_id: &str) {
        if endpoint && duration_ms >= self.min_duration_ms && self.kept.len() < MAX_SEGMENTS {
            self.kept.insert(
                segment_id.to_owned(),
                Kept {
                    trace_id: trace_id.to_owned(),
                },
            );
        }
    }

    /// The segments kept so far, by id.
    pub(crate) fn kept(&self) -> &HashMap<String, Kept> {
        &self.kept
    }
}

/// `SpanType::Entry` in the protocol.
const ENTRY: i32 = 0;

/// The fields of `SegmentObject` a task needs (field numbers as in `tracing.proto`).
#[derive(Clone, PartialEq, prost::Message)]
struct SegmentSkim {
    #[prost(string, tag = "1")]
    trace_id: String,
    #[prost(string, tag = "2")]
    trace_segment_id: String,
    #[prost(message, repeated, tag = "3")]
    spans: Vec<SpanSkim>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SpanSkim {
    #[prost(int32, tag = "2")]
    parent_span_id: i32,
    #[prost(int64, tag = "3")]
    start_time: i64,
    #[prost(int64, tag = "4")]
    end_time: i64,
    #[prost(string, tag = "6")]
    operation_name: String,
    #[prost(int32, tag = "8")]
    span_type: i32,
}

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use skytrace_proto::v3::{SegmentObject, SpanObject, SpanType};

    use super::*;

    fn segment(id: &str, name: &str, kind: SpanType, ms: i64) -> Vec<u8> {
        SegmentObject {
            trace_id: format!("trace-of-{id}"),
            trace_segment_id: id.into(),
            spans: vec![
                SpanObject {
                    span_id: 1,
                    parent_span_id: 0,
                    operation_name: name.into(),
                    span_type: SpanType::Entry as i32,
                    start_time: 1000,
                    end_time: 1000 + ms * 2,
                    ..Default::default()
                },
                SpanObject {
                    span_id: 0,
                    parent_span_id: -1,
                    operation_name: name.into(),
                    span_type: kind as i32,
                    start_time: 1000,
                    end_time: 1000 + ms,
                    ..Default::default()
                },
            ],
            service: "svc".into(),
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn keeps_slow_segments_of_the_endpoint_only() {
        let mut q = Qualifier::new("GET:/slow", 50);
        q.observe_encoded(&segment("slow", "GET:/slow", SpanType::Entry, 80));
        q.observe_encoded(&segment("exact", "GET:/slow", SpanType::Entry, 50));
        q.observe_encoded(&segment("fast", "GET:/slow", SpanType::Entry, 49));
        q.observe_encoded(&segment("other", "GET:/other", SpanType::Entry, 500));
        q.observe_encoded(&segment("local", "GET:/slow", SpanType::Local, 500));
        q.observe_encoded(b"\xff not a segment");
        let mut kept: Vec<_> = q.kept().keys().cloned().collect();
        kept.sort();
        assert_eq!(kept, ["exact", "slow"]);
        assert_eq!(q.kept()["slow"].trace_id, "trace-of-slow");
    }
}
