//! What a segment is made of while it is recorded, and the finished [`Segment`] handed to a
//! reporter. [`Segment::into_proto`] converts it to the protocol's message for reporters of
//! their own; the gRPC reporter writes the same bytes without that copy (`reporter::wire`).

use std::borrow::Cow;

use skytrace_proto::v3;

use crate::cap;
use crate::encoded_pairs::{EncodedTags, LogFields};
use crate::id::{Id, TraceId};
use crate::time::Stamp;

/// Text the agent records: `&'static str` names cost no allocation.
pub(crate) type Text = Cow<'static, str>;

/// The kind of a span, as SkyWalking counts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpanKind {
    /// Where a request enters this service: its operation name is the endpoint.
    Entry,
    /// A call out of the service; carries the peer it dialled.
    Exit,
    /// Work inside the service.
    Local,
}

/// The layer of a span, which OAP uses to pick its analysis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SpanLayer {
    /// No particular layer.
    #[default]
    Unknown,
    /// A database call.
    Database,
    /// An RPC framework such as gRPC.
    RpcFramework,
    /// HTTP.
    Http,
    /// A message queue.
    Mq,
    /// A cache.
    Cache,
    /// Function as a service.
    Faas,
}

impl SpanLayer {
    pub(crate) fn to_proto(self) -> v3::SpanLayer {
        match self {
            SpanLayer::Unknown => v3::SpanLayer::Unknown,
            SpanLayer::Database => v3::SpanLayer::Database,
            SpanLayer::RpcFramework => v3::SpanLayer::RpcFramework,
            SpanLayer::Http => v3::SpanLayer::Http,
            SpanLayer::Mq => v3::SpanLayer::Mq,
            SpanLayer::Cache => v3::SpanLayer::Cache,
            SpanLayer::Faas => v3::SpanLayer::Faas,
        }
    }
}

impl SpanKind {
    pub(crate) fn to_proto(self) -> v3::SpanType {
        match self {
            SpanKind::Entry => v3::SpanType::Entry,
            SpanKind::Exit => v3::SpanType::Exit,
            SpanKind::Local => v3::SpanType::Local,
        }
    }
}

pub(crate) struct LogRecord {
    pub(crate) time: Stamp,
    /// Encoded as they are made (see [`LogFields`]).
    pub(crate) fields: LogFields,
}

pub(crate) struct SpanRecord {
    /// Unique within the segment; the first span is 0. Ids are handed out in start order, but
    /// spans of one segment recorded on several threads may reach it out of order.
    pub(crate) id: i32,
    pub(crate) parent: i32,
    pub(crate) start: Stamp,
    /// `None` while the span is open.
    pub(crate) end: Option<Stamp>,
    pub(crate) kind: SpanKind,
    pub(crate) layer: SpanLayer,
    pub(crate) component: i32,
    pub(crate) is_error: bool,
    pub(crate) skip_analysis: bool,
    pub(crate) operation: Text,
    pub(crate) peer: Text,
    pub(crate) tags: Vec<(Text, Text)>,
    /// Tags whose values were formatted (the `tracing` bridge's fields), encoded as they were
    /// made: on the wire after [`SpanRecord::tags`].
    pub(crate) encoded_tags: EncodedTags,
    pub(crate) logs: Vec<LogRecord>,
}

impl SpanRecord {
    /// Ends the span at `now` unless it has ended already. A span can end on another core than
    /// it started on: never before its start.
    #[inline]
    pub(crate) fn close(&mut self, now: Stamp) {
        if self.end.is_none() {
            self.end = Some(now.max(self.start));
        }
    }

    #[inline]
    pub(crate) fn new(
        id: i32,
        parent: i32,
        kind: SpanKind,
        operation: Text,
        peer: Text,
        start: Stamp,
    ) -> Self {
        SpanRecord {
            id,
            parent,
            start,
            end: None,
            kind,
            layer: SpanLayer::Unknown,
            component: 0,
            is_error: false,
            skip_analysis: false,
            operation,
            peer,
            tags: Vec::new(),
            encoded_tags: EncodedTags::default(),
            logs: Vec::new(),
        }
    }
}

/// How a segment continues work from elsewhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RefKind {
    CrossProcess,
    CrossThread,
}

