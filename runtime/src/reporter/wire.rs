//! A [`Segment`] written straight to protobuf, field for field what `SegmentObject` encodes to.
//!
//! `Segment::into_proto` copies every name, tag and log into owned `String`s only for prost to
//! copy them again into the request body; on the reporter thread that copy was almost half of
//! the work per segment. [`SegmentMessage`] encodes the same bytes from the segment as it is.
//! Proto3 rules apply: fields holding their default value are left out.
//!
//! The gRPC reporter encodes a small segment on the thread that finished it, into a buffer that
//! thread keeps, and queues it framed ([`queue`], `super::batch`): the segment's memory is then
//! freed on the thread that allocated it. Freed on the reporter's thread, every block went
//! through glibc's slow path for memory of another thread's arena (a third of that thread's
//! time per segment), and the service's thread, whose per-thread cache never got them back,
//! allocated the next request's from the arena again. A segment of more than [`INLINE_SPANS`]
//! spans is queued whole and encoded on the reporter's thread, so that what a request pays for
//! encoding stays small (about 1,000 instructions a span).
//!
//! Strings are cut to the limits of [`cap`] as they are written. Times are converted with one
//! [`Clock`] per segment. Nothing here needs the `grpc` feature: a transport that sends
//! `SegmentObject` bytes (gRPC, Kafka) takes them from here.

mod segment;

#[cfg(feature = "grpc")]
use std::cell::RefCell;

use self::segment::SegmentMessage;
use crate::segment::Segment;

/// The most spans a segment may have to be encoded on the thread that finished it: about
/// 32,000 instructions (~10 µs here) at most added to the request that ends it, which made 32
/// spans' worth of work. Most segments are smaller; the rare larger one is encoded later.
pub(crate) const INLINE_SPANS: usize = 32;

#[cfg(feature = "grpc")]
/// Most bytes a thread's encoding buffer keeps between segments: a larger one (a segment of
/// long tags) is freed after use.
const MAX_KEPT_BUFFER: usize = 16 * 1024;

#[cfg(feature = "grpc")]
thread_local! {
    /// The thread's encoding buffer: a segment is written here, then copied into the queue.
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Queues `segment` in `place` (on the thread that finished it): encoded and framed when it has
/// at most [`INLINE_SPANS`] spans, the segment freed and its span list kept for this thread's
/// next (`spare_spans`); whole when larger; as a note of its size when its message is over
/// `max` bytes.
#[cfg(feature = "grpc")]
pub(crate) fn queue(
    segment: Segment,
    place: super::queue::Place<'_, super::batch::Batch>,
    max: usize,
) {
    if segment.spans.len() > INLINE_SPANS {
        place.put_with(|batch| batch.push_whole(segment));
        return;
    }
    // The segment is lent to the buffer's closure, not moved in (a copy of its 256 bytes).
    with_buffer(|frame| {
        let len = write_frame(&segment, frame);
        if len > max {
            let too_large = super::batch::TooLarge {
                len,
                trace_id: trace_id_of(&frame[super::batch::HEADER..]),
            };
            place.put_with(|batch| batch.push_too_large(too_large));
        } else {
            place.put_with(|batch| batch.push_frame(frame));
        }
    });
    crate::spare_spans::recycle(segment.spans);
}

#[cfg(feature = "grpc")]
/// Runs `f` with this thread's encoding buffer, emptied (a new one when the thread's is in use
/// or gone).
fn with_buffer(f: impl FnOnce(&mut Vec<u8>)) {
    let mut f = Some(f);
    let _ = BUFFER.try_with(|buffer| {
        if let Ok(mut buffer) = buffer.try_borrow_mut()
            && let Some(f) = f.take()
        {
            buffer.clear();
            f(&mut buffer);
            if buffer.capacity() > MAX_KEPT_BUFFER {
                *buffer = Vec::new();
            }
        }
    });
    if let Some(f) = f {
        f(&mut Vec::new());
    }
}

#[cfg(feature = "grpc")]
/// Writes `segment` into `frame` (empty) as a gRPC frame: the header, then its message; returns
/// the message's length.
fn write_frame(segment: &Segment, frame: &mut Vec<u8>) -> usize {
    const HEADER: usize = crate::reporter::batch::HEADER;
    let message = SegmentMessage::new(segment);
    // The guess is worked out only for a new buffer or a segment of several spans: the kept
    // buffer has the room of a one-span segment like this one (a service's are much alike)
    // and grows if not; a larger segment's room is made once, not grown by doubling.
    if frame.capacity() == 0 || segment.spans.len() > 1 {
        frame.reserve(HEADER + message.size_hint());
    }
    // Written in place (a fixed-size write, not a copy of a slice).
    frame.extend([0; HEADER]);
    message.write(frame);
    let len = frame.len() - HEADER;
    frame[..HEADER].copy_from_slice(&crate::reporter::batch::header(len));
    len
}

/// A segment queued whole, encoded (on the reporter's thread).
pub(crate) fn encode_whole(segment: &Segment) -> Vec<u8> {
    let message = SegmentMessage::new(segment);
    let mut bytes = Vec::with_capacity(message.size_hint());
    message.write(&mut bytes);
    bytes
}

/// The trace id of an encoded segment (its first field), for a message about it.
fn trace_id_of(bytes: &[u8]) -> String {
    crate::protobuf::length_delimited_fields(bytes)
        .next()
        .filter(|(tag, _)| *tag == 1)
        .and_then(|(_, id)| std::str::from_utf8(id).ok())
        .map(str::to_owned)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use prost::Message as _;
    use skytrace_proto::v3;

    use super::SegmentMessage;
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
            // Tags formatted as the `tracing` bridge records fields: after the others.
            let mut formatted = crate::encoded_pairs::EncodedTags::default();
            formatted.push_fmt("uri", format_args!("{:?}", "/ü"));
            formatted.push_i64("n", -3);
            formatted.push_fmt("long", format_args!("{}", "€".repeat(3_000)));
            local.add_tag("plain", "tag");
            local.edit(crate::edit::Edit::EncodedTags(formatted));
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
    #[cfg(feature = "grpc")]
    fn queued_segments_are_the_same_bytes() {
        use super::{INLINE_SPANS, encode_whole, queue};
        use crate::reporter::batch::Batch;

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
            // Queued as the service's thread queues it: framed, or whole (encoded later).
            let (tx, mut rx) = crate::reporter::queue::bounded::<Batch>(1);
            queue(segment, tx.place().unwrap(), usize::MAX);
            let mut batch = rx.take_all(Batch::default());
            let whole = batch.take_whole();
            assert_eq!(whole.is_empty(), spans <= INLINE_SPANS);
            for segment in whole {
                batch.push_message(&encode_whole(&segment));
            }
            assert_eq!(batch.messages().collect::<Vec<_>>(), [&direct[..]]);
            let decoded = v3::SegmentObject::decode(direct.as_slice()).unwrap();
            assert_eq!(decoded.spans.len(), spans);
        }
    }
}
