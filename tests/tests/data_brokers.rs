//! The lapin (RabbitMQ) and async-nats integrations against the real local servers (RabbitMQ
//! 127.0.0.1:5672, NATS 127.0.0.1:4222; `scripts/ensure-services` starts them): a trace that
//! crosses the broker from a producer service to a consumer service, each with its own tracer
//! reporting over gRPC to the in-process collector. Queues and subjects are named per run.

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use skytrace::integrations::lapin::ChannelExt;
use skytrace::integrations::nats::NatsClientExt;
use skytrace::{Extractor, Instrument, Span, Sw8Extension, Sw8Header, Tracer};
use skytrace_collector::{Collector, render_trace_tree};
use skytrace_proto::v3::{RefType, SegmentObject, SpanLayer, SpanType};
use skytrace_tests::{WAIT, tag};

const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const RABBITMQ: &str = "127.0.0.1:5672";
const NATS: &str = "127.0.0.1:4222";

fn tracer(collector: &Collector, name: &str) -> Tracer {
    skytrace_tests::named_tracer(collector, name)
}

fn unique(prefix: &str) -> String {
    skytrace_tests::unique_name(prefix, '.')
}

fn of_service<'a>(segments: &'a [SegmentObject], service: &str) -> &'a SegmentObject {
    segments
        .iter()
        .find(|s| s.service == service)
        .unwrap_or_else(|| panic!("no segment of {service}:\n{}", render_trace_tree(segments)))
}

/// Asserts that `consumer`'s entry span continues `producer`'s exit span (span 1) across
/// `broker`, and that its latency tag is a plausible number of milliseconds.
fn assert_crosses(producer: &SegmentObject, consumer: &SegmentObject, broker: &str) {
    let exit = &producer.spans[1];
    let entry = &consumer.spans[0];
    assert_eq!(consumer.trace_id, producer.trace_id);
    assert_eq!(entry.span_type, SpanType::Entry as i32);
    assert_eq!(entry.refs.len(), 1, "{entry:#?}");
    let r = &entry.refs[0];
    assert_eq!(r.ref_type, RefType::CrossProcess as i32);
    assert_eq!(r.trace_id, producer.trace_id);
    assert_eq!(r.parent_trace_segment_id, producer.trace_segment_id);
    assert_eq!(r.parent_span_id, exit.span_id);
    assert_eq!(r.parent_service, "producer");
    assert_eq!(r.parent_service_instance, "producer-1");
    assert_eq!(r.parent_endpoint, producer.spans[0].operation_name);
    assert_eq!(r.network_address_used_at_peer, broker);
    let latency: i64 = tag(entry, "transmission.latency")
        .expect("transmission.latency")
        .parse()
        .expect("a number of ms");
    assert!(latency >= 0, "{latency}");
    // The consumer's own child span hangs under the entry span.
    assert_eq!(consumer.spans.len(), 2, "{consumer:#?}");
    assert_eq!(consumer.spans[1].parent_span_id, 0);
}

// ----------------------------------------------------------------------------------------------
// RabbitMQ

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_crosses_rabbitmq_from_producer_to_consumer() {
    let collector = Collector::start().await.unwrap();
    let producer = tracer(&collector, "producer");
    let consumer_tracer = tracer(&collector, "consumer");
    let connection = Connection::connect(AMQP_URL, ConnectionProperties::default())
        .await
        .expect("RabbitMQ on 127.0.0.1:5672 (scripts/ensure-services)");
    let queue = unique("skytrace.orders");
    let publisher = connection.create_channel().await.unwrap().traced(RABBITMQ);
    let consuming = connection
        .create_channel()
        .await
        .unwrap()
        .traced(RABBITMQ)
        .with_tracer(consumer_tracer);
    consuming
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut consumer = consuming
        .basic_consume(
            queue.as_str().into(),
            "skytrace-test".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();

    // The producer keeps a header of its own next to the trace's.
    let mut own = FieldTable::default();
    own.insert(
        "tenant".into(),
        lapin::types::AMQPValue::LongString("acme".into()),
    );
    let entry = producer.entry_span("POST:/orders", &());
    async {
        publisher
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                b"order 7",
                BasicProperties::default().with_headers(own),
            )
            .await
            .unwrap();
    }
    .in_span(entry)
    .await;

    let (delivery, span) = consumer.next().await.unwrap().unwrap();
    assert_eq!(delivery.data, b"order 7");
    let headers = delivery.properties.headers().clone().unwrap();
    assert_eq!(Extractor::get(&headers, "tenant"), Some("acme"));
    let sw8 = Sw8Header::decode(Extractor::get(&headers, "sw8").expect("sw8")).unwrap();
    assert_eq!(sw8.target_address, RABBITMQ);
    assert_eq!(sw8.parent_service, "producer");
    let extension = Sw8Extension::decode(Extractor::get(&headers, "sw8-x").expect("sw8-x"));
    assert!(extension.send_time_ms.is_some(), "{extension:?}");
    async {
        drop(Span::local("handle-order"));
        delivery.ack(BasicAckOptions::default()).await.unwrap();
    }
    .in_span(span)
    .await;

    let segments = collector.wait_for_segments(2, WAIT).await;
    assert_eq!(segments.len(), 2, "{}", render_trace_tree(&segments));
    let produced = of_service(&segments, "producer");
    let consumed = of_service(&segments, "consumer");
    let exit = &produced.spans[1];
    let name = format!("RabbitMQ/Topic/Queue/{queue}/Producer");
    assert_eq!(exit.operation_name, name);
    assert_eq!(exit.span_type, SpanType::Exit as i32);
    assert_eq!(exit.span_layer, SpanLayer::Mq as i32);
    assert_eq!(exit.component_id, 52);
    assert_eq!(exit.peer, RABBITMQ);
    assert!(!exit.is_error);
    assert_eq!(tag(exit, "mq.broker"), Some(RABBITMQ));
    assert_eq!(tag(exit, "mq.topic"), Some(""));
    assert_eq!(tag(exit, "mq.queue"), Some(queue.as_str()));
    let entry = &consumed.spans[0];
    assert_eq!(
        entry.operation_name,
        format!("RabbitMQ/Topic/Queue/{queue}/Consumer")
    );
    assert_eq!(entry.span_layer, SpanLayer::Mq as i32);
    assert_eq!(entry.component_id, 53);
    assert_eq!(entry.peer, RABBITMQ);
    assert_eq!(tag(entry, "mq.broker"), Some(RABBITMQ));
    assert_eq!(tag(entry, "mq.queue"), Some(queue.as_str()));
    assert_crosses(produced, consumed, RABBITMQ);

    consuming
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_published_without_a_trace_is_unchanged_and_records_nothing() {
    let collector = Collector::start().await.unwrap();
    let producer = tracer(&collector, "producer");
    let connection = Connection::connect(AMQP_URL, ConnectionProperties::default())
        .await
        .expect("RabbitMQ on 127.0.0.1:5672 (scripts/ensure-services)");
    let queue = unique("skytrace.untraced");
    let channel = connection.create_channel().await.unwrap().traced(RABBITMQ);
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    // No consumer tracer and no global one: the consumer records nothing either.
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "skytrace-test".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            b"plain",
            BasicProperties::default(),
        )
        .await
        .unwrap();
    let (delivery, span) = consumer.next().await.unwrap().unwrap();
    assert_eq!(delivery.properties.headers(), &None);
    assert!(!span.is_recording());
    drop(span);
    delivery.ack(BasicAckOptions::default()).await.unwrap();

    drop(producer.entry_span("marker", &()));
    let segments = collector.wait_for_segments(1, WAIT).await;
    assert_eq!(segments.len(), 1, "{}", render_trace_tree(&segments));
    assert_eq!(segments[0].spans.len(), 1);
    assert_eq!(segments[0].spans[0].operation_name, "marker");
    channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
}