impl RefKind {
    pub(crate) fn to_proto(self) -> v3::RefType {
        match self {
            RefKind::CrossProcess => v3::RefType::CrossProcess,
            RefKind::CrossThread => v3::RefType::CrossThread,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct SegmentRef {
    pub(crate) kind: RefKind,
    pub(crate) trace_id: String,
    pub(crate) parent_segment_id: String,
    pub(crate) parent_span_id: i32,
    pub(crate) parent_service: String,
    pub(crate) parent_service_instance: String,
    pub(crate) parent_endpoint: String,
    pub(crate) network_address: String,
}

/// A finished segment: every span one trace recorded in one task of this process.
pub struct Segment {
    /// `None`: the trace is named after this segment, its first.
    pub(crate) trace_id: Option<TraceId>,
    pub(crate) segment_id: Id,
    pub(crate) service: &'static str,
    pub(crate) instance: &'static str,
    pub(crate) spans: Vec<SpanRecord>,
    pub(crate) refs: Vec<SegmentRef>,
    pub(crate) size_limited: bool,
}

impl Segment {
    /// The trace this segment belongs to.
    pub fn trace_id(&self) -> &str {
        self.trace_id
            .as_ref()
            .map_or(self.segment_id.as_str(), TraceId::as_str)
    }

    /// [`Segment::trace_id`]'s bytes, unchecked (valid UTF-8 all the same: see `Id::as_str`),
    /// for the encoder.
    #[inline]
    pub(crate) fn trace_id_bytes(&self) -> &[u8] {
        self.trace_id
            .as_ref()
            .map_or(self.segment_id.as_bytes(), TraceId::as_bytes)
    }

    /// This segment's id.
    pub fn segment_id(&self) -> &str {
        self.segment_id.as_str()
    }

    /// How many spans were recorded.
    pub fn span_count(&self) -> usize {
        self.spans.len()
    }

    /// The message OAP receives: what the gRPC reporter sends, names, peers, tags and logs cut
    /// to the same limits.
    pub fn into_proto(self) -> v3::SegmentObject {
        let trace_id = self.trace_id().to_owned();
        let mut refs = Some(self.refs);
        let spans = self
            .spans
            .into_iter()
            .enumerate()
            .map(|(i, span)| {
                // Refs belong on the segment's first span only.
                let refs = if i == 0 {
                    refs.take().unwrap_or_default()
                } else {
                    Vec::new()
                };
                span_to_proto(span, refs)
            })
            .collect();
        v3::SegmentObject {
            trace_id,
            trace_segment_id: self.segment_id.as_str().to_owned(),
            spans,
            service: self.service.to_owned(),
            service_instance: self.instance.to_owned(),
            is_size_limited: self.size_limited,
        }
    }
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("trace_id", &self.trace_id())
            .field("segment_id", &self.segment_id)
            .field("spans", &self.spans.len())
            .field("size_limited", &self.size_limited)
            .finish()
    }
}

/// `text` as an owned string, cut as `cap` cuts it (a prefix, so the length falls on a
/// character boundary): no copy when it is already owned.
fn capped(text: impl Into<String>, cap: fn(&str) -> &str) -> String {
    let mut text = text.into();
    let len = cap(&text).len();
    text.truncate(len);
    text
}

fn kv(pairs: Vec<(Text, Text)>) -> Vec<v3::KeyStringValuePair> {
    pairs
        .into_iter()
        .map(|(key, value)| v3::KeyStringValuePair {
            key: capped(key, cap::value),
            value: capped(value, cap::value),
        })
        .collect()
}

fn span_to_proto(span: SpanRecord, refs: Vec<SegmentRef>) -> v3::SpanObject {
    v3::SpanObject {
        span_id: span.id,
        parent_span_id: span.parent,
        start_time: span.start.to_millis(),
        end_time: span.end.unwrap_or(span.start).to_millis(),
        refs: refs.into_iter().map(ref_to_proto).collect(),
        operation_name: capped(span.operation, cap::operation_name),
        peer: capped(span.peer, cap::peer),
        span_type: span.kind.to_proto() as i32,
        span_layer: span.layer.to_proto() as i32,
        component_id: span.component,
        is_error: span.is_error,
        tags: kv(span.tags)
            .into_iter()
            .chain(span.encoded_tags.pairs().map(owned_pair))
            .collect(),
        logs: span
            .logs
            .into_iter()
            .map(|log| v3::Log {
                time: log.time.to_millis(),
                data: log.fields.pairs().map(owned_pair).collect(),
            })
            .collect(),
        skip_analysis: span.skip_analysis,
    }
}

/// A pair read back from encoded pairs (cut when they were written).
fn owned_pair((key, value): (&str, &str)) -> v3::KeyStringValuePair {
    v3::KeyStringValuePair {
        key: key.to_owned(),
        value: value.to_owned(),
    }
}

fn ref_to_proto(r: SegmentRef) -> v3::SegmentReference {
    v3::SegmentReference {
        ref_type: r.kind.to_proto() as i32,
        trace_id: r.trace_id,
        parent_trace_segment_id: r.parent_segment_id,
        parent_span_id: r.parent_span_id,
        parent_service: r.parent_service,
        parent_service_instance: r.parent_service_instance,
        parent_endpoint: capped(r.parent_endpoint, cap::operation_name),
        network_address_used_at_peer: capped(r.network_address, cap::peer),
    }
}
