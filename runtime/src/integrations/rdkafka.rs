//! Kafka through rdkafka (feature `rdkafka`): an exit span per record produced with a
//! [`FutureProducer`], an entry span per record consumed, and one trace across the topic.
//!
//! [`TracedFutureProducer`] wraps an rdkafka [`FutureProducer`]: its `send` has rdkafka's
//! signature and writes the trace's headers into the record. [`ConsumerSpans::message_span`]
//! is the entry span of a message read by any rdkafka consumer (a `BorrowedMessage` from a
//! `StreamConsumer` or `BaseConsumer`, or an `OwnedMessage`).
//!
//! ```no_run
//! use rdkafka::util::AsyncRuntime;
//! use rdkafka::consumer::{Consumer, StreamConsumer};
//! use rdkafka::producer::{FutureProducer, FutureRecord};
//! use rdkafka::ClientConfig;
//! use skytrace::Instrument;
//! use skytrace::integrations::rdkafka::{ConsumerSpans, FutureProducerExt};
//!
//! # async fn demo<R: AsyncRuntime>(
//! #     producer: FutureProducer<rdkafka::client::DefaultClientContext, R>,
//! #     consumer: StreamConsumer<rdkafka::consumer::DefaultConsumerContext, R>,
//! #     config: ClientConfig,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! // Producer, inside a traced request: the record carries `sw8` in its headers.
//! let orders = producer.traced("kafka:9092");
//! let record = FutureRecord::to("orders").key("order-7").payload("order 7");
//! orders.send(record, std::time::Duration::from_secs(5)).await.map_err(|(e, _)| e)?;
//!
//! // Consumer: each message's entry span continues the producer's trace. The brokers and the
//! // group come from the consumer's configuration.
//! let spans = ConsumerSpans::from_config(&config);
//! let message = consumer.recv().await?;
//! let span = spans.message_span(&message);
//! async { /* … handle the message … */ }.in_span(span).await;
//! # Ok(()) }
//! ```
//!
//! As the Java agent's Kafka plugin: the producer's exit span is `Kafka/{topic}/Producer`,
//! component `kafka-producer` (40); the consumer's entry span `Kafka/{topic}/Consumer/{group}`,
//! component `kafka-consumer` (41); both layer MQ, peer and tag `mq.broker` = the brokers given,
//! tag `mq.topic`. A produced record gets `sw8` (and `sw8-correlation`) headers and `sw8-x` with
//! the send time, in place of any it had (a record forwarded with its consumed headers carries
//! the new trace's, not the old one's); its other headers are kept. The consumer tags
//! `transmission.latency` (ms) from the record's timestamp (from `sw8-x` when it has none); a
//! message without `sw8`, or with a malformed one, starts a new trace. A failed send marks the
//! exit span as failed.
//!
//! rdkafka builds librdkafka from C: the feature is opt-in, and turns none of rdkafka's own
//! features on (the application's `rdkafka` dependency chooses the runtime, TLS, SASL and
//! compression). Entry spans go to the global tracer ([`crate::init`]), or to the one given with
//! [`ConsumerSpans::with_tracer`]. Outside any trace records are sent unchanged.

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

use ::rdkafka::ClientConfig;
use ::rdkafka::client::{ClientContext, DefaultClientContext};
use ::rdkafka::message::{Header, Headers, Message, OwnedHeaders, ToBytes};
use ::rdkafka::producer::future_producer::OwnedDeliveryResult;
use ::rdkafka::producer::{FutureProducer, FutureRecord};
use ::rdkafka::util::{AsyncRuntime, DefaultRuntime, Timeout};

use super::mq::{self, Written};
use crate::component;
use crate::propagation::Extractor;
use crate::span::Span;
use crate::tracer::Tracer;

/// An rdkafka [`FutureProducer`] whose sends are exit spans; see the
/// [module documentation](self). Everything else is the producer's own (it dereferences to it).
pub struct TracedFutureProducer<C = DefaultClientContext, R = DefaultRuntime>
where
    C: ClientContext + 'static,
{
    producer: FutureProducer<C, R>,
    brokers: Cow<'static, str>,
}

impl<C, R> TracedFutureProducer<C, R>
where
    C: ClientContext + 'static,
{
    /// Wraps `producer`, of the cluster at `brokers` (`host:port[,host:port]`, the spans'
    /// peer).
    pub fn new(producer: FutureProducer<C, R>, brokers: impl Into<Cow<'static, str>>) -> Self {
        TracedFutureProducer {
            producer,
            brokers: brokers.into(),
        }
    }

    /// The producer, untraced.
    pub fn into_inner(self) -> FutureProducer<C, R> {
        self.producer
    }
}

