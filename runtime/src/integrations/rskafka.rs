//! Kafka through rskafka (feature `rskafka`): an exit span per produced batch, an entry span
//! per consumed record, and one trace across the topic.
//!
//! [`TracedPartitionClient`] wraps an rskafka [`PartitionClient`]: its `produce` has rskafka's
//! signature and writes the trace's headers into every record; [`TracedPartitionClient::record_span`]
//! is the entry span of a record read back. Everything else is the client's own (it
//! dereferences to it).
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use rskafka::client::ClientBuilder;
//! use rskafka::client::partition::{Compression, UnknownTopicHandling};
//! use rskafka::record::Record;
//! use skytrace::Instrument;
//! use skytrace::integrations::rskafka::PartitionClientExt;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = ClientBuilder::new(vec!["kafka:9092".into()]).build().await?;
//! let orders = client
//!     .partition_client("orders", 0, UnknownTopicHandling::Retry)
//!     .await?
//!     .traced("kafka:9092")
//!     .with_group("billing");
//!
//! // Producer, inside a traced request: each record carries `sw8` in its headers.
//! let record = Record {
//!     key: None,
//!     value: Some(b"order 7".to_vec()),
//!     headers: BTreeMap::new(),
//!     timestamp: rskafka::chrono::DateTime::UNIX_EPOCH,
//! };
//! orders.produce(vec![record], Compression::NoCompression).await?;
//!
//! // Consumer: each record's entry span continues the producer's trace.
//! let (records, _high_watermark) = orders.fetch_records(0, 1..1_000_000, 1_000).await?;
//! for record in records {
//!     let span = orders.record_span(&record.record);
//!     async { /* … handle the record … */ }.in_span(span).await;
//! }
//! # Ok(()) }
//! ```
//!
//! As the Java agent's Kafka plugin: the producer's exit span is `Kafka/{topic}/Producer`,
//! component `kafka-producer` (40); the consumer's entry span `Kafka/{topic}/Consumer/{group}`,
//! component `kafka-consumer` (41); both layer MQ, peer and tag `mq.broker` = the brokers given
//! to [`TracedPartitionClient::new`], tag `mq.topic`. Produced records get `sw8` (and
//! `sw8-correlation`) headers and `sw8-x` with the send time; the consumer tags
//! `transmission.latency` (ms) from it. A failed produce marks the exit span as failed.
//!
//! rskafka has no consumer groups: the group in the span's name is the one given to
//! [`TracedPartitionClient::with_group`] (`rskafka` without it). Entry spans go to the global
//! tracer ([`crate::init`]), or to the one given with [`TracedPartitionClient::with_tracer`].
//! Outside any trace records are produced unchanged.

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

use ::rskafka::client::error::Error;
use ::rskafka::client::partition::{Compression, PartitionClient};
use ::rskafka::record::Record;

use super::mq;
use crate::component;
use crate::propagation::{Extractor, Injector};
use crate::span::Span;
use crate::tracer::Tracer;

/// An rskafka partition client whose produces are exit spans and whose records give entry
/// spans; see the [module documentation](self).
pub struct TracedPartitionClient {
    client: PartitionClient,
    brokers: Cow<'static, str>,
    group: Cow<'static, str>,
    tracer: Option<Tracer>,
}

impl TracedPartitionClient {
    /// Wraps `client`, of the cluster at `brokers` (`host:port[,host:port]`, the spans' peer).
    pub fn new(client: PartitionClient, brokers: impl Into<Cow<'static, str>>) -> Self {
        TracedPartitionClient {
            client,
            brokers: brokers.into(),
            group: Cow::Borrowed("rskafka"),
            tracer: None,
        }
    }

    /// The consumer group named in consumers' entry spans (rskafka has none of its own).
    pub fn with_group(mut self, group: impl Into<Cow<'static, str>>) -> Self {
        self.group = group.into();
        self
    }

    /// Starts consumers' entry spans on `tracer` instead of the global one.
    pub fn with_tracer(mut self, tracer: Tracer) -> Self {
        self.tracer = Some(tracer);
        self
    }

