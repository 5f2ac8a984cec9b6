//! What the message-queue integrations share: the send time in `sw8-x` and the consumer's
//! `transmission.latency` tag, as the Java agent's MQ plugins do.

use std::borrow::Cow;
use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::propagation::{Extractor, Injector, Sw8Extension};
use crate::segment::SpanLayer;
use crate::span::Span;
use crate::tracer::Tracer;

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Writes the headers of `span` into `carrier`, with the send time in `sw8-x`.
///
/// The span writes `sw8-x` only when it has something to carry; a message always carries its
/// send time, so the value written (if any) gets it added, and one is written after `sw8`
/// otherwise. Header names are matched by suffix: a namespace prefixes all three alike.
pub(crate) fn inject_with_send_time(span: &Span, carrier: &mut dyn Injector) -> bool {
    let mut with_time = SendTime {
        inner: carrier,
        now_ms: now_ms(),
        sw8_key: None,
        wrote_extension: false,
    };
    if !span.inject(&mut with_time) {
        return false;
    }
    if let (Some(sw8_key), false) = (with_time.sw8_key.take(), with_time.wrote_extension) {
        let extension = Sw8Extension {
            skip_analysis: false,
            send_time_ms: Some(with_time.now_ms),
        };
        with_time
            .inner
            .set(&format!("{sw8_key}-x"), extension.encode());
    }
    true
}

/// Headers written by a span, to be merged into a message's own only when there are some.
#[cfg(any(feature = "lapin", feature = "rumqttc", feature = "rdkafka"))]
#[derive(Default)]
pub(crate) struct Written(pub(crate) Vec<(String, String)>);

#[cfg(any(feature = "lapin", feature = "rumqttc", feature = "rdkafka"))]
impl Injector for Written {
    fn set(&mut self, key: &str, value: String) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.0.push((key.to_owned(), value)),
        }
    }
}

struct SendTime<'a> {
    inner: &'a mut dyn Injector,
    now_ms: i64,
    sw8_key: Option<String>,
    wrote_extension: bool,
}

impl Injector for SendTime<'_> {
    fn set(&mut self, key: &str, value: String) {
        if key.ends_with("sw8-x") {
            let mut extension = Sw8Extension::decode(&value);
            extension.send_time_ms = Some(self.now_ms);
            self.wrote_extension = true;
            self.inner.set(key, extension.encode());
            return;
        }
        if key.ends_with("sw8") {
            self.sw8_key = Some(key.to_owned());
        }
        self.inner.set(key, value);
    }
}

/// Reads a message's headers for an entry span, noting the send time in `sw8-x` when the
/// tracer looks at it (it does only for a valid `sw8`).
pub(crate) struct SendTimeProbe<E> {
    pub(crate) inner: E,
    pub(crate) send_time_ms: Cell<Option<i64>>,
}

impl<E: Extractor> Extractor for SendTimeProbe<E> {
    fn get(&self, key: &str) -> Option<&str> {
        let value = self.inner.get(key);
        if key.ends_with("sw8-x")
            && let Some(value) = value
        {
            self.send_time_ms
                .set(Sw8Extension::decode(value).send_time_ms);
        }
        value
    }
}

/// The entry span of a consumed message: continues the producer's trace from `headers`, on
/// `tracer` (or the global one), with layer MQ, `component`, peer and `mq.broker` = `broker`,
/// the `tags`, and `transmission.latency` (ms) when the producer sent its send time.
pub(crate) fn consumer_span(
    tracer: Option<&Tracer>,
    operation_name: String,
    headers: impl Extractor,
    component: i32,
    broker: Cow<'static, str>,
    tags: impl FnOnce(&Span),
) -> Span {
    consumer_span_sent_at(
        tracer,
        operation_name,
        headers,
        component,
        broker,
        None,
        tags,
    )
}

/// [`consumer_span`], with the message's own send time (ms since the epoch) when the client
/// gives one (a Kafka record's timestamp): `transmission.latency` is counted from it, from
/// `sw8-x` without it.
pub(crate) fn consumer_span_sent_at(
    tracer: Option<&Tracer>,
    operation_name: String,
    headers: impl Extractor,
    component: i32,
    broker: Cow<'static, str>,
    sent_ms: Option<i64>,
    tags: impl FnOnce(&Span),
) -> Span {
    let probe = SendTimeProbe {
        inner: headers,
        send_time_ms: Cell::new(None),
    };
    let span = match tracer {
        Some(tracer) => tracer.entry_span(operation_name, &probe),
        None => Span::entry(operation_name, &probe),
    };
    if span.is_recording() {
        span.set_layer(SpanLayer::Mq);
        span.set_component(component);
        span.set_peer(broker.clone());
        span.add_tag("mq.broker", broker);
        tags(&span);
        if let Some(sent) = sent_ms.or(probe.send_time_ms.get()) {
            span.add_tag("transmission.latency", (now_ms() - sent).to_string());
        }
    }
    span
}

/// The exit span of a published message, child of the current span: layer MQ, `component`,
/// peer and `mq.broker` = `broker`, then `tags`. Named `operation_name()`, made only when the
/// span records (a placeholder otherwise: the name of an unrecorded span is never seen).
pub(crate) fn producer_span(
    operation_name: impl FnOnce() -> String,
    broker: Cow<'static, str>,
    tags: impl FnOnce(&Span),
) -> Span {
    // The peer is given at once: an unsampled trace still propagates, and its `sw8` names it.
    let span = Span::exit("MQ/Producer", broker.clone());
    if span.is_recording() {
        span.set_operation_name(operation_name());
        span.set_layer(SpanLayer::Mq);
        span.add_tag("mq.broker", broker);
        tags(&span);
    }
    span
}

/// The exit span of a record produced to Kafka's `topic`, as the Java agent's Kafka plugin
/// writes it: `Kafka/{topic}/Producer`, component `kafka-producer` (40), `mq.topic`.
#[cfg(any(feature = "rskafka", feature = "rdkafka"))]
pub(crate) fn kafka_producer_span(topic: &str, brokers: Cow<'static, str>) -> Span {
    producer_span(
        || super::join(["Kafka/", topic, "/Producer"]),
        brokers,
        |span| {
            span.set_component(crate::component::KAFKA_PRODUCER);
            span.add_tag("mq.topic", topic.to_owned());
        },
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn the_send_time_joins_a_written_extension() {
        let mut headers: HashMap<String, String> = HashMap::new();
        let mut with_time = SendTime {
            inner: &mut headers,
            now_ms: 42,
            sw8_key: None,
            wrote_extension: false,
        };
        with_time.set("sw8", "1-a-b-0-c-d-e-f".into());
        with_time.set("sw8-x", "1-".into());
        assert!(with_time.wrote_extension);
        assert_eq!(with_time.sw8_key.as_deref(), Some("sw8"));
        assert_eq!(headers["sw8-x"], "1-42");
    }

    #[test]
    fn the_probe_notes_the_send_time() {
        let headers: HashMap<String, String> = [("sw8-x".to_owned(), "0-1000".to_owned())].into();
        let probe = SendTimeProbe {
            inner: &headers,
            send_time_ms: Cell::new(None),
        };
        assert_eq!(probe.get("sw8-x"), Some("0-1000"));
        assert_eq!(probe.send_time_ms.get(), Some(1000));
    }
}