impl<C, R> TracedFutureProducer<C, R>
where
    C: ClientContext + 'static,
    R: AsyncRuntime,
{
    /// [`FutureProducer::send`] in an exit span that writes the trace's headers into the
    /// record.
    pub async fn send<K, P, T>(
        &self,
        mut record: FutureRecord<'_, K, P>,
        queue_timeout: T,
    ) -> OwnedDeliveryResult
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
        T: Into<Timeout>,
    {
        let topic = record.topic;
        let span = mq::kafka_producer_span(topic, self.brokers.clone());
        let mut written = Written::default();
        if mq::inject_with_send_time(&span, &mut written) {
            record.headers = Some(with_trace_headers(record.headers.take(), &written.0));
        }
        let result = self.producer.send(record, queue_timeout).await;
        if let Err((error, _)) = &result {
            span.record_error(error);
        }
        result
    }
}

impl<C, R> Deref for TracedFutureProducer<C, R>
where
    C: ClientContext + 'static,
{
    type Target = FutureProducer<C, R>;

    fn deref(&self) -> &FutureProducer<C, R> {
        &self.producer
    }
}

impl<C, R> Clone for TracedFutureProducer<C, R>
where
    C: ClientContext + 'static,
{
    fn clone(&self) -> Self {
        TracedFutureProducer {
            producer: self.producer.clone(),
            brokers: self.brokers.clone(),
        }
    }
}

impl<C, R> fmt::Debug for TracedFutureProducer<C, R>
where
    C: ClientContext + 'static,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracedFutureProducer")
            .field("brokers", &self.brokers)
            .finish_non_exhaustive()
    }
}

/// `.traced(brokers)` for rdkafka's [`FutureProducer`]: the one-line adoption.
///
/// ```
/// use rdkafka::producer::FutureProducer;
/// use rdkafka::util::AsyncRuntime;
/// use skytrace::integrations::rdkafka::{FutureProducerExt, TracedFutureProducer};
///
/// fn traced<R: AsyncRuntime>(producer: FutureProducer<rdkafka::client::DefaultClientContext, R>)
///     -> TracedFutureProducer<rdkafka::client::DefaultClientContext, R> {
///     producer.traced("kafka-1:9092,kafka-2:9092")
/// }
/// ```
pub trait FutureProducerExt<C, R>
where
    C: ClientContext + 'static,
{
    /// Wraps the producer in a [`TracedFutureProducer`] for the cluster at `brokers`.
    fn traced(self, brokers: impl Into<Cow<'static, str>>) -> TracedFutureProducer<C, R>;
}

impl<C, R> FutureProducerExt<C, R> for FutureProducer<C, R>
where
    C: ClientContext + 'static,
{
    fn traced(self, brokers: impl Into<Cow<'static, str>>) -> TracedFutureProducer<C, R> {
        TracedFutureProducer::new(self, brokers)
    }
}

/// The entry spans of a consumer's messages: where it reads from (the brokers, the spans'
/// peer) and as which group; see the [module documentation](self).
///
/// ```
/// use rdkafka::ClientConfig;
/// use skytrace::integrations::rdkafka::ConsumerSpans;
///
/// let mut config = ClientConfig::new();
/// config.set("bootstrap.servers", "kafka:9092").set("group.id", "billing");
/// let spans = ConsumerSpans::from_config(&config);
/// assert_eq!((spans.brokers(), spans.group()), ("kafka:9092", "billing"));
/// ```
#[derive(Clone)]
pub struct ConsumerSpans {
    brokers: Cow<'static, str>,
    group: Cow<'static, str>,
    tracer: Option<Tracer>,
}

impl ConsumerSpans {
    /// Spans for a consumer of the cluster at `brokers` in consumer group `group`.
    pub fn new(brokers: impl Into<Cow<'static, str>>, group: impl Into<Cow<'static, str>>) -> Self {
        ConsumerSpans {
            brokers: brokers.into(),
            group: group.into(),
            tracer: None,
        }
    }

    /// Spans for a consumer made from `config`: its `bootstrap.servers` and `group.id` (a
    /// consumer without a group, reading assigned partitions, is named `rdkafka`).
    pub fn from_config(config: &ClientConfig) -> Self {
        let brokers = config.get("bootstrap.servers").unwrap_or_default();
        let group = config.get("group.id").unwrap_or("rdkafka");
        ConsumerSpans::new(brokers.to_owned(), group.to_owned())
    }

    /// Starts the entry spans on `tracer` instead of the global one.
    pub fn with_tracer(mut self, tracer: Tracer) -> Self {
        self.tracer = Some(tracer);
        self
    }

    /// The brokers the spans name.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// The consumer group the spans name.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The entry span of `message`: continues the trace its producer sent (a new trace when
    /// its headers carry none, or a malformed one). Run the message's handling inside it
    /// ([`crate::Instrument::in_span`]).
    pub fn message_span<M: Message>(&self, message: &M) -> Span {
        let topic = message.topic();
        mq::consumer_span_sent_at(
            self.tracer.as_ref(),
            super::join(["Kafka/", topic, "/Consumer/", &self.group]),
            MessageHeaders(message.headers()),
            component::KAFKA_CONSUMER,
            self.brokers.clone(),
            message.timestamp().to_millis(),
            |span| span.add_tag("mq.topic", topic.to_owned()),
        )
    }
}

impl fmt::Debug for ConsumerSpans {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumerSpans")
            .field("brokers", &self.brokers)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

/// `own` headers with the trace's `ours` in place of any trace headers they had.
fn with_trace_headers(own: Option<OwnedHeaders>, ours: &[(String, String)]) -> OwnedHeaders {
    // The names of the trace's headers, with the prefix the span wrote them with (if any).
    let prefix = ours
        .iter()
        .find_map(|(k, _)| k.strip_suffix("sw8"))
        .unwrap_or_default();
    let is_trace_header = |key: &str| {
        key.strip_prefix(prefix)
            .is_some_and(|rest| matches!(rest, "sw8" | "sw8-correlation" | "sw8-x"))
    };
    let mut headers =
        OwnedHeaders::new_with_capacity(own.as_ref().map_or(0, |h| h.count()) + ours.len());
    for header in own.iter().flat_map(|h| h.iter()) {
        if !is_trace_header(header.key) {
            headers = headers.insert(header);
        }
    }
    for (key, value) in ours {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_str()),
        });
    }
    headers
}

