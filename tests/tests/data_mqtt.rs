//! The rumqttc integration against the local Mosquitto (127.0.0.1:1883, MQTT 3.1.1 and 5;
//! `scripts/ensure-services` starts it): with MQTT 5 a trace crosses the broker from a producer
//! service to a consumer service (each with its own tracer reporting over gRPC to the
//! in-process collector); with 3.1.1 the publisher's exit span stands alone. Topics are named
//! per run.

use skytrace::integrations::mqtt;
use skytrace::{Instrument, Span, Sw8Extension, Sw8Header, Tracer};
use skytrace_collector::{Collector, render_trace_tree};
use skytrace_proto::v3::{RefType, SegmentObject, SpanLayer, SpanType};
use skytrace_tests::{WAIT, tag};
use tokio::sync::mpsc;

const BROKER: &str = "127.0.0.1:1883";

fn tracer(collector: &Collector, name: &str) -> Tracer {
    skytrace_tests::named_tracer(collector, name)
}

fn of_service<'a>(segments: &'a [SegmentObject], service: &str) -> &'a SegmentObject {
    segments
        .iter()
        .find(|s| s.service == service)
        .unwrap_or_else(|| panic!("no segment of {service}:\n{}", render_trace_tree(segments)))
}

/// `$name(id)`: a client of the local broker (rumqttc's module `$line`, its packets `$packet`)
/// whose event loop runs in a task, sending what it receives: publishes, and `None` for each
/// SUBACK. A connection error ends the task, and the test then fails waiting.
macro_rules! client_of_line {
    ($name:ident, $($line:ident)::+, $($packet:ident)::+) => {
        fn $name(id: &str) -> (
            $($line)::+::AsyncClient,
            mpsc::UnboundedReceiver<Option<$($packet)::+::Publish>>,
        ) {
            use $($line)::+::{AsyncClient, Event, MqttOptions};
            let options = MqttOptions::new(skytrace_tests::unique_name(id, '-'), "127.0.0.1", 1883);
            let (client, mut events) = AsyncClient::new(options, 16);
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(async move {
                loop {
                    let received = match events.poll().await {
                        Ok(Event::Incoming($($packet)::+::Packet::Publish(publish))) => Some(publish),
                        Ok(Event::Incoming($($packet)::+::Packet::SubAck(_))) => None,
                        Ok(_) => continue,
                        Err(error) => {
                            panic!("Mosquitto on {BROKER} (scripts/ensure-services): {error}")
                        }
                    };
                    let _ = tx.send(received);
                }
            });
            (client, rx)
        }
    };
}

client_of_line!(v5_client, rumqttc::v5, rumqttc::v5::mqttbytes::v5);
client_of_line!(v3_client, rumqttc, rumqttc);

/// The next publish received (skipping SUBACKs), within the test's patience.
async fn next<T>(rx: &mut mpsc::UnboundedReceiver<Option<T>>) -> T {
    loop {
        match tokio::time::timeout(WAIT, rx.recv()).await {
            Ok(Some(Some(publish))) => return publish,
            Ok(Some(None)) => continue,
            other => panic!("no message from the broker: {}", other.is_ok()),
        }
    }
}