// ----------------------------------------------------------------------------------------------
// NATS

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_crosses_nats_from_publisher_to_subscriber() {
    let collector = Collector::start().await.unwrap();
    let producer = tracer(&collector, "producer");
    let consumer_tracer = tracer(&collector, "consumer");
    let client = async_nats::connect(NATS)
        .await
        .expect("NATS on 127.0.0.1:4222 (scripts/ensure-services)")
        .traced(NATS);
    let subscribing = client.clone().with_tracer(consumer_tracer);
    let subject = unique("skytrace.orders");
    let mut subscriber = subscribing.subscribe(subject.clone()).await.unwrap();
    client.flush().await.unwrap();

    let entry = producer.entry_span("POST:/orders", &());
    async {
        client
            .publish(subject.clone(), "order 7".into())
            .await
            .unwrap();
    }
    .in_span(entry)
    .await;
    let (message, span) = subscriber.next().await.unwrap();
    assert_eq!(&message.payload[..], b"order 7");
    let headers = message.headers.as_ref().expect("headers");
    let sw8 = Sw8Header::decode(headers.get("sw8").unwrap().as_str()).unwrap();
    assert_eq!(sw8.target_address, NATS);
    let extension = Sw8Extension::decode(headers.get("sw8-x").unwrap().as_str());
    assert!(extension.send_time_ms.is_some());
    async { drop(Span::local("handle-order")) }
        .in_span(span)
        .await;

    let segments = collector.wait_for_segments(2, WAIT).await;
    assert_eq!(segments.len(), 2, "{}", render_trace_tree(&segments));
    let produced = of_service(&segments, "producer");
    let consumed = of_service(&segments, "consumer");
    let exit = &produced.spans[1];
    assert_eq!(exit.operation_name, format!("Nats/Pub/{subject}"));
    assert_eq!(exit.span_type, SpanType::Exit as i32);
    assert_eq!(exit.span_layer, SpanLayer::Mq as i32);
    assert_eq!(exit.component_id, 132);
    assert_eq!(exit.peer, NATS);
    assert_eq!(tag(exit, "mq.broker"), Some(NATS));
    assert_eq!(tag(exit, "mq.queue"), Some(subject.as_str()));
    let entry = &consumed.spans[0];
    assert_eq!(entry.operation_name, format!("Nats/Sub/{subject}"));
    assert_eq!(entry.component_id, 132);
    assert_eq!(entry.span_layer, SpanLayer::Mq as i32);
    assert_eq!(entry.peer, NATS);
    assert_eq!(tag(entry, "mq.queue"), Some(subject.as_str()));
    assert_crosses(produced, consumed, NATS);

    // Without a trace the message goes out as a plain PUB: no headers at all.
    client
        .publish(subject.clone(), "plain".into())
        .await
        .unwrap();
    let (message, span) = subscriber.next().await.unwrap();
    assert!(message.headers.is_none());
    // The subscriber starts a new trace for it, as the Java agent does.
    drop(span);
    let segments = collector.wait_for_segments(3, WAIT).await;
    assert_eq!(segments.len(), 3, "{}", render_trace_tree(&segments));
    let fresh = &segments[2];
    assert_eq!(fresh.service, "consumer");
    assert_ne!(fresh.trace_id, produced.trace_id);
    assert!(fresh.spans[0].refs.is_empty());
}