    /// The client, untraced.
    pub fn into_inner(self) -> PartitionClient {
        self.client
    }

    /// [`PartitionClient::produce`] in an exit span that writes the trace's headers into every
    /// record.
    pub async fn produce(
        &self,
        mut records: Vec<Record>,
        compression: Compression,
    ) -> Result<Vec<i64>, Error> {
        let topic = self.client.topic();
        let span = mq::kafka_producer_span(topic, self.brokers.clone());
        let mut written = Written::default();
        if mq::inject_with_send_time(&span, &mut written) {
            for record in &mut records {
                for (key, value) in &written.0 {
                    record
                        .headers
                        .insert(key.clone(), value.clone().into_bytes());
                }
            }
        }
        let result = self.client.produce(records, compression).await;
        if let Err(error) = &result {
            span.record_error(error);
        }
        result
    }

    /// The entry span of `record`, read from this client's partition: continues the trace its
    /// producer sent. Run the record's handling inside it ([`crate::Instrument::in_span`]).
    pub fn record_span(&self, record: &Record) -> Span {
        let topic = self.client.topic();
        mq::consumer_span(
            self.tracer.as_ref(),
            super::join(["Kafka/", topic, "/Consumer/", &self.group]),
            Headers(record),
            component::KAFKA_CONSUMER,
            self.brokers.clone(),
            |span| span.add_tag("mq.topic", topic.to_owned()),
        )
    }
}

impl Deref for TracedPartitionClient {
    type Target = PartitionClient;

    fn deref(&self) -> &PartitionClient {
        &self.client
    }
}

impl fmt::Debug for TracedPartitionClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracedPartitionClient")
            .field("topic", &self.client.topic())
            .field("partition", &self.client.partition())
            .field("brokers", &self.brokers)
            .finish_non_exhaustive()
    }
}

/// `.traced(brokers)` for rskafka's [`PartitionClient`]: the one-line adoption.
///
/// ```no_run
/// use rskafka::client::ClientBuilder;
/// use rskafka::client::partition::UnknownTopicHandling;
/// use skytrace::integrations::rskafka::PartitionClientExt;
///
/// # async fn demo() -> Result<(), rskafka::client::error::Error> {
/// let client = ClientBuilder::new(vec!["kafka:9092".into()]).build().await?;
/// let orders = client
///     .partition_client("orders", 0, UnknownTopicHandling::Retry)
///     .await?
///     .traced("kafka:9092");
/// # let _ = orders;
/// # Ok(()) }
/// ```
pub trait PartitionClientExt {
    /// Wraps the client in a [`TracedPartitionClient`] for the cluster at `brokers`.
    fn traced(self, brokers: impl Into<Cow<'static, str>>) -> TracedPartitionClient;
}

impl PartitionClientExt for PartitionClient {
    fn traced(self, brokers: impl Into<Cow<'static, str>>) -> TracedPartitionClient {
        TracedPartitionClient::new(self, brokers)
    }
}

/// The headers a span writes, the same for every record of a batch.
#[derive(Default)]
struct Written(Vec<(String, String)>);

impl Injector for Written {
    fn set(&mut self, key: &str, value: String) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.0.push((key.to_owned(), value)),
        }
    }
}

/// A record's headers as a carrier: values that are not UTF-8 are not ours.
struct Headers<'a>(&'a Record);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let value = self.0.headers.get(key)?;
        std::str::from_utf8(value).ok()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn headers_that_are_not_text_are_not_read() {
        let record = Record {
            key: None,
            value: None,
            headers: BTreeMap::from([
                ("sw8".to_owned(), b"1-a-b".to_vec()),
                ("sw8-x".to_owned(), vec![0xff]),
            ]),
            timestamp: ::rskafka::chrono::DateTime::UNIX_EPOCH,
        };
        assert_eq!(Headers(&record).get("sw8"), Some("1-a-b"));
        assert_eq!(Headers(&record).get("sw8-x"), None);
        assert_eq!(Headers(&record).get("sw8-correlation"), None);
    }
}
