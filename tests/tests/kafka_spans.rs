//! The rskafka integration against a real Kafka-protocol broker (tansu on loopback,
//! `scripts/ensure-kafka`): a trace that crosses a topic from a producer service to a consumer
//! service, each with its own tracer reporting over gRPC to the in-process collector, named and
//! tagged as the Java agent's Kafka plugin names and tags them.

use std::collections::BTreeMap;

use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;
use skytrace::integrations::rskafka::PartitionClientExt;
use skytrace::{Instrument, Span, Sw8Extension, Sw8Header};
use skytrace_collector::{Collector, render_trace_tree};
use skytrace_proto::v3::{RefType, SegmentObject, SpanLayer, SpanType};
use skytrace_tests::kafka::Broker;
use skytrace_tests::{WAIT, named_tracer, tag};

fn of_service<'a>(segments: &'a [SegmentObject], service: &str) -> &'a SegmentObject {
    segments
        .iter()
        .find(|s| s.service == service)
        .unwrap_or_else(|| panic!("no segment of {service}:\n{}", render_trace_tree(segments)))
}

fn record(value: &str) -> Record {
    Record {
        key: Some(b"order-7".to_vec()),
        value: Some(value.as_bytes().to_vec()),
        headers: BTreeMap::from([("tenant".to_owned(), b"acme".to_vec())]),
        timestamp: rskafka::chrono::DateTime::UNIX_EPOCH,
    }
}

fn header<'a>(record: &'a Record, key: &str) -> &'a str {
    std::str::from_utf8(
        record
            .headers
            .get(key)
            .unwrap_or_else(|| panic!("no {key}")),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_crosses_kafka_from_producer_to_consumer() {
    let broker = Broker::start().await;
    broker.create_topics(&["orders"], 1).await;
    let brokers = broker.addr();
    let collector = Collector::start().await.unwrap();
    let producer = named_tracer(&collector, "producer");
    let consumer_tracer = named_tracer(&collector, "consumer");
    let client = broker.client().await;
    let producing = client
        .partition_client("orders", 0, UnknownTopicHandling::Retry)
        .await
        .unwrap()
        .traced(brokers.clone());
    let consuming = client
        .partition_client("orders", 0, UnknownTopicHandling::Retry)
        .await
        .unwrap()
        .traced(brokers.clone())
        .with_group("billing")
        .with_tracer(consumer_tracer);

    let entry = producer.entry_span("POST:/orders", &());
    async {
        producing
            .produce(vec![record("order 7")], Compression::NoCompression)
            .await
            .unwrap();
    }
    .in_span(entry)
    .await;
    // Outside any trace: produced unchanged.
    producing
        .produce(vec![record("plain")], Compression::NoCompression)
        .await
        .unwrap();

    let (records, _) = consuming
        .fetch_records(0, 1..1_000_000, 1_000)
        .await
        .unwrap();
    assert_eq!(records.len(), 2, "{records:?}");
    let traced = &records[0].record;
    assert_eq!(
        header(traced, "tenant"),
        "acme",
        "the record's own header is kept"
    );
    let sw8 = Sw8Header::decode(header(traced, "sw8")).unwrap();
    assert_eq!(sw8.target_address, brokers);
    assert!(
        Sw8Extension::decode(header(traced, "sw8-x"))
            .send_time_ms
            .is_some()
    );
    let plain = &records[1].record;
    assert_eq!(plain.headers.keys().collect::<Vec<_>>(), ["tenant"]);

    let span = consuming.record_span(traced);
    async { drop(Span::local("handle-order")) }
        .in_span(span)
        .await;

    let segments = collector.wait_for_segments(2, WAIT).await;
    assert_eq!(segments.len(), 2, "{}", render_trace_tree(&segments));
    let produced = of_service(&segments, "producer");
    let consumed = of_service(&segments, "consumer");
    let exit = &produced.spans[1];
    assert_eq!(exit.operation_name, "Kafka/orders/Producer");
    assert_eq!(exit.span_type, SpanType::Exit as i32);
    assert_eq!(exit.span_layer, SpanLayer::Mq as i32);
    assert_eq!(exit.component_id, 40);
    assert_eq!(exit.peer, brokers);
    assert_eq!(tag(exit, "mq.broker"), Some(brokers.as_str()));
    assert_eq!(tag(exit, "mq.topic"), Some("orders"));
    let entry = &consumed.spans[0];
    assert_eq!(entry.operation_name, "Kafka/orders/Consumer/billing");
    assert_eq!(entry.span_type, SpanType::Entry as i32);
    assert_eq!(entry.span_layer, SpanLayer::Mq as i32);
    assert_eq!(entry.component_id, 41);
    assert_eq!(tag(entry, "mq.broker"), Some(brokers.as_str()));
    assert_eq!(tag(entry, "mq.topic"), Some("orders"));
    assert_eq!(consumed.trace_id, produced.trace_id);
    assert_eq!(entry.refs.len(), 1, "{entry:#?}");
    let r = &entry.refs[0];
    assert_eq!(r.ref_type, RefType::CrossProcess as i32);
    assert_eq!(r.parent_trace_segment_id, produced.trace_segment_id);
    assert_eq!(r.parent_span_id, exit.span_id);
    assert_eq!(r.parent_service, "producer");
    assert_eq!(r.network_address_used_at_peer, brokers);
    let latency: i64 = tag(entry, "transmission.latency")
        .expect("transmission.latency")
        .parse()
        .expect("a number of ms");
    assert!(latency >= 0, "{latency}");
    assert_eq!(consumed.spans.len(), 2, "{consumed:#?}");
}