/// A message's headers as a carrier: values that are not UTF-8 are not ours; of a name given
/// twice, the last is read (as Kafka's Java client's `lastHeader`).
struct MessageHeaders<'a, H>(Option<&'a H>);

impl<H: Headers> Extractor for MessageHeaders<'_, H> {
    fn get(&self, key: &str) -> Option<&str> {
        let value = self.0?.iter().filter(|h| h.key == key).last()?.value?;
        std::str::from_utf8(value).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(headers: &OwnedHeaders) -> Vec<(String, Option<Vec<u8>>)> {
        headers
            .iter()
            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
            .collect()
    }

    #[test]
    fn trace_headers_replace_a_forwarded_records_and_keep_the_rest() {
        let own = OwnedHeaders::new()
            .insert(Header {
                key: "tenant",
                value: Some("acme"),
            })
            .insert(Header {
                key: "sw8",
                value: Some("1-old"),
            })
            .insert(Header {
                key: "sw8-correlation",
                value: Some("old"),
            })
            .insert(Header::<&str> {
                key: "empty",
                value: None,
            });
        let ours = [
            ("sw8".to_owned(), "1-new".to_owned()),
            ("sw8-x".to_owned(), "0-42".to_owned()),
        ];
        let headers = with_trace_headers(Some(own), &ours);
        assert_eq!(
            pairs(&headers),
            [
                ("tenant".to_owned(), Some(b"acme".to_vec())),
                ("empty".to_owned(), None),
                ("sw8".to_owned(), Some(b"1-new".to_vec())),
                ("sw8-x".to_owned(), Some(b"0-42".to_vec())),
            ]
        );
        let none = with_trace_headers(None, &ours);
        assert_eq!(none.count(), 2);
    }

    #[test]
    fn headers_are_read_last_first_and_only_as_text() {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "sw8",
                value: Some("1-first"),
            })
            .insert(Header {
                key: "sw8",
                value: Some("1-last"),
            })
            .insert(Header {
                key: "sw8-x",
                value: Some(&[0xff_u8][..]),
            });
        let carrier = MessageHeaders(Some(&headers));
        assert_eq!(carrier.get("sw8"), Some("1-last"));
        assert_eq!(carrier.get("sw8-x"), None);
        assert_eq!(carrier.get("sw8-correlation"), None);
        assert_eq!(MessageHeaders::<OwnedHeaders>(None).get("sw8"), None);
    }
}
