//! The rdkafka integration (feature `rdkafka`, librdkafka built from C) against a real
//! Kafka-protocol broker (tansu on loopback, `scripts/ensure-kafka`): a trace that crosses a
//! topic from a producing service to a consuming service, each with its own tracer reporting
//! over gRPC to the in-process collector, named and tagged as the Java agent's Kafka plugin
//! names and tags them; a message without trace headers, or with malformed ones, starts a new
//! trace.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use skytrace::integrations::rdkafka::{ConsumerSpans, FutureProducerExt};
use skytrace::{Instrument, Span, Sw8Extension, Sw8Header};
use skytrace_collector::{Collector, render_trace_tree};
use skytrace_proto::v3::{RefType, SegmentObject, SpanLayer, SpanType};
use skytrace_tests::kafka::Broker;
use skytrace_tests::{WAIT, named_tracer, tag};

const TOPIC: &str = "rd-orders";

fn header<'a>(message: &'a OwnedMessage, key: &str) -> Option<&'a str> {
    let headers = message.headers()?;
    let value = headers.iter().filter(|h| h.key == key).last()?.value?;
    Some(std::str::from_utf8(value).unwrap())
}

fn starting_with<'a>(segments: &'a [SegmentObject], name: &str) -> &'a SegmentObject {
    segments
        .iter()
        .find(|s| s.spans.iter().any(|span| span.operation_name == name))
        .unwrap_or_else(|| panic!("no span {name}:\n{}", render_trace_tree(segments)))
}

