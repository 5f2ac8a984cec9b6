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

mod scalar;
mod segment;

use prost::Message;
use prost::bytes::{Buf, BufMut};
use prost::encoding::{DecodeContext, WireType, skip_field};

use self::segment::SegmentMessage;
use crate::segment::Segment;

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

impl Outgoing {
    /// Bytes encoded elsewhere, as they would be sent.
    #[cfg(test)]
    pub(crate) fn from_bytes(bytes: Vec<u8>) -> Outgoing {
        Outgoing(bytes)
    }

    /// The encoded `SegmentObject`.
    #[cfg_attr(not(feature = "profiling"), allow(dead_code))]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The encoded `SegmentObject`, taken.
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// A segment whose message is over the transport's limit, even with its strings cut: dropped
/// alone rather than failing the batch it would travel in.
#[derive(Debug)]
pub(crate) struct TooLarge {
    /// The message's length, in bytes.
    pub(crate) len: usize,
    pub(crate) trace_id: String,
}

/// `segment`'s bytes; the segment is freed here, its span list kept for this thread's next
/// segment (`spare_spans`).
fn encode(segment: Segment) -> Vec<u8> {
    let message = SegmentMessage::new(&segment);
    // The guess is worked out only for a new buffer or a segment of several spans: a spare
    // buffer has the room of a one-span segment like this one (a service's are much alike)
    // and grows if not; a larger segment's room is made once, not grown by doubling.
    let mut bytes = super::spare_bytes::take(|| message.size_hint());
    if segment.spans.len() > 1 {
        bytes.reserve(message.size_hint());
    }
    message.write(&mut bytes);
    crate::spare_spans::recycle(segment.spans);
    bytes
}

impl Queued {
    /// Encodes `segment` and frees it here, when it is small.
    pub(crate) fn new(segment: Segment) -> Queued {
        if segment.spans.len() > INLINE_SPANS {
            return Queued::Whole(Box::new(segment));
        }
        Queued::Encoded(encode(segment))
    }