/// Waits for the SUBACK.
async fn subscribed<T>(rx: &mut mpsc::UnboundedReceiver<Option<T>>) {
    match tokio::time::timeout(WAIT, rx.recv()).await {
        Ok(Some(None)) => {}
        _ => panic!("no SUBACK from {BROKER}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_crosses_mosquitto_with_mqtt_5() {
    use rumqttc::v5::mqttbytes::QoS;
    let collector = Collector::start().await.unwrap();
    let producer_tracer = tracer(&collector, "producer");
    let (client, _own) = v5_client("skytrace-producer");
    let producer = mqtt::v5::TracedClient::new(client, BROKER);
    let (client, mut received) = v5_client("skytrace-consumer");
    let consumer =
        mqtt::v5::TracedClient::new(client, BROKER).with_tracer(tracer(&collector, "consumer"));
    let topic = skytrace_tests::unique_name("skytrace/orders", '/');
    consumer
        .subscribe(topic.clone(), QoS::AtLeastOnce)
        .await
        .unwrap();
    subscribed(&mut received).await;

    let entry = producer_tracer.entry_span("POST:/orders", &());
    async {
        producer
            .publish(topic.clone(), QoS::AtLeastOnce, false, "order 7")
            .await
            .unwrap();
    }
    .in_span(entry)
    .await;
    let message = next(&mut received).await;
    assert_eq!(&message.payload[..], b"order 7", "the payload is untouched");
    let properties = &message
        .properties
        .as_ref()
        .expect("user properties")
        .user_properties;
    let get = |key: &str| {
        properties
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let sw8 = Sw8Header::decode(get("sw8").expect("sw8 in the user properties")).unwrap();
    assert_eq!(sw8.target_address, BROKER);
    assert!(
        Sw8Extension::decode(get("sw8-x").expect("sw8-x"))
            .send_time_ms
            .is_some()
    );
    async { drop(Span::local("handle-order")) }
        .in_span(consumer.consumer_span(&message))
        .await;

    let segments = collector.wait_for_segments(2, WAIT).await;
    assert_eq!(segments.len(), 2, "{}", render_trace_tree(&segments));
    let produced = of_service(&segments, "producer");
    let consumed = of_service(&segments, "consumer");
    let exit = &produced.spans[1];
    assert_eq!(exit.operation_name, format!("Mqtt/{topic}/Producer"));
    assert_eq!(exit.span_type, SpanType::Exit as i32);
    assert_eq!(exit.span_layer, SpanLayer::Mq as i32);
    assert_eq!(exit.component_id, skytrace::component::RUST);
    assert_eq!(exit.peer, BROKER);
    assert_eq!(tag(exit, "mq.broker"), Some(BROKER));
    assert_eq!(tag(exit, "mq.topic"), Some(topic.as_str()));
    let entry = &consumed.spans[0];
    assert_eq!(entry.operation_name, format!("Mqtt/{topic}/Consumer"));
    assert_eq!(entry.span_type, SpanType::Entry as i32);
    assert_eq!(entry.span_layer, SpanLayer::Mq as i32);
    assert_eq!(entry.peer, BROKER);
    assert_eq!(tag(entry, "mq.topic"), Some(topic.as_str()));
    assert!(tag(entry, "transmission.latency").is_some());
    // The consumer's entry continues the producer's exit span.
    assert_eq!(consumed.trace_id, produced.trace_id);
    assert_eq!(entry.refs.len(), 1, "{entry:#?}");
    let r = &entry.refs[0];
    assert_eq!(r.ref_type, RefType::CrossProcess as i32);
    assert_eq!(r.parent_trace_segment_id, produced.trace_segment_id);
    assert_eq!(r.parent_span_id, exit.span_id);
    assert_eq!(r.parent_service, "producer");
    assert_eq!(r.parent_endpoint, "POST:/orders");
    assert_eq!(r.network_address_used_at_peer, BROKER);
    assert_eq!(consumed.spans[1].operation_name, "handle-order");
    assert_eq!(consumed.spans[1].parent_span_id, 0);

    // Without a trace the message goes out as `AsyncClient::publish` sends it: no properties.
    producer
        .publish(topic.clone(), QoS::AtLeastOnce, false, "plain")
        .await
        .unwrap();
    let message = next(&mut received).await;
    assert!(
        message
            .properties
            .as_ref()
            .is_none_or(|p| p.user_properties.is_empty()),
        "{message:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mqtt_3_the_exit_span_stands_alone() {
    use rumqttc::QoS;
    let collector = Collector::start().await.unwrap();
    let producer_tracer = tracer(&collector, "producer");
    let (client, _own) = v3_client("skytrace-producer");
    let producer = mqtt::TracedClient::new(client, BROKER);
    let (client, mut received) = v3_client("skytrace-consumer");
    let consumer =
        mqtt::TracedClient::new(client, BROKER).with_tracer(tracer(&collector, "consumer"));
    let topic = skytrace_tests::unique_name("skytrace/sensors", '/');
    consumer
        .subscribe(topic.clone(), QoS::AtLeastOnce)
        .await
        .unwrap();
    subscribed(&mut received).await;

    let entry = producer_tracer.entry_span("POST:/readings", &());
    async {
        producer
            .publish(topic.clone(), QoS::AtLeastOnce, false, "21.5")
            .await
            .unwrap();
    }
    .in_span(entry)
    .await;
    let message = next(&mut received).await;
    assert_eq!(
        &message.payload[..],
        b"21.5",
        "3.1.1 has no headers: the payload is untouched"
    );
    drop(consumer.consumer_span(&message));

    let segments = collector.wait_for_segments(2, WAIT).await;
    assert_eq!(segments.len(), 2, "{}", render_trace_tree(&segments));
    let produced = of_service(&segments, "producer");
    let exit = &produced.spans[1];
    assert_eq!(exit.operation_name, format!("Mqtt/{topic}/Producer"));
    assert_eq!(exit.span_layer, SpanLayer::Mq as i32);
    assert_eq!(exit.peer, BROKER);
    assert_eq!(tag(exit, "mq.topic"), Some(topic.as_str()));
    let consumed = of_service(&segments, "consumer");
    assert_eq!(
        consumed.spans[0].operation_name,
        format!("Mqtt/{topic}/Consumer")
    );
    assert_eq!(consumed.spans[0].span_type, SpanType::Entry as i32);
    // A new trace: nothing crossed the broker.
    assert_ne!(consumed.trace_id, produced.trace_id);
    assert!(consumed.spans[0].refs.is_empty());
}