/// The consumer's messages, read through the consumer group `billing`, as owned messages
/// (each handled after the next is read, as a service that batches would).
async fn consume(consumer: &StreamConsumer, n: usize) -> Vec<OwnedMessage> {
    let mut out = Vec::new();
    while out.len() < n {
        let message = tokio::time::timeout(WAIT, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("{} of {n} messages within {WAIT:?}", out.len()))
            .expect("a message");
        out.push(message.detach());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_crosses_kafka_from_an_rdkafka_producer_to_an_rdkafka_consumer() {
    let broker = Broker::start().await;
    broker.create_topics(&[TOPIC], 1).await;
    let brokers = broker.addr();
    let collector = Collector::start().await.unwrap();
    let producer_tracer = named_tracer(&collector, "rd-producer");
    let consumer_tracer = named_tracer(&collector, "rd-consumer");

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("message.timeout.ms", "10000")
        .create()
        .expect("a producer");
    let orders = producer.clone().traced(brokers.clone());

    let mut consumer_config = ClientConfig::new();
    consumer_config
        .set("bootstrap.servers", &brokers)
        .set("group.id", "billing")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    let consumer: StreamConsumer = consumer_config.create().expect("a consumer");
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    let spans = ConsumerSpans::from_config(&consumer_config).with_tracer(consumer_tracer);
    assert_eq!(
        (spans.brokers(), spans.group()),
        (brokers.as_str(), "billing")
    );

    // Inside a traced request: the record carries the trace, its own header kept.
    let entry = producer_tracer.entry_span("POST:/orders", &());
    async {
        let record = FutureRecord::to(TOPIC)
            .key("order-7")
            .payload("order 7")
            .headers(OwnedHeaders::new().insert(Header {
                key: "tenant",
                value: Some("acme"),
            }));
        orders
            .send(record, Duration::from_secs(10))
            .await
            .expect("delivered");
    }
    .in_span(entry)
    .await;
    // Outside any trace: sent unchanged.
    orders
        .send(
            FutureRecord::to(TOPIC).key("plain").payload("plain"),
            Duration::from_secs(10),
        )
        .await
        .expect("delivered");
    // Malformed trace headers, from a producer that is not ours.
    producer
        .send(
            FutureRecord::to(TOPIC)
                .key("bad")
                .payload("bad")
                .headers(OwnedHeaders::new().insert(Header {
                    key: "sw8",
                    value: Some("1-not-a-valid-header"),
                })),
            Duration::from_secs(10),
        )
        .await
        .expect("delivered");

    let messages = consume(&consumer, 3).await;
    let [traced, plain, bad] = &messages[..] else {
        panic!("{messages:?}")
    };
    assert_eq!(header(traced, "tenant"), Some("acme"));
    let sw8 = Sw8Header::decode(header(traced, "sw8").expect("sw8")).unwrap();
    assert_eq!(sw8.target_address, brokers);
    assert!(
        Sw8Extension::decode(header(traced, "sw8-x").expect("sw8-x"))
            .send_time_ms
            .is_some()
    );
    assert_eq!(plain.headers().map_or(0, |h| h.count()), 0);

    for (message, handler) in [
        (traced, "handle-order"),
        (plain, "handle-plain"),
        (bad, "handle-bad"),
    ] {
        let span = spans.message_span(message);
        async { drop(Span::local(handler)) }.in_span(span).await;
    }

    let segments = collector.wait_for_segments(4, WAIT).await;
    assert_eq!(segments.len(), 4, "{}", render_trace_tree(&segments));
    let produced = segments
        .iter()
        .find(|s| s.service == "rd-producer")
        .unwrap_or_else(|| panic!("{}", render_trace_tree(&segments)));
    let exit = &produced.spans[1];
    assert_eq!(exit.operation_name, "Kafka/rd-orders/Producer");
    assert_eq!(exit.span_type, SpanType::Exit as i32);
    assert_eq!(exit.span_layer, SpanLayer::Mq as i32);
    assert_eq!(exit.component_id, 40);
    assert_eq!(exit.peer, brokers);
    assert_eq!(tag(exit, "mq.broker"), Some(brokers.as_str()));
    assert_eq!(tag(exit, "mq.topic"), Some("rd-orders"));
    assert!(!exit.is_error);

    let consumed = starting_with(&segments, "handle-order");
    assert_eq!(consumed.service, "rd-consumer");
    let entry = &consumed.spans[0];
    assert_eq!(entry.operation_name, "Kafka/rd-orders/Consumer/billing");
    assert_eq!(entry.span_type, SpanType::Entry as i32);
    assert_eq!(entry.span_layer, SpanLayer::Mq as i32);
    assert_eq!(entry.component_id, 41);
    assert_eq!(entry.peer, brokers);
    assert_eq!(tag(entry, "mq.broker"), Some(brokers.as_str()));
    assert_eq!(tag(entry, "mq.topic"), Some("rd-orders"));
    assert_eq!(consumed.trace_id, produced.trace_id);
    assert_eq!(entry.refs.len(), 1, "{entry:#?}");
    let r = &entry.refs[0];
    assert_eq!(r.ref_type, RefType::CrossProcess as i32);
    assert_eq!(r.parent_trace_segment_id, produced.trace_segment_id);
    assert_eq!(r.parent_span_id, exit.span_id);
    assert_eq!(r.parent_service, "rd-producer");
    assert_eq!(r.network_address_used_at_peer, brokers);
    let latency: i64 = tag(entry, "transmission.latency")
        .expect("transmission.latency")
        .parse()
        .expect("a number of ms");
    assert!(latency >= 0, "{latency}");

    // No trace headers, or malformed ones: each starts a trace of its own.
    for handler in ["handle-plain", "handle-bad"] {
        let fresh = starting_with(&segments, handler);
        assert_eq!(fresh.service, "rd-consumer");
        assert_eq!(
            fresh.spans[0].operation_name,
            "Kafka/rd-orders/Consumer/billing"
        );
        assert!(fresh.spans[0].refs.is_empty(), "{handler}: {fresh:#?}");
        assert_ne!(fresh.trace_id, produced.trace_id);
        assert!(tag(&fresh.spans[0], "transmission.latency").is_some());
    }
}