    /// Ready to send (on the reporter's thread).
    #[cfg(test)]
    pub(crate) fn into_outgoing(self) -> Outgoing {
        match self {
            Queued::Encoded(bytes) => Outgoing(bytes),
            Queued::Whole(segment) => Outgoing(encode(*segment)),
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
                // Written to be measured: a segment this large is rare, and is written on the
                // reporter's thread.
                let message = SegmentMessage::new(&segment);
                let mut bytes = Vec::with_capacity(message.size_hint());
                message.write(&mut bytes);
                if bytes.len() > max {
                    return Err(TooLarge {
                        len: bytes.len(),
                        trace_id: segment.trace_id().to_owned(),
                    });
                }
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

    /// A tracer of service `svc` whose segments are kept.
    fn tracer_keeping() -> (Tracer, Arc<Keep>) {
        let keep = Arc::new(Keep::default());
        let config = Config::builder().service_name("svc").build().unwrap();
        (Tracer::with_reporter(&config, keep.clone()), keep)
    }

    /// `segment` as our encoder writes it, and as `into_proto` makes it (for prost to encode).
    fn ours_and_prost(segment: Segment) -> (Vec<u8>, v3::SegmentObject) {
        let mut ours = Vec::new();
        SegmentMessage::new(&segment).write(&mut ours);
        (ours, segment.into_proto())
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
            // Past every limit: `into_proto` cuts as the encoder does.
            let long = Span::local("é".repeat(400));
            long.set_peer("p".repeat(1_000));
            long.add_tag("k".repeat(3_000), "€".repeat(3_000));
            long.log([("event", "x".repeat(5_000))]);
            drop(long);
            let _in = exit.enter();
            let snapshot = crate::snapshot().unwrap();
            drop(snapshot.continue_span("worker"));
        }
        drop(entry);
        let segments = std::mem::take(&mut *keep.0.lock().unwrap());
        assert_eq!(segments.len(), 2);
        let mut long_spans = 0;
        for segment in segments {
            let (ours, expected) = ours_and_prost(segment);
            assert_eq!(
                v3::SegmentObject::decode(ours.as_slice()).unwrap(),
                expected
            );
            assert_eq!(ours, expected.encode_to_vec(), "byte for byte");
            if let Some(long) = expected
                .spans
                .iter()
                .find(|s| s.operation_name.starts_with('é'))
            {
                assert_eq!(long.operation_name.chars().count(), 150);
                assert_eq!(long.peer.len(), 200);
                assert_eq!(long.tags[0].key.len(), 2048);
                assert!(long.tags[0].value.len() <= 2048 && long.tags[0].value.len() > 2044);
                assert_eq!(long.logs[0].data[0].value.len(), 2048);
                long_spans += 1;
            }
        }
        assert_eq!(long_spans, 1);
    }

    #[test]
    fn segments_of_agents_taking_turns_on_a_thread_name_their_own_service() {
        // The service and instance fields are kept written per thread: a segment of another
        // agent must not find the last one's.
        let keep = Arc::new(Keep::default());
        let tracers: Vec<Tracer> = [("a", "a-1"), ("a", "a-2"), ("b", "a-1"), ("bb", "x")]
            .into_iter()
            .map(|(service, instance)| {
                let config = Config::builder()
                    .service_name(service)
                    .instance_name(instance)
                    .build()
                    .unwrap();
                Tracer::with_reporter(&config, keep.clone())
            })
            .collect();
        for round in 0..3 {
            for tracer in tracers.iter().cycle().skip(round).take(tracers.len()) {
                drop(tracer.entry_span("GET:/x", &()));
            }
        }
        let segments = std::mem::take(&mut *keep.0.lock().unwrap());
        assert_eq!(segments.len(), 12);
        let mut seen = std::collections::HashSet::new();
        for segment in segments {
            let (ours, expected) = ours_and_prost(segment);
            assert_eq!(ours, expected.encode_to_vec(), "byte for byte");
            seen.insert((expected.service, expected.service_instance));
        }
        assert_eq!(seen.len(), 4);
    }

    #[test]
    fn tags_and_log_fields_of_every_short_length_are_the_bytes_prost_writes() {
        // Either side of the short pair's limit (a pair of 127 bytes or less is written whole),
        // and with an empty key or value (proto3 leaves an empty text out).
        let (tracer, keep) = tracer_keeping();
        let entry = tracer.entry_span("GET:/x", &());
        for len in (0..=6).chain(110..=130) {
            let (key, value) = ("k".repeat(len.min(3)), "v".repeat(len.saturating_sub(3)));
            entry.add_tag(key.clone(), value.clone());
            entry.log([(key, value)]);
        }
        entry.add_tag("", "");
        drop(entry);
        let segments = std::mem::take(&mut *keep.0.lock().unwrap());
        let segment = segments.into_iter().next().unwrap();
        let (ours, expected) = ours_and_prost(segment);
        assert_eq!(expected.spans[0].tags.len(), 29);
        assert_eq!(ours, expected.encode_to_vec(), "byte for byte");
    }

    #[test]
    fn tags_of_static_texts_written_again_are_the_bytes_prost_writes() {
        // Kept per thread by their texts' addresses: the same key with another value, more
        // distinct tags than are kept (each replaced in turn), one too long to keep, and the
        // same texts owned.
        let (tracer, keep) = tracer_keeping();
        const KEYS: [&str; 11] = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"];
        const LONG: &str = "a value too long to keep: more than sixty-four bytes with its key";
        for round in 0..3 {
            let entry = tracer.entry_span("GET:/x", &());
            entry.add_tag("http.method", "GET");
            entry.add_tag("http.method", "POST");
            for key in &KEYS[..3 + 4 * round] {
                entry.add_tag(*key, "v");
            }
            entry.add_tag("long", LONG);
            entry.add_tag(String::from("http.method"), String::from("PUT"));
            drop(entry);
        }
        let segments = std::mem::take(&mut *keep.0.lock().unwrap());
        assert_eq!(segments.len(), 3);
        for segment in segments {
            let (ours, expected) = ours_and_prost(segment);
            assert_eq!(ours, expected.encode_to_vec(), "byte for byte");
        }
    }

    #[test]
    fn queued_segments_are_the_same_bytes() {
        let (tracer, keep) = tracer_keeping();
        // Sizes up and down, and either side of the inline limit.
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
            let message = SegmentMessage::new(&segment);
            let mut direct = Vec::new();
            message.write(&mut direct);
            // The buffer is sized once for a usual segment: no reallocation while writing.
            let hint = message.size_hint();
            assert!(
                direct.len() <= hint,
                "{} bytes, {hint} guessed",
                direct.len()
            );
            let queued = Queued::new(segment);
            assert_eq!(matches!(queued, Queued::Encoded(_)), spans <= INLINE_SPANS);
            let outgoing = queued.into_outgoing();
            assert_eq!(outgoing.encode_to_vec(), direct);
            assert_eq!(outgoing.encoded_len(), direct.len());
            let decoded = v3::SegmentObject::decode(direct.as_slice()).unwrap();
            assert_eq!(decoded.spans.len(), spans);
        }
    }
}
